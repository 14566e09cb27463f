"""The append-only event journal and MQTT outbox, in one SQLite file.

Every business event gets the site's next sequence number and is written in
its own transaction with ``synchronous=FULL`` before anyone is told about it:
a ticket handed to a citizen is on disk (WAL + fsync) first. The same rows are
the uplink's outbox: everything above ``acked_seq`` is resent until the
central acknowledges it. Events are never rewritten and a sequence number (and
the ticket number inside) is never reused. At each day reset the daemon prunes
whole days older than ``paths.journal_retention_days`` (:meth:`Journal.prune`),
only what the central has acknowledged and never today; the next seq stays above
``acked_seq`` (which covers everything pruned), and the freed pages go back to
the file system (``auto_vacuum = INCREMENTAL``; an older journal is converted by
one ``VACUUM`` while small enough).

The central's ``ack`` can come back *above* the journal's last seq: the central
holds events this journal no longer has (a disk that acknowledged writes it had
not made, torn by a power cut; or a replaced SD card). :meth:`Journal.ack` then
records that ack all the same, so the next event never reuses a seq the central
already has (it would drop it as a duplicate), and keeps the range for the
daemon to report (``journal.lost``, :meth:`take_lost`). An ack more than
:data:`MAX_ACK_AHEAD` above the last seq is no torn tail but a wrong or forged
ack (at the top of the contract's range it would stop every ticket for good):
it is refused (:class:`~edge.errors.AckRefused`) and counted for the daemon to
report (``ack.refused``, :meth:`take_refused_acks`).

A kiosk may give each ticket request an idempotency key: the key (with a
fingerprint of the request) is written in the transaction of the ticket's
event, so a request retried after a crash finds its ticket (:meth:`issued_for`).

Telemetry snapshots wait in a second, bounded table: when the outbox
(unacked events + queued telemetry) reaches ``outbox_limit``, the oldest
telemetry is dropped, never an event, and the drop is counted so the daemon
can report it (``outbox.dropped``).

A lock file (``flock``) keeps a second daemon off the same journal; the
kernel releases it when the process dies, even on ``kill -9``.

Device identity: a new journal makes its ``device`` id (16 random hex digits) and
numbers its events in an *epoch* (``seq = epoch << 32 | n``, see the MQTT
contract). A journal of a site with a central (``central=True``) starts without
one: it waits for the central to grant it (:meth:`Journal.grant`), which renumbers
the events it wrote meanwhile (none was sent: they were provisional) into the
epoch and writes the day it took over, in one transaction. Until then it numbers
no ticket (:attr:`Journal.numbering`). A journal without a central, and every
journal from before device identity, numbers in epoch 0. When another device
takes the site over (its lease), :meth:`Journal.mark_replaced` records it with a
``device.replaced`` event: the journal numbers no ticket any more, and sends what
it holds. Acks of another epoch (the ack topic is the site's) are not this
journal's and are ignored. A journal the central finds behind its copy of the device
(restored from an older image, or a second copy of one SD card) forks
(:meth:`Journal.fork`): it becomes a new device that waits for its epoch, its events
above the central's last ack provisional again.

Tables::

    meta(key, value)            site_id, acked_seq, session, dropped, pruned_through,
                                lost_pending, broker_session, device, epoch, replaced_by,
                                forked, acked_before_lost, written_before_lost
    events(seq, type, ts, payload)   payload: the MQTT ``event`` JSON, as sent
    configs(seq, version, text)      the config text of each config.applied event
    restores(seq, payload)           the central's restore (MQTT ``restore`` JSON) taken
                                     with each day.restored event
    telemetry(id, payload)
    terminal_inputs(device, address, sequence, code, boot)
                                     the last window-terminal input handled per terminal,
                                     written in the transaction of its effect (exactly once
                                     over a crash: see edge.input_mark)
    ticket_requests(key, fingerprint, seq)
                                     kiosk idempotency keys and the event of their ticket
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

import msgspec
import structlog

from edge.errors import AckRefused, JournalError
from edge.input_mark import InputMark
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.errors import ProtocolError

log = structlog.get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, type TEXT NOT NULL, ts INTEGER NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS events_type ON events (type, seq);
CREATE TABLE IF NOT EXISTS configs (
    seq INTEGER PRIMARY KEY, version TEXT NOT NULL, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS telemetry (id INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS terminal_inputs (
    device TEXT NOT NULL, address INTEGER NOT NULL, sequence INTEGER NOT NULL,
    code INTEGER NOT NULL, boot INTEGER NOT NULL, PRIMARY KEY (device, address));
CREATE TABLE IF NOT EXISTS ticket_requests (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS restores (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL);
"""

_EVENT_DECODER = msgspec.json.Decoder(mm.Event)

MAX_ACK_AHEAD = 10_000
"""How far above the journal's last seq an ack is still taken for a torn tail.

A disk that lies about its writes loses the last seconds before a power cut: a
few events, a few hundred in the busiest hall's busiest minute. 10,000 is over an
hour of the 220-window city hall's events; an ack further ahead is wrong."""


Numbering = Literal["granted", "waiting", "replaced"]
"""May this journal number tickets: yes; not yet (no epoch); no more (replaced)."""


@dataclass(frozen=True, slots=True)
class StoredConfig:
    seq: int  # seq of its config.applied event
    version: str
    text: str


@dataclass(frozen=True, slots=True)
class RequestKey:
    """A kiosk's idempotency key for one ticket request, and what the request asked."""

    key: str
    fingerprint: str  # the same key with another request is refused, not answered


class Journal:
    """One site's journal; use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, site_id: str, *, outbox_limit: int = 10_000,
                 read_only: bool = False, central: bool = False) -> None:
        """Open (or create) the journal; ``read_only`` reads beside a running daemon.

        ``central``: the site has a central that grants epochs, so a new journal waits
        for its grant; without one a new journal numbers in epoch 0 at once.
        """
        self.path = Path(path)
        self.site_id = site_id
        self.outbox_limit = outbox_limit
        self._lock_fd = -1
        self._refused_acks: list[int] = []  # acks refused since take_refused_acks()
        self._epoch: int | None = None
        self._replaced: tuple[str, int] | None = None
        if read_only:
            if not self.path.exists():
                raise JournalError(f"no journal at {self.path}")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except (OSError, ValueError) as exc:
                raise JournalError(f"cannot create the journal {self.path}: {exc}") from None
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lock_fd)
                raise JournalError(f"{self.path} is in use by another daemon") from None
        try:
            if read_only:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                           isolation_level=None, check_same_thread=False)
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None,
                                           check_same_thread=False)
                # Only takes on a new file (before any table); see _reclaim for older ones.
                self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
            stored_site = self._meta("site_id")
            if stored_site is None and read_only:
                raise JournalError(f"{self.path} is not an onedoor journal")
            if stored_site is None:
                self._set_meta("site_id", site_id)
            elif stored_site != site_id:
                raise JournalError(
                    f"{self.path} belongs to site {stored_site!r}, not {site_id!r}")
            row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
            # Never below what the central holds (pruning deletes only acknowledged
            # events, and the ack may be above a torn tail): no seq is handed out twice.
            self._last_seq: int = max(int(row[0]), int(self._meta("acked_seq") or 0))
            if not read_only and self._meta("device") is None:
                self._make_identity(numbered_before=self._last_seq > 0, central=central)
            epoch, replaced = self._meta("epoch"), self._meta("replaced_by")
            self._epoch = None if epoch is None else int(epoch)
            if replaced is not None:
                device, by_epoch = json.loads(replaced)
                self._replaced = (str(device), int(by_epoch))
        except sqlite3.Error as exc:
            self.close()
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        except JournalError:
            self.close()
            raise

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None  # type: ignore[assignment]
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta ----------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _drop_meta(self, *keys: str) -> None:
        self._db.execute(f"DELETE FROM meta WHERE key IN ({', '.join('?' * len(keys))})", keys)

    # -- identity and epoch --------------------------------------------------

    def _make_identity(self, *, numbered_before: bool, central: bool) -> None:
        with self._transaction():
            self._set_meta("device", _new_device_id())
            # A journal from before device identity has numbered in epoch 0 all along.
            if numbered_before or not central:
                self._set_meta("epoch", "0")

    @property
    def device_id(self) -> str:
        """This journal's device identity (``state.device``)."""
        return self._meta("device") or ""

    @property
    def epoch(self) -> int | None:
        """The epoch this journal numbers in; None until the central grants one."""
        return self._epoch

    @property
    def replaced_by(self) -> tuple[str, int] | None:
        """(device, epoch) that took the site over from this journal, if one did."""
        return self._replaced

    @property
    def numbering(self) -> Numbering:
        if self.epoch is None:
            return "waiting"
        return "replaced" if self.replaced_by is not None else "granted"

    @property
    def forked(self) -> mm.Forked | None:
        """Set once the central found this journal behind its copy (:meth:`fork`)."""
        text = self._meta("forked")
        return None if text is None else msgspec.json.decode(text, type=mm.Forked)

    def fork(self, held: int) -> mm.Forked:
        """The central holds more of this device's epoch than this journal has (``held``,
        its last seq, is above ours, or it has seen more sessions of the device): this is
        an older copy, or a second copy, of the journal. Become a new device that waits
        for its epoch (:attr:`numbering` "waiting"): the events above the central's last
        ack are provisional again and move into the epoch it will be granted, so none is
        lost and none collides with the seqs the central holds (:meth:`grant`)."""
        epoch = self.epoch
        if epoch is None:
            raise JournalError(f"{self.path} has no epoch: nothing to fork from")
        # An ack above our end (taken for a torn tail, journal.lost) may have come before
        # the central's verdict: the events it jumped over are ours too, and not its.
        after = min(self.acked_seq, int(self._meta("acked_before_lost") or self.acked_seq))
        forked = mm.Forked(device=self.device_id, epoch=epoch, after=after,
                           last=self._last_seq)
        try:
            with self._transaction():
                self._set_meta("device", _new_device_id())
                self._drop_meta("epoch", "replaced_by", "acked_before_lost", "written_before_lost")
                self._set_meta("forked", msgspec.json.encode(forked).decode())
                self._set_meta("lost_pending", "[]")
        except sqlite3.Error as exc:
            raise JournalError(f"cannot fork {self.path}: {exc}") from exc
        self._epoch, self._replaced = None, None
        log.error("journal.forked", old_device=forked.device, device=self.device_id,
                  epoch=epoch, after=forked.after, last_seq=forked.last, central_holds=held,
                  detail="this journal is behind the central's copy of its device: it "
                         "waits for the central to hand the day back")
        return forked

    def grant(self, epoch: int, bodies: Sequence[mm.EventBody], *, ts_ms: int,
              clock_synced: bool, restore: bytes | None = None) -> list[mm.Event]:
        """Take the epoch the central granted, and journal ``bodies`` in it; one transaction.

        The events written while waiting were never sent (provisional): they move into
        the epoch, their order kept. ``restore`` (the central's ``restore`` payload) is
        stored with the ``day.restored`` event among ``bodies``.
        """
        if self.epoch is not None:
            raise JournalError(f"{self.path} already numbers in epoch {self.epoch}")
        if not 0 <= epoch <= mm.MAX_EPOCH:
            raise JournalError(f"epoch {epoch} out of range")
        base = mm.epoch_base(epoch)
        forked = self.forked
        floor = 0 if forked is None else forked.after  # provisional above it
        try:
            with self._transaction():
                moved_to = self._move_into(base, floor) if base else self._last_seq
                self._set_meta("epoch", str(epoch))
                self._set_meta("acked_seq", str(base))
                self._drop_meta("acked_before_lost", "written_before_lost")
                self._set_meta("lost_pending", "[]")
                events = self._write(bodies, moved_to, ts_ms=ts_ms, clock_synced=clock_synced,
                                     restore=restore)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot take epoch {epoch} in {self.path}: {exc}") from exc
        self._last_seq = events[-1].seq if events else moved_to
        self._epoch = epoch
        log.info("journal.granted", epoch=epoch, device=self.device_id, last_seq=self._last_seq)
        return events

    def _move_into(self, base: int, floor: int) -> int:
        """Renumber the provisional events (those above ``floor``: every one of a new
        journal, the unacknowledged ones of a forked one) to ``base + 1``, ``base + 2``, ...
        in their order (a forked journal's may have a hole: no seq is skipped in the new
        epoch); returns the last new seq."""
        rows = self._db.execute("SELECT seq, payload FROM events WHERE seq > ? ORDER BY seq",
                                (floor,)).fetchall()
        new_seq = {seq: base + n for n, (seq, _) in enumerate(rows, start=1)}
        moved = []
        for seq, payload in rows:
            event = _EVENT_DECODER.decode(payload)
            moved.append((new_seq[seq], mm.encode(msgspec.structs.replace(
                event, seq=new_seq[seq])), seq))
        self._db.executemany("UPDATE events SET seq = ?, payload = ? WHERE seq = ?", moved)
        for table in ("configs", "ticket_requests", "restores"):
            self._db.executemany(f"UPDATE {table} SET seq = ? WHERE seq = ?",
                                 [(new, old) for old, new in new_seq.items()])
        self._db.execute("DELETE FROM telemetry")  # snapshots of provisional seqs
        return base + len(rows)

    def mark_replaced(self, device: str, epoch: int, *, ts_ms: int,
                      clock_synced: bool) -> list[mm.Event]:
        """Another device numbers the site now: journal ``device.replaced`` and stop."""
        body = mm.DeviceReplaced(device=device, epoch=epoch)
        try:
            with self._transaction():
                self._set_meta("replaced_by", json.dumps([device, epoch]))
                events = self._write([body], self._last_seq, ts_ms=ts_ms,
                                     clock_synced=clock_synced)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot record the replacement in {self.path}: {exc}") from exc
        self._last_seq = events[-1].seq
        self._replaced = (device, epoch)
        log.warning("journal.replaced", by_device=device, epoch=epoch, last_seq=self._last_seq)
        return events

    def restore_payload(self, seq: int) -> bytes:
        row = self._db.execute("SELECT payload FROM restores WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise JournalError(f"day.restored event {seq} has no stored restore")
        return bytes(row[0])

    def next_session(self) -> int:
        """Increment and return the MQTT session counter (kept across reboots)."""
        with self._transaction():
            session = int(self._meta("session") or 0) + 1
            self._set_meta("session", str(session))
        return session

    def broker_session_known(self) -> bool:
        """Whether the broker has accepted a connection of this journal (it keeps the
        MQTT session since; before, any session it keeps is another journal's)."""
        return self._meta("broker_session") == "1"

    def note_broker_session(self) -> None:
        if not self.broker_session_known():
            with self._transaction():
                self._set_meta("broker_session", "1")

    # -- events --------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def append(
        self,
        bodies: Sequence[mm.EventBody],
        *,
        ts_ms: int,
        clock_synced: bool,
        config: tuple[str, str] | None = None,
        input_mark: InputMark | None = None,
        request: RequestKey | None = None,
        restore: bytes | None = None,
    ) -> list[mm.Event]:
        """Write ``bodies`` as consecutive events in one durable transaction and return them.

        ``config`` = (version, text) is stored with a ``config.applied`` body so that
        a replay can use the exact config in force at each point of the day.
        ``input_mark``: the terminal input these events answer, recorded as handled
        in the same transaction (both or neither survive a crash). ``request``: the
        kiosk's idempotency key of the ``ticket.issued`` event among ``bodies``.
        ``restore``: the central's restore taken with the ``day.restored`` event.
        """
        try:
            with self._transaction():
                events = self._write(bodies, self._last_seq, ts_ms=ts_ms,
                                     clock_synced=clock_synced, config=config,
                                     input_mark=input_mark, request=request, restore=restore)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot append to {self.path}: {exc}") from exc
        if events:
            self._last_seq = events[-1].seq
        return events

    def _write(self, bodies: Sequence[mm.EventBody], after: int, *, ts_ms: int,
               clock_synced: bool, config: tuple[str, str] | None = None,
               input_mark: InputMark | None = None, request: RequestKey | None = None,
               restore: bytes | None = None) -> list[mm.Event]:
        """Insert ``bodies`` as events ``after + 1, ...`` inside the caller's transaction
        (the caller moves ``_last_seq`` once it committed)."""
        events = []
        seq = after
        for body in bodies:
            seq += 1
            events.append(mm.Event(site=self.site_id, seq=seq, id=uuid.uuid4(), ts=ts_ms,
                                   clock_synced=clock_synced, body=body))
        try:
            rows = [(e.seq, e.type, e.ts, mm.encode(e)) for e in events]
        except ProtocolError as exc:
            raise JournalError(f"refusing to journal an invalid event: {exc}") from exc
        self._db.executemany(
            "INSERT INTO events (seq, type, ts, payload) VALUES (?, ?, ?, ?)", rows)
        if config is not None:
            self._db.execute("INSERT INTO configs (seq, version, text) VALUES (?, ?, ?)",
                             (self._only(events, mm.ConfigApplied, "a config text"), *config))
        if input_mark is not None:
            self._write_input(input_mark)
        if request is not None:
            self._db.execute(
                "INSERT INTO ticket_requests (key, fingerprint, seq) VALUES (?, ?, ?)",
                (request.key, request.fingerprint,
                 self._only(events, mm.TicketIssued, "a request key")))
        if restore is not None:
            self._db.execute("INSERT INTO restores (seq, payload) VALUES (?, ?)",
                             (self._only(events, mm.DayRestored, "a restore"), restore))
        return events

    @staticmethod
    def _only(events: list[mm.Event], body_type: type[mm.EventBody], what: str) -> int:
        seqs = [e.seq for e in events if isinstance(e.body, body_type)]
        if len(seqs) != 1:
            raise JournalError(f"{what} needs exactly one {body_type.__name__} event")
        return seqs[0]

    def events(self, after_seq: int = 0, limit: int | None = None) -> Iterator[mm.Event]:
        """Events with seq > ``after_seq`` in order."""
        query = "SELECT payload FROM events WHERE seq > ? ORDER BY seq"
        params: tuple[int, ...] = (after_seq,)
        if limit is not None:
            query += " LIMIT ?"
            params = (after_seq, limit)
        for (payload,) in self._db.execute(query, params).fetchall():
            yield _EVENT_DECODER.decode(payload)

    def events_of(self, types: Sequence[str], *, after_seq: int = 0,
                  before_seq: int | None = None) -> Iterator[mm.Event]:
        """Events of the given types with ``after_seq < seq < before_seq``, in seq order
        (by the ``(type, seq)`` index: a month of tickets without the rest)."""
        marks = ", ".join("?" * len(types))
        query = f"SELECT payload FROM events WHERE type IN ({marks}) AND seq > ?"
        params: list[object] = [*types, after_seq]
        if before_seq is not None:
            query += " AND seq < ?"
            params.append(before_seq)
        for (payload,) in self._db.execute(query + " ORDER BY seq", params).fetchall():
            yield _EVENT_DECODER.decode(payload)

    def day_starts(self) -> list[tuple[int, str]]:
        """(seq, day) of every ``day.reset`` still in the journal, oldest first."""
        rows = self._db.execute(
            "SELECT seq, payload FROM events WHERE type = 'day.reset' ORDER BY seq").fetchall()
        starts = []
        for seq, payload in rows:
            body = _EVENT_DECODER.decode(payload).body
            if isinstance(body, mm.DayReset):
                starts.append((int(seq), body.day))
        return starts

    def payloads(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Raw (seq, JSON) rows for the uplink, exactly as first encoded."""
        rows = self._db.execute(
            "SELECT seq, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit)).fetchall()
        return [(int(seq), bytes(payload)) for seq, payload in rows]

    def last_seq_of(self, event_type: str) -> int:
        """Seq of the latest event of ``event_type``, 0 if none."""
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE type = ?",
                               (event_type,)).fetchone()
        return int(row[0])

    def config_at(self, seq: int) -> StoredConfig | None:
        """The config applied last at or before ``seq``."""
        row = self._db.execute(
            "SELECT seq, version, text FROM configs WHERE seq <= ? ORDER BY seq DESC LIMIT 1",
            (seq,)).fetchone()
        return None if row is None else StoredConfig(int(row[0]), str(row[1]), str(row[2]))

    def config_text(self, seq: int) -> str:
        row = self._db.execute("SELECT text FROM configs WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise JournalError(f"config.applied event {seq} has no stored config text")
        return str(row[0])

    # -- terminal inputs -----------------------------------------------------

    def record_input(self, mark: InputMark) -> None:
        """Record a terminal input as handled on its own: one with no effect to journal
        (下一位 with nobody waiting) or refused (CommandRejected)."""
        try:
            with self._transaction():
                self._write_input(mark)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot record an input in {self.path}: {exc}") from exc

    def _write_input(self, mark: InputMark) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO terminal_inputs (device, address, sequence, code, boot) "
            "VALUES (?, ?, ?, ?, ?)",
            (mark.device, mark.address, mark.sequence, mark.code, mark.boot))

    def was_handled(self, mark: InputMark) -> bool:
        """True when ``mark`` is the last input handled for its terminal: the same latched
        input delivered twice (a driver rebuilt by a reload reads again what the old one
        had already queued). A new input always has another sequence."""
        row = self._db.execute(
            "SELECT sequence, code, boot FROM terminal_inputs WHERE device = ? AND address = ?",
            (mark.device, mark.address)).fetchone()
        return row is not None and (int(row[0]), int(row[1]), int(row[2])) == (
            mark.sequence, mark.code, mark.boot)

    def input_marks(self) -> list[InputMark]:
        """The last handled input of each terminal (for the terminal driver at start)."""
        rows = self._db.execute(
            "SELECT device, address, sequence, code, boot FROM terminal_inputs").fetchall()
        return [InputMark(str(d), int(a), int(s), int(c), int(b)) for d, a, s, c, b in rows]

    # -- kiosk requests ------------------------------------------------------

    def issued_for(self, key: str) -> tuple[str, mm.Event] | None:
        """(fingerprint, ticket.issued event) journaled for an idempotency key, or None
        (never seen, or its day was pruned)."""
        row = self._db.execute(
            "SELECT r.fingerprint, e.payload FROM ticket_requests r JOIN events e "
            "ON e.seq = r.seq WHERE r.key = ?", (key,)).fetchone()
        return None if row is None else (str(row[0]), _EVENT_DECODER.decode(row[1]))

    # -- outbox --------------------------------------------------------------

    @property
    def acked_seq(self) -> int:
        return int(self._meta("acked_seq") or 0)

    def ack(self, seq: int) -> int:
        """Record the central's ack (highest contiguous committed seq); returns the new value.

        An ack of another epoch is another device's (or, before this journal has
        an epoch, anyone's): it changes nothing. An ack above the last seq means the
        central holds events this journal lost: the seq floor moves up to it and the
        range waits in :meth:`take_lost`. One more than :data:`MAX_ACK_AHEAD` above
        raises :class:`AckRefused`, changing nothing; it waits in
        :meth:`take_refused_acks`.
        """
        epoch = self.epoch
        if epoch is None or mm.epoch_of(seq) != epoch:
            return self.acked_seq
        if seq - self._last_seq > MAX_ACK_AHEAD:
            self._refused_acks.append(seq)
            raise AckRefused(seq, self._last_seq)
        if seq > self._last_seq:
            lost = (self._last_seq + 1, seq)
            pending = self._lost_pending()
            pending.append(lost)
            with self._transaction():
                self._set_meta("lost_pending", json.dumps(pending))
                if self._meta("acked_before_lost") is None:  # for fork(): see there
                    self._set_meta("acked_before_lost", str(self.acked_seq))
                if self._meta("written_before_lost") is None:  # for reported_seq
                    self._set_meta("written_before_lost", str(self._last_seq))
                self._set_meta("acked_seq", str(seq))
            self._last_seq = seq
            log.error("journal.lost", first_seq=lost[0], last_seq=lost[1],
                      detail="the central holds events this journal no longer has")
            return seq
        new = max(seq, self.acked_seq)
        if new != self.acked_seq:
            with self._transaction():
                self._set_meta("acked_seq", str(new))
                # The central committed an event written after the jump: it has taken this
                # journal's continuation of its stream.
                self._drop_meta("written_before_lost")
        return new

    @property
    def reported_seq(self) -> int:
        """The seq ``state.seq`` reports: the last one this journal wrote, or, after an ack
        moved its floor above its end (``journal.lost``) and until the central commits an
        event it wrote after that, the last one it wrote before: the central then knows it
        is behind (a restored older copy) even when an ack queued for the device it copies
        reached it first."""
        written = self._meta("written_before_lost")
        return self._last_seq if written is None else int(written)

    def _lost_pending(self) -> list[tuple[int, int]]:
        return [(int(a), int(b)) for a, b in json.loads(self._meta("lost_pending") or "[]")]

    def take_lost(self) -> list[tuple[int, int]]:
        """Seq ranges found lost since the last call (and forget them): for ``journal.lost``."""
        pending = self._lost_pending()
        if pending:
            with self._transaction():
                self._set_meta("lost_pending", "[]")
        return pending

    def take_refused_acks(self) -> list[int]:
        """Acks refused since the last call (and forget them): for ``ack.refused``."""
        refused, self._refused_acks = self._refused_acks, []
        return refused

    def unacked_count(self) -> int:
        return self._last_seq - self.acked_seq

    def telemetry_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0])

    def outbox_depth(self) -> int:
        return self.unacked_count() + self.telemetry_count()

    def push_telemetry(self, payload: bytes) -> int:
        """Queue one telemetry snapshot; returns how many old ones were dropped for room."""
        room = self.outbox_limit - self.unacked_count()
        with self._transaction(durable=False):
            self._db.execute("INSERT INTO telemetry (payload) VALUES (?)", (payload,))
            excess = self.telemetry_count() - max(room, 0)
            dropped = 0
            if excess > 0:
                dropped = self._db.execute(
                    "DELETE FROM telemetry WHERE id IN "
                    "(SELECT id FROM telemetry ORDER BY id LIMIT ?)", (excess,)).rowcount
                self._set_meta("dropped", str(int(self._meta("dropped") or 0) + dropped))
        if dropped:
            log.warning("outbox.telemetry_dropped", count=dropped, limit=self.outbox_limit)
        return dropped

    def telemetry(self, limit: int) -> list[tuple[int, bytes]]:
        rows = self._db.execute("SELECT id, payload FROM telemetry ORDER BY id LIMIT ?",
                                (limit,)).fetchall()
        return [(int(row_id), bytes(payload)) for row_id, payload in rows]

    def remove_telemetry(self, ids: Sequence[int]) -> None:
        with self._transaction(durable=False):
            self._db.executemany("DELETE FROM telemetry WHERE id = ?", [(i,) for i in ids])

    def take_dropped(self) -> int:
        """How many telemetry snapshots were dropped since the last call (and reset)."""
        dropped = int(self._meta("dropped") or 0)
        if dropped:
            with self._transaction():
                self._set_meta("dropped", "0")
        return dropped

    # -- pruning -------------------------------------------------------------

    def prune(self, before_day: str) -> int:
        """Delete the events of business days before ``before_day`` (``YYYY-MM-DD``)
        that the central has acknowledged; returns how many were deleted.

        A day runs from its ``day.reset`` to the next one. Today (from the latest
        ``day.reset``) and anything above ``acked_seq`` are kept whatever their age,
        as is the config in force at the first event kept (a replay needs it).
        """
        resets = self.day_starts()
        if not resets:
            return 0
        kept = len(resets) - 1  # today's day.reset: never pruned
        for index, (_, day) in enumerate(resets):
            if day >= before_day:
                kept = min(kept, index)
                break
        # The events before the first day.reset (the config journaled at the very first
        # start) open that first day: they go only with it.
        boundary = 1 if kept == 0 else int(resets[kept][0])
        through = min(boundary - 1, self.acked_seq)
        if through <= int(self._meta("pruned_through") or 0):
            return 0
        try:
            with self._transaction():
                deleted = self._db.execute("DELETE FROM events WHERE seq <= ?",
                                           (through,)).rowcount
                in_force = self._db.execute("SELECT MAX(seq) FROM configs WHERE seq <= ?",
                                            (through,)).fetchone()[0]
                if in_force is not None:
                    self._db.execute("DELETE FROM configs WHERE seq < ?", (in_force,))
                self._db.execute("DELETE FROM ticket_requests WHERE seq <= ?", (through,))
                self._set_meta("pruned_through", str(through))
        except sqlite3.Error as exc:
            raise JournalError(f"cannot prune {self.path}: {exc}") from exc
        log.info("journal.pruned", events=deleted, through_seq=through, before_day=before_day)
        if deleted:
            self._reclaim()
        return int(deleted)

    VACUUM_MAX_BYTES = 64 * 1024 * 1024  # a one-off VACUUM of an older journal up to this

    def _reclaim(self) -> None:
        """Give the freed pages back to the file system, and empty the WAL."""
        try:
            if int(self._db.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2:  # INCREMENTAL
                # executescript steps the pragma to the end (execute frees one page).
                self._db.executescript("PRAGMA incremental_vacuum;")
            elif self.path.stat().st_size <= self.VACUUM_MAX_BYTES:
                self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                self._db.execute("VACUUM")  # converts the file; later prunes are incremental
                log.info("journal.vacuumed", bytes=self.path.stat().st_size)
            else:  # SQLite reuses the free pages; the file just does not shrink
                log.warning("journal.not_vacuumed", bytes=self.path.stat().st_size,
                            detail="too large for a VACUUM at the day reset")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except (sqlite3.Error, OSError) as exc:  # space stays allocated; nothing is lost
            log.warning("journal.reclaim_failed", error=str(exc))

    def size_bytes(self) -> int:
        """The journal file and its WAL, on disk."""
        wal = Path(f"{self.path}-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    # -- plumbing ------------------------------------------------------------

    class _Tx:
        def __init__(self, db: sqlite3.Connection, durable: bool) -> None:
            self.db = db
            self.durable = durable

        def __enter__(self) -> None:
            if not self.durable:
                # Telemetry may be lost in a power cut; it need not cost an fsync.
                self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            try:
                self.db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                if not self.durable:
                    self.db.execute("PRAGMA synchronous=FULL")

    def _transaction(self, durable: bool = True) -> Journal._Tx:
        return Journal._Tx(self._db, durable)


__all__ = ["MAX_ACK_AHEAD", "Journal", "Numbering", "RequestKey", "StoredConfig"]


def _new_device_id() -> str:
    return uuid.uuid4().hex[:16]

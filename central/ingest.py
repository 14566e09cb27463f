"""MQTT ingest: validate, commit in batches, deduplicate, acknowledge, fold live state.

Two layers:

* :class:`IngestProcessor` is synchronous and knows no MQTT: it takes a batch
  of :class:`Received` publishes and, in ONE transaction, counts the bad ones
  per (site, reason), inserts events deduplicated on (site_id, seq), advances
  each site's highest contiguous seq and records gaps, folds state, events and
  telemetry into the live tables, and raises/clears alarms. It returns the
  acks to publish and the alarm notifications to send — both only after the
  commit, so an ``ack`` never covers an event that is not durable.
* :class:`MqttIngest` is the broker connection (MQTT 5, on the asyncio loop:
  :mod:`central.mqtt_client`): persistent session, shared subscriptions
  ``$share/{group}/onedoor/v1/+/{event,telemetry,cmd_result,advice}`` so replicas
  split the load, and a plain subscription to ``onedoor/v1/+/state`` (low volume,
  and brokers do not send retained messages to shared subscriptions).

Several replicas may commit events of one site concurrently: the site row is
locked (``SELECT ... FOR UPDATE`` on PostgreSQL, the single writer on SQLite)
in site-id order, and the contiguous seq is computed from the events table, so
it only ever grows and never skips a missing event.

Device identity (:mod:`central.lease`): states are kept per device, and the
device that speaks for the site gives it its presence; each device's events are
in its own epoch of seqs. The holder's epoch is acknowledged on the site row and
folded into the live state; a replaced device's epoch is acknowledged on its
``site_devices`` row, stored and counted, and only hands late tickets on.
Leases and restores to publish come back in :class:`BatchOutcome` with the acks.
"""

from __future__ import annotations

import ssl
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, cast

import msgspec
import structlog
from sqlalchemy import Table, bindparam, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session, sessionmaker

from central import mqtt_wire as wire
from central.advice import apply_advice
from central.alarms import AlarmBook, Notification
from central.bookings import record_check_in, record_no_show
from central.buckets import Buckets
from central.config import CentralConfig
from central.lease import SiteLeases, epoch_top
from central.models import (
    AlarmType,
    Command,
    CommandStatus,
    Device,
    Diagnostics,
    EventRecord,
    HelpCall,
    IngestReject,
    SequenceGap,
    Service,
    Severity,
    Site,
    SiteDevice,
    UtcDateTime,
    Window,
)
from central.mqtt_client import ConnectOptions, MqttClient
from central.progress import ticket_link_row
from central.ratings import fold_rating_event
from central.stages import StageClock
from central.telemetry import EmbeddedTelemetrySink, Point, TelemetrySink, points_from_telemetry
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.mqtt_topics import (
    TOPICS,
    InvalidMessage,
    Kind,
    Reason,
    ack_topic,
    central_subscriptions,
)

log = structlog.get_logger(__name__)

UNKNOWN_SITE: Final = "unknown_site"
"""Ingest-level reject reason (beside :class:`Reason`): valid payload, site not in the registry."""
INTERNAL: Final = "internal"
"""Ingest-level reject reason: the payload was valid but storing it failed (a bug; logged)."""
RATE_LIMITED: Final = "rate_limited"
"""Ingest-level reject reason: a site over its message rate (:class:`SiteRateLimiter`)."""
RETIRED_SITE: Final = "retired_site"
"""Ingest-level reject reason: the site was retired from the registry (its edge still talks).
Nothing of it is stored or acknowledged, so its edge keeps its events for a restore."""
GAP_SCAN_LIMIT: Final = 10_000
"""Seqs read above the contiguous point per site and batch to find gaps."""


@dataclass(slots=True)
class Received:
    """One publish as it came off the wire.

    ``admitted`` is the rate limiter's verdict, given once: a batch retried after a
    database error, or split up after a failure, is not charged to its site again.
    """

    topic: str
    payload: bytes
    received_at: datetime
    admitted: bool | None = field(default=None, compare=False)


@dataclass(slots=True)
class BatchOutcome:
    acks: dict[str, int] = field(default_factory=dict)
    """Site -> highest contiguous committed seq, for every site that sent events."""
    notifications: list[Notification] = field(default_factory=list)
    events_stored: int = 0
    events_duplicate: int = 0
    events_seq_reused: int = 0
    """Duplicates whose event id differs from the committed one: the edge reused a seq."""
    rejected: int = 0
    points: list[Point] = field(default_factory=list)
    """Telemetry points for a sink that is not written inside the transaction."""
    stream_acks: list[tuple[str, int]] = field(default_factory=list)
    """(site, seq) acks of replaced devices' epochs (``acks`` are the holders')."""
    publishes: list[mm.Publish] = field(default_factory=list)
    """Leases and restores (:mod:`central.lease`), to publish after the commit."""


_PG_INSERT_EVENTS: Final = text(
    "INSERT INTO events (site_id, seq, event_id, type, ts_ms, clock_synced, received_at, body) "
    "SELECT r.site_id, r.seq, r.event_id, r.type, r.ts_ms, r.clock_synced, :received_at, r.body "
    "FROM json_to_recordset(CAST(:rows AS json)) AS r(site_id varchar, seq bigint, "
    "event_id uuid, type varchar, ts_ms bigint, clock_synced boolean, body json) "
    "ON CONFLICT (site_id, seq) DO NOTHING RETURNING site_id, seq"
).bindparams(bindparam("received_at", type_=UtcDateTime()))
"""One statement of constant text for the whole batch: the rows travel as one JSON
array (encoded by msgspec) and PostgreSQL unpacks them. A multi-row ``VALUES`` has a
new text for every batch size, which psycopg parses again each time (its largest
cost per event in the profile)."""


def insert_events(session: Session, events: Iterable[tuple[str, mm.Event]],
                  received_at: datetime) -> set[tuple[str, int]]:  # fmt: skip
    """Insert events, skipping any (site_id, seq) already stored; the keys inserted."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        rows = _ROWS_ENCODER.encode([
            {"site_id": site_id, "seq": e.seq, "event_id": e.id, "type": e.type, "ts_ms": e.ts,
             "clock_synced": e.clock_synced, "body": stored_body(e.body)}
            for site_id, e in events
        ]).decode()  # fmt: skip
        result = session.execute(_PG_INSERT_EVENTS, {"rows": rows, "received_at": received_at})
        return {(site_id, seq) for site_id, seq in result}
    if dialect != "sqlite":
        raise NotImplementedError(f"ingest needs SQLite or PostgreSQL, not {dialect}")
    statement = (
        sqlite.insert(cast(Table, EventRecord.__table__))  # Core: no ORM bulk overhead
        .on_conflict_do_nothing(index_elements=["site_id", "seq"])
        .returning(EventRecord.site_id, EventRecord.seq)
    )
    values = [
        {"site_id": site_id, "seq": e.seq, "event_id": e.id, "type": e.type, "ts_ms": e.ts,
         "clock_synced": e.clock_synced, "received_at": received_at,
         "body": stored_body(e.body)}
        for site_id, e in events
    ]  # fmt: skip
    return {(site_id, seq) for site_id, seq in session.execute(statement, values)}


_ROWS_ENCODER: Final = msgspec.json.Encoder()


class SiteRateLimiter:
    """Token buckets per (site, telemetry or not): one flooding site cannot starve the rest.

    Over-limit publishes are dropped before decoding and counted as ``rate_limited``
    rejects. Dropping an event is safe: the edge keeps it until acked and resends.
    Buckets run on the publishes' receive times, so the limiter is a pure function
    of its input (testable without a clock).
    """

    def __init__(self, config: CentralConfig) -> None:
        self._buckets = {
            True: Buckets(config.rate_telemetry_per_s, config.rate_telemetry_burst),
            False: Buckets(config.rate_messages_per_s, config.rate_messages_burst),
        }

    def allow(self, topic: str, at: float) -> bool:
        parts = topic.split("/", 4)
        if len(parts) < 4:
            return True  # not a contract topic: decoding rejects it with its own reason
        return not self._buckets[parts[3] == Kind.TELEMETRY.value].take(parts[2], at)


JOURNAL_DEVICE: Final = "journal"  # the device of a journal.lost alarm


def _window_key(number: int) -> str:
    return f"window-{number}"


class IngestProcessor:
    """Turns batches of received publishes into committed rows (see the module docstring)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: CentralConfig,
        sink: TelemetrySink | None = None,
    ) -> None:
        self._sessions = sessions
        self._config = config
        self._sink = sink
        self._known_sites: set[str] = set()
        self._limiter = SiteRateLimiter(config)
        self.leases = SiteLeases(behind_after_s=config.journal_behind_after_s)
        """Device identity, epochs and takeovers (also the service's takeover)."""
        self.stages = StageClock()
        """CPU seconds per stage, summed over every batch (:mod:`central.stages`)."""

    # ------------------------------------------------------------------ entry point

    def process(self, batch: Sequence[Received], now: datetime | None = None) -> BatchOutcome:
        now = now or datetime.now(UTC)
        clock = self.stages
        clock.start()
        outcome = BatchOutcome()
        rejects: dict[tuple[str, str], list[Any]] = {}
        incoming: list[mm.Incoming] = []
        for item in batch:
            if item.admitted is None:
                item.admitted = self._limiter.allow(item.topic, item.received_at.timestamp())
            if not item.admitted:
                site = item.topic.split("/", 4)[2][:64]
                self._count_reject(rejects, site, RATE_LIMITED, "over the site's rate", now)
                continue
            try:
                incoming.append(mm.decode_publish(item.topic, item.payload))
            except InvalidMessage as exc:
                self._count_reject(rejects, exc.site_id or "", exc.reason.value, exc.detail, now)
                log.warning(
                    "ingest.rejected",
                    site=exc.site_id,
                    reason=exc.reason.value,
                    detail=exc.detail[:200],
                    topic=item.topic[:120],
                )
        clock.lap("decode")
        with self._sessions.begin() as session:
            incoming = self._drop_unknown_sites(session, incoming, rejects, now)
            self._apply(session, incoming, now, outcome, rejects)
            self._store_rejects(session, rejects)
            clock.lap("rejects")
        clock.lap("commit")  # the flush of the changed rows and COMMIT
        outcome.rejected = sum(entry[0] for entry in rejects.values())
        if outcome.points and self._sink is not None:
            self._sink.write(outcome.points)
            clock.lap("telemetry")
        return outcome

    def process_one_by_one(self, batch: Sequence[Received], now: datetime) -> BatchOutcome:
        """Fallback when a batch fails: isolate the publish that breaks storing."""
        total = BatchOutcome()
        for item in batch:
            try:
                part = self.process([item], now)
            except Exception as exc:  # a bug must not stop ingest: counted, logged
                # A plain traceback string: fast to render, one JSON field in journald.
                log.error(
                    "ingest.internal_error",
                    topic=item.topic[:120],
                    error=repr(exc)[:400],
                    traceback=traceback.format_exc(limit=8),
                )
                with self._sessions.begin() as session:
                    site = item.topic.split("/")[2] if item.topic.count("/") >= 3 else ""
                    self._store_rejects(
                        session, {(site[:64], INTERNAL): [1, now, now, repr(exc)[:400]]}
                    )
                total.rejected += 1
                continue
            total.acks.update(part.acks)
            total.stream_acks += part.stream_acks
            total.publishes += part.publishes
            total.notifications += part.notifications
            total.events_stored += part.events_stored
            total.events_duplicate += part.events_duplicate
            total.events_seq_reused += part.events_seq_reused
            total.rejected += part.rejected
        return total

    # ------------------------------------------------------------------ rejects

    @staticmethod
    def _count_reject(rejects: dict[tuple[str, str], list[Any]], site: str, reason: str,
                      detail: str, now: datetime) -> None:  # fmt: skip
        entry = rejects.get((site, reason))
        if entry is None:
            rejects[(site, reason)] = [1, now, now, detail[:400]]
        else:
            entry[0] += 1
            entry[2] = now
            entry[3] = detail[:400]

    @staticmethod
    def _store_rejects(session: Session, rejects: dict[tuple[str, str], list[Any]]) -> None:
        for (site, reason), (count, first, last, detail) in sorted(rejects.items()):
            row = session.get(IngestReject, (site, reason))
            if row is None:
                session.add(
                    IngestReject(
                        site_id=site,
                        reason=reason,
                        count=count,
                        first_at=first,
                        last_at=last,
                        last_detail=detail,
                    )
                )
            else:
                row.count += count
                row.last_at = last
                row.last_detail = detail

    def _drop_unknown_sites(self, session: Session, incoming: list[mm.Incoming],
                            rejects: dict[tuple[str, str], list[Any]],
                            now: datetime) -> list[mm.Incoming]:  # fmt: skip
        unseen = {i.site_id for i in incoming} - self._known_sites
        if unseen:
            self._known_sites.update(
                session.scalars(select(Site.id).where(Site.id.in_(sorted(unseen))))
            )
        kept = []
        for item in incoming:
            if item.site_id in self._known_sites:
                kept.append(item)
            else:
                self._count_reject(
                    rejects, item.site_id, UNKNOWN_SITE, "site not in the registry", now
                )
                log.warning("ingest.unknown_site", site=item.site_id, kind=item.kind.value)
        return kept

    def _drop_retired_sites(self, sites: dict[str, Site], incoming: list[mm.Incoming],
                            rejects: dict[tuple[str, str], list[Any]],
                            now: datetime) -> list[mm.Incoming]:  # fmt: skip
        """Refuse (and count) what retired sites send; checked on the locked rows, so a
        retirement committed by any replica takes effect at the next batch."""
        retired = {site_id for site_id, site in sites.items() if site.retired_at is not None}
        if not retired:
            return incoming
        for site_id in retired:
            del sites[site_id]
        kept = []
        for item in incoming:
            if item.site_id in retired:
                self._count_reject(rejects, item.site_id, RETIRED_SITE,
                                   "site retired from the registry", now)  # fmt: skip
                log.warning("ingest.retired_site", site=item.site_id, kind=item.kind.value)
            else:
                kept.append(item)
        return kept

    # ------------------------------------------------------------------ the batch

    def _apply(self, session: Session, incoming: list[mm.Incoming], now: datetime,
               outcome: BatchOutcome,
               rejects: dict[tuple[str, str], list[Any]]) -> None:  # fmt: skip
        if not incoming:
            return
        site_ids = sorted({i.site_id for i in incoming})
        # Lock the touched sites in a fixed order (replicas never deadlock on each other).
        sites = {
            s.id: s
            for s in session.scalars(
                select(Site).where(Site.id.in_(site_ids)).order_by(Site.id).with_for_update()
            )
        }
        clock = self.stages
        clock.lap("sites.lock")
        incoming = self._drop_retired_sites(sites, incoming, rejects, now)
        if not incoming:
            return
        site_ids = sorted(sites)
        book = AlarmBook(session, now)
        book.preload(set(site_ids))
        clock.lap("alarms.load")
        for site in sites.values():
            site.last_seen_at = now

        events = [(i.site_id, i.message) for i in incoming if isinstance(i.message, mm.Event)]
        states = [(i.site_id, i.message) for i in incoming if isinstance(i.message, mm.State)]
        snapshots = [
            (i.site_id, i.message) for i in incoming if isinstance(i.message, mm.Telemetry)
        ]
        results = [i.message for i in incoming if isinstance(i.message, mm.CmdResult)]
        reports = [i.message for i in incoming if isinstance(i.message, mm.Diagnostics)]
        advice = [i.message for i in incoming if isinstance(i.message, mm.Advice)]

        for site_id, state in states:
            self._apply_state(session, sites[site_id], state, book, now, outcome)
        clock.lap("state")
        if events:
            self._store_events(session, sites, events, book, now, outcome)
        if snapshots:
            self._apply_telemetry(session, sites, snapshots, book, now, outcome)
            clock.lap("telemetry")
        for result in results:
            self._apply_cmd_result(session, result, now)
        for report in reports:
            self._apply_diagnostics(session, report, now)
        for message in advice:  # the newest of a site wins (central/advice.py)
            apply_advice(session, sites[message.site], message, book, now)
        # Any contact from an online site ends an offline-by-silence alarm.
        for site in sites.values():
            if site.online:
                alarm = book.active(site.id, AlarmType.SITE_OFFLINE)
                if alarm is not None and alarm.detail.get("cause") == "silence":
                    book.clear(site.id, AlarmType.SITE_OFFLINE, note="heard from again")
        outcome.notifications = book.notifications
        clock.lap("commands")

    # ------------------------------------------------------------------ state

    def _apply_state(self, session: Session, site: Site, state: mm.State, book: AlarmBook,
                     now: datetime, outcome: BatchOutcome) -> None:  # fmt: skip
        """One device's state; the site's presence follows the device that speaks for it."""
        speaker = self.leases.apply_state(session, site, state, book, now, outcome.publishes)
        if speaker is None or speaker.state is None or speaker.state == site.state:
            return
        state = msgspec.convert(speaker.state, mm.State)
        online = state.status == "online"
        if online != site.online:
            site.status_changed_at = now
        site.state = msgspec.to_builtins(state)
        site.online = online
        site.mqtt_session = state.session
        site.boot_id = state.boot_id
        site.software_version = state.software
        site.clock_synced = state.clock_synced
        self._report_config(site, state.config, book, now)
        if online:
            book.clear(site.id, AlarmType.SITE_OFFLINE, note="online")
        else:
            book.raise_alarm(
                site.id,
                AlarmType.SITE_OFFLINE,
                detail={"cause": "lwt" if state.lwt else "offline", "session": state.session},
            )

    @staticmethod
    def _report_config(site: Site, version: str | None, book: AlarmBook, now: datetime) -> None:
        if version is None or version == site.reported_config_version:
            return
        site.reported_config_version = version
        site.config_version_changed_at = now
        if version == site.expected_config_version:
            book.clear(site.id, AlarmType.CONFIG_DRIFT, note=f"now {version}")

    # ------------------------------------------------------------------ events

    def _store_events(self, session: Session, sites: dict[str, Site],
                      events: list[tuple[str, mm.Event]], book: AlarmBook, now: datetime,
                      outcome: BatchOutcome) -> None:  # fmt: skip
        unique: dict[tuple[str, int], mm.Event] = {}
        reused: list[tuple[str, mm.Event]] = []
        for site_id, event in events:
            first = unique.setdefault((site_id, event.seq), event)
            if first.id != event.id:
                reused.append((site_id, event))
        clock = self.stages
        # Only a site numbering in its current epoch here can hold a forked journal's
        # renumbered events (the copies below, and the numbers issued twice after them).
        numbering = sorted({s for s, q in unique
                            if s in sites and mm.epoch_of(q) == sites[s].epoch})
        forked = self.leases.forked_holders(session, (sites[s] for s in numbering))
        copies = self._forked_copies(session, sites, forked, unique)
        inserted = insert_events(session, ((s, e) for (s, q), e in unique.items()
                                           if (s, q) not in copies), now)
        outcome.events_stored += len(inserted)
        outcome.events_duplicate += len(events) - len(inserted)
        reused += self._reused_seqs(session, [(s, e) for (s, q), e in unique.items()
                                              if (s, q) not in inserted
                                              and (s, q) not in copies])
        if reused:
            self._report_reused_seqs(reused, book, outcome)
        clock.lap("events.dedup")

        by_stream: dict[tuple[str, int], list[int]] = {}
        for site_id, seq in unique:
            by_stream.setdefault((site_id, mm.epoch_of(seq)), []).append(seq)
        replaced: dict[tuple[str, int], SiteDevice] = {}
        for (site_id, epoch), seqs in sorted(by_stream.items()):
            site = sites[site_id]
            if epoch == site.epoch:
                present = {q for s, q in copies if s == site_id}
                outcome.acks[site_id] = self._advance(session, site, site, seqs, now, present)
                continue
            stream = self.leases.stream(session, site_id, epoch)
            if stream is None:  # an epoch nobody was granted here: kept, not acknowledged
                log.warning("ingest.unknown_epoch", site=site_id, epoch=epoch, count=len(seqs))
                continue
            replaced[(site_id, epoch)] = stream
            outcome.stream_acks.append((site_id, self._advance(session, site, stream, seqs, now)))
        clock.lap("events.seq")

        fresh = sorted(((s, q) for s, q in inserted), key=lambda k: (k[0], k[1]))
        live = [(s, unique[(s, q)]) for s, q in fresh if mm.epoch_of(q) == sites[s].epoch]
        if live:
            self._fold_events(session, sites, live, book, now)
            for site_id in sorted({s for s, _ in live} & set(forked)):
                self.leases.forked_numbers(session, sites[site_id], forked[site_id],
                                           [e for s, e in live if s == site_id], book)
        for (site_id, epoch), stream in sorted(replaced.items()):
            late = [unique[(s, q)] for s, q in fresh if s == site_id and mm.epoch_of(q) == epoch]
            self.leases.replaced_events(session, sites[site_id], stream, late, book, now,
                                         outcome.publishes)
        clock.lap("events.fold")

    def _forked_copies(self, session: Session, sites: dict[str, Site],
                       forked: dict[str, mm.Forked],
                       unique: dict[tuple[str, int], mm.Event]) -> set[tuple[str, int]]:
        """Events a forked journal renumbered that the central holds already (by id)."""
        if not forked:
            return set()
        by_site: dict[str, list[mm.Event]] = {}
        for (site_id, seq), event in unique.items():
            if site_id in forked and mm.epoch_of(seq) == sites[site_id].epoch:
                by_site.setdefault(site_id, []).append(event)
        copies = {(site_id, seq) for site_id, events in sorted(by_site.items())
                  for seq in self.leases.copies(session, sites[site_id], forked[site_id],
                                                events)}
        if copies:
            log.info("ingest.forked_copies", count=len(copies),
                     sites=sorted({s for s, _ in copies}))
        return copies

    @staticmethod
    def _reused_seqs(
        session: Session, duplicates: list[tuple[str, mm.Event]]
    ) -> list[tuple[str, mm.Event]]:
        """Duplicates that are not resends: the committed event under that seq has another id.

        A resend carries the same event id. A different id means the edge numbered a new
        event with a seq the central already holds (its journal lost a tail the central
        had committed, and it appended before the central's ack told it so)."""
        by_site: dict[str, dict[int, mm.Event]] = {}
        for site_id, event in duplicates:
            by_site.setdefault(site_id, {})[event.seq] = event
        reused = []
        for site_id, sent in sorted(by_site.items()):
            held = session.execute(
                select(EventRecord.seq, EventRecord.event_id).where(
                    EventRecord.site_id == site_id, EventRecord.seq.in_(sorted(sent)))
            )
            reused += [(site_id, sent[seq]) for seq, event_id in held
                       if event_id != sent[seq].id]
        return reused

    @staticmethod
    def _report_reused_seqs(reused: list[tuple[str, mm.Event]], book: AlarmBook,
                            outcome: BatchOutcome) -> None:  # fmt: skip
        """Dropped, not stored: counted, logged and alarmed so the loss is never silent."""
        outcome.events_seq_reused += len(reused)
        by_site: dict[str, list[int]] = {}
        for site_id, event in reused:
            by_site.setdefault(site_id, []).append(event.seq)
        for site_id, seqs in sorted(by_site.items()):
            log.error("ingest.seq_reused", site=site_id, count=len(seqs), first_seq=min(seqs),
                      last_seq=max(seqs))
            book.raise_alarm(
                site_id,
                AlarmType.DEVICE_FAULT,
                device=JOURNAL_DEVICE,
                severity=Severity.MAJOR,
                message="边缘重用已提交的事件序号，新事件未入库 / edge reused committed seqs: "
                        "its new events were dropped",
                detail={"first_seq": min(seqs), "last_seq": max(seqs), "count": len(seqs)},
            )

    def _advance(self, session: Session, site: Site, stream: Site | SiteDevice,
                 seqs: list[int], now: datetime,
                 present: set[int] | frozenset[int] = frozenset()) -> int:  # fmt: skip
        """Move ``acked_seq`` of one epoch's stream (the site's own for its holder, a
        replaced device's row) over every contiguous committed seq; record what is missing.
        ``present``: seqs of this batch not stored because the central holds them under
        another seq (a forked journal's copies), which count as committed."""
        seqs.sort()
        base = stream.acked_seq
        top = epoch_top(mm.epoch_of(seqs[0]))
        had_gap = stream.max_seq > base
        stream.max_seq = max(stream.max_seq, seqs[-1])
        if not had_gap and seqs[-1] - base == len(seqs) and seqs[0] == base + 1:
            stream.acked_seq = seqs[-1]  # the common case: the batch continues the stream
            return stream.acked_seq
        above = session.scalars(
            select(EventRecord.seq)
            .where(EventRecord.site_id == site.id, EventRecord.seq > base,
                   EventRecord.seq <= top)
            .order_by(EventRecord.seq)
            .limit(GAP_SCAN_LIMIT)
        ).all()
        if present:
            above = sorted({*above, *(q for q in present if q > base)})
        contiguous = base
        for seq in above:
            if seq != contiguous + 1:
                break
            contiguous = seq
        stream.acked_seq = contiguous
        gaps: list[tuple[int, int]] = []
        previous = contiguous
        for seq in above:
            if seq > previous + 1:
                gaps.append((previous + 1, seq - 1))
            previous = max(previous, seq)
        self._record_gaps(session, site, gaps, now, (mm.epoch_base(mm.epoch_of(top)), top))
        return contiguous

    @staticmethod
    def _record_gaps(session: Session, site: Site, gaps: list[tuple[int, int]],
                     now: datetime, within: tuple[int, int]) -> None:  # fmt: skip
        open_rows = {
            (g.first_seq, g.last_seq): g
            for g in session.scalars(
                select(SequenceGap).where(
                    SequenceGap.site_id == site.id, SequenceGap.filled_at.is_(None),
                    SequenceGap.first_seq > within[0], SequenceGap.first_seq <= within[1],
                )
            )
        }
        for key, row in open_rows.items():
            if key not in gaps:
                row.filled_at = now
        for first, last in gaps:
            if (first, last) not in open_rows:
                session.add(
                    SequenceGap(site_id=site.id, first_seq=first, last_seq=last, detected_at=now)
                )
                log.warning("ingest.sequence_gap", site=site.id, first=first, last=last)

    def _fold_events(self, session: Session, sites: dict[str, Site],
                     events: list[tuple[str, mm.Event]], book: AlarmBook,
                     now: datetime) -> None:  # fmt: skip
        site_ids = sorted({s for s, _ in events})
        windows = _rows_by_key(session, Window, Window.number, site_ids)
        devices = _rows_by_key(session, Device, Device.device, site_ids)
        for site_id, event in events:
            body = event.body
            if isinstance(body, mm.DeviceStatus):
                device = devices.get((site_id, body.device))
                if device is None:
                    device = Device(
                        site_id=site_id, device=body.device, kind=body.kind, last_event_seq=0
                    )
                    session.add(device)
                    devices[(site_id, body.device)] = device
                if event.seq > device.last_event_seq:
                    device.last_event_seq = event.seq
                    self._device_health(book, device, body.kind, body.status, body.detail, now)
            elif window_number := getattr(body, "window", None):
                window = windows.get((site_id, window_number))
                if window is None:
                    window = Window(
                        site_id=site_id, number=window_number, services=[], last_event_seq=0
                    )
                    session.add(window)
                    windows[(site_id, window_number)] = window
                if event.seq > window.last_event_seq:
                    window.last_event_seq = event.seq
                    self._fold_window_event(window, body, book, now)
            self._fold_site_event(session, sites[site_id], event, book, now)

    @staticmethod
    def _fold_window_event(window: Window, body: mm.EventBody, book: AlarmBook,
                           now: datetime) -> None:  # fmt: skip
        key = _window_key(window.number)
        window.updated_at = now
        match body:
            case mm.TicketCalled() | mm.TicketRecalled() | mm.TicketServing():
                window.state, window.ticket = "serving", body.ticket
            case mm.TicketDone() | mm.TicketNoShow() | mm.TicketTransferred():
                window.state, window.ticket = "open", None
                book.clear(window.site_id, AlarmType.SERVING_OVERTIME, key)
            case mm.WindowSignedIn():
                window.state, window.staff = "open", body.staff
            case mm.WindowSignedOut():
                window.state, window.staff, window.ticket = "closed", None, None
                book.clear(window.site_id, AlarmType.SERVING_OVERTIME, key)
            case mm.WindowPaused():
                window.state = "paused"
            case mm.WindowResumed():
                window.state = "open"
            case mm.ServiceOvertime():
                book.raise_alarm(
                    window.site_id,
                    AlarmType.SERVING_OVERTIME,
                    device=key,
                    detail={"ticket": body.ticket, "served_s": body.served_s},
                )
            case _:
                pass  # ratings and other window events do not change the window

    def _fold_site_event(self, session: Session, site: Site, event: mm.Event, book: AlarmBook,
                         now: datetime) -> None:  # fmt: skip
        body = event.body
        match body:
            case mm.TicketIssued() if body.token is not None:  # its progress page
                session.add(ticket_link_row(site.id, event, now))
            case mm.BookingCheckedIn():
                record_check_in(session, site.id, body.code, body.ticket,
                                datetime.fromtimestamp(event.ts / 1000, UTC))
            case mm.TicketNoShow() if not body.requeued:
                record_no_show(session, site.id, body.ticket,
                               datetime.fromtimestamp(event.ts / 1000, UTC))
            case mm.HelpRequested():
                session.add(
                    HelpCall(
                        site_id=site.id,
                        button=body.button,
                        location=body.location,
                        requested_seq=event.seq,
                        requested_at=now,
                    )
                )
            case mm.HelpAcknowledged() | mm.HelpResolved():
                session.flush()
                for call in session.scalars(
                    select(HelpCall).where(
                        HelpCall.site_id == site.id,
                        HelpCall.button == body.button,
                        HelpCall.resolved_at.is_(None),
                        HelpCall.requested_seq < event.seq,
                    )
                ):
                    if call.acknowledged_at is None:
                        call.acknowledged_at = now
                        call.acknowledged_by = getattr(body, "staff", None)
                    if isinstance(body, mm.HelpResolved):
                        call.resolved_at = now
                book.clear(site.id, AlarmType.HELP_UNANSWERED, body.button)
            case mm.HelpEscalated():
                book.raise_alarm(
                    site.id,
                    AlarmType.HELP_UNANSWERED,
                    device=body.button,
                    detail={"waited_s": body.waited_s, "escalated": True},
                )
            case mm.SlaBreached():
                book.raise_alarm(
                    site.id,
                    AlarmType.WAITING_OVER_SLA,
                    device=body.service,
                    detail={"ticket": body.ticket, "waited_s": body.waited_s},
                )
            case mm.ConfigApplied():
                self._report_config(site, body.version, book, now)
            case mm.ConfigRejected():
                book.raise_alarm(
                    site.id,
                    AlarmType.CONFIG_DRIFT,
                    severity=Severity.MAJOR,
                    message="配置被拒绝 / config rejected",
                    detail={"version": body.version, "errors": list(body.errors)},
                )
            case mm.OutboxDropped():
                log.warning("ingest.edge_dropped_telemetry", site=site.id, count=body.count)
            case mm.JournalLost():
                log.warning("ingest.edge_journal_lost", site=site.id, first_seq=body.first_seq,
                            last_seq=body.last_seq)
                book.raise_alarm(
                    site.id,
                    AlarmType.DEVICE_FAULT,
                    device=JOURNAL_DEVICE,
                    severity=Severity.MAJOR,
                    message="边缘日志丢失已上报事件 / edge journal lost committed events",
                    detail={"first_seq": body.first_seq, "last_seq": body.last_seq},
                )
            case mm.DayReset():  # a lost journal tail matters for the day it happened
                book.clear(site.id, AlarmType.DEVICE_FAULT, JOURNAL_DEVICE, note="new day")
            case mm.RatingGiven() | mm.RatingMissed() | mm.RatingReason():
                fold_rating_event(session, site, event, book, now, self._config)
            case _:
                pass

    @staticmethod
    def _device_health(book: AlarmBook, device: Device, kind: str, status: str,
                       detail: str | None, now: datetime) -> None:  # fmt: skip
        if (device.kind, device.status, device.detail) != (kind, status, detail):
            device.changed_at = device.last_seen_at = now
            device.kind, device.status, device.detail = kind, status, detail
        if status == "ok":
            book.clear(device.site_id, AlarmType.DEVICE_FAULT, device.device)
            return
        severity = Severity.WARNING if status == "degraded" else Severity.MAJOR
        book.raise_alarm(
            device.site_id,
            AlarmType.DEVICE_FAULT,
            device=device.device,
            severity=severity,
            detail={"kind": kind, "status": status, "detail": detail},
        )

    # ------------------------------------------------------------------ telemetry

    def _apply_telemetry(self, session: Session, sites: dict[str, Site],
                         snapshots: list[tuple[str, mm.Telemetry]], book: AlarmBook,
                         now: datetime, outcome: BatchOutcome) -> None:  # fmt: skip
        config = self._config
        site_ids = sorted({s for s, _ in snapshots})
        services = _rows_by_key(session, Service, Service.code, site_ids)
        windows = _rows_by_key(session, Window, Window.number, site_ids)
        devices = _rows_by_key(session, Device, Device.device, site_ids)
        now_ms = int(now.timestamp() * 1000)
        points: list[Point] = []
        for site_id, snap in sorted(snapshots, key=lambda item: item[1].ts):
            points += points_from_telemetry(site_id, snap, now_ms)
            site = sites[site_id]
            if site.last_telemetry_ms is not None and snap.ts < site.last_telemetry_ms:
                continue  # an older snapshot overtaken by a newer one: history only
            site.last_telemetry_ms = snap.ts
            seen = snap.outbox.last_seq  # events that reached the snapshot: orders it
            if mm.epoch_of(seen) == site.epoch:  # the holder's: what a takeover may skip
                site.reported_seq = seen
            site.clock_synced = snap.clock_synced
            site.outbox_depth = snap.outbox.depth
            site.host = msgspec.to_builtins(snap.host)
            book.set(not snap.clock_synced, site_id, AlarmType.CLOCK_NOT_SYNCED)
            book.set(
                snap.outbox.depth > config.outbox_backlog,
                site_id,
                AlarmType.OUTBOX_BACKLOG,
                detail={"depth": snap.outbox.depth},
            )
            for queue in snap.queues:
                service = services.get((site_id, queue.service))
                if service is None:
                    service = Service(site_id=site_id, code=queue.service, name=queue.service)
                    session.add(service)
                    services[(site_id, queue.service)] = service
                gauges = (queue.waiting, queue.oldest_wait_s,
                          queue.wait.p50_s if queue.wait else None,
                          queue.wait.p90_s if queue.wait else None)  # fmt: skip
                if gauges != (service.waiting, service.oldest_wait_s, service.wait_p50_s,
                              service.wait_p90_s):  # fmt: skip
                    # Written only when it changed: at province scale an UPDATE per
                    # unchanged row and snapshot was most of the central's CPU.
                    (service.waiting, service.oldest_wait_s, service.wait_p50_s,
                     service.wait_p90_s) = gauges  # fmt: skip
                    service.updated_at = now
                limit = service.sla_s or config.default_sla_s
                book.set(
                    queue.oldest_wait_s > limit,
                    site_id,
                    AlarmType.WAITING_OVER_SLA,
                    device=queue.service,
                    detail={
                        "oldest_wait_s": queue.oldest_wait_s,
                        "sla_s": limit,
                        "waiting": queue.waiting,
                    },
                )
            for stat in snap.windows:
                window = windows.get((site_id, stat.window))
                if window is None:
                    window = Window(
                        site_id=site_id, number=stat.window, services=[], last_event_seq=0
                    )
                    session.add(window)
                    windows[(site_id, stat.window)] = window
                if seen >= window.last_event_seq and (window.state, window.ticket) != (
                    stat.state, stat.ticket
                ):  # else a later event already moved it, or nothing changed
                    window.state, window.ticket, window.updated_at = stat.state, stat.ticket, now
            for dev in snap.devices:
                device = devices.get((site_id, dev.device))
                if device is None:
                    device = Device(
                        site_id=site_id, device=dev.device, kind=dev.kind, last_event_seq=0
                    )
                    session.add(device)
                    devices[(site_id, dev.device)] = device
                if seen >= device.last_event_seq:  # a stale snapshot must not re-raise
                    device.last_event_seq = seen  # its device events are shown already
                    self._device_health(book, device, dev.kind, dev.status, dev.detail, now)
        if isinstance(self._sink, EmbeddedTelemetrySink):
            self._sink.write_in(session, points)
        else:
            outcome.points += points

    # ------------------------------------------------------------------ commands

    @staticmethod
    def _apply_cmd_result(session: Session, result: mm.CmdResult, now: datetime) -> None:
        command = session.get(Command, result.id)
        if command is None or command.site_id != result.site:
            log.warning("ingest.unknown_command_result", site=result.site, id=str(result.id))
            return
        command.status = CommandStatus.SUCCEEDED if result.ok else CommandStatus.FAILED
        command.error = result.error
        command.result_at = now

    @staticmethod
    def _apply_diagnostics(session: Session, report: mm.Diagnostics, now: datetime) -> None:
        """Keep the answer to a ``cmd/diagnostics`` the central sent to that site."""
        command = session.get(Command, report.id)
        if command is None or command.site_id != report.site or command.name != "diagnostics":
            log.warning("ingest.unasked_diagnostics", site=report.site, id=str(report.id))
            return
        row = session.get(Diagnostics, report.id)
        payload = msgspec.to_builtins(report)
        if row is None:
            session.add(Diagnostics(command_id=report.id, site_id=report.site,
                                    device=report.device, received_at=now, report=payload))
        else:
            row.device, row.received_at, row.report = report.device, now, payload


def stored_body(body: mm.EventBody) -> dict[str, Any]:
    """An event body as the events table keeps it: without a progress token (only its
    SHA-256 is kept, in ``ticket_links``: a copied database opens no progress page)."""
    stored: dict[str, Any] = msgspec.to_builtins(body)
    stored.pop("token", None)
    return stored


def _rows_by_key(session: Session, model: Any, key_column: Any,
                 site_ids: Iterable[str]) -> dict[tuple[str, Any], Any]:  # fmt: skip
    rows = session.scalars(select(model).where(model.site_id.in_(list(site_ids))))
    return {(row.site_id, getattr(row, key_column.key)): row for row in rows}


# --------------------------------------------------------------------------- MQTT


class MqttIngest:
    """The broker connection of a central replica (:class:`central.mqtt_client.MqttClient`).

    Subscribes with a persistent session: the shared event/telemetry/cmd_result
    filters (replicas in one ``mqtt_group`` split them) and the plain ``state``
    filter. ``on_received`` gets the publishes of each read from the broker.
    """

    def __init__(
        self,
        config: CentralConfig,
        on_received: Callable[[list[Received]], None],
        *,
        on_connected: Callable[[bool], None] | None = None,
    ) -> None:
        self._on_received = on_received
        self._mqtt5 = config.mqtt_protocol == "5"
        # Shared subscriptions split events among replicas; MQTT 3.1.1 has none.
        group = config.mqtt_group if self._mqtt5 else None
        self.subscriptions = [
            *(s for s in central_subscriptions(group) if not s.filter.endswith("/state")),
            *(s for s in central_subscriptions(None) if s.filter.endswith("/state")),
        ]
        self._client = MqttClient(
            self._options(config),
            [(s.filter, s.qos) for s in self.subscriptions],
            self._received,
            on_connected=on_connected,
        )

    def _options(self, config: CentralConfig) -> ConnectOptions:
        tls = None
        if config.mqtt_tls:
            tls = ssl.create_default_context(cafile=config.mqtt_ca_file or None)
        return ConnectOptions(
            host=config.mqtt_host,
            port=config.mqtt_port,
            client_id=config.mqtt_client_id,
            version=wire.MQTT5 if self._mqtt5 else wire.MQTT311,
            keepalive_s=30,
            username=config.mqtt_username,
            password=config.mqtt_password,
            session_expiry_s=config.mqtt_session_expiry_s,
            tls=tls,
        )

    async def run(self) -> None:
        """Connect and stay connected until :meth:`stop` (a task of the service)."""
        await self._client.run()

    @property
    def receive_cpu_s(self) -> float:
        """CPU seconds spent receiving: parsing reads and writing their PUBACKs."""
        return self._client.receive_cpu_s

    def stop(self) -> None:
        self._client.close()

    @property
    def connected(self) -> bool:
        return self._client.connected

    def _received(self, publishes: list[wire.Publish]) -> None:
        now = datetime.now(UTC)  # one clock read per read from the socket
        self._on_received([Received(p.topic, p.payload, now) for p in publishes])

    def publish_ack(self, site_id: str, seq: int) -> None:
        payload = mm.encode(mm.Ack(site=site_id, seq=seq))
        self._publish(ack_topic(site_id), payload, qos=TOPICS[Kind.ACK].qos)

    def publish(self, publish: mm.Publish) -> None:
        self._publish(publish.topic, publish.payload, qos=publish.qos, retain=publish.retain)

    def _publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain)


def new_command(site_id: str, args: mm.CommandArgs, *, now: datetime, ttl_s: int) -> mm.Cmd:
    issued = int(now.timestamp() * 1000)
    return mm.Cmd(
        site=site_id, id=uuid.uuid4(), issued_ts=issued, expires_ts=issued + ttl_s * 1000, args=args
    )


def reject_counts(session: Session) -> Counter[tuple[str, str]]:
    """Bad payloads per (site, reason), as the central has counted them."""
    return Counter({(r.site_id, r.reason): r.count for r in session.scalars(select(IngestReject))})


__all__ = [
    "INTERNAL",
    "RATE_LIMITED",
    "UNKNOWN_SITE",
    "BatchOutcome",
    "IngestProcessor",
    "MqttIngest",
    "Reason",
    "Received",
    "new_command",
    "reject_counts",
]

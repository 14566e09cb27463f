"""Who numbers a site's tickets: device identity, epochs, takeover and restore.

Each edge journal is a device (``state.device``: a replaced Pi or SD card is a
new one) and numbers its events in an epoch (``seq = epoch << 32 | n``, see the
MQTT contract in ``docs/PROTOCOLS.md``), so two devices' events never share a
seq. The site row says which device holds the site (``sites.holder``) and its
epoch (``sites.epoch``); ``site_devices`` has a row per device that ever spoke
for the site. :class:`SiteLeases` keeps them, inside ingest's transaction:

* **States** are kept per device (a new device's sessions start at 1 again and
  are not older than the old device's), and the device that speaks for the site
  (the holder, or while the holder is offline a new device that waits) gives the
  site its presence: a new device comes online at once.
* **Grants.** A device without an epoch of a site with no history (a new site) is
  granted the site's epoch at once: ``lease`` (retained) and an empty ``restore``.
  A journal from before device identity (epoch 0, events) is adopted as the holder.
  A new device of a site with history waits (alarm ``takeover_pending``) until an
  operator takes the site over to it (:meth:`SiteLeases.takeover`): the central
  never lets two devices number one site by itself.
* **Takeover.** The next epoch goes to the new device; the retained ``lease``
  tells the old one (if it ever comes back) to stop, and the old device's stream
  is acknowledged on its own from then on (:meth:`SiteLeases.stream`). The new
  device gets ``restore``: the day as the central knows it (counters per prefix,
  the tickets still waiting or at a window, the windows signed in), folded from
  the old device's events since its day started (:class:`DayFold`). If the old
  device is online then, the restore waits until it has sent its
  ``device.replaced`` event and everything before it (or goes offline), so that
  no ticket it issued in between is missed. The counters skip the events it
  reported holding that the central never got, plus what the operator asks for.
* **Late events of a replaced device** (it was offline, comes back, sends what
  it held) are stored, acknowledged and counted in the statistics, but do not
  move the site's live state. Tickets among them that are still waiting are
  handed to the holder (another ``restore`` of its epoch: they join its queue);
  a number the holder has issued too raises ``device_conflict`` (critical): the
  limit of fencing a device nobody can reach (``docs/RELIABILITY.md``).
* **Journals behind.** A journal restored from an older copy, or a copied SD card, is
  the holder's device twice. Its online state (``state.seq`` below the last seq held of
  the holder's epoch, or another boot whose session is not above the one held) raises
  ``device_conflict`` and is not taken; the lease names that boot (``lease.behind``), and
  it comes back as a new device that waits for a takeover (:meth:`SiteLeases._fence_behind`).
  Its renumbered events the central holds already are acknowledged, not stored twice
  (:meth:`SiteLeases.copies`). Edges that do not report their seq get the alarm only
  (:func:`_another_copy`).

Publishes (leases, restores) are collected in the caller's list and sent after
the commit, as acks are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
import structlog
from sqlalchemy import or_, select, tuple_
from sqlalchemy.orm import Session

from central.alarms import AlarmBook
from central.errors import Conflict, UnknownDevice, UnknownSite
from central.models import AlarmType, EventRecord, Severity, Site, SiteDevice
from firmware_protocols import mqtt_messages as mm

log = structlog.get_logger(__name__)

LEGACY_DEVICE: Final = ""
"""The ``site_devices`` key of a site's edge from before device identity."""
DAY_STARTS: Final = ("day.reset", "day.restored")
NEW_SITE_GRANT: Final = "中心自动授权（新站点）/ central: a new site"
ADOPTED_GRANT: Final = "中心确认（已在编号）/ central: already numbering"


def epoch_top(epoch: int) -> int:
    """The last seq of ``epoch``."""
    return mm.epoch_base(epoch + 1) - 1


def _ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)


# --------------------------------------------------------------------------- the day


@dataclass(slots=True)
class _Ticket:
    service: str
    klass: str
    issued_ts: int
    key_ts: int
    state: str = "waiting"
    window: int | None = None
    recalls: int = 0
    requeued: bool = False
    transfers: int = 0


@dataclass(slots=True)
class DayFold:
    """A site's day folded from its events: counters, the tickets still in the hall, windows.

    The central's own view for a restore; the edge's dispatcher stays the owner of the
    queue's order (it orders restored tickets by their ``key_ts``).
    """

    day: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    tickets: dict[str, _Ticket] = field(default_factory=dict)
    windows: dict[int, tuple[str, str | None, str | None]] = field(default_factory=dict)
    """window -> (open or paused, staff, ticket held)."""

    @classmethod
    def of(cls, restore: dict[str, Any]) -> DayFold:
        """The day as a restore handed it over (``site_devices.restore``)."""
        fold = cls(day=restore.get("day"))
        for counter in restore.get("counters", []):
            fold.counters[counter["prefix"]] = counter["last"]
        for t in restore.get("tickets", []):
            fold.tickets[t["ticket"]] = _Ticket(t["service"], t["class"], t["issued_ts"],
                                                t["key_ts"], t["state"], t["window"],
                                                t["recalls"], t["requeued"], t["transfers"])
        for w in restore.get("windows", []):
            fold.windows[w["window"]] = (w["state"], w["staff"], w["ticket"])
        return fold

    def apply(self, ts_ms: int, body: mm.EventBody) -> None:
        tickets, windows = self.tickets, self.windows
        match body:
            case mm.DayReset():
                self.day, self.counters, self.tickets, self.windows = body.day, {}, {}, {}
            case mm.TicketIssued():
                prefix = body.ticket.rstrip("0123456789")
                number = int(body.ticket[len(prefix):])
                self.counters[prefix] = max(self.counters.get(prefix, 0), number)
                key = body.booked_ts if body.ticket_class == "appointment" and body.booked_ts \
                    else ts_ms
                tickets[body.ticket] = _Ticket(body.service, body.ticket_class, ts_ms, key)
            case mm.TicketCalled() if body.ticket in tickets:
                ticket = tickets[body.ticket]
                ticket.state, ticket.window = "called", body.window
                self._hold(body.window, body.ticket)
            case mm.TicketRecalled() if body.ticket in tickets:
                tickets[body.ticket].recalls = body.recall
            case mm.TicketServing() if body.ticket in tickets:
                tickets[body.ticket].state = "serving"
            case mm.TicketDone() | mm.TicketCancelled():
                self._leave(tickets.pop(body.ticket, None))
            case mm.TicketNoShow() if body.ticket in tickets:
                ticket = tickets[body.ticket]
                self._leave(ticket)
                if body.requeued:
                    ticket.state, ticket.window, ticket.key_ts = "waiting", None, ts_ms
                    ticket.requeued, ticket.recalls = True, 0
                else:
                    del tickets[body.ticket]
            case mm.TicketTransferred() if body.ticket in tickets:
                ticket = tickets[body.ticket]
                self._leave(ticket)
                ticket.service, ticket.state, ticket.window = body.to_service, "waiting", None
                ticket.recalls, ticket.transfers = 0, min(ticket.transfers + 1, 99)
            case mm.WindowSignedIn():
                held = windows.get(body.window, ("open", None, None))[2]
                windows[body.window] = ("open", body.staff, held)
            case mm.WindowSignedOut():
                windows.pop(body.window, None)
            case mm.WindowPaused() | mm.WindowResumed() if body.window in windows:
                _, staff, held = windows[body.window]
                paused = isinstance(body, mm.WindowPaused)
                windows[body.window] = ("paused" if paused else "open", staff, held)
            case _:
                pass

    def _hold(self, window: int, ticket: str | None) -> None:
        state, staff, _ = self.windows.get(window, ("open", None, None))
        self.windows[window] = (state, staff, ticket)

    def _leave(self, ticket: _Ticket | None) -> None:
        if ticket is not None and ticket.window is not None:
            self._hold(ticket.window, None)

    def restored_tickets(self, only: Iterable[str] | None = None) -> list[mm.RestoredTicket]:
        numbers = set(self.tickets) if only is None else set(only) & set(self.tickets)
        out = []
        for number in sorted(numbers, key=lambda n: self.tickets[n].key_ts):
            t = self.tickets[number]
            klass: mm.TicketClass = t.klass  # type: ignore[assignment]
            state: Any = t.state
            out.append(mm.RestoredTicket(
                ticket=number, service=t.service, ticket_class=klass, issued_ts=t.issued_ts,
                key_ts=t.key_ts, state=state, window=t.window, recalls=min(t.recalls, 99),
                requeued=t.requeued, transfers=t.transfers))
        return out

    def restored_windows(self) -> list[mm.RestoredWindow]:
        out = []
        for number, (state, staff, held) in sorted(self.windows.items()):
            open_or_paused: Any = state
            out.append(mm.RestoredWindow(window=number, state=open_or_paused, staff=staff,
                                         ticket=held if held in self.tickets else None))
        return out[: mm.MAX_WINDOWS]


def restore_parts(site_id: str, device: str, epoch: int, fold: DayFold, *, skipped: int,
                  tickets: Sequence[mm.RestoredTicket], windows: Sequence[mm.RestoredWindow],
                  ts_ms: int) -> list[mm.Restore]:
    """``tickets`` in parts the topic can carry (counters and windows in each)."""
    counters = [mm.PrefixCounter(prefix=p, last=min(n, 9999))
                for p, n in sorted(fold.counters.items())][: mm.MAX_QUEUES]
    size = mm.MAX_RESTORE_TICKETS
    chunks = [tickets[i: i + size] for i in range(0, len(tickets), size)] or [[]]
    return [mm.Restore(site=site_id, device=device, epoch=epoch, day=fold.day, part=n + 1,
                       parts=len(chunks), counters=counters, skipped=min(skipped, 9999),
                       tickets=list(chunk), windows=list(windows), ts=ts_ms)
            for n, chunk in enumerate(chunks[: mm.MAX_RESTORE_PARTS])]


def _record(parts: Sequence[mm.Restore]) -> dict[str, Any]:
    """What ``site_devices.restore`` keeps of a restore (:meth:`DayFold.of` reads it)."""
    first = parts[0]
    record: dict[str, Any] = msgspec.to_builtins(first)
    record["tickets"] = [msgspec.to_builtins(t) for p in parts for t in p.tickets]
    for key in ("v", "site", "part", "parts", "ts"):
        record.pop(key, None)
    return record


# --------------------------------------------------------------------------- the leases


class SiteLeases:
    """Device identity and the site's epoch, inside ingest's transaction (module docstring).

    ``behind_after_s``: events received this recently may have been sent behind the state
    being read (replicas read states and events apart), so a journal is found behind only
    by older ones (``journal_behind_after_s``).
    """

    def __init__(self, *, behind_after_s: float = 30.0) -> None:
        self.behind_after = timedelta(seconds=behind_after_s)

    # -- states ----------------------------------------------------------------

    def apply_state(self, session: Session, site: Site, state: mm.State, book: AlarmBook,
                    now: datetime, out: list[mm.Publish]) -> SiteDevice | None:
        """Take one device's state; returns the device that now speaks for the site (its
        state is the site's presence), or None when the site's presence does not change."""
        device_id = state.device or LEGACY_DEVICE
        row = self._row(session, site.id, device_id, now)
        held = _state_of(row)
        if self._fence_behind(session, site, row, state, held, book, now, out):
            return None
        if held is not None and _another_copy(state, held):
            book.raise_alarm(site.id, AlarmType.DEVICE_CONFLICT, device=device_id,
                             message="同一设备标识在两台机器上运行（复制的SD卡？）/ one device "
                                     "runs twice (a copied SD card?)",
                             detail={"boot_ids": [held.boot_id, state.boot_id],
                                     "session": state.session, "held_session": held.session})
        if not mm.state_supersedes(state, held):
            log.info("ingest.stale_state_ignored", site=site.id, device=device_id,
                     session=state.session, status=state.status)
            return None
        row.state = msgspec.to_builtins(state)
        row.online = state.status == "online"
        row.last_seen_at = now
        if device_id == LEGACY_DEVICE:
            self._legacy_state(site, row, book)
        else:
            self._device_state(session, site, row, state, book, now, out)
        self._pending_alarm(session, site, book)
        pending = self._pending_takeover(session, site)
        if pending is not None and device_id == pending[0] and not row.online:
            self._release(session, site, pending[1], now, out)  # the old holder went away
        return self._speaker(session, site)

    def _held_before(self, session: Session, site: Site, seq: int, ours: int,
                     now: datetime) -> bool:
        """Whether the central holds an event of the holder's epoch in ``(seq, ours]`` that
        it received over ``behind_after`` ago: one the journal sending ``seq`` cannot have
        sent behind its state. (Another replica may commit the events an edge sends right
        after its state before this one reads the state: those are recent.)"""
        return session.scalar(select(EventRecord.seq).where(
            EventRecord.site_id == site.id, EventRecord.seq > seq, EventRecord.seq <= ours,
            EventRecord.received_at <= now - self.behind_after).limit(1)) is not None

    def _fence_behind(self, session: Session, site: Site, row: SiteDevice, state: mm.State,
                      held: mm.State | None, book: AlarmBook, now: datetime,
                      out: list[mm.Publish]) -> bool:
        """A running copy of the holder's journal that is behind the central's: stop it.

        Behind means its last seq is below events the central has held of the holder's
        epoch for ``behind_after`` (a journal restored from an older SD image or
        backup, whose next events would reuse seqs the central holds and whose tickets
        would repeat numbers), or it counts
        no more sessions than the central has seen from another boot of it (an older copy
        that has not numbered yet, or a second copy running beside the first). The lease
        names that boot (``lease.behind``); it becomes a new device that waits for an
        operator's takeover and the day. Its state is not taken: the device's record stays
        the copy the central believes. Edges that do not report their seq cannot be told
        (``device_conflict`` is raised for them as before)."""
        if (state.status != "online" or state.seq is None or state.device is None
                or site.holder != state.device or state.epoch != site.epoch):
            return False
        copy = held is not None and _another_copy(state, held)
        # Above the seq a fence in force was decided at, the stream may hold what the
        # fenced copy sent before it heard: those do not make the copy that stays behind.
        fence = book.active(site.id, AlarmType.DEVICE_CONFLICT, row.device)
        ours = site.max_seq
        if fence is not None and isinstance(fence.detail.get("central_seq"), int):
            ours = min(ours, fence.detail["central_seq"])
        if not copy and not (state.seq < ours and self._held_before(
                session, site, state.seq, ours, now)):
            return False
        running = held is not None and row.online and held.boot_id != state.boot_id
        if running:
            message = ("同一设备在两台机器上同时运行（复制的SD卡？），后连上的一台已停止取号 / "
                       "one device runs on two machines at once (a copied SD card?): the one "
                       "that came later stopped numbering")
        else:
            message = ("设备日志落后于中心（从旧的SD卡镜像或备份恢复？），已停止取号，"
                       "确认接管后中心交还今日号码 / the device's journal is behind the "
                       "central's (restored from an older SD image or backup?): it stopped "
                       "numbering until an operator takes the site over to it and the central "
                       "hands the day back")
        book.raise_alarm(site.id, AlarmType.DEVICE_CONFLICT, device=row.device,
                         message=message,
                         detail={"boot_id": state.boot_id, "journal_seq": state.seq,
                                 "central_seq": ours, "session": state.session,
                                 "held_session": None if held is None else held.session,
                                 "running_beside": running})
        log.error("lease.journal_behind", site=site.id, device=row.device,
                  boot_id=state.boot_id, journal_seq=state.seq, central_seq=ours,
                  session=state.session, running_beside=running)
        out += self._publish_lease(
            site, now, behind=mm.BehindJournal(boot_id=state.boot_id, held=site.max_seq))
        return True

    def _legacy_state(self, site: Site, row: SiteDevice, book: AlarmBook) -> None:
        if site.holder is not None and row.online:
            book.raise_alarm(site.id, AlarmType.DEVICE_CONFLICT, device="legacy",
                             message="无设备标识的旧版边缘程序在线，无法令其停止取号 / an edge "
                                     "without device identity (older software) is online",
                             detail={"holder": site.holder})

    def _device_state(self, session: Session, site: Site, row: SiteDevice, state: mm.State,
                      book: AlarmBook, now: datetime, out: list[mm.Publish]) -> None:
        device_id, claimed = row.device, state.epoch
        if site.holder == device_id:
            if row.online and claimed == site.epoch and state.seq is not None \
                    and state.seq < site.acked_seq:
                # Another copy of this journal (fenced) used seqs this one has not: the ack
                # moves it past them before it numbers an event there (journal.lost).
                out.append(mm.to_publish(mm.Ack(site=site.id, seq=site.acked_seq)))
            if claimed is None and row.online and not row.restore_due:
                out += self._resend(site, row, now)  # the restore never reached it
            elif row.online and (row.restore or {}).get("late"):
                out += self._resend_late(session, site, row, now)
            return
        if claimed is not None and (claimed > site.epoch or (
                site.holder is None and claimed == site.epoch)):
            self._adopt(session, site, row, claimed, now, out)
            return
        if claimed is not None and claimed == site.epoch:
            book.raise_alarm(site.id, AlarmType.DEVICE_CONFLICT, device=device_id,
                             message="两台设备持有同一纪元（复制的日志？）/ two devices claim "
                                     "the site's epoch (a copied journal?)",
                             detail={"holder": site.holder, "epoch": claimed})
            return
        if claimed is not None:
            return  # a replaced device: the retained lease tells it
        if site.holder is None and not self._has_history(session, site, device_id):
            self._grant(session, site, row, now, by=NEW_SITE_GRANT)
            out += self._publish_lease(site, now)
            out += self._send_restore(session, site, row, now)

    def _adopt(self, session: Session, site: Site, row: SiteDevice, epoch: int, now: datetime,
               out: list[mm.Publish]) -> None:
        """A device already numbering in ``epoch``: one from before device identity, or a
        grant the central's database no longer has (restored from an older backup)."""
        if epoch > site.epoch:
            log.warning("lease.epoch_ahead", site=site.id, device=row.device, epoch=epoch,
                        site_epoch=site.epoch, detail="the central's record is older")
            self._hand_on(session, site, now)
            site.epoch = epoch
            site.acked_seq = site.max_seq = mm.epoch_base(epoch)
        site.holder = row.device
        row.epoch, row.granted_at, row.granted_by = epoch, now, ADOPTED_GRANT
        log.info("lease.adopted", site=site.id, device=row.device, epoch=epoch)
        out += self._publish_lease(site, now)

    def _has_history(self, session: Session, site: Site, but: str) -> bool:
        if site.max_seq > mm.epoch_base(site.epoch) or site.epoch > 0:
            return True
        # Another device granted, or an edge without identity (it numbers on its own).
        return session.scalar(
            select(SiteDevice.device).where(
                SiteDevice.site_id == site.id, SiteDevice.device != but,
                or_(SiteDevice.epoch.is_not(None), SiteDevice.device == LEGACY_DEVICE))
            .limit(1)) is not None

    def _pending_alarm(self, session: Session, site: Site, book: AlarmBook) -> None:
        """``takeover_pending`` for each online device that waits for an epoch."""
        for row in self._rows(session, site.id):
            waiting = row.device != LEGACY_DEVICE and row.epoch is None
            if waiting and row.online:
                state = _state_of(row)
                book.raise_alarm(site.id, AlarmType.TAKEOVER_PENDING, device=row.device,
                                 detail={"boot_id": state.boot_id if state else None,
                                         "software": state.software if state else None})
            elif book.active(site.id, AlarmType.TAKEOVER_PENDING, row.device) is not None:
                book.clear(site.id, AlarmType.TAKEOVER_PENDING, row.device,
                           note="granted" if row.epoch is not None else "offline")

    def _speaker(self, session: Session, site: Site) -> SiteDevice | None:
        """The holder while it is online; else the newest online device waiting for the
        site; else the holder (offline)."""
        rows = self._rows(session, site.id)
        holder = next((r for r in rows if r.device == (site.holder or LEGACY_DEVICE)), None)
        if holder is not None and holder.online:
            return holder
        waiting = [r for r in rows if r.online and r.epoch is None and r.device != LEGACY_DEVICE]
        if waiting:
            return max(waiting, key=lambda r: r.last_seen_at)
        return holder

    # -- grants --------------------------------------------------------------

    def takeover(self, session: Session, site_id: str, device: str, *, actor: str, skip: int,
                 now: datetime, book: AlarmBook) -> list[mm.Publish]:
        """An operator lets ``device`` (waiting for an epoch) take the site over."""
        site = session.scalars(select(Site).where(Site.id == site_id).with_for_update()).first()
        if site is None:
            raise UnknownSite(site_id)
        row = session.get(SiteDevice, (site_id, device))
        if row is None or device == LEGACY_DEVICE:
            raise UnknownDevice(device)
        if row.epoch is not None:
            what = "numbers the site" if site.holder == device else "was replaced"
            raise Conflict(f"设备 {device} 不在等待接管 / device {device} {what}; only a device "
                           "waiting for the site can take it over")
        if site.epoch >= mm.MAX_EPOCH:
            raise Conflict(f"site {site_id} has used every epoch")
        old = self._hand_on(session, site, now)
        unsent = 0
        if old is not None and site.reported_seq is not None \
                and mm.epoch_of(site.reported_seq) == old.epoch:
            unsent = max(0, site.reported_seq - old.acked_seq)
        site.epoch += 1
        site.acked_seq = site.max_seq = mm.epoch_base(site.epoch)
        site.reported_seq = None
        self._grant(session, site, row, now, by=actor)
        row.skip = min(skip + unsent, 9999)
        # A holder online may issue tickets until it reads the lease: wait for its last.
        row.restore_due = old is not None and old.online and old.device != LEGACY_DEVICE
        log.warning("lease.takeover", site=site_id, device=device, epoch=site.epoch,
                    replaced=None if old is None else old.device, by=actor, skip=row.skip,
                    unsent=unsent, waits_for_old=row.restore_due)
        out = self._publish_lease(site, now)
        if not row.restore_due:
            out += self._send_restore(session, site, row, now)
        self._pending_alarm(session, site, book)
        return out

    def _hand_on(self, session: Session, site: Site, now: datetime) -> SiteDevice | None:
        """The holder gives the site up: its stream is acknowledged on its own from now."""
        old_id = site.holder if site.holder is not None else LEGACY_DEVICE
        old = session.get(SiteDevice, (site.id, old_id))
        if old is None and site.max_seq > mm.epoch_base(site.epoch):
            old = self._row(session, site.id, LEGACY_DEVICE, now)  # events but never a state
        if old is None:
            return None
        old.epoch = site.epoch if old.epoch is None else old.epoch
        old.acked_seq, old.max_seq, old.replaced_at = site.acked_seq, site.max_seq, now
        old.restore_due = False
        return old

    def _grant(self, session: Session, site: Site, row: SiteDevice, now: datetime,
               by: str) -> None:
        site.holder = row.device
        row.epoch, row.granted_at, row.granted_by = site.epoch, now, by[:100]
        row.replaced_at = None

    @staticmethod
    def _publish_lease(site: Site, now: datetime, *,
                       behind: mm.BehindJournal | msgspec.UnsetType = msgspec.UNSET,
                       ) -> list[mm.Publish]:
        assert site.holder is not None
        return [mm.to_publish(mm.Lease(site=site.id, device=site.holder, epoch=site.epoch,
                                       ts=_ms(now), behind=behind))]

    # -- restores --------------------------------------------------------------

    def _send_restore(self, session: Session, site: Site, row: SiteDevice,
                      now: datetime) -> list[mm.Publish]:
        """Fold the day of the device before ``row`` and hand it over."""
        fold = self._day_before(session, site, row)
        parts = restore_parts(site.id, row.device, site.epoch, fold, skipped=row.skip,
                              tickets=fold.restored_tickets(),
                              windows=fold.restored_windows(), ts_ms=_ms(now))
        row.restore, row.restore_due = _record(parts), False
        log.info("lease.restore", site=site.id, device=row.device, epoch=site.epoch,
                 day=fold.day, tickets=len(fold.tickets), parts=len(parts))
        return [mm.to_publish(part) for part in parts]

    def _resend(self, site: Site, row: SiteDevice, now: datetime) -> list[mm.Publish]:
        fold = DayFold.of(row.restore or {})
        record = row.restore or {}
        tickets = [msgspec.convert(t, mm.RestoredTicket) for t in record.get("tickets", [])]
        windows = [msgspec.convert(w, mm.RestoredWindow) for w in record.get("windows", [])]
        parts = restore_parts(site.id, row.device, site.epoch, fold,
                              skipped=record.get("skipped", 0), tickets=tickets,
                              windows=windows, ts_ms=_ms(now))
        log.info("lease.restore_again", site=site.id, device=row.device, epoch=site.epoch)
        return self._publish_lease(site, now) + [mm.to_publish(part) for part in parts]

    def _resend_late(self, session: Session, site: Site, row: SiteDevice,
                     now: datetime) -> list[mm.Publish]:
        """The tickets handed on late, again at each connection of the holder while its day
        lasts: the site's devices share one broker session, so a restore may have reached
        the replaced device instead (the holder leaves out the numbers it has)."""
        record = row.restore or {}
        last_reset = session.scalar(select(EventRecord.body).where(
            EventRecord.site_id == site.id, EventRecord.type == "day.reset",
            EventRecord.seq > mm.epoch_base(site.epoch)).order_by(EventRecord.seq.desc())
            .limit(1))
        if last_reset is not None and last_reset.get("day") != record.get("day"):
            return []  # its day has moved on: nobody waits for those tickets now
        late = set(record.get("late", []))
        tickets = [msgspec.convert(t, mm.RestoredTicket) for t in record.get("tickets", [])
                   if t["ticket"] in late]
        parts = restore_parts(site.id, row.device, site.epoch, DayFold.of(record), skipped=0,
                              tickets=tickets, windows=[], ts_ms=_ms(now))
        return [mm.to_publish(part) for part in parts]

    def _day_before(self, session: Session, site: Site, row: SiteDevice) -> DayFold:
        """The day as the replaced device left it: its stream since its day started."""
        old = session.scalars(select(SiteDevice).where(
            SiteDevice.site_id == site.id, SiteDevice.epoch.is_not(None),
            SiteDevice.epoch < site.epoch).order_by(SiteDevice.epoch.desc()).limit(1)).first()
        if old is None or old.epoch is None:
            return DayFold()
        return self._fold_stream(session, site.id, old)

    def _fold_stream(self, session: Session, site_id: str, stream: SiteDevice) -> DayFold:
        assert stream.epoch is not None
        base, top = mm.epoch_base(stream.epoch), epoch_top(stream.epoch)
        start = session.scalar(
            select(EventRecord.seq).where(EventRecord.site_id == site_id,
                                          EventRecord.type.in_(DAY_STARTS),
                                          EventRecord.seq > base, EventRecord.seq <= top)
            .order_by(EventRecord.seq.desc()).limit(1))
        if start is None:
            return DayFold()
        fold = DayFold()
        rows = session.execute(
            select(EventRecord.type, EventRecord.ts_ms, EventRecord.body).where(
                EventRecord.site_id == site_id, EventRecord.seq >= start,
                EventRecord.seq <= top).order_by(EventRecord.seq))
        for event_type, ts_ms, body in rows:
            if event_type == "day.restored":
                fold = DayFold.of(stream.restore or {})
                continue
            try:
                fold.apply(ts_ms, msgspec.convert(body, mm.EventBody))
            except msgspec.ValidationError:
                log.warning("lease.bad_event_row", site=site_id, type=event_type)
        return fold

    def _pending_takeover(self, session: Session, site: Site) -> tuple[str, SiteDevice] | None:
        """(the replaced holder, the new holder) while the new one's restore waits."""
        if site.holder is None:
            return None
        row = session.get(SiteDevice, (site.id, site.holder))
        if row is None or not row.restore_due:
            return None
        old = session.scalars(select(SiteDevice).where(
            SiteDevice.site_id == site.id, SiteDevice.epoch == site.epoch - 1)).first()
        return (LEGACY_DEVICE if old is None else old.device), row

    def _release(self, session: Session, site: Site, row: SiteDevice, now: datetime,
                 out: list[mm.Publish]) -> None:
        log.info("lease.old_holder_done", site=site.id, device=row.device)
        out += self._send_restore(session, site, row, now)

    # -- the streams of replaced devices --------------------------------------------

    def stream(self, session: Session, site_id: str, epoch: int) -> SiteDevice | None:
        """The device whose events of ``epoch`` these are (a replaced one)."""
        return session.scalars(select(SiteDevice).where(SiteDevice.site_id == site_id,
                                                        SiteDevice.epoch == epoch)).first()

    def replaced_events(self, session: Session, site: Site, stream: SiteDevice,
                        events: Sequence[mm.Event], book: AlarmBook, now: datetime,
                        out: list[mm.Publish]) -> None:
        """New events of a replaced device (stored and acknowledged already)."""
        pending = self._pending_takeover(session, site)
        if pending is not None and pending[0] == stream.device and self._stopped(
                session, site.id, stream):
            self._release(session, site, pending[1], now, out)
            return  # the restore has every ticket it issued
        issued = [e.body.ticket for e in events if isinstance(e.body, mm.TicketIssued)]
        if not issued or site.holder is None:
            return
        holder = session.get(SiteDevice, (site.id, site.holder))
        if holder is None or holder.restore is None or holder.restore_due:
            return
        fold = self._fold_stream(session, site.id, stream)
        if fold.day is None or fold.day != holder.restore.get("day"):
            return  # another day's tickets: nobody waits for them now
        known = {t["ticket"] for t in holder.restore.get("tickets", [])}
        late = [n for n in issued if n in fold.tickets and n not in known]
        clashes = self._issued_in(session, site.id, late, mm.epoch_base(site.epoch), None)
        for number in clashes:
            book.raise_alarm(site.id, AlarmType.DEVICE_CONFLICT, device=stream.device,
                             severity=Severity.CRITICAL,
                             message=f"号码 {number} 由新旧两台设备各发出一次 / ticket {number} "
                                     "was issued by the replaced device and by the new one",
                             detail={"ticket": number, "replaced": stream.device,
                                     "holder": site.holder})
        handed = [n for n in late if n not in clashes]
        if not handed:
            return
        tickets = fold.restored_tickets(handed)
        parts = restore_parts(site.id, holder.device, site.epoch, fold, skipped=0,
                              tickets=tickets, windows=[], ts_ms=_ms(now))
        record = dict(holder.restore)
        record["tickets"] = [*record.get("tickets", []),
                             *(msgspec.to_builtins(t) for t in tickets)]
        record["late"] = sorted({*record.get("late", []), *handed})
        holder.restore = record
        log.warning("lease.late_tickets", site=site.id, replaced=stream.device,
                    holder=holder.device, tickets=handed)
        out += [mm.to_publish(part) for part in parts]

    @staticmethod
    def _stopped(session: Session, site_id: str, stream: SiteDevice) -> bool:
        """Whether the replaced device's ``device.replaced`` and all before it are here."""
        assert stream.epoch is not None
        return session.scalar(select(EventRecord.seq).where(
            EventRecord.site_id == site_id, EventRecord.type == "device.replaced",
            EventRecord.seq > mm.epoch_base(stream.epoch),
            EventRecord.seq <= stream.acked_seq).limit(1)) is not None

    @staticmethod
    def _issued_in(session: Session, site_id: str, numbers: Iterable[str], after: int,
                   upto: int | None) -> set[str]:
        """Which of ``numbers`` the site's ticket.issued events with a seq above ``after``
        (and up to ``upto``, if given) issued: the holder's own with ``after`` its epoch's
        base, a forked journal's original device's with its seq range."""
        wanted = set(numbers)
        if not wanted:
            return set()
        where = [EventRecord.site_id == site_id, EventRecord.type == "ticket.issued",
                 EventRecord.seq > after]
        if upto is not None:
            where.append(EventRecord.seq <= upto)
        bodies = session.scalars(select(EventRecord.body).where(*where))
        return {b.get("ticket") for b in bodies if b.get("ticket") in wanted}

    @staticmethod
    def forked_holders(session: Session, sites: Iterable[Site]) -> dict[str, mm.Forked]:
        """The sites among ``sites`` whose holder is a journal that was found behind
        (``state.forked``), with where it came from. One query of the holders' rows only,
        and none when no site was ever taken over (a forked journal numbers in an epoch it
        was granted, above 0)."""
        holders = {s.id: s.holder for s in sites if s.holder is not None and s.epoch > 0}
        if not holders:
            return {}
        rows = session.execute(select(SiteDevice.site_id, SiteDevice.device, SiteDevice.state)
                               .where(tuple_(SiteDevice.site_id, SiteDevice.device)
                                      .in_(sorted(holders.items()))))
        forked = {}
        for site_id, device, state in rows:
            if state and state.get("forked"):
                try:
                    forked[site_id] = msgspec.convert(state["forked"], mm.Forked)
                except msgspec.ValidationError:
                    log.warning("lease.bad_forked_state", site=site_id, device=device)
        return forked

    @staticmethod
    def _moved(site: Site, forked: mm.Forked, events: Iterable[mm.Event]) -> list[mm.Event]:
        """Those of ``events`` the forked journal numbered before its grant (moved)."""
        last_moved = mm.epoch_base(site.epoch) + forked.last - forked.after
        return [e for e in events if e.seq <= last_moved]

    def copies(self, session: Session, site: Site, forked: mm.Forked,
               events: Sequence[mm.Event]) -> set[int]:
        """Seqs among ``events`` (the holder's, in its epoch) that the forked journal
        renumbered but the central already holds under the device it forked from (same
        event id): they are acknowledged, not stored twice."""
        candidates = {e.id: e.seq for e in self._moved(site, forked, events)}
        if not candidates:
            return set()
        held = session.scalars(select(EventRecord.event_id).where(
            EventRecord.site_id == site.id, EventRecord.seq > forked.after,
            EventRecord.seq <= epoch_top(forked.epoch),
            EventRecord.event_id.in_(sorted(candidates))))
        return {candidates[event_id] for event_id in held}

    def forked_numbers(self, session: Session, site: Site, forked: mm.Forked,
                       events: Sequence[mm.Event], book: AlarmBook) -> None:
        """Tickets the forked journal issued before the fence (now stored in the holder's
        epoch) whose numbers the copy the central believed had issued too: the one repeat
        fencing cannot prevent, raised as ``device_conflict`` (critical) with the numbers."""
        numbers = {e.body.ticket for e in self._moved(site, forked, events)
                   if isinstance(e.body, mm.TicketIssued)}
        if not numbers or site.holder is None:
            return
        twice = self._issued_in(session, site.id, numbers, forked.after,
                                epoch_top(forked.epoch))
        if not twice:
            return
        alarm = book.active(site.id, AlarmType.DEVICE_CONFLICT, site.holder)
        known = [] if alarm is None else list(alarm.detail.get("tickets", []))
        tickets = sorted({*known, *twice})
        book.raise_alarm(site.id, AlarmType.DEVICE_CONFLICT, device=site.holder,
                         severity=Severity.CRITICAL,
                         message=f"号码 {'、'.join(tickets[:10])} 在日志落后期间被重复发出 / "
                                 f"ticket {', '.join(tickets[:10])} issued twice: by the "
                                 "journal behind, before it was stopped, and by the copy "
                                 "the central held",
                         detail={"tickets": tickets[:200], "forked_from": forked.device})
        log.error("lease.forked_numbers_twice", site=site.id, device=site.holder,
                  tickets=sorted(twice))

    # -- rows ------------------------------------------------------------------

    @staticmethod
    def _row(session: Session, site_id: str, device: str, now: datetime) -> SiteDevice:
        row = session.get(SiteDevice, (site_id, device))
        if row is None:
            row = SiteDevice(site_id=site_id, device=device, epoch=None, first_seen_at=now,
                             last_seen_at=now, online=False, state=None, acked_seq=0,
                             max_seq=0, restore_due=False, skip=0)
            session.add(row)
            session.flush()
        return row

    @staticmethod
    def _rows(session: Session, site_id: str) -> list[SiteDevice]:
        return list(session.scalars(select(SiteDevice).where(SiteDevice.site_id == site_id)))


def _another_copy(new: mm.State, held: mm.State) -> bool:
    """``new`` comes from another copy of the journal ``held`` came from (a copied SD card).

    Each connection of a journal counts its session on, and a reboot is a new connection: an
    online state of another boot whose session is not above the one held cannot be the same
    journal rebooted. (A late Will of an earlier boot is offline, and not counted.)
    """
    return (new.device is not None and new.status == "online"
            and new.boot_id != held.boot_id and new.session <= held.session)


def _state_of(row: SiteDevice) -> mm.State | None:
    if row.state is None:
        return None
    try:
        return msgspec.convert(row.state, mm.State)
    except msgspec.ValidationError:
        return None  # an older schema: the new state wins


__all__ = ["DAY_STARTS", "LEGACY_DEVICE", "DayFold", "SiteLeases", "epoch_top", "restore_parts"]

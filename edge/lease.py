"""Who numbers this site's tickets: this device, not yet, or no more.

A site has one device that numbers its tickets at a time: the one the central
granted the site's current epoch (the MQTT contract's ``lease``, retained). A
new device (a new journal: a replaced Pi or SD card) waits until the central
hands it the day (``restore``: the counters, the queue and the windows as far as
the central knows them) and only then issues tickets; a device that reads a lease
of another device with a higher epoch stops issuing for good and sends what it
holds; a lease that names this process's boot as a copy of the holder's journal behind the
central's (``lease.behind``) makes it a new device that waits (``Journal.fork``).
:class:`SiteLease` takes both messages off the uplink and turns them into
hall changes (:meth:`edge.hall.Hall.take_restore`, :meth:`edge.hall.Hall.replaced`),
and keeps the hall screen saying why no ticket is issued meanwhile.

Restore parts (a big queue comes in several) are put together in memory; a
restore cut short by a lost connection is asked for again on the next one (the
``state`` still says ``epoch`` null).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import structlog

from edge.errors import CommandRejected, JournalError, OutputRefused
from edge.hall import Hall
from edge.outputs import HallOutputs
from fastpath.types import DispatchError
from firmware_protocols import mqtt_messages as mm

log = structlog.get_logger(__name__)

NOTICE_KEY = "numbering"
NOTICES = {
    "waiting": "暂停取号 等待中心确认接管",
    "behind": "日志落后 暂停取号 等待接管",
    "replaced": "本机已被替换 暂停取号",
}
"""The hall screen's notice while this device issues no ticket (GB2312, one line)."""


class SiteLease:
    """The uplink's handler of ``lease`` and ``restore`` (module docstring)."""

    def __init__(self, hall: Hall, outputs: HallOutputs, *, boot_id: str = "",
                 state_changed: Callable[[], None] = lambda: None) -> None:
        self._hall = hall
        self._boot_id = boot_id  # this process: which copy of the journal a verdict means
        self._outputs = outputs
        self._state_changed = state_changed  # republish the retained state (its epoch)
        self._parts: dict[int, mm.Restore] = {}
        self._parts_of: tuple[int, int] | None = None  # (epoch, ts) of the restore in parts
        hall.subscribe(self._after_event)

    @property
    def numbering(self) -> str:
        return self._hall.journal.numbering

    def on_lease(self, lease: mm.Lease) -> None:
        journal = self._hall.journal
        if lease.device == journal.device_id:
            behind = lease.behind
            if isinstance(behind, mm.BehindJournal) and behind.boot_id == self._boot_id:
                self._behind(behind)
                return
            log.info("lease.held", epoch=lease.epoch, numbering=journal.numbering)
            return
        epoch = journal.epoch
        if epoch is None:
            log.info("lease.other_device", device=lease.device, epoch=lease.epoch,
                     detail="this device waits for the central to hand it the site")
            return
        if lease.epoch <= epoch or journal.replaced_by is not None:
            return  # an older lease (or one already obeyed)
        log.warning("lease.replaced", device=lease.device, epoch=lease.epoch, own_epoch=epoch)
        try:
            self._hall.replaced(lease.device, lease.epoch)
        except JournalError as exc:  # the journal will be asked again with the next lease
            log.error("lease.replace_failed", error=str(exc))
            return
        self._state_changed()

    def _behind(self, behind: mm.BehindJournal) -> None:
        """The central holds more of this device than this journal: stop numbering and
        come back as a new device that waits for the day (``Journal.fork``)."""
        try:
            self._hall.journal.fork(behind.held)
        except JournalError as exc:  # asked again at the next connection
            log.error("lease.fork_failed", error=str(exc))
            return
        self.show_notice()
        self._state_changed()

    def on_restore(self, restore: mm.Restore) -> None:
        journal = self._hall.journal
        if restore.device != journal.device_id:
            return  # another device's restore (the topic is the site's)
        key = (restore.epoch, restore.ts)
        if key != self._parts_of:
            self._parts, self._parts_of = {}, key
        self._parts[restore.part] = restore
        if len(self._parts) < restore.parts:
            return
        parts = [self._parts[n] for n in sorted(self._parts)]
        self._parts, self._parts_of = {}, None
        granting = journal.epoch is None
        try:
            events = self._hall.take_restore(parts)
        except (CommandRejected, JournalError, DispatchError) as exc:
            log.error("lease.restore_failed", epoch=restore.epoch, error=str(exc))
            return
        tickets = sum(len(p.tickets) for p in parts)
        log.info("lease.restored", epoch=restore.epoch, granted=granting, day=restore.day,
                 tickets=tickets, journaled=len(events))
        if granting:
            self.show_notice()
            self._state_changed()

    def show_notice(self) -> None:
        """The hall screen says why no ticket is issued, or stops saying it."""
        behind = self.numbering == "waiting" and self._hall.journal.forked is not None
        text = NOTICES.get("behind" if behind else self.numbering)
        if text is None:
            self._outputs.drop_notice(NOTICE_KEY)
            return
        with contextlib.suppress(OutputRefused):  # logged by the outputs
            self._outputs.notice(NOTICE_KEY, text, None)

    def _after_event(self, event: mm.Event) -> None:
        if isinstance(event.body, mm.DayReset | mm.DeviceReplaced):
            self.show_notice()  # a day reset clears the hall screen's notices


__all__ = ["NOTICES", "NOTICE_KEY", "SiteLease"]

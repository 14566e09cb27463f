"""The hall's telemetry snapshot, and the task that queues it with the journal's reports.

Every ``daemon.telemetry_seconds`` :class:`TelemetryReporter` queues a snapshot (only
while this device numbers the site: the site's live state is that device's)
(queues, windows, devices, host, outbox) in the journal's telemetry table, and
journals what the journal found since: telemetry dropped for room
(``outbox.dropped``), seqs the central holds and the journal lost
(``journal.lost``) and acks it refused (``ack.refused``). Then it wakes the uplink.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edge.clock import Clock
from edge.device_set import DeviceSet, device_status_body
from edge.hall import Hall
from edge.uplink import host_stats
from firmware_protocols import mqtt_messages as mm

WAIT_FRESH_MS = 10 * 60_000  # telemetry shows a service's last prediction this long


def telemetry_snapshot(hall: Hall, devices: DeviceSet, clock: Clock) -> mm.Telemetry:
    now = clock.now_ms()
    queues = []
    for service in hall.config.services[:mm.MAX_QUEUES]:
        waiting = hall.dispatcher.waiting(service.id)
        oldest = max(((now - t.issued_ms) // 1000 for t in waiting), default=0)
        latest = hall.latest_wait(service.id)
        fresh = latest is not None and now - latest[1] <= WAIT_FRESH_MS
        queues.append(mm.QueueStat(service=service.id, waiting=len(waiting),
                                   oldest_wait_s=max(0, oldest),
                                   wait=latest[0] if latest is not None and fresh else None))
    windows = []
    for status in hall.dispatcher.windows()[:mm.MAX_WINDOWS]:
        state: mm.WindowState = ("serving" if status.current is not None
                                 else status.state.value)
        windows.append(mm.WindowStat(window=status.number, state=state, ticket=status.current))
    device_stats = [mm.DeviceStat(device=b.device, kind=b.kind, status=b.status, detail=b.detail)
                    for b in map(device_status_body, devices.known_healths()[:mm.MAX_DEVICES])]
    journal = hall.journal
    return mm.Telemetry(
        site=hall.config.site.id, ts=now, clock_synced=clock.synced(), queues=queues,
        windows=windows, devices=device_stats, host=host_stats(journal.path.parent),
        outbox=mm.OutboxStat(depth=journal.outbox_depth(),
                             oldest_unacked_seq=(journal.acked_seq + 1
                                                 if journal.unacked_count() else None),
                             last_seq=journal.last_seq))


class TelemetryReporter:
    """The telemetry task (module docstring)."""

    def __init__(self, hall: Hall, devices: DeviceSet, clock: Clock, *,
                 period_s: Callable[[], float], wake_uplink: Callable[[], None],
                 beat: Callable[[], None]) -> None:
        self._hall = hall
        self._devices = devices
        self._clock = clock
        self._period_s = period_s
        self._wake_uplink = wake_uplink
        self._beat = beat

    def report_journal(self) -> None:
        """Journal what the journal found since the last call (drops, losses, refusals)."""
        hall, journal = self._hall, self._hall.journal
        dropped = journal.take_dropped()
        if dropped:
            hall.report(mm.OutboxDropped(count=dropped))
        for first, last in journal.take_lost():
            hall.report(mm.JournalLost(first_seq=first, last_seq=last))
        refused = journal.take_refused_acks()
        if refused:
            hall.report(mm.AckRefused(ack=max(refused), last_seq=journal.last_seq,
                                      count=min(len(refused), 10_000_000)))

    async def run(self) -> None:
        while True:
            self._beat()
            if self._hall.journal.numbering == "granted":  # the site's live state is the holder's
                snapshot = telemetry_snapshot(self._hall, self._devices, self._clock)
                self._hall.journal.push_telemetry(mm.encode(snapshot))
            self.report_journal()
            self._wake_uplink()
            await asyncio.sleep(self._period_s())


__all__ = ["WAIT_FRESH_MS", "TelemetryReporter", "telemetry_snapshot"]

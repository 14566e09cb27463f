"""A simulated site: builds contract messages the way an edge daemon would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from central.ingest import Received
from firmware_protocols import mqtt_messages as mm

T0_MS = 1_763_882_400_000


@dataclass
class SimSite:
    site_id: str
    session: int = 1
    boot_id: str = "boot-1"
    config: str | None = "cfg-1"
    next_seq: int = 1
    clock_ms: int = T0_MS
    sent: list[mm.Event] = field(default_factory=list)
    device: str | None = None  # the journal's identity; None: an edge from before it
    epoch: int | None = None

    def event(self, body: mm.EventBody, *, seq: int | None = None) -> mm.Event:
        if seq is None:
            seq = self.next_seq
            self.next_seq += 1
        self.clock_ms += 1000
        event = mm.Event(
            site=self.site_id,
            seq=seq,
            id=uuid.uuid4(),
            ts=self.clock_ms,
            clock_synced=True,
            body=body,
        )
        self.sent.append(event)
        return event

    def state(
        self,
        status: Literal["online", "offline"] = "online",
        *,
        lwt: bool = False,
        session: int | None = None,
    ) -> mm.State:
        return mm.State(
            site=self.site_id,
            status=status,
            lwt=lwt,
            boot_id=self.boot_id,
            session=session or self.session,
            software="0.1.0",
            config=self.config,
            ts=self.clock_ms,
            clock_synced=True,
            device=self.device,
            epoch=self.epoch,
        )

    def telemetry(
        self,
        *,
        waiting: int = 2,
        oldest_wait_s: int = 60,
        synced: bool = True,
        outbox: int = 0,
        devices: list[mm.DeviceStat] | None = None,
        windows: list[mm.WindowStat] | None = None,
        last_seq: int | None = None,
    ) -> mm.Telemetry:
        """A snapshot taken now (``last_seq``: the events it has seen, default all sent)."""
        self.clock_ms += 1000
        return mm.Telemetry(
            site=self.site_id,
            ts=self.clock_ms,
            clock_synced=synced,
            queues=[
                mm.QueueStat(
                    service="zonghe", waiting=waiting, oldest_wait_s=oldest_wait_s, wait=None
                )
            ],
            windows=windows
            if windows is not None
            else [
                mm.WindowStat(window=1, state="serving", ticket="Z001"),
                mm.WindowStat(window=2, state="open", ticket=None),
            ],
            devices=devices or [],
            host=mm.HostStat(
                cpu_temp_c=48.5, load1=0.3, mem_used_pct=30.0, disk_used_pct=20.0, uptime_s=3600
            ),
            outbox=mm.OutboxStat(depth=outbox, oldest_unacked_seq=None,
                                 last_seq=self.next_seq - 1 if last_seq is None else last_seq),
        )


def received(*messages: mm.Message, at: datetime | None = None) -> list[Received]:
    """Messages as the ingest receives them off the wire."""
    now = at or datetime.now(UTC)
    out = []
    for message in messages:
        publish = mm.to_publish(message)
        out.append(Received(publish.topic, publish.payload, now))
    return out


def called(ticket: str = "Z001", window: int = 1) -> mm.TicketCalled:
    return mm.TicketCalled(ticket=ticket, window=window)

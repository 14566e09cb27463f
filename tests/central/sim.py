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


def advisory(advisory_id: uuid.UUID | None = None, *, services: tuple[str, ...] = ("zonghe",),
             since_ms: int = T0_MS, move: mm.AdviceMove | None = None) -> mm.Advisory:
    """A staffing advisory as an edge sends it: ``services`` breach, a window opens."""
    move = move or mm.AdviceMove(kind="open", windows=[2], services=list(services), count=1)
    before = [mm.AdviceOutlook(service=s, sla_s=1800, p90_s=2700, over_sla_pct=31.0,
                               breach_pct=94.0, tickets=22.0) for s in services]
    after = [mm.AdviceOutlook(service=s, sla_s=1800, p90_s=1200, over_sla_pct=2.0,
                              breach_pct=4.0, tickets=22.0) for s in services]
    return mm.Advisory(
        id=advisory_id or uuid.uuid4(), since_ts=since_ms, horizon_s=3600,
        breaching=list(services), move=move, before=before, after=after,
        message_zh="未来60分钟综合受理预计p90等候45分钟（时限30分钟）。建议：开启2号窗口，办理综合受理"
                   "（模拟验证后综合受理p90 20分钟）。",
        message_en="Next 60 min: zonghe p90 wait 45 min (SLA 30). Advice: open window 2 for "
                   "zonghe (simulated: zonghe p90 20 min).")


def advice(site_id: str, body: mm.Advisory | None, *, ts: int = T0_MS, session: int = 1,
           ttl_ms: int = 900_000) -> mm.Advice:
    """An ``advice`` message: ``body`` or a clear (None)."""
    return mm.Advice(site=site_id, session=session, ts=ts, clock_synced=True,
                     expires_ts=ts + ttl_ms, advisory=body)


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

"""Retention of events, alarms and commands, on SQLite and PostgreSQL: what is older than its
setting goes, nothing younger, never an active alarm, never an event its edge may resend;
and the service prunes on its own."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralConfig
from central.errors import ConfigError
from central.ingest import IngestProcessor
from central.models import (
    AdviceEnd,
    Alarm,
    AlarmHistory,
    AlarmType,
    Booking,
    BookingStatus,
    Command,
    CommandStatus,
    Diagnostics,
    EventRecord,
    HelpCall,
    SequenceGap,
    Severity,
    Site,
    StaffingAdvisory,
)
from central.retention import Pruned, Retention
from central.service import CentralService
from central.stats import business_date
from tests.central.sim import T0_MS, SimSite, called, received
from tests.servers import MosquittoBroker

T0 = datetime.fromtimestamp(T0_MS / 1000, UTC)
DAY = timedelta(days=1)
NOW = T0 + 40 * DAY
CONFIG = CentralConfig(events_retention_days=30, alarms_retention_days=10,
                       commands_retention_days=5)  # fmt: skip
SITE = "zs-sanxiang-01"
OTHER = "zs-sanxiang-02"


def _ingest(sessions: sessionmaker[Session], site: SimSite, *, at: datetime, count: int,
            skip_seq: int | None = None, ahead_ms: int = 0) -> None:  # fmt: skip
    """``count`` events of ``site`` received at ``at``, their edge clock ``ahead_ms`` ahead."""
    site.clock_ms = int(at.timestamp() * 1000) + ahead_ms
    events = []
    for _ in range(count):
        if skip_seq is not None and site.next_seq == skip_seq:
            site.next_seq += 1  # lost on the way: a gap
        events.append(site.event(called(f"Z{site.next_seq:03d}")))
    IngestProcessor(sessions, CONFIG).process(received(*events, at=at), at)


def _seqs(sessions: sessionmaker[Session], site_id: str) -> list[int]:
    with sessions() as session:
        return list(session.scalars(select(EventRecord.seq).where(EventRecord.site_id == site_id)
                                    .order_by(EventRecord.seq)))  # fmt: skip


def _prune(sessions: sessionmaker[Session], config: CentralConfig = CONFIG, *,
           batch: int = 2) -> Pruned:  # fmt: skip
    retention, total, more = Retention(sessions, config, batch=batch), Pruned(), True
    while more:
        pruned, more = retention.prune_step(NOW)
        total += pruned
    return total


def _alarm(session: Session, site_id: str, device: str, *, raised: datetime,
           cleared: datetime | None) -> None:  # fmt: skip
    alarm = Alarm(site_id=site_id, device=device, type=AlarmType.DEVICE_FAULT,
                  severity=Severity.MAJOR, message="打印机缺纸", detail={}, raised_at=raised,
                  updated_at=cleared or raised, occurrences=1, cleared_at=cleared)  # fmt: skip
    session.add(alarm)
    session.flush()
    session.add(AlarmHistory(alarm_id=alarm.id, at=raised, action="raised",
                             severity=Severity.MAJOR))  # fmt: skip


def _advisory(session: Session, *, raised: datetime, ended: datetime | None) -> None:
    session.add(StaffingAdvisory(
        site_id=SITE, advisory_id=uuid.uuid4(), since_ms=T0_MS, session=1, ts_ms=T0_MS,
        raised_at=raised, updated_at=ended or raised, expires_at=raised + timedelta(minutes=15),
        services=["zonghe"], move=None, outlook={}, message_zh="增派人员", message_en="more staff",
        cleared_at=ended, cleared_by=None if ended is None else AdviceEnd.EDGE))


def _command(session: Session, *, issued: datetime, ttl: timedelta,
             answered: datetime | None = None) -> uuid.UUID:  # fmt: skip
    command_id = uuid.uuid4()
    session.add(Command(id=command_id, site_id=SITE, name="announce", args={}, issued_at=issued,
                        expires_at=issued + ttl, issued_by="ops-li",
                        status=CommandStatus.SUCCEEDED if answered else CommandStatus.EXPIRED,
                        result_at=answered))  # fmt: skip
    return command_id


def test_only_what_is_older_than_its_setting_goes(small_registry: sessionmaker[Session]) -> None:
    cutoff = NOW - 30 * DAY
    site, other = SimSite(SITE), SimSite(OTHER)
    _ingest(small_registry, site, at=cutoff - DAY, count=5)  # 1..5: old, acknowledged: go
    # 6 arrived as long ago, but its edge clock stamped it two days later: young by that clock.
    _ingest(small_registry, site, at=cutoff - DAY, count=1, ahead_ms=2 * 86_400_000)
    _ingest(small_registry, site, at=cutoff, count=2)  # 7, 8: exactly 30 days old: kept
    _ingest(small_registry, site, at=NOW - DAY, count=1)  # 9: young
    # 10 was stamped 35 days ago by its edge, but the central got it yesterday (an edge that
    # was cut off for a month): young by the central's clock, kept.
    _ingest(small_registry, site, at=NOW - DAY, count=1, ahead_ms=-35 * 86_400_000)
    # The other site lost seq 3: 4 and 5 are old but above its acknowledged seq (its edge
    # will send them again, and they must not come back as new): kept; 1 and 2 go.
    _ingest(small_registry, other, at=cutoff - 2 * DAY, count=4, skip_seq=3)
    with small_registry.begin() as session:
        assert session.get_one(Site, OTHER).acked_seq == 2
        _alarm(session, SITE, "printer-old", raised=NOW - 50 * DAY, cleared=NOW - 11 * DAY)
        _alarm(session, SITE, "printer-recent", raised=NOW - 50 * DAY, cleared=NOW - 9 * DAY)
        _alarm(session, SITE, "printer-active", raised=NOW - 300 * DAY, cleared=None)
        for ended in (NOW - 11 * DAY, NOW - 9 * DAY, None):  # staffing advice: as alarms
            _advisory(session, raised=NOW - 50 * DAY, ended=ended)
        gone = _command(session, issued=NOW - 6 * DAY, ttl=timedelta(minutes=10))
        _command(session, issued=NOW - 6 * DAY, ttl=timedelta(minutes=10),
                 answered=NOW - 4 * DAY)  # answered late: that is recent
        _command(session, issued=NOW - 4 * DAY, ttl=timedelta(minutes=10))
        session.add_all([
            SequenceGap(site_id=SITE, first_seq=9, last_seq=9, detected_at=cutoff - 3 * DAY,
                        filled_at=cutoff - 2 * DAY),
            HelpCall(site_id=SITE, button="h1", requested_seq=1, requested_at=cutoff - 3 * DAY,
                     resolved_at=cutoff - 2 * DAY),
            HelpCall(site_id=SITE, button="h2", requested_seq=2, requested_at=cutoff - 3 * DAY),
            *(Booking(code=f"{day:%m%d}000001", site_id=SITE, service="s", day=day.isoformat(),
                      slot_start="09:00", slot_end="09:30", person="p", reference=None,
                      status=BookingStatus.BOOKED, created_at=cutoff - 9 * DAY, created_by=None)
              for day in (business_date(cutoff) - timedelta(days=1), business_date(cutoff))),
        ])  # fmt: skip

    pruned = _prune(small_registry)
    assert pruned.as_dict() == {"events": 7, "sequence_gaps": 1, "help_calls": 1, "alarms": 1,
                                "advisories": 1, "commands": 1, "bookings": 1}  # fmt: skip
    assert _seqs(small_registry, SITE) == [6, 7, 8, 9, 10]
    assert _seqs(small_registry, OTHER) == [4, 5]
    with small_registry() as session:
        devices = session.scalars(select(Alarm.device).order_by(Alarm.device)).all()
        assert devices == ["printer-active", "printer-recent"]
        assert session.scalar(select(func.count()).select_from(AlarmHistory)) == 2  # cascaded
        assert session.get(Command, gone) is None
        assert session.scalar(select(func.count()).select_from(Command)) == 2
        # The other site's gap (seq 3, found by ingest) is still open: kept.
        assert session.scalars(select(SequenceGap.site_id)).all() == [OTHER]
        assert session.scalars(select(HelpCall.button)).all() == ["h2"]  # never resolved
        assert session.scalar(select(func.count()).select_from(StaffingAdvisory)) == 2
    assert not _prune(small_registry)  # nothing more to do


def test_zero_keeps_forever(small_registry: sessionmaker[Session]) -> None:
    _ingest(small_registry, SimSite(SITE), at=NOW - 900 * DAY, count=3)
    with small_registry.begin() as session:
        _alarm(session, SITE, "printer", raised=NOW - 900 * DAY, cleared=NOW - 800 * DAY)
        _command(session, issued=NOW - 900 * DAY, ttl=timedelta(minutes=1))
    forever = CONFIG.replace(events_retention_days=0, alarms_retention_days=0,
                             commands_retention_days=0)  # fmt: skip
    assert not _prune(small_registry, forever)
    assert _seqs(small_registry, SITE) == [1, 2, 3]
    with pytest.raises(ConfigError, match="events_retention_days: must be 0"):
        CentralConfig(events_retention_days=-1)


def test_a_long_history_goes_in_bounded_steps(small_registry: sessionmaker[Session]) -> None:
    """Each step deletes at most a batch; the walk along event ids goes on until the young
    rows, and the next run starts from the oldest again."""
    site = SimSite(SITE)
    _ingest(small_registry, site, at=NOW - 60 * DAY, count=23)
    _ingest(small_registry, site, at=NOW - DAY, count=3)
    retention, steps = Retention(small_registry, CONFIG, batch=5), []
    more = True
    while more:
        pruned, more = retention.prune_step(NOW)
        steps.append(pruned.events)
    assert steps == [5, 5, 5, 5, 3, 0]
    assert _seqs(small_registry, SITE) == [24, 25, 26]
    with small_registry.begin() as session:  # the young ones age: the next run finds them
        session.execute(update(EventRecord).values(received_at=NOW - 31 * DAY,
                                                   ts_ms=T0_MS))  # fmt: skip
    assert retention.prune_step(NOW) == (Pruned(events=3), True)


def test_the_service_prunes_on_its_own(
    mqtt_broker: MosquittoBroker, small_registry: sessionmaker[Session], db_url: str,
    engine: Engine,
) -> None:
    _ingest(small_registry, SimSite(SITE), at=NOW - 60 * DAY, count=3)
    with small_registry.begin() as session:
        _alarm(session, SITE, "printer", raised=NOW - 60 * DAY, cleared=NOW - 20 * DAY)
    config = CONFIG.replace(database_url=db_url, mqtt_host=mqtt_broker.host,
                            mqtt_port=mqtt_broker.port, mqtt_session_expiry_s=0,
                            mqtt_client_id=f"central-{uuid.uuid4().hex[:8]}",
                            mqtt_group=f"g{uuid.uuid4().hex[:8]}", alarm_tick_s=3600.0,
                            retention_interval_s=3600)  # fmt: skip

    async def main() -> None:
        async with CentralService(config, engine=engine, clock=lambda: NOW):
            async with asyncio.timeout(30):  # the retention task runs once at start
                while _seqs(small_registry, SITE):
                    await asyncio.sleep(0.05)

    asyncio.run(main())
    with small_registry() as session:
        assert session.scalar(select(func.count()).select_from(Alarm)) == 0


def test_a_diagnostics_answer_goes_with_its_command(
        small_registry: sessionmaker[Session]) -> None:
    """The edge's diagnostics (up to 64 KiB of status and log lines each) are kept as long as
    the command that asked for them, no longer."""
    with small_registry.begin() as session:
        old = _command(session, issued=NOW - 6 * DAY, ttl=timedelta(minutes=10),
                       answered=NOW - 6 * DAY)
        young = _command(session, issued=NOW - DAY, ttl=timedelta(minutes=10),
                         answered=NOW - DAY)
        session.flush()
        for command_id, at in ((old, NOW - 6 * DAY), (young, NOW - DAY)):
            session.add(Diagnostics(command_id=command_id, site_id=SITE,
                                    device="0123456789abcdef", received_at=at,
                                    report={"logs": []}))
    assert _prune(small_registry).commands == 1
    with small_registry() as session:
        assert session.scalars(select(Diagnostics.command_id)).all() == [young]

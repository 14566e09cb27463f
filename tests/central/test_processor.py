"""IngestProcessor on SQLite and PostgreSQL: dedup, acks, gaps, rejects, live state, alarms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from central.alarms import AlarmBook
from central.config import CentralConfig
from central.ingest import INTERNAL, UNKNOWN_SITE, IngestProcessor, Received, reject_counts
from central.models import (
    Alarm,
    AlarmAction,
    AlarmHistory,
    AlarmType,
    Command,
    CommandStatus,
    EventRecord,
    HelpCall,
    SequenceGap,
    Severity,
    Site,
)
from central.queries import ReadModel
from central.telemetry import EmbeddedTelemetrySink
from central.views import SiteState
from firmware_protocols import mqtt_messages as mm
from tests.central.sim import SimSite, called, received

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SITE = "zs-sanxiang-01"


def _processor(sessions: sessionmaker[Session], **changes: object) -> IngestProcessor:
    config = CentralConfig().replace(**changes)
    return IngestProcessor(sessions, config, EmbeddedTelemetrySink(sessions))


def state(sessions: sessionmaker[Session]) -> SiteState:
    """What the read model holds about the test site."""
    return ReadModel(sessions).site_state(SITE)


def _alarms(sessions: sessionmaker[Session], *, active: bool = True) -> list[Alarm]:
    with sessions() as session:
        query = select(Alarm).order_by(Alarm.id)
        if active:
            query = query.where(Alarm.cleared_at.is_(None))
        return list(session.scalars(query))


def _history(sessions: sessionmaker[Session], alarm_id: int) -> list[AlarmAction]:
    with sessions() as session:
        return list(
            session.scalars(
                select(AlarmHistory.action)
                .where(AlarmHistory.alarm_id == alarm_id)
                .order_by(AlarmHistory.id)
            )
        )


def test_rate_limit_charges_a_retried_batch_once(small_registry: sessionmaker[Session]) -> None:
    """The service retries a batch after a database error: its publishes were already paid for."""
    processor = _processor(small_registry, rate_messages_per_s=0.001, rate_messages_burst=3)
    site = SimSite(SITE)
    batch = received(*(site.event(called(f"Z{n:03d}")) for n in range(1, 4)), at=NOW)
    assert processor.process(batch, NOW).acks == {SITE: 3}
    retried = processor.process(batch, NOW)  # same publishes: duplicates, acked again
    assert (retried.acks, retried.rejected, retried.events_duplicate) == ({SITE: 3}, 0, 3)
    fresh = processor.process(received(site.event(called("Z004")), at=NOW), NOW)
    assert (fresh.acks, fresh.rejected) == ({}, 1)  # a new publish over the burst is dropped
    with small_registry() as session:
        assert reject_counts(session)[(SITE, "rate_limited")] == 1


def test_events_committed_once_and_acked(small_registry: sessionmaker[Session]) -> None:
    processor = _processor(small_registry)
    site = SimSite(SITE)
    events = [site.event(called(f"Z{n:03d}")) for n in range(1, 6)]
    outcome = processor.process(received(*events), NOW)
    assert outcome.acks == {SITE: 5}
    assert (outcome.events_stored, outcome.events_duplicate) == (5, 0)

    again = processor.process(received(*events[2:]), NOW)  # the edge resends 3..5
    assert again.acks == {SITE: 5}
    assert (again.events_stored, again.events_duplicate) == (0, 3)
    with small_registry() as session:
        rows = session.scalars(select(EventRecord).order_by(EventRecord.seq)).all()
        assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
        assert rows[0].type == "ticket.called"
        assert rows[0].body == {"type": "ticket.called", "ticket": "Z001", "window": 1}
        assert rows[0].event_id == events[0].id
        assert rows[0].received_at == NOW
    assert again.events_seq_reused == 0  # resends carry the same ids: no alarm
    assert _alarms(small_registry) == []


def test_a_reused_seq_is_dropped_but_never_silently(small_registry: sessionmaker[Session]) -> None:
    """An edge whose journal lost a tail the central holds numbers new events 2 and 3 again."""
    processor = _processor(small_registry)
    site = SimSite(SITE)
    processor.process(received(*(site.event(called(f"Z{n:03d}")) for n in range(1, 4))), NOW)
    site.next_seq = 2  # the journal's tail (2, 3) is gone after a power cut
    renumbered = [site.event(called(f"Z{n:03d}", window=2)) for n in (2, 3, 4)]
    outcome = processor.process(received(*renumbered), NOW + timedelta(seconds=5))
    assert (outcome.events_stored, outcome.events_duplicate) == (1, 2)
    assert outcome.events_seq_reused == 2
    (alarm,) = _alarms(small_registry)
    assert (alarm.type, alarm.device, alarm.severity) == (
        AlarmType.DEVICE_FAULT, "journal", Severity.MAJOR)
    assert alarm.detail == {"first_seq": 2, "last_seq": 3, "count": 2}
    with small_registry() as session:
        stored = session.scalars(select(EventRecord.event_id).order_by(EventRecord.seq)).all()
    assert stored[1:3] != [e.id for e in renumbered[:2]]  # the central keeps what it had


def test_a_reused_seq_inside_one_batch_is_reported(small_registry: sessionmaker[Session]) -> None:
    site = SimSite(SITE)
    first = site.event(called("Z001"))
    again = site.event(called("Z002"), seq=1)
    outcome = _processor(small_registry).process(received(first, again), NOW)
    assert (outcome.events_stored, outcome.events_seq_reused) == (1, 1)
    assert [a.device for a in _alarms(small_registry)] == ["journal"]


def test_duplicate_inside_one_batch(small_registry: sessionmaker[Session]) -> None:
    site = SimSite(SITE)
    first = site.event(called())
    outcome = _processor(small_registry).process(received(first, first), NOW)
    assert (outcome.events_stored, outcome.events_duplicate, outcome.acks) == (1, 1, {SITE: 1})


def test_gap_is_visible_until_filled(small_registry: sessionmaker[Session]) -> None:
    processor = _processor(small_registry)
    site = SimSite(SITE)
    events = [site.event(called(f"Z{n:03d}")) for n in range(1, 8)]
    lost = {3, 5, 6}
    outcome = processor.process(received(*(e for e in events if e.seq not in lost)), NOW)
    assert outcome.acks == {SITE: 2}  # never past a missing event
    live = state(small_registry)
    assert (live.site.acked_seq, live.site.max_seq) == (2, 7)
    assert [(g.first_seq, g.last_seq) for g in live.open_gaps] == [(3, 3), (5, 6)]

    later = NOW + timedelta(seconds=5)
    assert processor.process(received(events[2]), later).acks == {SITE: 4}
    with small_registry() as session:
        gaps = session.scalars(select(SequenceGap).order_by(SequenceGap.id)).all()
        assert [(g.first_seq, g.last_seq, g.filled_at) for g in gaps] == [
            (3, 3, later),
            (5, 6, None),
        ]
    assert processor.process(received(events[5], events[4]), later).acks == {SITE: 7}
    assert state(small_registry).open_gaps == []


def test_two_replicas_never_ack_past_a_gap(small_registry: sessionmaker[Session]) -> None:
    """Shared subscriptions split one site's events over replicas in any order."""
    replica_a, replica_b = _processor(small_registry), _processor(small_registry)
    site = SimSite(SITE)
    events = [site.event(called(f"Z{n:03d}")) for n in range(1, 11)]
    acks = [
        replica_a.process(received(*events[0:3]), NOW).acks[SITE],
        replica_b.process(received(*events[5:8]), NOW).acks[SITE],
        replica_a.process(received(*events[8:10]), NOW).acks[SITE],
        replica_b.process(received(*events[3:5]), NOW).acks[SITE],
    ]
    assert acks == [3, 3, 3, 10]


def test_bad_payloads_counted_per_site_and_reason(small_registry: sessionmaker[Session]) -> None:
    site = SimSite(SITE)
    good = received(site.event(called()))[0]
    topic = good.topic
    bad = [
        Received(topic, b"\x00\xffgarbage", NOW),
        Received(topic, good.payload[:-5], NOW),
        Received(topic, good.payload.replace(b'"v":1', b'"v":7'), NOW),
        Received(topic, good.payload.replace(b'"seq":1', b'"seq":"1"'), NOW),
        Received(topic, good.payload.replace(b'"seq":1', b'"seq":1,"extra":1'), NOW),
        Received(
            topic, good.payload.replace(b'"seq":1', b'"seq":1,"x":"' + b"x" * 9000 + b'"'), NOW
        ),
        Received(topic, good.payload.replace(SITE.encode(), b"zs-sanxiang-02"), NOW),
        Received("onedoor/v1/+/event", good.payload, NOW),
        Received("onedoor/v1/zs-sanxiang-01/event/x", good.payload, NOW),
        Received(
            "onedoor/v1/zs-nowhere/event", good.payload.replace(SITE.encode(), b"zs-nowhere"), NOW
        ),
    ]
    outcome = _processor(small_registry).process([*bad[:5], good, *bad[5:], *bad[:1]], NOW)
    assert outcome.events_stored == 1  # the good one went through
    assert outcome.rejected == len(bad) + 1
    with small_registry() as session:
        assert reject_counts(session) == {
            (SITE, "json"): 3,
            (SITE, "version"): 1,
            (SITE, "schema"): 2,
            (SITE, "too_large"): 1,
            (SITE, "site_mismatch"): 1,
            ("", "topic"): 2,
            ("zs-nowhere", UNKNOWN_SITE): 1,
        }
    _processor(small_registry).process(bad[:1], NOW)
    with small_registry() as session:
        assert reject_counts(session)[(SITE, "json")] == 4


def test_stale_will_is_ignored(small_registry: sessionmaker[Session]) -> None:
    processor = _processor(small_registry)
    site = SimSite(SITE, session=2)
    processor.process(received(site.state("online")), NOW)
    stale_will = site.state("offline", lwt=True, session=1)  # the old connection's Will
    processor.process(received(stale_will), NOW)
    live = state(small_registry).site
    assert (live.online, live.mqtt_session, live.reported_config_version) == (True, 2, "cfg-1")
    assert _alarms(small_registry) == []

    processor.process(received(site.state("offline", lwt=True)), NOW)
    (alarm,) = _alarms(small_registry)
    assert (alarm.type, alarm.detail["cause"], alarm.severity) == (
        AlarmType.SITE_OFFLINE,
        "lwt",
        Severity.MAJOR,
    )
    processor.process(received(site.state("online")), NOW)  # same session: offline is final
    assert len(_alarms(small_registry)) == 1
    processor.process(received(site.state("online", session=3)), NOW + timedelta(seconds=1))
    assert _alarms(small_registry) == []
    assert _history(small_registry, alarm.id) == [AlarmAction.RAISED, AlarmAction.CLEARED]


def test_telemetry_folds_live_state_and_alarms(small_registry: sessionmaker[Session]) -> None:
    processor = _processor(small_registry, outbox_backlog=100)
    site = SimSite(SITE)
    stale = site.telemetry(waiting=99)
    snapshot = site.telemetry(
        waiting=7,
        oldest_wait_s=2000,  # 综合受理 SLA is 1800 s in the seed
        synced=False,
        outbox=250,
        devices=[
            mm.DeviceStat(device="printer-1", kind="printer", status="fault", detail="paper_out")
        ],
    )
    processor.process(received(snapshot), NOW)
    processor.process(received(stale), NOW)  # older snapshot arriving late: history only
    live = state(small_registry)
    assert (live.site.clock_synced, live.site.outbox_depth) == (False, 250)
    assert live.site.host is not None
    assert live.site.host["cpu_temp_c"] == 48.5
    zonghe = next(s for s in live.services if s.code == "zonghe")
    assert (zonghe.waiting, zonghe.oldest_wait_s) == (7, 2000)
    assert [(w.number, w.state, w.ticket) for w in live.windows] == [
        (1, "serving", "Z001"),
        (2, "open", None),
    ]
    assert (live.windows_open, live.windows_busy) == (2, 1)
    assert [(d.device, d.status, d.detail) for d in live.devices] == [
        ("printer-1", "fault", "paper_out")
    ]
    assert live.site.last_seen_at == NOW
    raised = {(a.type, a.device) for a in _alarms(small_registry)}
    assert raised == {
        (AlarmType.CLOCK_NOT_SYNCED, ""),
        (AlarmType.OUTBOX_BACKLOG, ""),
        (AlarmType.WAITING_OVER_SLA, "zonghe"),
        (AlarmType.DEVICE_FAULT, "printer-1"),
    }
    healthy = site.telemetry(
        devices=[mm.DeviceStat(device="printer-1", kind="printer", status="ok", detail=None)]
    )
    processor.process(received(healthy), NOW + timedelta(minutes=1))
    assert _alarms(small_registry) == []
    assert len(_alarms(small_registry, active=False)) == 4


def test_device_alarm_repeat_ack_and_clear(small_registry: sessionmaker[Session]) -> None:
    processor = _processor(small_registry)
    site = SimSite(SITE)

    def printer(status: mm.DeviceHealth, detail: str | None) -> mm.Event:
        return site.event(
            mm.DeviceStatus(device="printer-1", kind="printer", status=status, detail=detail)
        )

    processor.process(received(printer("degraded", "paper_low")), NOW)
    processor.process(received(printer("fault", "paper_out")), NOW + timedelta(seconds=10))
    (alarm,) = _alarms(small_registry)
    assert (alarm.severity, alarm.occurrences, alarm.detail["detail"]) == (
        Severity.MAJOR,
        2,
        "paper_out",
    )
    with small_registry.begin() as session:
        AlarmBook(session, NOW + timedelta(seconds=20)).acknowledge(alarm.id, "ops-li")
    processor.process(received(printer("ok", None)), NOW + timedelta(seconds=30))
    (cleared,) = _alarms(small_registry, active=False)
    assert cleared.acknowledged_by == "ops-li"
    assert cleared.cleared_at == NOW + timedelta(seconds=30)
    assert _history(small_registry, alarm.id) == [
        AlarmAction.RAISED,
        AlarmAction.SEVERITY_CHANGED,
        AlarmAction.ACKNOWLEDGED,
        AlarmAction.CLEARED,
    ]
    # A new fault after the clear is a new alarm; the old one stays in history.
    processor.process(received(printer("offline", "no_reply")), NOW + timedelta(seconds=40))
    assert [a.id != alarm.id for a in _alarms(small_registry)] == [True]


def test_late_device_event_does_not_undo_a_newer_one(small_registry: sessionmaker[Session]) -> None:
    site = SimSite(SITE)
    fault = site.event(mm.DeviceStatus(device="led-1", kind="led", status="fault", detail="silent"))
    ok = site.event(mm.DeviceStatus(device="led-1", kind="led", status="ok", detail=None))
    _processor(small_registry).process(received(ok, fault), NOW)  # reordered on the way
    (device,) = state(small_registry).devices
    assert (device.status, device.last_event_seq) == ("ok", 2)
    assert _alarms(small_registry) == []


def _printer(status: mm.DeviceHealth, detail: str | None) -> mm.DeviceStat:
    return mm.DeviceStat(device="printer-1", kind="printer", status=status, detail=detail)


def test_snapshot_overtaken_by_a_device_event_does_not_re_raise(
    small_registry: sessionmaker[Session],
) -> None:
    """Telemetry taken while the paper was out, committed after the paper-loaded event
    (they travel separately): the demo saw the printer alarm raised twice."""
    processor = _processor(small_registry)
    site = SimSite(SITE)
    out = site.event(mm.DeviceStatus(device="printer-1", kind="printer", status="offline",
                                     detail="paper_out"))
    processor.process(received(out), NOW)
    stale = site.telemetry(devices=[_printer("offline", "paper_out")])  # has seen seq 1
    loaded = site.event(mm.DeviceStatus(device="printer-1", kind="printer", status="ok",
                                        detail=None))
    processor.process(received(loaded), NOW + timedelta(seconds=5))
    processor.process(received(stale), NOW + timedelta(seconds=6))
    assert _alarms(small_registry) == []
    assert len(_alarms(small_registry, active=False)) == 1  # one alarm, raised and cleared
    (device,) = state(small_registry).devices
    assert (device.status, device.last_event_seq) == ("ok", 2)
    # A snapshot that has seen the event is applied, and then stands for it.
    processor.process(received(site.telemetry(devices=[_printer("degraded", "paper_low")])),
                      NOW + timedelta(seconds=7))
    (low,) = _alarms(small_registry)
    assert low.severity == Severity.WARNING


def test_device_event_overtaken_by_a_newer_snapshot_is_not_replayed(
    small_registry: sessionmaker[Session],
) -> None:
    processor = _processor(small_registry)
    site = SimSite(SITE)
    fault = site.event(mm.DeviceStatus(device="printer-1", kind="printer", status="offline",
                                       detail="no_reply"))
    newer = site.telemetry(devices=[_printer("ok", None)])  # taken after seq 1, arrives first
    processor.process(received(newer), NOW)
    processor.process(received(fault), NOW + timedelta(seconds=1))
    assert _alarms(small_registry) == []
    assert _alarms(small_registry, active=False) == []
    (device,) = state(small_registry).devices
    assert (device.status, device.last_event_seq) == ("ok", 1)


def test_stale_snapshot_does_not_move_a_window_back(small_registry: sessionmaker[Session]) -> None:
    processor = _processor(small_registry)
    site = SimSite(SITE)
    stale = site.telemetry(windows=[mm.WindowStat(window=2, state="open", ticket=None)])
    processor.process(received(site.event(called("Z008", window=2))), NOW)
    processor.process(received(stale), NOW + timedelta(seconds=1))
    fresh = site.telemetry(windows=[mm.WindowStat(window=2, state="paused", ticket=None)])
    window = next(w for w in state(small_registry).windows if w.number == 2)
    assert (window.state, window.ticket) == ("serving", "Z008")
    processor.process(received(fresh), NOW + timedelta(seconds=2))
    window = next(w for w in state(small_registry).windows if w.number == 2)
    assert (window.state, window.ticket) == ("paused", None)


def test_window_events_and_serving_overtime(small_registry: sessionmaker[Session]) -> None:
    processor = _processor(small_registry)
    site = SimSite(SITE)
    processor.process(
        received(
            site.event(mm.WindowSignedIn(window=2, staff="zs0231")),
            site.event(called("Z007", window=2)),
            site.event(mm.ServiceOvertime(ticket="Z007", window=2, served_s=1900)),
        ),
        NOW,
    )
    window = next(w for w in state(small_registry).windows if w.number == 2)
    assert (window.state, window.ticket, window.staff) == ("serving", "Z007", "zs0231")
    (alarm,) = _alarms(small_registry)
    assert (alarm.type, alarm.device, alarm.detail["served_s"]) == (
        AlarmType.SERVING_OVERTIME,
        "window-2",
        1900,
    )
    processor.process(
        received(site.event(mm.TicketDone(ticket="Z007", window=2, served_s=2000))), NOW
    )
    assert _alarms(small_registry) == []
    processor.process(received(site.event(mm.WindowPaused(window=2))), NOW)
    window = next(w for w in state(small_registry).windows if w.number == 2)
    assert (window.state, window.ticket) == ("paused", None)


def test_help_call_escalated_then_answered(small_registry: sessionmaker[Session]) -> None:
    processor = _processor(small_registry)
    site = SimSite(SITE)
    processor.process(
        received(site.event(mm.HelpRequested(button="help-1", location="自助区"))), NOW
    )
    processor.process(received(site.event(mm.HelpEscalated(button="help-1", waited_s=180))), NOW)
    (alarm,) = _alarms(small_registry)
    assert (alarm.type, alarm.device) == (AlarmType.HELP_UNANSWERED, "help-1")
    processor.process(
        received(site.event(mm.HelpAcknowledged(button="help-1", staff="zs0007"))), NOW
    )
    assert _alarms(small_registry) == []
    processor.process(received(site.event(mm.HelpResolved(button="help-1"))), NOW)
    with small_registry() as session:
        (call,) = session.scalars(select(HelpCall)).all()
        assert (call.acknowledged_by, call.resolved_at, call.location) == ("zs0007", NOW, "自助区")


def test_config_reports_and_rejection(small_registry: sessionmaker[Session]) -> None:
    processor = _processor(small_registry)
    site = SimSite(SITE, config="cfg-1")
    with small_registry.begin() as session:
        session.get_one(Site, SITE).expected_config_version = "cfg-2"
    processor.process(received(site.state()), NOW)
    processor.process(
        received(site.event(mm.ConfigRejected(version="cfg-2", errors=["窗口 9 不存在"]))), NOW
    )
    (alarm,) = _alarms(small_registry)
    assert (alarm.type, alarm.severity, alarm.detail["errors"]) == (
        AlarmType.CONFIG_DRIFT,
        Severity.MAJOR,
        ["窗口 9 不存在"],
    )
    processor.process(received(site.event(mm.ConfigApplied(version="cfg-2"))), NOW)
    assert _alarms(small_registry) == []
    live = state(small_registry)
    assert live.site.reported_config_version == "cfg-2"
    assert not live.config_drift


def test_journal_lost_raises_a_major_alarm_until_the_next_day(
        small_registry: sessionmaker[Session]) -> None:  # fmt: skip
    processor = _processor(small_registry)
    site = SimSite(SITE)
    processor.process(received(site.event(mm.JournalLost(first_seq=1, last_seq=40))), NOW)
    (alarm,) = _alarms(small_registry)
    assert (alarm.type, alarm.device, alarm.severity, alarm.detail) == (
        AlarmType.DEVICE_FAULT, "journal", Severity.MAJOR, {"first_seq": 1, "last_seq": 40})
    processor.process(received(site.event(mm.DayReset(day="2026-11-24"))), NOW)
    assert _alarms(small_registry) == []
    assert [a.device for a in _alarms(small_registry, active=False)] == ["journal"]


def test_cmd_result_completes_command(small_registry: sessionmaker[Session]) -> None:
    from central.ingest import new_command

    command = new_command(SITE, mm.ReprintArgs(ticket="Z001"), now=NOW, ttl_s=60)
    with small_registry.begin() as session:
        session.add(
            Command(
                id=command.id,
                site_id=SITE,
                name=command.name,
                args={"name": "reprint", "ticket": "Z001"},
                issued_at=NOW,
                expires_at=NOW + timedelta(seconds=60),
                status=CommandStatus.SENT,
            )
        )
    result = mm.CmdResult(site=SITE, id=command.id, ok=False, error="缺纸 / paper out", ts=1)
    _processor(small_registry).process(received(result), NOW)
    with small_registry() as session:
        stored = session.get_one(Command, command.id)
        assert (stored.status, stored.error, stored.result_at) == (
            CommandStatus.FAILED,
            "缺纸 / paper out",
            NOW,
        )


def test_batch_of_many_sites(small_registry: sessionmaker[Session]) -> None:
    sites = [SimSite(s) for s in ("zs-sanxiang", "zs-sanxiang-01", "zs-sanxiang-02")]
    messages: list[mm.Message] = []
    for n in range(30):
        for site in sites:
            messages.append(site.event(called(f"Z{n + 1:03d}")))
            if n % 10 == 0:
                messages.append(site.telemetry())
    outcome = _processor(small_registry).process(received(*messages), NOW)
    assert outcome.acks == {s.site_id: 30 for s in sites}
    with small_registry() as session:
        assert session.scalar(select(func.count()).select_from(EventRecord)) == 90


def test_a_publish_that_cannot_be_stored_does_not_block_the_rest(
    small_registry: sessionmaker[Session],
) -> None:
    processor = _processor(small_registry)
    doomed, healthy = SimSite(SITE), SimSite("zs-sanxiang-02")
    processor.process(received(doomed.event(called())), NOW)  # the site id is now cached
    with small_registry.begin() as session:  # ... and then removed from the registry
        session.delete(session.get_one(Site, SITE))
    batch = received(doomed.event(called()), healthy.event(called()))
    with pytest.raises(IntegrityError):
        processor.process(batch, NOW)
    outcome = processor.process_one_by_one(batch, NOW)  # what the service falls back to
    assert outcome.acks == {"zs-sanxiang-02": 1}
    assert outcome.rejected == 1
    with small_registry() as session:
        assert reject_counts(session) == {(SITE, INTERNAL): 1}

"""Hall state: window flows, ratings, timers, help, day reset, reload, and exact replay."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import get_args
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.clock import ManualClock, business_day
from edge.config import EdgeConfig, load_config
from edge.errors import CommandRejected, ReplayDiverged
from edge.hall import Hall, contract_class, open_hall
from fastpath.types import CLASS_BY_LABEL, TicketClass, TicketState, WindowState
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import BASE_SERVICES, BASE_WINDOWS, site_toml

SHANGHAI = ZoneInfo("Asia/Shanghai")
OPENING = int(datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI).timestamp() * 1000)
HELP = '[devices.gpio]\npin_factory = "mock"\n[[devices.gpio.help_buttons]]\nid = "help-1"\n' \
       'pin = 19\nled_pin = 26\nlocation = "自助服务区"\n'


@pytest.fixture
def config(tmp_path: Path) -> EdgeConfig:
    return load_config(site_toml(tmp_path, extra=HELP))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(OPENING)


@pytest.fixture
def hall(config: EdgeConfig, clock: ManualClock) -> Iterator[Hall]:
    hall = open_hall(config, clock)
    yield hall
    hall.journal.close()


def reopen(hall: Hall, config: EdgeConfig | None = None) -> Hall:
    hall.journal.close()
    return open_hall(config or hall.config, hall.clock)


def types(hall: Hall, after: int = 0) -> list[str]:
    return [e.type for e in hall.journal.events(after)]


def test_fresh_journal_starts_with_config_and_day(hall: Hall) -> None:
    assert types(hall) == ["config.applied", "day.reset"]
    assert hall.day == "2026-11-23"


def test_numbers_per_prefix_and_people_ahead(hall: Hall, clock: ManualClock) -> None:
    results = []
    for service in ["shebao", "shebao", "huji", "shebao"]:
        results.append(hall.issue(service))
        clock.advance(10)
    assert [r.ticket.number for r in results] == ["A001", "A002", "B001", "A003"]
    assert [r.people_ahead for r in results] == [0, 1, 0, 2]
    event = results[-1].event
    assert isinstance(event.body, mm.TicketIssued)
    assert event.body.people_ahead == 2
    assert event.seq == hall.journal.last_seq  # durable before the caller sees it


def test_bad_ticket_requests_are_rejected_and_nothing_is_journaled(hall: Hall) -> None:
    before = hall.journal.last_seq
    with pytest.raises(CommandRejected, match="unknown service") as info:
        hall.issue("kuaidi")
    assert info.value.status == 404
    with pytest.raises(CommandRejected, match="booked time"):
        hall.issue("shebao", TicketClass.APPOINTMENT)
    with pytest.raises(CommandRejected, match="booked time"):
        hall.issue("shebao", TicketClass.NORMAL, booked_ms=OPENING)
    assert hall.journal.last_seq == before


def test_late_appointment_becomes_a_walk_in(hall: Hall, clock: ManualClock) -> None:
    on_time = hall.issue("shebao", TicketClass.APPOINTMENT, booked_ms=OPENING + 60_000)
    late = hall.issue("shebao", TicketClass.APPOINTMENT, booked_ms=OPENING - 3_600_000)
    assert on_time.ticket.klass is TicketClass.APPOINTMENT
    assert late.ticket.klass is TicketClass.NORMAL
    assert isinstance(late.event.body, mm.TicketIssued)
    assert late.event.body.booked_ts is None


def test_window_flow_and_rating_bound_to_ticket_and_staff(hall: Hall, clock: ManualClock) -> None:
    hall.issue("shebao")
    hall.issue("shebao")
    with pytest.raises(CommandRejected, match="closed: cannot call"):
        hall.call_next(1)
    hall.sign_in(1, "zhang01")
    called = hall.call_next(1)
    assert called is not None
    assert called.number == "A001"
    assert hall.recall(1).recalls == 1
    with pytest.raises(CommandRejected, match="nothing to rate"):
        hall.rate(1, 5)
    clock.advance(300)
    done = hall.finish(1)
    assert done.state is TicketState.DONE
    rating = hall.rate(1, 4)
    assert rating.body == mm.RatingGiven(ticket="A001", window=1, staff="zhang01", value=4)
    with pytest.raises(CommandRejected, match="nothing to rate"):
        hall.rate(1, 5)  # one rating per ticket
    with pytest.raises(CommandRejected, match=r"1\.\.5"):
        hall.rate(1, 6)
    second = hall.call_next(1)
    assert second is not None
    assert second.number == "A002"
    with pytest.raises(CommandRejected, match="still holds A002"):
        hall.sign_out(1)
    assert hall.call_next(1) is None  # "next" finished A002; nobody else waits
    assert hall.dispatcher.ticket("A002").state is TicketState.DONE
    hall.pause(1)
    with pytest.raises(CommandRejected, match="paused: cannot call"):
        hall.call_next(1)
    hall.resume(1)
    hall.sign_out(1)
    assert hall.dispatcher.window(1).state is WindowState.CLOSED
    assert hall.counts() == (2, 2)


def test_no_show_requeues_once_then_drops(hall: Hall, clock: ManualClock) -> None:
    hall.issue("shebao")
    hall.sign_in(1, "li02")
    hall.call_next(1)
    assert hall.no_show(1).state is TicketState.WAITING
    clock.advance(1)
    hall.call_next(1)
    assert hall.no_show(1).state is TicketState.NO_SHOW
    assert hall.counts() == (1, 0)


def test_transfer_moves_the_ticket_to_another_queue(hall: Hall) -> None:
    hall.issue("shebao")
    hall.sign_in(1, "li02")
    hall.sign_in(2, "wang03")
    hall.call_next(1)
    with pytest.raises(CommandRejected, match="unknown service"):
        hall.transfer(1, "nosuch")
    moved = hall.transfer(1, "huji")
    assert moved.service_id == "huji"
    assert moved.state is TicketState.WAITING
    again = hall.call_next(2)
    assert again is not None
    assert again.number == "A001"


def test_sla_breach_and_overtime_are_reported_once(hall: Hall, clock: ManualClock) -> None:
    hall.issue("shebao")  # SLA 30 min, overtime 20 min
    hall.issue("huji")
    clock.advance(31 * 60)
    first = hall.tick()
    assert [e.body for e in first] == [mm.SlaBreached(ticket="A001", service="shebao",
                                                      waited_s=31 * 60)]
    assert hall.tick() == []
    hall.sign_in(1, "zhang01")
    hall.call_next(1)  # A001 (SLA override, longest wait)
    clock.advance(21 * 60)
    bodies = [e.body for e in hall.tick()]
    assert mm.ServiceOvertime(ticket="A001", window=1, served_s=21 * 60) in bodies
    assert any(isinstance(b, mm.SlaBreached) and b.ticket == "B001" for b in bodies)
    assert hall.tick() == []
    # The once-only memory is part of the fold, so a restart does not repeat them.
    hall = reopen(hall)
    assert hall.tick() == []
    hall.journal.close()


def test_help_request_ack_resolve_and_escalation(hall: Hall, clock: ManualClock) -> None:
    with pytest.raises(CommandRejected, match="unknown help button"):
        hall.help_request("help-9")
    assert hall.help_request("help-1") is not None
    assert hall.help_request("help-1") is None  # a second press while open
    clock.advance(4 * 60)
    assert hall.tick() == []
    clock.advance(2 * 60)
    (escalated,) = hall.tick()
    assert escalated.body == mm.HelpEscalated(button="help-1", waited_s=6 * 60)
    assert hall.tick() == []
    hall.sign_in(2, "wang03")
    ack = hall.help_ack_from_window(2)
    assert ack is not None
    assert ack.body == mm.HelpAcknowledged(button="help-1", staff="wang03")
    resolved = hall.help_long_press("help-1")
    assert resolved is not None
    assert resolved.body == mm.HelpResolved(button="help-1")
    assert hall.open_help() == []
    hall.help_request("help-1")
    assert hall.help_long_press("help-1").body == mm.HelpAcknowledged(  # type: ignore[union-attr]
        button="help-1", staff=None)


def test_day_reset_restarts_numbers_and_replays_only_today(hall: Hall, clock: ManualClock
                                                           ) -> None:
    hall.issue("shebao")
    hall.issue("shebao")
    clock.advance(17 * 3600)  # 02:00 next day: still the same business day (reset 03:00)
    assert all(e.type != "day.reset" for e in hall.tick())
    clock.advance(3600 + 60)
    events = hall.tick()
    assert [e.body for e in events] == [mm.DayReset(day="2026-11-24")]
    assert hall.issue("shebao").ticket.number == "A001"
    hall = reopen(hall)
    assert [t.number for t in hall.dispatcher.tickets()] == ["A001"]
    hall.journal.close()


def test_business_day_turns_at_the_reset_time() -> None:
    two_am = int(datetime(2026, 11, 24, 2, 0, tzinfo=SHANGHAI).timestamp() * 1000)
    assert business_day(two_am, SHANGHAI, 180) == "2026-11-23"
    assert business_day(two_am + 3_600_000, SHANGHAI, 180) == "2026-11-24"


def test_restart_carries_on_with_the_same_numbers(hall: Hall, clock: ManualClock) -> None:
    hall.sign_in(1, "zhang01")
    for _ in range(3):
        hall.issue("shebao")
        clock.advance(5)
    hall.call_next(1)
    hall.help_request("help-1")
    snapshot = hall.snapshot()
    hall = reopen(hall)
    assert hall.snapshot() == snapshot
    assert hall.issue("shebao").ticket.number == "A004"
    assert hall.finish(1).number == "A001"
    hall.journal.close()


def test_reload_keeps_tickets_and_replays_with_the_config_in_force(
        hall: Hall, clock: ManualClock, tmp_path: Path) -> None:
    for _ in range(4):
        hall.issue("shebao")
        hall.issue("huji")
        clock.advance(5)
    heavier = load_config(site_toml(tmp_path, version="v2", windows=BASE_WINDOWS.replace(
        "services = { shebao = 2, huji = 1 }", "services = { shebao = 1, huji = 50 }") +
        '[[windows]]\nnumber = 3\nservices = { huji = 1 }\n', extra=HELP, name="v2.toml"))
    applied = hall.reconfigure(heavier)
    assert applied.body == mm.ConfigApplied(version="v2")
    assert len(hall.dispatcher.windows()) == 3
    hall.sign_in(1, "zhang01")
    calls = []
    for _ in range(4):
        ticket = hall.call_next(1)
        assert ticket is not None
        calls.append(ticket.number)
        clock.advance(60)
    # Reopening with the *old* file: replay must use the journaled v2 for the calls above,
    # then the old file is applied again as a new config.
    assert calls == ["B001", "B002", "B003", "B004"]  # v2 weights favour huji at window 1
    tickets = hall.dispatcher.tickets()
    old = load_config(site_toml(tmp_path, extra=HELP))
    hall = reopen(hall, old)
    assert hall.dispatcher.tickets() == tickets
    assert hall.config.version == "v1"
    assert types(hall)[-1] == "config.applied"
    hall.journal.close()


def test_reload_that_removes_a_busy_service_is_rejected(hall: Hall, tmp_path: Path) -> None:
    hall.issue("huji")
    services_without_huji = """
[[services]]
id = "shebao"
prefix = "A"
name_zh = "社保医保"
"""
    smaller = load_config(site_toml(tmp_path, version="v3", services=services_without_huji,
                                    windows='[[windows]]\nnumber = 1\n'
                                            'services = { shebao = 1 }\n',
                                    extra=HELP, name="v3.toml"))
    event = hall.reconfigure(smaller)
    assert isinstance(event.body, mm.ConfigRejected)
    assert "'huji' still has ticket B001" in event.body.errors[0]
    assert hall.config.version == "v1"
    assert hall.dispatcher.ticket("B001").state is TicketState.WAITING


def test_a_journal_that_does_not_replay_is_refused(hall: Hall, clock: ManualClock) -> None:
    hall.issue("shebao")
    hall.journal.append([mm.TicketIssued(ticket="A007", service="shebao", ticket_class="normal",
                                         booked_ts=None, channel="api", people_ahead=0,
                                         wait=None)],
                        ts_ms=clock.now_ms(), clock_synced=True)
    hall.journal.close()
    with pytest.raises(ReplayDiverged, match="says A007, the dispatcher gave A002"):
        open_hall(hall.config, clock)


ACTIONS = st.lists(st.tuples(
    st.sampled_from(["issue_a", "issue_b", "issue_p", "sign_in", "next", "recall", "finish",
                     "no_show", "transfer", "pause", "resume", "sign_out", "rate", "tick",
                     "help", "help_ack"]),
    st.sampled_from([1, 2]),
    st.integers(0, 900)), max_size=60)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS)
def test_replay_reproduces_any_live_sequence(tmp_path_factory: pytest.TempPathFactory,
                                             actions: list[tuple[str, int, int]]) -> None:
    directory = tmp_path_factory.mktemp("replay")
    config = load_config(site_toml(directory, extra=HELP))
    clock = ManualClock(OPENING)
    hall = open_hall(config, clock)
    run = {
        "issue_a": lambda w: hall.issue("shebao"),
        "issue_b": lambda w: hall.issue("huji"),
        "issue_p": lambda w: hall.issue("shebao", TicketClass.PRIORITY),
        "sign_in": lambda w: hall.sign_in(w, f"staff{w}"),
        "next": hall.call_next, "recall": hall.recall, "finish": hall.finish,
        "no_show": hall.no_show, "pause": hall.pause, "resume": hall.resume,
        "sign_out": hall.sign_out, "rate": lambda w: hall.rate(w, 5),
        "transfer": lambda w: hall.transfer(w, "huji" if w == 1 else "shebao"),
        "tick": lambda w: hall.tick(), "help": lambda w: hall.help_request("help-1"),
        "help_ack": hall.help_ack_from_window,
    }
    for action, window, seconds in actions:
        clock.advance(seconds)
        with contextlib.suppress(CommandRejected):
            run[action](window)
    snapshot, tickets = hall.snapshot(), hall.dispatcher.tickets()
    hall = reopen(hall)
    try:
        assert hall.snapshot() == snapshot
        assert hall.dispatcher.tickets() == tickets
        assert [e.seq for e in hall.journal.events()] == list(range(1, hall.journal.last_seq + 1))
    finally:
        hall.journal.close()


def test_predicted_wait_comes_from_the_fastpath_simulation(tmp_path: Path) -> None:
    timed = load_config(site_toml(tmp_path, services=BASE_SERVICES.replace(
        "overtime_minutes = 20", "overtime_minutes = 20\nmean_minutes = 10").replace(
        "overtime_minutes = 30", "overtime_minutes = 30\nmean_minutes = 10")))
    clock = ManualClock(OPENING)
    hall = open_hall(timed, clock)
    try:
        hall.sign_in(1, "zhang01")
        waits = [hall.issue("shebao").wait for _ in range(6)]
        assert all(w is not None for w in waits)
        p50s = [w.p50_s for w in waits if w is not None]
        assert p50s == sorted(p50s)
        assert p50s[0] < 120 < p50s[-1]
        assert 30 * 60 <= p50s[-1] <= 90 * 60  # ~5 ahead of 10 min each, one window
        event = hall.journal.events(hall.journal.last_seq - 1).__next__()
        assert isinstance(event.body, mm.TicketIssued)
        assert event.body.wait == waits[-1]
    finally:
        hall.journal.close()


def test_no_prediction_without_service_durations(hall: Hall) -> None:
    assert hall.issue("shebao").wait is None  # the base site gives no mean_minutes


def test_ticket_class_labels_are_the_contracts() -> None:
    """contract_class casts a label to the contract's literal: the labels must be its."""
    assert set(get_args(mm.TicketClass)) == set(CLASS_BY_LABEL)
    assert [contract_class(klass) for klass in TicketClass] == [
        "normal", "priority", "appointment"]

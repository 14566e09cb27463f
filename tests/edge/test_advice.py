"""Live staffing advice at the edge: the learned arrival profile, a surge advised and cleared,
the message the uplink sends, and the windows it never touches."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.advice import HISTORY_DAYS, StaffingAdvice, learn_arrivals
from edge.clock import ManualClock
from edge.config import load_config
from edge.hall import Hall, open_hall
from edge.predict import hall_model
from fastpath.simulate import HOUR_MS
from fastpath.types import WindowState
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import TIMED_SERVICES, site_toml

SHANGHAI = ZoneInfo("Asia/Shanghai")
SERVICES = TIMED_SERVICES.replace("mean_minutes = 6.0", "mean_minutes = 6.0\nvisitors_per_day = 20"
                                  ).replace("mean_minutes = 8.0",
                                            "mean_minutes = 8.0\nvisitors_per_day = 20")
DAY_HOURS = '[hours]\nopen = "08:30"\nclose = "17:30"\nreset = "03:00"\n'
MONDAY = datetime(2026, 11, 23, tzinfo=SHANGHAI)


def at(day: int, hhmm: str) -> int:
    hour, minute = map(int, hhmm.split(":"))
    return int((MONDAY + timedelta(days=day, hours=hour, minutes=minute)).timestamp() * 1000)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(at(0, "08:00"))


@pytest.fixture
def hall(tmp_path: Path, clock: ManualClock) -> Iterator[Hall]:
    config = load_config(site_toml(tmp_path, services=SERVICES, hours=DAY_HOURS))
    hall = open_hall(config, clock)
    yield hall
    hall.journal.close()


def new_day(hall: Hall, clock: ManualClock, day: int) -> None:
    clock.set(at(day, "08:00"))
    hall.tick()


def issue(hall: Hall, clock: ManualClock, day: int, hhmm: str, service: str, count: int) -> None:
    clock.set(at(day, hhmm))
    for _ in range(count):
        hall.issue(service)


def advice(hall: Hall, clock: ManualClock, *, enabled: bool = True) -> StaffingAdvice:
    return StaffingAdvice(hall, clock, enabled=lambda: enabled, period_s=lambda: 300,
                          wake_uplink=lambda: None)


def test_the_arrival_profile_is_learned_from_the_open_days_in_the_journal(
        hall: Hall, clock: ManualClock) -> None:
    # Three open days: shebao in the morning (slot 0 = 08:30-09:30), huji after lunch;
    # day 2 is a closed day (it resets, issues nothing) and does not count.
    for day in (0, 1, 3):
        if day:
            new_day(hall, clock, day)
        issue(hall, clock, day, "08:40", "shebao", 10 + day)
        issue(hall, clock, day, "14:45", "huji", 4)
        issue(hall, clock, day, "07:00", "shebao", 0)  # none before opening
    new_day(hall, clock, 2)  # out of order on purpose: the journal orders by seq
    new_day(hall, clock, 4)  # today: its tickets are not history
    issue(hall, clock, 4, "08:35", "shebao", 50)
    today = hall.journal.last_seq_of("day.reset")
    profile = learn_arrivals(hall.journal, hall.config, today)
    assert profile.days == 3
    assert profile.slots == 9
    shebao, huji = profile.per_service["shebao"], profile.per_service["huji"]
    assert shebao[0] == pytest.approx((10 + 11 + 13) / 3)
    assert sum(shebao) == shebao[0]
    assert huji[6] == 4.0
    assert sum(huji) == 4.0

    model = hall_model(hall.config)
    assert model is not None
    learned = profile.apply(model)
    expected = {}
    for service, (starts, rates, _p, _q) in zip(learned.services, learned.streams(),
                                                strict=True):
        expected[service.service.id] = [rates[h] * (starts[h + 1] - starts[h])
                                        for h in range(len(starts) - 1)]
    # shebao has 34 tickets (>= 20): its own volume and shape; huji has 12: the config's
    # 20 a day over the hall's learned shape (morning and afternoon).
    assert sum(expected["shebao"]) == pytest.approx(34 / 3)
    assert expected["shebao"][0] > 0.9 * 34 / 3
    assert sum(expected["huji"]) == pytest.approx(20.0)
    hall_shape = [s + h for s, h in zip(shebao, huji, strict=True)]
    assert [round(x / sum(expected["huji"]), 3) for x in expected["huji"]] == \
        [round(x / sum(hall_shape), 3) for x in hall_shape]
    assert learned.hourly_profile[3] == 0.0  # nobody comes 11:30-12:30 in this history


def test_history_looks_back_only_so_far(hall: Hall, clock: ManualClock) -> None:
    for day in range(HISTORY_DAYS + 3):
        if day:
            new_day(hall, clock, day)
        issue(hall, clock, day, "09:00", "shebao", day)  # day 0 issues nothing: closed
    new_day(hall, clock, HISTORY_DAYS + 3)
    profile = learn_arrivals(hall.journal, hall.config, hall.journal.last_seq_of("day.reset"))
    assert profile.days == HISTORY_DAYS
    assert sum(profile.per_service["shebao"]) == pytest.approx(
        sum(range(3, HISTORY_DAYS + 3)) / HISTORY_DAYS)


def test_a_surge_is_advised_with_a_verified_move_then_cleared(
        hall: Hall, clock: ManualClock) -> None:
    hall.sign_in(1, "zhang01")  # window 2 stays signed out
    windows_before, config_before = hall.dispatcher.windows(), hall.config
    clock.set(at(0, "09:00"))
    for _ in range(14):  # 14 tickets of 6 minutes in 7 minutes, one window: a surge
        hall.issue("shebao")
        clock.advance(30)
    staffing = advice(hall, clock)

    advisory = asyncio.run(staffing.update())
    assert advisory is not None
    assert advisory.breaching == ["shebao"]
    assert advisory.move is not None
    assert advisory.after is not None
    after = {o.service: o for o in advisory.after}
    before = {o.service: o for o in advisory.before}
    assert before["shebao"].p90_s > before["shebao"].sla_s  # why it advises
    assert after["shebao"].p90_s <= after["shebao"].sla_s  # the move, simulated, holds
    assert advisory.message_zh.startswith("未来60分钟社保医保预计p90等候")
    message = staffing.message(session=7)
    assert message is not None
    assert message.advisory == advisory
    assert message.session == 7
    assert 0 <= message.expires_ts - message.ts - 3 * 300_000 < 60_000  # 3 periods + 4 runs
    assert mm.decode(mm.Kind.ADVICE, mm.encode(message), site_id="test-site") == message

    clock.advance(300)
    again = asyncio.run(staffing.update())
    assert again is not None
    assert (again.id, again.since_ts) == (advisory.id, advisory.since_ts)  # the same advice
    renewed = staffing.message(session=7)
    assert renewed is not None
    assert renewed.ts == clock.now_ms()

    # Advice never moves a window: a person does.
    assert hall.dispatcher.windows() == windows_before
    assert hall.config is config_before
    assert hall.dispatcher.window(2).state is WindowState.CLOSED

    hall.sign_in(2, "li02")  # the manager follows it, and the queue is served
    while hall.call_next(1) is not None:
        hall.call_next(2)
        clock.advance(30)
    hall.finish(2)
    assert asyncio.run(staffing.update()) is None
    clear = staffing.message(session=8)
    assert clear is not None
    assert clear.advisory is None
    assert clear.ts == clock.now_ms()
    assert staffing.status() is None


def test_no_advice_when_closed_or_turned_off(hall: Hall, clock: ManualClock) -> None:
    hall.sign_in(1, "zhang01")
    clock.set(at(0, "09:00"))
    for _ in range(14):
        hall.issue("shebao")
    staffing = advice(hall, clock)
    assert asyncio.run(staffing.update()) is not None
    clock.set(at(0, "17:31"))  # after closing: the advice is withdrawn
    assert asyncio.run(staffing.update()) is None
    cleared = staffing.message(1)
    assert cleared is not None
    assert cleared.advisory is None

    off = advice(hall, clock, enabled=False)
    clock.set(at(0, "10:00"))
    assert asyncio.run(off.update()) is None
    assert off.message(1) is None  # nothing ever advised: nothing to clear
    assert off.runs == 0


def test_a_hall_without_durations_gets_no_advice(tmp_path: Path, clock: ManualClock) -> None:
    config = load_config(site_toml(tmp_path, hours=DAY_HOURS))  # no mean_minutes
    hall = open_hall(config, clock)
    try:
        hall.sign_in(1, "zhang01")
        clock.set(at(0, "09:00"))
        for _ in range(30):
            hall.issue("shebao")
        staffing = advice(hall, clock)
        assert asyncio.run(staffing.update()) is None
        assert staffing.message(1) is None
    finally:
        hall.journal.close()


def test_a_short_last_hour_counts_per_hour(tmp_path: Path, clock: ManualClock) -> None:
    """Open 08:00-17:30: the last slot is half an hour, its tickets a rate twice as high."""
    hours = DAY_HOURS.replace("08:30", "08:00")
    hall = open_hall(load_config(site_toml(tmp_path, services=SERVICES, hours=hours)),
                     clock)
    try:
        for day in range(3):
            if day:
                new_day(hall, clock, day)
            issue(hall, clock, day, "17:10", "shebao", 10)
        new_day(hall, clock, 3)
        profile = learn_arrivals(hall.journal, hall.config,
                                 hall.journal.last_seq_of("day.reset"))
        assert profile.slots == 10
        assert profile.per_service["shebao"][9] == 10.0
        model = hall_model(hall.config)
        assert model is not None
        starts, rates, _p, _q = profile.apply(model).streams()[0]
        assert starts[9:] == [model.opens_ms + 9 * HOUR_MS, model.closes_ms]
        assert rates[9] * (starts[10] - starts[9]) == pytest.approx(10.0)
        assert rates[9] == pytest.approx(20.0 / HOUR_MS)
    finally:
        hall.journal.close()

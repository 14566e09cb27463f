"""Wait prediction from a hall state."""

from __future__ import annotations

from typing import Any

import pytest

from fastpath import Dispatcher, TicketClass
from fastpath.predict import (
    HallState,
    Predictor,
    WaitingTicket,
    WindowNow,
    naive_wait,
    predict_wait,
    state_from_day,
)
from fastpath.simulate import ModelError, example_hall, hall_from_dict, make_engine, simulate_day
from fastpath.types import MINUTE_MS, number_order

HOUR = 60 * MINUTE_MS
NOW = 10 * HOUR


def two_window_hall(minutes: int = 10) -> Any:
    return hall_from_dict({
        "hall": {"name": "t", "opens": "09:00", "closes": "17:00"},
        "services": [
            {"id": "a", "prefix": "A", "name_zh": "甲", "visitors_per_day": 0,
             "service_minutes": minutes, "distribution": "fixed"},
            {"id": "b", "prefix": "B", "name_zh": "乙", "visitors_per_day": 0,
             "service_minutes": minutes, "distribution": "fixed"},
        ],
        "windows": [{"name": "w", "count": 2, "services": {"a": 1, "b": 1}}],
    })


def ticket(service: int, counter: int, issued: int, klass: int = 0) -> WaitingTicket:
    return WaitingTicket(service, klass, issued, number_order("AB"[service], counter), issued)


def test_exact_waits_with_fixed_service(engine_class: Any) -> None:
    hall = two_window_hall()
    predictor = Predictor(hall, make_engine(hall, engine_class))
    # Both windows busy: one since 4 min ago, one since 9 min ago; 3 waiting.
    windows = (WindowNow(17 * HOUR, 0, NOW - 4 * MINUTE_MS), WindowNow(17 * HOUR, 1,
                                                                       NOW - 9 * MINUTE_MS))
    waiting = (ticket(0, 1, NOW - 5 * MINUTE_MS), ticket(1, 1, NOW - 4 * MINUTE_MS),
               ticket(0, 2, NOW - 3 * MINUTE_MS))
    state = HallState(hall, NOW, waiting, windows, (2, 1))
    # Frees at +1 (→A001), +6 (→B001), +11 (→A002), +16 (→ the new ticket).
    prediction = predictor.predict(state, "a", TicketClass.NORMAL, replications=20)
    assert (prediction.p50_ms, prediction.p90_ms) == (16 * MINUTE_MS, 16 * MINUTE_MS)
    # A priority ticket ages twice as fast: at +1 min the oldest normal
    # ticket has waited 6 min (score 600) and the new priority one 1 min
    # (score 200); at +6 it is 11×100 against 6×200, so it goes second.
    assert predictor.predict(state, "b", TicketClass.PRIORITY, 5).p50_ms == 6 * MINUTE_MS
    # Closing both windows in 5 minutes: the ticket is never called (censored).
    closing = HallState(hall, NOW, waiting, tuple(WindowNow(NOW + 5 * MINUTE_MS, w.busy_service,
                                                             w.busy_since_ms) for w in windows),
                        (2, 1))
    censored = predictor.predict(closing, "a", 0, 4, horizon_ms=HOUR)
    assert censored.censored == 4
    assert censored.p50_ms == HOUR
    # The naive formula: 2 ahead x 10 min / 2 windows.
    assert naive_wait(state, "a") == 10 * MINUTE_MS


def test_every_waiting_ticket_gets_its_remaining_wait(engine_class: Any) -> None:
    # The progress pages' waits: one forecast for every ticket waiting, in the order of
    # state.waiting (here not the queue order). Frees at +1 (A001), +6 (B001), +11 (A002).
    hall = two_window_hall()
    predictor = Predictor(hall, make_engine(hall, engine_class))
    windows = (WindowNow(17 * HOUR, 0, NOW - 4 * MINUTE_MS),
               WindowNow(17 * HOUR, 1, NOW - 9 * MINUTE_MS))
    waiting = (ticket(0, 2, NOW - 3 * MINUTE_MS), ticket(0, 1, NOW - 5 * MINUTE_MS),
               ticket(1, 1, NOW - 4 * MINUTE_MS))
    state = HallState(hall, NOW, waiting, windows, (2, 1))
    waits = predictor.ticket_waits(state, replications=8)
    assert [(w.p50_ms, w.p90_ms, w.censored) for w in waits] == [
        (11 * MINUTE_MS, 11 * MINUTE_MS, 0), (MINUTE_MS, MINUTE_MS, 0),
        (6 * MINUTE_MS, 6 * MINUTE_MS, 0)]
    # Both windows close at +5: only A001 is called; the others count the horizon.
    closing = HallState(hall, NOW, waiting, tuple(
        WindowNow(NOW + 5 * MINUTE_MS, w.busy_service, w.busy_since_ms) for w in windows),
        (2, 1))
    waits = predictor.ticket_waits(closing, replications=4, horizon_ms=HOUR)
    assert [(w.p50_ms, w.censored) for w in waits] == [(HOUR, 4), (MINUTE_MS, 0), (HOUR, 4)]
    assert predictor.ticket_waits(HallState(hall, NOW, (), windows, (0, 0))) == []


def test_empty_hall_means_no_wait() -> None:
    hall = two_window_hall()
    state = HallState(hall, NOW, (), (WindowNow(17 * HOUR), WindowNow(17 * HOUR)), (0, 0))
    assert predict_wait(state, "a", 0, NOW, replications=10).p90_ms == 0
    with pytest.raises(ModelError, match="not 1"):
        predict_wait(state, "a", 0, 1)
    with pytest.raises(ModelError, match="unknown service"):
        predict_wait(state, "zz", 0, NOW)
    with pytest.raises(ValueError, match="replications"):
        predict_wait(state, "a", 0, NOW, replications=0)
    with pytest.raises(ModelError, match="windows"):
        HallState(hall, NOW, (), (WindowNow(17 * HOUR),), (0, 0))


def test_state_from_live_dispatcher() -> None:
    hall = two_window_hall()
    live = Dispatcher([m.service for m in hall.services], hall.window_profiles(), hall.policy)
    live.sign_in(1)
    live.sign_in(2)
    live.pause(2)
    live.issue("a", NOW - 8 * MINUTE_MS)
    live.issue("b", NOW - 7 * MINUTE_MS)
    live.issue("a", NOW - 6 * MINUTE_MS)
    live.call_next(1, NOW - 7 * MINUTE_MS)
    state = HallState.from_dispatcher(hall, live, NOW)
    assert state.counters == (2, 1)
    assert [t.service for t in state.waiting] == [1, 0]
    assert state.windows[0] == WindowNow(17 * HOUR, 0, NOW - 7 * MINUTE_MS, 0)
    assert state.windows[1].open_until_ms == -1  # paused: not counted on
    # Window 1 frees at +3 (→ B001), then +13 (→ A002), then +23 (→ new).
    assert predict_wait(state, "a", 0, NOW, replications=3).p50_ms == 23 * MINUTE_MS


def test_prediction_beats_the_naive_formula_on_a_busy_day() -> None:
    from onedoor.bench.predict import without_no_shows

    hall = without_no_shows(example_hall("comprehensive_hall"))
    predictor = Predictor(hall)
    day = simulate_day(hall, 101, engine=predictor.engine)
    realised = day.waits()
    sim_err = naive_err = 0.0
    count = 0
    for serial in range(0, len(realised), 25):
        if realised[serial] < 0 or day.columns["klass"][serial] == 2:
            continue
        state = state_from_day(day, serial)
        sid = hall.services[day.columns["service"][serial]].service.id
        p = predictor.predict(state, sid, day.columns["klass"][serial], 100, seed=serial)
        sim_err += abs(p.p50_ms - realised[serial])
        naive_err += abs(naive_wait(state, sid) - realised[serial])
        count += 1
    assert count > 20
    assert sim_err < naive_err


def test_windows_closed_for_lunch_reopen_in_the_prediction(engine_class: Any) -> None:
    hall = hall_from_dict({
        "hall": {"name": "t", "opens": "09:00", "closes": "17:00"},
        "services": [{"id": "a", "prefix": "A", "name_zh": "甲", "visitors_per_day": 0,
                      "service_minutes": 10, "distribution": "fixed"}],
        "windows": [{"name": "w", "count": 2, "services": {"a": 1},
                     "shifts": [["09:00", "12:00"], ["13:00", "17:00"]]}],
    })
    now = 11 * HOUR + 55 * MINUTE_MS
    predictor = Predictor(hall, make_engine(hall, engine_class))
    busy = WindowNow(12 * HOUR, 0, now)  # both serve until 12:05, after closing
    state = HallState(hall, now, (ticket(0, 3, now - MINUTE_MS),), (busy, busy), (3,))
    # Nobody is called over lunch; at 13:00 both windows call, A003 and the new ticket.
    assert predictor.predict(state, "a", 0, 5).p50_ms == 65 * MINUTE_MS
    # A window closed now (lunch) still opens at its next shift.
    at_lunch = 12 * HOUR + 30 * MINUTE_MS
    closed = WindowNow(-1)
    lunch = HallState(hall, at_lunch, (), (closed, closed), (3,))
    assert predictor.predict(lunch, "a", 0, 5).p50_ms == 30 * MINUTE_MS
    assert naive_wait(lunch, "a") == 0  # the commercial formula sees nobody ahead


def test_no_arrivals_after_the_kiosks_stop(engine_class: Any) -> None:
    # One window, a priority-heavy stream: near closing, only the arrivals
    # before arrivals_until may overtake the new ticket.
    hall = hall_from_dict({
        "hall": {"name": "t", "opens": "09:00", "closes": "18:00", "arrivals_until": "16:00"},
        "services": [{"id": "a", "prefix": "A", "name_zh": "甲", "visitors_per_day": 5000,
                      "service_minutes": 10, "distribution": "fixed", "priority_share": 1.0}],
        "windows": [{"name": "w", "services": {"a": 1}}],
    })
    streams = hall.streams()
    assert streams[0][0][-1] == 16 * HOUR
    assert streams[0][1][-1] == 0.0
    now = 16 * HOUR + MINUTE_MS
    predictor = Predictor(hall, make_engine(hall, engine_class))
    busy = HallState(hall, now, (), (WindowNow(18 * HOUR, 0, now),), (10,))
    # Busy until 16:11; nobody can come after 16:00, so the new ticket goes next.
    assert predictor.predict(busy, "a", 0, 5).p90_ms == 10 * MINUTE_MS


def test_an_early_appointment_is_predicted_to_wait_from_its_booked_time(
        engine_class: Any) -> None:
    # docs/STATISTICS.md: the wait of an appointment that checks in early starts at its
    # booked time. Both windows are busy until +10 min; checked in now for +4 min, the
    # appointment is called at +10: a wait of 6 minutes, as the hall will count it.
    hall = two_window_hall()
    predictor = Predictor(hall, make_engine(hall, engine_class))
    windows = (WindowNow(17 * HOUR, 0, NOW), WindowNow(17 * HOUR, 1, NOW))
    state = HallState(hall, NOW, (), windows, (0, 0))
    booked = NOW + 4 * MINUTE_MS
    prediction = predictor.predict(state, "a", TicketClass.APPOINTMENT, 5, booked_ms=booked)
    assert (prediction.p50_ms, prediction.p90_ms) == (6 * MINUTE_MS, 6 * MINUTE_MS)
    # Checked in after its booked time (within the grace period): from the check-in.
    late = predictor.predict(state, "a", TicketClass.APPOINTMENT, 5,
                             booked_ms=NOW - 4 * MINUTE_MS)
    assert late.p50_ms == 10 * MINUTE_MS


def test_published_baselines_on_a_known_state() -> None:
    # The benchmark's baselines, by hand: two windows serving a and b alike (nobody
    # arrives, so each service has half of each window), fixed 10-minute services.
    from onedoor.bench.predict import Capacity, Rates, Ticket, baseline_predictions

    hall = two_window_hall()
    windows = (WindowNow(17 * HOUR, 0, NOW - 4 * MINUTE_MS), WindowNow(17 * HOUR, 1,
                                                                       NOW - 9 * MINUTE_MS))
    waiting = (ticket(0, 1, NOW - 5 * MINUTE_MS), ticket(1, 1, NOW - 4 * MINUTE_MS),
               ticket(0, 2, NOW - 3 * MINUTE_MS))
    state = HallState(hall, NOW, waiting, windows, (2, 1))
    rates = Rates(hall)
    capacity = Capacity(state, Predictor(hall).shifts(state), rates)
    assert capacity.rate(0, NOW) == pytest.approx(1 / (10 * MINUTE_MS))  # one window's worth
    new = Ticket(0, 0, NOW, number_order("A", 3))
    calls = baseline_predictions(state, new, capacity, rates, 5 * MINUTE_MS,
                                 (NOW - MINUTE_MS, 2 * MINUTE_MS), "a")
    assert calls["QL"] == pytest.approx(30 * MINUTE_MS)  # (2 ahead + 1) x 10 min / 1 window
    assert calls["QL-tv"] == pytest.approx(30 * MINUTE_MS)  # nothing varies, nobody overtakes
    assert calls["HOL"] == 5 * MINUTE_MS
    assert calls["LES"] == 2 * MINUTE_MS
    assert calls["naive"] == 10 * MINUTE_MS  # 2 ahead x 10 min / 2 open windows
    # A priority ticket ages twice as fast: the normal ones 5 and 3 minutes old stay
    # ahead of it for 5 and 3 minutes only, so it is called after the first completion.
    urgent = Ticket(0, 1, NOW, number_order("A", 3))
    calls = baseline_predictions(state, urgent, capacity, rates, None, None, "a")
    assert calls["QL"] == pytest.approx(10 * MINUTE_MS)
    assert calls["HOL"] == calls["LES"] == 0


def test_forecast_follows_every_ticket(engine_class: Any) -> None:
    # The forecast behind the staffing advice: every ticket waiting now and arriving
    # before a time, its wait. Frees at +1 (A001, waited 6), +6 (B001, 10), +11 (A002, 14);
    # with 12 minutes simulated, nobody arriving: all three called, the same every time.
    hall = two_window_hall()
    engine = make_engine(hall, engine_class)
    waiting = ([0, 1, 0], [0, 0, 0], [NOW - 5 * MINUTE_MS, NOW - 4 * MINUTE_MS,
                                      NOW - 3 * MINUTE_MS],
               [number_order("A", 1), number_order("B", 1), number_order("A", 2)],
               [NOW - 5 * MINUTE_MS, NOW - 4 * MINUTE_MS, NOW - 3 * MINUTE_MS])
    args = {"shifts": [[(NOW, 17 * HOUR)]] * 2, "busy_service": [0, 1],
                "busy_since": [NOW - 4 * MINUTE_MS, NOW - 9 * MINUTE_MS], "streaks": [0, 0],
                "waiting": waiting, "counters": [2, 1], "streams": hall.streams()}
    out = engine.forecast(3, 2, NOW, NOW + 12 * MINUTE_MS, NOW + 12 * MINUTE_MS, **args)
    assert list(out["replication"]) == [0, 0, 0, 1, 1, 1]
    assert list(out["service"]) == [0, 1, 0] * 2
    assert list(out["wait"]) == [6 * MINUTE_MS, 10 * MINUTE_MS, 14 * MINUTE_MS] * 2
    assert list(out["called"]) == [1, 1, 1] * 2
    assert list(out["place"]) == [0, 1, 2] * 2  # their places in the queue order
    # Stopped at +8: A002 has not been called; it counts with its wait so far, 11 minutes.
    out = engine.forecast(3, 1, NOW, NOW + 8 * MINUTE_MS, NOW + 8 * MINUTE_MS, **args)
    assert list(zip(out["service"], out["wait"], out["called"], strict=True)) == [
        (0, 6 * MINUTE_MS, 1), (1, 10 * MINUTE_MS, 1), (0, 11 * MINUTE_MS, 0)]
    assert list(out["place"]) == [0, 1, -1]  # a ticket not called has no place


def test_a_no_wait_ticket_is_judged_by_whether_it_waits_at_all() -> None:
    """Told "no wait" (p90 = 0): calibrated when as many wait as the simulation said."""
    from onedoor.bench.predict import _Errors, _row

    minute = MINUTE_MS
    errors = _Errors(predicted=[0.0, 0.0, 0.0, 2 * minute], realised=[0.0, 0.0, 3 * minute,
                                                                       minute],
                     p50=[0.0, 0.0, 0.0, minute], p90=[0.0, 0.0, 0.0, 4 * minute],
                     waits_at_all=[0.0, 0.02, 0.04, 0.9])
    row = _row("onedoor p50", errors, ranged=True)
    assert row["no_wait_predicted_wait_share"] == 0.02  # the three told "no wait"
    assert row["no_wait_realised_wait_share"] == 0.3333  # one of them waited
    assert row["p90_coverage"] == 0.75
    assert row["p90_coverage_when_waiting"] == 1.0

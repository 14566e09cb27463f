"""A simulated day replayed through the live Dispatcher: every call picks the same ticket.

This is the point of the simulator: it predicts with the hall's own policy.
The day's issues, calls and finishes are fed to :class:`fastpath.Dispatcher`
in time order; at each call the dispatcher must choose the ticket the
simulator chose (priority windows, ratio caps, SLA override, appointments).
"""

from __future__ import annotations

from typing import Any

import pytest

from fastpath import Dispatcher, TicketClass, _sim_py
from fastpath.simulate import example_hall, make_engine, simulate_day
from onedoor.bench.predict import without_no_shows
from tests.fastpath.conftest import IMPLEMENTATIONS, load_compiled

FINISH, ISSUE, CALL = 0, 1, 2


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(("name", "seed"), [("comprehensive_hall", 3), ("city_hall", 4),
                                            ("village_station", 5)])
def test_dispatcher_makes_the_simulated_calls(impl: str, name: str, seed: int,
                                              core_class: Any) -> None:
    hall = without_no_shows(example_hall(name))
    engine_class = _sim_py.Engine if impl == "python" else load_compiled("fastpath._sim_c").Engine
    day = simulate_day(hall, seed, engine=make_engine(hall, engine_class))
    c = day.columns
    # (time, kind, window, ticket): at one millisecond, windows that open
    # together (after lunch) call in window order, as the simulator does.
    events = []
    for i in range(len(c["arrival"])):
        events.append((c["arrival"][i], ISSUE, 0, i))
        if c["called"][i] >= 0:
            events.append((c["called"][i], CALL, c["window"][i], i))
            events.append((c["end"][i], FINISH, c["window"][i], i))
    events.sort()
    services = [m.service for m in hall.services]
    live = Dispatcher(services, hall.window_profiles(), hall.policy, core_class=core_class)
    for profile in hall.window_profiles():
        live.sign_in(profile.number)
    numbers: dict[int, str] = {}
    calls = 0
    for time_ms, kind, _window, i in events:
        window = c["window"][i] + 1
        if kind == ISSUE:
            klass = TicketClass(c["klass"][i])
            booked = c["key"][i] if klass is TicketClass.APPOINTMENT else None
            ticket = live.issue(services[c["service"][i]].id, time_ms, klass, booked)
            numbers[i] = ticket.number
        elif kind == CALL:
            called = live.call_next(window, time_ms)
            assert called is not None, (time_ms, window)
            assert called.number == numbers[i], (time_ms, window)
            calls += 1
        else:
            live.finish(window, time_ms)
    assert calls > 0.9 * len(c["arrival"])
    assert not live.waiting()

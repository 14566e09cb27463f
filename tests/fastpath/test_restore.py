"""Dispatcher.restore: a new device of the hall takes over the day of the one it replaces.

The tickets the central knows of join the queue with their numbers and queue times,
counters continue above them (and above the skipped numbers), windows keep calling.
Run against both cores.
"""

from __future__ import annotations

from typing import Any

import pytest

from fastpath import (
    Dispatcher,
    DispatchError,
    Service,
    Ticket,
    TicketClass,
    TicketState,
    WindowProfile,
    WindowState,
)
from fastpath.dispatcher import WindowTakeover

MIN = 60_000
OPEN = 8 * 60 * MIN
SERVICES = [Service("social", "A", "社保"), Service("tax", "B", "税务")]
WINDOWS = [WindowProfile(1, {"social": 1, "tax": 1}), WindowProfile(2, {"tax": 1})]


def _old_hall(core_class: Any) -> Dispatcher:
    """The replaced device's day: A001..A004 and B001 (priority), two called at window 1."""
    hall = Dispatcher(SERVICES, WINDOWS, core_class=core_class)
    for n in range(4):
        hall.issue("social", OPEN + n * MIN)
    hall.issue("tax", OPEN + 5 * MIN, TicketClass.PRIORITY)
    hall.sign_in(1, "zs01")
    hall.call_next(1, OPEN + 10 * MIN)
    hall.finish(1, OPEN + 11 * MIN)
    hall.call_next(1, OPEN + 12 * MIN)
    return hall


def _live(hall: Dispatcher) -> list[Ticket]:
    live = (TicketState.WAITING, TicketState.CALLED, TicketState.SERVING)
    return [t for t in hall.tickets() if t.state in live]


def test_the_new_device_continues_the_day(core_class: Any) -> None:
    old = _old_hall(core_class)
    new = Dispatcher(SERVICES, WINDOWS, core_class=core_class)
    window = old.window(1)
    result = new.restore(_live(old), {"A": 4, "B": 1},
                         [WindowTakeover(1, window.state, window.staff_id, window.current)])
    assert set(result.taken) == {t.number for t in _live(old)}
    assert result.left_out == ()
    held = old.window(1)
    assert (new.window(1).state, new.window(1).staff_id, new.window(1).current) == (
        held.state, held.staff_id, held.current)  # signed in as zs01, holding its ticket
    assert new.waiting("social") == old.waiting("social")
    # Both go on exactly alike: the same calls, the next numbers.
    for hall in (old, new):
        hall.finish(1, OPEN + 20 * MIN)
    assert [old.call_next(1, OPEN + 21 * MIN), old.issue("social", OPEN + 22 * MIN)] == [
        new.call_next(1, OPEN + 21 * MIN), new.issue("social", OPEN + 22 * MIN)]
    assert new.ticket("A005").number == "A005"


def test_counters_skip_numbers_the_old_device_may_have_issued(core_class: Any) -> None:
    new = Dispatcher(SERVICES, WINDOWS, core_class=core_class)
    new.restore([], {"A": 7}, skip=20)
    assert new.issue("social", OPEN).number == "A028"
    assert new.issue("tax", OPEN).number == "B021"  # a prefix the central had not seen


def test_a_called_ticket_without_its_window_waits_again(core_class: Any) -> None:
    old = _old_hall(core_class)
    new = Dispatcher(SERVICES, [WindowProfile(2, {"social": 1, "tax": 1})],
                     core_class=core_class)
    new.restore(_live(old), {"A": 4, "B": 1})
    assert new.ticket("A002").state is TicketState.WAITING  # window 1 is gone here
    assert new.ticket("A002").window is None
    new.sign_in(2, "zs02")
    called = new.call_next(2, OPEN + 30 * MIN)
    assert called is not None
    assert called.number == "B001"
    new.finish(2, OPEN + 31 * MIN)
    called = new.call_next(2, OPEN + 32 * MIN)
    assert called is not None
    assert called.number == "A002"


def test_known_numbers_and_unknown_services_are_left_out(core_class: Any) -> None:
    new = Dispatcher(SERVICES, WINDOWS, core_class=core_class)
    new.issue("social", OPEN)  # A001 exists here already
    tickets = [Ticket("A001", "social", TicketClass.NORMAL, OPEN, OPEN, TicketState.WAITING),
               Ticket("C003", "marriage", TicketClass.NORMAL, OPEN, OPEN, TicketState.WAITING),
               Ticket("A002", "social", TicketClass.NORMAL, OPEN, OPEN, TicketState.WAITING)]
    result = new.restore(tickets, {})
    assert (result.taken, result.left_out) == (("A002",), ("A001", "C003"))
    assert new.issue("social", OPEN + MIN).number == "A003"


def test_a_window_already_open_here_keeps_its_state(core_class: Any) -> None:
    new = Dispatcher(SERVICES, WINDOWS, core_class=core_class)
    new.sign_in(1, "here01")
    new.restore([], {}, [WindowTakeover(1, WindowState.PAUSED, "zs01", None),
                         WindowTakeover(2, WindowState.OPEN, "zs02", None)])
    assert (new.window(1).state, new.window(1).staff_id) == (WindowState.OPEN, "here01")
    assert (new.window(2).state, new.window(2).staff_id) == (WindowState.OPEN, "zs02")


@pytest.mark.parametrize("bad", [
    {"tickets": [Ticket("A001", "social", TicketClass.NORMAL, OPEN, OPEN, TicketState.DONE)]},
    {"tickets": [Ticket("A001", "social", TicketClass.NORMAL, OPEN, OPEN,
                        TicketState.CALLED)]},  # called, but at no window
    {"counters": {"A": -1}},
    {"windows": [WindowTakeover(1, WindowState.CLOSED, None, None)]},
    {"skip": 10_000},
])
def test_a_restore_that_does_not_hold_together_changes_nothing(core_class: Any,
                                                               bad: dict[str, Any]) -> None:
    new = Dispatcher(SERVICES, WINDOWS, core_class=core_class)
    with pytest.raises(DispatchError):
        new.restore(bad.get("tickets", []), bad.get("counters", {}), bad.get("windows", []),
                    skip=bad.get("skip", 0))
    assert new.tickets() == ()
    assert new.issue("social", OPEN).number == "A001"

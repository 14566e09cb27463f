"""Dispatcher.plan_issue: what issue() would hand out, asked without taking it (both cores).

The hall journals a ticket before the dispatcher takes it, so it asks the plan for
the number, the class after the late-appointment rule and the people ahead: the
plan must be exactly what issue() then does.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from fastpath import Dispatcher, DispatchError, Policy, Service, TicketClass, WindowProfile

MIN = 60_000
OPEN = 8 * 60 * MIN
SERVICES = [Service("social", "A", "社保"), Service("tax", "B", "税务")]
WINDOWS = [WindowProfile(1, {"social": 1, "tax": 1}, priority_window=True),
           WindowProfile(2, {"tax": 2})]


def test_the_plan_is_what_issue_then_does(core_class: Any) -> None:
    rng = random.Random(7)
    hall = Dispatcher(SERVICES, WINDOWS, Policy(appointment_grace_minutes=10),
                      core_class=core_class)
    for window in (1, 2):
        hall.sign_in(window, f"s{window}")
    now = OPEN
    for _ in range(300):
        now += rng.randrange(0, 3 * MIN)
        service = rng.choice(["social", "tax"])
        klass = rng.choice(list(TicketClass))
        booked = now + rng.randrange(-30 * MIN, 30 * MIN) if klass is TicketClass.APPOINTMENT \
            else None
        before = hall.tickets()
        plan = hall.plan_issue(service, now, klass, booked)
        assert hall.tickets() == before  # asking changed nothing
        ticket = hall.issue(service, now, klass, booked)
        assert (ticket.number, ticket.klass, ticket.key_ms, ticket.late_appointment) == (
            plan.number, plan.klass, plan.key_ms, plan.late_appointment)
        assert hall.people_ahead(ticket.number, now) == plan.people_ahead
        if rng.random() < 0.5:
            window = rng.choice([1, 2])
            if hall.window(window).current is not None:
                hall.finish(window, now)
            hall.call_next(window, now)


def test_late_appointments_counters_and_width(core_class: Any) -> None:
    policy = Policy(appointment_grace_minutes=10, number_width=1)
    hall = Dispatcher(SERVICES, WINDOWS, policy, core_class=core_class)
    late = hall.plan_issue("social", OPEN + 21 * MIN, TicketClass.APPOINTMENT, OPEN + 10 * MIN)
    assert (late.klass, late.late_appointment, late.key_ms) == (
        TicketClass.NORMAL, True, OPEN + 21 * MIN)
    on_time = hall.plan_issue("social", OPEN + 20 * MIN, TicketClass.APPOINTMENT,
                              OPEN + 10 * MIN)
    assert (on_time.klass, on_time.key_ms) == (TicketClass.APPOINTMENT, OPEN + 10 * MIN)
    assert policy.appointment_late(OPEN + 21 * MIN, OPEN + 10 * MIN)
    assert not policy.appointment_late(OPEN + 20 * MIN, OPEN + 10 * MIN)
    for _ in range(9):
        assert not hall.plan_issue("social", OPEN).widened
        hall.issue("social", OPEN)
    assert hall.last_counter("A") == 9
    assert hall.last_counter("B") == 0
    widened = hall.plan_issue("social", OPEN)
    assert (widened.number, widened.widened) == ("A10", True)  # the dispatcher widens;
    with pytest.raises(DispatchError):  # callers with a fixed width refuse it
        hall.plan_issue("social", OPEN, TicketClass.APPOINTMENT)



@pytest.mark.parametrize("seed", range(6))
def test_people_ahead_follow_the_order_the_window_calls(core_class: Any, seed: int) -> None:
    # One window serving one service calls exactly in call_order: past the SLA first,
    # then ageing (a priority ticket's wait counts twice, an appointment's four times),
    # then the number. The people ahead are each ticket's place in that order.
    rng = random.Random(seed)
    services = [Service("social", "A", "社保", sla_minutes=30)]
    hall = Dispatcher(services, [WindowProfile(1, {"social": 1})],
                      Policy(appointment_grace_minutes=10), core_class=core_class)
    hall.sign_in(1, "s1")
    now = OPEN
    for _ in range(rng.randrange(5, 40)):
        now += rng.randrange(0, 4 * MIN)
        klass = rng.choice(list(TicketClass))
        booked = now + rng.randrange(-5 * MIN, 20 * MIN) if klass is TicketClass.APPOINTMENT \
            else None
        hall.issue("social", now, klass, booked)
    now += rng.randrange(0, 60 * MIN)
    order = [t.number for t in hall.call_order("social", now)]
    ahead = hall.people_ahead_all(now)
    assert [ahead[number] for number in order] == list(range(len(order)))
    assert all(hall.people_ahead(n, now) == ahead[n] for n in order)
    called = []
    while (ticket := hall.call_next(1, now)) is not None:
        called.append(ticket.number)
        hall.finish(1, now)
    assert called == order
    assert hall.people_ahead(order[0], now) == 0  # no longer waiting

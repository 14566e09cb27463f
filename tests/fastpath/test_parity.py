"""Both cores and the literal oracle agree on random halls and random operation streams."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpath import (
    Dispatcher,
    DispatchError,
    NoShowPolicy,
    Policy,
    Service,
    TicketClass,
    WindowProfile,
)
from fastpath._core_py import QueueCore as PyCore
from tests.fastpath.conftest import load_compiled
from tests.fastpath.oracle import oracle_select

PREFIXES = "ABCDE"


@st.composite
def halls(draw: st.DrawFn) -> tuple[list[Service], list[WindowProfile], Policy]:
    n_services = draw(st.integers(1, 4))
    services = [
        Service(f"s{i}", PREFIXES[i], f"业务{i}",
                sla_minutes=draw(st.sampled_from([0, 0, 5, 15, 30])))
        for i in range(n_services)
    ]
    windows = []
    for number in range(1, draw(st.integers(1, 4)) + 1):
        served = draw(st.sets(st.integers(0, n_services - 1), min_size=1))
        windows.append(WindowProfile(
            number,
            {f"s{i}": draw(st.integers(1, 5)) for i in sorted(served)},
            priority_window=draw(st.booleans()),
            ratio_cap=draw(st.integers(0, 3)),
        ))
    policy = Policy(
        priority_weight_pct=draw(st.sampled_from([0, 50, 100, 300, 10_000])),
        appointment_weight_pct=draw(st.sampled_from([0, 100, 300])),
        appointment_grace_minutes=draw(st.sampled_from([0, 10])),
        no_show=draw(st.sampled_from(list(NoShowPolicy))),
    )
    return services, windows, policy


OPS = st.tuples(
    st.sampled_from(["issue", "issue", "issue", "issue", "next", "next", "next", "call",
                     "finish", "start", "recall", "no_show", "transfer", "cancel", "pause",
                     "resume", "sign_in", "sign_out"]),
    st.integers(0, 7),        # window / service / ticket selector
    st.integers(0, 3),        # secondary selector (class, target service)
    st.sampled_from([0, 1_000, 30_000, 60_000, 300_000, 900_000]),  # ms before the op
    st.integers(-20, 40),     # appointment: booked minutes from now
)


def apply(hall: Dispatcher, op: tuple[str, int, int, int, int], now: int) -> object:
    kind, a, b, _, booked = op
    services = [s.id for s in hall.services]
    windows = [w.number for w in hall.windows()]
    window = windows[a % len(windows)]
    numbers = [t.number for t in hall.tickets()] or ["A001"]
    try:
        if kind == "issue":
            klass = TicketClass(b % 3)
            booked_ms = max(0, now + booked * 60_000) if klass is TicketClass.APPOINTMENT else None
            return hall.issue(services[a % len(services)], now, klass, booked_ms)
        if kind == "call":
            return hall.call_next(window, now)
        if kind == "next":  # the keypad's 下一位: finish whoever is there, call the next
            if hall.window(window).current is not None:
                hall.finish(window, now)
            return hall.call_next(window, now)
        if kind == "finish":
            return hall.finish(window, now)
        if kind == "start":
            return hall.start_serving(window, now)
        if kind == "recall":
            return hall.recall(window, now)
        if kind == "no_show":
            return hall.no_show(window, now)
        if kind == "transfer":
            return hall.transfer(numbers[a % len(numbers)], services[b % len(services)], now)
        if kind == "cancel":
            return hall.cancel(numbers[a % len(numbers)], now)
        if kind == "pause":
            return hall.pause(window)
        if kind == "resume":
            return hall.resume(window)
        if kind == "sign_in":
            return hall.sign_in(window, f"staff{b}")
        return hall.sign_out(window)
    except DispatchError as exc:
        return (type(exc).__name__, str(exc))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hall=halls(), ops=st.lists(OPS, min_size=1, max_size=60))
def test_cython_python_and_oracle_agree(
    hall: tuple[list[Service], list[WindowProfile], Policy], ops: list[Any]
) -> None:
    c_core = load_compiled("fastpath._core_c").QueueCore
    services, windows, policy = hall
    py = Dispatcher(services, windows, policy, core_class=PyCore)
    cy = Dispatcher(services, windows, policy, core_class=c_core)
    for profile in windows:
        py.sign_in(profile.number)
        cy.sign_in(profile.number)
    now = 8 * 3_600_000
    for op in ops:
        now += op[3]
        for profile in windows:
            expected = oracle_select(py, profile.number, now)
            for hall_ in (py, cy):
                got = hall_.peek(profile.number, now)
                assert (None if got is None else got.number) == expected
        assert apply(py, op, now) == apply(cy, op, now)
        assert py.tickets() == cy.tickets()
        assert py.windows() == cy.windows()

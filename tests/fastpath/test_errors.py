"""Invalid operations raise typed errors and leave the hall exactly as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fastpath import (
    ConfigError,
    Dispatcher,
    DispatchError,
    InvalidTransition,
    NoCurrentTicket,
    Service,
    TicketClass,
    UnknownService,
    UnknownTicket,
    UnknownWindow,
    WindowBusy,
    WindowClosed,
    WindowProfile,
)

SERVICES = [Service("social", "A", "社保", sla_minutes=20), Service("tax", "B", "税务")]
WINDOWS = [WindowProfile(1, {"social": 1, "tax": 1}), WindowProfile(2, {"tax": 1}),
           WindowProfile(3, {"social": 1})]


@pytest.fixture
def hall(core_class: Any) -> Dispatcher:
    """Window 1 serving A001, window 2 open and idle, window 3 closed; B001 done."""
    d = Dispatcher(SERVICES, WINDOWS, core_class=core_class)
    d.sign_in(1)
    d.sign_in(2)
    d.issue("tax", 0)
    d.call_next(2, 1_000)
    d.finish(2, 2_000)          # B001 done
    d.issue("social", 3_000)    # A001
    d.issue("social", 4_000)    # A002 waiting
    d.call_next(1, 5_000)       # window 1 serves A001
    d.start_serving(1, 6_000)
    return d


def snapshot(d: Dispatcher) -> tuple[object, ...]:
    return (d.tickets(), d.windows(), [d.peek(w.number, 10_000) for w in d.windows()])


CASES: list[tuple[str, Callable[[Dispatcher], object], type[DispatchError]]] = [
    ("unknown window", lambda d: d.call_next(9, 7_000), UnknownWindow),
    ("unknown window pause", lambda d: d.pause(9), UnknownWindow),
    ("call at a closed window", lambda d: d.call_next(3, 7_000), WindowClosed),
    ("pause a closed window", lambda d: d.pause(3), WindowClosed),
    ("call while holding a ticket", lambda d: d.call_next(1, 7_000), WindowBusy),
    ("sign out while holding a ticket", lambda d: d.sign_out(1), WindowBusy),
    ("finish with nothing at the window", lambda d: d.finish(2, 7_000), NoCurrentTicket),
    ("recall a ticket being served", lambda d: d.recall(1, 7_000), InvalidTransition),
    ("no-show a ticket being served", lambda d: d.no_show(1, 7_000), InvalidTransition),
    ("transfer a finished ticket", lambda d: d.transfer("B001", "social", 7_000),
     InvalidTransition),
    ("transfer to its own service", lambda d: d.transfer("A002", "social", 7_000),
     InvalidTransition),
    ("transfer to an unknown service", lambda d: d.transfer("A002", "visa", 7_000),
     UnknownService),
    ("cancel a ticket being served", lambda d: d.cancel("A001", 7_000), InvalidTransition),
    ("unknown ticket", lambda d: d.cancel("Z999", 7_000), UnknownTicket),
    ("issue for an unknown service", lambda d: d.issue("visa", 7_000), UnknownService),
    ("appointment without a booked time",
     lambda d: d.issue("social", 7_000, TicketClass.APPOINTMENT), DispatchError),
    ("booked time on a walk-in", lambda d: d.issue("social", 7_000, booked_ms=8_000),
     DispatchError),
    ("negative time", lambda d: d.issue("social", -1), DispatchError),
    ("float time", lambda d: d.call_next(2, 7.5), DispatchError),  # type: ignore[arg-type]
    ("remove a service that has tickets",
     lambda d: d.reconfigure([SERVICES[1]], [WindowProfile(2, {"tax": 1})]), ConfigError),
    ("remove a window holding a ticket",
     lambda d: d.reconfigure(SERVICES, WINDOWS[1:]), ConfigError),
]


@pytest.mark.parametrize(("action", "error"), [(c[1], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_invalid_operation_raises_and_changes_nothing(
    hall: Dispatcher, action: Callable[[Dispatcher], object], error: type[DispatchError]
) -> None:
    before = snapshot(hall)
    with pytest.raises(error) as info:
        action(hall)
    assert str(info.value)  # a message a person can read
    assert snapshot(hall) == before


def test_errors_are_value_errors_with_context(hall: Dispatcher) -> None:
    with pytest.raises(ValueError, match="window 3 is closed"):
        hall.call_next(3, 7_000)
    with pytest.raises(InvalidTransition) as info:
        hall.transfer("B001", "social", 7_000)
    assert info.value.number == "B001"
    assert info.value.action == "transfer"


@pytest.mark.parametrize(
    ("services", "windows", "match"),
    [
        ([Service("a", "A", "甲"), Service("a", "B", "乙")], [], "appears twice"),
        ([Service("a", "A", "甲"), Service("b", "A", "乙")], [], "prefix 'A'"),
        ([Service("a", "A", "甲")], [WindowProfile(1, {"b": 1})], "unknown service 'b'"),
        ([Service("a", "A", "甲")], [WindowProfile(1, {"a": 1}), WindowProfile(1, {"a": 1})],
         "unique"),
    ],
)
def test_inconsistent_hall_config_is_refused(
    core_class: Any, services: list[Service], windows: list[WindowProfile], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        Dispatcher(services, windows, core_class=core_class)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Service("a", "a1", "甲"), "prefix"),
        (lambda: Service("a", "A", "甲", sla_minutes=-1), "sla_minutes"),
        (lambda: WindowProfile(0, {"a": 1}), ">= 1"),
        (lambda: WindowProfile(1, {}), "serves no service"),
        (lambda: WindowProfile(1, {"a": 101}), "weight"),
        (lambda: WindowProfile(1, {"a": 1}, ratio_cap=-1), "ratio_cap"),
    ],
)
def test_invalid_config_values_are_refused(build: Callable[[], object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build()


def test_reconfigure_keeps_queue_numbers_and_window_state(hall: Dispatcher) -> None:
    tickets = hall.tickets()
    new_windows = [*WINDOWS, WindowProfile(4, {"social": 2}, priority_window=True)]
    hall.reconfigure([*SERVICES, Service("visa", "C", "出入境")], new_windows)
    assert hall.tickets() == tickets
    assert hall.window(1).current == "A001"
    assert hall.issue("social", 8_000).number == "A003"
    assert hall.issue("visa", 8_000).number == "C001"
    hall.sign_in(4)
    assert hall.call_next(4, 9_000).number == "A002"

"""Dispatcher benchmark: call-next decisions per second and memory per waiting ticket.

The hall is the benchmark's: 33 comprehensive windows (一窗通办) serving 10 services,
300 tickets waiting, with every rule of the policy in play — class ageing,
appointments, ratio caps, priority windows, per-window weights and SLA limits
that some tickets have already passed. Both cores run side by side in one
process, on the same hall, so their ratio is honest.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from array import array
from collections.abc import Callable
from typing import Any

from fastpath import _core_py
from fastpath.dispatcher import Dispatcher
from fastpath.types import MINUTE_MS, Policy, Service, TicketClass, WindowProfile

N_WINDOWS = 33
N_WAITING = 300
SERVICES = (
    Service("shebao", "A", "社保医保", "Social insurance", sla_minutes=30),
    Service("huji", "B", "户籍", "Household registration", sla_minutes=20),
    Service("churujing", "C", "出入境", "Exit and entry", sla_minutes=30),
    Service("jiashi", "D", "驾驶证", "Driving licence", sla_minutes=25),
    Service("gongshang", "E", "工商登记", "Business registration", sla_minutes=45),
    Service("shuiwu", "F", "税务", "Tax", sla_minutes=40),
    Service("gongjijin", "G", "公积金", "Housing fund", sla_minutes=30),
    Service("budongchan", "H", "不动产登记", "Real estate", sla_minutes=60),
    Service("minzheng", "J", "民政", "Civil affairs", sla_minutes=30),
    Service("zonghe", "K", "综合咨询", "General enquiries", sla_minutes=15),
)


def bench_hall(rng_seed: int = 20261123) -> tuple[list[Service], list[WindowProfile], Policy]:
    """33 windows; each serves 3-5 services with weights; 4 priority windows; ratio caps."""
    import random

    rng = random.Random(rng_seed)
    ids = [s.id for s in SERVICES]
    windows = []
    for number in range(1, N_WINDOWS + 1):
        served = rng.sample(ids, rng.randint(3, 5))
        windows.append(
            WindowProfile(
                number,
                {sid: rng.choice((25, 50, 100, 100, 75)) for sid in served},
                priority_window=number % 8 == 0,
                ratio_cap=rng.choice((0, 2, 3)),
            )
        )
    return list(SERVICES), windows, Policy()


def bench_dispatcher(core_class: Any, seed: int = 7) -> tuple[Dispatcher, int]:
    """A signed-in hall with N_WAITING tickets issued over the last 50 minutes."""
    import random

    services, windows, policy = bench_hall()
    dispatcher = Dispatcher(services, windows, policy, core_class=core_class)
    rng = random.Random(seed)
    now = 9 * 60 * MINUTE_MS
    start = now - 50 * MINUTE_MS
    for i in range(N_WAITING):
        at = start + i * (50 * MINUTE_MS) // N_WAITING
        roll = rng.random()
        service = rng.choice(services).id
        if roll < 0.10:
            dispatcher.issue(service, at, TicketClass.PRIORITY)
        elif roll < 0.20:
            dispatcher.issue(service, at, TicketClass.APPOINTMENT, booked_ms=at + 5 * MINUTE_MS)
        else:
            dispatcher.issue(service, at)
    for window in windows:
        dispatcher.sign_in(window.number)
    return dispatcher, now


def _best_rate(run: Callable[[], int], min_seconds: float = 0.3, repeats: int = 5) -> float:
    """Operations per second, best of `repeats` runs of at least `min_seconds` each."""
    best = 0.0
    for _ in range(repeats):
        ops, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < min_seconds:
            ops += run()
        best = max(best, ops / elapsed)
    return best


def _rates(core_class: Any) -> dict[str, float]:
    dispatcher, now = bench_dispatcher(core_class)
    core = dispatcher._core  # the benchmark measures the policy itself, below the lifecycle
    n_windows = core.n_windows
    batch = 33 * 1000
    windows = array("q", [i % n_windows for i in range(batch)])
    nows = array("q", [now] * batch)
    out = array("q", [0] * batch)

    def select_many() -> int:
        core.select_many(windows, nows, out)
        return batch

    def select_one() -> int:
        for widx in range(n_windows):
            core.select(widx, now)
        return n_windows

    # A full hall cycle: call next at every window, finish, issue a replacement.
    clock = [now]

    def call_finish_issue() -> int:
        for window in range(1, n_windows + 1):
            clock[0] += 1000
            ticket = dispatcher.call_next(window, clock[0])
            if ticket is not None:
                dispatcher.finish(window, clock[0])
                dispatcher.issue(ticket.service_id, clock[0])
        return n_windows

    return {
        "decisions_per_s_batch": _best_rate(select_many),
        "decisions_per_s_single_call": _best_rate(select_one),
        "call_finish_issue_per_s": _best_rate(call_finish_issue, repeats=3),
    }


def _bytes_per_waiting_ticket(core_class: Any, n: int = 20_000) -> float:
    """tracemalloc bytes per extra waiting ticket (the C core allocates with PyMem, traced too)."""
    services, windows, policy = bench_hall()
    gc.collect()
    tracemalloc.start()
    try:
        dispatcher = Dispatcher(services, windows, policy, core_class=core_class)
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            dispatcher.issue(services[i % len(services)].id, i)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / n


def run() -> dict[str, Any]:
    """Figures for docs/BENCHMARKS.md: both cores in one run, and their ratios."""
    implementations: dict[str, Any] = {"python": _core_py.QueueCore}
    try:
        from fastpath import _core_c

        implementations["cython"] = _core_c.QueueCore
    except ImportError:
        pass
    figures: dict[str, Any] = {
        "hall": f"{N_WINDOWS} windows, {len(SERVICES)} services, {N_WAITING} waiting, full policy"
    }
    for name, core_class in implementations.items():
        for key, value in _rates(core_class).items():
            figures[f"{name}.{key}"] = round(value)
        figures[f"{name}.bytes_per_waiting_ticket"] = round(
            _bytes_per_waiting_ticket(core_class)
        )
    if "cython" in implementations:
        for key in ("decisions_per_s_batch", "decisions_per_s_single_call",
                    "call_finish_issue_per_s"):
            figures[f"ratio.{key}"] = round(
                figures[f"cython.{key}"] / figures[f"python.{key}"], 1
            )
    return figures

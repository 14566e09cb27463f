"""Per-ticket records: the same ten columns from both twins, whatever the compiled
engine stores while it runs (six columns, an offset from the arrival, exceptions
for the rest)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from fastpath import _sim_py
from fastpath._sim_py import COLUMN_TYPES, COLUMNS, Records
from fastpath.simulate import DIST_FIXED, example_hall, make_engine, simulate_day
from fastpath.types import APPOINTMENT, number_order
from tests.fastpath.conftest import load_compiled

HOUR = 3_600_000
THIRTY_DAYS = 30 * 24 * HOUR  # more than a 31-bit offset from an arrival (24.8 days)


def long_day_engine(engine_class: Any) -> Any:
    """One window, a service of thirty days, half the citizens absent at a call and
    requeued once, appointments with ten minutes' grace."""
    return engine_class(
        [0], [0, 100, 300], [number_order("A", 0)], [([(0, 1)], False, 0)],
        [(DIST_FIXED, float(THIRTY_DAYS), 0.0, [])], [0.5], 30_000, True, 600_000,
    )


def long_day(engine_class: Any, seed: int) -> dict[str, Any]:
    times = [8 * HOUR + 60_000 * i for i in range(8)]
    klasses = [2, 2, 1, 2, 0, 2, 0, 1]
    # appointments: checked in 10 and 20 min early (the wait starts at the booked
    # time, or is 0 when called before it), 5 min late (within the grace: queued by
    # the booked time), 30 min late (a walk-in)
    booked = {0: 10 * 60_000, 1: 20 * 60_000, 3: -5 * 60_000, 5: -30 * 60_000}
    replay = (times, [0] * len(times), klasses,
              [t + booked[i] if i in booked else -1 for i, t in enumerate(times)])
    result: dict[str, Any] = long_day_engine(engine_class).run(
        seed, 8 * HOUR, [[(8 * HOUR, 1 << 48)]], [([], [], 0.0, 0.0)], replay=replay)
    return result


def test_long_waits_and_rare_tickets_recorded_alike() -> None:
    compiled = load_compiled("fastpath._sim_c").Engine
    seen = {"offset beyond 31 bits": False, "start after a requeue": False,
            "absent, never served": False, "wait from the booked time": False,
            "called before the booked time": False}
    for seed in range(1, 9):
        expected = long_day(_sim_py.Engine, seed)
        got = long_day(compiled, seed)
        assert got == expected
        c = expected["columns"]
        for i in range(expected["n_tickets"]):
            seen["offset beyond 31 bits"] |= c["end"][i] - c["arrival"][i] > 2**31
            seen["start after a requeue"] |= c["start"][i] > c["called"][i] >= 0
            seen["absent, never served"] |= c["called"][i] >= 0 > c["start"][i]
            seen["wait from the booked time"] |= (
                c["klass"][i] == APPOINTMENT and c["key"][i] > c["arrival"][i]
                and 0 <= c["wait"][i] < c["called"][i] - c["arrival"][i])
            seen["called before the booked time"] |= 0 <= c["called"][i] < c["key"][i]
    assert all(seen.values()), seen


def test_records_are_the_ten_columns(engine_class: Any) -> None:
    hall = example_hall("comprehensive_hall")
    day = simulate_day(hall, 3, engine=make_engine(hall, engine_class))
    records = day.columns
    assert isinstance(records, Records)
    assert list(records) == list(COLUMNS)
    assert len(records) == len(COLUMNS)
    n = len(records["arrival"])
    assert n > 100
    for name, code in zip(COLUMNS, COLUMN_TYPES, strict=True):
        assert records[name].typecode == code
        assert len(records[name]) == n
    assert records["wait"] is records["wait"]  # built once
    with pytest.raises(KeyError):
        records["duration"]
    again = pickle.loads(pickle.dumps(records))
    assert again == records
    assert dict(again.items()) == dict(records.items())


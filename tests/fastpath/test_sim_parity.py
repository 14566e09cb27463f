"""The pure and compiled simulators give the same results for the same seed, to the millisecond."""

from __future__ import annotations

import itertools
import math
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpath import _core_py, _sim_py
from fastpath._sim_py import OUT_NO_SHOW
from fastpath.predict import Predictor
from fastpath.simulate import (
    DIST_EMPIRICAL,
    DIST_EXPONENTIAL,
    DIST_FIXED,
    DIST_LOGNORMAL,
    example_hall,
    generate_arrivals,
    make_engine,
    simulate_day,
)
from fastpath.types import number_order
from tests.fastpath.conftest import IMPLEMENTATIONS, load_compiled

HOUR = 3_600_000


def sim_module(kind: str) -> Any:
    return _sim_py if kind == "python" else load_compiled("fastpath._sim_c")


@pytest.fixture(params=IMPLEMENTATIONS)
def sim(request: pytest.FixtureRequest) -> Any:
    return sim_module(request.param)


def test_xoshiro_matches_the_reference_algorithm() -> None:
    rng = _sim_py.Xoshiro256(0)
    # splitmix64(0)'s first output, from the reference implementation.
    assert rng._s[0] == 0xE220A8397B1DCDAF
    rng._s = [1, 2, 3, 4]
    assert rng.next_u64() == 11520  # rotl(2*5, 7)*9, the xoshiro256** scrambler
    assert rng._s == [7, 0, 262146, 211106232532992]


def test_xoshiro_twins_agree(sim: Any) -> None:
    reference, other = _sim_py.Xoshiro256(2**64 - 1), sim.Xoshiro256(2**64 - 1)
    for _ in range(500):
        assert other.next_u64() == reference.next_u64()
        assert other.uniform() == reference.uniform()
        assert other.exponential() == reference.exponential()
        assert other.normal() == reference.normal()
    # Draws deep in the ziggurat's slow paths (the wedges and both tails) too.
    for _ in range(20_000):
        assert other.normal() == reference.normal()
        assert other.exponential() == reference.exponential()
    # One ticket's call draws from its own splitmix64 stream (ticket_draws).
    reference_mix, other_mix = _sim_py.SplitMix64(2**64 - 7), sim.SplitMix64(2**64 - 7)
    for _ in range(20_000):
        assert other_mix.next_u64() == reference_mix.next_u64()
        assert other_mix.uniform() == reference_mix.uniform()
        assert other_mix.exponential() == reference_mix.exponential()
        assert other_mix.normal() == reference_mix.normal()
    # splitmix64's first output from 0, the reference implementation's.
    assert _sim_py.SplitMix64(0).next_u64() == 0xE220A8397B1DCDAF
    with pytest.raises(ValueError, match="seed"):
        sim.SplitMix64(2**64)
    with pytest.raises(ValueError, match="seed"):
        sim.Xoshiro256(-1)
    with pytest.raises(ValueError, match="seed"):
        sim.Xoshiro256(2**64)


def test_service_time_samplers_agree_with_their_means() -> None:
    rng = _sim_py.Xoshiro256(3)
    n = 20_000
    for kind, a, b, samples, mean in [
        (DIST_EXPONENTIAL, 600_000.0, 0.0, [], 600_000.0),
        (DIST_FIXED, 90_000.0, 0.0, [], 90_000.0),
        (DIST_EMPIRICAL, 0.0, 0.0, [1_000, 2_000, 6_000], 3_000.0),
        # lognormal with mean 600 s, cv 0.5: mu = ln(600000) - σ²/2, σ² = ln 1.25
        (DIST_LOGNORMAL, 13.193953829, 0.472380727, [], 600_000.0),
    ]:
        draws = [_sim_py.sample_service_ms(rng, kind, a, b, samples) for _ in range(n)]
        assert sum(draws) / n == pytest.approx(mean, rel=0.03)
        assert min(draws) >= 1


@st.composite
def engines(draw: st.DrawFn) -> tuple[list[Any], dict[str, Any]]:
    n_s = draw(st.integers(1, 4))
    n_w = draw(st.integers(1, 5))
    dists = []
    for _ in range(n_s):
        kind = draw(st.sampled_from([DIST_EXPONENTIAL, DIST_LOGNORMAL, DIST_FIXED,
                                     DIST_EMPIRICAL]))
        samples = draw(st.lists(st.integers(1, 900_000), min_size=1, max_size=5))
        a = 12.0 if kind == DIST_LOGNORMAL else float(draw(st.integers(1_000, 900_000)))
        dists.append((kind, a, 0.6, samples if kind == DIST_EMPIRICAL else []))
    windows = []
    for _ in range(n_w):
        served = draw(st.sets(st.integers(0, n_s - 1), min_size=1))
        windows.append(([(s, draw(st.integers(1, 3))) for s in sorted(served)],
                        draw(st.booleans()), draw(st.integers(0, 2))))
    args = [
        [draw(st.sampled_from([0, 0, 600_000, 1_200_000])) for _ in range(n_s)],
        [0, draw(st.sampled_from([0, 100, 300])), draw(st.sampled_from([0, 300]))],
        [number_order("ABCD"[i], 0) for i in range(n_s)],
        windows,
        dists,
        [draw(st.sampled_from([0.0, 0.0, 0.1, 0.5])) for _ in range(n_s)],
        draw(st.sampled_from([0, 30_000, 60_000])),
        draw(st.booleans()),
        draw(st.sampled_from([0, 600_000])),
    ]
    shifts = []
    for _ in range(n_w):
        cuts = sorted(draw(st.sets(st.integers(8, 18), min_size=0, max_size=4)))
        shifts.append([(a * HOUR, b * HOUR) for a, b in zip(cuts[::2], cuts[1::2],
                                                              strict=False)])
    streams = [
        ([8 * HOUR, 10 * HOUR, 12 * HOUR][: draw(st.integers(0, 3))],
         [draw(st.floats(0.0, 3e-5)) for _ in range(3)],
         draw(st.sampled_from([0.0, 0.2])), draw(st.sampled_from([0.0, 0.3])))
        for _ in range(n_s)
    ]
    streams = [(starts, rates[: len(starts)], p, q) for starts, rates, p, q in streams]
    n_replay = draw(st.integers(0, 30))
    times = sorted(draw(st.lists(st.integers(8 * HOUR, 17 * HOUR), min_size=n_replay,
                                 max_size=n_replay)))
    replay = (
        times,
        [draw(st.integers(0, n_s - 1)) for _ in times],
        [draw(st.integers(0, 2)) for _ in times],
        [t + draw(st.integers(-1_800_000, 1_800_000)) for t in times],
    )
    run = {
        "seed": draw(st.integers(0, 2**64 - 1)), "start_ms": 8 * HOUR, "shifts": shifts,
        "streams": streams, "arrivals_until_ms": 16 * HOUR, "replay": replay,
        "max_arrivals": draw(st.sampled_from([10, 200])),
    }
    return args, run


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=engines())
def test_twins_and_both_cores_agree_on_random_halls(case: tuple[list[Any], dict[str, Any]]) -> None:
    args, run = case
    expected = _sim_py.Engine(*args).run(**run)
    compiled_core = load_compiled("fastpath._core_c").QueueCore
    assert _sim_py.Engine(*args, core_class=compiled_core).run(**run) == expected
    assert load_compiled("fastpath._sim_c").Engine(*args).run(**run) == expected
    assert _sim_py.Engine(*args).run(**run, record=False)["wait_sum"] == expected["wait_sum"]


@st.composite
def predictions(draw: st.DrawFn) -> tuple[list[Any], dict[str, Any]]:
    """A random hall (as :func:`engines`) and a random state of it at 10:00."""
    args, run = draw(engines())
    n_s, n_w = len(args[0]), len(args[3])
    now = 10 * HOUR
    shifts = [draw(st.sampled_from([
        [(now, 17 * HOUR)], [(now, now + HOUR // 4)], [(now, 12 * HOUR), (13 * HOUR, 17 * HOUR)],
        [(now + HOUR // 2, 17 * HOUR)], [],
    ])) for _ in range(n_w)]
    counters = [0] * n_s
    waiting: tuple[list[int], ...] = ([], [], [], [], [])
    for _ in range(draw(st.integers(0, 60))):
        service = draw(st.integers(0, n_s - 1))
        counters[service] += 1
        issued = now - draw(st.integers(0, 3 * HOUR // 2))
        klass = draw(st.integers(0, 2))
        key = issued + draw(st.integers(0, 900_000)) if klass == 2 else issued
        for column, value in zip(waiting, (service, klass, key,
                                          number_order("ABCD"[service], counters[service]),
                                          issued), strict=True):
            column.append(value)
    service = draw(st.integers(0, n_s - 1))
    counters[service] += 1
    state = {
        "seed": run["seed"], "replications": draw(st.integers(1, 6)), "now_ms": now,
        "horizon_ms": draw(st.sampled_from([HOUR, 4 * HOUR])), "shifts": shifts,
        "busy_service": [draw(st.integers(-1, n_s - 1)) for _ in range(n_w)],
        "busy_since": [now - draw(st.integers(0, HOUR // 3)) for _ in range(n_w)],
        "streaks": [draw(st.integers(0, 3)) for _ in range(n_w)],
        "waiting": waiting, "counters": counters, "streams": run["streams"],
        "tagged": (service, draw(st.integers(0, 1)), now,
                   number_order("ABCD"[service], counters[service])),
    }
    return args, state


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=predictions())
def test_twins_agree_on_random_predictions(case: tuple[list[Any], dict[str, Any]]) -> None:
    # The compiled engine builds the state once and restores it per replication.
    args, state = case
    expected = _sim_py.Engine(*args).predict(**state)
    compiled = load_compiled("fastpath._sim_c").Engine(*args)
    assert compiled.predict(**state) == expected
    assert compiled.predict(**state) == expected  # reusable, nothing left over
    compiled.run(1, 8 * HOUR, [[(8 * HOUR, 9 * HOUR)]] * len(args[3]),
                 [([], [], 0.0, 0.0)] * len(args[0]))
    assert compiled.predict(**state) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=predictions())
def test_twins_agree_on_random_forecasts(case: tuple[list[Any], dict[str, Any]]) -> None:
    # A forecast simulates every ticket's wait from the same kind of state.
    args, state = case
    now = state["now_ms"]
    forecast = {key: value for key, value in state.items()
                if key not in ("tagged", "horizon_ms")}
    forecast.update(until_ms=now + state["horizon_ms"], count_until_ms=now + HOUR // 2)
    expected = _sim_py.Engine(*args).forecast(**forecast)
    compiled = load_compiled("fastpath._sim_c").Engine(*args)
    assert compiled.forecast(**forecast) == expected
    assert compiled.predict(**state) == _sim_py.Engine(*args).predict(**state)
    assert compiled.forecast(**forecast) == expected  # reusable, nothing left over
    assert len(expected["wait"]) >= len(state["waiting"][0]) * state["replications"]


def test_engine_shared_between_threads(sim: Any) -> None:
    # Each entry point holds the engine's lock (the compiled loops run without
    # the GIL), so threads sharing one engine get what one thread would.
    hall = example_hall("comprehensive_hall")
    engine = make_engine(hall, sim.Engine)
    expected = simulate_day(hall, 3, engine=engine).columns
    results: list[Any] = []

    def work() -> None:
        results.append(simulate_day(hall, 3, engine=engine).columns)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert all(columns == expected for columns in results)


def test_xoshiro_draws_by_the_ziggurat_have_the_right_law() -> None:
    # Tables and tails: moments and the tail beyond the ziggurat's r
    # (the base layer) from a million compiled draws (the twins agree above).
    import math

    rng = load_compiled("fastpath._sim_c").Xoshiro256(17)
    n = 1_000_000
    exp = [rng.exponential() for _ in range(n)]
    normal = [rng.normal() for _ in range(n)]
    assert sum(exp) / n == pytest.approx(1.0, abs=0.005)
    assert sum(x * x for x in exp) / n == pytest.approx(2.0, abs=0.02)
    assert sum(normal) / n == pytest.approx(0.0, abs=0.005)
    assert sum(x * x for x in normal) / n == pytest.approx(1.0, abs=0.005)
    assert sum(x ** 4 for x in normal) / n == pytest.approx(3.0, abs=0.05)
    beyond = sum(1 for x in exp if x > _sim_py.ZIG_EXP_R)  # P = e^-r = 4.5e-4
    assert beyond == pytest.approx(n * math.exp(-_sim_py.ZIG_EXP_R), rel=0.15)
    tail = sum(1 for x in normal if abs(x) > _sim_py.ZIG_NORMAL_R)  # P = 2.6e-4
    assert tail == pytest.approx(n * math.erfc(_sim_py.ZIG_NORMAL_R / math.sqrt(2)), rel=0.2)
    assert min(exp) >= 0.0


def test_pure_engine_accepts_either_core(core_class: Any) -> None:
    hall = example_hall("village_station")
    pure = make_engine(hall, _sim_py.Engine, core_class=core_class)
    reference = make_engine(hall, _sim_py.Engine, core_class=_core_py.QueueCore)
    assert simulate_day(hall, 4, engine=pure).columns == \
        simulate_day(hall, 4, engine=reference).columns


@pytest.mark.parametrize("name", ["city_hall", "comprehensive_hall", "village_station"])
def test_example_days_identical(name: str) -> None:
    hall = example_hall(name)
    compiled = make_engine(hall, load_compiled("fastpath._sim_c").Engine)
    pure = make_engine(hall, _sim_py.Engine)
    arrivals = generate_arrivals(hall, 9)
    for arr in (None, arrivals):
        one = simulate_day(hall, 21, arr, engine=compiled)
        two = simulate_day(hall, 21, arr, engine=pure)
        assert one.columns == two.columns
        assert one.busy_ms == two.busy_ms
        assert (one.implementation, two.implementation) == ("cython", "python")
        assert {**one.summary().to_dict(), "implementation": "python"} == \
            two.summary().to_dict()


def test_same_seed_same_day_and_engine_reusable(sim: Any) -> None:
    hall = example_hall("comprehensive_hall")
    engine = make_engine(hall, sim.Engine)
    first = simulate_day(hall, 5, engine=engine)
    other = simulate_day(hall, 6, engine=engine)
    again = simulate_day(hall, 5, engine=engine)
    assert first.columns == again.columns
    assert first.columns != other.columns


def test_predictions_identical() -> None:
    from onedoor.bench.simulator import busy_city_hall_state

    hall = example_hall("city_hall")
    state = busy_city_hall_state(hall, waiting=120)
    compiled = Predictor(hall, make_engine(hall, load_compiled("fastpath._sim_c").Engine))
    pure = Predictor(hall, make_engine(hall, _sim_py.Engine))
    for service, klass in [("huji", 0), ("budongchan", 1), ("shuiwu", 0)]:
        assert compiled.waits(state, service, klass, 15, seed=7) == \
            pure.waits(state, service, klass, 15, seed=7)


class EagerArrivals:
    """An engine wrapper whose predictions draw every walk-in as it comes."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def predict(self, *args: Any) -> list[int]:
        waits: list[int] = self.engine.predict(*args, lazy_arrivals=False)
        return waits


def test_lazy_arrivals_change_no_prediction(sim: Any) -> None:
    # A prediction draws a walk-in label's arrivals only while its group is empty
    # (else when the group empties, or before a requeue or a late appointment
    # joins it). Each label has its own stream, so drawing every arrival as it
    # comes must give the same waits, replication by replication; only ticket
    # numbers, which break exact ties of score, are given in another order.
    from onedoor.bench.simulator import busy_city_hall_state

    hall = example_hall("city_hall")
    lazy = Predictor(hall, make_engine(hall, sim.Engine))
    eager = Predictor(hall, EagerArrivals(make_engine(hall, sim.Engine)))
    replications = 60 if sim is _sim_py else 400
    for waiting in (40, 300):  # groups that empty soon, and ones that do not
        state = busy_city_hall_state(hall, waiting=waiting)
        for service, klass in [("huji", 0), ("budongchan", 0), ("shebao", 1),
                               ("gongjijin", 0), ("jiaotong", 0)]:
            waits = lazy.waits(state, service, klass, replications, seed=3)
            assert waits == eager.waits(state, service, klass, replications, seed=3)
            assert len(set(waits)) > replications // 2  # real draws, not a constant


def test_compiled_simulator_loaded_when_required() -> None:
    import fastpath
    from tests.fastpath.conftest import NO_EXTENSIONS, REQUIRE_EXTENSIONS

    if NO_EXTENSIONS:
        assert fastpath.SIM_IMPLEMENTATION == "python"
    elif REQUIRE_EXTENSIONS:
        assert fastpath.SIM_IMPLEMENTATION == "cython"
    assert fastpath.predict_wait is not None
    assert "simulate_day" in fastpath.__all__


def test_bad_engine_input_is_refused_alike(sim: Any) -> None:
    one_window = [([(0, 1)], False, 0)]
    fixed = [(DIST_FIXED, 1000.0, 0.0, [])]
    order = [number_order("A", 0)]

    def engine(**changes: Any) -> Any:
        args: dict[str, Any] = {
            "sla_ms": [0], "class_weight_pct": [0, 100, 300], "order_base": order,
            "windows": one_window, "dists": fixed, "no_show_p": [0.0],
            "no_show_timeout_ms": 0, "requeue_once": True, "appointment_grace_ms": 0}
        args.update(changes)
        return sim.Engine(*args.values())

    with pytest.raises(ValueError, match="distribution kind"):
        engine(dists=[(9, 1.0, 0.0, [])])
    with pytest.raises(ValueError, match="needs samples"):
        engine(dists=[(DIST_EMPIRICAL, 0.0, 0.0, [])])
    with pytest.raises(ValueError, match="one entry per service"):
        engine(no_show_p=[0.0, 0.1])
    with pytest.raises(ValueError, match=r"no-show probability 1.5 is not in \[0, 1\]"):
        engine(no_show_p=[1.5])
    with pytest.raises(IndexError):
        engine(windows=[([(3, 1)], False, 0)])
    with pytest.raises(ValueError, match="at least one service"):
        engine(sla_ms=[], order_base=[], dists=[], no_show_p=[], windows=[])
    hall = engine()
    streams = [([], [], 0.0, 0.0)]
    with pytest.raises(ValueError, match="one entry per window"):
        hall.run(1, 0, [], streams)
    with pytest.raises(ValueError, match="seed"):
        hall.run(-1, 0, [[(0, 10)]], streams)
    with pytest.raises(ValueError, match="same length"):
        hall.run(1, 0, [[(0, 10)]], streams, replay=([1, 2], [0], [0], [-1]))
    with pytest.raises(IndexError):
        hall.run(1, 0, [[(0, 10)]], streams, replay=([1], [5], [0], [-1]))
    with pytest.raises(ValueError, match="sorted"):
        hall.run(1, 0, [[(0, 10)]], streams, replay=([5, 1], [0, 0], [0, 0], [-1, -1]))
    with pytest.raises(ValueError, match="one rate per segment"):
        hall.run(1, 0, [[(0, 10)]], [([0, 5], [1.0], 0.0, 0.0)])
    # A shift ending more than 2**49 ms (17,800 years) after the start cannot be ordered.
    with pytest.raises(OverflowError, match=r"event at 562949953421312 ms: .* 2\*\*49 ms"):
        hall.run(1, 0, [[(0, 1 << 49)]], streams)
    # After refusing, the same engine still runs a day.
    done = hall.run(1, 0, [[(0, 10_000)]], streams, replay=([5], [0], [0], [-1]))
    assert list(done["columns"]["end"]) == [1005]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_twins_agree_on_event_ties_and_far_times(seed: int) -> None:
    # The compiled trees key events by (49 bits of time since the run's base,
    # kind, window): ties to the millisecond (fixed service times, replays at
    # one instant), events before the start (replays move the base) and events
    # more than 2**40 ms after it (a rare stream, a long shift).
    far = 8 * HOUR + 2**41
    args = [
        [0, 0], [0, 100, 300], [number_order("A", 0), number_order("B", 0)],
        [([(0, 1)], False, 0), ([(0, 1), (1, 2)], True, 2), ([(1, 1)], False, 0)],
        [(DIST_FIXED, 60_000.0, 0.0, []), (DIST_FIXED, 60_000.0, 0.0, [])],
        [0.0, 0.5], 30_000, True, 600_000,
    ]
    times = [7 * HOUR, 7 * HOUR, 8 * HOUR, 8 * HOUR, 8 * HOUR, 8 * HOUR + 60_000,
             8 * HOUR + 60_000, 8 * HOUR + 120_000]
    replay = (times, [i % 2 for i in range(len(times))], [i % 3 for i in range(len(times))],
              [t + 60_000 for t in times])
    run = {
        "seed": seed, "start_ms": 8 * HOUR,
        "shifts": [[(8 * HOUR, far)], [(8 * HOUR, 9 * HOUR), (far - HOUR, far)],
                   [(7 * HOUR, 8 * HOUR + 60_000), (far, far + HOUR)]],
        "streams": [([8 * HOUR], [1e-13], 0.0, 0.0), ([8 * HOUR], [2e-5], 0.3, 0.2)],
        "max_arrivals": 40, "replay": replay,
    }
    expected = _sim_py.Engine(*args).run(**run)
    assert expected["end_ms"] > 8 * HOUR + 2**40  # the far events did run
    assert load_compiled("fastpath._sim_c").Engine(*args).run(**run) == expected


def arrivals_only_hall() -> list[Any]:
    """Two services and one window that never opens: every arrival stays queued."""
    return [
        [0, 0], [0, 100, 300], [number_order("A", 0), number_order("B", 0)],
        [([(0, 1), (1, 1)], False, 0)],
        [(DIST_FIXED, 60_000.0, 0.0, []), (DIST_FIXED, 60_000.0, 0.0, [])],
        [0.0, 0.0], 30_000, True, 600_000,
    ]


# Segments with no one arriving, a service that starts late and one that stops:
# each label's stream crosses them memorylessly, and max_arrivals stops them all
# at any point.
GAPPY_STREAMS = [
    ([8 * HOUR, 9 * HOUR, 10 * HOUR, 11 * HOUR], [2e-4, 0.0, 5e-4, 1e-4], 0.2, 0.3),
    ([9 * HOUR + 1_234, 10 * HOUR + 500_000], [3e-4, 0.0], 0.0, 0.5),
]


@pytest.mark.parametrize("max_arrivals", [1, 31, 32, 33, 1_000_000])
def test_twins_agree_on_arrival_streams_across_segments_and_blocks(max_arrivals: int) -> None:
    run = {"seed": 5, "start_ms": 8 * HOUR + 600_000, "shifts": [[]],
           "streams": GAPPY_STREAMS, "arrivals_until_ms": 12 * HOUR,
           "max_arrivals": max_arrivals}
    expected = _sim_py.Engine(*arrivals_only_hall()).run(**run)
    assert expected["n_tickets"] == min(max_arrivals, expected["n_tickets"]) > 0
    assert load_compiled("fastpath._sim_c").Engine(*arrivals_only_hall()).run(**run) == expected


def test_arrivals_come_at_each_service_and_class_rate(sim: Any) -> None:
    # Each (service, class) label's own stream must come at its Poisson rate:
    # the counts per label and per segment.
    hours = 40
    streams = [([0, hours * HOUR // 2], [2e-4, 1e-4], 0.2, 0.3),
               ([hours * HOUR // 2], [3e-4], 0.0, 0.5)]
    result = sim.Engine(*arrivals_only_hall()).run(
        11, 0, [[]], streams, arrivals_until_ms=hours * HOUR)
    cols = result["columns"]
    half = hours * HOUR // 2
    expected = {  # (service, class, second half) -> mean count
        (0, 0, False): 2e-4 * 0.5 * half, (0, 1, False): 2e-4 * 0.2 * half,
        (0, 2, False): 2e-4 * 0.3 * half, (0, 0, True): 1e-4 * 0.5 * half,
        (0, 1, True): 1e-4 * 0.2 * half, (0, 2, True): 1e-4 * 0.3 * half,
        (1, 0, True): 3e-4 * 0.5 * half, (1, 2, True): 3e-4 * 0.5 * half,
    }
    counts = dict.fromkeys(expected, 0)
    for arrival, service, klass, key in zip(cols["arrival"], cols["service"], cols["klass"],
                                            cols["key"], strict=True):
        # Booked from 5 min before to 15 min after the arrival (within the grace period).
        assert arrival - 5 * 60_000 <= key < arrival + 15 * 60_000 if klass == 2 else key == arrival
        counts[(service, klass, arrival >= half)] += 1
    for label, mean in expected.items():
        assert abs(counts[label] - mean) < 4 * mean**0.5, (label, counts[label], mean)


@pytest.mark.parametrize("p", [0.03, 0.25, 1.0])
def test_no_shows_come_at_their_probability(sim: Any, p: float) -> None:
    # Each service draws its calls until the next no-show (a geometric gap), not
    # one uniform per call: the calls must still be absent independently with p.
    hall = sim.Engine([0, 0], [0, 100, 300], [number_order("A", 0), number_order("B", 0)],
                      [([(0, 1), (1, 1)], False, 0)] * 4,
                      [(DIST_FIXED, 60_000.0, 0.0, [])] * 2, [p, 0.0], 1_000, False, 0)
    day = hall.run(7, 0, [[(0, 1 << 40)]] * 4, [([0], [1 / 40_000], 0.0, 0.0)] * 2,
                   max_arrivals=20_000)
    outcomes = day["columns"]["outcome"]
    services = day["columns"]["service"]
    absent = [o == OUT_NO_SHOW for o, s in zip(outcomes, services, strict=True) if s == 0]
    present = [o == OUT_NO_SHOW for o, s in zip(outcomes, services, strict=True) if s == 1]
    assert len(absent) > 9_000
    assert not any(present)
    share = sum(absent) / len(absent)
    assert share == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / len(absent)) + 1e-9)
    # Runs of no-shows are as long as independent calls make them: P(next absent | absent) = p.
    pairs = [b for a, b in itertools.pairwise(absent) if a]
    if p < 1.0:
        assert sum(pairs) / len(pairs) == pytest.approx(p, abs=4 * math.sqrt(p / len(pairs)) + 0.01)

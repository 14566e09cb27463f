"""The simulator against queueing theory: Erlang C (M/M/c), M/M/1 and M/D/1 (Pollaczek–Khinchine).

Each check simulates enough customers that 2% is about three standard errors
of the estimated mean wait (from Whitt's asymptotic variance for M/M/1,
2(1+ρ)/(ρ(1-ρ)²) service times, over the probability of waiting; heavy load
needs tens of millions). Those
runs take seconds on the compiled engine and would take many minutes on the
pure one, so heavy-load checks run on the compiled engine only; the pure
engine runs the light-load checks (and the parity suite proves the two
engines produce identical results for the same seed).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from fastpath import _sim_py
from fastpath.simulate import DIST_FIXED
from fastpath.types import number_order
from onedoor.bench.simulator import ALWAYS_OPEN_MS, MEAN_SERVICE_MS, erlang_c_wait, mmc_mean_wait
from tests.fastpath.conftest import NO_EXTENSIONS, load_compiled

pytestmark = pytest.mark.slow
MU = 1.0 / MEAN_SERVICE_MS


def customers_for(rho: float, servers: int = 1, tolerance: float = 0.02,
                  sigmas: float = 3.0) -> int:
    """Customers so that ``sigmas`` standard errors of the mean wait stay within ``tolerance``.

    Whitt's M/M/1 constant, divided by the probability of waiting: with many
    windows most customers do not wait at all, and the mean rests on the rest.
    """
    relative_variance = 2.0 * (1.0 + rho) / (rho * (1.0 - rho) ** 2)  # per service time
    lam = rho * servers * MU
    wait_probability = erlang_c_wait(servers, lam, MU) * (servers * MU - lam)
    return math.ceil(relative_variance * (sigmas / tolerance) ** 2 * rho / wait_probability)


def md1_wait(rho: float) -> float:
    return rho / (2.0 * MU * (1.0 - rho))


def engine_class(kind: str) -> Any:
    return _sim_py.Engine if kind == "python" else load_compiled("fastpath._sim_c").Engine


def test_formulas_themselves() -> None:
    # Erlang C with c=1 is M/M/1: Wq = ρ/(μ-λ); P-K for M/D/1 is half of it.
    lam = 0.5 * MU
    assert erlang_c_wait(1, lam, MU) == pytest.approx(0.5 / (MU - lam))
    assert md1_wait(0.5) == pytest.approx(erlang_c_wait(1, lam, MU) / 2)
    # Textbook value: M/M/2, a = 1.5 → P(wait) = 0.6428..., Wq = 0.6428/(2μ-λ)
    assert erlang_c_wait(2, 1.5, 1.0) == pytest.approx(0.642857 / 0.5, rel=1e-5)
    assert customers_for(0.5) > 100_000


LIGHT = [(1, 0.5)]  # ~0.5 M customers: fine on the pure engine
HEAVY = [(3, 0.6), (1, 0.8), (5, 0.9), (1, 0.95), (20, 0.95)]  # 1-46 M customers


@pytest.mark.parametrize(("servers", "rho"), LIGHT)
@pytest.mark.parametrize("kind", ["python", "cython"])
def test_erlang_c_light_load(kind: str, servers: int, rho: float) -> None:
    if kind == "cython" and NO_EXTENSIONS:
        pytest.skip("pure-Python run of the suite")
    if kind == "python" and not NO_EXTENSIONS:
        pytest.skip("the pure engine's theory run is the ONEDOOR_NO_EXTENSIONS=1 pass; "
                    "here the parity tests tie it to the compiled one")
    customers = customers_for(rho, servers)
    wait = mmc_mean_wait(engine_class(kind), servers, rho, customers, seed=11,
                         warmup=customers // 100)
    theory = erlang_c_wait(servers, rho * servers * MU, MU)
    assert wait == pytest.approx(theory, rel=0.02)


@pytest.mark.parametrize(("servers", "rho"), HEAVY)
def test_erlang_c_heavy_load(servers: int, rho: float) -> None:
    if NO_EXTENSIONS:
        pytest.skip("needs 10^6-10^7 customers: minutes on the pure engine; "
                    "the compiled run covers it and the parity tests tie the two together")
    customers = customers_for(rho, servers)
    wait = mmc_mean_wait(engine_class("cython"), servers, rho, customers, seed=11,
                         warmup=customers // 100)
    theory = erlang_c_wait(servers, rho * servers * MU, MU)
    assert wait == pytest.approx(theory, rel=0.02)


def md1_mean_wait(engine: Any, rho: float, customers: int) -> float:
    hall = engine([0], [0, 0, 0], [number_order("A", 0)], [([(0, 1)], False, 0)],
                  [(DIST_FIXED, MEAN_SERVICE_MS, 0.0, [])], [0.0], 0, False, 0)
    result = hall.run(13, 0, [[(0, ALWAYS_OPEN_MS)]], [([0], [rho * MU], 0.0, 0.0)],
                      max_arrivals=customers, record=False, warmup=customers // 100)
    return float(result["wait_sum"][0] / result["waited"][0])


@pytest.mark.parametrize("rho", [0.5, 0.8, 0.95])
def test_pollaczek_khinchine_md1(rho: float) -> None:
    # Deterministic service halves the M/M/1 variance constant (roughly): the
    # M/M/1 customer count is on the safe side.
    kind = "python" if NO_EXTENSIONS else "cython"
    if kind == "python" and rho > 0.5:
        pytest.skip("heavy load needs ~10^7 customers: compiled engine only")
    customers = customers_for(rho)
    assert md1_mean_wait(engine_class(kind), rho, customers) == pytest.approx(
        md1_wait(rho), rel=0.02)


def test_day_sized_recorded_runs_simulate_what_the_unrecorded_ones_do() -> None:
    """The benchmark of the recorded path as the tools run it: the same days either way."""
    pytest.importorskip("simpy")
    load_compiled("fastpath._sim_c")
    from onedoor.bench.simulator import day_sized_records

    out = day_sized_records(days=3, customers=500, simpy_customers=500, rounds=2)
    recorded, unrecorded = out["records"], out["no_records"]
    assert [r["mean_wait_ms"] for r in recorded] == [r["mean_wait_ms"] for r in unrecorded]
    assert recorded[0]["mean_wait_ms"] > 0
    assert recorded[0]["customers"] == 1_500
    assert len(out["cpu_ratios_records_vs_simpy"]) == 2
    assert out["cpu_ratio_records_vs_simpy"] > 0

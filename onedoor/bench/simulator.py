"""Simulator benchmarks, as functions returning dicts (``onedoor bench`` calls them).

* :func:`mmc_throughput`: simulated customers per second for one M/M/c hall in
  onedoor (Cython engine, pure-Python engine), SimPy and Ciw, and the ratios;
* :func:`prediction_latency`: ``predict_wait`` for a 220-window hall with 300
  waiting tickets, 100 and 1,000 replications;
* :func:`run_all`: these and the prediction against the published
  predictors (:mod:`onedoor.bench.predict`).

SimPy and Ciw are dev dependencies used here only.
"""

from __future__ import annotations

import importlib
import statistics
import time
from collections.abc import Callable
from typing import Any

from fastpath import _sim_py
from fastpath.predict import (
    HallState,
    Predictor,
    WaitingTicket,
    WindowNow,
)
from fastpath.simulate import (
    DIST_EXPONENTIAL,
    HallModel,
    Xoshiro256,
    example_hall,
)
from fastpath.types import MINUTE_MS, number_order

MEAN_SERVICE_MS = 10_000.0


def erlang_c_wait(servers: int, arrival_rate: float, service_rate: float) -> float:
    """Mean wait in queue of M/M/c (Erlang C), in the rates' time unit."""
    offered = arrival_rate / service_rate
    if offered >= servers:
        raise ValueError("unstable: arrival rate >= servers x service rate")
    total = 0.0
    term = 1.0
    for k in range(servers):
        if k:
            term *= offered / k
        total += term
    top = term * offered / servers * servers / (servers - offered)
    wait_probability = top / (total + top)
    return wait_probability / (servers * service_rate - arrival_rate)


# The close of a shift that never ends: far, but within the span a run orders
# (EVENT_SPAN_MS, 2**49 ms).
ALWAYS_OPEN_MS = 1 << 48


def mmc_engine(engine_class: Any, servers: int) -> Any:
    """One service, ``servers`` identical windows, exponential service, FIFO."""
    return engine_class(
        [0], [0, 0, 0], [number_order("A", 0)], [([(0, 1)], False, 0)] * servers,
        [(DIST_EXPONENTIAL, MEAN_SERVICE_MS, 0.0, [])], [0.0], 0, False, 0,
    )


def mmc_mean_wait(engine_class: Any, servers: int, rho: float, customers: int, seed: int,
                  warmup: int = 0, record: bool = False, read_waits: bool = False) -> float:
    """Mean wait (ms) of an M/M/c run in onedoor's engine (FIFO: one service, no classes).

    ``record``: keep every customer's records too (what ``simulate_day``, the CLI
    and staffing use: the ten columns of ``Records``); the mean still comes from
    the engine's totals, equal to the records' (tested). ``read_waits``: and
    read the ``wait`` column (what staffing and a day's summary read first; the
    compiled engine stores it, and builds key, called, start and end on first read).
    """
    engine = mmc_engine(engine_class, servers)
    rate = rho * servers / MEAN_SERVICE_MS
    result = engine.run(seed, 0, [[(0, ALWAYS_OPEN_MS)]] * servers, [([0], [rate], 0.0, 0.0)],
                        max_arrivals=customers, record=record, warmup=warmup)
    if record and read_waits and len(result["columns"]["wait"]) != result["n_tickets"]:
        raise AssertionError("a wait per ticket")
    return float(result["wait_sum"][0] / result["waited"][0])


def _onedoor(engine_class: Any, servers: int, rho: float, customers: int,
             record: bool = False, read_waits: bool = False) -> float:
    return mmc_mean_wait(engine_class, servers, rho, customers, seed=1, record=record,
                         read_waits=read_waits)


def _simpy(servers: int, rho: float, customers: int) -> float:
    import random

    import simpy

    rng = random.Random(1)
    env = simpy.Environment()
    windows = simpy.Resource(env, capacity=servers)
    waits: list[float] = []
    rate = rho * servers / MEAN_SERVICE_MS

    def citizen(env: Any) -> Any:
        arrived = env.now
        with windows.request() as request:
            yield request
            waits.append(env.now - arrived)
            yield env.timeout(rng.expovariate(1.0 / MEAN_SERVICE_MS))

    def source(env: Any) -> Any:
        for _ in range(customers):
            yield env.timeout(rng.expovariate(rate))
            env.process(citizen(env))

    env.process(source(env))
    env.run()
    return statistics.fmean(waits)


def _ciw(servers: int, rho: float, customers: int) -> float:
    import ciw

    rate = rho * servers / MEAN_SERVICE_MS
    network = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(rate=rate)],
        service_distributions=[ciw.dists.Exponential(rate=1.0 / MEAN_SERVICE_MS)],
        number_of_servers=[servers],
    )
    ciw.seed(1)
    simulation = ciw.Simulation(network)
    simulation.simulate_until_max_customers(customers, method="Finish")
    return statistics.fmean(r.waiting_time for r in simulation.get_all_records())


def _rate(run: Callable[[], float], customers: int) -> dict[str, float]:
    # CPU time as well as wall time: on a shared machine the CPU figure is the
    # one that does not depend on what else runs.
    started, cpu_started = time.perf_counter(), time.process_time()
    mean_wait = run()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return {"customers": customers, "seconds": round(seconds, 4), "cpu_seconds": round(cpu, 4),
            "customers_per_s": round(customers / seconds),
            "customers_per_cpu_s": round(customers / cpu), "mean_wait_ms": round(mean_wait, 1)}


def mmc_throughput(servers: int = 10, rho: float = 0.9, customers: int = 2_000_000,
                   pure_customers: int = 100_000, simpy_customers: int = 100_000,
                   ciw_customers: int = 20_000) -> dict[str, Any]:
    """Customers simulated per second for the same M/M/c hall in four simulators."""
    results: dict[str, Any] = {
        "model": f"M/M/{servers}, rho={rho}, mean service {MEAN_SERVICE_MS / 1000:g} s",
        "erlang_c_wait_ms": round(erlang_c_wait(servers, rho * servers / MEAN_SERVICE_MS,
                                                1.0 / MEAN_SERVICE_MS), 1),
    }
    try:
        compiled = importlib.import_module("fastpath._sim_c").Engine
        results["onedoor-cython"] = _rate(
            lambda: _onedoor(compiled, servers, rho, customers), customers)
        # With every customer's records, as simulate_day keeps them: the first
        # run in this process, then two more (the records' memory is new to the
        # process: the kernel maps and clears its pages), then three that also
        # read the wait column.
        results["onedoor-cython-records"] = [_rate(
            lambda: _onedoor(compiled, servers, rho, customers, record=True), customers)
            for _ in range(3)]
        results["onedoor-cython-records-waits"] = [_rate(
            lambda: _onedoor(compiled, servers, rho, customers, record=True, read_waits=True),
            customers) for _ in range(3)]
    except ImportError:
        results["onedoor-cython"] = None
        results["onedoor-cython-records"] = None
        results["onedoor-cython-records-waits"] = None
    results["onedoor-pure"] = _rate(
        lambda: _onedoor(_sim_py.Engine, servers, rho, pure_customers), pure_customers)
    # SimPy's rate moves between runs: the yardstick is the median of three.
    results["simpy_runs"] = sorted(
        (_rate(lambda: _simpy(servers, rho, simpy_customers), simpy_customers)
         for _ in range(3)), key=lambda run: run["customers_per_cpu_s"])
    results["simpy"] = results["simpy_runs"][1]
    results["ciw"] = _rate(lambda: _ciw(servers, rho, ciw_customers), ciw_customers)
    fastest = results["onedoor-cython"] or results["onedoor-pure"]
    for other in ("onedoor-pure", "simpy", "ciw"):
        results[f"ratio_vs_{other}"] = round(
            fastest["customers_per_s"] / results[other]["customers_per_s"], 1)
        results[f"cpu_ratio_vs_{other}"] = round(
            fastest["customers_per_cpu_s"] / results[other]["customers_per_cpu_s"], 1)
    for recorded in ("records", "records-waits"):
        if results[f"onedoor-cython-{recorded}"]:
            results[f"cpu_ratio_{recorded.replace('-', '_')}_vs_simpy"] = [
                round(run["customers_per_cpu_s"] / results["simpy"]["customers_per_cpu_s"], 1)
                for run in results[f"onedoor-cython-{recorded}"]]
    return results


def day_sized_records(servers: int = 10, rho: float = 0.9, days: int = 286,
                      customers: int = 7_000, simpy_customers: int = 100_000,
                      rounds: int = 3) -> dict[str, Any]:
    """The recorded path as the tools run it: many days of a city hall's size (7,000
    customers, every one's records and its wait column read, as staffing reads them),
    then the same without records and SimPy, in this process, ``rounds`` times
    interleaved. Run it in a fresh one: its memory is what a first run pays for."""
    compiled = importlib.import_module("fastpath._sim_c").Engine
    rate = rho * servers / MEAN_SERVICE_MS

    def runs(record: bool) -> float:
        engine = mmc_engine(compiled, servers)
        for seed in range(1, days + 1):
            result = engine.run(seed, 0, [[(0, ALWAYS_OPEN_MS)]] * servers,
                                [([0], [rate], 0.0, 0.0)], max_arrivals=customers,
                                record=record)
            if record and len(result["columns"]["wait"]) != customers:
                raise AssertionError("a wait per ticket")
        return float(result["wait_sum"][0] / result["waited"][0])

    total = days * customers
    out: dict[str, Any] = {"model": f"M/M/{servers}, rho={rho}, {days} runs of {customers}",
                           "records": [], "no_records": [], "simpy": []}
    # Interleaved rounds: SimPy's own rate moves between runs and processes, so each
    # round's ratio compares runs made side by side, and the median is reported.
    for _ in range(rounds):
        out["records"].append(_rate(lambda: runs(True), total))
        out["no_records"].append(_rate(lambda: runs(False), total))
        out["simpy"].append(_rate(lambda: _simpy(servers, rho, simpy_customers),
                                  simpy_customers))
    ratios = [round(r["customers_per_cpu_s"] / y["customers_per_cpu_s"], 1)
              for r, y in zip(out["records"], out["simpy"], strict=True)]
    out["cpu_ratios_records_vs_simpy"] = ratios
    out["cpu_ratio_records_vs_simpy"] = statistics.median(ratios)
    return out


def busy_city_hall_state(model: HallModel | None = None, waiting: int = 300,
                         seed: int = 5) -> HallState:
    """The 220-window city hall at 10:30, every window busy, ``waiting`` tickets queued."""
    model = model or example_hall("city_hall")
    now = 10 * 60 * MINUTE_MS + 30 * MINUTE_MS
    rng = Xoshiro256(seed)
    weights = [m.visitors_per_day for m in model.services]
    counters = [100] * len(model.services)
    tickets = []
    for k in range(waiting):
        u = rng.uniform() * sum(weights)
        service = 0
        while u >= weights[service] and service + 1 < len(weights):
            u -= weights[service]
            service += 1
        counters[service] += 1
        issued = now - (waiting - k) * 6_000
        tickets.append(WaitingTicket(service, 0, issued, number_order(
            model.services[service].service.prefix, counters[service]), issued))
    index = {m.service.id: i for i, m in enumerate(model.services)}
    windows = tuple(
        WindowNow(17 * 60 * MINUTE_MS, index[next(iter(p.services))],
                  now - int(rng.uniform() * 5 * MINUTE_MS))
        for p in model.window_profiles()
    )
    return HallState(model, now, tuple(tickets), windows, tuple(counters))


def prediction_latency(replication_counts: tuple[int, ...] = (100, 1000),
                       repeats: int = 7) -> dict[str, Any]:
    """Milliseconds per ``predict`` call (median of ``repeats``) on one core."""
    model = example_hall("city_hall")
    state = busy_city_hall_state(model)
    predictor = Predictor(model)
    out: dict[str, Any] = {"hall": "city_hall: 220 windows, all busy, 300 waiting",
                           "engine": type(predictor.engine).__module__}
    for service in ("huji", "budongchan"):
        for reps in replication_counts:
            times, cpu_times = [], []
            prediction = None
            for repeat in range(repeats):
                started, cpu_started = time.perf_counter(), time.process_time()
                prediction = predictor.predict(state, service, 0, reps, seed=repeat)
                times.append((time.perf_counter() - started) * 1000)
                cpu_times.append((time.process_time() - cpu_started) * 1000)
            assert prediction is not None
            out[f"{service}_{reps}_ms"] = round(statistics.median(times), 2)
            out[f"{service}_{reps}_cpu_ms"] = round(statistics.median(cpu_times), 2)
            out[f"{service}_{reps}_p50_p90_min"] = (round(prediction.p50_ms / MINUTE_MS, 1),
                                                     round(prediction.p90_ms / MINUTE_MS, 1))
    return out


# The staffing cases of docs/bench/simulator.md: (label, hall, plan scale, SLA minutes).
STAFFING_CASES = (
    ("village_station", "village_station", 1, 15),
    ("comprehensive_hall", "comprehensive_hall", 1, 15),
    ("comprehensive_hall as 66 department windows", "comprehensive_hall", 2, 15),
    ("city_hall", "city_hall", 1, 20),
)


def staffing_results(seed: int = 1) -> dict[str, Any]:
    """The staffing search on the shipped halls (the comprehensive hall on its shipped
    arrivals file, the others on a generated day): current against proposed, the
    proposal on fresh seeds, how sure, and the CPU it took."""
    from fastpath.simulate import EXAMPLES, generate_arrivals, read_arrivals
    from fastpath.staffing import find_plan

    out: dict[str, Any] = {}
    for label, name, scale, sla in STAFFING_CASES:
        hall = example_hall(name)
        arrivals = (read_arrivals(EXAMPLES / "comprehensive_hall_arrivals.csv", hall)
                    if name == "comprehensive_hall" else generate_arrivals(hall, seed))
        staffed = hall.with_plan([n * scale for n in hall.plan])
        started = time.process_time()
        result = find_plan(staffed, arrivals, sla, seed=seed)
        proposed, fresh = result.proposed, result.validation
        out[label] = {
            "sla_min": sla, "tickets": len(arrivals),
            "current_windows": staffed.n_windows, "current_plan": list(staffed.plan),
            "current_worst_p90_min": round(result.current.worst_p90_ms / MINUTE_MS, 1),
            "current_confidence": round(result.current.confidence, 3),
            "proposed_windows": None if proposed is None else proposed.windows,
            "proposed_plan": None if proposed is None else list(proposed.plan),
            "proposed_worst_p90_min": None if proposed is None else round(
                proposed.worst_p90_ms / MINUTE_MS, 1),
            "proposed_confidence": None if proposed is None else round(proposed.confidence, 3),
            "fresh_seed_worst_p90_min": None if fresh is None else round(
                fresh.worst_p90_ms / MINUTE_MS, 1),
            "validated": result.validated, "plans_judged": result.evaluations,
            "simulated_days": result.days,
            "cpu_s": round(time.process_time() - started, 2),
        }
    return out


def run_all() -> dict[str, Any]:
    from onedoor.bench.advice import advice_benchmark
    from onedoor.bench.predict import prediction_report

    return {
        "mmc_throughput": mmc_throughput(),
        "day_sized_records": day_sized_records(),
        "prediction_latency": prediction_latency(),
        "prediction_against_baselines": {
            hall: prediction_report(hall, days) for hall, days in (("comprehensive_hall", 8),
                                                                   ("city_hall", 3))
        },
        "staffing": staffing_results(),
        "advice": advice_benchmark("comprehensive_hall", surge_days=12, normal_days=8),
    }


__all__ = [
    "busy_city_hall_state",
    "day_sized_records",
    "erlang_c_wait",
    "mmc_engine",
    "mmc_mean_wait",
    "mmc_throughput",
    "prediction_latency",
    "run_all",
    "staffing_results",
]

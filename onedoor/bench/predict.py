"""Wait prediction against the published real-time predictors (benchmark only).

On simulated days with time-varying load, mixed services, priority tickets
and appointments, each ``every``-th ticket gets, from the exact hall state at
its arrival, onedoor's simulated prediction and these baselines (Whitt 1999;
Ibrahim & Whitt 2009-2011; in the multi-class form of Senderovich et al.
2015, per (service, class) queue), and each is compared with the wait the
ticket then really had:

* ``naive``: people ahead in the same service x mean service time / open
  windows serving it (what commercial systems print);
* ``QL``: the queue-length predictor counting only the tickets the policy
  will call before the new one (same service; a ticket of a higher class, or
  one past the service's SLA, goes first; ages weighted by the class factors),
  served at the service's capacity now: each open window serving it counts for
  its share of the window's offered load (weights x arrival rate x mean
  service time of its services); ``(n + 1)`` completions;
* ``QL-tv``: the same count, plus the arrivals of higher classes expected to
  overtake the new ticket, served at the capacity the windows' shifts and the
  arrival profile give over the coming hours (Ibrahim & Whitt's time-varying
  correction of QL);
* ``HOL``: the elapsed wait of the head of the new ticket's (service, class)
  queue; ``HOL-tv``: the queue that head implies (the class's expected
  arrivals since it came), drained at the class's time-varying rate (the
  service's capacity less the higher classes' arrivals);
* ``LES``: the wait of the last ticket of the same (service, class) to be
  called; ``LES-tv``: the queue implied by its arrival and what was served
  since, drained as for HOL-tv.

For each predictor: MAE and RMSE (minutes), relative squared error (the squared
error over the realised waits' own variance: 1.0 is as good as always
predicting the mean wait), the 90th percentile of the absolute error, the share
of underestimates, and, for the predictors that print a range, the share of
realised waits within p50-p90 and at or below p90. The noise floor is the
realised wait's own spread given the state: the variance (and mean absolute
deviation from the median) of the simulated waits from the exact state, which
no predictor that sees only the state can beat.

No-shows are switched off (the per-ticket records cannot rebuild a requeued
ticket's state).
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastpath.predict import HallState, Predictor, naive_wait, state_from_day
from fastpath.simulate import HallModel, example_hall, percentile, simulate_day
from fastpath.types import APPOINTMENT, MINUTE_MS, number_order

HORIZON_MS = 4 * 60 * MINUTE_MS
BASELINES = ("naive", "QL", "QL-tv", "HOL", "HOL-tv", "LES", "LES-tv")
MIN_DRAIN = 0.05  # a class's drain never falls below this share of its service's rate


class Rates:
    """The model's arrival rates per (service, class), piecewise constant, per ms."""

    def __init__(self, model: HallModel) -> None:
        self.model = model
        self.streams = model.streams()
        policy = model.policy
        self.factor = (100, 100 + policy.priority_weight_pct, 100 + policy.appointment_weight_pct)

    def rate(self, service: int, klass: int, t: int) -> float:
        starts, rates, p_priority, p_appointment = self.streams[service]
        index = bisect.bisect_right(starts, t) - 1
        total = rates[index] if index >= 0 else 0.0
        share = (max(0.0, 1.0 - p_priority - p_appointment), p_priority, p_appointment)[klass]
        return total * share

    def total(self, service: int, t: int) -> float:
        return sum(self.rate(service, k, t) for k in range(3))

    def arrivals(self, service: int, klasses: Sequence[int], t0: float, t1: float) -> float:
        """Expected arrivals of these classes of the service in [t0, t1)."""
        if t1 <= t0:
            return 0.0
        starts = self.streams[service][0]
        cuts = [t0] + [s for s in starts if t0 < s < t1] + [t1]
        return sum(sum(self.rate(service, k, int(a)) for k in klasses) * (b - a)
                   for a, b in itertools.pairwise(cuts))

    def cuts(self) -> list[int]:
        return sorted({t for starts, _r, _p, _q in self.streams for t in starts})


class Capacity:
    """Each service's completions per ms from now on, piecewise constant.

    An open window serving several services gives each its share of the
    window's offered load: weight x arrival rate x mean service time.
    """

    def __init__(self, state: HallState, shifts: Sequence[Sequence[tuple[int, int]]],
                 rates: Rates, horizon_ms: int = HORIZON_MS) -> None:
        model = state.model
        self.now = state.now_ms
        self.end = self.now + horizon_ms
        cuts = {self.now} | {t for t in rates.cuts() if self.now < t < self.end}
        for intervals in shifts:
            for a, b in intervals:
                cuts.update(t for t in (a, b) if self.now < t < self.end)
        self.starts = sorted(cuts)
        self.mean_ms = [m.mean_service_ms() for m in model.services]
        index = {m.service.id: i for i, m in enumerate(model.services)}
        profiles = [[(index[sid], w) for sid, w in p.services.items()]
                    for p in model.window_profiles()]
        n = len(model.services)
        self.mu: list[list[float]] = [[0.0] * len(self.starts) for _ in range(n)]
        for seg, t in enumerate(self.starts):
            load = [rates.total(s, t) * self.mean_ms[s] for s in range(n)]
            for served, intervals in zip(profiles, shifts, strict=True):
                if not any(a <= t < b for a, b in intervals):
                    continue
                weights = [(s, w * load[s]) for s, w in served]
                total = sum(w for _, w in weights)
                if total <= 0.0:  # nobody comes for any of them: share by weight
                    weights = [(s, float(w)) for s, w in served]
                    total = sum(w for _, w in weights)
                for s, w in weights:
                    self.mu[s][seg] += w / total / self.mean_ms[s]

    def rate(self, service: int, t: float) -> float:
        seg = max(0, bisect.bisect_right(self.starts, t) - 1)
        return self.mu[service][seg]

    def time_for(self, service: int, work: float, less: Any = None) -> float:
        """ms from now until ``work`` completions of the service (the horizon if never);
        ``less(t)`` is a rate taken off the service's (higher classes first)."""
        if work <= 0.0:
            return 0.0
        done = 0.0
        bounds = [*self.starts[1:], self.end]
        for seg, t0 in enumerate(self.starts):
            t1 = bounds[seg]
            rate = self.mu[service][seg]
            if less is not None:
                rate = max(rate * MIN_DRAIN, rate - less(t0))
            if rate > 0.0 and done + rate * (t1 - t0) >= work:
                return t0 + (work - done) / rate - self.now
            done += rate * (t1 - t0)
        return float(self.end - self.now)


@dataclass(frozen=True, slots=True)
class Ticket:
    """The ticket being predicted: its service, class, key and order."""

    service: int
    klass: int
    key: int
    order: int


def _ahead(state: HallState, new: Ticket, factor: Sequence[int], sla_ms: int,
           elapsed: float) -> int:
    """Waiting tickets of the service the policy calls before ``new`` if it is called
    ``elapsed`` ms from now: past the SLA first, then by class-weighted age."""
    now = state.now_ms
    age0 = now - new.key + elapsed
    f0 = factor[new.klass]
    count = 0
    for t in state.waiting:
        if t.service != new.service:
            continue
        age = now - t.key_ms + elapsed
        if sla_ms and age > sla_ms >= age0:
            count += 1
            continue
        mine, theirs = f0 * age0, factor[t.klass] * age
        if theirs > mine or (theirs == mine and (t.key_ms, t.order) < (new.key, new.order)):
            count += 1
    return count


def _overtakers(rates: Rates, new: Ticket, now: int, elapsed: float) -> float:
    """Expected later arrivals of higher classes that are called before ``new``."""
    f0 = rates.factor[new.klass]
    age0 = now - new.key
    total = 0.0
    for klass in range(3):
        f = rates.factor[klass]
        if f <= f0:
            continue
        # Arriving tau ms from now, it goes first if f (e - tau) > f0 (age0 + e).
        until = elapsed * (1.0 - f0 / f) - f0 * age0 / f
        total += rates.arrivals(new.service, (klass,), now, now + max(0.0, until))
    return total


def baseline_predictions(state: HallState, new: Ticket, capacity: Capacity, rates: Rates,
                         head_age_ms: int | None, last_called: tuple[int, int] | None,
                         service_id: str) -> dict[str, float]:
    """Each baseline's predicted call time (ms from now) of ``new``.

    ``head_age_ms``: how long the head of its (service, class) queue has waited by
    its key (None: the queue is empty); ``last_called``: (call time, wait) of the
    last ticket of its (service, class) called (None: none yet).
    """
    model = state.model
    now = state.now_ms
    s = new.service
    sla_ms = model.services[s].service.sla_minutes * MINUTE_MS
    factor = rates.factor
    idle = any(w.busy_service < 0 and w.open_until_ms > now and
               model.services[s].service.id in p.services
               for w, p in zip(state.windows, model.window_profiles(), strict=True))
    out = {"naive": naive_wait(state, service_id)}
    # QL: policy-aware count, the capacity now.
    mu_now = capacity.rate(s, now)
    elapsed = 0.0
    for _ in range(8):
        n = _ahead(state, new, factor, sla_ms, elapsed)
        elapsed = (n + 1) / mu_now if mu_now > 0 else float(HORIZON_MS)
        elapsed = min(elapsed, float(HORIZON_MS))
    out["QL"] = 0.0 if idle and n == 0 else elapsed
    # QL-tv: the same count plus the overtakers, the time-varying capacity.
    elapsed = out["QL"]
    for _ in range(8):
        work = _ahead(state, new, factor, sla_ms, elapsed) + 1 + \
            _overtakers(rates, new, now, elapsed)
        elapsed = 0.0 if idle and work <= 1.0 else capacity.time_for(s, work)
    out["QL-tv"] = elapsed
    higher = [k for k in range(3) if factor[k] > factor[new.klass]]

    def less(t: float) -> float:
        return sum(rates.rate(s, k, int(t)) for k in higher)

    # HOL: the head's elapsed wait; -tv: the queue it implies, drained at the class's rate.
    out["HOL"] = float(head_age_ms or 0)
    implied = 0.0 if head_age_ms is None else \
        rates.arrivals(s, (new.klass,), now - head_age_ms, now)
    out["HOL-tv"] = capacity.time_for(s, implied, less) if implied else 0.0
    # LES: the last called one's wait; -tv: the queue implied since it arrived.
    if last_called is None:
        out["LES"] = out["LES-tv"] = 0.0
    else:
        called, waited = last_called
        out["LES"] = float(waited)
        drain = max(capacity.rate(s, now) * MIN_DRAIN, capacity.rate(s, now) - less(now))
        queue = rates.arrivals(s, (new.klass,), called - waited, now) - drain * (now - called)
        out["LES-tv"] = capacity.time_for(s, queue, less) if queue > 0 else 0.0
    return out


def _last_called(columns: Any, serial: int, now: int, service: int, klass: int,
                 waits: Any) -> tuple[int, int] | None:
    best: tuple[int, int] | None = None
    for i in range(serial):
        called = columns["called"][i]
        if 0 <= called <= now and columns["service"][i] == service and \
                columns["klass"][i] == klass and (best is None or called >= best[0]):
            best = (called, waits[i])
    return best


@dataclass
class _Errors:
    predicted: list[float]
    realised: list[float]
    p50: list[float]
    p90: list[float]
    waits_at_all: list[float]  # the predicted probability of any wait (share above 0)


def _row(name: str, e: _Errors, ranged: bool) -> dict[str, Any]:
    errors = [p - r for p, r in zip(e.predicted, e.realised, strict=True)]
    mean_realised = statistics.fmean(e.realised)
    spread = sum((r - mean_realised) ** 2 for r in e.realised)
    mse = statistics.fmean(x * x for x in errors)
    row: dict[str, Any] = {
        "predictor": name,
        "mae_min": round(statistics.fmean(abs(x) for x in errors) / MINUTE_MS, 3),
        "rmse_min": round(math.sqrt(mse) / MINUTE_MS, 3),
        "mse_min2": round(mse / MINUTE_MS ** 2, 3),
        "relative_squared_error": round(sum(x * x for x in errors) / spread, 3) if spread else None,
        "p90_abs_error_min": round(percentile(sorted(round(abs(x)) for x in errors), 90)
                                   / MINUTE_MS, 2),
        "underestimates": round(sum(1 for x in errors if x < 0) / len(errors), 3),
        "p50_p90_coverage": None,
        "p90_coverage": None,
        "p90_coverage_when_waiting": None,
        "waiting_share": None,
        "no_wait_predicted_wait_share": None,
        "no_wait_realised_wait_share": None,
    }
    if ranged:
        triples = list(zip(e.p50, e.p90, e.realised, strict=True))
        row["p50_p90_coverage"] = round(sum(1 for a, b, r in triples if a <= r <= b)
                                        / len(triples), 3)
        row["p90_coverage"] = round(sum(1 for _a, b, r in triples if r <= b) / len(triples), 3)
        # A ticket sure not to wait gets p90 = 0, which its wait of 0 cannot exceed:
        # the coverage that can be read as "p90 exceeded 1 time in 10" is that of
        # the tickets told they will wait.
        waiting = [(b, r) for _a, b, r in triples if b > 0]
        if waiting:
            row["p90_coverage_when_waiting"] = round(
                sum(1 for b, r in waiting if r <= b) / len(waiting), 3)
            row["waiting_share"] = round(len(waiting) / len(triples), 3)
        # Told "no wait" (p90 = 0): at least 90% of the simulated futures call it at once,
        # so its p90 can only be exceeded when it waits at all. Calibrated means: as many
        # of them wait as the simulation said would.
        told_none = [(w, r) for w, b, r in zip(e.waits_at_all, e.p90, e.realised, strict=True)
                     if b == 0]
        if told_none:
            row["no_wait_predicted_wait_share"] = round(
                statistics.fmean(w for w, _r in told_none), 4)
            row["no_wait_realised_wait_share"] = round(
                sum(1 for _w, r in told_none if r > 0) / len(told_none), 4)
    return row


def without_no_shows(model: HallModel) -> HallModel:
    import dataclasses

    services = tuple(dataclasses.replace(m, no_show=0.0) for m in model.services)
    return dataclasses.replace(model, services=services)


def prediction_report(hall: str = "comprehensive_hall", days: int = 3, every: int = 10,
                      replications: int = 200, first_seed: int = 100) -> dict[str, Any]:
    """The predictor table for one shipped hall (see the module docstring)."""
    model = without_no_shows(example_hall(hall))
    predictor = Predictor(model)
    rates = Rates(model)
    names = ("onedoor p50", "onedoor mean", *BASELINES)
    errors = {n: _Errors([], [], [], [], []) for n in names}
    floor_var: list[float] = []
    floor_mad: list[float] = []
    tickets = 0
    for day_seed in range(first_seed, first_seed + days):
        day = simulate_day(model, day_seed, engine=predictor.engine)
        c = day.columns
        realised = day.waits()
        for serial in range(0, len(realised), every):
            if realised[serial] < 0:
                continue  # never called
            state = state_from_day(day, serial)
            service, klass = c["service"][serial], c["klass"][serial]
            service_id = model.services[service].service.id
            booked = c["key"][serial] if klass == APPOINTMENT else None
            waits = sorted(predictor.waits(state, service_id, klass, replications,
                                           seed=serial, booked_ms=booked))
            p50, p90 = percentile(waits, 50), percentile(waits, 90)
            waits_at_all = sum(1 for w in waits if w > 0) / len(waits)
            mean = statistics.fmean(waits)
            median = statistics.median(waits)
            floor_var.append(statistics.pvariance(waits, mean))
            floor_mad.append(statistics.fmean(abs(w - median) for w in waits))
            now = state.now_ms
            new = Ticket(service, klass, c["key"][serial], number_order(
                model.services[service].service.prefix, state.counters[service] + 1))
            group = [t for t in state.waiting if t.service == service and t.klass == klass]
            head = min(group, key=lambda t: (t.key_ms, t.order), default=None)
            head_age = None if head is None else max(0, now - max(head.key_ms, head.issued_ms))
            capacity = Capacity(state, predictor.shifts(state), rates)
            calls = baseline_predictions(
                state, new, capacity, rates, head_age,
                _last_called(c, serial, now, service, klass, realised), service_id)
            early = max(0, new.key - now) if klass == APPOINTMENT else 0
            actual = realised[serial]
            for name, value in (("onedoor p50", p50), ("onedoor mean", mean)):
                e = errors[name]
                e.predicted.append(value)
                e.realised.append(actual)
                e.p50.append(p50)
                e.p90.append(p90)
                e.waits_at_all.append(waits_at_all)
            for name in BASELINES:
                value = calls[name]
                if name in ("naive", "QL", "QL-tv", "HOL-tv", "LES-tv"):
                    value = max(0.0, value - early)  # call time -> wait, as counted
                errors[name].predicted.append(value)
                errors[name].realised.append(actual)
            tickets += 1
    rows = [_row(n, errors[n], n.startswith("onedoor")) for n in names]
    floor_mse = statistics.fmean(floor_var)
    best = min((r for r in rows if not r["predictor"].startswith("onedoor")),
               key=lambda r: r["mse_min2"])
    ours = next(r for r in rows if r["predictor"] == "onedoor mean")
    return {
        "hall": hall, "days": days, "tickets_predicted": tickets, "replications": replications,
        "rows": rows,
        "noise_floor": {"rmse_min": round(math.sqrt(floor_mse) / MINUTE_MS, 3),
                        "mse_min2": round(floor_mse / MINUTE_MS ** 2, 3),
                        "mae_min": round(statistics.fmean(floor_mad) / MINUTE_MS, 3)},
        "best_baseline": best["predictor"],
        "mse_reduction_vs_best_baseline": round(1.0 - ours["mse_min2"] / best["mse_min2"], 3),
    }


def render_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table (minutes)."""
    lines = [
        "| predictor | MAE | RMSE | rel. sq. error | p90 abs error | underestimates | "
        "in p50–p90 | ≤ p90 | ≤ p90, told to wait |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(value: Any, pct: bool = False) -> str:
        if value is None:
            return "—"
        return f"{value:.0%}" if pct else f"{value:.2f}"

    for r in report["rows"]:
        lines.append(
            f"| {r['predictor']} | {cell(r['mae_min'])} | {cell(r['rmse_min'])} | "
            f"{cell(r['relative_squared_error'])} | {cell(r['p90_abs_error_min'])} | "
            f"{cell(r['underestimates'], True)} | {cell(r['p50_p90_coverage'], True)} | "
            f"{cell(r['p90_coverage'], True)} | {cell(r['p90_coverage_when_waiting'], True)} |")
    floor = report["noise_floor"]
    lines.append(f"| noise floor (the wait's own spread given the state) | {floor['mae_min']:.2f} "
                 f"| {floor['rmse_min']:.2f} | | | | | | |")
    return "\n".join(lines)


__all__ = [
    "BASELINES",
    "Capacity",
    "Rates",
    "baseline_predictions",
    "prediction_report",
    "render_table",
    "without_no_shows",
]

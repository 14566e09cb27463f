"""What-if staffing: the smallest window plan that keeps every service's p90 wait within the SLA.

A *plan* is how many windows each window group of the hall model gets (a
group is one service mix: 一窗通办 comprehensive windows, specialist windows,
优先服务专窗...). A plan is judged by simulating the given arrivals on
several *replications* (seeds) and pooling the waits.

**Common random numbers.** Every plan of a search is simulated on the same
seeds, and within a seed each ticket has the same arrival, service time and
no-show whatever the plan (see ``fastpath._sim_py.ticket_state``). Two plans
are therefore compared on the same simulated days: a difference between them
is the plans', not the dice's.

**Meeting the SLA, and how sure we are.** A service meets a p90 SLA when at
most 10% of its waits exceed it (then its nearest-rank p90 is within the
SLA), pooled over the replications; a ticket never called counts as
exceeding. Each replication gives a share over the SLA per service; their
mean is the estimate and their spread its standard error. A plan's
*confidence* is the probability (normal approximation) that its weakest
service's share is at most 10%. A plan is accepted when its confidence is at
least ``confidence`` (0.9 by default), rejected when it is at most
``1 - confidence``, and otherwise simulated on more replications (doubling,
up to ``max_replications``); still undecided, it is rejected. Every plan
judged is kept in the result's ``trace`` with its confidence.

The search, each step a batch of simulated days:

1. scale every group by one factor (bisection, 8 plans) to the smallest
   uniformly scaled plan that meets the SLA;
2. for each group, largest first, the fewest windows it can keep with the
   others as they are (bisection);
3. take away single windows while a plan still meets the SLA (the one whose
   loss hurts least first);
4. **validate** the proposal on fresh seeds, none of them used by the search:
   if it misses the SLA there (pooled estimate), add back the window that helps
   most and validate again (up to :data:`VALIDATION_ROUNDS` times).

The search is deterministic (fixed seeds) and every plan it reports has been
simulated. Progress is reported as ``(done, total, label)`` with ``total``
fixed at the start: one step per phase step above.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastpath.simulate import (
    HOUR_MS,
    Arrivals,
    HallModel,
    ModelError,
    ljust_display,
    simulate_day,
)

Progress = Callable[[int, int, str], None]  # (done, total fixed at the start, label)
P90_SHARE = 0.10  # a p90 within the SLA: at most this share of waits above it
UNSERVED = 1 << 40  # the wait counted for a ticket never called (above any SLA)
SCALING_STEPS = 8
VALIDATION_ROUNDS = 4
FRESH_SEEDS = 1_000_000  # validation seeds start this far from the search's


@dataclass(frozen=True, slots=True)
class ServiceOutcome:
    """One service under one plan, pooled over the replications."""

    p90_ms: int  # nearest rank; UNSERVED if the tail was never called
    over_share: float  # share of waits above the SLA (tickets never called included)
    standard_error: float  # of over_share, from the spread between replications
    confidence: float  # probability that the pooled share is at most 10%


@dataclass(frozen=True, slots=True)
class PlanResult:
    plan: tuple[int, ...]
    services: dict[str, ServiceOutcome]
    unserved: int  # tickets never called, summed over the replications
    replications: int
    seeds: tuple[int, ...] = ()
    per_replication_p90_ms: dict[str, tuple[int, ...]] = field(default_factory=dict)
    hourly_p90_ms: dict[int, int] = field(default_factory=dict)  # hour -> pooled p90 (ms)

    @property
    def windows(self) -> int:
        return sum(self.plan)

    @property
    def p90_ms(self) -> dict[str, int]:
        return {sid: s.p90_ms for sid, s in self.services.items()}

    @property
    def worst_p90_ms(self) -> int:
        return max(self.p90_ms.values(), default=0)

    @property
    def worst_share(self) -> float:
        return max((s.over_share for s in self.services.values()), default=0.0)

    @property
    def confidence(self) -> float:
        """Probability that every service meets the SLA, as its weakest service's."""
        return min((s.confidence for s in self.services.values()), default=1.0)

    @property
    def meets_estimate(self) -> bool:
        """The pooled estimate meets the SLA for every service (confidence aside)."""
        return all(s.over_share <= P90_SHARE for s in self.services.values())

    def verdict(self, confidence: float) -> str:
        """``"meets"``, ``"misses"`` or ``"undecided"`` at the given confidence level."""
        return _verdict(self.confidence, confidence)


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One plan the search judged: what it was for and how sure the judgement was."""

    phase: str
    plan: tuple[int, ...]
    windows: int
    worst_share: float
    confidence: float
    replications: int
    verdict: str


@dataclass(frozen=True, slots=True)
class Comparison:
    """Proposed against current on the same seeds: p90 difference per service (minutes)."""

    service: str
    mean_minutes: float  # proposed - current, mean over the paired replications
    half_width_minutes: float  # of the 90% confidence interval (normal approximation)
    replications: int


@dataclass(frozen=True, slots=True)
class StaffingResult:
    model: HallModel
    sla_ms: int
    confidence_level: float
    current: PlanResult
    proposed: PlanResult | None  # None: even the largest plan tried misses the SLA
    validation: PlanResult | None  # the proposal on fresh seeds
    evaluations: int  # plans simulated
    days: int  # simulated days in all
    trace: tuple[TraceStep, ...] = ()
    comparison: tuple[Comparison, ...] = ()

    @property
    def validated(self) -> bool:
        return self.validation is not None and self.validation.meets_estimate


@dataclass(frozen=True, slots=True)
class _Judgement:
    """What the search needs of a plan: its shares over the SLA and how sure they are."""

    shares: tuple[float, ...]  # per service
    errors: tuple[float, ...]
    replications: int

    @property
    def worst_share(self) -> float:
        return max(self.shares, default=0.0)

    @property
    def confidence(self) -> float:
        return min((_confidence(P90_SHARE - share, error)
                    for share, error in zip(self.shares, self.errors, strict=True)), default=1.0)

    def verdict(self, confidence: float) -> str:
        return _verdict(self.confidence, confidence)


class _Judge:
    """Simulates plans on shared seeds, adding replications until a plan is decided."""

    def __init__(self, model: HallModel, arrivals: Arrivals, sla_ms: int, seed: int,
                 replications: int, max_replications: int, confidence: float) -> None:
        self.model = model
        self.arrivals = arrivals
        self.sla_ms = sla_ms
        self.seed = seed
        self.replications = replications
        self.max_replications = max_replications
        self.confidence = confidence
        self.runs: dict[tuple[int, ...], _Runs] = {}
        self.trace: list[TraceStep] = []
        self.days = 0

    def __call__(self, plan: Sequence[int], phase: str) -> _Judgement:
        key = tuple(plan)
        runs = self.runs.get(key)
        if runs is None:
            runs = self.runs[key] = _Runs(self.model, key, self.arrivals, self.sla_ms)
        wanted = self.replications
        new = 0
        while True:
            new += runs.extend([self.seed + i for i in range(wanted)])
            judgement = runs.judgement()
            if judgement.verdict(self.confidence) != "undecided" or \
                    wanted >= self.max_replications:
                break
            wanted = min(2 * wanted, self.max_replications)
        self.days += new
        if new:  # a plan judged again from the same days is not a new judgement
            verdict = judgement.verdict(self.confidence)
            self.trace.append(TraceStep(phase, key, sum(key), round(judgement.worst_share, 4),
                                        round(judgement.confidence, 4), judgement.replications,
                                        "misses" if verdict == "undecided" else verdict))
        return judgement

    def meets(self, plan: Sequence[int], phase: str) -> bool:
        return self(plan, phase).verdict(self.confidence) == "meets"

    def result(self, plan: Sequence[int]) -> PlanResult:
        """The plan's full result (pooled p90s, hourly) over the seeds it was judged on."""
        runs = self.runs[tuple(plan)]
        self.days += len(runs.seeds)
        return runs.result()

    def fresh(self, plan: Sequence[int], replications: int) -> PlanResult:
        """The plan on seeds the search never used."""
        runs = _Runs(self.model, tuple(plan), self.arrivals, self.sla_ms)
        base = self.seed + FRESH_SEEDS
        self.days += 2 * runs.extend([base + i for i in range(replications)])
        result = runs.result()
        self.trace.append(TraceStep("validation (fresh seeds)", tuple(plan), sum(plan),
                                    round(result.worst_share, 4), round(result.confidence, 4),
                                    result.replications, result.verdict(self.confidence)))
        return result


class _Runs:
    """One plan's simulated days so far: per replication and service, what the search needs.

    The pooled waits are not kept (a search judges a hundred plans of thousands of
    tickets over tens of days): :meth:`result` simulates the same days again to pool
    them, for the few plans that are reported.
    """

    def __init__(self, model: HallModel, plan: tuple[int, ...], arrivals: Arrivals,
                 sla_ms: int) -> None:
        self.model = model
        self.plan = plan
        self.arrivals = arrivals
        self.sla_ms = sla_ms
        self.n_services = len(model.services)
        self.seeds: list[int] = []
        self.over: list[list[int]] = []  # per replication, per service: waits above the SLA
        self.p90: list[list[int]] = []  # per replication, per service
        self.tickets = [0] * self.n_services
        for service in arrivals.service:  # the same in every replication (replayed)
            self.tickets[service] += 1
        try:
            self.hall: HallModel | None = model.with_plan(plan)
        except ModelError:  # e.g. no window left for a service: it never meets the SLA
            self.hall = None
        self.engine = self.hall.engine() if self.hall is not None else None

    def extend(self, seeds: Sequence[int]) -> int:
        """Simulate the seeds not yet simulated; returns how many days that was."""
        new = seeds[len(self.seeds):]
        for seed in new:
            by_service = self._waits(seed)
            self.seeds.append(seed)
            self.over.append([sum(1 for w in waits if w > self.sla_ms) for waits in by_service])
            self.p90.append([_p90(sorted(waits)) for waits in by_service])
        return len(new)

    def _waits(self, seed: int, hourly: dict[int, list[int]] | None = None) -> list[list[int]]:
        """Each service's waits on one day (UNSERVED for a ticket never called)."""
        by_service: list[list[int]] = [[] for _ in range(self.n_services)]
        if self.hall is None:  # a service with no window: nobody is ever called
            for service, arrival in zip(self.arrivals.service, self.arrivals.time_ms,
                                        strict=True):
                by_service[service].append(UNSERVED)
                if hourly is not None:
                    hourly.setdefault(arrival // HOUR_MS, []).append(UNSERVED)
            return by_service
        day = simulate_day(self.hall, seed, self.arrivals, engine=self.engine)
        columns = day.columns
        for arrival, service, wait in zip(columns["arrival"], columns["service"], day.waits(),
                                          strict=True):
            if wait < 0:
                wait = UNSERVED
            by_service[service].append(wait)
            if hourly is not None:
                hourly.setdefault(arrival // HOUR_MS, []).append(wait)
        return by_service

    def judgement(self) -> _Judgement:
        shares, errors = [], []
        n = len(self.seeds)
        for service in range(self.n_services):
            tickets = self.tickets[service]
            per_day = [over[service] / tickets if tickets else 0.0 for over in self.over]
            shares.append(statistics.fmean(per_day) if per_day else 0.0)
            errors.append(statistics.stdev(per_day) / math.sqrt(n) if n > 1 else 0.0)
        return _Judgement(tuple(shares), tuple(errors), n)

    def result(self) -> PlanResult:
        judgement = self.judgement()
        pooled: list[list[int]] = [[] for _ in range(self.n_services)]
        hourly: dict[int, list[int]] = {}
        unserved = 0
        for seed in self.seeds:
            for service, waits in enumerate(self._waits(seed, hourly)):
                pooled[service] += waits
                unserved += waits.count(UNSERVED)
        outcomes = {
            model.service.id: ServiceOutcome(
                _p90(sorted(pooled[s])), judgement.shares[s], judgement.errors[s],
                _confidence(P90_SHARE - judgement.shares[s], judgement.errors[s]))
            for s, model in enumerate(self.model.services)
        }
        per_replication = {m.service.id: tuple(p90[s] for p90 in self.p90)
                           for s, m in enumerate(self.model.services)}
        return PlanResult(self.plan, outcomes, unserved, len(self.seeds), tuple(self.seeds),
                          per_replication,
                          {h: _p90(sorted(w)) for h, w in sorted(hourly.items())})


def _p90(ordered: Sequence[int]) -> int:
    if not ordered:
        return 0
    return min(ordered[max(1, math.ceil(0.9 * len(ordered))) - 1], UNSERVED)


def _verdict(confidence: float, level: float) -> str:
    if confidence >= level:
        return "meets"
    if confidence <= 1.0 - level:
        return "misses"
    return "undecided"


def _confidence(margin: float, error: float) -> float:
    """P(true value <= estimate + margin) under a normal error of ``error``."""
    if error <= 0.0:
        return 1.0 if margin >= 0.0 else 0.0
    return statistics.NormalDist().cdf(margin / error)


def scaled_plan(plan: Sequence[int], factor: float) -> tuple[int, ...]:
    return tuple(math.ceil(n * factor - 1e-9) for n in plan)


def find_plan(
    model: HallModel,
    arrivals: Arrivals,
    sla_minutes: float,
    *,
    replications: int = 16,
    max_replications: int = 64,
    confidence: float = 0.9,
    validation_replications: int | None = None,
    seed: int = 1,
    progress: Progress | None = None,
    max_factor: float = 4.0,
) -> StaffingResult:
    """The smallest plan found whose every service keeps its p90 wait within the SLA,
    decided with ``confidence`` and validated on fresh seeds (see the module docstring)."""
    if sla_minutes <= 0:
        raise ModelError("the SLA must be > 0 minutes")
    if not 1 <= replications <= max_replications:
        raise ModelError("need 1 <= replications <= max_replications")
    if not 0.5 < confidence < 1.0:
        raise ModelError("the confidence must be between 0.5 and 1")
    sla_ms = round(sla_minutes * 60_000)
    judge = _Judge(model, arrivals, sla_ms, seed, replications, max_replications, confidence)
    groups = len(model.groups)
    steps = _Steps(progress, 1 + SCALING_STEPS + groups + 2)

    steps.label("current plan")
    judge(model.plan, "current plan")
    current = judge.result(model.plan)
    steps.done("current plan")
    best = _scale(judge, model, max_factor, steps)
    if best is None:
        steps.finish()
        return _result(judge, current, None, None, confidence)
    best = _by_group(judge, model, best, steps)
    best = _remove_singles(judge, model, best, steps)
    proposed, validation = _validate(judge, model, best, validation_replications or
                                     max(replications, 20), max_factor, steps)
    steps.finish()
    return _result(judge, current, proposed, validation, confidence)


class _Steps:
    """Progress over a number of steps fixed at the start."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.count = 0

    def label(self, text: str) -> None:
        if self.progress is not None:
            self.progress(self.count, self.total, text)

    def done(self, text: str) -> None:
        self.count = min(self.count + 1, self.total)
        self.label(text)

    def skip_to(self, count: int) -> None:
        self.count = max(self.count, min(count, self.total))

    def finish(self) -> None:
        self.count = self.total
        self.label("done")


def _scale(judge: _Judge, model: HallModel, max_factor: float,
           steps: _Steps) -> tuple[int, ...] | None:
    """The smallest uniformly scaled plan that meets the SLA, in SCALING_STEPS plans."""
    start = steps.count
    lo, hi = 0.0, 1.0
    used = 0
    if not judge.meets(model.plan, "scaling"):
        lo, hi, factor = 1.0, 0.0, 1.25  # hi 0: no plan that meets the SLA yet
        while used < SCALING_STEPS // 2:  # grow until a plan meets the SLA
            used += 1
            met = judge.meets(scaled_plan(model.plan, factor), "scaling")
            steps.done(f"scale x{factor:g}")
            if met:
                hi = factor
                break
            lo = factor
            if factor >= max_factor:
                break
            factor = min(max_factor, factor * 1.5)
        if not hi:
            steps.skip_to(start + SCALING_STEPS)
            return None
    while used < SCALING_STEPS:  # then bisect between a plan that misses and one that meets
        used += 1
        mid = (lo + hi) / 2.0
        met = judge.meets(scaled_plan(model.plan, mid), "scaling")
        steps.done(f"scale x{mid:.2f}")
        if met:
            hi = mid
        else:
            lo = mid
    return scaled_plan(model.plan, hi)


def _by_group(judge: _Judge, model: HallModel, plan: tuple[int, ...],
              steps: _Steps) -> tuple[int, ...]:
    """For each group, largest first, the fewest windows it can keep (bisection)."""
    best = list(plan)
    order = sorted(range(len(best)), key=lambda g: (-best[g], g))
    for group in order:
        name = model.groups[group].name
        lo, hi = -1, best[group]  # lo misses (or is nothing), hi meets
        while hi - lo > 1:
            mid = (lo + hi) // 2
            trial = list(best)
            trial[group] = mid
            steps.label(f"{name} {best[group]} -> {mid}?")
            if judge.meets(trial, f"group {name}"):
                hi = mid
            else:
                lo = mid
        best[group] = hi
        steps.done(f"{name}: {hi}")
    return tuple(best)


def _remove_singles(judge: _Judge, model: HallModel, plan: tuple[int, ...],
                    steps: _Steps) -> tuple[int, ...]:
    """Take away one window at a time while a plan still meets the SLA."""
    best = plan
    for _round in range(2 * len(plan)):
        candidates = []
        for group, count in enumerate(best):
            if count:
                trial = list(best)
                trial[group] -= 1
                judgement = judge(trial, "single removals")
                if judgement.verdict(judge.confidence) == "meets":
                    candidates.append((judgement.worst_share, group, tuple(trial)))
        if not candidates:
            break
        best = min(candidates)[2]
        steps.label(f"{sum(best)} windows")
    steps.done(f"{sum(best)} windows")
    return best


def _validate(judge: _Judge, model: HallModel, plan: tuple[int, ...], replications: int,
              max_factor: float, steps: _Steps) -> tuple[PlanResult, PlanResult]:
    """The plan on fresh seeds; while it misses there, add back the most useful window."""
    best = plan
    for _round in range(VALIDATION_ROUNDS + 1):
        steps.label(f"validating {sum(best)} windows on fresh seeds")
        validation = judge.fresh(best, replications)
        if validation.meets_estimate:
            break
        candidates = []
        for group, count in enumerate(best):
            if count + 1 <= math.ceil(model.plan[group] * max_factor):
                trial = list(best)
                trial[group] += 1
                judgement = judge(trial, "after validation")
                candidates.append((judgement.worst_share, -judgement.confidence, group,
                                   tuple(trial)))
        if not candidates:
            break
        best = min(candidates)[3]
    steps.done("validated" if validation.meets_estimate else "not validated")
    judge(best, "proposal")
    return judge.result(best), validation


def _result(judge: _Judge, current: PlanResult, proposed: PlanResult | None,
            validation: PlanResult | None, confidence: float) -> StaffingResult:
    comparison: tuple[Comparison, ...] = ()
    if proposed is not None:
        comparison = tuple(_compare(current, proposed))
    return StaffingResult(judge.model, judge.sla_ms, confidence, current, proposed, validation,
                          len(judge.runs), judge.days, tuple(judge.trace), comparison)


def _compare(current: PlanResult, proposed: PlanResult) -> Iterator[Comparison]:
    """Paired by seed: the same days under both plans."""
    z = statistics.NormalDist().inv_cdf(0.95)
    for sid, now in current.per_replication_p90_ms.items():
        new = proposed.per_replication_p90_ms[sid]
        pairs = [(b - a) / 60_000 for a, b in zip(now, new, strict=False)]
        if not pairs:
            continue
        mean = statistics.fmean(pairs)
        half = z * statistics.stdev(pairs) / math.sqrt(len(pairs)) if len(pairs) > 1 else 0.0
        yield Comparison(sid, round(mean, 2), round(half, 2), len(pairs))


def format_table(result: StaffingResult) -> str:
    """The plan side by side with the current one, p90 per service (minutes), how sure."""
    model, current, proposed = result.model, result.current, result.proposed
    level = f"{result.confidence_level:.0%}"
    lines = [f"{model.name}  SLA p90 ≤ {result.sla_ms / 60_000:g} 分钟 (min)  "
             f"[{result.evaluations} plans, {result.days} simulated days]", ""]
    head = (f"{ljust_display('窗口组 window group', 28)}{ljust_display('服务 services', 44)}"
            f"{'现有 now':>10}{'建议 plan':>10}")
    lines.append(head)
    lines.append("-" * len(head))
    for i, group in enumerate(model.groups):
        new = "—" if proposed is None else str(proposed.plan[i])
        services = _shorten(",".join(group.services), 42)
        lines.append(f"{ljust_display(group.name, 28)}{ljust_display(services, 44)}"
                     f"{current.plan[i]:>10}{new:>10}")
    total_new = "—" if proposed is None else str(proposed.windows)
    lines.append(f"{ljust_display('合计 total', 72)}{current.windows:>10}{total_new:>10}")
    lines.append("")
    lines.append(f"{ljust_display('业务 service', 28)}{'p90 now':>12}{'p90 plan':>12}"
                 f"{'fresh seeds':>14}{'plan - now (90% CI)':>24}")
    compared = {c.service: c for c in result.comparison}
    for m in model.services:
        sid = m.service.id
        now = _minutes(current.services[sid].p90_ms)
        new = "—" if proposed is None else _minutes(proposed.services[sid].p90_ms)
        fresh = "—" if result.validation is None else _minutes(
            result.validation.services[sid].p90_ms)
        diff = compared.get(sid)
        delta = "—" if diff is None else (f"{diff.mean_minutes:+.1f} ± "
                                          f"{diff.half_width_minutes:.1f} min")
        lines.append(f"{ljust_display(m.service.name_zh + ' ' + sid, 28)}{now:>12}{new:>12}"
                     f"{fresh:>14}{delta:>24}")
    lines.append("")
    lines.append(f"把握 confidence that the plan meets the SLA (weakest service): now "
                 f"{current.confidence:.0%} over {current.replications} days"
                 + ("" if proposed is None else
                    f"; plan {proposed.confidence:.0%} over {proposed.replications} days"))
    if result.validation is not None:
        verdict = "通过 holds" if result.validated else "未通过 does NOT hold"
        lines.append(f"新种子验证 fresh-seed validation: {verdict} "
                     f"({result.validation.replications} days never used in the search, "
                     f"confidence {result.validation.confidence:.0%})")
    decided = [s for s in result.trace if s.phase != "validation (fresh seeds)"]
    if decided:
        weakest = min(max(s.confidence, 1.0 - s.confidence) for s in decided)
        lines.append(f"每个判断 each of the {len(decided)} judgements was made with at least "
                     f"{weakest:.0%} confidence (level asked: {level}; undecided ones count "
                     "as misses)")
    if current.unserved:
        lines.append(f"现有方案有 {current.unserved} 人闭馆时未办理 / unserved at closing "
                     f"with the current plan ({current.replications} days)")
    if proposed is None:
        lines.append("没有找到满足SLA的方案 / no plan up to 4x the current one meets the SLA")
    return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _minutes(ms: int) -> str:
    return "unserved" if ms >= UNSERVED else f"{ms / 60_000:.1f} min"


NICE_STEPS = (1, 2, 5)


def axis_ticks(max_minutes: float, most: int = 6) -> list[float]:
    """Tick values (minutes) from 0 on a 1-2-5 step, at most ``most`` intervals,
    reaching at least ``max_minutes``: every label is the exact value it marks."""
    if max_minutes <= 0:
        return [0.0, 1.0]
    magnitude = 10 ** math.floor(math.log10(max_minutes / most))
    for multiple in (*NICE_STEPS, 10):
        step = multiple * magnitude
        if math.ceil(max_minutes / step - 1e-9) <= most:
            break
    count = math.ceil(max_minutes / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


@dataclass(frozen=True, slots=True)
class PlotLayout:
    """What :func:`plot_hourly` drew, for tests and for callers that draw elsewhere."""

    y_ticks: tuple[tuple[float, str, float], ...]  # (minutes, label, pixel y)
    hourly_area: tuple[float, float]  # x range of the hourly lines
    day_area: tuple[float, float]  # x range of the whole-day column
    sla_line: tuple[float, float, float]  # (x0, x1, y): drawn in the whole-day column only
    whole_day_points: tuple[tuple[str, float, float], ...]  # (label, x, y) per plan


def plot_hourly(result: StaffingResult, path: str | Path) -> PlotLayout:
    """PNG: p90 wait by hour of arrival for the current and the proposed plan (for
    reading), and, in a column of its own, each plan's whole-day p90 of its worst
    service against the SLA, which is a whole-day target (Pillow)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height, left, right, top, bottom = 960, 500, 80, 30, 70, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font: Any = ImageFont.load_default()
    for candidate in ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
                      "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc"):
        if Path(candidate).exists():
            font = ImageFont.truetype(candidate, 16)
            break
    series = [("现有 current", result.current, (200, 60, 60))]
    if result.proposed is not None:
        series.append(("建议 proposed", result.proposed, (40, 110, 200)))
    hours = sorted({h for _, r, _ in series for h in r.hourly_p90_ms})
    if not hours:
        raise ModelError("no arrivals to plot")
    cap = 4 * result.sla_ms
    values = [v for _, r, _ in series for v in r.hourly_p90_ms.values()]
    values += [r.worst_p90_ms for _, r, _ in series]
    peak = max(min(v, cap) for v in values)
    ticks = axis_ticks(max(result.sla_ms * 1.25, peak * 1.05, 60_000) / 60_000)
    y_max = ticks[-1] * 60_000
    x0, y0, y1 = left, height - bottom, top
    x1 = width - right - 150  # the hourly area; the whole-day column is to its right
    day0, day1 = x1 + 30, width - right

    def x_of(hour: float) -> float:
        span = max(1, hours[-1] - hours[0])
        return x0 + (hour - hours[0]) / span * (x1 - x0)

    def y_of(ms: float) -> float:
        return y0 - min(ms, cap) / y_max * (y0 - y1)

    draw.rectangle((x0, y1, x1, y0), outline="black")
    draw.rectangle((day0, y1, day1, y0), outline="black")
    for h in hours:
        draw.text((x_of(h) - 12, y0 + 8), f"{h:02d}:00", fill="black", font=font)
    drawn_ticks = []
    for minutes in ticks:
        y = y_of(minutes * 60_000)
        label = f"{minutes:g}"
        draw.line((x0 - 4, y, x0, y), fill="black")
        draw.line((day0 - 4, y, day0, y), fill="black")
        draw.text((8, y - 8), label, fill="black", font=font)
        drawn_ticks.append((minutes, label, y))
    sla_y = y_of(result.sla_ms)
    draw.line((day0, sla_y, day1, sla_y), fill=(120, 120, 120), width=2)
    draw.text((day0 + 4, sla_y - 20), f"SLA {result.sla_ms / 60_000:g}", fill="gray", font=font)
    draw.text((day0, y0 + 8), "全天 whole day", fill="black", font=font)
    draw.text((x0, 12), f"{result.model.name}: p90 等待 (分钟) / p90 wait (min)",
              fill="black", font=font)
    draw.text((x0, 34), "左: 每小时 p90, 仅供参考 / left: hourly p90, for reading; "
                        "右: 全天 p90 对照 SLA / right: whole-day p90 vs the SLA",
              fill="black", font=font)
    points = []
    for i, (label, plan, colour) in enumerate(series):
        line = [(x_of(h), y_of(plan.hourly_p90_ms[h])) for h in hours if h in plan.hourly_p90_ms]
        if len(line) > 1:
            draw.line(line, fill=colour, width=3)
        for px, py in line:
            draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=colour)
        dx = day0 + (day1 - day0) * (i + 1) / (len(series) + 1)
        dy = y_of(plan.worst_p90_ms)
        draw.rectangle((dx - 6, dy - 6, dx + 6, dy + 6), fill=colour)
        points.append((label, dx, dy))
        legend = f"{label}: {plan.windows} windows"
        draw.text((x0 + 10 + 300 * i, y1 + 8), legend, fill=colour, font=font)
    image.save(path, format="PNG")
    return PlotLayout(tuple(drawn_ticks), (x0, x1), (day0, day1), (day0, day1, sla_y),
                      tuple(points))


def evaluate_plan(model: HallModel, plan: Sequence[int], arrivals: Arrivals,
                  seeds: Sequence[int], sla_minutes: float) -> PlanResult:
    """Simulate ``plan`` once per seed on the same arrivals; pool the waits."""
    runs = _Runs(model, tuple(plan), arrivals, round(sla_minutes * 60_000))
    runs.extend(list(seeds))
    return runs.result()


__all__ = [
    "Comparison",
    "PlanResult",
    "PlotLayout",
    "ServiceOutcome",
    "StaffingResult",
    "TraceStep",
    "axis_ticks",
    "evaluate_plan",
    "find_plan",
    "format_table",
    "plot_hourly",
    "scaled_plan",
]

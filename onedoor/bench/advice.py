"""The live staffing advice on simulated days with surges (benchmark only).

A *surge day* is a day of a shipped hall on which one service, drawn at
random, comes at ``factor`` times its planned rate for two hours (a deadline,
a bus of villagers); a *normal day* has none. The advisor knows only the
hall's plan (the day's profile) and what it sees: the state and the tickets
taken so far. Every ``CHECK_MS`` it is asked for advice, as the edge would.

Three ways to run each day, on the same citizens and service times (common
random numbers):

* ``as is``: nobody acts;
* ``advice``: each advisory's move is made ``REACTION_MS`` after it is raised,
  for an hour (the hour it was verified over); no new move while one waits to
  start;
* ``threshold``: the practice today: when a citizen has waited past the SLA,
  one emergency window (应急窗口) for that service opens ``REACTION_MS`` later,
  for an hour.

Figures per hall: how many minutes before the threshold alarm the advice
comes (the alarm as soon as the first citizen passes the SLA, and as soon as
the fifth does), the SLA breaches (tickets waiting past their SLA) of each
run, and the advisories raised on days when, as is, the named services would
not have breached over the next hour (needless).
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastpath.advice import EMERGENCY, HOUR_MS, Advisor, Move, per_window
from fastpath.predict import state_at
from fastpath.simulate import DayResult, HallModel, WindowGroup, example_hall, simulate_day
from fastpath.types import APPOINTMENT, MINUTE_MS
from onedoor.bench.predict import without_no_shows

CHECK_MS = 5 * MINUTE_MS
REACTION_MS = 5 * MINUTE_MS
MOVE_MS = HOUR_MS
SLA_MINUTES = {"comprehensive_hall": 20, "city_hall": 30, "village_station": 30}
TEMPORARY = 1000  # window numbers of a window's stand-in while a move changes its services


def with_surge(model: HallModel, service_id: str, first_hour: int, hours: int,
               factor: float) -> HallModel:
    """The model with ``service_id`` coming ``factor`` times as often in the profile's
    hours ``first_hour`` .. ``first_hour + hours - 1`` (the other hours unchanged)."""
    services = []
    for m in model.services:
        if m.service.id == service_id:
            before = list(m.profile or model.hourly_profile)
            after = [w * factor if first_hour <= h < first_hour + hours else w
                     for h, w in enumerate(before)]
            scale = _weight(model, after) / _weight(model, before)
            m = dataclasses.replace(m, profile=tuple(after),
                                    visitors_per_day=m.visitors_per_day * scale)
        services.append(m)
    return dataclasses.replace(model, services=tuple(services))


def _weight(model: HallModel, weights: Sequence[float]) -> float:
    """The profile's weight over the hours tickets are issued (as HallModel.streams)."""
    total = 0.0
    for hour, weight in enumerate(weights):
        start = model.opens_ms + hour * HOUR_MS
        if start >= model.arrivals_until_ms:
            break
        total += weight * min(HOUR_MS, model.arrivals_until_ms - start) / HOUR_MS
    return total


@dataclass(frozen=True, slots=True)
class Applied:
    """A move made at ``start`` for an hour; ``windows`` are the windows' indices."""

    move: Move
    windows: tuple[int, ...]
    start: int
    end: int


def _cut(shifts: Sequence[tuple[int, int]], start: int, end: int) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for a, b in shifts:
        if b <= start or a >= end:
            out.append((a, b))
            continue
        if a < start:
            out.append((a, start))
        if b > end:
            out.append((end, b))
    return tuple(out)


def layout(model: HallModel, moves: Sequence[Applied], busy_until: dict[int, int]
           ) -> tuple[HallModel, list[int]]:
    """``model`` split per window with the moves made, and each window's number.

    A window whose services a move changes closes for the move's hour and a
    stand-in with the new services opens when it has finished the ticket it was
    serving (``busy_until``); added windows are emergency windows (900+).
    """
    split = per_window(model)
    groups = list(split.groups)
    numbers = [p.number for p in split.window_profiles()]
    default = ((model.opens_ms, model.closes_ms),)
    for applied in moves:
        move = applied.move
        if move.kind == "add":  # one group per window: a window's index is its group's
            for _ in range(move.count):
                groups.append(WindowGroup(EMERGENCY, 1, dict.fromkeys(move.services, 1),
                                          shifts=((applied.start, applied.end),)))
                numbers.append(900 + len(numbers))
            continue
        for window in applied.windows:
            own = groups[window]
            groups[window] = dataclasses.replace(
                own, shifts=_cut(own.shifts or default, applied.start, applied.end) or
                ((model.closes_ms - 1, model.closes_ms),))
            opens = max(applied.start, busy_until.get(window, applied.start))
            if opens < applied.end:
                weight = max(own.services.values())
                groups.append(dataclasses.replace(
                    own, services=dict.fromkeys(move.services, weight),
                    shifts=((opens, applied.end),)))
                numbers.append(TEMPORARY + len(numbers))
    return dataclasses.replace(split, groups=tuple(groups)), numbers


def breaches(day: DayResult, sla_ms: int) -> int:
    """Tickets that waited past the SLA (or were never called)."""
    return sum(1 for w in day.waits() if w < 0 or w > sla_ms)


def _issued(day: DayResult, model: HallModel, now: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for arrival, service in zip(day.columns["arrival"], day.columns["service"], strict=True):
        if arrival >= now:
            break
        out.setdefault(model.services[service].service.id, []).append(arrival)
    return out


def _crossings(day: DayResult, sla_ms: int) -> list[int]:
    """When each ticket that waits past the SLA passes it, sorted."""
    c = day.columns
    out = []
    for arrival, key, klass, wait in zip(c["arrival"], c["key"], c["klass"], day.waits(),
                                         strict=True):
        if wait < 0 or wait > sla_ms:
            start = max(arrival, key) if klass == APPOINTMENT else arrival
            out.append(start + sla_ms)
    return sorted(out)


def _would_breach(day: DayResult, services: set[int], now: int, sla_ms: int) -> bool:
    """As is, would one of ``services`` have had a p90 above the SLA over the next hour
    (those waiting at ``now`` and not yet past the SLA, and those arriving within it)?"""
    c = day.columns
    for service in services:
        waits = []
        for arrival, s, key, klass, called, wait in zip(
                c["arrival"], c["service"], c["key"], c["klass"], c["called"], day.waits(),
                strict=True):
            if s != service or arrival >= now + HOUR_MS:
                continue
            start = max(arrival, key) if klass == APPOINTMENT else arrival
            waiting = arrival < now and (called < 0 or called > now) and now - start <= sla_ms
            if arrival >= now or waiting:
                waits.append(10 * HOUR_MS if wait < 0 else wait)
        waits.sort()
        if waits and waits[max(1, math.ceil(0.9 * len(waits))) - 1] > sla_ms:
            return True
    return False


class _Day:
    """One simulated day run under a policy, re-simulated whenever a move is made."""

    def __init__(self, hall: HallModel, plan: HallModel, seed: int, sla_ms: int,
                 replications: int) -> None:
        self.hall, self.plan, self.seed, self.sla_ms = hall, plan, seed, sla_ms
        self.replications = replications
        self.moves: list[Applied] = []
        self.advisors: dict[int, Advisor] = {}
        self.day = simulate_day(per_window(hall), seed)
        self.busy_until: dict[int, int] = {}

    def _rerun(self) -> None:
        model, _numbers = layout(self.hall, self.moves, self.busy_until)
        self.day = simulate_day(model, self.seed)

    def advisor(self) -> tuple[Advisor, HallModel]:
        model, numbers = layout(self.plan, self.moves, self.busy_until)
        key = len(self.moves)
        if key not in self.advisors:
            self.advisors[key] = Advisor(model, window_numbers=numbers,
                                         sla_ms={m.service.id: self.sla_ms
                                                 for m in model.services},
                                         replications=self.replications)
        return self.advisors[key], model

    def advise(self, now: int) -> Any:
        advisor, model = self.advisor()
        state = dataclasses.replace(state_at(self.day, now), model=advisor.model)
        return advisor.advise(state, _issued(self.day, model, now), seed=self.seed)

    def make(self, move: Move, now: int) -> None:
        """Make ``move`` (numbered as the current advisor numbers windows) from now."""
        advisor, _model = self.advisor()
        windows = tuple(advisor.numbers.index(n) for n in move.windows)
        start = now + REACTION_MS
        c = self.day.columns  # a stand-in opens when its window's ticket is done
        for called, end, w in zip(c["called"], c["end"], c["window"], strict=True):
            if w in windows and 0 <= called <= start < end:
                self.busy_until[w] = end
        self.moves.append(Applied(move, windows, start, start + MOVE_MS))
        self._rerun()

    def waiting_move(self, now: int) -> bool:
        return any(a.start > now - CHECK_MS for a in self.moves)


def run_day(hall: HallModel, plan: HallModel, seed: int, sla_ms: int, replications: int,
            policy: str) -> dict[str, Any]:
    """One day under ``policy`` ("as is", "advice" or "threshold")."""
    run = _Day(hall, plan, seed, sla_ms, replications)
    fired: list[tuple[int, tuple[str, ...], bool]] = []  # (when, services, with a move)
    checks = range(hall.opens_ms + 3 * CHECK_MS, hall.arrivals_until_ms, CHECK_MS)
    for now in checks:
        if policy == "threshold":
            if run.waiting_move(now):
                continue
            late = _late(run.day, now, sla_ms)
            if late:
                sid = plan.services[late[0]].service.id
                run.make(Move("add", (), (sid,), 1), now)
                fired.append((now, (sid,), True))
            continue
        if policy == "advice" and run.waiting_move(now):
            continue
        advisory = run.advise(now)
        if advisory is None:
            continue
        fired.append((now, tuple(o.service_id for o in advisory.breaching),
                      advisory.move is not None))
        if policy == "advice" and advisory.move is not None:
            run.make(advisory.move, now)
    return {"day": run.day, "fired": fired, "breaches": breaches(run.day, sla_ms),
            "moves": run.moves}


def _late(day: DayResult, now: int, sla_ms: int) -> list[int]:
    """Services with a citizen waiting past the SLA at ``now`` (the threshold alarm)."""
    c = day.columns
    late = []
    for arrival, service, key, klass, called in zip(c["arrival"], c["service"], c["key"],
                                                    c["klass"], c["called"], strict=True):
        if arrival >= now:
            break
        start = max(arrival, key) if klass == APPOINTMENT else arrival
        if (called < 0 or called > now) and now - start > sla_ms and service not in late:
            late.append(service)
    return late


def advice_benchmark(hall: str = "comprehensive_hall", surge_days: int = 10,
                     normal_days: int = 10, factor: float = 1.8,
                     replications: int = 100, first_seed: int = 300) -> dict[str, Any]:
    """The figures for one shipped hall (see the module docstring)."""
    plan = without_no_shows(example_hall(hall))
    sla_ms = SLA_MINUTES[hall] * MINUTE_MS
    rng = random.Random(first_seed)
    weights = [m.visitors_per_day for m in plan.services]
    hours = max(1, (plan.arrivals_until_ms - plan.opens_ms) // HOUR_MS - 2)
    days = []
    for i in range(surge_days + normal_days):
        seed = first_seed + i
        if i < surge_days:
            service = rng.choices(range(len(plan.services)), weights)[0]
            first = rng.randrange(1, hours)
            day_hall = with_surge(plan, plan.services[service].service.id, first, 2, factor)
            surge = (plan.services[service].service.id, first)
        else:
            day_hall, surge = plan, None
        runs = {policy: run_day(day_hall, plan, seed, sla_ms, replications, policy)
                for policy in ("as is", "advice", "threshold")}
        as_is = runs["as is"]
        crossings = _crossings(as_is["day"], sla_ms)
        first_advice = min((t for t, _s, _m in as_is["fired"]), default=None)
        episodes = []  # (start, services) of each run of consecutive advisories
        previous = None
        for t, services, _with_move in as_is["fired"]:
            if previous is None or t - previous > CHECK_MS:
                episodes.append((t, services))
            previous = t
        index = {m.service.id: i for i, m in enumerate(plan.services)}
        needless = sum(1 for t, services in episodes if not _would_breach(
            as_is["day"], {index[s] for s in services}, t, sla_ms))
        days.append({
            "seed": seed, "surge": surge,
            "breaches": {p: r["breaches"] for p, r in runs.items()},
            "first_advice": first_advice,
            "first_past_sla": crossings[0] if crossings else None,
            "fifth_past_sla": crossings[4] if len(crossings) >= 5 else None,
            "episodes": len(episodes), "needless": needless,
            "moves": [dataclasses.asdict(a.move) for a in runs["advice"]["moves"]],
            # staff time: a window opened or added for an hour (a switch needs nobody)
            "window_hours": {p: sum(a.move.count * (a.end - a.start) / HOUR_MS
                                    for a in runs[p]["moves"] if a.move.kind != "switch")
                             for p in ("advice", "threshold")},
        })
    return _summary(hall, sla_ms, factor, replications, days)


def _summary(hall: str, sla_ms: int, factor: float, replications: int,
             days: list[dict[str, Any]]) -> dict[str, Any]:
    def lead(kind: str, group: list[dict[str, Any]]) -> list[float]:
        return [(d[kind] - d["first_advice"]) / MINUTE_MS for d in group
                if d[kind] is not None and d["first_advice"] is not None]

    out: dict[str, Any] = {"hall": hall, "sla_min": sla_ms / MINUTE_MS,
                           "surge_factor": factor, "replications": replications}
    for name, group in (("surge_days", [d for d in days if d["surge"]]),
                        ("normal_days", [d for d in days if not d["surge"]])):
        if not group:
            continue
        alarmed = [d for d in group if d["first_past_sla"] is not None]
        leads = lead("first_past_sla", group)
        leads5 = lead("fifth_past_sla", group)
        totals = {p: sum(d["breaches"][p] for d in group) for p in ("as is", "advice",
                                                                    "threshold")}
        out[name] = {
            "days": len(group),
            "days_with_a_breach_as_is": len(alarmed),
            "advised_before_first_past_sla": sum(1 for x in leads if x > 0),
            "minutes_before_first_past_sla": _spread(leads),
            "minutes_before_fifth_past_sla": _spread(leads5),
            "breaches_as_is": totals["as is"],
            "breaches_following_advice": totals["advice"],
            "breaches_threshold_alarm": totals["threshold"],
            "breaches_avoided_by_advice": totals["as is"] - totals["advice"],
            "advisory_episodes": sum(d["episodes"] for d in group),
            "needless_episodes": sum(d["needless"] for d in group),
            "moves_made": sum(len(d["moves"]) for d in group),
            "extra_window_hours_advice": sum(d["window_hours"]["advice"] for d in group),
            "extra_window_hours_threshold": sum(d["window_hours"]["threshold"] for d in group),
        }
    out["days"] = days
    return out


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 1), "min": round(ordered[0], 1),
            "max": round(ordered[-1], 1), "n": len(ordered)}


__all__ = ["advice_benchmark", "layout", "run_day", "with_surge"]

"""Live staffing advice: see an SLA breach coming and name the move that prevents it.

Halls open an emergency window (应急窗口) when too many citizens have already
waited too long: after the fact, by a threshold. With the hall's own dispatch
policy and its live state, onedoor can see it coming. Every few minutes the
edge calls :meth:`Advisor.advise` with the state its wait prediction already
builds (``edge.predict.hall_state``) and the day's tickets so far; it
simulates the next hour and returns an :class:`Advisory` when a service's p90
wait will pass its SLA, naming the move that fixes it, verified by simulating
the move, or ``None``. It never acts on its own: a person makes the move.

Usage::

    advisor = Advisor(model, window_numbers=[w.number for w in config.windows])
    state = hall_state(model, config, dispatcher, now_ms)       # on the event loop
    issued = {service_id: [issue times today, ms since midnight], ...}
    advisory = await asyncio.to_thread(advisor.advise, state, issued, seed)
    if advisory is not None:
        publish(advisory.to_dict())                              # JSON-ready

What it simulates. The state (who waits, who is served since when, which
windows are open until when) is simulated forward ``replications`` times
with arrivals from the model's day profile, each service's rate multiplied by
its *arrival factor*: how many tickets the service issued in the last
``recent_ms`` against what the profile expects, shrunk towards 1 by
``prior_tickets`` pseudo-tickets (a quiet morning does not halve the
afternoon). The tickets that count are those waiting now (except those already
past their SLA: that breach has happened, no move can undo it) and those
arriving in the next ``horizon_ms``; each is followed until it is called, or
until ``horizon_ms`` plus the largest SLA (a ticket still waiting then is past
any SLA). A service *breaches* when its p90 wait passes its SLA in at least
``confidence`` (0.7 by default) of the simulated futures and it expects at
least :data:`MIN_TICKETS` tickets per replication.

The moves, cheapest first, each simulated on the same replications (common
random numbers: the same citizens, the same service times) and accepted only
if afterwards no service's p90 passes its SLA in more than ``1 - confidence``
of the futures:

1. ``switch``: an open window serves only the breaching service, or serves it
   too at its top weight (the windows whose own services have the most slack
   are tried);
2. ``open``: a signed-out or closed window opens now until closing, serving
   the breaching service among its own (a clerk is needed);
3. ``add``: ``count`` more windows serving the breaching services, the
   fewest that suffice (1, 2, 4, ... then bisection), up to ``max_added``
   (a quarter of the hall's windows, at least 4, by default).

If none suffices the advisory still names the breach, with ``move`` None.

Errors (:class:`~fastpath.simulate.ModelError`): a state of another hall
model, unknown service ids in ``issued`` or ``sla_ms``, window numbers that
do not match the model's windows. Each call is independent: an advisory is
current as long as the next call returns it again (same ``key``), and cleared
when the next call returns None or another key.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastpath.predict import HallState, Predictor, WindowNow, open_until
from fastpath.simulate import HallModel, ModelError, WindowGroup, make_engine
from fastpath.types import APPOINTMENT, MINUTE_MS

HOUR_MS = 60 * MINUTE_MS
MIN_TICKETS = 3.0  # a service expecting fewer tickets per replication is not judged
SWITCH_KINDS = 2  # kinds of windows tried for a switch (and for opening)
EMERGENCY = "应急窗口"


@dataclass(frozen=True, slots=True)
class Outlook:
    """One service over the next hour."""

    service_id: str
    sla_ms: int
    tickets: float  # counted tickets per replication
    p90_ms: int  # of their waits, pooled over the replications (nearest rank)
    over_share: float  # of their waits above the SLA, pooled
    breach_probability: float  # share of replications in which its p90 passes the SLA

    def breaches(self, probability: float) -> bool:
        """The p90 passes the SLA in at least this share of the futures simulated."""
        return self.tickets >= MIN_TICKETS and self.breach_probability >= probability


@dataclass(frozen=True, slots=True)
class Move:
    """A staffing move: what a person would do."""

    kind: str  # "switch", "open" or "add"
    windows: tuple[int, ...]  # the windows' numbers (switch, open); () for "add"
    services: tuple[str, ...]  # what those windows (or the added ones) serve after it
    count: int = 1  # windows switched, opened or added

    def describe(self, names: Mapping[str, str]) -> tuple[str, str]:
        """(Chinese, English) one-line descriptions."""
        zh = "、".join(names.get(s, s) for s in self.services)
        en = ", ".join(self.services)
        numbers_zh = "、".join(str(n) for n in self.windows)
        numbers_en = ", ".join(str(n) for n in self.windows)
        plural = "s" if self.count > 1 else ""
        if self.kind == "switch":
            return (f"{numbers_zh}号窗口改为办理{zh}",
                    f"window{plural} {numbers_en}: serve {en}")
        if self.kind == "open":
            return (f"开启{numbers_zh}号窗口，办理{zh}",
                    f"open window{plural} {numbers_en} for {en}")
        return (f"增开{self.count}个{EMERGENCY}，办理{zh}",
                f"open {self.count} more window{plural} for {en}")


@dataclass(frozen=True, slots=True)
class Advisory:
    """A breach seen coming, and the move that prevents it (None: none found)."""

    hall: str
    now_ms: int
    horizon_ms: int
    breaching: tuple[Outlook, ...]
    before: tuple[Outlook, ...]  # every service judged, without a move
    move: Move | None
    after: tuple[Outlook, ...] | None  # every service judged, with the move
    arrival_factors: dict[str, float]
    replications: int
    names: dict[str, str]  # service id -> Chinese name
    max_added: int  # the most windows an "add" move was allowed

    @property
    def key(self) -> tuple[Any, ...]:
        """The advisory's identity: the same breach and the same move."""
        return (tuple(o.service_id for o in self.breaching), self.move)

    @property
    def message_zh(self) -> str:
        minutes = self.horizon_ms // MINUTE_MS
        breach = "；".join(f"{self.names[o.service_id]}预计p90等候{_minutes(o.p90_ms)}分钟"
                          f"（时限{_minutes(o.sla_ms)}分钟）" for o in self.breaching)
        if self.move is None:
            return f"未来{minutes}分钟{breach}。{self._limit_zh()}"
        after = {o.service_id: o for o in self.after or ()}
        check = "；".join(f"{self.names[o.service_id]}p90 {_minutes(after[o.service_id].p90_ms)}"
                         "分钟" for o in self.breaching)
        advice = self.move.describe(self.names)[0]
        return f"未来{minutes}分钟{breach}。建议：{advice}（模拟验证后{check}）。"

    @property
    def message_en(self) -> str:
        minutes = self.horizon_ms // MINUTE_MS
        breach = "; ".join(f"{o.service_id} p90 wait {_minutes(o.p90_ms)} min "
                           f"(SLA {_minutes(o.sla_ms)})" for o in self.breaching)
        if self.move is None:
            return (f"Next {minutes} min: {breach}. No move found that fixes it, up to "
                    f"{self.max_added} more windows: more staff is needed.")
        after = {o.service_id: o for o in self.after or ()}
        check = "; ".join(f"{o.service_id} p90 {_minutes(after[o.service_id].p90_ms)} min"
                          for o in self.breaching)
        return (f"Next {minutes} min: {breach}. Advice: {self.move.describe(self.names)[1]} "
                f"(simulated: {check}).")

    def _limit_zh(self) -> str:
        return f"增开{self.max_added}个窗口仍不足以解决，请增派人员。"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the uplink and the central's site page."""
        def outlooks(items: Sequence[Outlook] | None) -> list[dict[str, Any]] | None:
            return None if items is None else [
                {"service": o.service_id, "sla_ms": o.sla_ms, "p90_ms": o.p90_ms,
                 "over_sla_share": round(o.over_share, 4), "tickets": round(o.tickets, 1),
                 "breach_probability": round(o.breach_probability, 3)}
                for o in items]

        return {
            "hall": self.hall, "now_ms": self.now_ms, "horizon_ms": self.horizon_ms,
            "breaching": [o.service_id for o in self.breaching],
            "before": outlooks(self.before), "after": outlooks(self.after),
            "move": None if self.move is None else dataclasses.asdict(self.move),
            "arrival_factors": {k: round(v, 3) for k, v in self.arrival_factors.items()},
            "replications": self.replications,
            "message_zh": self.message_zh, "message_en": self.message_en,
        }


def _minutes(ms: int) -> str:
    return f"{ms / MINUTE_MS:.0f}"


def per_window(model: HallModel) -> HallModel:
    """The same hall with one group per window (in the same order), so that a move
    can change one window; the edge's models are already so."""
    if all(g.count == 1 for g in model.groups):
        return model
    groups = tuple(
        WindowGroup(g.name if g.count == 1 else f"{g.name} {i + 1}", 1, g.services,
                    g.priority_window, g.ratio_cap, g.shifts)
        for g in model.groups for i in range(g.count))
    return dataclasses.replace(model, groups=groups)


def arrival_factors(model: HallModel, now_ms: int, issued_ms: Mapping[str, Sequence[int]],
                    recent_ms: int = HOUR_MS, prior_tickets: float = 5.0) -> dict[str, float]:
    """Per service: tickets issued in the last ``recent_ms`` over what the day's
    profile expects then, each side plus ``prior_tickets`` (1.0: as planned)."""
    ids = {m.service.id for m in model.services}
    unknown = set(issued_ms) - ids
    if unknown:
        raise ModelError(f"issued times for unknown services {sorted(unknown)}")
    since = max(model.opens_ms, now_ms - recent_ms)
    factors = {}
    for model_service, (starts, rates, _p, _q) in zip(model.services, model.streams(),
                                                      strict=True):
        sid = model_service.service.id
        times = sorted(issued_ms.get(sid, ()))
        observed = bisect.bisect_left(times, now_ms) - bisect.bisect_left(times, since)
        expected = _expected(starts, rates, since, now_ms)
        factors[sid] = (observed + prior_tickets) / (expected + prior_tickets)
    return factors


def _expected(starts: Sequence[int], rates: Sequence[float], t0: int, t1: int) -> float:
    total = 0.0
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else t1
        a, b = max(t0, start), min(t1, end)
        if b > a:
            total += rates[i] * (b - a)
    return total


class Advisor:
    """The advice for one hall model; keep one per configuration (it caches engines)."""

    def __init__(self, model: HallModel, *, window_numbers: Sequence[int] | None = None,
                 sla_ms: Mapping[str, int] | None = None, horizon_ms: int = HOUR_MS,
                 replications: int = 100, max_added: int | None = None,
                 recent_ms: int = HOUR_MS, prior_tickets: float = 5.0,
                 confidence: float = 0.7, engine_class: Any = None) -> None:
        self.model = model
        self.split = per_window(model)
        ids = [m.service.id for m in model.services]
        self.sla_ms = {m.service.id: m.service.sla_minutes * MINUTE_MS for m in model.services}
        if sla_ms is not None:
            unknown = set(sla_ms) - set(ids)
            if unknown:
                raise ModelError(f"SLA for unknown services {sorted(unknown)}")
            self.sla_ms.update(sla_ms)
        numbers = list(window_numbers) if window_numbers is not None else [
            p.number for p in model.window_profiles()]
        if len(numbers) != model.n_windows or len(set(numbers)) != len(numbers):
            raise ModelError(f"need {model.n_windows} distinct window numbers")
        self.numbers = numbers
        if max_added is None:  # by default up to a quarter more windows
            max_added = max(4, model.n_windows // 4)
        if horizon_ms <= 0 or replications < 1 or max_added < 0 or not 0.5 <= confidence < 1:
            raise ModelError("need horizon_ms > 0, replications >= 1, max_added >= 0 and "
                             "0.5 <= confidence < 1")
        self.confidence = confidence
        self.horizon_ms = horizon_ms
        self.replications = replications
        self.max_added = max_added
        self.recent_ms = recent_ms
        self.prior_tickets = prior_tickets
        self.names = {m.service.id: m.service.name_zh for m in model.services}
        self.engine_class = engine_class  # None: the selected implementation
        self._predictors: dict[tuple[Any, ...], Predictor] = {}

    # -- the entry point --------------------------------------------------------------

    def advise(self, state: HallState, issued_ms: Mapping[str, Sequence[int]] | None = None,
               seed: int = 0) -> Advisory | None:
        """The advisory for the next ``horizon_ms`` from ``state``, or None if every
        service keeps its SLA (see the module docstring)."""
        if state.model is not self.model:
            raise ModelError("this hall state belongs to another hall model")
        factors = ({m.service.id: 1.0 for m in self.model.services} if issued_ms is None else
                   arrival_factors(self.model, state.now_ms, issued_ms, self.recent_ms,
                                   self.prior_tickets))
        base = self._state(self.split, state.windows, state)
        before = self.outlook(base, factors, seed)
        breaching = tuple(o for o in before if o.breaches(self.confidence))
        if not breaching:
            return None
        move, after = self._find_move(state, factors, seed, before, breaching)
        return Advisory(self.model.name, state.now_ms, self.horizon_ms, breaching, before,
                        move, after, factors, self.replications, dict(self.names),
                        self.max_added)

    # -- simulation -------------------------------------------------------------------

    def outlook(self, state: HallState, factors: Mapping[str, float],
                seed: int) -> tuple[Outlook, ...]:
        """Every service with an SLA over the next ``horizon_ms`` from ``state`` (a state
        of this advisor's model split per window, or of a move's model)."""
        predictor = self._predictor(state.model)
        if state.model is not predictor.model:  # the same hall as an earlier move's
            state = dataclasses.replace(state, model=predictor.model)
        model = state.model
        now = state.now_ms
        judged = [(i, m.service.id) for i, m in enumerate(model.services)
                  if self.sla_ms.get(m.service.id, 0) > 0]
        if not judged:
            return ()
        count_until = now + self.horizon_ms
        until = count_until + max(self.sla_ms[sid] for _, sid in judged) + MINUTE_MS
        streams = [(starts, [r * factors.get(m.service.id, 1.0) for r in rates], p, q)
                   for m, (starts, rates, p, q) in zip(model.services, model.streams(),
                                                       strict=True)]
        out = predictor.forecast(state, until, count_until, self.replications, seed, streams)
        runs: list[list[list[int]]] = [[[] for _ in range(self.replications)]
                                        for _ in model.services]
        for replication, service, wait in zip(out["replication"], out["service"], out["wait"],
                                              strict=True):
            runs[service][replication].append(wait)
        outlooks = []
        for index, sid in judged:
            sla = self.sla_ms[sid]
            # A ticket already past its SLA has breached: no move can undo it, and it
            # would keep the advisory up. Its wait is among the longest: drop as many.
            late = sum(1 for t in state.waiting if t.service == index and
                       now - _wait_start(t.klass, t.key_ms, t.issued_ms) > sla)
            pooled: list[int] = []
            breached = 0
            for waits in runs[index]:
                waits.sort()
                kept = waits[:max(0, len(waits) - late)]
                if kept and _p90(kept) > sla:
                    breached += 1
                pooled += kept
            pooled.sort()
            over = sum(1 for w in pooled if w > sla)
            outlooks.append(Outlook(sid, sla, len(pooled) / self.replications, _p90(pooled),
                                    over / len(pooled) if pooled else 0.0,
                                    breached / self.replications))
        return tuple(outlooks)

    def _predictor(self, model: HallModel) -> Predictor:
        """One engine per window layout (the hall's, and each move's), reused across calls."""
        key = tuple((tuple(g.services.items()), g.priority_window, g.ratio_cap, g.count,
                     g.shifts) for g in model.groups)
        predictor = self._predictors.get(key)
        if predictor is None:
            if len(self._predictors) > 64:  # keep memory bounded
                self._predictors.clear()
            engine = None if self.engine_class is None else make_engine(model, self.engine_class)
            predictor = self._predictors[key] = Predictor(model, engine)
        return predictor

    def _state(self, model: HallModel, windows: Sequence[WindowNow],
               state: HallState) -> HallState:
        return HallState(model, state.now_ms, state.waiting, tuple(windows), state.counters)

    # -- moves --------------------------------------------------------------------------

    def _find_move(self, state: HallState, factors: Mapping[str, float], seed: int,
                   before: tuple[Outlook, ...], breaching: tuple[Outlook, ...],
                   ) -> tuple[Move | None, tuple[Outlook, ...] | None]:
        """The cheapest verified move: switches (nobody more needed), then opening
        closed windows, then added windows; within a kind, the fewest windows."""
        worst = max(breaching, key=lambda o: (o.breach_probability, o.over_share))
        target = worst.service_id
        needed = tuple(o.service_id for o in breaching)

        def outcome(move: Move, model: HallModel,
                    windows: Sequence[WindowNow]) -> tuple[Move, tuple[Outlook, ...]]:
            return move, self.outlook(self._state(model, windows, state), factors, seed)

        for families in (self._switches(state, before, target),
                         self._openings(state, target),
                         [(lambda k: self._added(state, needed, k), self.max_added)]):
            found: list[tuple[int, float, int, Move, tuple[Outlook, ...]]] = []
            for family, most in families:
                result = self._fewest(family, outcome, most)
                if result is not None:
                    move, after = result
                    found.append((move.count, max(_ratio(o) for o in after), len(found),
                                  move, after))
            if found:
                _count, _ratio_max, _i, move, after = min(found)
                return move, after
        return None, None

    def _fewest(self, family: Family,
                outcome: Callable[[Move, HallModel, Sequence[WindowNow]],
                                  tuple[Move, tuple[Outlook, ...]]],
                most: int) -> tuple[Move, tuple[Outlook, ...]] | None:
        """The move of the family with the fewest windows (1 to ``most``) that fixes
        the breach: 1, 2, 4, ... then bisection; None if even ``most`` does not."""
        tried: dict[int, tuple[Move, tuple[Outlook, ...]]] = {}

        def fixes(count: int) -> bool:
            try:
                tried[count] = outcome(*family(count))
            except ModelError:  # e.g. a switch that leaves a service with no window
                return False
            return self._fixed(tried[count][1])

        low, high, count = 0, 0, 1
        while count <= most:
            if fixes(count):
                high = count
                break
            low = count
            count = most + 1 if count == most else min(2 * count, most)
        if not high:
            return None
        while high - low > 1:
            middle = (low + high) // 2
            if fixes(middle):
                high = middle
            else:
                low = middle
        return tried[high]

    def _fixed(self, after: Sequence[Outlook]) -> bool:
        """With the move, no service's p90 passes its SLA in more than 1 - confidence
        of the futures."""
        return not any(o.breaches(1.0 - self.confidence + 1e-9) for o in after)

    def _switches(self, state: HallState, before: tuple[Outlook, ...],
                  target: str) -> list[tuple[Family, int]]:
        """Open windows of one kind: serve ``target`` only, or serve it too (at their top
        weight); the kinds whose own services have the most slack are tried."""
        now = state.now_ms
        share = {o.service_id: o.over_share for o in before}
        kinds: dict[tuple[Any, ...], list[int]] = {}
        for index, (group, window) in enumerate(zip(self.split.groups, state.windows,
                                                    strict=True)):
            if window.open_until_ms > now and list(group.services) != [target]:
                kinds.setdefault(_kind(group), []).append(index)
        ranked = sorted(kinds.values(), key=lambda indices: (max(
            share.get(sid, 0.0) for sid in self.split.groups[indices[0]].services), indices[0]))
        families: list[tuple[Family, int]] = []
        for indices in ranked[:SWITCH_KINDS]:
            # Idle windows first: they take the breaching service's tickets at once.
            indices = sorted(indices, key=lambda i: (state.windows[i].busy_service >= 0, i))
            group = self.split.groups[indices[0]]
            weight = max(group.services.values())
            variants = [{target: weight}]
            if group.services.get(target, 0) < weight:
                variants.append({**group.services, target: weight})
            for services in variants:
                families.append((self._changing("switch", indices, services, state),
                                 len(indices)))
        return families

    def _openings(self, state: HallState, target: str) -> list[tuple[Family, int]]:
        """Closed windows (signed out, or between shifts) of one kind, opened now until
        closing, serving ``target`` among their services."""
        if state.now_ms >= self.model.closes_ms:
            return []
        kinds: dict[tuple[Any, ...], list[int]] = {}
        for index, (group, window) in enumerate(zip(self.split.groups, state.windows,
                                                    strict=True)):
            if window.open_until_ms <= state.now_ms:
                kinds.setdefault(_kind(group), []).append(index)
        families: list[tuple[Family, int]] = []
        for indices in list(kinds.values())[:SWITCH_KINDS]:
            group = self.split.groups[indices[0]]
            services = dict(group.services)
            services.setdefault(target, max(services.values()))
            families.append((self._changing("open", indices, services, state), len(indices)))
        return families

    def _changing(self, kind: str, indices: Sequence[int], services: dict[str, int],
                  state: HallState) -> Family:
        """The move that gives the first ``count`` of these windows ``services``
        (and opens them until closing, for "open")."""
        def move(count: int) -> tuple[Move, HallModel, Sequence[WindowNow]]:
            chosen = indices[:count]
            groups = list(self.split.groups)
            windows = list(state.windows)
            for index in chosen:
                groups[index] = dataclasses.replace(groups[index], services=services)
                if kind == "open":
                    windows[index] = dataclasses.replace(
                        windows[index], open_until_ms=self._until_closing(state.now_ms))
            model = dataclasses.replace(self.split, groups=tuple(groups))
            numbers = tuple(self.numbers[i] for i in chosen)
            return Move(kind, numbers, tuple(services), count), model, windows

        return move

    def _until_closing(self, now_ms: int) -> int:
        """Until when a window opened now serves: closing time, or past midnight in a
        hall open around the clock (until its reset, as the prediction has it)."""
        hours = self.model.opens_ms, self.model.closes_ms
        return open_until((hours,), now_ms) if hours[0] <= now_ms < hours[1] else hours[1]

    def _added(self, state: HallState, services: tuple[str, ...],
               count: int) -> tuple[Move, HallModel, Sequence[WindowNow]]:
        group = WindowGroup(EMERGENCY, count, dict.fromkeys(services, 1))
        model = dataclasses.replace(self.split, groups=(*self.split.groups, group))
        windows = [*state.windows, *[WindowNow(self._until_closing(state.now_ms))] * count]
        return Move("add", (), services, count), model, windows


Family = Callable[[int], tuple[Move, HallModel, Sequence[WindowNow]]]


def _kind(group: WindowGroup) -> tuple[Any, ...]:
    """Windows of one kind: the same services, weights and rules."""
    return (tuple(sorted(group.services.items())), group.priority_window, group.ratio_cap)


def _wait_start(klass: int, key_ms: int, issued_ms: int) -> int:
    """When a waiting ticket's wait began (docs/STATISTICS.md)."""
    return max(key_ms, issued_ms) if klass == APPOINTMENT else issued_ms


def _p90(ordered: Sequence[int]) -> int:
    return ordered[max(1, math.ceil(0.9 * len(ordered))) - 1] if ordered else 0


def _ratio(outlook: Outlook) -> float:
    return outlook.p90_ms / outlook.sla_ms if outlook.tickets >= MIN_TICKETS else 0.0


__all__ = [
    "Advisor",
    "Advisory",
    "Move",
    "Outlook",
    "arrival_factors",
    "per_window",
]

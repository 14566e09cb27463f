"""Wait-time prediction: Monte-Carlo forward simulation from the hall's current state.

A citizen taking a ticket asks "how long will I wait?". Commercial systems
answer ``people ahead × mean service time ÷ open windows`` (:func:`naive_wait`),
which ignores that windows serve several services with weights, that priority
tickets age faster, that windows close for lunch. onedoor instead simulates
the next minutes many times with the hall's own dispatch policy, starting from
exactly who waits, who is at which window since when and which windows are
open, and reports the median and 90th percentile of the new ticket's wait.

``HallState`` is plain data; :meth:`HallState.from_dispatcher` builds it from
the live :class:`~fastpath.Dispatcher` on the edge.
"""

from __future__ import annotations

import bisect
import weakref
from dataclasses import dataclass
from typing import Any

from fastpath.dispatcher import Dispatcher
from fastpath.simulate import DAY_MS, HOUR_MS, HallModel, ModelError, percentile
from fastpath.types import (
    APPOINTMENT,
    NORMAL,
    PRIORITY,
    TicketClass,
    TicketState,
    WindowState,
    number_order,
)

DEFAULT_HORIZON_MS = 4 * HOUR_MS


def open_until(shifts: tuple[tuple[int, int], ...], now_ms: int) -> int:
    """Until when an open window serves, from its shifts (ms since local midnight): the
    end of the shift it is in; past the horizon when it is in none (signed in outside
    its hours), or when its day runs around the clock (a shift from 00:00 and one to
    24:00): such a hall serves on past midnight (its day ends at its reset, not at
    24:00), so its windows are not cut off there."""
    around_the_clock = bool(shifts) and shifts[0][0] == 0 and shifts[-1][1] == DAY_MS
    until = next((close for opens, close in shifts if opens <= now_ms < close), None)
    if until is None or (around_the_clock and until == DAY_MS):
        return now_ms + DEFAULT_HORIZON_MS
    return until


@dataclass(frozen=True, slots=True)
class WaitingTicket:
    service: int  # index in the model's services
    klass: int
    key_ms: int
    order: int  # number_order(prefix, counter): the tie-break
    issued_ms: int


@dataclass(frozen=True, slots=True)
class WindowNow:
    open_until_ms: int  # end of the current shift; -1: closed now (later shifts still open)
    busy_service: int = -1  # service index of the ticket at the window, -1 if idle
    busy_since_ms: int = 0
    priority_streak: int = 0


@dataclass(frozen=True, slots=True)
class HallState:
    """Everything the prediction needs to know about the hall at one instant."""

    model: HallModel
    now_ms: int
    waiting: tuple[WaitingTicket, ...]
    windows: tuple[WindowNow, ...]  # in the order of model.window_profiles()
    counters: tuple[int, ...]  # tickets issued so far per service

    def __post_init__(self) -> None:
        if len(self.windows) != self.model.n_windows:
            raise ModelError(f"hall state has {len(self.windows)} windows, "
                             f"the model {self.model.n_windows}")
        if len(self.counters) != len(self.model.services):
            raise ModelError("counters need one entry per service")

    @classmethod
    def from_dispatcher(cls, model: HallModel, dispatcher: Dispatcher, now_ms: int) -> HallState:
        """The live hall's state; windows are matched to the model by number.

        A paused window counts as closed until its next planned shift (nobody
        knows when staff will resume); an open window stays open until its
        shift ends; later shifts of the model open windows again (after lunch).
        """
        index = {m.service.id: i for i, m in enumerate(model.services)}
        by_prefix = {m.service.prefix: i for i, m in enumerate(model.services)}
        profiles = model.window_profiles()
        shifts = model.window_shifts()
        waiting = []
        counters = [0] * len(model.services)
        for ticket in dispatcher.tickets():
            prefix = ticket.number.rstrip("0123456789")
            counter = int(ticket.number[len(prefix):])
            if ticket.service_id not in index or prefix not in by_prefix:
                raise ModelError(f"ticket {ticket.number}: its service is not in the model")
            service = index[ticket.service_id]
            origin = by_prefix[prefix]  # a transferred ticket keeps its first number
            counters[origin] = max(counters[origin], counter)
            if ticket.state is TicketState.WAITING:
                waiting.append(WaitingTicket(service, int(ticket.klass), ticket.key_ms,
                                             number_order(prefix, counter), ticket.issued_ms))
        windows = []
        for profile, window_shifts in zip(profiles, shifts, strict=True):
            status = dispatcher.window(profile.number)
            until = open_until(window_shifts, now_ms) if status.state is WindowState.OPEN else -1
            busy_service, since = -1, 0
            if status.current is not None:
                current = dispatcher.ticket(status.current)
                busy_service = index[current.service_id]
                since = current.served_ms or current.called_ms or now_ms
            windows.append(WindowNow(until, busy_service, since, status.priority_streak))
        return cls(model, now_ms, tuple(waiting), tuple(windows), tuple(counters))


@dataclass(frozen=True, slots=True)
class Prediction:
    p50_ms: int
    p90_ms: int
    mean_ms: float
    replications: int
    censored: int  # replications in which the ticket was not called within the horizon


class Predictor:
    """Holds one simulation engine per hall model, so each prediction only simulates."""

    def __init__(self, model: HallModel, engine: Any = None) -> None:
        self.model = model
        self.engine = engine if engine is not None else model.engine()

    def waits(self, state: HallState, service_id: str, klass: TicketClass | int,
              replications: int = 1000, seed: int = 0, horizon_ms: int = DEFAULT_HORIZON_MS,
              booked_ms: int | None = None) -> list[int]:
        """Simulated waits (ms) of a ticket taken at ``state.now_ms``, one per replication.

        A wait runs from the ticket's issue to its call, or, for an appointment that
        checks in before its booked time, from the booked time (docs/STATISTICS.md):
        the same wait as the hall's statistics count. A replication in which the
        ticket is not called within ``horizon_ms`` gives ``horizon_ms``.
        """
        if state.model is not self.model:
            raise ModelError("this hall state belongs to another hall model")
        if replications < 1:
            raise ValueError("replications must be >= 1")
        model = self.model
        service = model.service_index(service_id)
        klass = TicketClass(klass)
        now = state.now_ms
        key = now
        if klass is TicketClass.APPOINTMENT:
            if booked_ms is None:
                raise ModelError("an appointment ticket needs booked_ms")
            if model.policy.appointment_late(now, booked_ms):
                klass = TicketClass.NORMAL
            else:
                key = booked_ms
        prefix = model.services[service].service.prefix
        counters = list(state.counters)
        counters[service] += 1
        tagged = (service, int(klass), key, number_order(prefix, counters[service]))
        shifts, busy, since, streaks, waiting = self._engine_state(state)
        waits: list[int] = self.engine.predict(
            seed, replications, now, horizon_ms, shifts, busy, since, streaks, waiting,
            counters, model.streams(), tagged,
        )
        early = key - now if klass is TicketClass.APPOINTMENT else 0
        if early > 0:  # an early appointment waits from its booked time
            waits = [w if w >= horizon_ms else max(0, w - early) for w in waits]
        return waits

    def forecast(self, state: HallState, until_ms: int, count_until_ms: int,
                 replications: int, seed: int = 0,
                 streams: list[tuple[list[int], list[float], float, float]] | None = None,
                 ) -> dict[str, Any]:
        """Every ticket's wait from the state: those waiting and those arriving before
        ``count_until_ms``, simulated until ``until_ms`` (see the engine's
        ``forecast``); ``streams`` replace the model's arrival rates (a surge)."""
        if state.model is not self.model:
            raise ModelError("this hall state belongs to another hall model")
        shifts, busy, since, streaks, waiting = self._engine_state(state)
        out: dict[str, Any] = self.engine.forecast(
            seed, replications, state.now_ms, until_ms, count_until_ms, shifts, busy, since,
            streaks, waiting, list(state.counters),
            self.model.streams() if streams is None else streams)
        return out

    def ticket_waits(self, state: HallState, replications: int = 200, seed: int = 0,
                     horizon_ms: int = DEFAULT_HORIZON_MS) -> list[Prediction]:
        """The remaining wait (from ``state.now_ms`` to the call) of every ticket waiting
        in ``state``, in the order of ``state.waiting``: one forecast simulates them all.

        Walk-ins keep arriving as the model says (a priority ticket arriving later may
        still be called first). A replication in which a ticket is not called within
        ``horizon_ms`` counts ``horizon_ms`` for it (``censored``).
        """
        if replications < 1:
            raise ValueError("replications must be >= 1")
        now = state.now_ms
        waiting = state.waiting
        out = self.forecast(state, now + horizon_ms, now + 1, replications, seed)
        # The engine names a waiting ticket by its place in the queue order (key, order).
        places = sorted(range(len(waiting)), key=lambda i: (waiting[i].key_ms, waiting[i].order))
        starts = [max(t.issued_ms, t.key_ms) if t.klass == APPOINTMENT else t.issued_ms
                  for t in waiting]
        remaining: list[list[int]] = [[] for _ in waiting]
        for place, wait in zip(out["place"], out["wait"], strict=True):
            if place >= 0:
                index = places[place]
                remaining[index].append(max(0, starts[index] + wait - now))
        predictions = []
        for waits in remaining:
            censored = replications - len(waits)
            ordered = sorted(waits) + [horizon_ms] * censored
            predictions.append(Prediction(percentile(ordered, 50), percentile(ordered, 90),
                                          sum(ordered) / len(ordered), replications, censored))
        return predictions

    def _engine_state(self, state: HallState) -> tuple[Any, ...]:
        """The state as the engine takes it: shifts, busy services and since when,
        ratio-cap streaks, and the waiting tickets as columns."""
        w = state.waiting
        return (self.shifts(state), [x.busy_service for x in state.windows],
                [x.busy_since_ms for x in state.windows],
                [x.priority_streak for x in state.windows],
                ([t.service for t in w], [t.klass for t in w], [t.key_ms for t in w],
                 [t.order for t in w], [t.issued_ms for t in w]))

    def shifts(self, state: HallState) -> list[list[tuple[int, int]]]:
        """Per window: open now until ``open_until_ms`` (if open), then the model's later shifts."""
        now = state.now_ms
        out = []
        for window, planned in zip(state.windows, self.model.window_shifts(), strict=True):
            current = [(now, window.open_until_ms)] if window.open_until_ms > now else []
            after = max(now + 1, window.open_until_ms)
            out.append(current + [(a, b) for a, b in planned if a >= after])
        return out

    def predict(self, state: HallState, service_id: str, klass: TicketClass | int,
                replications: int = 1000, seed: int = 0,
                horizon_ms: int = DEFAULT_HORIZON_MS, booked_ms: int | None = None) -> Prediction:
        waits = self.waits(state, service_id, klass, replications, seed, horizon_ms, booked_ms)
        ordered = sorted(waits)
        return Prediction(percentile(ordered, 50), percentile(ordered, 90),
                          sum(ordered) / len(ordered), len(ordered),
                          sum(1 for x in ordered if x >= horizon_ms))


_predictors: weakref.WeakKeyDictionary[HallModel, Predictor] = weakref.WeakKeyDictionary()


def predict_wait(hall_state: HallState, service: str, klass: TicketClass | int, now: int,
                 replications: int = 1000, seed: int = 0,
                 horizon_ms: int = DEFAULT_HORIZON_MS) -> Prediction:
    """p50/p90 wait (ms) of a ``klass`` ticket for ``service`` taken at ``now``.

    ``now`` must be the state's instant (the state is a snapshot of that moment).
    """
    if now != hall_state.now_ms:
        raise ModelError(f"the hall state is for {hall_state.now_ms}, not {now}")
    predictor = _predictors.get(hall_state.model)
    if predictor is None:
        predictor = _predictors[hall_state.model] = Predictor(hall_state.model)
    return predictor.predict(hall_state, service, klass, replications, seed, horizon_ms)


def naive_wait(state: HallState, service_id: str) -> float:
    """The commercial formula: people ahead × mean service time ÷ open windows (ms)."""
    model = state.model
    service = model.service_index(service_id)
    ahead = sum(1 for t in state.waiting if t.service == service)
    profiles = model.window_profiles()
    open_windows = sum(
        1 for profile, now in zip(profiles, state.windows, strict=True)
        if now.open_until_ms > state.now_ms and service_id in profile.services
    )
    return ahead * model.services[service].mean_service_ms() / max(1, open_windows)


def state_from_day(day: Any, serial: int) -> HallState:
    """The state just before ticket ``serial`` of a simulated day was taken.

    For the accuracy benchmark: rebuilt from the day's per-ticket records. Needs
    a day without no-shows (a requeued ticket's first call is all the records keep).
    """
    return _state_of_day(day, day.columns["arrival"][serial], serial)


def state_at(day: Any, now_ms: int) -> HallState:
    """The state of a simulated day at ``now_ms`` (the tickets taken before it);
    as :func:`state_from_day`, for benchmarks, on a day without no-shows."""
    return _state_of_day(day, now_ms, bisect.bisect_left(day.columns["arrival"], now_ms))


def _state_of_day(day: Any, now: int, tickets: int) -> HallState:
    model: HallModel = day.model
    c = day.columns
    waiting = []
    counters = [0] * len(model.services)
    busy: dict[int, tuple[int, int]] = {}
    calls = []
    for i in range(tickets):
        service = c["service"][i]
        counters[service] += 1
        called = c["called"][i]
        if 0 <= called <= now:
            calls.append((called, i))
        if called < 0 or called > now:
            waiting.append(WaitingTicket(service, c["klass"][i], c["key"][i],
                                         number_order(model.services[service].service.prefix,
                                                      counters[service]),
                                         c["arrival"][i]))
        elif c["end"][i] > now or c["end"][i] < 0:
            busy[c["window"][i]] = (service, c["start"][i])
    streaks = [0] * model.n_windows
    for _called, i in sorted(calls):  # the ratio-cap counters, replayed
        if c["klass"][i] == PRIORITY:
            streaks[c["window"][i]] += 1
        elif c["klass"][i] == NORMAL:
            streaks[c["window"][i]] = 0
    windows = []
    for widx, shifts in enumerate(model.window_shifts()):
        until = next((close for opens, close in shifts if opens <= now < close), -1)
        service, since = busy.get(widx, (-1, 0))
        streak = streaks[widx]
        windows.append(WindowNow(until, service, since, streak))
    return HallState(model, now, tuple(waiting), tuple(windows), tuple(counters))


__all__ = [
    "DEFAULT_HORIZON_MS",
    "HallState",
    "Prediction",
    "Predictor",
    "WaitingTicket",
    "WindowNow",
    "naive_wait",
    "open_until",
    "predict_wait",
    "state_at",
    "state_from_day",
]

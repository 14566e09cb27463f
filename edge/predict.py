"""The predicted wait printed on a ticket, from fastpath's Monte-Carlo predictor.

:class:`WaitPredictor` turns the site config into a ``fastpath`` hall model
(one window group per window, the day as the hall's calendar has it: opening,
lunch, 停止取号, a half day; each service's typical duration from
``services[].mean_minutes``) and, for each new ticket, simulates the hall forward
from the live dispatcher's state with the hall's own dispatch policy: a wait
prediction simulates exactly what the hall will do (docs/ARCHITECTURE.md, "The
dispatch policy").

The model counts time in milliseconds since local midnight, the live hall in
unix milliseconds: :func:`hall_state` rebases the snapshot. A site whose
services do not all give ``mean_minutes`` gets no prediction (None: the
ticket says nothing rather than a made-up number).

The simulation takes a while (0.3 s for the pure engine here, several times
that on a Pi), so the daemon splits it: :meth:`WaitPredictor.job` snapshots the
hall on the event loop and the returned :data:`PredictionJob` runs in a worker
thread (``edge.daemon``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from datetime import datetime

import structlog

from edge.config import EdgeConfig
from fastpath.dispatcher import Dispatcher
from fastpath.predict import HallState, Predictor, WaitingTicket, WindowNow, open_until
from fastpath.simulate import HallModel, ModelError, ServiceModel, WindowGroup
from fastpath.types import MINUTE_MS, TicketClass, TicketState, WindowState, number_order
from firmware_protocols import mqtt_messages as mm

log = structlog.get_logger(__name__)

REPLICATIONS = 300  # enough for a stable p50/p90 on a ticket, cheap enough for a Pi
PredictionJob = Callable[[], mm.WaitPrediction]
"""A prediction over a snapshot of the hall; safe to run off the event loop."""


def hall_model(config: EdgeConfig) -> HallModel | None:
    """The fastpath model of this hall, or None if a service has no ``mean_minutes``."""
    if any(s.mean_minutes is None for s in config.services):
        return None
    services = tuple(
        ServiceModel(service=s.to_service(), visitors_per_day=s.visitors_per_day,
                     mean_minutes=float(s.mean_minutes or 0.0), cv=s.cv)
        for s in config.services)
    groups = tuple(WindowGroup(name=f"window-{w.number}", count=1, services=dict(w.services),
                               priority_window=w.priority, ratio_cap=w.ratio_cap)
                   for w in config.windows)
    opens, closes = config.hours.open_minute * MINUTE_MS, config.hours.close_minute * MINUTE_MS
    return HallModel(name=config.site.id, services=services, groups=groups, opens_ms=opens,
                     closes_ms=closes, arrivals_until_ms=closes, hourly_profile=(1.0,) * 24,
                     policy=config.policy)


def local_midnight_ms(config: EdgeConfig, now_ms: int) -> int:
    """Unix ms of the hall's last local midnight: the model's time 0."""
    local = datetime.fromtimestamp(now_ms / 1000, config.site.tz)
    return now_ms - ((local.hour * 60 + local.minute) * 60 + local.second) * 1000 \
        - local.microsecond // 1000


def hall_state(model: HallModel, config: EdgeConfig, dispatcher: Dispatcher, now_ms: int
               ) -> HallState:
    """The live hall as a model state, in milliseconds since local midnight."""
    midnight = local_midnight_ms(config, now_ms)
    index = {m.service.id: i for i, m in enumerate(model.services)}
    counters = [dispatcher.last_counter(m.service.prefix) for m in model.services]
    waiting = [ticket for _, ticket in _waiting(index, dispatcher, midnight)]
    now = now_ms - midnight
    windows = []
    for window, shifts in zip(config.windows, model.window_shifts(), strict=True):
        status = dispatcher.window(window.number)
        until = open_until(shifts, now) if status.state is WindowState.OPEN else -1
        busy, since = -1, 0
        if status.current is not None:
            current = dispatcher.ticket(status.current)
            busy = index.get(current.service_id, -1)
            since = (current.served_ms or current.called_ms or now_ms) - midnight
        windows.append(WindowNow(until, busy, since, status.priority_streak))
    return HallState(model, now, tuple(waiting), tuple(windows), tuple(counters))


def _waiting(index: dict[str, int], dispatcher: Dispatcher, midnight: int
             ) -> list[tuple[str, WaitingTicket]]:
    """The waiting tickets of the model's services, numbered, in issue order."""
    out = []
    for ticket in dispatcher.tickets():
        if ticket.state is TicketState.WAITING and ticket.service_id in index:
            prefix = ticket.number.rstrip("0123456789")
            order = number_order(prefix, int(ticket.number[len(prefix):]))
            out.append((ticket.number, WaitingTicket(
                index[ticket.service_id], int(ticket.klass), ticket.key_ms - midnight, order,
                ticket.issued_ms - midnight)))
    return out


TicketWaits = dict[str, tuple[int, int]]
"""Ticket number -> its remaining wait (p50, p90) in ms, from the moment of the snapshot."""


class WaitPredictor:
    """Predicts the wait of a ticket about to be issued; one per config."""

    def __init__(self, config: EdgeConfig, replications: int = REPLICATIONS) -> None:
        self.config = config
        self.replications = replications
        self.model = hall_model(config)
        self._engine = None if self.model is None else self.model.engine()
        self._day: tuple[dt.date, HallModel, Predictor] | None = None
        if self.model is None:
            log.info("wait.prediction_off", reason="a service has no mean_minutes")

    def _today(self, now_ms: int) -> tuple[HallModel, Predictor] | None:
        """Today's model as the hall's calendar has it (lunch, 停止取号, a half day) and
        its predictor; None without a model, or on a day the hall is closed."""
        if self.model is None:
            return None
        date = datetime.fromtimestamp(now_ms / 1000, self.config.site.tz).date()
        if self._day is None or self._day[0] != date:
            try:
                model = self.model.on_date(self.config.calendar, date)
            except ModelError:
                return None
            self._day = (date, model, Predictor(model, self._engine))
        return self._day[1], self._day[2]

    def job(self, dispatcher: Dispatcher, service_id: str, klass: TicketClass,
            now_ms: int, booked_ms: int | None = None) -> PredictionJob | None:
        """Snapshot the live hall (on the event loop) into a job that simulates it.

        The job touches nothing live: it may run in a worker thread while the
        dispatcher moves on. Run one job at a time per predictor (its engine).
        """
        today = self._today(now_ms)
        if today is None:
            return None
        model, predictor = today
        state = hall_state(model, self.config, dispatcher, now_ms)
        replications = self.replications

        def run() -> mm.WaitPrediction:
            result = predictor.predict(state, service_id, klass, replications,
                                       seed=now_ms & 0x7FFFFFFF, booked_ms=booked_ms)
            p50 = result.p50_ms // 1000
            return mm.WaitPrediction(p50_s=p50, p90_s=max(p50, result.p90_ms // 1000))

        return run

    def ticket_waits_job(self, dispatcher: Dispatcher, now_ms: int, replications: int = 200
                         ) -> Callable[[], TicketWaits] | None:
        """Snapshot the live hall (on the event loop) into a job that simulates the
        remaining wait of every waiting ticket at once (the progress pages'); None
        without a model. The job may run in a worker thread, one at a time."""
        today = self._today(now_ms)
        if today is None:
            return None
        model, predictor = today
        state = hall_state(model, self.config, dispatcher, now_ms)
        index = {m.service.id: i for i, m in enumerate(model.services)}
        numbers = [n for n, _ in _waiting(index, dispatcher, local_midnight_ms(
            self.config, now_ms))]

        def run() -> TicketWaits:
            waits = predictor.ticket_waits(state, replications, seed=now_ms & 0x7FFFFFFF)
            return {number: (w.p50_ms, max(w.p50_ms, w.p90_ms))
                    for number, w in zip(numbers, waits, strict=True)}

        return run

    def predict(self, dispatcher: Dispatcher, service_id: str, klass: TicketClass,
                now_ms: int, booked_ms: int | None = None) -> mm.WaitPrediction | None:
        """Snapshot and simulate at once, on the caller's thread."""
        job = self.job(dispatcher, service_id, klass, now_ms, booked_ms)
        return None if job is None else job()


__all__ = ["REPLICATIONS", "PredictionJob", "TicketWaits", "WaitPredictor", "hall_model",
           "hall_state", "local_midnight_ms"]

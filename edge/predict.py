"""The predicted wait printed on a ticket, from fastpath's Monte-Carlo predictor.

:class:`WaitPredictor` turns the site config into a ``fastpath`` hall model
(one window group per window, the hall's opening hours, each service's
typical duration from ``services[].mean_minutes``) and, for each new ticket,
simulates the hall forward from the live dispatcher's state with the hall's
own dispatch policy: a wait prediction simulates exactly what the hall will
do (docs/ARCHITECTURE.md, "The dispatch policy").

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

from collections.abc import Callable
from datetime import datetime

import structlog

from edge.config import EdgeConfig
from fastpath.dispatcher import Dispatcher
from fastpath.predict import DEFAULT_HORIZON_MS, HallState, Predictor, WaitingTicket, WindowNow
from fastpath.simulate import HallModel, ServiceModel, WindowGroup
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
    waiting = []
    counters = [dispatcher.last_counter(m.service.prefix) for m in model.services]
    for ticket in dispatcher.tickets():
        prefix = ticket.number.rstrip("0123456789")
        counter = int(ticket.number[len(prefix):])
        if ticket.state is TicketState.WAITING and ticket.service_id in index:
            waiting.append(WaitingTicket(index[ticket.service_id], int(ticket.klass),
                                         ticket.key_ms - midnight,
                                         number_order(prefix, counter),
                                         ticket.issued_ms - midnight))
    now = now_ms - midnight
    windows = []
    for window, shifts in zip(config.windows, model.window_shifts(), strict=True):
        status = dispatcher.window(window.number)
        open_until = -1
        if status.state is WindowState.OPEN:
            open_until = next((close for opens, close in shifts if opens <= now < close),
                              now + DEFAULT_HORIZON_MS)
        busy, since = -1, 0
        if status.current is not None:
            current = dispatcher.ticket(status.current)
            busy = index.get(current.service_id, -1)
            since = (current.served_ms or current.called_ms or now_ms) - midnight
        windows.append(WindowNow(open_until, busy, since, status.priority_streak))
    return HallState(model, now, tuple(waiting), tuple(windows), tuple(counters))


class WaitPredictor:
    """Predicts the wait of a ticket about to be issued; one per config."""

    def __init__(self, config: EdgeConfig, replications: int = REPLICATIONS) -> None:
        self.config = config
        self.replications = replications
        self.model = hall_model(config)
        self._predictor = None if self.model is None else Predictor(self.model)
        if self.model is None:
            log.info("wait.prediction_off", reason="a service has no mean_minutes")

    def job(self, dispatcher: Dispatcher, service_id: str, klass: TicketClass,
            now_ms: int, booked_ms: int | None = None) -> PredictionJob | None:
        """Snapshot the live hall (on the event loop) into a job that simulates it.

        The job touches nothing live: it may run in a worker thread while the
        dispatcher moves on. Run one job at a time per predictor (its engine).
        """
        if self._predictor is None or self.model is None:
            return None
        state = hall_state(self.model, self.config, dispatcher, now_ms)
        predictor, replications = self._predictor, self.replications

        def run() -> mm.WaitPrediction:
            result = predictor.predict(state, service_id, klass, replications,
                                       seed=now_ms & 0x7FFFFFFF, booked_ms=booked_ms)
            p50 = result.p50_ms // 1000
            return mm.WaitPrediction(p50_s=p50, p90_s=max(p50, result.p90_ms // 1000))

        return run

    def predict(self, dispatcher: Dispatcher, service_id: str, klass: TicketClass,
                now_ms: int, booked_ms: int | None = None) -> mm.WaitPrediction | None:
        """Snapshot and simulate at once, on the caller's thread."""
        job = self.job(dispatcher, service_id, klass, now_ms, booked_ms)
        return None if job is None else job()


__all__ = ["REPLICATIONS", "PredictionJob", "WaitPredictor", "hall_model", "hall_state",
           "local_midnight_ms"]

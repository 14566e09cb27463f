"""What the citizens' progress pages show, sent to the central as ``progress`` messages.

The Pi is never reachable from the internet: a ticket's QR opens a page on the
central (``progress.url``), and the central shows what the edge last told it.
:class:`ProgressReporter` builds that message (:class:`~firmware_protocols.
mqtt_messages.Progress`) from the live hall:

* each waiting ticket with the people ahead of it in the order the dispatcher
  calls them (:meth:`fastpath.dispatcher.Dispatcher.people_ahead_all`) and its
  remaining wait as the simulator predicts it (p50 and p90);
* the tickets at a window, and those that ended in the last half hour (办结,
  过号, cancelled), so an open page follows its ticket to the end;
* whether tickets are issued now, and what the hall says about it.

It publishes at most once a second while the queue changes, and at least once
a minute (a heartbeat the central uses to tell a live site from a silent one),
only while the uplink is connected: a ``progress`` is never queued behind an
outage, the next one replaces it.

The waits come from one forecast of every waiting ticket
(:meth:`edge.predict.WaitPredictor.ticket_waits_job`), run in a worker thread of
its own at most every ``progress.predict_seconds`` while the queue changes; in
between, each ticket's prediction counts down from when it was made. A ticket
issued since the last forecast shows the wait printed on it, counted down the
same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable

import structlog

from edge.clock import Clock
from edge.config import EdgeConfig
from edge.hall import Hall
from edge.predict import TicketWaits, WaitPredictor
from fastpath.types import TicketState
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.errors import LocalProtocolError

log = structlog.get_logger(__name__)

MIN_INTERVAL_S = 1.0  # between two messages while the queue changes
HEARTBEAT_S = 60.0  # a message at least this often, changed or not
ENDED_WINDOW_MS = 30 * 60_000  # ended tickets stay in the message this long
REPLICATIONS = 200  # per forecast of every waiting ticket
_ENDED = {TicketState.DONE: "done", TicketState.NO_SHOW: "no_show",
          TicketState.CANCELLED: "cancelled"}

Publisher = Callable[[mm.Progress], bool]
"""Hands a message to the uplink; False when it is not connected (nothing is kept)."""


class ProgressReporter:
    """Keeps the central's progress pages of one hall up to date (module docstring)."""

    def __init__(self, hall: Hall, clock: Clock, publish: Publisher, *,
                 predictor_factory: Callable[[EdgeConfig], WaitPredictor] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._hall = hall
        self._clock = clock
        self._publish = publish
        self._factory = predictor_factory or hall.predictor_factory
        self._monotonic = monotonic
        self._predictor: WaitPredictor | None = None
        self._waits: TicketWaits = {}
        self._waits_at = 0  # unix ms the waits were predicted at
        self._changed = True  # since the last message
        self._queue_changed = True  # since the last forecast
        self._sent_at = -HEARTBEAT_S
        self._predicted_at = -1e9
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None

    # -- inputs --------------------------------------------------------------

    def on_event(self, event: mm.Event) -> None:
        """A hall listener: anything may change a page."""
        self._changed = True
        if event.type.startswith(("ticket.", "window.", "day.", "config.applied")):
            self._queue_changed = True  # who waits, or which windows call them

    def refresh(self) -> None:
        """Send a fresh message soon (the uplink just connected)."""
        self._changed = True

    # -- the message ---------------------------------------------------------

    def snapshot(self) -> mm.Progress:
        """The hall as its progress pages show it now."""
        hall = self._hall
        dispatcher = hall.dispatcher
        now = self._clock.now_ms()
        ahead = dispatcher.people_ahead_all(now)
        waiting: list[mm.WaitingProgress] = []
        called: list[mm.CalledProgress] = []
        ended: list[tuple[int, mm.EndedProgress]] = []
        for ticket in dispatcher.tickets():
            state = ticket.state
            if state is TicketState.WAITING:
                p50, p90 = self._remaining(ticket.number, ticket.issued_ms, now)
                waiting.append(mm.WaitingProgress(
                    ticket=ticket.number, service=ticket.service_id,
                    ahead=ahead.get(ticket.number, 0), p50_s=p50, p90_s=p90,
                    requeued=ticket.requeued))
            elif state in (TicketState.CALLED, TicketState.SERVING) and ticket.window:
                called.append(mm.CalledProgress(ticket=ticket.number, service=ticket.service_id,
                                                window=ticket.window,
                                                serving=state is TicketState.SERVING))
            elif (state in _ENDED and ticket.finished_ms is not None
                  and now - ticket.finished_ms <= ENDED_WINDOW_MS):
                window = None if state is TicketState.CANCELLED else ticket.window
                ended.append((ticket.finished_ms, mm.EndedProgress(
                    ticket=ticket.number, outcome=_ENDED[state],  # type: ignore[arg-type]
                    window=window)))
        ended.sort(key=lambda item: item[0])
        if len(waiting) > mm.MAX_PROGRESS_WAITING:  # the message has a size: nearest first
            waiting.sort(key=lambda w: w.ahead)
            del waiting[mm.MAX_PROGRESS_WAITING:]
        status, notice = hall.issuing_status(now)
        return mm.Progress(
            site=hall.config.site.id, ts=now, clock_synced=self._clock.synced(), day=hall.day,
            day_seq=hall.day_seq, seq=hall.journal.last_seq, issuing=status, notice=notice,
            services={s.id: s.name_zh[:64] for s in hall.config.services},
            waiting=waiting, called=called[:mm.MAX_WINDOWS],
            ended=[e for _, e in ended[-mm.MAX_PROGRESS_ENDED:]])

    def _remaining(self, number: str, issued_ms: int, now: int) -> tuple[int | None, int | None]:
        """The remaining wait (s) of a waiting ticket: the last forecast counted down,
        or the wait printed on it; (None, None) without either."""
        forecast = self._waits.get(number)
        if forecast is not None:
            start, (p50_ms, p90_ms) = self._waits_at, forecast
        else:
            printed = self._hall.issued_wait(number)
            if printed is None:
                return None, None
            start, p50_ms, p90_ms = issued_ms, printed.p50_s * 1000, printed.p90_s * 1000
        elapsed = max(0, now - start)
        p50 = max(0, p50_ms - elapsed) // 1000
        return p50, max(p50, max(0, p90_ms - elapsed) // 1000)

    # -- the task ------------------------------------------------------------

    async def run(self, period_s: float = 0.5) -> None:
        """Forecast and publish until cancelled."""
        try:
            while True:
                await self.step()
                await asyncio.sleep(period_s)
        finally:
            if self._worker is not None:
                self._worker.shutdown(wait=False, cancel_futures=True)
                self._worker = None

    async def step(self) -> None:
        """One turn: a forecast when due, then a message when due."""
        now = self._monotonic()
        every = self._hall.config.progress.predict_seconds
        if self._queue_changed and now - self._predicted_at >= every:
            self._queue_changed = False
            self._predicted_at = now
            await self._forecast()
        if (self._changed and now - self._sent_at >= MIN_INTERVAL_S) or \
                now - self._sent_at >= HEARTBEAT_S:
            try:
                message = self.snapshot()
            except LocalProtocolError as exc:  # a bug: the pages stay as they were
                log.error("progress.invalid", error=str(exc))
                return
            if self._publish(message):
                self._changed = False
                self._sent_at = now

    async def _forecast(self) -> None:
        hall = self._hall
        if self._predictor is None or self._predictor.config is not hall.config:
            self._predictor = self._factory(hall.config)
        now = self._clock.now_ms()
        try:
            job = self._predictor.ticket_waits_job(hall.dispatcher, now, REPLICATIONS)
        except Exception as exc:  # advisory: the pages show the printed waits
            log.error("progress.forecast_failed", error=repr(exc))
            return
        if job is None:
            return
        if self._worker is None:  # its own thread: the kiosk's predictions never wait on it
            self._worker = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="progress")
        started = time.monotonic()
        try:
            waits = await asyncio.get_running_loop().run_in_executor(self._worker, job)
        except Exception as exc:
            log.error("progress.forecast_failed", error=repr(exc))
            return
        self._waits, self._waits_at = waits, now
        self._changed = True
        log.debug("progress.forecast", tickets=len(waits),
                  seconds=round(time.monotonic() - started, 3))


__all__ = ["ENDED_WINDOW_MS", "HEARTBEAT_S", "MIN_INTERVAL_S", "ProgressReporter", "Publisher"]

"""The predicted wait runs off the event loop: keypads and ``GET /status`` are served
while it simulates, and a ticket waits for it at most ``daemon.predict_budget_seconds``."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from structlog.testing import capture_logs

from edge.config import EdgeConfig, load_config
from edge.daemon import EdgeDaemon
from edge.devices.base import KeyPress, TicketButton, WindowKey
from edge.predict import PredictionJob, WaitPredictor
from fastpath.dispatcher import Dispatcher
from fastpath.predict import DEFAULT_HORIZON_MS
from fastpath.types import TicketClass
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import TIMED_SERVICES, free_port, http, site_toml, until


class Gate:
    """Holds every prediction in its worker thread until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.runs = 0
        self.done = 0
        self.threads: set[str] = set()


class GatedPredictor(WaitPredictor):
    """The real predictor, made slow on purpose: each job waits for the gate."""

    def __init__(self, config: EdgeConfig, gate: Gate) -> None:
        super().__init__(config)
        self.gate = gate

    def job(self, dispatcher: Dispatcher, service_id: str, klass: TicketClass,
            now_ms: int, booked_ms: int | None = None) -> PredictionJob | None:
        inner = super().job(dispatcher, service_id, klass, now_ms, booked_ms)
        assert inner is not None
        gate = self.gate

        def run() -> mm.WaitPrediction:
            gate.runs += 1
            gate.threads.add(threading.current_thread().name)
            gate.started.set()
            gate.release.wait(30)
            try:
                return inner()
            finally:
                gate.done += 1

        return run


@contextlib.asynccontextmanager
async def gated_daemon(tmp_path: Path, budget_s: float) -> AsyncIterator[tuple[EdgeDaemon, str,
                                                                              Gate]]:
    port = free_port()
    config_path = site_toml(tmp_path, http_port=port, services=TIMED_SERVICES,
                            extra=f"predict_budget_seconds = {budget_s}\n")
    gate = Gate()
    daemon = EdgeDaemon(config_path, install_signals=False,
                        predictor=lambda config: GatedPredictor(config, gate))
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), 30)
        yield daemon, f"http://127.0.0.1:{port}", gate
    finally:
        gate.release.set()  # let the worker thread finish before the daemon stops
        daemon.stop()
        await asyncio.wait_for(task, 15)


def test_keypad_and_status_are_served_while_a_prediction_runs(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with gated_daemon(tmp_path, budget_s=30) as (daemon, base, gate):
            hall = daemon.hall
            assert hall is not None
            daemon.inputs.put_nowait(TicketButton("shebao"))
            await asyncio.to_thread(gate.started.wait, 10)  # simulating, and held there

            # The loop is free: a keypad press is handled, the kiosk API answers.
            daemon.inputs.put_nowait(KeyPress(1, WindowKey.SIGN_IN, staff_id="zhang01"))
            await until(lambda: hall.staff_at(1) == "zhang01", "keypad sign-in")
            status, body = await asyncio.to_thread(http, "GET", f"{base}/status")
            assert (status, body["issued"]) == (200, 0)  # the ticket waits for its wait
            status, body = await asyncio.to_thread(http, "POST", f"{base}/windows/2/sign_in",
                                                   {"staff": "li02"})
            assert status == 200
            assert [name.startswith("predict") for name in gate.threads] == [True]

            gate.release.set()
            await until(lambda: len(hall.dispatcher.tickets()) == 1, "button ticket")
            issued = [e.body for e in hall.journal.events()
                      if isinstance(e.body, mm.TicketIssued)]
            assert issued[0].ticket == "A001"
            assert issued[0].channel == "button"
            assert issued[0].wait is not None  # the prediction, journaled with the ticket

    asyncio.run(scenario())


def test_a_late_prediction_does_not_hold_the_ticket(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with gated_daemon(tmp_path, budget_s=0.3) as (daemon, base, gate):
            hall = daemon.hall
            assert hall is not None
            with capture_logs() as logs:
                first = await asyncio.to_thread(http, "POST", f"{base}/tickets",
                                                {"service": "shebao", "print": True})
                second = await asyncio.to_thread(http, "POST", f"{base}/tickets",
                                                 {"service": "huji"})
            for (status, body), number in ((first, "A001"), (second, "B001")):
                assert status == 201, body
                assert body["number"] == number
                assert body["wait"] is None  # past the budget: people ahead only
            assert first[1]["printed"] is False  # no printer here: shown on the screen
            late = [e for e in logs if e["event"] == "wait.predict_late"]
            assert [e["service"] for e in late] == ["shebao", "huji"]
            events = [e.body for e in hall.journal.events()
                      if isinstance(e.body, mm.TicketIssued)]
            assert [(b.ticket, b.wait) for b in events] == [("A001", None), ("B001", None)]
            # The second job queued behind the held one and was dropped, not run late:
            # it would start the moment the first one is done.
            gate.release.set()
            await until(lambda: gate.done == 1, "the held prediction finishes")
            await asyncio.sleep(0.2)
            assert gate.runs == 1

    asyncio.run(scenario())


def test_a_hall_open_around_the_clock_does_not_cut_late_tickets_off_at_midnight(
        tmp_path: Path) -> None:
    """At 23:40 with five ahead the windows serve on past midnight (until the day's
    reset): the prediction is a wait, not "over 4 hours" (the horizon)."""
    config = load_config(site_toml(tmp_path, services=TIMED_SERVICES), check_files=False)
    predictor = WaitPredictor(config, replications=200)
    late = int(datetime(2026, 12, 7, 23, 40, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
               * 1000)
    dispatcher = Dispatcher([s.to_service() for s in config.services],
                            [w.to_profile() for w in config.windows], config.policy)
    dispatcher.sign_in(1)
    for n in range(5):
        dispatcher.issue("shebao", late - 60_000 + n)
    prediction = predictor.predict(dispatcher, "shebao", TicketClass.NORMAL, late)
    assert prediction is not None
    assert prediction.p90_s * 1000 < DEFAULT_HORIZON_MS, prediction
    assert prediction.p50_s > 0

"""The edge daemon: one hall on one Raspberry Pi, online or not.

:class:`EdgeDaemon` wires the hall state (:mod:`edge.hall` over the journal),
the devices (through the protocols of :mod:`edge.devices.base`), the MQTT
uplink and the kiosk HTTP API. Every long-running part is a named task under
a :class:`Supervisor` that logs and restarts a task that dies (never silently
lost). Operations:

* ``SIGHUP`` reloads the config file: an invalid file, or one the live queue
  cannot take (a service removed while it has tickets), is refused, logged
  and journaled as ``config.rejected``; the old config stays and the queue
  state survives either way. A good one is journaled as ``config.applied``,
  then the parts whose settings changed restart in place: the MQTT uplink
  (clean ``offline``, new session on the new broker), the HTTP API (new
  address), each device driver (old port closed, new one opened). A part that
  cannot start is logged (a device also as a ``device.status`` offline event)
  and the rest keeps serving. Only ``paths.journal`` waits for a restart.
* An invalid file at start: the daemon runs the config last applied in the
  journal and journals ``config.rejected``, so a bad push never leaves the
  hall dark (with no journal yet, it refuses to start).
* ``SIGTERM``/``SIGINT`` stop cleanly (retained state ``offline``).
* Outside the issuing hours (``hours.open`` .. ``hours.last_ticket``) a ticket button
  prints nothing and the hall screen says 尚未开始取号 08:30 / 今日取号已结束 for a
  minute; the kiosk API answers 409 ``closed``; windows keep calling who waits.
* A ticket's predicted wait (:mod:`edge.predict`) is simulated in one worker
  thread over a snapshot taken on the event loop, so keypads, screens and the
  kiosk API carry on meanwhile; the ticket waits for it at most
  ``daemon.predict_budget_seconds`` and is otherwise issued and printed without
  a wait (``wait.predict_late``). The Cython engine simulates with the GIL
  released; the pure one gives it up every few milliseconds.
* At each day reset (and at start) the journal drops the days older than
  ``paths.journal_retention_days`` that the central has acknowledged
  (:meth:`edge.journal.Journal.prune`).
* systemd ``Type=notify``: ``READY=1`` once serving, and ``WATCHDOG=1`` from
  the event loop only while the device-input, timer and uplink tasks have
  checked in, and the terminal bus has kept polling (its ``polls`` counter), within
  ``daemon.watchdog_seconds``: a hung task cannot hide behind a healthy loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import math
import os
import signal
import socket
import time
import tomllib
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from edge.clock import Clock, SystemClock
from edge.config import (
    DevicesConfig,
    EdgeConfig,
    HttpConfig,
    MqttConfig,
    load_config,
    parse_config,
)
from edge.devices.base import (
    Announcer,
    Device,
    DeviceHealth,
    DeviceInput,
    DeviceKind,
    DeviceStatusChanged,
    GpioPanel,
    HallCounts,
    HealthState,
    HelpButton,
    IdCardRead,
    InputMark,
    InputQueue,
    KeyPress,
    Rating,
    ScreenBoard,
    TerminalBus,
    TicketButton,
    TicketPrint,
    TicketPrinter,
    WindowKey,
)
from edge.devices.ticket import TicketContent
from edge.errors import CommandRejected, ConfigInvalid, JournalError
from edge.hall import Hall, IssuedTicket, open_hall
from edge.http_api import HttpApi
from edge.id_card_kiosk import IdCardKiosk, kiosk_for
from edge.journal import Journal
from edge.predict import PredictionJob, WaitPredictor
from edge.uplink import CommandFailed, Uplink, host_stats
from fastpath.types import TicketClass, TicketState, WindowState
from firmware_protocols import mqtt_messages as mm

log = structlog.get_logger(__name__)

SOFTWARE_VERSION = "onedoor-0.1.0"
TICK_S = 1.0
HELP_BUZZ_MS = 800
UNPRINTED_NOTICE_S = 600
CLOSED_NOTICE_S = 60  # 今日取号已结束 on the hall screen after a ticket button press
WAIT_FRESH_MS = 10 * 60_000  # telemetry shows a service's last prediction this long
NOT_STARTED = "not started"  # the drivers' health detail before their first check
# Test fault injection (tests/edge/test_crash_terminals.py), never set in service: with
# this variable set the daemon dies (os._exit) right after a window-terminal input's
# effect is journaled, before the terminal can be acknowledged.
TEST_FAULT_EXIT_AFTER_INPUT_ENV = "ONEDOOR_TEST_FAULT_EXIT_AFTER_TERMINAL_INPUT"
RATING_SECONDS = 30  # how long the rating pad waits for the citizen after 办结


# --------------------------------------------------------------------------- systemd


def sd_notify(message: str, *, environ: dict[str, str] | None = None) -> bool:
    """Send ``message`` to systemd over ``$NOTIFY_SOCKET``; False when not under systemd."""
    address = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError as exc:
            log.warning("systemd.notify_failed", error=str(exc))
            return False
    return True


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Half the ``WATCHDOG_USEC`` systemd asks for (its own advice), or None."""
    env = environ if environ is not None else os.environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


class Heartbeats:
    """When each task last checked in, on the monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()  # a task gets one full period to check in the first time
        self._last: dict[str, float] = {}

    def beat(self, name: str) -> None:
        self._last[name] = self._clock()

    def beater(self, name: str) -> Callable[[], None]:
        return lambda: self.beat(name)

    def stale(self, names: list[str], max_age_s: float) -> list[str]:
        now = self._clock()
        return [n for n in names if now - self._last.get(n, self._started) > max_age_s]


# --------------------------------------------------------------------------- supervisor


@dataclass(slots=True)
class _Supervised:
    name: str
    factory: Callable[[], Awaitable[None]]
    restarts: int = 0
    task: asyncio.Task[None] | None = None


class Supervisor:
    """Runs named tasks; one that returns or raises is logged and restarted after a pause."""

    def __init__(self, restart_delay_s: float = 1.0, max_delay_s: float = 30.0) -> None:
        self.restart_delay_s = restart_delay_s
        self.max_delay_s = max_delay_s
        self._tasks: dict[str, _Supervised] = {}
        self._group: asyncio.TaskGroup | None = None

    @property
    def restarts(self) -> dict[str, int]:
        return {name: entry.restarts for name, entry in self._tasks.items()}

    def running(self) -> list[str]:
        return [name for name, entry in self._tasks.items()
                if entry.task is not None and not entry.task.done()]

    def start(self, group: asyncio.TaskGroup, name: str,
              factory: Callable[[], Awaitable[None]]) -> None:
        entry = _Supervised(name, factory)
        self._tasks[name] = entry
        entry.task = group.create_task(self._keep(entry), name=name)

    async def _keep(self, entry: _Supervised) -> None:
        while True:
            try:
                await entry.factory()
                log.error("task.exited", task=entry.name, restarts=entry.restarts)
            except asyncio.CancelledError:
                raise
            except Exception:  # a device or uplink bug must not take the hall down
                log.exception("task.crashed", task=entry.name, restarts=entry.restarts)
            entry.restarts += 1
            await asyncio.sleep(min(self.max_delay_s,
                                    self.restart_delay_s * 2 ** min(entry.restarts - 1, 10)))
            log.info("task.restarting", task=entry.name, restarts=entry.restarts)

    def cancel_all(self) -> None:
        for entry in self._tasks.values():
            if entry.task is not None:
                entry.task.cancel()

    async def stop(self, name: str) -> None:
        """Cancel the task ``name`` and wait until it has ended (a reload restarts it)."""
        entry = self._tasks.pop(name, None)
        if entry is None or entry.task is None:
            return
        entry.task.cancel()
        await asyncio.wait({entry.task})  # never raises, not even our own cancellation


# --------------------------------------------------------------------------- devices


@dataclass(slots=True)
class DeviceSet:
    """The hall's drivers; any may be absent (a village station has no LED screens)."""

    printer: TicketPrinter | None = None
    screens: ScreenBoard | None = None
    terminals: TerminalBus | None = None
    announcer: Announcer | None = None
    gpio: GpioPanel | None = None
    others: list[Device] = field(default_factory=list)

    def named(self) -> list[tuple[str, Device]]:
        found: list[tuple[str, Device | None]] = [
            ("printer", self.printer), ("screens", self.screens), ("terminals", self.terminals),
            ("announcer", self.announcer), ("gpio", self.gpio),
            *((f"device{i}", d) for i, d in enumerate(self.others)),
        ]
        return [(name, device) for name, device in found if device is not None]


DeviceFactory = Callable[[EdgeConfig, InputQueue], DeviceSet]

_MQTT_KIND: dict[DeviceKind, mm.DeviceKind] = {
    DeviceKind.PRINTER: "printer", DeviceKind.SCREEN: "led", DeviceKind.TERMINAL: "terminal",
    DeviceKind.GPIO: "gpio", DeviceKind.VOICE: "audio", DeviceKind.ID_CARD: "id_card",
}
_MQTT_STATUS: dict[HealthState, mm.DeviceHealth] = {
    HealthState.OK: "ok", HealthState.DEGRADED: "degraded", HealthState.OFFLINE: "offline",
}


# DeviceSet slot -> the config section its driver is built from (edge.devices_factory),
# and its kind, for reporting a driver that cannot be built on reload.
_DEVICE_SECTIONS: dict[str, str] = {"printer": "printer", "screens": "screens",
                                    "terminals": "terminals", "announcer": "audio",
                                    "gpio": "gpio"}
_DEVICE_KINDS: dict[str, DeviceKind] = {
    "printer": DeviceKind.PRINTER, "screens": DeviceKind.SCREEN,
    "terminals": DeviceKind.TERMINAL, "announcer": DeviceKind.VOICE, "gpio": DeviceKind.GPIO}


def device_detail_code(detail: str) -> str | None:
    """The contract's detail code from a driver's detail ("缺纸 paper out" -> "paper_out")."""
    words = "".join(c.lower() if c.isascii() and c.isalnum() else " " for c in detail).split()
    while words and not words[0][0].isalpha():
        words.pop(0)
    code = "_".join(words)[:32].rstrip("_")
    return code or None


def device_status_body(health: DeviceHealth) -> mm.DeviceStatus:
    return mm.DeviceStatus(device=health.device_id, kind=_MQTT_KIND[health.kind],
                           status=_MQTT_STATUS[health.state],
                           detail=device_detail_code(health.detail))


# --------------------------------------------------------------------------- the daemon


def last_good_config(config_path: Path) -> EdgeConfig | None:
    """The config last applied in the journal the (invalid) file at ``config_path`` names.

    Only ``site.id`` and ``paths.journal`` need to be readable in the file.
    """
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
        site_id, journal_path = raw["site"]["id"], raw["paths"]["journal"]
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return None
    if not isinstance(site_id, str) or not isinstance(journal_path, str):
        return None
    path = config_path.resolve().parent / journal_path
    try:
        with Journal(path, site_id, read_only=True) as journal:
            stored = journal.config_at(journal.last_seq)
    except JournalError:
        return None
    if stored is None:
        return None
    try:
        return parse_config(stored.text, source=f"{path} (last good)",
                            base_dir=config_path.resolve().parent)
    except ConfigInvalid:
        return None



class EdgeDaemon:
    """One hall. ``await daemon.run()`` until :meth:`stop` or SIGTERM."""

    def __init__(
        self,
        config_path: str | Path,
        *,
        clock: Clock | None = None,
        device_factory: DeviceFactory | None = None,
        install_signals: bool = True,
        predictor: Callable[[EdgeConfig], WaitPredictor] | None = None,
    ) -> None:
        self.config_path = Path(config_path)
        self.clock: Clock = clock or SystemClock()
        self.device_factory = device_factory
        self.predictor = predictor  # a WaitPredictor factory other than the default (tests)
        self.install_signals = install_signals
        self._startup_rejection: ConfigInvalid | None = None
        try:
            self.config: EdgeConfig = load_config(self.config_path)
        except ConfigInvalid as exc:
            # The last good config in the journal keeps the hall open (DESIGN.md
            # "the last good one stays in force"); with none, there is nothing to run.
            fallback = last_good_config(self.config_path)
            if fallback is None:
                raise
            log.error("config.invalid_at_start", path=str(self.config_path),
                      errors=list(exc.errors), running=fallback.version)
            self.config = fallback
            self._startup_rejection = exc
        self.boot_id = uuid.uuid4().hex[:16]
        self.heartbeats = Heartbeats()
        self.supervisor = Supervisor()
        self.inputs: InputQueue = asyncio.Queue()
        self.devices = DeviceSet()
        self.hall: Hall | None = None
        self.uplink: Uplink | None = None
        self.http: HttpApi | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._notices: dict[str, tuple[str, float]] = {}  # key -> (text, until monotonic)
        self._device_health: dict[str, DeviceHealth] = {}
        self._issued_waits: dict[str, mm.WaitPrediction] = {}  # today's, for printing
        # The latest prediction per service and when it was made, for telemetry.
        self._service_waits: dict[str, tuple[mm.WaitPrediction, int]] = {}
        self._bus_progress: dict[str, tuple[int, float]] = {}  # device -> (polls, changed at)
        # One worker thread: a prediction never blocks the loop, two never run at once.
        self._predictions = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="predict")
        self._group: asyncio.TaskGroup | None = None
        self._spawned: set[asyncio.Task[None]] = set()  # ticket button presses, reloads
        self._parts_config: EdgeConfig | None = None  # what uplink, http, devices run with
        self._restarting = asyncio.Lock()
        self.kiosk: IdCardKiosk | None = None  # [devices.id_card]: tickets by ID card

    # -- lifecycle -----------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        hall = open_hall(self.config, self.clock)
        self.hall = hall
        if self.predictor is not None:
            hall.predictor_factory = self.predictor
        self.prune_journal()  # also when the day reset came while the Pi was off
        self.config = hall.config
        self.kiosk = kiosk_for(self.config)
        if self._startup_rejection is not None:
            hall.reject_config(self._version_in_file(), list(self._startup_rejection.errors))
        try:
            if self.device_factory is not None:
                self.devices = self.device_factory(self.config, self.inputs)
                self._restore_inputs(self.devices.terminals)
            hall.subscribe(self._on_event)
            if self.config.mqtt is not None:
                self.uplink = self._make_uplink(self.config.mqtt)
            if self.config.http is not None:
                self.http = self._make_http(self.config.http)
            self._parts_config = self.config
            if self.install_signals:
                loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
                loop.add_signal_handler(signal.SIGTERM, self.stop)
                loop.add_signal_handler(signal.SIGINT, self.stop)
            async with asyncio.TaskGroup() as group:
                self._group = group
                start = self.supervisor.start
                start(group, "inputs", self._inputs_task)
                start(group, "timers", self._timers_task)
                start(group, "watchdog", self._watchdog_task)
                if self.uplink is not None:
                    start(group, "uplink", self.uplink.run)
                    start(group, "telemetry", self._telemetry_task)
                if self.http is not None:
                    start(group, "http", self.http.run)
                for name, device in self.devices.named():
                    start(group, f"device:{name}", device.run)
                self._refresh_outputs()
                await self._wait_http_ready()
                sd_notify(f"READY=1\nSTATUS=serving {self.config.site.id}")
                self.ready.set()
                log.info("daemon.ready", site=self.config.site.id, boot_id=self.boot_id,
                         http_port=self.http.port if self.http else None)
                await self._stop.wait()
                sd_notify("STOPPING=1")
                log.info("daemon.stopping")
                self.supervisor.cancel_all()
                for task in self._spawned:
                    task.cancel()
        finally:
            self._group = None
            self._predictions.shutdown(wait=False, cancel_futures=True)
            if self.install_signals:
                for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            hall.journal.close()
            for _, device in self.devices.named():
                close = getattr(device, "close", None)
                if callable(close):
                    with contextlib.suppress(Exception):
                        close()
            log.info("daemon.stopped")

    def _make_uplink(self, mqtt: MqttConfig) -> Uplink:
        hall = self.hall
        assert hall is not None
        return Uplink(self.config.site.id, mqtt, hall.journal, self.clock,
                      software=SOFTWARE_VERSION, boot_id=self.boot_id,
                      config_version=lambda: hall.config.version, commands=self._command,
                      beat=self.heartbeats.beater("uplink"))

    def _make_http(self, http: HttpConfig) -> HttpApi:
        assert self.hall is not None
        return HttpApi(self.hall, status=self.status, on_issued=self._after_issue,
                       host=http.host, port=http.port, window_api=http.window_api,
                       beat=self.heartbeats.beater("http"), issue=self.issue_ticket)

    async def _wait_http_ready(self) -> None:
        if self.http is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self.http.listening.wait()

    # -- tasks ---------------------------------------------------------------

    async def _inputs_task(self) -> None:
        while True:
            self.heartbeats.beat("inputs")
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can drop a dequeued item
                # or swallow a cancellation when they race with the timeout.
                async with asyncio.timeout(TICK_S):
                    item = await self.inputs.get()
            except TimeoutError:
                continue
            try:
                await self._handle_input(item)
            except CommandRejected as exc:
                log.warning("input.rejected", input=repr(item), reason=str(exc))

    async def _timers_task(self) -> None:
        assert self.hall is not None
        while True:
            self.heartbeats.beat("timers")
            self.hall.tick()
            self._expire_notices()
            await asyncio.sleep(TICK_S)

    async def _telemetry_task(self) -> None:
        assert self.hall is not None
        while True:
            self.heartbeats.beat("telemetry")
            telemetry = self.telemetry()
            self.hall.journal.push_telemetry(mm.encode(telemetry))
            dropped = self.hall.journal.take_dropped()
            if dropped:
                self.hall.report(mm.OutboxDropped(count=dropped))
            for first, last in self.hall.journal.take_lost():
                self.hall.report(mm.JournalLost(first_seq=first, last_seq=last))
            if self.uplink is not None:
                self.uplink.wake()
            await asyncio.sleep(self.config.daemon.telemetry_seconds)

    def _watched(self) -> list[str]:
        names = ["inputs", "timers"]
        if self.uplink is not None:
            names.append("uplink")
        return names

    def _stalled_buses(self, max_age: float) -> list[str]:
        """Bus drivers that count their polls (``polls``) must keep counting (a hung task)."""
        now = time.monotonic()
        stalled = []
        for name, device in self.devices.named():
            polls = getattr(device, "polls", None)
            if not isinstance(polls, int):
                continue
            if device.health().state is HealthState.OFFLINE:
                # Port gone or every terminal dead: reported as a device event; restarting
                # the daemon would not bring the adapter back.
                self._bus_progress[name] = (polls, now)
                continue
            last_polls, since = self._bus_progress.get(name, (-1, now))
            if polls != last_polls:
                self._bus_progress[name] = (polls, now)
            elif now - since > max_age:
                stalled.append(name)
        return stalled

    async def _watchdog_task(self) -> None:
        interval = watchdog_interval()
        await self.ready.wait()  # systemd expects READY=1 before the first WATCHDOG=1
        while True:
            max_age = self.config.daemon.watchdog_seconds
            stale = self.heartbeats.stale(self._watched(), max_age)
            stale += self._stalled_buses(max_age)
            if stale:
                log.error("watchdog.withheld", stale=stale)
            elif interval is not None:
                sd_notify("WATCHDOG=1")
            await asyncio.sleep(interval if interval is not None else 5.0)

    # -- device inputs -------------------------------------------------------

    async def _handle_input(self, item: DeviceInput) -> None:
        hall = self.hall
        assert hall is not None
        mark = getattr(item, "mark", None)
        if mark is not None and hall.journal.was_handled(mark):  # delivered twice: once only
            log.info("terminal.input_repeated", device=mark.device, address=mark.address,
                     sequence=mark.sequence)
            self._input_handled(mark)
            return
        match item:
            case KeyPress():
                try:
                    with hall.journal.handling(item.mark):
                        self._key(item)
                finally:
                    self._input_handled(item.mark)
            case Rating():
                try:
                    with hall.journal.handling(item.mark):
                        hall.rate(item.window, item.value)
                finally:
                    self._input_handled(item.mark)
            case TicketButton():
                closed = hall.closed_notice(self.clock.now_ms())
                if closed is not None:  # nothing to print: say so on the hall screen
                    log.info("ticket.closed", service=item.service_id, notice=closed)
                    self._notice("closed", closed, CLOSED_NOTICE_S)
                    return
                # Predicting and printing take a while: keypads must not wait behind them.
                self._spawn_ticket(item)
            case IdCardRead() if self.kiosk is not None:
                closed = hall.closed_notice(self.clock.now_ms())
                if closed is not None:
                    self._notice("closed", closed, CLOSED_NOTICE_S)
                    return
                self._spawn(self._card_ticket(item, self.kiosk), "ticket:id_card")
            case HelpButton():
                if item.long_press:
                    hall.help_long_press(item.button_id)
                else:
                    hall.help_request(item.button_id)
            case DeviceStatusChanged():
                self._device_health[item.health.device_id] = item.health
                hall.device_status(device_status_body(item.health))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """A short task in the daemon's task group; it must catch its own errors."""
        if self._group is None:
            coro.close()
            return
        task = self._group.create_task(coro, name=name)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def _spawn_ticket(self, press: TicketButton) -> None:
        self._spawn(self._button_ticket(press), f"ticket:{press.service_id}")

    async def _button_ticket(self, press: TicketButton) -> None:
        try:
            issued = await self.issue_ticket(press.service_id, press.klass, "button", None)
            await self._after_issue(issued, True)
        except CommandRejected as exc:
            log.warning("input.rejected", input=repr(press), reason=str(exc))
        except Exception:  # in the task group: a failure must not take the daemon down
            log.exception("ticket.button_failed", input=repr(press))

    async def _card_ticket(self, read: IdCardRead, kiosk: IdCardKiosk) -> None:
        """A card read at the kiosk: edge.id_card_kiosk decides, issuing and printing are ours."""
        hall = self.hall
        assert hall is not None

        async def issue(service_id: str, klass: TicketClass) -> str:
            issued = await self.issue_ticket(service_id, klass, "kiosk", None)
            await self._after_issue(issued, True)
            return issued.ticket.number

        try:
            await kiosk.take_ticket(read, hall.day, date.fromisoformat(hall.day), issue,
                                    lambda refusal: self._notice("id_card", refusal, 30))
        except CommandRejected as exc:
            log.warning("input.rejected", input="id_card", reason=str(exc))
        except Exception:  # in the task group: a failure must not take the daemon down
            log.exception("ticket.id_card_failed")

    async def issue_ticket(self, service_id: str, klass: TicketClass, channel: mm.Channel,
                           booked_ms: int | None) -> IssuedTicket:
        """Take a ticket with its predicted wait, simulated off the event loop.

        The request is checked and the hall snapshotted on the loop; the simulation
        runs in the one worker thread for at most ``daemon.predict_budget_seconds``.
        Past that the ticket goes without a wait (people ahead only), logged as
        ``wait.predict_late``. The ticket is journaled before anyone is told, as ever.
        """
        hall = self.hall
        assert hall is not None
        job = hall.prediction_job(service_id, klass, booked_ms=booked_ms)
        wait = None if job is None else await self._predict(job, service_id)
        return hall.issue(service_id, klass, channel=channel, booked_ms=booked_ms, wait=wait)

    async def _predict(self, job: PredictionJob, service_id: str) -> mm.WaitPrediction | None:
        loop = asyncio.get_running_loop()
        budget = self.config.daemon.predict_budget_seconds
        started = time.monotonic()
        try:
            async with asyncio.timeout(budget):
                # On timeout the future is cancelled: a job still queued never runs; one
                # already running finishes in its thread and is dropped.
                return await loop.run_in_executor(self._predictions, job)
        except TimeoutError:
            log.warning("wait.predict_late", service=service_id, budget_s=budget,
                        detail="issued without a predicted wait")
        except Exception as exc:
            log.error("wait.predict_failed", service=service_id, error=repr(exc),
                      seconds=round(time.monotonic() - started, 3))
        return None

    def _restore_inputs(self, bus: Device | None) -> None:
        """A terminal bus starts from the inputs already handled (exactly once over a
        crash or a reload, see edge.journal)."""
        restore_inputs = getattr(bus, "restore_inputs", None)
        if restore_inputs is not None:
            assert self.hall is not None
            restore_inputs(self.hall.journal.input_marks())

    def _input_handled(self, mark: InputMark | None) -> None:
        """A terminal input's effect is journaled: now its terminal may be acknowledged."""
        if mark is None:
            return
        if os.environ.get(TEST_FAULT_EXIT_AFTER_INPUT_ENV) == "1":
            log.warning("test_fault.exit_after_input", mark=repr(mark))
            os._exit(86)
        input_handled = getattr(self.devices.terminals, "input_handled", None)
        if input_handled is not None:
            input_handled(mark)

    def _key(self, press: KeyPress) -> None:
        hall = self.hall
        assert hall is not None
        window = press.window
        match press.key:
            case WindowKey.NEXT:
                if hall.call_next(window) is None:
                    self._show_window(window, "无人等候")
            case WindowKey.RECALL:
                hall.recall(window)
            case WindowKey.TRANSFER:
                hall.transfer(window, self._service_from_keypad(press.to_service))
            case WindowKey.NO_SHOW:
                hall.no_show(window)
            case WindowKey.PAUSE:
                hall.pause(window)
            case WindowKey.RESUME:
                hall.resume(window)
            case WindowKey.FINISH:
                hall.finish(window)
            case WindowKey.SIGN_IN:
                hall.sign_in(window, press.staff_id)
            case WindowKey.SIGN_OUT:
                hall.sign_out(window)
            case WindowKey.HELP_ACK:
                hall.help_ack_from_window(window)

    def _service_from_keypad(self, typed: str | None) -> str | None:
        """Staff type a service id or its position in the config (1-based)."""
        if typed is None:
            return None
        services = self.config.services
        if typed.isdigit() and 1 <= int(typed) <= len(services):
            return services[int(typed) - 1].id
        return typed

    # -- outputs -------------------------------------------------------------

    def _on_event(self, event: mm.Event) -> None:
        """After each durable event: devices, screens, uplink."""
        body = event.body
        devices = self.devices
        match body:
            case mm.TicketCalled() | mm.TicketRecalled():
                self._show_window(body.window, body.ticket)
                by_name = self.kiosk.spoken_call(body.ticket, body.window) if self.kiosk else None
                speak = getattr(devices.announcer, "announce_text", None)
                if by_name is not None and speak is not None:  # call by name: 请张女士 ...
                    self._safely("announce", speak, by_name)
                elif devices.announcer is not None:
                    self._safely("announce", devices.announcer.announce, body.ticket,
                                 body.window)
            case mm.TicketDone():
                self._show_window(body.window, "")
                request_rating = getattr(devices.terminals, "request_rating", None)
                if request_rating is not None and self._has_terminal(body.window):
                    self._safely("rating_request", request_rating, body.window, RATING_SECONDS)
            case mm.TicketNoShow() | mm.TicketTransferred():
                self._show_window(body.window, "")
            case mm.WindowPaused():
                self._show_window(body.window, "暂停")
            case mm.WindowResumed() | mm.WindowSignedIn():
                self._show_window(body.window, "")
            case mm.WindowSignedOut():
                self._show_window(body.window, "暂停服务")
            case mm.HelpRequested():
                self._set_led(f"help.{body.button}", True)
                if devices.gpio is not None:
                    self._safely("buzz", devices.gpio.buzz, HELP_BUZZ_MS)
                self._notice(f"help:{body.button}", f"呼叫帮办 {body.location}", None)
            case mm.HelpEscalated():
                if devices.gpio is not None:
                    self._safely("buzz", devices.gpio.buzz, HELP_BUZZ_MS * 2)
            case mm.HelpResolved():
                self._set_led(f"help.{body.button}", False)
                self._notices.pop(f"help:{body.button}", None)
            case mm.DeviceStatus() if body.kind == "printer":
                self._set_led("paper", body.status != "ok")
            case mm.DayReset():
                self._notices.clear()
                self._issued_waits.clear()
                self._service_waits.clear()
                self.prune_journal()
            case _:
                pass
        if isinstance(body, mm.TicketCalled | mm.TicketRecalled | mm.TicketDone | mm.TicketNoShow
                      | mm.HelpRequested | mm.HelpResolved | mm.DayReset | mm.TicketIssued):
            self._refresh_hall_screen()
        if self.uplink is not None:
            self.uplink.wake()

    def prune_journal(self) -> int:
        """Drop acknowledged days older than ``paths.journal_retention_days``."""
        hall = self.hall
        if hall is None or not hall.day:
            return 0
        keep = self.config.paths.journal_retention_days
        before = (date.fromisoformat(hall.day) - timedelta(days=keep)).isoformat()
        try:
            return hall.journal.prune(before)
        except JournalError as exc:  # housekeeping: the hall carries on
            log.error("journal.prune_failed", error=str(exc))
            return 0

    def _safely(self, what: str, call: Callable[..., object], *args: object) -> None:
        """Device output must never undo or block a journaled event."""
        try:
            call(*args)
        except Exception as exc:
            log.error("device.output_failed", output=what, error=repr(exc))

    def _show_window(self, window: int, text: str) -> None:
        config_window = next((w for w in self.config.windows if w.number == window), None)
        if self.devices.screens is not None and config_window and config_window.screen is not None:
            self._safely("screen", self.devices.screens.show_window, window, text)
        if (self.devices.terminals is not None and config_window
                and config_window.terminal is not None):
            self._safely("terminal", self.devices.terminals.set_window_text, window, text)

    def _has_terminal(self, window: int) -> bool:
        return any(w.number == window and w.terminal is not None for w in self.config.windows)

    def _set_led(self, name: str, on: bool) -> None:
        gpio = self.config.devices.gpio
        known = gpio is not None and (name in gpio.leds or any(
            f"help.{b.id}" == name and b.led_pin is not None for b in gpio.help_buttons))
        if self.devices.gpio is not None and known:
            self._safely("led", self.devices.gpio.set_led, name, on)

    def _notice(self, key: str, text: str, seconds: float | None) -> None:
        until = math.inf if seconds is None else time.monotonic() + seconds
        self._notices[key] = (text, until)
        self._refresh_hall_screen()

    def _expire_notices(self) -> None:
        now = time.monotonic()
        expired = [key for key, (_, until) in self._notices.items() if until <= now]
        for key in expired:
            del self._notices[key]
        if expired:
            self._refresh_hall_screen()

    def _refresh_hall_screen(self) -> None:
        if self.devices.screens is None or self.hall is None:
            return
        called = self.kiosk.called_as if self.kiosk is not None else str
        lines = [f"请{called(t)}号到{w}号窗口" for t, w in reversed(self.hall.recent_calls())]
        cases, done = self.hall.counts()
        notices = [text for text, _ in self._notices.values()]
        self._safely("hall_screen", self.devices.screens.show_hall, lines,
                     HallCounts(cases, done), notices)

    def _refresh_outputs(self) -> None:
        """After a (re)start: every window bar shows what the journal says it holds."""
        assert self.hall is not None
        for status in self.hall.dispatcher.windows():
            text = status.current or ("暂停" if status.state is WindowState.PAUSED else "")
            self._show_window(status.number, text)
        for request in self.hall.open_help():
            self._set_led(f"help.{request.button}", True)
            self._notices[f"help:{request.button}"] = (f"呼叫帮办 {request.location}", math.inf)
        self._refresh_hall_screen()

    def ticket_print(self, issued_number: str) -> TicketPrint:
        """What the printer gets for a ticket (also used by ``reprint``)."""
        hall = self.hall
        assert hall is not None
        ticket = hall.dispatcher.ticket(issued_number)
        service = hall.config.service(ticket.service_id)
        ahead = hall.dispatcher.people_ahead(ticket.number)
        event_wait = self._issued_waits.get(ticket.number)
        content = TicketContent(
            hall_name=hall.config.site.name, service_name=service.name_zh,
            ticket_number=ticket.number, people_ahead=ahead,
            wait_p50_minutes=None if event_wait is None else math.ceil(event_wait.p50_s / 60),
            wait_p90_minutes=None if event_wait is None else math.ceil(event_wait.p90_s / 60),
            issued_at=datetime.fromtimestamp(ticket.issued_ms / 1000, hall.config.site.tz),
            qr_payload=f"{hall.config.site.id}/{hall.day}/{ticket.number}",
            footer_lines=("请留意叫号，过号请重新取号",),
        )
        return TicketPrint(content, large_print=ticket.klass is TicketClass.PRIORITY)

    async def _after_issue(self, issued: IssuedTicket, print_it: bool) -> bool:
        """Print (if asked and a printer exists); an unprinted ticket is shown on the screen."""
        if issued.wait is not None:
            self._issued_waits[issued.ticket.number] = issued.wait
            self._service_waits[issued.ticket.service_id] = (issued.wait,
                                                             issued.ticket.issued_ms)
        if not print_it:
            return False
        printed = False
        if self.devices.printer is not None:
            try:
                printed = await self.devices.printer.print_ticket(
                    self.ticket_print(issued.ticket.number))
            except Exception as exc:
                log.error("printer.failed", ticket=issued.ticket.number, error=repr(exc))
        if not printed:
            log.warning("ticket.unprinted", ticket=issued.ticket.number)
            self._notice(f"unprinted:{issued.ticket.number}",
                         f"{issued.ticket.number} 号 取号成功 请记住号码", UNPRINTED_NOTICE_S)
        return printed

    # -- reload --------------------------------------------------------------

    def _reload_soon(self) -> None:
        log.info("daemon.sighup")
        self.reload()

    def reload(self, expected_version: str | None = None) -> mm.Event:
        """Reload the config file; returns the config.applied or config.rejected event.

        Services, windows, policy, hours and the daemon settings apply at once;
        changed ``mqtt``, ``http`` and ``devices`` sections (and ``paths.clips``)
        restart just those parts in the background (:meth:`_restart_parts`).
        ``paths.journal`` is the exception: the open journal holds the queue, so
        moving it is logged as ``config.restart_needed`` and waits for a restart.
        """
        hall = self.hall
        assert hall is not None
        try:
            new = load_config(self.config_path)
        except ConfigInvalid as exc:
            log.error("config.invalid", path=str(self.config_path), errors=list(exc.errors))
            return hall.reject_config(self._version_in_file(), list(exc.errors))
        if expected_version is not None and new.version != expected_version:
            return hall.reject_config(new.version, [
                f"version: the file has {new.version!r}, the command expected "
                f"{expected_version!r}"])
        event = hall.reconfigure(new)
        if isinstance(event.body, mm.ConfigApplied):
            old = self.config
            self.config = new
            if old.paths.journal != new.paths.journal:
                log.warning("config.restart_needed", part="paths.journal",
                            detail="the journal moves at the next restart")
            if self._group is not None and self._parts_changed(new):
                self._spawn(self._restart_parts(), "reload")
            if self.uplink is not None:
                self.uplink.publish_state()
            self._refresh_outputs()
        return event

    @staticmethod
    def _device_settings(config: EdgeConfig) -> dict[str, object]:
        devices = config.devices
        return {
            "printer": devices.printer,
            "screens": (devices.screens, [(w.number, w.screen) for w in config.windows
                                          if w.screen is not None]),
            "terminals": (devices.terminals, [(w.number, w.terminal) for w in config.windows
                                              if w.terminal is not None]),
            "announcer": (devices.audio, config.paths.clips),
            "gpio": devices.gpio,
        }

    def _parts_changed(self, new: EdgeConfig) -> list[str]:
        old = self._parts_config
        if old is None:
            return []
        parts = [part for part in ("mqtt", "http") if getattr(old, part) != getattr(new, part)]
        before, after = self._device_settings(old), self._device_settings(new)
        return parts + [f"devices.{slot}" for slot in after if before[slot] != after[slot]]

    async def _restart_parts(self) -> None:
        """Bring the uplink, the HTTP API and the devices in line with ``self.config``.

        Only the parts whose settings changed are stopped (ports closed, the MQTT
        session ended with a clean ``offline``) and started anew; the hall state is
        untouched. A part that cannot be built is logged and reported as a device
        event, and the rest carries on.
        """
        async with self._restarting:  # reloads in a row: one restart at a time
            new = self.config
            changed = self._parts_changed(new)
            if not changed:
                return
            log.info("config.restarting_parts", version=new.version, parts=changed)
            try:
                if "mqtt" in changed:
                    await self._restart_uplink(new.mqtt)
                if "http" in changed:
                    await self._restart_http(new.http)
                for part in changed:
                    if part.startswith("devices."):
                        await self._restart_device(part.removeprefix("devices."), new)
            except Exception:  # e.g. a driver that fails to construct in an unforeseen way
                log.exception("config.restart_failed", parts=changed)
            self._parts_config = new
            self._refresh_outputs()
            log.info("config.parts_restarted", version=new.version, parts=changed)

    def _start(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        assert self._group is not None
        self.supervisor.start(self._group, name, factory)

    async def _restart_uplink(self, mqtt: MqttConfig | None) -> None:
        await self.supervisor.stop("telemetry")
        await self.supervisor.stop("uplink")  # publishes offline and disconnects
        self.uplink = None
        if mqtt is not None:
            self.uplink = self._make_uplink(mqtt)
            self._start("uplink", self.uplink.run)
            self._start("telemetry", self._telemetry_task)
        log.info("config.part_restarted", part="mqtt",
                 broker=None if mqtt is None else f"{mqtt.host}:{mqtt.port}")

    async def _restart_http(self, http: HttpConfig | None) -> None:
        await self.supervisor.stop("http")  # closes the listening socket
        self.http = None
        if http is not None:
            self.http = self._make_http(http)
            self._start("http", self.http.run)
        log.info("config.part_restarted", part="http",
                 listen=None if http is None else f"{http.host}:{http.port}")

    async def _restart_device(self, slot: str, new: EdgeConfig) -> None:
        name = f"device:{slot}"
        old: Device | None = getattr(self.devices, slot)
        if old is not None:
            await self.supervisor.stop(name)  # the serial drivers close their port
            close = getattr(old, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
            self._device_health.pop(old.health().device_id, None)
            self._bus_progress.pop(slot, None)
            setattr(self.devices, slot, None)
        if self.device_factory is None:
            return
        section = _DEVICE_SECTIONS[slot]
        only = DevicesConfig(**{section: getattr(new.devices, section)})
        try:
            built = self.device_factory(dataclasses.replace(new, devices=only), self.inputs)
        except Exception as exc:  # e.g. a GPIO pin taken, a clip directory missing
            log.error("config.part_failed", part=f"devices.{section}", error=repr(exc))
            health = DeviceHealth("voice" if slot == "announcer" else slot,
                                  _DEVICE_KINDS[slot], HealthState.OFFLINE,
                                  "open failed")
            self._device_health[health.device_id] = health
            assert self.hall is not None
            self.hall.device_status(device_status_body(health))
            return
        device: Device | None = getattr(built, slot)
        if device is not None:
            self._restore_inputs(device)
            setattr(self.devices, slot, device)
            self._start(name, device.run)
        log.info("config.part_restarted", part=f"devices.{section}",
                 running=device is not None)

    def _version_in_file(self) -> str:
        try:
            version = tomllib.loads(self.config_path.read_text(encoding="utf-8")).get("version")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return "invalid"
        return version if isinstance(version, str) and version else "invalid"

    # -- remote commands -----------------------------------------------------

    async def _command(self, cmd: mm.Cmd) -> None:
        args = cmd.args
        hall = self.hall
        assert hall is not None
        match args:
            case mm.AnnounceArgs():
                speak = getattr(self.devices.announcer, "announce_text", None)
                if speak is None and self.devices.screens is None:
                    raise CommandFailed("no voice driver with free text and no hall screen")
                if speak is not None:
                    for _ in range(args.repeat):
                        speak(args.text)
                self._notice(f"announce:{cmd.id}", args.text, 120)
                if speak is None:
                    raise CommandFailed("shown on the hall screen; this voice driver only "
                                        "speaks ticket calls")
            case mm.ReprintArgs():
                try:
                    ticket = hall.dispatcher.ticket(args.ticket)
                except ValueError:
                    raise CommandFailed(f"unknown ticket {args.ticket} today") from None
                if ticket.state is not TicketState.WAITING:
                    raise CommandFailed(f"ticket {args.ticket} is {ticket.state.value}")
                if self.devices.printer is None:
                    raise CommandFailed("this site has no printer")
                if not await self.devices.printer.print_ticket(self.ticket_print(args.ticket)):
                    raise CommandFailed(f"printer could not print {args.ticket}")
            case mm.ScreenNoticeArgs():
                if self.devices.screens is None:
                    raise CommandFailed("this site has no LED screens")
                if args.screen not in (None, "screen.hall", "hall"):
                    raise CommandFailed(f"unknown screen {args.screen!r}; notices go to the "
                                        "hall screen")
                self._notice(f"notice:{cmd.id}", args.text, args.duration_s)
            case mm.ReloadConfigArgs():
                event = self.reload(args.version)
                if isinstance(event.body, mm.ConfigRejected):
                    raise CommandFailed("; ".join(event.body.errors))

    # -- status and telemetry --------------------------------------------------

    def device_healths(self) -> list[DeviceHealth]:
        healths = {h.device_id: h for h in self._device_health.values()}
        for _, device in self.devices.named():
            health = device.health()
            healths[health.device_id] = health
        return sorted(healths.values(), key=lambda h: h.device_id)

    def _known_healths(self) -> list[DeviceHealth]:
        """Healths worth reporting: a driver that has not run its first check yet says
        "not started", which is not a fault (the central would raise a device alarm)."""
        return [h for h in self.device_healths() if h.detail != NOT_STARTED]

    def status(self) -> dict[str, Any]:
        assert self.hall is not None
        snapshot = self.hall.snapshot()
        snapshot["devices"] = [{"device": h.device_id, "kind": str(h.kind), "state": str(h.state),
                                "detail": h.detail} for h in self.device_healths()]
        snapshot["uplink"] = None if self.uplink is None else {
            "connected": self.uplink.connected, "session": self.uplink.session,
            "outbox_depth": self.hall.journal.outbox_depth()}
        snapshot["boot_id"] = self.boot_id
        snapshot["tasks"] = {"running": self.supervisor.running(),
                             "restarts": self.supervisor.restarts}
        return snapshot

    def telemetry(self) -> mm.Telemetry:
        hall = self.hall
        assert hall is not None
        now = self.clock.now_ms()
        queues = []
        for service in hall.config.services[:mm.MAX_QUEUES]:
            waiting = hall.dispatcher.waiting(service.id)
            oldest = max(((now - t.issued_ms) // 1000 for t in waiting), default=0)
            latest = self._service_waits.get(service.id)
            fresh = latest is not None and now - latest[1] <= WAIT_FRESH_MS
            queues.append(mm.QueueStat(service=service.id, waiting=len(waiting),
                                       oldest_wait_s=max(0, oldest),
                                       wait=latest[0] if latest is not None and fresh else None))
        windows = []
        for status in hall.dispatcher.windows()[:mm.MAX_WINDOWS]:
            state: mm.WindowState = ("serving" if status.current is not None
                                     else status.state.value)
            windows.append(mm.WindowStat(window=status.number, state=state,
                                         ticket=status.current))
        devices = [mm.DeviceStat(device=b.device, kind=b.kind, status=b.status, detail=b.detail)
                   for b in map(device_status_body, self._known_healths()[:mm.MAX_DEVICES])]
        journal = hall.journal
        return mm.Telemetry(
            site=hall.config.site.id, ts=now, clock_synced=self.clock.synced(), queues=queues,
            windows=windows, devices=devices, host=host_stats(journal.path.parent),
            outbox=mm.OutboxStat(depth=journal.outbox_depth(),
                                 oldest_unacked_seq=(journal.acked_seq + 1
                                                     if journal.unacked_count() else None),
                                 last_seq=journal.last_seq))


async def run_daemon(config_path: str | Path, device_factory: DeviceFactory | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT (``onedoor edge run``)."""
    daemon = EdgeDaemon(config_path, device_factory=device_factory)
    await daemon.run()


__all__ = [
    "SOFTWARE_VERSION",
    "DeviceFactory",
    "DeviceSet",
    "EdgeDaemon",
    "Heartbeats",
    "Supervisor",
    "device_detail_code",
    "device_status_body",
    "last_good_config",
    "run_daemon",
    "sd_notify",
    "watchdog_interval",
]

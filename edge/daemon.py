"""The edge daemon: one hall on one Raspberry Pi, online or not.

:class:`EdgeDaemon` only wires the parts, each of which owns its state:

* the hall state over the journal (:mod:`edge.hall`, :mod:`edge.journal`);
* the drivers (:class:`~edge.device_set.DeviceSet`: built, started, rebuilt on
  reload, their health and the terminal bus's exactly-once hand-off);
* what the hall shows, says and prints (:class:`~edge.outputs.HallOutputs`);
* ticket issuing for the kiosk API, the 取号 buttons and the ID card reader, with
  the predicted wait off the event loop and idempotency keys
  (:class:`~edge.kiosk.TicketDesk`; the card policy: :mod:`edge.id_card_kiosk`);
* the device inputs (:class:`~edge.inputs.InputHandler`) and the central's
  commands (:class:`~edge.commands.RemoteCommands`, remote diagnostics:
  :mod:`edge.diagnostics`);
* who numbers the site's tickets: this device once the central handed it the
  day, or no longer (:class:`~edge.lease.SiteLease`);
* the MQTT uplink, the kiosk HTTP API and telemetry (:mod:`edge.uplink`,
  :mod:`edge.http_api`, :mod:`edge.telemetry`), and what the citizens' progress
  pages on the central show (:mod:`edge.progress`);
* the live staffing advice (:class:`~edge.advice.StaffingAdvice`): an SLA breach seen
  coming and the move that prevents it, sent to the central, never acted on;
* supervision and systemd's watchdog (:mod:`edge.supervisor`): every
  long-running part is a named task that is logged and restarted if it dies.

Operations:

* ``SIGHUP`` reloads the config file: an invalid file, or one the live queue
  cannot take (a service removed while it has tickets), is refused, logged
  and journaled as ``config.rejected``; the old config stays and the queue
  state survives either way. A good one is journaled as ``config.applied``,
  then the parts whose settings changed restart in place: the MQTT uplink
  (clean ``offline``, then the session on the new broker), the HTTP API (new
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
* At each day reset (and at start) the journal drops the days older than
  ``paths.journal_retention_days`` that the central has acknowledged
  (:meth:`edge.journal.Journal.prune`).
* systemd ``Type=notify``: ``READY=1`` once serving, and ``WATCHDOG=1`` from
  the event loop only while the device-input, timer and uplink tasks have
  checked in, and the terminal bus has kept polling, within
  ``daemon.watchdog_seconds``: a hung task cannot hide behind a healthy loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tomllib
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import structlog

from edge.advice import StaffingAdvice
from edge.clock import Clock, SystemClock
from edge.commands import RemoteCommands
from edge.config import EdgeConfig, HttpConfig, MqttConfig, load_config, parse_config
from edge.device_set import DeviceFactory, DeviceSet, device_status_body
from edge.devices.base import InputQueue
from edge.diagnostics import DiagnosticsSource, diagnostics_report
from edge.errors import ConfigInvalid, JournalError
from edge.hall import Hall, open_hall
from edge.http_api import HttpApi
from edge.id_card_kiosk import IdCardKiosk, kiosk_for
from edge.inputs import InputHandler
from edge.journal import Journal
from edge.kiosk import TicketDesk
from edge.lease import SiteLease
from edge.outputs import HallOutputs
from edge.predict import WaitPredictor
from edge.progress import ProgressReporter
from edge.supervisor import Heartbeats, Supervisor, Watchdog, sd_notify
from edge.telemetry import TelemetryReporter, telemetry_snapshot
from edge.uplink import Uplink, host_stats
from firmware_protocols import mqtt_messages as mm
from onedoor import __version__, software_token
from onedoor.log import recent

log = structlog.get_logger(__name__)

SOFTWARE_VERSION = software_token(__version__)
"""The release this daemon runs (its package version): `state`, `/status`, diagnostics."""
TICK_S = 1.0


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


@dataclass(slots=True)
class _Parts:
    """The parts built once the hall is open (:meth:`EdgeDaemon.run`)."""

    hall: Hall
    outputs: HallOutputs
    desk: TicketDesk
    inputs: InputHandler
    commands: RemoteCommands
    telemetry: TelemetryReporter
    lease: SiteLease
    progress: ProgressReporter
    advice: StaffingAdvice


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
        self.predictor = predictor  # a WaitPredictor factory other than the default (tests)
        self.install_signals = install_signals
        self._startup_rejection: ConfigInvalid | None = None
        try:
            self.config: EdgeConfig = load_config(self.config_path)
        except ConfigInvalid as exc:
            # The last good config in the journal keeps the hall open; with none,
            # there is nothing to run.
            fallback = last_good_config(self.config_path)
            if fallback is None:
                raise
            log.error("config.invalid_at_start", path=str(self.config_path),
                      errors=list(exc.errors), running=fallback.version)
            self.config = fallback
            self._startup_rejection = exc
        for warning in self.config.warnings:
            log.warning("config.warning", problem=warning)
        self._mask_secrets(self.config)
        self.boot_id = uuid.uuid4().hex[:16]
        self.heartbeats = Heartbeats()
        self.supervisor = Supervisor()
        self.inputs: InputQueue = asyncio.Queue()
        self.devices = DeviceSet(device_factory, self.inputs)
        self.hall: Hall | None = None
        self.outputs: HallOutputs | None = None
        self.desk: TicketDesk | None = None
        self.uplink: Uplink | None = None
        self.http: HttpApi | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._parts: _Parts | None = None
        self._group: asyncio.TaskGroup | None = None
        self._spawned: set[asyncio.Task[None]] = set()  # ticket button presses, reloads
        self._parts_config: EdgeConfig | None = None  # what uplink, http, devices run with
        self._restarting = asyncio.Lock()
        self.kiosk: IdCardKiosk | None = None  # [devices.id_card]: tickets by ID card

    # -- lifecycle -----------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def _build_parts(self, hall: Hall) -> _Parts:
        outputs = HallOutputs(hall, self.devices, names=self.kiosk)
        desk = TicketDesk(hall, outputs, spawn=self._spawn, cards=self.kiosk,
                          predict_budget_s=lambda: self.config.daemon.predict_budget_seconds)
        return _Parts(
            hall, outputs, desk, InputHandler(hall, self.devices, outputs, desk),
            RemoteCommands(hall, self.devices, outputs, self.reload, self.diagnose),
            TelemetryReporter(hall, self.devices, self.clock,
                              period_s=lambda: self.config.daemon.telemetry_seconds,
                              wake_uplink=self._wake_uplink,
                              beat=self.heartbeats.beater("telemetry")),
            SiteLease(hall, outputs, boot_id=self.boot_id, state_changed=self._publish_state),
            ProgressReporter(hall, self.clock, self._publish_live),
            StaffingAdvice(hall, self.clock, enabled=lambda: self.config.daemon.advice,
                           period_s=lambda: self.config.daemon.advice_seconds,
                           wake_uplink=self._wake_uplink))

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
        parts = self._parts = self._build_parts(hall)
        self.outputs, self.desk = parts.outputs, parts.desk
        try:
            self.devices.build(self.config, hall.journal.input_marks(), hall.device_status)
            hall.subscribe(parts.outputs.on_event)
            hall.subscribe(parts.progress.on_event)
            hall.subscribe(self._after_event)
            if self.config.mqtt is not None:
                self.uplink = self._make_uplink(self.config.mqtt)
            if self.config.http is not None:
                self.http = self._make_http(self.config.http)
            self._parts_config = self.config
            if self.install_signals:
                loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
                loop.add_signal_handler(signal.SIGTERM, self.stop)
                loop.add_signal_handler(signal.SIGINT, self.stop)
            watchdog = Watchdog(self.heartbeats, ready=self.ready, watched=self._watched,
                                stalled=self.devices.stalled,
                                max_age=lambda: self.config.daemon.watchdog_seconds)
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._start("inputs", lambda: parts.inputs.run(
                    self.inputs, self.heartbeats.beater("inputs")))
                self._start("timers", self._timers_task)
                self._start("watchdog", watchdog.run)
                self._start("advice", parts.advice.run)
                if self.uplink is not None:
                    self._start("uplink", self.uplink.run)
                    self._start("telemetry", parts.telemetry.run)
                    self._start("progress", parts.progress.run)
                if self.http is not None:
                    self._start("http", self.http.run)
                self.devices.start_all(self._start)
                parts.outputs.refresh()
                parts.lease.show_notice()
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
            parts.desk.close()
            if self.install_signals:
                for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            hall.close()
            self.devices.close_all()
            log.info("daemon.stopped")

    def _start(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        assert self._group is not None
        self.supervisor.start(self._group, name, factory)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """A short task in the daemon's task group; it must catch its own errors."""
        if self._group is None:
            coro.close()
            return
        task = self._group.create_task(coro, name=name)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    def _make_uplink(self, mqtt: MqttConfig) -> Uplink:
        parts = self._parts
        assert parts is not None
        hall = parts.hall
        return Uplink(self.config.site.id, mqtt, hall.journal, self.clock,
                      software=SOFTWARE_VERSION, boot_id=self.boot_id,
                      config_version=lambda: hall.config.version, commands=parts.commands,
                      on_lease=parts.lease.on_lease, on_restore=parts.lease.on_restore,
                      advice=parts.advice.message, on_connect=parts.progress.refresh,
                      pushed=hall.pushed_versions, bookings=hall.bookings_version,
                      beat=self.heartbeats.beater("uplink"))

    def _publish_state(self) -> None:
        if self.uplink is not None:
            self.uplink.publish_state()

    @staticmethod
    def _mask_secrets(config: EdgeConfig) -> None:
        """The config's secrets never reach the recent log lines diagnostics send."""
        if config.mqtt is not None:
            recent.add_secret(config.mqtt.password)
        if config.http is not None:
            recent.add_secret(config.http.window_token)
        if config.devices.id_card is not None:
            recent.add_secret(config.devices.id_card.booking_salt)

    def _make_http(self, http: HttpConfig) -> HttpApi:
        parts = self._parts
        assert parts is not None
        return HttpApi(parts.hall, parts.desk, status=self.status, host=http.host,
                       port=http.port, window_api=http.window_api,
                       window_token=http.window_token,
                       case_token=http.case_token if http.case_hook else None,
                       beat=self.heartbeats.beater("http"))

    async def _wait_http_ready(self) -> None:
        if self.http is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self.http.listening.wait()

    def _publish_live(self, message: mm.Progress) -> bool:
        return self.uplink is not None and self.uplink.publish_live(message)

    def _wake_uplink(self) -> None:
        if self.uplink is not None:
            self.uplink.wake()

    # -- tasks ---------------------------------------------------------------

    async def _timers_task(self) -> None:
        parts = self._parts
        assert parts is not None
        while True:
            self.heartbeats.beat("timers")
            parts.hall.tick()
            parts.outputs.expire_notices()
            await asyncio.sleep(TICK_S)

    def _watched(self) -> list[str]:
        names = ["inputs", "timers"]
        if self.uplink is not None:
            names.append("uplink")
        return names

    def _after_event(self, event: mm.Event) -> None:
        """After each durable event (and its outputs): housekeeping, then the uplink."""
        if isinstance(event.body, mm.DayReset):
            self.prune_journal()
        if (isinstance(event.body, (mm.IssuingStopped, mm.IssuingResumed, mm.CalendarApplied,
                                    mm.BookingsApplied))
                and self.uplink is not None):
            self.uplink.publish_state()  # the state reports what the site holds
        self._wake_uplink()

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
        parts = self._parts
        assert parts is not None
        hall = parts.hall
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
            self._mask_secrets(new)
            if old.paths.journal != new.paths.journal:
                log.warning("config.restart_needed", part="paths.journal",
                            detail="the journal moves at the next restart")
            if self._group is not None and self._parts_changed(new):
                self._spawn(self._restart_parts(), "reload")
            if self.uplink is not None:
                self.uplink.publish_state()
            parts.outputs.refresh()
        return event

    def _parts_changed(self, new: EdgeConfig) -> list[str]:
        old = self._parts_config
        if old is None:
            return []
        changed = []
        if old.mqtt != new.mqtt:
            changed.append("mqtt")
        if old.http != new.http:
            changed.append("http")
        return changed + [f"devices.{slot}" for slot in DeviceSet.changed(old, new)]

    async def _restart_parts(self) -> None:
        """Bring the uplink, the HTTP API and the devices in line with ``self.config``.

        Only the parts whose settings changed are stopped (ports closed, the MQTT
        session ended with a clean ``offline``) and started anew; the hall state is
        untouched. A part that cannot be built is logged and reported as a device
        event, and the rest carries on.
        """
        parts = self._parts
        assert parts is not None
        hall = parts.hall
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
                        await self.devices.restart(
                            part.removeprefix("devices."), new, start=self._start,
                            stop=self.supervisor.stop, marks=hall.journal.input_marks,
                            report=hall.device_status)
            except Exception:  # e.g. a driver that fails to construct in an unforeseen way
                log.exception("config.restart_failed", parts=changed)
            self._parts_config = new
            parts.outputs.refresh()
            log.info("config.parts_restarted", version=new.version, parts=changed)

    async def _restart_uplink(self, mqtt: MqttConfig | None) -> None:
        await self.supervisor.stop("progress")
        await self.supervisor.stop("telemetry")
        await self.supervisor.stop("uplink")  # publishes offline and disconnects
        self.uplink = None
        if mqtt is not None:
            parts = self._parts
            assert parts is not None
            self.uplink = self._make_uplink(mqtt)
            self._start("uplink", self.uplink.run)
            self._start("telemetry", parts.telemetry.run)
            self._start("progress", parts.progress.run)
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

    def _version_in_file(self) -> str:
        try:
            version = tomllib.loads(self.config_path.read_text(encoding="utf-8")).get("version")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return "invalid"
        return version if isinstance(version, str) and version else "invalid"

    # -- status and telemetry --------------------------------------------------

    def status(self) -> dict[str, Any]:
        assert self.hall is not None
        snapshot = self.hall.snapshot()
        snapshot["devices"] = [{"device": h.device_id, "kind": str(h.kind), "state": str(h.state),
                                "detail": h.detail} for h in self.devices.healths()]
        snapshot["uplink"] = None if self.uplink is None else {
            "connected": self.uplink.connected, "session": self.uplink.session,
            "outbox_depth": self.hall.journal.outbox_depth()}
        snapshot["advice"] = None if self._parts is None else self._parts.advice.status()
        snapshot["boot_id"] = self.boot_id
        snapshot["software"] = SOFTWARE_VERSION
        status, notice = self.hall.issuing_status(self.clock.now_ms())
        snapshot["issuing"] = {"status": status, "notice": notice}  # what the kiosk shows
        snapshot["tasks"] = {"running": self.supervisor.running(),
                             "restarts": self.supervisor.restarts}
        return snapshot

    def telemetry(self) -> mm.Telemetry:
        assert self.hall is not None
        return telemetry_snapshot(self.hall, self.devices, self.clock)

    def diagnose(self, cmd: mm.Cmd, args: mm.DiagnosticsArgs) -> mm.Diagnostics:
        """The ``diag`` answer: status and the last ``args.lines`` log lines (bounded)."""
        hall = self.hall
        assert hall is not None
        journal = hall.journal
        restarts = self.supervisor.restarts
        status = mm.DiagStatus(
            config=hall.config.version, day=hall.day or None, numbering=journal.numbering,
            epoch=journal.epoch, last_seq=journal.last_seq, acked_seq=journal.acked_seq,
            outbox_depth=min(journal.outbox_depth(), 10_000_000),
            journal_bytes=min(journal.size_bytes(), 2**40),
            uplink_connects=0 if self.uplink is None else min(self.uplink.connects, 10_000_000),
            tasks=[mm.DiagTask(name=name, restarts=min(restarts.get(name, 0), 10_000_000))
                   for name in sorted(self.supervisor.running())[:64]],
            devices=[mm.DeviceStat(device=b.device, kind=b.kind, status=b.status,
                                   detail=b.detail)
                     for b in map(device_status_body,
                                  self.devices.known_healths()[:mm.MAX_DEVICES])],
            host=host_stats(journal.path.parent))
        source = DiagnosticsSource(self.config.site.id, journal.device_id, self.boot_id,
                                   SOFTWARE_VERSION)
        log.info("diagnostics.sent", id=str(cmd.id), lines=args.lines)
        return diagnostics_report(source, cmd.id, self.clock.now_ms(), status,
                                  recent.tail(args.lines))


async def run_daemon(config_path: str | Path, device_factory: DeviceFactory | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT (``onedoor edge run``)."""
    daemon = EdgeDaemon(config_path, device_factory=device_factory)
    await daemon.run()


__all__ = ["SOFTWARE_VERSION", "EdgeDaemon", "last_good_config", "run_daemon"]

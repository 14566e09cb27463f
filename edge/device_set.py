"""The hall's device drivers as one part: built, started, watched, rebuilt, closed.

A :data:`DeviceFactory` (:func:`edge.devices_factory.build_devices` in service, a
test's own in tests) builds :class:`Drivers` from the config; any slot may be
empty (a village station has no LED screens). :class:`DeviceSet` owns them while
the daemon runs:

* their health: what each driver reported last (:meth:`DeviceSet.record_health`),
  and a driver that could not even be built, for status and telemetry;
* the exactly-once hand-off with the terminal bus: the journaled input marks go
  to it before it starts (:meth:`DeviceSet.restore_inputs`), and each input is
  acknowledged once its effect is journaled (:meth:`DeviceSet.input_handled`);
* progress: a bus that stops counting its polls while not offline is a hung
  task (:meth:`DeviceSet.stalled`, read by the watchdog);
* reloads: only the drivers whose settings changed are stopped (ports closed,
  pins released) and built anew (:meth:`DeviceSet.restart`); one that cannot be
  built is logged and reported offline, and the others carry on.

Adding a device family: a slot in :class:`Drivers` (and :data:`_SECTIONS`,
:data:`_KINDS`, :func:`_slot_settings`), built in :mod:`edge.devices_factory`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import structlog

from edge.config import DevicesConfig, EdgeConfig
from edge.devices.base import (
    Announcer,
    Device,
    DeviceHealth,
    DeviceKind,
    GpioPanel,
    HealthState,
    InputQueue,
    ScreenBoard,
    TerminalBus,
    TicketPrinter,
)
from edge.errors import ConfigInvalid
from edge.input_mark import InputMark
from firmware_protocols import mqtt_messages as mm

log = structlog.get_logger(__name__)

NOT_STARTED = "not started"  # the drivers' health detail before their first check


@dataclass(slots=True)
class Drivers:
    """The drivers a factory built; any may be absent."""

    printer: TicketPrinter | None = None
    screens: ScreenBoard | None = None
    terminals: TerminalBus | None = None
    announcer: Announcer | None = None
    gpio: GpioPanel | None = None
    id_card: Device | None = None  # its reads are inputs (IdCardRead); edge.kiosk takes them

    def named(self) -> list[tuple[str, Device]]:
        found: list[tuple[str, Device | None]] = [
            ("printer", self.printer), ("screens", self.screens), ("terminals", self.terminals),
            ("announcer", self.announcer), ("gpio", self.gpio), ("id_card", self.id_card)]
        return [(name, device) for name, device in found if device is not None]


DeviceFactory = Callable[[EdgeConfig, InputQueue], Drivers]
"""Builds the drivers the config names, constructed but not started."""

Slot = str  # a field of Drivers: "printer", "screens", ...
Starter = Callable[[str, Callable[[], Awaitable[None]]], None]
"""Starts a named, supervised task (the daemon's supervisor)."""
Stopper = Callable[[str], Awaitable[None]]
"""Cancels a named task and waits for its end."""

# Drivers slot -> the config section its driver is built from, and its kind (for
# reporting a driver that cannot be built).
_SECTIONS: dict[Slot, str] = {"printer": "printer", "screens": "screens",
                              "terminals": "terminals", "announcer": "audio", "gpio": "gpio",
                              "id_card": "id_card"}
_KINDS: dict[Slot, DeviceKind] = {
    "printer": DeviceKind.PRINTER, "screens": DeviceKind.SCREEN,
    "terminals": DeviceKind.TERMINAL, "announcer": DeviceKind.VOICE, "gpio": DeviceKind.GPIO,
    "id_card": DeviceKind.ID_CARD}

_MQTT_KIND: dict[DeviceKind, mm.DeviceKind] = {
    DeviceKind.PRINTER: "printer", DeviceKind.SCREEN: "led", DeviceKind.TERMINAL: "terminal",
    DeviceKind.GPIO: "gpio", DeviceKind.VOICE: "audio", DeviceKind.ID_CARD: "id_card",
}
_MQTT_STATUS: dict[HealthState, mm.DeviceHealth] = {
    HealthState.OK: "ok", HealthState.DEGRADED: "degraded", HealthState.OFFLINE: "offline",
}


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


def _slot_settings(config: EdgeConfig) -> dict[Slot, object]:
    """What each driver is built from: its section, plus the windows' addresses."""
    devices = config.devices
    return {
        "printer": devices.printer,
        "screens": (devices.screens, [(w.number, w.screen) for w in config.windows
                                      if w.screen is not None]),
        "terminals": (devices.terminals, [(w.number, w.terminal) for w in config.windows
                                          if w.terminal is not None]),
        "announcer": (devices.audio, config.paths.clips),
        "gpio": devices.gpio,
        "id_card": devices.id_card,
    }


class DeviceSet:
    """The running drivers of one hall (see the module docstring)."""

    def __init__(self, factory: DeviceFactory | None, inputs: InputQueue) -> None:
        self._factory = factory
        self._inputs = inputs
        self._drivers = Drivers()
        self._health: dict[str, DeviceHealth] = {}  # reported by drivers, or build failures
        self._bus_progress: dict[Slot, tuple[int, float]] = {}  # slot -> (polls, changed at)

    # -- the drivers ---------------------------------------------------------

    @property
    def printer(self) -> TicketPrinter | None:
        return self._drivers.printer

    @property
    def screens(self) -> ScreenBoard | None:
        return self._drivers.screens

    @property
    def terminals(self) -> TerminalBus | None:
        return self._drivers.terminals

    @property
    def announcer(self) -> Announcer | None:
        return self._drivers.announcer

    @property
    def gpio(self) -> GpioPanel | None:
        return self._drivers.gpio

    def named(self) -> list[tuple[Slot, Device]]:
        return self._drivers.named()

    def build(self, config: EdgeConfig, marks: Iterable[InputMark],
              report: Callable[[mm.DeviceStatus], object]) -> None:
        """Build every driver the config names (at start), each on its own: one that
        cannot be built (a clip folder missing, a pin taken) is logged and reported
        offline, and the hall runs without it. A config this machine cannot run at
        all (:class:`~edge.errors.ConfigInvalid` from the factory: no GPIO backend for
        ``pin_factory``) stops the start with its message. The terminal bus gets the
        journaled input marks before it runs."""
        marks = list(marks)
        for slot, section in _SECTIONS.items():
            if getattr(config.devices, section) is not None:
                self._build(slot, config, marks, report, starting=True)

    def _build(self, slot: Slot, config: EdgeConfig, marks: Iterable[InputMark],
               report: Callable[[mm.DeviceStatus], object], *,
               starting: bool = False) -> Device | None:
        if self._factory is None:
            return None
        section = _SECTIONS[slot]
        only = DevicesConfig(**{section: getattr(config.devices, section)})
        try:
            built = self._factory(dataclasses.replace(config, devices=only), self._inputs)
        except ConfigInvalid:
            if starting:
                raise
            log.exception("config.part_failed", part=f"devices.{section}")
            report(self.record_health(self._offline(slot)))
            return None
        except Exception as exc:  # e.g. a GPIO pin taken, a clip directory missing
            log.error("config.part_failed", part=f"devices.{section}", error=repr(exc))
            report(self.record_health(self._offline(slot)))
            return None
        device: Device | None = getattr(built, slot)
        if device is not None:
            if built.terminals is not None:
                built.terminals.restore_inputs(marks)
            setattr(self._drivers, slot, device)
        return device

    @staticmethod
    def _offline(slot: Slot) -> DeviceHealth:
        return DeviceHealth("voice" if slot == "announcer" else slot, _KINDS[slot],
                            HealthState.OFFLINE, "open failed")

    def start_all(self, start: Starter) -> None:
        for name, device in self.named():
            start(f"device:{name}", device.run)

    def close_all(self) -> None:
        """After every driver task ended: release what a task does not (GPIO pins)."""
        gpio = self._drivers.gpio
        if gpio is not None:
            with contextlib.suppress(Exception):
                gpio.close()

    # -- health --------------------------------------------------------------

    def record_health(self, health: DeviceHealth) -> mm.DeviceStatus:
        """A driver's new health; returns the ``device.status`` body to journal."""
        self._health[health.device_id] = health
        return device_status_body(health)

    def healths(self) -> list[DeviceHealth]:
        healths = dict(self._health)
        for _, device in self.named():
            health = device.health()
            healths[health.device_id] = health
        return sorted(healths.values(), key=lambda h: h.device_id)

    def known_healths(self) -> list[DeviceHealth]:
        """Healths worth reporting: a driver that has not run its first check yet says
        "not started", which is not a fault (the central would raise a device alarm)."""
        return [h for h in self.healths() if h.detail != NOT_STARTED]

    # -- exactly once with the terminal bus -----------------------------------

    def input_handled(self, mark: InputMark) -> None:
        """A terminal input's effect is journaled: now its terminal may be acknowledged."""
        if self._drivers.terminals is not None:
            self._drivers.terminals.input_handled(mark)

    # -- progress ------------------------------------------------------------

    def stalled(self, max_age_s: float) -> list[Slot]:
        """Buses that stopped counting their polls for ``max_age_s`` though not offline."""
        now = time.monotonic()
        terminals = self._drivers.terminals
        if terminals is None:
            return []
        polls = terminals.polls
        if terminals.health().state is HealthState.OFFLINE:
            # Port gone or every terminal dead: reported as a device event; restarting
            # the daemon would not bring the adapter back.
            self._bus_progress["terminals"] = (polls, now)
            return []
        last_polls, since = self._bus_progress.get("terminals", (-1, now))
        if polls != last_polls:
            self._bus_progress["terminals"] = (polls, now)
        elif now - since > max_age_s:
            return ["terminals"]
        return []

    # -- reloads -------------------------------------------------------------

    @staticmethod
    def changed(old: EdgeConfig, new: EdgeConfig) -> list[Slot]:
        """The slots whose driver settings differ between two configs."""
        before, after = _slot_settings(old), _slot_settings(new)
        return [slot for slot in after if before[slot] != after[slot]]

    async def restart(self, slot: Slot, config: EdgeConfig, *, start: Starter,
                      stop: Stopper, marks: Callable[[], Iterable[InputMark]],
                      report: Callable[[mm.DeviceStatus], object]) -> None:
        """Stop the driver of ``slot`` (if any) and build it anew from ``config``.

        A driver that cannot be built is logged, recorded offline and ``report``-ed;
        the slot stays empty until the next reload.
        """
        name = f"device:{slot}"
        old: Device | None = getattr(self._drivers, slot)
        if old is not None:
            await stop(name)  # the serial drivers close their port
            gpio = self._drivers.gpio if slot == "gpio" else None
            if gpio is not None:
                with contextlib.suppress(Exception):
                    gpio.close()
            self._health.pop(old.health().device_id, None)
            self._bus_progress.pop(slot, None)
            setattr(self._drivers, slot, None)
        device = self._build(slot, config, marks(), report)
        if device is not None:
            start(name, device.run)
        log.info("config.part_restarted", part=f"devices.{_SECTIONS[slot]}",
                 running=device is not None)


__all__ = [
    "NOT_STARTED",
    "DeviceFactory",
    "DeviceSet",
    "Drivers",
    "device_detail_code",
    "device_status_body",
]

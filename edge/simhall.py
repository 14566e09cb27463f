"""Simulated devices on ptys, for the integration tests, the rehearsal, benchmarks and demos.

:func:`simulated_devices` starts the simulators of ``firmware_protocols.simulators``
a site names (an ESC/POS printer, a bus of LED window bars and a hall screen, a bank
of Modbus or vendor-frame window terminals), each on a pty pair with the line timing
of its settings, so the real daemon and the real drivers run against them unchanged
with the device ports pointed at the ptys.

:func:`simulated_hall` is the demo's hall built on it: every device family at
19200 baud (8N1, the terminals' Modbus 8E1), a site config written for it, GPIO
on gpiozero's ``mock`` pin factory and audio written as WAV files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from firmware_protocols.simulators.led_screens import ScreenLayout, VirtualLedScreens
from firmware_protocols.simulators.modbus_bank import ModbusTerminalBank
from firmware_protocols.simulators.printer import VirtualPrinter
from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming
from firmware_protocols.simulators.vendor_bank import VendorTerminalBank

BAUD = 19200
HALL_SCREEN = 100
WINDOWS = (1, 2)
TICKET_BUTTON_PIN = 5
PRIORITY_BUTTON_PIN = 6
HELP_BUTTON_PIN = 19
HELP_LED_PIN = 26
PAPER_LED_PIN = 21
BUZZER_PIN = 18


@dataclass(frozen=True, slots=True)
class ScreenBus:
    """LED window bars and hall screens on one RS485 bus: their line and layouts by address."""

    timing: SerialTiming
    layouts: Mapping[int, ScreenLayout]


@dataclass(frozen=True, slots=True)
class TerminalBus:
    """Window terminals on one RS485 bus: their protocol, line and addresses."""

    kind: Literal["modbus", "vendor"]
    timing: SerialTiming
    addresses: tuple[int, ...]


@dataclass(slots=True)
class SimulatedDevices:
    """The running simulators of one site and the pty each device's port is."""

    printer: VirtualPrinter | None = None
    screens: VirtualLedScreens | None = None
    terminals: ModbusTerminalBank | VendorTerminalBank | None = None
    ports: dict[str, str] = field(default_factory=dict)  # printer/screens/terminals -> pty


@contextlib.contextmanager
def simulated_devices(*, printer: SerialTiming | None = None, screens: ScreenBus | None = None,
                      terminals: TerminalBus | None = None) -> Iterator[SimulatedDevices]:
    """Start the simulators of the devices given (None: that device is absent)."""
    devices = SimulatedDevices()
    with contextlib.ExitStack() as stack:
        if printer is not None:
            link = stack.enter_context(PtyLink(printer))
            devices.printer = stack.enter_context(VirtualPrinter(link))
            devices.ports["printer"] = link.port_name
        if screens is not None:
            link = stack.enter_context(PtyLink(screens.timing))
            devices.screens = stack.enter_context(VirtualLedScreens(link, dict(screens.layouts)))
            devices.ports["screens"] = link.port_name
        if terminals is not None:
            # The bank times its own answers: its link has no timing, or they would count twice.
            link = stack.enter_context(PtyLink())
            bank: ModbusTerminalBank | VendorTerminalBank
            if terminals.kind == "modbus":
                bank = ModbusTerminalBank(link, terminals.addresses, timing=terminals.timing,
                                          baud=terminals.timing.baud)
            else:
                bank = VendorTerminalBank(link, terminals.addresses, timing=terminals.timing)
            stack.enter_context(bank)
            devices.terminals = bank
            devices.ports["terminals"] = link.port_name
        yield devices


@dataclass(slots=True)
class SimulatedHall:
    config_path: Path
    printer: VirtualPrinter
    screens: VirtualLedScreens
    terminals: ModbusTerminalBank
    wav_dir: Path


PROGRESS_URL = "https://q.example.cn"  # where the tickets' QR codes point (the central)


def hall_config_text(*, printer_port: str, screens_port: str, bus_port: str, clips_dir: Path,
                     wav_dir: Path, journal: Path, http_port: int,
                     mqtt_port: int | None, progress_url: str = PROGRESS_URL) -> str:
    """The site config of the simulated hall (two windows, every device family)."""
    mqtt = "" if mqtt_port is None else (
        f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\nkeepalive_seconds = 5\n')
    windows = "".join(
        f"[[windows]]\nnumber = {n}\nservices = {{ shebao = 2, huji = 1 }}\n"
        f"terminal = {n}\nscreen = {n}\n" + ("priority = true\nratio_cap = 2\n" if n == 1 else "")
        for n in WINDOWS)
    return f"""version = "sim-1"

[site]
id = "sim-hall"
name = "模拟便民服务中心"
town = "模拟镇"

# Runs on the host clock whenever a test or benchmark does: open around the clock.
[hours]
open = "00:00"
close = "24:00"
reset = "03:00"

[[services]]
id = "shebao"
prefix = "A"
name_zh = "社保医保"
name_en = "Social insurance"
sla_minutes = 30
overtime_minutes = 20
mean_minutes = 8

[[services]]
id = "huji"
prefix = "B"
name_zh = "户籍"
sla_minutes = 30
overtime_minutes = 20
mean_minutes = 10

{windows}
[devices.printer]
port = "{printer_port}"
baud = {BAUD}
poll_seconds = 0.5

[devices.screens]
port = "{screens_port}"
baud = {BAUD}
hall = {HALL_SCREEN}

[devices.terminals]
kind = "modbus"
port = "{bus_port}"
baud = {BAUD}
poll_ms = 20
timeout_ms = 60

[devices.gpio]
pin_factory = "mock"
buzzer_pin = {BUZZER_PIN}
leds = {{ paper = {PAPER_LED_PIN} }}
debounce_ms = 20
long_press_ms = 600

[[devices.gpio.ticket_buttons]]
pin = {TICKET_BUTTON_PIN}
service = "shebao"

[[devices.gpio.ticket_buttons]]
pin = {PRIORITY_BUTTON_PIN}
service = "shebao"
class = "priority"

[[devices.gpio.help_buttons]]
id = "help-1"
pin = {HELP_BUTTON_PIN}
led_pin = {HELP_LED_PIN}
location = "自助服务区"

[devices.audio]
output = "wav"
wav_dir = "{wav_dir}"
clips_dir = "{clips_dir}"
repeat = 2

{mqtt}
[paths]
journal = "{journal}"

[http]
host = "127.0.0.1"
port = {http_port}
window_api = true

[daemon]
telemetry_seconds = 2
help_escalation_minutes = 1

[progress]
url = "{progress_url}"
predict_seconds = 2
"""


@contextlib.contextmanager
def simulated_hall(directory: Path, *, clips_dir: Path, http_port: int,
                   mqtt_port: int | None = None,
                   progress_url: str = PROGRESS_URL) -> Iterator[SimulatedHall]:
    """Start the simulators and write ``directory/site.toml`` pointing at them
    (``progress_url``: the central whose progress pages the tickets' QR codes open)."""
    layouts = {n: ScreenLayout() for n in WINDOWS}
    layouts[HALL_SCREEN] = ScreenLayout(lines=5, columns=24)
    wav_dir = directory / "announcements"
    wav_dir.mkdir(parents=True, exist_ok=True)
    with simulated_devices(
        printer=SerialTiming(BAUD), screens=ScreenBus(SerialTiming(BAUD), layouts),
        terminals=TerminalBus("modbus", SerialTiming(BAUD, "E"), WINDOWS),
    ) as devices:
        assert devices.printer is not None
        assert devices.screens is not None
        assert isinstance(devices.terminals, ModbusTerminalBank)
        config_path = directory / "site.toml"
        config_path.write_text(hall_config_text(
            printer_port=devices.ports["printer"], screens_port=devices.ports["screens"],
            bus_port=devices.ports["terminals"], clips_dir=clips_dir, wav_dir=wav_dir,
            journal=directory / "journal.db", http_port=http_port, mqtt_port=mqtt_port,
            progress_url=progress_url),
            encoding="utf-8")
        yield SimulatedHall(config_path, devices.printer, devices.screens, devices.terminals,
                            wav_dir)


__all__ = ["BAUD", "HALL_SCREEN", "PROGRESS_URL", "ScreenBus", "SimulatedDevices", "SimulatedHall",
           "TerminalBus", "hall_config_text", "simulated_devices", "simulated_hall"]

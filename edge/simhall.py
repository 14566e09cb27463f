"""A hall of simulated devices on ptys, for the integration test, benchmarks and demos.

:func:`simulated_hall` starts the simulators of ``firmware_protocols.simulators``
(an ESC/POS printer, a bus of LED window bars plus a hall screen, a bank of
Modbus window terminals, all with 19200-baud line timing, 8N1 but the terminals'
8E1) and writes a site
config whose device ports are the ptys, so the real daemon and the real
drivers run against them unchanged. GPIO uses gpiozero's ``mock`` pin factory
and audio is written as WAV files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from firmware_protocols.simulators.led_screens import ScreenLayout, VirtualLedScreens
from firmware_protocols.simulators.modbus_bank import ModbusTerminalBank
from firmware_protocols.simulators.printer import VirtualPrinter
from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming

BAUD = 19200
HALL_SCREEN = 100
WINDOWS = (1, 2)
TICKET_BUTTON_PIN = 5
PRIORITY_BUTTON_PIN = 6
HELP_BUTTON_PIN = 19
HELP_LED_PIN = 26
PAPER_LED_PIN = 21
BUZZER_PIN = 18


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
    timing = SerialTiming(BAUD)
    layouts = {n: ScreenLayout() for n in WINDOWS}
    layouts[HALL_SCREEN] = ScreenLayout(lines=5, columns=24)
    wav_dir = directory / "announcements"
    wav_dir.mkdir(parents=True, exist_ok=True)
    with (
        PtyLink(timing) as printer_link,
        VirtualPrinter(printer_link) as printer,
        PtyLink(timing) as screen_link,
        VirtualLedScreens(screen_link, layouts) as screens,
        PtyLink() as bus_link,
        ModbusTerminalBank(bus_link, WINDOWS, timing=SerialTiming(BAUD, "E"), baud=BAUD) as bank,
    ):
        config_path = directory / "site.toml"
        config_path.write_text(hall_config_text(
            printer_port=printer_link.port_name, screens_port=screen_link.port_name,
            bus_port=bus_link.port_name, clips_dir=clips_dir, wav_dir=wav_dir,
            journal=directory / "journal.db", http_port=http_port, mqtt_port=mqtt_port,
            progress_url=progress_url),
            encoding="utf-8")
        yield SimulatedHall(config_path, printer, screens, bank, wav_dir)


__all__ = ["BAUD", "HALL_SCREEN", "PROGRESS_URL", "SimulatedHall", "hall_config_text",
           "simulated_hall"]

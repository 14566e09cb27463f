"""``onedoor edge probe`` against the simulators of every device family."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from edge.config import parse_config
from edge.devices.probe import run_probe
from firmware_protocols import modbus_terminal as mt
from firmware_protocols.line import SerialTiming
from firmware_protocols.simulators.id_card_reader import SAM_ID, VirtualIdCardReader
from firmware_protocols.simulators.led_screens import ScreenLayout, VirtualLedScreens
from firmware_protocols.simulators.modbus_bank import ModbusTerminalBank
from firmware_protocols.simulators.printer import VirtualPrinter
from firmware_protocols.simulators.serial_link import PtyLink
from firmware_protocols.simulators.vendor_bank import VendorTerminalBank
from onedoor.cli import main

SITE = """
version = "v1"
[site]
id = "probe-test"
name = "探测测试"
town = "测试镇"
[[services]]
id = "shebao"
prefix = "A"
name_zh = "社保医保"
sla_minutes = 30
overtime_minutes = 20
[[windows]]
number = 1
services = {{ shebao = 1 }}
screen = 1
terminal = 11
[[windows]]
number = 2
services = {{ shebao = 1 }}
screen = 2
terminal = 12
[paths]
journal = "journal.db"
[devices.printer]
port = "{printer}"
[devices.screens]
port = "{screens}"
hall = 100
[devices.terminals]
kind = "{kind}"
port = "{terminals}"
[devices.id_card]
port = "{reader}"
service = "shebao"
"""


@pytest.fixture(params=["modbus", "vendor"])
def hall(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, ExitStack]]:
    kind: str = request.param
    with ExitStack() as stack:
        printer_link = stack.enter_context(PtyLink(SerialTiming(9600)))
        stack.enter_context(VirtualPrinter(printer_link, model="TM-T88V"))
        screen_link = stack.enter_context(PtyLink(SerialTiming(9600)))
        layouts = {1: ScreenLayout(), 100: ScreenLayout(lines=5)}  # screen 2 is missing
        stack.enter_context(VirtualLedScreens(screen_link, layouts))
        bus = stack.enter_context(PtyLink())
        if kind == "modbus":
            stack.enter_context(ModbusTerminalBank(
                bus, [11, 12], timing=SerialTiming(mt.DEFAULT_BAUD, mt.DEFAULT_PARITY)))
        else:
            stack.enter_context(VendorTerminalBank(bus, [11, 12], timing=SerialTiming(9600)))
        reader_link = stack.enter_context(PtyLink(SerialTiming(115200)))
        stack.enter_context(VirtualIdCardReader(reader_link))
        config = tmp_path / "site.toml"
        config.write_text(SITE.format(printer=printer_link.port_name,
                                      screens=screen_link.port_name, kind=kind,
                                      terminals=bus.port_name, reader=reader_link.port_name),
                          encoding="utf-8")
        yield config, stack


def test_probe_reports_every_family(hall: tuple[Path, ExitStack]) -> None:
    config_path, _ = hall
    results = {r.device: r for r in run_probe(parse_config(config_path.read_text()))}
    printer = results["printer"]
    assert printer.line == "9600 8N1"
    [answer] = printer.answers
    assert answer.answered
    assert answer.details["model"] == "TM-T88V"
    assert answer.details["maker"] == "onedoor"
    assert answer.details["status"] == "ok"
    assert answer.round_trip_ms is not None
    assert answer.round_trip_ms > 0
    screens = results["screens"]
    assert [(a.name, a.answered) for a in screens.answers] == [
        ("窗口1 0x01", True), ("窗口2 0x02", False), ("大厅 0x64", True)]
    assert not screens.ok  # the missing screen is the finding
    terminals = results["terminals"]
    assert [a.answered for a in terminals.answers] == [True, True]
    if terminals.line.startswith("modbus"):
        assert terminals.line == "modbus 19200 8E1"
        assert terminals.answers[0].details["device_type"] == "0x4f44 (onedoor terminal)"
    reader = results["id_card"]
    assert reader.answers[0].details == {"status": "OK", "sam_id": SAM_ID.hex(), "card": "none"}


def test_the_cli_prints_and_exits_non_zero_on_a_problem(
    hall: tuple[Path, ExitStack], capsys: pytest.CaptureFixture[str]
) -> None:
    config_path, _ = hall
    assert main(["edge", "probe", "--config", str(config_path), "--device", "printer"]) == 0
    out = capsys.readouterr().out
    assert "printer" in out
    assert "model=TM-T88V" in out
    assert main(["edge", "probe", "--config", str(config_path), "--json"]) == 1  # screen 2
    report = json.loads(capsys.readouterr().out)
    assert {r["device"] for r in report} == {"printer", "screens", "terminals", "id_card"}


def test_a_port_the_daemon_holds_is_named_as_such(tmp_path: Path) -> None:
    import serial

    with PtyLink(SerialTiming(9600)) as link, serial.Serial(link.port_name, exclusive=True):
        config = SITE.split("[devices.printer]")[0].replace("screen = 1\n", "").replace(
            "screen = 2\n", "").replace("terminal = 11\n", "").replace("terminal = 12\n", "")
        text = config.format() + f'[devices.printer]\nport = "{link.port_name}"\n'
        [result] = run_probe(parse_config(text))
    assert "stop it first" in result.error

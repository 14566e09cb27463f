"""The public names of the device drivers: pinned for the contract, resolvable for all."""

from __future__ import annotations

import importlib

import pytest

MODULES = ["base", "gpio", "id_card", "printer", "printer_ports", "probe", "screens",
           "serial_port", "terminals", "ticket", "voice"]


def test_the_contract_is_pinned() -> None:
    from edge.devices import base

    assert sorted(base.__all__) == [
        "Announcer",
        "Device",
        "DeviceConfigError",
        "DeviceError",
        "DeviceHealth",
        "DeviceInput",
        "DeviceKind",
        "DeviceStatusChanged",
        "DeviceTimeout",
        "GpioPanel",
        "HallCounts",
        "HealthState",
        "HealthTracker",
        "HelpButton",
        "IdCardRead",
        "InputMark",
        "InputQueue",
        "KeyPress",
        "Rating",
        "RatingReason",
        "ScreenBoard",
        "TerminalBus",
        "TerminalInput",
        "TicketButton",
        "TicketPrint",
        "TicketPrinter",
        "WindowKey",
        "stop_if_cancelled",
    ]


@pytest.mark.parametrize("name", MODULES)
def test_every_exported_name_exists(name: str) -> None:
    module = importlib.import_module(f"edge.devices.{name}")
    missing = [attr for attr in module.__all__ if not hasattr(module, attr)]
    assert missing == []


def test_errors_are_also_builtins() -> None:
    from edge.devices.base import DeviceConfigError, DeviceError, DeviceTimeout
    from edge.devices.serial_port import SerialPortError
    from edge.devices.voice import VoiceError

    assert issubclass(DeviceTimeout, TimeoutError)
    assert issubclass(DeviceConfigError, ValueError)
    assert issubclass(SerialPortError, OSError)
    for error in (DeviceTimeout, DeviceConfigError, SerialPortError, VoiceError):
        assert issubclass(error, DeviceError)

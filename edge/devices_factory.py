"""Builds the hall's drivers (``edge.devices``) from the site config.

The one place where config sections meet driver settings, so neither side
imports the other's shapes. Called inside the running event loop (gpiozero
and the drivers bind to it). ``ONEDOOR_GPIO_MOCK=1`` selects gpiozero's
``MockFactory`` (no header needed), as ``pin_factory = "mock"`` does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.config import EdgeConfig, GpioConfig
from edge.device_set import Drivers
from edge.devices.base import InputQueue
from edge.errors import ConfigInvalid

if TYPE_CHECKING:
    from edge.devices.terminals import TerminalDriver


# What each gpiozero pin factory imports and how to get it (gpiozero depends on none).
_BACKEND_INSTALL = {"lgpio": "lgpio: install onedoor[pi] (the Ansible edge role does)",
                    "rpigpio": "RPi.GPIO: pip install RPi.GPIO",
                    "pigpio": "pigpio: pip install pigpio, and run the pigpiod daemon"}


def _pin_factory(gpio: GpioConfig) -> Any:
    name = "mock" if os.environ.get("ONEDOOR_GPIO_MOCK") == "1" else gpio.pin_factory
    try:
        return _import_pin_factory(name)
    except ImportError as exc:
        raise ConfigInvalid("[devices.gpio]", [
            f"pin_factory: {name!r} needs the Python package {_BACKEND_INSTALL.get(name, name)}"
            f" ({sys.prefix}: {exc}), or choose another pin_factory"]) from None


def _import_pin_factory(name: str) -> Any:
    if name == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if name == "native":
        from gpiozero.pins.native import NativeFactory

        return NativeFactory()
    if name == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    if name == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    from gpiozero.pins.pigpio import PiGPIOFactory

    return PiGPIOFactory()


def build_devices(config: EdgeConfig, inputs: InputQueue, *,
                  pin_factory: Any = None) -> Drivers:
    """Every driver the config names, constructed but not started.

    ``pin_factory`` overrides the config's gpiozero factory (tests hold on to a
    ``MockFactory`` to press its pins).
    """
    devices = Drivers()
    section = config.devices
    if section.printer is not None:
        from edge.devices.printer import PrinterDriver, PrinterSettings

        devices.printer = PrinterDriver(
            PrinterSettings(port=section.printer.port, baudrate=section.printer.baud,
                            poll_interval_s=section.printer.poll_seconds,
                            reply_timeout_s=section.printer.timeout_ms / 1000), inputs)
    if section.screens is not None:
        from edge.devices.screens import HallScreen, ScreenDriver, ScreenSettings

        halls = () if section.screens.hall is None else (HallScreen(section.screens.hall),)
        devices.screens = ScreenDriver(
            ScreenSettings(port=section.screens.port,
                           window_screens={w.number: w.screen for w in config.windows
                                           if w.screen is not None},
                           hall_screens=halls, baudrate=section.screens.baud,
                           ack_timeout_s=section.screens.timeout_ms / 1000,
                           rs485=section.screens.rs485), inputs)
    if section.terminals is not None:
        devices.terminals = _terminal_bus(config, inputs)
    if section.audio is not None:
        from edge.devices.voice import AplaySink, AudioSink, ClipSet, VoiceDriver, WavDirectorySink

        audio = section.audio
        clips = ClipSet.load(Path(audio.clips_dir),
                             None if config.paths.clips is None else Path(config.paths.clips))
        sink: AudioSink = (WavDirectorySink(Path(audio.wav_dir))
                           if audio.output == "wav" and audio.wav_dir is not None
                           else AplaySink(audio.alsa_device))
        devices.announcer = VoiceDriver(clips, sink, inputs, repeat=audio.repeat)
    if section.id_card is not None:  # its reads: edge.kiosk.TicketDesk.card
        from edge.devices.id_card import IdCardReaderDriver, IdCardSettings

        devices.id_card = IdCardReaderDriver(
            IdCardSettings(port=section.id_card.port, baudrate=section.id_card.baud,
                           poll_interval_s=section.id_card.poll_ms / 1000), inputs)
    if section.gpio is not None:
        from edge.devices.gpio import GpioDriver, GpioSettings, HelpButtonPin, TicketButtonPin

        gpio = section.gpio
        leds: dict[str, int | str] = dict(gpio.leds)
        leds.update({f"help.{b.id}": b.led_pin for b in gpio.help_buttons
                     if b.led_pin is not None})
        devices.gpio = GpioDriver(
            GpioSettings(
                ticket_buttons=[TicketButtonPin(b.pin, b.service, b.klass)
                                for b in gpio.ticket_buttons],
                help_buttons=[HelpButtonPin(b.pin, b.id) for b in gpio.help_buttons],
                leds=leds, buzzer_pin=gpio.buzzer_pin, debounce_s=gpio.debounce_ms / 1000,
                long_press_s=gpio.long_press_ms / 1000),
            inputs, pin_factory=pin_factory if pin_factory is not None else _pin_factory(gpio))
    return devices


def _terminal_bus(config: EdgeConfig, inputs: InputQueue) -> TerminalDriver:
    from edge.devices.terminals import TerminalDriver, TerminalSettings

    bus = config.devices.terminals
    assert bus is not None
    return TerminalDriver(
        TerminalSettings(port=bus.port,
                         terminals={w.number: w.terminal for w in config.windows
                                    if w.terminal is not None},
                         bus=bus.kind, baudrate=bus.baud, parity=bus.parity, rs485=bus.rs485,
                         reply_timeout_s=bus.timeout_ms / 1000,
                         poll_interval_s=bus.poll_ms / 1000), inputs)


__all__ = ["build_devices"]

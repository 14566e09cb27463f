"""GPIO: 取号 ticket buttons, 呼叫帮办 help buttons, indicator LEDs and the buzzer (gpiozero).

gpiozero only reports raw edges here (``bounce_time=None``): debouncing and
long-press detection are onedoor's own, in :class:`ButtonDebouncer`, a pure
state machine fed with ``(level, time)`` and a clock that tests replace with a
fake one. Why our own: gpiozero's bounce handling differs between pin
factories (the mock factory ignores it) and it has no notion of a long press.

gpiozero calls edge callbacks from its own thread; :class:`GpioDriver` reads
the clock there (the closest to the real edge) and hands the edge to the
event loop with ``loop.call_soon_threadsafe``. Everything else runs on the
loop: the debouncer, timers that settle a bounce or detect a long press while
the button is still held, LEDs and the buzzer.

A ticket button issues on the debounced press. A help button asks for help on
a short press (decided at release) and acknowledges on a long press, as soon
as the hold passes ``long_press_s``, so staff feel the buzzer stop under
their finger.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from gpiozero import LED, Buzzer, DigitalInputDevice, GPIOZeroError

from fastpath.types import TicketClass

from .base import (
    DeviceConfigError,
    DeviceHealth,
    DeviceKind,
    HealthState,
    HealthTracker,
    HelpButton,
    InputQueue,
    TicketButton,
)

log = structlog.get_logger(__name__)

Seconds = Callable[[], float]  # a monotonic clock in seconds (time.monotonic; tests step it)
PinName = int | str  # gpiozero pin names: 17, "GPIO17", "BOARD11"


# --- the pure debouncer --------------------------------------------------------------------------
class ButtonEvent(enum.Enum):
    PRESSED = "pressed"  # debounced press (fires once per press)
    SHORT_RELEASE = "short_release"  # released before the long-press threshold
    LONG_PRESS = "long_press"  # held past the threshold (fires while still held)


class ButtonDebouncer:
    """Integrating debouncer: a level counts once it has been stable for ``debounce_s``.

    ``edge(level, at)`` records a raw edge and ``poll(now)`` returns what became
    true by ``now``. Call ``poll`` after each edge and when :meth:`next_deadline`
    comes; calling it more often is harmless. Before recording an edge,
    ``edge`` settles the previous level as of ``at``, so a loop that falls
    behind and delivers a press and its release together loses neither.
    """

    def __init__(self, debounce_s: float, long_press_s: float | None) -> None:
        if debounce_s < 0:
            raise DeviceConfigError(f"debounce must be >= 0 s, got {debounce_s}")
        if long_press_s is not None and long_press_s <= debounce_s:
            raise DeviceConfigError(
                f"long press ({long_press_s} s) must be longer than debounce ({debounce_s} s)"
            )
        self.debounce_s = debounce_s
        self.long_press_s = long_press_s
        self._raw = False
        self._raw_since = 0.0
        self._stable = False
        self._pressed_at = 0.0
        self._long_fired = False

    @property
    def pressed(self) -> bool:
        return self._stable

    def edge(self, level: bool, at: float) -> list[ButtonEvent]:
        """Record a raw edge at ``at``; returns what had settled just before it."""
        settled = self.poll(at)
        if level != self._raw:
            self._raw = level
            self._raw_since = at
        return settled

    def next_deadline(self) -> float | None:
        """When ``poll`` may next have something to say, or None when nothing is pending."""
        if self._raw != self._stable:
            return self._raw_since + self.debounce_s
        if self._stable and self.long_press_s is not None and not self._long_fired:
            return self._pressed_at + self.long_press_s
        return None

    def poll(self, now: float) -> list[ButtonEvent]:
        events: list[ButtonEvent] = []
        if self._raw != self._stable and now - self._raw_since >= self.debounce_s:
            self._stable = self._raw
            if self._stable:
                self._pressed_at = self._raw_since
                self._long_fired = False
                events.append(ButtonEvent.PRESSED)
            elif not self._long_fired:
                events.append(ButtonEvent.SHORT_RELEASE)
        if (
            self._stable
            and self.long_press_s is not None
            and not self._long_fired
            and now - self._pressed_at >= self.long_press_s
        ):
            self._long_fired = True
            events.append(ButtonEvent.LONG_PRESS)
        return events


# --- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TicketButtonPin:
    pin: PinName
    service_id: str
    klass: TicketClass = TicketClass.NORMAL


@dataclass(frozen=True, slots=True)
class HelpButtonPin:
    pin: PinName
    button_id: str


@dataclass(frozen=True, slots=True)
class GpioSettings:
    ticket_buttons: Sequence[TicketButtonPin] = ()
    help_buttons: Sequence[HelpButtonPin] = ()
    leds: Mapping[str, PinName] = field(default_factory=dict)  # name -> pin ("help.1": 22)
    buzzer_pin: PinName | None = None
    debounce_s: float = 0.03
    long_press_s: float = 1.5
    buttons_pull_up: bool = True  # buttons switch to ground (the usual wiring)


# --- the driver ----------------------------------------------------------------------------------
@dataclass(slots=True)
class _Button:
    name: str
    device: DigitalInputDevice
    debouncer: ButtonDebouncer
    on_events: Callable[[list[ButtonEvent]], None]
    timer: asyncio.TimerHandle | None = None


class GpioDriver:
    """Buttons in, LEDs and buzzer out. Implements :class:`~edge.devices.base.GpioPanel`.

    Build it inside the running event loop. ``pin_factory`` None means
    gpiozero's default (lgpio on a Pi); tests pass a ``MockFactory``.
    """

    def __init__(
        self,
        settings: GpioSettings,
        inputs: InputQueue,
        *,
        device_id: str = "gpio",
        clock: Seconds = time.monotonic,
        pin_factory: Any = None,
    ) -> None:
        self._settings = settings
        self._inputs = inputs
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._health = HealthTracker(device_id, DeviceKind.GPIO, inputs)
        self._buttons: list[_Button] = []
        self._leds: dict[str, LED] = {}
        self._buzzer: Buzzer | None = None
        self._buzz_off: asyncio.TimerHandle | None = None
        self._check_pins_unique()
        try:
            for ticket in settings.ticket_buttons:
                self._add_button(
                    f"ticket.{ticket.service_id}.{ticket.klass.name.lower()}",
                    ticket.pin,
                    None,
                    self._ticket_handler(ticket),
                    pin_factory,
                )
            for help_button in settings.help_buttons:
                self._add_button(
                    f"help.{help_button.button_id}",
                    help_button.pin,
                    settings.long_press_s,
                    self._help_handler(help_button),
                    pin_factory,
                )
            for name, pin in settings.leds.items():
                self._leds[name] = LED(pin, pin_factory=pin_factory)
            if settings.buzzer_pin is not None:
                self._buzzer = Buzzer(settings.buzzer_pin, pin_factory=pin_factory)
        except GPIOZeroError as exc:
            self.close()
            raise DeviceConfigError(f"GPIO setup failed: {exc}") from exc

    def _check_pins_unique(self) -> None:
        s = self._settings
        pins: list[tuple[str, PinName]] = [
            *((f"ticket button {b.service_id}", b.pin) for b in s.ticket_buttons),
            *((f"help button {b.button_id}", b.pin) for b in s.help_buttons),
            *((f"LED {name}", pin) for name, pin in s.leds.items()),
        ]
        if s.buzzer_pin is not None:
            pins.append(("buzzer", s.buzzer_pin))
        seen: dict[str, str] = {}
        for owner, pin in pins:
            key = str(pin).upper().removeprefix("GPIO")
            if key in seen:
                raise DeviceConfigError(f"pin {pin} is used by both {seen[key]} and {owner}")
            seen[key] = owner

    def _add_button(
        self,
        name: str,
        pin: PinName,
        long_press_s: float | None,
        on_events: Callable[[list[ButtonEvent]], None],
        pin_factory: Any,
    ) -> None:
        device = DigitalInputDevice(
            pin, pull_up=self._settings.buttons_pull_up, bounce_time=None, pin_factory=pin_factory
        )
        button = _Button(
            name, device, ButtonDebouncer(self._settings.debounce_s, long_press_s), on_events
        )
        # Called on gpiozero's thread: stamp the time there, do the rest on the loop.
        device.when_activated = lambda: self._from_thread(button, True)
        device.when_deactivated = lambda: self._from_thread(button, False)
        self._buttons.append(button)

    def _from_thread(self, button: _Button, level: bool) -> None:
        at = self._clock()
        self._loop.call_soon_threadsafe(self._on_edge, button, level, at)

    def _on_edge(self, button: _Button, level: bool, at: float) -> None:
        self._settle(button, button.debouncer.edge(level, at))

    def _settle(self, button: _Button, events: list[ButtonEvent] | None = None) -> None:
        now = self._clock()
        events = [*(events or ()), *button.debouncer.poll(now)]
        if events:
            button.on_events(events)
        if button.timer is not None:
            button.timer.cancel()
            button.timer = None
        deadline = button.debouncer.next_deadline()
        if deadline is not None:
            button.timer = self._loop.call_later(max(0.0, deadline - now), self._settle, button)

    def poll(self) -> None:
        """Settle every button against the clock now (the timers do this by themselves;
        tests with a fake clock call it after advancing time)."""
        for button in self._buttons:
            self._settle(button)

    def _ticket_handler(self, ticket: TicketButtonPin) -> Callable[[list[ButtonEvent]], None]:
        def handle(events: list[ButtonEvent]) -> None:
            if ButtonEvent.PRESSED in events:
                log.info("gpio.ticket_button", service=ticket.service_id, klass=ticket.klass.name)
                self._inputs.put_nowait(TicketButton(ticket.service_id, ticket.klass))

        return handle

    def _help_handler(self, help_button: HelpButtonPin) -> Callable[[list[ButtonEvent]], None]:
        def handle(events: list[ButtonEvent]) -> None:
            for event in events:
                if event is ButtonEvent.PRESSED:
                    continue
                long_press = event is ButtonEvent.LONG_PRESS
                log.info("gpio.help_button", button=help_button.button_id, long_press=long_press)
                self._inputs.put_nowait(HelpButton(help_button.button_id, long_press))

        return handle

    # --- outputs ---------------------------------------------------------------------------------
    def set_led(self, name: str, on: bool) -> None:
        try:
            led = self._leds[name]
        except KeyError:
            raise DeviceConfigError(
                f"no LED named {name!r}; configured: {sorted(self._leds)}"
            ) from None
        led.value = on

    def buzz(self, ms: int) -> None:
        """Sound the buzzer for ``ms``; a new buzz while one sounds extends it."""
        if ms <= 0:
            raise ValueError(f"buzz duration must be > 0 ms, got {ms}")
        if self._buzzer is None:
            log.warning("gpio.no_buzzer", ms=ms)
            return
        self._buzzer.on()
        if self._buzz_off is not None:
            self._buzz_off.cancel()
        self._buzz_off = self._loop.call_later(ms / 1000, self._buzzer_off)

    def _buzzer_off(self) -> None:
        self._buzz_off = None
        if self._buzzer is not None:
            self._buzzer.off()

    # --- lifecycle -------------------------------------------------------------------------------
    def health(self) -> DeviceHealth:
        return self._health.current

    async def run(self) -> None:
        """Hold the pins until cancelled; the work happens in callbacks and timers."""
        try:
            await asyncio.Event().wait()
        finally:
            self.close()

    def close(self) -> None:
        for button in self._buttons:
            if button.timer is not None:
                button.timer.cancel()
            button.device.close()
        for led in self._leds.values():
            led.close()
        if self._buzz_off is not None:
            self._buzz_off.cancel()
        if self._buzzer is not None:
            self._buzzer.close()
        self._buttons.clear()
        self._leds.clear()
        self._buzzer = None
        self._health.set(HealthState.OFFLINE, "closed")


__all__ = [
    "ButtonDebouncer",
    "ButtonEvent",
    "GpioDriver",
    "GpioSettings",
    "HelpButtonPin",
    "TicketButtonPin",
]

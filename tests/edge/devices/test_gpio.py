"""GPIO driver against gpiozero mock pins; debounce and long press with a fake clock."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from edge.devices.base import DeviceConfigError, DeviceInput, HelpButton, TicketButton
from edge.devices.gpio import (
    ButtonDebouncer,
    ButtonEvent,
    GpioDriver,
    GpioSettings,
    HelpButtonPin,
    TicketButtonPin,
)
from fastpath.types import TicketClass

TICKET_PIN, PRIORITY_PIN, HELP_PIN, HELP_LED_PIN, BUZZER_PIN = 17, 27, 22, 23, 24


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = None


SETTINGS = GpioSettings(
    ticket_buttons=(
        TicketButtonPin(TICKET_PIN, "huji"),
        TicketButtonPin(PRIORITY_PIN, "huji", TicketClass.PRIORITY),
    ),
    help_buttons=(HelpButtonPin(HELP_PIN, "self-service-1"),),
    leds={"help.self-service-1": HELP_LED_PIN},
    buzzer_pin=BUZZER_PIN,
    debounce_s=0.03,
    long_press_s=1.5,
)


def drain(queue: asyncio.Queue[DeviceInput]) -> list[DeviceInput]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def run_with_driver(
    mock_pins: MockFactory,
    scenario: Callable[[GpioDriver, asyncio.Queue[DeviceInput], FakeClock], Awaitable[None]],
    settings: GpioSettings = SETTINGS,
) -> None:
    async def main() -> None:
        queue: asyncio.Queue[DeviceInput] = asyncio.Queue()
        clock = FakeClock()
        driver = GpioDriver(settings, queue, clock=clock, pin_factory=mock_pins)
        try:
            await scenario(driver, queue, clock)
        finally:
            driver.close()

    asyncio.run(main())


async def settle(driver: GpioDriver) -> None:
    await asyncio.sleep(0)  # let call_soon_threadsafe callbacks run
    driver.poll()


# --- the pure debouncer ----------------------------------------------------------------------
def test_bounces_within_debounce_give_one_press() -> None:
    d = ButtonDebouncer(0.03, None)
    t = 10.0
    for i, level in enumerate([True, False, True, False, True]):
        d.edge(level, t + i * 0.002)
    assert d.poll(t + 0.02) == []
    assert d.poll(t + 0.008 + 0.031) == [ButtonEvent.PRESSED]
    assert d.poll(t + 1.0) == []
    assert d.pressed


def test_glitch_shorter_than_debounce_is_ignored() -> None:
    d = ButtonDebouncer(0.03, None)
    d.edge(True, 5.0)
    d.edge(False, 5.01)
    assert d.poll(5.5) == []
    assert not d.pressed
    assert d.next_deadline() is None


def test_long_press_fires_once_while_held_and_release_is_silent() -> None:
    d = ButtonDebouncer(0.03, 1.5)
    d.edge(True, 0.0)
    assert d.poll(0.05) == [ButtonEvent.PRESSED]
    assert d.next_deadline() == pytest.approx(1.5)
    assert d.poll(1.49) == []
    assert d.poll(1.5) == [ButtonEvent.LONG_PRESS]
    assert d.poll(3.0) == []
    d.edge(False, 3.0)
    assert d.poll(3.1) == []
    assert d.next_deadline() is None


def test_short_press_is_reported_at_release() -> None:
    d = ButtonDebouncer(0.03, 1.5)
    assert d.edge(True, 0.0) == []
    # Nobody polled in between (a busy loop): the release edge settles the press first.
    assert d.edge(False, 0.4) == [ButtonEvent.PRESSED]
    assert d.poll(1.0) == [ButtonEvent.SHORT_RELEASE]
    assert d.poll(2.0) == []


@pytest.mark.parametrize(("debounce", "long_press"), [(-0.01, None), (0.05, 0.05), (0.05, 0.01)])
def test_bad_timings_are_refused(debounce: float, long_press: float | None) -> None:
    with pytest.raises(DeviceConfigError):
        ButtonDebouncer(debounce, long_press)


# --- the driver on mock pins -----------------------------------------------------------------
def test_bouncy_ticket_press_issues_exactly_one_ticket(mock_pins: MockFactory) -> None:
    async def scenario(
        driver: GpioDriver, queue: asyncio.Queue[DeviceInput], clock: FakeClock
    ) -> None:
        pin = mock_pins.pin(TICKET_PIN)
        for _ in range(4):  # contact bounce: low/high within a few ms
            pin.drive_low()
            clock.advance(0.002)
            pin.drive_high()
            clock.advance(0.002)
        pin.drive_low()
        await settle(driver)
        assert drain(queue) == []  # not stable for 30 ms yet
        clock.advance(0.031)
        await settle(driver)
        assert drain(queue) == [TicketButton("huji", TicketClass.NORMAL)]
        clock.advance(5)
        pin.drive_high()
        clock.advance(0.05)
        await settle(driver)
        assert drain(queue) == []

    run_with_driver(mock_pins, scenario)


def test_priority_button_carries_its_class(mock_pins: MockFactory) -> None:
    async def scenario(
        driver: GpioDriver, queue: asyncio.Queue[DeviceInput], clock: FakeClock
    ) -> None:
        mock_pins.pin(PRIORITY_PIN).drive_low()
        clock.advance(0.05)
        await settle(driver)
        assert drain(queue) == [TicketButton("huji", TicketClass.PRIORITY)]

    run_with_driver(mock_pins, scenario)


def test_help_short_press_requests_and_long_press_acknowledges(mock_pins: MockFactory) -> None:
    async def scenario(
        driver: GpioDriver, queue: asyncio.Queue[DeviceInput], clock: FakeClock
    ) -> None:
        pin = mock_pins.pin(HELP_PIN)
        pin.drive_low()
        clock.advance(0.3)
        await settle(driver)
        assert drain(queue) == []  # undecided until release or the long-press threshold
        pin.drive_high()
        clock.advance(0.05)
        await settle(driver)
        assert drain(queue) == [HelpButton("self-service-1", long_press=False)]

        pin.drive_low()
        clock.advance(1.0)
        await settle(driver)
        assert drain(queue) == []
        clock.advance(0.6)  # held 1.6 s: acknowledged while still held
        await settle(driver)
        assert drain(queue) == [HelpButton("self-service-1", long_press=True)]
        clock.advance(2.0)
        pin.drive_high()
        clock.advance(0.05)
        await settle(driver)
        assert drain(queue) == []  # the release after a long press says nothing more

    run_with_driver(mock_pins, scenario)


def test_edges_from_another_thread_reach_the_loop(mock_pins: MockFactory) -> None:
    """Real clock and real timers: gpiozero's thread → call_soon_threadsafe → the queue."""
    settings = GpioSettings(ticket_buttons=(TicketButtonPin(TICKET_PIN, "gongan"),))

    async def main() -> None:
        queue: asyncio.Queue[DeviceInput] = asyncio.Queue()
        driver = GpioDriver(settings, queue, pin_factory=mock_pins)
        seen_threads: list[str] = []
        original = driver._on_edge

        def spy(*args: object) -> None:
            seen_threads.append(threading.current_thread().name)
            original(*args)  # type: ignore[arg-type]

        driver._on_edge = spy  # type: ignore[method-assign,assignment]
        try:
            pin = mock_pins.pin(TICKET_PIN)
            thread = threading.Thread(target=pin.drive_low, name="gpio-callback")
            thread.start()
            thread.join()
            got = await asyncio.wait_for(queue.get(), timeout=2)
            assert got == TicketButton("gongan", TicketClass.NORMAL)
            assert seen_threads == [threading.main_thread().name]
        finally:
            driver.close()

    asyncio.run(main())


def test_leds_and_buzzer(mock_pins: MockFactory) -> None:
    async def scenario(
        driver: GpioDriver, queue: asyncio.Queue[DeviceInput], clock: FakeClock
    ) -> None:
        led = mock_pins.pin(HELP_LED_PIN)
        buzzer = mock_pins.pin(BUZZER_PIN)
        driver.set_led("help.self-service-1", True)
        assert led.state
        driver.set_led("help.self-service-1", False)
        assert not led.state
        with pytest.raises(DeviceConfigError, match=r"no LED named 'help\.9'"):
            driver.set_led("help.9", True)
        driver.buzz(30)
        assert buzzer.state
        extended_at = time.monotonic()
        driver.buzz(600)  # extends: the first 30 ms no longer switch it off
        await asyncio.sleep(0.1)
        assert buzzer.state
        while buzzer.state:
            assert time.monotonic() - extended_at < 5
            await asyncio.sleep(0.01)
        assert time.monotonic() - extended_at >= 0.6
        with pytest.raises(ValueError, match="buzz duration"):
            driver.buzz(0)

    run_with_driver(mock_pins, scenario)


def test_a_pin_used_twice_is_refused(mock_pins: MockFactory) -> None:
    settings = GpioSettings(
        ticket_buttons=(TicketButtonPin(17, "huji"),), leds={"help.1": "GPIO17"}
    )

    async def main() -> None:
        with pytest.raises(DeviceConfigError, match="pin GPIO17 is used by both"):
            GpioDriver(settings, asyncio.Queue(), pin_factory=mock_pins)

    asyncio.run(main())


def test_an_unknown_pin_is_a_config_error(mock_pins: MockFactory) -> None:
    settings = GpioSettings(ticket_buttons=(TicketButtonPin("GPIO99", "huji"),))

    async def main() -> None:
        with pytest.raises(DeviceConfigError, match="GPIO setup failed"):
            GpioDriver(settings, asyncio.Queue(), pin_factory=mock_pins)

    asyncio.run(main())


def test_press_and_release_delivered_together_lose_nothing(mock_pins: MockFactory) -> None:
    """The loop was busy: both edges reach it at once, stamped with their own times."""

    async def scenario(
        driver: GpioDriver, queue: asyncio.Queue[DeviceInput], clock: FakeClock
    ) -> None:
        ticket, help_pin = mock_pins.pin(TICKET_PIN), mock_pins.pin(HELP_PIN)
        ticket.drive_low()
        help_pin.drive_low()
        clock.advance(0.2)
        ticket.drive_high()
        help_pin.drive_high()
        clock.advance(0.2)
        await settle(driver)
        assert drain(queue) == [
            TicketButton("huji", TicketClass.NORMAL),
            HelpButton("self-service-1", long_press=False),
        ]

    run_with_driver(mock_pins, scenario)

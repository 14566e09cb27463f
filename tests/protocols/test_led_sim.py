"""Virtual LED screens on one pty bus, driven with real pyserial."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import serial

from firmware_protocols import led
from firmware_protocols.errors import LocalProtocolError
from firmware_protocols.led import (
    BROADCAST,
    Ack,
    Clear,
    Colour,
    Effect,
    LedEvent,
    Nack,
    NackReason,
    Ping,
    SetBrightness,
    SetClock,
    ShowText,
)
from firmware_protocols.simulators.led_screens import (
    ScreenLayout,
    ShownText,
    VirtualLedScreens,
    render_screen,
)
from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HALL = 0x10
LAYOUTS = {1: ScreenLayout(), 2: ScreenLayout(), HALL: ScreenLayout(areas=2, lines=3, columns=20)}


@pytest.fixture
def screens() -> Iterator[VirtualLedScreens]:
    with PtyLink(SerialTiming(115200)) as link, VirtualLedScreens(link, LAYOUTS) as bus:
        yield bus


@pytest.fixture
def port(screens: VirtualLedScreens) -> Iterator[serial.Serial]:
    with serial.Serial(screens.port, 115200, timeout=1.0) as handle:
        yield handle


def send(port: serial.Serial, event: LedEvent) -> LedEvent | None:
    """Write one frame; read the answer, None when none comes within the timeout."""
    port.write(led.encode(event))
    return read_reply(port)


def read_reply(port: serial.Serial) -> LedEvent | None:
    decoder = led.LedDecoder()
    while True:
        got = decoder.next_event()
        if got is not led.NEED_DATA:
            return got
        chunk = port.read(1 if not decoder.pending_bytes else max(1, 9 - decoder.pending_bytes))
        if not chunk:
            return None
        decoder.receive_data(chunk)


def test_show_text_on_window_bars_and_hall_screen(
    screens: VirtualLedScreens, port: serial.Serial
) -> None:
    assert send(port, ShowText(1, 1, "请A012到1号窗口")) == Ack(1, 1)
    assert send(port, ShowText(2, 2, "暂停服务", colour=Colour.YELLOW)) == Ack(2, 2)
    hall_lines = ["窗口  当前号  下一号", "1号   A012    A013", "2号   B007    B008"]
    for line, text in enumerate(hall_lines):
        assert send(port, ShowText(HALL, 10 + line, text, area=0, line=line)) == Ack(
            HALL, 10 + line
        )
    notice = ShowText(
        HALL, 20, "今日已办件 1234 件，欢迎光临", area=1, line=0,
        colour=Colour.GREEN, effect=Effect.SCROLL_LEFT, speed=5,
    )  # fmt: skip
    assert send(port, notice) == Ack(HALL, 20)
    assert screens.text(1) == "请A012到1号窗口"
    assert screens.text(2) == "暂停服务"
    assert screens.screen(2).shown[0, 0].colour == Colour.YELLOW
    assert [screens.text(HALL, 0, line) for line in range(3)] == hall_lines
    assert screens.screen(HALL).shown[1, 0] == ShownText(
        "今日已办件 1234 件，欢迎光临", Colour.GREEN, Effect.SCROLL_LEFT, 5
    )
    stats = screens.stats
    assert (stats.frames, stats.acks_sent, stats.nacks_sent, stats.crc_errors) == (6, 6, 0, 0)
    ARTIFACTS.mkdir(exist_ok=True)
    for name, address in (("led_window_bar", 1), ("led_hall_screen", HALL)):
        picture = render_screen(screens.screen(address))
        picture.save(ARTIFACTS / f"{name}.png")
        histogram = picture.getchannel("R").histogram()
        brightest_red = max(value for value, count in enumerate(histogram) if count)
        assert brightest_red > 100  # some LED is lit red (unlit dots are 40)


def test_empty_text_blanks_a_line_and_clear(
    screens: VirtualLedScreens, port: serial.Serial
) -> None:
    for line in range(3):
        send(port, ShowText(HALL, line, f"A00{line}", area=0, line=line))
    send(port, ShowText(HALL, 3, "通知", area=1, line=0))
    assert send(port, ShowText(HALL, 4, "", area=0, line=1)) == Ack(HALL, 4)
    assert screens.text(HALL, 0, 1) == ""
    assert send(port, Clear(HALL, 5, area=0)) == Ack(HALL, 5)
    assert screens.text(HALL, 0, 0) == ""
    assert screens.text(HALL, 1, 0) == "通知"
    assert send(port, Clear(HALL, 6)) == Ack(HALL, 6)  # every area
    assert screens.screen(HALL).shown == {}


def test_broadcast_is_applied_everywhere_and_never_answered(
    screens: VirtualLedScreens, port: serial.Serial
) -> None:
    port.timeout = 0.2
    when = datetime(2026, 11, 23, 8, 30, 0)
    assert send(port, SetBrightness(BROADCAST, 1, 3)) is None
    assert send(port, SetClock(BROADCAST, 2, when)) is None
    assert send(port, ShowText(BROADCAST, 3, "系统维护中")) is None
    for address in LAYOUTS:
        state = screens.screen(address)
        assert (state.brightness, state.clock, state.text()) == (3, when, "系统维护中")
    assert screens.stats.broadcasts == 3
    assert screens.stats.acks_sent == 0


def test_ping_clock_brightness(screens: VirtualLedScreens, port: serial.Serial) -> None:
    assert send(port, Ping(2, 200)) == Ack(2, 200)
    assert send(port, SetBrightness(2, 201, 15)) == Ack(2, 201)
    when = datetime(2026, 11, 23, 9, 0, 1)
    assert send(port, SetClock(2, 202, when)) == Ack(2, 202)
    state = screens.screen(2)
    assert (state.pings, state.brightness, state.clock, state.frames) == (1, 15, when, 3)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (led.encode(ShowText(1, 9, "A001", area=1)), NackReason.BAD_PARAMETER),  # no area 1
        (led.encode(ShowText(HALL, 9, "A001", area=0, line=3)), NackReason.BAD_PARAMETER),
        (led.encode(Clear(1, 9, area=4)), NackReason.BAD_PARAMETER),
        (led.encode_frame(1, 0x10, 9, b"\x00\x00\x01\x00\x00\xd6"), NackReason.BAD_TEXT),
        (led.encode_frame(1, 0x55, 9), NackReason.UNKNOWN_COMMAND),
        (led.encode_frame(1, 0x12, 9, b"\x01\x02"), NackReason.BAD_LENGTH),
        (led.encode_frame(1, 0x12, 9, b"\x20"), NackReason.BAD_PARAMETER),
    ],
)
def test_refused_frames_get_nack_with_reason(
    screens: VirtualLedScreens, port: serial.Serial, frame: bytes, reason: NackReason
) -> None:
    port.write(frame)
    address = frame[2]
    assert read_reply(port) == Nack(address, 9, reason)
    assert screens.stats.nacks_sent == 1
    assert send(port, Ping(address, 10)) == Ack(address, 10)  # the screen carries on


def test_bad_crc_unknown_address_and_dead_screen_get_no_answer(
    screens: VirtualLedScreens, port: serial.Serial
) -> None:
    port.timeout = 0.2
    corrupt = bytearray(led.encode(ShowText(1, 1, "A001")))
    corrupt[9] ^= 0x40
    port.write(bytes(corrupt))
    assert read_reply(port) is None
    assert screens.stats.crc_errors == 1
    assert screens.text(1) == ""
    assert send(port, Ping(0x33, 2)) is None  # nobody at 0x33
    screens.set_dead(2)
    assert send(port, Ping(2, 3)) is None
    screens.set_dead(2, dead=False)
    port.timeout = 1.0
    assert send(port, Ping(2, 4)) == Ack(2, 4)
    assert screens.stats.not_for_us == 1
    with pytest.raises(LocalProtocolError, match="no screen"):
        screens.set_dead(0x44)


def test_truncated_frame_is_dropped_when_the_line_goes_quiet(
    screens: VirtualLedScreens, port: serial.Serial
) -> None:
    port.write(led.encode(ShowText(1, 1, "A001"))[:-4])
    screens.wait_until(lambda: screens.stats.framing_errors == 1, 2.0)
    assert screens.pending_bytes == 0
    assert send(port, ShowText(1, 2, "A002")) == Ack(1, 2)
    assert screens.text(1) == "A002"


def test_garbage_is_counted_and_the_bus_resynchronises(
    screens: VirtualLedScreens, port: serial.Serial
) -> None:
    rng = random.Random(7)
    garbage = bytes(rng.randrange(256) for _ in range(4000))
    garbage += b"\xaa\x55\x01\x10\x00\x02\x00" + bytes(40)  # a plausible header, never finished
    port.write(garbage)
    screens.wait_until(lambda: screens.stats.skipped_bytes > 1000, 3.0)
    screens.wait_until(lambda: screens.pending_bytes == 0, 3.0)  # the idle line ended it
    port.reset_input_buffer()
    assert send(port, ShowText(1, 77, "恢复正常")) == Ack(1, 77)
    assert screens.running
    stats = screens.stats
    assert stats.framing_errors + stats.crc_errors >= 1


def test_replies_take_their_honest_time_at_9600_baud() -> None:
    timing = SerialTiming(9600)
    frame = led.encode(ShowText(1, 5, "请A012到1号窗口"))
    with (
        PtyLink(timing) as link,
        VirtualLedScreens(link, [1]) as bus,
        serial.Serial(bus.port, 9600, timeout=2.0) as handle,
    ):
        started = time.monotonic()
        handle.write(frame)
        assert read_reply(handle) == Ack(1, 5)
        elapsed = time.monotonic() - started
    assert elapsed >= timing.transmit_seconds(len(frame) + 9)


def test_construction_errors() -> None:
    with PtyLink() as link:
        with pytest.raises(LocalProtocolError, match=r"1\.\.254"):
            VirtualLedScreens(link, [BROADCAST])
        with pytest.raises(LocalProtocolError, match="at least one"):
            VirtualLedScreens(link, [])
    with pytest.raises(LocalProtocolError, match="areas"):
        ScreenLayout(areas=0)

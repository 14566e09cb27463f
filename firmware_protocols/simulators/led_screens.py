"""Virtual LED screens (window bars and the hall screen) sharing one RS485 bus on a pty.

Usage::

    layouts = {1: ScreenLayout(), 2: ScreenLayout(), 0x10: ScreenLayout(areas=2, lines=4)}
    with PtyLink(SerialTiming(9600)) as link, VirtualLedScreens(link, layouts) as screens:
        port = serial.Serial(screens.port, 9600, timeout=0.5)   # the daemon's side
        port.write(led.encode(led.ShowText(1, 7, "请A012到1号窗口")))
        led.decode_all(port.read(9))                            # [Ack(address=1, seq=7)]
        screens.text(1)                                          # "请A012到1号窗口"
        render_screen(screens.screen(0x10)).save("hall.png")

Each screen answers frames addressed to it whose CRC is good: ACK when it
applied the frame, NACK with the reason when not (unknown command, bad
length, a field out of range, an area or line the screen does not have, text
not in GB2312). Broadcast frames (0xFF) are applied by every screen and never
answered; frames for addresses not on this bus, and ACK/NACK frames, are
ignored. A frame with a bad CRC gets no answer. Every kind of bad input is
counted in :class:`BusStats`; nothing stops the bus. A quiet line
(``idle_seconds``) ends a frame that was cut short.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from typing import Final

import structlog
from PIL import Image, ImageDraw, ImageFont

from firmware_protocols import led
from firmware_protocols.errors import ChecksumError, LocalProtocolError, ProtocolError
from firmware_protocols.led import (
    BROADCAST,
    Ack,
    Clear,
    Colour,
    Effect,
    LedEvent,
    LedFrameError,
    Nack,
    NackReason,
    Ping,
    SetBrightness,
    SetClock,
    ShowText,
)

from .printer import FONT_REGULAR
from .serial_link import PtyDevice, PtyLink

log = structlog.get_logger(__name__)

LED_FONT_PIXELS: Final = 16  # 16x16 GB2312 dot-matrix font: 8 dots for ASCII


@dataclass(frozen=True, slots=True)
class ScreenLayout:
    """What a screen can show: ``areas`` x ``lines`` lines of ``columns`` 16-dot cells."""

    areas: int = 1
    lines: int = 1
    columns: int = 16  # a 256x16 window bar shows 16 Chinese characters

    def __post_init__(self) -> None:
        for name, value, top in (
            ("areas", self.areas, 0xFE),
            ("lines", self.lines, 0xFE),
            ("columns", self.columns, 256),
        ):
            if not 1 <= value <= top:
                raise LocalProtocolError(f"screen {name} must be 1..{top}, got {value}")


@dataclass(frozen=True, slots=True)
class ShownText:
    text: str
    colour: Colour
    effect: Effect
    speed: int


@dataclass(frozen=True, slots=True)
class ScreenState:
    """A snapshot of one screen."""

    address: int
    layout: ScreenLayout
    shown: Mapping[tuple[int, int], ShownText] = field(default_factory=dict)  # (area, line)
    brightness: int = 8
    clock: datetime | None = None  # the time last set, as sent (the screen keeps no clock here)
    pings: int = 0
    frames: int = 0  # frames applied (broadcasts included)

    def text(self, area: int = 0, line: int = 0) -> str:
        shown = self.shown.get((area, line))
        return shown.text if shown else ""


@dataclass(frozen=True, slots=True)
class BusStats:
    """What the bus saw, garbage included."""

    frames: int = 0  # well-formed frames with a good CRC
    acks_sent: int = 0
    nacks_sent: int = 0
    broadcasts: int = 0
    not_for_us: int = 0  # frames for addresses not on this bus, and ACK/NACK frames
    crc_errors: int = 0
    frame_errors: int = 0  # good CRC, bad contents (answered with NACK when addressed)
    framing_errors: int = 0  # oversized length fields, frames cut short
    skipped_bytes: int = 0  # bytes dropped while hunting for AA 55


class VirtualLedScreens(PtyDevice):
    """Several LED screens on one bus (see the module docstring)."""

    def __init__(
        self,
        link: PtyLink,
        screens: Mapping[int, ScreenLayout] | Iterable[int],
        *,
        idle_seconds: float = 0.05,
        reply_delay: float = 0.0,
    ) -> None:
        super().__init__(link, idle_seconds=idle_seconds, reply_delay=reply_delay)
        layouts = (
            dict(screens)
            if isinstance(screens, Mapping)
            else {address: ScreenLayout() for address in screens}
        )
        if not layouts:
            raise LocalProtocolError("a bus needs at least one screen")
        for address in layouts:
            if not 1 <= address <= 0xFE:
                raise LocalProtocolError(f"screen address must be 1..254, got {address}")
        self._screens = {
            address: ScreenState(address, layout) for address, layout in layouts.items()
        }
        self._dead: set[int] = set()
        self._decoder = led.LedDecoder()
        self._stats = BusStats()

    # --- device thread -------------------------------------------------------------------------
    def _on_bytes(self, data: bytes) -> bytes:
        self._decoder.receive_data(data)
        return self._drain()

    def _on_idle(self) -> bytes:
        self._decoder.line_idle()
        return self._drain()

    def _count(self, **increments: int) -> None:
        self._stats = replace(
            self._stats,
            **{name: getattr(self._stats, name) + value for name, value in increments.items()},
        )

    def _drain(self) -> bytes:
        answer = bytearray()
        while True:
            try:
                event = self._decoder.next_event()
            except LedFrameError as exc:
                self._count(frame_errors=1)
                log.warning("led_bus.frame_refused", port=self.port, error=str(exc))
                answer += self._nack(exc.address, exc.seq, exc.reason)
                continue
            except ChecksumError as exc:
                self._count(crc_errors=1)
                log.warning("led_bus.crc_error", port=self.port, error=str(exc))
                continue
            except ProtocolError as exc:
                self._count(framing_errors=1)
                log.warning("led_bus.framing_error", port=self.port, error=str(exc))
                continue
            if event is led.NEED_DATA:
                break
            self._count(frames=1)
            answer += self._handle(event)
        self._stats = replace(self._stats, skipped_bytes=self._decoder.skipped_bytes)
        return bytes(answer)

    def _nack(self, address: int, seq: int, reason: NackReason) -> bytes:
        if address not in self._screens or address in self._dead:
            return b""  # a broadcast, or someone else's frame: not ours to answer
        self._count(nacks_sent=1)
        return led.encode(Nack(address, seq, reason))

    def _handle(self, event: LedEvent) -> bytes:
        if isinstance(event, Ack | Nack):
            self._count(not_for_us=1)
            return b""
        if event.address == BROADCAST:
            self._count(broadcasts=1)
            for address in self._screens:
                if address not in self._dead:
                    self._apply(address, event)
            return b""
        if event.address not in self._screens:
            self._count(not_for_us=1)
            return b""
        if event.address in self._dead:
            return b""
        reason = self._apply(event.address, event)
        if reason is not None:
            return self._nack(event.address, event.seq, reason)
        self._count(acks_sent=1)
        return led.encode(Ack(event.address, event.seq))

    def _apply(self, address: int, event: LedEvent) -> NackReason | None:
        """Change one screen; the NACK reason when the screen cannot do it."""
        state = self._screens[address]
        layout = state.layout
        match event:
            case Ping():
                state = replace(state, pings=state.pings + 1)
            case ShowText(area=area, line=line):
                if area >= layout.areas or line >= layout.lines:
                    return NackReason.BAD_PARAMETER
                shown = dict(state.shown)
                if event.text:
                    shown[area, line] = ShownText(
                        event.text, event.colour, event.effect, event.speed
                    )
                else:
                    shown.pop((area, line), None)
                state = replace(state, shown=shown)
            case Clear(area=area):
                if area != led.ALL_AREAS and area >= layout.areas:
                    return NackReason.BAD_PARAMETER
                kept = {
                    key: value
                    for key, value in state.shown.items()
                    if area != led.ALL_AREAS and key[0] != area
                }
                state = replace(state, shown=kept)
            case SetBrightness(level=level):
                state = replace(state, brightness=level)
            case SetClock(when=when):
                state = replace(state, clock=when)
        self._screens[address] = replace(state, frames=state.frames + 1)
        return None

    # --- scripting and observation (any thread) ------------------------------------------------
    @property
    def addresses(self) -> tuple[int, ...]:
        return tuple(self._screens)

    def screen(self, address: int) -> ScreenState:
        with self._cond:
            try:
                return self._screens[address]
            except KeyError:
                raise LocalProtocolError(f"no screen at address {address} on this bus") from None

    def text(self, address: int, area: int = 0, line: int = 0) -> str:
        """What one line of one screen shows ("" when blank)."""
        return self.screen(address).text(area, line)

    @property
    def stats(self) -> BusStats:
        with self._cond:
            return self._stats

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unfinished frame the bus is still waiting on."""
        with self._cond:
            return self._decoder.pending_bytes

    def set_dead(self, address: int, dead: bool = True) -> None:
        """A screen that hears nothing and answers nothing (powered off, cable cut)."""
        self.screen(address)  # checks the address
        with self._cond:
            if dead:
                self._dead.add(address)
            else:
                self._dead.discard(address)


# --- Rendering ---------------------------------------------------------------------------------
_RGB: Final = {Colour.RED: (255, 40, 20), Colour.GREEN: (40, 230, 60), Colour.YELLOW: (255, 200, 0)}
DOT_PITCH: Final = 4  # pixels per LED in the picture


@cache
def _led_font() -> ImageFont.FreeTypeFont:
    if not FONT_REGULAR.exists():
        raise FileNotFoundError(f"{FONT_REGULAR} missing: apt-get install fonts-noto-cjk")
    return ImageFont.truetype(str(FONT_REGULAR), LED_FONT_PIXELS)


def _line_dots(text: str, columns: int) -> Image.Image:
    """The line as 1-bit dots, 16 high, cut at the screen's width (scrolling is not drawn)."""
    width = columns * LED_FONT_PIXELS
    image = Image.new("L", (width, LED_FONT_PIXELS), 0)
    ImageDraw.Draw(image).text(
        (0, LED_FONT_PIXELS - 2), text, font=_led_font(), fill=255, anchor="ls"
    )
    return image.point(lambda value: 255 if value >= 110 else 0)


def render_screen(state: ScreenState) -> Image.Image:
    """A picture of the screen: each LED a dot, lit in its line's colour at its brightness."""
    layout = state.layout
    rows = layout.areas * layout.lines
    width = layout.columns * LED_FONT_PIXELS
    gap = 2  # dark dot rows between areas
    height = rows * LED_FONT_PIXELS + (layout.areas - 1) * gap
    picture = Image.new("RGB", (width * DOT_PITCH, height * DOT_PITCH), (12, 12, 12))
    draw = ImageDraw.Draw(picture)
    level = 0.35 + 0.65 * state.brightness / led.MAX_BRIGHTNESS
    for area in range(layout.areas):
        for line in range(layout.lines):
            top = (area * layout.lines + line) * LED_FONT_PIXELS + area * gap
            shown = state.shown.get((area, line))
            dots = _line_dots(shown.text if shown else "", layout.columns)
            colour = _RGB[shown.colour] if shown else (0, 0, 0)
            lit = tuple(int(channel * level) for channel in colour)
            pixels = dots.load()
            assert pixels is not None
            for y in range(LED_FONT_PIXELS):
                for x in range(width):
                    on = bool(shown) and pixels[x, y] != 0
                    fill = lit if on else (40, 30, 30)
                    left, upper = x * DOT_PITCH, (top + y) * DOT_PITCH
                    draw.ellipse(
                        (left, upper, left + DOT_PITCH - 2, upper + DOT_PITCH - 2), fill=fill
                    )
    return picture


__all__ = [
    "BusStats",
    "ScreenLayout",
    "ScreenState",
    "ShownText",
    "VirtualLedScreens",
    "render_screen",
]

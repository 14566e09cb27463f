"""LED screens on one RS485 bus (pyserial, :mod:`firmware_protocols.led` frames).

Window bars show each window's current number; the hall screen shows the
latest calls, one per line, today's counts (当天办件量, 办结率) and the
notices scrolling along the bottom line::

    line 0 .. call_lines-1   请A012号到3号窗口 (newest first)        red
    line call_lines          当天办件量 128件  办结率 97.7%          green
    line call_lines+1        notices, scrolling left                yellow

The daemon only states what each screen *should* show (``show_window``,
``show_hall``); one task (:meth:`ScreenDriver.run`) owns the bus and sends
what differs from what each screen has acknowledged, window bars first (a
citizen is walking to that window). Only the latest wish per line is sent,
so a burst of calls never piles up frames behind a slow bus.

Every frame waits for its ACK as long as the frame and the ACK take on the
wire (a schema-maximum notice is ~450 ms at 9600 baud) plus ``ack_timeout_s``
for the screen to turn around; when none came, the driver listens one more
``ack_timeout_s`` before it retries (a late ACK is as good as any: the retry
has the same sequence number), so on the half-duplex bus a retry never goes
out while the screen may still be answering. It is retried ``retries`` times.
A screen that stays silent is marked silent and reported (the
driver is *degraded*, *offline* when every screen is silent); it is pinged
every ``silent_retry_s`` and gets all its lines again when it answers, since
it has probably lost power. Quiet screens are pinged every
``ping_interval_s`` so a dead screen is noticed even on a calm day.

Text the LED font cannot show (see :mod:`firmware_protocols.gb2312`, which maps
the dashes and middle dots input methods type) is refused where it enters: the
command schema refuses such a notice at the central. Here, a call or count line
that cannot be shown raises at the call, before anything moves; a notice that
cannot be shown is left out with a warning and the rest of the hall screen is
updated (a bad notice must never freeze the calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from firmware_protocols import led
from firmware_protocols.decoding import Decoder
from firmware_protocols.errors import ProtocolError
from firmware_protocols.gb2312 import display_text_problem, encode_gb2312
from firmware_protocols.led import Ack, Colour, Effect, LedRequest, Nack, NackReason, Ping, ShowText
from firmware_protocols.line import SerialTiming

from .base import (
    DeviceConfigError,
    DeviceHealth,
    DeviceKind,
    DeviceTimeout,
    HallCounts,
    HealthState,
    HealthTracker,
    InputQueue,
)
from .serial_port import AsyncSerial, Rs485Mode, await_reply, exchange, serve_link

log = structlog.get_logger(__name__)

NOTICE_SEPARATOR = "　　"  # two ideographic spaces between scrolling notices
NOTICE_SCROLL_SPEED = 6


@dataclass(frozen=True, slots=True)
class HallScreen:
    address: int
    call_lines: int = 3  # the screen needs call_lines + 2 lines in area 0
    columns: int = 16  # width in 16-dot cells (one Chinese character, two ASCII)


@dataclass(frozen=True, slots=True)
class ScreenSettings:
    port: str
    window_screens: Mapping[int, int]  # window number -> bus address of its LED bar
    hall_screens: Sequence[HallScreen] = ()
    baudrate: int = 9600  # 8N1
    ack_timeout_s: float = 0.15  # the screen's turnaround, on top of both frames' wire time
    retries: int = 2
    ping_interval_s: float = 30.0
    silent_retry_s: float = 5.0
    reopen_interval_s: float = 5.0
    rs485: Rs485Mode = "auto"  # who switches the transceiver's direction (serial_port)

    def __post_init__(self) -> None:
        addresses = [*self.window_screens.values(), *(h.address for h in self.hall_screens)]
        for address in addresses:
            if not 1 <= address <= 0xFE:
                raise DeviceConfigError(f"screen address must be 1..254, got {address}")
        if len(set(addresses)) != len(addresses):
            raise DeviceConfigError(f"two screens share an address: {sorted(addresses)}")
        if not addresses:
            raise DeviceConfigError("no screens configured")
        for hall in self.hall_screens:
            if hall.call_lines < 1 or hall.columns < 1:
                raise DeviceConfigError(
                    f"hall screen {hall.address}: call_lines and columns must be >= 1"
                )
        if self.retries < 0:
            raise DeviceConfigError(f"retries must be >= 0, got {self.retries}")
        for name in ("ack_timeout_s", "ping_interval_s", "silent_retry_s", "reopen_interval_s"):
            if getattr(self, name) <= 0:
                raise DeviceConfigError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class LineContent:
    text: str
    colour: Colour = Colour.RED
    effect: Effect = Effect.STATIC
    speed: int = 0

    def request(self, address: int, line: int, seq: int) -> ShowText:
        return ShowText(address, seq, self.text, 0, line, self.colour, self.effect, self.speed)


def counts_line(counts: HallCounts) -> str:
    rate = counts.completion_rate_pct
    shown_rate = "--" if rate is None else f"{rate:.1f}%"
    return f"当天办件量 {counts.cases_today}件  办结率 {shown_rate}"


def text_cells(text: str) -> float:
    """Width of ``text`` in 16-dot cells: a Chinese character is one, an ASCII one half."""
    return sum(0.5 if char.isascii() else 1.0 for char in text)


def showable_notices(notices: Sequence[str]) -> list[str]:
    """The notices an LED font can show, in order, as many as fit one line's frame; the
    others are logged and left out."""
    shown: list[str] = []
    size = 0
    for notice in notices:
        if not notice:
            continue
        problem = display_text_problem(notice)
        if problem is not None:
            log.warning("screens.notice_refused", notice=notice, reason=problem)
            continue
        extra = len(encode_gb2312(notice)) + (len(encode_gb2312(NOTICE_SEPARATOR)) if shown else 0)
        if size + extra > led.MAX_TEXT_BYTES:
            log.warning("screens.notice_left_out", notice=notice, reason="notice line full")
            continue
        shown.append(notice)
        size += extra
    return shown


def hall_lines(
    hall: HallScreen, calls: Sequence[str], counts: HallCounts, notices: Sequence[str]
) -> list[LineContent]:
    """What each line of a hall screen shows (pure); a line too wide for it scrolls.
    Notices that cannot be shown are left out (:func:`showable_notices`)."""

    def fitted(text: str, colour: Colour) -> LineContent:
        if text_cells(text) > hall.columns:
            return LineContent(text, colour, Effect.SCROLL_LEFT, NOTICE_SCROLL_SPEED)
        return LineContent(text, colour)

    lines = [fitted(text, Colour.RED) for text in list(calls)[: hall.call_lines]]
    lines += [LineContent("")] * (hall.call_lines - len(lines))
    lines.append(fitted(counts_line(counts), Colour.GREEN))
    notice = NOTICE_SEPARATOR.join(showable_notices(notices))
    effect = Effect.SCROLL_LEFT if notice else Effect.STATIC
    lines.append(LineContent(notice, Colour.YELLOW, effect, NOTICE_SCROLL_SPEED if notice else 0))
    return lines


@dataclass(slots=True)
class _Screen:
    address: int
    name: str  # "窗口3" or "大厅" for the health detail
    is_window_bar: bool
    wanted: dict[int, LineContent] = field(default_factory=dict)  # line -> content
    confirmed: dict[int, LineContent] = field(default_factory=dict)  # what it acknowledged
    silent: bool = False
    last_heard: float = 0.0
    last_try: float = 0.0
    refused: str = ""

    def dirty_lines(self) -> list[int]:
        return [n for n, content in self.wanted.items() if self.confirmed.get(n) != content]


def _line_noise(exc: ProtocolError) -> None:
    log.warning("screens.bad_reply", error=str(exc))


class ScreenDriver:
    """Implements :class:`~edge.devices.base.ScreenBoard`."""

    def __init__(
        self,
        settings: ScreenSettings,
        inputs: InputQueue,
        *,
        device_id: str = "screens",
    ) -> None:
        self._settings = settings
        self._port = AsyncSerial(
            settings.port, SerialTiming(settings.baudrate), rs485=settings.rs485
        )
        self._health = HealthTracker(
            device_id, DeviceKind.SCREEN, inputs, initial=HealthState.OFFLINE, detail="not started"
        )
        self._screens: dict[int, _Screen] = {}
        self._window_address: dict[int, int] = {}
        for window, address in settings.window_screens.items():
            self._screens[address] = _Screen(address, f"窗口{window}", True)
            self._window_address[window] = address
        self._halls = list(settings.hall_screens)
        for hall in self._halls:
            self._screens[hall.address] = _Screen(hall.address, "大厅", False)
        self._wake = asyncio.Event()
        self._decoder = led.LedDecoder()
        self._seq = 0
        # Called right after a frame went out (the benchmark stamps it); never blocks.
        self.on_frame_written: Callable[[LedRequest], None] | None = None

    def health(self) -> DeviceHealth:
        return self._health.current

    # --- the daemon's side ----------------------------------------------------------------------
    def check_text(self, text: str) -> None:
        """Raise ValueError (the codec's LocalProtocolError) when one line cannot show
        ``text``: not GB2312, or too long for a frame. Changes nothing."""
        LineContent(text).request(next(iter(self._screens), 1), 0, 0)

    def show_window(self, window: int, text: str) -> None:
        """Show ``text`` on ``window``'s bar. Raises ValueError for an unknown window or a text
        the LED font cannot show (not GB2312, too long)."""
        try:
            address = self._window_address[window]
        except KeyError:
            raise DeviceConfigError(
                f"window {window} has no LED bar; configured: {sorted(self._window_address)}"
            ) from None
        self._want(address, [LineContent(text)])

    def show_hall(
        self, lines: Sequence[str], counts: HallCounts, notices: Sequence[str] = ()
    ) -> None:
        for hall in self._halls:
            self._want(hall.address, hall_lines(hall, lines, counts, notices))

    def _want(self, address: int, contents: Sequence[LineContent]) -> None:
        for line, content in enumerate(contents):
            content.request(address, line, 0)  # validates (GB2312, length) before anything moves
        screen = self._screens[address]
        for line, content in enumerate(contents):
            screen.wanted[line] = content
        self._wake.set()

    def shown(self, window: int) -> str:
        """What ``window``'s bar has acknowledged showing ("" before the first ACK)."""
        content = self._screens[self._window_address[window]].confirmed.get(0)
        return content.text if content else ""

    # --- the bus task ---------------------------------------------------------------------------
    async def run(self) -> None:
        await serve_link(self._port, self._health, self._step,
                         reopen_interval_s=self._settings.reopen_interval_s,
                         on_open=self._update_health)

    async def _step(self) -> None:
        """Send one frame that needs sending, or wait until one does."""
        now = time.monotonic()
        work = self._next_work(now)
        if isinstance(work, float):
            self._wake.clear()
            with contextlib.suppress(TimeoutError):  # a timeout just means a ping is due
                async with asyncio.timeout(work):
                    await self._wake.wait()
            return
        screen, line = work
        if line is None:
            await self._send(screen, Ping(screen.address, self._next_seq()), None)
        else:
            content = screen.wanted[line]
            request = content.request(screen.address, line, self._next_seq())
            await self._send(screen, request, (line, content))

    def _next_work(self, now: float) -> tuple[_Screen, int | None] | float:
        """(screen, line to send or None for a ping), or how long to sleep."""
        s = self._settings
        wait = s.ping_interval_s
        # Window bars first, then the hall screens; silent screens only get a ping now and then.
        for screen in sorted(self._screens.values(), key=lambda sc: not sc.is_window_bar):
            if screen.silent:
                due = screen.last_try + s.silent_retry_s
                if now >= due:
                    return screen, None
                wait = min(wait, due - now)
                continue
            dirty = screen.dirty_lines()
            if dirty:
                return screen, dirty[0]
            due = max(screen.last_heard, screen.last_try) + s.ping_interval_s
            if now >= due:
                return screen, None
            wait = min(wait, due - now)
        return max(wait, 0.001)

    def _next_seq(self) -> int:
        self._seq = led.next_seq(self._seq)
        return self._seq

    async def _send(
        self, screen: _Screen, request: LedRequest, sent: tuple[int, LineContent] | None
    ) -> None:
        s = self._settings
        frame = led.encode(request)
        reply: Ack | Nack | None = None
        # A screen already known silent gets one try: a dead screen must not eat the bus.
        attempts = 1 if screen.silent else 1 + s.retries

        def answers(event: led.LedEvent) -> bool:
            return led.is_reply_to(event, request)

        for attempt in range(attempts):
            decoder: Decoder[led.LedEvent] = led.LedDecoder()
            try:
                answer = await exchange(
                    self._port,
                    frame,
                    decoder,
                    answers,
                    reply_bytes=led.REPLY_FRAME_MAX,
                    timeout=s.ack_timeout_s,
                    on_error=_line_noise,
                    on_sent=lambda: self._frame_written(request),
                )
                if answer is None and attempt + 1 < attempts:  # late is as good as any:
                    # listen once more before a retry can go out over the answer
                    answer = await await_reply(
                        self._port, decoder, answers, s.ack_timeout_s, _line_noise
                    )
            except DeviceTimeout:
                continue
            reply = answer if isinstance(answer, Ack | Nack) else None
            if isinstance(reply, Nack) and reply.reason is NackReason.BUSY:
                reply = None
                await asyncio.sleep(s.ack_timeout_s)
                continue
            if reply is not None:
                break
            log.debug("screens.no_reply", address=screen.address, attempt=attempt + 1)
        screen.last_try = time.monotonic()  # from the end of the try: retries stay spaced out
        self._on_reply(screen, request, sent, reply)

    def _frame_written(self, request: LedRequest) -> None:
        if self.on_frame_written is not None:
            self.on_frame_written(request)

    def _on_reply(
        self,
        screen: _Screen,
        request: LedRequest,
        sent: tuple[int, LineContent] | None,
        reply: Ack | Nack | None,
    ) -> None:
        if reply is None:
            if not screen.silent:
                log.warning("screens.silent", address=screen.address, screen=screen.name)
            screen.silent = True
            self._update_health()
            return
        screen.last_heard = time.monotonic()
        if screen.silent:
            log.info("screens.back", address=screen.address, screen=screen.name)
            screen.silent = False
            screen.confirmed.clear()  # it probably lost power: send everything again
        if isinstance(reply, Nack):
            # Our frame or our configuration is wrong (a line the screen lacks): do not resend.
            screen.refused = f"{screen.name}(0x{screen.address:02x}) 拒绝 {reply.reason.name}"
            log.error(
                "screens.refused",
                address=screen.address,
                reason=reply.reason.name,
                request=type(request).__name__,
            )
        elif sent is not None:
            screen.refused = ""
        if sent is not None:
            # What was sent, not what is wanted now: a newer wish that arrived meanwhile
            # still differs from it and goes out next.
            line, content = sent
            screen.confirmed[line] = content
        self._update_health()

    def _update_health(self) -> None:
        silent = [sc for sc in self._screens.values() if sc.silent]
        refused = [sc.refused for sc in self._screens.values() if sc.refused]
        names = ", ".join(f"{sc.name}(0x{sc.address:02x})" for sc in silent)
        if silent and len(silent) == len(self._screens):
            self._health.set(HealthState.OFFLINE, f"屏幕无应答 silent: {names}")
        elif silent:
            self._health.set(HealthState.DEGRADED, f"屏幕无应答 silent: {names}")
        elif refused:
            self._health.set(HealthState.DEGRADED, "; ".join(refused)[:200])
        else:
            self._health.set(HealthState.OK)


__all__ = [
    "HallScreen",
    "LineContent",
    "ScreenDriver",
    "ScreenSettings",
    "counts_line",
    "hall_lines",
    "text_cells",
]

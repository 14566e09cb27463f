"""A virtual ESC/POS ticket printer on a pty, and a PNG renderer for what it printed.

Usage (tests, ``onedoor demo``)::

    with PtyLink(SerialTiming(115200)) as link, VirtualPrinter(link) as printer:
        port = serial.Serial(printer.port)      # the daemon's side, real pyserial
        port.write(escpos.encode_all(events))   # e.g. edge.devices.ticket.ticket_events()
        ticket = printer.wait_for_tickets(1, timeout=2)[0]
        ticket.text_lines, ticket.qr_payloads, ticket.partial_cut
        render_ticket(ticket).save("ticket.png")

What it models:

* decoding with :class:`~firmware_protocols.escpos.EscPosDecoder` and
  reassembling the events into :class:`PrintedTicket` objects (lines of
  formatted runs, QR codes, feeds, the cut) with :class:`TicketAssembler`;
* ``DLE EOT 1/2/3/4`` answered at once, whatever the printer's state, as the
  real-time commands are on real printers, and wherever the three bytes are (inside
  QR or image data too, as Epson documents it); ``GS I`` answered with the maker,
  model, firmware and serial number;
* paper out, paper low, cover open, an error ("offline"), power off. While
  the printer cannot print, what it receives waits in its buffer and prints
  when the fault clears (nothing is lost); switched off, it hears nothing;
* garbage is counted (:attr:`VirtualPrinter.garbage`) and never stops it;
* a jammed receive buffer (:meth:`VirtualPrinter.jam`): no byte taken, the
  host's writes block once the link is full.

The link is a :class:`~.serial_link.PtyLink` for a serial printer (with the
line's timing) or for a USB one (``usblp``: no timing, no termios; the daemon
opens the pty as it opens ``/dev/usb/lp0``), or a
:class:`~.tcp_link.TcpServerLink` for a network printer's raw port.

Not modelled: print speed, the receive buffer's size and flow control (the
pty's own buffer applies back-pressure), ``ESC a`` for QR codes (they are
centred), QR model 1 (rendered as model 2).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

import segno
import structlog
from PIL import Image, ImageDraw, ImageFont

from firmware_protocols import escpos
from firmware_protocols.errors import ProtocolError
from firmware_protocols.escpos import (
    Align,
    CharSize,
    Cut,
    EscPosDecoder,
    EscPosEvent,
    Feed,
    Init,
    QrCode,
    QrErrorCorrection,
    QrModel,
    StatusQuery,
    StatusRequest,
    Text,
)

from .serial_link import DeviceLink, PtyDevice

log = structlog.get_logger(__name__)

FONT_REGULAR: Final = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
FONT_BOLD: Final = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")
PAPER_80MM_DOTS: Final = 576  # printable width of 80 mm paper at 203 dpi
PAPER_58MM_DOTS: Final = 384
BASE_CHAR_HEIGHT: Final = 24  # Font A: 12x24 ASCII, 24x24 Chinese
LINE_GAP: Final = 6  # default line spacing (ESC 2) is about 30 dots for 24-dot characters
_MAX_ERRORS_KEPT: Final = 50


# --- What came out of the printer --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PrintedLine:
    """One printed line: runs of text that share a format, and the line's justification."""

    runs: tuple[Text, ...]
    align: Align

    @property
    def text(self) -> str:
        return "".join(run.line for run in self.runs)

    @property
    def size(self) -> CharSize:
        """The largest magnification on the line (what a reader notices)."""
        return max(
            (run.size for run in self.runs),
            key=lambda size: (size.height, size.width),
            default=escpos.NORMAL_SIZE,
        )

    @property
    def bold(self) -> bool:
        """True when every non-empty run is bold."""
        runs = [run for run in self.runs if run.line]
        return bool(runs) and all(run.bold for run in runs)


@dataclass(frozen=True, slots=True)
class PrintedQr:
    payload: bytes
    module_size: int
    error_correction: QrErrorCorrection
    model: QrModel


@dataclass(frozen=True, slots=True)
class PrintedFeed:
    lines: int


PrintedItem = PrintedLine | PrintedQr | PrintedFeed


@dataclass(frozen=True, slots=True)
class PrintedTicket:
    """Everything printed between two cuts, in order, and how it was cut."""

    items: tuple[PrintedItem, ...]
    partial_cut: bool

    @property
    def lines(self) -> tuple[PrintedLine, ...]:
        return tuple(item for item in self.items if isinstance(item, PrintedLine))

    @property
    def text_lines(self) -> list[str]:
        return [line.text for line in self.lines]

    @property
    def qr_payloads(self) -> list[bytes]:
        return [item.payload for item in self.items if isinstance(item, PrintedQr)]

    def line(self, text: str) -> PrintedLine:
        """The first line whose text is ``text`` (KeyError when none)."""
        for line in self.lines:
            if line.text == text:
                return line
        raise KeyError(text)


class TicketAssembler:
    """Folds decoded events into tickets: pure, no I/O (the printer's paper path)."""

    def __init__(self) -> None:
        self._items: list[PrintedItem] = []
        self._runs: list[Text] = []

    def feed(self, event: EscPosEvent) -> PrintedTicket | None:
        """Apply one event; return the finished ticket when ``event`` is a cut."""
        match event:
            case Text(newline=newline):
                self._runs.append(event)
                if newline:
                    self._end_line()
            case QrCode():
                self._end_line()
                self._items.append(
                    PrintedQr(event.payload, event.module_size, event.error_correction, event.model)
                )
            case Feed(lines=lines):
                self._end_line()
                if lines:
                    self._items.append(PrintedFeed(lines))
            case Cut(partial=partial):
                self._end_line()
                ticket = PrintedTicket(tuple(self._items), partial)
                self._items = []
                return ticket
            case Init():
                self._runs.clear()  # ESC @ empties the line buffer: those runs never printed
        return None

    def _end_line(self) -> None:
        if self._runs:
            self._items.append(PrintedLine(tuple(self._runs), self._runs[0].align))
            self._runs = []


# --- The printer -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PrinterCondition:
    """The printer's physical state, as its status replies report it."""

    powered: bool = True
    paper_out: bool = False
    paper_low: bool = False
    cover_open: bool = False
    error: bool = False  # an auto-recoverable error (head too hot, ...): the printer is offline

    @property
    def can_print(self) -> bool:
        return self.powered and not (self.paper_out or self.cover_open or self.error)

    def reply(self, request: StatusRequest) -> escpos.StatusReply:
        match request:
            case StatusRequest.PRINTER:
                return escpos.PrinterStatus(offline=not self.can_print)
            case StatusRequest.OFFLINE_CAUSE:
                return escpos.OfflineCause(
                    cover_open=self.cover_open, paper_end_stop=self.paper_out, error=self.error
                )
            case StatusRequest.ERROR_CAUSE:
                return escpos.ErrorCause(
                    autocutter_error=False,
                    unrecoverable_error=False,
                    auto_recoverable_error=self.error,
                )
            case StatusRequest.PAPER_SENSOR:
                # Near-end sensor sits before the end sensor: an empty roll trips both.
                return escpos.PaperSensor(
                    near_end=self.paper_low or self.paper_out, paper_out=self.paper_out
                )
        raise AssertionError(request)  # pragma: no cover


class VirtualPrinter(PtyDevice):
    """An ESC/POS ticket printer on ``link`` (see the module docstring)."""

    def __init__(
        self,
        link: DeviceLink,
        *,
        chinese_mode_at_power_on: bool = False,
        idle_seconds: float = 0.05,
        model: str = "onedoor VP-80",
    ) -> None:
        super().__init__(link, idle_seconds=idle_seconds)
        self._chinese_default = chinese_mode_at_power_on
        self._decoder = EscPosDecoder(chinese_mode_at_power_on=chinese_mode_at_power_on)
        self._assembler = TicketAssembler()
        self._held: deque[EscPosEvent] = deque()
        self._condition = PrinterCondition()
        self._tickets: list[PrintedTicket] = []
        self._errors: deque[str] = deque(maxlen=_MAX_ERRORS_KEPT)
        self._garbage = 0
        self._status_queries = 0
        self._replies_to_lose = 0
        self._bytes_received = 0
        self._bytes_ignored = 0
        self._jammed = False
        self._rt_tail = b""  # the last two bytes: a DLE EOT n may straddle two reads
        self._identity = {
            escpos.PrinterInfo.MAKER: "onedoor",
            escpos.PrinterInfo.MODEL: model,
            escpos.PrinterInfo.FIRMWARE: "1.00",
            escpos.PrinterInfo.SERIAL: "VP0000001",
        }

    # --- device thread -------------------------------------------------------------------------
    def _on_bytes(self, data: bytes) -> bytes:
        if not self._condition.powered:
            self._bytes_ignored += len(data)
            return b""
        self._bytes_received += len(data)
        answer = bytearray(self._real_time(data))
        self._decoder.receive_data(data)
        while True:
            try:
                event = self._decoder.next_event()
            except ProtocolError as exc:
                self._garbage += 1
                self._errors.append(str(exc))
                log.warning("printer.garbage", port=self.port, error=str(exc))
                continue
            if event is escpos.NEED_DATA:
                break
            if isinstance(event, escpos.PrinterIdQuery):
                answer += escpos.encode_printer_id_reply(self._identity[event.info])
                continue
            if not isinstance(event, StatusQuery):  # those were answered on arrival
                self._held.append(event)
        self._print_held()
        return bytes(answer)

    def _real_time(self, data: bytes) -> bytes:
        """Answer every ``DLE EOT n`` in the raw bytes, as printers do: on arrival, whatever
        command they sit in (inside QR or image data too: why the encoder refuses control
        bytes there)."""
        window = self._rt_tail + data
        answer = bytearray()
        start = 0
        while (found := window.find(bytes([escpos.DLE, escpos.EOT]), start)) >= 0:
            start = found + 1
            if found + 2 >= len(window):
                break  # its n has not come yet
            if found + 2 < len(self._rt_tail) or not 1 <= window[found + 2] <= 4:
                continue  # answered with the previous bytes, or not a status request
            self._status_queries += 1
            if self._replies_to_lose:  # line noise ate the answer
                self._replies_to_lose -= 1
                continue
            request = StatusRequest(window[found + 2])
            answer += escpos.encode_status_reply(self._condition.reply(request))
        self._rt_tail = window[-2:]
        return bytes(answer)

    def _print_held(self) -> None:
        while self._held and self._condition.can_print:
            ticket = self._assembler.feed(self._held.popleft())
            if ticket is not None:
                self._tickets.append(ticket)
                log.info(
                    "printer.ticket_printed",
                    port=self.port,
                    lines=len(ticket.lines),
                    qr=len(ticket.qr_payloads),
                )

    def _set(self, **changes: bool) -> None:
        with self._cond:
            fields = {name: getattr(self._condition, name) for name in PrinterCondition.__slots__}
            self._condition = PrinterCondition(**(fields | changes))
            self._print_held()
            self._cond.notify_all()

    # --- scripting (any thread) ----------------------------------------------------------------
    def run_out_of_paper(self) -> None:
        self._set(paper_out=True)

    def load_paper(self) -> None:
        """A new roll: paper neither out nor low; held data prints."""
        self._set(paper_out=False, paper_low=False)

    def set_paper_low(self, low: bool = True) -> None:
        self._set(paper_low=low)

    def open_cover(self) -> None:
        self._set(cover_open=True)

    def close_cover(self) -> None:
        self._set(cover_open=False)

    def go_offline(self) -> None:
        """An auto-recoverable error: offline, answers status, holds print data."""
        self._set(error=True)

    def go_online(self) -> None:
        self._set(error=False)

    def power_off(self) -> None:
        """Switched off: no answers, input lost, held data and modes gone."""
        with self._cond:
            self._held.clear()
            self._decoder = EscPosDecoder(chinese_mode_at_power_on=self._chinese_default)
            self._assembler = TicketAssembler()
            self._rt_tail = b""
        self._set(powered=False)

    def power_on(self) -> None:
        self._set(powered=True)

    def jam(self, jammed: bool = True) -> None:
        """The printer takes no more bytes (its receive buffer is full): they wait in the
        link, and a host writing on blocks, as with USB or a full serial buffer."""
        with self._cond:
            self._jammed = jammed
            self._cond.notify_all()

    def _taking_input(self) -> bool:
        return not self._jammed

    def lose_replies(self, count: int) -> None:
        """The next ``count`` status answers are lost on the line (noise, a loose cable)."""
        with self._cond:
            self._replies_to_lose = count

    # --- observation (any thread) --------------------------------------------------------------
    @property
    def condition(self) -> PrinterCondition:
        with self._cond:
            return self._condition

    @property
    def tickets(self) -> list[PrintedTicket]:
        with self._cond:
            return list(self._tickets)

    @property
    def garbage(self) -> int:
        """How many decoding errors the printer shrugged off."""
        with self._cond:
            return self._garbage

    @property
    def errors(self) -> list[str]:
        """The last decoding errors, oldest first."""
        with self._cond:
            return list(self._errors)

    @property
    def status_queries(self) -> int:
        with self._cond:
            return self._status_queries

    @property
    def bytes_received(self) -> int:
        with self._cond:
            return self._bytes_received

    @property
    def bytes_ignored(self) -> int:
        """Bytes that arrived while the printer was switched off."""
        with self._cond:
            return self._bytes_ignored

    @property
    def held_events(self) -> int:
        """Decoded commands waiting for the printer to be able to print."""
        with self._cond:
            return len(self._held)

    def wait_for_tickets(self, count: int, timeout: float = 5.0) -> list[PrintedTicket]:
        """All tickets once at least ``count`` have been printed (TimeoutError otherwise)."""
        self.wait_until(lambda: len(self._tickets) >= count, timeout)
        return self.tickets

    def wait_for_bytes(self, count: int, timeout: float = 5.0) -> None:
        """Until ``count`` bytes have been received and handled."""
        self.wait_until(lambda: self._bytes_received + self._bytes_ignored >= count, timeout)


# --- Rendering ---------------------------------------------------------------------------------
@cache
def _font(bold: bool) -> ImageFont.FreeTypeFont:
    path = FONT_BOLD if bold and FONT_BOLD.exists() else FONT_REGULAR
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: apt-get install fonts-noto-cjk")
    return ImageFont.truetype(str(path), BASE_CHAR_HEIGHT)


@cache
def _glyph(char: str, bold: bool, size: CharSize) -> Image.Image:
    """One character as the printer's dot matrix: 12 or 24 dots wide, magnified."""
    font = _font(bold)
    cell = 12 if char.isascii() else 24
    image = Image.new("L", (cell, BASE_CHAR_HEIGHT), 255)
    draw = ImageDraw.Draw(image)
    left, _, right, _ = draw.textbbox((0, 0), char, font=font, anchor="ls")
    x = (cell - (right - left)) / 2 - left
    draw.text((x, BASE_CHAR_HEIGHT - 4), char, font=font, fill=0, anchor="ls")
    image = image.point(lambda value: 0 if value < 128 else 255)  # thermal dots are on or off
    if size != escpos.NORMAL_SIZE:
        image = image.resize(
            (cell * size.width, BASE_CHAR_HEIGHT * size.height), Image.Resampling.NEAREST
        )
    return image


def _render_line(line: PrintedLine, paper_dots: int) -> list[Image.Image]:
    """The rows of one printed line, wrapped at the paper width as a printer wraps."""
    glyphs = [_glyph(char, run.bold, run.size) for run in line.runs for char in run.line]
    rows: list[list[Image.Image]] = [[]]
    width = 0
    for glyph in glyphs:
        if width + glyph.width > paper_dots and rows[-1]:
            rows.append([])
            width = 0
        rows[-1].append(glyph)
        width += glyph.width
    images = []
    for row in rows:
        height = max((glyph.height for glyph in row), default=BASE_CHAR_HEIGHT * line.size.height)
        image = Image.new("L", (paper_dots, height + LINE_GAP), 255)
        used = sum(glyph.width for glyph in row)
        x = {Align.LEFT: 0, Align.CENTER: (paper_dots - used) // 2, Align.RIGHT: paper_dots - used}[
            line.align
        ]
        for glyph in row:
            image.paste(glyph, (max(x, 0), height - glyph.height))  # characters share a baseline
            x += glyph.width
        images.append(image)
    return images


def _render_qr(qr: PrintedQr, paper_dots: int) -> Image.Image:
    level = {"L": "l", "M": "m", "Q": "q", "H": "h"}[qr.error_correction.name]
    symbol = (
        segno.make_micro(qr.payload, error=level)
        if qr.model is QrModel.MICRO
        else segno.make_qr(qr.payload, error=level, boost_error=False)
    )
    matrix = symbol.matrix
    side = len(matrix) * qr.module_size
    image = Image.new("L", (paper_dots, side + 2 * qr.module_size), 255)
    draw = ImageDraw.Draw(image)
    left = max((paper_dots - side) // 2, 0)
    for row_index, row in enumerate(matrix):
        for column_index, dark in enumerate(row):
            if dark:
                x = left + column_index * qr.module_size
                y = qr.module_size + row_index * qr.module_size
                draw.rectangle((x, y, x + qr.module_size - 1, y + qr.module_size - 1), fill=0)
    return image


def render_ticket(ticket: PrintedTicket, *, paper_dots: int = PAPER_80MM_DOTS) -> Image.Image:
    """A picture of the paper as the printer would print it (1 pixel = 1 dot)."""
    parts: list[Image.Image] = [Image.new("L", (paper_dots, 16), 255)]
    for item in ticket.items:
        match item:
            case PrintedLine():
                parts.extend(_render_line(item, paper_dots))
            case PrintedQr():
                parts.append(_render_qr(item, paper_dots))
            case PrintedFeed(lines=lines):
                parts.append(
                    Image.new("L", (paper_dots, lines * (BASE_CHAR_HEIGHT + LINE_GAP)), 255)
                )
    margin = 24
    page = Image.new("L", (paper_dots + 2 * margin, sum(p.height for p in parts) + 12), 255)
    y = 0
    for part in parts:
        page.paste(part, (margin, y))
        y += part.height
    draw = ImageDraw.Draw(page)
    dash = 6 if ticket.partial_cut else 12  # the cut: dashed for a partial cut
    for x in range(0, page.width, 2 * dash):
        draw.line((x, page.height - 2, x + dash, page.height - 2), fill=0, width=2)
    return page


def save_ticket_png(
    ticket: PrintedTicket, path: str | Path, *, paper_dots: int = PAPER_80MM_DOTS
) -> Path:
    """Render ``ticket`` to a PNG file; returns the path."""
    target = Path(path)
    render_ticket(ticket, paper_dots=paper_dots).save(target, format="PNG")
    return target


def assemble(events: Sequence[EscPosEvent]) -> list[PrintedTicket]:
    """The tickets a printer with paper would print from ``events`` (no I/O; for tests)."""
    assembler = TicketAssembler()
    tickets = []
    for event in events:
        ticket = assembler.feed(event)
        if ticket is not None:
            tickets.append(ticket)
    return tickets


__all__ = [
    "PAPER_58MM_DOTS",
    "PAPER_80MM_DOTS",
    "PrintedFeed",
    "PrintedItem",
    "PrintedLine",
    "PrintedQr",
    "PrintedTicket",
    "PrinterCondition",
    "TicketAssembler",
    "VirtualPrinter",
    "assemble",
    "render_ticket",
    "save_ticket_png",
]

"""The common vendor RS485 frame of Chinese caller keypads and rating pads.

9600 baud, 8N1, half duplex, the host is the only master: it sends one frame
to one address and that terminal answers with exactly one frame (or not at
all: the host times out and moves on). Layout::

    FF   68   L    L    68   addr func data…  cs   16
    wake start len  len  start               sum8 end

- ``FF`` wakes sleeping line transceivers; receivers skip it (and any other
  byte) until a valid ``68 L L 68`` header.
- ``L`` counts ``addr``, ``func`` and ``data``: 2..``MAX_LENGTH``; both L bytes
  must agree, or the ``68`` was not a start.
- ``cs`` is :func:`~firmware_protocols.crc.sum8` of ``addr`` … ``data``.

Functions (host → terminal below 0x80; terminal → host from 0x80)::

    01 POLL            ack_seq         ack = sequence of the last report taken, 0 = none
    02 CALL_DISPLAY    waiting ticket… keypad display: 等候人数 and the called ticket
    03 RECALL_DISPLAY  ticket…         keypad display flashes the recalled ticket
    04 RATING_REQUEST  seconds         light the rating pad; 0 cancels
    05 LED_TEXT        gb2312…         window LED text
    80 IDLE            status          poll answer: nothing to report
    80|key             seq             poll answer: a key press, one function per key
                                       (81 NEXT 顺呼, 82 RECALL 重呼, 83 TRANSFER 转移,
                                       84 NO_SHOW 过号, 85 PAUSE 暂停, 86 RESUME 恢复,
                                       87 FINISH 办结, 88 SIGN_IN 登录, 89 SIGN_OUT 退出,
                                       8A HELP_ACK 帮办应答, 8B CALL 特呼, 8E CLEAR,
                                       8F CONFIRM, 90..99 digits 0..9: codes of
                                       :class:`~firmware_protocols.terminal_events.Key`)
    A0|value           seq             poll answer: a rating, A1 非常不满意 … A5 非常满意
    B0|reason          seq             poll answer: a 差评 follow-up reason, B1 … BF (1..15)
    C0 ACK             func            answer to 02..05

Reports wait in the terminal's queue (:class:`TerminalReports`, at most
``REPORT_QUEUE_SIZE``; a press beyond that is refused with a beep) until
acknowledged. The terminal answers each poll with its oldest report; a poll
whose ``ack_seq`` is the sequence of the report it last sent drops that report
first, so that poll is answered with the next one. Hence:

- a lost poll or a lost answer makes the host poll again with the same ack,
  and the terminal sends the same report again: the host never took it, so
  nothing is counted twice and nothing is lost;
- an ack is honoured only for the report just sent, so a stale ack (from
  before the terminal was power-cycled) drops nothing. The one gap: right
  after a power cycle, if the first answer is lost and the stale ack happens
  to equal its sequence, that report is dropped (1 in 255 lost answers just
  after a reboot). The Modbus map has a BOOT_ID and no such gap.

Sequences run 1..255 and wrap to 1; 0 means "nothing acknowledged yet".
:class:`VendorPoller` is the host side: which ack each terminal gets next.

Host side, one exchange (the driver owns the port and the timeout)::

    port.write(poller.poll(address))
    decoder.receive_data(port.read(...))          # until an event or the timeout
    answer = decoder.next_event()                 # NEED_DATA: read more
    if isinstance(answer, KeyPressed | RatingPressed | ReasonPressed):
        handle(answer); poller.taken(answer)      # acked by the next poll
    elif isinstance(answer, Idle): ...            # answer.rating_pending

Display commands: ``port.write(encode(ShowText(address, "请A012号到3号窗口")))``
(also :class:`CallDisplay`, :class:`RecallDisplay`, ``RequestRating``); the
terminal answers :class:`Ack`.

Errors (the decoder's choice, documented here): :meth:`VendorDecoder.next_event`
*raises* :class:`~firmware_protocols.errors.ChecksumError` for a frame whose
sum is wrong and :class:`~firmware_protocols.errors.RemoteProtocolError` for a
well-formed frame it cannot map (unknown function, bad key code, …). Either way
the offending bytes are already consumed, so the next call carries on with the
rest of the stream. Garbage between frames is skipped silently and counted in
:attr:`VendorDecoder.discarded`; a header that promises more bytes than ever
come is abandoned as soon as a complete valid frame follows it in the buffer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from .crc import sum8
from .decoding import NEED_DATA, NeedData
from .errors import ChecksumError, LocalProtocolError, RemoteProtocolError
from .gb2312 import decode_gb2312, encode_gb2312
from .terminal_events import (
    ADDRESS_MAX,
    ADDRESS_MIN,
    RATING_MAX,
    RATING_MIN,
    REASON_MAX,
    REASON_MIN,
    Key,
    KeyPressed,
    RatingPressed,
    ReasonPressed,
    RequestRating,
    ShowText,
    check_address,
    check_rating,
    check_rating_timeout,
    check_reason,
    key_from_code,
)

BAUD: Final = 9600
PARITY: Final = "N"  # 8N1, as the vendor keypads ship

PREAMBLE: Final = 0xFF  # wake byte
START: Final = 0x68
END: Final = 0x16
HEADER_SIZE: Final = 4  # 68 L L 68 (the preamble is not part of the frame proper)
TRAILER_SIZE: Final = 2  # cs 16
MIN_LENGTH: Final = 2  # addr + func
MAX_DATA: Final = 160  # 80 Chinese characters of LED text
MAX_LENGTH: Final = MIN_LENGTH + MAX_DATA
MAX_FRAME: Final = 1 + HEADER_SIZE + MAX_LENGTH + TRAILER_SIZE  # with the preamble
ANSWER_FRAME: Final = 1 + HEADER_SIZE + MIN_LENGTH + 1 + TRAILER_SIZE  # every terminal answer
MAX_TICKET: Final = 8  # ticket number characters on the keypad display

SEQUENCE_MAX: Final = 0xFF  # sequences run 1..255, then 1 again; 0 = none
REPORT_QUEUE_SIZE: Final = 8


class Function(IntEnum):
    """Function codes with one meaning each; key and rating reports are computed below."""

    POLL = 0x01  # 轮询
    CALL_DISPLAY = 0x02  # 呼叫显示
    RECALL_DISPLAY = 0x03  # 重呼显示
    RATING_REQUEST = 0x04  # 请求评价
    LED_TEXT = 0x05  # 窗口屏文字
    IDLE = 0x80  # 无数据
    ACK = 0xC0  # 应答


KEY_REPORT_BASE: Final = 0x80  # key report function = 0x80 | Key code (按键上报)
RATING_REPORT_BASE: Final = 0xA0  # rating report function = 0xA0 | value (评价上报)
REASON_REPORT_BASE: Final = 0xB0  # reason report function = 0xB0 | reason (差评原因上报)

STATUS_RATING_PENDING: Final = 0x01  # IDLE status bit: the rating pad is lit


def key_function(key: Key) -> int:
    """The report function code of ``key`` (NEXT → 0x81)."""
    return KEY_REPORT_BASE | Key(key)


def rating_function(value: int) -> int:
    """The report function code of a rating (5 → 0xA5)."""
    return RATING_REPORT_BASE | check_rating(value, LocalProtocolError)


def reason_function(reason: int) -> int:
    """The report function code of a 差评 follow-up reason (3 → 0xB3)."""
    return REASON_REPORT_BASE | check_reason(reason, LocalProtocolError)


def next_sequence(sequence: int) -> int:
    """The sequence after ``sequence`` (1..255, skipping 0)."""
    return sequence % SEQUENCE_MAX + 1


# --- events only the vendor bus has (the shared ones come from terminal_events) ---------------


@dataclass(frozen=True, slots=True)
class Poll:
    address: int
    ack_sequence: int


@dataclass(frozen=True, slots=True)
class CallDisplay:
    address: int
    ticket: str
    waiting: int


@dataclass(frozen=True, slots=True)
class RecallDisplay:
    address: int
    ticket: str


@dataclass(frozen=True, slots=True)
class Idle:
    address: int
    status: int

    @property
    def rating_pending(self) -> bool:
        return bool(self.status & STATUS_RATING_PENDING)


@dataclass(frozen=True, slots=True)
class Ack:
    address: int
    function: Function


HostFrame = Poll | CallDisplay | RecallDisplay | RequestRating | ShowText
"""What the host sends."""

TerminalFrame = Idle | Ack | KeyPressed | RatingPressed | ReasonPressed
"""What a terminal answers."""

VendorEvent = HostFrame | TerminalFrame


# --- encoding ---------------------------------------------------------------------------------


def encode_frame(address: int, function: int, data: bytes = b"") -> bytes:
    """``FF 68 L L 68 addr func data cs 16``."""
    if not 0 <= address <= 0xFF or not 0 <= function <= 0xFF:
        raise LocalProtocolError(f"address {address} / function {function} must be one byte")
    if len(data) > MAX_DATA:
        raise LocalProtocolError(f"frame data is {len(data)} bytes, at most {MAX_DATA}")
    body = bytes((address, function)) + data
    length = len(body)
    return bytes((PREAMBLE, START, length, length, START)) + body + bytes((sum8(body), END))


def _byte(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise LocalProtocolError(f"{what} must be 0..255, got {value}")
    return value


def _sequence(value: int) -> bytes:
    if not 1 <= value <= SEQUENCE_MAX:
        raise LocalProtocolError(f"report sequence must be 1..{SEQUENCE_MAX}, got {value}")
    return bytes((value,))


def _ticket(ticket: str) -> bytes:
    if not 1 <= len(ticket) <= MAX_TICKET or not ticket.isascii() or not ticket.isprintable():
        raise LocalProtocolError(f"ticket must be 1..{MAX_TICKET} printable ASCII, got {ticket!r}")
    return ticket.encode("ascii")


def encode(event: VendorEvent) -> bytes:
    """The frame for ``event``, host or terminal side."""
    if isinstance(event, Poll):
        ack = bytes((_byte(event.ack_sequence, "ack sequence"),))
        return encode_frame(check_address(event.address), Function.POLL, ack)
    if isinstance(event, CallDisplay):
        data = bytes((_byte(event.waiting, "waiting count"),)) + _ticket(event.ticket)
        return encode_frame(check_address(event.address), Function.CALL_DISPLAY, data)
    if isinstance(event, RecallDisplay):
        data = _ticket(event.ticket)
        return encode_frame(check_address(event.address), Function.RECALL_DISPLAY, data)
    if isinstance(event, RequestRating):
        data = bytes((check_rating_timeout(event.timeout_seconds),))
        return encode_frame(check_address(event.window_address), Function.RATING_REQUEST, data)
    if isinstance(event, ShowText):
        data = encode_gb2312(event.text, MAX_DATA)
        return encode_frame(check_address(event.window_address), Function.LED_TEXT, data)
    if isinstance(event, Idle):
        data = bytes((_byte(event.status, "status"),))
        return encode_frame(check_address(event.address), Function.IDLE, data)
    if isinstance(event, KeyPressed):
        address, sequence = check_address(event.window_address), _sequence(event.sequence)
        return encode_frame(address, key_function(event.key), sequence)
    if isinstance(event, RatingPressed):
        address, sequence = check_address(event.window_address), _sequence(event.sequence)
        return encode_frame(address, rating_function(event.value), sequence)
    if isinstance(event, ReasonPressed):
        address, sequence = check_address(event.window_address), _sequence(event.sequence)
        return encode_frame(address, reason_function(event.reason), sequence)
    if isinstance(event, Ack):
        data = bytes((Function(event.function),))
        return encode_frame(check_address(event.address), Function.ACK, data)
    raise LocalProtocolError(f"not a vendor frame event: {event!r}")


# --- decoding ---------------------------------------------------------------------------------


def _expect_size(what: str, data: bytes, size: int) -> None:
    if len(data) != size:
        raise RemoteProtocolError(f"{what} carries {size} data bytes, got {len(data)}")


def _remote_sequence(data: bytes, what: str) -> int:
    _expect_size(what, data, 1)
    if data[0] == 0:
        raise RemoteProtocolError("report sequence 0 is reserved")
    return data[0]


def _remote_ticket(data: bytes) -> str:
    if not 1 <= len(data) <= MAX_TICKET or not all(0x20 <= b < 0x7F for b in data):
        raise RemoteProtocolError(f"ticket must be 1..{MAX_TICKET} printable ASCII: {data!r}")
    return data.decode("ascii")


def _decode_report(
    address: int, function_code: int, data: bytes
) -> KeyPressed | RatingPressed | ReasonPressed:
    if RATING_REPORT_BASE | RATING_MIN <= function_code <= RATING_REPORT_BASE | RATING_MAX:
        sequence = _remote_sequence(data, "rating report")
        return RatingPressed(address, function_code & ~RATING_REPORT_BASE, sequence)
    if REASON_REPORT_BASE | REASON_MIN <= function_code <= REASON_REPORT_BASE | REASON_MAX:
        sequence = _remote_sequence(data, "reason report")
        return ReasonPressed(address, function_code & ~REASON_REPORT_BASE, sequence)
    if KEY_REPORT_BASE < function_code < RATING_REPORT_BASE:
        key = key_from_code(function_code & ~KEY_REPORT_BASE)
        return KeyPressed(address, key, _remote_sequence(data, f"{key.name} report"))
    raise RemoteProtocolError(f"unknown function {function_code:#04x}")


def decode_body(address: int, function_code: int, data: bytes) -> VendorEvent:
    """Map one checked frame body to its event."""
    if not ADDRESS_MIN <= address <= ADDRESS_MAX:
        raise RemoteProtocolError(f"address {address} outside {ADDRESS_MIN}..{ADDRESS_MAX}")
    try:
        function = Function(function_code)
    except ValueError:
        return _decode_report(address, function_code, data)
    if function is Function.POLL:
        _expect_size("POLL", data, 1)
        return Poll(address, data[0])
    if function is Function.CALL_DISPLAY:
        if not data:
            raise RemoteProtocolError("CALL_DISPLAY without data")
        return CallDisplay(address, _remote_ticket(data[1:]), data[0])
    if function is Function.RECALL_DISPLAY:
        return RecallDisplay(address, _remote_ticket(data))
    if function is Function.RATING_REQUEST:
        _expect_size("RATING_REQUEST", data, 1)
        return RequestRating(address, data[0])
    if function is Function.LED_TEXT:
        return ShowText(address, decode_gb2312(data))
    if function is Function.IDLE:
        _expect_size("IDLE", data, 1)
        return Idle(address, data[0])
    # Function.ACK
    _expect_size("ACK", data, 1)
    try:
        acked = Function(data[0])
    except ValueError:
        raise RemoteProtocolError(f"ACK of unknown function {data[0]:#04x}") from None
    return Ack(address, acked)


def _frame_at(buf: bytearray, pos: int) -> int | None:
    """Total size of a complete, checksum-valid frame at ``pos``, else None."""
    if len(buf) < pos + HEADER_SIZE:
        return None
    length = buf[pos + 1]
    if buf[pos + 2] != length or buf[pos + 3] != START or not MIN_LENGTH <= length <= MAX_LENGTH:
        return None
    total = HEADER_SIZE + length + TRAILER_SIZE
    if len(buf) < pos + total or buf[pos + total - 1] != END:
        return None
    body = buf[pos + HEADER_SIZE : pos + HEADER_SIZE + length]
    return total if sum8(body) == buf[pos + total - 2] else None


class VendorDecoder:
    """Resynchronising sans-IO decoder: feed bytes, take events one at a time.

    Works for both directions (the simulator decodes what the host sends).
    Every call either returns an event, raises after consuming the bad bytes,
    or returns :data:`NEED_DATA`; each pass of its loop consumes at least one
    byte, so it never spins.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.discarded = 0
        """Bytes skipped while hunting for a frame start (preambles included)."""

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _skip(self, count: int) -> None:
        del self._buffer[:count]
        self.discarded += count

    def _later_frame(self) -> int | None:
        """Start of a complete valid frame after position 0, if the buffer holds one."""
        pos = self._buffer.find(START, 1)
        while pos >= 0:
            if _frame_at(self._buffer, pos) is not None:
                return pos
            pos = self._buffer.find(START, pos + 1)
        return None

    def next_event(self) -> VendorEvent | NeedData:
        buf = self._buffer
        while True:
            start = buf.find(START)
            if start < 0:
                self._skip(len(buf))
                return NEED_DATA
            if start:
                self._skip(start)
            if len(buf) < HEADER_SIZE:
                return NEED_DATA
            length = buf[1]
            if buf[2] != length or buf[3] != START or not MIN_LENGTH <= length <= MAX_LENGTH:
                self._skip(1)  # that 68 was not a start
                continue
            total = HEADER_SIZE + length + TRAILER_SIZE
            if len(buf) < total:
                later = self._later_frame()
                if later is None:
                    return NEED_DATA
                self._skip(later)  # a header that promised more than ever came
                continue
            if buf[total - 1] != END:
                self._skip(1)
                continue
            body = bytes(buf[HEADER_SIZE : HEADER_SIZE + length])
            checksum = buf[total - 2]
            if sum8(body) != checksum:
                self._skip(1)  # resync from the next byte: a real frame may hide inside
                raise ChecksumError("vendor frame sum8", expected=sum8(body), actual=checksum)
            del buf[:total]
            return decode_body(body[0], body[1], body[2:])


# --- both ends of the report queue (pure state) ------------------------------------------------


class TerminalReports:
    """The terminal side: queued reports and the ack rule, as firmware keeps them."""

    def __init__(self, address: int) -> None:
        self.address = check_address(address)
        self._queue: deque[KeyPressed | RatingPressed | ReasonPressed] = deque()
        self._last_sequence = 0
        self._sent: int | None = None  # sequence of the report in the last answer
        self.refused = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _latch(self, make: type[KeyPressed | RatingPressed | ReasonPressed],
               code: int) -> int | None:
        if len(self._queue) >= REPORT_QUEUE_SIZE:
            self.refused += 1
            return None
        self._last_sequence = next_sequence(self._last_sequence)
        if make is KeyPressed:
            self._queue.append(KeyPressed(self.address, Key(code), self._last_sequence))
        elif make is RatingPressed:
            self._queue.append(RatingPressed(self.address, code, self._last_sequence))
        else:
            self._queue.append(ReasonPressed(self.address, code, self._last_sequence))
        return self._last_sequence

    def press(self, key: Key) -> int | None:
        """Queue a key press; its sequence, or None when refused (queue full)."""
        return self._latch(KeyPressed, Key(key))

    def rate(self, value: int) -> int | None:
        """Queue a rating; its sequence, or None when refused (queue full)."""
        return self._latch(RatingPressed, check_rating(value, LocalProtocolError))

    def choose_reason(self, reason: int) -> int | None:
        """Queue a 差评 follow-up reason; its sequence, or None when refused (queue full)."""
        return self._latch(ReasonPressed, check_reason(reason, LocalProtocolError))

    def answer_poll(self, poll: Poll, status: int = 0) -> TerminalFrame:
        """Apply the poll's ack, then answer with the oldest report or IDLE."""
        if self._queue and poll.ack_sequence and poll.ack_sequence == self._sent:
            self._queue.popleft()
        self._sent = None
        if not self._queue:
            return Idle(self.address, status)
        report = self._queue[0]
        self._sent = report.sequence
        return report


class VendorPoller:
    """The host side, per terminal address: which ack the next POLL carries.

    Call :meth:`taken` for every key or rating report decoded from an answer,
    after handling it; :meth:`poll` builds the next POLL frame.
    """

    def __init__(self) -> None:
        self._taken: dict[int, int] = {}

    def poll(self, address: int) -> bytes:
        return encode(Poll(address, self._taken.get(address, 0)))

    def taken(self, report: KeyPressed | RatingPressed | ReasonPressed) -> None:
        self._taken[report.window_address] = report.sequence


__all__ = [
    "ANSWER_FRAME",
    "BAUD",
    "END",
    "KEY_REPORT_BASE",
    "MAX_DATA",
    "MAX_FRAME",
    "MAX_LENGTH",
    "MAX_TICKET",
    "MIN_LENGTH",
    "NEED_DATA",
    "PARITY",
    "PREAMBLE",
    "RATING_REPORT_BASE",
    "REASON_REPORT_BASE",
    "REPORT_QUEUE_SIZE",
    "SEQUENCE_MAX",
    "START",
    "STATUS_RATING_PENDING",
    "Ack",
    "CallDisplay",
    "Function",
    "HostFrame",
    "Idle",
    "NeedData",
    "Poll",
    "RecallDisplay",
    "TerminalFrame",
    "TerminalReports",
    "VendorDecoder",
    "VendorEvent",
    "VendorPoller",
    "decode_body",
    "encode",
    "encode_frame",
    "key_function",
    "next_sequence",
    "rating_function",
    "reason_function",
]

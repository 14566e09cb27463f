"""onedoor's default LED-screen frame (RS485), as a pure sans-IO codec.

Many Chinese LED controllers speak a vendor variant of this shape; onedoor's
own byte values are below and in ``docs/PROTOCOLS.md (section 2)``. One bus carries
several screens, one address each::

    +------+------+---------+---------+-----+--------+--------+---------+--------+--------+
    | 0xAA | 0x55 | address | command | seq | len hi | len lo | payload | crc lo | crc hi |
    +------+------+---------+---------+-----+--------+--------+---------+--------+--------+
      sync (2)       1         1        1     payload length,  0..1024   CRC-16/MODBUS over
                                              big endian                address..payload

* ``address`` 0x01..0xFE is one screen; :data:`BROADCAST` (0xFF) is every
  screen, and nobody answers a broadcast.
* ``seq`` is chosen by the host (0..255, wrapping: :func:`next_seq`); the
  screen's ACK or NACK echoes it in its own ``seq`` field and carries the
  screen's own address (:func:`is_reply_to` matches a reply to its request;
  :func:`expects_reply` says whether one will come).
* Host to screen: ``PING`` 0x01, ``SHOW_TEXT`` 0x10, ``CLEAR`` 0x11,
  ``BRIGHTNESS`` 0x12, ``SET_CLOCK`` 0x13. Screen to host: ``ACK`` 0x80,
  ``NACK`` 0x81 with a one-byte :class:`NackReason`. A screen answers every
  non-broadcast frame addressed to it whose CRC is good: ACK if it applied
  it, NACK if not. A frame with a bad CRC gets no answer (its address cannot
  be trusted); the host retries after its timeout.

Errors. :func:`encode` raises :class:`LocalProtocolError` (text outside
GB2312, a field out of range). :meth:`LedDecoder.next_event` *raises* every
problem with the incoming bytes, consistently, and always after dropping
the bad bytes, so the caller counts the error and calls ``next_event()``
again to get the following frame:

* :class:`~firmware_protocols.errors.ChecksumError`: a complete frame whose
  CRC does not match;
* :class:`LedFrameError`: a frame with a good CRC but bad contents (unknown
  command, wrong payload length, value out of range, text not GB2312); it
  carries ``address``, ``seq`` and the :class:`NackReason` a screen answers;
* :class:`~firmware_protocols.errors.RemoteProtocolError`: a length field
  above :data:`MAX_PAYLOAD`, or a frame cut short (see
  :meth:`LedDecoder.line_idle`).

After a checksum error, an oversized length or a truncated frame the decoder
drops only the two sync bytes and searches for the next ``AA 55``, so a
corrupted length field never swallows the frame that follows. Bytes before a
sync are skipped silently and counted in :attr:`LedDecoder.skipped_bytes`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from .crc import crc16_modbus, crc16_modbus_bytes
from .decoding import NEED_DATA, NeedData
from .errors import ChecksumError, LocalProtocolError, RemoteProtocolError
from .gb2312 import decode_gb2312, encode_gb2312

SYNC: Final = b"\xaa\x55"  # frame start
BROADCAST: Final = 0xFF  # every screen on the bus; never acknowledged
HEADER_SIZE: Final = 7  # sync (2), address, command, seq, length (2)
CRC_SIZE: Final = 2
MAX_PAYLOAD: Final = 1024  # a longer length field is a corrupt frame
ALL_AREAS: Final = 0xFF  # CLEAR area meaning "every area"
MAX_BRIGHTNESS: Final = 15
MAX_SPEED: Final = 15
CLOCK_EPOCH_YEAR: Final = 2000  # SET_CLOCK sends year - 2000 in one byte (2000..2099)
SHOW_TEXT_HEADER: Final = 5  # area, line, colour, effect, speed
MAX_TEXT_BYTES: Final = MAX_PAYLOAD - SHOW_TEXT_HEADER
REPLY_FRAME_MAX: Final = HEADER_SIZE + 1 + CRC_SIZE  # an ACK (9 bytes) or a NACK (10)


class Command(enum.IntEnum):
    """The command byte."""

    PING = 0x01  # host -> screen, no payload; answered by ACK
    SHOW_TEXT = 0x10  # host -> screen: area, line, colour, effect, speed, GB2312 text
    CLEAR = 0x11  # host -> screen: area (0xFF: all)
    BRIGHTNESS = 0x12  # host -> screen: level 0..15
    SET_CLOCK = 0x13  # host -> screen: year-2000, month, day, hour, minute, second
    ACK = 0x80  # screen -> host, no payload; seq echoes the acknowledged frame
    NACK = 0x81  # screen -> host: reason; seq echoes the refused frame


class Colour(enum.IntEnum):
    """Text colour on single- and dual-colour (red/green) modules."""

    RED = 0x01
    GREEN = 0x02
    YELLOW = 0x03  # red + green on dual-colour modules


class Effect(enum.IntEnum):
    """How the text enters the line."""

    STATIC = 0x00
    SCROLL_LEFT = 0x01  # marquee, for text longer than the line
    SCROLL_UP = 0x02
    FLASH = 0x03  # e.g. the number just called


class NackReason(enum.IntEnum):
    """Why a screen refused a frame (payload of NACK)."""

    UNKNOWN_COMMAND = 0x01
    BAD_LENGTH = 0x02  # payload length wrong for the command
    BAD_PARAMETER = 0x03  # a field out of range (area, brightness, date, ...)
    BAD_TEXT = 0x04  # text bytes are not GB2312
    BUSY = 0x05  # the screen cannot take the frame now; retry


_COLOURS: Final = frozenset(c.value for c in Colour)
_EFFECTS: Final = frozenset(e.value for e in Effect)
_REASONS: Final = frozenset(r.value for r in NackReason)
_COMMANDS: Final = frozenset(c.value for c in Command)


class LedFrameError(RemoteProtocolError):
    """A frame with a good CRC whose contents a screen must refuse with NACK."""

    def __init__(
        self, message: str, *, address: int, command: int, seq: int, reason: NackReason
    ) -> None:
        super().__init__(f"{message} (address {address:#04x}, command {command:#04x}, seq {seq})")
        self.address = address
        self.command = command
        self.seq = seq
        self.reason = reason


def _check(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise LocalProtocolError(f"{name} must be {low}..{high}, got {value}")


def _check_header(address: int, seq: int) -> None:
    _check("address", address, 0, 0xFF)
    _check("seq", seq, 0, 0xFF)


# --- Events ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ping:
    address: int
    seq: int

    def __post_init__(self) -> None:
        _check_header(self.address, self.seq)


@dataclass(frozen=True, slots=True)
class ShowText:
    """Show ``text`` on one line of one area (an empty text blanks the line)."""

    address: int
    seq: int
    text: str
    area: int = 0
    line: int = 0
    colour: Colour = Colour.RED
    effect: Effect = Effect.STATIC
    speed: int = 0

    def __post_init__(self) -> None:
        _check_header(self.address, self.seq)
        _check("area", self.area, 0, 0xFE)
        _check("line", self.line, 0, 0xFE)
        _check("speed", self.speed, 0, MAX_SPEED)
        if self.colour not in _COLOURS or self.effect not in _EFFECTS:
            raise LocalProtocolError(f"unknown colour {self.colour} or effect {self.effect}")
        encode_gb2312(self.text, MAX_TEXT_BYTES)


@dataclass(frozen=True, slots=True)
class Clear:
    """Blank one area, or every area with :data:`ALL_AREAS`."""

    address: int
    seq: int
    area: int = ALL_AREAS

    def __post_init__(self) -> None:
        _check_header(self.address, self.seq)
        _check("area", self.area, 0, 0xFF)


@dataclass(frozen=True, slots=True)
class SetBrightness:
    address: int
    seq: int
    level: int  # 0 (dimmest, not off) .. 15

    def __post_init__(self) -> None:
        _check_header(self.address, self.seq)
        _check("brightness", self.level, 0, MAX_BRIGHTNESS)


@dataclass(frozen=True, slots=True)
class SetClock:
    """Set the screen's clock to the wall time of ``when`` (whole seconds; tz is not sent)."""

    address: int
    seq: int
    when: datetime

    def __post_init__(self) -> None:
        _check_header(self.address, self.seq)
        _check("clock year", self.when.year, CLOCK_EPOCH_YEAR, CLOCK_EPOCH_YEAR + 99)
        if self.when.microsecond:
            raise LocalProtocolError(
                "SetClock carries whole seconds: pass when.replace(microsecond=0) "
                "or use set_clock()"
            )


@dataclass(frozen=True, slots=True)
class Ack:
    """Screen ``address`` applied the frame with sequence ``seq``."""

    address: int
    seq: int

    def __post_init__(self) -> None:
        _check_header(self.address, self.seq)


@dataclass(frozen=True, slots=True)
class Nack:
    """Screen ``address`` refused the frame with sequence ``seq``."""

    address: int
    seq: int
    reason: NackReason

    def __post_init__(self) -> None:
        _check_header(self.address, self.seq)
        if self.reason not in _REASONS:
            raise LocalProtocolError(f"unknown NACK reason {self.reason}")


LedRequest = Ping | ShowText | Clear | SetBrightness | SetClock
LedReply = Ack | Nack
LedEvent = LedRequest | LedReply


# --- Encoder -----------------------------------------------------------------------------------
def encode_frame(address: int, command: int, seq: int, payload: bytes = b"") -> bytes:
    """One raw frame: sync, header, payload and CRC (for tests and vendor variants)."""
    _check_header(address, seq)
    _check("command", command, 0, 0xFF)
    if len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = bytes([address, command, seq]) + len(payload).to_bytes(2, "big") + payload
    return SYNC + body + crc16_modbus_bytes(body)


def _payload(event: LedEvent) -> tuple[Command, bytes]:
    match event:
        case Ping():
            return Command.PING, b""
        case ShowText():
            head = bytes([event.area, event.line, event.colour, event.effect, event.speed])
            return Command.SHOW_TEXT, head + encode_gb2312(event.text)
        case Clear(area=area):
            return Command.CLEAR, bytes([area])
        case SetBrightness(level=level):
            return Command.BRIGHTNESS, bytes([level])
        case SetClock(when=when):
            date = (when.year - CLOCK_EPOCH_YEAR, when.month, when.day)
            return Command.SET_CLOCK, bytes((*date, when.hour, when.minute, when.second))
        case Ack():
            return Command.ACK, b""
        case Nack(reason=reason):
            return Command.NACK, bytes([reason])
    raise LocalProtocolError(f"not an LED event: {event!r}")  # pragma: no cover


def encode(event: LedEvent) -> bytes:
    """The frame of one event."""
    command, payload = _payload(event)
    return encode_frame(event.address, command, event.seq, payload)


def set_clock(address: int, seq: int, when: datetime) -> SetClock:
    """A :class:`SetClock` for ``when`` truncated to whole seconds."""
    return SetClock(address, seq, when.replace(microsecond=0))


def expects_reply(event: LedEvent) -> bool:
    """True when a screen will answer ``event`` with ACK or NACK (a non-broadcast request)."""
    return not isinstance(event, Ack | Nack) and event.address != BROADCAST


def is_reply_to(reply: LedEvent, request: LedRequest) -> bool:
    """True when ``reply`` is the ACK or NACK a screen sends for ``request``."""
    return (
        isinstance(reply, Ack | Nack)
        and reply.address == request.address
        and reply.seq == request.seq
    )


def next_seq(seq: int) -> int:
    """The sequence number after ``seq`` (wraps at 256)."""
    return (seq + 1) & 0xFF


# --- Decoder -----------------------------------------------------------------------------------
_PAYLOAD_SIZE: Final = {
    Command.PING: 0,
    Command.CLEAR: 1,
    Command.BRIGHTNESS: 1,
    Command.SET_CLOCK: 6,
    Command.ACK: 0,
    Command.NACK: 1,
}


def _parse(address: int, command: int, seq: int, payload: bytes) -> LedEvent:
    def refuse(message: str, reason: NackReason) -> LedFrameError:
        return LedFrameError(message, address=address, command=command, seq=seq, reason=reason)

    if command not in _COMMANDS:
        raise refuse("unknown command", NackReason.UNKNOWN_COMMAND)
    cmd = Command(command)
    expected = _PAYLOAD_SIZE.get(cmd)
    if expected is not None and len(payload) != expected:
        raise refuse(
            f"{cmd.name} needs {expected} payload bytes, got {len(payload)}",
            NackReason.BAD_LENGTH,
        )
    match cmd:
        case Command.PING:
            return Ping(address, seq)
        case Command.ACK:
            return Ack(address, seq)
        case Command.NACK:
            if payload[0] not in _REASONS:
                raise refuse(f"unknown NACK reason {payload[0]:#04x}", NackReason.BAD_PARAMETER)
            return Nack(address, seq, NackReason(payload[0]))
        case Command.CLEAR:
            return Clear(address, seq, payload[0])
        case Command.BRIGHTNESS:
            if payload[0] > MAX_BRIGHTNESS:
                raise refuse(f"brightness {payload[0]} above 15", NackReason.BAD_PARAMETER)
            return SetBrightness(address, seq, payload[0])
        case Command.SET_CLOCK:
            year, month, day, hour, minute, second = payload
            if year > 99:
                raise refuse(f"clock year byte {year} above 99", NackReason.BAD_PARAMETER)
            try:
                when = datetime(year + CLOCK_EPOCH_YEAR, month, day, hour, minute, second)
            except ValueError:
                raise refuse(f"bad clock {payload.hex(' ')}", NackReason.BAD_PARAMETER) from None
            return SetClock(address, seq, when)
        case Command.SHOW_TEXT:
            if len(payload) < SHOW_TEXT_HEADER:
                raise refuse("SHOW_TEXT shorter than its 5-byte header", NackReason.BAD_LENGTH)
            area, line, colour, effect, speed = payload[:SHOW_TEXT_HEADER]
            if area == 0xFF or line == 0xFF or speed > MAX_SPEED:
                raise refuse("area, line or speed out of range", NackReason.BAD_PARAMETER)
            if colour not in _COLOURS or effect not in _EFFECTS:
                raise refuse(f"colour {colour} / effect {effect} unknown", NackReason.BAD_PARAMETER)
            raw = payload[SHOW_TEXT_HEADER:]
            try:
                text = decode_gb2312(raw)
            except RemoteProtocolError:
                raise refuse(f"text is not GB2312: {raw!r}", NackReason.BAD_TEXT) from None
            if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
                raise refuse(f"control character in text {text!r}", NackReason.BAD_TEXT)
            return ShowText(address, seq, text, area, line, Colour(colour), Effect(effect), speed)
    raise AssertionError(cmd)  # pragma: no cover


class LedDecoder:
    """Resynchronising sans-IO frame reader for either end of the bus.

    ``receive_data(bytes)``, then call :meth:`next_event` until it returns
    :data:`NEED_DATA`. It raises the errors listed in the module docstring,
    each time having dropped the bad bytes already: catch
    :class:`~firmware_protocols.errors.ProtocolError`, count, call again.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._idle = False
        self.skipped_bytes = 0
        """Bytes discarded while hunting for a sync (line noise, bad frames)."""

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the bus."""
        self._buf += data
        if data:
            self._idle = False

    def line_idle(self) -> None:
        """Tell the decoder the bus went quiet (the I/O layer owns the clock).

        A frame still incomplete at that point will never complete: the next
        :meth:`next_event` reports it as a truncated frame and resynchronises.
        Without this a corrupted length field holds the decoder until up to
        :data:`MAX_PAYLOAD` more bytes arrive (it is bounded either way).
        """
        self._idle = True

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

    def _drop(self, n: int) -> None:
        del self._buf[:n]
        self.skipped_bytes += n

    def _incomplete(self, have: int, need: int | None) -> NeedData:
        if self._idle:
            self._drop(len(SYNC))
            wanted = "a header" if need is None else f"{need} bytes"
            raise RemoteProtocolError(f"frame truncated: line idle after {have} bytes of {wanted}")
        return NEED_DATA

    def next_event(self) -> LedEvent | NeedData:
        """The next frame's event, or :data:`NEED_DATA`."""
        buf = self._buf
        start = buf.find(SYNC)
        if start < 0:
            keep = 1 if buf[-1:] == SYNC[:1] and not self._idle else 0
            self._drop(len(buf) - keep)
            return NEED_DATA
        self._drop(start)
        if len(buf) < HEADER_SIZE:
            return self._incomplete(len(buf), None)
        length = buf[5] << 8 | buf[6]
        if length > MAX_PAYLOAD:
            self._drop(len(SYNC))
            raise RemoteProtocolError(f"length field {length} above {MAX_PAYLOAD}: corrupt frame")
        total = HEADER_SIZE + length + CRC_SIZE
        if len(buf) < total:
            return self._incomplete(len(buf), total)
        body = bytes(buf[len(SYNC) : HEADER_SIZE + length])
        received = buf[total - 2] | buf[total - 1] << 8
        expected = crc16_modbus(body)
        if received != expected:
            self._drop(len(SYNC))
            raise ChecksumError(
                f"LED frame CRC mismatch (address {body[0]:#04x}, seq {body[2]})",
                expected=expected,
                actual=received,
            )
        del buf[:total]
        address, command, seq = body[0], body[1], body[2]
        return _parse(address, command, seq, body[5:])


def decode_all(data: bytes) -> list[LedEvent]:
    """Every frame in ``data``; raises on the first error or on leftover bytes."""
    decoder = LedDecoder()
    decoder.receive_data(data)
    events: list[LedEvent] = []
    while (event := decoder.next_event()) is not NEED_DATA:
        events.append(event)
    if decoder.pending_bytes or decoder.skipped_bytes:
        raise RemoteProtocolError(
            f"{decoder.skipped_bytes} bytes skipped, {decoder.pending_bytes} left over"
        )
    return events


__all__ = [
    "ALL_AREAS",
    "BROADCAST",
    "MAX_BRIGHTNESS",
    "MAX_PAYLOAD",
    "MAX_SPEED",
    "MAX_TEXT_BYTES",
    "NEED_DATA",
    "REPLY_FRAME_MAX",
    "SYNC",
    "Ack",
    "Clear",
    "Colour",
    "Command",
    "Effect",
    "LedDecoder",
    "LedEvent",
    "LedFrameError",
    "LedReply",
    "LedRequest",
    "Nack",
    "NackReason",
    "Ping",
    "SetBrightness",
    "SetClock",
    "ShowText",
    "decode_all",
    "encode",
    "encode_frame",
    "expects_reply",
    "is_reply_to",
    "next_seq",
    "set_clock",
]

"""Register map of onedoor's Modbus RTU window terminal, as pure functions.

One terminal per service window: keypad (叫号器), rating pad (评价器) and the
small window LED, on an RS485 bus (19200 8E1 by default: the Modbus serial-line
specification's default framing, even parity), one Modbus slave id
per window. The edge daemon's bus driver and the simulator share this module;
it never imports pymodbus and touches no ports or clocks.

Register map (one address space: FC03 and FC04 read it alike; every write is
FC16 or, carrying an ack into the next poll, FC23; firmware needs FC03, FC04,
FC16 and FC23 only)::

    addr   name               access  content
    0x0000 DEVICE_TYPE        ro      0x4F44 ("OD"): a onedoor window terminal
    0x0001 FIRMWARE_VERSION   ro      major << 8 | minor
    0x0002 BOOT_ID            ro      random, non-zero, new at every power-up
    0x0003 UPTIME             ro      seconds since power-up, modulo 65536
    0x0004 STATUS             ro      STATUS_* bits
    0x0005 INPUT_SEQUENCE     ro      sequence of the newest latched input; 0 = none yet
    0x0006 INPUT_PENDING      ro      unacknowledged inputs in the queue, 0..8
    0x0007 INPUT_REFUSED      ro      inputs refused (queue full) since power-up, mod 65536
    0x0008 INPUT_QUEUE[8]     ro      pending inputs, oldest first: kind << 8 | code; 0 past PENDING
                                      (kind 1 key, 2 rating 1..5, 3 差评 reason 1..15)
    0x0100 INPUT_ACK          rw      host writes the newest sequence it took
    0x0101 RATING_REQUEST     rw      seconds to keep the rating pad lit; 0 cancels
    0x0110 LED_TEXT_LENGTH    rw      bytes of GB2312 text in LED_TEXT, 0..64
    0x0111 LED_TEXT[32]       rw      GB2312 bytes, two per register, high byte first

Latching (why presses are never lost and retries are harmless): the terminal
appends each key press and rating to a FIFO of ``INPUT_QUEUE_SIZE`` entries
and numbers it (``INPUT_SEQUENCE`` counts up by one per input, mod 65536; the
entry at queue slot ``i`` has sequence ``INPUT_SEQUENCE - INPUT_PENDING + 1 + i``).
The host reads the poll block (registers 0x0000..0x000F, one FC04 read per
terminal) and hands it to :func:`decode_poll_block` with the :class:`PollCursor`
of the previous poll; that returns the inputs it has not seen yet and the FC16
write of ``INPUT_ACK`` to send. The terminal drops the acknowledged entries.

- A retried or repeated read changes nothing on the terminal.
- A lost ack leaves the entries queued; the next poll shows them again and the
  cursor recognises them as already taken, and acks again.
- A slow cycle loses nothing: entries wait until acknowledged. Only when more
  than 8 inputs wait does the terminal refuse the next one (it beeps, the
  person presses again) and count it in ``INPUT_REFUSED``, which the host
  reports as :class:`~firmware_protocols.terminal_events.InputsRefused`.
- The terminal honours an ack only for a sequence in its queue, so a stale ack
  (from before a power cycle) drops nothing; a new ``BOOT_ID`` resets the cursor.
- The ack may instead ride in the next poll: FC23 (read/write multiple
  registers) writes INPUT_ACK *before* it reads the poll block, as the Modbus
  specification orders it (:func:`encode_poll_request` with ``pending_ack``).
  That saves one transaction per terminal with inputs (see docs/bench/terminals.md);
  the entries then stay queued one cycle longer.

Keep the :class:`PollCursor` per slave id (a plain frozen value). With no
cursor (first contact) every queued input is reported: none was acknowledged.
A host that persists the (BOOT_ID, sequence) of the last input it *handled*
(durably, with the input's effect) resumes after a restart with
:func:`resume_cursor`: inputs it handled but had not acknowledged before it
died are then acknowledged, not handled twice.

Host side, one terminal per poll (with pymodbus or any RTU master)::

    reply = client.read_input_registers(POLL_BLOCK_START, count=POLL_BLOCK_COUNT, device_id=slave)
    result = decode_poll_block(slave, reply.registers, cursors.get(slave))
    for event in result.events: handle(event)     # KeyPressed, RatingPressed, InputsRefused
    cursors[slave] = result.cursor
    if result.ack: client.write_registers(result.ack.address, list(result.ack.values),
                                          device_id=slave)
    write = command_write(ShowText(slave, "请A012号到3号窗口"))   # or RequestRating
    client.write_registers(write.address, list(write.values), device_id=slave)

The module also carries a minimal RTU frame codec for the requests the host
sends (:func:`encode_read_request`, :func:`encode_poll_request`,
:func:`encode_write_request`) and its answers (:func:`response_size`,
:func:`decode_response`): golden bytes for tests and docs, and a driver that
does not want pymodbus can use them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .crc import crc16_modbus, crc16_modbus_bytes
from .errors import ChecksumError, LocalProtocolError, RemoteProtocolError
from .gb2312 import decode_gb2312, encode_gb2312
from .terminal_events import (
    HostCommand,
    InputsRefused,
    Key,
    KeyPressed,
    RatingPressed,
    ReasonPressed,
    RequestRating,
    ShowText,
    TerminalEvent,
    check_address,
    check_rating,
    check_rating_timeout,
    check_reason,
    key_from_code,
)

DEFAULT_BAUD: Final = 19200
DEFAULT_PARITY: Final = "E"  # 8E1, as the Modbus serial line specification requires
DEFAULT_STOP_BITS: Final = 1

# --- Modbus function codes the terminal implements (Modbus Application Protocol v1.1b3) -------
FC_READ_HOLDING_REGISTERS: Final = 0x03
FC_READ_INPUT_REGISTERS: Final = 0x04
FC_WRITE_MULTIPLE_REGISTERS: Final = 0x10
FC_READ_WRITE_MULTIPLE_REGISTERS: Final = 0x17  # the write happens before the read
EXCEPTION_FLAG: Final = 0x80  # set in the function code of an exception response
SUPPORTED_FUNCTIONS: Final = frozenset(
    {FC_READ_HOLDING_REGISTERS, FC_READ_INPUT_REGISTERS, FC_WRITE_MULTIPLE_REGISTERS,
     FC_READ_WRITE_MULTIPLE_REGISTERS}
)
"""What the firmware implements; any other function is answered with exception 01."""
EXCEPTION_ILLEGAL_FUNCTION: Final = 0x01

# --- read-only poll block --------------------------------------------------------------------
INPUT_QUEUE_SIZE: Final = 8

DEVICE_TYPE: Final = 0x0000
FIRMWARE_VERSION: Final = 0x0001
BOOT_ID: Final = 0x0002
UPTIME: Final = 0x0003
STATUS: Final = 0x0004
INPUT_SEQUENCE: Final = 0x0005
INPUT_PENDING: Final = 0x0006
INPUT_REFUSED: Final = 0x0007
INPUT_QUEUE: Final = 0x0008

POLL_BLOCK_START: Final = DEVICE_TYPE
POLL_BLOCK_COUNT: Final = INPUT_QUEUE + INPUT_QUEUE_SIZE - POLL_BLOCK_START  # 16

DEVICE_TYPE_WINDOW_TERMINAL: Final = 0x4F44  # ASCII "OD"

STATUS_RATING_PENDING: Final = 0x0001  # the rating pad is lit, waiting for the citizen
STATUS_KEYPAD_FAULT: Final = 0x0010
STATUS_RATING_PAD_FAULT: Final = 0x0020
STATUS_LED_FAULT: Final = 0x0040
STATUS_FAULTS: Final = STATUS_KEYPAD_FAULT | STATUS_RATING_PAD_FAULT | STATUS_LED_FAULT

# An INPUT_QUEUE entry is kind << 8 | code.
INPUT_KIND_KEY: Final = 0x01  # code = Key value
INPUT_KIND_RATING: Final = 0x02  # code = rating 1..5
INPUT_KIND_REASON: Final = 0x03  # code = the number of a 差评 follow-up reason, 1..15

# --- read-write block ------------------------------------------------------------------------
INPUT_ACK: Final = 0x0100
RATING_REQUEST: Final = 0x0101
LED_TEXT_LENGTH: Final = 0x0110
LED_TEXT: Final = 0x0111
LED_TEXT_REGISTERS: Final = 32
LED_TEXT_MAX_BYTES: Final = 2 * LED_TEXT_REGISTERS  # 32 Chinese characters
LED_BLOCK_START: Final = LED_TEXT_LENGTH  # read the LED block back with FC03 from here
LED_BLOCK_COUNT: Final = 1 + LED_TEXT_REGISTERS
WRITABLE_START: Final = INPUT_ACK
WRITABLE_COUNT: Final = LED_TEXT + LED_TEXT_REGISTERS - WRITABLE_START

SEQUENCE_MODULUS: Final = 1 << 16
_HALF_RANGE: Final = SEQUENCE_MODULUS // 2
_REGISTER_MAX: Final = 0xFFFF
MAX_READ_COUNT: Final = 125  # registers in one FC03/FC04 answer (spec limit)
MAX_WRITE_COUNT: Final = 123  # registers in one FC16 request (spec limit)


# --- typed values ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TerminalStatus:
    """The identity and health part of a poll block."""

    window_address: int
    firmware_version: tuple[int, int]
    boot_id: int
    uptime: int
    flags: int

    @property
    def rating_pending(self) -> bool:
        return bool(self.flags & STATUS_RATING_PENDING)

    @property
    def faults(self) -> int:
        return self.flags & STATUS_FAULTS


@dataclass(frozen=True, slots=True)
class PollCursor:
    """What the host has already taken from one terminal (keep one per slave id)."""

    boot_id: int
    taken_sequence: int
    refused: int


@dataclass(frozen=True, slots=True)
class RegisterWrite:
    """One FC16 write: ``values`` into consecutive registers from ``address`` of ``slave``."""

    slave: int
    address: int
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PollResult:
    """New events of one poll, the cursor for the next, and the ack to send (if any)."""

    status: TerminalStatus
    events: tuple[TerminalEvent, ...]
    cursor: PollCursor
    ack: RegisterWrite | None


# --- inputs ----------------------------------------------------------------------------------


def encode_input(value: Key | int, *, rating: bool = False, reason: bool = False) -> int:
    """The INPUT_QUEUE entry for a key (default), a rating 1..5 (``rating=True``) or a
    差评 follow-up reason 1..15 (``reason=True``)."""
    if rating:
        return INPUT_KIND_RATING << 8 | check_rating(int(value), LocalProtocolError)
    if reason:
        return INPUT_KIND_REASON << 8 | check_reason(int(value), LocalProtocolError)
    try:
        key = Key(value)
    except ValueError:
        raise LocalProtocolError(f"unknown key {value!r}") from None
    return INPUT_KIND_KEY << 8 | key


def decode_input(
    window_address: int, sequence: int, entry: int
) -> KeyPressed | RatingPressed | ReasonPressed:
    """The event for one INPUT_QUEUE entry."""
    kind, code = entry >> 8, entry & 0xFF
    if kind == INPUT_KIND_KEY:
        return KeyPressed(window_address, key_from_code(code), sequence)
    if kind == INPUT_KIND_RATING:
        return RatingPressed(window_address, check_rating(code, RemoteProtocolError), sequence)
    if kind == INPUT_KIND_REASON:
        return ReasonPressed(window_address, check_reason(code, RemoteProtocolError), sequence)
    raise RemoteProtocolError(f"input entry {entry:#06x} has unknown kind {kind:#04x}")


def _serial_distance(now: int, then: int) -> int:
    """Steps from ``then`` forward to ``now`` in 16-bit serial-number arithmetic."""
    return (now - then) % SEQUENCE_MODULUS


class InputQueue:
    """The terminal side of the latch: numbered FIFO, refusal when full, ack.

    Pure state, no I/O: the simulator keeps one per terminal, and firmware
    written from this map behaves the same.
    """

    __slots__ = ("_entries", "refused", "sequence")

    def __init__(self) -> None:
        self.sequence = 0
        self.refused = 0
        self._entries: deque[int] = deque()

    @property
    def pending(self) -> int:
        return len(self._entries)

    def latch(self, entry: int) -> int | None:
        """Queue one input entry; its sequence, or None when refused (queue full)."""
        if len(self._entries) >= INPUT_QUEUE_SIZE:
            self.refused = (self.refused + 1) % SEQUENCE_MODULUS
            return None
        self.sequence = (self.sequence + 1) % SEQUENCE_MODULUS
        self._entries.append(entry)
        return self.sequence

    def acknowledge(self, sequence: int) -> int:
        """Drop queued entries up to ``sequence``; returns how many were dropped.

        An ack for a sequence that is not queued (stale, repeated, from before a
        power cycle) drops nothing.
        """
        oldest = (self.sequence - len(self._entries) + 1) % SEQUENCE_MODULUS
        dropped = _serial_distance(sequence, oldest) + 1
        if dropped > len(self._entries):
            return 0
        for _ in range(dropped):
            self._entries.popleft()
        return dropped

    def registers(self) -> list[int]:
        """INPUT_SEQUENCE, INPUT_PENDING, INPUT_REFUSED and INPUT_QUEUE."""
        queue = [*self._entries, *([0] * (INPUT_QUEUE_SIZE - len(self._entries)))]
        return [self.sequence, len(self._entries), self.refused, *queue]


# --- poll block ------------------------------------------------------------------------------


def _check_registers(registers: Sequence[int], count: int, what: str) -> None:
    if len(registers) != count:
        raise RemoteProtocolError(f"{what}: expected {count} registers, got {len(registers)}")
    for value in registers:
        if not 0 <= value <= _REGISTER_MAX:
            raise RemoteProtocolError(f"{what}: register value {value} out of 0..65535")


def encode_poll_block(
    *,
    firmware_version: tuple[int, int],
    boot_id: int,
    uptime: int,
    flags: int,
    inputs: InputQueue,
) -> list[int]:
    """The poll block a terminal serves (for the simulator and for tests)."""
    major, minor = firmware_version
    if not (0 <= major <= 0xFF and 0 <= minor <= 0xFF):
        raise LocalProtocolError(f"firmware version {firmware_version} does not fit a register")
    if not 1 <= boot_id <= _REGISTER_MAX:
        raise LocalProtocolError(f"boot id must be 1..65535, got {boot_id}")
    if not 0 <= flags <= _REGISTER_MAX:
        raise LocalProtocolError(f"status flags {flags:#x} do not fit a register")
    return [
        DEVICE_TYPE_WINDOW_TERMINAL,
        major << 8 | minor,
        boot_id,
        uptime % SEQUENCE_MODULUS,
        flags,
        *inputs.registers(),
    ]


def decode_poll_block(
    window_address: int, registers: Sequence[int], cursor: PollCursor | None
) -> PollResult:
    """Decode a poll block read from slave ``window_address``: new events and the ack.

    ``cursor`` is the one the previous poll of this terminal returned, or None
    at first contact. Inputs come oldest first, then an ``InputsRefused`` if the
    refusal counter moved (not at first contact: earlier refusals may have been
    reported by an earlier daemon). Decoding the same block again with the same
    cursor gives the same result; with the returned cursor it gives no events.
    Send ``result.ack`` (when not None) after handling the events.

    Raises :class:`RemoteProtocolError` for a block no terminal following this
    map could serve, including a sequence that went backwards within one boot;
    the caller should then drop its cursor for this slave (pass None next time).
    """
    check_address(window_address)
    _check_registers(registers, POLL_BLOCK_COUNT, "poll block")

    def reg(address: int) -> int:
        return registers[address - POLL_BLOCK_START]

    if reg(DEVICE_TYPE) != DEVICE_TYPE_WINDOW_TERMINAL:
        raise RemoteProtocolError(
            f"slave {window_address} is not a window terminal (device type {reg(DEVICE_TYPE):#06x})"
        )
    boot_id = reg(BOOT_ID)
    if boot_id == 0:
        raise RemoteProtocolError(f"slave {window_address} reports boot id 0")
    pending = reg(INPUT_PENDING)
    if pending > INPUT_QUEUE_SIZE:
        raise RemoteProtocolError(
            f"slave {window_address} reports {pending} pending inputs, at most {INPUT_QUEUE_SIZE}"
        )
    status = TerminalStatus(
        window_address=window_address,
        firmware_version=(reg(FIRMWARE_VERSION) >> 8, reg(FIRMWARE_VERSION) & 0xFF),
        boot_id=boot_id,
        uptime=reg(UPTIME),
        flags=reg(STATUS),
    )
    newest, refused = reg(INPUT_SEQUENCE), reg(INPUT_REFUSED)
    before_oldest = (newest - pending) % SEQUENCE_MODULUS  # the last sequence already acked

    if cursor is None:
        taken, refused_seen = before_oldest, refused
    elif cursor.boot_id != boot_id:  # power-cycled: it counts from 0 again
        taken, refused_seen = 0, 0
    else:
        taken, refused_seen = cursor.taken_sequence, cursor.refused
        if _serial_distance(newest, taken) >= _HALF_RANGE:
            raise RemoteProtocolError(
                f"slave {window_address} input sequence went backwards: {taken} -> {newest}"
            )
        if _serial_distance(refused, refused_seen) >= _HALF_RANGE:
            raise RemoteProtocolError(
                f"slave {window_address} refusal count went backwards: {refused_seen} -> {refused}"
            )

    events: list[TerminalEvent] = []
    # Entries at or before ``taken`` are repeats after a lost ack; entries after
    # it are new. (If ``taken`` is before the queue, others were acked by a
    # second master: we report what is still queued.)
    already = _serial_distance(taken, before_oldest)
    skip = already if already <= pending else 0
    for slot in range(skip, pending):
        sequence = (before_oldest + 1 + slot) % SEQUENCE_MODULUS
        events.append(decode_input(window_address, sequence, reg(INPUT_QUEUE + slot)))
    refused_now = _serial_distance(refused, refused_seen)
    if refused_now:
        events.append(InputsRefused(window_address, refused_now))

    ack = RegisterWrite(window_address, INPUT_ACK, (newest,)) if pending else None
    return PollResult(status, tuple(events), PollCursor(boot_id, newest, refused), ack)


def resume_cursor(registers: Sequence[int], boot_id: int, handled: int) -> PollCursor | None:
    """The cursor for a terminal's first poll after a host restart, from the last input
    the host *handled* before it (``boot_id`` and sequence ``handled``, persisted).

    With the same BOOT_ID, inputs up to ``handled`` still in the queue are repeats (their
    ack never reached the terminal) and later ones are new. None (first contact: every
    queued input is new) when the terminal rebooted since, or when ``handled`` lies ahead
    of its newest input (not this terminal's history). Refusals counted before the restart
    are not reported again. ``registers`` is the poll block just read.
    """
    if len(registers) != POLL_BLOCK_COUNT:
        return None  # decode_poll_block says what is wrong with it
    newest = registers[INPUT_SEQUENCE - POLL_BLOCK_START]
    if registers[BOOT_ID - POLL_BLOCK_START] != boot_id or not 0 <= handled < SEQUENCE_MODULUS:
        return None
    if _serial_distance(newest, handled) >= _HALF_RANGE:
        return None
    return PollCursor(boot_id, handled, registers[INPUT_REFUSED - POLL_BLOCK_START])


# --- host commands ---------------------------------------------------------------------------


def encode_led_text(text: str) -> list[int]:
    """LED_TEXT_LENGTH and the packed GB2312 text, to write from LED_TEXT_LENGTH with FC16.

    Only the registers the text needs are written: the length register tells the
    terminal where the text ends, so stale bytes beyond it never show.
    """
    data = encode_gb2312(text, LED_TEXT_MAX_BYTES)
    padded = data + b"\x00" * (len(data) % 2)
    packed = [padded[i] << 8 | padded[i + 1] for i in range(0, len(padded), 2)]
    return [len(data), *packed]


def decode_led_text(registers: Sequence[int]) -> str:
    """The text from LED_TEXT_LENGTH onwards (at least as many registers as it needs)."""
    if not registers:
        raise RemoteProtocolError("LED block is empty")
    length = registers[0]
    if not 0 <= length <= LED_TEXT_MAX_BYTES:
        raise RemoteProtocolError(f"LED text length {length} outside 0..{LED_TEXT_MAX_BYTES}")
    needed = (length + 1) // 2
    if len(registers) < 1 + needed:
        raise RemoteProtocolError(f"LED text of {length} bytes needs {needed} registers")
    data = bytearray()
    for value in registers[1 : 1 + needed]:
        if not 0 <= value <= _REGISTER_MAX:
            raise RemoteProtocolError(f"register value {value} out of 0..65535")
        data += value.to_bytes(2, "big")
    return decode_gb2312(bytes(data[:length]))


def command_write(command: HostCommand) -> RegisterWrite:
    """The single FC16 write that carries ``command`` to its terminal."""
    slave = check_address(command.window_address)
    if isinstance(command, ShowText):
        return RegisterWrite(slave, LED_TEXT_LENGTH, tuple(encode_led_text(command.text)))
    if isinstance(command, RequestRating):
        seconds = check_rating_timeout(command.timeout_seconds)
        return RegisterWrite(slave, RATING_REQUEST, (seconds,))
    raise LocalProtocolError(f"no register write for {command!r}")


# --- RTU frames (ADU = slave, PDU, CRC-16 low byte first) -------------------------------------


def _with_crc(frame: bytes) -> bytes:
    return frame + crc16_modbus_bytes(frame)


def encode_read_request(
    slave: int,
    start: int = POLL_BLOCK_START,
    count: int = POLL_BLOCK_COUNT,
    function: int = FC_READ_INPUT_REGISTERS,
) -> bytes:
    """FC03/FC04 request bytes (default: the poll block with FC04)."""
    check_address(slave)
    if function not in (FC_READ_HOLDING_REGISTERS, FC_READ_INPUT_REGISTERS):
        raise LocalProtocolError(f"function {function:#04x} is not a register read")
    if not 1 <= count <= MAX_READ_COUNT or not 0 <= start <= _REGISTER_MAX - count + 1:
        raise LocalProtocolError(f"cannot read {count} registers from {start:#06x}")
    return _with_crc(bytes((slave, function)) + start.to_bytes(2, "big") + count.to_bytes(2, "big"))


def _write_fields(write: RegisterWrite, max_count: int) -> bytes:
    """Start, count, byte count and values of a register write, as FC16 and FC23 carry them."""
    check_address(write.slave)
    count = len(write.values)
    if not 1 <= count <= max_count or not 0 <= write.address <= _REGISTER_MAX - count + 1:
        raise LocalProtocolError(f"cannot write {count} registers at {write.address:#06x}")
    if any(not 0 <= value <= _REGISTER_MAX for value in write.values):
        raise LocalProtocolError(f"register values out of 0..65535: {write.values}")
    head = write.address.to_bytes(2, "big") + count.to_bytes(2, "big") + bytes((2 * count,))
    return head + b"".join(v.to_bytes(2, "big") for v in write.values)


def encode_write_request(write: RegisterWrite) -> bytes:
    """FC16 request bytes for ``write``."""
    fields = _write_fields(write, MAX_WRITE_COUNT)
    return _with_crc(bytes((write.slave, FC_WRITE_MULTIPLE_REGISTERS)) + fields)


def encode_poll_request(slave: int, pending_ack: RegisterWrite | None = None) -> bytes:
    """The poll of ``slave``: FC04, or FC23 writing ``pending_ack`` (a PollResult.ack) first."""
    if pending_ack is None:
        return encode_read_request(slave)
    if pending_ack.slave != slave or pending_ack.address != INPUT_ACK:
        raise LocalProtocolError(f"{pending_ack} is not an INPUT_ACK write for slave {slave}")
    read = POLL_BLOCK_START.to_bytes(2, "big") + POLL_BLOCK_COUNT.to_bytes(2, "big")
    fields = _write_fields(pending_ack, 1)
    return _with_crc(bytes((slave, FC_READ_WRITE_MULTIPLE_REGISTERS)) + read + fields)


@dataclass(frozen=True, slots=True)
class ReadResponse:
    slave: int
    function: int
    registers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class WriteResponse:
    slave: int
    address: int
    count: int


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """The slave refused the request (Modbus exception code 1..11)."""

    slave: int
    function: int
    code: int


Response = ReadResponse | WriteResponse | ExceptionResponse

_READ_FUNCTIONS: Final = (
    FC_READ_HOLDING_REGISTERS,
    FC_READ_INPUT_REGISTERS,
    FC_READ_WRITE_MULTIPLE_REGISTERS,
)


def encode_exception_response(slave: int, function: int, code: int) -> bytes:
    """The exception answer of ``slave`` to ``function`` (for the simulated terminal)."""
    check_address(slave)
    if not 1 <= function <= 0x7F or not 1 <= code <= 0xFF:
        raise LocalProtocolError(f"function {function} / exception code {code} out of range")
    return _with_crc(bytes((slave, function | EXCEPTION_FLAG, code)))


def response_size(data: bytes) -> int | None:
    """Bytes the response starting ``data`` will have, or None while the header is short."""
    if len(data) < 3:
        return None
    function = data[1]
    if function & EXCEPTION_FLAG:
        return 5
    if function in _READ_FUNCTIONS:
        return 5 + data[2]
    if function == FC_WRITE_MULTIPLE_REGISTERS:
        return 8
    raise RemoteProtocolError(f"response with unsupported function {function:#04x}")


def decode_response(data: bytes) -> Response:
    """One complete response frame (exactly; use :func:`response_size` to cut it)."""
    size = response_size(data)
    if size is None or len(data) != size:
        raise RemoteProtocolError(f"response frame of {len(data)} bytes, expected {size}")
    expected, actual = crc16_modbus(data[:-2]), int.from_bytes(data[-2:], "little")
    if expected != actual:
        raise ChecksumError("Modbus RTU CRC", expected=expected, actual=actual)
    slave, function = data[0], data[1]
    if function & EXCEPTION_FLAG:
        return ExceptionResponse(slave, function & ~EXCEPTION_FLAG, data[2])
    if function == FC_WRITE_MULTIPLE_REGISTERS:
        return WriteResponse(
            slave, int.from_bytes(data[2:4], "big"), int.from_bytes(data[4:6], "big")
        )
    byte_count = data[2]
    if byte_count % 2:
        raise RemoteProtocolError(f"read response carries an odd byte count {byte_count}")
    body = data[3:-2]
    registers = tuple(int.from_bytes(body[i : i + 2], "big") for i in range(0, byte_count, 2))
    return ReadResponse(slave, function, registers)


__all__ = [
    "BOOT_ID",
    "DEFAULT_BAUD",
    "DEFAULT_PARITY",
    "DEFAULT_STOP_BITS",
    "DEVICE_TYPE",
    "DEVICE_TYPE_WINDOW_TERMINAL",
    "EXCEPTION_FLAG",
    "EXCEPTION_ILLEGAL_FUNCTION",
    "FC_READ_HOLDING_REGISTERS",
    "FC_READ_INPUT_REGISTERS",
    "FC_READ_WRITE_MULTIPLE_REGISTERS",
    "FC_WRITE_MULTIPLE_REGISTERS",
    "FIRMWARE_VERSION",
    "INPUT_ACK",
    "INPUT_KIND_KEY",
    "INPUT_KIND_RATING",
    "INPUT_KIND_REASON",
    "INPUT_PENDING",
    "INPUT_QUEUE",
    "INPUT_QUEUE_SIZE",
    "INPUT_REFUSED",
    "INPUT_SEQUENCE",
    "LED_BLOCK_COUNT",
    "LED_BLOCK_START",
    "LED_TEXT",
    "LED_TEXT_LENGTH",
    "LED_TEXT_MAX_BYTES",
    "LED_TEXT_REGISTERS",
    "MAX_READ_COUNT",
    "MAX_WRITE_COUNT",
    "POLL_BLOCK_COUNT",
    "POLL_BLOCK_START",
    "RATING_REQUEST",
    "SEQUENCE_MODULUS",
    "STATUS",
    "STATUS_FAULTS",
    "STATUS_KEYPAD_FAULT",
    "STATUS_LED_FAULT",
    "STATUS_RATING_PAD_FAULT",
    "STATUS_RATING_PENDING",
    "SUPPORTED_FUNCTIONS",
    "UPTIME",
    "WRITABLE_COUNT",
    "WRITABLE_START",
    "ExceptionResponse",
    "InputQueue",
    "PollCursor",
    "PollResult",
    "ReadResponse",
    "RegisterWrite",
    "Response",
    "TerminalStatus",
    "WriteResponse",
    "command_write",
    "decode_input",
    "decode_led_text",
    "decode_poll_block",
    "decode_response",
    "encode_exception_response",
    "encode_input",
    "encode_led_text",
    "encode_poll_block",
    "encode_poll_request",
    "encode_read_request",
    "encode_write_request",
    "response_size",
    "resume_cursor",
]

"""The window-terminal bus: keypads, rating pads and window LEDs on one RS485 line.

Two buses reach the terminals, one per hall: onedoor's Modbus RTU register
map (:class:`ModbusBus`, a pymodbus client) or the common vendor frame
(:class:`VendorBus`, pyserial + :mod:`firmware_protocols.vendor_frame`). Both
turn into the same :mod:`~firmware_protocols.terminal_events`, and
:class:`TerminalDriver` does the rest the same way for both:

* **One owner.** Only :meth:`TerminalDriver.run` touches the bus. Polls and
  host commands (window LED text, rating-pad requests) go through it one at a
  time; commands go first (someone is waiting to see them) and only the latest
  text per window is sent, so a burst of calls never queues stale frames.
* **Short timeouts that count the wire, dead terminals set aside.** Every exchange
  waits for its request and its answer to cross the line at the bus's baud rate
  (80 hanzi of LED text are 176 ms at 9600 baud) plus ``reply_timeout_s`` for the
  terminal to turn around. After ``dead_after`` silent polls in a row a terminal is
  *dead*: listed in the health detail (degraded; offline when every terminal is
  dead), and its LED text is sent again when it answers. After a failed exchange
  the bus stays quiet for one more ``reply_timeout_s``, so a late answer is
  dropped instead of being taken for the next exchange's (which would leave the
  bus one answer behind for good).
* **A dead terminal never stalls the others.** It is only *probed*: first
  ``dead_poll_interval_s`` after it died, then at twice the interval each time it
  stays silent, up to ``dead_poll_max_interval_s``; with the short
  ``probe_timeout_s`` turnaround (a margin on the poll's line time, not the reply
  timeout) and no quiet time after it; and at most one probe per poll cycle (every live
  terminal is polled between two probes). A probe then stretches one cycle in
  many by ~50 ms instead of every cycle by two reply timeouts (docs/bench/edge_devices.md).
* **Nothing lost, nothing doubled.** Terminals latch presses until the host
  acknowledges them (Modbus: ``INPUT_ACK`` with a per-terminal
  :class:`~firmware_protocols.modbus_terminal.PollCursor`; vendor: the ack
  sequence in the next POLL). The driver hands an input to the daemon's queue
  *before* acknowledging it, and recognises a repeat by its sequence, so a
  lost ack or a retried poll never doubles a press.
* **Not even over a crash.** Each :class:`KeyPress` and :class:`Rating` carries
  an :class:`~edge.devices.base.InputMark` (address, sequence, code, BOOT_ID);
  the daemon journals it in the transaction of the input's effect and gives the
  journaled marks back to :meth:`TerminalDriver.restore_inputs` at start. An
  input handled but not yet acknowledged when the daemon died is then
  acknowledged at the first poll and not handed on again (Modbus: same BOOT_ID
  and sequence at or before the mark; vendor: the very first answer repeats the
  mark's sequence and code; a terminal that rebooted meanwhile counts from 1
  again and its inputs are new — on the vendor bus, which has no boot id, unless
  its first report has the mark's very sequence and code). A daemon that
  restores marks also confirms each input once journaled
  (:meth:`TerminalDriver.input_handled`): until then its terminal is not polled
  again, so no ack reaches the terminal before the effect is on disk (at most
  ``ACK_HOLD_MAX_S``, so a lost confirmation cannot stop a keypad for good).

Keypad entry (:class:`KeypadEntry`): digits typed before SIGN_IN, TRANSFER or
CASE become its argument (staff number, service code, 办件编号); or press the key
first, then the digits, then 确认. CLEAR drops the entry; any other command key
abandons an unfinished one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import serial
import serial.rs485
import structlog
from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient

from firmware_protocols import modbus_terminal as mt
from firmware_protocols import vendor_frame as vf
from firmware_protocols.decoding import Decoder
from firmware_protocols.errors import ProtocolError, RemoteProtocolError
from firmware_protocols.gb2312 import encode_gb2312
from firmware_protocols.line import Parity, SerialTiming
from firmware_protocols.terminal_events import (
    HostCommand,
    InputsRefused,
    Key,
    KeyPressed,
    RatingPressed,
    ReasonPressed,
    RequestRating,
    ShowText,
    TerminalEvent,
    check_rating_timeout,
)

from .base import (
    DeviceConfigError,
    DeviceHealth,
    DeviceInput,
    DeviceKind,
    DeviceTimeout,
    HealthState,
    HealthTracker,
    InputMark,
    InputQueue,
    KeyPress,
    Rating,
    RatingReason,
    TerminalInput,
    WindowKey,
    stop_if_cancelled,
)
from .serial_port import RS485_MODES, AsyncSerial, Rs485Mode, SerialPortError, exchange

log = structlog.get_logger(__name__)


# --- keypad entry (pure) -------------------------------------------------------------------------
_COMMAND_KEYS: dict[Key, WindowKey] = {
    Key.NEXT: WindowKey.NEXT,
    Key.RECALL: WindowKey.RECALL,
    Key.TRANSFER: WindowKey.TRANSFER,
    Key.NO_SHOW: WindowKey.NO_SHOW,
    Key.PAUSE: WindowKey.PAUSE,
    Key.RESUME: WindowKey.RESUME,
    Key.FINISH: WindowKey.FINISH,
    Key.SIGN_IN: WindowKey.SIGN_IN,
    Key.SIGN_OUT: WindowKey.SIGN_OUT,
    Key.HELP_ACK: WindowKey.HELP_ACK,
    Key.CASE: WindowKey.CASE,
}
_ARGUMENT_KEYS = frozenset({WindowKey.SIGN_IN, WindowKey.TRANSFER, WindowKey.CASE})
MAX_ENTRY_DIGITS = 8  # a staff number or a service code
MAX_CASE_DIGITS = 32  # a 办件编号 (only CASE takes more than MAX_ENTRY_DIGITS)


class KeypadEntry:
    """Digit entry at one window: raw keys in, :class:`KeyPress` out (or nothing yet)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._digits = ""
        self._pending: WindowKey | None = None

    def _press(self, key: WindowKey, digits: str) -> KeyPress:
        self._digits, self._pending = "", None
        if key is WindowKey.CASE:
            return KeyPress(self.window, key, case_no=digits or None)
        argument = digits[:MAX_ENTRY_DIGITS] or None  # the digits past 8 were never kept
        if key is WindowKey.SIGN_IN:
            return KeyPress(self.window, key, staff_id=argument)
        if key is WindowKey.TRANSFER:
            return KeyPress(self.window, key, to_service=argument)
        return KeyPress(self.window, key)

    def key(self, key: Key) -> KeyPress | None:
        digit = key.digit
        if digit is not None:
            if len(self._digits) < MAX_CASE_DIGITS:
                self._digits += str(digit)
            return None
        if key is Key.CLEAR:
            self._digits, self._pending = "", None
            return None
        if key is Key.CONFIRM:
            if self._pending is None:
                self._digits = ""
                return None  # 确认 with nothing to confirm
            return self._press(self._pending, self._digits)
        command = _COMMAND_KEYS[key]
        if command in _ARGUMENT_KEYS and not self._digits:
            self._pending = command  # wait for the digits and 确认
            return None
        return self._press(command, self._digits)  # digits before NEXT etc. are dropped


# --- the two buses -------------------------------------------------------------------------------
class NoAnswer(DeviceTimeout):
    """A terminal did not answer within the timeout."""


class Refused(ProtocolError):
    """A terminal answered but refused the command (Modbus exception, ...)."""


class Bus(Protocol):
    """One physical bus; used by :class:`TerminalDriver` from its one task only."""

    async def open(self) -> None: ...

    def close(self) -> None: ...

    async def poll(self, address: int, timeout_s: float | None = None) -> tuple[TerminalEvent, ...]:
        """New inputs of one terminal, already acknowledged (or to be, next poll).

        ``timeout_s``, when shorter than the reply timeout, bounds each exchange of
        this poll (the probe of a dead terminal).
        """
        ...

    async def acknowledge(self, address: int) -> None:
        """Tell the terminal the inputs of the last poll were taken."""
        ...

    async def send(self, command: HostCommand) -> None:
        """Carry out a command; NoAnswer on silence, Refused when refused."""
        ...

    def check_text(self, text: str) -> None:
        """Raise LocalProtocolError if the terminal cannot show ``text``."""
        ...

    def forget(self, address: int) -> None:
        """Drop what is known of a terminal's acknowledgement state (after a protocol error)."""
        ...

    def restore(self, marks: Iterable[InputMark]) -> None:
        """The last input handled per terminal before a restart (before the first poll)."""
        ...

    def boot_id(self, address: int) -> int:
        """The terminal's boot id as last polled (0 when unknown or the bus has none)."""
        ...


MODBUS_LINE = SerialTiming(mt.DEFAULT_BAUD, mt.DEFAULT_PARITY)  # 19200 8E1
VENDOR_LINE = SerialTiming(vf.BAUD, vf.PARITY)  # 9600 8N1


class ModbusBus:
    """onedoor's Modbus RTU terminals through a pymodbus client.

    :meth:`poll` reads the poll block and returns the new inputs; the driver
    hands them to the daemon and then calls :meth:`acknowledge`. With
    ``ack_in_poll`` the ``INPUT_ACK`` rides in the terminal's next poll (one
    FC23 exchange instead of a separate FC16 write: a press costs the bus one
    transaction less); otherwise it is written at once. A pending ack is
    dropped when the terminal stops answering, so an ack from before a power
    cycle never reaches the terminal's new queue. pymodbus retries nothing (the
    driver decides). Each request gets the wire time of itself and its answer
    (with both t3.5 gaps) plus ``reply_timeout_s``; pymodbus' own timeout only
    backs that up. RS485 direction: ``auto`` or ``kernel`` (pymodbus writes the
    frames itself, so this module cannot toggle RTS around them).
    """

    def __init__(
        self,
        port: str,
        line: SerialTiming = MODBUS_LINE,
        reply_timeout_s: float = 0.1,
        *,
        ack_in_poll: bool = True,
        rs485: Rs485Mode = "auto",
    ) -> None:
        if rs485 == "rts":
            raise DeviceConfigError(
                'the Modbus bus cannot toggle RTS itself: use rs485 = "kernel" or an adapter '
                'that switches direction itself ("auto")'
            )
        self.line = line
        self._reply_timeout = reply_timeout_s
        self._rs485 = rs485
        self._client = AsyncModbusSerialClient(
            port,
            framer=FramerType.RTU,
            baudrate=line.baud,
            parity=line.parity,
            stopbits=line.stop_bits,
            bytesize=line.data_bits,
            # A backstop: every request has its own deadline (_deadline).
            timeout=reply_timeout_s + self._wire(_LARGEST_REQUEST, _LARGEST_RESPONSE),
            retries=0,  # the driver decides what to retry
            reconnect_delay=0,  # no background reconnects: the driver reopens
        )
        # pymodbus logs every timeout at ERROR; a silent terminal is routine here and
        # reported through the driver's health instead.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        self._port = port
        self._cursors: dict[int, mt.PollCursor] = {}
        self._acks: dict[int, mt.RegisterWrite] = {}
        self._ack_in_poll = ack_in_poll
        self._fc16_only: set[int] = set()  # terminals that refused FC23
        self._resume: dict[int, InputMark] = {}  # until the first poll after a restart

    async def open(self) -> None:
        if not await self._client.connect():
            raise SerialPortError(f"cannot open {self._port} (USB adapter unplugged?)")
        if self._rs485 == "kernel":
            transport = self._client.ctx.transport
            try:
                port = transport.sync_serial  # type: ignore[attr-defined]  # SerialTransport
                port.rs485_mode = serial.rs485.RS485Settings(
                    rts_level_for_tx=True, rts_level_for_rx=False
                )
            except (serial.SerialException, OSError, ValueError, AttributeError) as exc:
                self._client.close()
                raise SerialPortError(
                    f"{self._port} cannot do kernel RS485 direction control ({exc}); "
                    'use an adapter that switches direction itself (rs485 = "auto")'
                ) from exc

    def _wire(self, request_bytes: int, response_bytes: int) -> float:
        """A request and its answer on the line, with the t3.5 gap after each."""
        return (self.line.transmit_seconds(request_bytes + response_bytes)
                + 2 * self.line.frame_gap_seconds())

    def _deadline(self, request_bytes: int, response_bytes: int,
                  turnaround: float | None = None) -> float:
        return self._wire(request_bytes, response_bytes) + (
            self._reply_timeout if turnaround is None else turnaround)

    def close(self) -> None:
        self._client.close()

    @property
    def cursors(self) -> Mapping[int, mt.PollCursor]:
        """Per-terminal cursors (what was read; a restart resumes from :meth:`restore`)."""
        return dict(self._cursors)

    def restore(self, marks: Iterable[InputMark]) -> None:
        for mark in marks:
            self._resume[mark.address] = mark

    def boot_id(self, address: int) -> int:
        cursor = self._cursors.get(address)
        return 0 if cursor is None else cursor.boot_id

    def forget(self, address: int) -> None:
        self._cursors.pop(address, None)
        self._acks.pop(address, None)

    def _rides_in_poll(self, address: int) -> bool:
        return self._ack_in_poll and address not in self._fc16_only

    async def _read_block(self, address: int, timeout_s: float | None = None) -> list[int]:
        ack = self._acks.get(address) if self._rides_in_poll(address) else None
        request_bytes = _POLL_REQUEST if ack is None else _POLL_ACK_REQUEST
        try:
            # A late answer after this timeout is ignored by pymodbus (its request is done).
            async with asyncio.timeout(self._deadline(request_bytes, _POLL_RESPONSE, timeout_s)):
                if ack is None:
                    response = await self._client.read_input_registers(
                        mt.POLL_BLOCK_START, count=mt.POLL_BLOCK_COUNT, device_id=address
                    )
                else:  # FC23: the terminal applies the ack, then reads the block
                    response = await self._client.readwrite_registers(
                        read_address=mt.POLL_BLOCK_START,
                        read_count=mt.POLL_BLOCK_COUNT,
                        write_address=ack.address,
                        values=list(ack.values),
                        device_id=address,
                    )
        except (ModbusException, TimeoutError) as exc:
            self._acks.pop(address, None)  # silent: it may be rebooting; re-read, never re-ack
            raise NoAnswer(f"terminal {address}: {exc}") from None
        if ack is not None and response.isError():
            log.warning("terminals.no_fc23", address=address)  # older firmware: ack by FC16
            self._fc16_only.add(address)
        elif ack is not None and self._acks.get(address) is ack:
            del self._acks[address]
        if response.isError():
            raise Refused(f"terminal {address} refused the poll: {response}")
        return list(response.registers)

    async def read_poll_block(self, address: int) -> list[int]:
        """The poll block as it is now, acknowledging nothing (``onedoor edge probe``)."""
        return await self._read_block(address)

    async def poll(self, address: int, timeout_s: float | None = None) -> tuple[TerminalEvent, ...]:
        registers = await self._read_block(address, timeout_s)
        cursor = self._cursors.get(address)
        boot_id = _boot_id(registers)
        if cursor is not None and boot_id is not None and boot_id != cursor.boot_id:
            # A new BOOT_ID resets the cursor, so it must be real before we believe it:
            # read again. (A reply that lands in the wrong exchange, seen with a busy
            # simulator, would otherwise replay another terminal's inputs as new.)
            again = await self._read_block(address, timeout_s)
            if _boot_id(again) != boot_id:
                raise RemoteProtocolError(f"terminal {address}: boot id changed between reads")
            registers = again
        resume = self._resume.get(address) if cursor is None else None
        if resume is not None:  # handled before a restart, maybe never acknowledged
            cursor = mt.resume_cursor(registers, resume.boot, resume.sequence)
        result = mt.decode_poll_block(address, registers, cursor)
        self._resume.pop(address, None)
        self._cursors[address] = result.cursor
        if result.ack is not None:
            self._acks[address] = result.ack
        return result.events

    async def acknowledge(self, address: int) -> None:
        """Write the ``INPUT_ACK`` the last poll asked for (after its events were handed on),
        unless it is to ride in the next poll."""
        if self._rides_in_poll(address):
            return
        ack = self._acks.pop(address, None)
        if ack is not None:
            await self._write(ack)

    async def _write(self, write: mt.RegisterWrite) -> None:
        request_bytes = len(mt.encode_write_request(write))
        try:
            async with asyncio.timeout(self._deadline(request_bytes, _WRITE_RESPONSE)):
                response = await self._client.write_registers(
                    write.address, list(write.values), device_id=write.slave
                )
        except (ModbusException, TimeoutError) as exc:
            raise NoAnswer(f"terminal {write.slave}: {exc!r}") from None
        if response.isError():
            raise Refused(f"terminal {write.slave} refused a write at {write.address:#06x}")

    async def send(self, command: HostCommand) -> None:
        await self._write(mt.command_write(command))

    def check_text(self, text: str) -> None:
        encode_gb2312(text, mt.LED_TEXT_MAX_BYTES)


# RTU frame sizes (bytes) the deadlines count: slave, function, fields, CRC.
_POLL_REQUEST = len(mt.encode_read_request(1))  # FC04 of the poll block: 8
_POLL_ACK_REQUEST = len(mt.encode_poll_request(1, mt.RegisterWrite(1, mt.INPUT_ACK, (1,))))  # 15
_POLL_RESPONSE = 5 + 2 * mt.POLL_BLOCK_COUNT  # 37
_WRITE_RESPONSE = 8  # FC16 echo
_LARGEST_REQUEST = 9 + 2 * mt.LED_BLOCK_COUNT  # FC16 of the whole LED block: 75
_LARGEST_RESPONSE = _POLL_RESPONSE


def _boot_id(registers: list[int]) -> int | None:
    if len(registers) != mt.POLL_BLOCK_COUNT:
        return None  # decode_poll_block says what is wrong with it
    return registers[mt.BOOT_ID - mt.POLL_BLOCK_START]


class VendorBus:
    """Vendor-frame terminals over pyserial: one frame out, one frame back."""

    def __init__(
        self,
        port: str,
        line: SerialTiming = VENDOR_LINE,
        reply_timeout_s: float = 0.1,
        *,
        rs485: Rs485Mode = "auto",
    ) -> None:
        self._serial = AsyncSerial(port, line, rs485=rs485)
        self._timeout = reply_timeout_s
        self._decoder = vf.VendorDecoder()
        self._taken: dict[int, int] = {}  # address -> sequence of the last report handed on
        # The report taken from the previous answer, while no Idle or silence came since.
        # Only then is an equal sequence a repeat: a rebooted terminal counts from 1 again
        # and its new reports must not be mistaken for old ones (the frame has no boot id).
        self._just_taken: dict[int, int] = {}
        # (sequence, code) of the last report handled before a restart, until the first
        # answer after it: equal, it is that report again (its ack never came through).
        self._resume: dict[int, tuple[int, int]] = {}

    async def open(self) -> None:
        await self._serial.open()

    def close(self) -> None:
        self._serial.close()

    def forget(self, address: int) -> None:
        self._taken.pop(address, None)
        self._just_taken.pop(address, None)
        self._resume.pop(address, None)

    def restore(self, marks: Iterable[InputMark]) -> None:
        for mark in marks:
            self._taken[mark.address] = mark.sequence  # the first POLL acknowledges it
            self._resume[mark.address] = (mark.sequence, mark.code)

    def boot_id(self, address: int) -> int:
        return 0  # the vendor frame has no boot id

    async def _exchange(
        self, frame: bytes, address: int, timeout_s: float | None = None
    ) -> vf.VendorEvent:
        """One frame out, the addressed terminal's one frame back (NoAnswer when none): the
        wait counts both frames' wire time, then the reply timeout (or ``timeout_s``)."""
        timeout = self._timeout if timeout_s is None else min(timeout_s, self._timeout)
        decoder: Decoder[vf.VendorEvent] = vf.VendorDecoder()

        def from_address(event: vf.VendorEvent) -> bool:
            return answer_address(event) == address

        def noise(exc: ProtocolError) -> None:
            log.warning("terminals.bad_frame", address=address, error=str(exc))

        try:
            answer = await exchange(self._serial, frame, decoder, from_address,
                                    reply_bytes=vf.ANSWER_FRAME, timeout=timeout, on_error=noise)
        except DeviceTimeout as exc:  # the line would not take the frame (flow control stuck)
            raise NoAnswer(f"terminal {address}: {exc}") from None
        if answer is None:
            raise NoAnswer(f"terminal {address} did not answer")
        return answer

    async def poll(self, address: int, timeout_s: float | None = None) -> tuple[TerminalEvent, ...]:
        """Poll until the terminal is idle (one report per answer), at most a queue-full,
        or until a report with an effect (a command key, 确认, a rating).

        Each POLL acknowledges the report of the previous answer. Digits and 清除 go on at
        once (they only feed the keypad entry); a report with an effect stops the round,
        so its ack rides on the terminal's next poll, after the daemon has had the time
        to journal the effect (as the Modbus ack riding in the next FC23 poll).
        """
        events: list[TerminalEvent] = []
        for _ in range(vf.REPORT_QUEUE_SIZE + 1):
            poll = vf.Poll(address, self._taken.get(address, 0))
            try:
                answer = await self._exchange(vf.encode(poll), address, timeout_s)
            except NoAnswer:
                self._just_taken.pop(address, None)
                if events:
                    break  # hand on what came; the next poll carries the ack
                raise
            if isinstance(answer, vf.Idle):
                self._just_taken.pop(address, None)
                self._resume.pop(address, None)
                break
            if not isinstance(answer, KeyPressed | RatingPressed | ReasonPressed):
                raise RemoteProtocolError(f"terminal {address} answered a poll with {answer!r}")
            if answer.sequence == self._just_taken.get(address):
                continue  # the same report again, answering the very next poll: a late reply
            resumed = self._resume.pop(address, None)
            self._taken[address] = self._just_taken[address] = answer.sequence
            if resumed == (answer.sequence, input_code(answer)):
                log.info("terminals.handled_before_restart", address=address,
                         sequence=answer.sequence)
                continue  # handled before a restart: the next POLL acknowledges it
            events.append(answer)
            if not (isinstance(answer, KeyPressed) and _entry_only(answer.key)):
                break
        return tuple(events)

    async def acknowledge(self, address: int) -> None:
        """Acks ride on the next POLL; nothing to send now."""

    async def send(self, command: HostCommand) -> None:
        answer = await self._exchange(vf.encode(command), command.window_address)
        if not isinstance(answer, vf.Ack):
            raise Refused(f"terminal {command.window_address} answered {answer!r}")

    def check_text(self, text: str) -> None:
        encode_gb2312(text, vf.MAX_DATA)


def _entry_only(key: Key) -> bool:
    return key.digit is not None or key is Key.CLEAR


def input_code(event: KeyPressed | RatingPressed | ReasonPressed) -> int:
    """An input as the Modbus map's INPUT_QUEUE encodes it (kind << 8 | code), either bus."""
    if isinstance(event, KeyPressed):
        return mt.encode_input(event.key)
    if isinstance(event, ReasonPressed):
        return mt.encode_input(event.reason, reason=True)
    return mt.encode_input(event.value, rating=True)


def answer_address(event: vf.VendorEvent) -> int:
    """The terminal address a vendor frame carries (a report's or an answer's)."""
    if isinstance(event, KeyPressed | RatingPressed | ReasonPressed | RequestRating | ShowText):
        return event.window_address
    return event.address


# --- the driver ----------------------------------------------------------------------------------
BusKind = Literal["modbus", "vendor"]

# A single bad answer is usually a late reply to an earlier poll: skip it and keep the
# acknowledgement state, which forgetting would turn into repeated inputs.
BAD_POLLS_BEFORE_RESYNC = 3
ACK_HOLD_MAX_S = 5.0  # longest a terminal waits for the daemon to confirm its inputs
MIN_PROBE_TIMEOUT_S = 0.02


@dataclass(frozen=True, slots=True)
class TerminalSettings:
    port: str
    terminals: Mapping[int, int]  # window number -> bus address
    bus: BusKind = "modbus"
    baudrate: int | None = None  # None: the bus default (Modbus 19200, vendor 9600)
    parity: Parity | None = None  # None: the bus default (Modbus "E" as the spec says, vendor "N")
    stop_bits: int = 1
    rs485: Rs485Mode = "auto"  # who switches the transceiver's direction (serial_port)
    reply_timeout_s: float = 0.1  # the terminal's turnaround, on top of the wire time
    poll_interval_s: float = 0.05  # least time between two polls of one live terminal
    dead_after: int = 3  # silent polls in a row
    dead_poll_interval_s: float = 5.0  # first probe of a dead terminal; doubles while silent
    dead_poll_max_interval_s: float = 30.0  # ... up to this
    dead_probe_timeout_s: float | None = None  # None: half a poll's line time + 5 ms, >= 20 ms
    command_retries: int = 2
    reopen_interval_s: float = 5.0
    modbus_ack_in_poll: bool = True  # FC23: the ack rides in the next poll

    def __post_init__(self) -> None:
        if not self.terminals:
            raise DeviceConfigError("no window terminals configured")
        addresses = list(self.terminals.values())
        if len(set(addresses)) != len(addresses):
            raise DeviceConfigError(f"two windows share a terminal address: {sorted(addresses)}")
        for address in addresses:
            if not 1 <= address <= 247:
                raise DeviceConfigError(f"terminal address must be 1..247, got {address}")
        if self.bus not in ("modbus", "vendor"):
            raise DeviceConfigError(f"terminal bus must be 'modbus' or 'vendor', got {self.bus!r}")
        if self.dead_after < 1 or self.command_retries < 0:
            raise DeviceConfigError("dead_after must be >= 1 and command_retries >= 0")
        for name in ("reply_timeout_s", "dead_poll_interval_s", "reopen_interval_s"):
            if getattr(self, name) <= 0:
                raise DeviceConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.dead_poll_max_interval_s < self.dead_poll_interval_s:
            raise DeviceConfigError(
                "dead_poll_max_interval_s must be >= dead_poll_interval_s, got "
                f"{self.dead_poll_max_interval_s} < {self.dead_poll_interval_s}"
            )
        if self.dead_probe_timeout_s is not None and self.dead_probe_timeout_s <= 0:
            raise DeviceConfigError(
                f"dead_probe_timeout_s must be > 0, got {self.dead_probe_timeout_s}"
            )
        if self.poll_interval_s < 0:
            raise DeviceConfigError(f"poll_interval_s must be >= 0, got {self.poll_interval_s}")
        if self.parity not in (None, "N", "E", "O") or self.stop_bits not in (1, 2):
            raise DeviceConfigError(
                f"parity must be N, E or O and stop_bits 1 or 2, got {self.parity} {self.stop_bits}"
            )
        if self.rs485 not in RS485_MODES:
            raise DeviceConfigError(f"rs485 must be one of {RS485_MODES}, got {self.rs485!r}")

    @property
    def line(self) -> SerialTiming:
        """The bus's line settings: Modbus 19200 8E1, vendor 9600 8N1 unless configured."""
        if self.bus == "modbus":
            baud, parity = self.baudrate or mt.DEFAULT_BAUD, self.parity or mt.DEFAULT_PARITY
        else:
            baud, parity = self.baudrate or vf.BAUD, self.parity or vf.PARITY
        return SerialTiming(baud, parity, self.stop_bits)

    @property
    def probe_timeout_s(self) -> float:
        """The turnaround the probe of a dead terminal allows, on top of the poll's wire time."""
        if self.dead_probe_timeout_s is not None:
            return min(self.dead_probe_timeout_s, self.reply_timeout_s)
        if self.bus == "modbus":  # FC04 request, 16-register answer, two t3.5 gaps
            line_s = (self.line.transmit_seconds(8 + 5 + 2 * mt.POLL_BLOCK_COUNT)
                      + 2 * self.line.frame_gap_seconds())
        else:  # POLL and a report, ten bytes each
            line_s = self.line.transmit_seconds(2 * vf.ANSWER_FRAME)
        return min(self.reply_timeout_s, max(MIN_PROBE_TIMEOUT_S, 0.5 * line_s + 0.005))

    def make_bus(self) -> Bus:
        if self.bus == "modbus":
            return ModbusBus(
                self.port,
                self.line,
                self.reply_timeout_s,
                ack_in_poll=self.modbus_ack_in_poll,
                rs485=self.rs485,
            )
        return VendorBus(self.port, self.line, self.reply_timeout_s, rs485=self.rs485)


@dataclass(slots=True)
class _Terminal:
    window: int
    address: int
    entry: KeypadEntry
    failures: int = 0
    dead: bool = False
    probe_interval: float = 0.0  # while dead
    next_poll: float = 0.0
    led_text: str | None = None  # the latest wish
    led_sent: str | None = None  # what the terminal acknowledged
    rating_request: int | None = None  # seconds, waiting to be sent
    polls: int = 0
    inputs: int = 0
    bad_polls: int = 0  # malformed or refused poll answers in a row
    unsettled: set[InputMark] = field(default_factory=set)  # handed on, not yet journaled
    held_since: float = 0.0  # when ``unsettled`` last became non-empty


class TerminalDriver:
    """Implements :class:`~edge.devices.base.TerminalBus`."""

    def __init__(
        self,
        settings: TerminalSettings,
        inputs: InputQueue,
        *,
        device_id: str = "terminals",
        bus: Bus | None = None,
    ) -> None:
        self._settings = settings
        self._inputs = inputs
        self._device_id = device_id
        self._bus = bus if bus is not None else settings.make_bus()
        self._health = HealthTracker(
            device_id,
            DeviceKind.TERMINAL,
            inputs,
            initial=HealthState.OFFLINE,
            detail="not started",
        )
        self._by_address = {
            address: _Terminal(window, address, KeypadEntry(window))
            for window, address in settings.terminals.items()
        }
        self._by_window = {t.window: t for t in self._by_address.values()}
        self._wake = asyncio.Event()
        self._open = False
        self._polled_since_probe: set[int] = set()  # live terminals polled since the last probe
        self._confirming = False  # the daemon confirms handled inputs (restore_inputs)
        self.polls = 0
        # Benchmark stamps, never blocking: a terminal acknowledged a command; a poll of
        # a terminal answered (called after its inputs were handed on).
        self.on_command_done: Callable[[HostCommand], None] | None = None
        self.on_poll_done: Callable[[int], None] | None = None

    def health(self) -> DeviceHealth:
        return self._health.current

    @property
    def bus(self) -> Bus:
        return self._bus

    # --- the daemon's side ----------------------------------------------------------------------
    def _terminal(self, window: int) -> _Terminal:
        try:
            return self._by_window[window]
        except KeyError:
            raise DeviceConfigError(
                f"window {window} has no terminal; configured: {sorted(self._by_window)}"
            ) from None

    def set_window_text(self, window: int, text: str) -> None:
        """Show ``text`` on the window terminal's LED (LocalProtocolError if it cannot)."""
        terminal = self._terminal(window)
        self._bus.check_text(text)
        terminal.led_text = text
        self._wake.set()

    def request_rating(self, window: int, seconds: int) -> None:
        """Light the window's rating pad for ``seconds`` (0 cancels)."""
        terminal = self._terminal(window)
        terminal.rating_request = check_rating_timeout(seconds)
        self._wake.set()

    def window_text_shown(self, window: int) -> str | None:
        """The text the terminal acknowledged last (None before the first)."""
        return self._terminal(window).led_sent

    def restore_inputs(self, marks: Iterable[InputMark]) -> None:
        """The daemon's journaled marks (before :meth:`run`): what was handled before a
        restart. The daemon then confirms every input it handles (:meth:`input_handled`)."""
        mine = [m for m in marks if m.device == self._device_id and m.address in self._by_address]
        self._bus.restore(mine)
        self._confirming = True
        if mine:
            log.info("terminals.restored", marks={m.address: m.sequence for m in mine})

    def input_handled(self, mark: InputMark) -> None:
        """The input's effect is journaled (or it had none): it may be acknowledged now."""
        terminal = self._by_address.get(mark.address)
        if mark.device != self._device_id or terminal is None:
            return
        if mark in terminal.unsettled:
            terminal.unsettled.discard(mark)
            if not terminal.unsettled:
                self._wake.set()  # its next poll carries the ack

    # --- the bus task ---------------------------------------------------------------------------
    async def run(self) -> None:
        s = self._settings
        try:
            while True:
                stop_if_cancelled()
                if not self._open:
                    try:
                        await self._bus.open()
                    except (SerialPortError, OSError) as exc:
                        self._health.set(HealthState.OFFLINE, f"串口无法打开 {exc}"[:200])
                        await asyncio.sleep(s.reopen_interval_s)
                        continue
                    self._open = True
                    log.info("terminals.bus_open", port=s.port, bus=s.bus)
                    self._update_health()
                try:
                    await self._step()
                except SerialPortError as exc:
                    self._open = False
                    self._bus.close()
                    self._health.set(HealthState.OFFLINE, f"串口断开 {exc}"[:200])
                    await asyncio.sleep(s.reopen_interval_s)
        finally:
            self._bus.close()
            self._open = False

    async def _step(self) -> None:
        command = self._next_command()
        if command is not None:
            await self._send(*command)
            return
        now = time.monotonic()
        terminal = min(self._candidates(), key=self._due)
        due = self._due(terminal)
        if due > now:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):  # a timeout means a poll is due
                async with asyncio.timeout(due - now):
                    await self._wake.wait()
            return
        if terminal.unsettled:
            log.warning("terminals.unconfirmed", address=terminal.address,
                        sequences=sorted(m.sequence for m in terminal.unsettled))
            terminal.unsettled.clear()
        await self._poll(terminal)

    @staticmethod
    def _due(terminal: _Terminal) -> float:
        """When to poll ``terminal``: not while the daemon has not confirmed its inputs
        (the poll would carry their ack), unless that takes ACK_HOLD_MAX_S."""
        if terminal.unsettled:
            return max(terminal.next_poll, terminal.held_since + ACK_HOLD_MAX_S)
        return terminal.next_poll

    def _candidates(self) -> list[_Terminal]:
        """The terminals that may be polled next: every live one; the dead ones only
        once every live one was polled since the last probe (one probe per cycle)."""
        live = [t for t in self._by_address.values() if not t.dead]
        if live and not self._polled_since_probe.issuperset(t.address for t in live):
            return live
        return list(self._by_address.values())

    def _next_command(self) -> tuple[_Terminal, HostCommand] | None:
        """The next host command for a live terminal: LED text first, then rating requests."""
        for terminal in self._by_address.values():
            if terminal.dead:
                continue
            if terminal.led_text is not None and terminal.led_text != terminal.led_sent:
                return terminal, ShowText(terminal.address, terminal.led_text)
        for terminal in self._by_address.values():
            if not terminal.dead and terminal.rating_request is not None:
                return terminal, RequestRating(terminal.address, terminal.rating_request)
        return None

    async def _send(self, terminal: _Terminal, command: HostCommand) -> None:
        s = self._settings
        for attempt in range(1 + s.command_retries):
            try:
                await self._bus.send(command)
            except NoAnswer:
                await self._settle()
                log.debug("terminals.command_retry", address=terminal.address, attempt=attempt)
                continue
            except Refused as exc:
                log.error("terminals.command_refused", address=terminal.address, error=str(exc))
                await self._settle()
                self._command_done(terminal, command)
                return
            self._command_done(terminal, command)
            return
        self._failed(terminal)

    async def _settle(self) -> None:
        """After a failed exchange, let the line go quiet for one reply timeout.

        A slow terminal's late answer then arrives while nobody waits and is dropped;
        sent back to back, each next exchange would take the previous one's answer
        and the bus would stay one answer behind.
        """
        await asyncio.sleep(self._settings.reply_timeout_s)

    def _command_done(self, terminal: _Terminal, command: HostCommand) -> None:
        if self.on_command_done is not None:
            self.on_command_done(command)
        if isinstance(command, ShowText):
            terminal.led_sent = command.text
        elif terminal.rating_request == command.timeout_seconds:
            terminal.rating_request = None

    async def _poll(self, terminal: _Terminal) -> None:
        self.polls += 1
        terminal.polls += 1
        probe = terminal.dead
        if probe:
            self._polled_since_probe.clear()
        else:
            self._polled_since_probe.add(terminal.address)
        try:
            if probe:
                events = await self._bus.poll(terminal.address, self._settings.probe_timeout_s)
            else:
                events = await self._bus.poll(terminal.address)
        except NoAnswer:
            self._failed(terminal)
            if not probe:
                # No quiet time after a probe: a terminal silent for seconds rarely answers
                # late, and if it does, the next exchange fails once and settles then.
                await self._settle()
            return
        except (Refused, RemoteProtocolError) as exc:
            terminal.bad_polls += 1
            log.warning("terminals.bad_poll", address=terminal.address, error=str(exc))
            if terminal.bad_polls >= BAD_POLLS_BEFORE_RESYNC:
                # Not a stray late answer but a terminal whose state we no longer follow:
                # start again from what it reports (unacknowledged inputs may repeat once).
                log.error("terminals.resync", address=terminal.address)
                self._bus.forget(terminal.address)
                terminal.bad_polls = 0
            self._schedule(terminal)
            await self._settle()
            return
        terminal.bad_polls = 0
        self._answered(terminal)
        for event in events:
            self._deliver(terminal, event)
        if self.on_poll_done is not None:
            self.on_poll_done(terminal.address)
        try:
            if not terminal.unsettled:  # else the ack goes with the poll after them
                await self._bus.acknowledge(terminal.address)
        except (NoAnswer, Refused) as exc:
            # The inputs stay latched; the next poll shows them again and the cursor
            # recognises them as taken.
            log.warning("terminals.ack_failed", address=terminal.address, error=str(exc))
        self._schedule(terminal)

    def _schedule(self, terminal: _Terminal) -> None:
        s = self._settings
        interval = terminal.probe_interval if terminal.dead else s.poll_interval_s
        terminal.next_poll = time.monotonic() + interval

    def _mark(self, terminal: _Terminal,
              event: KeyPressed | RatingPressed | ReasonPressed) -> InputMark:
        return InputMark(
            self._device_id,
            terminal.address,
            event.sequence,
            input_code(event),
            self._bus.boot_id(terminal.address),
        )

    def _deliver(self, terminal: _Terminal, event: TerminalEvent) -> None:
        item: DeviceInput | None = None
        if isinstance(event, KeyPressed):
            press = terminal.entry.key(event.key)
            if press is not None:
                press = dataclasses.replace(press, mark=self._mark(terminal, event))
            log.info(
                "terminals.key",
                window=terminal.window,
                key=event.key.name,
                sequence=event.sequence,
                command=None if press is None else press.key.value,
            )
            item = press
        elif isinstance(event, RatingPressed):
            item = Rating(terminal.window, event.value, self._mark(terminal, event))
            log.info("terminals.rating", window=terminal.window, value=event.value)
        elif isinstance(event, ReasonPressed):
            item = RatingReason(terminal.window, event.reason, self._mark(terminal, event))
            log.info("terminals.reason", window=terminal.window, reason=event.reason)
        elif isinstance(event, InputsRefused):
            log.warning("terminals.inputs_refused", window=terminal.window, count=event.count)
        if item is not None:
            terminal.inputs += 1
            mark = item.mark if isinstance(item, TerminalInput) else None
            if self._confirming and mark is not None:
                if not terminal.unsettled:
                    terminal.held_since = time.monotonic()
                terminal.unsettled.add(mark)
            self._inputs.put_nowait(item)

    def _answered(self, terminal: _Terminal) -> None:
        terminal.failures = 0
        if terminal.dead:
            terminal.dead = False
            terminal.led_sent = None  # it may have lost power: show its text again
            log.info("terminals.back", window=terminal.window, address=terminal.address)
            self._update_health()
        self._schedule(terminal)

    def _failed(self, terminal: _Terminal) -> None:
        s = self._settings
        terminal.failures += 1
        if terminal.dead:  # a failed probe: probe less often
            terminal.probe_interval = min(2 * terminal.probe_interval, s.dead_poll_max_interval_s)
        elif terminal.failures >= s.dead_after:
            terminal.dead = True
            terminal.probe_interval = s.dead_poll_interval_s
            log.warning("terminals.dead", window=terminal.window, address=terminal.address)
            self._update_health()
        self._schedule(terminal)

    def _update_health(self) -> None:
        dead = [t for t in self._by_address.values() if t.dead]
        names = ", ".join(f"窗口{t.window}(#{t.address})" for t in dead)
        if dead and len(dead) == len(self._by_address):
            self._health.set(HealthState.OFFLINE, f"终端无应答 silent: {names}")
        elif dead:
            self._health.set(HealthState.DEGRADED, f"终端无应答 silent: {names}")
        else:
            self._health.set(HealthState.OK)


__all__ = [
    "Bus",
    "KeypadEntry",
    "ModbusBus",
    "NoAnswer",
    "Refused",
    "TerminalDriver",
    "TerminalSettings",
    "VendorBus",
    "answer_address",
]

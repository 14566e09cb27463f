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
* **Short timeouts, dead terminals set aside.** Every exchange waits at most
  ``reply_timeout_s``. After ``dead_after`` silent polls in a row a terminal is
  *dead*: polled only every ``dead_poll_interval_s``, listed in the health
  detail (degraded; offline when every terminal is dead), and its LED text is
  sent again when it answers. After a failed exchange the bus stays quiet for
  one more ``reply_timeout_s``, so a late answer is dropped instead of being
  taken for the next exchange's (which would leave the bus one answer behind
  for good); a dead terminal costs two timeouts per ``dead_poll_interval_s``.
* **Nothing lost, nothing doubled.** Terminals latch presses until the host
  acknowledges them (Modbus: ``INPUT_ACK`` with a per-terminal
  :class:`~firmware_protocols.modbus_terminal.PollCursor`; vendor: the ack
  sequence in the next POLL). The driver hands an input to the daemon's queue
  *before* acknowledging it, and recognises a repeat by its sequence, so a
  lost ack or a retried poll never doubles a press.

Keypad entry (:class:`KeypadEntry`): digits typed before SIGN_IN or TRANSFER
become its argument (staff number, service code); or press the key first,
then the digits, then 确认. CLEAR drops the entry; any other command key
abandons an unfinished one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import structlog
from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient

from firmware_protocols import modbus_terminal as mt
from firmware_protocols import vendor_frame as vf
from firmware_protocols.errors import ProtocolError, RemoteProtocolError
from firmware_protocols.terminal_events import (
    HostCommand,
    InputsRefused,
    Key,
    KeyPressed,
    RatingGiven,
    RequestRating,
    ShowText,
    TerminalEvent,
    check_rating_timeout,
    encode_gb2312,
)

from .base import (
    DeviceConfigError,
    DeviceHealth,
    DeviceInput,
    DeviceKind,
    DeviceTimeout,
    HealthState,
    HealthTracker,
    InputQueue,
    KeyPress,
    Rating,
    WindowKey,
    stop_if_cancelled,
)
from .serial_port import AsyncSerial, SerialPortError

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
}
_ARGUMENT_KEYS = frozenset({WindowKey.SIGN_IN, WindowKey.TRANSFER})
MAX_ENTRY_DIGITS = 8


class KeypadEntry:
    """Digit entry at one window: raw keys in, :class:`KeyPress` out (or nothing yet)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._digits = ""
        self._pending: WindowKey | None = None

    def _press(self, key: WindowKey, argument: str | None) -> KeyPress:
        self._digits, self._pending = "", None
        if key is WindowKey.SIGN_IN:
            return KeyPress(self.window, key, staff_id=argument)
        if key is WindowKey.TRANSFER:
            return KeyPress(self.window, key, to_service=argument)
        return KeyPress(self.window, key)

    def key(self, key: Key) -> KeyPress | None:
        digit = key.digit
        if digit is not None:
            if len(self._digits) < MAX_ENTRY_DIGITS:
                self._digits += str(digit)
            return None
        if key is Key.CLEAR:
            self._digits, self._pending = "", None
            return None
        if key is Key.CONFIRM:
            if self._pending is None:
                self._digits = ""
                return None  # 确认 with nothing to confirm
            return self._press(self._pending, self._digits or None)
        command = _COMMAND_KEYS[key]
        if command in _ARGUMENT_KEYS and not self._digits:
            self._pending = command  # wait for the digits and 确认
            return None
        return self._press(command, self._digits or None)  # digits before NEXT etc. are dropped


# --- the two buses -------------------------------------------------------------------------------
class NoAnswer(DeviceTimeout):
    """A terminal did not answer within the timeout."""


class Refused(ProtocolError):
    """A terminal answered but refused the command (Modbus exception, ...)."""


class Bus(Protocol):
    """One physical bus; used by :class:`TerminalDriver` from its one task only."""

    async def open(self) -> None: ...

    def close(self) -> None: ...

    async def poll(self, address: int) -> tuple[TerminalEvent, ...]:
        """New inputs of one terminal, already acknowledged (or to be, next poll)."""
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


class ModbusBus:
    """onedoor's Modbus RTU terminals through a pymodbus client.

    :meth:`poll` reads the poll block and returns the new inputs; the driver
    hands them to the daemon and then calls :meth:`acknowledge`. With
    ``ack_in_poll`` the ``INPUT_ACK`` rides in the terminal's next poll (one
    FC23 exchange instead of a separate FC16 write: a press costs the bus one
    transaction less); otherwise it is written at once. A pending ack is
    dropped when the terminal stops answering, so an ack from before a power
    cycle never reaches the terminal's new queue. pymodbus retries nothing (the
    driver decides) and its own timeout is the reply timeout.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = mt.DEFAULT_BAUD,
        reply_timeout_s: float = 0.1,
        *,
        ack_in_poll: bool = True,
    ) -> None:
        self._client = AsyncModbusSerialClient(
            port,
            framer=FramerType.RTU,
            baudrate=baudrate,
            timeout=reply_timeout_s,
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

    async def open(self) -> None:
        if not await self._client.connect():
            raise SerialPortError(f"cannot open {self._port}")

    def close(self) -> None:
        self._client.close()

    @property
    def cursors(self) -> Mapping[int, mt.PollCursor]:
        """Per-terminal cursors (persist them to carry acknowledgements over a restart)."""
        return dict(self._cursors)

    def restore_cursors(self, cursors: Mapping[int, mt.PollCursor]) -> None:
        self._cursors.update(cursors)

    def forget(self, address: int) -> None:
        self._cursors.pop(address, None)
        self._acks.pop(address, None)

    def _rides_in_poll(self, address: int) -> bool:
        return self._ack_in_poll and address not in self._fc16_only

    async def _read_block(self, address: int) -> list[int]:
        ack = self._acks.get(address) if self._rides_in_poll(address) else None
        try:
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
        except ModbusException as exc:
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

    async def poll(self, address: int) -> tuple[TerminalEvent, ...]:
        registers = await self._read_block(address)
        cursor = self._cursors.get(address)
        boot_id = _boot_id(registers)
        if cursor is not None and boot_id is not None and boot_id != cursor.boot_id:
            # A new BOOT_ID resets the cursor, so it must be real before we believe it:
            # read again. (A reply that lands in the wrong exchange, seen with a busy
            # simulator, would otherwise replay another terminal's inputs as new.)
            again = await self._read_block(address)
            if _boot_id(again) != boot_id:
                raise RemoteProtocolError(f"terminal {address}: boot id changed between reads")
            registers = again
        result = mt.decode_poll_block(address, registers, cursor)
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
        try:
            response = await self._client.write_registers(
                write.address, list(write.values), device_id=write.slave
            )
        except ModbusException as exc:
            raise NoAnswer(f"terminal {write.slave}: {exc}") from None
        if response.isError():
            raise Refused(f"terminal {write.slave} refused a write at {write.address:#06x}")

    async def send(self, command: HostCommand) -> None:
        await self._write(mt.command_write(command))

    def check_text(self, text: str) -> None:
        encode_gb2312(text, mt.LED_TEXT_MAX_BYTES)


def _boot_id(registers: list[int]) -> int | None:
    if len(registers) != mt.POLL_BLOCK_COUNT:
        return None  # decode_poll_block says what is wrong with it
    return registers[mt.BOOT_ID - mt.POLL_BLOCK_START]


class VendorBus:
    """Vendor-frame terminals over pyserial: one frame out, one frame back."""

    def __init__(self, port: str, baudrate: int = vf.BAUD, reply_timeout_s: float = 0.1) -> None:
        self._serial = AsyncSerial(port, baudrate)
        self._timeout = reply_timeout_s
        self._decoder = vf.VendorDecoder()
        self._taken: dict[int, int] = {}  # address -> sequence of the last report handed on
        # The report taken from the previous answer, while no Idle or silence came since.
        # Only then is an equal sequence a repeat: a rebooted terminal counts from 1 again
        # and its new reports must not be mistaken for old ones (the frame has no boot id).
        self._just_taken: dict[int, int] = {}

    async def open(self) -> None:
        self._serial.open()

    def close(self) -> None:
        self._serial.close()

    def forget(self, address: int) -> None:
        self._taken.pop(address, None)
        self._just_taken.pop(address, None)

    async def _exchange(self, frame: bytes, address: int) -> vf.VendorEvent:
        self._serial.discard_input()
        self._decoder = vf.VendorDecoder()
        try:
            await self._serial.write(frame, self._timeout)
        except DeviceTimeout as exc:  # the line would not take the frame (flow control stuck)
            raise NoAnswer(f"terminal {address}: {exc}") from None
        deadline = time.monotonic() + self._timeout
        while (left := deadline - time.monotonic()) > 0:
            data = await self._serial.read(left)
            if not data:
                break
            self._decoder.receive_data(data)
            while True:
                try:
                    event = self._decoder.next_event()
                except ProtocolError as exc:
                    log.warning("terminals.bad_frame", address=address, error=str(exc))
                    continue
                if isinstance(event, vf.NeedData):
                    break
                if _answer_address(event) == address:
                    return event
        raise NoAnswer(f"terminal {address} did not answer")

    async def poll(self, address: int) -> tuple[TerminalEvent, ...]:
        """Poll until the terminal is idle (one report per answer), at most a queue-full."""
        events: list[TerminalEvent] = []
        for _ in range(vf.REPORT_QUEUE_SIZE + 1):
            poll = vf.Poll(address, self._taken.get(address, 0))
            try:
                answer = await self._exchange(vf.encode(poll), address)
            except NoAnswer:
                self._just_taken.pop(address, None)
                if events:
                    break  # hand on what came; the next poll carries the ack
                raise
            if isinstance(answer, vf.Idle):
                self._just_taken.pop(address, None)
                break
            if not isinstance(answer, KeyPressed | RatingGiven):
                raise RemoteProtocolError(f"terminal {address} answered a poll with {answer!r}")
            if answer.sequence == self._just_taken.get(address):
                continue  # the same report again, answering the very next poll: a late reply
            self._taken[address] = self._just_taken[address] = answer.sequence
            events.append(answer)
        return tuple(events)

    async def acknowledge(self, address: int) -> None:
        """Acks ride on the next POLL; nothing to send now."""

    async def send(self, command: HostCommand) -> None:
        answer = await self._exchange(vf.encode(command), command.window_address)
        if not isinstance(answer, vf.Ack):
            raise Refused(f"terminal {command.window_address} answered {answer!r}")

    def check_text(self, text: str) -> None:
        encode_gb2312(text, vf.MAX_DATA)


def _answer_address(event: vf.VendorEvent) -> int:
    if isinstance(event, KeyPressed | RatingGiven | RequestRating | ShowText):
        return event.window_address
    return event.address


# --- the driver ----------------------------------------------------------------------------------
BusKind = Literal["modbus", "vendor"]

# A single bad answer is usually a late reply to an earlier poll: skip it and keep the
# acknowledgement state, which forgetting would turn into repeated inputs.
BAD_POLLS_BEFORE_RESYNC = 3


@dataclass(frozen=True, slots=True)
class TerminalSettings:
    port: str
    terminals: Mapping[int, int]  # window number -> bus address
    bus: BusKind = "modbus"
    baudrate: int | None = None  # None: the bus default (Modbus 19200, vendor 9600)
    reply_timeout_s: float = 0.1
    poll_interval_s: float = 0.05  # least time between two polls of one live terminal
    dead_after: int = 3  # silent polls in a row
    dead_poll_interval_s: float = 5.0
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
        if self.poll_interval_s < 0:
            raise DeviceConfigError(f"poll_interval_s must be >= 0, got {self.poll_interval_s}")

    def make_bus(self) -> Bus:
        if self.bus == "modbus":
            return ModbusBus(
                self.port,
                self.baudrate or mt.DEFAULT_BAUD,
                self.reply_timeout_s,
                ack_in_poll=self.modbus_ack_in_poll,
            )
        return VendorBus(self.port, self.baudrate or vf.BAUD, self.reply_timeout_s)


@dataclass(slots=True)
class _Terminal:
    window: int
    address: int
    entry: KeypadEntry
    failures: int = 0
    dead: bool = False
    next_poll: float = 0.0
    led_text: str | None = None  # the latest wish
    led_sent: str | None = None  # what the terminal acknowledged
    rating_request: int | None = None  # seconds, waiting to be sent
    polls: int = 0
    inputs: int = 0
    refused_inputs: int = 0
    bad_polls: int = 0  # malformed or refused poll answers in a row


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
        self.bus_busy_s = 0.0  # time spent in exchanges (benchmarks)
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
        terminal = min(self._by_address.values(), key=lambda t: t.next_poll)
        if terminal.next_poll > now:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):  # a timeout means a poll is due
                async with asyncio.timeout(terminal.next_poll - now):
                    await self._wake.wait()
            return
        await self._poll(terminal)

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

    def _busy_since(self, started: float) -> None:
        self.bus_busy_s += time.monotonic() - started

    async def _send(self, terminal: _Terminal, command: HostCommand) -> None:
        s = self._settings
        for attempt in range(1 + s.command_retries):
            started = time.monotonic()
            try:
                await self._bus.send(command)
            except NoAnswer:
                self._busy_since(started)
                await self._settle()
                log.debug("terminals.command_retry", address=terminal.address, attempt=attempt)
                continue
            except Refused as exc:
                self._busy_since(started)
                log.error("terminals.command_refused", address=terminal.address, error=str(exc))
                await self._settle()
                self._command_done(terminal, command)
                return
            self._busy_since(started)
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
        started = time.monotonic()
        self.polls += 1
        terminal.polls += 1
        try:
            events = await self._bus.poll(terminal.address)
        except NoAnswer:
            self._busy_since(started)
            self._failed(terminal)
            await self._settle()
            return
        except (Refused, RemoteProtocolError) as exc:
            self._busy_since(started)
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
            await self._bus.acknowledge(terminal.address)
        except (NoAnswer, Refused) as exc:
            # The inputs stay latched; the next poll shows them again and the cursor
            # recognises them as taken.
            log.warning("terminals.ack_failed", address=terminal.address, error=str(exc))
        self._busy_since(started)
        self._schedule(terminal)

    def _schedule(self, terminal: _Terminal) -> None:
        s = self._settings
        interval = s.dead_poll_interval_s if terminal.dead else s.poll_interval_s
        terminal.next_poll = time.monotonic() + interval

    def _deliver(self, terminal: _Terminal, event: TerminalEvent) -> None:
        item: DeviceInput | None = None
        if isinstance(event, KeyPressed):
            press = terminal.entry.key(event.key)
            log.info(
                "terminals.key",
                window=terminal.window,
                key=event.key.name,
                sequence=event.sequence,
                command=None if press is None else press.key.value,
            )
            item = press
        elif isinstance(event, RatingGiven):
            item = Rating(terminal.window, event.value)
            log.info("terminals.rating", window=terminal.window, value=event.value)
        elif isinstance(event, InputsRefused):
            terminal.refused_inputs += event.count
            log.warning("terminals.inputs_refused", window=terminal.window, count=event.count)
        if item is not None:
            terminal.inputs += 1
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
        terminal.failures += 1
        if not terminal.dead and terminal.failures >= self._settings.dead_after:
            terminal.dead = True
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
]

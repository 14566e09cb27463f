"""A bank of Modbus RTU window terminals, served by a real pymodbus RTU server.

Each terminal follows :mod:`firmware_protocols.modbus_terminal`: its poll
block is computed live from an :class:`~firmware_protocols.modbus_terminal.InputQueue`
on every read, and FC16 (or FC23) writes to INPUT_ACK, RATING_REQUEST and the
LED block act on the terminal at once (a bad LED write is refused with exception 03,
ILLEGAL DATA VALUE, and changes nothing). A function the firmware does not have
(anything but FC03, FC04, FC16, FC23: FC01 coils, FC06 single register, ...)
is answered with exception 01, ILLEGAL FUNCTION, as the documented firmware does.

How it is wired: pymodbus' ``ModbusSerialServer`` opens the slave end of an
inner pty; the bank copies bytes between that pty and the daemon's
:class:`~.serial_link.PtyLink`. pymodbus answers every slave id it is asked
about, which a real RS485 bus never does, so the bank drops the answers of
dead terminals and of ids it does not have (pymodbus ``trace_packet``): the
master sees silence and times out, as on a real bus. Timing (``reply_delay``,
``timing``) is awaited inside pymodbus' per-device action, before it answers.

Scripting beyond :class:`~.terminal_bank.TerminalBank`: :meth:`ModbusTerminalBank.boot_id`,
:meth:`ModbusTerminalBank.pending_inputs`, :meth:`ModbusTerminalBank.refused_inputs`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import time
from collections.abc import Callable, Iterable

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_protocols import modbus_terminal as mt
from firmware_protocols.errors import ProtocolError
from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming
from firmware_protocols.simulators.terminal_bank import SimulatedTerminal, TerminalBank
from firmware_protocols.terminal_events import RATING_REQUEST_MAX_SECONDS, Key

FIRMWARE_VERSION = (1, 0)
_CATCH_ALL_ID = 0  # pymodbus routes unknown slave ids to device 0
_RTU_OVERHEAD = 5  # slave, function, byte count / exception code, CRC x2


class ModbusTerminal(SimulatedTerminal):
    """One simulated terminal: an input queue and the writable registers."""

    def __init__(self, address: int) -> None:
        super().__init__(address)
        self._power_up()

    def _power_up(self) -> None:
        self.inputs = mt.InputQueue()
        self.boot_id = random.randint(1, 0xFFFF)
        self.booted_at = time.monotonic()
        self.last_ack = 0
        self.led_registers = [0] * mt.LED_BLOCK_COUNT
        self.led_text = ""
        self._rating_deadline = None

    def press(self, key: Key) -> int | None:
        return self.inputs.latch(mt.encode_input(key))

    def latch_rating(self, value: int) -> int | None:
        return self.inputs.latch(mt.encode_input(value, rating=True))

    def latch_reason(self, reason: int) -> int | None:
        return self.inputs.latch(mt.encode_input(reason, reason=True))

    def reboot(self) -> None:
        previous = self.boot_id
        self._power_up()
        while self.boot_id == previous:  # a power cycle must show as a new BOOT_ID
            self.boot_id = random.randint(1, 0xFFFF)

    def poll_block(self) -> list[int]:
        flags = mt.STATUS_RATING_PENDING if self.rating_pending else 0
        return mt.encode_poll_block(
            firmware_version=FIRMWARE_VERSION,
            boot_id=self.boot_id,
            uptime=int(time.monotonic() - self.booted_at),
            flags=flags,
            inputs=self.inputs,
        )

    def writable_block(self) -> list[int]:
        """Registers WRITABLE_START.. as the terminal reads them back."""
        remaining = 0
        if self._rating_deadline is not None and self.rating_pending:
            remaining = max(1, round(self._rating_deadline - time.monotonic()))
        gap = [0] * (mt.LED_TEXT_LENGTH - mt.RATING_REQUEST - 1)
        return [self.last_ack, remaining, *gap, *self.led_registers]

    def apply_write(self, address: int, values: list[int]) -> ExcCodes | None:
        """Carry out one FC16 write atomically; an exception code if it must be refused."""
        written = dict(zip(range(address, address + len(values)), values, strict=True))
        led = list(self.led_registers)
        for register, value in written.items():
            if mt.LED_BLOCK_START <= register < mt.LED_BLOCK_START + mt.LED_BLOCK_COUNT:
                led[register - mt.LED_BLOCK_START] = value
        touches_led = any(r >= mt.LED_BLOCK_START for r in written)
        try:
            text = mt.decode_led_text(led) if touches_led else self.led_text
        except ProtocolError:
            return ExcCodes.ILLEGAL_VALUE
        seconds = written.get(mt.RATING_REQUEST)
        if seconds is not None and seconds > RATING_REQUEST_MAX_SECONDS:
            return ExcCodes.ILLEGAL_VALUE
        if mt.INPUT_ACK in written:
            self.last_ack = written[mt.INPUT_ACK]
            self.inputs.acknowledge(self.last_ack)
        if seconds is not None:
            self.request_rating(seconds)
        self.led_registers, self.led_text = led, text
        return None


class ModbusTerminalBank(TerminalBank[ModbusTerminal]):
    """N Modbus window terminals on one pty; see the module docstring."""

    def __init__(
        self,
        link: PtyLink,
        addresses: Iterable[int],
        *,
        dead: Iterable[int] = (),
        reply_delay: float = 0.0,
        timing: SerialTiming | None = None,
        baud: int = mt.DEFAULT_BAUD,
    ) -> None:
        super().__init__(link, addresses, dead=dead, reply_delay=reply_delay, timing=timing)
        self.baud = baud
        self._inner: PtyLink | None = None
        self._server: ModbusSerialServer | None = None
        self._fc23_write_count: dict[int, int] = {}

    def _new_terminal(self, address: int) -> ModbusTerminal:
        return ModbusTerminal(address)

    # --- scripting extras --------------------------------------------------------------------

    def boot_id(self, address: int) -> int:
        with self._lock:
            return self._terminal(address).boot_id

    def pending_inputs(self, address: int) -> int:
        """Inputs latched and not yet acknowledged by the host."""
        with self._lock:
            return self._terminal(address).inputs.pending

    def refused_inputs(self, address: int) -> int:
        with self._lock:
            return self._terminal(address).inputs.refused

    # --- pymodbus side -----------------------------------------------------------------------

    def _device(self, address: int) -> SimDevice:
        poll = SimData(
            mt.POLL_BLOCK_START,
            count=mt.POLL_BLOCK_COUNT,
            values=0,
            datatype=DataType.REGISTERS,
            readonly=True,
        )
        ack_and_rating = SimData(
            mt.INPUT_ACK, count=mt.RATING_REQUEST - mt.INPUT_ACK + 1, datatype=DataType.REGISTERS
        )
        led = SimData(mt.LED_BLOCK_START, count=mt.LED_BLOCK_COUNT, datatype=DataType.REGISTERS)
        return SimDevice(
            id=address,
            simdata=[poll, ack_and_rating, led],
            action=functools.partial(self._access, address),
        )

    async def _access(
        self,
        address: int,
        function_code: int,
        start_address: int,
        request_address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus calls this before answering a request for ``address``.

        FC23 calls it twice, write half first: the read half waits for the whole exchange.
        A function the firmware does not implement gets exception 01, ILLEGAL FUNCTION.
        """
        if function_code not in mt.SUPPORTED_FUNCTIONS:
            return ExcCodes.ILLEGAL_FUNCTION
        read_write = function_code == mt.FC_READ_WRITE_MULTIPLE_REGISTERS
        if read_write and set_values is not None:
            self._fc23_write_count[address] = count
        else:
            if read_write:
                written = self._fc23_write_count.pop(address, 1)
                request_bytes, reply_bytes = 13 + 2 * written, _RTU_OVERHEAD + 2 * count
            elif set_values is None:
                request_bytes, reply_bytes = 8, _RTU_OVERHEAD + 2 * count
            else:
                request_bytes, reply_bytes = 9 + 2 * count, 8
            await self._reply_wait(request_bytes, reply_bytes)
        with self._lock:
            terminal = self._live(address)
            if terminal is None:  # the answer is dropped in _trace_packet anyway
                return ExcCodes.GATEWAY_NO_RESPONSE
            if set_values is not None:
                return terminal.apply_write(request_address, [int(v) for v in set_values])
            poll_end = mt.POLL_BLOCK_START + mt.POLL_BLOCK_COUNT
            registers[mt.POLL_BLOCK_START - start_address : poll_end - start_address] = (
                terminal.poll_block()
            )
            writable = terminal.writable_block()
            offset = mt.WRITABLE_START - start_address
            registers[offset : offset + len(writable)] = writable
        return None

    async def _refuse_unknown(
        self,
        function_code: int,
        start_address: int,
        request_address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        return ExcCodes.GATEWAY_NO_RESPONSE

    def _trace_packet(self, sending: bool, packet: bytes) -> bytes:
        """Silence the answers of dead terminals and of slave ids not on this bus, and answer
        a function the firmware lacks with exception 01 (pymodbus itself would serve coils,
        or refuse them with 02)."""
        if sending and len(packet) >= 2:
            with self._lock:
                if self._live(packet[0]) is None:
                    return b""
            function = packet[1] & ~mt.EXCEPTION_FLAG
            if function not in mt.SUPPORTED_FUNCTIONS:
                return mt.encode_exception_response(
                    packet[0], function, mt.EXCEPTION_ILLEGAL_FUNCTION
                )
        return packet

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self._inner = PtyLink()
        inner, outer = self._inner, self.link

        def relay(source: PtyLink, target: PtyLink, heard: Callable[[bytes], bytes]) -> None:
            try:
                data = heard(os.read(source.fileno(), 4096))
            except OSError:
                return
            if data and not target.closed:
                target.write(data)

        # The bank's UART is ``timing``: a host at another baud rate or parity is garbage.
        loop.add_reader(outer.fileno(), relay, outer, inner,
                        functools.partial(outer.heard_by_device, line=self.timing))
        loop.add_reader(inner.fileno(), relay, inner, outer,
                        functools.partial(outer.heard_by_host, line=self.timing))
        devices = [self._device(address) for address in self.addresses]
        devices.append(
            SimDevice(
                id=_CATCH_ALL_ID,
                simdata=[SimData(0, count=1, datatype=DataType.REGISTERS)],
                action=self._refuse_unknown,
            )
        )
        self._server = ModbusSerialServer(
            devices,
            port=inner.port_name,
            baudrate=self.baud,
            trace_packet=self._trace_packet,
        )
        await self._server.serve_forever(background=True)  # returns once the port is open

    async def _close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
        for link in (self.link, self._inner):
            if link is not None and not link.closed:
                loop.remove_reader(link.fileno())
        if self._inner is not None:
            self._inner.close()
        self._server = None
        self._inner = None


__all__ = ["FIRMWARE_VERSION", "ModbusTerminal", "ModbusTerminalBank"]

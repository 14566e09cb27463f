"""A real pymodbus RTU client against the simulated terminal bank, over a pty."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pymodbus.client import AsyncModbusSerialClient, ModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from firmware_protocols import modbus_terminal as mt
from firmware_protocols.errors import LocalProtocolError
from firmware_protocols.simulators.modbus_bank import ModbusTerminalBank
from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming
from firmware_protocols.terminal_events import (
    InputsRefused,
    Key,
    KeyPressed,
    RatingPressed,
    RequestRating,
    ShowText,
    TerminalEvent,
)

ADDRESSES = range(1, 7)
DEAD = 4
CLIENT_TIMEOUT = 0.5  # generous: a live answer takes ~5 ms, but CI machines stall


class Host:
    """The smallest honest master: poll with FC04, decode, ack with FC16."""

    def __init__(self, port: str) -> None:
        self.sent: list[bytes] = []
        self.client = ModbusSerialClient(
            port=port,
            baudrate=mt.DEFAULT_BAUD,
            parity=mt.DEFAULT_PARITY,
            timeout=CLIENT_TIMEOUT,
            retries=0,
            trace_packet=self._trace,
        )
        assert self.client.connect()
        self.cursors: dict[int, mt.PollCursor | None] = {}

    def _trace(self, sending: bool, packet: bytes) -> bytes:
        if sending:
            self.sent.append(packet)
        return packet

    def read_block(self, slave: int) -> list[int]:
        response = self.client.read_input_registers(
            mt.POLL_BLOCK_START, count=mt.POLL_BLOCK_COUNT, device_id=slave
        )
        assert not response.isError(), response
        return list(response.registers)

    def write(self, write: mt.RegisterWrite) -> None:
        response = self.client.write_registers(
            write.address, list(write.values), device_id=write.slave
        )
        assert not response.isError(), response

    def poll(self, slave: int, *, ack: bool = True) -> tuple[TerminalEvent, ...]:
        result = mt.decode_poll_block(slave, self.read_block(slave), self.cursors.get(slave))
        self.cursors[slave] = result.cursor
        if ack and result.ack is not None:
            self.write(result.ack)
        return result.events


@pytest.fixture
def link() -> Iterator[PtyLink]:
    with PtyLink() as link:
        yield link


@pytest.fixture
def bank(link: PtyLink) -> Iterator[ModbusTerminalBank]:
    with ModbusTerminalBank(link, ADDRESSES, dead=[DEAD]) as bank:
        yield bank


@pytest.fixture
def host(link: PtyLink, bank: ModbusTerminalBank) -> Iterator[Host]:
    host = Host(link.port_name)
    for slave in ADDRESSES:  # first contact: adopt each terminal's state
        if slave != DEAD:
            host.poll(slave)
    yield host
    host.client.close()  # type: ignore[no-untyped-call]


def test_presses_and_ratings_are_latched_until_acknowledged(
    bank: ModbusTerminalBank, host: Host
) -> None:
    assert bank.press(3, Key.NEXT) == 1
    assert bank.rate(5, 4) == 1
    assert bank.press(3, Key.FINISH) == 2

    assert host.poll(3, ack=False) == (KeyPressed(3, Key.NEXT, 1), KeyPressed(3, Key.FINISH, 2))
    assert bank.pending_inputs(3) == 2  # reading changes nothing on the terminal
    cursor_after_first = host.cursors[3]
    assert host.poll(3) == ()  # the ack of the first read was lost: nothing twice
    assert bank.pending_inputs(3) == 0
    assert host.cursors[3] == cursor_after_first

    assert host.poll(5) == (RatingPressed(5, 4, 1),)
    assert host.poll(5) == ()
    assert host.poll(1) == ()


def test_retried_read_gives_the_same_answer(bank: ModbusTerminalBank, host: Host) -> None:
    bank.press(2, Key.RECALL)
    cursor = host.cursors[2]
    first = mt.decode_poll_block(2, host.read_block(2), cursor)
    retried = mt.decode_poll_block(2, host.read_block(2), cursor)
    assert first.events == retried.events == (KeyPressed(2, Key.RECALL, 1),)


def test_slow_poll_cycle_loses_nothing_and_reports_refusals(
    bank: ModbusTerminalBank, host: Host
) -> None:
    keys = [Key.SIGN_IN, Key.DIGIT_1, Key.DIGIT_2, Key.CALL, Key.RECALL, Key.NO_SHOW]
    for key in keys:
        bank.press(6, key)
    bank.rate(6, 5)
    bank.rate(6, 1)
    assert bank.press(6, Key.NEXT) is None  # the ninth waits in no queue: refused, beeps
    events = host.poll(6)
    assert [e.key for e in events if isinstance(e, KeyPressed)] == keys
    assert [e.value for e in events if isinstance(e, RatingPressed)] == [5, 1]
    assert events[-1] == InputsRefused(6, 1)
    assert [e.sequence for e in events if isinstance(e, KeyPressed | RatingPressed)] == list(
        range(1, 9)
    )


def test_led_text_written_with_fc16(bank: ModbusTerminalBank, host: Host) -> None:
    host.write(mt.command_write(ShowText(3, "请A012号到3号窗口")))
    assert bank.led_text(3) == "请A012号到3号窗口"
    assert host.sent[-1] == mt.encode_write_request(
        mt.command_write(ShowText(3, "请A012号到3号窗口"))
    )
    read_back = host.client.read_holding_registers(
        mt.LED_BLOCK_START, count=mt.LED_BLOCK_COUNT, device_id=3
    )
    assert mt.decode_led_text(read_back.registers) == "请A012号到3号窗口"
    host.write(mt.command_write(ShowText(3, "暂停服务")))
    assert bank.led_text(3) == "暂停服务"  # shorter text: the length register ends it


def test_bad_led_write_is_refused_and_changes_nothing(bank: ModbusTerminalBank, host: Host) -> None:
    host.write(mt.command_write(ShowText(2, "欢迎")))
    too_long = host.client.write_registers(mt.LED_TEXT_LENGTH, [99, 0x4142], device_id=2)
    assert too_long.isError()
    assert too_long.exception_code == 3  # ILLEGAL DATA VALUE
    not_gb2312 = host.client.write_registers(mt.LED_TEXT_LENGTH, [2, 0xFFFF], device_id=2)
    assert not_gb2312.isError()
    assert not_gb2312.exception_code == 3
    read_only = host.client.write_registers(mt.INPUT_SEQUENCE, [5], device_id=2)
    assert read_only.isError()
    assert read_only.exception_code == 2  # ILLEGAL DATA ADDRESS
    assert bank.led_text(2) == "欢迎"


def test_rating_request_lights_the_pad(bank: ModbusTerminalBank, host: Host) -> None:
    host.write(mt.command_write(RequestRating(5, 30)))
    assert bank.rating_requested(5)
    status = mt.decode_poll_block(5, host.read_block(5), None).status
    assert status.rating_pending
    bank.rate(5, 5)
    assert not bank.rating_requested(5)
    assert host.poll(5) == (RatingPressed(5, 5, 1),)


def test_dead_slave_times_out_while_others_answer(bank: ModbusTerminalBank, host: Host) -> None:
    with pytest.raises(ModbusIOException):
        host.client.read_input_registers(0, count=mt.POLL_BLOCK_COUNT, device_id=DEAD)
    with pytest.raises(ModbusIOException):  # an id nobody has on this bus: silence too
        host.client.read_input_registers(0, count=mt.POLL_BLOCK_COUNT, device_id=99)
    bank.press(5, Key.PAUSE)
    assert host.poll(5) == (KeyPressed(5, Key.PAUSE, 1),)

    bank.set_dead(5)
    bank.press(5, Key.RESUME)
    with pytest.raises(ModbusIOException):
        host.read_block(5)
    bank.set_dead(5, False)
    assert host.poll(5) == (KeyPressed(5, Key.RESUME, 2),)  # latched while it was cut off


def test_power_cycle_shows_a_new_boot_id(bank: ModbusTerminalBank, host: Host) -> None:
    bank.press(1, Key.NEXT)
    before = bank.boot_id(1)
    bank.reboot(1)  # the unacknowledged press dies with the power
    assert bank.boot_id(1) != before
    bank.press(1, Key.SIGN_IN)
    assert host.poll(1) == (KeyPressed(1, Key.SIGN_IN, 1),)


def test_golden_poll_bytes_match_what_pymodbus_sends(bank: ModbusTerminalBank, host: Host) -> None:
    host.read_block(3)
    assert host.sent[-1] == mt.encode_read_request(3)


def test_reply_delay_and_line_timing_are_applied(link: PtyLink) -> None:
    timing = SerialTiming(mt.DEFAULT_BAUD, mt.DEFAULT_PARITY)
    with ModbusTerminalBank(link, [1], reply_delay=0.05, timing=timing) as bank:
        host = Host(link.port_name)
        try:
            started = time.monotonic()
            host.read_block(1)
            elapsed = time.monotonic() - started
        finally:
            host.client.close()  # type: ignore[no-untyped-call]
        expected = bank.reply_seconds(8, 5 + 2 * mt.POLL_BLOCK_COUNT)
    # 8 + 37 bytes at 19200 baud 8E1 (11 bits), two t3.5 gaps, 50 ms think time: a lower
    # bound only.
    assert expected == pytest.approx(0.05 + 45 * 11 / 19200 + 2 * 3.5 * 11 / 19200)
    assert elapsed >= expected


def test_scripting_errors_are_clear(bank: ModbusTerminalBank) -> None:
    with pytest.raises(LocalProtocolError, match="no terminal at address 9"):
        bank.press(9, Key.NEXT)
    with pytest.raises(LocalProtocolError, match="rating must be"):
        bank.rate(3, 7)
    with PtyLink() as spare, pytest.raises(ValueError, match="given twice"):
        ModbusTerminalBank(spare, [1, 1])


def test_async_client_polls_acks_and_writes(link: PtyLink, bank: ModbusTerminalBank) -> None:
    """The edge daemon is asyncio: the same exchange with pymodbus' AsyncModbusSerialClient."""

    async def exchange() -> tuple[tuple[TerminalEvent, ...], tuple[TerminalEvent, ...]]:
        client = AsyncModbusSerialClient(
            port=link.port_name, baudrate=mt.DEFAULT_BAUD, timeout=CLIENT_TIMEOUT, retries=0
        )
        assert await client.connect()
        try:
            reply = await client.read_input_registers(
                mt.POLL_BLOCK_START, count=mt.POLL_BLOCK_COUNT, device_id=5
            )
            first = mt.decode_poll_block(5, reply.registers, None)
            assert first.ack is not None
            await client.write_registers(first.ack.address, list(first.ack.values), device_id=5)
            led = mt.command_write(ShowText(5, "请A013号到5号窗口"))
            await client.write_registers(led.address, list(led.values), device_id=5)
            with pytest.raises(ModbusIOException):
                await client.read_input_registers(0, count=mt.POLL_BLOCK_COUNT, device_id=DEAD)
            again = await client.read_input_registers(
                mt.POLL_BLOCK_START, count=mt.POLL_BLOCK_COUNT, device_id=5
            )
            return first.events, mt.decode_poll_block(5, again.registers, first.cursor).events
        finally:
            client.close()

    bank.press(5, Key.NEXT)
    bank.rate(5, 3)
    first, second = asyncio.run(exchange())
    assert first == (KeyPressed(5, Key.NEXT, 1), RatingPressed(5, 3, 2))
    assert second == ()
    assert bank.pending_inputs(5) == 0
    assert bank.led_text(5) == "请A013号到5号窗口"


def test_ack_rides_in_the_next_poll_with_fc23(bank: ModbusTerminalBank, host: Host) -> None:
    bank.press(3, Key.NEXT)
    result = mt.decode_poll_block(3, host.read_block(3), host.cursors[3])
    assert result.events == (KeyPressed(3, Key.NEXT, 1),)
    assert result.ack is not None
    bank.press(3, Key.FINISH)
    reply = host.client.readwrite_registers(
        read_address=mt.POLL_BLOCK_START,
        read_count=mt.POLL_BLOCK_COUNT,
        write_address=result.ack.address,
        values=list(result.ack.values),
        device_id=3,
    )
    assert host.sent[-1] == mt.encode_poll_request(3, result.ack)  # our golden bytes
    assert not reply.isError()
    # The ack was applied before the read: only FINISH is still queued.
    assert reply.registers[mt.INPUT_PENDING] == 1
    following = mt.decode_poll_block(3, reply.registers, result.cursor)
    assert following.events == (KeyPressed(3, Key.FINISH, 2),)


@pytest.mark.parametrize(
    ("function", "call"),
    [
        (0x01, lambda c: c.read_coils(0, count=1, device_id=2)),
        (0x02, lambda c: c.read_discrete_inputs(0, count=1, device_id=2)),
        (0x05, lambda c: c.write_coil(0, True, device_id=2)),
        (0x06, lambda c: c.write_register(mt.RATING_REQUEST, 30, device_id=2)),
        (0x0F, lambda c: c.write_coils(0, [True], device_id=2)),
    ],
)
def test_a_function_the_firmware_lacks_is_answered_with_exception_01(
    bank: ModbusTerminalBank, host: Host, function: int, call: Any
) -> None:
    """Before, pymodbus served coils from nowhere and took FC06 writes: a master that used
    them saw success from a terminal that has no such function."""
    response = call(host.client)
    assert response.isError()
    assert (response.function_code, response.exception_code) == (0x80 | function, 1)
    assert not bank.rating_requested(2)  # and nothing changed
    assert host.read_block(2)[0] == mt.DEVICE_TYPE_WINDOW_TERMINAL  # still answers FC04

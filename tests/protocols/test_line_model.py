"""The line model of the simulators: exact character times, and what a UART at other
settings makes of the bytes (garbage, never a clean answer)."""

from __future__ import annotations

import time

import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from firmware_protocols import led
from firmware_protocols import modbus_terminal as mt
from firmware_protocols.simulators.led_screens import VirtualLedScreens
from firmware_protocols.simulators.modbus_bank import ModbusTerminalBank
from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming, uart_receive


@pytest.mark.parametrize(
    ("line", "bits"),
    [(SerialTiming(9600), 10), (SerialTiming(19200, "E"), 11), (SerialTiming(9600, "N", 2), 11),
     (SerialTiming(9600, "O"), 11), (SerialTiming(9600, data_bits=7, parity="E"), 10)],
)
def test_a_character_is_start_data_parity_and_stop_bits(line: SerialTiming, bits: int) -> None:
    assert line.bits_per_char == bits
    assert line.transmit_seconds(96) == pytest.approx(96 * bits / line.baud)


def test_a_ticket_at_9600_8n1_takes_its_honest_time() -> None:
    assert SerialTiming(9600).transmit_seconds(342) == pytest.approx(0.35625)  # not 0.392


def test_the_modbus_gap_is_three_and_a_half_characters_then_fixed() -> None:
    assert SerialTiming(9600, "E").frame_gap_seconds() == pytest.approx(3.5 * 11 / 9600)
    assert SerialTiming(115200, "E").frame_gap_seconds() == 0.00175


@given(st.binary(max_size=64), st.sampled_from(["N", "E", "O"]), st.sampled_from([1, 2]))
def test_equal_settings_pass_every_byte(data: bytes, parity: str, stop: int) -> None:
    line = SerialTiming(9600, parity, stop)  # type: ignore[arg-type]
    assert uart_receive(data, line, line) == data


@given(st.binary(min_size=1, max_size=64))
def test_two_stop_bits_read_fine_at_one(data: bytes) -> None:
    assert uart_receive(data, SerialTiming(9600, "N", 2), SerialTiming(9600)) == data


@pytest.mark.parametrize(
    ("sent", "received"),
    [
        (SerialTiming(19200), SerialTiming(9600)),
        (SerialTiming(9600), SerialTiming(19200)),
        (SerialTiming(9600), SerialTiming(9600, "E")),
        (SerialTiming(9600, "E"), SerialTiming(9600, "O")),
        (SerialTiming(115200), SerialTiming(9600)),
    ],
)
def test_other_baud_or_parity_is_garbage(sent: SerialTiming, received: SerialTiming) -> None:
    frame = led.encode(led.ShowText(1, 7, "请A012号到3号窗口"))
    assert uart_receive(frame, sent, received) != frame


def test_the_link_sees_the_hosts_line_settings() -> None:
    with PtyLink(SerialTiming(19200, "E")) as link:
        assert link.host_line() is None  # nobody opened it yet
        with serial.Serial(link.port_name, 19200, parity="E", timeout=0.1):
            assert link.host_line() == SerialTiming(19200, "E")
        with serial.Serial(link.port_name, 9600, stopbits=2, timeout=0.1):  # and reopened
            assert link.host_line() == SerialTiming(9600, "N", 2)


@pytest.mark.parametrize(("baud", "acked"), [(9600, True), (19200, False), (4800, False)])
def test_an_led_screen_answers_only_a_host_at_its_baud_rate(baud: int, acked: bool) -> None:
    """Before the line model, a screen at 9600 answered a host at 19200 as if all were well."""
    with (
        PtyLink(SerialTiming(9600)) as link,
        VirtualLedScreens(link, [1]) as screens,
        serial.Serial(link.port_name, baud, timeout=0.3) as port,
    ):
        port.write(led.encode(led.ShowText(1, 7, "请A012号到3号窗口")))
        reply = port.read(9)
        if acked:
            assert led.decode_all(reply) == [led.Ack(1, 7)]
            assert screens.text(1) == "请A012号到3号窗口"
        else:
            assert reply[:9] != led.encode(led.Ack(1, 7))
            time.sleep(0.1)  # the line goes quiet: whatever arrived is judged
            assert screens.text(1) == ""
            assert screens.stats.acks_sent == 0


@pytest.mark.parametrize(("parity", "answers"), [("E", True), ("N", False), ("O", False)])
def test_a_modbus_terminal_at_8e1_answers_only_an_8e1_master(parity: str, answers: bool) -> None:
    timing = SerialTiming(mt.DEFAULT_BAUD, mt.DEFAULT_PARITY)
    with PtyLink() as link, ModbusTerminalBank(link, [1], timing=timing):
        client = ModbusSerialClient(
            port=link.port_name, baudrate=mt.DEFAULT_BAUD, parity=parity, timeout=0.3, retries=0
        )
        assert client.connect()
        try:
            if answers:
                response = client.read_input_registers(0, count=mt.POLL_BLOCK_COUNT, device_id=1)
                assert response.registers[0] == mt.DEVICE_TYPE_WINDOW_TERMINAL
            else:
                with pytest.raises(ModbusIOException):
                    client.read_input_registers(0, count=mt.POLL_BLOCK_COUNT, device_id=1)
        finally:
            client.close()  # type: ignore[no-untyped-call]


def test_an_answer_that_overlaps_the_hosts_next_frame_collides_on_rs485() -> None:
    """Half duplex: a host that sends while the screen answers garbles both."""
    with (
        PtyLink(SerialTiming(9600), half_duplex=True) as link,
        VirtualLedScreens(link, [1]) as screens,
        serial.Serial(link.port_name, 9600, timeout=0.5) as port,
    ):
        frame = led.encode(led.ShowText(1, 7, "请A012号到3号窗口"))
        port.write(frame)
        assert led.decode_all(port.read(9)) == [led.Ack(1, 7)]  # waited: no collision
        port.write(frame)
        time.sleep(0.005)  # the screen is still taking in the first frame ...
        port.write(led.encode(led.ShowText(1, 8, "请A013号到3号窗口")))  # ... queued behind it
        reply = port.read(18)
        assert link.collisions == 1
        assert led.encode(led.Ack(1, 7)) not in reply
        screens.wait_until(lambda: screens.stats.skipped_bytes > 0, 2)  # garbled on arrival
        assert screens.text(1) == "请A012号到3号窗口"  # the second frame never arrived whole
        assert screens.stats.frames == 2

"""Garbage on the serial lines, end to end: the simulated devices keep serving.

Each test opens the simulator's pty with real pyserial (or a real pymodbus
client), then alternates random bytes and protocol-shaped junk with valid
traffic for several rounds. After every burst the device's garbage count must
have risen and the next valid frame must be answered or printed correctly.
The edge drivers' own handling of garbage is tested with the edge daemon.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import datetime
from functools import partial

import pytest
import serial
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from edge.devices.ticket import TicketContent, ticket_bytes
from firmware_protocols import escpos, led
from firmware_protocols import modbus_terminal as mt
from firmware_protocols import vendor_frame as vf
from firmware_protocols.errors import RemoteProtocolError
from firmware_protocols.simulators.led_screens import VirtualLedScreens
from firmware_protocols.simulators.modbus_bank import ModbusTerminalBank
from firmware_protocols.simulators.printer import VirtualPrinter, assemble
from firmware_protocols.simulators.serial_link import PtyLink
from firmware_protocols.simulators.vendor_bank import VendorTerminalBank
from firmware_protocols.terminal_events import Key, KeyPressed, RatingPressed
from tests.fuzz.harness import escpos_garbage_is_closed
from tests.protocols.test_vendor_bank import Host as VendorHost

pytestmark = pytest.mark.timeout(120)

ROUNDS = 8
BURST = 400  # bytes of junk per burst
ANSWER_WAIT = 3.0  # a garbled frame is dropped when the line goes idle (50 ms): generous


def _junk(rng: random.Random, pieces: list[bytes]) -> bytes:
    """Random bytes with protocol-shaped pieces (sync words, lying headers) mixed in."""
    out = bytearray()
    while len(out) < BURST:
        if rng.random() < 0.3:
            out += rng.choice(pieces)
        else:
            out += rng.randbytes(rng.randrange(1, 40))
    return bytes(out)


# --------------------------------------------------------------------------- ticket printer


def _ticket(number: int) -> bytes:
    content = TicketContent(
        hall_name="中山市政务服务中心",
        service_name="综合受理",
        ticket_number=f"A{number:03d}",
        people_ahead=number,
        wait_p50_minutes=5,
        wait_p90_minutes=12,
        issued_at=datetime(2026, 11, 23, 9, number),
        qr_payload=f"https://q.example.cn/t/A{number:03d}",
    )
    return ticket_bytes(content)


def _last_ticket_ends_with(printer: VirtualPrinter, lines: list[str]) -> bool:
    """Junk printed since the last cut sits above the ticket, as on real paper."""
    tickets = printer.tickets
    return bool(tickets) and tickets[-1].text_lines[-len(lines) :] == lines


def test_printer_prints_every_ticket_between_bursts_of_garbage() -> None:
    rng = random.Random(911)
    pieces = [b"\x1b", b"\x1d\x56", b"\x1c\x26", b"\x10\x04\x09", b"\x1b\x61\x07", b"\xff\xfe",
              b"\x1d\x21\x88", escpos.encode(escpos.Cut()), "中".encode("gb18030")]  # fmt: skip
    with PtyLink() as link, VirtualPrinter(link) as printer, \
            serial.Serial(printer.port, 115200, timeout=1.0) as port:  # fmt: skip
        sent = 0
        for number in range(1, ROUNDS + 1):
            garbage = _junk(rng, pieces)
            while not escpos_garbage_is_closed(garbage):  # see the helper: ESC/POS has no sync
                garbage = _junk(rng, pieces)
            before = printer.garbage
            ticket = _ticket(number)
            port.write(garbage + ticket)  # no pause: the ticket follows the junk at once
            sent += len(garbage) + len(ticket)
            printer.wait_for_bytes(sent)
            expected = assemble(escpos.decode_all(ticket))[0].text_lines
            printer.wait_until(partial(_last_ticket_ends_with, printer, expected), ANSWER_WAIT)
            assert printer.garbage > before
            # Status still answers (after the replies the junk's DLE EOT asked for).
            port.reset_input_buffer()
            port.write(escpos.encode_status_query(escpos.StatusRequest.PRINTER))
            status = escpos.parse_status_reply(escpos.StatusRequest.PRINTER, port.read(1))
            assert isinstance(status, escpos.PrinterStatus)
            assert not status.offline
        assert printer.running
        assert printer.garbage >= ROUNDS


# --------------------------------------------------------------------------- LED screens


def _led_reply(port: serial.Serial, request: led.LedRequest) -> led.LedEvent | None:
    """The reply to ``request``, skipping NACKs the junk provoked; None on timeout."""
    decoder = led.LedDecoder()
    deadline = time.monotonic() + ANSWER_WAIT
    while time.monotonic() < deadline:
        decoder.receive_data(port.read(64))
        while True:
            try:
                event = decoder.next_event()
            except RemoteProtocolError:
                continue
            if event is led.NEED_DATA:
                break
            if led.is_reply_to(event, request):
                return event
    return None


def test_led_screens_answer_and_show_text_between_bursts_of_garbage() -> None:
    rng = random.Random(912)
    pieces = [
        led.SYNC,
        led.SYNC + bytes([1, 0x10, 9]) + (900).to_bytes(2, "big"),  # a length that lies
        led.SYNC + bytes([2, 0x12, 9, 0xFF, 0xFF]),  # a length above the maximum
        led.encode(led.Ping(1, 3))[:-1] + b"\x00",  # a frame with a bad CRC
    ]
    with PtyLink() as link, VirtualLedScreens(link, [1, 2]) as screens, \
            serial.Serial(screens.port, 115200, timeout=0.05) as port:  # fmt: skip
        for seq in range(ROUNDS):
            before = screens.stats
            port.write(_junk(rng, pieces))
            for address in (1, 2):
                text = f"请A{seq:03d}号到{address}号窗口"
                request = led.ShowText(address, seq, text)
                port.write(led.encode(request))
                assert _led_reply(port, request) == led.Ack(address, seq)
                assert screens.text(address) == text
            after = screens.stats
            assert after.skipped_bytes > before.skipped_bytes
            assert (
                after.crc_errors + after.framing_errors + after.frame_errors
                > before.crc_errors + before.framing_errors + before.frame_errors
            )
        assert screens.running


# --------------------------------------------------------------------------- vendor terminals


@pytest.fixture
def vendor_bus() -> Iterator[tuple[VendorTerminalBank, VendorHost]]:
    with PtyLink() as link, VendorTerminalBank(link, [1, 2, 3]) as bank:
        host = VendorHost(link.port_name)
        yield bank, host
        host.port.close()


def test_vendor_terminals_report_every_press_between_bursts_of_garbage(
    vendor_bus: tuple[VendorTerminalBank, VendorHost],
) -> None:
    bank, host = vendor_bus
    rng = random.Random(913)
    bad_sum = bytearray(vf.encode(vf.Poll(2, 0)))
    bad_sum[-2] ^= 0x5A
    pieces = [
        bytes(bad_sum),  # counted as a bad frame, never answered
        bytes((0x68, 0xA0, 0xA0, 0x68)),  # a header promising 160 bytes that never come
        bytes((0x68, 0x05, 0x06, 0x68)),  # length bytes that disagree
        vf.encode_frame(2, 0x7F, b"\x00"),  # unknown function
    ]
    for round_number in range(1, ROUNDS + 1):
        before = bank.bad_frames
        host.port.write(_junk(rng, pieces))
        sequence = bank.press(2, Key.NEXT)
        rated = bank.rate(3, 5)
        assert sequence is not None
        assert rated is not None
        reports = [host.poll(2), host.poll(3)]
        assert reports == [KeyPressed(2, Key.NEXT, sequence), RatingPressed(3, 5, rated)]
        # The next poll carries the ack: both reports are dropped, nothing else is queued.
        assert [type(host.poll(2)), type(host.poll(3))] == [vf.Idle, vf.Idle]
        assert bank.bad_frames > before, round_number
    assert bank.pending_reports(2) == bank.pending_reports(3) == 0


# --------------------------------------------------------------------------- Modbus terminals


def _poll_with_retries(client: ModbusSerialClient, slave: int) -> tuple[list[int], int]:
    """The poll block and how many tries it took (a driver retries a timed-out read)."""
    for attempt in range(1, 4):
        try:
            response = client.read_input_registers(
                mt.POLL_BLOCK_START, count=mt.POLL_BLOCK_COUNT, device_id=slave
            )
        except ModbusIOException:  # no answer within the timeout
            continue
        if not response.isError():
            return list(response.registers), attempt
    raise AssertionError(f"slave {slave} did not answer three polls after garbage")


@pytest.mark.parametrize("pause", [True, False], ids=["quiet-line-after-junk", "junk-glued"])
def test_modbus_terminals_keep_answering_between_bursts_of_garbage(pause: bool) -> None:
    """The pymodbus server drops junk silently (it keeps no count we could read).

    With the junk glued to the request, pymodbus' RTU framer may drop the
    request with it (it discards its whole buffer on a CRC mismatch): the
    master's retry is answered. With a quiet line between, the first try is.
    """
    rng = random.Random(914)
    pieces = [
        mt.encode_read_request(2)[:-1] + b"\x00",  # a request with a bad CRC
        bytes((2, 0x10, 0x01, 0x00, 0x00, 0x7B, 0xF6)),  # FC16 header promising 246 bytes
        bytes((0, 0x04)),  # the broadcast id with a read
    ]
    with PtyLink() as link, ModbusTerminalBank(link, [1, 2]) as bank, \
            serial.Serial(link.port_name, mt.DEFAULT_BAUD) as noise:  # fmt: skip
        client = ModbusSerialClient(
            port=link.port_name, baudrate=mt.DEFAULT_BAUD, timeout=0.3, retries=0
        )
        assert client.connect()
        cursor: mt.PollCursor | None = None
        tries = []
        try:
            for round_number in range(1, ROUNDS + 1):
                noise.write(_junk(rng, pieces))
                noise.flush()
                if pause:
                    time.sleep(0.2)  # the line goes quiet before the master speaks
                sequence = bank.press(2, Key.FINISH)
                assert sequence is not None
                registers, attempts = _poll_with_retries(client, 2)
                tries.append(attempts)
                result = mt.decode_poll_block(2, registers, cursor)
                assert result.events == (KeyPressed(2, Key.FINISH, sequence),), round_number
                assert result.ack is not None
                written = client.write_registers(mt.INPUT_ACK, list(result.ack.values), device_id=2)
                assert not written.isError()
                cursor = result.cursor
        finally:
            client.close()  # type: ignore[no-untyped-call]
        assert bank.pending_inputs(2) == 0
        if pause:  # junk then a quiet line: first polls are answered (a stalled CI may glue one)
            assert tries.count(1) >= ROUNDS - 2, tries
        else:
            print(f"modbus polls after glued junk took {tries} tries")

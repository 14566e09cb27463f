"""The virtual ticket printer over a real pty, driven with real pyserial."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import serial

from edge.devices.ticket import LARGE_PRINT_LAYOUT, TicketContent, ticket_bytes
from firmware_protocols import escpos
from firmware_protocols.escpos import Align, CharSize, PrinterHealth, StatusRequest
from firmware_protocols.simulators.printer import (
    PAPER_58MM_DOTS,
    PrintedLine,
    PrintedQr,
    VirtualPrinter,
    assemble,
    render_ticket,
    save_ticket_png,
)
from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

TICKET = TicketContent(
    hall_name="揭阳市政务服务中心",
    service_name="不动产登记",
    ticket_number="C027",
    people_ahead=5,
    wait_p50_minutes=12,
    wait_p90_minutes=25,
    issued_at=datetime(2026, 11, 23, 14, 30, 0),
    qr_payload="https://q.example.cn/t/20261123-C027",
    footer_lines=("请留意叫号，过号需重新取号", "好差评：请为本次服务评价"),
)


@pytest.fixture
def printer() -> Iterator[VirtualPrinter]:
    with PtyLink(SerialTiming(115200)) as link, VirtualPrinter(link) as device:
        yield device


@pytest.fixture
def port(printer: VirtualPrinter) -> Iterator[serial.Serial]:
    with serial.Serial(printer.port, 115200, timeout=1.0) as handle:
        yield handle


def query_health(port: serial.Serial) -> PrinterHealth:
    """What the edge driver does: DLE EOT 1, 2, 4, one byte each."""
    replies = []
    for request in escpos.HEALTH_QUERIES:
        port.write(escpos.encode_status_query(request))
        replies.append(escpos.parse_status_reply(request, port.read(1)))
    printer, cause, paper = replies
    assert isinstance(printer, escpos.PrinterStatus)
    assert isinstance(cause, escpos.OfflineCause)
    assert isinstance(paper, escpos.PaperSensor)
    return PrinterHealth.from_replies(printer, cause, paper)


def test_ticket_printed_back_with_formats_and_rendered(
    printer: VirtualPrinter, port: serial.Serial
) -> None:
    port.write(ticket_bytes(TICKET))
    port.write(ticket_bytes(TICKET, LARGE_PRINT_LAYOUT))
    normal, large = printer.wait_for_tickets(2)
    assert normal.text_lines == [
        "揭阳市政务服务中心",
        "不动产登记",
        "",
        "C027",
        "",
        "您前面还有5人等候",
        "预计等候约12分钟（最长约25分钟）",
        "取号时间：2026-11-23 14:30:00",
        "微信扫码查看排队进度",
        "请留意叫号，过号需重新取号",
        "好差评：请为本次服务评价",
    ]
    number = normal.line("C027")
    assert (number.size, number.bold, number.align) == (CharSize(4, 4), True, Align.CENTER)
    hall = normal.line("揭阳市政务服务中心")
    assert (hall.size, hall.bold) == (CharSize(1, 2), True)
    assert not normal.line("不动产登记").bold
    assert normal.qr_payloads == [b"https://q.example.cn/t/20261123-C027"]
    assert not normal.partial_cut
    assert large.line("C027").size == CharSize(6, 6)
    assert large.line("前面5人").size == CharSize(2, 2)
    qr = next(item for item in large.items if isinstance(item, PrintedQr))
    assert qr.module_size == 8
    assert printer.garbage == 0
    ARTIFACTS.mkdir(exist_ok=True)
    for name, ticket in (("ticket_normal", normal), ("ticket_large_print", large)):
        path = save_ticket_png(ticket, ARTIFACTS / f"{name}.png")
        assert path.stat().st_size > 1000
    image = render_ticket(normal)
    assert image.width == 576 + 48
    # The number is printed: black dots in the band where the 4x-high line sits.
    assert image.getextrema() == (0, 255)
    assert render_ticket(normal, paper_dots=PAPER_58MM_DOTS).width == 384 + 48


def test_long_lines_wrap_on_narrow_paper() -> None:
    ticket = assemble(
        [
            escpos.Text("中" * 20, CharSize(2, 2)),  # 20 x 48 dots: three rows on 58 mm
            escpos.Cut(),
        ]
    )[0]
    one_row = render_ticket(assemble([escpos.Text("中", CharSize(2, 2)), escpos.Cut()])[0])
    wrapped = render_ticket(ticket, paper_dots=PAPER_58MM_DOTS)
    assert wrapped.height > one_row.height + 2 * 48


def test_status_of_a_healthy_printer(port: serial.Serial) -> None:
    assert query_health(port) == PrinterHealth(
        online=True, cover_open=False, paper_low=False, paper_out=False, error=False
    )
    port.write(escpos.encode_status_query(StatusRequest.ERROR_CAUSE))
    assert port.read(1) == b"\x12"


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("set_paper_low", PrinterHealth(True, False, True, False, False)),
        ("run_out_of_paper", PrinterHealth(False, False, True, True, False)),
        ("open_cover", PrinterHealth(False, True, False, False, False)),
        ("go_offline", PrinterHealth(False, False, False, False, True)),
    ],
)
def test_status_reports_each_fault(
    printer: VirtualPrinter, port: serial.Serial, action: str, expected: PrinterHealth
) -> None:
    getattr(printer, action)()
    assert query_health(port) == expected


def test_paper_out_holds_the_ticket_until_reloaded(
    printer: VirtualPrinter, port: serial.Serial
) -> None:
    printer.run_out_of_paper()
    data = ticket_bytes(TICKET)
    port.write(data)
    printer.wait_for_bytes(len(data))
    assert printer.tickets == []
    assert printer.held_events > 0
    assert not query_health(port).online  # status still answered while stopped
    printer.load_paper()
    (ticket,) = printer.wait_for_tickets(1)
    assert ticket.line("C027").bold
    assert printer.held_events == 0
    assert query_health(port).online


def test_cover_open_then_closed_prints(printer: VirtualPrinter, port: serial.Serial) -> None:
    printer.open_cover()
    port.write(ticket_bytes(TICKET))
    printer.wait_for_bytes(len(ticket_bytes(TICKET)))
    assert printer.tickets == []
    printer.close_cover()
    assert len(printer.wait_for_tickets(1)) == 1


def test_powered_off_printer_is_silent(printer: VirtualPrinter, port: serial.Serial) -> None:
    printer.power_off()
    port.timeout = 0.2
    port.write(escpos.encode_status_query(StatusRequest.PRINTER))
    assert port.read(1) == b""  # the driver's timeout is the only sign
    port.write(ticket_bytes(TICKET))
    printer.wait_until(lambda: printer.bytes_ignored > 3, 2.0)
    printer.power_on()
    port.timeout = 1.0
    assert query_health(port).online
    assert printer.tickets == []


def test_garbage_is_counted_and_never_stops_the_printer(
    printer: VirtualPrinter, port: serial.Serial
) -> None:
    rng = random.Random(20261123)
    garbage = bytes(rng.randrange(256) for _ in range(3000))
    port.write(garbage)
    printer.wait_for_bytes(len(garbage))
    assert printer.running
    assert printer.garbage > 0
    assert printer.errors
    # A half-read GS ( k length can hold the decoder: an operator power-cycles, as with paper.
    printer.power_off()
    printer.power_on()
    port.reset_input_buffer()  # status bytes the garbage's DLE EOT asked for
    port.write(ticket_bytes(TICKET))
    (*_, ticket) = printer.wait_for_tickets(1)
    assert ticket.line("C027").size == CharSize(4, 4)


def test_bad_gb18030_line_is_printed_and_counted(
    printer: VirtualPrinter, port: serial.Serial
) -> None:
    port.write(b"\x1b\x40\x1c\x26\xd6\xd0\x81\x20\x0a\x1d\x56\x00")  # 中, then a broken pair
    (ticket,) = printer.wait_for_tickets(1)
    assert ticket.text_lines[0].startswith("中")
    assert printer.garbage == 1
    assert "GB18030" in printer.errors[0]


def test_ticket_takes_its_honest_time_on_a_slow_line() -> None:
    data = ticket_bytes(TICKET)
    timing = SerialTiming(9600)
    with PtyLink(timing) as link, VirtualPrinter(link) as device:
        with serial.Serial(device.port, 9600, timeout=2.0) as handle:
            started = time.monotonic()
            handle.write(data)
            handle.write(escpos.encode_status_query(StatusRequest.PRINTER))
            assert handle.read(1) == b"\x12"
            elapsed = time.monotonic() - started
        device.wait_for_tickets(1)
    assert elapsed >= timing.transmit_seconds(len(data) + 3 + 1)


def test_lifecycle() -> None:
    link = PtyLink()
    device = VirtualPrinter(link)
    device.start()
    with pytest.raises(RuntimeError, match="already started"):
        device.start()
    device.stop()
    device.stop()  # idempotent
    assert not device.running
    link.close()
    with pytest.raises(RuntimeError, match="closed"):
        VirtualPrinter(link).start()


def test_assembler_keeps_runs_and_drops_unprinted_line() -> None:
    events = escpos.decode_all(
        b"\x1b\x61\x01ab\x1b\x45\x01cd\x0axx\x1b\x40\x1b\x64\x02\x1d\x56\x01"
    )
    (ticket,) = assemble(events)
    (line,) = ticket.lines
    assert isinstance(line, PrintedLine)
    assert (line.text, line.align, line.bold) == ("abcd", Align.CENTER, False)
    assert [run.bold for run in line.runs] == [False, True]
    assert ticket.partial_cut


def test_a_dle_eot_inside_qr_data_is_answered_as_a_status_query(
    printer: VirtualPrinter, port: serial.Serial
) -> None:
    """Why the encoder refuses control bytes in QR data: the printer acts on them."""
    data = b"t/A012\x10\x04\x01"
    store = bytes.fromhex("1d 28 6b") + (len(data) + 3).to_bytes(2, "little") + b"\x31\x50\x30"
    port.write(store + data + bytes.fromhex("1d 28 6b 03 00 31 51 30"))
    assert port.read(1) == bytes([0x12])  # the answer to DLE EOT 1, which nobody asked for
    port.write(b"\x10\x04")  # and one split across two writes is answered once, whole
    time.sleep(0.05)
    port.write(b"\x04")
    assert port.read(2) == bytes([0x12])
    assert printer.status_queries == 2

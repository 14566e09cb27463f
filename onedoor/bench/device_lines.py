"""Benchmark: every device family at its default line settings, against the line model.

``onedoor bench --only device-lines`` (or ``python -m onedoor.bench.device_lines``).

For each family the real driver code (``edge.devices``) talks to its simulator
(``firmware_protocols.simulators``), which takes the honest time of every byte
at the family's default settings (``SerialTiming``: start, data, parity and stop
bits; the Modbus t3.5 gaps). Two figures each, measured, beside the floor the
line model gives (the bytes' own wire time, no turnaround):

* the round trip of the family's largest frame: the schema-maximum ticket,
  notice, LED text or card answer, from the first byte written to the answer
  decoded;
* the poll cycle: what the driver does over and over when nothing happens
  (printer status, a ping of every screen, a poll of every terminal of a
  33-window hall, the card reader's FIND).

Each figure is the median of ``rounds`` runs (min in brackets).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any

from edge.devices import ticket
from edge.devices.base import HallCounts
from edge.devices.printer_ports import printer_port
from edge.devices.screens import NOTICE_SEPARATOR, HallScreen, hall_lines
from edge.devices.serial_port import AsyncSerial, exchange
from edge.devices.terminals import ModbusBus, VendorBus
from firmware_protocols import escpos, id_card, led
from firmware_protocols import modbus_terminal as mt
from firmware_protocols import vendor_frame as vf
from firmware_protocols.decoding import Decoder
from firmware_protocols.id_card import Command, Gender, IdCardText
from firmware_protocols.line import SerialTiming
from firmware_protocols.simulators.id_card_reader import VirtualIdCardReader
from firmware_protocols.simulators.led_screens import ScreenLayout, VirtualLedScreens
from firmware_protocols.simulators.modbus_bank import ModbusTerminalBank
from firmware_protocols.simulators.printer import VirtualPrinter
from firmware_protocols.simulators.serial_link import PtyLink
from firmware_protocols.simulators.vendor_bank import VendorTerminalBank
from firmware_protocols.terminal_events import ShowText

HALL_WINDOWS = 33  # Zhongshan's comprehensive hall
TURNAROUND_S = 0.5  # generous: figures are measured, never cut short
NOTICE_CHARS = 200  # the longest screen_notice the command schema takes
PRINTER_LINE = SerialTiming(9600)
LED_LINE = SerialTiming(9600)
VENDOR_LINE = SerialTiming(vf.BAUD, vf.PARITY)
MODBUS_LINE = SerialTiming(mt.DEFAULT_BAUD, mt.DEFAULT_PARITY)
READER_LINE = SerialTiming(id_card.BAUD)

LARGEST_TICKET = ticket.TicketContent(
    hall_name="中山市三乡镇政务服务中心", service_name="社会保险和医疗保险业务",
    ticket_number="A0999", people_ahead=999, wait_p50_minutes=240, wait_p90_minutes=480,
    issued_at=datetime(2026, 11, 23, 16, 59, 59), qr_payload="zs-sanxiang-01/2026-11-23/A0999",
    footer_lines=("请留意叫号，过号请重新取号",),
)
CARD = IdCardText("欧阳明", Gender.MALE, "01", datetime(1990, 7, 4).date(),
                  "广东省中山市石岐区孙文中路一百二十三号之一", "442000199007044511",
                  "中山市公安局", datetime(2019, 1, 2).date(), datetime(2039, 1, 2).date())


async def _timed(action: Callable[[], Awaitable[object]], rounds: int) -> list[float]:
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = await action()
        if result is None or result is False:
            raise RuntimeError("no answer during the benchmark")
        seconds.append(time.perf_counter() - started)
    return seconds


def _figure(seconds: Sequence[float]) -> str:
    return f"{1000 * statistics.median(seconds):.1f} ({1000 * min(seconds):.1f})"


def _floor(line: SerialTiming, *byte_counts: int, gaps: int = 0) -> str:
    seconds = line.transmit_seconds(sum(byte_counts)) + gaps * line.frame_gap_seconds()
    return f"{1000 * seconds:.1f}"


async def _printer(rounds: int) -> dict[str, Any]:
    data = ticket.ticket_bytes(LARGEST_TICKET)
    with PtyLink(PRINTER_LINE) as link, VirtualPrinter(link):
        port = printer_port(link.port_name, PRINTER_LINE)
        await port.open()
        try:
            async def status(request: escpos.StatusRequest) -> object:
                decoder: Decoder[escpos.StatusReply] = escpos.StatusReplyDecoder(request)
                return await exchange(port, escpos.encode_status_query(request), decoder,
                                      reply_bytes=1, timeout=TURNAROUND_S)

            async def ticket_then_status() -> object:
                await port.write(data, 5.0)  # exchange waits until the ticket is on the wire
                return await status(escpos.StatusRequest.PRINTER)

            async def status_check() -> object:  # the driver's poll: DLE EOT 1, 2, 4
                for request in escpos.HEALTH_QUERIES:
                    if await status(request) is None:
                        return None
                return True

            largest = await _timed(ticket_then_status, rounds)
            cycle = await _timed(status_check, rounds)
        finally:
            port.close()
    return {
        "line": str(PRINTER_LINE),
        "largest frame": f"ticket, {len(data)} bytes, then DLE EOT 1",
        "largest frame round trip, ms": _figure(largest),
        "largest frame wire floor, ms": _floor(PRINTER_LINE, len(data), 3, 1),
        "poll cycle (status: DLE EOT 1, 2, 4), ms": _figure(cycle),
        "poll cycle wire floor, ms": _floor(PRINTER_LINE, 3 * 4),
    }


async def _screens(rounds: int) -> dict[str, Any]:
    notice = "系统维护——暂停取号·" + "请" * (NOTICE_CHARS - 10)
    notices = [notice, "呼叫帮办 自助服务区A"]
    [*_, line] = hall_lines(HallScreen(0xF0), [], HallCounts(0, 0), notices)
    request = line.request(0xF0, 4, 1)
    frame = led.encode(request)
    layouts = {address: ScreenLayout() for address in range(1, HALL_WINDOWS + 1)}
    layouts[0xF0] = ScreenLayout(lines=5, columns=24)
    with (
        PtyLink(LED_LINE, half_duplex=True) as link,
        VirtualLedScreens(link, layouts),
    ):
        port = AsyncSerial(link.port_name, LED_LINE)
        await port.open()
        try:
            async def ask(event: led.LedRequest) -> object:
                decoder: Decoder[led.LedEvent] = led.LedDecoder()
                return await exchange(port, led.encode(event), decoder,
                                      lambda reply: led.is_reply_to(reply, event),
                                      reply_bytes=led.REPLY_FRAME_MAX, timeout=TURNAROUND_S)

            async def ping_all() -> object:
                for address in layouts:
                    if await ask(led.Ping(address, address)) is None:
                        return None
                return True

            largest = await _timed(lambda: ask(request), rounds)
            cycle = await _timed(ping_all, max(1, rounds // 3))
        finally:
            port.close()
    return {
        "line": f"{LED_LINE}, half duplex",
        "largest frame": f"hall notice line, {len(frame)} bytes ({NOTICE_CHARS}-character "
                         f"notice{NOTICE_SEPARATOR}help notice), ACK",
        "largest frame round trip, ms": _figure(largest),
        "largest frame wire floor, ms": _floor(LED_LINE, len(frame), 9),
        f"poll cycle (PING of {len(layouts)} screens), ms": _figure(cycle),
        "poll cycle wire floor, ms": _floor(LED_LINE, len(layouts) * (9 + 9)),
    }


async def _terminal_bus(bus: ModbusBus | VendorBus, text: str,
                        rounds: int) -> tuple[list[float], list[float]]:
    """The LED text round trip at window 1, and poll cycles of the whole hall, on ``bus``."""
    await bus.open()
    try:
        async def led_text() -> object:
            await bus.send(ShowText(1, text))
            return True

        async def cycle() -> object:
            for address in range(1, HALL_WINDOWS + 1):
                await bus.poll(address)
            return True

        return await _timed(led_text, rounds), await _timed(cycle, max(1, rounds // 3))
    finally:
        bus.close()


async def _vendor(rounds: int) -> dict[str, Any]:
    text = "请" * (vf.MAX_DATA // 2)
    with PtyLink() as link, VendorTerminalBank(link, range(1, HALL_WINDOWS + 1),
                                               timing=VENDOR_LINE):
        bus = VendorBus(link.port_name, VENDOR_LINE, TURNAROUND_S)
        largest, polls = await _terminal_bus(bus, text, rounds)
    frame = len(vf.encode(ShowText(1, text)))
    return {
        "line": str(VENDOR_LINE),
        "largest frame": f"LED_TEXT of 80 hanzi, {frame} bytes, ACK",
        "largest frame round trip, ms": _figure(largest),
        # The simulated terminal keeps a 3.5-character gap after each frame, as Modbus does.
        "largest frame wire floor, ms": _floor(VENDOR_LINE, frame, vf.ANSWER_FRAME, gaps=2),
        f"poll cycle ({HALL_WINDOWS} terminals, idle), ms": _figure(polls),
        "poll cycle wire floor, ms": _floor(VENDOR_LINE, HALL_WINDOWS * 2 * vf.ANSWER_FRAME,
                                            gaps=2 * HALL_WINDOWS),
    }


async def _modbus(rounds: int) -> dict[str, Any]:
    text = "请" * (mt.LED_TEXT_MAX_BYTES // 2)
    with PtyLink() as link, ModbusTerminalBank(link, range(1, HALL_WINDOWS + 1),
                                               timing=MODBUS_LINE):
        bus = ModbusBus(link.port_name, MODBUS_LINE, TURNAROUND_S, ack_in_poll=False)
        largest, polls = await _terminal_bus(bus, text, rounds)
    request = len(mt.encode_write_request(mt.command_write(ShowText(1, text))))
    poll = len(mt.encode_read_request(1)), 5 + 2 * mt.POLL_BLOCK_COUNT
    return {
        "line": str(MODBUS_LINE),
        "largest frame": f"FC16 of the whole LED block (32 hanzi), {request} bytes, answer 8",
        "largest frame round trip, ms": _figure(largest),
        "largest frame wire floor, ms": _floor(MODBUS_LINE, request, 8, gaps=2),
        f"poll cycle ({HALL_WINDOWS} terminals, FC04, idle), ms": _figure(polls),
        "poll cycle wire floor, ms": _floor(MODBUS_LINE, *(poll * HALL_WINDOWS),
                                            gaps=2 * HALL_WINDOWS),
    }


async def _reader(rounds: int) -> dict[str, Any]:
    with PtyLink(READER_LINE) as link, VirtualIdCardReader(link, read_seconds=0.0) as reader:
        reader.place_card(CARD)
        port = AsyncSerial(link.port_name, READER_LINE)
        await port.open()
        try:
            async def ask(command: Command, reply_bytes: int) -> object:
                decoder: Decoder[id_card.IdCardEvent] = id_card.IdCardDecoder()
                return await exchange(port, id_card.encode_request(command), decoder,
                                      reply_bytes=reply_bytes, timeout=TURNAROUND_S)

            async def read() -> object:
                await ask(Command.SELECT_CARD, 20)
                return await ask(Command.READ_BASE_INFO, 1295)

            largest = await _timed(read, rounds)
            find = await _timed(lambda: ask(Command.FIND_CARD, 20), rounds)
        finally:
            port.close()
    return {
        "line": str(READER_LINE),
        "largest frame": "SELECT, then READ BASE INFO: 1,295-byte answer (the card's own "
                         "read time, ~0.3-1 s on real cards, set to 0 here)",
        "largest frame round trip, ms": _figure(largest),
        "largest frame wire floor, ms": _floor(READER_LINE, 10, 19, 10, 1295),
        "poll cycle (FIND), ms": _figure(find),
        "poll cycle wire floor, ms": _floor(READER_LINE, 10, 15),
    }


FAMILIES: dict[str, Callable[[int], Coroutine[Any, Any, dict[str, Any]]]] = {
    "printer": _printer,
    "LED screens": _screens,
    "vendor terminals": _vendor,
    "Modbus terminals": _modbus,
    "ID card reader": _reader,
}


def run(rounds: int = 5) -> dict[str, Any]:
    """The figures for ``onedoor bench``: one block per device family."""
    figures: dict[str, Any] = {}
    for family, measure in FAMILIES.items():
        for key, value in asyncio.run(measure(rounds)).items():
            figures[f"{family}: {key}"] = value
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    for key, value in run(args.rounds).items():
        print(f"| {key} | {value} |")


if __name__ == "__main__":
    main()

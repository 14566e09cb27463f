"""Printer driver against the virtual ESC/POS printer over a real pty."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from edge.devices.base import (
    DeviceInput,
    DeviceStatusChanged,
    HealthState,
    TicketPrint,
)
from edge.devices.printer import PrinterDriver, PrinterSettings
from edge.devices.ticket import TicketContent
from firmware_protocols.simulators.printer import VirtualPrinter
from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming
from tests.edge.devices.waiting import until

CONTENT = TicketContent(
    hall_name="中山市政务服务中心",
    service_name="户籍业务",
    ticket_number="A012",
    people_ahead=3,
    wait_p50_minutes=8,
    wait_p90_minutes=15,
    issued_at=datetime(2026, 11, 23, 9, 30, 5),
    qr_payload="https://q.example.cn/t/A012",
    footer_lines=("请留意叫号，过号请重新取号",),
)


@pytest.fixture
def printer() -> Iterator[VirtualPrinter]:
    with PtyLink(SerialTiming(115200)) as link, VirtualPrinter(link) as virtual:
        yield virtual


def settings(port: str, **overrides: float) -> PrinterSettings:
    values: dict[str, float] = {
        "poll_interval_s": 0.1,
        "reply_timeout_s": 0.2,
        "write_timeout_s": 1.0,
        "reopen_interval_s": 0.1,
    } | overrides
    return PrinterSettings(port, 115200, **values)  # type: ignore[arg-type]



def statuses(queue: asyncio.Queue[DeviceInput]) -> list[tuple[HealthState, str]]:
    out = []
    while not queue.empty():
        item = queue.get_nowait()
        assert isinstance(item, DeviceStatusChanged)
        out.append((item.health.state, item.health.detail))
    return out


def test_prints_a_chinese_ticket_the_printer_decodes(printer: VirtualPrinter) -> None:
    async def main() -> None:
        inputs: asyncio.Queue[DeviceInput] = asyncio.Queue()
        driver = PrinterDriver(settings(printer.port), inputs)
        task = asyncio.create_task(driver.run())
        await until(lambda: driver.health().state is HealthState.OK)
        assert await driver.print_ticket(TicketPrint(CONTENT))
        assert await driver.print_ticket(TicketPrint(CONTENT, large_print=True))
        task.cancel()
        assert driver.printed == 2

    asyncio.run(main())
    normal, large = printer.wait_for_tickets(2, timeout=3)
    lines = normal.text_lines
    assert "中山市政务服务中心" in lines
    assert "户籍业务" in lines
    assert "A012" in lines
    assert "您前面还有3人等候" in lines
    assert "预计等候约8分钟（最长约15分钟）" in lines
    assert "请留意叫号，过号请重新取号" in lines
    assert normal.qr_payloads == [b"https://q.example.cn/t/A012"]
    assert normal.line("A012").size.height == 4
    # 老人版: bigger number, concise wording.
    assert large.line("A012").size.height == 6
    assert "前面3人" in large.text_lines
    assert printer.garbage == 0


def test_paper_low_then_out_is_reported_and_refused(printer: VirtualPrinter) -> None:
    async def main() -> None:
        inputs: asyncio.Queue[DeviceInput] = asyncio.Queue()
        driver = PrinterDriver(settings(printer.port), inputs)
        task = asyncio.create_task(driver.run())
        await until(lambda: driver.health().state is HealthState.OK)
        printer.set_paper_low()
        await until(lambda: driver.health().state is HealthState.DEGRADED)
        assert await driver.print_ticket(TicketPrint(CONTENT))  # low still prints
        printer.run_out_of_paper()
        await until(lambda: driver.health().state is HealthState.OFFLINE)
        started = time.monotonic()
        assert not await driver.print_ticket(TicketPrint(CONTENT))
        # Refused from the known state: no status query, no reply timeout waited for.
        assert time.monotonic() - started < settings(printer.port).reply_timeout_s
        printer.load_paper()
        await until(lambda: driver.health().state is HealthState.OK)
        assert await driver.print_ticket(TicketPrint(CONTENT))
        task.cancel()
        assert statuses(inputs) == [
            (HealthState.OK, ""),
            (HealthState.DEGRADED, "纸将尽 paper low"),
            (HealthState.OFFLINE, "缺纸 paper out"),
            (HealthState.OK, ""),
        ]

    asyncio.run(main())
    # Nothing was held back to come out later: exactly the two accepted tickets printed.
    time.sleep(0.1)
    assert len(printer.tickets) == 2
    assert printer.held_events == 0


def test_paper_out_since_the_last_poll_sends_nothing(printer: VirtualPrinter) -> None:
    """The pre-print status check catches what the periodic poll has not seen yet."""

    async def main() -> None:
        driver = PrinterDriver(settings(printer.port, poll_interval_s=60), asyncio.Queue())
        task = asyncio.create_task(driver.run())
        await until(lambda: driver.health().state is HealthState.OK)
        printer.open_cover()
        received = printer.bytes_received
        assert not await driver.print_ticket(TicketPrint(CONTENT))
        assert driver.health().detail == "纸仓盖打开 cover open"
        task.cancel()
        assert printer.bytes_received - received == 9  # three DLE EOT n queries, no ticket

    asyncio.run(main())
    assert printer.held_events == 0


def test_a_switched_off_printer_is_offline_and_fails_fast(printer: VirtualPrinter) -> None:
    async def main() -> None:
        driver = PrinterDriver(settings(printer.port), asyncio.Queue())
        task = asyncio.create_task(driver.run())
        await until(lambda: driver.health().state is HealthState.OK)
        printer.power_off()
        await until(lambda: driver.health().state is HealthState.OFFLINE)
        assert driver.health().detail == "打印机无响应 no status reply"
        started = time.monotonic()
        assert not await driver.print_ticket(TicketPrint(CONTENT))
        assert time.monotonic() - started < settings(printer.port).reply_timeout_s
        printer.power_on()
        await until(lambda: driver.health().state is HealthState.OK)
        assert await driver.print_ticket(TicketPrint(CONTENT))
        task.cancel()

    asyncio.run(main())
    assert len(printer.wait_for_tickets(1)) == 1


def test_one_lost_status_answer_is_not_an_outage(printer: VirtualPrinter) -> None:
    """A loaded hall PC or a noisy cable loses one answer: asking again, no alarm flaps."""

    async def main() -> None:
        inputs: asyncio.Queue[DeviceInput] = asyncio.Queue()
        driver = PrinterDriver(settings(printer.port), inputs)
        task = asyncio.create_task(driver.run())
        await until(lambda: driver.health().state is HealthState.OK)
        statuses(inputs)
        polled = printer.status_queries
        printer.lose_replies(1)
        await until(lambda: printer.status_queries >= polled + 9)  # three polls later
        assert statuses(inputs) == []
        printer.lose_replies(2)  # the answer and the second asking's: that is an outage
        await until(lambda: driver.health().state is HealthState.OFFLINE)
        assert driver.health().detail == "打印机无响应 no status reply"
        await until(lambda: driver.health().state is HealthState.OK)  # the next poll answers
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_a_missing_port_is_offline_and_retried() -> None:
    async def main() -> None:
        inputs: asyncio.Queue[DeviceInput] = asyncio.Queue()
        driver = PrinterDriver(settings("/dev/onedoor-no-such-tty"), inputs)
        task = asyncio.create_task(driver.run())
        await until(lambda: "端口无法打开" in driver.health().detail)
        assert driver.health().state is HealthState.OFFLINE
        assert not await driver.print_ticket(TicketPrint(CONTENT))
        task.cancel()

    asyncio.run(main())


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="poll_interval_s must be > 0"):
        PrinterSettings("/dev/ttyUSB0", poll_interval_s=0)


def test_a_garbled_status_reply_is_reported_not_trusted() -> None:
    """Line noise instead of a DLE EOT answer (fixed bits wrong): offline, nothing printed."""
    with PtyLink() as link:
        stop = threading.Event()

        def noisy_printer() -> None:
            while not stop.is_set():
                if link.read(timeout=0.05):
                    link.write(b"\xff")  # bit 7 set: no DLE EOT reply looks like this

        thread = threading.Thread(target=noisy_printer, daemon=True)
        thread.start()

        async def main() -> None:
            driver = PrinterDriver(settings(link.port_name), asyncio.Queue())
            task = asyncio.create_task(driver.run())
            await until(lambda: "bad status reply" in driver.health().detail)
            assert driver.health().state is HealthState.OFFLINE
            assert not await driver.print_ticket(TicketPrint(CONTENT))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        try:
            asyncio.run(main())
        finally:
            stop.set()
            thread.join(2)

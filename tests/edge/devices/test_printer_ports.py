"""The ticket printer on each of its three transports, status path included.

USB: the Linux ``usblp`` device is a character device, not a tty. A pty stands in
for it (reads return what the printer sent, writes block once the printer takes
no more), and the driver opens it as it opens ``/dev/usb/lp0``: without termios.
Network: a real TCP server on the loopback interface serves the raw port. The
virtual printer behind either is the same one the serial tests use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from edge.devices.base import DeviceInput, DeviceTimeout, HealthState, TicketPrint
from edge.devices.printer import PrinterDriver, PrinterSettings
from edge.devices.printer_ports import TcpPrinterPort, UsbPrinterPort, printer_port
from edge.devices.serial_port import AsyncSerial, SerialPortError
from edge.devices.ticket import TicketContent
from firmware_protocols import escpos
from firmware_protocols.line import SerialTiming
from firmware_protocols.simulators.printer import VirtualPrinter
from firmware_protocols.simulators.serial_link import PtyLink
from firmware_protocols.simulators.tcp_link import TcpServerLink
from tests.edge.devices.waiting import until

CONTENT = TicketContent(
    hall_name="中山市政务服务中心",
    service_name="户籍业务",
    ticket_number="B007",
    people_ahead=2,
    wait_p50_minutes=5,
    wait_p90_minutes=9,
    issued_at=datetime(2026, 11, 23, 9, 30, 5),
    qr_payload="zs-city-hall/2026-11-23/B007",
)
FAST = {"poll_interval_s": 0.1, "reply_timeout_s": 0.2, "write_timeout_s": 0.5,
        "reopen_interval_s": 0.1}



def test_the_port_setting_names_the_transport() -> None:
    line = SerialTiming(9600)
    assert isinstance(printer_port("/dev/usb/lp0", line), UsbPrinterPort)
    network = printer_port("tcp://10.1.2.3", line)
    assert isinstance(network, TcpPrinterPort)
    assert network.name == "tcp://10.1.2.3:9100"
    assert printer_port("tcp://printer.local:9101", line).name == "tcp://printer.local:9101"
    serial_port = printer_port("/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0", line)
    assert isinstance(serial_port, AsyncSerial)
    assert serial_port.line == line
    with pytest.raises(ValueError, match="expected tcp://host"):
        printer_port("tcp:///nohost", line)


def scenario_prints_and_reports(driver: PrinterDriver, printer: VirtualPrinter) -> None:
    """The status path on this transport: ok, paper low, paper out, and a ticket each way."""

    async def main() -> None:
        task = asyncio.create_task(driver.run())
        await until(lambda: driver.health().state is HealthState.OK)
        assert await driver.print_ticket(TicketPrint(CONTENT))
        printer.set_paper_low()
        await until(lambda: driver.health().state is HealthState.DEGRADED)
        assert await driver.print_ticket(TicketPrint(CONTENT, large_print=True))
        printer.run_out_of_paper()
        await until(lambda: driver.health().detail == "缺纸 paper out")
        assert not await driver.print_ticket(TicketPrint(CONTENT))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    normal, large = printer.wait_for_tickets(2)
    assert normal.line("B007").size.height == 4
    assert large.line("B007").size.height == 6


@pytest.fixture
def usb_printer(tmp_path: Path) -> Iterator[tuple[VirtualPrinter, Path]]:
    """A USB printer at a stable device path (a symlink, as udev makes /dev/usb/lp0)."""
    with PtyLink() as link, VirtualPrinter(link) as printer:
        path = tmp_path / "lp0"
        path.symlink_to(link.port_name)
        yield printer, path


def test_usb_printer_prints_and_reports_its_status(
    usb_printer: tuple[VirtualPrinter, Path],
) -> None:
    printer, path = usb_printer
    inputs: asyncio.Queue[DeviceInput] = asyncio.Queue()
    driver = PrinterDriver(PrinterSettings(str(path), **FAST), inputs,  # type: ignore[arg-type]
                           port=UsbPrinterPort(str(path)))
    scenario_prints_and_reports(driver, printer)
    assert printer.link.host_line() is None  # usblp is no tty: nobody set a line up


def test_usb_writes_block_while_the_printer_takes_nothing(
    usb_printer: tuple[VirtualPrinter, Path],
) -> None:
    printer, path = usb_printer
    printer.jam()

    async def main() -> None:
        port = UsbPrinterPort(str(path))
        await port.open()
        try:
            with pytest.raises(DeviceTimeout, match="bytes unsent"):
                await port.write(b"x" * 200_000, 0.3)
        finally:
            port.close()

    asyncio.run(main())


def test_usb_printer_unplugged_then_plugged_back(tmp_path: Path) -> None:
    """A clear error while the device is gone, and printing again once it is back."""
    path = tmp_path / "lp0"
    first = PtyLink()
    printer = VirtualPrinter(first)
    printer.start()
    path.symlink_to(first.port_name)
    inputs: asyncio.Queue[DeviceInput] = asyncio.Queue()
    driver = PrinterDriver(PrinterSettings(str(path), **FAST), inputs,  # type: ignore[arg-type]
                           port=UsbPrinterPort(str(path)))

    async def main() -> None:
        nonlocal printer
        task = asyncio.create_task(driver.run())
        await until(lambda: driver.health().state is HealthState.OK)
        printer.stop()
        first.close()  # unplugged: the device file goes away with it
        path.unlink()
        await until(lambda: driver.health().state is HealthState.OFFLINE)
        assert driver.health().detail.startswith(("端口断开", "端口无法打开"))
        assert not await driver.print_ticket(TicketPrint(CONTENT))
        second = PtyLink()  # plugged back: udev makes the same name again
        printer = VirtualPrinter(second)
        printer.start()
        path.symlink_to(second.port_name)
        await until(lambda: driver.health().state is HealthState.OK)
        assert await driver.print_ticket(TicketPrint(CONTENT))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        printer.wait_for_tickets(1)
        printer.stop()
        second.close()

    asyncio.run(main())


@pytest.fixture
def network_printer() -> Iterator[tuple[VirtualPrinter, TcpServerLink]]:
    with TcpServerLink() as link, VirtualPrinter(link) as printer:
        yield printer, link


def test_network_printer_prints_and_reports_its_status(
    network_printer: tuple[VirtualPrinter, TcpServerLink],
) -> None:
    printer, link = network_printer
    driver = PrinterDriver(PrinterSettings(link.port_name, **FAST),  # type: ignore[arg-type]
                           asyncio.Queue())
    assert isinstance(driver.port, TcpPrinterPort)
    scenario_prints_and_reports(driver, printer)


def test_network_printer_restarting_is_reconnected(
    network_printer: tuple[VirtualPrinter, TcpServerLink],
) -> None:
    printer, link = network_printer
    driver = PrinterDriver(PrinterSettings(link.port_name, **FAST),  # type: ignore[arg-type]
                           asyncio.Queue())

    async def main() -> None:
        task = asyncio.create_task(driver.run())
        await until(lambda: driver.health().state is HealthState.OK)
        link.drop_client()  # the printer restarts: our connection is gone
        await until(lambda: link.connections >= 2)  # ... and made again
        await until(lambda: driver.health().state is HealthState.OK)
        assert await driver.print_ticket(TicketPrint(CONTENT))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert len(printer.wait_for_tickets(1)) == 1


def test_nothing_listening_is_a_clear_error() -> None:
    with TcpServerLink() as link:
        name = link.port_name
    driver = PrinterDriver(PrinterSettings(name, **FAST), asyncio.Queue())  # type: ignore[arg-type]

    async def main() -> None:
        task = asyncio.create_task(driver.run())
        await until(lambda: "cannot connect to" in driver.health().detail)
        assert driver.health().state is HealthState.OFFLINE
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("port", "line"),
    [("usb", None), ("tcp", None), ("serial", SerialTiming(9600))],
)
def test_printer_identity_over_each_transport(port: str, line: SerialTiming | None) -> None:
    """GS I: the model name comes back on every transport (onedoor edge probe asks it)."""
    from edge.devices.serial_port import exchange

    async def ask(link_port: UsbPrinterPort | TcpPrinterPort | AsyncSerial) -> str:
        await link_port.open()
        try:
            reply = await exchange(
                link_port, escpos.encode(escpos.PrinterIdQuery(escpos.PrinterInfo.MODEL)),
                escpos.PrinterIdDecoder(), reply_bytes=escpos.MAX_PRINTER_ID + 2, timeout=0.5,
            )
        finally:
            link_port.close()
        assert isinstance(reply, escpos.PrinterId)
        return reply.text

    if port == "tcp":
        with TcpServerLink() as tcp, VirtualPrinter(tcp, model="TM-T88V"):
            host, number = tcp.host, tcp.port
            assert asyncio.run(ask(TcpPrinterPort(host, number))) == "TM-T88V"
        return
    with PtyLink(line) as pty, VirtualPrinter(pty, model="TM-T88V"):
        link_port = (UsbPrinterPort(pty.port_name) if line is None
                     else AsyncSerial(pty.port_name, line))
        assert asyncio.run(ask(link_port)) == "TM-T88V"


def test_a_missing_usb_printer_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SerialPortError, match="does not exist \\(USB printer unplugged\\?\\)"):
        asyncio.run(UsbPrinterPort(str(tmp_path / "lp0")).open())

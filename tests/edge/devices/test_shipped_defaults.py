"""Every device family at the settings a site gets when its config names only the port,
against line-timed simulators, with the largest frames the schemas allow.

The drivers are built the way the daemon builds them (``edge.config`` then
``edge.devices_factory``); the simulators take the honest time of every byte at
the family's default line settings: printer 9600 8N1, LED bus 9600 8N1 (half
duplex: an answer and a retry that overlap both garble), vendor terminals 9600
8N1, Modbus terminals 19200 8E1, the ID card reader 115200 8N1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest

from edge.config import parse_config
from edge.devices.base import (
    DeviceInput,
    DeviceStatusChanged,
    HallCounts,
    HealthState,
    IdCardRead,
    KeyPress,
    TicketPrint,
    WindowKey,
)
from edge.devices.id_card import IdCardReaderDriver
from edge.devices.printer import PrinterDriver
from edge.devices.screens import ScreenDriver
from edge.devices.terminals import TerminalDriver
from edge.devices.ticket import TicketContent, ticket_bytes
from edge.devices_factory import build_devices
from firmware_protocols import id_card, led
from firmware_protocols import modbus_terminal as mt
from firmware_protocols import vendor_frame as vf
from firmware_protocols.id_card import Gender, IdCardText
from firmware_protocols.line import SerialTiming
from firmware_protocols.mqtt_messages import Text
from firmware_protocols.simulators.id_card_reader import VirtualIdCardReader
from firmware_protocols.simulators.led_screens import ScreenLayout, VirtualLedScreens
from firmware_protocols.simulators.modbus_bank import ModbusTerminalBank
from firmware_protocols.simulators.printer import VirtualPrinter
from firmware_protocols.simulators.serial_link import PtyLink
from firmware_protocols.simulators.vendor_bank import VendorTerminalBank
from firmware_protocols.terminal_events import Key
from tests.edge.devices.waiting import until

SITE = """
version = "v1"
[site]
id = "zs-test-01"
name = "中山市三乡镇政务服务中心"
town = "三乡镇"
[hours]
open = "00:00"
close = "24:00"
reset = "03:00"
[[services]]
id = "shebao"
prefix = "A"
name_zh = "社保医保"
sla_minutes = 30
overtime_minutes = 20
[paths]
journal = "journal.db"
"""


def windows(*, screens: bool = False, terminals: bool = False) -> str:
    """Two windows, with an LED bar (addresses 1, 2) and a terminal (11, 12) if asked."""
    return "".join(
        f"[[windows]]\nnumber = {n}\nservices = {{ shebao = 1 }}\n"
        + (f"screen = {n}\n" if screens else "")
        + (f"terminal = {10 + n}\n" if terminals else "")
        for n in (1, 2)
    )

TEXT_MAX = 200  # firmware_protocols.mqtt_messages.Text: the longest notice a command carries
HALL = 100


def test_the_notice_schema_still_allows_200_characters() -> None:
    """The frames below are the largest because of this bound."""
    assert Text.__metadata__[0].max_length == TEXT_MAX  # type: ignore[attr-defined]


def build(tmp_path: Path, section: str) -> tuple[object, asyncio.Queue[DeviceInput]]:
    """The one driver ``section`` configures, built as the daemon builds it."""
    attached = windows(screens="[devices.screens]" in section,
                       terminals="[devices.terminals]" in section)
    config = parse_config(SITE + attached + section, base_dir=tmp_path)
    inputs: asyncio.Queue[DeviceInput] = asyncio.Queue()
    devices = build_devices(config, inputs)
    [(_, device)] = devices.named()
    return device, inputs



async def until_press(inputs: asyncio.Queue[DeviceInput], seen: list[DeviceInput]) -> KeyPress:
    """Take inputs (kept in ``seen``) until a key press comes."""
    while True:
        item = await asyncio.wait_for(inputs.get(), 10)
        seen.append(item)
        if isinstance(item, KeyPress):
            return item


def healths(seen: list[DeviceInput]) -> list[HealthState]:
    return [item.health.state for item in seen if isinstance(item, DeviceStatusChanged)]


def changes(inputs: asyncio.Queue[DeviceInput]) -> list[tuple[HealthState, str]]:
    out = []
    while not inputs.empty():
        item = inputs.get_nowait()
        if isinstance(item, DeviceStatusChanged):
            out.append((item.health.state, item.health.detail))
    return out


# --- printer: 9600 8N1 ---------------------------------------------------------------------------
LARGEST_TICKET = TicketContent(
    hall_name="中山市三乡镇政务服务中心",
    service_name="社会保险和医疗保险业务",
    ticket_number="A0999",
    people_ahead=999,
    wait_p50_minutes=240,
    wait_p90_minutes=480,
    issued_at=datetime(2026, 11, 23, 16, 59, 59),
    qr_payload="zs-sanxiang-01/2026-11-23/A0999",
    footer_lines=("请留意叫号，过号请重新取号",),
)


@pytest.fixture
def printer() -> Iterator[VirtualPrinter]:
    with PtyLink(SerialTiming(9600)) as link, VirtualPrinter(link) as virtual:
        yield virtual


def test_printer_four_tickets_back_to_back_with_paper_low(
    tmp_path: Path, printer: VirtualPrinter
) -> None:
    """Each ticket is ~0.37 s on the wire. Asked right after write() returned, the status
    query timed out, and the late one-byte answers were then read as the answers to the
    next queries: tickets 2-4 refused and health flapping degraded -> ok -> offline."""
    wire = SerialTiming(9600).transmit_seconds(len(ticket_bytes(LARGEST_TICKET)))
    assert wire > 0.3  # longer than the shipped reply timeout on its own
    printer.set_paper_low()
    driver, inputs = build(tmp_path, f'[devices.printer]\nport = "{printer.port}"\n')
    assert isinstance(driver, PrinterDriver)

    async def main() -> list[bool]:
        task = asyncio.create_task(driver.run())
        await until(lambda: driver.health().state is HealthState.DEGRADED)
        results = await asyncio.gather(
            *(driver.print_ticket(TicketPrint(LARGEST_TICKET)) for _ in range(4))
        )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return results

    assert asyncio.run(main()) == [True, True, True, True]
    assert changes(inputs) == [(HealthState.DEGRADED, "纸将尽 paper low")]  # and nothing else
    tickets = printer.wait_for_tickets(4, timeout=5)
    assert [t.line("A0999").text for t in tickets] == ["A0999"] * 4
    assert printer.garbage == 0


# --- LED bus: 9600 8N1, half duplex ------------------------------------------------------------
@pytest.fixture
def screens() -> Iterator[VirtualLedScreens]:
    layouts = {1: ScreenLayout(), 2: ScreenLayout(), HALL: ScreenLayout(lines=5, columns=24)}
    with (
        PtyLink(SerialTiming(9600), half_duplex=True) as link,
        VirtualLedScreens(link, layouts) as virtual,
    ):
        yield virtual


def test_led_hall_screen_takes_the_largest_notice_without_going_silent(
    tmp_path: Path, screens: VirtualLedScreens
) -> None:
    """A schema-maximum notice and a help notice: a ~430-byte frame, ~450 ms on the wire,
    longer than the 3 x 150 ms the driver used to wait: the screen showed it, yet was marked
    silent ('屏幕无应答'), and on RS485 the retries collided with its ACK."""
    notice = "系统维护——暂停取号·" + "请" * (TEXT_MAX - 10)
    help_notice = "呼叫帮办 自助服务区A"
    frame = led.encode(led.ShowText(HALL, 1, notice + "　　" + help_notice, 0, 4))
    assert SerialTiming(9600).transmit_seconds(len(frame)) > 3 * 0.150
    driver, inputs = build(
        tmp_path, f'[devices.screens]\nport = "{screens.port}"\nhall = {HALL}\n'
    )
    assert isinstance(driver, ScreenDriver)

    async def main() -> None:
        task = asyncio.create_task(driver.run())
        await until(lambda: driver.health().state is HealthState.OK)
        driver.show_window(1, "请A0999号到1号窗口")
        driver.show_hall(["请A0999号到1号窗口"], HallCounts(999, 998), [notice, help_notice])
        await until(lambda: screens.text(HALL, line=4) == f"{notice}　　{help_notice}")
        await until(lambda: driver.shown(1) == "请A0999号到1号窗口")
        await asyncio.sleep(0.3)  # any late retry or silence would show by now
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert changes(inputs) == [(HealthState.OK, "")]
    assert screens.text(HALL, line=0) == "请A0999号到1号窗口"
    assert screens.link.collisions == 0


# --- window terminals --------------------------------------------------------------------------
def test_vendor_terminal_takes_80_hanzi_of_led_text_at_9600(tmp_path: Path) -> None:
    """80 hanzi are 170 bytes on the wire (177 ms at 9600 8N1): under the fixed 0.1 s timeout
    the terminal applied the text yet the driver saw NoAnswer."""
    text = "请" * (vf.MAX_DATA // 2)
    with (
        PtyLink() as link,
        VendorTerminalBank(link, [11, 12], timing=SerialTiming(vf.BAUD, vf.PARITY)) as bank,
    ):
        driver, inputs = build(
            tmp_path, f'[devices.terminals]\nkind = "vendor"\nport = "{link.port_name}"\n'
        )
        assert isinstance(driver, TerminalDriver)

        async def main() -> list[DeviceInput]:
            task = asyncio.create_task(driver.run())
            await until(lambda: driver.health().state is HealthState.OK)
            driver.set_window_text(1, text)
            await until(lambda: driver.window_text_shown(1) == text)
            bank.press(12, Key.NEXT)
            seen: list[DeviceInput] = []
            assert await until_press(inputs, seen) == KeyPress(2, WindowKey.NEXT)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return seen

        seen = asyncio.run(main())
        assert bank.led_text(11) == text
    assert set(healths(seen)) <= {HealthState.OK}  # never a terminal found silent


def test_modbus_terminal_at_19200_8e1_takes_a_full_led_block(tmp_path: Path) -> None:
    """The shipped 50 ms reply timeout, a 75-byte FC16 of the whole LED block (43 ms at
    19200 8E1) and its answer: the wait counts the wire, not only the terminal."""
    text = "请" * (mt.LED_TEXT_MAX_BYTES // 2)
    with (
        PtyLink() as link,
        ModbusTerminalBank(
            link, [11, 12], timing=SerialTiming(mt.DEFAULT_BAUD, mt.DEFAULT_PARITY)
        ) as bank,
    ):

        async def main() -> list[DeviceInput]:
            driver, inputs = build(tmp_path, f'[devices.terminals]\nport = "{link.port_name}"\n')
            assert isinstance(driver, TerminalDriver)  # built in the loop, as the daemon does
            task = asyncio.create_task(driver.run())
            await until(lambda: driver.health().state is HealthState.OK)
            driver.set_window_text(2, text)
            await until(lambda: driver.window_text_shown(2) == text)
            bank.press(11, Key.NEXT)
            seen: list[DeviceInput] = []
            assert await until_press(inputs, seen) == KeyPress(1, WindowKey.NEXT)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return seen

        seen = asyncio.run(main())
        assert bank.led_text(12) == text
    assert set(healths(seen)) <= {HealthState.OK}


# --- ID card reader: 115200 8N1 ----------------------------------------------------------------
def test_id_card_reader_reads_a_card_at_its_defaults(tmp_path: Path) -> None:
    """The base-information answer is the largest frame: 1,295 bytes, 112 ms on the wire,
    after the card's own work (0.3 s here)."""
    card = IdCardText("欧阳明", Gender.MALE, "01", date(1990, 7, 4), "广东省中山市石岐区" * 3,
                      "442000199007044511", "中山市公安局", date(2019, 1, 2), date(2039, 1, 2))
    with (
        PtyLink(SerialTiming(id_card.BAUD)) as link,
        VirtualIdCardReader(link, read_seconds=0.3) as reader,
    ):
        reader.place_card(card)

        async def main() -> list[DeviceInput]:
            driver, inputs = build(
                tmp_path, f'[devices.id_card]\nport = "{link.port_name}"\nservice = "shebao"\n'
            )
            assert isinstance(driver, IdCardReaderDriver)
            task = asyncio.create_task(driver.run())
            seen: list[DeviceInput] = []
            while not any(isinstance(item, IdCardRead) for item in seen):
                seen.append(await asyncio.wait_for(inputs.get(), 10))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return seen

        seen = asyncio.run(main())
    assert [item.card for item in seen if isinstance(item, IdCardRead)] == [card]
    assert healths(seen) == [HealthState.OK]

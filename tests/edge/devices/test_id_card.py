"""The ID card reader driver against the virtual reader (its SAM) over a real pty at 115200."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
import structlog

from edge.devices.base import DeviceStatusChanged, HealthState, IdCardRead
from edge.devices.id_card import IdCardReaderDriver, IdCardSettings
from firmware_protocols.id_card import Command, Gender, IdCardText
from firmware_protocols.line import SerialTiming
from firmware_protocols.simulators.id_card_reader import VirtualIdCardReader
from firmware_protocols.simulators.serial_link import PtyLink
from tests.edge.devices.waiting import RecordingInputs, until

ELDER = IdCardText("张秀兰", Gender.FEMALE, "01", date(1958, 3, 15), "广东省中山市三乡镇",
                   "442000195803151248", "中山市公安局", date(2016, 5, 20), None)
YOUNG = IdCardText("欧阳明", Gender.MALE, "01", date(1990, 7, 4), "广东省中山市石岐区",
                   "442000199007044511", "中山市公安局", date(2019, 1, 2), date(2039, 1, 2))
FAST = {"poll_interval_s": 0.05, "reply_timeout_s": 0.15, "read_timeout_s": 0.5,
        "reopen_interval_s": 0.1}
LINE = SerialTiming(115200)



class Inputs(RecordingInputs):
    def cards(self) -> list[IdCardText]:
        return [item.card for item in self.received if isinstance(item, IdCardRead)]

    def healths(self) -> list[HealthState]:
        return [i.health.state for i in self.received if isinstance(i, DeviceStatusChanged)]


@pytest.fixture
def reader() -> Iterator[VirtualIdCardReader]:
    with PtyLink(LINE) as link, VirtualIdCardReader(link, read_seconds=0.05) as virtual:
        yield virtual


def run(port: str, scenario: Callable[[IdCardReaderDriver, Inputs], object]) -> Inputs:
    inputs = Inputs()

    async def main() -> None:
        driver = IdCardReaderDriver(IdCardSettings(port, **FAST), inputs)  # type: ignore[arg-type]
        task = asyncio.create_task(driver.run())
        try:
            await until(lambda: driver.health().state is HealthState.OK)
            result = scenario(driver, inputs)
            assert asyncio.iscoroutine(result)
            await result
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    return inputs


def test_a_card_is_read_once_while_it_stays_and_again_when_put_back(
    reader: VirtualIdCardReader,
) -> None:
    async def scenario(driver: IdCardReaderDriver, inputs: Inputs) -> None:
        reader.place_card(ELDER)
        await until(lambda: len(inputs.cards()) == 1)
        finds = reader.count(Command.FIND_CARD)
        await until(lambda: reader.count(Command.FIND_CARD) >= finds + 5)  # it stays there
        assert len(inputs.cards()) == 1
        reader.remove_card()
        await until(lambda: reader.count(Command.FIND_CARD) >= finds + 8)
        reader.place_card(YOUNG)
        await until(lambda: len(inputs.cards()) == 2)

    inputs = run(reader.port, scenario)
    assert inputs.cards() == [ELDER, YOUNG]
    assert reader.count(Command.READ_BASE_INFO) == 2
    assert inputs.healths() == [HealthState.OK]


def test_no_card_no_input(reader: VirtualIdCardReader) -> None:
    async def scenario(driver: IdCardReaderDriver, inputs: Inputs) -> None:
        await until(lambda: reader.count(Command.FIND_CARD) >= 5)

    inputs = run(reader.port, scenario)
    assert inputs.cards() == []
    assert reader.count(Command.SELECT_CARD) == 0


def test_a_card_pulled_away_during_the_read_gives_nothing_then_reads_again(
    reader: VirtualIdCardReader,
) -> None:
    async def scenario(driver: IdCardReaderDriver, inputs: Inputs) -> None:
        reader.leave_during_next_read()
        reader.place_card(ELDER)
        await until(lambda: driver.failed_reads == 1)
        assert not reader.card_present
        await asyncio.sleep(0.2)
        assert inputs.cards() == []
        reader.place_card(ELDER)  # the citizen tries again
        await until(lambda: len(inputs.cards()) == 1)

    inputs = run(reader.port, scenario)
    assert inputs.cards() == [ELDER]
    assert HealthState.OFFLINE not in inputs.healths()


@pytest.mark.parametrize("damage", ["corrupt", "cut"])
def test_a_garbled_or_cut_answer_is_dropped_and_the_card_read_again(
    reader: VirtualIdCardReader, damage: str
) -> None:
    async def scenario(driver: IdCardReaderDriver, inputs: Inputs) -> None:
        if damage == "corrupt":
            reader.corrupt_next_answer(to=Command.READ_BASE_INFO)
        else:
            reader.cut_next_answer(to=Command.READ_BASE_INFO)
        reader.place_card(YOUNG)
        await until(lambda: len(inputs.cards()) == 1)
        assert driver.failed_reads == 1  # the damaged answer was not taken
        assert reader.count(Command.READ_BASE_INFO) == 2

    inputs = run(reader.port, scenario)
    assert inputs.cards() == [YOUNG]


def test_a_silent_reader_is_offline(tmp_path: Path) -> None:
    with PtyLink(LINE) as link:  # the port is there, nothing answers
        inputs = Inputs()

        async def main() -> None:
            driver = IdCardReaderDriver(IdCardSettings(link.port_name, **FAST), inputs)  # type: ignore[arg-type]
            task = asyncio.create_task(driver.run())
            await until(lambda: driver.health().detail == "读卡器无响应 no answer")
            assert driver.health().state is HealthState.OFFLINE
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        asyncio.run(main())


def test_the_reader_unplugged_then_plugged_back(tmp_path: Path) -> None:
    """At a stable /dev/serial/by-id name (a symlink here, as udev makes): a clear error while
    it is gone, and reading again once it is back."""
    by_id = tmp_path / "usb-1a86_USB_Serial-if00-port0"
    first = PtyLink(LINE)
    reader = VirtualIdCardReader(first, read_seconds=0.05)
    reader.start()
    by_id.symlink_to(first.port_name)
    inputs = Inputs()

    async def main() -> None:
        nonlocal reader
        driver = IdCardReaderDriver(IdCardSettings(str(by_id), **FAST), inputs)  # type: ignore[arg-type]
        task = asyncio.create_task(driver.run())
        await until(lambda: driver.health().state is HealthState.OK)
        reader.stop()
        first.close()
        by_id.unlink()
        await until(lambda: driver.health().state is HealthState.OFFLINE)
        assert "串口" in driver.health().detail
        second = PtyLink(LINE)
        reader = VirtualIdCardReader(second, read_seconds=0.05)
        reader.start()
        by_id.symlink_to(second.port_name)
        await until(lambda: driver.health().state is HealthState.OK)
        reader.place_card(ELDER)
        await until(lambda: len(inputs.cards()) == 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        reader.stop()
        second.close()

    asyncio.run(main())
    assert inputs.cards() == [ELDER]


def test_nothing_personal_reaches_the_log(reader: VirtualIdCardReader) -> None:
    async def scenario(driver: IdCardReaderDriver, inputs: Inputs) -> None:
        reader.place_card(ELDER)
        await until(lambda: len(inputs.cards()) == 1)

    with structlog.testing.capture_logs() as logs:
        run(reader.port, scenario)
    text = repr(logs)
    assert "id_card.read" in text
    assert ELDER.id_number not in text
    assert ELDER.name not in text

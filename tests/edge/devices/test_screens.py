"""LED screen driver against the virtual LED screens over a real pty."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from edge.devices.base import (
    DeviceConfigError,
    DeviceInput,
    DeviceStatusChanged,
    HallCounts,
    HealthState,
)
from edge.devices.screens import HallScreen, ScreenDriver, ScreenSettings, counts_line, hall_lines
from firmware_protocols.errors import LocalProtocolError
from firmware_protocols.led import Colour, Effect, ShowText
from firmware_protocols.simulators.led_screens import ScreenLayout, VirtualLedScreens
from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming
from tests.edge.devices.waiting import until

HALL = 0x10
WINDOW_BARS = {1: 0x01, 2: 0x02, 3: 0x03}


@pytest.fixture
def screens() -> Iterator[VirtualLedScreens]:
    layouts = {address: ScreenLayout() for address in WINDOW_BARS.values()}
    layouts[HALL] = ScreenLayout(lines=5, columns=24)
    with PtyLink(SerialTiming(19200)) as link, VirtualLedScreens(link, layouts) as virtual:
        yield virtual


def settings(port: str, **overrides: float) -> ScreenSettings:
    return ScreenSettings(
        port,
        WINDOW_BARS,
        (HallScreen(HALL, call_lines=3),),
        baudrate=19200,
        ack_timeout_s=overrides.get("ack_timeout_s", 0.1),
        retries=1,
        ping_interval_s=overrides.get("ping_interval_s", 30.0),
        silent_retry_s=overrides.get("silent_retry_s", 0.2),
        reopen_interval_s=0.1,
    )



def test_hall_layout_is_calls_then_counts_then_notices() -> None:
    hall = HallScreen(HALL, call_lines=3)
    lines = hall_lines(
        hall,
        ["请A012号到3号窗口", "请B003号到1号窗口"],
        HallCounts(128, 125),
        ["今日16:30停止取号"],
    )
    assert [line.text for line in lines] == [
        "请A012号到3号窗口",
        "请B003号到1号窗口",
        "",
        "当天办件量 128件  办结率 97.7%",
        "今日16:30停止取号",
    ]
    assert lines[3].colour is Colour.GREEN
    assert lines[4].effect is Effect.SCROLL_LEFT
    # 16 cells wide: "请A012号到3号窗口" (11 cells) and the counts (15 cells) stand still;
    # on a 12-cell screen the counts scroll.
    assert lines[0].effect is Effect.STATIC
    assert lines[3].effect is Effect.STATIC
    narrow = hall_lines(HallScreen(HALL, columns=12), [], HallCounts(128, 125), [])
    assert narrow[3].effect is Effect.SCROLL_LEFT
    assert counts_line(HallCounts(0, 0)) == "当天办件量 0件  办结率 --"


def test_window_bars_and_hall_screen_show_the_right_text(screens: VirtualLedScreens) -> None:
    async def main() -> None:
        inputs: asyncio.Queue[DeviceInput] = asyncio.Queue()
        driver = ScreenDriver(settings(screens.port), inputs)
        task = asyncio.create_task(driver.run())
        driver.show_window(3, "A012")
        driver.show_window(1, "B003")
        driver.show_hall(
            ["请A012号到3号窗口", "请B003号到1号窗口"],
            HallCounts(128, 125),
            ["今日16:30停止取号", "请保管好随身物品"],
        )
        await until(lambda: screens.text(HALL, line=4) != "")
        assert screens.text(0x03) == "A012"
        assert screens.text(0x01) == "B003"
        assert screens.text(0x02) == ""
        assert screens.text(HALL, line=0) == "请A012号到3号窗口"
        assert screens.text(HALL, line=1) == "请B003号到1号窗口"
        assert screens.text(HALL, line=3) == "当天办件量 128件  办结率 97.7%"
        assert screens.text(HALL, line=4) == "今日16:30停止取号　　请保管好随身物品"
        assert screens.screen(HALL).shown[0, 4].effect is Effect.SCROLL_LEFT
        assert driver.shown(3) == "A012"
        await until(lambda: driver.health().state is HealthState.OK)
        task.cancel()

    asyncio.run(main())
    assert screens.stats.nacks_sent == 0


def test_only_the_latest_wish_is_sent_and_unchanged_lines_are_not(
    screens: VirtualLedScreens,
) -> None:
    async def main() -> None:
        driver = ScreenDriver(settings(screens.port), asyncio.Queue())
        texts: list[tuple[int, int, str]] = []
        driver.on_frame_written = lambda frame: (
            texts.append((frame.address, frame.line, frame.text))
            if isinstance(frame, ShowText)
            else None
        )
        for n in range(1, 21):  # twenty calls at window 2 before the bus task even starts
            driver.show_window(2, f"A{n:03d}")
        task = asyncio.create_task(driver.run())
        await until(lambda: screens.text(0x02) == "A020")
        assert texts == [(0x02, 0, "A020")]  # A001..A019 were superseded before they went out
        driver.show_hall(["请A020号到2号窗口"], HallCounts(5, 5))
        await until(lambda: len(texts) == 1 + 5)
        await until(lambda: screens.screen(HALL).frames == 5)
        assert screens.text(HALL, line=3) == "当天办件量 5件  办结率 100.0%"
        driver.show_hall(["请A021号到2号窗口", "请A020号到2号窗口"], HallCounts(5, 5))
        await until(lambda: screens.text(HALL, line=1) == "请A020号到2号窗口")
        await asyncio.sleep(0.05)
        task.cancel()
        assert texts[6:] == [  # only the two changed lines
            (HALL, 0, "请A021号到2号窗口"),
            (HALL, 1, "请A020号到2号窗口"),
        ]

    asyncio.run(main())


def test_a_silent_screen_is_reported_and_refilled_when_back(screens: VirtualLedScreens) -> None:
    async def main() -> None:
        inputs: asyncio.Queue[DeviceInput] = asyncio.Queue()
        driver = ScreenDriver(settings(screens.port), inputs)
        task = asyncio.create_task(driver.run())
        driver.show_window(1, "A001")
        await until(lambda: driver.health().state is HealthState.OK)
        screens.set_dead(0x02)
        driver.show_window(2, "A002")
        driver.show_window(3, "A003")
        await until(lambda: driver.health().state is HealthState.DEGRADED)
        assert "窗口2(0x02)" in driver.health().detail
        # The silent bar does not hold up the others.
        await until(lambda: screens.text(0x03) == "A003")
        screens.set_dead(0x02, dead=False)
        await until(lambda: screens.text(0x02) == "A002")
        await until(lambda: driver.health().state is HealthState.OK)
        task.cancel()
        changes = []
        while not inputs.empty():
            item = inputs.get_nowait()
            assert isinstance(item, DeviceStatusChanged)
            changes.append(item.health.state)
        assert changes == [HealthState.OK, HealthState.DEGRADED, HealthState.OK]

    asyncio.run(main())


def test_a_quiet_dead_screen_is_found_by_pings(screens: VirtualLedScreens) -> None:
    async def main() -> None:
        driver = ScreenDriver(settings(screens.port, ping_interval_s=0.1), asyncio.Queue())
        task = asyncio.create_task(driver.run())
        await until(lambda: screens.screen(HALL).pings >= 1)
        screens.set_dead(HALL)
        await until(lambda: driver.health().state is HealthState.DEGRADED)
        assert "大厅(0x10)" in driver.health().detail
        for address in [*WINDOW_BARS.values(), HALL]:
            screens.set_dead(address)
        await until(lambda: driver.health().state is HealthState.OFFLINE, timeout=5)
        task.cancel()

    asyncio.run(main())


def test_a_line_the_screen_lacks_is_refused_once_and_reported(
    screens: VirtualLedScreens,
) -> None:
    """A configuration mismatch: the hall screen has 5 lines, the config asks for 6."""

    async def main() -> None:
        s = settings(screens.port)
        s = ScreenSettings(s.port, s.window_screens, (HallScreen(HALL, call_lines=4),), 19200)
        driver = ScreenDriver(s, asyncio.Queue())
        task = asyncio.create_task(driver.run())
        driver.show_hall(["请A001号到1号窗口"], HallCounts(1, 1), ["通知"])
        await until(lambda: driver.health().state is HealthState.DEGRADED)
        assert "大厅(0x10) 拒绝 BAD_PARAMETER" in driver.health().detail
        await asyncio.sleep(0.1)
        task.cancel()
        assert screens.text(HALL) == "请A001号到1号窗口"

    asyncio.run(main())
    assert screens.stats.nacks_sent == 1  # not resent forever


def test_bad_text_and_unknown_window_are_refused_at_once(screens: VirtualLedScreens) -> None:
    async def main() -> None:
        driver = ScreenDriver(settings(screens.port), asyncio.Queue())
        with pytest.raises(LocalProtocolError, match="not in GB2312"):
            driver.show_window(1, "A012 😀")
        with pytest.raises(DeviceConfigError, match="window 9 has no LED bar"):
            driver.show_window(9, "A012")
        with pytest.raises(LocalProtocolError, match="control character"):
            driver.show_hall(["第一行\n第二行"], HallCounts(0, 0))

    asyncio.run(main())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_screens": {1: 0}}, "address must be 1..254"),
        ({"window_screens": {1: 5, 2: 5}}, "share an address"),
        ({"window_screens": {}}, "no screens"),
        ({"window_screens": {1: 1}, "retries": -1}, "retries"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DeviceConfigError, match=message):
        ScreenSettings("/dev/ttyUSB1", **kwargs)  # type: ignore[arg-type]


def test_a_vanished_port_is_reported_and_reopened_later() -> None:
    """The USB adapter is pulled: the port errors, the driver goes offline and keeps trying."""
    link = PtyLink(SerialTiming(19200))
    virtual = VirtualLedScreens(link, [*WINDOW_BARS.values(), HALL])
    virtual.start()

    async def main() -> None:
        driver = ScreenDriver(settings(link.port_name, ping_interval_s=0.05), asyncio.Queue())
        task = asyncio.create_task(driver.run())
        await until(lambda: driver.health().state is HealthState.OK)
        virtual.stop()
        link.close()  # both ends gone, as when the adapter disappears
        await until(lambda: driver.health().state is HealthState.OFFLINE)
        assert driver.health().detail.startswith("串口断开")  # port gone, not screens silent
        # Reopening is retried every reopen_interval_s and fails while the port is gone.
        await until(lambda: driver.health().detail.startswith("串口无法打开"))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        virtual.stop()
        link.close()


def test_a_notice_the_font_lacks_never_stops_the_calls(screens: VirtualLedScreens) -> None:
    """One bad notice used to make show_hall raise, so the call lines and the counts froze
    for as long as it was active. It is left out; everything else goes up."""

    async def main() -> None:
        driver = ScreenDriver(settings(screens.port), asyncio.Queue())
        task = asyncio.create_task(driver.run())
        driver.show_hall(
            ["请A001号到1号窗口"], HallCounts(3, 2), ["停电通知😀", "系统维护——暂停取号"]
        )
        await until(lambda: screens.text(HALL, line=4) == "系统维护——暂停取号")
        assert screens.text(HALL, line=0) == "请A001号到1号窗口"
        assert screens.text(HALL, line=3) == "当天办件量 3件  办结率 66.7%"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_notices_beyond_one_frame_are_left_out_not_refused() -> None:
    many = [f"通知{n}：" + "请" * 190 for n in range(5)]  # ~390 bytes each
    lines = hall_lines(HallScreen(HALL), [], HallCounts(0, 0), many)
    assert lines[4].text == "　　".join(many[:2])  # what fits one SHOW_TEXT frame
    ShowText(HALL, 0, lines[4].text, 0, 4)  # and it encodes

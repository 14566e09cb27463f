"""Opening hours: no ticket before ``open`` or from ``last_ticket`` (停止取号) on, while the
windows keep serving the tickets already waiting."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from gpiozero.pins.mock import MockFactory

from edge.clock import ManualClock
from edge.config import EdgeConfig, load_config
from edge.daemon import EdgeDaemon
from edge.device_set import Drivers
from edge.devices.base import InputQueue
from edge.devices_factory import build_devices
from edge.errors import CommandRejected, ConfigInvalid
from edge.hall import open_hall
from edge.simhall import HALL_SCREEN, PRIORITY_BUTTON_PIN, TICKET_BUTTON_PIN, simulated_hall
from fastpath.types import TicketClass
from firmware_protocols.terminal_events import Key
from onedoor.cli import main
from tests.edge.sites import BASE_SERVICES, free_port, http, keys, press_pin, site_toml, until

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOURS = '[hours]\nopen = "08:30"\nclose = "17:30"\nlast_ticket = "16:30"\nreset = "03:00"\n'


def at(hour: int, minute: int = 0) -> int:
    return int(datetime(2026, 11, 23, hour, minute, tzinfo=SHANGHAI).timestamp() * 1000)


def test_last_ticket_and_all_day_hours_in_the_config(tmp_path: Path) -> None:
    hours = load_config(site_toml(tmp_path, hours=HOURS)).hours
    assert (hours.open_minute, hours.issue_until_minute, hours.close_minute) == (510, 990, 1050)
    assert [hours.issuing(m) for m in (509, 510, 989, 990)] == [False, True, True, False]
    default = load_config(site_toml(tmp_path, hours='[hours]\nopen = "08:30"\n')).hours
    assert default.issue_until_minute == default.close_minute == 17 * 60 + 30
    around = load_config(site_toml(tmp_path)).hours  # the tests' 00:00-24:00, reset 03:00
    assert [around.issuing(m) for m in (0, 24 * 60 - 1)] == [True, True]


@pytest.mark.parametrize(("hours", "problem"), [
    ('last_ticket = "08:00"', "hours.last_ticket: must be after hours.open"),
    ('last_ticket = "18:00"', "hours.last_ticket: must be after hours.open and not after"),
    ('last_ticket = "4pm"', "hours.last_ticket: expected local time HH:MM"),
    ('close = "24:00"', "hours.reset: must be outside opening hours"),  # reset 03:00 < open
])
def test_bad_issuing_hours_are_refused(tmp_path: Path, hours: str, problem: str) -> None:
    text = '[hours]\nopen = "08:30"\nclose = "17:30"\nreset = "03:00"\n'
    key = hours.split(" ")[0]
    if f"{key} =" in text:
        text = "\n".join(hours if line.startswith(f"{key} ") else line
                         for line in text.splitlines()) + "\n"
    else:
        text += hours + "\n"
    if key == "close":  # 08:30-24:00: 03:00 is outside; make the reset fall inside
        text = text.replace('reset = "03:00"', 'reset = "12:00"')
    with pytest.raises(ConfigInvalid) as info:
        load_config(site_toml(tmp_path, hours=text))
    assert any(problem in e for e in info.value.errors), info.value.errors


def test_check_config_reports_a_last_ticket_after_closing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = site_toml(tmp_path, hours=HOURS.replace("16:30", "17:45"))
    assert main(["edge", "check-config", str(bad)]) == 1
    assert "hours.last_ticket" in capsys.readouterr().err


def test_the_hall_issues_only_in_issuing_hours(tmp_path: Path) -> None:
    clock = ManualClock(at(8, 0))
    hall = open_hall(load_config(site_toml(tmp_path, hours=HOURS)), clock)
    try:
        with pytest.raises(CommandRejected) as early:
            hall.issue("shebao")
        assert (early.value.status, early.value.code) == (409, "closed")
        assert str(early.value).startswith("尚未开始取号 08:30")
        clock.set(at(8, 30))
        assert hall.issue("shebao").ticket.number == "A001"
        clock.set(at(16, 29))
        assert hall.issue("huji").ticket.number == "B001"
        clock.set(at(16, 30))
        for klass, booked in ((TicketClass.PRIORITY, None),
                              (TicketClass.APPOINTMENT, at(16, 40))):
            with pytest.raises(CommandRejected) as late:
                hall.issue("shebao", klass, booked_ms=booked)
            assert str(late.value).startswith("今日取号已结束")
        # After closing the windows still serve who is waiting.
        clock.set(at(17, 50))
        hall.sign_in(1, "zhang01")
        assert [t.number for t in (hall.call_next(1), hall.call_next(1))
                if t is not None] == ["A001", "B001"]
        assert len(hall.dispatcher.tickets()) == 2
    finally:
        hall.journal.close()


def test_kiosk_and_ticket_button_outside_hours(tmp_path: Path, clips_dir: Path) -> None:
    """The real daemon on simulated devices: the kiosk gets 409 ``closed``, a button press
    prints nothing and the hall screen says why; after closing the keypad still calls."""
    http_port = free_port()
    pins = MockFactory()
    clock = ManualClock(at(8, 10))

    def factory(config: EdgeConfig, inputs: InputQueue) -> Drivers:
        return build_devices(config, inputs, pin_factory=pins)

    with simulated_hall(tmp_path, clips_dir=clips_dir, http_port=http_port) as sim:
        text = sim.config_path.read_text(encoding="utf-8")
        sim.config_path.write_text(text.replace('open = "00:00"\nclose = "24:00"\n',
                                                HOURS.removeprefix("[hours]\n")
                                                .replace('reset = "03:00"\n', "")),
                                   encoding="utf-8")
        base = f"http://127.0.0.1:{http_port}"

        def hall_screen() -> str:
            return "\n".join(sim.screens.text(HALL_SCREEN, 0, line) for line in range(5))

        async def scenario() -> None:
            daemon = EdgeDaemon(sim.config_path, clock=clock, device_factory=factory,
                                install_signals=False)
            task = asyncio.create_task(daemon.run())
            try:
                await asyncio.wait_for(daemon.ready.wait(), 30)
                hall = daemon.hall
                assert hall is not None
                status, body = await asyncio.to_thread(http, "POST", f"{base}/tickets",
                                                       {"service": "shebao", "print": True})
                assert status == 409
                assert body["error"] == "closed"
                assert body["message"].startswith("尚未开始取号 08:30")
                await press_pin(pins, TICKET_BUTTON_PIN, 0.1)
                await until(lambda: "尚未开始取号 08:30" in hall_screen(), "not yet notice")

                clock.set(at(9, 0))
                status, body = await asyncio.to_thread(http, "POST", f"{base}/tickets",
                                                       {"service": "huji"})
                assert (status, body["number"]) == (201, "B001")
                await press_pin(pins, TICKET_BUTTON_PIN, 0.1)
                await until(lambda: len(hall.dispatcher.tickets()) == 2, "button ticket")
                await asyncio.to_thread(sim.printer.wait_for_tickets, 1, 10)

                clock.set(at(16, 45))  # 停止取号 at 16:30
                status, body = await asyncio.to_thread(
                    http, "POST", f"{base}/tickets", {"service": "shebao", "class": "priority"})
                assert (status, body["error"]) == (409, "closed")
                assert body["message"].startswith("今日取号已结束")
                await press_pin(pins, PRIORITY_BUTTON_PIN, 0.1)
                await until(lambda: "今日取号已结束" in hall_screen(), "ended notice")
                assert len(hall.dispatcher.tickets()) == 2
                assert len(sim.printer.tickets) == 1

                clock.set(at(17, 40))  # closed: the waiting tickets are still served
                await keys(sim, 1, Key.DIGIT_1, Key.SIGN_IN)
                await until(lambda: hall.staff_at(1) == "1", "sign in")
                waiting = {"A001", "B001"}
                await keys(sim, 1, Key.NEXT)
                await until(lambda: sim.screens.text(1) in waiting, "window 1 calls")
                (second,) = waiting - {sim.screens.text(1)}
                await keys(sim, 1, Key.NEXT)
                await until(lambda: sim.screens.text(1) == second, f"window 1 calls {second}")
            finally:
                daemon.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 15)

        asyncio.run(scenario())


CALENDAR_HOURS = ('[hours]\nopen = "08:30"\nclose = "17:30"\nlunch = "12:00-14:00"\n'
                  'last_ticket = "17:00"\nreset = "03:00"\ndays = "mon-fri"\n'
                  'week = { sat = "09:00-12:00" }\n'
                  '[calendar]\nholidays = ["2026-10-01..2026-10-08"]\n'
                  'workdays = ["2026-10-10"]\nspecial = ["2026-12-31 08:30-12:00"]\n')


def on(year: int, month: int, day: int, hour: int, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).timestamp() * 1000)


def test_the_hall_issues_by_its_calendar(tmp_path: Path) -> None:
    """Lunch, a weekend, a holiday, a 调休 Saturday, a half day, and a service (户籍) that
    stops taking numbers an hour before the hall: refused with why, Chinese first."""
    services = BASE_SERVICES.replace('name_zh = "户籍"', 'name_zh = "户籍"\nlast_ticket = "16:00"')
    clock = ManualClock(on(2026, 11, 23, 9))  # a Monday
    hall = open_hall(load_config(site_toml(tmp_path, hours=CALENDAR_HOURS, services=services)),
                     clock)

    def refused(service: str = "shebao") -> str:
        with pytest.raises(CommandRejected) as info:
            hall.issue(service, wait=None)
        assert (info.value.status, info.value.code) == (409, "closed")
        return str(info.value)

    try:
        assert hall.issue("shebao", wait=None).ticket.number == "A001"
        clock.set(on(2026, 11, 23, 12, 30))
        assert refused().startswith("午间休息 14:00开始取号 (lunch break")
        assert hall.issuing_status(clock.now_ms()) == ("closed", "午间休息 14:00开始取号")
        clock.set(on(2026, 11, 23, 16, 10))
        assert refused("huji").startswith("户籍今日取号已结束")
        assert hall.issue("shebao", wait=None).ticket.number == "A002"  # the hall's still on
        clock.set(on(2026, 11, 29, 10))  # Sunday
        assert refused().startswith("今日休息")
        clock.set(on(2026, 11, 28, 11, 0))  # Saturday morning, its own hours
        assert hall.issue("shebao", wait=None).ticket.number == "A003"
        clock.set(on(2026, 11, 28, 11, 40))  # 停止取号 half an hour before 12:00
        assert refused().startswith("今日取号已结束")
        clock.set(on(2026, 10, 5, 10))  # National Day week
        assert refused().startswith("节假日休息")
        clock.set(on(2026, 10, 10, 15))  # a Saturday worked (调休): standard hours
        assert hall.issue("huji", wait=None).ticket.number == "B001"
        clock.set(on(2026, 12, 31, 11, 45))  # the half day
        assert refused().startswith("今日取号已结束")
    finally:
        hall.journal.close()

"""What the central pushes and the site keeps: an emergency stop and the city calendar, across
restarts and days; refused when it cannot hold."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path

import pytest

from edge.clock import ManualClock
from edge.commands import RemoteCommands
from edge.config import load_config
from edge.device_set import DeviceSet
from edge.devices_factory import build_devices
from edge.errors import CommandRejected
from edge.hall import Hall, open_hall
from edge.outputs import HallOutputs
from edge.uplink import CommandFailed
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import site_toml
from tests.edge.test_hours import CALENDAR_HOURS, on

STOP = mm.IssuingArgs(stop="typhoon-1", stopped=True, reason="台风红色预警")


def cmd(args: mm.CommandArgs) -> mm.Cmd:
    now = on(2026, 11, 23, 9)
    return mm.Cmd(site="test-site", id=uuid.uuid4(), issued_ts=now, expires_ts=now + 60_000,
                  args=args)


def _no_diagnostics(_cmd: mm.Cmd, _args: mm.DiagnosticsArgs) -> mm.Diagnostics:
    raise AssertionError("not asked for here")


def run(hall: Hall, *commands: mm.CommandArgs) -> None:
    async def scenario() -> None:
        devices = DeviceSet(build_devices, asyncio.Queue())
        runner = RemoteCommands(hall, devices, HallOutputs(hall, devices),
                                lambda version: hall.reject_config("v", ["unused"]),
                                _no_diagnostics)
        for args in commands:
            await runner(cmd(args))

    asyncio.run(scenario())


def test_a_stop_holds_across_a_restart_and_a_new_day_until_lifted(tmp_path: Path) -> None:
    config = load_config(site_toml(tmp_path))
    clock = ManualClock(on(2026, 11, 23, 9))
    hall = open_hall(config, clock)
    issued = hall.issue("shebao", wait=None)
    run(hall, STOP)
    assert hall.stop == ("typhoon-1", "台风红色预警")
    assert hall.pushed_versions() == ("typhoon-1", None)
    with pytest.raises(CommandRejected) as refused:
        hall.issue("shebao", wait=None)
    assert (refused.value.status, refused.value.code) == (409, "stopped")
    assert str(refused.value).startswith("暂停取号 台风红色预警")
    assert hall.issuing_status(clock.now_ms()) == ("stopped", "台风红色预警")
    hall.sign_in(1, "s1")  # the tickets issued are served
    called = hall.call_next(1)
    assert called is not None
    assert called.number == issued.ticket.number
    run(hall, STOP)  # sent again (the central did not see the state): nothing new
    assert [e.type for e in hall.journal.events()].count("issuing.stopped") == 1
    hall.close()
    clock.set(on(2026, 11, 24, 9))  # the next morning, after a restart
    hall = open_hall(config, clock)
    try:
        assert hall.day == "2026-11-24"
        assert hall.closed_notice(clock.now_ms()) == "暂停取号 台风红色预警"
        with pytest.raises(CommandFailed, match="stop 'typhoon-1' is in force, not 'other'"):
            run(hall, mm.IssuingArgs(stop="other", stopped=False, reason=None))
        run(hall, mm.IssuingArgs(stop="typhoon-1", stopped=False, reason=None))
        assert hall.stop is None
        assert hall.issue("shebao", wait=None).ticket.number == "A001"
        assert [e.type for e in hall.journal.events()][-2:] == [
            "issuing.resumed", "ticket.issued"]
    finally:
        hall.close()


def test_the_city_calendar_goes_over_the_sites_own(tmp_path: Path) -> None:
    config = load_config(site_toml(tmp_path, hours=CALENDAR_HOURS))
    clock = ManualClock(on(2026, 10, 10, 9))  # a 调休 Saturday in the site's file
    hall = open_hall(config, clock)
    try:
        assert hall.issue("shebao", wait=None).ticket.number == "A001"
        run(hall, mm.CalendarArgs(version="2026-v2", holidays=["2026-10-10"], workdays=[],
                                  special=[]))
        assert hall.closed_notice(clock.now_ms()) == "节假日休息"  # the city moved it
        assert hall.pushed_versions() == (None, "2026-v2")
        assert hall.config.calendar.day(dt.date(2026, 10, 5)).kind == "holiday"  # the file's
        with pytest.raises(CommandFailed, match="no such date '2026-02-30'"):
            run(hall, mm.CalendarArgs(version="bad", holidays=["2026-02-30"], workdays=[],
                                      special=[]))
        assert hall.pushed_versions() == (None, "2026-v2")  # the one in force stays
        hall.close()
        hall = open_hall(config, clock)  # kept across a restart, and a reload
        assert hall.closed_notice(clock.now_ms()) == "节假日休息"
        hall.reconfigure(load_config(site_toml(tmp_path, hours=CALENDAR_HOURS,
                                               version="v2")))
        assert hall.closed_notice(clock.now_ms()) == "节假日休息"
        assert [e.type for e in hall.journal.events()].count("calendar.applied") == 1
    finally:
        hall.close()

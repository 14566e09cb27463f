"""The hall's outputs: each part of the hall screen on its own, against real LED frames.

A text one device cannot show (a character the LED font lacks, notices too long
for the notice line together) is refused or held back alone: the call lines and
the day's counts always reach the hall screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from edge.clock import ManualClock
from edge.config import EdgeConfig, load_config
from edge.daemon import EdgeDaemon
from edge.device_set import DeviceSet, Drivers
from edge.devices.base import HelpButton, InputQueue
from edge.devices_factory import build_devices
from edge.errors import OutputRefused
from edge.hall import open_hall
from edge.outputs import HallOutputs, call_line
from edge.simhall import HALL_SCREEN, simulated_hall
from firmware_protocols import mqtt_topics as topics
from firmware_protocols.simulators.led_screens import ScreenLayout, VirtualLedScreens
from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming
from tests.edge.central_probe import CentralProbe
from tests.edge.sites import BASE_WINDOWS, site_toml, until
from tests.edge.test_hall import OPENING
from tests.servers import MosquittoBroker

NOT_IN_THE_FONT = "😀"  # no LED font (GB2312) has it


def test_a_notice_the_font_refuses_fails_its_command_and_never_stops_the_calls(
        tmp_path: Path, clips_dir: Path, mqtt_broker: MosquittoBroker) -> None:
    """The command used to report ok while every hall-screen update failed on the notice
    (the calls went unseen for the notice's whole duration); a 呼叫帮办 location the font
    lacks did the same until the request was resolved."""
    pins = MockFactory()

    def factory(config: EdgeConfig, inputs: InputQueue) -> Drivers:
        return build_devices(config, inputs, pin_factory=pins)

    with simulated_hall(tmp_path, clips_dir=clips_dir, http_port=0,
                        mqtt_port=mqtt_broker.port) as sim:
        sim.config_path.write_text(sim.config_path.read_text(encoding="utf-8").replace(
            'location = "自助服务区"', f'location = "自助服务区{NOT_IN_THE_FONT}"'),
            encoding="utf-8")
        probe = CentralProbe(mqtt_broker.host, mqtt_broker.port, "sim-hall")

        async def scenario() -> None:
            daemon = EdgeDaemon(sim.config_path, device_factory=factory, install_signals=False)
            task = asyncio.create_task(daemon.run())
            try:
                await asyncio.wait_for(daemon.ready.wait(), 30)
                hall = daemon.hall
                assert hall is not None
                await until(lambda: daemon.uplink is not None and daemon.uplink.connected, "up")
                now = int(time.time() * 1000)
                command_id = uuid.uuid4()
                probe.publish_raw(topics.cmd_topic("sim-hall", "screen_notice"), json.dumps({
                    "v": 1, "site": "sim-hall", "id": str(command_id), "issued_ts": now,
                    "expires_ts": now + 60_000, "args": {
                        "name": "screen_notice", "text": f"系统维护{NOT_IN_THE_FONT}",
                        "screen": None, "duration_s": 600}}, ensure_ascii=False).encode())
                await until(lambda: probe.result(command_id) is not None, "the result")
                result = probe.result(command_id)
                assert result is not None
                assert not result.ok
                assert "show" in (result.error or "")
                hall.sign_in(1, "z1")
                hall.issue("shebao")
                hall.call_next(1)
                await until(lambda: sim.screens.text(HALL_SCREEN, 0, 0) == call_line("A001", 1),
                            "the call on the hall screen")
                daemon.inputs.put_nowait(HelpButton("help-1"))
                await until(lambda: hall.open_help(), "the help request")
                await until(lambda: "呼叫帮办 help-1" in sim.screens.text(HALL_SCREEN, 0, 4),
                            "the help notice, by the button's id")
                hall.issue("shebao")
                hall.call_next(1)
                await until(lambda: sim.screens.text(HALL_SCREEN, 0, 0) == call_line("A002", 1),
                            "the next call, with the help request open")
                await until(lambda: sim.screens.text(HALL_SCREEN, 0, 1) == call_line("A001", 1),
                            "the earlier call below it")
            finally:
                daemon.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 15)

        try:
            asyncio.run(scenario())
        finally:
            probe.close()


@pytest.fixture
def hall_screen() -> Iterator[tuple[PtyLink, VirtualLedScreens]]:
    layouts = {1: ScreenLayout(), 2: ScreenLayout(), 100: ScreenLayout(lines=5, columns=24)}
    with PtyLink(SerialTiming(19200)) as link, VirtualLedScreens(link, layouts) as screens:
        yield link, screens


def test_notices_that_do_not_fit_together_wait_and_the_calls_go(
        tmp_path: Path, hall_screen: tuple[PtyLink, VirtualLedScreens]) -> None:
    link, screens = hall_screen
    windows = BASE_WINDOWS.replace("number = 1\n", "number = 1\nscreen = 1\n").replace(
        "number = 2\n", "number = 2\nscreen = 2\n")
    config = load_config(site_toml(tmp_path, windows=windows, extra=(
        f'[devices.screens]\nport = "{link.port_name}"\nbaud = 19200\nhall = 100\n')))
    hall = open_hall(config, ManualClock(OPENING))

    async def scenario() -> None:
        inputs: InputQueue = asyncio.Queue()
        devices = DeviceSet(build_devices, inputs)
        devices.build(config, [], hall.device_status)
        assert devices.screens is not None
        outputs = HallOutputs(hall, devices)
        hall.subscribe(outputs.on_event)
        driver = asyncio.create_task(devices.screens.run())
        try:
            long = ["请", "各", "位", "群", "众"]  # 150 characters each: 300 GB2312 bytes
            for index, char in enumerate(long[:4]):
                outputs.notice(f"n{index}", f"{index}" + char * 149, 600)
            with pytest.raises(OutputRefused, match="cannot show"):
                outputs.notice("bad", f"暂停{NOT_IN_THE_FONT}", 600)
            hall.sign_in(1, "z1")
            hall.issue("shebao")
            hall.call_next(1)
            await until(lambda: screens.text(100, 0, 0) == call_line("A001", 1), "the call")
            await until(lambda: screens.text(100, 0, 3).startswith("当天办件量"), "counts")
            await until(lambda: screens.text(100, 0, 4) != "", "the notices")
            shown = screens.text(100, 0, 4)
            assert shown.startswith("0" + "请" * 149)  # the oldest notices, as many as fit
            assert "3" + "群" * 149 not in shown  # the last one waits for room
            assert NOT_IN_THE_FONT not in shown
        finally:
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver

    try:
        asyncio.run(scenario())
    finally:
        hall.journal.close()

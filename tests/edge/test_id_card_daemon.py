"""The kiosk's ID card reader in the real daemon, on the simulated hall: a card takes a
ticket (老年人优先 from 60), the same card again is refused on the hall screen, the hall
calls by name when it is enabled (screen and voice), and nothing personal reaches the journal
or the log."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import structlog
from gpiozero.pins.mock import MockFactory

from edge.config import EdgeConfig
from edge.daemon import EdgeDaemon
from edge.device_set import Drivers
from edge.devices.base import InputQueue
from edge.devices_factory import build_devices
from edge.simhall import HALL_SCREEN, simulated_hall
from fastpath.types import TicketClass
from firmware_protocols.id_card import Gender, IdCardText
from firmware_protocols.line import SerialTiming
from firmware_protocols.simulators.id_card_reader import VirtualIdCardReader
from firmware_protocols.simulators.serial_link import PtyLink
from tests.edge.sites import free_port, until

ELDER = IdCardText("张秀兰", Gender.FEMALE, "01", date(1958, 3, 15), "广东省中山市三乡镇",
                   "442000195803151248", "中山市公安局", date(2016, 5, 20), None)


def test_a_card_takes_one_priority_ticket_and_the_hall_calls_by_name(
    tmp_path: Path, clips_dir: Path
) -> None:
    pins = MockFactory()

    def factory(config: EdgeConfig, inputs: InputQueue) -> Drivers:
        return build_devices(config, inputs, pin_factory=pins)

    with (
        simulated_hall(tmp_path, clips_dir=clips_dir, http_port=free_port()) as sim,
        PtyLink(SerialTiming(115200)) as link,
        VirtualIdCardReader(link, read_seconds=0.05) as reader,
    ):
        text = sim.config_path.read_text(encoding="utf-8")
        sim.config_path.write_text(text.replace("[devices.gpio]", (
            f'[devices.id_card]\nport = "{link.port_name}"\nservice = "shebao"\n'
            "call_by_name = true\npoll_ms = 100\n\n[devices.gpio]")), encoding="utf-8")

        def hall_screen() -> list[str]:
            return [sim.screens.text(HALL_SCREEN, 0, line) for line in range(5)]

        async def scenario() -> None:
            daemon = EdgeDaemon(sim.config_path, device_factory=factory, install_signals=False)
            task = asyncio.create_task(daemon.run())
            try:
                await asyncio.wait_for(daemon.ready.wait(), 30)
                hall = daemon.hall
                assert hall is not None
                reader.place_card(ELDER)
                await until(lambda: len(hall.dispatcher.tickets()) == 1, "card ticket")
                [ticket] = hall.dispatcher.tickets()
                assert ticket.klass is TicketClass.PRIORITY  # 68 years old
                await until(lambda: len(sim.printer.tickets) == 1, "printed")
                reader.remove_card()
                await asyncio.sleep(0.3)
                reader.place_card(ELDER)  # the same card again, the same day
                await until(lambda: "今日已用此身份证取号1次" in hall_screen()[4], "refusal")
                assert len(hall.dispatcher.tickets()) == 1
                hall.sign_in(1, "zhang01")
                hall.call_next(1)
                await until(lambda: hall_screen()[0] == f"请张*女士 {ticket.number}号到1号窗口",
                            "called by name")
            finally:
                daemon.stop()
                await asyncio.wait_for(task, 30)

        with structlog.testing.capture_logs() as logs:
            asyncio.run(scenario())
    voice = [entry for entry in logs if entry["event"].startswith("voice.queued")]
    assert [entry["event"] for entry in voice] == ["voice.queued_text"]  # 请张女士，A001号…
    assert ELDER.name not in repr(logs)
    assert ELDER.id_number not in repr(logs)
    journal = b"".join(p.read_bytes() for p in tmp_path.glob("journal.db*"))
    assert ELDER.id_number.encode() not in journal
    assert ELDER.name.encode("utf-8") not in journal
    assert "张*".encode() not in journal  # masked names live in memory only

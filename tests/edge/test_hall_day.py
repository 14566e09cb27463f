"""A scripted hall day: the real daemon and drivers against every simulated device.

Printer, LED screens and a Modbus terminal bank on ptys at 19200 baud,
gpiozero mock pins for the ticket and 呼叫帮办 buttons, announcements written
as WAV files, and a real Mosquitto with a central stand-in. Checked: what
printed, what the screens and terminal LEDs showed, what was announced, and
that every event reached the broker in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from edge.config import EdgeConfig
from edge.daemon import EdgeDaemon
from edge.device_set import Drivers
from edge.devices.base import InputQueue
from edge.devices_factory import build_devices
from edge.simhall import (
    HALL_SCREEN,
    HELP_BUTTON_PIN,
    HELP_LED_PIN,
    PAPER_LED_PIN,
    PROGRESS_URL,
    TICKET_BUTTON_PIN,
    SimulatedHall,
    simulated_hall,
)
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.terminal_events import Key
from tests.edge.central_probe import CentralProbe
from tests.edge.sites import free_port, http, keys, press_pin, until
from tests.servers import MosquittoBroker


def test_a_scripted_hall_day(tmp_path: Path, clips_dir: Path,
                             mqtt_broker: MosquittoBroker) -> None:
    http_port = free_port()
    pins = MockFactory()

    def factory(config: EdgeConfig, inputs: InputQueue) -> Drivers:
        return build_devices(config, inputs, pin_factory=pins)

    with simulated_hall(tmp_path, clips_dir=clips_dir, http_port=http_port,
                        mqtt_port=mqtt_broker.port) as sim:
        probe = CentralProbe(mqtt_broker.host, mqtt_broker.port, "sim-hall")
        try:
            asyncio.run(_day(sim, factory, pins, http_port, probe))
        finally:
            probe.close()


async def _day(sim: SimulatedHall, factory: Callable[[EdgeConfig, InputQueue], Drivers],
               pins: MockFactory, http_port: int, probe: CentralProbe) -> None:
    daemon = EdgeDaemon(sim.config_path, device_factory=factory, install_signals=False)
    task = asyncio.create_task(daemon.run())
    base = f"http://127.0.0.1:{http_port}"
    try:
        await daemon.ready.wait()
        hall = daemon.hall
        assert hall is not None
        await until(lambda: daemon.devices.printer is not None
                    and daemon.devices.printer.health().state == "ok", "printer ok")

        # Staff sign in on the keypads: staff number, then 签到.
        await keys(sim, 1, Key.DIGIT_1, Key.DIGIT_0, Key.DIGIT_1, Key.SIGN_IN)
        await keys(sim, 2, Key.DIGIT_2, Key.DIGIT_0, Key.DIGIT_2, Key.SIGN_IN)
        await until(lambda: hall.staff_at(1) == "101" and hall.staff_at(2) == "202", "sign in")

        # Citizens take tickets: the GPIO button (prints) and a kiosk (prints on request).
        await press_pin(pins, TICKET_BUTTON_PIN, 0.1)
        await until(lambda: len(hall.dispatcher.tickets()) == 1, "button ticket")
        status, kiosk = await asyncio.to_thread(
            http, "POST", f"{base}/tickets", {"service": "huji", "print": True})
        assert status == 201
        assert kiosk["number"] == "B001"
        assert kiosk["printed"] is True
        assert kiosk["wait"] is not None  # fastpath prediction (mean_minutes configured)
        printed = await asyncio.to_thread(sim.printer.wait_for_tickets, 2, 10)
        texts = ["\n".join(t.text_lines) for t in printed]
        assert "A001" in texts[0]
        assert "B001" in texts[1]
        assert "模拟便民服务中心" in texts[0]
        assert "社保医保" in texts[0]
        # The QR opens the ticket's progress page on the central, by its unguessable token.
        token = hall.token_of("B001")
        assert token is not None
        assert len(token) == 22
        assert printed[1].qr_payloads == [f"{PROGRESS_URL}/q/{token}".encode()]
        assert kiosk["progress_url"] == f"{PROGRESS_URL}/q/{token}"

        # Window 1 calls: bar, terminal LED, hall screen, voice.
        await keys(sim, 1, Key.NEXT)
        await until(lambda: sim.screens.text(1) == "A001", "window bar shows A001")
        await until(lambda: sim.terminals.led_text(1) == "A001", "terminal LED shows A001")
        await until(lambda: "A001" in sim.screens.text(HALL_SCREEN, 0, 0), "hall screen call")
        await until(lambda: len(list(sim.wav_dir.glob("*.wav"))) >= 1, "announcement", 20)
        await keys(sim, 2, Key.NEXT)
        await until(lambda: sim.screens.text(2) == "B001", "window 2 shows B001")

        # 办结 at window 1, then the citizen rates on the pad: bound to A001, window 1, staff 101.
        await keys(sim, 1, Key.FINISH)
        await until(lambda: sim.terminals.rating_requested(1), "rating requested")
        sim.terminals.rate(1, 5)
        await until(lambda: any(isinstance(e.body, mm.RatingGiven)
                                for e in hall.journal.events(hall.journal.last_seq - 3)),
                    "rating journaled")
        rating = next(e.body for e in hall.journal.events() if isinstance(e.body, mm.RatingGiven))
        assert rating == mm.RatingGiven(ticket="A001", window=1, staff="101", value=5)
        await until(lambda: sim.screens.text(1) == "", "bar cleared")
        counts = sim.screens.text(HALL_SCREEN, 0, 3)
        assert counts, "the counts line (当天办件量/办结率) is shown"

        # 呼叫帮办: a short press lights the LED and shows on the hall screen; long presses
        # acknowledge and resolve.
        await press_pin(pins, HELP_BUTTON_PIN, 0.1)
        await until(lambda: pins.pin(HELP_LED_PIN).state, "help LED on")
        await until(lambda: "自助服务区" in sim.screens.text(HALL_SCREEN, 0, 4), "help notice")
        await press_pin(pins, HELP_BUTTON_PIN, 0.9)
        await until(lambda: hall.open_help() and hall.open_help()[0].acknowledged_ms, "ack")
        await press_pin(pins, HELP_BUTTON_PIN, 0.9)
        await until(lambda: not hall.open_help(), "resolved")
        await until(lambda: not pins.pin(HELP_LED_PIN).state, "help LED off")

        # Paper runs out: a device event, the paper LED, and a ticket that is still issued.
        sim.printer.run_out_of_paper()
        await until(lambda: any(isinstance(e.body, mm.DeviceStatus) and e.body.kind == "printer"
                                and e.body.detail == "paper_out"
                                for e in hall.journal.events()), "paper out event", 20)
        await until(lambda: pins.pin(PAPER_LED_PIN).state, "paper LED on")
        status, unprinted = await asyncio.to_thread(
            http, "POST", f"{base}/tickets", {"service": "shebao", "print": True})
        assert status == 201
        assert unprinted["number"] == "A002"
        assert unprinted["printed"] is False
        await until(lambda: "A002" in sim.screens.text(HALL_SCREEN, 0, 4), "unprinted notice")

        # Everything journaled reached the broker, once and in order.
        await until(lambda: hall.journal.acked_seq == hall.journal.last_seq, "all acked", 20)
        assert probe.seqs() == list(range(1, hall.journal.last_seq + 1))
        kinds = [e.type for e in probe.events]
        for expected in ("ticket.issued", "ticket.called", "ticket.done", "rating.given",
                         "help.requested", "help.acknowledged", "help.resolved", "device.status",
                         "window.signed_in"):
            assert expected in kinds, expected
        assert probe.telemetry
        assert probe.telemetry[-1].windows[0].window == 1
        assert any(s.status == "online" for s in probe.states)
        _, snapshot = await asyncio.to_thread(http, "GET", f"{base}/status")
        assert {d["device"] for d in snapshot["devices"]} >= {"printer", "screens", "terminals",
                                                            "gpio", "voice"}
        assert daemon.supervisor.restarts == dict.fromkeys(daemon.supervisor.restarts, 0)
    finally:
        daemon.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)

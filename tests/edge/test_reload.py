"""SIGHUP restarts what changed (MQTT broker, HTTP address, a device's port) in place,
keeping the queue; a part that cannot start is reported and the rest keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from edge.config import EdgeConfig, load_config
from edge.daemon import EdgeDaemon
from edge.device_set import Drivers
from edge.devices.base import HealthState, InputQueue
from edge.devices_factory import build_devices
from edge.simhall import BAUD, TICKET_BUTTON_PIN, simulated_hall
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.simulators.printer import VirtualPrinter
from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming
from onedoor.broker import MosquittoProcess
from tests.edge.central_probe import CentralProbe, wait_for
from tests.edge.sites import (
    free_port,
    http,
    press_pin,
    site_toml,
    start_daemon,
    stop_daemon,
    until,
    wait_http,
)
from tests.edge.test_daemon import journal_types
from tests.servers import MosquittoBroker


def test_sighup_moves_the_uplink_and_the_http_api_and_keeps_the_queue(
        tmp_path: Path, mqtt_broker: MosquittoBroker) -> None:
    old_http, new_http = free_port(), free_port()
    config_path = site_toml(tmp_path, http_port=old_http, mqtt_port=mqtt_broker.port)
    with MosquittoProcess(tmp_path / "broker2") as new_broker:
        old_probe = CentralProbe(mqtt_broker.host, mqtt_broker.port, "test-site")
        new_probe = CentralProbe(new_broker.host, new_broker.port, "test-site")
        time.sleep(0.3)  # retained states of earlier tests arrive first
        seen = len(old_probe.states)
        process = start_daemon(config_path, log_path=tmp_path / "daemon.log")
        try:
            wait_http(old_http, process)
            base = f"http://127.0.0.1:{old_http}"
            numbers = [http("POST", f"{base}/tickets", {"service": "shebao"})[1]["number"]
                       for _ in range(3)]
            assert numbers == ["A001", "A002", "A003"]
            http("POST", f"{base}/windows/1/sign_in", {"staff": "zhang01"})
            assert http("POST", f"{base}/windows/1/next")[1]["ticket"] == "A001"
            wait_for(lambda: any(e.type == "ticket.called" for e in old_probe.events),
                     what="events on the old broker")

            # Ops move the site to another broker and the kiosk API to another port.
            site_toml(tmp_path, version="v2", http_port=new_http, mqtt_port=new_broker.port)
            process.send_signal(signal.SIGHUP)
            wait_http(new_http, process)
            with pytest.raises(OSError, match="refused"):
                http("GET", f"{base}/status", timeout=2)  # the old socket is closed
            base = f"http://127.0.0.1:{new_http}"
            status = http("GET", f"{base}/status")[1]
            assert status["config"] == "v2"
            assert status["windows"][0]["ticket"] == "A001"
            assert status["queues"][0]["waiting"] == 2
            assert http("POST", f"{base}/tickets", {"service": "shebao"})[1]["number"] == "A004"

            wait_for(lambda: any(s.status == "online" and s.config == "v2"
                                 for s in new_probe.states), what="online on the new broker")
            wait_for(lambda: any(getattr(e.body, "ticket", None) == "A004"
                                 for e in new_probe.events), what="A004 on the new broker")
            # The old session said goodbye (retained offline, not a Will).
            wait_for(lambda: any(s.status == "offline" and not s.lwt
                                 for s in old_probe.states[seen:]), what="clean offline")
            assert not any(getattr(e.body, "ticket", None) == "A004" for e in old_probe.events)
            assert process.poll() is None
        finally:
            assert stop_daemon(process) == 0
            old_probe.close()
            new_probe.close()
    types = [t for t, _ in journal_types(config_path)]
    assert types.count("config.applied") == 2


def test_sighup_moves_the_printer_and_reports_a_screen_port_that_fails(
        tmp_path: Path, clips_dir: Path) -> None:
    """In process, on the simulated devices: the printer moves to another port (tickets
    print there), the LED screens to a port that does not exist (a device event says
    so); the queue, the keypads and the ticket button carry on untouched."""
    http_port = free_port()
    pins = MockFactory()

    def factory(config: EdgeConfig, inputs: InputQueue) -> Drivers:
        return build_devices(config, inputs, pin_factory=pins)

    with (simulated_hall(tmp_path, clips_dir=clips_dir, http_port=http_port) as sim,
          PtyLink(SerialTiming(BAUD)) as new_link, VirtualPrinter(new_link) as new_printer):
        base = f"http://127.0.0.1:{http_port}"

        async def scenario() -> None:
            daemon = EdgeDaemon(sim.config_path, device_factory=factory)
            task = asyncio.create_task(daemon.run())
            try:
                await asyncio.wait_for(daemon.ready.wait(), 30)
                hall = daemon.hall
                assert hall is not None
                old_printer = daemon.devices.printer
                assert old_printer is not None
                await until(lambda: old_printer.health().state == HealthState.OK, "printer")
                status, body = await asyncio.to_thread(
                    http, "POST", f"{base}/tickets", {"service": "shebao", "print": True})
                assert (status, body["printed"]) == (201, True)
                await press_pin(pins, TICKET_BUTTON_PIN, 0.1)
                await until(lambda: len(hall.dispatcher.tickets()) == 2, "button ticket")
                await asyncio.to_thread(sim.printer.wait_for_tickets, 2, 10)
                terminals, gpio = daemon.devices.terminals, daemon.devices.gpio

                config = load_config(sim.config_path)
                assert config.devices.printer is not None
                assert config.devices.screens is not None
                text = sim.config_path.read_text(encoding="utf-8")
                text = text.replace('version = "sim-1"', 'version = "sim-2"')
                text = text.replace(config.devices.printer.port, new_link.port_name)
                text = text.replace(config.devices.screens.port, "/dev/onedoor-no-such-tty")
                text += "\n[[windows]]\nnumber = 3\nservices = { huji = 1 }\n"  # no terminal
                sim.config_path.write_text(text, encoding="utf-8")
                os.kill(os.getpid(), signal.SIGHUP)

                await until(lambda: daemon.devices.printer not in (None, old_printer),
                            "a new printer driver")
                new_driver = daemon.devices.printer
                assert new_driver is not None
                await until(lambda: new_driver.health().state == HealthState.OK,
                            "new printer ok")
                await until(lambda: any(
                    isinstance(e.body, mm.DeviceStatus) and e.body.device == "screens"
                    and e.body.status == "offline" for e in hall.journal.events()),
                    "screens offline event")
                assert hall.config.version == "sim-2"
                assert [w.number for w in hall.dispatcher.windows()] == [1, 2, 3]
                assert (daemon.devices.terminals, daemon.devices.gpio) == (terminals, gpio)

                # The queue survived; tickets print on the printer at the new port.
                status, body = await asyncio.to_thread(
                    http, "POST", f"{base}/tickets", {"service": "shebao", "print": True})
                assert (status, body["number"], body["printed"]) == (201, "A003", True)
                printed = await asyncio.to_thread(new_printer.wait_for_tickets, 1, 10)
                assert "A003" in "\n".join(printed[0].text_lines)
                await press_pin(pins, TICKET_BUTTON_PIN, 0.1)  # GPIO kept its pins
                await asyncio.to_thread(new_printer.wait_for_tickets, 2, 10)
                assert len(sim.printer.tickets) == 2  # nothing more on the old port
                assert len(hall.dispatcher.tickets()) == 4
                assert daemon.supervisor.restarts == dict.fromkeys(daemon.supervisor.restarts,
                                                                   0)
            finally:
                daemon.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 15)

        asyncio.run(scenario())


def test_a_part_that_cannot_be_built_is_reported_and_the_rest_keeps_serving(
        tmp_path: Path) -> None:
    port = free_port()
    gpio = '[devices.gpio]\npin_factory = "mock"\nbuzzer_pin = 18\ndebounce_ms = {}\n'
    config_path = site_toml(tmp_path, http_port=port, extra=gpio.format(20))
    pins = MockFactory()

    def factory(config: EdgeConfig, inputs: InputQueue) -> Drivers:
        if config.version == "v2" and config.devices.gpio is not None:
            raise RuntimeError("GPIO busy")  # as gpiozero says when a pin is taken
        return build_devices(config, inputs, pin_factory=pins)

    async def scenario() -> None:
        daemon = EdgeDaemon(config_path, device_factory=factory, install_signals=False)
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.ready.wait(), 30)
            hall = daemon.hall
            assert hall is not None
            assert daemon.devices.gpio is not None
            site_toml(tmp_path, version="v2", http_port=port, extra=gpio.format(30))
            assert isinstance(daemon.reload().body, mm.ConfigApplied)
            await until(lambda: any(
                isinstance(e.body, mm.DeviceStatus) and e.body.device == "gpio"
                and e.body.status == "offline" for e in hall.journal.events()), "gpio offline")
            assert daemon.devices.gpio is None
            status, body = await asyncio.to_thread(http, "GET", f"http://127.0.0.1:{port}/status")
            assert status == 200
            assert {"device": "gpio", "kind": "gpio", "state": "offline",
                    "detail": "open failed"} in body["devices"]
            status, _ = await asyncio.to_thread(
                http, "POST", f"http://127.0.0.1:{port}/tickets", {"service": "huji"})
            assert status == 201
        finally:
            daemon.stop()
            await asyncio.wait_for(task, 15)

    asyncio.run(scenario())

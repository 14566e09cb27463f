"""The real edge daemon of a simulated hall in a thread of its own, for tests that run it
against the real central (its event loop, its simulated devices, gpiozero mock pins)."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from typing import Any

from gpiozero.pins.mock import MockFactory

from edge.config import EdgeConfig
from edge.daemon import EdgeDaemon
from edge.device_set import Drivers
from edge.devices.base import InputQueue
from edge.devices_factory import build_devices
from edge.simhall import SimulatedHall
from tests.central.test_api_support import wait_until


class EdgeThread:
    """The real edge daemon in a thread of its own (its own event loop)."""

    def __init__(self, sim: SimulatedHall) -> None:
        pins = MockFactory()

        def factory(config: EdgeConfig, inputs: InputQueue) -> Drivers:
            return build_devices(config, inputs, pin_factory=pins)

        self.daemon = EdgeDaemon(sim.config_path, device_factory=factory, install_signals=False)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name="edge", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.daemon.run()

    def __enter__(self) -> EdgeThread:
        self.thread.start()
        wait_until(lambda: self.daemon.ready.is_set(), timeout=60)
        if self.daemon.config.mqtt is not None:  # a new journal numbers once the central
            wait_until(self._numbering, timeout=60)  # granted it the site (a new site: at once)
        return self

    def _numbering(self) -> bool:
        hall = self.daemon.hall
        return hall is not None and hall.journal.numbering == "granted"

    def stop(self) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.daemon.stop)
        self.thread.join(timeout=30)

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def post(base: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(base + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            answer: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as error:  # the refusal's JSON, with its status
        answer = {**json.load(error), "status": error.code}
    return answer



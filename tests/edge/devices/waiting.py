"""What the device-driver tests share: waiting for a condition on the event loop, and
the daemon's input queue that records what the driver put into it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from edge.devices.base import DeviceInput


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; an AssertionError after ``timeout`` seconds
    (generous: the deadline only matters when the test fails)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class RecordingInputs(asyncio.Queue[DeviceInput]):
    """The daemon's input queue, recording what arrived and optionally reacting to it."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[DeviceInput] = []
        self.on_put: Callable[[DeviceInput], None] | None = None

    def put_nowait(self, item: DeviceInput) -> None:
        self.received.append(item)
        if self.on_put is not None:
            self.on_put(item)
        super().put_nowait(item)

"""CPU time of the ingest path, per stage: where a central's cycles per event go.

::

    clock = StageClock()
    clock.start()            # in the thread doing the work
    decode(...)
    clock.lap("decode")      # this thread's CPU since the last mark goes to "decode"

``time.thread_time`` counts only the calling thread, so a batch committed in a
worker thread is not charged for the event loop's work meanwhile, and the
reading costs well under a microsecond, a few per batch. The figures are
cumulative; :mod:`onedoor.bench.central` turns them into CPU-seconds per 1,000 events.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

STAGES = (
    "mqtt.receive",
    "decode",
    "sites.lock",
    "alarms.load",
    "state",
    "events.dedup",
    "events.seq",
    "events.fold",
    "telemetry",
    "commands",
    "rejects",
    "commit",
    "ack",
)
"""The stages in the order of the path (decode ... commit run in the worker thread)."""


class StageClock:
    """Sums this thread's CPU seconds per stage name."""

    def __init__(self) -> None:
        self.cpu_s: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._mark = 0.0

    def start(self) -> None:
        self._mark = time.thread_time()

    def lap(self, stage: str) -> None:
        now = time.thread_time()
        self.cpu_s[stage] = self.cpu_s.get(stage, 0.0) + now - self._mark
        self._mark = now

    @contextlib.contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        started = time.thread_time()
        try:
            yield
        finally:
            self.cpu_s[stage] = self.cpu_s.get(stage, 0.0) + time.thread_time() - started

    def total(self) -> float:
        return sum(self.cpu_s.values())


__all__ = ["STAGES", "StageClock"]

"""Clocks for the daemon, injectable so that tests (and replays) control time.

A Raspberry Pi has no real-time clock: until NTP has synchronised it, the wall
time may be years off. Every event therefore carries ``clock_synced``
(docs/PROTOCOLS.md, the MQTT contract); :class:`SystemClock` reads it from the kernel's
``adjtimex`` status, the same flag ``timedatectl`` shows as NTPSynchronized.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import time
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall time, unix milliseconds."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (for timeouts and backoff)."""
        ...

    def synced(self) -> bool:
        """Whether the wall time is NTP-synchronised."""
        ...


def kernel_clock_synced() -> bool:
    """The kernel's view (adjtimex); falls back to ``timedatectl`` if adjtimex is unavailable."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        buffer = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = int(libc.adjtimex(buffer))
        if state >= 0:
            return state != _TIME_ERROR
    try:
        result = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.stdout.strip() == "yes"


class SystemClock:
    """The host clock; the sync flag is cached and refreshed at most every ``refresh_s``."""

    def __init__(self, refresh_s: float = 60.0) -> None:
        self._refresh_s = refresh_s
        self._synced = False
        self._checked_at = float("-inf")

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    def synced(self) -> bool:
        now = time.monotonic()
        if now - self._checked_at >= self._refresh_s:
            self._synced = kernel_clock_synced()
            self._checked_at = now
        return self._synced


class ManualClock:
    """A clock that moves only when told to (tests, simulations)."""

    def __init__(self, now_ms: int, *, synced: bool = True) -> None:
        self._now_ms = now_ms
        self._monotonic = 1000.0
        self.is_synced = synced

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic(self) -> float:
        return self._monotonic

    def synced(self) -> bool:
        return self.is_synced

    def advance(self, seconds: float) -> None:
        self._now_ms += round(seconds * 1000)
        self._monotonic += seconds

    def set(self, now_ms: int) -> None:
        self._monotonic += max(0, now_ms - self._now_ms) / 1000
        self._now_ms = now_ms


def business_day(now_ms: int, tz: ZoneInfo, reset_minute: int) -> str:
    """The business day (``YYYY-MM-DD``) at ``now_ms``: days start at the reset time, not 00:00."""
    local = datetime.fromtimestamp(now_ms / 1000, tz) - timedelta(minutes=reset_minute)
    return local.date().isoformat()


__all__ = ["Clock", "ManualClock", "SystemClock", "business_day", "kernel_clock_synced"]

"""Supervision of the daemon's long-running tasks, and systemd's ``Type=notify`` watchdog.

:class:`Supervisor` runs each named task and restarts one that returns or raises,
after a growing pause: a device or uplink bug never takes the hall down, and is
never silently lost (``task.crashed`` with the traceback, ``task.restarting``).

:class:`Watchdog` sends ``WATCHDOG=1`` from the event loop only while the watched
tasks have checked in (:class:`Heartbeats`) and the polled buses keep polling,
within ``daemon.watchdog_seconds``: a hung task cannot hide behind a healthy loop,
and systemd restarts the daemon. The first ping waits for ``READY=1``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)


# --------------------------------------------------------------------------- systemd


def sd_notify(message: str, *, environ: dict[str, str] | None = None) -> bool:
    """Send ``message`` to systemd over ``$NOTIFY_SOCKET``; False when not under systemd."""
    address = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError as exc:
            log.warning("systemd.notify_failed", error=str(exc))
            return False
    return True


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Half the ``WATCHDOG_USEC`` systemd asks for (its own advice), or None."""
    env = environ if environ is not None else os.environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


class Heartbeats:
    """When each task last checked in, on the monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()  # a task gets one full period to check in the first time
        self._last: dict[str, float] = {}

    def beat(self, name: str) -> None:
        self._last[name] = self._clock()

    def beater(self, name: str) -> Callable[[], None]:
        return lambda: self.beat(name)

    def stale(self, names: list[str], max_age_s: float) -> list[str]:
        now = self._clock()
        return [n for n in names if now - self._last.get(n, self._started) > max_age_s]


class Watchdog:
    """The watchdog task: ``WATCHDOG=1`` only while every watched part makes progress.

    ``watched()`` names the tasks that must check in, ``stalled(max_age)`` the buses
    that stopped polling, ``max_age()`` is ``daemon.watchdog_seconds`` (read at each
    turn: a reload may change it).
    """

    def __init__(self, heartbeats: Heartbeats, *, ready: asyncio.Event,
                 watched: Callable[[], list[str]], stalled: Callable[[float], list[str]],
                 max_age: Callable[[], float]) -> None:
        self._heartbeats = heartbeats
        self._ready = ready
        self._watched = watched
        self._stalled = stalled
        self._max_age = max_age

    async def run(self) -> None:
        interval = watchdog_interval()
        await self._ready.wait()  # systemd expects READY=1 before the first WATCHDOG=1
        while True:
            max_age = self._max_age()
            stale = self._heartbeats.stale(self._watched(), max_age) + self._stalled(max_age)
            if stale:
                log.error("watchdog.withheld", stale=stale)
            elif interval is not None:
                sd_notify("WATCHDOG=1")
            await asyncio.sleep(interval if interval is not None else 5.0)


# --------------------------------------------------------------------------- supervisor


@dataclass(slots=True)
class _Supervised:
    name: str
    factory: Callable[[], Awaitable[None]]
    restarts: int = 0
    task: asyncio.Task[None] | None = None


class Supervisor:
    """Runs named tasks; one that returns or raises is logged and restarted after a pause."""

    def __init__(self, restart_delay_s: float = 1.0, max_delay_s: float = 30.0) -> None:
        self.restart_delay_s = restart_delay_s
        self.max_delay_s = max_delay_s
        self._tasks: dict[str, _Supervised] = {}
        self._group: asyncio.TaskGroup | None = None

    @property
    def restarts(self) -> dict[str, int]:
        return {name: entry.restarts for name, entry in self._tasks.items()}

    def running(self) -> list[str]:
        return [name for name, entry in self._tasks.items()
                if entry.task is not None and not entry.task.done()]

    def start(self, group: asyncio.TaskGroup, name: str,
              factory: Callable[[], Awaitable[None]]) -> None:
        entry = _Supervised(name, factory)
        self._tasks[name] = entry
        entry.task = group.create_task(self._keep(entry), name=name)

    async def _keep(self, entry: _Supervised) -> None:
        while True:
            try:
                await entry.factory()
                log.error("task.exited", task=entry.name, restarts=entry.restarts)
            except asyncio.CancelledError:
                raise
            except Exception:  # a device or uplink bug must not take the hall down
                log.exception("task.crashed", task=entry.name, restarts=entry.restarts)
            entry.restarts += 1
            await asyncio.sleep(min(self.max_delay_s,
                                    self.restart_delay_s * 2 ** min(entry.restarts - 1, 10)))
            log.info("task.restarting", task=entry.name, restarts=entry.restarts)

    def cancel_all(self) -> None:
        for entry in self._tasks.values():
            if entry.task is not None:
                entry.task.cancel()

    async def stop(self, name: str) -> None:
        """Cancel the task ``name`` and wait until it has ended (a reload restarts it)."""
        entry = self._tasks.pop(name, None)
        if entry is None or entry.task is None:
            return
        entry.task.cancel()
        await asyncio.wait({entry.task})  # never raises, not even our own cancellation


__all__ = ["Heartbeats", "Supervisor", "Watchdog", "sd_notify", "watchdog_interval"]

"""What the Modbus and the vendor terminal banks share: state, scripting, lifecycle.

A bank is N window terminals on one :class:`~.serial_link.PtyLink`, one bus
address each. Tests and the demo script it from any thread (:meth:`press`,
:meth:`rate`, :meth:`led_text`, …); the bus side runs in a background thread
with its own asyncio loop. Subclasses provide the terminal state
(:meth:`_new_terminal`) and the bus (:meth:`_open` / :meth:`_close`).

Usage (the daemon under test opens ``link.port_name`` with pyserial)::

    with PtyLink() as link, ModbusTerminalBank(link, range(1, 34), dead=[7]) as bank:
        bank.press(3, Key.NEXT)      # staff at window 3 press 下一位
        bank.rate(5, 4)              # the citizen at window 5 rates 满意
        ...                          # the daemon polls, acks, writes LED text
        assert bank.led_text(3) == "请A012号到3号窗口"

A process that simulates many banks beside the daemons polling them (the fleet
demo) can serve each on its own running event loop instead, with no thread:
``async with bank.serving(): ...``. The bytes on the pty are the same; what goes
is a thread per bank and a GIL hand-over for every exchange.

Timing: ``reply_delay`` is the terminal's think time before every answer;
``timing`` (a :class:`SerialTiming`) adds what the request and the answer
take on a real line at that baud rate, plus the 3.5-character gaps, so a poll
cycle against the simulator lasts as long as on a real bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Generic, Self, TypeVar

from firmware_protocols.errors import LocalProtocolError
from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming
from firmware_protocols.terminal_events import (
    Key,
    check_address,
    check_rating,
    check_rating_timeout,
    check_reason,
)

_STOP_TIMEOUT = 5.0


class SimulatedTerminal(ABC):
    """One window terminal: what both buses need to remember about it."""

    def __init__(self, address: int) -> None:
        self.address = address
        self.dead = False
        self.led_text = ""
        self._rating_deadline: float | None = None

    @abstractmethod
    def press(self, key: Key) -> int | None:
        """Latch a key press; its sequence number, or None when the queue refused it."""

    @abstractmethod
    def latch_rating(self, value: int) -> int | None:
        """Latch a rating; its sequence number, or None when the queue refused it."""

    @abstractmethod
    def latch_reason(self, reason: int) -> int | None:
        """Latch a 差评 follow-up reason; its sequence number, or None when refused."""

    @abstractmethod
    def reboot(self) -> None:
        """Power-cycle: forget everything latched."""

    def rate(self, value: int) -> int | None:
        """The simulated pad takes a rating at any time; it ends a pending request."""
        sequence = self.latch_rating(value)
        self._rating_deadline = None
        return sequence

    def request_rating(self, seconds: int) -> None:
        self._rating_deadline = time.monotonic() + seconds if seconds else None

    @property
    def rating_pending(self) -> bool:
        return self._rating_deadline is not None and time.monotonic() < self._rating_deadline


TerminalT = TypeVar("TerminalT", bound=SimulatedTerminal)


class TerminalBank(ABC, Generic[TerminalT]):
    """Lifecycle and scripting API of a simulated bank of window terminals.

    ``dead`` addresses never answer (a cut cable or a powered-off terminal);
    ``reply_delay`` seconds pass before every answer; ``timing`` adds the time
    the answer would take on a real line at that baud rate (leave the
    PtyLink's own timing unset then, or the delay counts twice).
    """

    def __init__(
        self,
        link: PtyLink,
        addresses: Iterable[int],
        *,
        dead: Iterable[int] = (),
        reply_delay: float = 0.0,
        timing: SerialTiming | None = None,
    ) -> None:
        self.link = link
        self.timing = timing
        self.reply_delay = reply_delay
        self._lock = threading.Lock()
        self._terminals: dict[int, TerminalT] = {}
        for address in addresses:
            check_address(address)
            if address in self._terminals:
                raise ValueError(f"address {address} given twice")
            self._terminals[address] = self._new_terminal(address)
        if not self._terminals:
            raise ValueError("a bank needs at least one terminal address")
        for address in dead:
            self._terminal(address).dead = True
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._serving_here = False  # serving() on the caller's loop

    # --- subclass hooks ---------------------------------------------------------------------

    @abstractmethod
    def _new_terminal(self, address: int) -> TerminalT: ...

    @abstractmethod
    async def _open(self) -> None:
        """Start serving the bus (runs in the bank's loop)."""

    @abstractmethod
    async def _close(self) -> None:
        """Stop serving and release every fd the bank opened."""

    # --- scripting (any thread) --------------------------------------------------------------

    @property
    def addresses(self) -> tuple[int, ...]:
        return tuple(self._terminals)

    def _terminal(self, address: int) -> TerminalT:
        try:
            return self._terminals[address]
        except KeyError:
            raise LocalProtocolError(f"no terminal at address {address} in this bank") from None

    def press(self, address: int, key: Key) -> int | None:
        """Staff press ``key``; the terminal's sequence number, None if refused (queue full)."""
        with self._lock:
            return self._terminal(address).press(Key(key))

    def rate(self, address: int, value: int) -> int | None:
        """A citizen rates 1..5; the terminal's sequence number, None if refused (queue full)."""
        check_rating(value, LocalProtocolError)
        with self._lock:
            return self._terminal(address).rate(value)

    def choose_reason(self, address: int, reason: int) -> int | None:
        """After a 差评 the citizen presses follow-up reason ``reason`` (1..15) on the pad;
        the terminal's sequence number, None if refused (queue full)."""
        check_reason(reason, LocalProtocolError)
        with self._lock:
            return self._terminal(address).latch_reason(reason)

    def led_text(self, address: int) -> str:
        with self._lock:
            return self._terminal(address).led_text

    def rating_requested(self, address: int) -> bool:
        """Whether the rating pad is lit (requested, not yet rated, not expired)."""
        with self._lock:
            return self._terminal(address).rating_pending

    def request_rating(self, address: int, seconds: int) -> None:
        """Light the pad as if the host had asked (for demos without a host)."""
        check_rating_timeout(seconds)
        with self._lock:
            self._terminal(address).request_rating(seconds)

    def set_dead(self, address: int, dead: bool = True) -> None:
        with self._lock:
            self._terminal(address).dead = dead

    def reboot(self, address: int) -> None:
        with self._lock:
            self._terminal(address).reboot()

    def _live(self, address: int) -> TerminalT | None:
        """The terminal that answers at ``address``, if any (call with the lock held)."""
        terminal = self._terminals.get(address)
        if terminal is None or terminal.dead:
            return None
        return terminal

    def reply_seconds(self, request_bytes: int, reply_bytes: int) -> float:
        """How long one exchange keeps the bus busy before the next request may start.

        The request's time on the line, the t3.5 gap that ends it, the
        terminal's ``reply_delay``, the answer's time on the line and the gap
        after it. (The pty delivered the request at once, hence counting it here.)
        """
        seconds = self.reply_delay
        if self.timing is not None:
            seconds += self.timing.transmit_seconds(request_bytes + reply_bytes)
            seconds += 2 * self.timing.frame_gap_seconds()
        return seconds

    async def _reply_wait(self, request_bytes: int, reply_bytes: int) -> None:
        delay = self.reply_seconds(request_bytes, reply_bytes)
        if delay > 0:
            await asyncio.sleep(delay)

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Self]:
        """Serve the bus on the running event loop (no thread) until the block ends."""
        if self._thread is not None or self._serving_here:
            raise RuntimeError("bank already started")
        self._serving_here = True
        try:
            try:
                await self._open()
            except BaseException:
                await self._close()
                raise
            try:
                yield self
            finally:
                await self._close()
        finally:
            self._serving_here = False

    def start(self) -> None:
        if self._thread is not None or self._serving_here:
            raise RuntimeError("bank already started")
        self._started.clear()
        self._start_error = None
        self._thread = threading.Thread(
            target=self._thread_main,
            name=f"{type(self).__name__}-{self.link.port_name}",
            daemon=True,  # a test that forgets stop() must not hang the interpreter at exit
        )
        self._thread.start()
        if not self._started.wait(_STOP_TIMEOUT):
            raise RuntimeError(f"{type(self).__name__} did not start")
        if self._start_error is not None:
            self._thread.join(_STOP_TIMEOUT)
            self._thread = None
            raise RuntimeError(f"{type(self).__name__} failed to start") from self._start_error

    def stop(self) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{type(self).__name__} thread did not stop")
        self._thread = self._loop = self._stopping = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _thread_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await self._open()
        except BaseException as exc:  # handed to start(), which raises it in the caller
            self._start_error = exc
            await self._close()
            self._started.set()
            return
        self._started.set()
        try:
            await self._stopping.wait()
        finally:
            await self._close()


__all__ = ["SimulatedTerminal", "TerminalBank"]

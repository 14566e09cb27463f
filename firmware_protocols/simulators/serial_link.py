"""A pty pair standing in for a serial line, with honest transmission timing.

The daemon opens :attr:`PtyLink.port_name` with pyserial exactly as it would
open ``/dev/ttyUSB0``; the simulator reads and writes the other end. A pty
ignores the baud rate, so :class:`SerialTiming` lets a simulator wait the time
the bytes would really take on the wire (11 bits a character, as the Modbus
specification counts them, and the 3.5-character inter-frame gap).

:class:`PtyDevice` is the base of the threaded simulators (the virtual
printer, the LED screens): a reader thread, honest receive pacing
(:class:`ReceivePacer`), answers, a clean start/stop and ``wait_until``.
"""

from __future__ import annotations

import os
import select
import termios
import threading
import time
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

_STOP_TIMEOUT = 5.0
# How long a quiet device thread sleeps between checks that its link is still open. A
# quiet line has nothing to time (``_on_idle`` only follows traffic) and stop() wakes
# the thread at once through its wake pipe, so this only bounds noticing a link closed
# under the thread. (Polling every ``idle_seconds`` instead woke each simulator 20 times
# a second for nothing: with a city of them in a few processes, that was real CPU.)
QUIET_WAIT_S = 1.0


@dataclass(frozen=True, slots=True)
class SerialTiming:
    """Transmission time of bytes on a real RS232/RS485 line."""

    baud: int
    bits_per_char: int = 11

    def __post_init__(self) -> None:
        if self.baud <= 0:
            raise ValueError(f"baud must be positive, got {self.baud}")

    @property
    def char_seconds(self) -> float:
        return self.bits_per_char / self.baud

    def transmit_seconds(self, n_bytes: int) -> float:
        """Time to clock ``n_bytes`` out of a UART at this baud rate."""
        return n_bytes * self.char_seconds

    def frame_gap_seconds(self) -> float:
        """Modbus RTU t3.5; fixed at 1.75 ms above 19200 baud, as the spec says."""
        if self.baud > 19200:
            return 0.00175
        return 3.5 * self.char_seconds


class PtyLink:
    """One end for the daemon (``port_name``), one end for the simulator.

    The slave side is put in raw mode at once and kept open, so the daemon can
    open, close and reopen the port like a USB adapter without the simulator
    seeing EOF or the line discipline rewriting bytes.
    """

    def __init__(self, timing: SerialTiming | None = None) -> None:
        self.timing = timing
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave, termios.TCSANOW)
        tty.setraw(self._master, termios.TCSANOW)
        self.port_name = os.ttyname(self._slave)
        self.closed = False

    def fileno(self) -> int:
        return self._master

    def read(
        self, timeout: float | None = 0.1, max_bytes: int = 4096, *, wake_fd: int | None = None
    ) -> bytes:
        """Bytes the daemon wrote, or b"" when nothing arrived within ``timeout``
        (or ``wake_fd``, when given, became readable first: someone wants the reader back)."""
        if self.closed:
            return b""
        fds = [self._master] if wake_fd is None else [self._master, wake_fd]
        ready, _, _ = select.select(fds, [], [], timeout)
        if self._master not in ready:
            return b""
        try:
            return os.read(self._master, max_bytes)
        except OSError:  # the slave side went away
            return b""

    def write(self, data: bytes) -> None:
        """Send bytes to the daemon, taking as long as the real line would."""
        if self.timing is not None:
            time.sleep(self.timing.transmit_seconds(len(data)))
        view = memoryview(data)
        while view:
            written = os.write(self._master, view)
            view = view[written:]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._master)
            os.close(self._slave)

    def __enter__(self) -> PtyLink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ReceivePacer:
    """When bytes read from a pty would have finished arriving on the real line.

    The daemon's ``write`` lands in the pty at once; on a real line the bytes
    queue behind whatever is still being clocked out. A simulator asks
    :meth:`delay` how long to wait before acting on what it just read, so a
    ticket or a burst of LED frames takes its honest time to arrive.
    """

    def __init__(self, timing: SerialTiming | None) -> None:
        self.timing = timing
        self._line_free_at = 0.0

    def delay(self, n_bytes: int, now: float) -> float:
        """Seconds from ``now`` (monotonic) until the last of ``n_bytes`` has arrived."""
        if self.timing is None:
            return 0.0
        start = max(now, self._line_free_at)
        self._line_free_at = start + self.timing.transmit_seconds(n_bytes)
        return self._line_free_at - now


class PtyDevice(ABC):
    """A simulated serial device: one background thread serving a :class:`PtyLink`.

    Subclasses implement :meth:`_on_bytes` (and optionally :meth:`_on_idle`);
    both run in the device thread with :attr:`_cond` held and return the bytes
    to answer, which are written after the lock is released (through
    :meth:`PtyLink.write`, so the link's own :class:`SerialTiming` makes the
    answer take its honest time). Input is paced with :class:`ReceivePacer`
    on the same timing.

    Scripting methods called from other threads take :attr:`_cond` too, and
    :meth:`wait_until` waits on it. An unexpected exception in the thread (a
    bug, never bad input: subclasses count that) stops the device and is
    raised again by :meth:`stop` and :meth:`wait_until`.
    """

    def __init__(
        self, link: PtyLink, *, idle_seconds: float = 0.05, reply_delay: float = 0.0
    ) -> None:
        if idle_seconds <= 0:
            raise ValueError(f"idle_seconds must be positive, got {idle_seconds}")
        self.link = link
        self.idle_seconds = idle_seconds
        self.reply_delay = reply_delay
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._wake: tuple[int, int] | None = None  # pipe: stop() wakes a quiet thread

    @property
    def port(self) -> str:
        """The device name to open with pyserial."""
        return self.link.port_name

    @abstractmethod
    def _on_bytes(self, data: bytes) -> bytes:
        """Handle bytes that have arrived; return the answer (b"" for none)."""

    def _on_idle(self) -> bytes:
        """The line has been quiet for ``idle_seconds`` after some traffic."""
        return b""

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        if self.link.closed:
            raise RuntimeError(f"{type(self).__name__}: the pty link is closed")
        self._stopping.clear()
        self._failure = None
        self._wake = os.pipe()
        self._thread = threading.Thread(
            target=self._serve, name=f"{type(self).__name__}-{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; raise what killed it, if anything did."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        if self._wake is not None:
            os.write(self._wake[1], b"!")
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{type(self).__name__} thread did not stop")
        self._thread = None
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None
        if self._failure is not None:
            raise RuntimeError(f"{type(self).__name__} thread failed") from self._failure

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

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Block until ``predicate()`` (evaluated with the lock held) is true.

        Raises :class:`TimeoutError` after ``timeout`` seconds and
        :class:`RuntimeError` when the device thread has died.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                if self._failure is not None:
                    raise RuntimeError(f"{type(self).__name__} thread failed") from self._failure
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{type(self).__name__}: condition not met in {timeout} s")
                self._cond.wait(min(remaining, 0.1))

    def _serve(self) -> None:
        pacer = ReceivePacer(self.link.timing)
        quiet = True
        wake_fd = None if self._wake is None else self._wake[0]
        try:
            while not self._stopping.is_set() and not self.link.closed:
                # Quiet, nothing is due: sleep until bytes come (or stop() wakes us).
                timeout = QUIET_WAIT_S if quiet else self.idle_seconds
                data = self.link.read(timeout=timeout, wake_fd=wake_fd)
                if data:
                    delay = pacer.delay(len(data), time.monotonic())
                    if delay > 0 and self._stopping.wait(delay):
                        return
                    with self._cond:
                        answer = self._on_bytes(data)
                        self._cond.notify_all()
                    quiet = False
                elif not quiet:
                    with self._cond:
                        answer = self._on_idle()
                        self._cond.notify_all()
                    quiet = True
                else:
                    continue
                if answer:
                    if self.reply_delay > 0 and self._stopping.wait(self.reply_delay):
                        return
                    self.link.write(answer)
        except BaseException as exc:
            if isinstance(exc, OSError | ValueError) and self.link.closed:
                return  # the link was closed under the thread: nothing left to serve
            with self._cond:  # a bug: keep it for stop() and wait_until()
                self._failure = exc
                self._cond.notify_all()


__all__ = ["PtyDevice", "PtyLink", "ReceivePacer", "SerialTiming"]

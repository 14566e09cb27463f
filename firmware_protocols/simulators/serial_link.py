"""A pty pair standing in for a serial line, with honest line timing and framing.

The daemon opens :attr:`PtyLink.port_name` with pyserial exactly as it would
open ``/dev/ttyUSB0``; the simulator reads and writes the other end. A pty
ignores the baud rate, so :class:`SerialTiming` is the device's UART: the time
bytes really take on the wire (a start bit, 8 data bits, parity, stop bits:
10 bits for 8N1, 11 for 8E1 and 8N2; the Modbus 3.5-character gap), and what
its UART makes of a host at other settings. A link with a timing compares it
with the settings the host opened the port with (:meth:`PtyLink.host_line`)
and, when they differ, passes bytes through :func:`uart_receive` both ways:
a wrong baud rate or parity gives garbage, as on a real line, never a clean
answer. A ``half_duplex`` link (RS485) garbles an answer that overlaps bytes
from the host, and those bytes too.

:class:`PtyDevice` is the base of the threaded simulators (the virtual
printer, the LED screens): a reader thread, honest receive pacing
(:class:`ReceivePacer`), answers, a clean start/stop and ``wait_until``.
"""

from __future__ import annotations

import errno
import os
import select
import termios
import threading
import time
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Protocol, Self

from firmware_protocols.line import Parity, SerialTiming

_STOP_TIMEOUT = 5.0
# How long a quiet device thread sleeps between checks that its link is still open. A
# quiet line has nothing to time (``_on_idle`` only follows traffic) and stop() wakes
# the thread at once through its wake pipe, so this only bounds noticing a link closed
# under the thread. (Polling every ``idle_seconds`` instead woke each simulator 20 times
# a second for nothing: with a city of them in a few processes, that was real CPU.)
QUIET_WAIT_S = 1.0


def _character_bits(byte: int, line: SerialTiming) -> list[int]:
    data = [byte >> bit & 1 for bit in range(line.data_bits)]  # least significant bit first
    parity = [] if line.parity == "N" else [sum(data) % 2 ^ (line.parity == "O")]
    return [0, *data, *parity, *([1] * line.stop_bits)]


def uart_receive(data: bytes, sent: SerialTiming, received: SerialTiming) -> bytes:
    """What a UART set to ``received`` makes of ``data`` sent back to back at ``sent``.

    Equal settings pass the bytes through. Otherwise the line is sampled bit by bit as
    a UART does: it waits for a low level (a start bit), checks it mid-bit, samples each
    data bit, the parity bit and the stop bits in their middles at *its own* bit time.
    A character with a parity error or a framing error (a stop bit read as 0) is
    dropped, as firmware with error checking drops it; the rest is garbage, as on a
    real line with the wrong baud rate or parity.
    """
    if sent == received:
        return data
    line = [bit for byte in data for bit in _character_bits(byte, sent)]
    sent_bit, bit = 1 / sent.baud, 1 / received.baud

    def level(t: float) -> int:
        index = int(t / sent_bit)
        return line[index] if 0 <= index < len(line) else 1  # an idle line is high

    out = bytearray()
    t, end = 0.0, len(line) * sent_bit
    while t < end:
        index = int(t / sent_bit)
        while index < len(line) and line[index] == 1:
            index += 1
        if index >= len(line):
            break
        start = max(t, index * sent_bit)
        if level(start + bit / 2) != 0:  # a glitch, not a start bit
            t = start + bit / 2
            continue
        bits = [level(start + (1.5 + n) * bit) for n in range(received.data_bits)]
        sample = start + (1.5 + received.data_bits) * bit
        good = True
        if received.parity != "N":
            good = (sum(bits) + level(sample)) % 2 == (received.parity == "O")
            sample += bit
        for _ in range(received.stop_bits):
            good = good and level(sample) == 1
            sample += bit
        if good:
            out.append(sum(b << n for n, b in enumerate(bits)))
        t = sample - bit / 2  # hunt for the next start bit after the (last) stop bit
    return bytes(out)


# The Linux pty driver forces CS8 and no parity on every termios change, so the parity
# the host asked for cannot be read back from the kernel; and recent kernels answer
# EINVAL to a call whose only change was one the pty refused (reopening a port at 8E1).
# A real UART keeps both. So for our pty slaves only, this records what the host asked
# for (pyserial, and pymodbus through it, call termios.tcsetattr) and lets such a call
# succeed; the simulated UART (PtyLink.host_line) then enforces it. Other ttys are not
# touched, and any other refusal is still raised. It works in the simulator's process
# only: a daemon started as another process sees the plain kernel (tests run it at 8N1).
_requested: dict[int, list[Any]] = {}  # st_rdev of a PtyLink slave -> last requested attrs
_watched: set[int] = set()
_real_tcsetattr = termios.tcsetattr
_recorder_lock = threading.Lock()
_PTY_DROPPED: Final = termios.CSIZE | termios.PARENB | termios.PARODD


def _device_of(fd: Any) -> int | None:
    try:
        return os.fstat(fd if isinstance(fd, int) else fd.fileno()).st_rdev
    except (OSError, ValueError, AttributeError):
        return None


def _recording_tcsetattr(fd: Any, when: int, attributes: list[Any]) -> None:
    device = _device_of(fd)
    if device not in _watched:
        _real_tcsetattr(fd, when, attributes)
        return
    try:
        _real_tcsetattr(fd, when, attributes)
    except termios.error as exc:
        current = termios.tcgetattr(fd)
        kept = [*attributes[:2], attributes[2] & ~_PTY_DROPPED, *attributes[3:]]
        current[2] &= ~_PTY_DROPPED
        if exc.args[0] != errno.EINVAL or current != kept:
            raise
    assert device is not None
    _requested[device] = list(attributes)


def _watch_line_settings(device: int) -> None:
    with _recorder_lock:
        _watched.add(device)
        if termios.tcsetattr is not _recording_tcsetattr:
            termios.tcsetattr = _recording_tcsetattr


_SPEEDS: Final = {
    getattr(termios, f"B{rate}"): rate
    for rate in (
        50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400,
        57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000,
        2000000, 2500000, 3000000, 3500000, 4000000,
    )
    if hasattr(termios, f"B{rate}")
}  # fmt: skip
_DATA_BITS: Final = {termios.CS5: 5, termios.CS6: 6, termios.CS7: 7, termios.CS8: 8}


class PtyLink:
    """One end for the daemon (``port_name``), one end for the simulator.

    The slave side is put in raw mode at once and kept open, so the daemon can
    open, close and reopen the port like a USB adapter without the simulator
    seeing EOF or the line discipline rewriting bytes.
    """

    def __init__(self, timing: SerialTiming | None = None, *, half_duplex: bool = False) -> None:
        self.timing = timing
        self.half_duplex = half_duplex
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave, termios.TCSANOW)
        tty.setraw(self._master, termios.TCSANOW)
        self.port_name = os.ttyname(self._slave)
        self._device = os.fstat(self._slave).st_rdev
        _watch_line_settings(self._device)
        self.closed = False
        self.collisions = 0  # answers that overlapped bytes from the host (half duplex)
        self._garble_next = False  # the host's bytes that a collision corrupted

    def host_line(self) -> SerialTiming | None:
        """The line settings the host opened the port with (None before it set any, or at
        a speed termios cannot name). Baud rate and stop bits come from the kernel,
        data bits and parity from what the host asked for (see ``_recording_tcsetattr``)."""
        if self.closed:
            return None
        try:
            attributes = termios.tcgetattr(self._slave)
        except termios.error:
            return None
        baud = _SPEEDS.get(attributes[5])
        requested = _requested.get(self._device)
        if baud is None or requested is None:
            return None
        cflag = requested[2]
        parity: Parity = "N"
        if cflag & termios.PARENB:
            parity = "O" if cflag & termios.PARODD else "E"
        stop_bits = 2 if attributes[2] & termios.CSTOPB else 1
        return SerialTiming(baud, parity, stop_bits, _DATA_BITS.get(cflag & termios.CSIZE, 8))

    def heard_by_device(self, data: bytes, line: SerialTiming | None = None) -> bytes:
        """What the device's UART (``line``, default the link's timing) makes of bytes
        the host sent: garbage when their settings differ."""
        device = line or self.timing
        host = None if device is None else self.host_line()
        if device is None or host is None:
            return data
        return uart_receive(data, host, device)

    def heard_by_host(self, data: bytes, line: SerialTiming | None = None) -> bytes:
        """What the host's UART makes of bytes the device sent at ``line``."""
        device = line or self.timing
        host = None if device is None else self.host_line()
        if device is None or host is None:
            return data
        return uart_receive(data, device, host)

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
            data = os.read(self._master, max_bytes)
        except OSError:  # the slave side went away
            return b""
        if self._garble_next:  # it overlapped our answer on a half-duplex bus
            self._garble_next = False
            data = _collided(data)
        return self.heard_by_device(data)

    def write(self, data: bytes) -> None:
        """Send bytes to the daemon, taking as long as the real line would.

        On a ``half_duplex`` link (RS485) bytes the host sent while the answer was on
        the line collide with it: both come out garbled (counted in :attr:`collisions`).
        """
        if self.timing is not None:
            time.sleep(self.timing.transmit_seconds(len(data)))
            if self.half_duplex and select.select([self._master], [], [], 0)[0]:
                self.collisions += 1
                self._garble_next = True
                data = _collided(data)
        data = self.heard_by_host(data)
        view = memoryview(data)
        while view:
            written = os.write(self._master, view)
            view = view[written:]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            _requested.pop(self._device, None)
            _watched.discard(self._device)
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


def _collided(data: bytes) -> bytes:
    """Two drivers on one RS485 pair at once: every byte comes out wrong."""
    return bytes(byte ^ 0x5A for byte in data)


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


class DeviceLink(Protocol):
    """The simulator's end of a link: a pty (:class:`PtyLink`) or a TCP port
    (:class:`~.tcp_link.TcpServerLink`)."""

    timing: SerialTiming | None
    port_name: str

    @property
    def closed(self) -> bool: ...

    def read(
        self, timeout: float | None = 0.1, max_bytes: int = 4096, *, wake_fd: int | None = None
    ) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


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
        self, link: DeviceLink, *, idle_seconds: float = 0.05, reply_delay: float = 0.0
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

    def _taking_input(self) -> bool:
        """False while the device takes no bytes (its buffer full): they wait in the link,
        and once it is full too the host's writes block."""
        return True

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
                with self._cond:
                    taking = self._taking_input()
                if not taking:
                    with self._cond:  # scripting (or stop()) changes that and notifies
                        self._cond.wait(self.idle_seconds)
                    continue
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


__all__ = [
    "DeviceLink",
    "Parity",
    "PtyDevice",
    "PtyLink",
    "ReceivePacer",
    "SerialTiming",
    "uart_receive",
]

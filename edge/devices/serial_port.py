"""Byte links for asyncio: the serial port, and the one 'send and wait for the reply' loop.

:class:`AsyncSerial`: pyserial opens the device (non-blocking, with an
exclusive lock so a second owner fails loudly) and sets baud rate, framing
and flow control. Reads and writes then go straight to its file descriptor
under ``loop.add_reader`` / ``loop.add_writer``: no thread per call, and a
timeout is an asyncio timeout, so the driver task that owns the port can be
cancelled at any point. The reader stays registered from the first read until
the port closes and keeps what arrives in a buffer, so an exchange (a
terminal poll, ten a second per terminal) costs no epoll registration and
unregistration and no empty read. (pyserial's own non-blocking ``write``
spins on EAGAIN, hence ``os.write``.)

**Wire time.** ``write`` returns when the kernel has the bytes, long before
they have left a 9600-baud line (a 342-byte ticket takes 356 ms at 8N1).
The port keeps a model of its line (:class:`~firmware_protocols.line.SerialTiming`):
:meth:`AsyncSerial.drain` waits until the bytes written so far are on the
wire (the line model, then the kernel's output queue, which flow control may
hold), and :func:`exchange` only starts to wait for an answer once its request
has left, for as long as the answer itself takes on the wire plus the
device's turnaround. So a long frame never times out while it is still being
sent, and a retry never goes out while the answer may still be on the line.

**RS485 direction.** ``rs485="auto"``: the adapter switches its driver by
itself (most CH340, FTDI and CP210x RS485 dongles). ``"kernel"``: the UART
driver does it (``TIOCSRS485``, pyserial's ``rs485_mode``). ``"rts"``: this
module raises RTS before a frame and drops it once the frame is on the wire,
before the answer comes. A port that cannot do the chosen mode fails at open
with a clear :class:`SerialPortError`.

:class:`ByteLink` is what the drivers need of any transport; the ticket
printer's USB and TCP transports (``edge.devices.printer_ports``) implement it
too, so :func:`exchange` serves every device family.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, Literal, Protocol, TypeVar

import serial
import serial.rs485
import structlog

from firmware_protocols.decoding import NEED_DATA, Decoder
from firmware_protocols.errors import ProtocolError
from firmware_protocols.line import SerialTiming

from .base import (
    DeviceConfigError,
    DeviceError,
    DeviceTimeout,
    HealthState,
    HealthTracker,
    stop_if_cancelled,
)

log = structlog.get_logger(__name__)

_MAX_BUFFER: Final = 65536  # bytes kept while nobody reads
_OUTQ_POLL_S: Final = 0.002  # how often drain() looks at the kernel's output queue
Rs485Mode = Literal["auto", "kernel", "rts"]
RS485_MODES: Final[tuple[Rs485Mode, ...]] = ("auto", "kernel", "rts")
_PYSERIAL_PARITY: Final = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN,
                           "O": serial.PARITY_ODD}

EventT = TypeVar("EventT")


class SerialPortError(DeviceError, OSError):
    """The port cannot be opened, or it went away (USB adapter unplugged)."""


class ByteLink(Protocol):
    """A bidirectional byte stream to one device, owned by one driver task."""

    @property
    def name(self) -> str: ...

    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None: ...

    def close(self) -> None: ...

    async def write(self, data: bytes, timeout: float) -> None: ...

    async def drain(self, timeout: float) -> None: ...

    async def read(self, timeout: float, max_bytes: int = 4096) -> bytes: ...

    def discard_input(self) -> None: ...

    def wire_seconds(self, n_bytes: int) -> float: ...


async def await_reply(
    link: ByteLink,
    reply: Decoder[EventT],
    accept: Callable[[EventT], bool],
    timeout: float,
    on_error: Callable[[ProtocolError], None] | None = None,
) -> EventT | None:
    """Read and decode for up to ``timeout`` until an event ``accept`` takes; None if none.

    Events ``accept`` refuses (another device's answer) are skipped, and so are codec
    errors (line noise), after ``on_error`` saw them.
    """
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        data = await link.read(left)
        if not data:
            break
        reply.receive_data(data)
        while True:
            try:
                event = reply.next_event()
            except ProtocolError as exc:
                if on_error is not None:
                    on_error(exc)
                continue
            if event is NEED_DATA:
                break
            if accept(event):
                return event
    return None


async def exchange(
    link: ByteLink,
    request: bytes,
    reply: Decoder[EventT],
    accept: Callable[[EventT], bool] = lambda _: True,
    *,
    reply_bytes: int,
    timeout: float,
    write_timeout: float | None = None,
    on_error: Callable[[ProtocolError], None] | None = None,
    on_sent: Callable[[], None] | None = None,
) -> EventT | None:
    """Send ``request`` and wait for the first decoded event ``accept`` takes; None if none
    came in time. The one 'send and wait for the reply' loop of every driver.

    Bytes left over from an earlier exchange are dropped first. The wait starts once the
    request is on the wire and lasts the wire time of ``reply_bytes`` (the longest answer
    expected) plus ``timeout``, the device's turnaround. ``on_sent`` is called once the
    request was handed to the port. Raises :class:`DeviceTimeout` when the request cannot
    be written within ``write_timeout`` (default: ``timeout`` plus its wire time; flow
    control holds it) and :class:`SerialPortError` when the port went away.
    """
    link.discard_input()
    budget = timeout + link.wire_seconds(len(request)) if write_timeout is None else write_timeout
    await link.write(request, budget)
    if on_sent is not None:
        on_sent()
    await link.drain(budget)
    return await await_reply(link, reply, accept, link.wire_seconds(reply_bytes) + timeout,
                             on_error)


class Inbox:
    """Bytes received and not yet taken, one waiting reader, and why the link was lost."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._buffer = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self.lost: str | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _MAX_BUFFER:  # nobody reads: keep the newest bytes
            del self._buffer[: len(self._buffer) - _MAX_BUFFER]
        self._wake()

    def lose(self, reason: str) -> None:
        self.lost = reason
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def clear(self) -> None:
        self._buffer.clear()

    def reset(self) -> None:
        self._buffer.clear()
        self.lost = None
        self._wake()

    def _take(self, max_bytes: int) -> bytes:
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        return data

    async def take(self, timeout: float, max_bytes: int) -> bytes | None:
        """What has arrived, waiting up to ``timeout`` for the first byte; b"" on timeout,
        None when the link was lost (``lost`` says why)."""
        if self._buffer:
            return self._take(max_bytes)
        if self.lost is not None:
            return None
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        except TimeoutError:
            return b""
        finally:
            self._waiter = None
        if self._buffer:
            return self._take(max_bytes)
        return None if self.lost is not None else b""


class FdPort:
    """A device file driven through its descriptor: writes under ``add_writer``, reads kept
    by a reader registered from the first read until close. Subclasses open the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd_value: int | None = None
        self._inbox = Inbox(path)
        self._reader: tuple[asyncio.AbstractEventLoop, int] | None = None  # registered on

    @property
    def name(self) -> str:
        return self.path

    @property
    def is_open(self) -> bool:
        return self._fd_value is not None

    def _opened(self, fd: int) -> None:
        self._fd_value = fd
        self._inbox.reset()

    def _release(self, fd: int) -> None:
        """Close the descriptor (subclasses close what owns it)."""
        os.close(fd)

    def close(self) -> None:
        self._stop_reader()
        self._inbox.reset()
        if self._fd_value is not None:
            fd, self._fd_value = self._fd_value, None
            # Closing a device that vanished: nothing is left to release.
            with contextlib.suppress(OSError, serial.SerialException):
                self._release(fd)

    def _fd(self) -> int:
        if self._fd_value is None:
            raise SerialPortError(f"{self.path} is not open")
        return self._fd_value

    async def _writable(self, fd: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(fd, wake)
        try:
            async with asyncio.timeout(timeout):
                await ready
        except TimeoutError:
            return False
        finally:
            loop.remove_writer(fd)
        return True

    async def _write_all(self, data: bytes, timeout: float) -> None:
        fd = self._fd()
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                self.close()
                raise SerialPortError(f"write to {self.path} failed: {exc}") from exc
            left = deadline - time.monotonic()
            if left <= 0 or not await self._writable(fd, left):
                raise DeviceTimeout(
                    f"{self.path}: write timed out with {len(view)} of {len(data)} bytes unsent"
                )

    def _stop_reader(self) -> None:
        if self._reader is not None:
            loop, fd = self._reader
            self._reader = None
            if not loop.is_closed():
                loop.remove_reader(fd)

    def _on_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._stop_reader()
            self._inbox.lose(f"read from {self.path} failed: {exc} (device unplugged?)")
            return
        if not data:
            # Readable yet empty: the device went away (as pyserial reads it, too).
            self._stop_reader()
            self._inbox.lose(f"{self.path} reports data but returned none: disconnected?")
            return
        self._inbox.feed(data)

    async def read(self, timeout: float, max_bytes: int = 4096) -> bytes:
        """What has arrived, waiting up to ``timeout`` for the first byte; b"" on timeout.
        Raises :class:`SerialPortError` when the device went away."""
        fd = self._fd()
        if self._reader is None and self._inbox.lost is None:
            loop = asyncio.get_running_loop()
            loop.add_reader(fd, self._on_readable, fd)
            self._reader = (loop, fd)  # bytes already there: it fires at once
        data = await self._inbox.take(timeout, max_bytes)
        if data is None:
            reason = self._inbox.lost or f"{self.path} went away"
            self.close()
            raise SerialPortError(reason)
        return data

    def discard_input(self) -> None:
        """Drop bytes already received (a late reply to a request that timed out)."""
        self._inbox.clear()
        fd = self._fd()
        with contextlib.suppress(OSError):  # BlockingIOError included: nothing left
            while os.read(fd, 4096):
                pass


class AsyncSerial(FdPort):
    """One serial port (see the module docstring). ``async with`` it, or ``open``/``close``."""

    def __init__(
        self,
        port: str,
        line: SerialTiming,
        *,
        rtscts: bool = False,
        xonxoff: bool = False,
        rs485: Rs485Mode = "auto",
    ) -> None:
        if rs485 not in RS485_MODES:
            raise DeviceConfigError(f"rs485 must be one of {RS485_MODES}, got {rs485!r}")
        super().__init__(port)
        self.port = port
        self.line = line
        self.rs485 = rs485
        self._settings = {"rtscts": rtscts, "xonxoff": xonxoff}
        self._serial: serial.Serial | None = None
        self._line_free_at = 0.0  # monotonic time the last byte written leaves the UART

    @property
    def baudrate(self) -> int:
        return self.line.baud

    def wire_seconds(self, n_bytes: int) -> float:
        return self.line.transmit_seconds(n_bytes)

    async def open(self) -> None:
        self.open_now()

    def open_now(self) -> None:
        """Open the port (synchronously: pyserial's open does not block)."""
        try:
            port = serial.Serial(
                self.port,
                self.line.baud,
                bytesize=self.line.data_bits,
                parity=_PYSERIAL_PARITY[self.line.parity],
                stopbits=self.line.stop_bits,
                timeout=0,
                write_timeout=0,
                exclusive=True,
                **self._settings,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            gone = " (USB adapter unplugged?)" if not os.path.exists(self.port) else ""
            raise SerialPortError(f"cannot open {self.port}{gone}: {exc}") from exc
        self._serial = port
        self._line_free_at = 0.0
        self._opened(port.fd)
        try:
            if self.rs485 == "kernel":
                port.rs485_mode = serial.rs485.RS485Settings(
                    rts_level_for_tx=True, rts_level_for_rx=False
                )
            elif self.rs485 == "rts":
                self._set_rts(False)  # listen until we send
        except (serial.SerialException, OSError, ValueError) as exc:
            self.close()
            raise SerialPortError(
                f"{self.port} cannot do RS485 direction control {self.rs485!r} ({exc}); "
                'use an adapter that switches direction itself (rs485 = "auto")'
            ) from exc

    def _release(self, fd: int) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            port.close()

    def _set_rts(self, level: bool) -> None:
        """Drive RTS (the RS485 transceiver's direction) high to send, low to listen."""
        request = termios.TIOCMBIS if level else termios.TIOCMBIC
        try:
            fcntl.ioctl(self._fd(), request, struct.pack("I", termios.TIOCM_RTS))
        except OSError as exc:
            self.close()
            raise SerialPortError(f"{self.port}: cannot switch RTS: {exc}") from exc

    async def write(self, data: bytes, timeout: float) -> None:
        """Hand all of ``data`` to the driver within ``timeout`` or raise :class:`DeviceTimeout`.

        The bytes are then on their way, not on the wire: :meth:`drain` waits for that.
        """
        if self.rs485 == "rts":
            self._set_rts(True)
        await self._write_all(data, timeout)
        now = time.monotonic()
        self._line_free_at = max(now, self._line_free_at) + self.wire_seconds(len(data))

    def _output_queued(self) -> int:
        try:
            raw = fcntl.ioctl(self._fd(), termios.TIOCOUTQ, b"\0\0\0\0")
        except OSError:
            return 0  # a tty that cannot tell: the line model alone decides
        queued: int = struct.unpack("i", raw)[0]
        return queued

    async def drain(self, timeout: float) -> None:
        """Return once what was written has left the UART: its wire time at this baud rate,
        then the kernel's output queue empty (flow control may hold it). Raises
        :class:`DeviceTimeout` if it is still queued ``timeout`` after its wire time.
        In ``rts`` mode RTS drops here, so the device's answer can come in."""
        wait = self._line_free_at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        deadline = time.monotonic() + timeout
        while (queued := self._output_queued()) > 0:
            if time.monotonic() >= deadline:
                raise DeviceTimeout(f"{self.port}: {queued} bytes still queued (flow control?)")
            await asyncio.sleep(max(_OUTQ_POLL_S, self.wire_seconds(queued)))
        if self.rs485 == "rts":
            self._set_rts(False)

    async def __aenter__(self) -> AsyncSerial:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def serve_link(
    link: ByteLink,
    health: HealthTracker,
    step: Callable[[], Awaitable[None]],
    *,
    reopen_interval_s: float,
    on_open: Callable[[], None] = lambda: None,
) -> None:
    """The run loop of a driver that owns ``link``: open it (offline, with the reason, while it
    cannot be: unplugged, wrong name), then ``step`` over and over; when the link goes away
    mid-step, report it, close it and open it again every ``reopen_interval_s``."""
    word = "串口" if isinstance(link, AsyncSerial) else "端口"
    try:
        while True:
            stop_if_cancelled()
            if not link.is_open:
                try:
                    await link.open()
                except SerialPortError as exc:
                    health.set(HealthState.OFFLINE, f"{word}无法打开 {exc}"[:200])
                    await asyncio.sleep(reopen_interval_s)
                    continue
                log.info("device.port_open", device=health.current.device_id, port=link.name)
                on_open()
            try:
                await step()
            except SerialPortError as exc:
                health.set(HealthState.OFFLINE, f"{word}断开 {exc}"[:200])
                link.close()
                await asyncio.sleep(reopen_interval_s)
    finally:
        link.close()


__all__ = [
    "RS485_MODES",
    "AsyncSerial",
    "ByteLink",
    "FdPort",
    "Inbox",
    "Rs485Mode",
    "SerialPortError",
    "await_reply",
    "exchange",
    "serve_link",
]

"""A serial port for asyncio: pyserial configures the line, the event loop does the waiting.

pyserial opens the device (non-blocking, with an exclusive lock so a second
owner fails loudly) and sets baud rate, framing and flow control. Reads and
writes then go straight to its file descriptor under ``loop.add_reader`` /
``loop.add_writer``: no thread per call, and a timeout is an asyncio timeout,
so the driver task that owns the port can be cancelled at any point. The
reader stays registered from the first read until the port closes and keeps
what arrives in a buffer, so an exchange (a terminal poll, ten a second per
terminal) costs no epoll registration and unregistration and no empty read.
(pyserial's own non-blocking ``write`` spins on EAGAIN, hence ``os.write``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from types import TracebackType

import serial

from .base import DeviceError, DeviceTimeout

_MAX_BUFFER = 65536  # bytes kept while nobody reads


class SerialPortError(DeviceError, OSError):
    """The port cannot be opened, or it went away (USB adapter unplugged)."""


class AsyncSerial:
    """One open serial port. Use ``async with AsyncSerial(...)`` or ``open()``/``close()``."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        *,
        parity: str = serial.PARITY_NONE,
        stopbits: float = serial.STOPBITS_ONE,
        rtscts: bool = False,
        xonxoff: bool = False,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self._settings = {
            "parity": parity,
            "stopbits": stopbits,
            "rtscts": rtscts,
            "xonxoff": xonxoff,
        }
        self._serial: serial.Serial | None = None
        self._buffer = bytearray()  # read by the reader callback, not yet taken
        self._reader: tuple[asyncio.AbstractEventLoop, int] | None = None  # registered on
        self._waiter: asyncio.Future[None] | None = None
        self._lost: str | None = None  # why the reader found the port gone

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> None:
        try:
            self._serial = serial.Serial(
                self.port,
                self.baudrate,
                timeout=0,
                write_timeout=0,
                exclusive=True,
                **self._settings,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SerialPortError(f"cannot open {self.port}: {exc}") from exc

    def close(self) -> None:
        self._stop_reader()
        self._buffer.clear()
        self._lost = None
        if self._serial is not None:
            port, self._serial = self._serial, None
            # Closing a port that vanished: nothing is left to release.
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    def _fd(self) -> int:
        if self._serial is None:
            raise SerialPortError(f"{self.port} is not open")
        fd: int = self._serial.fd
        return fd

    async def _wait(self, fd: int, *, writable: bool, timeout: float) -> bool:
        """Wait until ``fd`` is readable (or writable); False on timeout."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        if writable:
            loop.add_writer(fd, wake)
        else:
            loop.add_reader(fd, wake)
        try:
            async with asyncio.timeout(timeout):
                await ready
        except TimeoutError:
            return False
        finally:
            if writable:
                loop.remove_writer(fd)
            else:
                loop.remove_reader(fd)
        return True

    async def write(self, data: bytes, timeout: float) -> None:
        """Hand all of ``data`` to the driver within ``timeout`` or raise :class:`DeviceTimeout`."""
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
                raise SerialPortError(f"write to {self.port} failed: {exc}") from exc
            left = deadline - time.monotonic()
            if left <= 0 or not await self._wait(fd, writable=True, timeout=left):
                raise DeviceTimeout(
                    f"{self.port}: write timed out with {len(view)} of {len(data)} bytes unsent"
                )

    def _stop_reader(self) -> None:
        if self._reader is not None:
            loop, fd = self._reader
            self._reader = None
            if not loop.is_closed():
                loop.remove_reader(fd)
        self._wake_waiter()

    def _wake_waiter(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _on_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost = f"read from {self.port} failed: {exc}"
            self._stop_reader()
            return
        if not data:
            # Readable yet empty: the device went away (as pyserial reads it, too).
            self._lost = f"{self.port} reports data but returned none: disconnected?"
            self._stop_reader()
            return
        self._buffer += data
        if len(self._buffer) > _MAX_BUFFER:  # nobody reads: keep the newest bytes
            del self._buffer[: len(self._buffer) - _MAX_BUFFER]
        self._wake_waiter()

    def _take(self, max_bytes: int) -> bytes:
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        return data

    def _check_lost(self) -> None:
        if self._lost is not None:
            reason = self._lost
            self.close()
            raise SerialPortError(reason)

    async def read(self, timeout: float, max_bytes: int = 4096) -> bytes:
        """What has arrived, waiting up to ``timeout`` for the first byte; b"" on timeout."""
        fd = self._fd()
        if self._buffer:
            return self._take(max_bytes)
        self._check_lost()
        if self._reader is None:
            loop = asyncio.get_running_loop()
            loop.add_reader(fd, self._on_readable, fd)
            self._reader = (loop, fd)  # bytes already there: it fires at once
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
        self._check_lost()
        return b""

    def discard_input(self) -> None:
        """Drop bytes already received (a late reply to a request that timed out)."""
        self._buffer.clear()
        fd = self._fd()
        with contextlib.suppress(OSError):  # BlockingIOError included: nothing left
            while os.read(fd, 4096):
                pass

    async def __aenter__(self) -> AsyncSerial:
        self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["AsyncSerial", "SerialPortError"]

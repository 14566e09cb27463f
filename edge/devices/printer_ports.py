"""The three ways a ticket printer is attached, behind one :class:`~.serial_port.ByteLink`.

Thermal printers in Chinese halls are mostly USB, some network, fewer serial:

=========================  ==========================  ==================================
``port`` in the config     transport                   status (``DLE EOT``) comes back
=========================  ==========================  ==================================
``/dev/usb/lp0``           Linux ``usblp`` (USB class   read from the same device file
                           7, bidirectional)            (the printer's bulk-in endpoint)
``tcp://10.1.2.3:9100``    raw TCP, port 9100           on the same connection
``/dev/serial/by-id/...``  RS232 / USB-serial           on the line (after the ticket's
(anything else)                                         wire time: ``AsyncSerial``)
=========================  ==========================  ==================================

:class:`UsbPrinterPort` opens the ``usblp`` character device without termios
(it is not a tty): a ``write`` returns when the printer has taken the bytes
(the kernel blocks, or says EAGAIN to a non-blocking writer, while the printer
is busy or has no paper), and a ``read`` returns what the printer sent, so its
status answers. USB 2.0 moves a ticket in well under a millisecond: there is
no wire time to wait for. :class:`TcpPrinterPort` keeps one connection to the
printer's raw port open (most printers serve one at a time) and opens it
again after an error.
"""

from __future__ import annotations

import asyncio
import os
from typing import Final
from urllib.parse import urlsplit

from firmware_protocols.line import SerialTiming

from .base import DeviceConfigError, DeviceTimeout
from .serial_port import AsyncSerial, ByteLink, FdPort, Inbox, SerialPortError

USBLP_PREFIX: Final = "/dev/usb/lp"
TCP_SCHEME: Final = "tcp"
RAW_PRINT_PORT: Final = 9100
CONNECT_TIMEOUT_S: Final = 3.0


class UsbPrinterPort(FdPort):
    """A printer on the Linux ``usblp`` driver (``/dev/usb/lp0``)."""

    async def open(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY)
        except FileNotFoundError as exc:
            raise SerialPortError(f"{self.path} does not exist (USB printer unplugged?)") \
                from exc
        except OSError as exc:
            raise SerialPortError(f"cannot open {self.path}: {exc}") from exc
        self._opened(fd)

    async def write(self, data: bytes, timeout: float) -> None:
        """Return once the printer took ``data`` (the kernel hands it over USB)."""
        await self._write_all(data, timeout)

    async def drain(self, timeout: float) -> None:
        """Nothing to wait for: a completed write is at the printer."""

    def wire_seconds(self, n_bytes: int) -> float:
        return 0.0


class _Stream(asyncio.Protocol):
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.transport: asyncio.Transport | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.inbox.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.inbox.lose(f"{self.inbox.name}: connection closed ({exc or 'by the printer'})")
        self._can_write.set()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def writable(self) -> None:
        await self._can_write.wait()


class TcpPrinterPort:
    """A network printer's raw port (``tcp://host:9100``)."""

    def __init__(self, host: str, port: int = RAW_PRINT_PORT) -> None:
        self.host = host
        self.port = port
        self._inbox = Inbox(self.name)
        self._stream: _Stream | None = None

    @property
    def name(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._inbox.reset()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, stream = await loop.create_connection(
                    lambda: _Stream(self._inbox), self.host, self.port
                )
        except (OSError, TimeoutError) as exc:
            raise SerialPortError(f"cannot connect to {self.name}: {exc!r}") from exc
        self._stream = stream

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None and stream.transport is not None:
            stream.transport.abort()
        self._inbox.reset()

    def _live(self) -> _Stream:
        stream = self._stream
        if stream is None or stream.transport is None:
            raise SerialPortError(f"{self.name} is not connected")
        if self._inbox.lost is not None or stream.transport.is_closing():
            reason = self._inbox.lost or f"{self.name}: connection closing"
            self.close()
            raise SerialPortError(reason)
        return stream

    async def write(self, data: bytes, timeout: float) -> None:
        stream = self._live()
        assert stream.transport is not None
        stream.transport.write(data)
        await self.drain(timeout)

    async def drain(self, timeout: float) -> None:
        """Until the kernel took the bytes (the printer's TCP window is open)."""
        stream = self._live()
        try:
            async with asyncio.timeout(timeout):
                await stream.writable()
        except TimeoutError:
            raise DeviceTimeout(f"{self.name}: the printer takes no data") from None
        self._live()

    async def read(self, timeout: float, max_bytes: int = 4096) -> bytes:
        self._live()
        data = await self._inbox.take(timeout, max_bytes)
        if data is None:
            reason = self._inbox.lost or f"{self.name} closed"
            self.close()
            raise SerialPortError(reason)
        return data

    def discard_input(self) -> None:
        self._inbox.clear()

    def wire_seconds(self, n_bytes: int) -> float:
        return 0.0


def printer_port(
    port: str, line: SerialTiming, *, rtscts: bool = False, xonxoff: bool = False
) -> ByteLink:
    """The transport a ``port`` setting names (see the module docstring)."""
    if port.startswith(f"{TCP_SCHEME}://"):
        address = urlsplit(port)
        if not address.hostname or address.path not in ("", "/"):
            raise DeviceConfigError(f"printer port {port!r}: expected tcp://host[:port]")
        try:
            number = address.port or RAW_PRINT_PORT
        except ValueError:
            raise DeviceConfigError(f"printer port {port!r}: bad port number") from None
        return TcpPrinterPort(address.hostname, number)
    if port.startswith(USBLP_PREFIX):
        return UsbPrinterPort(port)
    return AsyncSerial(port, line, rtscts=rtscts, xonxoff=xonxoff)


__all__ = [
    "RAW_PRINT_PORT",
    "TcpPrinterPort",
    "UsbPrinterPort",
    "printer_port",
]

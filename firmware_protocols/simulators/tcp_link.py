"""A TCP port standing in for a network printer's raw port (9100), for a ``PtyDevice``.

The daemon connects to :attr:`TcpServerLink.port_name` (``tcp://127.0.0.1:PORT``)
as it would to a printer on the hall's network; the simulator reads and writes
the accepted connection. Like most network printers it serves one client at a
time: a new connection replaces the old one (a client that vanished without
closing). :meth:`TcpServerLink.drop_client` is the printer restarting.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from types import TracebackType

from firmware_protocols.line import SerialTiming


class TcpServerLink:
    """A listening socket on the loopback interface and its current connection."""

    timing: SerialTiming | None = None  # a LAN: no line time worth modelling

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = socket.create_server((host, port))
        self._server.setblocking(False)
        self.host, self.port = self._server.getsockname()[:2]
        self.port_name = f"tcp://{self.host}:{self.port}"
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.connections = 0  # accepted so far

    @property
    def closed(self) -> bool:
        return self._closed

    def read(
        self, timeout: float | None = 0.1, max_bytes: int = 4096, *, wake_fd: int | None = None
    ) -> bytes:
        """Bytes the client sent, or b"" when none came within ``timeout`` (accepting a new
        client on the way, or returning early when ``wake_fd`` became readable)."""
        if self._closed:
            return b""
        with self._lock:
            conn = self._conn
        fds: list[int | socket.socket] = [self._server]
        if conn is not None:
            fds.append(conn)
        if wake_fd is not None:
            fds.append(wake_fd)
        ready, _, _ = select.select(fds, [], [], timeout)
        if self._server in ready:
            try:
                accepted, _ = self._server.accept()
            except (BlockingIOError, OSError):
                return b""
            with self._lock:
                old, self._conn = self._conn, accepted
                self.connections += 1
            if old is not None:
                old.close()
            return b""
        if conn is None or conn not in ready:
            return b""
        try:
            data = conn.recv(max_bytes)
        except OSError:
            data = b""
        if not data:  # the client closed
            with self._lock:
                if self._conn is conn:
                    self._conn = None
            conn.close()
        return data

    def write(self, data: bytes) -> None:
        with self._lock:
            conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError):  # the client went away: nobody to tell
                conn.sendall(data)

    def drop_client(self) -> None:
        """Close the current connection (the printer restarts)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.drop_client()
            self._server.close()

    def __enter__(self) -> TcpServerLink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["TcpServerLink"]

"""A tiny real HTTP server on loopback that records every request (webhook and Influx tests)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class CapturedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Capture:
    url: str
    requests: list[CapturedRequest] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    """Status codes to answer with, in order; 204 once exhausted."""
    csv_reply: bytes = b""
    """Body of a 200 ``text/csv`` answer to every request (an Influx query's result)."""


@contextmanager
def capture_server() -> Iterator[Capture]:
    lock = threading.Lock()
    capture = Capture(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with lock:
                capture.requests.append(
                    CapturedRequest("POST", self.path, dict(self.headers.items()), body)
                )
                status = capture.statuses.pop(0) if capture.statuses else 204
                body = capture.csv_reply
            if body:
                self.send_response(200)
                self.send_header("Content-Type", "text/csv; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    capture.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="capture-http", daemon=True)
    thread.start()
    try:
        yield capture
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

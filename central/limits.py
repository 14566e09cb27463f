"""The bounds the central puts on its HTTP callers (see ``docs/RELIABILITY.md``).

::

    HostAllowlist(app, hosts)     400 for a Host header not in ``http_allowed_hosts``; the
                                  public host of the progress pages gets those pages only
                                  (404 for anything else: no dashboards, no API)
    BodyLimit(app, max_bytes)     413 for a body over ``http_max_body_bytes``, before it is read
    LoginThrottle                 login attempts per client address -> 429 with Retry-After
    StreamQuota                   open live streams per session and in all -> 429
    ProgressLimits                the public progress pages: requests per ticket, unknown
                                  tokens per address, open streams per ticket and in all
    cross_origin(request)         why a browser form post comes from another site, or None

Commands per site are bounded by the service (:meth:`central.service.CentralService.
send_command`), from the commands table, so that every replica counts the same.
The two middlewares are plain ASGI and run before routing, authentication and
any body parsing: an unauthenticated caller cannot make the process read, parse
or hold a large body.
"""

from __future__ import annotations

import contextlib
import math
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Final

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central.buckets import Buckets
from central.errors import BadRequest, PayloadTooLarge, RequestError, TooManyRequests

log = structlog.get_logger(__name__)


def refusal(exc: RequestError, *, close: bool = False) -> JSONResponse:
    """The JSON answer of a refused request: its status, its headers, ``{"detail": ...}``.

    ``close`` ends the connection after it (the rest of an unread body is not drained).
    """
    headers = dict(exc.headers or {})
    if close:
        headers["Connection"] = "close"
    return JSONResponse({"detail": str(exc)}, status_code=exc.status_code, headers=headers)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


# --------------------------------------------------------------------------- middleware


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether a Host header (port ignored) matches the allowlist: names, ``*.suffix``, ``*``."""
    name = host.strip().lower()
    if name.startswith("["):  # [v6]:port
        name = name[1 : name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if not name:
        return False
    for entry in allowed:
        if entry == "*" or entry == name:
            return True
        if entry.startswith("*.") and name.endswith(entry[1:]):
            return True
    return False


PUBLIC_PATHS: Final = ("/q/", "/static/progress.")
"""What the progress pages' public host serves: the pages and their script and style."""


class HostAllowlist:
    """400 unless the Host header names this central (DNS rebinding, host-header poisoning).

    ``public_hosts`` (the host of ``progress_public_url``) are answered for the progress
    pages only: the citizens' phones reach the central there, the dashboards never do.
    """

    def __init__(self, app: ASGIApp, hosts: tuple[str, ...],
                 public_hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        self.hosts = hosts
        self.public_hosts = public_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = (_header(scope, b"host") or b"").decode("latin-1")
        if host_allowed(host, self.hosts):
            await self.app(scope, receive, send)
            return
        if self.public_hosts and host_allowed(host, self.public_hosts):
            if str(scope.get("path", "")).startswith(PUBLIC_PATHS):
                await self.app(scope, receive, send)
                return
            await refusal(NotFoundHere(scope.get("path", "")[:100]), close=False)(
                scope, receive, send)
            return
        log.warning("http.host_refused", host=host[:100], path=scope.get("path", "")[:200])
        refused = BadRequest(f"unknown host {host[:100]!r}: not in this central's "
                             "http_allowed_hosts")  # fmt: skip
        await refusal(refused, close=True)(scope, receive, send)


class BodyLimit:
    """413 for a request body over ``max_bytes``, decided before the app reads any of it.

    A declared ``Content-Length`` over the limit is refused at once; a chunked body
    is read up to the limit (never more) and handed on whole, or refused.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, scope: Scope, size: str) -> JSONResponse:
        log.warning("http.body_refused", size=size, path=scope.get("path", "")[:200])
        return refusal(PayloadTooLarge(f"request body {size}, limit {self.max_bytes} bytes "
                                       "(http_max_body_bytes)"), close=True)  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await self._too_large(scope, f"of {int(declared)} bytes")(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server holds the body to its length
            return
        if _header(scope, b"transfer-encoding") is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._too_large(scope, "over the limit")(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        whole: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return whole.pop() if whole else await receive()

        await self.app(scope, replay, send)


# --------------------------------------------------------------------------- logins, streams


class LoginThrottle:
    """Login attempts per client address: ``burst`` at once, then ``per_min`` a minute.

    Every attempt takes a token before the token is checked, so parallel guesses
    are counted too; a staff member who mistypes a few times is not locked out.
    Behind a reverse proxy the address is the forwarded one (uvicorn trusts
    ``X-Forwarded-For`` from the proxy's address, 127.0.0.1 by default).
    """

    def __init__(self, per_min: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self._buckets = Buckets(per_min / 60.0, burst)
        self._clock = clock

    def attempt(self, client: str) -> None:
        """Count one attempt from ``client``; :class:`TooManyRequests` beyond the limit."""
        wait = self._buckets.take(client, self._clock())
        if wait:
            log.warning("web.login_throttled", client=client, retry_after_s=math.ceil(wait))
            raise TooManyRequests("too many login attempts from this address",
                                  retry_after_s=wait)  # fmt: skip


class NotFoundHere(RequestError):
    """A path the progress pages' public host does not serve."""

    status_code = 404

    def __init__(self, path: str) -> None:
        super().__init__(f"{path!r} is not served on this host (progress pages only)")


class ProgressLimits:
    """The bounds of the public progress pages (``progress_*`` settings).

    Per ticket, not per address: a hall's Wi-Fi or a carrier's NAT puts hundreds of
    phones behind one address, while a token (unguessable) is one citizen's. Unknown
    tokens are counted per address, so that guessing is slow as well as hopeless.
    """

    def __init__(self, requests_per_min: float, requests_burst: int, misses_per_min: float,
                 misses_burst: int, streams_per_ticket: int, streams_max: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._requests = Buckets(requests_per_min / 60.0, requests_burst)
        self._misses = Buckets(misses_per_min / 60.0, misses_burst)
        self._streams_per_ticket = streams_per_ticket
        self.streams_max = streams_max
        self._streams: dict[str, int] = {}
        self.streams = 0  # open in all
        self._clock = clock

    def request(self, ticket: str) -> None:
        """One load, poll or stream opening of ``ticket``'s page (429 beyond the rate)."""
        wait = self._requests.take(ticket, self._clock())
        if wait:
            raise TooManyRequests("this progress page is asked for too often",
                                  retry_after_s=wait)

    def miss(self, client: str) -> None:
        """``client`` asked for a token that opens nothing (429 beyond the rate)."""
        wait = self._misses.take(client, self._clock())
        if wait:
            log.warning("progress.misses_throttled", client=client)
            raise TooManyRequests("too many unknown progress pages from this address",
                                  retry_after_s=wait)

    def can_stream(self, ticket: str) -> bool:
        """Whether one more live stream of ``ticket`` fits (else the page polls)."""
        return (self._streams.get(ticket, 0) < self._streams_per_ticket
                and self.streams < self.streams_max)

    @contextlib.contextmanager
    def stream(self, ticket: str) -> Iterator[None]:
        """Count one open stream of ``ticket`` while the block runs."""
        self._streams[ticket] = self._streams.get(ticket, 0) + 1
        self.streams += 1
        try:
            yield
        finally:
            self.streams -= 1
            left = self._streams[ticket] - 1
            if left:
                self._streams[ticket] = left
            else:
                del self._streams[ticket]


class StreamQuota:
    """Open live streams: at most ``per_session`` per dashboard session, ``total`` in all."""

    def __init__(self, per_session: int, total: int) -> None:
        self.per_session = per_session
        self.total = total
        self._open: dict[str, int] = {}

    @property
    def open(self) -> int:
        return sum(self._open.values())

    def check(self, session: str) -> None:
        """:class:`TooManyRequests` unless ``session`` may open one more stream now."""
        mine = self._open.get(session, 0)
        if mine >= self.per_session:
            raise TooManyRequests(
                f"this session already has {mine} live streams open "
                "(sse_streams_per_session); close a tab",
                retry_after_s=10,
            )
        if self.open >= self.total:
            log.warning("web.streams_full", open=self.open)
            raise TooManyRequests(
                "the central has as many live streams open as it serves (sse_streams_max)",
                retry_after_s=10,
            )

    @contextlib.contextmanager
    def hold(self, session: str) -> Iterator[None]:
        """Count one open stream of ``session`` while the block runs (after :meth:`check`;
        the stream itself holds it, so a response never started holds nothing)."""
        self._open[session] = self._open.get(session, 0) + 1
        try:
            yield
        finally:
            left = self._open[session] - 1
            if left:
                self._open[session] = left
            else:
                del self._open[session]


def cross_origin(request: Request) -> str | None:
    """Why a browser request comes from another site (login CSRF), or None if it does not.

    Browsers mark a cross-site form post with ``Sec-Fetch-Site`` and send its
    ``Origin``; scripts and curl send neither and are not a CSRF risk. Ports are
    not compared: a reverse proxy's ``Host`` may drop the one the browser used.
    """
    fetch_site = request.headers.get("sec-fetch-site", "")
    if fetch_site in ("cross-site", "same-site"):
        return f"Sec-Fetch-Site: {fetch_site}"
    origin = request.headers.get("origin")
    if origin is None:
        return None
    own = urllib.parse.urlsplit(f"//{request.headers.get('host', '')}").hostname
    theirs = urllib.parse.urlsplit(origin).hostname if origin != "null" else None
    if theirs is None or theirs != own:
        return f"Origin {origin[:100]!r}"
    return None


__all__ = [
    "PUBLIC_PATHS",
    "BodyLimit",
    "HostAllowlist",
    "LoginThrottle",
    "NotFoundHere",
    "ProgressLimits",
    "StreamQuota",
    "cross_origin",
    "host_allowed",
    "refusal",
]

"""Live updates of the dashboards: server-sent events, fed by the read model.

::

    GET /live/fleet?scope=     changed tiles from the one LiveHub of the process
    GET /live/sites/{id}       the site page's live part, re-rendered when it changed
    GET /live/alarms           the alarms table, re-rendered when it changed

The streams need a dashboard session (a bearer header is refused: browsers
cannot send one on an EventSource, and scripts should use the REST API). An
open stream checks its session once a minute (which also keeps it from going
idle: an open page is in use) and ends when the session has ended. A town's
account gets its towns' sites only, on every stream.

The fleet stream is fed by one :class:`LiveHub` per process that polls the
database once per interval and pushes only what changed in each stream's scope
(every site, the towns of a province, or one town's sites), so 20,000 sites
cost one query per second however many dashboards are open; it works whether
ingest runs in this process or in another replica (a second light query reads
the few sites whose software or config drifts). The hub's latest snapshot is
also what the fleet page renders from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from central.access import session_principal
from central.auth import SESSION_COOKIE, Principal
from central.context import central_of
from central.errors import AuthError, Unauthenticated
from central.queries import ReadModel
from central.views import Health
from central.web.fleet import ALL, FleetSnapshot, count_tiles, live_messages, live_scope
from central.web.render import chrome, language, render

log = structlog.get_logger(__name__)

LIVE_INTERVAL_S: Final = 1.0
KEEPALIVE_S: Final = 15.0


REGISTRY_REFRESH_S: Final = 60.0
"""The hub re-reads names and towns this often (at once when a site appears or goes)."""


@dataclass
class LiveHub:
    """Polls the fleet's tile states, keeps the latest :class:`FleetSnapshot`, and fans the
    changes out to every open fleet stream, each in its scope (:func:`live_messages`)."""

    read: ReadModel
    interval_s: float = LIVE_INTERVAL_S
    _snapshot: FleetSnapshot | None = None
    _registry_read_at: float = 0.0
    _subscribers: dict[asyncio.Queue[str], tuple[str, frozenset[str] | None]] = field(
        default_factory=dict)
    """Each stream's scope and the towns of its account (``None``: the whole city)."""
    _task: asyncio.Task[None] | None = None

    def snapshot(self) -> dict[str, tuple[Health, int]]:
        """Health and active-alarm count of every site (one sites query, one alarms query)."""
        return self.read.tile_states()

    def fleet(self) -> FleetSnapshot:
        """The latest snapshot (the page's source at province scale); read now if none yet."""
        if self._snapshot is not None:
            return self._snapshot
        return FleetSnapshot(self.read.tile_states(), self.read.fleet_registry(),
                             self.read.drift_states())  # fmt: skip

    @staticmethod
    def counts(tiles: Iterable[tuple[str, int]]) -> dict[str, int]:
        return count_tiles(tiles)

    def _next_snapshot(self) -> FleetSnapshot:
        """Runs in a worker thread: the tile states and drift, and the registry when it may
        have moved."""
        tiles = self.read.tile_states()
        drift = self.read.drift_states()
        previous = self._snapshot
        now = time.monotonic()
        if (previous is None or now - self._registry_read_at > REGISTRY_REFRESH_S
                or len(tiles) != len(previous.registry)
                or not tiles.keys() <= previous.registry.keys()):  # fmt: skip
            self._registry_read_at = now
            return FleetSnapshot(tiles, self.read.fleet_registry(), drift)
        return FleetSnapshot(tiles, previous.registry, drift)

    async def poll_once(self) -> None:
        after = await run_in_threadpool(self._next_snapshot)
        before, self._snapshot = self._snapshot, after
        if not self._subscribers:
            return
        wanted: dict[frozenset[str] | None, set[str]] = {}
        for scope, towns in self._subscribers.values():
            wanted.setdefault(towns, set()).add(scope)
        at = int(time.time() * 1000)  # lets a page measure how far behind it is
        framed: dict[tuple[str, frozenset[str] | None], str] = {}
        for towns, scopes in wanted.items():
            restricted = before.restricted(towns) if before is not None else None
            messages = live_messages(restricted, after.restricted(towns), scopes)
            for scope, body in messages.items():
                framed[(scope, towns)] = sse("tiles", {**body, "at": at})
        if not framed:
            return
        for queue, key in list(self._subscribers.items()):
            message = framed.get(key)
            if message is None:
                continue
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # a stalled client: drop it, its page reconnects
                self._subscribers.pop(queue, None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.poll_once()
            except Exception as exc:  # a database hiccup must not end live updates
                log.warning("live.poll_failed", error=str(exc))
            # A huge fleet slows the poll: keep it under a third of one core.
            await asyncio.sleep(max(self.interval_s, 2 * (loop.time() - started)))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="central-live-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.contextmanager
    def subscribe(self, scope: str = ALL,
                  towns: frozenset[str] | None = None) -> Iterator[asyncio.Queue[str]]:  # fmt: skip
        """A queue of this scope's ``tiles`` events (see :func:`live_messages`), of the
        sites of ``towns`` only when given (a town's account)."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=100)
        self._subscribers[queue] = (live_scope(scope), towns)
        try:
            yield queue
        finally:
            self._subscribers.pop(queue, None)


def sse(event: str, data: Any) -> str:
    """One server-sent event; JSON data on one line, or HTML split into ``data:`` lines."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    lines = "".join(f"data: {line}\n" for line in text.splitlines() or [""])
    return f"event: {event}\n{lines}\n"


def hub_of(request: Request) -> LiveHub:
    hub: LiveHub = request.app.state.live_hub
    return hub


def _stream_principal(request: Request) -> Principal:
    """The session's principal; 401 without one, 429 when the session's streams are full."""
    if request.headers.get("authorization"):
        raise Unauthenticated("live streams need a dashboard session, not a bearer token")
    principal = session_principal(request)
    central_of(request).streams.check(request.cookies[SESSION_COOKIE])
    return principal


SESSION_CHECK_S: Final = 60.0
"""An open stream re-reads its session this often (and so keeps it from going idle)."""


async def _stream(
    request: Request, produce: Callable[[], AsyncIterator[str]]
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    checked = loop.time()
    with central_of(request).streams.hold(request.cookies[SESSION_COOKIE]):
        yield b"retry: 2000\n\n"
        async for chunk in produce():
            if await request.is_disconnected():
                break
            if loop.time() - checked >= SESSION_CHECK_S:
                checked = loop.time()
                try:
                    await run_in_threadpool(session_principal, request)
                except AuthError:  # logged out, expired or disabled: the page goes to login
                    yield b"event: ended\ndata: {}\n\n"
                    break
            yield chunk.encode("utf-8")


def _sse_response(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


router = APIRouter(include_in_schema=False)


@router.get("/live/fleet")
async def live_fleet(request: Request, scope: str = ALL) -> StreamingResponse:
    """Changed tiles once per hub poll: every site (``all``), the province's towns
    (``towns``) or one town's sites (``town:<name>``), as the page shows them."""
    principal = _stream_principal(request)
    hub = hub_of(request)

    async def produce() -> AsyncIterator[str]:
        with hub.subscribe(scope, principal.towns) as queue:
            yield sse("hello", {"interval_s": hub.interval_s})
            while True:
                try:
                    yield await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"

    return _sse_response(_stream(request, produce))


def _fragment_stream(request: Request, fragment: Callable[[], str]) -> StreamingResponse:
    """Re-render ``fragment`` every hub interval; send it as a ``live`` event when it changed."""
    interval = hub_of(request).interval_s

    async def produce() -> AsyncIterator[str]:
        last = ""
        idle = 0.0
        while True:
            html = await run_in_threadpool(fragment)
            if html != last:
                last = html
                idle = 0.0
                yield sse("live", html)
            elif idle >= KEEPALIVE_S:
                idle = 0.0
                yield ": keepalive\n\n"
            await asyncio.sleep(interval)
            idle += interval

    return _sse_response(_stream(request, produce))


@router.get("/live/sites/{site_id}")
async def live_site(request: Request, site_id: str) -> StreamingResponse:
    principal = _stream_principal(request)
    central = central_of(request)
    lang = language(request)
    read = central.read_as(principal)
    await run_in_threadpool(read.require_site, site_id)  # 404 or 403 before streaming

    def fragment() -> str:
        detail, commands = read.site_live(site_id, central.now())
        return render("_site_live.html", **chrome(lang, principal), site=detail,
                      service_names=detail.service_names, commands=commands)  # fmt: skip

    return _fragment_stream(request, fragment)


@router.get("/live/alarms")
async def live_alarms(request: Request) -> StreamingResponse:
    principal = _stream_principal(request)
    central = central_of(request)
    lang = language(request)

    def fragment() -> str:
        board = central.read_as(principal).alarm_board(central.now())
        return render("_alarms_live.html", **chrome(lang, principal), active=board.active,
                      recent=board.recent, names=board.names)  # fmt: skip

    return _fragment_stream(request, fragment)


__all__ = [
    "KEEPALIVE_S",
    "LIVE_INTERVAL_S",
    "REGISTRY_REFRESH_S",
    "LiveHub",
    "hub_of",
    "router",
    "sse",
]

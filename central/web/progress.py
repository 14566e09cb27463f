"""The citizens' progress pages: public, no login, on a phone in a hall.

::

    GET /q/{token}          the page (HTML; works without script, refreshed every 30 s)
    GET /q/{token}/state    what it shows, as JSON (the script's polling fallback)
    GET /q/{token}/live     the same, as server-sent events, one per change

A ticket's QR opens ``{progress_public_url}/q/{token}``. Unknown tokens answer 404
(counted per client address: :class:`central.limits.ProgressLimits`), a token past
the end of its ticket's day 410; requests per ticket and open streams are bounded,
and a stream refused for the quota makes the page poll. Nothing personal is on the
page: the number, the service, the hall, the queue.

The wording of a page is put together here (:func:`ticket_page`), from the site's
latest ``progress`` held by :class:`central.progress.ProgressHub`; opening a page
reads one ``ticket_links`` row (cached), and a live page then reads nothing.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from central import stats
from central.context import Central, central_of
from central.errors import NotFound, RequestError, TooManyRequests
from central.progress import (
    LinkInfo,
    Outcome,
    PageState,
    SiteProgress,
    of_today,
    token_digest,
)
from central.web.live import sse
from central.web.render import language, render
from central.web.text import translator
from firmware_protocols import mqtt_messages as mm

NEAR: Final = 3
"""3 or fewer people ahead: the page alerts (once)."""
LONG_WAIT_S: Final = 4 * 3600
"""The simulator's horizon: a wait this long is shown as "over 4 hours"."""
KEEPALIVE_S: Final = 25.0
"""A live page re-reads the hub at least this often (a stale site turns "not live")."""
OUTCOME_TTL_S: Final = 30.0
LINK_CACHE: Final = 50_000
_TOKEN_RE: Final = re.compile(mm.PROGRESS_TOKEN_PATTERN)
# The page holds an unguessable token in its URL: no referrer leaves it, nothing caches it.
HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}

Alert = Literal["near", "called"]


class UnknownPage(NotFound):
    """No ticket has this progress token."""

    what = "progress page"

    def __str__(self) -> str:
        return "no progress page with this token"


class ExpiredPage(RequestError):
    """The ticket's day is over: its page is gone."""

    status_code = 410


@dataclass(frozen=True, slots=True)
class TicketPage:
    """What a ticket's page shows; :meth:`as_json` is what the script receives."""

    state: PageState
    number: str
    service: str
    site: str
    headline: str
    detail: str
    advice: str | None
    notice: str | None
    ahead: int | None
    window: int | None
    wait_minutes: tuple[int, int] | None
    live: bool
    status: str
    updated: str | None
    alert: Alert | None

    def as_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def ticket_page(link: LinkInfo, site: SiteProgress | None, lang: str, now: datetime,
                stale_s: float, outcome: Outcome | None) -> TicketPage:
    """What the ticket's page says now (the one place its wording is put together).

    Live only while the site is online and its message younger than ``stale_s``; else
    the last known state with its time, the wait as it was then (not counted down).
    """
    t = translator(lang)
    now_s = now.timestamp()
    message = None if site is None else site.message
    today = site is not None and of_today(link, site)
    live = (today and site is not None and site.online
            and now_s - site.received_at <= stale_s)
    names = {} if message is None else message.services
    service = names.get(link.service, link.service)
    state: PageState = "unknown"
    ahead = window = None
    wait: tuple[int, int] | None = None
    if today and site is not None:
        if (entry := site.waiting.get(link.ticket)) is not None:
            state = "requeued" if entry.requeued else "waiting"
            ahead = entry.ahead
            service = names.get(entry.service, entry.service)  # transferred: its new one
            if entry.p50_s is not None and entry.p90_s is not None:
                elapsed = max(0.0, now_s - site.received_at) if live else 0.0
                wait = (_minutes(entry.p50_s - elapsed), _minutes(entry.p90_s - elapsed))
        elif (called := site.called.get(link.ticket)) is not None:
            state = "serving" if called.serving else "called"
            window = called.window
        elif (ended := site.ended.get(link.ticket)) is not None:
            state, window = ended.outcome, ended.window
    if state == "unknown" and outcome is not None:
        state, window = outcome.state, outcome.window
    headline, detail, advice = _words(t, state, ahead, window, wait)
    notice = None
    if message is not None and message.issuing == "stopped" and message.notice:
        notice = t("q_stopped").format(notice=message.notice)
    updated = None
    if site is not None and message is not None:
        updated = datetime.fromtimestamp(site.received_at, stats.BUSINESS_TZ).strftime(
            "%H:%M:%S")
    if live:
        status = t("q_live")
    elif message is None:
        status = t("q_no_news")
    else:
        status = t("q_last_known").format(time=updated)
    alert: Alert | None = None
    if live and state == "called":
        alert = "called"
    elif live and state in ("waiting", "requeued") and ahead is not None and ahead <= NEAR:
        alert = "near"
    return TicketPage(state, link.ticket, service, link.site_name, headline, detail, advice,
                      notice, ahead, window, wait, live, status, updated, alert)


def _minutes(seconds: float) -> int:
    return max(0, math.ceil(seconds / 60))


def _words(t: Callable[[str], str], state: PageState, ahead: int | None, window: int | None,
           wait: tuple[int, int] | None) -> tuple[str, str, str | None]:
    """(headline, detail, what to do) of a state."""
    if state in ("waiting", "requeued"):
        headline = t("q_next") if ahead == 0 else t("q_ahead").format(ahead=ahead)
        if wait is None:
            detail = t("q_wait_unknown")
        elif wait[1] * 60 >= LONG_WAIT_S:
            detail = t("q_wait_long").format(hours=LONG_WAIT_S // 3600)
        elif wait[1] == 0:
            detail = t("q_wait_soon")
        elif wait[0] == wait[1]:
            detail = t("q_wait_about").format(minutes=wait[0])
        else:
            detail = t("q_wait_range").format(low=wait[0], high=wait[1])
        return headline, detail, t("q_requeued_advice") if state == "requeued" else None
    if state == "called":
        return t("q_called").format(window=window), t("q_called_detail"), None
    if state == "serving":
        return t("q_serving").format(window=window), "", None
    if state == "done":
        return t("q_done"), "", None
    if state == "no_show":
        return t("q_no_show"), "", t("q_no_show_advice")
    if state == "cancelled":
        return t("q_cancelled"), "", None
    return t("q_unknown"), "", t("q_unknown_advice")


class PageReader:
    """Finds a token's ticket (a cache in front of the database) and puts its page
    together; one per app, on the event loop."""

    def __init__(self, central: Central) -> None:
        self._central = central
        self._links: OrderedDict[str, LinkInfo] = OrderedDict()
        self._outcomes: dict[str, tuple[float, Outcome | None]] = {}

    async def link(self, request: Request, token: str) -> LinkInfo:
        """The ticket of ``token``: :class:`UnknownPage` (404), :class:`ExpiredPage` (410),
        or :class:`TooManyRequests` (429) beyond the page's or the address's limit."""
        central = self._central
        limits = central.progress_limits
        client = request.client.host if request.client else "unknown"
        digest = token_digest(token) if _TOKEN_RE.fullmatch(token) else None
        link = None if digest is None else self._links.get(digest)
        if link is None and digest is not None:
            link = await run_in_threadpool(central.read.ticket_link, digest)
            if link is not None:
                self._links[digest] = link
                while len(self._links) > LINK_CACHE:
                    self._links.popitem(last=False)
        if link is None:
            limits.miss(client)
            raise UnknownPage(token[:32])
        limits.request(link.token_sha256)
        if central.now() >= link.expires_at:
            raise ExpiredPage("this progress page expired with its ticket's day")
        return link

    async def page(self, link: LinkInfo, lang: str) -> TicketPage:
        central = self._central
        hub = central.progress
        outcome = None
        if hub.needs_outcome(link):
            outcome = await self._outcome(link)
        return ticket_page(link, hub.site(link.site_id), lang, central.now(), hub.stale_s,
                           outcome)

    async def _outcome(self, link: LinkInfo) -> Outcome | None:
        key = link.token_sha256
        cached = self._outcomes.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < OUTCOME_TTL_S:
            return cached[1]
        outcome = await run_in_threadpool(self._central.read.ticket_outcome, link)
        if len(self._outcomes) > LINK_CACHE:
            self._outcomes.clear()
        self._outcomes[key] = (now, outcome)
        return outcome


def reader_of(request: Request) -> PageReader:
    reader: PageReader = request.app.state.progress_pages
    return reader


router = APIRouter(include_in_schema=False)


def _gone(request: Request, exc: RequestError) -> HTMLResponse:
    t = translator(language(request))
    if isinstance(exc, ExpiredPage):
        title, detail = t("q_expired"), t("q_expired_detail")
    elif isinstance(exc, TooManyRequests):
        title, detail = t("q_busy"), ""
    else:
        title, detail = t("q_not_found"), t("q_not_found_detail")
    html = render("progress.html", t=t, lang=language(request), page=None, title=title,
                  detail=detail)
    return HTMLResponse(html, status_code=exc.status_code,
                        headers={**HEADERS, **(exc.headers or {})})


@router.get("/q/{token}")
async def progress_page(request: Request, token: str) -> Response:
    reader = reader_of(request)
    lang = language(request)
    try:
        link = await reader.link(request, token)
    except (UnknownPage, ExpiredPage, TooManyRequests) as exc:
        return _gone(request, exc)
    page = await reader.page(link, lang)
    html = render("progress.html", t=translator(lang), lang=lang, page=page, token=token,
                  data=page.as_json())
    return HTMLResponse(html, headers=HEADERS)


@router.get("/q/{token}/state")
async def progress_state(request: Request, token: str) -> JSONResponse:
    reader = reader_of(request)
    link = await reader.link(request, token)
    page = await reader.page(link, language(request))
    return JSONResponse(page.as_json(), headers=HEADERS)


@router.get("/q/{token}/live")
async def progress_live(request: Request, token: str) -> StreamingResponse:
    reader = reader_of(request)
    central = central_of(request)
    link = await reader.link(request, token)
    limits = central.progress_limits
    if not limits.can_stream(link.token_sha256):
        raise TooManyRequests("as many live pages are open as are served: the page polls",
                              retry_after_s=30)
    lang = language(request)
    hub = central.progress

    async def body() -> AsyncIterator[bytes]:
        with limits.stream(link.token_sha256):
            yield b"retry: 5000\n\n"
            last: dict[str, Any] | None = None
            changed = True
            while True:
                if central.now() >= link.expires_at:
                    yield sse("expired", {}).encode()
                    return
                page = (await reader.page(link, lang)).as_json()
                if page != last:
                    last = page
                    yield sse("progress", page).encode()
                elif not changed:
                    yield b": keepalive\n\n"
                changed = await hub.changed(link.site_id, KEEPALIVE_S)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={**HEADERS, "X-Accel-Buffering": "no"})


def install(app: Any, central: Central) -> None:
    """The pages and their page reader (called by :func:`central.web.install`)."""
    app.state.progress_pages = PageReader(central)
    app.include_router(router)


__all__ = ["HEADERS", "KEEPALIVE_S", "NEAR", "ExpiredPage", "PageReader", "TicketPage",
           "UnknownPage", "install", "router", "ticket_page"]

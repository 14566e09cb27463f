"""The dashboard pages: the HTML face of the read model (Chinese first, English switch).

::

    GET  /login, POST /login, POST /logout     log in with an access token -> session cookie
    GET  /                                     fleet overview: tiles by town, counts, filters
    GET  /sites/{id}                           windows, queues, devices, events, today's charts
    GET  /alarms                               active alarms (acknowledge: operator)
    GET  /statistics                           date range, scope, CSV download

Pages need a session; without one they redirect to the login page. Every
figure comes from :class:`central.queries.ReadModel`; these handlers choose
what to read and which template shows it.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool

from central import stats
from central.access import session_principal
from central.api import stat_labels, stat_rows
from central.auth import SESSION_COOKIE, Principal, Role
from central.context import Central, central_of
from central.errors import (
    AuthError,
    Forbidden,
    InvalidRequest,
    TooManyRequests,
    Unauthenticated,
    UnknownSite,
)
from central.limits import cross_origin
from central.views import HEALTHS, FleetTile
from central.web.live import LiveHub
from central.web.render import chrome, html_response, language, page, render
from central.web.text import translator

log = structlog.get_logger(__name__)

COMPACT_ABOVE: Final = 2000
"""Above this many sites the fleet page draws compact tiles (colour only, name on hover)."""
TOWNS_PER_PAGE: Final = 50
"""Town groups per page of a compact (large) fleet page."""
TELEMETRY_HOURS: Final = 6
RECENT_EVENTS: Final = 30


class LoginRequired(Unauthenticated):
    """A page without a session: answered by a redirect to /login, not a 401."""

    def __init__(self, next_path: str) -> None:
        super().__init__(f"a session is needed for {next_path}")
        self.next_path = next_path


def page_principal(request: Request, role: Role = Role.VIEWER) -> Principal:
    try:
        principal = session_principal(request)
    except AuthError:
        raise LoginRequired(request.url.path) from None
    principal.require(role)
    return principal


def _safe_next(value: str | None) -> str:
    """Only local paths: an open redirect to another host would help phishing."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


router = APIRouter(include_in_schema=False)


# --------------------------------------------------------------------------- sessions


def _login_page(request: Request, next_path: str, error: str = "", status: int = 200,
                headers: dict[str, str] | None = None) -> HTMLResponse:  # fmt: skip
    lang = language(request)
    html = render("login.html", t=translator(lang), lang=lang, next=next_path, error=error)
    return HTMLResponse(html, status_code=status, headers=headers)


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return _login_page(request, _safe_next(request.query_params.get("next")))


@router.post("/login")
async def login(request: Request) -> Response:
    """Token -> session cookie. Refused from another site's page (403: login CSRF) and past
    ``login_attempts_*`` per client address (429), both before the body is read."""
    central = central_of(request)
    client = request.client.host if request.client else "unknown"
    if why := cross_origin(request):
        log.warning("web.login_cross_origin", client=client, why=why)
        raise Forbidden(f"a login from another site's page is refused ({why})")
    try:
        central.logins.attempt(client)
    except TooManyRequests as exc:
        t = translator(language(request))
        seconds = exc.headers["Retry-After"] if exc.headers else "60"
        return _login_page(request, "/", t("login_throttled").format(seconds=seconds),
                           exc.status_code, exc.headers)  # fmt: skip
    form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0]
    next_path = _safe_next((form.get("next") or ["/"])[0])
    try:
        principal = await run_in_threadpool(central.tokens.verify, token)
    except AuthError:
        t = translator(language(request))
        return _login_page(request, next_path, t("login_failed"), 401)
    log.info("web.login", token_id=principal.token_id, role=principal.role.value)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        central.signer.sign(principal),
        max_age=central.signer.ttl_s,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


# --------------------------------------------------------------------------- fleet


@dataclass(frozen=True, slots=True)
class TownGroup:
    town: str
    size: int
    offline: int
    alarmed: int
    tiles_html: Markup
    """The group's tiles, built in Python: 20,000 Jinja loop bodies cost seconds."""


def _tiles_html(tiles: Sequence[FleetTile], compact: bool) -> Markup:
    # Site ids match the contract's [a-z0-9_-] pattern: only names need escaping.
    if compact:
        return Markup(
            "".join(
                f'<a id="t-{t.id}" class="t {t.health}" href="/sites/{t.id}" '
                f'title="{escape(t.name)} ({t.id})"></a>'
                for t in tiles
            )
        )
    return Markup(
        "".join(
            f'<a id="t-{t.id}" class="t {t.health}" href="/sites/{t.id}" title="{t.id}">'
            f"{escape(t.name)}<b>{t.alarms or ''}</b></a>"
            for t in tiles
        )
    )


def group_by_town(tiles: Iterable[FleetTile], compact: bool) -> list[TownGroup]:
    groups: dict[str, list[FleetTile]] = {}
    for tile in tiles:
        groups.setdefault(tile.town, []).append(tile)
    return [
        TownGroup(
            town,
            len(members),
            sum(1 for t in members if t.health == "offline"),
            sum(1 for t in members if t.health in ("alarm", "warn")),
            _tiles_html(members, compact),
        )
        for town, members in groups.items()
    ]


def fleet_html(
    central: Central,
    principal: Principal,
    lang: str,
    *,
    q: str,
    health: str,
    town: str,
    page_no: int = 1,
) -> str:
    """The fleet page (also what :mod:`central.bench_web` times).

    Large fleets are paginated by town groups (:data:`TOWNS_PER_PAGE`) so that a
    browser never lays out more than about a thousand tiles; the counts at the
    top, the filters and the search always cover the whole fleet.
    """
    everything = central.read.fleet_tiles()
    towns = sorted({t.town for t in everything})
    shown = [
        t
        for t in everything
        if (not town or t.town == town)
        and (not health or t.health == health)
        and (not q or q in t.id or q in t.name or q in t.town)
    ]
    compact = len(shown) > COMPACT_ABOVE
    shown_towns = list(dict.fromkeys(t.town for t in shown))
    pages = max(1, -(-len(shown_towns) // TOWNS_PER_PAGE)) if compact else 1
    page_no = min(max(page_no, 1), pages)
    if pages > 1:
        on_page = set(shown_towns[(page_no - 1) * TOWNS_PER_PAGE : page_no * TOWNS_PER_PAGE])
        visible = [t for t in shown if t.town in on_page]
    else:
        visible = shown
    totals = LiveHub.counts((t.health, t.alarms) for t in everything)
    query = {k: v for k, v in {"q": q, "health": health, "town": town}.items() if v}
    return render(
        "fleet.html",
        **chrome(lang, principal),
        path="/",
        groups=group_by_town(visible, compact),
        shown=len(shown),
        totals=totals,
        towns=towns,
        compact=compact,
        q=q,
        health=health,
        town=town,
        healths=HEALTHS,
        page_no=page_no,
        pages=pages,
        page_links=[
            (n, "/?" + urllib.parse.urlencode({**query, "page": n})) for n in range(1, pages + 1)
        ],
    )


@router.get("/")
def fleet_page(
    request: Request, q: str = "", health: str = "", town: str = "", page: int = 1
) -> HTMLResponse:
    principal = page_principal(request)
    lang = language(request)
    html = fleet_html(central_of(request), principal, lang, q=q.strip()[:100], health=health,
                      town=town, page_no=page)  # fmt: skip
    return html_response(request, html, lang)


# --------------------------------------------------------------------------- one site


@router.get("/sites/{site_id}")
def site_page(request: Request, site_id: str) -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    now = central.now()
    today = stats.business_date(now)
    detail, commands = central.read.site_live(site_id, now)
    names = detail.service_names
    return page(
        request,
        "site.html",
        principal,
        site=detail,
        service_names=names,
        commands=commands,
        events=central.read.events(site_id=site_id, limit=RECENT_EVENTS),
        commands_enabled=central.service is not None,
        charts_json=json.dumps(central.read.hourly(site_id, today)),
        telemetry=central.read.waiting_chart(site_id, names, hours=TELEMETRY_HOURS, end=now),
        today=today.isoformat(),
    )


# --------------------------------------------------------------------------- alarms, statistics


@router.get("/alarms")
def alarms_page(request: Request) -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    board = central.read.alarm_board(central.now())
    return page(request, "alarms.html", principal, active=board.active, recent=board.recent,
                names=board.names)  # fmt: skip


@router.get("/statistics")
def statistics_page(
    request: Request,
    scope: str = "town",
    start: str = "",
    end: str = "",
    site: str = "",
    town: str = "",
    period: str = "day",
) -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    today = stats.business_date(central.now())
    scope_value: stats.Scope = next((s for s in stats.SCOPES if s == scope), "town")
    period_value: stats.Period = next((p for p in stats.PERIODS if p == period), "day")
    error = ""
    try:
        last = dt.date.fromisoformat(end) if end else today
        first = dt.date.fromisoformat(start) if start else last
    except ValueError:
        first = last = today
        error = translator(language(request))("bad_date")
    params = {"scope": scope_value, "start": first, "end": last, "site": site or None,
              "town": town or None, "service": None, "period": period_value}  # fmt: skip
    rows: list[stats.StatRow] = []
    names: dict[str, str] = {}
    if not error:
        try:
            rows = stat_rows(central, params)
            names, _ = stat_labels(central, scope_value, rows)
        except (InvalidRequest, UnknownSite) as exc:
            error = str(exc)
    query = urllib.parse.urlencode(
        {
            k: v
            for k, v in {
                "scope": scope_value,
                "from": first.isoformat(),
                "to": last.isoformat(),
                "site": site,
                "town": town,
                "period": period_value,
            }.items()
            if v
        }
    )
    return page(
        request,
        "statistics.html",
        principal,
        rows=rows,
        names=names,
        scope=scope_value,
        scopes=stats.SCOPES,
        period=period_value,
        periods=stats.PERIODS,
        start=first.isoformat(),
        end=last.isoformat(),
        site_filter=site,
        town_filter=town,
        towns=central.read.towns(),
        csv_url=f"/api/v1/statistics.csv?{query}",
        service_names=central.read.service_names(),
        error=error,
    )


__all__ = [
    "COMPACT_ABOVE",
    "TOWNS_PER_PAGE",
    "LoginRequired",
    "TownGroup",
    "fleet_html",
    "group_by_town",
    "page_principal",
    "router",
]

"""The dashboard pages: the HTML face of the read model (Chinese first, English switch).

::

    GET  /login, POST /login, POST /logout     log in with an access token -> session cookie
    GET  /                                     fleet overview: sites by town (a province: one
                                               tile per town, drill down), counts, filters
    GET  /sites/{id}                           windows, queues, devices, events, today's charts;
                                               edge devices (takeover) and diagnostics for operators
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool

from central import stats
from central.access import actor_of, client_address, session_principal
from central.api import stat_labels, stat_rows
from central.audit import Actor, AuditAction
from central.auth import SESSION_COOKIE, Principal, Role
from central.context import Central, central_of
from central.errors import (
    AuthError,
    Forbidden,
    InvalidRequest,
    OutOfScope,
    TooManyRequests,
    Unauthenticated,
    UnknownSite,
)
from central.limits import cross_origin
from central.views import HEALTHS, FleetTile, SiteDrift
from central.web.fleet import (
    ALL,
    DRIFTS,
    TOWN_PREFIX,
    TOWN_TILES_ABOVE,
    TOWNS,
    FleetSnapshot,
    TownTile,
    drift_filter,
)
from central.web.live import hub_of
from central.web.render import chrome, html_response, language, page, render
from central.web.text import translator

log = structlog.get_logger(__name__)

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
                headers: dict[str, str] | None = None,
                username: str = "") -> HTMLResponse:  # fmt: skip
    lang = language(request)
    html = render("login.html", t=translator(lang), lang=lang, next=next_path, error=error,
                  username=username,
                  token_login=central_of(request).config.dashboard_token_login)  # fmt: skip
    return HTMLResponse(html, status_code=status, headers=headers)


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return _login_page(request, _safe_next(request.query_params.get("next")))


class LoginRefused(Unauthenticated):
    """A refused login; ``tried`` is what was tried (a login name, or ``token:<id>``)."""

    def __init__(self, tried: str, why: str) -> None:
        super().__init__(why)
        self.tried = tried

    @property
    def with_token(self) -> bool:
        return self.tried.startswith("token")


def _check_login(central: Central, form: dict[str, list[str]]) -> tuple[Principal, str]:
    """The principal of the form's login name and password (or token), and how."""
    username = (form.get("username") or [""])[0].strip()[:64]
    token = (form.get("token") or [""])[0].strip()
    if token and not username and central.config.dashboard_token_login:
        try:
            return central.tokens.verify(token), "token"
        except AuthError as exc:
            tried = f"token:{token[3:11]}" if token.startswith("od_") else "token"
            raise LoginRefused(tried, str(exc)) from None
    try:
        password = (form.get("password") or [""])[0]
        return central.users.authenticate(username, password, now=central.now()), "password"
    except AuthError as exc:
        raise LoginRefused(username or "-", str(exc)) from None


@router.post("/login")
async def login(request: Request) -> Response:
    """Login name and password (or a token) -> a session. Refused from another site's page
    (403: login CSRF) and past ``login_attempts_*`` per client address (429), both before
    the body is read. Every login, refused login and logout is in the audit log."""
    central = central_of(request)
    client = client_address(request)
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
    next_path = _safe_next((form.get("next") or ["/"])[0])
    now = central.now()
    try:
        principal, how = await run_in_threadpool(_check_login, central, form)
    except LoginRefused as refused:
        log.info("web.login_refused", tried=refused.tried, client=client)
        await run_in_threadpool(central.audit.write, Actor(name=refused.tried, source=client),
                                AuditAction.LOGIN_FAILED, refused.tried, {"reason": str(refused)},
                                now=now)  # fmt: skip
        t = translator(language(request))
        if refused.with_token:
            return _login_page(request, next_path, t("token_failed"), 401)
        return _login_page(request, next_path, t("login_failed"), 401, username=refused.tried)
    session_id, expires = await run_in_threadpool(
        lambda: central.web_sessions.start(principal, client, now=now))
    actor = actor_of(request, principal)
    await run_in_threadpool(central.audit.write, actor, AuditAction.LOGIN, principal.id,
                            {"with": how, "session": session_id[:8],
                             "towns": None if principal.towns is None else sorted(principal.towns)},
                            now=now)  # fmt: skip
    log.info("web.login", who=principal.id, role=principal.role.value, client=client)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        central.signer.sign(session_id, expires.timestamp()),
        max_age=central.config.session_max_s,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """End the session (its row, not just the cookie) and say so in the audit log."""
    central = central_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        try:
            principal = session_principal(request)
            session_id = central.signer.session_id(cookie)
        except AuthError:
            pass  # expired or already ended: only the cookie to clear
        else:
            now = central.now()
            central.web_sessions.end(session_id, now=now)
            central.audit.write(actor_of(request, principal), AuditAction.LOGOUT, principal.id,
                                {"session": session_id[:8]}, now=now)  # fmt: skip
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
    """The group's tiles, built in Python: thousands of Jinja loop bodies cost seconds."""


DRIFT_MARK: Final = "≠"
"""The marker on a tile whose software or config differs (fleet.js draws the same)."""


def drift_title(drift: SiteDrift, t: Callable[[str], str]) -> str:
    """The marker's title: each difference with what runs and what should (fleet.js
    builds the same text from the same ``*_differs_title`` strings)."""
    lines = []
    if drift.software_differs:
        lines.append(t("software_differs_title").format(
            running=drift.software or "—", expected=drift.expected_software or "—"))
    if drift.config_differs:
        lines.append(t("config_differs_title").format(
            running=drift.config or "—", expected=drift.expected_config or "—"))
    return "\n".join(lines)


def _drift_mark(drift: SiteDrift | None, t: Callable[[str], str]) -> str:
    # First in the tile: a long name is cut at the end, the marker must stay visible.
    if drift is None:
        return ""
    title = escape(drift_title(drift, t))
    return f'<i class="drift" title="{title}" aria-label="{title}">{DRIFT_MARK}</i>'


def _tiles_html(tiles: Sequence[FleetTile], t: Callable[[str], str]) -> Markup:
    # Site ids match the contract's [a-z0-9_-] pattern: only names need escaping.
    return Markup(
        "".join(
            f'<a id="t-{s.id}" class="t {s.health}" href="/sites/{s.id}" title="{s.id}">'
            f"{_drift_mark(s.drift, t)}{escape(s.name)}<b>{s.alarms or ''}</b></a>"
            for s in tiles
        )
    )


def group_by_town(tiles: Iterable[FleetTile], t: Callable[[str], str]) -> list[TownGroup]:
    groups: dict[str, list[FleetTile]] = {}
    for tile in tiles:
        groups.setdefault(tile.town, []).append(tile)
    return [
        TownGroup(
            town,
            len(members),
            sum(1 for t in members if t.health == "offline"),
            sum(1 for t in members if t.health in ("alarm", "warn")),
            _tiles_html(members, t),
        )
        for town, members in groups.items()
    ]


def town_tiles_html(towns: Sequence[TownTile], query: dict[str, str],
                    t: Callable[[str], str]) -> Markup:
    """One tile per town: its colour, its counts, a link to its sites (the drill-down)."""
    out = []
    for town in towns:
        href = "/?" + urllib.parse.urlencode({**query, "town": town.town})
        name = escape(town.town)
        out.append(
            f'<a class="t town {town.health}" href="{escape(href)}" data-town="{name}">'
            f"<span>{name}</span><small>"
            f'<i data-n="sites">{town.sites}</i> {t("sites")} · '
            f'<i data-n="offline">{town.offline}</i> {t("offline")} · '
            f'<i data-n="alarm">{town.alarm + town.warn}</i> {t("alarm_short")}'
            "</small></a>"
        )
    return Markup("".join(out))


def fleet_html(
    central: Central,
    principal: Principal,
    lang: str,
    *,
    q: str,
    health: str,
    town: str,
    drift: str = "",
    snapshot: FleetSnapshot | None = None,
) -> str:
    """The fleet page (also what :mod:`onedoor.bench.central_web` times).

    ``snapshot``: the live hub's latest (a province renders from memory); without one
    the fleet is read now. Above :data:`TOWN_TILES_ABOVE` shown sites and no town
    chosen, the page draws one tile per town and a click drills down to the town's
    sites; the counts at the top, the filters and the search cover the whole fleet.
    ``drift``: ``software`` or ``config``, only the sites that differ so.
    """
    if snapshot is None:
        read = central.read_as(principal)
        snapshot = FleetSnapshot(read.tile_states(), read.fleet_registry(), read.drift_states())
    else:
        snapshot = snapshot.restricted(principal.towns)  # a town's account: its sites only
    drift = drift_filter(drift)
    shown = snapshot.sites(q=q, health=health, town=town, drift=drift)
    by_town = not town and len(shown) > TOWN_TILES_ABOVE
    query = {k: v for k, v in {"q": q, "health": health, "drift": drift}.items() if v}
    t = translator(lang)
    if by_town:
        towns = snapshot.towns(shown)
        fleet = town_tiles_html(towns, query, t)
        scope = TOWNS if not query else ""  # filtered town counts: no live recount
    else:
        towns = []
        fleet = Markup("")
        scope = f"{TOWN_PREFIX}{town}" if town and not query else ALL
    return render(
        "fleet.html",
        **chrome(lang, principal, {**query, "town": town} if town else query),
        path="/",
        groups=[] if by_town else group_by_town(shown, t),
        town_tiles=fleet,
        town_count=len(towns),
        by_town=by_town,
        shown=len(shown),
        totals=snapshot.counts(),
        towns=snapshot.town_names(),
        q=q,
        health=health,
        town=town,
        healths=HEALTHS,
        drift=drift,
        drifts=DRIFTS,
        live_scope=scope,
        overview_href="/?" + urllib.parse.urlencode(query) if query else "/",
    )


@router.get("/")
def fleet_page(request: Request, q: str = "", health: str = "", town: str = "",
               drift: str = "") -> HTMLResponse:  # fmt: skip
    principal = page_principal(request)
    lang = language(request)
    html = fleet_html(central_of(request), principal, lang, q=q.strip()[:100], health=health,
                      town=town[:100], drift=drift, snapshot=hub_of(request).fleet())  # fmt: skip
    return html_response(request, html, lang)


# --------------------------------------------------------------------------- one site


@router.get("/sites/{site_id}")
def site_page(request: Request, site_id: str) -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    read = central.read_as(principal)
    now = central.now()
    today = stats.business_date(now)
    detail, commands = read.site_live(site_id, now)
    names = detail.service_names
    operator = principal.role.allows(Role.OPERATOR)
    reports = read.diagnostics(site_id, limit=1) if operator else []
    return page(
        request,
        "site.html",
        principal,
        site=detail,
        service_names=names,
        commands=commands,
        edge_devices=read.site_devices(site_id),
        diagnostics=reports[0] if reports else None,
        events=read.events(site_id=site_id, limit=RECENT_EVENTS),
        commands_enabled=central.service is not None,
        charts_json=json.dumps(read.hourly(site_id, today)),
        telemetry=read.waiting_chart(site_id, names, hours=TELEMETRY_HOURS, end=now),
        today=today.isoformat(),
    )


# --------------------------------------------------------------------------- alarms, statistics


@router.get("/alarms")
def alarms_page(request: Request) -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    board = central.read_as(principal).alarm_board(central.now())
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
            rows = stat_rows(central, principal, params)
            names, _ = stat_labels(central, scope_value, rows)
        except (InvalidRequest, UnknownSite, OutOfScope) as exc:
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
        towns=central.read_as(principal).towns(),
        csv_url=f"/api/v1/statistics.csv?{query}",
        service_names=central.read_as(principal).service_names(),
        error=error,
    )


__all__ = [
    "LoginRefused",
    "LoginRequired",
    "TownGroup",
    "fleet_html",
    "group_by_town",
    "page_principal",
    "router",
    "town_tiles_html",
]

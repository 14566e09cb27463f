"""Dashboards: server-rendered pages (Chinese first, English switch) kept live by SSE.

::

    GET  /login, POST /login, POST /logout     log in with an access token -> session cookie
    GET  /                                     fleet overview: tiles by town, counts, filters
    GET  /sites/{id}                           windows, queues, devices, events, today's charts
    GET  /alarms                               active alarms (acknowledge: operator)
    GET  /statistics                           date range, scope, CSV download
    GET  /live/fleet, /live/sites/{id}, /live/alarms   server-sent events (session cookie)
    GET  /static/...                           CSS, JS and the vendored uPlot (no CDN)

Pages need a session; without one they redirect to the login page. The live
streams need a session too (a bearer header is refused: browsers cannot send
one on an EventSource, and scripts should use the REST API).

The fleet stream is fed by one :class:`LiveHub` per process that polls the
database once per interval and pushes only the tiles that changed, so 20,000
sites cost one query per second however many dashboards are open; it works
whether ingest runs in this process or in another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import jinja2
import structlog
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from markupsafe import Markup, escape
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from central import stats
from central.alarms import TITLES
from central.api import (
    Central,
    FleetTile,
    alarm_json,
    central_of,
    command_json,
    fleet_tiles,
    hourly_today,
    list_alarms,
    recent_events,
    site_detail,
    statistics_rows,
    tile_states,
)
from central.auth import SESSION_COOKIE, AuthError, Principal, Role, Unauthenticated
from central.models import Command, Service, Site

log = structlog.get_logger(__name__)

HERE: Final = Path(__file__).parent
LANG_COOKIE: Final = "onedoor_lang"
COMPACT_ABOVE: Final = 2000
"""Above this many sites the fleet page draws compact tiles (colour only, name on hover)."""
TOWNS_PER_PAGE: Final = 50
"""Town groups per page of a compact (large) fleet page."""
LIVE_INTERVAL_S: Final = 1.0
KEEPALIVE_S: Final = 15.0

# One table of every dashboard string: key -> (中文, English).
TEXT: Final[dict[str, tuple[str, str]]] = {
    "app": ("一门式政务服务 · 全市站点管理", "onedoor · fleet manager"),
    "fleet": ("站点总览", "Fleet"),
    "alarms": ("告警", "Alarms"),
    "statistics": ("统计", "Statistics"),
    "logout": ("退出", "Log out"),
    "login": ("登录", "Log in"),
    "login_hint": (
        "请输入访问令牌（由管理员用 onedoor central token create 生成）",
        "Enter your access token (an admin creates it with onedoor central token create)",
    ),
    "token": ("访问令牌", "Access token"),
    "login_failed": ("令牌无效或已撤销", "Invalid or revoked token"),
    "sites": ("站点", "sites"),
    "online": ("在线", "online"),
    "offline": ("离线", "offline"),
    "unknown": ("未接入", "never seen"),
    "alarm": ("告警", "alarm"),
    "warn": ("注意", "warning"),
    "ok": ("正常", "ok"),
    "active_alarms": ("活动告警", "active alarms"),
    "search": ("搜索站点、镇街或编号", "Search site, town or id"),
    "filter": ("筛选", "Filter"),
    "all": ("全部", "All"),
    "town": ("镇街", "Town"),
    "status": ("状态", "Status"),
    "last_seen": ("最后联系", "Last seen"),
    "windows": ("窗口", "Windows"),
    "window": ("窗口", "Window"),
    "serving": ("正在办理", "Serving"),
    "staff": ("工作人员", "Staff"),
    "services": ("业务", "Services"),
    "queues": ("排队与预计等候", "Queues and predicted waits"),
    "service": ("事项", "Service"),
    "waiting": ("等候人数", "Waiting"),
    "oldest_wait": ("最长已等", "Oldest wait"),
    "predicted": ("预计等候 P50 / P90", "Predicted wait p50 / p90"),
    "devices": ("设备", "Devices"),
    "device": ("设备", "Device"),
    "kind": ("类型", "Kind"),
    "detail": ("详情", "Detail"),
    "recent_events": ("最近事件", "Recent events"),
    "today": ("今日", "Today"),
    "arrivals": ("取号", "Arrivals"),
    "served": ("办结", "Served"),
    "wait_mean": ("平均等候(分钟)", "Mean wait (min)"),
    "ratings": ("评价", "Ratings"),
    "per_hour": ("每小时", "per hour"),
    "waiting_telemetry": ("排队人数 · 近6小时（遥测）", "Waiting · last 6 h (telemetry)"),
    "severity": ("级别", "Severity"),
    "site": ("站点", "Site"),
    "type": ("类型", "Type"),
    "message": ("说明", "Message"),
    "raised": ("发生时间", "Raised"),
    "occurrences": ("次数", "Count"),
    "acknowledge": ("确认", "Acknowledge"),
    "acknowledged": ("已确认", "Acknowledged"),
    "no_alarms": ("当前没有活动告警", "No active alarms"),
    "recently_cleared": ("最近恢复", "Recently cleared"),
    "cleared": ("恢复时间", "Cleared"),
    "from": ("开始日期", "From"),
    "to": ("结束日期", "To"),
    "scope": ("范围", "Scope"),
    "scope_site": ("按站点", "per site"),
    "scope_town": ("按镇街", "per town"),
    "scope_fleet": ("全市", "whole fleet"),
    "show": ("查询", "Show"),
    "csv": ("下载 CSV", "Download CSV"),
    "issued": ("取号量", "Issued"),
    "served_count": ("办件量", "Served"),
    "done_rate": ("办结率", "Done rate"),
    "good_rate": ("好评率", "Good ratings"),
    "wait_p50_p90": ("等候 P50/P90", "Wait p50/p90"),
    "service_p50_p90": ("办理 P50/P90", "Service p50/p90"),
    "no_show_rate": ("过号率", "No-show rate"),
    "help": ("呼叫帮办 (未响应)", "Help calls (unanswered)"),
    "help_response": ("帮办响应 平均/P90", "Help response mean/p90"),
    "no_data": ("所选日期没有数据", "No data for these dates"),
    "bad_date": ("日期格式应为 YYYY-MM-DD", "Dates must be YYYY-MM-DD"),
    "day": ("日期", "Day"),
    "sev_info": ("提示", "info"),
    "sev_warning": ("一般", "warning"),
    "sev_major": ("严重", "major"),
    "sev_critical": ("紧急", "critical"),
    "definitions": ("口径说明见 docs/STATISTICS.md", "Definitions: docs/STATISTICS.md"),
    "config": ("配置版本 应为/实际", "Config expected/reported"),
    "clock": ("时钟", "Clock"),
    "synced": ("已同步", "synced"),
    "not_synced": ("未同步", "not synced"),
    "outbox": ("待上报", "Outbox"),
    "software": ("软件版本", "Software"),
    "gaps": ("缺失序号", "Missing seqs"),
    "live": ("实时", "live"),
    "closed": ("关闭", "closed"),
    "open": ("空闲", "open"),
    "paused": ("暂停", "paused"),
    "all_services": ("全部事项", "all services"),
    "back": ("返回总览", "Back to fleet"),
    "commands": ("远程指令", "Commands"),
    "send": ("发送", "Send"),
    "command_log": ("指令记录", "Command log"),
    "cmd_announce": ("语音播报", "Announce"),
    "cmd_screen_notice": ("屏幕通知", "Screen notice"),
    "cmd_reprint": ("补打号票", "Reprint ticket"),
    "cmd_reload_config": ("重新加载配置", "Reload config"),
    "cmd_text": ("内容 / 号码 / 版本", "Text / ticket / version"),
    "ttl": ("有效期(秒)", "TTL (s)"),
    "state_pending": ("等待执行", "pending"),
    "state_succeeded": ("已执行", "done"),
    "state_failed": ("失败", "failed"),
    "state_expired": ("已过期", "expired"),
    "waiting_for_site": ("站点离线，等待上线", "site offline, waiting"),
}

HEALTHS: Final = ("alarm", "warn", "offline", "ok", "unknown")


def translator(lang: str) -> Callable[[str], str]:
    index = 1 if lang == "en" else 0

    def t(key: str) -> str:
        return TEXT[key][index]

    return t


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}:{seconds:02d}"


def _fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _fmt_time(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(stats.BUSINESS_TZ).strftime("%m-%d %H:%M:%S")


def _fmt_ms(value: int) -> str:
    return datetime.fromtimestamp(value / 1000, stats.BUSINESS_TZ).strftime("%H:%M:%S")


ENV: Final = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
ENV.filters.update(secs=_fmt_seconds, rate=_fmt_rate, when=_fmt_time, ms=_fmt_ms)
ENV.globals["alarm_titles"] = {k.value: v for k, v in TITLES.items()}


def render(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)


# --------------------------------------------------------------------------- sessions


class LoginRequired(Exception):
    """Raised by page handlers without a session; turned into a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def session_principal(request: Request) -> Principal:
    """The principal of the session cookie only (bearer tokens are not accepted here)."""
    central = central_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise Unauthenticated("no session")
    return central.tokens.principal(central.signer.token_id(cookie))


def page_principal(request: Request, role: Role = Role.VIEWER) -> Principal:
    try:
        principal = session_principal(request)
    except AuthError:
        raise LoginRequired(request.url.path) from None
    try:
        principal.require(role)
    except AuthError as exc:
        raise HTTPException(403, str(exc)) from None
    return principal


def language(request: Request) -> str:
    chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE, "zh")
    return "en" if chosen == "en" else "zh"


def page(request: Request, template: str, principal: Principal, **context: Any) -> HTMLResponse:
    lang = language(request)
    html = render(
        template,
        t=translator(lang),
        lang=lang,
        principal=principal,
        can_operate=principal.role.allows(Role.OPERATOR),
        path=request.url.path,
        **context,
    )
    response = HTMLResponse(html)
    if "lang" in request.query_params:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict")
    return response


def _safe_next(value: str | None) -> str:
    """Only local paths: an open redirect to another host would help phishing."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


# --------------------------------------------------------------------------- live hub


@dataclass
class LiveHub:
    """Polls the fleet's tile states and fans changes out to every open fleet stream."""

    sessions: sessionmaker[Session]
    interval_s: float = LIVE_INTERVAL_S
    _tiles: dict[str, tuple[str, int]] = field(default_factory=dict)
    _subscribers: set[asyncio.Queue[str]] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None

    def snapshot(self) -> dict[str, tuple[str, int]]:
        """Health and active-alarm count of every site (one sites query, one alarms query)."""
        with self.sessions() as session:
            return dict(tile_states(session))

    @staticmethod
    def counts(tiles: Iterable[tuple[str, int]]) -> dict[str, int]:
        found = dict.fromkeys(HEALTHS, 0)
        alarms = 0
        for health, count in tiles:
            found[health] += 1
            alarms += count
        return {
            **found,
            "sites": sum(found.values()),
            "alarms_active": alarms,
            "online": found["ok"] + found["warn"] + found["alarm"],
        }

    async def poll_once(self) -> None:
        tiles = await run_in_threadpool(self.snapshot)
        changed = [
            [site_id, health, count]
            for site_id, (health, count) in tiles.items()
            if self._tiles.get(site_id) != (health, count)
        ]
        self._tiles = tiles
        if changed and self._subscribers:
            message = sse("tiles", {"tiles": changed, "counts": self.counts(tiles.values())})
            for queue in list(self._subscribers):
                try:
                    queue.put_nowait(message)
                except asyncio.QueueFull:  # a stalled client: drop it, its page reconnects
                    self._subscribers.discard(queue)

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
    def subscribe(self) -> Any:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=100)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)


def sse(event: str, data: Any) -> str:
    """One server-sent event; JSON data on one line, or HTML split into ``data:`` lines."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    lines = "".join(f"data: {line}\n" for line in text.splitlines() or [""])
    return f"event: {event}\n{lines}\n"


def hub_of(request: Request) -> LiveHub:
    hub: LiveHub = request.app.state.live_hub
    return hub


# --------------------------------------------------------------------------- pages

router = APIRouter(include_in_schema=False)


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    lang = language(request)
    return HTMLResponse(
        render(
            "login.html",
            t=translator(lang),
            lang=lang,
            next=_safe_next(request.query_params.get("next")),
            failed=False,
        )
    )


@router.post("/login")
async def login(request: Request) -> Response:
    form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0]
    next_path = _safe_next((form.get("next") or ["/"])[0])
    central = central_of(request)
    try:
        principal = await run_in_threadpool(central.tokens.verify, token)
    except AuthError:
        lang = language(request)
        html = render("login.html", t=translator(lang), lang=lang, next=next_path, failed=True)
        return HTMLResponse(html, status_code=401)
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
    with central.sessions() as session:
        everything = fleet_tiles(session)
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
        t=translator(lang),
        lang=lang,
        principal=principal,
        can_operate=principal.role.allows(Role.OPERATOR),
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
    html = fleet_html(
        central_of(request),
        principal,
        lang,
        q=q.strip()[:100],
        health=health,
        town=town,
        page_no=page,
    )
    response = HTMLResponse(html)
    if "lang" in request.query_params:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict")
    return response


def _site_context(central: Central, site_id: str) -> dict[str, Any]:
    """What the live part of the site page shows (re-rendered for every SSE update)."""
    now = central.now()
    with central.sessions() as session:
        detail = site_detail(session, site_id, now)
        service_names = {s["code"]: s["name"] for s in detail["services"]}
        commands = [
            command_json(c, now, site_online=detail["online"])
            for c in session.scalars(
                select(Command)
                .where(Command.site_id == site_id)
                .order_by(Command.issued_at.desc())
                .limit(10)
            )
        ]
        return {"site": detail, "service_names": service_names, "commands": commands}


TELEMETRY_HOURS: Final = 6


def waiting_chart(central: Central, site_id: str, services: dict[str, str]) -> dict[str, Any]:
    """People waiting per service over the last hours, from the telemetry history (the
    embedded store, or InfluxDB): ``t`` in unix seconds, one series per service."""
    end = central.now()
    try:
        history = {code: central.telemetry_history(site_id, "queue.waiting", code,
                                                   hours=TELEMETRY_HOURS, end=end)[1]
                   for code in services}  # fmt: skip
    except Exception as exc:  # InfluxDB down: the page still shows everything else
        log.warning("web.telemetry_unavailable", site=site_id, error=repr(exc)[:200])
        return {"t": [], "series": [], "error": True}
    times = sorted({p.ts_ms for points in history.values() for p in points})
    column = {ts: i for i, ts in enumerate(times)}
    series = []
    for code, points in history.items():
        values: list[float | None] = [None] * len(times)
        for p in points:
            values[column[p.ts_ms]] = p.mean
        series.append({"label": services[code], "values": values})
    return {"t": [ts / 1000 for ts in times], "series": series}


@router.get("/sites/{site_id}")
def site_page(request: Request, site_id: str) -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    context = _site_context(central, site_id)
    today = central.now().astimezone(stats.BUSINESS_TZ).date()
    with central.sessions() as session:
        events = recent_events(session, site_id=site_id, limit=30)
        charts = hourly_today(session, site_id, today)
    return page(
        request,
        "site.html",
        principal,
        events=events,
        commands_enabled=central.service is not None,
        charts_json=json.dumps(charts),
        telemetry=waiting_chart(central, site_id, context["service_names"]),
        today=today.isoformat(),
        **context,
    )


@router.get("/alarms")
def alarms_page(request: Request) -> HTMLResponse:
    principal = page_principal(request)
    return page(request, "alarms.html", principal, **_alarms_context(central_of(request)))


def _alarms_context(central: Central) -> dict[str, Any]:
    """Active alarms (worst first) and the last 50 cleared ones, for the page and its stream."""
    now = central.now()
    with central.sessions() as session:
        active = [alarm_json(a, now) for a in list_alarms(session, active=True)]
        recent = [
            a
            for a in (alarm_json(x, now) for x in list_alarms(session, active=False, limit=200))
            if not a["active"]
        ][:50]
        names = {row.id: row.name for row in session.execute(select(Site.id, Site.name))}
    return {"active": active, "recent": recent, "names": names}


@router.get("/statistics")
def statistics_page(
    request: Request,
    scope: str = "town",
    start: str = "",
    end: str = "",
    site: str = "",
    town: str = "",
) -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    today = central.now().astimezone(stats.BUSINESS_TZ).date()
    scope_value = scope if scope in ("site", "town", "fleet") else "town"
    error = ""
    try:
        last = dt.date.fromisoformat(end) if end else today
        first = dt.date.fromisoformat(start) if start else last
    except ValueError:
        first = last = today
        error = translator(language(request))("bad_date")
    rows: list[stats.StatRow] = []
    with central.sessions() as session:
        towns = sorted(set(session.execute(select(Site.town)).scalars()))
        service_names = dict(session.execute(select(Service.code, Service.name).distinct()).all())
        if not error:
            try:
                rows = statistics_rows(
                    session,
                    scope_value,  # type: ignore[arg-type]
                    first,
                    last,
                    site_id=site or None,
                    town=town or None,
                )
            except HTTPException as exc:
                error = str(exc.detail)
    query = urllib.parse.urlencode(
        {
            k: v
            for k, v in {
                "scope": scope_value,
                "from": first.isoformat(),
                "to": last.isoformat(),
                "site": site,
                "town": town,
            }.items()
            if v
        }
    )
    return page(
        request,
        "statistics.html",
        principal,
        rows=rows,
        scope=scope_value,
        start=first.isoformat(),
        end=last.isoformat(),
        site_filter=site,
        town_filter=town,
        towns=towns,
        csv_url=f"/api/v1/statistics.csv?{query}",
        service_names=service_names,
        error=error,
    )


# --------------------------------------------------------------------------- live streams


def _stream_principal(request: Request) -> Principal:
    if request.headers.get("authorization"):
        raise HTTPException(401, "live streams need a dashboard session, not a bearer token")
    try:
        return session_principal(request)
    except AuthError as exc:
        raise HTTPException(401, str(exc)) from None


async def _stream(
    request: Request, produce: Callable[[], AsyncIterator[str]]
) -> AsyncIterator[bytes]:
    central = central_of(request)
    central.metrics.sse_clients += 1
    try:
        yield b"retry: 2000\n\n"
        async for chunk in produce():
            if await request.is_disconnected():
                break
            yield chunk.encode("utf-8")
    finally:
        central.metrics.sse_clients -= 1


def _sse_response(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/live/fleet")
async def live_fleet(request: Request) -> StreamingResponse:
    _stream_principal(request)
    hub = hub_of(request)

    async def produce() -> AsyncIterator[str]:
        with hub.subscribe() as queue:
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
    await run_in_threadpool(_site_context, central, site_id)  # 404 before streaming

    def fragment() -> str:
        return render(
            "_site_live.html",
            t=translator(lang),
            lang=lang,
            principal=principal,
            can_operate=principal.role.allows(Role.OPERATOR),
            **_site_context(central, site_id),
        )

    return _fragment_stream(request, fragment)


@router.get("/live/alarms")
async def live_alarms(request: Request) -> StreamingResponse:
    principal = _stream_principal(request)
    central = central_of(request)
    lang = language(request)

    def fragment() -> str:
        return render(
            "_alarms_live.html",
            t=translator(lang),
            lang=lang,
            principal=principal,
            can_operate=principal.role.allows(Role.OPERATOR),
            **_alarms_context(central),
        )

    return _fragment_stream(request, fragment)


def install(app: FastAPI, hub: LiveHub) -> None:
    """Add the pages, the live streams and /static to ``app``."""
    app.state.live_hub = hub
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        target = urllib.parse.quote(exc.next_path, safe="/")
        return RedirectResponse(f"/login?next={target}", status_code=303)


__all__ = [
    "COMPACT_ABOVE",
    "TEXT",
    "TOWNS_PER_PAGE",
    "LiveHub",
    "fleet_html",
    "group_by_town",
    "install",
    "router",
    "sse",
    "translator",
]

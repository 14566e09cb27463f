"""Pages for accounts and for commands to many sites.

::

    GET  /admin/users              accounts (a city-wide admin): roles, towns, enable, passwords
    GET  /account                  who am I; change my password
    GET  /commands                 send one command to a town, several towns or the whole city;
                                   the latest such commands with their counts; stop ticket
                                   issuing for a town or the city, and lift it (the emergency
                                   stop's API, central.api_pushes), with the stops in force
    GET  /commands/{id}[?state=]   counts per state (pending, done, failed, expired, refused)
                                   and the sites (of one state), the first BULK_PAGE_ROWS; live
    GET  /live/commands/{id}       the same part, re-rendered when it changed (SSE)
    GET  /admin/audit              the audit log (a city-wide admin): days, action, who, target;
                                   older pages; the same filters as CSV (/api/v1/audit.csv)

The pages change nothing themselves: their scripts call the REST API
(:mod:`central.api_users`, :mod:`central.api_bulk`) with the session cookie
and the CSRF header, so every rule and audit entry is the API's.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
import uuid
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from central import stats
from central.api_bulk import NOT_FOR_MANY
from central.auth import Role
from central.context import central_of
from central.errors import InvalidRequest
from central.pushes import StopStatus
from central.views import BULK_STATES, BulkState
from central.web.live import _fragment_stream, _stream_principal
from central.web.pages import page_principal
from central.web.render import chrome, language, page, render
from central.web.text import AUDIT_ACTION_TEXT, TEXT, translator
from firmware_protocols.mqtt_messages import COMMAND_ARGS

router = APIRouter(include_in_schema=False)

def _known_texts() -> frozenset[str]:
    return frozenset(key for key in TEXT if key.startswith("cmd_"))


@router.get("/admin/users")
def users_page(request: Request) -> HTMLResponse:
    principal = page_principal(request, Role.ADMIN)
    principal.require_city("管理账号")
    central = central_of(request)
    return page(request, "users.html", principal, users=central.users.list(),
                roles=[r.value for r in Role], towns=central.read.towns())  # fmt: skip


AUDIT_PAGE_SIZE: Final = 100
AUDIT_EXPORT_LIMIT: Final = 100_000
"""The most entries one CSV export holds (the API's own ceiling)."""


def _day_bounds(first: str, last: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Business-time days (``YYYY-MM-DD``, either may be empty) as [since, until)."""
    since = until = None
    if first:
        since = dt.datetime.combine(dt.date.fromisoformat(first), dt.time(),
                                    tzinfo=stats.BUSINESS_TZ)  # fmt: skip
    if last:
        until = dt.datetime.combine(dt.date.fromisoformat(last) + dt.timedelta(days=1),
                                    dt.time(), tzinfo=stats.BUSINESS_TZ)  # fmt: skip
    return since, until


@router.get("/admin/audit")
def audit_page(
    request: Request,
    start: str = "",
    end: str = "",
    action: str = "",
    actor: str = "",
    target: str = "",
    before_id: int | None = None,
) -> HTMLResponse:
    principal = page_principal(request, Role.ADMIN)
    principal.require_city("查看审计日志")
    central = central_of(request)
    t = translator(language(request))
    filters: dict[str, Any] = {"action": action.strip() or None, "actor": actor.strip() or None,
                               "target": target.strip() or None}  # fmt: skip
    error = ""
    entries = []
    try:
        filters["since"], filters["until"] = _day_bounds(start, end)
    except ValueError:
        error = t("bad_date")
    else:
        if start and end and end < start:  # ISO dates compare as text
            error = t("dates_reversed")
    if not error:
        try:
            entries = central.read_as(principal).audit(**filters, before_id=before_id,
                                                       limit=AUDIT_PAGE_SIZE)  # fmt: skip
        except InvalidRequest as exc:
            error = str(exc)
    api_query = {k: v.isoformat() if isinstance(v, dt.datetime) else v
                 for k, v in filters.items() if v is not None}  # fmt: skip
    page_query = {k: v for k, v in {"start": start, "end": end, "action": action,
                                    "actor": actor, "target": target}.items() if v}  # fmt: skip
    older = None
    if len(entries) == AUDIT_PAGE_SIZE:
        older = "/admin/audit?" + urllib.parse.urlencode({**page_query,
                                                          "before_id": entries[-1].id})  # fmt: skip
    lang_index = 1 if language(request) == "en" else 0
    return page(request, "audit.html", principal, entries=entries, error=error,
                start=start, end=end, action=action, actor=actor, target=target,
                paged=before_id is not None, older_url=older,
                newest_url="/admin/audit?" + urllib.parse.urlencode(page_query),
                actions={k: v[lang_index] for k, v in AUDIT_ACTION_TEXT.items()},
                csv_url="/api/v1/audit.csv?" + urllib.parse.urlencode(
                    {**api_query, "limit": AUDIT_EXPORT_LIMIT}))  # fmt: skip


@router.get("/account")
def account_page(request: Request) -> HTMLResponse:
    return page(request, "account.html", page_principal(request))


@router.get("/commands")
def commands_page(request: Request) -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    read = central.read_as(principal)
    towns = read.towns()
    own_sites = None if principal.city_wide else set(read.command_targets(whole_city=True))
    stops = [s for s in central.pushes.stops(active=True)
             if s.scope == "city" or (s.target in towns if s.scope == "town"
                                      else own_sites is None or s.target in own_sites)]  # fmt: skip
    applied = {}
    for stop_id, standing in central.pushes.standings([s.id for s in stops]).items():
        sites = [s for s in standing if principal.covers(s.town)]
        applied[stop_id] = (sum(s.status is StopStatus.APPLIED for s in sites), len(sites))
    return page(request, "commands.html", principal, stops=stops, stop_applied=applied,
                bulks=read.bulk_commands(central.now()), towns=towns,
                kinds=[k for k in COMMAND_ARGS if k not in NOT_FOR_MANY],
                states=BULK_STATES, known_texts=_known_texts(),
                commands_enabled=central.service is not None)  # fmt: skip


BULK_PAGE_ROWS: Final = 500
"""Sites listed on a bulk command's page (a province's 20,000 are counted, not listed:
the counts link to the sites of each state)."""


def _bulk_state(state: str) -> BulkState | None:
    """The page's ``?state=``: one of :data:`BULK_STATES`, or every state."""
    return next((s for s in BULK_STATES if s == state), None)


@router.get("/commands/{bulk_id}")
def bulk_page(request: Request, bulk_id: uuid.UUID, state: str = "") -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    bulk = central.read_as(principal).bulk_command(bulk_id, central.now(),
                                                   state=_bulk_state(state),
                                                   limit=BULK_PAGE_ROWS)  # fmt: skip
    return page(request, "bulk.html", principal, bulk=bulk, states=BULK_STATES,
                known_texts=_known_texts())  # fmt: skip


@router.get("/live/commands/{bulk_id}")
async def live_bulk(request: Request, bulk_id: uuid.UUID, state: str = "") -> StreamingResponse:
    principal = _stream_principal(request)
    central = central_of(request)
    lang = language(request)
    read = central.read_as(principal)
    chosen = _bulk_state(state)
    await run_in_threadpool(read.bulk_command, bulk_id, central.now(), limit=0)  # 404/403 first

    def fragment() -> str:
        bulk = read.bulk_command(bulk_id, central.now(), state=chosen, limit=BULK_PAGE_ROWS)
        return render("_bulk_live.html", **chrome(lang, principal), bulk=bulk, states=BULK_STATES,
                      known_texts=_known_texts())  # fmt: skip

    return _fragment_stream(request, fragment)


__all__ = ["router"]

"""The API of what the central pushes to sites: emergency stops and the city calendar.

::

    POST /api/v1/issuing/stops              operator  {"scope": "site"|"town"|"city",
                                                       "target": site id | town | "",
                                                       "reason": "台风红色预警"} -> 201
    GET  /api/v1/issuing/stops[?all=true]   viewer    the active stops (or all, latest first)
    POST /api/v1/issuing/stops/{id}/lift    operator  -> 200, the sites get it at once
    GET  /api/v1/issuing/stops/{id}/sites   viewer    each covered site (of the caller's
                                                      towns) and whether it applied it
    GET  /api/v1/calendar                   viewer    the city calendar in force (or null)
    PUT  /api/v1/calendar                   admin     {"holidays": [...], "workdays": [...],
                                                       "special": [...]} -> 201, a new version

A stop or a lift is sent at once to every site it covers (a site offline gets it
from the broker when it is back, or from its state); sites keep being sent what
they lack (:mod:`central.pushes`). Only issuing stops: tickets issued are served.
The work is :meth:`central.service.CentralService.stop_issuing` (and ``lift_stop``,
``set_calendar``): bulk actions call those; the generic command API refuses
``issuing`` and ``calendar``. Every decision goes to the audit log.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from central.access import Admin, Operator, Viewer, actor_of
from central.api import API_PREFIX
from central.audit import AuditAction
from central.auth import Principal
from central.context import Central, central_of, service_of

log = structlog.get_logger(__name__)

router = APIRouter(prefix=API_PREFIX)


class StopRequest(BaseModel):
    scope: str = Field(pattern="^(site|town|city)$")
    target: str = Field(default="", max_length=64)
    reason: str = Field(min_length=1, max_length=64)


class CalendarRequest(BaseModel):
    holidays: list[str] = Field(default_factory=list, max_length=100)
    workdays: list[str] = Field(default_factory=list, max_length=100)
    special: list[str] = Field(default_factory=list, max_length=100)


def _require_covers(central: Central, principal: Principal, scope: str, target: str) -> None:
    """A town's account stops and lifts issuing within its towns only (403 otherwise);
    the whole city's stop takes a city-wide account."""
    if scope == "city":
        principal.require_city("暂停或恢复全市取号")
    elif scope == "town":
        central.read_as(principal).require_town(target)
    else:
        central.read_as(principal).require_site(target)


@router.post("/issuing/stops", tags=["issuing"], status_code=201)
async def api_stop(request: Request, body: StopRequest, principal: Operator) -> dict[str, Any]:
    central = central_of(request)
    await run_in_threadpool(_require_covers, central, principal, body.scope, body.target)
    stop, sites, sent = await service_of(central).stop_issuing(
        body.scope, body.target, body.reason, by=principal.name)
    await run_in_threadpool(
        central.audit.write, actor_of(request, principal), AuditAction.ISSUING_STOP,
        f"stop:{stop.id}", {"scope": stop.scope, "target": stop.target, "reason": stop.reason,
                            "sites": len(sites)}, now=central.now())  # fmt: skip
    return {"stop": stop.to_json(), "sites": sites, "sent": sent}


@router.get("/issuing/stops", tags=["issuing"])
def api_stops(request: Request, _: Viewer, all: bool = False) -> dict[str, Any]:
    return {"stops": [s.to_json() for s in central_of(request).pushes.stops(active=not all)]}


@router.get("/issuing/stops/{stop_id}/sites", tags=["issuing"])
def api_stop_sites(request: Request, stop_id: str, principal: Viewer) -> dict[str, Any]:
    """The stop's per-site results: applied, waiting, offline, lifted, superseded or an
    edge too old for stops; counted by status, sites of the caller's towns only."""
    sites = [s for s in central_of(request).pushes.stop_sites(stop_id)
             if principal.covers(s.town)]
    counts: dict[str, int] = {}
    for site in sites:
        counts[site.status.value] = counts.get(site.status.value, 0) + 1
    return {"stop": stop_id, "counts": counts, "sites": [s.to_json() for s in sites]}


@router.post("/issuing/stops/{stop_id}/lift", tags=["issuing"])
async def api_lift(request: Request, stop_id: str, principal: Operator) -> dict[str, Any]:
    central = central_of(request)
    stops = await run_in_threadpool(central.pushes.stops, active=False)
    decided = next((s for s in stops if s.id == stop_id), None)
    if decided is None:  # not among the latest: only a city-wide account lifts it
        principal.require_city("恢复较早的暂停")
    else:
        await run_in_threadpool(_require_covers, central, principal, decided.scope,
                                decided.target)  # fmt: skip
    stop, sites, sent = await service_of(central).lift_stop(stop_id, by=principal.name)
    await run_in_threadpool(
        central.audit.write, actor_of(request, principal), AuditAction.ISSUING_LIFT,
        f"stop:{stop.id}", {"sites": len(sites)}, now=central.now())  # fmt: skip
    return {"stop": stop.to_json(), "sites": sites, "sent": sent}


@router.get("/calendar", tags=["calendar"])
def api_calendar(request: Request, _: Viewer) -> dict[str, Any]:
    return {"calendar": central_of(request).pushes.calendar()}


@router.put("/calendar", tags=["calendar"], status_code=201)
async def api_set_calendar(request: Request, body: CalendarRequest,
                           principal: Admin) -> dict[str, Any]:
    central = central_of(request)
    principal.require_city("设置全市日历")
    version, sent = await service_of(central).set_calendar(
        body.holidays, body.workdays, body.special, by=principal.name)
    await run_in_threadpool(
        central.audit.write, actor_of(request, principal), AuditAction.CALENDAR_SET,
        f"calendar:{version}", body.model_dump(), now=central.now())  # fmt: skip
    return {"version": version, "sent": sent}


def install(app: FastAPI) -> None:
    app.include_router(router)


__all__ = ["install", "router"]

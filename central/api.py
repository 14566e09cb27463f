"""The REST API under ``/api/v1``, plus ``/healthz``: the JSON face of the read model.

Every route declares the least role it needs (:mod:`central.access`); the table
in ``tests/central/test_api_roles.py`` walks every route with every role. Every
route reads through ``central.read_as(principal)`` and checks a site's town
before acting on it: a town's account sees and acts on its towns only
(``tests/central/test_scope.py``).
Callers authenticate with ``Authorization: Bearer od_...`` or, from the
dashboard, the session cookie (see :mod:`central.auth`).

::

    GET  /api/v1/sites                     viewer    registry + live summary, filters
    GET  /api/v1/sites/{id}                viewer    windows, queues, devices, alarms, gaps
    GET  /api/v1/sites/{id}/telemetry      viewer    history of one series (metric, key, hours)
    POST /api/v1/sites                     admin     registry: add a site (services, windows)
    PATCH /api/v1/sites/{id}               admin     registry: fields, hours, expected config
    POST /api/v1/sites/{id}/retire|restore admin     registry: leave / rejoin the fleet
    PUT|DELETE /api/v1/sites/{id}/services/{code}     admin  registry: one service
    PUT|DELETE /api/v1/sites/{id}/windows/{number}    admin  registry: one window
    GET  /api/v1/registry/{part}.csv       operator  export: sites, services, windows
    POST /api/v1/registry/import           admin     CSV import; a dry run (the diff) by default
    GET  /api/v1/audit[.csv]               admin     the audit log: who changed what, from where
    GET  /api/v1/events                    viewer    committed events (site, type, seq range)
    GET  /api/v1/alarms                    viewer    active (default) or all alarms
    POST /api/v1/alarms/{id}/ack           operator
    GET  /api/v1/statistics[.csv]          viewer    see docs/STATISTICS.md
    POST /api/v1/sites/{id}/commands       operator  announce, reprint, screen_notice,
                                                     reload_config, diagnostics (answer below)
    GET  /api/v1/sites/{id}/commands       viewer
    GET  /api/v1/commands/{id}             viewer
    GET  /api/v1/sites/{id}/devices        viewer    edge devices: holder, waiting, replaced
    POST /api/v1/sites/{id}/takeover       operator  a waiting device takes the site's numbers
    GET  /api/v1/sites/{id}/diagnostics    operator  diagnostics answers (status, log lines)
    GET  /api/v1/diagnostics/{command_id}  operator
    GET  /api/v1/inventory                 operator  Ansible dynamic inventory (JSON)
    GET|POST /api/v1/tokens, DELETE /api/v1/tokens/{id}   admin (city-wide)
    /api/v1/users, /api/v1/me                          accounts: central/api_users.py
    /api/v1/bulk-commands                              one command to many: central/api_bulk.py
    /api/v1/ratings…, /api/v1/bad-ratings…, /api/v1/sites/{id}/staff|rating-profile
                                           好差评: see central.rating_api
    GET  /healthz, /docs, /openapi.json    anyone (Swagger UI vendored: no CDN)

``/metrics`` is :mod:`central.metrics`. Reads go through
:class:`central.queries.ReadModel`, writes through the service, the registry or
the token store; the handlers hold no SQL. Errors are JSON ``{"detail": ...}``
with the HTTP status of their class in :mod:`central.errors`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Annotated, Any, Final, Literal

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from central import rating_api, stats
from central.access import Admin, Operator, Viewer, actor_of
from central.audit import AuditAction, audit_csv
from central.auth import Principal, Role
from central.context import Central, central_of, service_of
from central.errors import InvalidRequest, UnknownToken
from central.inventory import ansible_inventory
from central.models import SiteKind
from central.registry import Edit
from central.registry_csv import read_sheet
from central.service import command_args
from central.sitespec import Hours, ServiceSpec, SiteSpec, WindowSpec
from central.views import AlarmView, TokenView
from firmware_protocols.mqtt_messages import MAX_COMMAND_TTL_MS

log = structlog.get_logger(__name__)

API_PREFIX: Final = "/api/v1"
DEFAULT_COMMAND_TTL_S: Final = 600

router = APIRouter(prefix=API_PREFIX)
root_router = APIRouter()


# --------------------------------------------------------------------------- sites


@router.get("/sites", tags=["sites"])
def api_sites(
    request: Request,
    principal: Viewer,
    town: str | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    health: Annotated[str | None, Query(pattern="^(ok|warn|alarm|offline|unknown)$")] = None,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 50_000,
    offset: Annotated[int, Query(ge=0)] = 0,
    retired: Annotated[bool, Query(description="list the retired sites instead")] = False,
) -> dict[str, Any]:
    read = central_of(request).read_as(principal)
    summaries = read.site_summaries(town=town, query=q, health=health, retired=retired)
    page = summaries[offset : offset + limit]
    return {"total": len(summaries), "sites": [s.to_json() for s in page]}


@router.get("/sites/{site_id}", tags=["sites"])
def api_site(request: Request, site_id: str, principal: Viewer) -> dict[str, Any]:
    central = central_of(request)
    return central.read_as(principal).site_detail(site_id, central.now()).to_json()


@router.get("/sites/{site_id}/telemetry", tags=["sites"])
def api_site_telemetry(
    request: Request,
    site_id: str,
    principal: Viewer,
    metric: Annotated[str, Query(description="e.g. queue.waiting, outbox.depth, host.load1")],
    key: Annotated[str, Query(max_length=64, description="service code for queue.*")] = "",
    hours: Annotated[float, Query(gt=0, le=24 * 400)] = 6.0,
) -> dict[str, Any]:
    """Telemetry history of one series: raw points, or per minute/hour mean, min, max, count."""
    central = central_of(request)
    series = central.read_as(principal).telemetry_series(site_id, metric, key, hours=hours,
                                                         end=central.now())  # fmt: skip
    return series.to_json()


# --------------------------------------------------------------------------- the registry


class SitePatch(BaseModel):
    """Only the fields given change; ``hours`` or ``lat``/``lon`` null: back to none."""

    expected_config_version: str | None = Field(
        None, pattern=r"^[\x21-\x7e]{1,64}$", description="config version the site should run"
    )
    name: str | None = Field(None, max_length=100)
    town: str | None = Field(None, max_length=50)
    kind: SiteKind | None = None
    lat: float | None = None
    lon: float | None = None
    hours: Hours | None = Field(None, description="opening hours; null: the fleet's default")


_SPEC_FIELDS: Final = ("name", "town", "kind", "lat", "lon", "hours")
_REQUIRED_FIELDS: Final = ("name", "town", "kind")


class ServiceBody(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    prefix: str = Field(pattern=r"^[A-Z]{1,2}$", description="ticket letter(s)")
    sla_s: int = Field(0, ge=0, description="waiting limit, whole minutes in seconds; 0: none")
    windows: list[int] = Field(default_factory=list, description="windows that also call it "
                               "from now on (a new service needs one)")


class WindowBody(BaseModel):
    services: list[str] = Field(min_length=1, description="codes of the services it calls")
    name: str | None = Field(None, max_length=100)
    priority: bool = Field(False, description="优先服务专窗")


def _site_written(central: Central, principal: Principal, site_id: str) -> dict[str, Any]:
    return central.read_as(principal).site_detail(site_id, central.now()).to_json()


def _own_site(central: Central, principal: Principal, site_id: str) -> None:
    """:class:`OutOfScope` for a site of a town the caller does not cover (404 if none)."""
    central.read_as(principal).require_site(site_id)


@router.post("/sites", tags=["registry"], status_code=201)
def api_create_site(request: Request, spec: SiteSpec, principal: Admin) -> dict[str, Any]:
    """Add a site with its services, windows and (optionally) opening hours."""
    central = central_of(request)
    principal.require_town(spec.town, f"town {spec.town!r}")
    central.registry.create_site(spec, actor=actor_of(request, principal), now=central.now())
    return _site_written(central, principal, spec.id)


@router.patch("/sites/{site_id}", tags=["registry"])
def api_patch_site(
    request: Request, site_id: str, patch: SitePatch, principal: Admin
) -> dict[str, Any]:
    central = central_of(request)
    actor, now = actor_of(request, principal), central.now()
    given = patch.model_fields_set
    if any(name in given and getattr(patch, name) is None for name in _REQUIRED_FIELDS):
        raise InvalidRequest(f"{', '.join(_REQUIRED_FIELDS)} cannot be null")
    changes = {name: getattr(patch, name) for name in _SPEC_FIELDS if name in given}
    _own_site(central, principal, site_id)
    if "town" in changes:
        principal.require_town(changes["town"], f"town {changes['town']!r}")
    if changes:
        central.registry.change_site(site_id, lambda spec: dataclasses.replace(spec, **changes),
                                     actor=actor, now=now)  # fmt: skip
    if "expected_config_version" in given:
        central.registry.set_expected_config(site_id, patch.expected_config_version, now=now,
                                             actor=actor)  # fmt: skip
    return _site_written(central, principal, site_id)


@router.post("/sites/{site_id}/retire", tags=["registry"])
def api_retire_site(
    request: Request, site_id: str, principal: Admin,
    force: Annotated[bool, Query(description="retire it although its edge is online")] = False,
) -> dict[str, Any]:
    """Take the site out of the fleet; 409 while its edge is online, unless ``force``."""
    central = central_of(request)
    _own_site(central, principal, site_id)
    retirement = central.registry.retire_site(site_id, actor=actor_of(request, principal),
                                              now=central.now(), force=force)  # fmt: skip
    if central.service is not None:
        central.service.queue_notifications(retirement.notifications)
    return {"site": site_id, "was_online": retirement.was_online,
            "alarms_cleared": retirement.alarms_cleared,
            "detail": _site_written(central, principal, site_id)}  # fmt: skip


@router.post("/sites/{site_id}/restore", tags=["registry"])
def api_restore_site(request: Request, site_id: str, principal: Admin) -> dict[str, Any]:
    central = central_of(request)
    _own_site(central, principal, site_id)
    central.registry.restore_site(site_id, actor=actor_of(request, principal), now=central.now())
    return _site_written(central, principal, site_id)


def _edit_site(request: Request, principal: Principal, site_id: str,
               edit: Edit) -> dict[str, Any]:  # fmt: skip
    central = central_of(request)
    _own_site(central, principal, site_id)
    central.registry.change_site(site_id, edit, actor=actor_of(request, principal),
                                 now=central.now())  # fmt: skip
    return _site_written(central, principal, site_id)


@router.put("/sites/{site_id}/services/{code}", tags=["registry"])
def api_put_service(request: Request, site_id: str, code: str, body: ServiceBody,
                    principal: Admin) -> dict[str, Any]:  # fmt: skip
    service = ServiceSpec(code, body.name, body.prefix, body.sla_s)
    return _edit_site(request, principal, site_id,
                      lambda spec: spec.with_service(service, body.windows))  # fmt: skip


@router.delete("/sites/{site_id}/services/{code}", tags=["registry"])
def api_delete_service(request: Request, site_id: str, code: str,
                       principal: Admin) -> dict[str, Any]:  # fmt: skip
    return _edit_site(request, principal, site_id, lambda spec: spec.without_service(code))


@router.put("/sites/{site_id}/windows/{number}", tags=["registry"])
def api_put_window(request: Request, site_id: str, number: int, body: WindowBody,
                   principal: Admin) -> dict[str, Any]:  # fmt: skip
    window = WindowSpec(number, tuple(body.services), body.name, body.priority)
    return _edit_site(request, principal, site_id, lambda spec: spec.with_window(window))


@router.delete("/sites/{site_id}/windows/{number}", tags=["registry"])
def api_delete_window(request: Request, site_id: str, number: int,
                      principal: Admin) -> dict[str, Any]:  # fmt: skip
    return _edit_site(request, principal, site_id, lambda spec: spec.without_window(number))


@router.get("/registry/{part}.csv", tags=["registry"], response_class=PlainTextResponse)
def api_registry_csv(
    request: Request, part: Literal["sites", "services", "windows"], principal: Operator
) -> Response:
    """One file of the registry export (the import's format; retired sites marked)."""
    text = central_of(request).read_as(principal).registry_sheet()[part]
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{part}.csv"'})


class ImportRequest(BaseModel):
    """The CSV files (any of the three) as text; see central/registry_csv.py for the format."""

    sites: str | None = None
    services: str | None = None
    windows: str | None = None
    dry_run: bool = Field(True, description="only show what would change (the default)")
    retire_missing: bool = Field(False, description="retire sites in service not in sites")
    force: bool = Field(False, description="retire sites although their edge is online")


@router.post("/registry/import", tags=["registry"])
def api_registry_import(request: Request, body: ImportRequest, principal: Admin) -> dict[str, Any]:
    """The diff (added, changed, retired, restored, problems); applied unless ``dry_run``.

    An import with any problem changes nothing (422 with every problem). A city-wide
    admin's: an import may add, move and retire sites anywhere."""
    principal.require_city("导入站点登记")
    central = central_of(request)
    sheet = read_sheet(sites=body.sites, services=body.services, windows=body.windows)
    options = {"retire_missing": body.retire_missing, "force": body.force}
    if body.dry_run:
        return central.registry.plan_import(sheet, **options).to_json()
    plan = central.registry.apply_import(sheet, actor=actor_of(request, principal),
                                         now=central.now(), **options)  # fmt: skip
    if central.service is not None:
        central.service.queue_notifications(plan.notifications)
    return plan.to_json()


# --------------------------------------------------------------------------- the audit log


def _audit_params(
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    action: Annotated[str | None, Query(max_length=40, description="e.g. site.update, or "
                                        "site. for every site change")] = None,
    target: Annotated[str | None, Query(max_length=100)] = None,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 500,
) -> dict[str, Any]:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidRequest(f"{name}: give a time zone (e.g. 2026-11-23T08:00:00+08:00)")
    return {"since": since, "until": until, "action": action, "target": target,
            "actor": actor, "before_id": before_id, "limit": limit}  # fmt: skip


AuditParams = Annotated[dict[str, Any], Depends(_audit_params)]


@router.get("/audit", tags=["audit"])
def api_audit(request: Request, principal: Admin, params: AuditParams) -> dict[str, Any]:
    """Who changed what, when and from where; newest first (page with ``before_id``)."""
    entries = central_of(request).read_as(principal).audit(**params)
    return {"entries": [e.to_json() for e in entries]}


@router.get("/audit.csv", tags=["audit"], response_class=PlainTextResponse)
def api_audit_csv(request: Request, principal: Admin, params: AuditParams) -> Response:
    return Response(audit_csv(central_of(request).read_as(principal).audit(**params)),
                    media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="onedoor-audit.csv"'})


# --------------------------------------------------------------------------- events, alarms


@router.get("/events", tags=["events"])
def api_events(
    request: Request,
    principal: Viewer,
    site: str | None = None,
    type: Annotated[str | None, Query(max_length=32)] = None,
    before_seq: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    events = central_of(request).read_as(principal).events(
        site_id=site, event_type=type, before_seq=before_seq, limit=limit
    )
    return {"events": [e.to_json() for e in events]}


@router.get("/alarms", tags=["alarms"])
def api_alarms(
    request: Request,
    principal: Viewer,
    active: bool = True,
    site: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    central = central_of(request)
    alarms = central.read_as(principal).alarms(now=central.now(), active=active, site_id=site,
                                               limit=limit)  # fmt: skip
    return {"alarms": [a.to_json() for a in alarms]}


@router.post("/alarms/{alarm_id}/ack", tags=["alarms"])
def api_ack_alarm(request: Request, alarm_id: int, principal: Operator) -> dict[str, Any]:
    """Acknowledge through the service, so that history and the webhook stay right."""
    central = central_of(request)
    service = service_of(central)
    central.read_as(principal).alarm(alarm_id, central.now())  # 404, or 403: another town's
    alarm = service.acknowledge_alarm(alarm_id, principal.name)
    log.info("alarm.acknowledged", alarm_id=alarm_id, by=principal.id)
    central.audit.write(actor_of(request, principal), AuditAction.ALARM_ACK, f"alarm:{alarm_id}",
                        {"site": alarm.site_id, "type": alarm.type.value, "device": alarm.device},
                        now=central.now())  # fmt: skip
    return AlarmView.of(alarm, central.now()).to_json()


# --------------------------------------------------------------------------- statistics


def _stat_params(
    scope: Annotated[Literal["site", "town", "fleet", "window", "staff"], Query()] = "site",
    start: Annotated[dt.date | None, Query(alias="from")] = None,
    end: Annotated[dt.date | None, Query(alias="to")] = None,
    site: str | None = None,
    town: str | None = None,
    service: str | None = None,
    period: Annotated[Literal["day", "month", "year"], Query()] = "day",
) -> dict[str, Any]:
    return {
        "scope": scope,
        "start": start,
        "end": end,
        "site": site,
        "town": town,
        "service": service,
        "period": period,
    }


StatParams = Annotated[dict[str, Any], Depends(_stat_params)]


def stat_rows(central: Central, principal: Principal,
              params: dict[str, Any]) -> list[stats.StatRow]:  # fmt: skip
    """The rows a statistics request asks for, of the caller's towns, under the central's
    默认好评 rule."""
    end = params["end"] or stats.business_date(central.now())
    start = params["start"] or end
    config = central.config
    return central.read_as(principal).statistics(
        params["scope"], start, end, site_id=params["site"], town=params["town"],
        service=params["service"], period=params["period"],
        default_value=config.rating_default_value,
        default_in_rates=config.rating_default_in_rates,
    )  # fmt: skip


def stat_labels(central: Central, scope: stats.Scope,
                rows: list[stats.StatRow]) -> tuple[dict[str, str], dict[str, str]]:  # fmt: skip
    """Names of the rows' keys and of the services: exports show names, not ids."""
    names = central.read.stat_names(scope, sorted({r.key for r in rows}))
    return names, central.read.service_names()


@router.get("/statistics", tags=["statistics"])
def api_statistics(request: Request, principal: Viewer, params: StatParams) -> dict[str, Any]:
    central = central_of(request)
    rows = stat_rows(central, principal, params)
    names, services = stat_labels(central, params["scope"], rows)
    return {"rows": [stats.row_values(r, names, services) for r in rows]}


@router.get("/statistics.csv", tags=["statistics"], response_class=PlainTextResponse)
def api_statistics_csv(request: Request, principal: Viewer, params: StatParams) -> Response:
    central = central_of(request)
    rows = stat_rows(central, principal, params)
    names, services = stat_labels(central, params["scope"], rows)
    name = f"onedoor-stats-{params['scope']}-{params['period']}.csv"
    return Response(
        stats.rows_to_csv(rows, names, services),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# --------------------------------------------------------------------------- commands


class CommandRequest(BaseModel):
    """A command to one site; ``args`` are those of the command (see the MQTT contract)."""

    name: Literal["announce", "reprint", "screen_notice", "reload_config", "diagnostics"]
    args: dict[str, Any] = Field(default_factory=dict)
    ttl_s: int = Field(DEFAULT_COMMAND_TTL_S, ge=1, le=MAX_COMMAND_TTL_MS // 1000)


@router.post("/sites/{site_id}/commands", tags=["commands"], status_code=202)
async def api_send_command(
    request: Request, site_id: str, body: CommandRequest, principal: Operator
) -> dict[str, Any]:
    """Publish ``cmd/{name}`` to the site (QoS 1) and record it.

    A command to an offline site waits in the broker for the edge's persistent
    session; the edge refuses it at or after ``expires_at``, and the API shows
    it ``expired`` once that time has passed with no result. Args the MQTT
    contract refuses answer 422 with the reason.
    """
    central = central_of(request)
    service = service_of(central)
    args = command_args(body.name, body.args)
    await run_in_threadpool(_own_site, central, principal, site_id)
    command = await service.send_command(site_id, args, ttl_s=body.ttl_s,
                                         issued_by=principal.name)  # fmt: skip
    log.info("command.sent", site=site_id, command=body.name, id=str(command.id),
             by=principal.id, ttl_s=body.ttl_s)  # fmt: skip
    await run_in_threadpool(
        central.audit.write, actor_of(request, principal), AuditAction.COMMAND_SEND, site_id,
        {"command": body.name, "id": str(command.id), "args": body.args, "ttl_s": body.ttl_s},
        now=central.now())  # fmt: skip
    view = await run_in_threadpool(central.read_as(principal).command, command.id, central.now())
    return view.to_json()


@router.get("/sites/{site_id}/commands", tags=["commands"])
def api_site_commands(
    request: Request,
    site_id: str,
    principal: Viewer,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    central = central_of(request)
    commands = central.read_as(principal).commands(site_id, central.now(), limit=limit)
    return {"commands": [c.to_json() for c in commands]}


@router.get("/commands/{command_id}", tags=["commands"])
def api_command(request: Request, command_id: uuid.UUID, principal: Viewer) -> dict[str, Any]:
    central = central_of(request)
    return central.read_as(principal).command(command_id, central.now()).to_json()


# --------------------------------------------------------------------------- edge devices


@router.get("/sites/{site_id}/devices", tags=["devices"])
def api_site_devices(request: Request, site_id: str, principal: Viewer) -> dict[str, Any]:
    """Every edge device (journal) that spoke for the site and its part in numbering."""
    devices = central_of(request).read_as(principal).site_devices(site_id)
    return {"devices": [d.to_json() for d in devices]}


class TakeoverRequest(BaseModel):
    device: str = Field(pattern=r"^[0-9a-f]{16}$", description="the waiting device's id")
    skip: int = Field(0, ge=0, le=9999, description=(
        "numbers per prefix to leave unused: tickets the old device may have issued that "
        "never reached the central (it was offline)"))


@router.post("/sites/{site_id}/takeover", tags=["devices"])
async def api_takeover(
    request: Request, site_id: str, body: TakeoverRequest, principal: Operator
) -> dict[str, Any]:
    """Let a new device of the site (a replaced Pi or SD card, waiting) number its tickets.

    The old device is told to stop (retained ``lease``) whenever it comes back; the
    new one gets the day as the central knows it. 409 when the device does not wait.
    """
    central = central_of(request)
    service = service_of(central)
    await run_in_threadpool(_own_site, central, principal, site_id)
    await service.takeover(site_id, body.device, actor=actor_of(request, principal),
                           skip=body.skip)
    log.warning("device.takeover", site=site_id, device=body.device, skip=body.skip,
                by=principal.id)
    devices = await run_in_threadpool(central.read_as(principal).site_devices, site_id)
    return {"devices": [d.to_json() for d in devices]}


@router.get("/sites/{site_id}/diagnostics", tags=["devices"])
def api_site_diagnostics(
    request: Request,
    site_id: str,
    principal: Operator,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """Answers to ``diagnostics`` commands, newest first (send one on ``/commands``)."""
    reports = central_of(request).read_as(principal).diagnostics(site_id, limit=limit)
    return {"diagnostics": [r.to_json() for r in reports]}


@router.get("/diagnostics/{command_id}", tags=["devices"])
def api_diagnostic(request: Request, command_id: uuid.UUID,
                   principal: Operator) -> dict[str, Any]:
    """The answer to one ``diagnostics`` command; 404 until it arrived."""
    return central_of(request).read_as(principal).diagnostic(command_id).to_json()


# --------------------------------------------------------------------------- registry, tokens


@router.get("/inventory", tags=["registry"])
def api_inventory(request: Request, principal: Operator) -> dict[str, Any]:
    return ansible_inventory(central_of(request).read_as(principal).inventory_sites())


class TokenRequest(BaseModel):
    role: Role
    name: str = Field(min_length=1, max_length=100)
    towns: list[str] | None = Field(None, description="the towns it covers; null: the city")


@router.get("/tokens", tags=["tokens"])
def api_tokens(request: Request, principal: Admin) -> dict[str, Any]:
    principal.require_city("管理访问令牌")
    return {"tokens": [TokenView.of(t).to_json() for t in central_of(request).tokens.list()]}


@router.post("/tokens", tags=["tokens"], status_code=201)
def api_create_token(request: Request, body: TokenRequest, principal: Admin) -> dict[str, Any]:
    principal.require_city("管理访问令牌")
    central = central_of(request)
    info, plaintext = central.tokens.create(body.role, body.name, body.towns)
    log.info("auth.token_created_via_api", token_id=info.token_id, by=principal.id)
    central.audit.write(actor_of(request, principal), AuditAction.TOKEN_CREATE,
                        f"token:{info.token_id}", {"role": info.role.value, "name": info.name,
                                                   "towns": body.towns},
                        now=central.now())  # fmt: skip
    return {"id": info.token_id, "name": info.name, "role": info.role.value, "token": plaintext,
            "towns": body.towns}  # fmt: skip


@router.delete("/tokens/{token_id}", tags=["tokens"], status_code=204)
def api_revoke_token(request: Request, token_id: str, principal: Admin) -> Response:
    principal.require_city("管理访问令牌")
    central = central_of(request)
    if not central.tokens.revoke(token_id):
        raise UnknownToken(token_id)
    central.audit.write(actor_of(request, principal), AuditAction.TOKEN_REVOKE,
                        f"token:{token_id}", now=central.now())
    return Response(status_code=204)


@root_router.get("/healthz", tags=["ops"])
def healthz(request: Request) -> JSONResponse:
    """200 when the database answers; 503 otherwise. No authentication (load balancers)."""
    if not central_of(request).read.database_answers():
        return JSONResponse({"status": "unhealthy", "database": "down"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "up"})


def install(app: FastAPI) -> None:
    """Add the API routes to ``app`` (with the accounts' and the bulk commands')."""
    from central import api_bulk, api_users

    app.include_router(router)
    app.include_router(api_users.router)
    app.include_router(api_bulk.router)
    app.include_router(rating_api.router)
    app.include_router(root_router)


__all__ = ["API_PREFIX", "CommandRequest", "install", "router"]

"""One command to many sites: a town, several towns, chosen sites, or the whole city.

::

    POST /api/v1/bulk-commands          operator  {"name", "args", "ttl_s", "target": {"all":
                                                  true} | {"towns": [...]} | {"sites": [...]}}
    GET  /api/v1/bulk-commands          viewer    the latest, with counts per state
    GET  /api/v1/bulk-commands/{id}     viewer    counts per state, and per site: pending,
                                                  succeeded, failed, expired, or refused
                                                  (never sent) and why [?state=failed&limit=]

The command kinds of the MQTT contract (``firmware_protocols.mqtt_messages.
COMMAND_ARGS``) can be sent — the hall screens' notice, an announcement, a
config reload — except those of :data:`NOT_FOR_MANY`; the args are checked
once, by the contract, before anything is recorded. Stopping ticket issuing is
not a bulk command: it is a state the central holds and keeps sending to the
sites it covers until each reports it (the emergency stop's own API, by site,
town or city); a bulk command is sent once, so :data:`NOT_FOR_MANY` names it. The target is
resolved within the caller's towns (a town manager's "whole city" is their
towns; another town's site or town is refused, 403). Each site's command is a
row of ``commands`` pointing at the bulk; the per-site command limit
(``command_limit_per_site``) holds for each site: a site past it is listed as
refused with the time to wait, the others are sent. The edges' results arrive
as for any command and the counts follow (the page ``/commands/{id}`` shows
them live). The audit log has one ``command.bulk`` entry per bulk command.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Final

import structlog
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, model_validator
from starlette.concurrency import run_in_threadpool

from central.access import Operator, Viewer, actor_of
from central.audit import AuditAction
from central.context import central_of, service_of
from central.errors import CommandRefused
from central.service import command_args
from central.views import BulkState
from firmware_protocols.mqtt_messages import MAX_COMMAND_TTL_MS

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/v1", tags=["commands"])

DEFAULT_BULK_TTL_S = 600

NOT_FOR_MANY: Final[Mapping[str, str]] = MappingProxyType({
    "reprint": "补打号票只针对一个站点的一张号票 / a reprint is one site's ticket",
    "issuing": "暂停取号请使用紧急停号（按站点、镇街或全市） / stopping ticket issuing is "
               "the emergency stop's, which keeps it until lifted",
    "calendar": "节假日安排由全市日历下发 / the city calendar is pushed as a whole",
})
"""Command kinds a bulk command refuses, and why (some may not be in the contract yet)."""


class BulkTarget(BaseModel):
    """Exactly one of: the whole city (of the caller's towns), some towns, some sites."""

    all: bool = False
    towns: list[Annotated[str, Field(min_length=1, max_length=50)]] = Field(
        default_factory=list, max_length=500)
    sites: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=50_000)

    @model_validator(mode="after")
    def one_kind(self) -> BulkTarget:
        if sum((self.all, bool(self.towns), bool(self.sites))) != 1:
            raise ValueError("give exactly one of all, towns, sites")
        return self

    def describe(self) -> dict[str, Any]:
        if self.all:
            return {"all": True}
        return {"towns": sorted(set(self.towns))} if self.towns else {"sites": self.sites}


class BulkRequest(BaseModel):
    name: str = Field(min_length=1, max_length=32, description="announce, screen_notice, "
                      "reload_config, or any other command of the MQTT contract")
    args: dict[str, Any] = Field(default_factory=dict)
    ttl_s: int = Field(DEFAULT_BULK_TTL_S, ge=1, le=MAX_COMMAND_TTL_MS // 1000)
    target: BulkTarget


@router.post("/bulk-commands", status_code=202)
async def api_send_bulk(request: Request, body: BulkRequest,
                        principal: Operator) -> dict[str, Any]:  # fmt: skip
    central = central_of(request)
    service = service_of(central)
    if (why := NOT_FOR_MANY.get(body.name)) is not None:
        raise CommandRefused(f"{body.name}: {why}")
    args = command_args(body.name, body.args)
    read = central.read_as(principal)
    sites = await run_in_threadpool(lambda: read.command_targets(
        whole_city=body.target.all, towns=body.target.towns, sites=body.target.sites))  # fmt: skip
    target = body.target.describe()
    if principal.towns is not None and body.target.all:
        target["within"] = sorted(principal.towns)
    sent = await service.send_bulk(sites, args, target=target, ttl_s=body.ttl_s,
                                   issued_by=principal.name)  # fmt: skip
    await run_in_threadpool(
        central.audit.write, actor_of(request, principal), AuditAction.COMMAND_BULK,
        f"bulk:{sent.id}", {"command": body.name, "args": body.args, "ttl_s": body.ttl_s,
                            "target": target, "sites": len(sites), "sent": sent.sent,
                            "refused": sorted(sent.refused)},
        now=central.now())  # fmt: skip
    view = await run_in_threadpool(read.bulk_command, sent.id, central.now())
    return view.to_json()


@router.get("/bulk-commands")
def api_bulk_commands(
    request: Request, principal: Viewer, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, Any]:
    central = central_of(request)
    views = central.read_as(principal).bulk_commands(central.now(), limit=limit)
    return {"bulk_commands": [v.to_json() for v in views]}


@router.get("/bulk-commands/{bulk_id}")
def api_bulk_command(
    request: Request,
    bulk_id: uuid.UUID,
    principal: Viewer,
    state: BulkState | None = None,
    limit: Annotated[int | None, Query(ge=0, le=100_000)] = None,
) -> dict[str, Any]:
    """The counts per state and a row per site (of ``state`` only; the first ``limit``)."""
    central = central_of(request)
    view = central.read_as(principal).bulk_command(bulk_id, central.now(), state=state,
                                                   limit=limit)  # fmt: skip
    return view.to_json()


__all__ = ["NOT_FOR_MANY", "BulkRequest", "BulkTarget", "router"]

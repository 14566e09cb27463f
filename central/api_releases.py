"""The REST API of releases and rollouts (``/api/v1``), beside :mod:`central.api`.

::

    GET  /api/v1/releases                        viewer    registered releases, newest first
    POST /api/v1/releases                        admin     register one: its manifest.json
    GET  /api/v1/releases/{version}              viewer
    PUT  /api/v1/sites/{id}/release              admin     the release a site should run
    GET  /api/v1/fleet/versions                  viewer    every site's software and config
                                                           version, drift, rollout step
    POST /api/v1/rollouts                        admin     plan a rollout (canary, towns)
    GET  /api/v1/rollouts                        viewer    newest first
    GET  /api/v1/rollouts/{id}                   viewer    its sites, counts, status
    GET  /api/v1/rollouts/{id}/plan              operator  the waves still to do (upgrade.yml)
    GET  /api/v1/rollouts/{id}/gate?wave=N       operator  may wave N start now?
    POST /api/v1/rollouts/{id}/sites/{site}      admin     a site's step (upgrade.yml)
    POST /api/v1/rollouts/{id}/resume|cancel     admin

The rules are :mod:`central.rollout`'s and :mod:`central.releases`'; these handlers only
translate.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, Field

from central.access import Admin, Operator, Viewer, actor_of
from central.api import API_PREFIX
from central.context import central_of
from central.models import RolloutStep
from central.releases import Releases, manifest_of
from central.rollout import Rollouts

router = APIRouter(prefix=API_PREFIX, tags=["releases"])

_VERSION = r"^[0-9][0-9A-Za-z.+!_-]{0,63}$"


def _releases(request: Request) -> Releases:
    return Releases(central_of(request).sessions)


def _rollouts(request: Request) -> Rollouts:
    return Rollouts(central_of(request).sessions)


@router.get("/releases")
def api_releases(request: Request, _: Viewer) -> dict[str, Any]:
    return {"releases": [r.to_json() for r in _releases(request).newest_first()]}


@router.post("/releases", status_code=201)
async def api_register_release(request: Request, principal: Admin) -> dict[str, Any]:
    """Register a release: the body is the ``manifest.json`` of ``onedoor release build``."""
    central = central_of(request)
    manifest = manifest_of(await request.body())
    return _releases(request).register(manifest, actor=actor_of(request, principal),
                                       now=central.now()).to_json()  # fmt: skip


@router.get("/releases/{version}")
def api_release(request: Request, version: str, _: Viewer) -> dict[str, Any]:
    return _releases(request).get(version).to_json()


class ExpectedRelease(BaseModel):
    version: str | None = Field(pattern=_VERSION, description="null: none expected")


@router.put("/sites/{site_id}/release")
def api_expect_release(request: Request, site_id: str, body: ExpectedRelease,
                       principal: Admin) -> dict[str, Any]:  # fmt: skip
    """The release the site should run (a rollout sets it; this is for one installed
    otherwise, e.g. by hand)."""
    central = central_of(request)
    changed = _releases(request).set_expected(site_id, body.version,
                                              actor=actor_of(request, principal),
                                              now=central.now())  # fmt: skip
    return {"site": site_id, "expected_release": body.version, "changed": changed}


@router.get("/fleet/versions")
def api_fleet_versions(
    request: Request, _: Viewer, town: Annotated[str, Query(max_length=50)] = "",
    drift: Annotated[bool, Query(description="only sites with software or config drift")] = False,
) -> dict[str, Any]:
    return _releases(request).versions(town=town, drift_only=drift).to_json()


class RolloutRequest(BaseModel):
    release: str = Field(pattern=_VERSION)
    sites: list[str] | None = Field(None, max_length=50_000,
                                    description="default: every site in service")
    towns: list[str] | None = Field(None, max_length=1000,
                                    description="the town order (and filter); default: by name")
    canary: list[str] | int = Field(1, description="site ids, or how many sites go first")
    max_failures: int = Field(0, ge=0, description="more failed sites than this stop it")


@router.post("/rollouts", status_code=201)
def api_create_rollout(request: Request, body: RolloutRequest,
                       principal: Admin) -> dict[str, Any]:  # fmt: skip
    central = central_of(request)
    return _rollouts(request).create(
        body.release, sites=body.sites, towns=body.towns, canary=body.canary,
        max_failures=body.max_failures, actor=actor_of(request, principal), now=central.now(),
    ).to_json()


@router.get("/rollouts")
def api_rollouts(request: Request, _: Viewer) -> dict[str, Any]:
    return {"rollouts": [r.to_json() for r in _rollouts(request).newest_first()]}


@router.get("/rollouts/{rollout_id}")
def api_rollout(request: Request, rollout_id: int, _: Viewer) -> dict[str, Any]:
    return _rollouts(request).get(rollout_id).to_json()


@router.get("/rollouts/{rollout_id}/plan")
def api_rollout_plan(request: Request, rollout_id: int, _: Operator) -> dict[str, Any]:
    return _rollouts(request).plan(rollout_id).to_json()


@router.get("/rollouts/{rollout_id}/gate")
def api_rollout_gate(request: Request, rollout_id: int, _: Operator,
                     wave: Annotated[int, Query(ge=0)]) -> dict[str, Any]:  # fmt: skip
    return _rollouts(request).gate(rollout_id, wave).to_json()


class SiteReport(BaseModel):
    step: RolloutStep
    detail: str | None = Field(None, max_length=2000)
    from_release: str | None = Field(None, pattern=_VERSION,
                                     description="with upgrading: what it ran before")


@router.post("/rollouts/{rollout_id}/sites/{site_id}")
def api_rollout_report(request: Request, rollout_id: int, site_id: str, body: SiteReport,
                       principal: Admin) -> dict[str, Any]:  # fmt: skip
    central = central_of(request)
    site = _rollouts(request).report(rollout_id, site_id, body.step, detail=body.detail,
                                     from_release=body.from_release,
                                     actor=actor_of(request, principal), now=central.now())
    rollout = _rollouts(request).get(rollout_id)
    return {"site": site.to_json(), "rollout_status": rollout.status,
            "stopped_reason": rollout.stopped_reason}  # fmt: skip


class ResumeRequest(BaseModel):
    retry_failed: bool = Field(False, description="put rolled-back and failed sites back in line")


@router.post("/rollouts/{rollout_id}/resume")
def api_rollout_resume(request: Request, rollout_id: int, body: ResumeRequest,
                       principal: Admin) -> dict[str, Any]:  # fmt: skip
    central = central_of(request)
    return _rollouts(request).resume(rollout_id, retry_failed=body.retry_failed,
                                     actor=actor_of(request, principal),
                                     now=central.now()).to_json()  # fmt: skip


@router.post("/rollouts/{rollout_id}/cancel")
def api_rollout_cancel(request: Request, rollout_id: int, principal: Admin) -> dict[str, Any]:
    central = central_of(request)
    return _rollouts(request).cancel(rollout_id, actor=actor_of(request, principal),
                                     now=central.now()).to_json()  # fmt: skip


def install(app: FastAPI) -> None:
    app.include_router(router)


__all__ = ["install", "router"]

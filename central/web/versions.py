"""The versions page: every site's software and config version, what it should run, the
drift of each, and the rollouts (newest first) with where each site is.

::

    GET /versions?town=&drift=1     viewer session; the same rows as GET /api/v1/fleet/versions

The rows come from :class:`central.releases.Releases` and the rollouts from
:class:`central.rollout.Rollouts`, as the JSON API reads them.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from central.context import central_of
from central.releases import Releases
from central.rollout import Rollouts
from central.web.pages import page_principal
from central.web.render import page

ROLLOUTS_SHOWN: Final = 5

router = APIRouter(include_in_schema=False)


@router.get("/versions")
def versions_page(request: Request, town: str = "", drift: bool = False) -> HTMLResponse:
    principal = page_principal(request)
    sessions = central_of(request).sessions
    versions = Releases(sessions).versions(town=town[:50], drift_only=drift)
    rollouts = Rollouts(sessions).newest_first()[:ROLLOUTS_SHOWN]
    return page(request, "versions.html", principal, versions=versions, rollouts=rollouts,
                releases=Releases(sessions).newest_first(), town=town, drift=drift)


__all__ = ["router"]

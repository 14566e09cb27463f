"""Dashboards: server-rendered pages (Chinese first, English switch) kept live by SSE.

::

    central/web/pages.py     /login, /logout, /, /sites/{id}, /alarms, /statistics
    central/web/versions.py  /versions: software and config versions, drift, rollouts
    central/web/people.py    /admin/users, /account, /commands (to many sites), /commands/{id}
    central/web/docs.py      /statistics/definitions (docs/STATISTICS.md as a page)
    central/web/ratings.py   /ratings, /ratings/cases/{id}, /ratings/ranking (好差评)
    central/web/bookings.py  /bookings, /sites/{id}/bookings (预约 per site and slot)
    central/web/fleet.py     the fleet snapshot, towns aggregated, live messages per scope
    central/web/live.py      /live/fleet, /live/sites/{id}, /live/alarms (SSE) + LiveHub
    central/web/progress.py  /q/{token}: the citizens' progress pages (public, no login)
    central/web/render.py    Jinja environment, filters, language, page response
    central/web/text.py      every string, Chinese and English
    central/web/templates/, static/   (uPlot and Swagger UI vendored: no CDN)

Both pages and streams read only through :class:`central.queries.ReadModel`
(the JSON API reads the same records), and need a dashboard session; the
progress pages need none (they read the site's latest ``progress`` in memory).
"""

from __future__ import annotations

import urllib.parse

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from central.web import bookings, docs, live, pages, people, progress, ratings, versions
from central.web.fleet import TOWN_TILES_ABOVE, FleetSnapshot
from central.web.live import LIVE_INTERVAL_S, LiveHub, sse
from central.web.pages import LoginRequired, fleet_html
from central.web.render import TEMPLATES
from central.web.text import TEXT, translator

STATIC = TEMPLATES.parent / "static"


def install(app: FastAPI, hub: LiveHub) -> None:
    """Add the pages, the live streams and /static to ``app``."""
    app.state.live_hub = hub
    app.include_router(pages.router)
    app.include_router(people.router)
    app.include_router(docs.router)
    app.include_router(ratings.router)
    app.include_router(bookings.router)
    app.include_router(live.router)
    app.include_router(versions.router)
    progress.install(app, app.state.central)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        target = urllib.parse.quote(exc.next_path, safe="/")
        return RedirectResponse(f"/login?next={target}", status_code=303)


__all__ = [
    "LIVE_INTERVAL_S",
    "TEXT",
    "TOWN_TILES_ABOVE",
    "FleetSnapshot",
    "LiveHub",
    "fleet_html",
    "install",
    "sse",
    "translator",
]

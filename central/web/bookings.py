"""预约 pages for managers: the day's bookings of their sites, and one site's day per slot.

::

    GET  /bookings?day=&town=             per site: booked, checked in, no-show, cancelled
    GET  /sites/{id}/bookings?day=        per service and slot: booked / quota, checked in,
                                          no-show, not yet checked in, cancelled

Scoped like every page: a manager of some towns sees their sites only (another site
is 403). Read from :class:`central.bookings.Bookings` (the same figures as the
bookings API); a slot's quota is the site's booking rules'.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from central import stats
from central.bookings import FIGURES
from central.context import central_of
from central.web.pages import page_principal
from central.web.render import language, page
from central.web.text import translator

router = APIRouter(include_in_schema=False)


def _day_of(text: str, today: dt.date) -> tuple[dt.date, bool]:
    """The day asked for (today if none), and whether the text was a bad date."""
    if not text:
        return today, False
    try:
        return dt.date.fromisoformat(text), False
    except ValueError:
        return today, True


@router.get("/bookings")
def bookings_page(request: Request, day: str = "", town: str = "") -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    now = central.now()
    chosen, bad = _day_of(day, stats.business_date(now))
    read = central.read_as(principal)
    sites = {site.id: site for site in read.sites()}
    # Another town's sites are not in ``sites``: their rows are dropped below.
    towns = [town] if town else principal.towns
    rows = [row for row in central.bookings.counts(chosen.isoformat(), now, towns=towns)
            if row["site"] in sites]
    totals = {name: sum(row[name] for row in rows) for name in FIGURES}
    return page(request, "bookings.html", principal, rows=rows, totals=totals,
                names={site_id: site.name for site_id, site in sites.items()},
                day=chosen.isoformat(), town_filter=town, towns=read.towns(),
                error=translator(language(request))("bad_date") if bad else "", **_days(chosen))


@router.get("/sites/{site_id}/bookings")
def site_bookings_page(request: Request, site_id: str, day: str = "") -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    now = central.now()
    read = central.read_as(principal)
    read.require_site(site_id)
    chosen, bad = _day_of(day, stats.business_date(now))
    site = read.site_spec(site_id)  # a retired site's bookings too
    slots = central.bookings.slots(site_id, chosen.isoformat(), now)
    totals: dict[str, Any] = {name: sum(s[name] for s in slots) for name in FIGURES}
    totals["quota"] = sum(s["quota"] for s in slots)
    return page(request, "site_bookings.html", principal, site=site, slots=slots,
                totals=totals, day=chosen.isoformat(), service_names=read.service_names(),
                error=translator(language(request))("bad_date") if bad else "", **_days(chosen))


def _days(day: dt.date) -> dict[str, str]:
    return {"prev_day": (day - dt.timedelta(days=1)).isoformat(),
            "next_day": (day + dt.timedelta(days=1)).isoformat()}


__all__ = ["router"]

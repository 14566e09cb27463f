"""The API of bookings (预约), for booking platforms (粤省事-style) and the dashboards.

::

    POST /api/v1/bookings                    operator  {"site": "zs-city", "service": "shebao",
                                                        "day": "2026-12-08", "slot": "09:00-09:30",
                                                        "id_number": "...", "reference": "..."}
                                                        -> 201 {"booking": {"code": ...}}
    POST /api/v1/bookings/{code}/cancel      operator  -> 200 (409 past the cancel deadline)
    GET  /api/v1/bookings/{code}             viewer    one booking, its status
    GET  /api/v1/sites/{site}/bookings?day=  viewer    a site's bookings of a day (default today)
    GET  /api/v1/bookings/stats?day=[&site=] viewer    per site: booked, checked in, no-show

A platform calls with an operator token of its own (``onedoor central token create
--role operator --name yss``); a token of some towns books, reads and counts their
sites only (403 otherwise). The rules and errors are :mod:`central.bookings`: 404 an unknown
site or booking, 422 a bad day, slot, service or ID number (its check digit is
verified), 409 a full slot, a second booking of the person that day, a cancel too
late, 503 when the central has no ``booking_person_salt``. The ID number is never
stored nor logged: only its salted hash. A booking for today goes to its site at
once (``cmd/bookings``, :mod:`central.pushes`); a site offline gets it when back.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from central.access import Operator, Viewer
from central.api import API_PREFIX
from central.auth import Principal
from central.bookings import BookingView
from central.context import Central, central_of, service_of
from central.errors import InvalidRequest
from central.stats import business_date

router = APIRouter(prefix=API_PREFIX)

DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


class BookingRequest(BaseModel):
    site: str = Field(min_length=1, max_length=64)
    service: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    day: str = Field(pattern=DAY_PATTERN)
    slot: str = Field(min_length=11, max_length=11)
    id_number: str = Field(min_length=18, max_length=18)
    reference: str | None = Field(default=None, max_length=64)


@router.post("/bookings", tags=["bookings"], status_code=201)
async def api_book(request: Request, body: BookingRequest,
                   principal: Operator) -> dict[str, Any]:
    central = central_of(request)
    await run_in_threadpool(central.read_as(principal).require_site, body.site)
    booking, sent = await service_of(central).book(
        body.site, body.service, body.day, body.slot, body.id_number,
        reference=body.reference, by=principal.name)
    return {"booking": booking.to_json(), "sent": sent}


@router.get("/bookings/stats", tags=["bookings"])
def api_booking_stats(request: Request, principal: Viewer, day: str | None = None,
                      site: str | None = None) -> dict[str, Any]:
    central = central_of(request)
    now = central.now()
    day = _day(day, now)
    return {"day": day, "sites": central.bookings.counts(day, now, site,
                                                         towns=principal.towns)}


@router.post("/bookings/{code}/cancel", tags=["bookings"])
async def api_cancel(request: Request, code: str, principal: Operator) -> dict[str, Any]:
    central = central_of(request)
    await run_in_threadpool(_booking_in_scope, central, principal, code)
    booking, sent = await service_of(central).cancel_booking(code, by=principal.name)
    return {"booking": booking.to_json(), "sent": sent}


@router.get("/bookings/{code}", tags=["bookings"])
async def api_booking(request: Request, code: str, principal: Viewer) -> dict[str, Any]:
    central = central_of(request)
    view = await run_in_threadpool(_booking_in_scope, central, principal, code)
    return {"booking": view.to_json()}


@router.get("/sites/{site_id}/bookings", tags=["bookings"])
def api_site_bookings(request: Request, site_id: str, principal: Viewer,
                      day: str | None = None) -> dict[str, Any]:
    central = central_of(request)
    central.read_as(principal).require_site(site_id)
    now = central.now()
    day = _day(day, now)
    return {"site": site_id, "day": day,
            "bookings": [b.to_json() for b in central.bookings.of_site(site_id, day, now)]}


def _booking_in_scope(central: Central, principal: Principal, code: str) -> BookingView:
    """The booking ``code`` (404), if its site is in the caller's towns (403 otherwise)."""
    view = central.bookings.get(code, central.now())
    central.read_as(principal).require_site(view.site)
    return view


def _day(day: str | None, now: dt.datetime) -> str:
    """The day asked for, or today (local)."""
    if day is None:
        return business_date(now).isoformat()
    try:
        return dt.date.fromisoformat(day).isoformat()
    except ValueError:
        raise InvalidRequest(f"day: {day!r} is not a date YYYY-MM-DD") from None


def install(app: FastAPI) -> None:
    app.include_router(router)


__all__ = ["install", "router"]

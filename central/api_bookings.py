"""The API of bookings (预约), for booking platforms (粤省事-style) and the dashboards.

::

    POST /api/v1/bookings                    operator  {"site": "zs-city", "service": "shebao",
                                                        "day": "2026-12-08", "slot": "09:00-09:30",
                                                        "id_number": "...", "reference": "..."}
                                                        -> 201 {"booking": {"code": ...}}
    POST /api/v1/bookings/{code}/change      operator  {"day": ..., "slot": ..., "service": ...}
                                                        (each optional) -> 200, the code kept
    POST /api/v1/bookings/{code}/cancel      operator  -> 200 (409 past the cancel deadline)
    GET  /api/v1/bookings/{code}             viewer    one booking, its status
    GET  /api/v1/sites/{site}/bookings?day=  viewer    a site's bookings of a day (default today)
    GET  /api/v1/bookings/stats?day=[&site=] viewer    per site: booked, checked in, no-show
    GET  /api/v1/sites/{site}/booking_slots?day=  viewer  per slot: booked / quota / checked in
    GET  /api/v1/sites/{site}/booking_rules  viewer    the site's booking rules
    PUT  /api/v1/sites/{site}/booking_rules  admin     replace them (422 naming every problem)

A platform calls with an operator token of its own (``onedoor central token create
--role operator --name yss``); a token of some towns books, reads and counts their
sites only (403 otherwise). The rules and errors are :mod:`central.bookings`: 404 an unknown
site or booking, 422 a bad day, slot, service or ID number (its check digit is
verified) or a slot the site's calendar closes (a closed day, outside the hours or
in the lunch closure, past the service's 停止取号; Chinese first), 409 a full slot, a
second booking of the person that day, an emergency stop in force, a cancel or change
too late, 503 when the central has no ``booking_person_salt``. A change keeps the
booking's code and is checked as a new booking would be, in one transaction; the same
change again changes nothing (a platform may retry it). Every operation is audited.
The ID number is never stored nor logged: only its salted hash. A booking for today
goes to its site at once (``cmd/bookings``, :mod:`central.pushes`); a site offline
gets it when back.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from central.access import Admin, Operator, Viewer, actor_of
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
        reference=body.reference, actor=actor_of(request, principal))
    return {"booking": booking.to_json(), "sent": sent}


class ChangeRequest(BaseModel):
    """What changes (absent: as it is)."""

    service: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    day: str | None = Field(default=None, pattern=DAY_PATTERN)
    slot: str | None = Field(default=None, min_length=11, max_length=11)


@router.post("/bookings/{code}/change", tags=["bookings"])
async def api_change(request: Request, code: str, body: ChangeRequest,
                     principal: Operator) -> dict[str, Any]:
    central = central_of(request)
    await run_in_threadpool(_booking_in_scope, central, principal, code)
    booking, sent = await service_of(central).change_booking(
        code, service=body.service, day=body.day, slot=body.slot,
        actor=actor_of(request, principal))
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
    booking, sent = await service_of(central).cancel_booking(
        code, actor=actor_of(request, principal))
    return {"booking": booking.to_json(), "sent": sent}


@router.get("/bookings/{code}", tags=["bookings"])
async def api_booking(request: Request, code: str, principal: Viewer) -> dict[str, Any]:
    central = central_of(request)
    view = await run_in_threadpool(_booking_in_scope, central, principal, code)
    return {"booking": view.to_json()}


@router.get("/sites/{site_id}/bookings", tags=["bookings"])
def api_site_bookings(request: Request, site_id: str, principal: Viewer,
                      day: str | None = None) -> dict[str, Any]:
    central, day, now = _site_day(request, principal, site_id, day)
    return {"site": site_id, "day": day,
            "bookings": [b.to_json() for b in central.bookings.of_site(site_id, day, now)]}


@router.get("/sites/{site_id}/booking_slots", tags=["bookings"])
def api_site_booking_slots(request: Request, site_id: str, principal: Viewer,
                           day: str | None = None) -> dict[str, Any]:
    central, day, now = _site_day(request, principal, site_id, day)
    return {"site": site_id, "day": day, "slots": central.bookings.slots(site_id, day, now)}


@router.get("/sites/{site_id}/booking_rules", tags=["bookings"])
def api_booking_rules(request: Request, site_id: str, principal: Viewer) -> dict[str, Any]:
    central = central_of(request)
    central.read_as(principal).require_site(site_id)
    return central.bookings.rules(site_id)


@router.put("/sites/{site_id}/booking_rules", tags=["bookings"])
def api_set_booking_rules(request: Request, site_id: str, principal: Admin,
                          rules: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    central = central_of(request)
    central.read_as(principal).require_site(site_id)
    return central.bookings.set_rules(site_id, rules, actor=actor_of(request, principal),
                                      now=central.now())


def _site_day(request: Request, principal: Principal, site_id: str,
              day: str | None) -> tuple[Central, str, dt.datetime]:
    """The central, the day asked for (default today) and now, for a site in the
    caller's towns (403 otherwise)."""
    central = central_of(request)
    central.read_as(principal).require_site(site_id)
    now = central.now()
    return central, _day(day, now), now


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

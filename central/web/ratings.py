"""好差评 pages: the 差评 cases of the towns, one case and its steps, the monthly ranking.

::

    GET  /ratings                   差评 cases (open first, the late ones on top), report status
    GET  /ratings/cases/{id}        one case: the rating, deadlines, notes; the steps as forms
    GET  /ratings/ranking           the month's ranking of windows or staff by 好评率

Reads through ``central.read_as(principal).ratings`` (the caller's towns) and the
statistics (the same as the API); the forms post to the API with the session cookie
(``static/ratings.js``).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from central import stats
from central.auth import Role
from central.context import central_of
from central.errors import InvalidRequest, OutOfScope
from central.rating_api import month_ranking
from central.rating_reads import CaseState
from central.web.pages import page_principal
from central.web.render import page

router = APIRouter(include_in_schema=False)

CASE_STATES: tuple[CaseState, ...] = ("open", "closed", "all")


@router.get("/ratings")
def ratings_page(request: Request, state: str = "open", town: str = "") -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    chosen: CaseState = next((s for s in CASE_STATES if s == state), "open")
    read = central.read_as(principal)
    cases = read.ratings.cases(central.now(), state=chosen, town=town or None)
    month = f"{stats.business_date(central.now()):%Y-%m}"
    return page(request, "ratings.html", principal, cases=cases, state=chosen,
                states=CASE_STATES, town_filter=town, towns=read.towns(),
                counts=read.ratings.report_counts(), month=month)  # fmt: skip


@router.get("/ratings/cases/{case_id}")
def rating_case_page(request: Request, case_id: int) -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    case = central.read_as(principal).ratings.case(case_id, central.now())
    return page(request, "rating_case.html", principal, case=case,
                can_review=principal.role.allows(Role.ADMIN),
                steps_enabled=central.service is not None)  # fmt: skip


@router.get("/ratings/ranking")
def ranking_page(request: Request, month: str = "", scope: str = "window",
                 town: str = "") -> HTMLResponse:  # fmt: skip
    principal = page_principal(request)
    central = central_of(request)
    month = month or f"{stats.business_date(central.now()):%Y-%m}"
    chosen: Literal["window", "staff"] = "staff" if scope == "staff" else "window"
    error = ""
    rows = []
    try:
        rows = month_ranking(central, principal, month, chosen, town or None)
    except (InvalidRequest, OutOfScope) as exc:
        error = str(exc)
    return page(request, "ranking.html", principal, rows=rows, month=month, scope=chosen,
                town_filter=town, towns=central.read_as(principal).towns(),
                error=error)  # fmt: skip


__all__ = ["router"]

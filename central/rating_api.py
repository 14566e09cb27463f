"""The 好差评 routes under ``/api/v1`` (installed by :func:`central.api.install`).

::

    GET  /api/v1/ratings[.csv]               viewer    records (from, to, site, town, status);
                                                       the CSV is the province's field set
    GET  /api/v1/ratings/ranking             viewer    month=YYYY-MM, scope=window|staff, town
    POST /api/v1/ratings/report              admin     send what is due to the province now
    POST /api/v1/ratings/report/retry        admin     put failed records back in line
    GET  /api/v1/bad-ratings                 viewer    差评 cases: state=open|closed|all, town
    GET  /api/v1/bad-ratings/{id}            viewer    one case with its notes
    POST /api/v1/bad-ratings/{id}/review     admin     {"decision": "uphold"|"reject", "note"}
    POST /api/v1/bad-ratings/{id}/{action}   operator  note, contact, rectify, appeal {"note"}
    GET|PUT /api/v1/sites/{id}/staff         viewer|admin   the roster: 工号 and names
    GET|PUT /api/v1/sites/{id}/rating-profile viewer|admin  region code, default department

Each step on a case, and each change of a roster or profile, records who took it (the
token's name and id) and from where (the client address), in the case's notes and in
the audit log (:mod:`central.audit`). See ``docs/STATISTICS.md`` for the records and
the closed loop.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from central import stats
from central.access import Admin, Operator, Viewer, actor_of
from central.audit import AuditAction
from central.auth import Principal
from central.context import Central, central_of, service_of
from central.errors import Conflict
from central.models import ReportStatus
from central.rating_reads import EXPORT_COLUMNS, CaseState, month_bounds, ranking
from central.ratings import Action, BadRatingDesk, RatingRoster

router = APIRouter(prefix="/api/v1")


def _period(central: Central, start: dt.date | None, end: dt.date | None
            ) -> tuple[dt.date, dt.date]:  # fmt: skip
    last = end or stats.business_date(central.now())
    return start or last, last


# --------------------------------------------------------------------------- records


@router.get("/ratings", tags=["ratings"])
def api_ratings(
    request: Request,
    principal: Viewer,
    start: Annotated[dt.date | None, Query(alias="from")] = None,
    end: Annotated[dt.date | None, Query(alias="to")] = None,
    site: str | None = None,
    town: str | None = None,
    status: ReportStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    central = central_of(request)
    first, last = _period(central, start, end)
    reads = central.read_as(principal).ratings
    records = reads.records(first, last, site_id=site, town=town, status=status, limit=limit)
    return {"ratings": [r.to_json() for r in records],
            "report_counts": reads.report_counts()}  # fmt: skip


@router.get("/ratings.csv", tags=["ratings"], response_class=PlainTextResponse)
def api_ratings_csv(
    request: Request,
    principal: Viewer,
    start: Annotated[dt.date | None, Query(alias="from")] = None,
    end: Annotated[dt.date | None, Query(alias="to")] = None,
    site: str | None = None,
    town: str | None = None,
) -> Response:
    """The records in the province's field set (the same as the reporter sends), with
    their report status: UTF-8 with a BOM, headers ``中文 (field)``."""
    central = central_of(request)
    first, last = _period(central, start, end)
    rows = central.read_as(principal).ratings.export(
        first, last, site_id=site, town=town, default_value=central.config.rating_default_value)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([f"{zh} ({name})" for name, zh in EXPORT_COLUMNS])
    for row in rows:
        writer.writerow([row[name] for name, _ in EXPORT_COLUMNS])
    name = f"onedoor-ratings-{first.isoformat()}-{last.isoformat()}.csv"
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/ratings/ranking", tags=["ratings"])
def api_ranking(
    request: Request,
    principal: Viewer,
    month: Annotated[str | None, Query(pattern=r"^[0-9]{4}-[0-9]{2}$")] = None,
    scope: Literal["window", "staff"] = "window",
    town: str | None = None,
) -> dict[str, Any]:
    """The month's ranking of windows or staff by 好评率 (recounted from the events)."""
    central = central_of(request)
    month = month or f"{stats.business_date(central.now()):%Y-%m}"
    rows = month_ranking(central, principal, month, scope, town)
    return {"month": month, "scope": scope, "rows": [r.to_json() for r in rows]}


def month_ranking(central: Central, principal: Principal, month: str,
                  scope: Literal["window", "staff"], town: str | None) -> list[Any]:  # fmt: skip
    """The month's ranking of the caller's towns' windows or staff."""
    first, last = month_bounds(month)
    config = central.config
    read = central.read_as(principal)
    rows = read.statistics(scope, first, last, town=town, period="month",
                           default_value=config.rating_default_value,
                           default_in_rates=config.rating_default_in_rates)
    names = read.stat_names(scope, sorted({r.key for r in rows}))
    return ranking(rows, names)


@router.post("/ratings/report", tags=["ratings"])
async def api_report_now(request: Request, _: Admin) -> dict[str, Any]:
    central = central_of(request)
    if not central.config.province_url:
        raise Conflict("no provincial platform is configured (province_url)")
    run = await service_of(central).report_ratings()
    return {"requests": run.requests, "sent": run.sent, "duplicate": run.duplicate,
            "rejected": run.rejected, "retried": run.retried, "failed": run.failed,
            "errors": run.errors}  # fmt: skip


@router.post("/ratings/report/retry", tags=["ratings"])
def api_report_retry(request: Request, principal: Admin) -> dict[str, Any]:
    central = central_of(request)
    now = central.now()
    requeued = service_of(central).reporter.retry_failed(now)
    central.audit.write(actor_of(request, principal), AuditAction.RATINGS_RETRY, "ratings",
                        {"requeued": requeued}, now=now)  # fmt: skip
    return {"requeued": requeued}


# --------------------------------------------------------------------------- 差评 cases


@router.get("/bad-ratings", tags=["ratings"])
def api_bad_ratings(
    request: Request,
    principal: Viewer,
    state: CaseState = "open",
    town: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    central = central_of(request)
    cases = central.read_as(principal).ratings.cases(central.now(), state=state, town=town,
                                                     limit=limit)  # fmt: skip
    return {"cases": [c.to_json() for c in cases]}


@router.get("/bad-ratings/{case_id}", tags=["ratings"])
def api_bad_rating(request: Request, case_id: int, principal: Viewer) -> dict[str, Any]:
    central = central_of(request)
    return central.read_as(principal).ratings.case(case_id, central.now()).to_json()


class CaseStep(BaseModel):
    note: str = Field(min_length=1, max_length=1000)


class Review(CaseStep):
    decision: Literal["uphold", "reject"]


async def _step(request: Request, case_id: int, action: Action, principal: Principal,
                note: str) -> dict[str, Any]:  # fmt: skip
    central = central_of(request)
    service = service_of(central)  # the webhook sends the case's alarm changes
    now = central.now()
    reads = central.read_as(principal).ratings
    await run_in_threadpool(reads.case, case_id, now)  # 404, or 403 for another town's case
    desk = BadRatingDesk(central.sessions)
    notifications = await run_in_threadpool(desk.act, case_id, action,
                                            actor_of(request, principal), note, now=now)
    service.queue_notifications(notifications)
    view = await run_in_threadpool(reads.case, case_id, now)
    return view.to_json()


@router.post("/bad-ratings/{case_id}/review", tags=["ratings"])
async def api_review(request: Request, case_id: int, body: Review,
                     principal: Admin) -> dict[str, Any]:  # fmt: skip
    """Decide an appeal: ``uphold`` revokes the rating (it no longer counts), ``reject``
    returns the case to where it was. Another person than the appellant decides."""
    return await _step(request, case_id, body.decision, principal, body.note)


@router.post("/bad-ratings/{case_id}/{action}", tags=["ratings"])
async def api_case_step(request: Request, case_id: int,
                        action: Literal["note", "contact", "rectify", "appeal"], body: CaseStep,
                        principal: Operator) -> dict[str, Any]:  # fmt: skip
    return await _step(request, case_id, action, principal, body.note)


# --------------------------------------------------------------------------- roster, profile


class StaffEntry(BaseModel):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=50)


class Roster(BaseModel):
    staff: list[StaffEntry] = Field(max_length=2000)


class Profile(BaseModel):
    region_code: str
    department: str | None = None
    department_name: str | None = Field(None, max_length=64)


@router.get("/sites/{site_id}/staff", tags=["ratings"])
def api_staff(request: Request, site_id: str, principal: Viewer) -> dict[str, Any]:
    roster = central_of(request).read_as(principal).ratings.staff(site_id)
    return {"staff": [{"id": staff_id, "name": name} for staff_id, name in roster]}


@router.put("/sites/{site_id}/staff", tags=["ratings"])
def api_put_staff(request: Request, site_id: str, body: Roster,
                  principal: Admin) -> dict[str, Any]:  # fmt: skip
    """Replace the site's roster (工号 -> name): exports and rankings show the names."""
    central = central_of(request)
    central.read_as(principal).require_site(site_id)
    RatingRoster(central.sessions).set_staff(site_id, [(s.id, s.name) for s in body.staff],
                                             actor=actor_of(request, principal),
                                             now=central.now())  # fmt: skip
    return api_staff(request, site_id, principal)


@router.get("/sites/{site_id}/rating-profile", tags=["ratings"])
def api_profile(request: Request, site_id: str, principal: Viewer) -> dict[str, Any]:
    profile = central_of(request).read_as(principal).ratings.profile(site_id)
    if profile is None:
        return {"site": site_id, "region_code": None, "department": None,
                "department_name": None}  # fmt: skip
    return {"site": site_id, "region_code": profile.region_code,
            "department": profile.department, "department_name": profile.department_name}


@router.put("/sites/{site_id}/rating-profile", tags=["ratings"])
def api_put_profile(request: Request, site_id: str, body: Profile,
                    principal: Admin) -> dict[str, Any]:  # fmt: skip
    """The site's 行政区划代码 and the department of 办件 whose record names none."""
    central = central_of(request)
    central.read_as(principal).require_site(site_id)
    RatingRoster(central.sessions).set_profile(
        site_id, body.region_code, body.department, body.department_name,
        actor=actor_of(request, principal), now=central.now())
    return api_profile(request, site_id, principal)


__all__ = ["month_ranking", "router"]

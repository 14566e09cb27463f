"""The read side of 好差评: records, 差评 cases, the monthly ranking, the export rows.

Reached as ``central.read.ratings`` (one read model under the API and the pages)::

    read.ratings.records(first, last, town="三乡镇")      # [RatingView]
    read.ratings.cases(now, state="open", town=...)       # [BadRatingCaseView], late first
    read.ratings.case(case_id, now)                        # with its notes (404 if none)
    read.ratings.export(first, last, default_value=4)      # rows in the province's field set
    ranking(rows, names)                                   # [RankingRow] from statistics rows

The ranking's figures are the statistics' (:func:`central.stats.aggregate`, scope
``window`` or ``staff``, period ``month``): recounted from the events each time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central import stats
from central.errors import InvalidRequest, OutOfScope, UnknownBadRating, UnknownSite
from central.models import (
    BadRatingCase,
    BadRatingNote,
    BadRatingStatus,
    RatingProfile,
    RatingRecord,
    ReportStatus,
    Site,
    StaffMember,
)
from central.province import FIELDS, province_rows
from central.ratings import reason_label
from central.views import View, iso
from firmware_protocols.terminal_events import RATING_LABELS

MAX_RECORD_DAYS: Final = 366
CaseState = Literal["open", "closed", "all"]
OPEN_STATES: Final = (BadRatingStatus.OPEN, BadRatingStatus.CONTACTED, BadRatingStatus.APPEALED)
EXPORT_COLUMNS: Final = (*FIELDS, ("reportStatus", "上报状态"), ("reportError", "上报说明"),
                         ("revoked", "申诉撤销"))  # fmt: skip


class RatingView(View, frozen=True, kw_only=True):
    """One 好差评 record as the pages and the API show it."""

    id: int
    site_id: str
    site_name: str
    town: str
    day: str
    at: str
    ticket: str
    window: int
    staff_id: str
    staff_name: str | None
    origin: str
    value: int | None
    level: str | None
    channel: str
    reasons: list[str]
    case_no: str | None
    item_name: str | None
    report_status: str
    report_attempts: int
    report_error: str | None
    reported_at: str | None
    revoked: bool


class CaseNoteView(View, frozen=True, kw_only=True):
    at: str
    action: str
    actor: str
    source: str
    text: str


class BadRatingCaseView(View, frozen=True, kw_only=True):
    """A 差评 case: the rating, where it stands, its deadlines and what people did."""

    id: int
    status: str
    late: Literal["contact", "rectify"] | None
    """Which deadline has passed (``rectify`` once both have), None when on time."""
    town: str
    site_id: str
    site_name: str
    window: int
    staff_id: str
    staff_name: str | None
    value: int | None
    level: str | None
    reasons: list[str]
    case_no: str | None
    item_name: str | None
    rated_at: str
    opened_at: str | None
    contact_due_at: str | None
    rectify_due_at: str | None
    contacted_at: str | None
    rectified_at: str | None
    appealed_at: str | None
    closed_at: str | None
    notes: list[CaseNoteView]


class RankingRow(View, frozen=True, kw_only=True):
    """One window or staff member in the month's ranking."""

    rank: int
    key: str
    name: str
    ratings: int
    good_rating_rate: float | None
    bad_ratings: int
    revoked: int
    unrated: int
    rated_rate: float | None
    served: int
    service_p90_s: float | None


def late_deadline(case: BadRatingCase, now: datetime) -> Literal["contact", "rectify"] | None:
    if case.status not in (BadRatingStatus.OPEN, BadRatingStatus.CONTACTED):
        return None
    if now > case.rectify_due_at:
        return "rectify"
    if case.status is BadRatingStatus.OPEN and now > case.contact_due_at:
        return "contact"
    return None


def ranking(rows: Sequence[stats.StatRow], names: dict[str, str]) -> list[RankingRow]:
    """The all-services rows ranked: 好评率 high first (none: last), then fewer 差评, then
    more ratings; equal figures share a rank (1, 1, 3)."""
    totals = [r for r in rows if r.service == stats.ALL_SERVICES]

    def order(row: stats.StatRow) -> tuple[int, float, int, int, str]:
        rate = row.good_rating_rate
        return (rate is None, -(rate or 0.0), row.bad_ratings, -row.ratings, row.key)

    ranked: list[RankingRow] = []
    previous: tuple[Any, ...] | None = None
    for position, row in enumerate(sorted(totals, key=order), start=1):
        figures = order(row)[:4]
        rank = ranked[-1].rank if ranked and figures == previous else position
        previous = figures
        ranked.append(RankingRow(
            rank=rank, key=row.key, name=names.get(row.key, row.key), ratings=row.ratings,
            good_rating_rate=row.good_rating_rate, bad_ratings=row.bad_ratings,
            revoked=row.revoked, unrated=row.unrated, rated_rate=row.rated_rate,
            served=row.served, service_p90_s=row.service_time.p90,
        ))  # fmt: skip
    return ranked


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """First and last day of ``YYYY-MM``; :class:`InvalidRequest` if it is not one."""
    try:
        first = dt.date.fromisoformat(f"{month}-01")
    except ValueError:
        raise InvalidRequest(f"month must be YYYY-MM, got {month!r}") from None
    following = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return first, following - dt.timedelta(days=1)


class RatingReads:
    """Reads of the 好差评 tables (module docstring)."""

    def __init__(self, sessions: sessionmaker[Session],
                 towns: frozenset[str] | None = None) -> None:  # fmt: skip
        self._sessions = sessions
        self._towns = towns
        """``None``: the whole city; else the towns read (a town's account: its towns)."""

    def _scope_sites(self) -> Any:
        """The ids of the sites in scope (a subquery)."""
        statement = select(Site.id)
        return statement if self._towns is None else statement.where(
            Site.town.in_(sorted(self._towns)))  # fmt: skip

    def _require_town(self, town: str) -> None:
        if self._towns is not None and town not in self._towns:
            raise OutOfScope(f"town {town!r}")

    def _require_site(self, session: Session, site_id: str) -> None:
        site = session.get(Site, site_id)
        if site is None:
            raise UnknownSite(site_id)
        self._require_town(site.town)

    @staticmethod
    def _sites(session: Session) -> dict[str, Site]:
        return {site.id: site for site in session.scalars(select(Site))}

    @staticmethod
    def _names(session: Session) -> dict[tuple[str, str], str]:
        return {(m.site_id, m.staff_id): m.name for m in session.scalars(select(StaffMember))}

    def _record_filter(self, session: Session, first: dt.date, last: dt.date,
                       site_id: str | None, town: str | None) -> list[Any]:  # fmt: skip
        if last < first:
            raise InvalidRequest("the end date is before the start date")
        if (last - first).days >= MAX_RECORD_DAYS:
            raise InvalidRequest(f"at most {MAX_RECORD_DAYS} days per query")
        conditions: list[Any] = [RatingRecord.day >= first.isoformat(),
                                 RatingRecord.day <= last.isoformat()]  # fmt: skip
        if site_id:
            self._require_site(session, site_id)
            conditions.append(RatingRecord.site_id == site_id)
        elif town:
            self._require_town(town)
            conditions.append(RatingRecord.site_id.in_(select(Site.id).where(Site.town == town)))
        if self._towns is not None:
            conditions.append(RatingRecord.site_id.in_(self._scope_sites()))
        return conditions

    def records(self, first: dt.date, last: dt.date, *, site_id: str | None = None,
                town: str | None = None, status: ReportStatus | None = None,
                limit: int = 1000) -> list[RatingView]:  # fmt: skip
        with self._sessions() as session:
            conditions = self._record_filter(session, first, last, site_id, town)
            if status is not None:
                conditions.append(RatingRecord.report_status == status)
            rows = session.scalars(select(RatingRecord).where(*conditions)
                                   .order_by(RatingRecord.ts_ms.desc()).limit(limit)).all()
            sites, names = self._sites(session), self._names(session)
        return [self._view(r, sites, names) for r in rows]

    @staticmethod
    def _view(record: RatingRecord, sites: dict[str, Site],
              names: dict[tuple[str, str], str]) -> RatingView:  # fmt: skip
        site = sites.get(record.site_id)
        return RatingView(
            id=record.id, site_id=record.site_id, site_name=site.name if site else record.site_id,
            town=site.town if site else "", day=record.day,
            at=iso(datetime.fromtimestamp(record.ts_ms / 1000, stats.BUSINESS_TZ)) or "",
            ticket=record.ticket, window=record.window, staff_id=record.staff_id,
            staff_name=names.get((record.site_id, record.staff_id)), origin=record.origin.value,
            value=record.value, level=RATING_LABELS.get(record.value or 0),
            channel=record.channel, reasons=[reason_label(r) for r in record.reasons],
            case_no=record.case_no, item_name=record.item_name,
            report_status=record.report_status.value, report_attempts=record.report_attempts,
            report_error=record.report_error, reported_at=iso(record.reported_at),
            revoked=record.revoked_at is not None,
        )  # fmt: skip

    def export(self, first: dt.date, last: dt.date, *, site_id: str | None = None,
               town: str | None = None, default_value: int = 0) -> list[dict[str, str]]:
        """The records of ``first`` .. ``last`` in the province's field set, each with its
        report status: the file export (:data:`EXPORT_COLUMNS`)."""
        with self._sessions() as session:
            conditions = self._record_filter(session, first, last, site_id, town)
            records = list(session.scalars(select(RatingRecord).where(*conditions)
                                           .order_by(RatingRecord.ts_ms, RatingRecord.id)))
            rows = province_rows(session, records, default_value=default_value)
        for row, record in zip(rows, records, strict=True):
            row["reportStatus"] = record.report_status.value
            row["reportError"] = record.report_error or ""
            row["revoked"] = "是" if record.revoked_at is not None else ""
        return rows

    def report_counts(self) -> dict[str, int]:
        """How many records stand at each report status."""
        with self._sessions() as session:
            counted = dict(session.execute(
                select(RatingRecord.report_status, func.count())
                .where(RatingRecord.site_id.in_(self._scope_sites()))
                .group_by(RatingRecord.report_status)).all())  # fmt: skip
        return {status.value: int(counted.get(status, 0)) for status in ReportStatus}

    def cases(self, now: datetime, *, state: CaseState = "open", town: str | None = None,
              limit: int = 500) -> list[BadRatingCaseView]:  # fmt: skip
        """差评 cases: open ones (late first, then oldest), closed ones, or all."""
        with self._sessions() as session:
            statement = select(BadRatingCase, RatingRecord).join(
                RatingRecord, RatingRecord.id == BadRatingCase.rating_id)
            if state == "open":
                statement = statement.where(BadRatingCase.status.in_(OPEN_STATES))
            elif state == "closed":
                statement = statement.where(BadRatingCase.status.not_in(OPEN_STATES))
            if town:
                self._require_town(town)
                statement = statement.where(BadRatingCase.town == town)
            if self._towns is not None:
                statement = statement.where(BadRatingCase.town.in_(sorted(self._towns)))
            found = session.execute(statement.order_by(BadRatingCase.opened_at.desc())
                                    .limit(limit)).all()
            sites, names = self._sites(session), self._names(session)
        views = [self._case_view(c, r, sites, names, [], now) for c, r in found]
        rank = {"rectify": 0, "contact": 1, None: 2}
        return sorted(views, key=lambda v: (rank[v.late], v.opened_at or ""))

    def case(self, case_id: int, now: datetime) -> BadRatingCaseView:
        with self._sessions() as session:
            found = session.execute(
                select(BadRatingCase, RatingRecord)
                .join(RatingRecord, RatingRecord.id == BadRatingCase.rating_id)
                .where(BadRatingCase.id == case_id)).first()  # fmt: skip
            if found is None:
                raise UnknownBadRating(case_id)
            self._require_town(found[0].town)
            notes = session.scalars(select(BadRatingNote).where(BadRatingNote.case_id == case_id)
                                    .order_by(BadRatingNote.id)).all()
            sites, names = self._sites(session), self._names(session)
        return self._case_view(found[0], found[1], sites, names, list(notes), now)

    @staticmethod
    def _case_view(case: BadRatingCase, record: RatingRecord, sites: dict[str, Site],
                   names: dict[tuple[str, str], str], notes: list[BadRatingNote],
                   now: datetime) -> BadRatingCaseView:  # fmt: skip
        site = sites.get(case.site_id)
        return BadRatingCaseView(
            id=case.id, status=case.status.value, late=late_deadline(case, now), town=case.town,
            site_id=case.site_id, site_name=site.name if site else case.site_id,
            window=record.window, staff_id=record.staff_id,
            staff_name=names.get((record.site_id, record.staff_id)), value=record.value,
            level=RATING_LABELS.get(record.value or 0),
            reasons=[reason_label(r) for r in record.reasons], case_no=record.case_no,
            item_name=record.item_name,
            rated_at=iso(datetime.fromtimestamp(record.ts_ms / 1000, stats.BUSINESS_TZ)) or "",
            opened_at=iso(case.opened_at), contact_due_at=iso(case.contact_due_at),
            rectify_due_at=iso(case.rectify_due_at), contacted_at=iso(case.contacted_at),
            rectified_at=iso(case.rectified_at), appealed_at=iso(case.appealed_at),
            closed_at=iso(case.closed_at),
            notes=[CaseNoteView(at=iso(n.at) or "", action=n.action, actor=n.actor,
                                source=n.source, text=n.text) for n in notes],
        )  # fmt: skip

    def staff(self, site_id: str) -> list[tuple[str, str]]:
        """The site's roster: (工号, name), by 工号."""
        with self._sessions() as session:
            self._require_site(session, site_id)
            return [(m.staff_id, m.name) for m in session.scalars(
                select(StaffMember).where(StaffMember.site_id == site_id)
                .order_by(StaffMember.staff_id))]  # fmt: skip

    def profile(self, site_id: str) -> RatingProfile | None:
        with self._sessions() as session:
            self._require_site(session, site_id)
            return session.get(RatingProfile, site_id)


__all__ = [
    "EXPORT_COLUMNS",
    "MAX_RECORD_DAYS",
    "BadRatingCaseView",
    "CaseNoteView",
    "CaseState",
    "RankingRow",
    "RatingReads",
    "RatingView",
    "late_deadline",
    "month_bounds",
    "ranking",
]

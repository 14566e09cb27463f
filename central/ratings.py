"""好差评 on the central: the rating records, and the 差评 closed loop.

::

    fold_rating_event(session, site, event, book, now, config)   # ingest, in its transaction
    desk = BadRatingDesk(sessions, config)
    notifications = desk.act(case_id, "contact", actor, "已电话回访，群众反映等候过久", now=now)
    run_deadlines(book, config)                                  # the alarm timer

**Records.** Each ``rating.given`` and each ``rating.missed`` (an offer left unrated)
becomes one :class:`~central.models.RatingRecord` with the event's fields; a later
``rating.reason`` adds its reason to the rating it follows. The record's report status
starts ``pending`` (held ``province_hold_s`` for follow-up reasons) or ``skipped``: the
provincial platform rates 办件, so a rating without a 办件编号 is not reportable, nor is
an unrated offer without a 默认好评 rule (``rating_default_value``).

**The closed loop.** A 差评 (不满意 2 or 非常不满意 1) opens a
:class:`~central.models.BadRatingCase` for the site's town at once, and the
``bad_rating`` alarm goes out through the alarm book (the webhook), with two deadlines
counted from when the central received it: contact the citizen (回访) within
``bad_rating_contact_s``, rectify (整改) by the end of the ``bad_rating_rectify_days``-th
working day (:class:`~central.workdays.WorkCalendar`). Steps, each with a note that
says who did it and from where::

    open ──contact──> contacted ──rectify──> rectified (closed)
     │                    │
     └──────appeal────────┴──> appealed ──uphold──> revoked (closed; the rating no longer
                                   │                          counts in any statistic)
                                   └──reject──> back where it was

``note`` adds a note in any state. An appeal is for a rating that is wrong or
malicious (误评, 恶意差评); another person than the appellant reviews it. The alarm is
``warning`` while the case is on time, ``major`` once the contact is late, ``critical``
once the rectification is late; it is cleared when the case closes.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import structlog
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from central import audit
from central.alarms import AlarmBook, Notification
from central.audit import Actor, AuditAction
from central.config import CentralConfig
from central.errors import Conflict, Forbidden, InvalidRequest, UnknownBadRating, UnknownSite
from central.models import (
    AlarmType,
    BadRatingCase,
    BadRatingNote,
    BadRatingStatus,
    EventRecord,
    RatingOrigin,
    RatingProfile,
    RatingRecord,
    ReportStatus,
    Severity,
    Site,
    StaffMember,
)
from central.stats import business_day
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.terminal_events import DEFAULT_REASONS, RATING_LABELS

log = structlog.get_logger(__name__)

BAD_RATING_MAX: Final = 2
"""不满意 (2) and 非常不满意 (1) are 差评."""
REASON_LABELS: Final = dict(DEFAULT_REASONS)
"""Labels of the default reason codes; a site's own codes are shown as they are."""
MAX_NOTE: Final = 1000
LATE_REASONS_SCAN: Final = 32

Action = Literal["note", "contact", "rectify", "appeal", "uphold", "reject"]
"""A step on a case; each is also the audit log's ``bad_rating.<step>``."""
ACTIONS: Final[tuple[Action, ...]] = ("note", "contact", "rectify", "appeal", "uphold", "reject")
_OPEN_STATES: Final = frozenset({BadRatingStatus.OPEN, BadRatingStatus.CONTACTED,
                                 BadRatingStatus.APPEALED})  # fmt: skip
_ALLOWED: Final[dict[Action, frozenset[BadRatingStatus]]] = {
    "note": frozenset(BadRatingStatus),
    "contact": frozenset({BadRatingStatus.OPEN}),
    "rectify": frozenset({BadRatingStatus.CONTACTED}),
    "appeal": frozenset({BadRatingStatus.OPEN, BadRatingStatus.CONTACTED}),
    "uphold": frozenset({BadRatingStatus.APPEALED}),
    "reject": frozenset({BadRatingStatus.APPEALED}),
}


def alarm_device(case_id: int) -> str:
    """The alarm ``device`` of a 差评 case (one active alarm per case)."""
    return f"bad-rating-{case_id}"


def reason_label(code: str) -> str:
    return REASON_LABELS.get(code, code)


# --------------------------------------------------------------------------- records


def fold_rating_event(session: Session, site: Site, event: mm.Event, book: AlarmBook,
                      now: datetime, config: CentralConfig) -> None:  # fmt: skip
    """Record a ``rating.given``, ``rating.missed`` or ``rating.reason`` (ingest calls this
    once per committed event, in ``seq`` order, inside its transaction)."""
    body = event.body
    if isinstance(body, mm.RatingReason):
        _add_reason(session, site.id, event.seq, body)
        return
    if not isinstance(body, mm.RatingGiven | mm.RatingMissed):
        return
    record = _record(site.id, event, body, now, config)
    if isinstance(body, mm.RatingGiven):
        record.reasons = _with_late_reasons(session, site.id, event.seq, body)
    session.add(record)
    if record.value is not None and record.value <= BAD_RATING_MAX:
        session.flush()  # the case refers to the record's id
        _open_case(session, site, record, book, now, config)


def _record(site_id: str, event: mm.Event, body: mm.RatingGiven | mm.RatingMissed,
            now: datetime, config: CentralConfig) -> RatingRecord:  # fmt: skip
    case = body.case
    given = body if isinstance(body, mm.RatingGiven) else None
    record = RatingRecord(
        site_id=site_id, seq=event.seq, event_id=event.id, ts_ms=event.ts,
        day=business_day(event.ts).isoformat(), ticket=body.ticket, window=body.window,
        staff_id=body.staff, origin=RatingOrigin.UNRATED if given is None else RatingOrigin.CITIZEN,
        value=None if given is None else given.value,
        channel="pad" if given is None else given.channel,  # an unrated offer: the pad's
        reasons=[] if given is None else list(given.reasons),
        case_no=None if case is None else case.no,
        case_source=None if case is None else case.source,
        item_code=None if case is None else case.item_code,
        item_name=None if case is None else case.item_name,
        department=None if case is None else case.department,
        department_name=None if case is None else case.department_name,
        received_at=now, report_attempts=0,
    )  # fmt: skip
    record.report_status, record.report_next_at, record.report_error = _first_report_state(
        record, now, config)
    return record


def _first_report_state(record: RatingRecord, now: datetime, config: CentralConfig
                        ) -> tuple[ReportStatus, datetime | None, str | None]:  # fmt: skip
    if record.case_no is None:
        return ReportStatus.SKIPPED, None, "无办件编号 / no 办件编号: the platform rates 办件"
    if record.origin is RatingOrigin.UNRATED and not config.rating_default_value:
        return ReportStatus.SKIPPED, None, "未评价且未设默认好评 / unrated, no rating_default_value"
    return ReportStatus.PENDING, now + timedelta(seconds=config.province_hold_s), None


def _add_reason(session: Session, site_id: str, seq: int, body: mm.RatingReason) -> None:
    record = session.scalars(
        select(RatingRecord)
        .where(RatingRecord.site_id == site_id, RatingRecord.window == body.window,
               RatingRecord.ticket == body.ticket, RatingRecord.seq < seq,
               RatingRecord.origin == RatingOrigin.CITIZEN)
        .order_by(RatingRecord.seq.desc()).limit(1)
    ).first()  # fmt: skip
    if record is None or record.case_no != body.case_no:
        # Its rating is not committed yet (a gap being resent): the rating picks it up.
        log.info("ratings.reason_before_its_rating", site=site_id, seq=seq)
        return
    if body.reason not in record.reasons:
        record.reasons = [*record.reasons, body.reason]


def _with_late_reasons(session: Session, site_id: str, seq: int,
                       body: mm.RatingGiven) -> list[str]:  # fmt: skip
    """The rating's reasons, plus any ``rating.reason`` that was committed before it (its
    rating came late, resent after a gap), up to the next rating at that window."""
    reasons = list(body.reasons)
    later = session.execute(
        select(EventRecord.type, EventRecord.body)
        .where(EventRecord.site_id == site_id, EventRecord.seq > seq,
               EventRecord.type.in_(("rating.reason", "rating.given")))
        .order_by(EventRecord.seq).limit(LATE_REASONS_SCAN)
    ).all()  # fmt: skip
    for kind, stored in later:
        if stored.get("window") != body.window:
            continue
        if kind == "rating.given":
            break
        case_no = None if body.case is None else body.case.no
        if (stored.get("ticket"), stored.get("case_no")) == (body.ticket, case_no):
            reason = stored.get("reason")
            if isinstance(reason, str) and reason not in reasons:
                reasons.append(reason)
    return reasons


# --------------------------------------------------------------------------- 差评 cases


def _open_case(session: Session, site: Site, record: RatingRecord, book: AlarmBook,
               now: datetime, config: CentralConfig) -> BadRatingCase:  # fmt: skip
    case = BadRatingCase(
        rating_id=record.id, site_id=site.id, town=site.town, status=BadRatingStatus.OPEN,
        opened_at=now, contact_due_at=now + timedelta(seconds=config.bad_rating_contact_s),
        rectify_due_at=config.work_calendar.end_of_working_day(
            now, config.bad_rating_rectify_days),
    )  # fmt: skip
    session.add(case)
    session.flush()
    book.raise_alarm(site.id, AlarmType.BAD_RATING, device=alarm_device(case.id),
                     severity=Severity.WARNING, message=_message(site, record),
                     detail=alarm_detail(case, record, site))  # fmt: skip
    log.info("ratings.bad_rating_case", site=site.id, case=case.id, window=record.window,
             value=record.value)  # fmt: skip
    return case


def _message(site: Site, record: RatingRecord) -> str:
    level = RATING_LABELS.get(record.value or 0, "")
    return (f"差评待处理：{site.town} {site.name} {record.window}号窗口 {level} / "
            f"bad rating at window {record.window}")[:400]


def alarm_detail(case: BadRatingCase, record: RatingRecord, site: Site) -> dict[str, Any]:
    """What the webhook and the alarm page carry about a 差评 case."""
    return {
        "case_id": case.id, "town": case.town, "site_name": site.name, "window": record.window,
        "staff": record.staff_id, "value": record.value,
        "level": RATING_LABELS.get(record.value or 0), "case_no": record.case_no,
        "item_name": record.item_name, "reasons": [reason_label(r) for r in record.reasons],
        "contact_due_at": case.contact_due_at.isoformat(),
        "rectify_due_at": case.rectify_due_at.isoformat(),
        "link": f"/ratings/cases/{case.id}",
    }  # fmt: skip


def severity_for(case: BadRatingCase, now: datetime) -> Severity:
    """``warning`` on time, ``major`` once the contact is late, ``critical`` once the
    rectification is late (an appealed case waits for its review: no escalation)."""
    if case.status is BadRatingStatus.APPEALED:
        return Severity.WARNING
    if now > case.rectify_due_at:
        return Severity.CRITICAL
    if case.status is BadRatingStatus.OPEN and now > case.contact_due_at:
        return Severity.MAJOR
    return Severity.WARNING


def run_deadlines(book: AlarmBook, config: CentralConfig) -> None:
    """Escalate the alarms of 差评 cases past a deadline (called by the alarm timer)."""
    session, now = book.session, book.now
    late = session.execute(
        select(BadRatingCase, RatingRecord, Site)
        .join(RatingRecord, RatingRecord.id == BadRatingCase.rating_id)
        .join(Site, Site.id == BadRatingCase.site_id)
        .where(BadRatingCase.status.in_([BadRatingStatus.OPEN, BadRatingStatus.CONTACTED]),
               (BadRatingCase.contact_due_at < now) | (BadRatingCase.rectify_due_at < now))
    ).all()  # fmt: skip
    for case, record, site in late:
        severity = severity_for(case, now)
        alarm = book.active(case.site_id, AlarmType.BAD_RATING, alarm_device(case.id))
        if alarm is None or alarm.severity != severity:
            book.raise_alarm(case.site_id, AlarmType.BAD_RATING, device=alarm_device(case.id),
                             severity=severity, message=_message(site, record),
                             detail=alarm_detail(case, record, site))  # fmt: skip


class BadRatingDesk:
    """The steps people take on 差评 cases (module docstring); each in one transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def act(self, case_id: int, action: Action, actor: Actor, text: str, *,
            now: datetime) -> list[Notification]:  # fmt: skip
        """Take ``action`` on the case with ``text`` as its note; the alarm notifications
        to send. :class:`UnknownBadRating` (404), :class:`Conflict` (409) when the case
        is not in a state that allows it, :class:`Forbidden` (403) when the appellant
        reviews their own appeal, :class:`InvalidRequest` (422) without a note."""
        text = text.strip()
        if not text:
            raise InvalidRequest("a note is required: say what was done or why")
        if len(text) > MAX_NOTE:
            raise InvalidRequest(f"the note is longer than {MAX_NOTE} characters")
        if action not in _ALLOWED:
            raise InvalidRequest(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        with self._sessions.begin() as session:
            found = session.execute(
                select(BadRatingCase, RatingRecord, Site)
                .join(RatingRecord, RatingRecord.id == BadRatingCase.rating_id)
                .join(Site, Site.id == BadRatingCase.site_id)
                .where(BadRatingCase.id == case_id).with_for_update(of=BadRatingCase)
            ).first()  # fmt: skip
            if found is None:
                raise UnknownBadRating(case_id)
            case, record, site = found
            if case.status not in _ALLOWED[action]:
                raise Conflict(f"差评 case {case_id} is {case.status.value}: cannot {action}")
            if action in ("uphold", "reject"):
                self._check_reviewer(session, case, actor)
            self._apply(case, record, action, now)
            session.add(BadRatingNote(case_id=case.id, at=now, action=action,
                                      actor=actor.name[:100], actor_id=actor.actor_id,
                                      source=actor.source[:100], text=text))  # fmt: skip
            audit.record(session, actor, AuditAction(f"bad_rating.{action}"),
                         f"bad_rating:{case.id}", {"status": case.status.value, "note": text},
                         now=now)  # fmt: skip
            book = AlarmBook(session, now)
            if case.status in _OPEN_STATES:
                book.raise_alarm(site.id, AlarmType.BAD_RATING, device=alarm_device(case.id),
                                 severity=severity_for(case, now), message=_message(site, record),
                                 detail=alarm_detail(case, record, site))  # fmt: skip
            else:
                book.clear(site.id, AlarmType.BAD_RATING, alarm_device(case.id),
                           note=f"{action} by {actor.name}")  # fmt: skip
        log.info("ratings.case_step", case=case_id, action=action, by=actor.actor_id,
                 status=case.status.value)  # fmt: skip
        return book.notifications

    @staticmethod
    def _check_reviewer(session: Session, case: BadRatingCase, actor: Actor) -> None:
        appellant = session.scalars(
            select(BadRatingNote.actor_id)
            .where(BadRatingNote.case_id == case.id, BadRatingNote.action == "appeal")
            .order_by(BadRatingNote.id.desc()).limit(1)
        ).first()  # fmt: skip
        if appellant is not None and appellant == actor.actor_id:
            raise Forbidden("another person reviews an appeal than the one who made it")

    @staticmethod
    def _apply(case: BadRatingCase, record: RatingRecord, action: Action, now: datetime) -> None:
        if action == "contact":
            case.status, case.contacted_at = BadRatingStatus.CONTACTED, now
        elif action == "rectify":
            case.status, case.rectified_at, case.closed_at = BadRatingStatus.RECTIFIED, now, now
        elif action == "appeal":
            case.appeal_from, case.status = case.status.value, BadRatingStatus.APPEALED
            case.appealed_at = now
        elif action == "uphold":  # the rating was wrong or malicious: it no longer counts
            case.status, case.reviewed_at, case.closed_at = BadRatingStatus.REVOKED, now, now
            record.revoked_at = now
        elif action == "reject":
            case.status = BadRatingStatus(case.appeal_from or BadRatingStatus.OPEN.value)
            case.reviewed_at = now


REGION_CODE_RE: Final = re.compile(r"^[0-9]{6}([0-9]{3}([0-9]{3})?)?\Z")
STAFF_ID_RE: Final = re.compile(mm.IDENT_PATTERN)


class RatingRoster:
    """What the records need that the edges do not send: staff names, region codes."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def set_staff(self, site_id: str, members: Sequence[tuple[str, str]], *, actor: Actor,
                  now: datetime) -> int:  # fmt: skip
        """Replace the site's roster with (工号, name) pairs; how many it holds now."""
        seen: set[str] = set()
        for staff_id, name in members:
            if not STAFF_ID_RE.fullmatch(staff_id):
                raise InvalidRequest(f"bad staff id {staff_id!r}: letters, digits, '_', '.', '-'")
            if not 1 <= len(name.strip()) <= 50:
                raise InvalidRequest(f"staff {staff_id}: a name of 1 to 50 characters")
            if staff_id in seen:
                raise InvalidRequest(f"staff {staff_id} is listed twice")
            seen.add(staff_id)
        with self._sessions.begin() as session:
            if session.get(Site, site_id) is None:
                raise UnknownSite(site_id)
            session.execute(delete(StaffMember).where(StaffMember.site_id == site_id))
            session.add_all(StaffMember(site_id=site_id, staff_id=staff_id, name=name.strip())
                            for staff_id, name in members)  # fmt: skip
            audit.record(session, actor, AuditAction.STAFF_ROSTER, site_id,
                         {"staff": [staff_id for staff_id, _ in members]}, now=now)
        return len(members)

    def set_profile(self, site_id: str, region_code: str, department: str | None,
                    department_name: str | None, *, actor: Actor,
                    now: datetime) -> None:  # fmt: skip
        """The site's 行政区划代码 and the department of 办件 that name none."""
        if not REGION_CODE_RE.fullmatch(region_code):
            raise InvalidRequest(f"region code {region_code!r}: 6, 9 or 12 digits (GB/T 2260 "
                                 "and the 统计用区划代码 of towns and villages)")
        if department is not None and not STAFF_ID_RE.fullmatch(department):
            raise InvalidRequest(f"bad department code {department!r}")
        with self._sessions.begin() as session:
            if session.get(Site, site_id) is None:
                raise UnknownSite(site_id)
            session.merge(RatingProfile(site_id=site_id, region_code=region_code,
                                        department=department,
                                        department_name=department_name))  # fmt: skip
            audit.record(session, actor, AuditAction.RATING_PROFILE, site_id,
                         {"region_code": region_code, "department": department}, now=now)


def revoked_ratings(session: Session, first: dt.date, last: dt.date,
                    site_ids: Sequence[str] | None = None) -> set[tuple[str, int]]:  # fmt: skip
    """(site, seq) of the ratings of ``first`` .. ``last`` whose 差评 appeal was upheld."""
    statement = select(RatingRecord.site_id, RatingRecord.seq).where(
        RatingRecord.revoked_at.is_not(None),
        RatingRecord.day >= first.isoformat(), RatingRecord.day <= last.isoformat())
    if site_ids is not None:
        statement = statement.where(RatingRecord.site_id.in_(list(site_ids)))
    return {(site_id, seq) for site_id, seq in session.execute(statement)}


def evaluation_id(record: RatingRecord) -> str:
    """The record's id upward (评价编号): its event's id, stable across retries."""
    value = record.event_id
    return (value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))).hex


__all__ = [
    "ACTIONS",
    "BAD_RATING_MAX",
    "REASON_LABELS",
    "Action",
    "BadRatingDesk",
    "RatingRoster",
    "alarm_detail",
    "alarm_device",
    "evaluation_id",
    "fold_rating_event",
    "reason_label",
    "revoked_ratings",
    "run_deadlines",
    "severity_for",
]

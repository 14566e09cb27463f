"""好差评 on the central (SQLite and PostgreSQL): records from the edges' events, the 差评
cases with their deadlines, alarms and steps, and the working-day calendar."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.alarms import AlarmBook
from central.audit import Actor
from central.config import CentralConfig
from central.errors import ConfigError, Conflict, Forbidden, InvalidRequest, UnknownBadRating
from central.ingest import IngestProcessor
from central.models import (
    Alarm,
    AlarmType,
    BadRatingCase,
    BadRatingNote,
    BadRatingStatus,
    RatingOrigin,
    RatingRecord,
    ReportStatus,
    Severity,
)
from central.ratings import BadRatingDesk, alarm_device, run_deadlines
from central.stats import BUSINESS_TZ
from central.telemetry import EmbeddedTelemetrySink
from central.workdays import WorkCalendar
from firmware_protocols import mqtt_messages as mm
from tests.central.sim import SimSite, received

SITE = "zs-sanxiang-01"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in the hall
CASE = mm.CaseInfo(no="442000-2026-000123", item_code="11442000007502434M4442111001000",
                   item_name="居民身份证换领", department="11442000007502434M",
                   department_name="中山市公安局", source="hook")
LI = Actor(name="三乡镇 李主任", source="10.0.0.8", actor_id="0123abcd", role="operator")
WANG = Actor(name="市政数局 王科长", source="10.0.0.9", actor_id="89abcdef", role="admin")


def sim() -> SimSite:
    """The test site, its clock at ``NOW``."""
    return SimSite(SITE, clock_ms=int(NOW.timestamp() * 1000))


def processor(sessions: sessionmaker[Session], **changes: object) -> IngestProcessor:
    return IngestProcessor(sessions, CentralConfig().replace(**changes),
                           EmbeddedTelemetrySink(sessions))


def given(value: int, *, ticket: str = "A001", window: int = 1, case: mm.CaseInfo | None = CASE,
          reasons: list[str] | None = None) -> mm.RatingGiven:
    return mm.RatingGiven(ticket=ticket, window=window, staff="zs0231", value=value, case=case,
                          reasons=reasons or [])


def records(sessions: sessionmaker[Session]) -> list[RatingRecord]:
    with sessions() as session:
        return list(session.scalars(select(RatingRecord).order_by(RatingRecord.seq)))


def cases(sessions: sessionmaker[Session]) -> list[BadRatingCase]:
    with sessions() as session:
        return list(session.scalars(select(BadRatingCase).order_by(BadRatingCase.id)))


def alarm_of(sessions: sessionmaker[Session], case_id: int) -> Alarm:
    with sessions() as session:
        return session.scalars(select(Alarm).where(
            Alarm.type == AlarmType.BAD_RATING, Alarm.device == alarm_device(case_id)
        ).order_by(Alarm.id.desc())).one()


def test_ratings_and_unrated_offers_become_records(small_registry: sessionmaker[Session]) -> None:
    site = sim()
    rated = site.event(given(5))
    missed = site.event(mm.RatingMissed(ticket="A002", window=2, staff="zs0232", case=CASE))
    plain = site.event(given(4, ticket="A003", case=None))
    processor(small_registry).process(received(rated, missed, plain), NOW)
    first, second, third = records(small_registry)
    assert (first.origin, first.value, first.channel, first.case_no, first.item_name) == (
        RatingOrigin.CITIZEN, 5, "pad", "442000-2026-000123", "居民身份证换领")
    assert (first.event_id, first.day, first.staff_id) == (rated.id, "2026-11-23", "zs0231")
    assert (first.report_status, first.report_next_at) == (ReportStatus.PENDING,
                                                           NOW + timedelta(seconds=120))
    assert (second.origin, second.value, second.window, second.report_status) == (
        RatingOrigin.UNRATED, None, 2, ReportStatus.SKIPPED)
    assert second.report_error is not None
    assert "rating_default_value" in second.report_error
    assert (third.report_status, third.case_no) == (ReportStatus.SKIPPED, None)
    assert cases(small_registry) == []  # no 差评


def test_an_unrated_offer_is_reported_under_a_default_rule(
        small_registry: sessionmaker[Session]) -> None:
    site = sim()
    missed = site.event(mm.RatingMissed(ticket="A002", window=2, staff="zs0232", case=CASE))
    processor(small_registry, rating_default_value=4).process(received(missed), NOW)
    [record] = records(small_registry)
    assert (record.origin, record.value, record.report_status) == (
        RatingOrigin.UNRATED, None, ReportStatus.PENDING)


def test_follow_up_reasons_join_their_rating_even_when_it_comes_late(
        small_registry: sessionmaker[Session]) -> None:
    site = sim()
    bad = site.event(given(2, reasons=["attitude"]))
    reason = site.event(mm.RatingReason(ticket="A001", window=1, case_no=CASE.no, reason="slow"))
    again = site.event(mm.RatingReason(ticket="A001", window=1, case_no=CASE.no,
                                       reason="attitude"))
    other = site.event(given(1, ticket="A002", window=2, case=None))
    late = site.event(mm.RatingReason(ticket="A002", window=2, case_no=None, reason="rules"))
    ingest = processor(small_registry)
    # The second rating is lost on the way and resent after its reason: the rating picks it up.
    ingest.process(received(bad, reason, again, late), NOW)
    ingest.process(received(other), NOW + timedelta(seconds=5))
    first, second = records(small_registry)
    assert first.reasons == ["attitude", "slow"]
    assert second.reasons == ["rules"]


def test_a_bad_rating_opens_a_case_for_the_town_and_alarms_at_once(
        small_registry: sessionmaker[Session]) -> None:
    site = sim()
    outcome = processor(small_registry).process(received(site.event(given(1))), NOW)
    [case] = cases(small_registry)
    assert (case.town, case.status) == ("三乡镇", BadRatingStatus.OPEN)
    assert case.contact_due_at == NOW + timedelta(hours=1)
    # Monday the 23rd + 15 working days: Monday 14 December, until its end (24:00 CST).
    assert case.rectify_due_at == datetime(2026, 12, 15, tzinfo=BUSINESS_TZ)
    [notification] = outcome.notifications
    assert (notification.type, notification.action, notification.severity) == (
        "bad_rating", "raised", "warning")
    assert notification.device == alarm_device(case.id)
    assert notification.detail["town"] == "三乡镇"
    assert notification.detail["level"] == "非常不满意"
    assert notification.detail["link"] == f"/ratings/cases/{case.id}"
    assert "差评待处理" in notification.message


def test_deadlines_count_working_days_with_holidays_and_swapped_days(
        small_registry: sessionmaker[Session]) -> None:
    site = sim()
    ingest = processor(small_registry, bad_rating_rectify_days=3, bad_rating_contact_s=1800,
                       rating_holidays="2026-11-24,2026-11-25", rating_workdays="2026-11-28")
    ingest.process(received(site.event(given(2))), NOW)
    [case] = cases(small_registry)
    assert case.contact_due_at == NOW + timedelta(minutes=30)
    # Mon 23: Tue and Wed are off, Thu 26, Fri 27, Sat 28 (调休) -> the end of Saturday.
    assert case.rectify_due_at == datetime(2026, 11, 29, tzinfo=BUSINESS_TZ)


def test_late_cases_escalate_once_per_step(small_registry: sessionmaker[Session]) -> None:
    site = sim()
    config = CentralConfig()
    processor(small_registry).process(received(site.event(given(2))), NOW)
    [case] = cases(small_registry)

    def tick(at: datetime) -> list[str]:
        with small_registry.begin() as session:
            book = AlarmBook(session, at)
            run_deadlines(book, config)
        return [f"{n.action}:{n.severity}" for n in book.notifications]

    assert tick(NOW + timedelta(minutes=59)) == []
    assert tick(NOW + timedelta(minutes=61)) == ["severity_changed:major"]
    assert tick(NOW + timedelta(minutes=62)) == []  # once
    assert alarm_of(small_registry, case.id).severity is Severity.MAJOR
    assert tick(case.rectify_due_at + timedelta(seconds=1)) == ["severity_changed:critical"]


def test_the_closed_loop_contact_then_rectify(small_registry: sessionmaker[Session]) -> None:
    site = sim()
    processor(small_registry).process(received(site.event(given(2))), NOW)
    [case] = cases(small_registry)
    desk = BadRatingDesk(small_registry)
    with pytest.raises(Conflict, match="cannot rectify"):
        desk.act(case.id, "rectify", LI, "已整改", now=NOW)
    with pytest.raises(InvalidRequest, match="a note is required"):
        desk.act(case.id, "contact", LI, "   ", now=NOW)
    late = NOW + timedelta(hours=2)
    with small_registry.begin() as session:
        run_deadlines(AlarmBook(session, late), CentralConfig())
    sent = desk.act(case.id, "contact", LI, "已电话回访，群众反映等候过久", now=late)
    assert [(n.action, n.severity) for n in sent] == [("severity_changed", "warning")]
    desk.act(case.id, "note", LI, "已约谈窗口负责人", now=late)
    closed = desk.act(case.id, "rectify", LI, "增开周一上午窗口", now=late + timedelta(days=1))
    assert [n.action for n in closed] == ["cleared"]
    [case] = cases(small_registry)
    assert (case.status, case.contacted_at, case.closed_at) == (
        BadRatingStatus.RECTIFIED, late, late + timedelta(days=1))
    assert alarm_of(small_registry, case.id).cleared_at == late + timedelta(days=1)
    with small_registry() as session:
        notes = session.scalars(select(BadRatingNote).order_by(BadRatingNote.id)).all()
        assert [(n.action, n.actor, n.source) for n in notes] == [
            ("contact", LI.name, "10.0.0.8"), ("note", LI.name, "10.0.0.8"),
            ("rectify", LI.name, "10.0.0.8")]
    desk.act(case.id, "note", LI, "回访满意", now=late + timedelta(days=2))  # notes go on
    with pytest.raises(Conflict):
        desk.act(case.id, "appeal", LI, "误评", now=late + timedelta(days=2))


def test_an_appeal_is_reviewed_by_another_person(small_registry: sessionmaker[Session]) -> None:
    site = sim()
    processor(small_registry).process(
        received(site.event(given(1)), site.event(given(2, ticket="A002", case=None))), NOW)
    first, second = cases(small_registry)
    desk = BadRatingDesk(small_registry)
    desk.act(first.id, "contact", LI, "已回访", now=NOW)
    desk.act(first.id, "appeal", LI, "群众误按：监控显示其本意为非常满意", now=NOW)
    with pytest.raises(Forbidden, match="another person"):
        desk.act(first.id, "uphold", LI, "同意", now=NOW)
    upheld = desk.act(first.id, "uphold", WANG, "核实为误评", now=NOW + timedelta(hours=3))
    assert [n.action for n in upheld] == ["cleared"]
    desk.act(second.id, "appeal", LI, "恶意差评", now=NOW)
    desk.act(second.id, "reject", WANG, "证据不足", now=NOW)
    first, second = cases(small_registry)
    assert (first.status, second.status) == (BadRatingStatus.REVOKED, BadRatingStatus.OPEN)
    assert alarm_of(small_registry, second.id).cleared_at is None
    revoked, kept = records(small_registry)
    assert (revoked.revoked_at, kept.revoked_at) == (NOW + timedelta(hours=3), None)
    with pytest.raises(UnknownBadRating):
        desk.act(999, "note", LI, "x", now=NOW)


@pytest.mark.parametrize(
    ("start", "days", "end"),
    [
        (dt.datetime(2026, 11, 23, 2, tzinfo=UTC), 0, dt.date(2026, 11, 24)),  # Monday itself
        (dt.datetime(2026, 11, 23, 2, tzinfo=UTC), 5, dt.date(2026, 12, 1)),
        (dt.datetime(2026, 11, 27, 17, tzinfo=UTC), 1, dt.date(2026, 12, 1)),  # Sat 01:00 CST
    ],
)
def test_working_days(start: dt.datetime, days: int, end: dt.date) -> None:
    calendar = WorkCalendar()
    assert calendar.end_of_working_day(start, days) == dt.datetime.combine(
        end, dt.time(), BUSINESS_TZ)


def test_a_bad_holiday_date_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="rating_holidays: '2026-13-01'"):
        CentralConfig(rating_holidays="2026-10-01,2026-13-01")
    with pytest.raises(ConfigError, match="rating_default_value"):
        CentralConfig(rating_default_value=6)
    with pytest.raises(ConfigError, match="province_app_key"):
        CentralConfig(province_url="https://hcp.example.cn/api/evaluations")



def test_statistics_recount_the_records_exactly(small_registry: sessionmaker[Session]) -> None:
    """A busy random day at three windows through ingest: per window and staff member, the
    statistics recounted from the events give what the rating records hold (ratings, 差评,
    unrated offers), including an upheld appeal."""
    import random

    from central.queries import ReadModel

    rng = random.Random(20)
    site = sim()
    staff = {1: "zs01", 2: "zs02", 3: "zs03"}
    bodies: list[mm.EventBody] = [mm.WindowSignedIn(window=w, staff=s) for w, s in staff.items()]
    for n in range(1, 61):
        ticket, window = f"A{n:03d}", rng.choice(list(staff))
        bodies += [mm.TicketIssued(ticket=ticket, service="zonghe", ticket_class="normal",
                                   booked_ts=None, channel="kiosk", people_ahead=0, wait=None),
                   mm.TicketCalled(ticket=ticket, window=window),
                   mm.TicketDone(ticket=ticket, window=window, served_s=rng.randint(30, 900))]
        if rng.random() < 0.2:
            bodies.append(mm.RatingMissed(ticket=ticket, window=window, staff=staff[window],
                                          case=None))
        else:
            bodies.append(mm.RatingGiven(ticket=ticket, window=window, staff=staff[window],
                                         value=rng.randint(1, 5)))
    events = [site.event(body) for body in bodies]
    ingest = processor(small_registry)
    for start in range(0, len(events), 50):  # batches, as they come off the broker
        ingest.process(received(*events[start:start + 50]), NOW)
    first_case = cases(small_registry)[0]
    desk = BadRatingDesk(small_registry)
    desk.act(first_case.id, "appeal", LI, "误评", now=NOW)
    desk.act(first_case.id, "uphold", WANG, "核实", now=NOW)

    day = NOW.astimezone(BUSINESS_TZ).date()
    read = ReadModel(small_registry)
    rows = read.statistics("staff", day, day)
    recount = {r.key: (r.ratings, r.bad_ratings, r.unrated, r.revoked)
               for r in rows if r.service == "*"}  # fmt: skip
    held: dict[str, list[int]] = {}
    for record in records(small_registry):
        figures = held.setdefault(f"{record.site_id}/{record.staff_id}", [0, 0, 0, 0])
        if record.revoked_at is not None:
            figures[3] += 1
        elif record.value is None:
            figures[2] += 1
        else:
            figures[0] += 1
            figures[1] += record.value <= 2
    assert recount == {key: tuple(figures) for key, figures in held.items()}
    assert sum(f[3] for f in recount.values()) == 1

"""A booking changed with its code kept, a site's quotas per slot, the hall's calendar, the
audit of every booking operation: on SQLite and PostgreSQL (the ``sessions`` fixture), and
quotas held under concurrent pushes on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.audit import Actor
from central.bookings import Bookings, record_check_in, record_no_show
from central.config import CentralConfig
from central.errors import Conflict, InvalidRequest
from central.models import AuditEntry
from central.pushes import Pushes
from tests.central.test_bookings import SALT, id_number

SITE = "zs-sanxiang"  # 三乡镇 district hall of the small registry: shebao, huji, budongchan...
UTC8 = dt.timezone(dt.timedelta(hours=8))
MONDAY = dt.datetime(2026, 12, 7, 8, 0, tzinfo=UTC8)  # now: Monday 08:00 in the hall
YSS = Actor("yss", "10.0.0.9", "token-yss", "operator")
OPS = Actor("ops-li", "10.0.0.2", "user:2", "admin")
HALL_RULES: dict[str, Any] = {
    "hours": {"open": "08:30", "close": "17:30", "lunch": "12:00-14:00", "days": "mon-fri"},
    "service_last_ticket": {"budongchan": "16:00"},
    "default_quota": 3,
    "quotas": [{"service": "shebao", "days": "mon-fri", "time": "09:00-10:00", "quota": 1},
               {"days": "fri", "quota": 2}],
}


def bookings_of(sessions: sessionmaker[Session], **settings: Any) -> Bookings:
    config = CentralConfig(booking_person_salt=SALT, booking_slot_quota=5, **settings)
    return Bookings(sessions, config)


def day(offset: int) -> str:
    return (MONDAY.date() + dt.timedelta(days=offset)).isoformat()


def audit(sessions: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    with sessions() as session:
        return [(e.action, e.target, e.actor) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.action.like("booking.%")).order_by(
                AuditEntry.id))]


def test_a_change_keeps_the_code_and_checks_the_new_slot(
        small_registry: sessionmaker[Session]) -> None:
    sessions = small_registry
    bookings = bookings_of(sessions)
    bookings.set_rules(SITE, HALL_RULES, actor=OPS, now=MONDAY)
    mine = bookings.book(SITE, "shebao", day(1), "10:00-10:30", id_number(1), reference="y-1",
                         actor=YSS, now=MONDAY)
    bookings.book(SITE, "shebao", day(1), "09:00-09:30", id_number(2), reference=None,
                  actor=YSS, now=MONDAY)  # a shebao slot in 09:00-10:00 takes 1: now full
    with pytest.raises(Conflict, match="slot full"):
        bookings.change(mine.code, slot="09:00-09:30", actor=YSS, now=MONDAY)
    with pytest.raises(InvalidRequest, match="午休"):
        bookings.change(mine.code, slot="11:45-12:15", actor=YSS, now=MONDAY)
    before, after = bookings.change(mine.code, day=day(2), slot="14:00-14:30", actor=YSS,
                                    now=MONDAY)
    assert (before.day, before.slot) == (day(1), "10:00-10:30")
    assert (after.code, after.day, after.slot, after.service, after.status) == (
        mine.code, day(2), "14:00-14:30", "shebao", "booked")
    assert after.code[:4] == "1208"  # the code keeps the day it was made for
    # Another service; the same change again (a platform's retry) changes nothing.
    _, moved = bookings.change(mine.code, service="huji", actor=YSS, now=MONDAY)
    assert (moved.service, moved.day, moved.slot) == ("huji", day(2), "14:00-14:30")
    assert bookings.change(mine.code, service="huji", actor=YSS, now=MONDAY) == (moved, moved)
    # The old slot is free again; one a day holds for the new day.
    bookings.book(SITE, "shebao", day(1), "10:00-10:30", id_number(3), reference=None,
                  actor=YSS, now=MONDAY)
    other = bookings.book(SITE, "huji", day(3), "10:00-10:30", id_number(1), reference=None,
                          actor=YSS, now=MONDAY)
    with pytest.raises(Conflict, match="one a day"):
        bookings.change(other.code, day=day(2), actor=YSS, now=MONDAY)
    with pytest.raises(InvalidRequest, match="has no service 'chejiaguan'"):
        bookings.change(other.code, service="chejiaguan", actor=YSS, now=MONDAY)
    # Too late (the cancel deadline, an hour before the slot), checked in, cancelled.
    late = MONDAY.replace(day=10, hour=9, minute=30)
    with pytest.raises(Conflict, match="changing closed at 2026-12-10 09:00"):
        bookings.change(other.code, slot="15:00-15:30", actor=YSS, now=late)
    with sessions.begin() as session:
        record_check_in(session, SITE, other.code, "A001",
                        dt.datetime(2026, 12, 10, 2, tzinfo=dt.UTC))
        record_check_in(session, SITE, other.code, "A001",  # delivered twice: once
                        dt.datetime(2026, 12, 10, 2, tzinfo=dt.UTC))
        record_no_show(session, SITE, "A001", dt.datetime(2026, 12, 10, 3, tzinfo=dt.UTC))
        record_no_show(session, SITE, "A009", dt.datetime(2026, 12, 10, 3, tzinfo=dt.UTC))
    with pytest.raises(Conflict, match="checked in"):
        bookings.change(other.code, slot="15:00-15:30", actor=YSS, now=MONDAY)
    bookings.cancel(mine.code, actor=YSS, now=MONDAY)
    bookings.cancel(mine.code, actor=YSS, now=MONDAY)  # once more: nothing new
    with pytest.raises(Conflict, match="cancelled"):
        bookings.change(mine.code, slot="15:00-15:30", actor=YSS, now=MONDAY)
    entries = audit(sessions)
    assert [action for action, _, _ in entries] == [
        "booking.rules", "booking.create", "booking.create", "booking.change", "booking.change",
        "booking.create", "booking.create", "booking.check_in", "booking.no_show",
        "booking.cancel"]
    assert [(action, who) for action, target, who in entries
            if target == f"booking:{mine.code}"] == [
        ("booking.create", "yss"), ("booking.change", "yss"), ("booking.change", "yss"),
        ("booking.cancel", "yss")]
    assert [(action, who) for action, target, who in entries
            if target == f"booking:{other.code}"] == [
        ("booking.create", "yss"), ("booking.check_in", SITE), ("booking.no_show", SITE)]
    with sessions() as session:
        change = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "booking.change").order_by(AuditEntry.id)).first()
        assert change is not None
        assert change.detail["from"] == {"service": "shebao", "day": day(1),
                                         "slot": "10:00-10:30"}
        assert change.detail["to"] == {"service": "shebao", "day": day(2), "slot": "14:00-14:30"}
        assert (change.source, change.role) == ("10.0.0.9", "operator")


def test_quotas_per_slot_with_a_default(small_registry: sessionmaker[Session]) -> None:
    bookings = bookings_of(small_registry)
    person = iter(range(100, 200))

    def book(service: str, on: str, slot: str) -> bool:
        try:
            bookings.book(SITE, service, on, slot, id_number(next(person)), reference=None,
                          actor=YSS, now=MONDAY)
        except Conflict:
            return False
        return True

    assert [book("shebao", day(1), "09:00-09:30") for _ in range(6)] == [True] * 5 + [False]
    bookings.set_rules(SITE, HALL_RULES, actor=OPS, now=MONDAY)
    assert book("shebao", day(1), "09:00-09:30") is False  # taken before: kept, no more
    assert book("shebao", day(1), "09:30-10:00") is True  # 1 a slot in shebao's 09:00-10:00
    assert book("shebao", day(1), "09:30-10:00") is False
    assert [book("huji", day(1), "09:30-10:00") for _ in range(4)] == [True] * 3 + [False]
    assert [book("shebao", day(4), "09:30-10:00") for _ in range(2)] == [True, False]  # first
    assert [book("huji", day(4), "15:00-15:30") for _ in range(3)] == [True, True, False]
    slots = {(s["service"], s["slot"]): (s["booked"], s["quota"])
             for s in bookings.slots(SITE, day(1), MONDAY)}
    assert slots == {("shebao", "09:00-09:30"): (5, 1), ("shebao", "09:30-10:00"): (1, 1),
                     ("huji", "09:30-10:00"): (3, 3)}
    assert bookings.rules(SITE)["rules"] == HALL_RULES
    assert bookings.rules(SITE)["updated_by"] == "ops-li"
    assert audit(small_registry)[-1][0] == "booking.create"
    assert ("booking.rules", SITE, "ops-li") in audit(small_registry)


@pytest.mark.parametrize(("rules", "problems"), [
    ({"quotas": [{"service": "shebao", "quota": -1}]}, ["quotas[0].quota"]),
    ({"quotas": [{"service": "nothing", "time": "10:00", "days": "mon-xyz", "quota": 1,
                  "extra": 1}]},
     ["quotas[0].extra", "quotas[0].service", "quotas[0].days", "quotas[0].time"]),
    ({"hours": {"open": "09:00", "close": "08:00"}, "default_quota": "5"},
     ["hours.close", "default_quota"]),
    ({"hours": {"open": "08:30", "close": "17:30", "lunch": "18:00-19:00"},
      "service_last_ticket": {"budongchan": "07:00"}, "speed": 2},
     ["speed", "hours.lunch", "service_last_ticket.budongchan"]),
    ({"calendar": {"holidays": ["2026-13-01"]}, "quotas": {}}, ["calendar.holidays", "quotas"]),
])
def test_bad_rules_are_refused_naming_every_problem(
        small_registry: sessionmaker[Session], rules: dict[str, Any],
        problems: list[str]) -> None:
    bookings = bookings_of(small_registry)
    bookings.set_rules(SITE, HALL_RULES, actor=OPS, now=MONDAY)
    with pytest.raises(InvalidRequest) as caught:
        bookings.set_rules(SITE, rules, actor=OPS, now=MONDAY)
    for path in problems:
        assert path in str(caught.value)
    assert bookings.rules(SITE)["rules"] == HALL_RULES  # nothing lost


def test_the_booked_slot_keeps_the_halls_calendar(small_registry: sessionmaker[Session]) -> None:
    """Weekends, holidays, the lunch closure, the hours, a service's 停止取号 and an
    emergency stop refuse a booking; a 调休 Saturday takes one."""
    sessions = small_registry
    bookings = bookings_of(sessions)
    bookings.set_rules(SITE, HALL_RULES, actor=OPS, now=MONDAY)
    pushes = Pushes(sessions)
    pushes.set_calendar(["2026-12-09"], ["2026-12-12"], ["2026-12-11 08:30-12:00"],
                        by="ops", now=MONDAY)
    person = iter(range(300, 400))

    def refusal(service: str, on: str, slot: str) -> str | None:
        try:
            bookings.book(SITE, service, on, slot, id_number(next(person)), reference=None,
                          actor=YSS, now=MONDAY)
        except (InvalidRequest, Conflict) as exc:
            return str(exc)
        return None

    assert refusal("huji", day(1), "10:00-10:30") is None
    assert refusal("huji", day(2), "10:00-10:30") == (
        "2026-12-09 不办公（法定节假日 a public holiday），不能预约 "
        "(the hall is closed on 2026-12-09)")
    assert refusal("huji", day(6), "10:00-10:30") == (
        "2026-12-13 不办公（休息日 a closed day），不能预约 (the hall is closed on 2026-12-13)")
    assert refusal("huji", day(5), "10:00-10:30") is None  # Saturday, a 调休 working day
    assert refusal("huji", day(1), "11:45-12:15") == (
        "预约时段11:45-12:15与午休12:00-14:00重叠 (overlaps the lunch closure)")
    assert refusal("huji", day(1), "17:15-17:45") == (
        "预约时段17:15-17:45不在办公时间08:30-12:00,14:00-17:30内 (outside the opening hours)")
    assert refusal("huji", day(1), "08:00-08:30") is not None
    assert refusal("budongchan", day(1), "15:30-16:00") is None
    assert refusal("budongchan", day(1), "16:00-16:30") == (
        "budongchan业务当日16:00停止取号，16:00不能预约 "
        "(budongchan stops taking numbers at 16:00 that day)")
    # The half day (special) of Friday: the hours end at 12:00, 不动产 stops 1.5 h before.
    assert refusal("huji", day(4), "14:00-14:30") is not None
    assert refusal("budongchan", day(4), "10:30-11:00") is not None
    assert refusal("budongchan", day(4), "10:00-10:30") is None
    stop, _ = pushes.stop("town", "三乡镇", "台风红色预警", by="ops", now=MONDAY)
    assert refusal("huji", day(1), "15:00-15:30") == (
        f"{SITE}暂停取号（台风红色预警），暂不受理预约 "
        f"(issuing is stopped at {SITE}: 台风红色预警)")
    pushes.lift(stop.id, by="ops", now=MONDAY)
    assert refusal("huji", day(1), "15:00-15:30") is None


def test_concurrent_pushes_keep_the_quota(small_registry: sessionmaker[Session],
                                          db_url: str) -> None:
    """Twelve platforms' requests for a slot with room for three, at once, on threads of
    their own (as several central workers would be): three bookings, nine 'slot full'."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time; the race is PostgreSQL's")
    bookings = bookings_of(small_registry)
    bookings.set_rules(SITE, {"quotas": [{"service": "shebao", "quota": 3}]}, actor=OPS,
                       now=MONDAY)
    start = threading.Barrier(12)
    results: list[str] = []

    def push(serial: int) -> None:
        start.wait()
        try:
            bookings.book(SITE, "shebao", day(1), "09:00-09:30", id_number(500 + serial),
                          reference=None, actor=YSS, now=MONDAY)
            results.append("booked")
        except Conflict as exc:
            results.append(str(exc).split(":")[0])

    threads = [threading.Thread(target=push, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == ["booked"] * 3 + ["slot full"] * 9
    # The same person pushed to two sites at once: one booking (one a day).
    person = threading.Barrier(2)
    answers: list[str] = []

    def same_person(site: str) -> None:
        person.wait()
        try:
            bookings.book(site, "shebao", day(2), "09:00-09:30", id_number(600),
                          reference=None, actor=YSS, now=MONDAY)
            answers.append("booked")
        except Conflict:
            answers.append("refused")

    pair = [threading.Thread(target=same_person, args=(s,)) for s in (SITE, "zs-sanxiang-01")]
    for thread in pair:
        thread.start()
    for thread in pair:
        thread.join(60)
    assert sorted(answers) == ["booked", "refused"]

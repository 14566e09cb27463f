"""The hall's calendar: weekdays, lunch, holidays, 调休 make-up days, half days, service hours."""

from __future__ import annotations

import datetime as dt

import pytest

from fastpath.calendar import Calendar, DayHours, calendar_from_tables, minute_of
from fastpath.simulate import ModelError, example_hall, simulate_day

HOURS = {"open": "08:30", "close": "17:30", "lunch": "12:00-14:00", "last_ticket": "17:00",
         "days": "mon-fri", "week": {"sat": "09:00-12:00"}}
CALENDAR = {"holidays": ["2026-10-01..2026-10-08", "2027-01-01"],
            "workdays": ["2026-09-27", "2026-10-10"],
            "special": ["2026-12-31 08:30-12:00"]}
SERVICES = {"budongchan": "16:00"}


def m(text: str) -> int:
    return minute_of(text)


@pytest.fixture
def calendar() -> Calendar:
    calendar, problems = calendar_from_tables(HOURS, CALENDAR, SERVICES)
    assert problems == []
    return calendar


def test_a_week_with_lunch_and_a_saturday_morning(calendar: Calendar) -> None:
    monday = calendar.day(dt.date(2026, 11, 23))
    assert monday.kind == "standard"
    assert monday.hours == DayHours(((m("08:30"), m("12:00")), (m("14:00"), m("17:30"))),
                                    m("17:00"))
    assert calendar.issuing(monday.date, m("09:00"))
    assert not calendar.issuing(monday.date, m("12:30"))  # lunch
    assert not calendar.issuing(monday.date, m("17:10"))  # 停止取号
    assert monday.hours is not None
    assert monday.hours.open_at(m("17:10"))
    assert monday.hours.next_open(m("12:30")) == m("14:00")
    saturday = calendar.day(dt.date(2026, 11, 28))
    assert saturday.kind == "weekday"
    # Its own hours, 停止取号 with the standard day's margin: 30 minutes before closing.
    assert saturday.hours == DayHours(((m("09:00"), m("12:00")),), m("11:30"))
    assert calendar.day(dt.date(2026, 11, 29)).hours is None  # Sunday


def test_holidays_make_up_days_and_a_half_day(calendar: Calendar) -> None:
    national_day = calendar.day(dt.date(2026, 10, 5))  # a Monday in the holiday
    assert (national_day.kind, national_day.hours) == ("holiday", None)
    make_up = calendar.day(dt.date(2026, 9, 27))  # a Sunday worked (调休)
    assert (make_up.kind, make_up.hours) == ("workday", calendar.standard)
    assert calendar.day(dt.date(2026, 10, 10)).kind == "workday"  # a Saturday: standard hours
    eve = calendar.day(dt.date(2026, 12, 31))
    assert eve.kind == "special"
    assert eve.hours == DayHours(((m("08:30"), m("12:00")),), m("11:30"))


def test_a_service_stops_earlier_by_its_margin_on_every_day(
        calendar: Calendar) -> None:
    monday, eve = dt.date(2026, 11, 23), dt.date(2026, 12, 31)
    assert calendar.service_margin("budongchan") == 60  # 16:00 against the hall's 17:00
    assert calendar.issuing(monday, m("15:59"), "budongchan")
    assert not calendar.issuing(monday, m("16:00"), "budongchan")
    assert calendar.issuing(monday, m("16:30"), "huji")  # another service: the hall's
    assert not calendar.issuing(eve, m("10:30"), "budongchan")  # the half day: 11:30 - 60
    assert calendar.issuing(eve, m("10:29"), "budongchan")


def test_a_pushed_calendar_takes_its_dates_over(calendar: Calendar) -> None:
    pushed = calendar.with_dated(
        holidays=[dt.date(2026, 9, 27)], workdays=[],
        special={dt.date(2026, 10, 1): DayHours(((m("09:00"), m("11:00")),), m("10:30"))})
    assert pushed.day(dt.date(2026, 9, 27)).kind == "holiday"  # no longer a make-up day
    assert pushed.day(dt.date(2026, 10, 1)).kind == "special"  # no longer a holiday
    assert pushed.day(dt.date(2026, 10, 2)).kind == "holiday"  # untouched
    assert pushed.day(dt.date(2026, 12, 31)).kind == "special"


def test_defaults_keep_every_day_open() -> None:
    calendar, problems = calendar_from_tables({"open": "08:30", "close": "17:30"}, {}, {})
    assert problems == []
    assert all(calendar.day(dt.date(2026, 11, 23) + dt.timedelta(days=n)).hours
               == calendar.standard for n in range(7))
    assert calendar.standard == DayHours(((m("08:30"), m("17:30")),), m("17:30"))


@pytest.mark.parametrize(("hours", "calendar", "services", "problem"), [
    ({"lunch": "11:00"}, {}, {}, "hours.lunch: expected HH:MM-HH:MM"),
    ({"lunch": "07:00-08:00"}, {}, {}, "hours.lunch: must lie within open .. close"),
    ({"days": "mon-fry"}, {}, {}, "hours.days: expected days like"),
    ({"days": "fri-mon"}, {}, {}, "a range runs forward"),
    ({"week": {"sunday": "closed"}}, {}, {}, "hours.week.sunday: expected one of"),
    ({"week": {"sat": "12:00-09:00"}}, {}, {}, "must close after it opens"),
    ({"week": {"sat": "09:00-12:00,11:00-13:00"}}, {}, {}, "in order with a break"),
    ({}, {"holidays": ["2026-02-30"]}, {}, "no such date '2026-02-30'"),
    ({}, {"holidays": ["2026-10-08..2026-10-01"]}, {}, "a range runs forward"),
    ({}, {"holidays": ["2026-01-01..2026-12-31"]}, {}, "at most 62 days"),
    ({}, {"holidays": "2026-10-01"}, {}, "calendar.holidays: expected a list"),
    ({}, {"holidays": ["2026-10-01"], "workdays": ["2026-10-01"]}, {},
     "calendar.workdays: 2026-10-01 is also a holiday"),
    ({}, {"special": ["2026-12-31"]}, {}, "expected \"YYYY-MM-DD HH:MM-HH:MM\""),
    ({}, {"special": ["2026-12-31 08:30-12:00", "2026-12-31 09:00-10:00"]}, {},
     "2026-12-31 is listed twice"),
    ({}, {}, {"huji": "18:00"}, "services.huji.last_ticket: must be after hours.open"),
    ({}, {}, {"huji": "25:00"}, "services.huji.last_ticket: expected local time"),
])
def test_problems_name_their_key(hours: dict[str, object], calendar: dict[str, object],
                                 services: dict[str, str], problem: str) -> None:
    _, problems = calendar_from_tables({"open": "08:30", "close": "17:30", **hours},
                                       calendar, services)
    assert any(problem in p for p in problems), problems


def test_the_simulator_keeps_the_calendar() -> None:
    # The staffing tool and the wait predictions simulate the day the calendar gives:
    # nobody arrives or is called over lunch, a service's arrivals stop at its own hour.
    hall = example_hall("village_station")
    calendar, problems = calendar_from_tables(HOURS, CALENDAR, {"minsheng": "16:00"})
    assert problems == []
    monday = hall.on_date(calendar, dt.date(2026, 11, 23))
    ms = 60_000
    assert monday.window_shifts()[0] == ((m("08:30") * ms, m("12:00") * ms),
                                        (m("14:00") * ms, m("17:30") * ms))
    assert monday.window_shifts()[2] == ((m("14:00") * ms, m("17:30") * ms),)  # 12:00- in file
    lunch = (m("12:00") * ms, m("14:00") * ms)
    columns = simulate_day(monday, seed=5).columns
    arrivals = list(columns["arrival"])
    assert arrivals
    assert not [a for a in arrivals if lunch[0] <= a < lunch[1]]
    calls = [c for c in columns["called"] if c >= 0]
    assert not [c for c in calls if lunch[0] <= c < lunch[1]]
    minsheng = monday.service_index("minsheng")
    late = [a for a, s in zip(arrivals, columns["service"], strict=True)
            if s == minsheng and a >= m("16:00") * ms]
    assert late == []
    assert max(arrivals) < m("17:00") * ms
    # Without a calendar the model is the file's: arrivals over lunch too.
    assert any(lunch[0] <= a < lunch[1] for a in simulate_day(hall, seed=5).columns["arrival"])
    saturday = hall.on_date(calendar, dt.date(2026, 11, 28))
    # Its first window works 08:30-12:00 and 14:00-17:30 (the file): on Saturday, 09:00-12:00.
    assert saturday.window_shifts()[0] == ((m("09:00") * ms, m("12:00") * ms),)
    with pytest.raises(ModelError, match="closed on 2026-10-01"):
        hall.on_date(calendar, dt.date(2026, 10, 1))

"""The hall's calendar: on which days, and when in each, tickets are issued and windows work.

One model for everyone who asks "is the hall open?": the edge daemon (issuing,
the hall screen's notices), the progress pages, the simulator and the staffing
tool (a day's shifts and arrivals). It reads the ``[hours]`` and ``[calendar]``
tables of a site's TOML (and each service's ``last_ticket``) with
:func:`calendar_from_tables`, so a site config and a hall model file speak alike::

    [hours]
    open = "08:30"              # a standard working day ...
    close = "17:30"
    lunch = "12:00-14:00"       # ... closed for lunch (no tickets, windows closed)
    last_ticket = "17:00"       # 停止取号 (default: at close)
    days = "mon-fri"            # the days open with these hours (default: every day)
    week = { sat = "09:00-12:00" }   # a weekday of its own: hours, or "closed"

    [calendar]
    holidays = ["2026-10-01..2026-10-08"]   # 法定节假日: closed
    workdays = ["2026-09-27", "2026-10-10"]  # 调休 make-up days: a standard working day
    special = ["2026-12-31 08:30-12:00"]     # a day of its own hours (half day)

A day is resolved in this order: a special day, a holiday, a make-up working day,
the weekday's own hours, the standard hours if the weekday is in ``days``,
otherwise closed. Hours are ``"HH:MM-HH:MM"`` sessions separated by commas (a
lunch is the gap between two); minutes count from local midnight.

停止取号 keeps its margin: on any day, tickets stop as long before the day's last
closing as ``last_ticket`` does before ``close`` on a standard day, and a service
with its own ``last_ticket`` (one that stops taking numbers earlier) keeps its
margin the same way (a half day ending 12:00 stops 不动产 at 10:30 when it stops at
16:00 on a standard day ending 17:30).

Problems are collected, not raised one by one: :func:`calendar_from_tables` returns
them with their key paths, as ``check-config`` shows them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from fastpath.types import ConfigError

DAY_MINUTES: Final = 24 * 60
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_RANGE_DAYS: Final = 62  # a holiday range longer than this is a typo
_HHMM: Final = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00"
_SESSION_RE: Final = re.compile(rf"^\s*({_HHMM})\s*-\s*({_HHMM})\s*$")
_DATE_RE: Final = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

DayKind = Literal["standard", "weekday", "holiday", "workday", "special", "closed"]


def minute_of(text: str) -> int:
    """``"08:30"`` -> 510 (``"24:00"`` -> 1440); ValueError for anything else."""
    if not re.fullmatch(_HHMM, text):
        raise ValueError(f"expected HH:MM, got {text!r}")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True, slots=True)
class DayHours:
    """One day's opening: ``sessions`` (open, close) in order, the gaps between them
    closed (lunch); no ticket from ``last_ticket`` on."""

    sessions: tuple[tuple[int, int], ...]
    last_ticket: int

    @property
    def opens(self) -> int:
        return self.sessions[0][0]

    @property
    def closes(self) -> int:
        return self.sessions[-1][1]

    def open_at(self, minute: int) -> bool:
        """Whether the windows work at ``minute`` (not before, after or at lunch)."""
        return any(start <= minute < end for start, end in self.sessions)

    def issuing(self, minute: int, margin: int = 0) -> bool:
        """Whether a ticket may be taken at ``minute`` (``margin``: a service's 停止取号
        that much earlier)."""
        return self.open_at(minute) and minute < self.last_ticket - margin

    def next_open(self, minute: int) -> int | None:
        """The minute the next session opens after ``minute`` (None: not today)."""
        return next((start for start, _ in self.sessions if start > minute), None)

    def describe(self) -> str:
        return ",".join(f"{hhmm(a)}-{hhmm(b)}" for a, b in self.sessions)


@dataclass(frozen=True, slots=True)
class DayPlan:
    """What the calendar says of one date: its hours (None: closed) and why."""

    date: dt.date
    hours: DayHours | None
    kind: DayKind


@dataclass(frozen=True, slots=True)
class Calendar:
    """A hall's calendar (module docstring); :meth:`day` resolves a date."""

    standard: DayHours
    week: tuple[DayHours | None, ...]  # Monday .. Sunday
    week_kind: tuple[DayKind, ...]
    holidays: frozenset[dt.date] = frozenset()
    workdays: frozenset[dt.date] = frozenset()
    special: Mapping[dt.date, DayHours] = field(default_factory=lambda: MappingProxyType({}))
    service_last_ticket: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({}))
    """A service's own 停止取号 on a standard day (minutes after midnight)."""

    @property
    def margin(self) -> int:
        """停止取号 before the standard day's closing, in minutes."""
        return self.standard.closes - self.standard.last_ticket

    def day(self, date: dt.date) -> DayPlan:
        if date in self.special:
            return DayPlan(date, self.special[date], "special")
        if date in self.holidays:
            return DayPlan(date, None, "holiday")
        if date in self.workdays:
            return DayPlan(date, self.standard, "workday")
        weekday = date.weekday()
        return DayPlan(date, self.week[weekday], self.week_kind[weekday])

    def service_margin(self, service_id: str) -> int:
        """How much earlier than the day's 停止取号 ``service_id`` stops (minutes, >= 0)."""
        own = self.service_last_ticket.get(service_id)
        return 0 if own is None else max(0, self.standard.last_ticket - own)

    def issuing(self, date: dt.date, minute: int, service_id: str | None = None) -> bool:
        hours = self.day(date).hours
        margin = 0 if service_id is None else self.service_margin(service_id)
        return hours is not None and hours.issuing(minute, margin)

    def with_dated(self, holidays: Iterable[dt.date], workdays: Iterable[dt.date],
                   special: Mapping[dt.date, DayHours]) -> Calendar:
        """This calendar with other dated days put over its own (a pushed city calendar:
        a date it names takes its word, whatever the file said of that date)."""
        holidays, workdays = frozenset(holidays), frozenset(workdays)
        named = holidays | workdays | set(special)
        return Calendar(
            self.standard, self.week, self.week_kind,
            frozenset(d for d in self.holidays if d not in named) | holidays,
            frozenset(d for d in self.workdays if d not in named) | workdays,
            MappingProxyType({**{d: h for d, h in self.special.items() if d not in named},
                              **special}),
            self.service_last_ticket)


def always_open() -> Calendar:
    """Open around the clock every day (a hall model without hours)."""
    day = DayHours(((0, DAY_MINUTES),), DAY_MINUTES)
    return Calendar(day, (day,) * 7, ("standard",) * 7)


# --------------------------------------------------------------------------- reading


class Problems:
    """Problems found while reading, each with its key path."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")


def parse_sessions(text: str, path: str, problems: Problems) -> tuple[tuple[int, int], ...]:
    """``"08:30-12:00,14:00-17:30"`` -> sessions, in order and apart (problems otherwise)."""
    sessions = []
    for part in text.split(","):
        match = _SESSION_RE.match(part)
        if match is None:
            problems.add(path, f"expected HH:MM-HH:MM[,HH:MM-HH:MM], got {text!r}")
            return ()
        start, end = minute_of(match.group(1)), minute_of(match.group(2))
        if start >= end:
            problems.add(path, f"{part.strip()}: must close after it opens")
            return ()
        sessions.append((start, end))
    for (_, end), (start, _) in itertools.pairwise(sessions):
        if start <= end:
            problems.add(path, f"sessions must be in order with a break between, got {text!r}")
            return ()
    return tuple(sessions)


def parse_date(text: str, path: str, problems: Problems) -> dt.date | None:
    if not _DATE_RE.match(text):
        problems.add(path, f"expected a date YYYY-MM-DD, got {text!r}")
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        problems.add(path, f"no such date {text!r}")
        return None


def parse_dates(values: object, path: str, problems: Problems) -> set[dt.date]:
    """A list of dates and ``"first..last"`` ranges."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        problems.add(path, "expected a list of dates like \"2026-10-01\" or "
                           "\"2026-10-01..2026-10-08\"")
        return set()
    found: set[dt.date] = set()
    for index, value in enumerate(values):
        where = f"{path}[{index}]"
        first_text, _, last_text = value.partition("..")
        first = parse_date(first_text.strip(), where, problems)
        last = first if not last_text else parse_date(last_text.strip(), where, problems)
        if first is None or last is None:
            continue
        if last < first or (last - first).days >= MAX_RANGE_DAYS:
            problems.add(where, f"a range runs forward and spans at most {MAX_RANGE_DAYS} "
                                f"days, got {value!r}")
            continue
        found.update(first + dt.timedelta(days=n) for n in range((last - first).days + 1))
    return found


def parse_special(values: object, path: str, problems: Problems,
                  margin: int) -> dict[dt.date, DayHours]:
    """``["2026-12-31 08:30-12:00", ...]``: days of their own hours."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        problems.add(path, "expected a list like [\"2026-12-31 08:30-12:00\"]")
        return {}
    found: dict[dt.date, DayHours] = {}
    for index, value in enumerate(values):
        where = f"{path}[{index}]"
        date_text, _, hours_text = value.strip().partition(" ")
        date = parse_date(date_text, where, problems)
        sessions = parse_sessions(hours_text, where, problems) if hours_text.strip() else ()
        if not hours_text.strip():
            problems.add(where, f"expected \"YYYY-MM-DD HH:MM-HH:MM\", got {value!r}")
        if date is None or not sessions:
            continue
        if date in found:
            problems.add(where, f"{date} is listed twice")
        found[date] = _day(sessions, margin)
    return found


def with_city_days(calendar: Calendar, days: Mapping[str, object], path: str,
                   problems: Problems) -> Calendar:
    """``calendar`` with a city calendar's dated days (``holidays``, ``workdays``,
    ``special``, as the central decides and pushes them) over its own; problems under
    ``path``."""
    return calendar.with_dated(
        parse_dates(days.get("holidays", []), f"{path}holidays", problems),
        parse_dates(days.get("workdays", []), f"{path}workdays", problems),
        parse_special(days.get("special", []), f"{path}special", problems, calendar.margin))


def _day(sessions: tuple[tuple[int, int], ...], margin: int) -> DayHours:
    """A day of its own hours: 停止取号 with the standard day's margin (not before opening)."""
    return DayHours(sessions, max(sessions[0][0] + 1, sessions[-1][1] - margin))


def parse_days(text: str, path: str, problems: Problems) -> set[int]:
    """``"mon-fri"``, ``"mon,wed,fri"``, ``"mon-sat"`` -> weekday numbers (Monday 0)."""
    found: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            problems.add(path, f"expected days like \"mon-fri\" or \"mon,wed,fri\", "
                               f"got {text!r}")
            return set(range(7))
        a = WEEKDAYS.index(first)
        b = WEEKDAYS.index(last) if last else a
        if b < a:
            problems.add(path, f"{part}: a range runs forward (mon-fri)")
            continue
        found.update(range(a, b + 1))
    return found


def calendar_from_tables(hours: Mapping[str, Any], calendar: Mapping[str, Any],
                         service_last_ticket: Mapping[str, str],
                         path: str = "") -> tuple[Calendar, list[str]]:
    """The calendar of a site's ``[hours]`` and ``[calendar]`` tables (TOML values as read)
    and its services' ``last_ticket``; the problems found (empty: all is well).

    ``hours`` needs ``open`` and ``close``; ``lunch``, ``last_ticket``, ``days``, ``week``
    are optional. Keys other than these are not checked here (the caller owns them).
    """
    problems = Problems()
    prefix = f"{path}." if path else ""
    opens = _minute(hours.get("open", "08:30"), f"{prefix}hours.open", problems)
    closes = _minute(hours.get("close", "17:30"), f"{prefix}hours.close", problems)
    sessions: tuple[tuple[int, int], ...] = ((opens, closes),) if opens < closes else ()
    if not sessions:
        problems.add(f"{prefix}hours.close", "must be after hours.open")
        sessions = ((0, DAY_MINUTES),)
    lunch = hours.get("lunch")
    if isinstance(lunch, str):
        gap = parse_sessions(lunch, f"{prefix}hours.lunch", problems)
        if len(gap) == 1:
            start, end = gap[0]
            if not opens < start < end < closes:
                problems.add(f"{prefix}hours.lunch", "must lie within open .. close")
            else:
                sessions = ((opens, start), (end, closes))
    elif lunch is not None:
        problems.add(f"{prefix}hours.lunch", "expected \"HH:MM-HH:MM\"")
    last = hours.get("last_ticket")
    last_ticket = sessions[-1][1]
    if isinstance(last, str):
        value = _minute(last, f"{prefix}hours.last_ticket", problems)
        if not sessions[0][0] < value <= sessions[-1][1]:
            problems.add(f"{prefix}hours.last_ticket",
                         "must be after hours.open and not after hours.close")
        else:
            last_ticket = value
    standard = DayHours(sessions, last_ticket)
    margin = standard.closes - standard.last_ticket
    days_text = hours.get("days", "mon-sun")
    days = (parse_days(days_text, f"{prefix}hours.days", problems)
            if isinstance(days_text, str) else set(range(7)))
    week: list[DayHours | None] = [standard if d in days else None for d in range(7)]
    kinds: list[DayKind] = ["standard" if d in days else "closed" for d in range(7)]
    own = hours.get("week", {})
    if isinstance(own, Mapping):
        for name, value in own.items():
            where = f"{prefix}hours.week.{name}"
            if name not in WEEKDAYS:
                problems.add(where, f"expected one of {', '.join(WEEKDAYS)}")
                continue
            if not isinstance(value, str):
                problems.add(where, "expected hours \"HH:MM-HH:MM\" or \"closed\"")
                continue
            index = WEEKDAYS.index(name)
            if value.strip().lower() == "closed":
                week[index], kinds[index] = None, "closed"
                continue
            parsed = parse_sessions(value, where, problems)
            if parsed:
                week[index], kinds[index] = _day(parsed, margin), "weekday"
    else:
        problems.add(f"{prefix}hours.week", "expected a table { sat = \"09:00-12:00\" }")
    holidays = parse_dates(calendar.get("holidays", []), f"{prefix}calendar.holidays",
                           problems)
    workdays = parse_dates(calendar.get("workdays", []), f"{prefix}calendar.workdays",
                           problems)
    for date in sorted(holidays & workdays):
        problems.add(f"{prefix}calendar.workdays", f"{date} is also a holiday")
    special = parse_special(calendar.get("special", []), f"{prefix}calendar.special",
                            problems, margin)
    services: dict[str, int] = {}
    for service_id, text in service_last_ticket.items():
        value = _minute(text, f"{prefix}services.{service_id}.last_ticket", problems)
        if not standard.opens < value <= standard.last_ticket:
            problems.add(f"{prefix}services.{service_id}.last_ticket",
                         "must be after hours.open and not after the hall's last ticket")
            continue
        services[service_id] = value
    calendar_ = Calendar(standard, tuple(week), tuple(kinds), frozenset(holidays),
                         frozenset(workdays), MappingProxyType(special),
                         MappingProxyType(services))
    return calendar_, problems.items


class CalendarError(ConfigError):
    """A calendar that cannot be read; the message lists every problem with its key."""


def calendar_from_file(path: str | Path) -> Calendar:
    """The calendar of a site's TOML file (its ``[hours]``, ``[calendar]`` and each
    service's ``last_ticket``): the very file the edge runs, for the simulator and the
    staffing tool. :class:`CalendarError` if it cannot be read."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8").removeprefix("\ufeff"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CalendarError(f"{path}: cannot read: {exc}") from None
    hours, calendar = data.get("hours", {}), data.get("calendar", {})
    services = data.get("services", [])
    if not isinstance(hours, dict) or not isinstance(calendar, dict) \
            or not isinstance(services, list):
        raise CalendarError(f"{path}: [hours] and [calendar] must be tables")
    last = {s["id"]: s["last_ticket"] for s in services
            if isinstance(s, dict) and isinstance(s.get("id"), str) and "last_ticket" in s}
    result, problems = calendar_from_tables(hours, calendar, last)
    if problems:
        raise CalendarError(f"{path}: " + "; ".join(problems))
    return result


def _minute(value: object, path: str, problems: Problems) -> int:
    if isinstance(value, str):
        try:
            return minute_of(value)
        except ValueError:
            pass
    problems.add(path, f"expected local time HH:MM, got {value!r}")
    return 0


__all__ = [
    "DAY_MINUTES",
    "WEEKDAYS",
    "Calendar",
    "CalendarError",
    "DayHours",
    "DayKind",
    "DayPlan",
    "Problems",
    "always_open",
    "calendar_from_file",
    "calendar_from_tables",
    "hhmm",
    "minute_of",
    "parse_dates",
    "parse_days",
    "parse_sessions",
    "parse_special",
    "with_city_days",
]

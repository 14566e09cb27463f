"""A site's booking rules (预约规则): its quota per slot, and the calendar a booking must fit.

::

    rules = parse_rules({"hours": {"open": "08:30", "close": "17:30", "lunch": "12:00-14:00",
                                   "days": "mon-fri"},
                         "service_last_ticket": {"budongchan": "16:00"},
                         "default_quota": 6,
                         "quotas": [{"service": "shebao", "days": "mon-fri",
                                     "time": "09:00-12:00", "quota": 4}]},
                        services={"shebao", "budongchan"})
    rules.quota_for("shebao", date, minute_of("09:30"), default=10)    # 4
    check_slot(calendar, date, "12:30", "13:00", "shebao")               # InvalidRequest

The document (JSON, every key optional):

``hours``
    the site's opening hours as its config's ``[hours]`` table has them (``open``,
    ``close``, ``lunch``, ``last_ticket``, ``days``, ``week``): keep the two the same.
    Without it, the registry's hours of the site, every day; a site without hours
    in the registry either takes bookings at any time of any day that is not closed.
``calendar``
    the site's own dated days, as its ``[calendar]`` table (``holidays``,
    ``workdays``, ``special``); the city calendar goes over them, as on the edge.
``service_last_ticket``
    a service's own 停止取号 on a standard day (``{"budongchan": "16:00"}``).
``default_quota``
    bookings per service and slot where no ``quotas`` entry matches (default: the
    central's ``booking_slot_quota``).
``quotas``
    a list; the first entry matching the booking's service (``service``; absent:
    any), weekday (``days``, ``"mon-fri"``; absent: any) and slot start (``time``,
    ``"09:00-12:00"``; absent: any) gives its ``quota`` (0: no bookings there).

The calendar is :mod:`fastpath.calendar`, the edge's own: the same tables read the
same way, so a booking is refused exactly when the hall would not issue its ticket.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from central.errors import InvalidRequest
from fastpath.calendar import (
    WEEKDAYS,
    Calendar,
    Problems,
    calendar_from_tables,
    hhmm,
    minute_of,
    parse_days,
    parse_sessions,
)

MAX_QUOTA: Final = 10_000
MAX_QUOTA_ENTRIES: Final = 200
RULE_KEYS: Final = frozenset({"hours", "calendar", "service_last_ticket", "default_quota",
                              "quotas"})
_QUOTA_KEYS: Final = frozenset({"service", "days", "time", "quota"})
_SERVICE_PROBLEM: Final = re.compile(r"^services\.([^.]+)\.last_ticket:")
_KIND_TEXT: Final = {"holiday": "法定节假日 a public holiday", "closed": "休息日 a closed day"}
_ALL_DAY: Final[Mapping[str, str]] = MappingProxyType({"open": "00:00", "close": "24:00"})
"""The hours of a site without any: around the clock."""


@dataclass(frozen=True, slots=True)
class SlotQuota:
    """One ``quotas`` entry: ``None`` fields match anything."""

    quota: int
    service: str | None = None
    days: frozenset[int] | None = None  # Monday 0
    time: tuple[int, int] | None = None  # minutes, the slot's start in [from, to)

    def matches(self, service: str, date: dt.date, start: int) -> bool:
        return ((self.service is None or self.service == service)
                and (self.days is None or date.weekday() in self.days)
                and (self.time is None or self.time[0] <= start < self.time[1]))


@dataclass(frozen=True, slots=True)
class BookingRules:
    """A site's rules, checked (:func:`parse_rules`); ``document`` is what was given."""

    document: Mapping[str, Any]
    default_quota: int | None
    quotas: tuple[SlotQuota, ...]

    def quota_for(self, service: str, date: dt.date, start: int, *, default: int) -> int:
        """Bookings allowed for ``service`` in the slot starting at minute ``start``."""
        found = next((q.quota for q in self.quotas if q.matches(service, date, start)), None)
        if found is not None:
            return found
        return self.default_quota if self.default_quota is not None else default

    def calendar(self, registry_hours: Mapping[str, str] | None) -> Calendar:
        """The site's calendar before the city's dated days go over it."""
        hours = self.document.get("hours")
        if hours is None and registry_hours is None:  # around the clock, its own dated days
            return calendar_from_tables(_ALL_DAY, self.document.get("calendar", {}), {})[0]
        calendar, problems = calendar_from_tables(
            hours if hours is not None else registry_hours or {},
            self.document.get("calendar", {}), self.document.get("service_last_ticket", {}))
        if problems:  # checked when set; registry hours are checked by the registry
            raise InvalidRequest("booking rules: " + "; ".join(problems))
        return calendar


NO_RULES: Final = BookingRules({}, None, ())


def parse_rules(document: object, *, services: Collection[str]) -> BookingRules:
    """The rules of ``document`` (module docstring), or :class:`InvalidRequest` naming
    every problem; ``services``: the site's services (empty: any service is accepted)."""
    problems = Problems()
    if not isinstance(document, Mapping):
        raise InvalidRequest("booking rules: expected a JSON object")
    for key in sorted(set(document) - RULE_KEYS):
        problems.add(key, f"unknown key (expected {', '.join(sorted(RULE_KEYS))})")
    hours = document.get("hours", _ALL_DAY)
    dated = document.get("calendar", {})
    last = document.get("service_last_ticket", {})
    tables = (("hours", hours), ("calendar", dated), ("service_last_ticket", last))
    for name, value in tables:
        if not isinstance(value, Mapping):
            problems.add(name, "expected a JSON object")
    if all(isinstance(value, Mapping) for _, value in tables):
        _, found = calendar_from_tables(hours, dated, last)
        # The calendar names a service's cut-off as in a site config; here it has a key
        # of its own.
        problems.items += [_SERVICE_PROBLEM.sub(r"service_last_ticket.\1:", p) for p in found]
        for service in last:
            _known(service, services, f"service_last_ticket.{service}", problems)
    default = document.get("default_quota")
    if default is not None:
        _quota(default, "default_quota", problems)
    entries = document.get("quotas", [])
    quotas: list[SlotQuota] = []
    if not isinstance(entries, list) or len(entries) > MAX_QUOTA_ENTRIES:
        problems.add("quotas", f"expected a list of at most {MAX_QUOTA_ENTRIES} entries")
        entries = []
    for index, entry in enumerate(entries):
        where = f"quotas[{index}]"
        if not isinstance(entry, Mapping):
            problems.add(where, "expected an object {service, days, time, quota}")
            continue
        for key in sorted(set(entry) - _QUOTA_KEYS):
            problems.add(f"{where}.{key}", "unknown key (expected service, days, time, quota)")
        quota = _quota(entry.get("quota"), f"{where}.quota", problems)
        service = entry.get("service")
        if service is not None and not isinstance(service, str):
            problems.add(f"{where}.service", "expected a service code")
            service = None
        elif service is not None:
            _known(service, services, f"{where}.service", problems)
        days = entry.get("days")
        day_set = None
        if days is not None:
            day_set = (frozenset(parse_days(days, f"{where}.days", problems))
                       if isinstance(days, str) else None)
            if not isinstance(days, str):
                problems.add(f"{where}.days", f"expected days like \"mon-fri\" ({WEEKDAYS})")
        time = entry.get("time")
        span = None
        if time is not None:
            parsed = (parse_sessions(time, f"{where}.time", problems)
                      if isinstance(time, str) else ())
            if len(parsed) != 1:
                problems.add(f"{where}.time", "expected one range \"HH:MM-HH:MM\"")
            else:
                span = parsed[0]
        quotas.append(SlotQuota(quota, service, day_set, span))
    if problems.items:
        raise InvalidRequest("booking rules: " + "; ".join(problems.items))
    return BookingRules(dict(document), default, tuple(quotas))


def _quota(value: object, where: str, problems: Problems) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUOTA:
        problems.add(where, f"expected a whole number 0-{MAX_QUOTA}")
        return 0
    return value


def _known(service: str, services: Collection[str], where: str, problems: Problems) -> None:
    if services and service not in services:
        problems.add(where, f"the site has no service {service!r}")


def check_slot(calendar: Calendar, date: dt.date, start: str, end: str, service: str) -> None:
    """:class:`InvalidRequest` (Chinese first) unless the slot ``start``-``end`` of ``date``
    lies within one opening session of the day and ``service`` still issues at its start."""
    plan = calendar.day(date)
    hours = plan.hours
    if hours is None:
        raise InvalidRequest(f"{date} 不办公（{_KIND_TEXT.get(plan.kind, plan.kind)}），"
                             f"不能预约 (the hall is closed on {date})")
    first, last = minute_of(start), minute_of(end)
    if not any(a <= first and last <= b for a, b in hours.sessions):
        lunch = [(b, a) for (_, b), (a, _) in zip(hours.sessions, hours.sessions[1:],
                                                  strict=False)
                 if first < a and b < last]
        what = (f"与午休{hhmm(lunch[0][0])}-{hhmm(lunch[0][1])}重叠 (overlaps the lunch closure)"
                if lunch else f"不在办公时间{hours.describe()}内 (outside the opening hours)")
        raise InvalidRequest(f"预约时段{start}-{end}{what}")
    if not calendar.issuing(date, first, service):
        stops = hours.last_ticket - calendar.service_margin(service)
        raise InvalidRequest(f"{service}业务当日{hhmm(stops)}停止取号，{start}不能预约 "
                             f"({service} stops taking numbers at {hhmm(stops)} that day)")


__all__ = ["MAX_QUOTA", "NO_RULES", "BookingRules", "SlotQuota", "check_slot", "parse_rules"]

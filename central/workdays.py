"""Working days (工作日) for deadlines: Monday to Friday, minus holidays, plus 调休 days.

::

    calendar = WorkCalendar.parse(holidays="2026-10-01,2026-10-02", workdays="2026-10-10")
    calendar.is_working(dt.date(2026, 10, 10))            # True: a Saturday made a working day
    calendar.end_of_working_day(opened_at, 15)            # 24:00 (UTC+8) of the 15th working day

China's official calendar moves days every year (the State Council's notice on holidays
and 调休); the central takes them as two lists of dates in its settings
(``rating_holidays``, ``rating_workdays``) rather than guessing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from central.errors import ConfigError
from central.stats import BUSINESS_TZ


@dataclass(frozen=True, slots=True)
class WorkCalendar:
    holidays: frozenset[dt.date] = frozenset()
    """Weekdays that are not working days (法定节假日)."""
    workdays: frozenset[dt.date] = frozenset()
    """Weekend days that are working days (调休)."""

    @classmethod
    def parse(cls, *, holidays: str = "", workdays: str = "") -> WorkCalendar:
        """From comma-separated ``YYYY-MM-DD`` lists; :class:`ConfigError` naming a bad date."""
        return cls(_dates(holidays, "rating_holidays"), _dates(workdays, "rating_workdays"))

    def is_working(self, day: dt.date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def end_of_working_day(self, start: dt.datetime, days: int) -> dt.datetime:
        """The end (24:00 business time) of the ``days``-th working day after ``start``'s
        business date; ``days = 0``: the end of that date itself."""
        if days < 0:
            raise ValueError(f"days must be >= 0, got {days}")
        day = start.astimezone(BUSINESS_TZ).date()
        counted = 0
        while counted < days:
            day += dt.timedelta(days=1)
            if self.is_working(day):
                counted += 1
        return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), BUSINESS_TZ)


def _dates(text: str, setting: str) -> frozenset[dt.date]:
    found = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            found.add(dt.date.fromisoformat(part))
        except ValueError:
            raise ConfigError(f"{setting}: {part!r} is not a date YYYY-MM-DD") from None
    return frozenset(found)


__all__ = ["WorkCalendar"]

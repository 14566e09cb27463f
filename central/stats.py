"""Service statistics: 办件量, 办结率, 好评率, waits, service times, no-shows, help requests.

Definitions are written down in ``docs/STATISTICS.md``; this module is their
one implementation. It has two layers:

* pure functions over event records (:class:`EventRecord`: site, seq, wall
  time, typed body from :mod:`firmware_protocols.mqtt_messages`):
  :func:`fold_tickets` turns a site's event stream into one
  :class:`TicketFacts` per ticket, one :class:`HelpFacts` per help request and
  one :class:`RatingFacts` per rating or unrated offer, and :func:`aggregate`
  groups facts by (scope key, period, service) into :class:`StatRow` records
  (scopes site, town, fleet, window, staff; periods day, month, year). Every
  figure pools the raw values of its group (a fleet p90 is the p90 of every wait,
  a month's p90 the p90 of the month's waits, never an average of smaller p90s).
* :func:`rows_to_csv` writes rows as CSV (UTF-8 with BOM, so that Excel opens
  the Chinese headers correctly).

The database query lives in :mod:`central.queries` (the read model) next to the
other queries, and feeds :func:`compute` with records read from the events
table through :func:`to_stat_record`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from array import array
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgspec

from firmware_protocols.mqtt_messages import (
    DayReset,
    EventBody,
    HelpAcknowledged,
    HelpRequested,
    HelpResolved,
    RatingGiven,
    RatingMissed,
    TicketCalled,
    TicketCancelled,
    TicketDone,
    TicketIssued,
    TicketNoShow,
    TicketTransferred,
    WindowSignedIn,
    WindowSignedOut,
)

BUSINESS_TZ: Final = dt.timezone(dt.timedelta(hours=8), "CST")
"""Business days are local dates in China Standard Time (UTC+8, no daylight saving)."""

GOOD_RATINGS: Final = frozenset({4, 5})
"""The two best grades of the five-grade pad (非常满意 5, 满意 4) count towards 好评率."""

ALL_SERVICES: Final = "*"
"""Service key of the rows that total every service of a scope (and carry help figures)."""
ALL_SERVICE_NAME: Final = "全部事项"

BAD_RATINGS: Final = frozenset({1, 2})
"""非常不满意 1 and 不满意 2 are 差评."""

Scope = Literal["site", "town", "fleet", "window", "staff"]
SCOPES: Final[tuple[Scope, ...]] = ("site", "town", "fleet", "window", "staff")
Period = Literal["day", "month", "year"]
PERIODS: Final[tuple[Period, ...]] = ("day", "month", "year")
FLEET_KEY: Final = "全市"
UNKNOWN_STAFF: Final = "?"
"""Staff of a window whose sign-in is not among the events read."""


def window_key(site: str, window: int) -> str:
    """The key of a window row: ``site/窗口号``."""
    return f"{site}/{window}"


def staff_key(site: str, staff: str) -> str:
    """The key of a staff row: ``site/工号`` (工号 are per site)."""
    return f"{site}/{staff}"


@dataclass(frozen=True, slots=True)
class RatingRules:
    """What the statistics do with ratings beyond the events (docs/STATISTICS.md)."""

    default_value: int = 0
    """默认好评: the level an unrated offer counts as (0: none)."""
    default_in_rates: bool = False
    """Default ratings count in 评价数 and 好评率 (else only in 默认好评数)."""
    revoked: frozenset[tuple[str, int]] = frozenset()
    """(site, seq) of 差评 whose appeal was upheld: they count nowhere."""


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One stored business event: what the statistics need from the events table."""

    site: str
    seq: int
    ts_ms: int
    body: EventBody


class _Stored(msgspec.Struct):
    """Converting through a struct field is ~30x faster than converting to the bare union
    (msgspec caches a struct's type info, not a union's)."""

    body: EventBody


_BODY_DECODER: Final = msgspec.json.Decoder(EventBody)


def to_stat_record(site_id: str, seq: int, ts_ms: int,
                   body: dict[str, Any] | str | bytes) -> EventRecord:  # fmt: skip
    """A stored event row as a record, its body as decoded JSON or as the JSON text;
    ``msgspec.ValidationError`` (or ``DecodeError`` for text) if the body is not one."""
    if isinstance(body, str | bytes):
        return EventRecord(site_id, seq, ts_ms, _BODY_DECODER.decode(body))
    return EventRecord(site_id, seq, ts_ms, msgspec.convert({"body": body}, _Stored).body)


@dataclass(slots=True)
class TicketFacts:
    """What happened to one ticket, folded from its events."""

    site: str
    day: dt.date
    ticket: str
    service: str
    """Final service: a transferred ticket counts for the service it was transferred to."""
    issued_ms: int
    ready_ms: int
    """When the wait starts: issue time, or the booked time of an early appointment."""
    first_called_ms: int | None = None
    done: bool = False
    done_ms: int | None = None
    served_s: int | None = None
    no_show: bool = False
    """Finally a no-show (a no-show that was requeued and then served is not one)."""
    cancelled: bool = False
    window: int | None = None
    """The window that last called it (where it was handled)."""
    staff: str | None = None
    """The staff signed in at that window then."""

    @property
    def wait_s(self) -> float | None:
        if self.first_called_ms is None:
            return None
        return max(0, self.first_called_ms - self.ready_ms) / 1000.0


@dataclass(slots=True)
class RatingFacts:
    """One rating (``rating.given``) or an offer left unrated (``rating.missed``)."""

    site: str
    day: dt.date
    """The business day of the rating's own time."""
    seq: int
    ticket: str
    service: str
    """The final service of its ticket."""
    window: int
    staff: str
    value: int | None
    """1..5; None: unrated."""


@dataclass(slots=True)
class HelpFacts:
    """One 呼叫帮办 request and when staff acknowledged it."""

    site: str
    day: dt.date
    button: str
    requested_ms: int
    acknowledged_ms: int | None = None

    @property
    def response_s(self) -> float | None:
        if self.acknowledged_ms is None:
            return None
        return max(0, self.acknowledged_ms - self.requested_ms) / 1000.0


@dataclass(frozen=True, slots=True)
class Summary:
    """Mean and nearest-rank percentiles of a sample, in seconds; ``None`` when empty."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None


@dataclass(frozen=True, slots=True)
class StatRow:
    """Figures of one (scope, key, day, service). Rates are fractions 0..1, ``None`` if 0/0."""

    scope: Scope
    key: str
    day: dt.date
    """The first day of the period."""
    service: str
    issued: int
    """取号量; for window and staff rows, the tickets they handled (called)."""
    served: int
    """办件量: tickets finished (``ticket.done``)."""
    done_rate: float | None
    """办结率: served ÷ issued."""
    ratings: int
    good_ratings: int
    good_rating_rate: float | None
    """好评率: good ratings ÷ all ratings."""
    wait: Summary
    service_time: Summary
    called: int
    no_shows: int
    no_show_rate: float | None
    """No-shows ÷ called tickets."""
    help_requests: int | None
    """Only on :data:`ALL_SERVICES` rows of site, town and fleet scopes (a help button
    belongs to no service and no window); ``None`` elsewhere."""
    help_unanswered: int | None
    help_response: Summary | None
    bad_ratings: int = 0
    """差评数: ratings 1 and 2 (an upheld appeal removes one)."""
    unrated: int = 0
    """未评价: offers left unrated."""
    default_ratings: int = 0
    """默认好评数: unrated offers a 默认好评 rule rates."""
    rated_rate: float | None = None
    """评价率: ratings given ÷ offers (given + unrated)."""
    revoked: int = 0
    """差评 whose appeal was upheld (counted nowhere else)."""
    period: Period = "day"

    @property
    def period_label(self) -> str:
        """``2026-11-23``, ``2026-11`` or ``2026``."""
        return period_label(self.day, self.period)


def business_day(ts_ms: int) -> dt.date:
    """The local (UTC+8) date of a unix-millisecond wall time."""
    return dt.datetime.fromtimestamp(ts_ms / 1000.0, BUSINESS_TZ).date()


def period_start(day: dt.date, period: Period) -> dt.date:
    if period == "month":
        return day.replace(day=1)
    if period == "year":
        return dt.date(day.year, 1, 1)
    return day


def period_label(start: dt.date, period: Period) -> str:
    if period == "month":
        return f"{start:%Y-%m}"
    if period == "year":
        return f"{start:%Y}"
    return start.isoformat()


def business_date(moment: dt.datetime) -> dt.date:
    """The local (UTC+8) date of an aware datetime: "today" for the pages and the API."""
    return moment.astimezone(BUSINESS_TZ).date()


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``p`` % of values <= it.

    ``sorted(values)[ceil(p / 100 * n) - 1]``; no interpolation, so the result is
    always an observed value. ``None`` for an empty sample.
    """
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is not in (0, 100]")
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(p / 100.0 * len(ordered))
    return ordered[max(rank, 1) - 1]


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        return Summary(0, None, None, None)
    return Summary(
        len(values), sum(values) / len(values), percentile(values, 50), percentile(values, 90)
    )


def _rate(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


@dataclass
class FoldResult:
    tickets: list[TicketFacts] = field(default_factory=list)
    helps: list[HelpFacts] = field(default_factory=list)
    ratings: list[RatingFacts] = field(default_factory=list)


@dataclass
class _SiteFold:
    """What one site's fold holds while it reads the site's events in order."""

    site: str
    tickets: dict[str, TicketFacts] = field(default_factory=dict)
    helps: dict[str, HelpFacts] = field(default_factory=dict)
    staff: dict[int, str] = field(default_factory=dict)  # window -> staff signed in


def fold_tickets(events: Iterable[EventRecord]) -> FoldResult:
    """Fold events into ticket, help and rating facts.

    Events are processed per site in ``seq`` order (the input may be in any
    order). A ticket event refers to the latest ``ticket.issued`` of that number
    at that site (numbers restart every day). Events about unknown tickets
    (issued before the period read) are ignored.
    """
    result = FoldResult()
    by_site: dict[str, list[EventRecord]] = defaultdict(list)
    for record in events:
        by_site[record.site].append(record)
    for site, records in sorted(by_site.items()):
        records.sort(key=lambda r: r.seq)
        fold_site(site, records, result)
    return result


def fold_site(site: str, records: Iterable[EventRecord], result: FoldResult) -> None:
    """Fold one site's events, already in ``seq`` order, into ``result`` (a caller that
    streams a long period site by site holds one site's events at a time)."""
    state = _SiteFold(site)
    for record in records:
        _apply(state, record, result)


def _apply(state: _SiteFold, record: EventRecord, result: FoldResult) -> None:
    site, tickets, helps = state.site, state.tickets, state.helps
    body = record.body
    if isinstance(body, TicketIssued):
        ready = record.ts_ms
        if body.booked_ts is not None:
            ready = max(ready, body.booked_ts)
        facts = TicketFacts(
            site, business_day(record.ts_ms), body.ticket, body.service, record.ts_ms, ready
        )
        tickets[body.ticket] = facts
        result.tickets.append(facts)
    elif isinstance(body, HelpRequested):
        help_facts = HelpFacts(site, business_day(record.ts_ms), body.button, record.ts_ms)
        helps[body.button] = help_facts
        result.helps.append(help_facts)
    elif isinstance(body, HelpAcknowledged | HelpResolved):
        # Answers the request open at that button (the latest: a new request replaces an
        # open one, which stays unanswered). A request resolved without an explicit
        # acknowledgement was answered on resolution.
        pending = helps.pop(body.button, None)
        if pending is not None and pending.acknowledged_ms is None:
            pending.acknowledged_ms = record.ts_ms
    elif isinstance(body, DayReset):
        helps.clear()  # the edge forgets open requests at its day reset: unanswered for good
    elif isinstance(
        body, TicketCalled | TicketDone | TicketNoShow | TicketTransferred | TicketCancelled
    ):
        ticket = tickets.get(body.ticket)
        if ticket is not None:
            _apply_ticket(ticket, record.ts_ms, body, state.staff)
    elif isinstance(body, RatingGiven | RatingMissed):
        rated = tickets.get(body.ticket)
        if rated is not None:
            value = body.value if isinstance(body, RatingGiven) else None
            result.ratings.append(RatingFacts(site, business_day(record.ts_ms), record.seq,
                                              body.ticket, rated.service, body.window,
                                              body.staff, value))  # fmt: skip
    elif isinstance(body, WindowSignedIn):
        state.staff[body.window] = body.staff
    elif isinstance(body, WindowSignedOut):
        state.staff.pop(body.window, None)


def _apply_ticket(
    ticket: TicketFacts,
    ts_ms: int,
    body: TicketCalled | TicketDone | TicketNoShow | TicketTransferred | TicketCancelled,
    staff: dict[int, str],
) -> None:
    if isinstance(body, TicketCalled):
        if ticket.first_called_ms is None:
            ticket.first_called_ms = ts_ms
        ticket.no_show = False  # called again after a requeued no-show
        ticket.window = body.window
        ticket.staff = staff.get(body.window, UNKNOWN_STAFF)
    elif isinstance(body, TicketDone):
        ticket.done = True
        ticket.done_ms = ts_ms
        ticket.no_show = False
        ticket.served_s = body.served_s
    elif isinstance(body, TicketNoShow):
        ticket.no_show = not body.requeued
    elif isinstance(body, TicketTransferred):
        ticket.service = body.to_service
    else:
        ticket.cancelled = True


@dataclass
class _Bucket:
    issued: int = 0
    served: int = 0
    ratings: list[int] = field(default_factory=list)
    given: int = 0
    unrated: int = 0
    default_ratings: int = 0
    revoked: int = 0
    waits: array[float] = field(default_factory=lambda: array("d"))
    service_times: array[float] = field(default_factory=lambda: array("d"))
    called: int = 0
    no_shows: int = 0
    help_requests: int = 0
    help_unanswered: int = 0
    help_responses: list[float] = field(default_factory=list)
    with_help: bool = False

    def add_ticket(self, ticket: TicketFacts) -> None:
        self.issued += 1
        if ticket.done:
            self.served += 1
            if ticket.served_s is not None:
                self.service_times.append(float(ticket.served_s))
        wait = ticket.wait_s
        if wait is not None:
            self.called += 1
            self.waits.append(wait)
        if ticket.no_show:
            self.no_shows += 1

    def add_rating(self, rating: RatingFacts, rules: RatingRules) -> None:
        if (rating.site, rating.seq) in rules.revoked:
            self.revoked += 1
        elif rating.value is not None:
            self.given += 1
            self.ratings.append(rating.value)
        else:
            self.unrated += 1
            if rules.default_value:
                self.default_ratings += 1
                if rules.default_in_rates:
                    self.ratings.append(rules.default_value)

    def add_help(self, help_facts: HelpFacts) -> None:
        self.help_requests += 1
        response = help_facts.response_s
        if response is None:
            self.help_unanswered += 1
        else:
            self.help_responses.append(response)

    def row(self, scope: Scope, key: str, start: dt.date, service: str,
            period: Period) -> StatRow:  # fmt: skip
        good = sum(1 for value in self.ratings if value in GOOD_RATINGS)
        bad = sum(1 for value in self.ratings if value in BAD_RATINGS)
        helps = service == ALL_SERVICES and self.with_help
        return StatRow(
            scope=scope,
            key=key,
            day=start,
            service=service,
            issued=self.issued,
            served=self.served,
            done_rate=_rate(self.served, self.issued),
            ratings=len(self.ratings),
            good_ratings=good,
            good_rating_rate=_rate(good, len(self.ratings)),
            wait=summarize(self.waits),
            service_time=summarize(self.service_times),
            called=self.called,
            no_shows=self.no_shows,
            no_show_rate=_rate(self.no_shows, self.called),
            help_requests=self.help_requests if helps else None,
            help_unanswered=self.help_unanswered if helps else None,
            help_response=summarize(self.help_responses) if helps else None,
            bad_ratings=bad,
            unrated=self.unrated,
            default_ratings=self.default_ratings,
            rated_rate=_rate(self.given, self.given + self.unrated),
            revoked=self.revoked,
            period=period,
        )


def _keys(scope: Scope, site: str, window: int | None, staff: str | None,
          town_of: Mapping[str, str]) -> str | None:  # fmt: skip
    """The row key of a fact in ``scope``; None when the fact has no such key (a ticket
    never called has no window)."""
    if scope == "site":
        return site
    if scope == "town":
        return town_of.get(site, "?")
    if scope == "fleet":
        return FLEET_KEY
    if window is None:
        return None
    if scope == "window":
        return window_key(site, window)
    return staff_key(site, staff or UNKNOWN_STAFF)


def aggregate(
    facts: FoldResult,
    scope: Scope,
    town_of: Mapping[str, str],
    *,
    days: tuple[dt.date, dt.date] | None = None,
    period: Period = "day",
    rules: RatingRules = RatingRules(),
) -> list[StatRow]:
    """Group facts by (key, period, service) plus an all-services row per (key, period).

    ``days`` = (first, last), inclusive, keeps only facts of those business days;
    ``period`` sums them per day, month or year (every figure from the raw values of the
    whole period). Rows are sorted by key, period, then service with
    :data:`ALL_SERVICES` first.
    """
    buckets: dict[tuple[str, dt.date, str], _Bucket] = defaultdict(_Bucket)
    per_window = scope in ("window", "staff")

    def wanted(day: dt.date) -> bool:
        return days is None or days[0] <= day <= days[1]

    def add(key: str, day: dt.date, service: str) -> list[_Bucket]:
        start = period_start(day, period)
        return [buckets[(key, start, service)], buckets[(key, start, ALL_SERVICES)]]

    for ticket in facts.tickets:
        key = _keys(scope, ticket.site, ticket.window, ticket.staff, town_of)
        if key is not None and wanted(ticket.day):
            for bucket in add(key, ticket.day, ticket.service):
                bucket.add_ticket(ticket)
    for rating in facts.ratings:
        key = _keys(scope, rating.site, rating.window, rating.staff, town_of)
        if key is not None and wanted(rating.day):
            for bucket in add(key, rating.day, rating.service):
                bucket.add_rating(rating, rules)
    if not per_window:  # a help button belongs to no window
        for help_facts in facts.helps:
            key = _keys(scope, help_facts.site, None, None, town_of)
            if key is not None and wanted(help_facts.day):
                start = period_start(help_facts.day, period)
                bucket = buckets[(key, start, ALL_SERVICES)]
                bucket.add_help(help_facts)
        for (_, _, service), bucket in buckets.items():
            bucket.with_help = service == ALL_SERVICES
    return [
        bucket.row(scope, key, start, service, period)
        for (key, start, service), bucket in sorted(
            buckets.items(),
            key=lambda item: (item[0][0], item[0][1], item[0][2] != ALL_SERVICES, item[0]),
        )
    ]


def compute(
    events: Iterable[EventRecord],
    scope: Scope,
    town_of: Mapping[str, str],
    *,
    days: tuple[dt.date, dt.date] | None = None,
    period: Period = "day",
    rules: RatingRules = RatingRules(),
) -> list[StatRow]:
    """Fold ``events`` and aggregate them by ``scope``: per site, town (``town_of[site]``),
    the fleet, window or staff member; per day, month or year."""
    return aggregate(fold_tickets(events), scope, town_of, days=days, period=period,
                     rules=rules)  # fmt: skip


def hourly(facts: FoldResult, day: dt.date) -> dict[str, list[float | None]]:
    """Charts of one day (all sites in ``facts``), 24 hourly buckets in business time.

    ``arrivals``: tickets issued in the hour; ``served``: tickets finished in the
    hour; ``wait_mean_s``: mean wait of the tickets first called in the hour
    (``None`` when none was); ``ratings``: count of each grade 1..5 given that day.
    """
    arrivals = [0.0] * 24
    served = [0.0] * 24
    waits: list[list[float]] = [[] for _ in range(24)]
    ratings = [0.0] * 5

    def hour_of(ts_ms: int) -> int | None:
        local = dt.datetime.fromtimestamp(ts_ms / 1000.0, BUSINESS_TZ)
        return local.hour if local.date() == day else None

    for rating in facts.ratings:
        if rating.day == day and rating.value is not None:
            ratings[rating.value - 1] += 1
    for ticket in facts.tickets:
        hour = hour_of(ticket.issued_ms)
        if hour is not None:
            arrivals[hour] += 1
        if ticket.done_ms is not None and (hour := hour_of(ticket.done_ms)) is not None:
            served[hour] += 1
        wait = ticket.wait_s
        if ticket.first_called_ms is not None and wait is not None:
            called_hour = hour_of(ticket.first_called_ms)
            if called_hour is not None:
                waits[called_hour].append(wait)
    return {
        "hour": [float(h) for h in range(24)],
        "arrivals": list(arrivals),
        "served": list(served),
        "wait_mean_s": [sum(w) / len(w) if w else None for w in waits],
        "ratings": list(ratings),
    }


# --------------------------------------------------------------------------- CSV

CSV_COLUMNS: Final = (
    ("scope", "范围"),
    ("key", "编号"),
    ("name", "名称"),
    ("day", "日期"),
    ("service", "事项编号"),
    ("service_name", "事项"),
    ("issued", "取号量"),
    ("served", "办件量"),
    ("done_rate", "办结率"),
    ("ratings", "评价数"),
    ("good_rating_rate", "好评率"),
    ("bad_ratings", "差评数"),
    ("unrated", "未评价数"),
    ("default_ratings", "默认好评数"),
    ("rated_rate", "评价率"),
    ("revoked", "申诉撤销差评数"),
    ("wait_mean_s", "平均等候(秒)"),
    ("wait_p50_s", "等候P50(秒)"),
    ("wait_p90_s", "等候P90(秒)"),
    ("service_mean_s", "平均办理(秒)"),
    ("service_p50_s", "办理P50(秒)"),
    ("service_p90_s", "办理P90(秒)"),
    ("called", "叫号数"),
    ("no_shows", "过号数"),
    ("no_show_rate", "过号率"),
    ("help_requests", "呼叫帮办"),
    ("help_unanswered", "帮办未响应"),
    ("help_response_mean_s", "帮办平均响应(秒)"),
    ("help_response_p90_s", "帮办响应P90(秒)"),
)
"""CSV column id and Chinese header; the header line is ``中文 (id)``."""


def _cell(value: float | int | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"
    return str(value)


def row_values(row: StatRow, names: Mapping[str, str] | None = None,
               service_names: Mapping[str, str] | None = None
               ) -> dict[str, float | int | str | None]:  # fmt: skip
    """A row as a flat mapping keyed by the ids of :data:`CSV_COLUMNS` (also the JSON form).

    ``names``: key -> what people call it (the site's name, "… 3号窗口", the staff member's
    name); ``service_names``: service code -> name. A key without one shows as itself.
    """
    help_response = row.help_response
    service_name = ALL_SERVICE_NAME if row.service == ALL_SERVICES else (
        (service_names or {}).get(row.service, row.service))
    return {
        "scope": row.scope,
        "key": row.key,
        "name": (names or {}).get(row.key, row.key),
        "day": row.period_label,
        "service": row.service,
        "service_name": service_name,
        "issued": row.issued,
        "served": row.served,
        "done_rate": row.done_rate,
        "ratings": row.ratings,
        "good_rating_rate": row.good_rating_rate,
        "bad_ratings": row.bad_ratings,
        "unrated": row.unrated,
        "default_ratings": row.default_ratings,
        "rated_rate": row.rated_rate,
        "revoked": row.revoked,
        "wait_mean_s": row.wait.mean,
        "wait_p50_s": row.wait.p50,
        "wait_p90_s": row.wait.p90,
        "service_mean_s": row.service_time.mean,
        "service_p50_s": row.service_time.p50,
        "service_p90_s": row.service_time.p90,
        "called": row.called,
        "no_shows": row.no_shows,
        "no_show_rate": row.no_show_rate,
        "help_requests": row.help_requests,
        "help_unanswered": row.help_unanswered,
        "help_response_mean_s": None if help_response is None else help_response.mean,
        "help_response_p90_s": None if help_response is None else help_response.p90,
    }


def rows_to_csv(rows: Iterable[StatRow], names: Mapping[str, str] | None = None,
                service_names: Mapping[str, str] | None = None) -> str:
    """CSV text with a BOM and a ``中文 (id)`` header; empty cells for undefined figures."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([f"{zh} ({name})" for name, zh in CSV_COLUMNS])
    for row in rows:
        values = row_values(row, names, service_names)
        writer.writerow([_cell(values[name]) for name, _ in CSV_COLUMNS])
    return out.getvalue()


__all__ = [
    "ALL_SERVICES",
    "ALL_SERVICE_NAME",
    "BAD_RATINGS",
    "BUSINESS_TZ",
    "CSV_COLUMNS",
    "FLEET_KEY",
    "GOOD_RATINGS",
    "PERIODS",
    "SCOPES",
    "UNKNOWN_STAFF",
    "EventRecord",
    "FoldResult",
    "HelpFacts",
    "Period",
    "RatingFacts",
    "RatingRules",
    "Scope",
    "StatRow",
    "Summary",
    "TicketFacts",
    "aggregate",
    "business_date",
    "business_day",
    "compute",
    "fold_site",
    "fold_tickets",
    "hourly",
    "percentile",
    "period_label",
    "period_start",
    "row_values",
    "rows_to_csv",
    "staff_key",
    "summarize",
    "to_stat_record",
    "window_key",
]

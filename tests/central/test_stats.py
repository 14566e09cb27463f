"""Statistics on hand-computed examples (every expected figure is worked out in a comment)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from central.stats import (
    ALL_SERVICES,
    BUSINESS_TZ,
    FLEET_KEY,
    EventRecord,
    RatingRules,
    StatRow,
    business_day,
    compute,
    percentile,
    rows_to_csv,
    summarize,
)
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
)

DAY = dt.date(2026, 11, 23)
T0 = int(dt.datetime(2026, 11, 23, 9, 0, tzinfo=BUSINESS_TZ).timestamp() * 1000)
TOWNS = {"s1": "石岐", "s2": "石岐", "s3": "小榄"}


def issued(ticket: str, service: str, booked_s: int | None = None) -> TicketIssued:
    return TicketIssued(
        ticket=ticket,
        service=service,
        ticket_class="normal" if booked_s is None else "appointment",
        booked_ts=None if booked_s is None else T0 + booked_s * 1000,
        channel="kiosk",
        people_ahead=0,
        wait=None,
    )


def stream(site: str, *timeline: tuple[int, EventBody]) -> list[EventRecord]:
    """Events at ``T0 + seconds``, numbered 1.. in the order given."""
    return [
        EventRecord(site, seq, T0 + seconds * 1000, body)
        for seq, (seconds, body) in enumerate(timeline, start=1)
    ]


S1 = stream(
    "s1",
    (0, issued("A001", "huji")),
    (60, issued("A002", "huji")),
    (120, issued("B001", "shebao")),
    (200, HelpRequested(button="h1", location="自助区")),
    (290, HelpAcknowledged(button="h1", staff="w007")),  # answered after 90 s
    (300, TicketCalled(ticket="A001", window=1)),  # A001 waited 300 s
    (400, TicketCalled(ticket="A002", window=2)),  # A002 waited 400 - 60 = 340 s
    (460, TicketNoShow(ticket="A002", window=2, requeued=True)),
    (540, TicketDone(ticket="A001", window=1, served_s=240)),
    (541, RatingGiven(ticket="A001", window=1, staff="w001", value=5)),
    (600, TicketCalled(ticket="A002", window=2)),  # a recall: the wait stays 340 s
    (660, TicketNoShow(ticket="A002", window=2, requeued=False)),  # finally a no-show
    (700, TicketCalled(ticket="B001", window=1)),  # B001 waited 700 - 120 = 580 s
    (760, TicketTransferred(ticket="B001", window=1, from_service="shebao", to_service="huji")),
    (800, HelpRequested(button="h2", location="二楼")),  # never answered
    (900, TicketDone(ticket="B001", window=1, served_s=100)),
    (901, RatingGiven(ticket="B001", window=1, staff="w001", value=3)),
    (1000, issued("A003", "huji")),
    (1100, TicketCancelled(ticket="A003")),
    (1200, RatingGiven(ticket="Z999", window=1, staff="w001", value=1)),  # unknown: ignored
)
S2 = stream(
    "s2",
    (0, issued("C001", "gongan", booked_s=600)),  # early appointment: waits from 600 s
    (100, issued("A001", "huji")),
    (200, TicketCalled(ticket="A001", window=1)),  # 100 s
    (260, TicketDone(ticket="A001", window=1, served_s=60)),
    (261, RatingGiven(ticket="A001", window=1, staff="w002", value=4)),
    (650, TicketCalled(ticket="C001", window=2)),  # 650 - 600 = 50 s
    (950, TicketDone(ticket="C001", window=2, served_s=300)),
    (951, RatingGiven(ticket="C001", window=2, staff="w003", value=4)),
)
NEXT_DAY_S = 86_400
S3 = stream(
    "s3",
    (NEXT_DAY_S, issued("A001", "huji")),
    (NEXT_DAY_S + 30, TicketCalled(ticket="A001", window=1)),
)
EVENTS = S1 + S2 + S3


def only(rows: list[StatRow], key: str, day: dt.date, service: str) -> StatRow:
    found = [r for r in rows if (r.key, r.day, r.service) == (key, day, service)]
    assert len(found) == 1, found
    return found[0]


def test_percentile_is_nearest_rank() -> None:
    values = [50, 15, 40, 20, 35]  # sorted: 15 20 35 40 50
    assert percentile(values, 30) == 20  # ceil(0.3 * 5) = 2nd
    assert percentile(values, 40) == 20  # ceil(2.0) = 2nd
    assert percentile(values, 50) == 35  # ceil(2.5) = 3rd
    assert percentile(values, 90) == 50  # ceil(4.5) = 5th
    assert percentile(values, 100) == 50
    assert percentile([7], 1) == 7
    assert percentile([], 50) is None


@pytest.mark.parametrize("p", [0, -1, 100.5])
def test_percentile_out_of_range_is_refused(p: float) -> None:
    with pytest.raises(ValueError, match="not in"):
        percentile([1, 2], p)


def test_summary_of_empty_sample_is_undefined() -> None:
    empty = summarize([])
    assert (empty.count, empty.mean, empty.p50, empty.p90) == (0, None, None, None)


def test_business_day_is_china_standard_time() -> None:
    # 2026-11-23 16:30 UTC is 00:30 on the 24th in Beijing.
    utc = dt.datetime(2026, 11, 23, 16, 30, tzinfo=dt.UTC)
    assert business_day(int(utc.timestamp() * 1000)) == dt.date(2026, 11, 24)
    assert business_day(int(utc.timestamp() * 1000) - 3_600_000) == dt.date(2026, 11, 23)


def test_site_row_for_one_service() -> None:
    rows = compute(EVENTS, "site", TOWNS)
    huji = only(rows, "s1", DAY, "huji")
    # A001, A002, B001 (transferred from shebao: counts for huji) and A003 (cancelled).
    assert huji.issued == 4
    assert huji.served == 2  # A001, B001
    assert huji.done_rate == pytest.approx(2 / 4)
    assert (huji.ratings, huji.good_ratings) == (2, 1)  # 5 is good, 3 is not
    assert huji.good_rating_rate == pytest.approx(0.5)
    # waits 300, 340, 580: mean 406.67, p50 = 2nd of 3, p90 = ceil(2.7) = 3rd
    assert huji.wait.count == 3
    assert huji.wait.mean == pytest.approx(1220 / 3)
    assert (huji.wait.p50, huji.wait.p90) == (340, 580)
    # service times 240, 100: mean 170, p50 = 1st of (100, 240), p90 = 2nd
    assert huji.service_time.mean == pytest.approx(170)
    assert (huji.service_time.p50, huji.service_time.p90) == (100, 240)
    assert (huji.called, huji.no_shows) == (3, 1)  # A002 requeued once, then gone
    assert huji.no_show_rate == pytest.approx(1 / 3)
    assert huji.help_requests is None  # help buttons belong to no service
    # B001 left shebao: no ticket of that service remains, so no row.
    assert not [r for r in rows if r.key == "s1" and r.service == "shebao"]


def test_site_total_row_carries_help_requests() -> None:
    total = only(compute(EVENTS, "site", TOWNS), "s1", DAY, ALL_SERVICES)
    assert total.issued == 4
    assert (total.help_requests, total.help_unanswered) == (2, 1)
    assert total.help_response is not None
    assert (total.help_response.count, total.help_response.mean) == (1, 90)


def test_appointment_waits_from_the_booked_time() -> None:
    gongan = only(compute(EVENTS, "site", TOWNS), "s2", DAY, "gongan")
    assert (gongan.wait.mean, gongan.served, gongan.good_rating_rate) == (50, 1, 1.0)


def test_town_pools_raw_values_of_its_sites() -> None:
    rows = compute(EVENTS, "town", TOWNS)
    huji = only(rows, "石岐", DAY, "huji")
    # s1 huji + s2 huji: issued 4 + 1, served 2 + 1, ratings 5, 3, 4
    assert (huji.issued, huji.served) == (5, 3)
    assert huji.good_rating_rate == pytest.approx(2 / 3)
    # waits 100 300 340 580: mean 330, p50 = 2nd = 300, p90 = ceil(3.6) = 4th = 580
    assert (huji.wait.mean, huji.wait.p50, huji.wait.p90) == (330, 300, 580)
    # service 60 100 240: p50 = ceil(1.5) = 2nd = 100, p90 = 3rd = 240
    assert (huji.service_time.p50, huji.service_time.p90) == (100, 240)
    assert huji.service_time.mean == pytest.approx(400 / 3)
    assert huji.no_show_rate == pytest.approx(1 / 4)
    total = only(rows, "石岐", DAY, ALL_SERVICES)
    # + C001: waits 50 100 300 340 580 -> mean 274, p50 = 3rd = 300, p90 = 5th = 580
    assert (total.issued, total.served, total.ratings, total.good_ratings) == (6, 4, 4, 3)
    assert (total.wait.mean, total.wait.p50, total.wait.p90) == (274, 300, 580)
    assert total.help_requests == 2
    assert only(rows, "小榄", DAY + dt.timedelta(days=1), ALL_SERVICES).issued == 1


def test_fleet_rows_and_day_filter() -> None:
    rows = compute(EVENTS, "fleet", TOWNS, days=(DAY, DAY))
    assert {r.key for r in rows} == {FLEET_KEY}
    assert {r.day for r in rows} == {DAY}  # s3's ticket is on the 24th
    assert [r.service for r in rows] == [ALL_SERVICES, "gongan", "huji"]
    assert only(rows, FLEET_KEY, DAY, ALL_SERVICES).issued == 6


def test_input_order_does_not_matter() -> None:
    shuffled = list(EVENTS)
    random.Random(6).shuffle(shuffled)
    assert compute(shuffled, "town", TOWNS) == compute(EVENTS, "town", TOWNS)


def test_csv_has_bom_chinese_headers_names_and_empty_cells_for_undefined() -> None:
    rows = compute(S1, "site", TOWNS)
    text = rows_to_csv(rows, {"s1": "石岐区便民服务中心"}, {"huji": "户籍"})
    assert text.startswith("\ufeff范围 (scope),编号 (key),名称 (name),日期 (day),"
                           "事项编号 (service),事项 (service_name),取号量 (issued),")
    lines = text.lstrip("\ufeff").split("\r\n")
    # issued 4, served 2, done 0.5; ratings 2, good 0.5, bad 0, unrated 0, default 0,
    # rated 1 (2 of 2 offers), revoked 0; waits ...
    assert lines[1].startswith("site,s1,石岐区便民服务中心,2026-11-23,*,全部事项,4,2,0.5,2,0.5,"
                               "0,0,0,1,0,406.6667,340,580,170,")
    # per-service row: help columns empty
    assert lines[2].startswith("site,s1,石岐区便民服务中心,2026-11-23,huji,户籍,4,2,0.5,")
    assert lines[2].endswith(",3,1,0.3333,,,,")
    assert lines[-1] == ""


def test_hourly_charts_of_one_site() -> None:
    from central.stats import fold_tickets, hourly

    charts = hourly(fold_tickets(S1), DAY)
    # All of S1 happens 09:00-09:20: 4 arrivals, 2 done, waits 300/340/580 called in hour 9.
    assert charts["arrivals"][9] == 4
    assert sum(a or 0 for a in charts["arrivals"]) == 4
    assert charts["served"][9] == 2
    assert charts["wait_mean_s"][9] == pytest.approx(1220 / 3)
    assert charts["wait_mean_s"][8] is None
    assert charts["ratings"] == [0, 0, 1, 0, 1]  # one 3, one 5


# --------------------------------------------------------------------------- the three corners
# docs/STATISTICS.md and the code once disagreed on these; each test pins the written rule.


def test_help_request_left_open_overnight_is_unanswered_not_answered_next_day() -> None:
    """An acknowledgement answers the request open at its button, the latest one: a
    request replaced by a newer one at that button stays unanswered."""
    day2 = NEXT_DAY_S
    events = stream(
        "s1",
        (28_000, HelpRequested(button="h1", location="自助区")),  # 16:46, never answered
        (day2, HelpRequested(button="h1", location="自助区")),  # next day 09:00
        (day2 + 60, HelpAcknowledged(button="h1", staff="w007")),  # answers the 09:00 one
    )
    rows = compute(events, "site", TOWNS, days=(DAY, DAY + dt.timedelta(days=1)))
    first = only(rows, "s1", DAY, ALL_SERVICES)
    assert (first.help_requests, first.help_unanswered) == (1, 1)
    assert first.help_response is not None
    assert first.help_response.count == 0
    second = only(rows, "s1", DAY + dt.timedelta(days=1), ALL_SERVICES)
    assert (second.help_requests, second.help_unanswered) == (1, 0)
    assert second.help_response is not None
    assert second.help_response.p90 == 60


def test_help_request_open_at_the_day_reset_stays_unanswered() -> None:
    """The edge forgets open requests at ``day.reset``; an answer after it answers nothing
    of the day before (a replay of old events must not make a 16-hour response)."""
    events = stream(
        "s1",
        (28_000, HelpRequested(button="h1", location="自助区")),
        (NEXT_DAY_S - 21_600, DayReset(day="2026-11-24")),  # 03:00
        (NEXT_DAY_S, HelpResolved(button="h1")),
    )
    row = only(compute(events, "site", TOWNS, days=(DAY, DAY)), "s1", DAY, ALL_SERVICES)
    assert (row.help_requests, row.help_unanswered) == (1, 1)


def test_help_response_is_floored_at_zero_when_the_clock_stepped_back() -> None:
    """An edge clock stepped back at NTP sync between request and answer: 0 s, never negative."""
    events = stream(
        "s1",
        (100, HelpRequested(button="h1", location="自助区")),
        (40, HelpAcknowledged(button="h1", staff=None)),  # seq 2, wall time 60 s earlier
    )
    row = only(compute(events, "site", TOWNS, days=(DAY, DAY)), "s1", DAY, ALL_SERVICES)
    assert row.help_response is not None
    assert (row.help_response.count, row.help_response.p90) == (1, 0)


def test_wait_is_floored_at_zero_when_the_clock_stepped_back() -> None:
    events = stream("s1", (100, issued("A001", "huji")),
                    (70, TicketCalled(ticket="A001", window=1)))
    row = only(compute(events, "site", TOWNS, days=(DAY, DAY)), "s1", DAY, "huji")
    assert (row.wait.count, row.wait.p90) == (1, 0)


def test_a_no_show_is_cleared_by_a_later_call() -> None:
    """过号 is the ticket's last outcome: a no-show (not requeued) called again later is not
    one, whether or not a ``ticket.done`` follows; a second final no-show counts once."""
    events = stream(
        "s1",
        (0, issued("A001", "huji")),
        (10, issued("A002", "huji")),
        (20, issued("A003", "huji")),
        (100, TicketCalled(ticket="A001", window=1)),
        (160, TicketNoShow(ticket="A001", window=1, requeued=False)),
        (400, TicketCalled(ticket="A001", window=1)),  # came back: called again, never done
        (500, TicketCalled(ticket="A002", window=2)),
        (560, TicketNoShow(ticket="A002", window=2, requeued=False)),
        (600, TicketCalled(ticket="A002", window=2)),
        (660, TicketNoShow(ticket="A002", window=2, requeued=False)),  # gone again: one no-show
        (700, TicketCalled(ticket="A003", window=1)),
        (760, TicketNoShow(ticket="A003", window=1, requeued=True)),  # requeued: not one
    )
    row = only(compute(events, "site", TOWNS, days=(DAY, DAY)), "s1", DAY, "huji")
    assert (row.called, row.no_shows, row.served) == (3, 1, 0)
    assert row.no_show_rate == pytest.approx(1 / 3)


# ------------------------------------------------------------------ windows, staff, periods


def signed_in(window: int, staff: str) -> WindowSignedIn:
    return WindowSignedIn(window=window, staff=staff)


WINDOWS = stream(
    "s1",
    (0, signed_in(1, "zs01")),
    (1, signed_in(2, "zs02")),
    (10, issued("A001", "huji")),
    (20, issued("A002", "huji")),
    (30, issued("A003", "huji")),
    (40, issued("A004", "huji")),
    (100, TicketCalled(ticket="A001", window=1)),  # waited 90
    (160, TicketDone(ticket="A001", window=1, served_s=60)),
    (161, RatingGiven(ticket="A001", window=1, staff="zs01", value=5)),
    (200, TicketCalled(ticket="A002", window=2)),  # waited 180
    (230, TicketNoShow(ticket="A002", window=2, requeued=True)),
    (300, TicketCalled(ticket="A002", window=1)),  # recalled at window 1: handled there
    (400, TicketDone(ticket="A002", window=1, served_s=100)),
    (401, RatingGiven(ticket="A002", window=1, staff="zs01", value=1)),
    (500, TicketCalled(ticket="A003", window=2)),  # waited 470
    (560, TicketDone(ticket="A003", window=2, served_s=60)),
    (600, RatingMissed(ticket="A003", window=2, staff="zs02", case=None)),
    (700, HelpRequested(button="h1", location="自助区")),
)


def test_window_and_staff_rows_count_what_they_handled() -> None:
    rows = compute(WINDOWS, "window", TOWNS)
    one = only(rows, "s1/1", DAY, ALL_SERVICES)
    two = only(rows, "s1/2", DAY, ALL_SERVICES)
    # A001 and A002 ended at window 1 (A002 was first called at 2, then at 1): handled 2.
    assert (one.issued, one.served, one.called) == (2, 2, 2)
    assert (one.wait.count, one.wait.p90) == (2, 180)  # a ticket's wait is its first call's
    assert (one.ratings, one.good_ratings, one.bad_ratings, one.unrated) == (2, 1, 1, 0)
    assert (two.issued, two.served, two.ratings, two.unrated, two.rated_rate) == (1, 1, 0, 1, 0)
    assert one.help_requests is None  # a help button is no window's
    assert {r.key for r in rows} == {"s1/1", "s1/2"}  # A004 was never called: no window
    staff = compute(WINDOWS, "staff", TOWNS)
    assert only(staff, "s1/zs01", DAY, ALL_SERVICES).served == 2
    assert only(staff, "s1/zs02", DAY, "huji").unrated == 1


def test_default_ratings_and_revoked_ones() -> None:
    rules = RatingRules(default_value=4, default_in_rates=False, revoked=frozenset({("s1", 14)}))
    row = only(compute(WINDOWS, "site", TOWNS, rules=rules), "s1", DAY, ALL_SERVICES)
    # A002's 差评 (seq 14) was appealed and upheld: it counts nowhere but in `revoked`.
    assert (row.ratings, row.bad_ratings, row.revoked, row.good_rating_rate) == (1, 0, 1, 1.0)
    assert (row.unrated, row.default_ratings, row.rated_rate) == (1, 1, 0.5)
    counted = only(compute(WINDOWS, "site", TOWNS, rules=RatingRules(4, True)), "s1", DAY,
                   ALL_SERVICES)
    # A default rating counts as a 满意 when the rule says so: 5, 1 and a default 4.
    assert (counted.ratings, counted.good_ratings, counted.default_ratings) == (3, 2, 1)
    assert counted.rated_rate == pytest.approx(2 / 3)  # still the offers the citizens rated


def test_a_month_is_summed_from_its_raw_values_not_from_its_days() -> None:
    """Day 1 waits 10, 20, 30, 40, 50; day 2 waits 1000. Daily p90s are 50 and 1000 (their
    mean 525); the month's p90 is the 6 waits' nearest rank ceil(5.4) = 6th = 1000, and its
    p50 the 3rd = 30, where the mean of daily p50s would say (30 + 1000) / 2 = 515."""
    timeline: list[tuple[int, EventBody]] = []
    for n, wait in enumerate((10, 20, 30, 40, 50), start=1):
        timeline += [(n * 100, issued(f"A{n:03d}", "huji")),
                     (n * 100 + wait, TicketCalled(ticket=f"A{n:03d}", window=1))]
    timeline += [(NEXT_DAY_S, issued("A001", "huji")),
                 (NEXT_DAY_S + 1000, TicketCalled(ticket="A001", window=1))]
    events = stream("s1", *timeline)
    days = compute(events, "site", TOWNS)
    assert [only(days, "s1", d, "huji").wait.p90 for d in (DAY, DAY + dt.timedelta(days=1))] \
        == [50, 1000]
    month = compute(events, "site", TOWNS, period="month")
    [total] = [r for r in month if r.service == ALL_SERVICES]
    assert (total.day, total.period_label, total.period) == (dt.date(2026, 11, 1), "2026-11",
                                                             "month")
    assert (total.wait.count, total.wait.p50, total.wait.p90) == (6, 30, 1000)
    [year] = [r for r in compute(events, "site", TOWNS, period="year")
              if r.service == ALL_SERVICES]
    assert (year.period_label, year.wait.p90, year.issued) == ("2026", 1000, 6)


def test_a_rating_counts_for_its_own_day() -> None:
    """A ticket issued at 23:50 and rated at 00:05 the next day: the rating is the next day's
    (as its record is), the ticket the day it was issued."""
    late = 14 * 3600 + 50 * 60  # 23:50
    events = stream(
        "s1",
        (late, issued("A099", "huji")),
        (late + 300, TicketCalled(ticket="A099", window=1)),
        (late + 600, TicketDone(ticket="A099", window=1, served_s=300)),
        (late + 900, RatingGiven(ticket="A099", window=1, staff="zs01", value=5)),  # 00:05
    )
    rows = compute(events, "site", TOWNS)
    assert only(rows, "s1", DAY, ALL_SERVICES).served == 1
    assert only(rows, "s1", DAY, ALL_SERVICES).ratings == 0
    assert only(rows, "s1", DAY + dt.timedelta(days=1), ALL_SERVICES).ratings == 1

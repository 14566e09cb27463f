"""The progress message: what the central's progress pages show, built from the live hall."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.clock import ManualClock
from edge.config import load_config
from edge.hall import Hall, open_hall
from edge.progress import HEARTBEAT_S, ProgressReporter
from fastpath.types import TicketClass
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import TIMED_SERVICES, site_toml

SHANGHAI = ZoneInfo("Asia/Shanghai")
OPENING = int(datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI).timestamp() * 1000)
MINUTE = 60_000
PROGRESS = '[progress]\nurl = "https://q.zs.gov.cn"\npredict_seconds = 5\n'


class Link:
    """The uplink as the reporter sees it: connected or not, what it was handed."""

    def __init__(self) -> None:
        self.connected = True
        self.sent: list[mm.Progress] = []

    def __call__(self, message: mm.Progress) -> bool:
        mm.encode(message)  # what the central would refuse fails here
        if self.connected:
            self.sent.append(message)
        return self.connected


class Ticking:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(OPENING)


@pytest.fixture
def hall(tmp_path: Path, clock: ManualClock) -> Iterator[Hall]:
    config = load_config(site_toml(tmp_path, services=TIMED_SERVICES, extra=PROGRESS))
    hall = open_hall(config, clock)
    yield hall
    hall.journal.close()


def test_waiting_called_and_ended_tickets_in_the_dispatchers_order(
        hall: Hall, clock: ManualClock) -> None:
    link = Link()
    reporter = ProgressReporter(hall, clock, link)
    hall.subscribe(reporter.on_event)
    for window in (1, 2):
        hall.sign_in(window, f"s{window}")
    for _ in range(3):
        hall.issue("shebao", wait=None)  # A001..A003
        clock.advance(60)
    hall.issue("huji", wait=None)  # B001
    clock.advance(2 * 60)
    # A priority ticket issued last: its wait counts twice; at +5 min it is 5 min behind
    # A003 (waited 4) in time but scores 2x1 = 2 against 4, so it stays behind A003...
    hall.issue("shebao", TicketClass.PRIORITY, wait=None)  # A004
    clock.advance(60)
    ahead = {w.ticket: w.ahead for w in reporter.snapshot().waiting}
    assert ahead == {"A001": 0, "A002": 1, "A003": 2, "A004": 3, "B001": 0}
    # ... and 4 minutes on it has waited 5 (score 10) against A003's 8 and A002's 9:
    # the dispatcher calls it before them, so does the page (the issue order does not).
    clock.advance(4 * 60)
    ahead = {w.ticket: w.ahead for w in reporter.snapshot().waiting}
    assert ahead == {"A001": 0, "A004": 1, "A002": 2, "A003": 3, "B001": 0}

    first = hall.call_next(1)  # a priority window: A004 first
    assert first is not None
    assert first.number == "A004"
    hall.start_serving(1)
    called = hall.call_next(2)
    assert called is not None
    assert called.number == "B001"
    hall.no_show(2)  # 过号: requeued once (the default policy)
    snap = reporter.snapshot()
    assert [(c.ticket, c.window, c.serving) for c in snap.called] == [("A004", 1, True)]
    requeued = next(w for w in snap.waiting if w.ticket == "B001")
    assert requeued.requeued
    assert requeued.ahead == 0
    hall.finish(1)
    while (again := hall.call_next(2)) is not None and again.number != "B001":
        clock.advance(60)
        hall.finish(2)  # the older A tickets first
    hall.no_show(2)  # B001 again: the second time it is dropped
    snap = reporter.snapshot()
    ended = [(e.ticket, e.outcome, e.window) for e in snap.ended]
    assert ended[0] == ("A004", "done", 1)
    assert ended[-1] == ("B001", "no_show", 2)
    assert snap.services == {"shebao": "社保医保", "huji": "户籍"}
    assert (snap.issuing, snap.notice, snap.day, snap.seq) == (
        "open", None, hall.day, hall.journal.last_seq)
    assert snap.day_seq == hall.journal.last_seq_of("day.reset") == 2  # today's tickets after it
    clock.advance(31 * 60)  # ended more than half an hour ago: off the message
    assert reporter.snapshot().ended == []


def test_waits_come_from_one_forecast_and_count_down(hall: Hall, clock: ManualClock) -> None:
    link = Link()
    ticks = Ticking()
    reporter = ProgressReporter(hall, clock, link, monotonic=ticks)
    hall.subscribe(reporter.on_event)
    hall.sign_in(1, "s1")
    printed = [hall.issue("shebao") for _ in range(4)]  # predicted on the caller's thread
    assert all(p.wait is not None for p in printed)
    # Before any forecast: the wait printed on the ticket.
    snap = reporter.snapshot()
    first = printed[1].wait
    assert first is not None
    assert (snap.waiting[1].p50_s, snap.waiting[1].p90_s) == (first.p50_s, first.p90_s)
    asyncio.run(reporter.step())
    assert len(link.sent) == 1
    forecast = {w.ticket: (w.p50_s, w.p90_s) for w in link.sent[0].waiting}
    assert set(forecast) == {"A001", "A002", "A003", "A004"}
    p50s = [forecast[n][0] or 0 for n in ("A001", "A002", "A003", "A004")]
    assert p50s == sorted(p50s)
    assert p50s[-1] > p50s[0]
    assert all(p50 is not None and p90 is not None and p90 >= p50
               for p50, p90 in forecast.values())
    # Two minutes later, without a new forecast: each counts down, never below zero.
    clock.advance(2 * 60)
    later = {w.ticket: w.p50_s for w in reporter.snapshot().waiting}
    assert later["A004"] == max(0, (forecast["A004"][0] or 0) - 120)


def test_published_when_changed_at_most_once_a_second_and_a_heartbeat(
        hall: Hall, clock: ManualClock) -> None:
    link = Link()
    ticks = Ticking()
    reporter = ProgressReporter(hall, clock, link, monotonic=ticks)
    hall.subscribe(reporter.on_event)

    def step(seconds: float) -> None:
        ticks.now += seconds
        asyncio.run(reporter.step())

    step(0)
    assert len(link.sent) == 1
    hall.issue("shebao", wait=None)
    step(0.3)
    assert len(link.sent) == 1  # not twice within a second
    step(0.8)
    assert len(link.sent) == 2
    assert link.sent[-1].waiting[0].ticket == "A001"
    step(5)  # the forecast is due: new waits, a new message
    assert len(link.sent) == 3
    assert link.sent[-1].waiting[0].p50_s is not None
    step(5)
    assert len(link.sent) == 3  # nothing changed
    link.connected = False
    hall.issue("huji", wait=None)
    step(2)
    assert len(link.sent) == 3  # offline: dropped, not kept
    link.connected = True
    step(1)
    assert len(link.sent) == 4
    assert len(link.sent[-1].waiting) == 2
    step(HEARTBEAT_S + 1)  # a heartbeat (and the forecast due meanwhile)
    step(HEARTBEAT_S + 1)
    assert len(link.sent) == 6


def test_outside_the_hours_the_message_says_closed(tmp_path: Path, clock: ManualClock) -> None:
    hours = '[hours]\nopen = "08:30"\nclose = "17:30"\nlast_ticket = "17:00"\nreset = "03:00"\n'
    config = load_config(site_toml(tmp_path, services=TIMED_SERVICES, hours=hours))
    clock.set(OPENING + 8 * 60 * MINUTE + 5 * MINUTE)  # 17:05
    hall = open_hall(config, clock)
    try:
        snap = ProgressReporter(hall, clock, Link()).snapshot()
        assert (snap.issuing, snap.notice) == ("closed", "今日取号已结束")
    finally:
        hall.journal.close()


def test_the_waits_know_the_lunch_break(tmp_path: Path, clock: ManualClock) -> None:
    # One window, three waiting at 11:50: with a lunch break at 12:00 the last of them
    # is called after 14:00; without one, within the half hour.
    one_window = '[[windows]]\nnumber = 1\nservices = { shebao = 1, huji = 1 }\n'
    waits = {}
    for lunch in ("", 'lunch = "12:00-14:00"\n'):
        hours = f'[hours]\nopen = "08:30"\nclose = "17:30"\nreset = "03:00"\n{lunch}'
        directory = tmp_path / ("lunch" if lunch else "plain")
        directory.mkdir()
        config = load_config(site_toml(directory, services=TIMED_SERVICES, windows=one_window,
                                       hours=hours))
        clock.set(OPENING + 170 * MINUTE)  # 11:50
        hall = open_hall(config, clock)
        try:
            hall.sign_in(1, "s1")
            for _ in range(3):
                hall.issue("shebao", wait=None)
            job = ProgressReporter(hall, clock, Link())._factory(config).ticket_waits_job(
                hall.dispatcher, clock.now_ms())
            assert job is not None
            waits[bool(lunch)] = job()["A003"][0]
        finally:
            hall.journal.close()
    assert waits[False] < 30 * MINUTE
    assert waits[True] >= 2 * 60 * MINUTE

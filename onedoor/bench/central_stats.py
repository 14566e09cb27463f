"""Benchmark: the exact statistics of a month, per window, from the raw events (SQLite).

A synthetic town — ``SITES`` sites with ``WINDOWS`` windows each, ``TICKETS`` tickets a
site a day, each issued, called, finished and rated (one in five unrated) — is written
straight into the events table for ``DAYS`` days (Core inserts, no ingest: what is
measured is the query). Then the read model computes the month per window
(``period="month"``, every p90 from the month's raw values) and per day, as the API
does. ``run()`` is what ``onedoor bench`` calls (suite ``central-stats``).
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
import uuid
from typing import Any, Final

import msgspec
from sqlalchemy import insert

from central.db import make_engine, migrate, session_factory
from central.models import EventRecord, Site, SiteKind
from central.queries import ReadModel
from central.stats import BUSINESS_TZ
from firmware_protocols import mqtt_messages as mm

SITES: Final = 12
WINDOWS: Final = 4
TICKETS: Final = 150
DAYS: Final = 30
FIRST: Final = dt.date(2026, 11, 1)


def _day_of_site(site: str, day: dt.date, seq: int) -> tuple[list[dict[str, Any]], int]:
    """One site's day of events from ``seq`` on; the rows and the next seq."""
    opening = int(dt.datetime.combine(day, dt.time(8, 30), BUSINESS_TZ).timestamp() * 1000)
    rows: list[dict[str, Any]] = []

    def add(at_ms: int, body: mm.EventBody) -> None:
        nonlocal seq
        kind = type(body).__struct_config__.tag
        rows.append({"site_id": site, "seq": seq, "event_id": uuid.uuid4(), "type": kind,
                     "ts_ms": at_ms, "clock_synced": True, "received_at": dt.datetime.now(dt.UTC),
                     "body": msgspec.to_builtins(body)})  # fmt: skip
        seq += 1

    for window in range(1, WINDOWS + 1):
        add(opening, mm.WindowSignedIn(window=window, staff=f"{site[-2:]}{window:02d}"))
    for n in range(1, TICKETS + 1):
        ticket, window = f"A{n:03d}", n % WINDOWS + 1
        issued = opening + n * 150_000
        staff = f"{site[-2:]}{window:02d}"
        add(issued, mm.TicketIssued(ticket=ticket, service="zonghe", ticket_class="normal",
                                    booked_ts=None, channel="kiosk", people_ahead=0, wait=None))
        called = issued + (n * 7919 % 1800) * 1000
        add(called, mm.TicketCalled(ticket=ticket, window=window))
        done = called + (n * 104_729 % 900 + 60) * 1000
        add(done, mm.TicketDone(ticket=ticket, window=window, served_s=(done - called) // 1000))
        if n % 5:
            add(done + 5000, mm.RatingGiven(ticket=ticket, window=window, staff=staff,
                                            value=n % 5 + 1))
        else:
            add(done + 40_000, mm.RatingMissed(ticket=ticket, window=window, staff=staff,
                                               case=None))
    return rows, seq


def run() -> dict[str, Any]:
    """Entry point of ``onedoor bench`` (suite ``central-stats``)."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/stats.db")
        migrate(engine)
        sessions = session_factory(engine)
        sites = [f"bench-town-{n:02d}" for n in range(SITES)]
        events = 0
        with sessions.begin() as session:
            session.add_all(Site(id=s, name=f"测试镇{s[-2:]}站", town="测试镇",
                                 kind=SiteKind.VILLAGE) for s in sites)  # fmt: skip
        for site in sites:
            seq = 1
            for offset in range(DAYS):
                rows, seq = _day_of_site(site, FIRST + dt.timedelta(days=offset), seq)
                with sessions.begin() as session:
                    session.execute(insert(EventRecord), rows)
                events += len(rows)
        read = ReadModel(sessions)
        last = FIRST + dt.timedelta(days=DAYS - 1)
        started = time.perf_counter()
        month = read.statistics("window", FIRST, last, town="测试镇", period="month")
        month_s = time.perf_counter() - started
        started = time.perf_counter()
        daily = read.statistics("window", FIRST, last, town="测试镇")
        day_s = time.perf_counter() - started
        engine.dispose()
    return {
        "events in the month": events,
        "window rows of the month": sum(1 for r in month if r.service == "*"),
        "month per window (exact p90), s": round(month_s, 2),
        "events folded per s": round(events / month_s),
        "the same month per window and day, s": round(day_s, 2),
        "window-day rows": sum(1 for r in daily if r.service == "*"),
    }


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name}: {value}")

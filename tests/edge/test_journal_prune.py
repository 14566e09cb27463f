"""Journal pruning: old days the central has acknowledged go, space goes back to the
file system, and nothing that matters does (unacked events, today, the seq, the config)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.clock import ManualClock
from edge.config import load_config
from edge.daemon import EdgeDaemon
from edge.errors import ConfigInvalid
from edge.hall import Hall, open_hall
from edge.journal import Journal
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import BASE_WINDOWS, free_port, http, site_toml, until

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY_S = 24 * 3600


def at(day: int, hour: int = 9) -> int:
    return int(datetime(2026, 11, day, hour, 0, tzinfo=SHANGHAI).timestamp() * 1000)


def busy_day(hall: Hall, clock: ManualClock, tickets: int = 40) -> None:
    """Tickets issued, called and finished at window 1."""
    hall.sign_in(1, "zhang01")
    for _ in range(tickets):
        hall.issue("shebao")
        clock.advance(30)
    for _ in range(tickets):
        hall.call_next(1)
    hall.finish(1)
    hall.sign_out(1)


def next_day(hall: Hall, clock: ManualClock, day: int) -> None:
    clock.set(at(day))
    hall.tick()
    assert hall.day == f"2026-11-{day:02d}"


def is_day(hall: Hall, day: str) -> bool:
    return hall.day == day


def day_of_events(journal: Journal) -> list[str]:
    """The business day of every journaled event, from the day.reset before it."""
    days, day = [], "?"
    for event in journal.events():
        if isinstance(event.body, mm.DayReset):
            day = event.body.day
        days.append(day)
    return days


@pytest.fixture
def five_days(tmp_path: Path) -> tuple[Hall, ManualClock]:
    """Days 2026-11-20..24 of a busy window; v2 of the config applied on the 21st."""
    clock = ManualClock(at(20))
    hall = open_hall(load_config(site_toml(tmp_path)), clock)
    busy_day(hall, clock)
    next_day(hall, clock, 21)
    hall.reconfigure(load_config(site_toml(
        tmp_path, version="v2",
        windows=BASE_WINDOWS + "[[windows]]\nnumber = 3\nservices = { huji = 1 }\n")))
    for day in (21, 22, 23, 24):
        if day != 21:
            next_day(hall, clock, day)
        busy_day(hall, clock)
    return hall, clock


def test_the_first_days_opening_config_goes_only_with_that_day(tmp_path: Path) -> None:
    """The config journaled at the very first start comes before the first day.reset."""
    clock = ManualClock(at(20))
    hall = open_hall(load_config(site_toml(tmp_path)), clock)
    busy_day(hall, clock, tickets=3)
    journal = hall.journal
    assert [e.type for e in journal.events()][:2] == ["config.applied", "day.reset"]
    journal.ack(journal.last_seq)
    assert journal.prune("2026-08-22") == 0  # a retention of 90 days on the first day
    assert journal.prune("2026-11-20") == 0
    assert next(journal.events()).seq == 1
    next_day(hall, clock, 21)
    journal.ack(journal.last_seq)
    first_of_21 = next(e.seq for e in journal.events()
                       if isinstance(e.body, mm.DayReset) and e.body.day == "2026-11-21")
    assert journal.prune("2026-11-21") == first_of_21 - 1  # the 20th, its opening config too
    assert journal.config_at(journal.last_seq) is not None  # the config in force stays


def test_prune_keeps_unacked_and_recent_days_and_the_seq(
        five_days: tuple[Hall, ManualClock]) -> None:
    hall, _ = five_days
    journal = hall.journal
    days = day_of_events(journal)
    last = journal.last_seq
    first_of = {d: days.index(d) + 1 for d in sorted(set(days))}  # seq of each day.reset

    # The central has acknowledged up to the middle of the 21st: nothing above goes.
    middle_21 = first_of["2026-11-21"] + 20
    journal.ack(middle_21)
    assert journal.prune("2026-11-23") == middle_21
    assert next(journal.events()).seq == middle_21 + 1
    assert journal.unacked_count() == last - middle_21

    # All acknowledged: the 20th-22nd go, the 23rd (retention) and the 24th (today) stay.
    journal.ack(last)
    journal.prune("2026-11-23")
    assert set(day_of_events(journal)) == {"2026-11-23", "2026-11-24"}
    assert next(journal.events()).seq == first_of["2026-11-23"]
    assert journal.last_seq == last
    assert journal.prune("2026-11-23") == 0  # nothing more to do

    # Today is never pruned, whatever the retention.
    journal.prune("2026-12-31")
    assert set(day_of_events(journal)) == {"2026-11-24"}
    # The config in force (v2, applied on the 21st) stays; v1 is gone.
    stored = journal.config_at(journal.last_seq)
    assert stored is not None
    assert stored.version == "v2"
    assert journal._db.execute("SELECT COUNT(*) FROM configs").fetchone()[0] == 1


def test_a_restart_after_pruning_rebuilds_today_and_the_seq_continues(
        five_days: tuple[Hall, ManualClock]) -> None:
    hall, clock = five_days
    hall.sign_in(1, "zhang01")
    for _ in range(3):
        hall.issue("huji")
    hall.call_next(1)
    last = hall.journal.last_seq
    hall.journal.ack(last)
    snapshot = hall.snapshot()
    hall.journal.prune("2026-11-24")
    config = hall.config
    hall.journal.close()

    hall = open_hall(config, clock)  # as after a restart
    try:
        assert hall.snapshot() == snapshot
        assert hall.config.version == "v2"
        assert [w.number for w in hall.dispatcher.windows()] == [1, 2, 3]
        issued = hall.issue("shebao")
        assert issued.event.seq == last + 1
        assert issued.ticket.number == "A041"  # today's numbers carry on too
    finally:
        hall.journal.close()


def test_pruning_gives_the_space_back(five_days: tuple[Hall, ManualClock]) -> None:
    hall, _ = five_days
    journal = hall.journal
    journal._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    before = journal.size_bytes()
    journal.ack(journal.last_seq)
    journal.prune("2026-11-24")
    assert journal.size_bytes() < before * 0.5  # four of five days gone, WAL emptied
    assert Path(f"{journal.path}-wal").stat().st_size == 0
    assert journal._db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    hall.journal.close()


def test_an_older_journal_is_converted_to_incremental_vacuum(
        five_days: tuple[Hall, ManualClock]) -> None:
    hall, clock = five_days
    config = hall.config
    hall.journal.ack(hall.journal.last_seq)
    hall.journal.close()
    # As journals were made before pruning existed:
    with contextlib.closing(sqlite3.connect(config.paths.journal)) as db:
        db.execute("PRAGMA auto_vacuum=NONE")
        db.execute("VACUUM")
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    hall = open_hall(config, clock)
    try:
        assert hall.journal.prune("2026-11-24") > 0
        assert hall.journal._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert hall.journal._db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    finally:
        hall.journal.close()


def test_the_daemon_prunes_at_the_day_reset(tmp_path: Path) -> None:
    """The real daemon over three day resets with ``journal_retention_days = 1``."""
    port = free_port()
    config_path = site_toml(tmp_path, http_port=port)
    config_path.write_text(config_path.read_text().replace(
        'journal = "journal.db"', 'journal = "journal.db"\njournal_retention_days = 1'))
    clock = ManualClock(at(20))

    async def scenario() -> None:
        daemon = EdgeDaemon(config_path, clock=clock, install_signals=False)
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.ready.wait(), 30)
            hall = daemon.hall
            assert hall is not None
            for day in (20, 21, 22, 23):
                if day != 20:
                    clock.set(at(day))
                    await until(functools.partial(is_day, hall, f"2026-11-{day}"), "reset")
                for _ in range(3):
                    status, _ = await asyncio.to_thread(
                        http, "POST", f"http://127.0.0.1:{port}/tickets", {"service": "huji"})
                    assert status == 201
                if day == 20:
                    hall.journal.ack(hall.journal.last_seq)  # then the uplink went down
                    acked = hall.journal.last_seq
            # The 22nd's reset pruned the 20th (acknowledged, older than a day); the 21st
            # is older than a day too, but the central never acknowledged it.
            assert sorted(set(day_of_events(hall.journal))) == [
                "2026-11-21", "2026-11-22", "2026-11-23"]
            assert next(hall.journal.events()).seq == acked + 1
            assert hall.snapshot()["issued"] == 3
        finally:
            daemon.stop()
            await asyncio.wait_for(task, 15)

    asyncio.run(scenario())


def test_the_retention_is_read_and_checked(tmp_path: Path) -> None:
    assert load_config(site_toml(tmp_path)).paths.journal_retention_days == 90
    bad = site_toml(tmp_path)
    bad.write_text(bad.read_text().replace('journal = "journal.db"',
                                           'journal = "journal.db"\njournal_retention_days = 0'))
    with pytest.raises(ConfigInvalid) as info:
        load_config(bad)
    assert "paths.journal_retention_days: must be 1..3660, got 0" in info.value.errors

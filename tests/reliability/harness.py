"""Shared parts of the reliability tests: a real central process, edge sites, recounts.

The central runs as ``onedoor central run`` (a real subprocess, so it can be
killed and restarted); the edge runs as ``onedoor edge run`` through the
helpers of ``tests/edge/sites.py``. Comparisons read the edge journal (the
source of truth) and the central's ``events`` table.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from central import stats
from central.db import make_engine, migrate, session_factory
from central.models import EventRecord as EventRow
from central.seed import SERVICES_CSV, load_seed
from edge.config import load_config
from edge.journal import Journal
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import PYTHON, REPO, free_port

LONG = os.environ.get("ONEDOOR_LONG_TESTS") == "1"
SITE_ID = "test-site"  # the id tests/edge/sites.py writes into every site.toml


def scaled(ci: int, long: int) -> int:
    """The CI figure, or the long one under ``ONEDOOR_LONG_TESTS=1`` (same code, bigger numbers)."""
    return long if LONG else ci


def prepare_central_db(url: str, workdir: Path, site_ids: list[str]) -> None:
    """Migrate ``url`` and register ``site_ids`` (the central rejects unknown sites)."""
    csv = workdir / "sites.csv"
    csv.write_text("id,name,town,kind,lat,lon,windows\n" + "".join(
        f"{site},测试{n}村党群服务中心,测试镇,village,,,2\n" for n, site in enumerate(site_ids)),
        encoding="utf-8")
    engine = make_engine(url)
    try:
        migrate(engine)
        with session_factory(engine).begin() as session:
            load_seed(session, csv, SERVICES_CSV)
    finally:
        engine.dispose()


class CentralProcess:
    """``onedoor central run`` as a subprocess; kill()/start() for outage tests."""

    def __init__(self, workdir: Path, database_url: str, mqtt_port: int,
                 **settings: str | int) -> None:
        self.workdir = workdir
        self.config = workdir / "central.toml"
        self.log = workdir / "central.log"
        self.http_port = free_port()
        tag = uuid.uuid4().hex[:8]
        values: dict[str, str | int] = {
            "database_url": database_url, "mqtt_host": "127.0.0.1", "mqtt_port": mqtt_port,
            "mqtt_client_id": f"central-{tag}", "mqtt_group": f"g{tag}",
            "batch_max_wait_ms": 20, "alarm_tick_s": 3600, **settings}
        self.config.write_text("".join(f"{key} = {json.dumps(value)}\n"
                                       for key, value in values.items()), encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "ONEDOOR_LOG_JSON": "1"}
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [PYTHON, "-m", "onedoor", "central", "run", "--config", str(self.config),
                 "--port", str(self.http_port)],
                cwd=REPO, env=env, stdout=out, stderr=out)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def central_events(url: str, site_id: str) -> list[EventRow]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            rows = list(session.scalars(
                select(EventRow).where(EventRow.site_id == site_id).order_by(EventRow.seq)))
            session.expunge_all()
            return rows
    finally:
        engine.dispose()


def central_count(url: str, site_id: str) -> int:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return int(session.scalar(select(func.count()).select_from(EventRow)
                                      .where(EventRow.site_id == site_id)) or 0)
    finally:
        engine.dispose()


def journal_events(config_path: Path) -> list[mm.Event]:
    config = load_config(config_path)
    with Journal(config.paths.journal, config.site.id, read_only=True) as journal:
        return list(journal.events())


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.25)


def assert_committed_exactly_once(url: str, events: list[mm.Event]) -> None:
    """Every journal event is one central row with the same seq, id, type and body."""
    rows = central_events(url, SITE_ID)
    assert [r.seq for r in rows] == [e.seq for e in events], "central seqs differ from journal"
    assert len({r.event_id for r in rows}) == len(rows), "an event id was stored twice"
    for row, event in zip(rows, events, strict=True):
        assert str(row.event_id) == str(event.id), f"seq {event.seq}: another event stored"
        assert row.type == event.type, f"seq {event.seq}: type differs"
        assert row.ts_ms == event.ts, f"seq {event.seq}: time differs"


def assert_stats_match(url: str, events: list[mm.Event]) -> None:
    """central/stats.py over the central's rows equals a recount from the edge journal."""
    rows = central_events(url, SITE_ID)
    from_central = [stats.to_stat_record(r.site_id, r.seq, r.ts_ms, r.body) for r in rows]
    from_journal = [stats.EventRecord(SITE_ID, e.seq, e.ts, e.body) for e in events]
    town = {SITE_ID: "测试镇"}
    for scope in ("site", "town", "fleet"):
        central_rows = stats.compute(from_central, scope, town)
        journal_rows = stats.compute(from_journal, scope, town)
        assert central_rows == journal_rows, f"{scope} statistics differ"
    assert any(r.issued > 0 for r in stats.compute(from_journal, "site", town)), "empty stats"


def today() -> dt.date:
    return dt.datetime.now(stats.BUSINESS_TZ).date()

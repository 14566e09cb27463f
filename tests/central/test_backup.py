"""Backup and restore of the central database: PostgreSQL (pg_dump) restored into a fresh
PostgreSQL server, SQLite through the online backup API; the central started on the restored
database answers exactly as before (sites, live state, alarms, statistics, pages, audit)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central.app import create_app
from central.auth import Role
from central.backup import backup, backup_to_folder, restore
from central.config import CentralConfig
from central.db import make_engine, migrate, session_factory
from central.errors import BackupError
from central.ingest import IngestProcessor
from central.models import EventRecord, Site
from central.seed import SERVICES_CSV, load_seed
from central.service import CentralService
from firmware_protocols import mqtt_messages as mm
from tests.central.conftest import SMALL_SITES
from tests.central.sim import SimSite, called, received
from tests.central.test_api import T9, _event, _issued
from tests.central.test_api_support import SECRET, TEST_HOSTS
from tests.servers import MosquittoBroker, PostgresCluster, temporary_postgres

CLOCK = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
DAY = "from=2026-11-23&to=2026-11-23"
SITE = "zs-sanxiang-01"
API = [
    "/api/v1/sites", "/api/v1/sites?retired=true", "/api/v1/sites/zs-sanxiang",
    f"/api/v1/sites/{SITE}", "/api/v1/sites/zs-sanxiang-02", "/api/v1/sites/zs-sanxiang-13",
    "/api/v1/alarms?active=false", "/api/v1/alarms", f"/api/v1/events?site={SITE}",
    f"/api/v1/statistics?scope=site&{DAY}", f"/api/v1/statistics?scope=town&{DAY}",
    f"/api/v1/statistics?scope=fleet&{DAY}", f"/api/v1/sites/{SITE}/commands",
    "/api/v1/inventory", "/api/v1/audit", "/api/v1/tokens",
]  # fmt: skip
PAGES = ["/", f"/sites/{SITE}", "/alarms", f"/statistics?scope=town&{DAY}",
         f"/statistics?scope=site&{DAY}&site={SITE}"]  # fmt: skip
CSV = ["/api/v1/statistics.csv?scope=fleet&" + DAY, "/api/v1/registry/windows.csv",
       "/api/v1/audit.csv"]  # fmt: skip


@contextmanager
def central_on(url: str, broker: MosquittoBroker) -> Iterator[TestClient]:
    """The real app (ingest service included) on ``url``, its clock stopped at CLOCK."""
    engine = make_engine(url)
    config = CentralConfig(database_url=url, mqtt_host=broker.host, mqtt_port=broker.port,
                           mqtt_client_id=f"central-{uuid.uuid4().hex[:8]}",
                           mqtt_group=f"g{uuid.uuid4().hex[:8]}", mqtt_session_expiry_s=0,
                           alarm_tick_s=3600.0, http_allowed_hosts=TEST_HOSTS)  # fmt: skip
    service = CentralService(config, engine=engine, clock=lambda: CLOCK)
    try:
        with TestClient(create_app(config, service=service, secret=SECRET)) as client:
            yield client
    finally:
        engine.dispose()


@contextmanager
def sessions_on(url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(url)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


def _build_state(client: TestClient, url: str, admin: str) -> None:
    """A day at three sites of 三乡镇: tickets, ratings, help, alarms (one acknowledged), a
    command, a site added and one retired through the API."""
    headers = {"Authorization": f"Bearer {admin}"}
    events = [
        _event(SITE, 1, 0, _issued("Z001")), _event(SITE, 2, 30, _issued("Z002")),
        _event(SITE, 3, 120, mm.TicketCalled(ticket="Z001", window=1)),
        _event(SITE, 4, 420, mm.TicketDone(ticket="Z001", window=1, served_s=300)),
        _event(SITE, 5, 421, mm.RatingGiven(ticket="Z001", window=1, staff="w1", value=5)),
        _event(SITE, 6, 450, mm.TicketCalled(ticket="Z002", window=1)),
        _event(SITE, 7, 600, mm.HelpRequested(button="h1", location="自助区")),
        _event(SITE, 8, 645, mm.HelpAcknowledged(button="h1", staff="w2")),
        _event(SITE, 9, 700, mm.DeviceStatus(device="printer-1", kind="printer",
                                              status="fault", detail="paper_out")),
        _event("zs-sanxiang", 1, 10, _issued("A001")),
    ]  # fmt: skip
    sim = SimSite(SITE, next_seq=10, clock_ms=T9 + 800_000)
    with sessions_on(url) as sessions:
        IngestProcessor(sessions, CentralConfig()).process(
            received(sim.state(), *events, sim.telemetry(outbox=900, waiting=4), at=CLOCK),
            CLOCK)  # fmt: skip
    alarms = client.get("/api/v1/alarms", headers=headers).json()["alarms"]
    assert {a["type"] for a in alarms} == {"device_fault", "outbox_backlog"}
    fault = next(a for a in alarms if a["type"] == "device_fault")
    assert client.post(f"/api/v1/alarms/{fault['id']}/ack", headers=headers).status_code == 200
    command = {"name": "screen_notice", "args": {"text": "系统维护", "screen": None,
                                                 "duration_s": 60}}  # fmt: skip
    assert client.post(f"/api/v1/sites/{SITE}/commands", json=command,
                       headers=headers).status_code == 202  # fmt: skip
    new_site = {"id": "zs-sanxiang-13", "name": "三乡新村党群服务中心", "town": "三乡镇",
                "kind": "village", "hours": {"open": "08:00", "close": "12:00"},
                "services": [{"code": "zonghe", "name": "综合受理", "prefix": "Z", "sla_s": 1800}],
                "windows": [{"number": 1, "services": ["zonghe"]}]}  # fmt: skip
    assert client.post("/api/v1/sites", json=new_site, headers=headers).status_code == 201
    assert client.post("/api/v1/sites/zs-sanxiang-02/retire",
                       headers=headers).status_code == 200  # fmt: skip


def _snapshot(client: TestClient, admin: str, viewer: str) -> dict[str, object]:
    """What the API, the CSV exports, /metrics (fleet and site lines) and the pages show."""
    headers = {"Authorization": f"Bearer {admin}"}
    seen: dict[str, object] = {}
    for path in API:
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.text)
        seen[path] = response.json()
    for path in CSV:
        seen[path] = client.get(path, headers=headers).text
    # Each snapshot's own page login below is audited (auth.login): the first one's is in
    # the backup, the second one's not yet; the logins are left out of the comparison.
    audit: dict[str, list[dict[str, object]]] = seen["/api/v1/audit"]  # type: ignore[assignment]
    seen["/api/v1/audit"] = [e for e in audit["entries"]
                             if not str(e["action"]).startswith("auth.")]  # fmt: skip
    seen["/api/v1/audit.csv"] = "\n".join(
        line for line in str(seen["/api/v1/audit.csv"]).splitlines()
        if ",auth.login," not in line)  # fmt: skip
    metrics = client.get("/metrics", headers=headers).text.splitlines()
    # Leaving out refusals of unknown sites: the broker is shared by the session's tests,
    # and their retained messages reach each central that connects (once more after restore).
    seen["/metrics"] = [line for line in metrics
                        if line.startswith(("onedoor_site_", "onedoor_central_sites",
                                            "onedoor_central_alarms_active",
                                            "onedoor_central_events"))
                        and 'reason="unknown_site"' not in line]  # fmt: skip
    login = client.post("/login", content=f"token={viewer}&next=/",
                        headers={"Content-Type": "application/x-www-form-urlencoded"},
                        follow_redirects=False)  # fmt: skip
    assert login.status_code == 303
    # The fleet page renders from the live hub's latest poll (once a second): take one
    # now, so both centrals' pages show the state the API answered with.
    client.portal.call(client.app.state.live_hub.poll_once)  # type: ignore[attr-defined,union-attr]
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        seen[path] = response.text
    client.cookies.clear()
    return seen


@pytest.fixture
def fresh_server() -> Iterator[PostgresCluster]:
    """A PostgreSQL server of its own, as a replacement machine would have."""
    with temporary_postgres("onedoor-restored-") as cluster:
        yield cluster


def _restore_target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'restored.db'}"
    server: PostgresCluster = request.getfixturevalue("fresh_server")
    return server.create_database("onedoor")


def test_the_central_comes_back_from_a_backup_with_the_same_state(
    db_url: str, mqtt_broker: MosquittoBroker, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    sites_csv = tmp_path / "sites.csv"
    sites_csv.write_text(SMALL_SITES, encoding="utf-8")
    engine = make_engine(db_url)
    migrate(engine)
    with session_factory(engine).begin() as session:
        load_seed(session, sites_csv, SERVICES_CSV)
    engine.dispose()
    with central_on(db_url, mqtt_broker) as client:
        tokens = client.app.state.central.tokens  # type: ignore[attr-defined]
        admin = tokens.create(Role.ADMIN, "ops-li")[1]
        viewer = tokens.create(Role.VIEWER, "manager")[1]
        _build_state(client, db_url, admin)
        before = _snapshot(client, admin, viewer)
        saved = backup(db_url, tmp_path / "backups" / "central.backup")  # while it runs
    assert saved.backend == backend
    assert saved.path.stat().st_mode & 0o777 == 0o600

    target = _restore_target(backend, tmp_path, request)
    restore(saved.path, target)
    with central_on(target, mqtt_broker) as client:
        after = _snapshot(client, admin, viewer)  # the same tokens still work
        for path, answer in before.items():
            assert after[path] == answer, path
        # The restored central goes on: new rows get new ids, the site's seqs continue.
        with sessions_on(target) as sessions:
            IngestProcessor(sessions, CentralConfig()).process(
                received(_event(SITE, 10, 900, mm.TicketCalled(ticket="Z003", window=1)),
                         at=CLOCK), CLOCK)  # fmt: skip
        detail = client.get(f"/api/v1/sites/{SITE}",
                            headers={"Authorization": f"Bearer {admin}"}).json()  # fmt: skip
        assert detail["acked_seq"] == 10
    assert before["/api/v1/sites"]["total"] == 3  # type: ignore[index]
    statistics = before[f"/api/v1/statistics?scope=site&{DAY}"]
    assert statistics["rows"]  # type: ignore[index]
    with pytest.raises(BackupError, match="is not empty"):
        restore(saved.path, target)


def test_a_backup_taken_while_ingest_writes_is_one_moment(
    db_url: str, small_registry: sessionmaker[Session], tmp_path: Path,
) -> None:
    """Events and the site's acknowledged seq agree in the copy, however the writes fell."""
    processor = IngestProcessor(small_registry, CentralConfig(database_url=db_url))
    sim, stop = SimSite(SITE), threading.Event()
    started = threading.Event()

    def write() -> None:
        while not stop.is_set() and sim.next_seq < 3000:
            batch = [sim.event(called(f"Z{sim.next_seq % 1000:03d}")) for _ in range(10)]
            processor.process(received(*batch, at=CLOCK), CLOCK)
            started.set()

    writer = threading.Thread(target=write, name="ingest")
    writer.start()
    try:
        assert started.wait(30)
        saved = backup(db_url, tmp_path / "mid-write.backup")
    finally:
        stop.set()
        writer.join(60)
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    target = (f"sqlite:///{tmp_path / 'copy.db'}" if backend == "sqlite"
              else request_database(db_url, "copy"))  # fmt: skip
    restore(saved.path, target)
    with sessions_on(target) as sessions, sessions() as session:
        seqs = session.scalars(select(EventRecord.seq).where(EventRecord.site_id == SITE)
                               .order_by(EventRecord.seq)).all()  # fmt: skip
        site = session.get_one(Site, SITE)
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) % 10 == 0  # whole batches only
        assert len(seqs) >= 10
        assert (site.acked_seq, site.max_seq) == (len(seqs), len(seqs))
        assert session.scalar(select(func.count()).select_from(Site)) == 3


def request_database(db_url: str, suffix: str) -> str:
    """A new, empty database beside ``db_url``'s on the same PostgreSQL server."""
    name = f"{db_url.rsplit('/', 1)[1]}_{suffix}"
    admin = db_url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{db_url.rsplit('/', 1)[0]}/{name}"


def test_the_backup_timer_keeps_the_newest(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    times = [datetime(2026, 11, day, 2, 30, tzinfo=UTC) for day in (21, 22, 23)]
    for when in times:
        backup_to_folder(db_url, folder, keep=2, now=when)
    suffix = ".sqlite" if db_url.startswith("sqlite") else ".dump"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"central-20261122T023000Z{suffix}", f"central-20261123T023000Z{suffix}"]
    with pytest.raises(BackupError, match="keep at least one"):
        backup_to_folder(db_url, folder, keep=0, now=times[0])

"""Two central replicas on one PostgreSQL, one of them killed (SIGKILL) mid-run.

Real Mosquitto, real PostgreSQL, two ``onedoor central run`` processes in one
shared-subscription group, ``onedoor loadgen`` as 40 sites. Afterwards: every
event the sites produced is committed exactly once and acknowledged (none lost,
no duplicate row), the survivor committed events after the kill, and its
dashboard and API kept answering with the fleet's live state.

Mosquitto keeps dispatching a share group's messages to a member whose session
has not expired, even while it is disconnected (measured: half of them). So the
replicas run with a short ``mqtt_session_expiry_s`` (docs/CAPACITY.md): what the
dead one was sent comes back from the sites' outboxes, and once its session
expires the survivor gets everything.
"""

from __future__ import annotations

import http.cookiejar
import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from sqlalchemy import func, select

from central.auth import Role, TokenStore
from central.db import make_engine, session_factory
from central.models import EventRecord
from onedoor.loadgen import site_ids
from tests.edge.sites import PYTHON, REPO
from tests.reliability.harness import CentralProcess, prepare_central_db, wait_until
from tests.servers import MosquittoBroker

SITES = 40
SESSION_EXPIRY_S = 5
RESEND_AFTER_S = 3.0


class Dashboard:
    """A logged-in dashboard session on one replica (cookies kept), and its API token."""

    def __init__(self, port: int, token: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = token
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))  # fmt: skip

    def log_in(self) -> None:
        form = urllib.parse.urlencode({"token": self.token, "next": "/"}).encode()
        self.opener.open(f"{self.base}/login", data=form, timeout=10).read()

    def page(self, path: str) -> str:
        with self.opener.open(f"{self.base}{path}", timeout=30) as response:
            assert response.status == 200
            return str(response.read().decode())

    def api(self, path: str) -> object:
        request = urllib.request.Request(f"{self.base}/api/v1{path}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def _count(url: str, prefix: str) -> tuple[int, int, int]:
    """Rows, distinct (site, seq) and distinct event ids of this run's sites."""
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            mine = EventRecord.site_id.like(f"{prefix}-%")
            rows = session.scalar(select(func.count()).where(mine)) or 0
            keys = session.scalar(select(func.count()).select_from(
                select(EventRecord.site_id, EventRecord.seq).where(mine).distinct().subquery()))
            ids = session.scalar(select(func.count(EventRecord.event_id.distinct())).where(mine))
            return int(rows), int(keys or 0), int(ids or 0)  # fmt: skip
    finally:
        engine.dispose()


def test_a_replica_killed_mid_run_loses_nothing(
    tmp_path: Path, mqtt_broker: MosquittoBroker, fresh_postgres_url: str
) -> None:
    prefix = f"rep{time.time_ns() % 10**6}"
    prepare_central_db(fresh_postgres_url, tmp_path, site_ids(SITES, prefix))
    engine = make_engine(fresh_postgres_url)
    _, token = TokenStore(session_factory(engine)).create(Role.VIEWER, "replica test")
    engine.dispose()
    group = f"rep{time.time_ns() % 10**8}"
    replicas = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        replicas.append(CentralProcess(folder, fresh_postgres_url, mqtt_broker.port,
                                       mqtt_group=group, mqtt_client_id=f"{group}-{name}",
                                       mqtt_session_expiry_s=SESSION_EXPIRY_S))  # fmt: skip
    doomed, survivor = replicas
    for replica in replicas:
        replica.start()
    loadgen = None
    try:
        dashboard = Dashboard(survivor.http_port, token)
        wait_until(lambda: _answers(dashboard), 60, "both replicas to serve")
        wait_until(lambda: _answers(Dashboard(doomed.http_port, token)), 60, "replica a")
        time.sleep(1.0)  # subscriptions in place
        loadgen = subprocess.Popen(
            [PYTHON, "-m", "onedoor", "loadgen", "--port", str(mqtt_broker.port),
             "--sites", str(SITES), "--speed", "200", "--telemetry-interval", "600",
             "--duration", "10", "--prefix", prefix, "--resend-after", str(RESEND_AFTER_S)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        wait_until(lambda: _count(fresh_postgres_url, prefix)[0] > 50, 30, "traffic")
        before_kill = _count(fresh_postgres_url, prefix)[0]
        doomed.kill()  # SIGKILL: no DISCONNECT, batches in flight lost before commit
        dashboard.log_in()
        assert "站点总览" in dashboard.page("/")  # the survivor's pages still answer
        out, err = loadgen.communicate(timeout=90)
        result = json.loads(out.strip().splitlines()[-1])
        after = dashboard.page("/")
        listing = dashboard.api(f"/sites?q={prefix}")
    finally:
        if loadgen is not None and loadgen.poll() is None:
            loadgen.kill()
        for replica in replicas:
            replica.stop()
    rows, keys, ids = _count(fresh_postgres_url, prefix)
    assert result["produced"] > 300, result
    assert result["unacked_at_end"] == 0, (result, err[-2000:])  # every event acknowledged
    assert result["acked"] == result["produced"]
    assert rows == keys == ids == result["produced"]  # committed once each, none lost
    assert rows > before_kill  # the survivor went on committing
    assert 'data-count="sites">40<' in after
    assert isinstance(listing, dict)
    assert listing["total"] == SITES
    assert all(site["online"] for site in listing["sites"])  # kept current by the survivor


def _answers(dashboard: Dashboard) -> bool:
    try:
        dashboard.api("/sites?q=none")
    except OSError:
        return False
    return True

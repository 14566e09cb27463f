"""Real edge daemons (``onedoor edge run``, one journal each: an SD card) beside an in-process
central, for the end-to-end tests of device replacement and remote diagnostics."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralConfig
from central.models import Alarm, AlarmType, EventRecord, SiteDevice
from central.queries import ReadModel
from central.seed import SERVICES_CSV, load_seed
from central.service import CentralService
from edge.config import load_config
from edge.journal import Journal
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.mqtt_topics import lease_topic, state_topic
from tests.edge.sites import free_port, http, site_toml, start_daemon, stop_daemon, wait_http
from tests.servers import MosquittoBroker


@dataclass
class Pi:
    """One edge daemon with its own journal (an SD card), as a subprocess."""

    config: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self, *, numbering: bool = True) -> None:
        self.process = start_daemon(self.config, log_path=self.config.parent / "daemon.log")
        assert self.process is not None
        wait_http(self.port, self.process, timeout=30, numbering=numbering)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # the Pi dies: no goodbye, the broker sends its Will
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_daemon(self.process)

    def status(self) -> dict[str, Any]:
        return http("GET", f"http://127.0.0.1:{self.port}/status")[1]

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        return http("POST", f"http://127.0.0.1:{self.port}{path}", body)

    def ticket(self) -> str:
        status, answer = self.post("/tickets", {"service": "shebao"})
        assert status == 201, answer
        return str(answer["number"])

    def events(self) -> list[mm.Event]:
        config = load_config(self.config)
        with Journal(config.paths.journal, config.site.id, read_only=True) as journal:
            return list(journal.events())


def make_pi(tmp_path: Path, name: str, site_id: str, mqtt_port: int) -> Pi:
    folder = tmp_path / name
    folder.mkdir()
    port = free_port()
    config = site_toml(folder, http_port=port, mqtt_port=mqtt_port, telemetry_seconds=1)
    config.write_text(config.read_text().replace('id = "test-site"', f'id = "{site_id}"')
                      .replace("keepalive_seconds = 5", "keepalive_seconds = 5\nyield_seconds = 2"))
    return Pi(config, port)


@pytest.fixture
def fresh_site(sessions: sessionmaker[Session], tmp_path: Path,
            mqtt_broker: MosquittoBroker) -> Iterator[str]:
    """A site of its own (the broker keeps retained states and leases across tests)."""
    site = f"zs-r{uuid.uuid4().hex[:8]}"
    csv = tmp_path / "sites.csv"
    csv.write_text("id,name,town,kind,lat,lon,windows\n"
                   f"{site},测试村党群服务中心,测试镇,village,,,2\n", encoding="utf-8")
    with sessions.begin() as session:
        load_seed(session, csv, SERVICES_CSV)
    yield site
    cleaner = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"clean-{site}")
    cleaner.connect(mqtt_broker.host, mqtt_broker.port)
    cleaner.loop_start()
    for topic in (state_topic(site), lease_topic(site)):
        cleaner.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
    cleaner.disconnect()
    cleaner.loop_stop()


def central_config(broker: MosquittoBroker, db_url: str) -> CentralConfig:
    return CentralConfig(
        database_url=db_url, mqtt_host=broker.host, mqtt_port=broker.port,
        mqtt_client_id=f"central-{uuid.uuid4().hex[:8]}", mqtt_group=f"g{uuid.uuid4().hex[:8]}",
        mqtt_session_expiry_s=0, batch_max_wait_ms=20, alarm_tick_s=3600,
        journal_behind_after_s=0)  # one replica: a state is read before what follows it


async def until(check: Callable[[], object], what: str, timeout: float = 40.0) -> None:
    """Until ``check()`` (run in a thread: it may block on HTTP or the database) is true."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def started(central: CentralService) -> None:
    await until(lambda: central.mqtt.connected, "the central's connection")
    await asyncio.sleep(0.2)  # its subscriptions before any edge publishes


class Central:
    """What the tests read of the central's database."""

    def __init__(self, sessions: sessionmaker[Session], site_id: str) -> None:
        self.sessions = sessions
        self.site_id = site_id
        self.read = ReadModel(sessions)

    def online(self) -> bool:
        return self.read.site_state(self.site_id).site.online

    def active(self, alarm: AlarmType, device: str = "") -> bool:
        with self.sessions() as session:
            return session.scalar(select(Alarm.id).where(
                Alarm.site_id == self.site_id, Alarm.type == alarm, Alarm.device == device,
                Alarm.cleared_at.is_(None))) is not None

    def rows(self) -> list[EventRecord]:
        with self.sessions() as session:
            rows = list(session.scalars(select(EventRecord).where(
                EventRecord.site_id == self.site_id).order_by(EventRecord.seq)))
            session.expunge_all()
            return rows

    def holds(self, events: list[mm.Event]) -> bool:
        """Every one of ``events`` is stored under its seq, with its id."""
        stored = {r.seq: str(r.event_id) for r in self.rows()}
        return all(stored.get(e.seq) == str(e.id) for e in events)

    def issued(self) -> list[str]:
        return [r.body["ticket"] for r in self.rows() if r.type == "ticket.issued"]

    def device(self, device: str) -> SiteDevice:
        with self.sessions() as session:
            row = session.get(SiteDevice, (self.site_id, device))
            assert row is not None
            session.expunge(row)
            return row

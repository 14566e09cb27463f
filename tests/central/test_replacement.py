"""A site's Pi (or SD card) replaced mid-day: real edge daemons, the real central on SQLite and
PostgreSQL, the real Mosquitto.

Each old Pi is ``onedoor edge run`` with its own journal; the new one has the same config
and credentials and a fresh journal, as an ops person would bring it. What used to go
wrong (each checked here): the central ignored the new device's 'online' (the site stayed
offline, ``site_offline`` active); its events reused the old device's seqs and were dropped
as 'reused', the first tickets with them; the day's numbers restarted at 001; the waiting
queue was gone; the new device reported a ``journal.lost`` for events the central holds.
And the fencing: a new Pi started without network numbers nothing; the old Pi coming back
after the takeover stops numbering, and what it had issued offline is neither lost nor
numbered twice; a takeover while the old Pi is still online waits for its last ticket.
"""

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
from sqlalchemy import Engine, select
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
from tests.reliability.proxy import UplinkRelay
from tests.servers import MosquittoBroker

EPOCH_1 = mm.epoch_base(1)


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
def site_id(sessions: sessionmaker[Session], tmp_path: Path,
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


def _config(broker: MosquittoBroker, db_url: str) -> CentralConfig:
    return CentralConfig(
        database_url=db_url, mqtt_host=broker.host, mqtt_port=broker.port,
        mqtt_client_id=f"central-{uuid.uuid4().hex[:8]}", mqtt_group=f"g{uuid.uuid4().hex[:8]}",
        mqtt_session_expiry_s=0, batch_max_wait_ms=20, alarm_tick_s=3600)


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


def _waiting(pi: Pi, service: str = "shebao") -> int:
    return next(q["waiting"] for q in pi.status()["queues"] if q["service"] == service)


def test_a_new_pi_comes_online_and_continues_the_day_without_losing_or_repeating(
        mqtt_broker: MosquittoBroker, db_url: str, engine: Engine,
        sessions: sessionmaker[Session], tmp_path: Path, site_id: str) -> None:
    network = UplinkRelay(mqtt_broker.port)  # the new Pi's uplink: down when it first boots
    old, new = (make_pi(tmp_path, "pi-old", site_id, mqtt_broker.port),
                make_pi(tmp_path, "pi-new", site_id, network.port))
    central = Central(sessions, site_id)

    async def main() -> None:
        async with CentralService(_config(mqtt_broker, db_url), engine=engine) as service:
            await started(service)
            await asyncio.to_thread(old.start)  # a new site: granted at once
            numbers = [await asyncio.to_thread(old.ticket) for _ in range(4)]
            assert numbers == ["A001", "A002", "A003", "A004"]
            await asyncio.to_thread(old.post, "/windows/1/sign_in", {"staff": "zs0231"})
            assert (await asyncio.to_thread(old.post, "/windows/1/next"))[1]["ticket"] == "A001"
            journal_old = await asyncio.to_thread(old.events)
            await until(lambda: central.holds(journal_old), "the old Pi's events")
            old.kill()
            await until(lambda: not central.online(), "the old Pi's Will")

            # The new Pi boots with its network down: it numbers nothing over the day.
            await asyncio.to_thread(new.start, numbering=False)
            assert new.status()["numbering"] == "waiting"
            code, refused = new.post("/tickets", {"service": "shebao"})
            assert (code, refused["error"]) == (503, "not_granted")
            device = new.status()["device"]
            network.restore()

            # It comes online, and the site with it; it waits for an operator.
            await until(central.online, "the site online with the new Pi")
            assert not central.active(AlarmType.SITE_OFFLINE)
            await until(lambda: central.active(AlarmType.TAKEOVER_PENDING, device),
                        "the takeover alarm")
            assert new.post("/tickets", {"service": "shebao"})[0] == 503

            await service.takeover(site_id, device, by="ops-li")
            await until(lambda: new.status()["numbering"] == "granted", "the grant")
            assert not central.active(AlarmType.TAKEOVER_PENDING, device)

            # The day goes on: the queue, the window, the next number.
            status = new.status()
            assert status["windows"][0]["ticket"] == "A001"
            assert _waiting(new) == 3
            assert await asyncio.to_thread(new.ticket) == "A005"
            code, called = await asyncio.to_thread(new.post, "/windows/1/next")
            assert (code, called["ticket"]) == (200, "A002")

            journal_new = await asyncio.to_thread(new.events)
            assert all(mm.epoch_of(e.seq) == 1 for e in journal_new)
            await until(lambda: central.holds(journal_new), "every event of the new Pi")
            assert not [e for e in journal_new if isinstance(e.body, mm.JournalLost)]
            assert sorted(central.issued()) == ["A001", "A002", "A003", "A004", "A005"]
            assert not central.active(AlarmType.DEVICE_FAULT, "journal")  # nothing 'reused'
            assert central.device(device).epoch == 1
            await service.wait_idle()

    try:
        asyncio.run(main())
    finally:
        old.stop()
        new.stop()
        network.cut()


def test_the_old_pi_coming_back_stops_numbering_and_its_offline_tickets_join_the_queue(
        mqtt_broker: MosquittoBroker, db_url: str, engine: Engine,
        sessions: sessionmaker[Session], tmp_path: Path, site_id: str) -> None:
    old_network = UplinkRelay(mqtt_broker.port)
    old_network.restore()
    old, new = (make_pi(tmp_path, "pi-old", site_id, old_network.port),
                make_pi(tmp_path, "pi-new", site_id, mqtt_broker.port))
    central = Central(sessions, site_id)

    async def main() -> None:
        async with CentralService(_config(mqtt_broker, db_url), engine=engine) as service:
            await started(service)
            await asyncio.to_thread(old.start)
            assert [await asyncio.to_thread(old.ticket) for _ in range(2)] == ["A001", "A002"]
            journal = await asyncio.to_thread(old.events)
            await until(lambda: central.holds(journal), "the old Pi's events")
            old_network.cut()
            assert await asyncio.to_thread(old.ticket) == "A003"  # offline: nobody else knows
            old.stop()  # taken away for repair; the broker's Will says it is gone
            await until(lambda: not central.online(), "the old Pi offline")

            await asyncio.to_thread(new.start, numbering=False)
            device = new.status()["device"]
            await until(lambda: central.active(AlarmType.TAKEOVER_PENDING, device), "waiting")
            await service.takeover(site_id, device, by="ops-li", skip=10)
            await until(lambda: new.status()["numbering"] == "granted", "the grant")
            assert await asyncio.to_thread(new.ticket) == "A013"  # A003..A012 left unused

            # The old Pi comes back with its journal: it stops, and loses nothing.
            old_network.restore()
            await asyncio.to_thread(old.start, numbering=False)
            await until(lambda: old.status()["numbering"] == "replaced", "the old Pi fenced")
            code, refused = old.post("/tickets", {"service": "shebao"})
            assert (code, refused["error"]) == (503, "replaced")
            journal = await asyncio.to_thread(old.events)
            assert isinstance(journal[-1].body, mm.DeviceReplaced)
            assert journal[-1].body.device == device
            await until(lambda: central.holds(journal), "what the old Pi held")
            # A003 is waiting at the new Pi, its number issued once.
            await until(lambda: _waiting(new) == 4, "A003 in the new Pi's queue")
            assert sorted(central.issued()) == ["A001", "A002", "A003", "A013"]
            assert not central.active(AlarmType.DEVICE_CONFLICT, old.status()["device"])
            await asyncio.to_thread(new.post, "/windows/1/sign_in", {"staff": "zs0231"})
            calls = [(await asyncio.to_thread(new.post, "/windows/1/next"))[1]["ticket"]
                     for _ in range(3)]
            assert calls == ["A001", "A002", "A003"]
            await service.wait_idle()

    try:
        asyncio.run(main())
    finally:
        old.stop()
        new.stop()
        old_network.cut()


def test_a_takeover_while_the_old_pi_is_online_waits_for_its_last_ticket(
        mqtt_broker: MosquittoBroker, db_url: str, engine: Engine,
        sessions: sessionmaker[Session], tmp_path: Path, site_id: str) -> None:
    old, new = (make_pi(tmp_path, "pi-old", site_id, mqtt_broker.port),
                make_pi(tmp_path, "pi-new", site_id, mqtt_broker.port))
    central = Central(sessions, site_id)

    async def main() -> None:
        async with CentralService(_config(mqtt_broker, db_url), engine=engine) as service:
            await started(service)
            await asyncio.to_thread(old.start)
            # Staged beside the old one: same credentials, so the broker keeps one of them
            # connected at a time; the one that does not number yields.
            await asyncio.to_thread(new.start, numbering=False)
            device = new.status()["device"]
            await until(lambda: central.active(AlarmType.TAKEOVER_PENDING, device), "waiting")
            assert [await asyncio.to_thread(old.ticket) for _ in range(3)] == [
                "A001", "A002", "A003"]
            old_device = old.status()["device"]
            await until(lambda: central.device(old_device).online, "the old Pi connected")
            await service.takeover(site_id, device, by="ops-li")
            await until(lambda: old.status()["numbering"] == "replaced", "the old Pi fenced")
            await until(lambda: new.status()["numbering"] == "granted", "the grant")
            assert await asyncio.to_thread(new.ticket) == "A004"
            stopped = next(e for e in await asyncio.to_thread(old.events)
                           if isinstance(e.body, mm.DeviceReplaced))
            restored = next(e for e in await asyncio.to_thread(new.events)
                            if isinstance(e.body, mm.DayRestored))
            assert restored.ts >= stopped.ts  # handed over only once the old one had stopped
            assert isinstance(restored.body, mm.DayRestored) and restored.body.tickets == 3
            assert central.online()
            await service.wait_idle()

    try:
        asyncio.run(main())
    finally:
        old.stop()
        new.stop()

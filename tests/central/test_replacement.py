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
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from central.audit import Actor
from central.models import AlarmType
from central.service import CentralService
from firmware_protocols import mqtt_messages as mm
from tests.central.pis import Central, Pi, central_config, fresh_site, make_pi, started, until
from tests.reliability.proxy import UplinkRelay
from tests.servers import MosquittoBroker

__all__ = ["fresh_site"]  # the fixture
OPS = Actor(name="ops-li", source="127.0.0.1", actor_id="0123abcd", role="operator")


def _waiting(pi: Pi, service: str = "shebao") -> int:
    return next(q["waiting"] for q in pi.status()["queues"] if q["service"] == service)


def test_a_new_pi_comes_online_and_continues_the_day_without_losing_or_repeating(
        mqtt_broker: MosquittoBroker, db_url: str, engine: Engine,
        sessions: sessionmaker[Session], tmp_path: Path, fresh_site: str) -> None:
    site_id = fresh_site
    network = UplinkRelay(mqtt_broker.port)  # the new Pi's uplink: down when it first boots
    old, new = (make_pi(tmp_path, "pi-old", site_id, mqtt_broker.port),
                make_pi(tmp_path, "pi-new", site_id, network.port))
    central = Central(sessions, site_id)

    async def main() -> None:
        async with CentralService(central_config(mqtt_broker, db_url), engine=engine) as service:
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

            await service.takeover(site_id, device, actor=OPS)
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
        sessions: sessionmaker[Session], tmp_path: Path, fresh_site: str) -> None:
    site_id = fresh_site
    old_network = UplinkRelay(mqtt_broker.port)
    old_network.restore()
    old, new = (make_pi(tmp_path, "pi-old", site_id, old_network.port),
                make_pi(tmp_path, "pi-new", site_id, mqtt_broker.port))
    central = Central(sessions, site_id)

    async def main() -> None:
        async with CentralService(central_config(mqtt_broker, db_url), engine=engine) as service:
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
            await service.takeover(site_id, device, actor=OPS, skip=10)
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
        sessions: sessionmaker[Session], tmp_path: Path, fresh_site: str) -> None:
    site_id = fresh_site
    old, new = (make_pi(tmp_path, "pi-old", site_id, mqtt_broker.port),
                make_pi(tmp_path, "pi-new", site_id, mqtt_broker.port))
    central = Central(sessions, site_id)

    async def main() -> None:
        async with CentralService(central_config(mqtt_broker, db_url), engine=engine) as service:
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
            await service.takeover(site_id, device, actor=OPS)
            await until(lambda: old.status()["numbering"] == "replaced", "the old Pi fenced")
            await until(lambda: new.status()["numbering"] == "granted", "the grant")
            assert await asyncio.to_thread(new.ticket) == "A004"
            stopped = next(e for e in await asyncio.to_thread(old.events)
                           if isinstance(e.body, mm.DeviceReplaced))
            restored = next(e for e in await asyncio.to_thread(new.events)
                            if isinstance(e.body, mm.DayRestored))
            assert restored.ts >= stopped.ts  # handed over only once the old one had stopped
            assert isinstance(restored.body, mm.DayRestored)
            assert restored.body.tickets == 3
            assert central.online()
            await service.wait_idle()

    try:
        asyncio.run(main())
    finally:
        old.stop()
        new.stop()

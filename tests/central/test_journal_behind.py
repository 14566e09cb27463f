"""A journal behind the central's copy of its device: real edge daemons, the real central on
SQLite and PostgreSQL, the real Mosquitto.

Ops restore yesterday's SD-card image (or a backup of ``journal.db``) onto the same Pi: the
same device id and epoch as the central knows, but seq and ticket counters behind what the
central holds. What used to happen: the central ignored its 'online' (its session counter
was behind) and raised only ``device_conflict``; the edge went on numbering, its new events
reused seqs the central holds and were dropped as 'reused', and its ticket numbers repeated
the morning's. Now the central names that running copy in the lease (``lease.behind``), the
journal becomes a new device that waits (``state.forked``), and the operator's takeover
hands the day back: nothing lost, no number issued twice.

The same fence stops a copied SD card running beside the original.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from central.audit import Actor
from central.models import Alarm, AlarmType
from central.service import CentralService
from edge.config import load_config
from edge.journal import Journal
from firmware_protocols import mqtt_messages as mm
from tests.central.pis import Central, Pi, central_config, fresh_site, make_pi, started, until
from tests.reliability.proxy import UplinkRelay
from tests.servers import MosquittoBroker

__all__ = ["fresh_site"]  # the fixture
OPS = Actor(name="ops-li", source="127.0.0.1", actor_id="0123abcd", role="operator")
JOURNAL_FILES = ("journal.db", "journal.db-wal", "journal.db-shm")


def _copy_journal(source: Path, target: Path) -> None:
    """The SD card's journal as an image or backup holds it (the daemon stopped)."""
    target.mkdir(exist_ok=True)
    for name in JOURNAL_FILES:
        (target / name).unlink(missing_ok=True)
        if (source / name).exists():
            shutil.copy2(source / name, target / name)


def _acked(pi: Pi) -> int:
    config = load_config(pi.config)
    with Journal(config.paths.journal, config.site.id, read_only=True) as journal:
        return journal.acked_seq


def _held(central: Central) -> int:
    """The last seq the central holds of the site's numbering stream."""
    return central.read.site_state(central.site_id).site.max_seq


def _conflict_tickets(central: Central, device: str) -> list[str]:
    with central.sessions() as session:
        alarm = session.scalar(select(Alarm).where(
            Alarm.site_id == central.site_id, Alarm.type == AlarmType.DEVICE_CONFLICT,
            Alarm.device == device, Alarm.cleared_at.is_(None)))
        return [] if alarm is None else list(alarm.detail.get("tickets", []))


def _ids(events: list[mm.Event]) -> set[str]:
    return {str(e.id) for e in events}


def test_a_journal_restored_from_an_older_copy_stops_and_gets_the_day_back(
        mqtt_broker: MosquittoBroker, db_url: str, engine: Engine,
        sessions: sessionmaker[Session], tmp_path: Path, fresh_site: str) -> None:
    site_id = fresh_site
    network = UplinkRelay(mqtt_broker.port)  # the Pi's uplink
    network.restore()
    pi = make_pi(tmp_path, "pi", site_id, network.port)
    card, backup = pi.config.parent, tmp_path / "backup"
    central = Central(sessions, site_id)

    async def main() -> None:
        async with CentralService(central_config(mqtt_broker, db_url), engine=engine) as service:
            await started(service)
            await asyncio.to_thread(pi.start)
            assert [await asyncio.to_thread(pi.ticket) for _ in range(2)] == ["A001", "A002"]
            await until(lambda: central.holds(pi.events()), "the morning's first events")
            device = pi.status()["device"]
            pi.stop()
            _copy_journal(card, backup)  # last night's image

            await asyncio.to_thread(pi.start)
            assert [await asyncio.to_thread(pi.ticket) for _ in range(2)] == ["A003", "A004"]
            await asyncio.to_thread(pi.post, "/windows/1/sign_in", {"staff": "zs0231"})
            assert (await asyncio.to_thread(pi.post, "/windows/1/next"))[1]["ticket"] == "A001"
            original = await asyncio.to_thread(pi.events)
            await until(lambda: central.holds(original), "the original journal's events")
            pi.kill()  # the card dies; ops restore last night's image onto the same Pi
            await until(lambda: not central.online(), "the Pi offline")
            _copy_journal(backup, card)

            # Offline at first: it believes it numbers, and A003 is issued again (nobody can
            # know before the central says so).
            network.cut()
            await asyncio.to_thread(pi.start)
            assert pi.status()["device"] == device
            assert await asyncio.to_thread(pi.ticket) == "A003"
            behind = await asyncio.to_thread(pi.events)
            network.restore()

            # The central names this copy behind: it stops, as a new device that waits.
            await until(lambda: pi.status()["numbering"] == "waiting", "the fence")
            code, refused = pi.post("/tickets", {"service": "shebao"})
            assert (code, refused["error"]) == (503, "not_granted")
            forked = pi.status()["device"]
            assert forked != device
            await until(lambda: central.active(AlarmType.DEVICE_CONFLICT, device),
                        "the journal-behind alarm")
            await until(lambda: central.active(AlarmType.TAKEOVER_PENDING, forked),
                        "the takeover alarm")
            await until(central.online, "the site online with the waiting Pi")

            await service.takeover(site_id, forked, actor=OPS)
            await until(lambda: pi.status()["numbering"] == "granted", "the grant")
            # The numbers go on above both the central's day and its own: none twice more.
            assert await asyncio.to_thread(pi.ticket) == "A005"
            status = pi.status()
            assert status["windows"][0]["ticket"] == "A001"  # the window, as the central knew

            # Nothing lost: every event of both journals is at the central, once.
            after = await asyncio.to_thread(pi.events)
            await until(lambda: _ids(original) | _ids(after)
                        <= {str(r.event_id) for r in central.rows()},
                        "every event of both journals at the central")
            stored = [str(r.event_id) for r in central.rows()]
            assert len(stored) == len(set(stored)), "an event stored twice"
            assert _ids(behind) <= set(stored)
            issued = central.issued()
            # The one repeat is the ticket issued offline before the fence; none after it,
            # and that one is alarmed with its number.
            assert sorted(issued) == ["A001", "A002", "A003", "A003", "A004", "A005"]
            assert _conflict_tickets(central, forked) == ["A003"]
            assert not [e for e in after if isinstance(e.body, mm.JournalLost)
                        and mm.epoch_of(e.seq) == mm.epoch_of(after[-1].seq)]
            await service.wait_idle()

    try:
        asyncio.run(main())
    finally:
        pi.stop()
        network.cut()


def test_a_copied_sd_card_beside_the_original_is_fenced(
        mqtt_broker: MosquittoBroker, db_url: str, engine: Engine,
        sessions: sessionmaker[Session], tmp_path: Path, fresh_site: str) -> None:
    """Two daemons with one journal (an SD card cloned, both Pis up): the central lets only
    one of them number; the other stops and waits as a new device until an operator
    decides, and every number issued is issued once."""
    site_id = fresh_site
    first, second = (make_pi(tmp_path, "pi", site_id, mqtt_broker.port),
                     make_pi(tmp_path, "pi-clone", site_id, mqtt_broker.port))
    central = Central(sessions, site_id)

    async def main() -> None:
        async with CentralService(central_config(mqtt_broker, db_url), engine=engine) as service:
            await started(service)
            await asyncio.to_thread(first.start)
            assert [await asyncio.to_thread(first.ticket) for _ in range(2)] == ["A001", "A002"]
            await until(lambda: central.holds(first.events()), "the first events")
            device = first.status()["device"]
            first.stop()
            _copy_journal(first.config.parent, second.config.parent)  # the cloned card

            await asyncio.to_thread(first.start)
            await asyncio.to_thread(second.start, numbering=False)
            pis = (first, second)
            await until(lambda: sorted(p.status()["numbering"] for p in pis)
                        == ["granted", "waiting"], "one of the copies fenced")
            numbering = next(p for p in pis if p.status()["numbering"] == "granted")
            fenced = next(p for p in pis if p is not numbering)
            assert numbering.status()["device"] == device
            assert fenced.status()["device"] != device  # a new device, waiting
            assert central.active(AlarmType.DEVICE_CONFLICT, device)
            await until(lambda: central.active(AlarmType.TAKEOVER_PENDING,
                                               fenced.status()["device"]), "waiting")
            code, refused = fenced.post("/tickets", {"service": "shebao"})
            assert (code, refused["error"]) == (503, "not_granted")

            # What the fenced copy wrote before it heard (its start-up events) reached the
            # central under seqs the believed copy had not used yet: the central's ack
            # moves the believed copy past them (journal.lost), so its next events do not
            # collide. (A ticket it issued before that ack came would: see RELIABILITY.md.)
            await until(lambda: _acked(numbering) >= _held(central), "the ack past them")
            # The site goes on with the one the central believes; nothing is issued twice.
            numbers = [await asyncio.to_thread(numbering.ticket) for _ in range(3)]
            assert numbers == ["A003", "A004", "A005"]
            # (What both wrote at one seq before the fence, e.g. their start-up device
            # reports, the central holds once: the other stays in the fenced journal.)
            tickets = [e for e in await asyncio.to_thread(numbering.events)
                       if isinstance(e.body, mm.TicketIssued)]
            await until(lambda: central.holds(tickets), "the numbering copy's tickets")
            assert sorted(central.issued()) == ["A001", "A002", "A003", "A004", "A005"]
            assert fenced.status()["numbering"] == "waiting"  # until an operator decides
            await service.wait_idle()

    try:
        asyncio.run(main())
    finally:
        first.stop()
        second.stop()

"""The journal's device identity and epoch: a new journal waits, is granted, is replaced."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest

from edge.clock import ManualClock
from edge.config import load_config
from edge.device_set import DeviceSet
from edge.devices_factory import build_devices
from edge.errors import CommandRejected, JournalError
from edge.hall import open_hall
from edge.journal import Journal
from edge.lease import NOTICES, SiteLease
from edge.outputs import HallOutputs
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import site_toml

T0 = 1_763_880_000_000
OPENING = int(datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)
BASE = mm.epoch_base(3)


def issued(number: str) -> mm.TicketIssued:
    return mm.TicketIssued(ticket=number, service="shebao", ticket_class="normal",
                           booked_ts=None, channel="kiosk", people_ahead=0, wait=None)


def test_a_new_journal_has_its_own_device_and_keeps_it(tmp_path: Path) -> None:
    with Journal(tmp_path / "a.db", "site-a", central=True) as a, \
            Journal(tmp_path / "b.db", "site-a", central=True) as b:
        assert a.device_id != b.device_id
        assert len(a.device_id) == 16
        device = a.device_id
        assert (a.epoch, a.numbering) == (None, "waiting")
    with Journal(tmp_path / "a.db", "site-a", central=True) as a:
        assert (a.device_id, a.numbering) == (device, "waiting")


def test_without_a_central_a_new_journal_numbers_in_epoch_zero(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "site-a") as journal:
        assert (journal.epoch, journal.numbering) == (0, "granted")


def test_a_journal_from_before_device_identity_keeps_numbering_in_epoch_zero(
        tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path, "site-a") as journal:
        journal.append([issued("A001")], ts_ms=T0, clock_synced=True)
    db = sqlite3.connect(path)  # as an older daemon left it: no identity in meta
    db.execute("DELETE FROM meta WHERE key IN ('device', 'epoch')")
    db.commit()
    db.close()
    with Journal(path, "site-a", central=True) as journal:
        assert (journal.epoch, journal.numbering) == (0, "granted")
        assert journal.device_id


def test_the_grant_moves_the_provisional_events_into_the_epoch(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path, "site-a", central=True) as journal:
        first = journal.append([mm.ConfigApplied(version="v1")], ts_ms=T0, clock_synced=True,
                               config=("v1", "text of v1"))
        journal.append([mm.DayReset(day="2026-11-23")], ts_ms=T0, clock_synced=True)
        journal.push_telemetry(b"{}")
        assert journal.ack(1) == 0  # nothing of a waiting journal is anybody's to ack
        restored = mm.DayRestored(day="2026-11-23", epoch=3, tickets=2, left_out=0, skipped=5)
        [event] = journal.grant(3, [restored], ts_ms=T0 + 1, clock_synced=True,
                                restore=b'{"restore":1}')
        assert event.seq == BASE + 3
        assert [e.seq for e in journal.events()] == [BASE + 1, BASE + 2, BASE + 3]
        assert next(e.id for e in journal.events()) == first[0].id  # the same events, moved
        assert journal.config_text(BASE + 1) == "text of v1"
        assert journal.restore_payload(BASE + 3) == b'{"restore":1}'
        assert journal.telemetry_count() == 0  # they carried provisional seqs
        assert (journal.acked_seq, journal.unacked_count(), journal.numbering) == (
            BASE, 3, "granted")
        with pytest.raises(JournalError, match="already numbers"):
            journal.grant(4, [], ts_ms=T0, clock_synced=True)
    with Journal(path, "site-a", central=True) as journal:
        assert (journal.epoch, journal.last_seq) == (3, BASE + 3)
        [after] = journal.append([issued("A001")], ts_ms=T0 + 2, clock_synced=True)
        assert after.seq == BASE + 4
        assert next((p[0], mm.decode("event", p[1], site_id="site-a").seq)  # type: ignore[union-attr]
                for p in journal.payloads(BASE, 10)) == (BASE + 1, BASE + 1)


def test_after_a_jumped_floor_the_state_reports_what_the_journal_wrote(
        tmp_path: Path) -> None:
    """An ack above the journal's end moves its floor; until the central commits an event
    the journal wrote after that, its state reports the last seq it wrote itself."""
    with Journal(tmp_path / "j.db", "site-a", central=True) as journal:
        journal.grant(3, [], ts_ms=T0, clock_synced=True)
        journal.append([issued("A001")], ts_ms=T0, clock_synced=True)
        assert journal.reported_seq == BASE + 1
        journal.ack(BASE + 5)
        assert (journal.last_seq, journal.reported_seq) == (BASE + 5, BASE + 1)
        journal.append([issued("A006")], ts_ms=T0, clock_synced=True)
        journal.ack(BASE + 6)  # the central took what it wrote after the jump
        assert journal.reported_seq == BASE + 6


def test_only_acks_of_its_own_epoch_count(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "site-a", central=True) as journal:
        journal.grant(3, [], ts_ms=T0, clock_synced=True)
        journal.append([issued("A001"), issued("A002")], ts_ms=T0, clock_synced=True)
        assert journal.ack(2) == BASE  # the replaced device's stream, epoch 0
        assert journal.ack(mm.epoch_base(4) + 9) == BASE  # a later device's
        assert journal.take_lost() == []
        assert journal.take_refused_acks() == []
        assert journal.ack(BASE + 2) == BASE + 2


def test_a_replaced_journal_stops_numbering_and_says_so_once(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path, "site-a") as journal:
        journal.append([issued("A001")], ts_ms=T0, clock_synced=True)
        [event] = journal.mark_replaced("0123456789abcdef", 1, ts_ms=T0 + 1, clock_synced=True)
        assert event.body == mm.DeviceReplaced(device="0123456789abcdef", epoch=1)
        assert event.seq == 2
        assert journal.numbering == "replaced"
    with Journal(path, "site-a") as journal:
        assert journal.replaced_by == ("0123456789abcdef", 1)
        assert journal.ack(2) == 2  # what it still sends is still acknowledged


def test_a_restored_day_survives_a_restart_of_the_new_device(tmp_path: Path) -> None:
    """The restore is journaled with ``day.restored``: a new Pi that restarts after its
    takeover rebuilds the same queue and windows and never issues a number again."""
    config = load_config(site_toml(tmp_path, mqtt_port=1883))  # a site with a central
    clock = ManualClock(OPENING)
    hall = open_hall(config, clock)
    assert hall.journal.numbering == "waiting"
    with pytest.raises(CommandRejected):
        hall.issue("shebao", wait=None)
    waited = 600_000
    restore = mm.Restore(
        site=config.site.id, device=hall.journal.device_id, epoch=2, day=hall.day, part=1,
        parts=1, counters=[mm.PrefixCounter(prefix="A", last=14)], skipped=5,
        tickets=[
            mm.RestoredTicket(ticket="A012", service="shebao", ticket_class="normal",
                              issued_ts=OPENING - waited, key_ts=OPENING - waited,
                              state="called", window=1, recalls=0, requeued=False,
                              transfers=0),
            mm.RestoredTicket(ticket="A014", service="shebao", ticket_class="normal",
                              issued_ts=OPENING - 1000, key_ts=OPENING - 1000,
                              state="waiting", window=None, recalls=0, requeued=False,
                              transfers=0)],
        windows=[mm.RestoredWindow(window=1, state="open", staff="zs0231", ticket="A012")],
        ts=OPENING)
    hall.take_restore([restore])
    assert hall.issue("shebao", wait=None).ticket.number == "A020"  # 14 + 5 left unused, then one
    before = hall.snapshot()
    hall.journal.close()

    hall = open_hall(config, clock)  # the daemon restarts: the hall is replayed
    try:
        after = hall.snapshot()
        for key in ("numbering", "epoch", "device", "queues", "windows", "issued"):
            assert after[key] == before[key], key
        assert after["windows"][0]["ticket"] == "A012"
        assert [q["waiting"] for q in after["queues"] if q["service"] == "shebao"] == [2]
        assert hall.issue("shebao", wait=None).ticket.number == "A021"
        called = hall.call_next(1)  # A012 is done; the oldest restored ticket is next
        assert called is not None
        assert called.number == "A014"
    finally:
        hall.journal.close()


def test_a_journal_behind_the_central_forks_into_a_new_device_losing_nothing(
        tmp_path: Path) -> None:
    """An older copy of a journal (restored image): the central's ack jumps above its end
    (taken for a torn tail) before the central's verdict comes; the fork still moves every
    event the journal wrote after its last real ack, with no hole, into the next epoch."""
    path = tmp_path / "j.db"
    with Journal(path, "site-a", central=True) as journal:
        journal.grant(3, [], ts_ms=T0, clock_synced=True)
        shared = journal.append([issued("A001"), issued("A002")], ts_ms=T0, clock_synced=True)
        assert journal.ack(BASE + 2) == BASE + 2
        own = journal.append([issued("A003")], ts_ms=T0 + 1, clock_synced=True)
        assert journal.ack(BASE + 9) == BASE + 9  # the original went on to BASE + 9
        [lost] = journal.append([mm.JournalLost(first_seq=BASE + 4, last_seq=BASE + 9)],
                                ts_ms=T0 + 2, clock_synced=True)
        assert journal.reported_seq == BASE + 3  # what it wrote itself: the central sees it
        device = journal.device_id
        forked = journal.fork(BASE + 9)
        assert forked == mm.Forked(device=device, epoch=3, after=BASE + 2, last=BASE + 10)
        assert (journal.numbering, journal.epoch, journal.forked) == ("waiting", None, forked)
        assert journal.device_id != device
        assert journal.ack(BASE + 10) == BASE + 9  # nobody's ack while it waits
        with pytest.raises(JournalError, match="no epoch"):
            journal.fork(BASE + 9)
    with Journal(path, "site-a", central=True) as journal:  # it survives a restart
        assert (journal.numbering, journal.forked) == ("waiting", forked)
        restored = mm.DayRestored(day="2026-11-23", epoch=4, tickets=0, left_out=0, skipped=0)
        journal.grant(4, [restored], ts_ms=T0 + 3, clock_synced=True, restore=b"{}")
        base = mm.epoch_base(4)
        events = list(journal.events())
        assert [e.id for e in events] == [*(e.id for e in shared), own[0].id, lost.id,
                                          events[-1].id]
        assert [e.seq for e in events] == [BASE + 1, BASE + 2, base + 1, base + 2, base + 3]
        assert (journal.acked_seq, journal.unacked_count()) == (base, 3)


def test_a_lease_naming_this_boot_stops_it_and_the_day_comes_back_above_its_numbers(
        tmp_path: Path) -> None:
    """The edge's side of the fence: a lease naming another boot changes nothing; one
    naming this boot stops issuing (503 ``not_granted``), the hall screen says why, and the
    restore replaces the stale day with the central's, numbering on above both."""
    config = load_config(site_toml(tmp_path, mqtt_port=1883))
    hall = open_hall(config, ManualClock(OPENING))
    try:
        device = hall.journal.device_id
        hall.take_restore([mm.Restore(
            site=config.site.id, device=device, epoch=1, day=hall.day, part=1, parts=1,
            counters=[], skipped=0, tickets=[], windows=[], ts=OPENING)])
        stale = [hall.issue("shebao", wait=None).ticket.number for _ in range(3)]
        assert stale == ["A001", "A002", "A003"]  # A001, A002 repeat the central's
        outputs = HallOutputs(hall, DeviceSet(build_devices, asyncio.Queue()))
        lease = SiteLease(hall, outputs, boot_id="boot-2")
        behind = mm.Lease(site=config.site.id, device=device, epoch=1, ts=OPENING,
                          behind=mm.BehindJournal(boot_id="boot-1", held=mm.epoch_base(1) + 9))
        lease.on_lease(behind)  # another copy's boot
        assert hall.journal.numbering == "granted"
        lease.on_lease(msgspec.structs.replace(behind, behind=mm.BehindJournal(
            boot_id="boot-2", held=mm.epoch_base(1) + 9)))
        assert (hall.journal.numbering, hall.journal.device_id != device) == ("waiting", True)
        with pytest.raises(CommandRejected) as refused:
            hall.issue("shebao", wait=None)
        assert refused.value.code == "not_granted"
        assert outputs.notices() == [NOTICES["behind"]]

        central_day = mm.Restore(
            site=config.site.id, device=hall.journal.device_id, epoch=2, day=hall.day, part=1,
            parts=1, counters=[mm.PrefixCounter(prefix="A", last=2)], skipped=0,
            tickets=[mm.RestoredTicket(ticket="A002", service="shebao", ticket_class="normal",
                                       issued_ts=OPENING, key_ts=OPENING, state="waiting",
                                       window=None, recalls=0, requeued=False, transfers=0)],
            windows=[], ts=OPENING)
        lease.on_restore(central_day)
        assert hall.journal.numbering == "granted"
        assert outputs.notices() == []
        # The central's queue (A002 only), and the next number above its own A003.
        assert [q["waiting"] for q in hall.snapshot()["queues"]
                if q["service"] == "shebao"] == [1]
        assert hall.issue("shebao", wait=None).ticket.number == "A004"
    finally:
        hall.journal.close()

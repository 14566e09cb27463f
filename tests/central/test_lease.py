"""Device identity at the central (IngestProcessor and SiteLeases) on SQLite and PostgreSQL.

Who speaks for a site, who numbers it, and what a takeover hands over, message by
message; the daemons and the broker are in ``test_replacement.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.alarms import AlarmBook
from central.config import CentralConfig
from central.errors import Conflict, UnknownDevice
from central.ingest import BatchOutcome, IngestProcessor
from central.lease import DayFold
from central.models import Alarm, AlarmType, EventRecord, Severity, Site, SiteDevice
from central.queries import ReadModel
from central.telemetry import EmbeddedTelemetrySink
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.mqtt_topics import Kind, parse_topic
from tests.central.sim import SimSite, received

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SITE = "zs-sanxiang-01"
OLD, NEW = "0123456789abcdef", "fedcba9876543210"
E1 = mm.epoch_base(1)


def issued(number: str, service: str = "shebao") -> mm.TicketIssued:
    return mm.TicketIssued(ticket=number, service=service, ticket_class="normal",
                           booked_ts=None, channel="kiosk", people_ahead=0, wait=None)


@pytest.fixture
def processor(small_registry: sessionmaker[Session]) -> IngestProcessor:
    return IngestProcessor(small_registry, CentralConfig(),
                           EmbeddedTelemetrySink(small_registry))


def feed(processor: IngestProcessor, *messages: mm.Message) -> BatchOutcome:
    return processor.process(received(*messages), NOW)


def sent(outcome: BatchOutcome | list[mm.Publish], kind: Kind) -> list[mm.Message]:
    publishes = outcome.publishes if isinstance(outcome, BatchOutcome) else outcome
    return [mm.decode_publish(p.topic, p.payload).message for p in publishes
            if parse_topic(p.topic).kind is kind]


def site(sessions: sessionmaker[Session]) -> Site:
    with sessions() as session:
        row = session.get(Site, SITE)
        assert row is not None
        session.expunge(row)
        return row


def active(sessions: sessionmaker[Session], kind: AlarmType, device: str = "") -> Alarm | None:
    with sessions() as session:
        alarm = session.scalar(select(Alarm).where(
            Alarm.site_id == SITE, Alarm.type == kind, Alarm.device == device,
            Alarm.cleared_at.is_(None)))
        if alarm is not None:
            session.expunge(alarm)
        return alarm


def takeover(processor: IngestProcessor, sessions: sessionmaker[Session], device: str, *,
             skip: int = 0) -> list[mm.Publish]:
    with sessions.begin() as session:
        return processor.leases.takeover(session, SITE, device, actor="ops-li", skip=skip,
                                         now=NOW, book=AlarmBook(session, NOW))


def old_day(processor: IngestProcessor) -> SimSite:
    """The old device's day: granted (a new site), A001..A003 issued, A001 at window 1."""
    old = SimSite(SITE, device=OLD)
    [lease] = sent(feed(processor, old.state()), Kind.LEASE)
    assert lease == mm.Lease(site=SITE, device=OLD, epoch=0, ts=lease.ts)  # type: ignore[union-attr]
    old.epoch = 0
    feed(processor, old.state(), old.event(mm.DayReset(day="2026-11-23")),
         *(old.event(issued(f"A00{n}")) for n in (1, 2, 3)),
         old.event(mm.WindowSignedIn(window=1, staff="zs0231")),
         old.event(mm.TicketCalled(ticket="A001", window=1)))
    return old


def test_a_new_site_is_granted_at_once_with_nothing_to_restore(
        processor: IngestProcessor, small_registry: sessionmaker[Session]) -> None:
    outcome = feed(processor, SimSite(SITE, device=OLD).state())
    [restore] = sent(outcome, Kind.RESTORE)
    assert isinstance(restore, mm.Restore)
    assert (restore.device, restore.epoch, restore.day, restore.tickets) == (OLD, 0, None, [])
    assert (site(small_registry).holder, site(small_registry).online) == (OLD, True)


def test_a_new_device_of_a_site_with_history_waits_and_the_site_is_online(
        processor: IngestProcessor, small_registry: sessionmaker[Session]) -> None:
    old = old_day(processor)
    feed(processor, old.state("offline", lwt=True))
    assert active(small_registry, AlarmType.SITE_OFFLINE) is not None
    new = SimSite(SITE, device=NEW)  # a fresh journal: its sessions start at 1 again
    outcome = feed(processor, new.state())
    assert sent(outcome, Kind.LEASE) == []
    assert sent(outcome, Kind.RESTORE) == []
    assert site(small_registry).online
    assert site(small_registry).holder == OLD
    assert active(small_registry, AlarmType.SITE_OFFLINE) is None
    pending = active(small_registry, AlarmType.TAKEOVER_PENDING, NEW)
    assert pending is not None
    assert pending.severity is Severity.MAJOR
    feed(processor, old.state("offline", lwt=True, session=1))  # a stale Will of the old one
    assert site(small_registry).online
    feed(processor, new.state("offline", lwt=True))
    assert active(small_registry, AlarmType.TAKEOVER_PENDING, NEW) is None
    assert not site(small_registry).online


def test_the_takeover_hands_the_day_over_and_the_streams_stay_apart(
        processor: IngestProcessor, small_registry: sessionmaker[Session]) -> None:
    old = old_day(processor)
    feed(processor, old.telemetry(last_seq=old.next_seq + 1))  # it held 2 the central has not
    feed(processor, old.state("offline", lwt=True))
    new = SimSite(SITE, device=NEW)
    feed(processor, new.state())
    publishes = takeover(processor, small_registry, NEW, skip=5)
    [lease] = sent(publishes, Kind.LEASE)
    assert lease == mm.Lease(site=SITE, device=NEW, epoch=1, ts=lease.ts)  # type: ignore[union-attr]
    [restore] = sent(publishes, Kind.RESTORE)
    assert isinstance(restore, mm.Restore)
    assert (restore.epoch, restore.day, restore.skipped) == (1, "2026-11-23", 7)  # 5 + 2 unsent
    assert restore.counters == [mm.PrefixCounter(prefix="A", last=3)]
    assert [(t.ticket, t.state, t.window) for t in restore.tickets] == [
        ("A001", "called", 1), ("A002", "waiting", None), ("A003", "waiting", None)]
    assert restore.windows == [mm.RestoredWindow(window=1, state="open", staff="zs0231",
                                                 ticket="A001")]
    assert active(small_registry, AlarmType.TAKEOVER_PENDING, NEW) is None

    # The new device numbers in epoch 1; the old one's late events in epoch 0: both kept.
    new.epoch, new.next_seq = 1, E1 + 1
    outcome = feed(processor, new.state(), new.event(issued("A011")),
                   old.event(mm.TicketCalled(ticket="A002", window=2)))
    assert outcome.acks == {SITE: E1 + 1}
    assert outcome.stream_acks == [(SITE, old.next_seq - 1)]
    assert outcome.events_seq_reused == 0
    with small_registry() as session:
        assert session.get(SiteDevice, (SITE, OLD)).acked_seq == old.next_seq - 1  # type: ignore[union-attr]
    state = ReadModel(small_registry).site_state(SITE)
    assert state.site.acked_seq == E1 + 1
    assert [w.ticket for w in state.windows if w.number == 2] in ([], [None])  # history only


def test_a_holder_online_gives_its_last_tickets_before_the_restore_goes(
        processor: IngestProcessor, small_registry: sessionmaker[Session]) -> None:
    old = old_day(processor)
    new = SimSite(SITE, device=NEW)
    feed(processor, new.state())
    publishes = takeover(processor, small_registry, NEW)
    assert sent(publishes, Kind.RESTORE) == []  # the old one is online: it may still issue
    outcome = feed(processor, old.event(issued("A004")))
    assert sent(outcome, Kind.RESTORE) == []
    outcome = feed(processor, old.event(mm.DeviceReplaced(device=NEW, epoch=1)))
    [restore] = sent(outcome, Kind.RESTORE)
    assert isinstance(restore, mm.Restore)
    assert restore.counters == [mm.PrefixCounter(prefix="A", last=4)]
    assert "A004" in [t.ticket for t in restore.tickets]


def test_late_tickets_join_the_holder_and_a_number_issued_twice_is_critical(
        processor: IngestProcessor, small_registry: sessionmaker[Session]) -> None:
    old = old_day(processor)
    feed(processor, old.state("offline", lwt=True))
    new = SimSite(SITE, device=NEW, epoch=None)
    feed(processor, new.state())
    takeover(processor, small_registry, NEW)  # no skip: the operator bet on nothing unsent
    new.epoch, new.next_seq = 1, E1 + 1
    feed(processor, new.state(), new.event(issued("A004")))
    # The old device comes back with what it issued offline: A004 (twice!) and A005.
    outcome = feed(processor, old.state(session=2), old.event(issued("A004")),
                   old.event(issued("A005")), old.event(mm.DeviceReplaced(device=NEW, epoch=1)))
    [handed] = sent(outcome, Kind.RESTORE)
    assert isinstance(handed, mm.Restore)
    assert [t.ticket for t in handed.tickets] == ["A005"]
    clash = active(small_registry, AlarmType.DEVICE_CONFLICT, OLD)
    assert clash is not None
    assert clash.severity is Severity.CRITICAL
    assert clash.detail["ticket"] == "A004"
    with small_registry() as session:  # nothing lost: both A004s are stored
        numbers = [r.body["ticket"] for r in session.scalars(select(EventRecord).where(
            EventRecord.site_id == SITE, EventRecord.type == "ticket.issued"))]
    assert sorted(numbers) == ["A001", "A002", "A003", "A004", "A004", "A005"]
    # The holder reconnects: the late ticket again (its session may have gone to the old one).
    assert [t.ticket for t in sent(feed(processor, new.state(session=2)), Kind.RESTORE)[0]
            .tickets] == ["A005"]  # type: ignore[union-attr]


def test_a_holder_that_never_got_its_restore_gets_it_again(
        processor: IngestProcessor, small_registry: sessionmaker[Session]) -> None:
    old_day(processor)
    new = SimSite(SITE, device=NEW)
    feed(processor, new.state())
    with small_registry.begin() as session:
        session.get(SiteDevice, (SITE, OLD)).online = False  # type: ignore[union-attr]
    first = sent(takeover(processor, small_registry, NEW), Kind.RESTORE)
    again = sent(feed(processor, new.state(session=2)), Kind.RESTORE)  # still no epoch
    assert [msgspec.structs.replace(r, ts=0) for r in again] == [  # type: ignore[type-var]
        msgspec.structs.replace(r, ts=0) for r in first]  # type: ignore[type-var]


def test_takeover_refuses_what_is_not_a_waiting_device(
        processor: IngestProcessor, small_registry: sessionmaker[Session]) -> None:
    old_day(processor)
    with pytest.raises(UnknownDevice):
        takeover(processor, small_registry, NEW)
    with pytest.raises(Conflict, match="numbers the site"):
        takeover(processor, small_registry, OLD)


def test_an_edge_from_before_device_identity_is_adopted_then_conflicts_are_alarmed(
        processor: IngestProcessor, small_registry: sessionmaker[Session]) -> None:
    legacy = SimSite(SITE)  # no device in its states: older software
    feed(processor, legacy.state(), legacy.event(issued("A001")))
    assert site(small_registry).holder is None
    assert site(small_registry).online
    upgraded = SimSite(SITE, device=OLD, epoch=0, session=2)  # the same Pi, new software
    assert sent(feed(processor, upgraded.state()), Kind.LEASE) != []
    assert site(small_registry).holder == OLD
    feed(processor, legacy.state(session=3))  # something without identity is online too
    assert active(small_registry, AlarmType.DEVICE_CONFLICT, "legacy") is not None
    copied = SimSite(SITE, device=NEW, epoch=0)  # a copy of the journal on another card
    feed(processor, copied.state())
    assert active(small_registry, AlarmType.DEVICE_CONFLICT, NEW) is not None


def test_a_copied_sd_card_is_one_device_in_two_boots_and_is_alarmed(
        processor: IngestProcessor, small_registry: sessionmaker[Session]) -> None:
    """A copy of a Pi's SD card carries the journal's device id, so no lease can tell the two
    apart. Its session counter does not know the original's later sessions: an online state of
    another boot whose session is not above the one held is no reboot (a reboot always counts
    on) but the same device running twice: ``device_conflict``. A reboot, and the Will of the
    boot before it arriving late, raise nothing."""
    old_day(processor)  # OLD holds the site: session 1, boot-1
    rebooted = SimSite(SITE, device=OLD, epoch=0, session=2, boot_id="boot-2")
    feed(processor, rebooted.state())
    feed(processor, SimSite(SITE, device=OLD, epoch=0).state("offline", lwt=True))  # boot-1's
    assert active(small_registry, AlarmType.DEVICE_CONFLICT, OLD) is None
    copy = SimSite(SITE, device=OLD, epoch=0, session=2, boot_id="boot-9")  # copied at session 1
    feed(processor, copy.state())
    alarm = active(small_registry, AlarmType.DEVICE_CONFLICT, OLD)
    assert alarm is not None
    assert alarm.severity is Severity.CRITICAL
    assert alarm.detail["boot_ids"] == ["boot-2", "boot-9"]
    assert site(small_registry).holder == OLD  # no seq in its state: nothing to fence with


def test_a_journal_behind_the_central_is_named_in_the_lease_and_not_taken(
        processor: IngestProcessor, small_registry: sessionmaker[Session]) -> None:
    """With the journal's last seq in its state the central can fence a copy: a second copy
    (another boot, a session not above the one held) and a journal restored from an older
    image (a later session, but its last seq below what the central holds of the epoch)
    are named in the lease (``behind``) and their state is not taken; the journal in step
    is."""
    old_day(processor)  # OLD holds epoch 0: seqs 1..6, session 1, boot-1
    held = site(small_registry).max_seq
    assert held == 6

    def state(session: int, boot: str, seq: int) -> mm.State:
        sim = SimSite(SITE, device=OLD, epoch=0, session=session, boot_id=boot)
        return msgspec.structs.replace(sim.state(), seq=seq)

    original = SimSite(SITE, device=OLD, epoch=0)
    # A copy beside the original (online); then, the original gone, last night's image.
    # Right after the events (another replica may have committed what an edge sent behind
    # its state before this one reads the state), a lower seq alone fences nothing.
    assert sent(feed(processor, state(2, "boot-1", 5)), Kind.LEASE) == []
    later = NOW + timedelta(seconds=CentralConfig().journal_behind_after_s)
    for fenced, says, before in ((state(1, "boot-9", 6), "两台机器", None),
                                 (state(5, "boot-10", 3), "落后",
                                  original.state("offline", lwt=True, session=2))):
        if before is not None:
            feed(processor, before)
        [lease] = sent(processor.process(received(fenced), later), Kind.LEASE)
        assert lease == mm.Lease(site=SITE, device=OLD, epoch=0, ts=lease.ts,  # type: ignore[union-attr]
                                 behind=mm.BehindJournal(boot_id=fenced.boot_id, held=held))
        with small_registry() as session:
            row = session.get(SiteDevice, (SITE, OLD))
            assert row is not None
            assert row.state is not None
            assert row.state["boot_id"] == "boot-1"  # the record stays the believed copy
        alarm = active(small_registry, AlarmType.DEVICE_CONFLICT, OLD)
        assert alarm is not None
        assert alarm.detail["boot_id"] == fenced.boot_id
        assert says in alarm.message
    assert sent(processor.process(received(state(6, "boot-11", 6)), later),
                Kind.LEASE) == []  # in step
    assert site(small_registry).boot_id == "boot-11"


def test_a_forked_journals_copies_of_held_events_count_but_are_not_stored_twice(
        processor: IngestProcessor, small_registry: sessionmaker[Session]) -> None:
    """A journal found behind renumbers its events above the central's last ack into the
    epoch it is granted: those the central holds under the device it forked from (same
    event id) are acknowledged but not stored again; its own are stored."""
    old = old_day(processor)  # OLD numbered epoch 0: seqs 1..6
    feed(processor, old.state("offline", lwt=True))
    in_the_image = old.sent[3:5]  # seqs 4 and 5: the image's ack was 3
    own = old.event(issued("A004"), seq=6)  # numbered by the image: seq 6 is held already
    forked = mm.Forked(device=OLD, epoch=0, after=3, last=6)
    feed(processor, msgspec.structs.replace(SimSite(SITE, device=NEW).state(), seq=6,
                                            forked=forked))
    takeover(processor, small_registry, NEW)
    moved = [msgspec.structs.replace(e, seq=E1 + n)
             for n, e in enumerate([*in_the_image, own], start=1)]
    outcome = feed(processor, *moved)
    assert outcome.acks[SITE] == E1 + 3
    assert (outcome.events_stored, outcome.events_duplicate, outcome.events_seq_reused) == (
        1, 2, 0)
    with small_registry() as session:
        stored = [(seq, str(i)) for seq, i in session.execute(
            select(EventRecord.seq, EventRecord.event_id).where(EventRecord.site_id == SITE))]
    ids = [i for _, i in stored]
    assert len(ids) == len(set(ids))  # nothing twice
    assert (E1 + 3, str(own.id)) in stored


def test_the_day_fold_follows_a_ticket_through_its_life() -> None:
    fold = DayFold()
    ts = 1_763_882_400_000
    for body in (mm.DayReset(day="2026-11-23"), issued("A001"), issued("B001", "huji"),
                 mm.WindowSignedIn(window=1, staff="zs01"),
                 mm.TicketCalled(ticket="A001", window=1),
                 mm.TicketNoShow(ticket="A001", window=1, requeued=True),
                 mm.TicketCalled(ticket="B001", window=1),
                 mm.TicketServing(ticket="B001", window=1),
                 mm.TicketTransferred(ticket="B001", window=1, from_service="huji",
                                      to_service="shebao"),
                 mm.WindowPaused(window=1)):
        ts += 60_000
        fold.apply(ts, body)
    assert fold.counters == {"A": 1, "B": 1}
    assert [(t.ticket, t.service, t.state, t.requeued, t.transfers)
            for t in fold.restored_tickets()] == [
        ("B001", "shebao", "waiting", False, 1), ("A001", "shebao", "waiting", True, 0)]
    assert fold.restored_windows() == [mm.RestoredWindow(window=1, state="paused",
                                                         staff="zs01", ticket=None)]
    fold.apply(ts + 1, mm.DayReset(day="2026-11-24"))
    assert (fold.day, fold.tickets, fold.counters) == ("2026-11-24", {}, {})


def test_a_big_queue_goes_in_parts(processor: IngestProcessor,
                                   small_registry: sessionmaker[Session]) -> None:
    old = SimSite(SITE, device=OLD)
    feed(processor, old.state())
    old.epoch = 0
    feed(processor, old.state(), old.event(mm.DayReset(day="2026-11-23")),
         *(old.event(issued(f"A{n:03d}")) for n in range(1, 851)))
    feed(processor, old.state("offline", lwt=True))
    feed(processor, SimSite(SITE, device=NEW).state())
    parts = sent(takeover(processor, small_registry, NEW), Kind.RESTORE)
    assert [(p.part, p.parts, len(p.tickets)) for p in parts] == [  # type: ignore[union-attr]
        (1, 3, 400), (2, 3, 400), (3, 3, 50)]
    assert all(len(mm.encode(p)) < 128 * 1024 for p in parts)

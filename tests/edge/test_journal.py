"""The SQLite journal: durable before acknowledged, gap-free seq, bounded telemetry."""

from __future__ import annotations

import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from edge.errors import AckRefused, JournalError
from edge.journal import MAX_ACK_AHEAD, Journal
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import PYTHON, REPO

T0 = 1_795_000_000_000


def issued(number: str) -> mm.TicketIssued:
    return mm.TicketIssued(ticket=number, service="shebao", ticket_class="normal",
                           booked_ts=None, channel="api", people_ahead=0, wait=None)


def test_events_get_consecutive_seq_and_round_trip(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "site-a") as journal:
        first = journal.append([issued("A001")], ts_ms=T0, clock_synced=True)
        both = journal.append([issued("A002"), mm.TicketCancelled(ticket="A001")],
                              ts_ms=T0 + 5, clock_synced=False)
        assert [e.seq for e in first + both] == [1, 2, 3]
        assert journal.last_seq == 3
        stored = list(journal.events())
        assert stored == first + both
        assert [seq for seq, _ in journal.payloads(1, 10)] == [2, 3]
        assert mm.decode("event", journal.payloads(0, 1)[0][1], site_id="site-a") == first[0]


def test_journal_settings_are_wal_and_full_sync(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "site-a") as journal:
        db = journal._db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        journal.push_telemetry(b"{}")
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # restored after telemetry


def test_seq_continues_after_reopen_and_is_never_reused(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "site-a") as journal:
        journal.append([issued("A001")], ts_ms=T0, clock_synced=True)
    with Journal(tmp_path / "j.db", "site-a") as journal:
        (event,) = journal.append([issued("A002")], ts_ms=T0, clock_synced=True)
        assert event.seq == 2


def test_a_second_daemon_cannot_open_the_same_journal(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "site-a"), pytest.raises(JournalError, match="in use"):
        Journal(tmp_path / "j.db", "site-a")
    Journal(tmp_path / "j.db", "site-a").close()  # released on close


def test_journal_belongs_to_one_site(tmp_path: Path) -> None:
    Journal(tmp_path / "j.db", "site-a").close()
    with pytest.raises(JournalError, match="belongs to site 'site-a'"):
        Journal(tmp_path / "j.db", "site-b")


def test_invalid_event_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "site-a") as journal:
        bad = mm.ConfigRejected(version="v", errors=["x" * 201])
        with pytest.raises(JournalError, match="invalid event"):
            journal.append([issued("A001"), bad], ts_ms=T0, clock_synced=True)
        assert journal.last_seq == 0
        assert list(journal.events()) == []


def test_ack_only_moves_forward(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "site-a") as journal:
        journal.append([issued(f"A{i:03d}") for i in range(1, 6)], ts_ms=T0, clock_synced=True)
        assert journal.ack(3) == 3
        assert journal.ack(2) == 3
        assert journal.ack(5) == 5
        assert journal.unacked_count() == 0
        assert journal.take_lost() == []
    with Journal(tmp_path / "j.db", "site-a") as journal:
        assert journal.acked_seq == 5


def test_an_ack_above_the_end_moves_the_seq_floor_and_is_reported_once(tmp_path: Path) -> None:
    """The central holds seqs this journal lost (torn WAL, replaced SD card): never reuse them."""
    with Journal(tmp_path / "j.db", "site-a") as journal:
        journal.append([issued(f"A{i:03d}") for i in range(1, 6)], ts_ms=T0, clock_synced=True)
        assert journal.ack(12) == 12
        assert (journal.last_seq, journal.acked_seq, journal.unacked_count()) == (12, 12, 0)
        [after] = journal.append([issued("A006")], ts_ms=T0 + 1, clock_synced=True)
        assert after.seq == 13  # not 6: the central already has 6..12
    with Journal(tmp_path / "j.db", "site-a") as journal:  # the floor and the report persist
        assert journal.take_lost() == [(6, 12)]
        assert journal.take_lost() == []
        assert journal.last_seq == 13
        journal.ack(13)
    with Journal(tmp_path / "j.db", "site-a") as journal:
        journal._db.execute("DELETE FROM events")  # everything gone, e.g. the WAL torn
        journal._db.commit()
    with Journal(tmp_path / "j.db", "site-a") as journal:
        [again] = journal.append([issued("A001")], ts_ms=T0 + 2, clock_synced=True)
        assert again.seq == 14  # the floor is in meta, not only in the events


def test_an_ack_beyond_any_torn_tail_is_refused_and_kept_for_the_report(tmp_path: Path) -> None:
    """An ack at the top of the contract's range moved the seq there: every ticket then
    failed (2**53 - 1 is the last valid seq) and journal.lost could not be written. The
    top of the journal's own epoch is refused; the top of the range is another epoch's
    seq, another device's ack: it changes nothing either."""
    with Journal(tmp_path / "j.db", "site-a") as journal:
        journal.append([issued(f"A{i:03d}") for i in range(1, 6)], ts_ms=T0, clock_synced=True)
        assert journal.ack(2**53 - 1) == 0
        for ack in (2**32 - 1, 5 + MAX_ACK_AHEAD + 1):
            with pytest.raises(AckRefused, match="refused"):
                journal.ack(ack)
        assert (journal.last_seq, journal.acked_seq) == (5, 0)
        assert journal.take_refused_acks() == [2**32 - 1, 5 + MAX_ACK_AHEAD + 1]
        assert journal.take_refused_acks() == []
        assert journal.take_lost() == []
        assert journal.ack(5 + MAX_ACK_AHEAD) == 5 + MAX_ACK_AHEAD  # a torn tail, still taken
        [after] = journal.append([issued("A006")], ts_ms=T0 + 1, clock_synced=True)
        assert after.seq == 5 + MAX_ACK_AHEAD + 1
    with Journal(tmp_path / "j.db", "site-a") as journal:
        assert journal.last_seq == 5 + MAX_ACK_AHEAD + 1


def test_a_journal_folder_that_cannot_be_made_is_a_journal_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(JournalError, match="cannot create the journal"):
        Journal(tmp_path / "file" / "j.db", "site-a")


def test_full_outbox_drops_oldest_telemetry_never_events(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "site-a", outbox_limit=10) as journal:
        journal.append([issued(f"A{i:03d}") for i in range(1, 7)], ts_ms=T0, clock_synced=True)
        dropped = sum(journal.push_telemetry(f'{{"n":{i}}}'.encode()) for i in range(8))
        assert journal.outbox_depth() == 10
        assert dropped == 4
        assert [p for _, p in journal.telemetry(10)] == [f'{{"n":{i}}}'.encode()
                                                          for i in range(4, 8)]
        # Events past the limit are still kept: only telemetry gives way.
        journal.append([issued(f"A{i:03d}") for i in range(7, 20)], ts_ms=T0, clock_synced=True)
        assert journal.unacked_count() == 19
        assert journal.push_telemetry(b"{}") == 5  # all queued telemetry, plus the new one
        assert journal.telemetry_count() == 0
        assert journal.take_dropped() == 9
        assert journal.take_dropped() == 0


def test_an_acknowledged_event_survives_kill_9(tmp_path: Path) -> None:
    """The writer prints the seq only after append returned; kill -9 right then."""
    script = textwrap.dedent(f"""
        import sys
        from edge.journal import Journal
        from tests.edge.test_journal import issued
        journal = Journal({str(tmp_path / 'j.db')!r}, "site-a")
        for i in range(1, 1000):
            (event,) = journal.append([issued(f"A{{i:03d}}")], ts_ms={T0}, clock_synced=True)
            print(event.seq, flush=True)
            if i == 25:
                sys.stdin.readline()  # wait to be killed
    """)
    with subprocess.Popen([PYTHON, "-c", script], cwd=REPO, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        seen = [int(process.stdout.readline()) for _ in range(25)]
        process.send_signal(signal.SIGKILL)
        process.wait()
    with Journal(tmp_path / "j.db", "site-a") as journal:
        assert journal.last_seq >= seen[-1] == 25
        assert [e.seq for e in journal.events()] == list(range(1, journal.last_seq + 1))


def test_read_only_journal_reads_beside_a_writer(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "site-a") as writer:
        writer.append([issued("A001")], ts_ms=T0, clock_synced=True)
        with Journal(tmp_path / "j.db", "site-a", read_only=True) as reader:
            assert reader.last_seq == 1
    with pytest.raises(JournalError, match="no journal"):
        Journal(tmp_path / "none.db", "site-a", read_only=True)

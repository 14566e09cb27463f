"""The journal's record of handled window-terminal inputs (exactly once over a crash)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge.devices.base import InputMark, KeyPress, TicketButton, WindowKey
from edge.errors import JournalError
from edge.journal import Journal
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import until
from tests.edge.test_prediction import gated_daemon  # an in-process daemon

T0 = 1_795_000_000_000
NEXT_AT_11 = InputMark("terminals", 11, 7, 0x0101, 0xA17E)


def called(number: str) -> mm.TicketCalled:
    return mm.TicketCalled(ticket=number, window=1)


def test_the_mark_commits_in_the_transaction_of_the_effect(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "site-a") as journal:
        statements: list[str] = []
        journal._db.set_trace_callback(statements.append)
        journal.append([called("A001")], ts_ms=T0, clock_synced=True, input_mark=NEXT_AT_11)
        journal._db.set_trace_callback(None)
        assert journal.input_marks() == [NEXT_AT_11]
    writes = [s.split()[0] if not s.startswith("INSERT") else " ".join(s.split()[:3])
              for s in statements if not s.startswith("PRAGMA")]
    assert writes == [
        "BEGIN", "INSERT INTO events", "INSERT OR REPLACE", "COMMIT",
    ], statements  # one transaction: both or neither survive a crash


def test_an_input_with_no_effect_or_refused_is_recorded_alone(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "site-a") as journal:
        journal.record_input(NEXT_AT_11)  # NEXT with nobody waiting: handled, nothing journaled
        assert journal.input_marks() == [NEXT_AT_11]
        later = InputMark("terminals", 11, 8, 0x0107, 0xA17E)
        journal.record_input(later)  # refused (CommandRejected): handled all the same
        assert journal.input_marks() == [later]  # one row per terminal: the latest
        assert journal.last_seq == 0


def test_the_handler_records_a_refused_or_idle_press_and_acknowledges_it(
        tmp_path: Path) -> None:
    """Which of the above happens is the input handler's call: a press the hall refuses,
    or one with nothing to do, is recorded once and acknowledged; nothing is journaled."""
    async def scenario() -> None:
        async with gated_daemon(tmp_path, budget_s=0.1) as (daemon, _base, gate):
            hall = daemon.hall
            assert hall is not None
            gate.release.set()
            refused = InputMark("terminals", 1, 5, 0x0107, 0)  # FINISH, window 1 signed out
            idle = InputMark("terminals", 1, 6, 0x0101, 0)
            seq = hall.journal.last_seq
            daemon.inputs.put_nowait(KeyPress(1, WindowKey.FINISH, mark=refused))
            await until(lambda: hall.journal.was_handled(refused), "the refused press")
            assert hall.journal.last_seq == seq
            daemon.inputs.put_nowait(KeyPress(1, WindowKey.SIGN_IN, staff_id="zhang01"))
            await until(lambda: hall.staff_at(1) == "zhang01", "signed in")
            seq = hall.journal.last_seq
            daemon.inputs.put_nowait(KeyPress(1, WindowKey.NEXT, mark=idle))  # nobody waits
            await until(lambda: hall.journal.was_handled(idle), "the idle press")
            assert hall.journal.last_seq == seq  # nothing journaled for it
            assert hall.journal.input_marks() == [idle]

    asyncio.run(scenario())


def test_other_errors_leave_the_input_unhandled(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "site-a") as journal:
        bad = mm.TicketCalled(ticket="no number", window=1)  # invalid: never journaled
        with pytest.raises(JournalError):
            journal.append([bad], ts_ms=T0, clock_synced=True, input_mark=NEXT_AT_11)
        assert journal.input_marks() == []
        journal.append([called("A001")], ts_ms=T0, clock_synced=True)  # no mark given
        assert journal.input_marks() == []


def test_marks_survive_a_reopen_per_device_and_address(tmp_path: Path) -> None:
    rating_at_12 = InputMark("terminals", 12, 3, 0x0205)
    other_bus = InputMark("terminals-b", 11, 1, 0x0101, 9)
    with Journal(tmp_path / "j.db", "site-a") as journal:
        for mark in (NEXT_AT_11, rating_at_12, other_bus):
            journal.append([called(f"A00{mark.sequence}")], ts_ms=T0, clock_synced=True,
                           input_mark=mark)
        journal.append([called("A009")], ts_ms=T0, clock_synced=True,
                       input_mark=None)  # not from a terminal: nothing recorded
    with Journal(tmp_path / "j.db", "site-a") as journal:
        assert sorted(journal.input_marks(), key=lambda m: (m.device, m.address)) == [
            NEXT_AT_11, rating_at_12, other_bus,
        ]


def test_the_same_input_delivered_twice_is_known_as_handled(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", "site-a") as journal:
        assert not journal.was_handled(NEXT_AT_11)
        journal.append([called("A001")], ts_ms=T0, clock_synced=True, input_mark=NEXT_AT_11)
        assert journal.was_handled(NEXT_AT_11)
        nxt = InputMark("terminals", 11, 8, 0x0101, 0xA17E)  # the next press: a new sequence
        assert not journal.was_handled(nxt)
        assert not journal.was_handled(InputMark("terminals", 12, 7, 0x0101, 0xA17E))
        assert not journal.was_handled(InputMark("terminals", 11, 7, 0x0101, 0xB000))  # reboot


def test_a_terminal_input_delivered_twice_is_handled_once(tmp_path: Path) -> None:
    """A reload rebuilds the terminal driver while an input it read waits in the daemon's
    queue: the new driver reads the same latched input again (same mark)."""
    async def scenario() -> None:
        async with gated_daemon(tmp_path, budget_s=0.1) as (daemon, _base, gate):
            hall = daemon.hall
            assert hall is not None
            gate.release.set()
            for _ in range(2):
                daemon.inputs.put_nowait(TicketButton("shebao"))
            await until(lambda: len(hall.dispatcher.tickets()) == 2, "two tickets")
            daemon.inputs.put_nowait(KeyPress(1, WindowKey.SIGN_IN, staff_id="zhang01"))
            press = InputMark("terminals", 1, 41, 0x0101, 0)
            for _ in range(2):  # the old driver's copy and the new driver's
                daemon.inputs.put_nowait(KeyPress(1, WindowKey.NEXT, mark=press))
            await until(lambda: hall.journal.was_handled(press), "the press handled")
            await asyncio.sleep(0.3)  # the second copy's turn
            calls = [e.body for e in hall.journal.events() if isinstance(e.body, mm.TicketCalled)]
            assert [c.ticket for c in calls] == ["A001"]

    asyncio.run(scenario())

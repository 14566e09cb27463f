"""Power cut: the journal's WAL tail is torn; the daemon starts and keeps what was durable.

``synchronous=FULL`` means a ticket is acknowledged only after its WAL frames
are fsynced, so a power cut can only tear writes that were still in flight:
the frames after the last acknowledged commit. Two shapes are simulated on a
daemon killed with SIGKILL (no checkpoint, the WAL is kept):

* garbage appended after the last frame (a half-written frame of the next commit);
* the WAL truncated in the middle of a frame, at a point that was durable
  earlier: everything after it is "in flight" from the power's point of view.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import free_port, http, site_toml, start_daemon, stop_daemon, wait_http
from tests.reliability.harness import journal_events

PAGE = 4096
FRAME = 24 + PAGE  # WAL frame header + one page


def issue(base: str, count: int) -> dict[str, int]:
    tickets = {}
    for _ in range(count):
        status, body = http("POST", f"{base}/tickets", {"service": "shebao"})
        assert status == 201, body
        tickets[body["number"]] = body["seq"]
    return tickets


def run_and_kill(config: Path, port: int, count: int, log: Path) -> dict[str, int]:
    daemon = start_daemon(config, log_path=log)
    wait_http(port, daemon)
    tickets = issue(f"http://127.0.0.1:{port}", count)
    daemon.kill()
    daemon.wait()
    return tickets


def issued(config: Path) -> dict[str, int]:
    return {e.body.ticket: e.seq for e in journal_events(config)
            if isinstance(e.body, mm.TicketIssued)}


def test_torn_wal_tail_keeps_durable_events(tmp_path: Path) -> None:
    port = free_port()
    config = site_toml(tmp_path, http_port=port)
    wal = tmp_path / "journal.db-wal"
    log = tmp_path / "daemon.log"

    durable = run_and_kill(config, port, 10, log)
    assert wal.stat().st_size > 0, "no WAL left by a killed daemon"
    with open(wal, "ab") as out:  # a half-written frame of a commit that never finished
        out.write(os.urandom(FRAME // 2))
    durable_size = wal.stat().st_size - FRAME // 2
    shutil.copyfile(wal, tmp_path / "wal.durable")

    in_flight = run_and_kill(config, port, 5, log)
    assert issued(config).items() >= {**durable, **in_flight}.items()
    with open(wal, "r+b") as out:  # power lost while the frames after `durable_size` were written
        out.truncate(durable_size + FRAME // 2)

    daemon = start_daemon(config, log_path=log)
    try:
        wait_http(port, daemon)
        after = issue(f"http://127.0.0.1:{port}", 3)
    finally:
        assert stop_daemon(daemon) == 0
    kept = issued(config)
    assert kept.items() >= durable.items(), "a durable ticket was lost"
    events = journal_events(config)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "gap in seq"
    numbers = [e.body.ticket for e in events if isinstance(e.body, mm.TicketIssued)]
    assert len(numbers) == len(set(numbers)), "a number was issued twice"
    assert kept.items() >= after.items()
    # What the cut dropped (in flight, never durable) is numbered again: 11..13 reissued.
    assert sorted(after) == sorted(in_flight)[:3]

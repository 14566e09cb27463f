"""The edge disk fills up: new tickets refused clearly, nothing acknowledged lost, recovery.

The journal lives on a real, small tmpfs mounted for the test (we run as root
in CI; elsewhere the test is skipped, because RLIMIT_FSIZE would kill the
daemon with SIGXFSZ rather than show ENOSPC, and a ``max_page_count`` pragma
would need a change in edge/journal.py). The disk is then filled with a
filler file, as a runaway log would.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import free_port, http, site_toml, start_daemon, stop_daemon, wait_http
from tests.reliability.busy_hour import CUT
from tests.reliability.harness import journal_events


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace')}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the filesystem says ENOSPC."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 65536):
            pass
    except OSError:
        pass
    try:  # then the last bytes, so that not even one page fits
        while os.write(fd, b"\0"):
            pass
    except OSError:
        pass
    os.close(fd)
    return filler


def test_disk_full_refuses_new_tickets_and_recovers(small_disk: Path) -> None:
    port = free_port()
    config = site_toml(small_disk, http_port=port)
    base = f"http://127.0.0.1:{port}"
    log = small_disk.parent / "daemon.log"
    daemon = start_daemon(config, log_path=log)
    acknowledged: dict[str, int] = {}
    answers: list[tuple[int, dict[str, object]] | str] = []
    try:
        wait_http(port, daemon)
        http("POST", f"{base}/windows/1/sign_in", {"staff": "s1"})
        for _ in range(20):
            status, body = http("POST", f"{base}/tickets", {"service": "shebao"})
            assert status == 201, body
            acknowledged[body["number"]] = body["seq"]
        filler = fill(small_disk)
        for _ in range(5):
            try:
                status, body = http("POST", f"{base}/tickets", {"service": "shebao"})
            except CUT as exc:
                answers.append(f"no answer: {exc!r}")
                continue
            if status == 201:  # SQLite may still fit a row into a free page of the WAL
                acknowledged[body["number"]] = body["seq"]
            answers.append((status, body))
        assert daemon.poll() is None, "the daemon died of a full disk"
        status, body = http("GET", f"{base}/status")
        assert status == 200, "status page gone on a full disk"
        filler.unlink()
        status, body = http("POST", f"{base}/tickets", {"service": "shebao"})
        assert status == 201, f"no recovery once space returned: {body}"
        acknowledged[body["number"]] = body["seq"]
        status, _ = http("POST", f"{base}/windows/1/next")
        assert status == 200
    finally:
        stop_daemon(daemon)
    issued = {e.body.ticket: e.seq for e in journal_events(config)
              if isinstance(e.body, mm.TicketIssued)}
    for number, seq in acknowledged.items():
        assert issued.get(number) == seq, f"{number} lost"
    refused = [a for a in answers if not isinstance(a, tuple) or a[0] != 201]
    assert refused, "five tickets were accepted on a full disk"
    assert all(isinstance(a, tuple) and a[0] in (503, 507) and a[1].get("error") == "journal"
               for a in refused), f"no clear error on a full disk: {refused}"

"""Crash test: kill -9 a real daemon at random moments of a busy hour, restart, lose nothing.

Every ticket the kiosk API acknowledged must be in the journal under the same
number and seq; no number appears twice; per service the numbers run 1..n
without a gap; the seq has no gap; and each restart rebuilds the hall (a
replay that diverged would refuse to start).
"""

from __future__ import annotations

import random
import threading
import urllib.error
from collections import Counter
from http.client import HTTPException
from pathlib import Path

from edge.config import load_config
from edge.journal import Journal
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import free_port, http, site_toml, start_daemon, stop_daemon, wait_http

KILLS = 10


def test_kill_9_during_a_busy_hour_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    port = free_port()
    # A fast machine issues over 999 tickets of one service here: four-digit numbers.
    config_path = site_toml(tmp_path, http_port=port, extra="\n[policy]\nnumber_width = 4\n")
    base = f"http://127.0.0.1:{port}"
    acknowledged: dict[str, tuple[int, str]] = {}  # number -> (seq, service)
    calls_acknowledged = 0
    for life in range(KILLS + 1):
        process = start_daemon(config_path, log_path=tmp_path / "daemon.log")
        wait_http(port, process)
        last_life = life == KILLS
        killer = None
        if not last_life:
            killer = threading.Timer(rng.uniform(0.05, 0.6), process.kill)
            killer.start()
        for window in (1, 2):
            try:
                http("POST", f"{base}/windows/{window}/sign_in", {"staff": f"s{window}"})
            except (OSError, urllib.error.URLError, HTTPException, ValueError):
                break
        requests = 0
        while process.poll() is None and (not last_life or requests < 30):
            requests += 1
            service = rng.choice(["shebao", "shebao", "huji"])
            try:
                if rng.random() < 0.25:
                    status, body = http("POST", f"{base}/windows/{rng.choice([1, 2])}/next")
                    calls_acknowledged += status == 200
                    continue
                status, body = http("POST", f"{base}/tickets", {"service": service}, timeout=2)
            except (OSError, urllib.error.URLError, HTTPException, ValueError):
                continue  # killed mid-request: not acknowledged, may or may not be journaled
            assert status == 201, body
            assert body["number"] not in acknowledged, f"{body['number']} issued twice"
            acknowledged[body["number"]] = (body["seq"], service)
        if killer is not None:
            killer.join()
            assert process.wait() == -9
    assert stop_daemon(process) == 0

    config = load_config(config_path)
    with Journal(config.paths.journal, config.site.id, read_only=True) as journal:
        events = list(journal.events())
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    issued = {e.body.ticket: (e.seq, e.body.service) for e in events
              if isinstance(e.body, mm.TicketIssued)}
    numbers = [e.body.ticket for e in events if isinstance(e.body, mm.TicketIssued)]
    assert len(numbers) == len(set(numbers)), Counter(numbers).most_common(3)
    for number, (seq, service) in acknowledged.items():
        assert issued.get(number) == (seq, service), f"{number} lost or renumbered"
    for prefix in ("A", "B"):
        counters = sorted(int(n[1:]) for n in numbers if n.startswith(prefix))
        assert counters == list(range(1, len(counters) + 1)), f"gap in {prefix} numbers"
    assert len(acknowledged) > 50
    assert calls_acknowledged > 5
    assert sum(1 for e in events if e.type == "day.reset") == 1

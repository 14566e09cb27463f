"""kill -9 the edge daemon at random moments of a busy hour, with a real central consuming.

Real Mosquitto, real PostgreSQL, ``onedoor edge run`` and ``onedoor central run``
as subprocesses. Afterwards: no ticket lost, duplicated or renumbered (kiosk vs
journal), every journal event committed exactly once at the central, and the
central's statistics equal a recount from the edge journal.
CI: 20 kills; ``ONEDOOR_LONG_TESTS=1``: 100.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

from tests.edge.sites import free_port, site_toml, start_daemon, stop_daemon, wait_http
from tests.reliability.busy_hour import Kiosk, assert_no_ticket_lost
from tests.reliability.harness import (
    SITE_ID,
    CentralProcess,
    assert_committed_exactly_once,
    assert_stats_match,
    central_count,
    journal_events,
    prepare_central_db,
    scaled,
    wait_until,
)
from tests.servers import MosquittoBroker

KILLS = scaled(20, 100)


def test_kill_9_edge_with_central_consuming(
    tmp_path: Path, mqtt_broker: MosquittoBroker, fresh_postgres_url: str
) -> None:
    rng = random.Random(9_2026)
    prepare_central_db(fresh_postgres_url, tmp_path, [SITE_ID])
    central = CentralProcess(tmp_path, fresh_postgres_url, mqtt_broker.port)
    central.start()
    port = free_port()
    # A fast machine issues over 999 tickets of one service here: four-digit numbers.
    config = site_toml(tmp_path, http_port=port, mqtt_port=mqtt_broker.port,
                       telemetry_seconds=5, extra="\n[policy]\nnumber_width = 4\n")
    kiosk = Kiosk(f"http://127.0.0.1:{port}", rng)
    process = None
    try:
        for life in range(KILLS + 1):
            process = start_daemon(config, log_path=tmp_path / "daemon.log")
            wait_http(port, process)
            last_life = life == KILLS
            killer = None
            if not last_life:
                killer = threading.Timer(rng.uniform(0.05, 0.8), process.kill)
                killer.start()
            kiosk.sign_in()
            steps = 0
            while process.poll() is None and (not last_life or steps < 40):
                steps += kiosk.step()
            if killer is not None:
                killer.join()
                assert process.wait() == -9
        # The daemon is idle now (telemetry aside): its journal is the whole truth to compare.
        events = journal_events(config)
        wait_until(lambda: central_count(fresh_postgres_url, SITE_ID) >= len(events), 90,
                   "central to commit every journal event")
        assert process is not None
        assert stop_daemon(process) == 0
    finally:
        if process is not None:
            stop_daemon(process)
        central.stop()
    assert_no_ticket_lost(kiosk, journal_events(config))
    assert_committed_exactly_once(fresh_postgres_url, events)
    assert_stats_match(fresh_postgres_url, events)
    assert len(kiosk.acknowledged) > 3 * KILLS
    assert kiosk.calls > KILLS

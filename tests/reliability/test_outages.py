"""Broker and central restarted mid-stream; a site's uplink cut for a day of traffic, restored.

Real Mosquitto, real PostgreSQL, ``onedoor edge run`` and ``onedoor central run``
subprocesses; the edge reaches the broker through a relay that can be cut.
Traffic is a full citizen life per ticket (issued, called, serving, done,
rated) through the daemon's kiosk and soft-window HTTP APIs.
After each fault: every journal event committed exactly once at the central,
and the central's statistics equal a recount from the journal.
CI: >= 5,000 events during the cut; ``ONEDOOR_LONG_TESTS=1``: >= 50,000.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.edge.sites import free_port, http, site_toml, start_daemon, stop_daemon, wait_http
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
from tests.reliability.proxy import UplinkRelay
from tests.servers import MosquittoBroker

CUT_EVENTS = scaled(5_000, 50_000)
EVENTS_PER_CITIZEN = 5


class Hall:
    """Citizens through the HTTP APIs, alternating between the two soft windows."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.citizens = 0

    def post(self, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
        status, answer = http("POST", self.base + path, body)
        assert status in (200, 201), (path, answer)
        return answer

    def sign_in(self) -> None:
        for window in (1, 2):
            self.post(f"/windows/{window}/sign_in", {"staff": f"s{window}"})

    def citizen(self) -> None:
        service = ("shebao", "huji")[self.citizens % 2]
        window = 1 + self.citizens % 2
        self.citizens += 1
        self.post("/tickets", {"service": service})
        self.post(f"/windows/{window}/next")
        self.post(f"/windows/{window}/start_serving")
        self.post(f"/windows/{window}/finish")
        self.post(f"/windows/{window}/rate", {"value": 1 + self.citizens % 5})

    def citizens_for(self, events: int) -> None:
        for _ in range(-(-events // EVENTS_PER_CITIZEN)):
            self.citizen()


def test_broker_and_central_restarts_and_a_day_without_uplink(
    tmp_path: Path, mqtt_broker: MosquittoBroker, fresh_postgres_url: str
) -> None:
    url = fresh_postgres_url
    prepare_central_db(url, tmp_path, [SITE_ID])
    central = CentralProcess(tmp_path, url, mqtt_broker.port)
    relay = UplinkRelay(mqtt_broker.port)
    relay.restore()
    port = free_port()
    config = site_toml(tmp_path, http_port=port, mqtt_port=relay.port, telemetry_seconds=5,
                       extra="[policy]\nnumber_width = 4\n")
    daemon = start_daemon(config, log_path=tmp_path / "daemon.log")
    central.start()
    hall = Hall(port)
    try:
        wait_http(port, daemon)
        hall.sign_in()
        hall.citizens_for(200)

        central.kill()  # kill -9 of the central mid-stream: it has acked only what it committed
        hall.citizens_for(300)
        central.start()
        hall.citizens_for(200)
        wait_until(lambda: central_count(url, SITE_ID) == len(journal_events(config)), 60,
                   "central to catch up after its restart")

        mqtt_broker.stop()  # broker restart mid-stream: both ends reconnect, edge resends
        try:
            hall.citizens_for(300)
        finally:
            mqtt_broker.start()
        hall.citizens_for(200)
        wait_until(lambda: central_count(url, SITE_ID) == len(journal_events(config)), 60,
                   "central to catch up after the broker restart")
        assert_committed_exactly_once(url, journal_events(config))

        relay.cut()  # a simulated day of traffic with the site offline
        before = central_count(url, SITE_ID)
        started = time.monotonic()
        hall.citizens_for(CUT_EVENTS)
        cut_seconds = time.monotonic() - started
        assert central_count(url, SITE_ID) == before, "events crossed a cut uplink"
        relay.restore()
        events = journal_events(config)
        assert len(events) - before >= CUT_EVENTS
        started = time.monotonic()
        wait_until(lambda: central_count(url, SITE_ID) == len(events), 120 + CUT_EVENTS / 100,
                   "the day's backlog to drain after the uplink is back")
        drain_seconds = time.monotonic() - started
        print(f"cut: {len(events) - before} events in {cut_seconds:.1f} s; "
              f"drained in {drain_seconds:.1f} s")
        assert stop_daemon(daemon) == 0
    finally:
        stop_daemon(daemon)
        central.stop()
        relay.cut()
    events = journal_events(config)
    committed = events[:central_count(url, SITE_ID)]
    assert len(committed) >= len(events) - 2  # the stop's own events may stay local
    assert_committed_exactly_once(url, committed)
    assert_stats_match(url, committed)

"""The kiosk's idempotency key: a retried ticket request gets the same ticket, also after
the daemon died between journaling the ticket and answering (kill -9, like test_crash)."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import urllib.error
import urllib.request
import uuid
from collections import Counter
from http.client import HTTPException
from pathlib import Path
from typing import Any

from edge.config import load_config
from edge.journal import Journal
from edge.kiosk import TEST_FAULT_EXIT_AFTER_TICKET_ENV
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import free_port, site_toml, start_daemon, stop_daemon, until, wait_http
from tests.edge.test_http_api import request, with_api
from tests.edge.test_prediction import gated_daemon

RETRYABLE = (OSError, urllib.error.URLError, HTTPException, ValueError)


def post_ticket(base: str, body: dict[str, Any], key: str | None,
                timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["idempotency-key"] = key
    req = urllib.request.Request(f"{base}/tickets", data=json.dumps(body).encode(),
                                 headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def issued_events(config_path: Path) -> list[mm.TicketIssued]:
    config = load_config(config_path)
    with Journal(config.paths.journal, config.site.id, read_only=True) as journal:
        return [e.body for e in journal.events() if isinstance(e.body, mm.TicketIssued)]


def test_the_same_key_gets_the_same_ticket_and_another_request_is_refused(
        tmp_path: Path) -> None:
    async def test(api: Any, hall: Any) -> None:
        key = b"idempotency-key: kiosk-3-0001\r\n"
        body = b'{"service": "shebao"}'
        status, first = await request(api.port, "POST", "/tickets", body, key.decode())
        assert (status, first["number"], first["replayed"]) == (201, "A001", False)
        status, again = await request(api.port, "POST", "/tickets", body, key.decode())
        assert status == 201
        assert again["replayed"] is True
        assert {k: again[k] for k in first if k != "replayed"} == {
            k: first[k] for k in first if k != "replayed"}
        status, other = await request(api.port, "POST", "/tickets",
                                      b'{"service": "huji"}', key.decode())
        assert (status, other["error"]) == (422, "key_reused")
        status, bad = await request(api.port, "POST", "/tickets", body,
                                    "idempotency-key: has space\r\n")
        assert (status, bad["error"]) == (422, "bad_key")
        status, fresh = await request(api.port, "POST", "/tickets", body,
                                      "idempotency-key: kiosk-3-0002\r\n")
        assert (status, fresh["number"]) == (201, "A002")
        assert len(hall.dispatcher.tickets()) == 2

    with_api(tmp_path, test)


def test_a_retry_while_the_first_request_is_still_answered_waits_for_its_ticket(
        tmp_path: Path) -> None:
    """The kiosk gives up and retries while the prediction still runs: one ticket."""
    async def scenario() -> None:
        async with gated_daemon(tmp_path, budget_s=5.0) as (daemon, base, gate):
            hall = daemon.hall
            assert hall is not None
            first = asyncio.create_task(asyncio.to_thread(
                post_ticket, base, {"service": "shebao"}, "k-1", 10.0))
            await until(lambda: gate.started.is_set(), "the first prediction runs")
            retry = asyncio.create_task(asyncio.to_thread(
                post_ticket, base, {"service": "shebao"}, "k-1", 10.0))
            await asyncio.sleep(0.3)
            gate.release.set()
            (status_1, one), (status_2, two) = await first, await retry
            assert (status_1, status_2) == (201, 201)
            assert one["number"] == two["number"] == "A001"
            assert (one["replayed"], two["replayed"]) == (False, True)
            assert len(hall.dispatcher.tickets()) == 1

    asyncio.run(scenario())


def test_a_ticket_journaled_but_not_answered_is_answered_on_retry(tmp_path: Path) -> None:
    """The daemon dies right after the ticket is journaled, before the kiosk hears of it:
    the kiosk's retry gets that ticket, and no second one is journaled."""
    port = free_port()
    config_path = site_toml(tmp_path, http_port=port)
    base = f"http://127.0.0.1:{port}"
    process = start_daemon(config_path, env={TEST_FAULT_EXIT_AFTER_TICKET_ENV: "1"},
                           log_path=tmp_path / "first.log")
    wait_http(port, process)
    try:
        post_ticket(base, {"service": "shebao", "print": True}, "kiosk-1-42")
        raise AssertionError("the daemon answered though it should have died first")
    except RETRYABLE:
        pass
    assert process.wait(timeout=10) == 87
    assert [t.ticket for t in issued_events(config_path)] == ["A001"]
    process = start_daemon(config_path, log_path=tmp_path / "second.log")
    try:
        wait_http(port, process)
        status, body = post_ticket(base, {"service": "shebao", "print": True}, "kiosk-1-42")
        assert (status, body["number"], body["replayed"]) == (201, "A001", True)
        status, body = post_ticket(base, {"service": "shebao"}, "kiosk-1-43")
        assert (status, body["number"]) == (201, "A002")
    finally:
        assert stop_daemon(process) == 0
    assert [t.ticket for t in issued_events(config_path)] == ["A001", "A002"]


def test_kill_9_mid_answer_leaves_no_ticket_the_kiosk_never_saw(tmp_path: Path) -> None:
    """A kiosk retries each request with its key until it is answered; kill -9 at random
    moments. Every journaled ticket is one a kiosk was answered with, once."""
    rng = random.Random(20261207)
    port = free_port()
    config_path = site_toml(tmp_path, http_port=port, extra="\n[policy]\nnumber_width = 4\n")
    base = f"http://127.0.0.1:{port}"
    answered: dict[str, str] = {}  # key -> number
    key = str(uuid.uuid4())
    lives = 5
    process = None
    for life in range(lives + 1):
        process = start_daemon(config_path, log_path=tmp_path / "daemon.log")
        wait_http(port, process)
        killer = None
        if life < lives:
            killer = threading.Timer(rng.uniform(0.1, 0.5), process.kill)
            killer.start()
        requests = 0
        while process.poll() is None and (life < lives or requests < 10):
            requests += 1
            try:
                status, body = post_ticket(base, {"service": "shebao"}, key, timeout=2)
            except RETRYABLE:
                continue  # killed mid-request: retry the same key in the next life
            assert status == 201, body
            assert key not in answered
            answered[key] = body["number"]
            key = str(uuid.uuid4())
        if killer is not None:
            killer.join()
            process.wait()
    assert process is not None
    assert stop_daemon(process) == 0
    numbers = [t.ticket for t in issued_events(config_path)]
    assert len(numbers) == len(set(numbers)), Counter(numbers).most_common(3)
    assert sorted(numbers) == sorted(answered.values())  # no ticket nobody was told of
    assert len(answered) > 20

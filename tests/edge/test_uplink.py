"""The MQTT uplink against a real Mosquitto: delivery until ack, outages, commands.

The tests of the contract itself also run against amqtt (tests/brokers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from edge.clock import ManualClock, SystemClock
from edge.config import load_config
from edge.daemon import EdgeDaemon
from edge.hall import Hall, open_hall
from edge.uplink import AdviceSource, Uplink, backoff_delay, host_stats, readable_command_id
from firmware_protocols import mqtt_messages as mm
from firmware_protocols import mqtt_topics as topics
from onedoor.broker import Broker
from tests.brokers import AMQTT_KEEPS_NO_ANONYMOUS_SESSION, mqtt_protocol, on_both_brokers
from tests.edge.central_probe import CentralProbe, wait_for
from tests.edge.sites import free_port, http, site_toml
from tests.edge.test_hall import OPENING
from tests.servers import MosquittoBroker


async def until(condition: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def run_with_uplink(tmp_path: Path, broker: Broker,
                    body: Callable[[Hall, Uplink], Awaitable[None]],
                    resend_s: float = 30.0, advice: AdviceSource | None = None) -> None:
    config = load_config(site_toml(tmp_path, mqtt_port=broker.port,
                                   mqtt_protocol=mqtt_protocol(broker)))
    assert config.mqtt is not None
    hall = open_hall(config, ManualClock(OPENING))
    hall.journal.grant(0, [], ts_ms=OPENING, clock_synced=True)  # as a central grants a new site

    async def noop(cmd: mm.Cmd) -> None:
        return None

    async def main() -> None:
        uplink = Uplink(config.site.id, config.mqtt, hall.journal, SystemClock(),  # type: ignore[arg-type]
                        software="test-1", boot_id="boot1", config_version=lambda: "v1",
                        commands=noop, backoff_base_s=0.05, backoff_cap_s=0.5,
                        rng=random.Random(1), resend_s=resend_s, advice=advice)
        hall.subscribe(lambda event: uplink.wake())
        task = asyncio.create_task(uplink.run())
        try:
            await body(hall, uplink)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        asyncio.run(main())
    finally:
        hall.journal.close()


def busy_day(hall: Hall, clock: ManualClock, tickets: int) -> None:
    """A day's traffic: tickets at both services, two windows calling and finishing."""
    hall.sign_in(1, "zhang01")
    hall.sign_in(2, "li02")
    for i in range(tickets):
        hall.issue("shebao" if i % 3 else "huji")
        clock.advance(40)
        if i % 2:
            window = 1 + (i // 2) % 2
            if hall.call_next(window) is not None and i % 4 == 1:
                hall.rate(window, 5) if hall.finish(window) else None
        hall.tick()


def test_backoff_is_capped_full_jitter() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(attempt, 0.5, 10.0, rng) for attempt in range(40)]
    assert all(0 <= d <= 10.0 for d in delays)
    assert max(delays[:3]) <= 2.0
    assert len(set(delays)) == len(delays)  # jittered, not a fixed ladder


def test_host_stats_reads_the_host(tmp_path: Path) -> None:
    thermal = tmp_path / "thermal" / "thermal_zone0"
    thermal.mkdir(parents=True)
    (thermal / "temp").write_text("48312\n")
    stats = host_stats(tmp_path, thermal=tmp_path / "thermal")
    assert stats.cpu_temp_c == pytest.approx(48.312)
    assert 0 < stats.mem_used_pct < 100
    assert 0 < stats.disk_used_pct <= 100
    assert host_stats(tmp_path, thermal=tmp_path / "none").cpu_temp_c is None


@on_both_brokers()
def test_events_are_delivered_and_the_outbox_drains_on_ack(
        tmp_path: Path, contract_broker: Broker) -> None:
    probe = CentralProbe(contract_broker.host, contract_broker.port, "test-site")

    async def body(hall: Hall, uplink: Uplink) -> None:
        await until(lambda: uplink.connected, what="connect")
        for _ in range(20):
            hall.issue("shebao")
        await until(lambda: hall.journal.acked_seq == hall.journal.last_seq, what="acks")
        assert probe.seqs() == list(range(1, hall.journal.last_seq + 1))
        online = [s for s in probe.states if s.status == "online"]
        assert online
        assert online[-1].session == uplink.session
        assert not online[-1].lwt

    try:
        run_with_uplink(tmp_path, contract_broker, body)
        wait_for(lambda: probe.states and probe.states[-1].status == "offline", what="offline")
        assert probe.states[-1].lwt is False  # a clean goodbye, not the Will
    finally:
        probe.close()


def test_offline_day_then_every_event_arrives_once(
        tmp_path: Path, mqtt_broker: MosquittoBroker) -> None:
    """Broker down for a simulated day of traffic, then back: each seq arrives exactly once."""
    probe = CentralProbe(mqtt_broker.host, mqtt_broker.port, "test-site")
    probe.close()

    async def body(hall: Hall, uplink: Uplink) -> None:
        await until(lambda: uplink.connected, what="first connect")
        mqtt_broker.stop()
        await until(lambda: not uplink.connected, what="disconnect")
        assert isinstance(hall.clock, ManualClock)
        busy_day(hall, hall.clock, 300)
        total = hall.journal.last_seq
        assert hall.journal.acked_seq < total
        await asyncio.sleep(1.0)  # a few failed reconnects with backoff
        mqtt_broker.start()
        central = CentralProbe(mqtt_broker.host, mqtt_broker.port, "test-site")
        try:
            await until(lambda: hall.journal.acked_seq == total, timeout=60, what="all acked")
            await asyncio.sleep(0.3)
            seqs = central.seqs()
            acked_before = seqs[0] - 1
            assert seqs == list(range(acked_before + 1, total + 1))  # in order, none twice
            assert acked_before <= 2  # only what was acked before the outage is not resent
            assert uplink.connects >= 2
        finally:
            central.close()

    try:
        run_with_uplink(tmp_path, mqtt_broker, body)
    finally:
        mqtt_broker.start()


@on_both_brokers()
def test_unacked_events_are_resent_after_a_reconnect(
        tmp_path: Path, contract_broker: Broker) -> None:
    silent = CentralProbe(contract_broker.host, contract_broker.port, "test-site", ack=False)

    async def body(hall: Hall, uplink: Uplink) -> None:
        await until(lambda: uplink.connected, what="connect")
        for _ in range(5):
            hall.issue("huji")
        await until(lambda: len(silent.seqs()) >= hall.journal.last_seq, what="first send")
        assert hall.journal.acked_seq == 0
        contract_broker.stop()
        await until(lambda: not uplink.connected, what="disconnect")
        contract_broker.start()
        central = CentralProbe(contract_broker.host, contract_broker.port, "test-site")
        try:
            await until(lambda: hall.journal.acked_seq == hall.journal.last_seq, what="acked")
            assert central.seqs() == list(range(1, hall.journal.last_seq + 1))
        finally:
            central.close()

    try:
        run_with_uplink(tmp_path, contract_broker, body)
    finally:
        silent.close()
        contract_broker.start()


def test_advice_goes_out_when_it_changes_and_again_on_each_connection(
        tmp_path: Path, mqtt_broker: MosquittoBroker) -> None:
    """The latest staffing advice: once per change, again after a reconnect (the central
    may have missed it), never once expired."""
    probe = CentralProbe(mqtt_broker.host, mqtt_broker.port, "test-site")
    latest: list[mm.Advice] = []
    outlook = mm.AdviceOutlook(service="shebao", sla_s=1800, p90_s=2400, over_sla_pct=20.0,
                               breach_pct=90.0, tickets=12.0)

    def advice(ts: int, ttl_ms: int = 60_000) -> mm.Advice:
        advisory = mm.Advisory(
            id=uuid.UUID(int=7), since_ts=ts, horizon_s=3600, breaching=["shebao"],
            move=None, before=[outlook], after=None,
            message_zh="未来60分钟社保医保预计p90等候40分钟",
            message_en="Next 60 min: shebao p90 40 min")
        return mm.Advice(site="test-site", session=1, ts=ts, clock_synced=True,
                         expires_ts=ts + ttl_ms, advisory=advisory)

    def source(session: int) -> mm.Advice | None:
        return msgspec.structs.replace(latest[-1], session=session) if latest else None

    async def body(hall: Hall, uplink: Uplink) -> None:
        await until(lambda: uplink.connected, what="connect")
        now = int(time.time() * 1000)
        latest.append(advice(now))
        uplink.wake()
        await until(lambda: len(probe.advice) == 1, what="the advice")
        assert probe.advice[0].session == uplink.session
        await asyncio.sleep(1.5)  # a turn of the pump or more: unchanged, not sent again
        assert len(probe.advice) == 1
        mqtt_broker.stop()
        await until(lambda: not uplink.connected, what="disconnect")
        mqtt_broker.start()
        again = CentralProbe(mqtt_broker.host, mqtt_broker.port, "test-site")
        try:
            await until(lambda: len(again.advice) == 1, what="sent again on reconnect")
            assert again.advice[0].ts == now
            assert again.advice[0].session == uplink.session > probe.advice[0].session
            latest.append(advice(now - 120_000))  # changed, but expired a minute ago
            uplink.wake()
            await asyncio.sleep(1.5)
            assert len(again.advice) == 1
            latest.append(advice(int(time.time() * 1000)))
            uplink.wake()
            await until(lambda: len(again.advice) == 2, what="the next one")
        finally:
            again.close()

    try:
        run_with_uplink(tmp_path, mqtt_broker, body, advice=source)
    finally:
        probe.close()
        mqtt_broker.start()


def test_after_a_quiet_spell_the_next_event_is_not_resent_at_once(
        tmp_path: Path, mqtt_broker: MosquittoBroker) -> None:
    """The resend clock starts at the first unacked send, not at the last ack (hours ago)."""
    probe = CentralProbe(mqtt_broker.host, mqtt_broker.port, "test-site")

    async def body(hall: Hall, uplink: Uplink) -> None:
        await until(lambda: uplink.connected, what="connect")
        hall.issue("shebao")
        await until(lambda: hall.journal.acked_seq == hall.journal.last_seq, what="acked")
        await asyncio.sleep(4.5)  # all acked, quiet for longer than resend_s
        probe.ack_enabled = False  # the central is slow now
        hall.issue("shebao")
        new = hall.journal.last_seq
        await asyncio.sleep(2.0)  # well inside resend_s of the send
        assert probe.seqs().count(new) == 1, probe.seqs()
        await until(lambda: probe.seqs().count(new) == 2, timeout=10, what="the resend")

    try:
        run_with_uplink(tmp_path, mqtt_broker, body, resend_s=4.0)
    finally:
        probe.close()


@on_both_brokers()
def test_malformed_commands_get_error_results_and_the_daemon_keeps_serving(
        tmp_path: Path, contract_broker: Broker) -> None:
    port = free_port()
    config_path = site_toml(tmp_path, mqtt_port=contract_broker.port,
                            mqtt_protocol=mqtt_protocol(contract_broker), http_port=port)
    probe = CentralProbe(contract_broker.host, contract_broker.port, "test-site")
    cmd_topic = topics.cmd_topic("test-site", "reprint")

    def raw_cmd(**changes: Any) -> tuple[uuid.UUID, bytes]:
        command_id = uuid.uuid4()
        now = int(time.time() * 1000)
        payload: dict[str, object] = {
            "v": 1, "site": "test-site", "id": str(command_id), "issued_ts": now,
            "expires_ts": now + 60_000, "args": {"name": "reprint", "ticket": "A001"}}
        payload.update(changes)
        return command_id, json.dumps(payload).encode()

    async def main() -> None:
        daemon = EdgeDaemon(config_path, install_signals=False)
        task = asyncio.create_task(daemon.run())
        await daemon.ready.wait()
        await until(lambda: daemon.uplink is not None and daemon.uplink.connected, what="up")
        cases: list[tuple[uuid.UUID, str]] = []
        scenarios: list[tuple[dict[str, Any], str]] = [
            ({"v": 2}, "version"),
            ({"bogus": True}, "schema"),
            ({"args": {"name": "reprint", "ticket": "bad number"}}, "schema"),
            ({"args": {"name": "announce", "text": "x", "repeat": 1}}, "command_mismatch"),
            ({"site": "other-site"}, "site_mismatch"),
            ({"issued_ts": OPENING, "expires_ts": OPENING + 1000}, "expired"),
            ({}, "unknown ticket A001"),
        ]
        for changes, expected in scenarios:
            command_id, payload = raw_cmd(**changes)
            probe.publish_raw(cmd_topic, payload)
            cases.append((command_id, expected))
        probe.publish_raw(cmd_topic, b"{not json")
        probe.publish_raw(cmd_topic, b'{"v": 1, "id": 12}')
        probe.publish_raw(cmd_topic, b"\xff" * 5000)
        await until(lambda: all(probe.result(c) for c, _ in cases), what="results")
        for command_id, expected in cases:
            result = probe.result(command_id)
            assert result is not None
            assert not result.ok
            assert result.error is not None
            assert expected in result.error, (expected, result)
        notice = probe.command(mm.ScreenNoticeArgs(text="系统维护", screen=None, duration_s=60))
        reload = probe.command(mm.ReloadConfigArgs(version="v1"))
        wrong = probe.command(mm.ReloadConfigArgs(version="v9"))
        await until(lambda: all(probe.result(c) for c in (notice, reload, wrong)), what="more")
        assert probe.result(notice).error == "this site has no LED screens"  # type: ignore[union-attr]
        assert probe.result(reload).ok  # type: ignore[union-attr]
        assert "expected 'v9'" in probe.result(wrong).error  # type: ignore[union-attr,operator]
        status, ticket = await asyncio.to_thread(
            http, "POST", f"http://127.0.0.1:{port}/tickets", {"service": "shebao"})
        assert status == 201
        assert ticket["number"] == "A001"
        assert daemon.supervisor.restarts == dict.fromkeys(daemon.supervisor.restarts, 0)
        daemon.stop()
        await task

    try:
        asyncio.run(main())
    finally:
        probe.close()


@pytest.mark.parametrize(("payload", "found"), [
    (b'{"v": 1, "id": "%s", "args": {"name": "announce", "text": "\xff\xfe"}}', True),
    (b'{"v": 1, "id": "%s", "args": ' + b"[" * 1500 + b"]" * 1500 + b"}", True),
    (b'{"id": "%s", "pad": "' + b"x" * 5000 + b'"}', True),  # too large to parse
    (b'{"v": 1, "args": {"id": 7}}', False),
    (b"\xff" * 5000, False),
    (b"[" * 100_000, False),
])
def test_a_command_id_is_read_without_parsing_what_cannot_be(payload: bytes,
                                                             found: bool) -> None:
    command_id = uuid.uuid4()
    if b"%s" in payload:
        payload = payload.replace(b"%s", str(command_id).encode())
    assert readable_command_id(payload) == (command_id if found else None)


def test_commands_that_are_not_utf8_nested_too_deep_or_too_large_get_a_result(
        tmp_path: Path, mqtt_broker: MosquittoBroker) -> None:
    """Every refused command with a readable id is answered, and nothing escapes the
    uplink (a nested payload used to raise RecursionError out of the message callback)."""
    port = free_port()
    config_path = site_toml(tmp_path, mqtt_port=mqtt_broker.port, http_port=port)
    probe = CentralProbe(mqtt_broker.host, mqtt_broker.port, "test-site")
    topic = topics.cmd_topic("test-site", "announce")
    leaked: list[dict[str, Any]] = []

    def payload(command_id: uuid.UUID, args: bytes) -> bytes:
        now = int(time.time() * 1000)
        return (b'{"v": 1, "site": "test-site", "id": "%s", "issued_ts": %d, "expires_ts": %d, '
                b'"args": %s}' % (str(command_id).encode(), now, now + 60_000, args))

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: leaked.append(ctx))
        daemon = EdgeDaemon(config_path, install_signals=False)
        task = asyncio.create_task(daemon.run())
        await daemon.ready.wait()
        await until(lambda: daemon.uplink is not None and daemon.uplink.connected, what="up")
        cases = {
            "not UTF-8": b'{"name": "announce", "text": "\xe7\xb3\xbb\xff", "repeat": 1}',
            "nested": b'{"name": "announce", "text": ' + b"[" * 1500 + b"]" * 1500
                      + b', "repeat": 1}',
            "too large": b'{"name": "announce", "text": "' + "很".encode() * 30_000
                         + b'", "repeat": 1}',
        }
        sent = {}
        for name, args in cases.items():
            sent[name] = uuid.uuid4()
            probe.publish_raw(topic, payload(sent[name], args))
        await until(lambda: all(probe.result(c) for c in sent.values()), what="results")
        errors = {name: probe.result(c).error for name, c in sent.items()}  # type: ignore[union-attr]
        assert "json" in errors["not UTF-8"], errors
        assert "json" in errors["nested"], errors
        assert "too_large" in errors["too large"], errors
        assert not any(probe.result(c).ok for c in sent.values())  # type: ignore[union-attr]
        status, _ = await asyncio.to_thread(
            http, "POST", f"http://127.0.0.1:{port}/tickets", {"service": "shebao"})
        assert status == 201
        assert daemon.supervisor.restarts == dict.fromkeys(daemon.supervisor.restarts, 0)
        daemon.stop()
        await task

    try:
        asyncio.run(main())
    finally:
        probe.close()
    assert leaked == []


@on_both_brokers(amqtt_fails=AMQTT_KEEPS_NO_ANONYMOUS_SESSION)
def test_a_command_sent_while_the_edge_is_offline_runs_when_it_comes_back(
        tmp_path: Path, contract_broker: Broker) -> None:
    """The broker keeps the edge's session: a command waits there until the edge is back,
    and one whose TTL ran out meanwhile is answered expired, not run."""
    _offline_command_waits(tmp_path, contract_broker, mqtt_protocol(contract_broker))


def test_over_mqtt_3_1_1_a_fresh_journals_first_session_is_kept_too(
        tmp_path: Path, mqtt_broker: MosquittoBroker) -> None:
    """3.1.1 has no clean start with a kept session: the edge ends the earlier journal's
    session with a clean connection of its own first (its first real session was clean
    and ended at the disconnect, losing the command sent meanwhile)."""
    _offline_command_waits(tmp_path, mqtt_broker, "3.1.1")


def _offline_command_waits(tmp_path: Path, broker: Broker, protocol: str) -> None:
    config_path = site_toml(tmp_path, mqtt_port=broker.port, mqtt_protocol=protocol,
                            http_port=free_port())
    probe = CentralProbe(broker.host, broker.port, "test-site")

    async def connected_once() -> None:
        daemon = EdgeDaemon(config_path, install_signals=False)
        task = asyncio.create_task(daemon.run())
        await daemon.ready.wait()
        await until(lambda: daemon.uplink is not None and daemon.uplink.connected, what="up")
        daemon.stop()  # a clean offline; the broker keeps the session
        await task

    try:
        # One connection of a fresh journal, over either protocol: its session is kept
        # (over 3.1.1 the earlier journal's is ended by a clean connection before it).
        asyncio.run(connected_once())
        reload = probe.command(mm.ReloadConfigArgs(version="v1"))
        short = probe.command(mm.ReloadConfigArgs(version="v1"), ttl_ms=1000)
        time.sleep(1.2)  # the short one's TTL runs out while the edge is offline
        asyncio.run(_waiting_for_results(config_path, probe, [reload, short]))
        assert probe.result(reload).ok  # type: ignore[union-attr]
        assert "expired" in (probe.result(short).error or "")  # type: ignore[union-attr]
    finally:
        probe.close()


async def _waiting_for_results(config_path: Path, probe: CentralProbe,
                               commands: list[uuid.UUID]) -> None:
    daemon = EdgeDaemon(config_path, install_signals=False)
    task = asyncio.create_task(daemon.run())
    try:
        await daemon.ready.wait()
        await until(lambda: daemon.uplink is not None and daemon.uplink.connected, what="up")
        # A kept session delivers its queue at the connect: 10 s is ample (and is what the
        # strict xfail on a broker that keeps no session costs).
        await until(lambda: all(probe.result(c) for c in commands), timeout=10,
                    what="the results of the commands sent while offline")
    finally:
        daemon.stop()
        await task

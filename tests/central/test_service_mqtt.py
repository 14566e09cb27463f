"""CentralService against a real Mosquitto, with simulated sites, on SQLite and PostgreSQL.

The tests of the contract itself also run against amqtt (tests/brokers.py)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from central.alarms import WebhookNotifier
from central.config import CentralConfig
from central.errors import CommandRefused
from central.ingest import reject_counts
from central.models import AlarmType, Command, CommandStatus, EventRecord
from central.queries import ReadModel
from central.service import CentralService
from central.views import SiteState
from firmware_protocols import mqtt_messages as mm
from onedoor.broker import Broker, bridge_config
from tests.brokers import mqtt_protocol, on_both_brokers_and_databases
from tests.central.conftest import three_sites
from tests.central.edge_sim import EdgeClient
from tests.central.http_capture import capture_server
from tests.central.sim import SimSite, called
from tests.servers import MosquittoBroker


@pytest.fixture
def sites(
    sessions: sessionmaker[Session], tmp_path: Path, contract_broker: Broker
) -> Iterator[list[str]]:
    """Three sites with ids unique to this test, on the broker the test runs on."""
    yield from three_sites(sessions, tmp_path, contract_broker)


def _config(broker: Broker, db_url: str, **changes: Any) -> CentralConfig:
    return CentralConfig(
        database_url=db_url,
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_protocol=mqtt_protocol(broker),
        mqtt_client_id=f"central-{uuid.uuid4().hex[:8]}",
        mqtt_group=f"g{uuid.uuid4().hex[:8]}",
        mqtt_session_expiry_s=0,
        batch_max_wait_ms=20,
        alarm_tick_s=3600,
    ).replace(**changes)


def site_state(central: CentralService, site_id: str) -> SiteState:
    """What the read model shows of ``site_id`` over the service's database."""
    return ReadModel(central.sessions).site_state(site_id)


async def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def _connected(central: CentralService) -> None:
    await _until(lambda: central.mqtt.connected)
    await asyncio.sleep(0.2)  # let the SUBACK arrive before edges publish


def _run(coroutine: Awaitable[None]) -> None:
    asyncio.run(coroutine)  # type: ignore[arg-type]


@on_both_brokers_and_databases()
def test_events_are_acked_only_after_commit(
    contract_broker: Broker,
    db_url: str,
    engine: Engine,
    sessions: sessionmaker[Session],
    sites: list[str],
) -> None:
    site_id = sites[1]

    async def main() -> None:
        async with CentralService(_config(contract_broker, db_url), engine=engine) as central:
            await _connected(central)
            sim = SimSite(site_id)
            edge = await asyncio.to_thread(
                EdgeClient, contract_broker.host, contract_broker.port, sim
            )
            try:
                edge.send(sim.state("online"))
                events = [sim.event(called(f"Z{n:03d}")) for n in range(1, 21)]
                edge.send(*events, sim.telemetry(waiting=3))
                edge.send_raw(f"onedoor/v1/{site_id}/event", b'{"v":1,"site":')
                edge.send_raw(f"onedoor/v1/{site_id}/telemetry", b'{"v":1}')
                await asyncio.to_thread(edge.wait_ack, 20)
                with sessions() as session:  # the ack is only sent once the rows are durable
                    seqs = session.scalars(
                        select(EventRecord.seq).where(EventRecord.site_id == site_id)
                    ).all()
                    assert sorted(seqs) == list(range(1, 21))
                edge.send(*events[5:10])  # resent after a lost ack: deduplicated, acked again
                await _until(lambda: edge.acks.count(20) >= 2)
                await central.wait_idle()
                live = site_state(central, site_id)
                assert live.site.online
                assert live.site.acked_seq == 20
                assert next(s.waiting for s in live.services if s.code == "zonghe") == 3
                assert {(r.reason, r.count) for r in live.rejects} == {("json", 1), ("schema", 1)}
            finally:
                edge.close()
        with sessions() as session:
            assert (
                session.scalar(
                    select(func.count())
                    .select_from(EventRecord)
                    .where(EventRecord.site_id == site_id)
                )
                == 20
            )

    _run(main())


@on_both_brokers_and_databases()
def test_stale_will_from_broker_is_ignored(
    contract_broker: Broker,
    db_url: str,
    engine: Engine,
    sites: list[str],
) -> None:
    site_id = sites[2]

    async def main() -> None:
        async with CentralService(_config(contract_broker, db_url), engine=engine) as central:
            await _connected(central)
            old = SimSite(site_id, session=1, boot_id="boot-a")
            new = SimSite(site_id, session=2, boot_id="boot-b")
            first = await asyncio.to_thread(
                EdgeClient, contract_broker.host, contract_broker.port, old, client_id="edge-a"
            )
            first.send(old.state("online"))
            # The edge reboots: a new connection (new client id) says online before the old
            # half-open connection times out; then the broker fires the old Will.
            second = await asyncio.to_thread(
                EdgeClient, contract_broker.host, contract_broker.port, new, client_id="edge-b"
            )
            second.send(new.state("online"))
            await _until(lambda: site_state(central, site_id).site.mqtt_session == 2)
            first.die()
            await _until(lambda: central.received >= 3)
            await central.wait_idle()
            live = site_state(central, site_id)
            assert (live.site.online, live.site.mqtt_session, live.alarms) == (True, 2, [])
            second.die()
            await _until(lambda: not site_state(central, site_id).site.online)
            (alarm,) = site_state(central, site_id).alarms
            assert (alarm.type, alarm.detail["cause"]) == (AlarmType.SITE_OFFLINE, "lwt")

    _run(main())


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_replicas_split_the_load(
    mqtt_broker: MosquittoBroker,
    db_url: str,
    engine: Engine,
    sessions: sessionmaker[Session],
    sites: list[str],
) -> None:
    config = _config(mqtt_broker, db_url)

    async def main() -> None:
        replica_b = config.replace(mqtt_client_id=config.mqtt_client_id + "-b")
        async with (
            CentralService(config, engine=engine) as a,
            CentralService(replica_b, engine=engine, run_migrations=False) as b,
        ):
            await _connected(a)
            await _connected(b)
            sims = [SimSite(s) for s in sites]
            edges = [
                await asyncio.to_thread(EdgeClient, mqtt_broker.host, mqtt_broker.port, s)
                for s in sims
            ]
            try:
                for _ in range(60):
                    for sim, edge in zip(sims, edges, strict=True):
                        edge.send(sim.event(called()))
                for edge in edges:
                    await asyncio.to_thread(edge.wait_ack, 60)
            finally:
                for edge in edges:
                    edge.close()
            assert a.received > 0
            assert b.received > 0  # the shared subscription split the stream
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(EventRecord)) == 180

    _run(main())


@on_both_brokers_and_databases()
def test_command_round_trip_and_webhook(
    contract_broker: Broker,
    db_url: str,
    engine: Engine,
    sessions: sessionmaker[Session],
    sites: list[str],
) -> None:
    site_id = sites[0]

    async def main(webhook: str) -> None:
        config = _config(contract_broker, db_url, webhook_url=webhook)
        notifier = WebhookNotifier(webhook, attempts=1)
        async with CentralService(config, engine=engine, notifier=notifier) as central:
            await _connected(central)
            sim = SimSite(site_id)
            edge = await asyncio.to_thread(
                EdgeClient, contract_broker.host, contract_broker.port, sim
            )
            try:
                command = await central.send_command(
                    site_id, mm.ReprintArgs(ticket="Z001"), ttl_s=60, issued_by="ops-li"
                )
                received = await asyncio.to_thread(edge.wait_command)
                assert received == command
                assert not received.expired(received.issued_ts + 59_000)
                edge.send(
                    mm.CmdResult(
                        site=site_id,
                        id=received.id,
                        ok=True,
                        error=None,
                        ts=received.issued_ts + 500,
                    )
                )
                edge.send(
                    sim.event(
                        mm.DeviceStatus(
                            device="printer-1", kind="printer", status="fault", detail="paper_out"
                        )
                    )
                )
                await _until(lambda: notifier.sent >= 1)
                (alarm,) = site_state(central, site_id).alarms
                central.acknowledge_alarm(alarm.id, "ops-li")
                await _until(lambda: notifier.sent >= 2)
            finally:
                edge.close()
        with sessions() as session:
            stored = session.get_one(Command, command.id)
            assert (stored.status, stored.issued_by) == (CommandStatus.SUCCEEDED, "ops-li")

    with capture_server() as server:
        _run(main(server.url))
        bodies = [json.loads(r.body) for r in server.requests]
    assert [(b["action"], b["type"], b["device"]) for b in bodies] == [
        ("raised", "device_fault", "printer-1"),
        ("acknowledged", "device_fault", "printer-1"),
    ]
    assert bodies[1]["actor"] == "ops-li"


@on_both_brokers_and_databases(("sqlite",))
def test_broker_outage_loses_nothing(
    contract_broker: Broker,
    db_url: str,
    engine: Engine,
    sessions: sessionmaker[Session],
    sites: list[str],
) -> None:
    site_id = sites[1]

    async def main() -> None:
        config = _config(contract_broker, db_url, mqtt_session_expiry_s=600)
        async with CentralService(config, engine=engine) as central:
            await _connected(central)
            sim = SimSite(site_id)
            events = [sim.event(called()) for _ in range(10)]
            edge = await asyncio.to_thread(
                EdgeClient, contract_broker.host, contract_broker.port, sim
            )
            edge.send(*events[:5])
            await asyncio.to_thread(edge.wait_ack, 5)
            edge.close()
            contract_broker.stop()
            await _until(lambda: not central.mqtt.connected)
            contract_broker.start()
            await _until(lambda: central.mqtt.connected, timeout=40)
            await asyncio.sleep(0.3)
            edge = await asyncio.to_thread(
                EdgeClient, contract_broker.host, contract_broker.port, sim
            )
            try:
                edge.send(*events[5:])
                await asyncio.to_thread(edge.wait_ack, 10)
            finally:
                edge.close()
        with sessions() as session:
            assert {k: n for k, n in reject_counts(session).items() if k[0] == site_id} == {}
            assert session.scalar(select(func.count()).select_from(EventRecord)) == 10

    started = time.monotonic()
    _run(main())
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_alarm_timer_and_acknowledgement_through_the_service(
    mqtt_broker: MosquittoBroker,
    db_url: str,
    engine: Engine,
    sites: list[str],
) -> None:
    site_id = sites[1]
    clock = {"now": datetime(2026, 11, 23, 9, 0, tzinfo=UTC)}

    async def main() -> None:
        config = _config(mqtt_broker, db_url, offline_after_s=60)
        async with CentralService(config, engine=engine, clock=lambda: clock["now"]) as central:
            await _connected(central)
            sim = SimSite(site_id)
            edge = await asyncio.to_thread(EdgeClient, mqtt_broker.host, mqtt_broker.port, sim)
            try:
                edge.send(sim.state("online"))
                await _until(lambda: site_state(central, site_id).site.online)
                assert await central.run_alarm_rules() == []
                clock["now"] += timedelta(seconds=61)  # nothing heard for a minute
                (notice,) = [n for n in await central.run_alarm_rules() if n.site_id == site_id]
                assert (notice.type, notice.detail["cause"]) == ("site_offline", "silence")
                (alarm,) = site_state(central, site_id).alarms
                acknowledged = central.acknowledge_alarm(alarm.id, "ops-wang", "打电话确认")
                assert acknowledged.acknowledged_by == "ops-wang"
                edge.send(sim.telemetry())  # heard from again: cleared
                await _until(lambda: site_state(central, site_id).alarms == [])
            finally:
                edge.close()

    _run(main())


def test_send_command_refuses_what_the_contract_refuses(
    mqtt_broker: MosquittoBroker, db_url: str
) -> None:
    """The service's own callers get the contract's reason too, and nothing is recorded."""

    async def main() -> None:
        service = CentralService(_config(mqtt_broker, db_url))
        with pytest.raises(CommandRefused, match="expires_ts - issued_ts must be in"):
            await service.send_command("zs-sanxiang-01", mm.ReprintArgs(ticket="A001"),
                                       ttl_s=10**6)  # fmt: skip
        with service.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Command)) == 0
        service.engine.dispose()

    _run(main())


def test_a_site_on_a_bridged_broker_is_served_like_one_on_the_hub(
    mqtt_broker: MosquittoBroker,
    db_url: str,
    engine: Engine,
    sessions: sessionmaker[Session],
    sites: list[str],
    tmp_path: Path,
) -> None:
    """Two Mosquittos joined by ``bridge_config``: the central on the hub, a site on the
    spoke. Its state, events and Will reach the central; acks and commands reach it."""
    spoke = MosquittoBroker(tmp_path / "spoke", extra_config=bridge_config(
        f"spoke-{uuid.uuid4().hex[:6]}", mqtt_broker.host, mqtt_broker.port))  # fmt: skip
    spoke.start()
    site_id = sites[1]

    async def main() -> None:
        async with CentralService(_config(mqtt_broker, db_url), engine=engine) as central:
            await _connected(central)
            sim = SimSite(site_id)
            edge = await asyncio.to_thread(EdgeClient, spoke.host, spoke.port, sim)
            try:
                await asyncio.sleep(1.0)  # the bridge has subscribed on the hub
                edge.send(sim.state("online"), *(sim.event(called()) for _ in range(10)))
                await asyncio.to_thread(edge.wait_ack, 10)
                await central.send_command(site_id, mm.ReprintArgs(ticket="A001"))
                command = await asyncio.to_thread(edge.wait_command)
                assert command.args == mm.ReprintArgs(ticket="A001")
                await _until(lambda: site_state(central, site_id).site.online)
                edge.die()  # the Will, published on the spoke, goes over the bridge
                await _until(lambda: not site_state(central, site_id).site.online)
            finally:
                edge.close()
        assert site_state(central, site_id).site.acked_seq == 10

    try:
        _run(main())
    finally:
        spoke.stop()

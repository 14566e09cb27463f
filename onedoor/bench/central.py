"""Benchmark: events/s committed end to end through a real Mosquitto, SQLite and PostgreSQL.

The stream is preloaded: persistent MQTT sessions of a bare paho subscriber and
of the central are registered first, then ``sites x events`` contract events
are published and queued by the broker. Each consumer then connects and
drains the same stream on ONE core (this process is pinned with
``sched_setaffinity``; the broker and PostgreSQL run as their own processes):

* bare: a paho subscriber that only counts messages (the ceiling);
* central: :class:`CentralService` — decode, validate, batch insert with
  dedup, contiguous-seq tracking, live state, ack published after commit.

``run()`` is what ``onedoor bench`` calls. Servers: ``ONEDOOR_BENCH_MQTT``
(``host:port``) and ``ONEDOOR_BENCH_PG_URL``, else throwaway ones are started
with the helpers in ``tests/servers.py`` (a source checkout).
``python -m onedoor.bench.central`` also writes ``docs/bench/central_ingest.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from central.config import CentralConfig
from central.db import make_engine, migrate, session_factory
from central.ingest import IngestProcessor, Received
from central.models import Site, SiteKind
from central.service import CentralService
from central.stages import STAGES
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.mqtt_topics import central_subscriptions, event_topic

log = structlog.get_logger(__name__)

SITES = 50
EVENTS_PER_SITE = 200
REPEATS = 5
"""Runs per database: the bench machine is shared and noisy (median and range reported)."""


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)


def _connect(client: mqtt.Client, host: str, port: int, *, clean: bool) -> None:
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 3600
    client.connect(host, port, keepalive=60, clean_start=clean, properties=properties)
    client.loop_start()
    if not connected.wait(10):
        raise TimeoutError(f"no CONNACK from {host}:{port}")


def _register_session(host: str, port: int, client_id: str, filters: list[tuple[str, int]]) -> None:
    """Create a persistent session with subscriptions, so the broker queues the stream for it."""
    client = _client(client_id)
    _connect(client, host, port, clean=True)
    done = threading.Event()
    client.on_subscribe = lambda *_: done.set()
    client.subscribe(filters)
    if not done.wait(10):
        raise TimeoutError("no SUBACK")
    client.disconnect()
    client.loop_stop()


def _publish_stream(host: str, port: int, site_ids: list[str], events_per_site: int) -> int:
    publisher = _client(f"bench-pub-{uuid.uuid4().hex[:6]}")
    publisher.max_inflight_messages_set(1000)
    _connect(publisher, host, port, clean=True)
    infos = []
    body = mm.TicketCalled(ticket="Z001", window=1)
    ts = int(time.time() * 1000)
    for seq in range(1, events_per_site + 1):
        for site_id in site_ids:
            event = mm.Event(
                site=site_id, seq=seq, id=uuid.uuid4(), ts=ts, clock_synced=True, body=body
            )
            infos.append(publisher.publish(event_topic(site_id), mm.encode(event), qos=1))
    for info in infos:
        info.wait_for_publish(60)
    publisher.disconnect()
    publisher.loop_stop()
    return len(infos)


def _drain_bare(host: str, port: int, client_id: str, expected: int) -> float:
    client = _client(client_id)
    count = 0
    done = threading.Event()

    def on_message(*_: Any) -> None:
        nonlocal count
        count += 1
        if count >= expected:
            done.set()

    client.on_message = on_message
    started = time.perf_counter()
    _connect(client, host, port, clean=False)
    if not done.wait(300):
        raise TimeoutError(f"bare subscriber got {count} of {expected}")
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


async def _drain_central(config: CentralConfig, expected_acks: dict[str, int]) -> dict[str, Any]:
    """Seconds to commit the stream, and the central's CPU seconds in all and per stage."""
    engine = make_engine(config.database_url)
    try:
        cpu_before = _process_cpu_s()
        started = time.perf_counter()
        async with CentralService(config, engine=engine, run_migrations=False) as central:
            async with asyncio.timeout(600):
                while True:
                    await asyncio.sleep(0.01)
                    if central.committed >= sum(expected_acks.values()):
                        break
            elapsed = time.perf_counter() - started
            cpu = _process_cpu_s() - cpu_before
            stages = dict(central.processor.stages.cpu_s)
            stages["mqtt.receive"] = central.mqtt.receive_cpu_s
        with session_factory(engine)() as session:
            for site_id, seq in expected_acks.items():
                acked = session.get_one(Site, site_id).acked_seq
                if acked != seq:
                    raise AssertionError(f"{site_id}: acked {acked}, expected {seq}")
        return {"seconds": elapsed, "cpu_s": cpu, "stages": stages}
    finally:
        engine.dispose()


def _process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(database_url: str, host: str, port: int, *, sites: int = SITES,
            events_per_site: int = EVENTS_PER_SITE) -> dict[str, Any]:  # fmt: skip
    """The same preloaded stream drained by a bare subscriber and by the central.

    Rates in events/s, CPU in seconds per 1,000 events (``stages``: the central's
    stages, ``other`` = the rest of its process: event loop, batching, threads).
    """
    tag = uuid.uuid4().hex[:6]
    engine = make_engine(database_url)
    migrate(engine)
    site_ids = [f"bench-{tag}-{n:04d}" for n in range(sites)]
    with session_factory(engine).begin() as session:
        session.add_all(
            Site(id=s, name=f"压测站点{n}", town="压测镇", kind=SiteKind.VILLAGE)
            for n, s in enumerate(site_ids)
        )
    engine.dispose()
    config = CentralConfig(
        database_url=database_url,
        mqtt_host=host,
        mqtt_port=port,
        mqtt_client_id=f"bench-central-{tag}",
        mqtt_group=f"bench{tag}",
        mqtt_session_expiry_s=3600,
        alarm_tick_s=3600,
    )
    central_filters = [
        (s.filter, s.qos)
        for s in central_subscriptions(config.mqtt_group)
        if not s.filter.endswith("/state")
    ]
    bare_id = f"bench-bare-{tag}"
    _register_session(host, port, config.mqtt_client_id, central_filters)
    _register_session(host, port, bare_id, [("onedoor/v1/+/event", 1)])
    total = _publish_stream(host, port, site_ids, events_per_site)
    bare_cpu = _process_cpu_s()
    bare_s = _drain_bare(host, port, bare_id, total)
    bare_cpu = _process_cpu_s() - bare_cpu
    central = asyncio.run(_drain_central(config, dict.fromkeys(site_ids, events_per_site)))
    per_k = 1000 / total
    stages = {name: round(cpu * per_k, 4) for name, cpu in central["stages"].items()}
    stages["other"] = round((central["cpu_s"] - sum(central["stages"].values())) * per_k, 4)
    return {
        "events": total,
        "bare_events_per_s": round(total / bare_s),
        "central_events_per_s": round(total / central["seconds"]),
        "ratio_to_bare": round(bare_s / central["seconds"], 3),
        "bare_cpu_s_per_k": round(bare_cpu * per_k, 4),
        "central_cpu_s_per_k": round(central["cpu_s"] * per_k, 4),
        "stages": stages,
    }


def measure_processor(database_url: str, *, sites: int = SITES,
                      events_per_site: int = EVENTS_PER_SITE, batch: int = 500) -> int:  # fmt: skip
    """Events/s of :class:`IngestProcessor` alone (no MQTT): the database side of ingest."""
    tag = uuid.uuid4().hex[:6]
    engine = make_engine(database_url)
    migrate(engine)
    sessions = session_factory(engine)
    site_ids = [f"bench-p{tag}-{n:04d}" for n in range(sites)]
    with sessions.begin() as session:
        session.add_all(
            Site(id=s, name=f"压测站点{n}", town="压测镇", kind=SiteKind.VILLAGE)
            for n, s in enumerate(site_ids)
        )
    body = mm.TicketCalled(ticket="Z001", window=1)
    now = dt.datetime.now(dt.UTC)
    stream = [
        Received(event_topic(site_id), mm.encode(mm.Event(site=site_id, seq=seq, id=uuid.uuid4(),
                 ts=1, clock_synced=True, body=body)), now)
        for seq in range(1, events_per_site + 1)
        for site_id in site_ids
    ]  # fmt: skip
    processor = IngestProcessor(sessions, CentralConfig(database_url=database_url))
    started = time.perf_counter()
    for start in range(0, len(stream), batch):
        processor.process(stream[start : start + batch], now)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return round(len(stream) / elapsed)


@contextlib.contextmanager
def _servers() -> Iterator[tuple[str, int, str]]:
    mqtt_env = os.environ.get("ONEDOOR_BENCH_MQTT")
    pg_env = os.environ.get("ONEDOOR_BENCH_PG_URL")
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="onedoor-bench-")))
        if mqtt_env:
            host, _, port = mqtt_env.rpartition(":")
            broker_host, broker_port = host, int(port)
        else:
            from tests.servers import MosquittoBroker  # source checkout only

            broker = MosquittoBroker(workdir / "mosquitto")
            broker.start()
            stack.callback(broker.stop)
            broker_host, broker_port = broker.host, broker.port
        if pg_env:
            pg_url = pg_env
        else:
            from tests.servers import PostgresCluster

            # Its own temporary directory: initdb runs as ``postgres`` and chowns it.
            pg_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="onedoor-bench-pg-"))
            cluster = PostgresCluster(Path(pg_dir))
            cluster.start()
            stack.callback(cluster.stop)
            pg_url = cluster.create_database("onedoor_bench")
        yield broker_host, broker_port, pg_url
        # SQLite file lives in workdir too, removed with it


def _median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs, and the range of the ratio (each run compares the central
    with a bare subscriber that drained the same stream just before it)."""
    return {
        "bare": round(_median(r["bare_events_per_s"] for r in runs)),
        "central": round(_median(r["central_events_per_s"] for r in runs)),
        "ratio": round(_median(r["ratio_to_bare"] for r in runs), 3),
        "ratios": sorted(r["ratio_to_bare"] for r in runs),
        "bare_cpu": _median(r["bare_cpu_s_per_k"] for r in runs),
        "central_cpu": _median(r["central_cpu_s_per_k"] for r in runs),
        "stages": {name: _median(r["stages"][name] for r in runs) for name in runs[0]["stages"]},
    }


def run() -> dict[str, Any]:
    """Entry point of ``onedoor bench`` (suite ``central``): SQLite and PostgreSQL side by side.

    Every value reads ``SQLite · PostgreSQL``; both drain the same kind of stream
    from one broker in one run, alternating the databases.
    """
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})  # one core for this process and its threads
    load_before = os.getloadavg()[0]
    try:
        with _servers() as (host, port, pg_url), tempfile.TemporaryDirectory() as tmp:
            urls = {"SQLite": f"sqlite:///{tmp}/bench.db", "PostgreSQL": pg_url}
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
            for _ in range(REPEATS):
                for name, url in urls.items():
                    runs[name].append(measure(url, host, port))
            alone = {
                "SQLite": max(measure_processor(f"sqlite:///{tmp}/alone.db")
                              for _ in range(REPEATS)),
                "PostgreSQL": max(measure_processor(pg_url) for _ in range(REPEATS)),
            }  # fmt: skip
    finally:
        os.sched_setaffinity(0, allowed)
    sqlite, postgres = _summary(runs["SQLite"]), _summary(runs["PostgreSQL"])

    def pair(sqlite_value: Any, postgres_value: Any) -> str:
        return f"{_shown(sqlite_value)} · {_shown(postgres_value)}"

    figures: dict[str, Any] = {
        "events per run (sites x events, QoS 1, preloaded)": f"{SITES} x {EVENTS_PER_SITE}",
        "load average (1 min) before": round(load_before, 2),
        "bare paho subscriber, events/s (SQLite · PostgreSQL runs)": pair(
            sqlite["bare"], postgres["bare"]),
        "central, events/s committed and acked": pair(sqlite["central"], postgres["central"]),
        "central / bare, median run": pair(sqlite["ratio"], postgres["ratio"]),
        "central / bare, every run": pair(
            "–".join(map(str, (sqlite["ratios"][0], sqlite["ratios"][-1]))),
            "–".join(map(str, (postgres["ratios"][0], postgres["ratios"][-1])))),
        "bare paho subscriber, CPU s per 1,000 events": pair(
            sqlite["bare_cpu"], postgres["bare_cpu"]),
        "central process, CPU s per 1,000 events": pair(
            sqlite["central_cpu"], postgres["central_cpu"]),
    }  # fmt: skip
    for name in [*STAGES, "other"]:
        figures[f"stage {name}, CPU s per 1,000 events"] = pair(
            sqlite["stages"].get(name, 0.0), postgres["stages"].get(name, 0.0))
    figures["IngestProcessor alone (no MQTT), events/s"] = pair(
        alone["SQLite"], alone["PostgreSQL"])
    figures["load average (1 min) after"] = round(os.getloadavg()[0], 2)
    return figures


def _shown(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value < 1 else f"{value:,.3g}"
    return str(value)


def _report(figures: dict[str, Any], seconds: float) -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    lines = [
        "# Central ingest throughput",
        "",
        "Command: `python -m onedoor.bench.central` "
        "(also `onedoor bench --only central`, `make bench`)  ",
        f"Machine: {model}, {os.cpu_count()} CPUs, Python {platform.python_version()}  ",
        f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {seconds:.0f} s in all",
        "",
        f"Stream: {SITES} sites x {EVENTS_PER_SITE} `ticket.called` events, QoS 1, preloaded",
        f"in a real Mosquitto; {REPEATS} runs per database, alternating SQLite and PostgreSQL.",
        "The consumer process is pinned to one core (broker and PostgreSQL run beside it).",
        "Central = decode + validate + batch insert (ON CONFLICT DO NOTHING) +",
        "contiguous-seq/gap tracking + live state + ack published after commit; bare = a",
        "paho subscriber that only counts. Rates and CPU: median of the runs, from",
        "`getrusage` (process) and `time.thread_time` (stages, `central/stages.py`).",
        "",
        "| figure | SQLite · PostgreSQL |",
        "|---|---|",
        *(f"| {key.strip()} | {_shown(value)} |" for key, value in figures.items()),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    started = time.perf_counter()
    results = run()
    report = _report(results, time.perf_counter() - started)
    print(report)
    target = Path(__file__).parents[2] / "docs" / "bench" / "central_ingest.md"
    if len(sys.argv) > 1:
        target = Path(sys.argv[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(report, encoding="utf-8")

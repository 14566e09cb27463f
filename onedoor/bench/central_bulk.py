"""Benchmark: one command to a whole fleet — recorded, published, received, and shown.

For a fleet of ``sites`` (303: the city; 20,000: a province), on SQLite and
PostgreSQL with a real Mosquitto:

* send: :meth:`CentralService.send_bulk` from the call to its return (the
  ``bulk_commands`` row and one ``commands`` row per site in one transaction,
  then one ``cmd/screen_notice`` publish per site);
* delivered: from the call until a plain paho subscriber on every site's
  command topic has received all of them (what the edges would see);
* the reads: :meth:`ReadModel.bulk_command` with every site's row (the API's
  default), with the counts and the first ``BULK_PAGE_ROWS`` (what the page
  ``/commands/{id}`` and its live stream read each interval) and that part's
  HTML; :meth:`ReadModel.bulk_commands` (the ``/commands`` list, its counts).

``python -m onedoor.bench.central_bulk`` prints the figures and writes
``docs/bench/central_bulk.md``. Servers as in :mod:`onedoor.bench.central`
(``ONEDOOR_BENCH_MQTT``, ``ONEDOOR_BENCH_PG_URL``, else throwaway ones).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from central.auth import Principal, Role
from central.config import CentralConfig
from central.db import make_engine, migrate, session_factory
from central.models import Site, SiteKind
from central.queries import ReadModel
from central.service import CentralService
from central.views import BULK_STATES
from central.web.people import BULK_PAGE_ROWS
from central.web.render import chrome, render
from central.web.text import TEXT
from firmware_protocols import mqtt_messages as mm
from onedoor.bench.central import _servers

FLEETS = (303, 20_000)
REPEATS = 3
KNOWN_TEXTS = frozenset(k for k in TEXT if k.startswith("cmd_"))
NOTICE = mm.ScreenNoticeArgs(text="今日下午系统维护，暂停取号", screen=None, duration_s=3600)


class _Counter:
    """A paho subscriber to every site's ``cmd/screen_notice``: counts what arrives."""

    def __init__(self, host: str, port: int, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.done = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"bench-bulk-{uuid.uuid4().hex[:8]}")  # fmt: skip
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe("onedoor/v1/+/cmd/screen_notice", 1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._message
        self.client.connect(host, port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError("the counting subscriber did not subscribe")

    def _message(self, *_: Any) -> None:
        self.received += 1
        if self.received >= self.expected:
            self.done.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def _one(config: CentralConfig, site_ids: list[str], host: str, port: int,
               principal: Principal) -> dict[str, float]:  # fmt: skip
    counter = _Counter(host, port, len(site_ids))
    try:
        async with CentralService(config) as central:
            while not central.mqtt.connected:
                await asyncio.sleep(0.02)
            started = time.perf_counter()
            sent = await central.send_bulk(site_ids, NOTICE, target={"all": True}, ttl_s=3600,
                                           issued_by="bench")  # fmt: skip
            send_s = time.perf_counter() - started
            if not await asyncio.to_thread(counter.done.wait, 120):
                raise TimeoutError(f"{counter.received} of {len(site_ids)} commands arrived")
            delivered_s = time.perf_counter() - started
            read = ReadModel(central.sessions)
            started = time.perf_counter()
            every = read.bulk_command(sent.id, central.clock())
            every_s = time.perf_counter() - started
            started = time.perf_counter()
            view = read.bulk_command(sent.id, central.clock(), limit=BULK_PAGE_ROWS)
            read_s = time.perf_counter() - started
            started = time.perf_counter()
            html = render("_bulk_live.html", **chrome("zh", principal), bulk=view,
                          states=BULK_STATES, known_texts=KNOWN_TEXTS)  # fmt: skip
            render_s = time.perf_counter() - started
            started = time.perf_counter()
            listed = read.bulk_commands(central.clock())
            list_s = time.perf_counter() - started
            shown = min(len(site_ids), BULK_PAGE_ROWS)
            if len(every.rows) != len(site_ids) or len(view.rows) != shown or not listed:
                raise AssertionError("the views are not of every site")
            if len(html) < 100 * shown:
                raise AssertionError("the page does not list its sites")
    finally:
        counter.close()
    return {"send_ms": send_s * 1000, "delivered_ms": delivered_s * 1000,
            "every_ms": every_s * 1000, "read_ms": read_s * 1000, "render_ms": render_s * 1000,
            "list_ms": list_s * 1000}  # fmt: skip


def measure(database_url: str, host: str, port: int, sites: int) -> dict[str, Any]:
    """Medians (and worst) of :data:`REPEATS` bulk commands to ``sites`` sites."""
    tag = uuid.uuid4().hex[:6]
    engine = make_engine(database_url)
    migrate(engine)
    site_ids = [f"bulk-{tag}-{n:05d}" for n in range(sites)]
    with session_factory(engine).begin() as session:
        session.add_all(Site(id=s, name=f"压测{n}村党群服务中心", town=f"压测{n % 25}镇",
                             kind=SiteKind.VILLAGE) for n, s in enumerate(site_ids))  # fmt: skip
    engine.dispose()
    principal = Principal("bench", "bench", Role.OPERATOR, None, "bench")
    runs = []
    for _ in range(REPEATS):
        config = CentralConfig(database_url=database_url, mqtt_host=host, mqtt_port=port,
                               mqtt_client_id=f"bench-central-{uuid.uuid4().hex[:8]}",
                               mqtt_group=f"bulk{tag}", alarm_tick_s=3600,
                               command_limit_per_site=REPEATS + 1)  # fmt: skip
        runs.append(asyncio.run(_one(config, site_ids, host, port, principal)))
    return {key: {"median": round(statistics.median(r[key] for r in runs)),
                  "worst": round(max(r[key] for r in runs))} for key in runs[0]}  # fmt: skip


def run() -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with _servers() as (host, port, pg_url), tempfile.TemporaryDirectory() as workdir:
        for sites in FLEETS:
            sqlite_url = f"sqlite:///{Path(workdir) / f'bulk-{sites}.db'}"
            for backend, url in (("sqlite", sqlite_url), ("postgresql", pg_url)):
                figures[f"{sites}/{backend}"] = measure(url, host, port, sites)
    return figures


def _report(figures: dict[str, Any], seconds: float) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# One command to a whole fleet",
        "",
        f"`python -m onedoor.bench.central_bulk`, {when}, "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {seconds:.0f} s; "
        f"{REPEATS} runs each, median (worst), milliseconds. A screen notice to every site "
        "(real Mosquitto; no edges: a paho subscriber on every site's command topic counts "
        "the deliveries).",
        "",
        "| sites · database | send (recorded + published) | delivered to the broker's "
        "subscriber | every site's row (API) | the page's read (counts + first "
        f"{BULK_PAGE_ROWS}) | its HTML | the list of bulk commands |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, f in figures.items():
        lines.append(f"| {key.replace('/', ' · ')} | " + " | ".join(
            f"{f[k]['median']} ({f[k]['worst']})"
            for k in ("send_ms", "delivered_ms", "every_ms", "read_ms", "render_ms", "list_ms"))
            + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    started = time.perf_counter()
    figures = run()
    report = _report(figures, time.perf_counter() - started)
    sys.stdout.write(report)
    out = Path(__file__).resolve().parents[1] / "docs" / "bench" / "central_bulk.md"
    out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()

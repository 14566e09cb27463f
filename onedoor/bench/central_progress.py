"""Benchmark: concurrent citizens' progress pages one central process (one core) serves.

The target: every waiting citizen of the 220-window city hall and of the 277 villages
with their pages open at once, with headroom. The fleet: the seed registry, the city
hall with ``HALL_WAITING`` tickets waiting (its busiest hour) and every village with
``VILLAGE_WAITING``; each waiting ticket has its page open on ``phones`` phones (1, 2,
4: the target, twice and four times it).

Real parts: Mosquitto; ``onedoor central run`` as a child process (one uvicorn
process, one event loop: one core) on SQLite; a load process holding every page's
server-sent-event stream open over raw sockets and publishing the sites' ``progress``
over MQTT as edges do: the city hall every second (every waiting ticket moves), and
villages at random, as many a second as change at once in a busy hour
(``VILLAGE_CHANGES_PER_S``).

Measured over ``window_s`` after a warm-up: the central's CPU (user + system, from
``/proc``) as a share of one core, its resident memory, and the delay from a city-hall
publish to the page events it causes (each page of the hall receives one per
publish), p50 / p99 / worst. ``pages_per_core`` extrapolates the open pages one
fully used core would serve at the same update rates (CPU grows with pages).

``run()`` returns a flat dict for ``onedoor bench``; ``python -m onedoor.bench.central_progress``
prints it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import insert

HALL: Final = "zs-city"
HALL_WAITING: Final = 1000
VILLAGE_WAITING: Final = 5
VILLAGE_CHANGES_PER_S: Final = 5.0
PHONES: Final = (1, 2, 4)
WINDOW_S: Final = 30.0
WARMUP_S: Final = 10.0
OPEN_BATCH: Final = 250  # connections opened at once (the listen backlog is finite)
GENERATIONS: Final = 10  # a page tells the publish it answers by ahead - place, modulo this
_AHEAD: Final = re.compile(rb'"ahead": ([0-9]+)')


# --------------------------------------------------------------------------- the fleet


def _progress(site_id: str, tickets: list[str], generation: int, day_seq: int) -> bytes:
    """A site's progress: every ticket waiting, its place moved by the generation (its
    last digit: the pages tell which publish an event answers)."""
    from firmware_protocols import mqtt_messages as mm

    shift = generation % GENERATIONS
    message = mm.Progress(
        site=site_id, ts=int(time.time() * 1000), clock_synced=True, day="2026-12-07",
        day_seq=day_seq, seq=day_seq + len(tickets) + generation, issuing="open", notice=None,
        services={"zonghe": "综合受理"},
        waiting=[mm.WaitingProgress(ticket=number, service="zonghe", ahead=i + shift,
                                    p50_s=60 * (i + 1), p90_s=90 * (i + 1), requeued=False)
                 for i, number in enumerate(tickets)],
        called=[], ended=[])
    return mm.encode(message)


def _number(i: int) -> str:
    return f"{'ABCDEFGHJK'[i // 1000]}{i % 1000:03d}"


def prepare(workdir: Path, broker_port: int, http_port: int) -> dict[str, list[tuple[str, str]]]:
    """The database (seed registry, links), the central's config; tokens per site."""
    from central.db import make_engine, migrate, session_factory
    from central.models import TicketLink
    from central.progress import token_digest
    from central.seed import load_seed, read_sites

    database = workdir / "central.db"
    engine = make_engine(f"sqlite:///{database}")
    migrate(engine)
    sessions = session_factory(engine)
    sites = {row.id: row for row in read_sites()}
    fleet: dict[str, list[tuple[str, str]]] = {}
    rows = []
    expires = datetime.now(UTC) + timedelta(hours=12)
    for site_id, row in sites.items():
        count = HALL_WAITING if site_id == HALL else (
            VILLAGE_WAITING if row.kind.value == "village" else 0)
        tickets = []
        for i in range(count):
            token = secrets.token_urlsafe(16)
            number = _number(i)
            tickets.append((number, token))
            rows.append({"token_sha256": token_digest(token), "site_id": site_id,
                         "ticket": number, "service": "zonghe", "issued_seq": 10 + i,
                         "issued_ms": int(time.time() * 1000), "wait_p50_s": None,
                         "wait_p90_s": None, "expires_at": expires})
        if tickets:
            fleet[site_id] = tickets
    with sessions.begin() as session:
        load_seed(session)
        session.execute(insert(TicketLink), rows)
    engine.dispose()
    (workdir / "central.toml").write_text(
        f'database_url = "sqlite:///{database}"\nmqtt_host = "127.0.0.1"\n'
        f"mqtt_port = {broker_port}\nalarm_tick_s = 3600.0\n"
        'http_allowed_hosts = "127.0.0.1,localhost"\nprogress_requests_burst = 30\n'
        f'progress_public_url = "http://127.0.0.1:{http_port}"\n', encoding="utf-8")
    return fleet


# --------------------------------------------------------------------------- the load


class Load:
    """Every page's live stream over a raw socket, and the edges' publishes."""

    def __init__(self, port: int, broker_port: int, fleet: dict[str, list[tuple[str, str]]],
                 phones: int) -> None:
        self.port = port
        self.fleet = fleet
        self.phones = phones
        self.mqtt = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}")
        self.mqtt.connect("127.0.0.1", broker_port)
        self.mqtt.loop_start()
        self.published: list[float] = []  # city-hall publish times, by generation
        self.delays: list[float] = []
        self.events = 0
        self.refused = 0
        self.measuring = False
        self._writers: list[asyncio.StreamWriter] = []

    def publish(self, site_id: str, generation: int) -> None:
        tickets = [number for number, _ in self.fleet[site_id]]
        payload = _progress(site_id, tickets, generation, 1)
        self.mqtt.publish(f"onedoor/v1/{site_id}/progress", payload, qos=0, retain=True)

    async def stream(self, token: str, place: int | None) -> None:
        """One page's stream; ``place``: the ticket's place in the city hall's queue (its
        events are timed against the publish they answer), None for a village's."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            self.refused += 1
            return
        self._writers.append(writer)
        writer.write(f"GET /q/{token}/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            self.refused += 1
            writer.close()
            return
        while data := await reader.read(65536):
            count = data.count(b"event: progress")
            if not count or not self.measuring:
                continue
            now = time.monotonic()
            self.events += count
            if place is None:
                continue
            for match in _AHEAD.finditer(data):
                residue = (int(match.group(1)) - place) % GENERATIONS
                # The latest publish of that residue before now: the one this event shows.
                for generation in range(len(self.published) - 1, -1, -1):
                    if generation % GENERATIONS == residue:
                        self.delays.append(now - self.published[generation])
                        break

    async def open_all(self) -> list[asyncio.Task[None]]:
        tasks = []
        pages = [(token, place if site_id == HALL else None)
                 for site_id, tickets in self.fleet.items()
                 for place, (_, token) in enumerate(tickets) for _ in range(self.phones)]
        for start in range(0, len(pages), OPEN_BATCH):
            for token, place in pages[start:start + OPEN_BATCH]:
                tasks.append(asyncio.create_task(self.stream(token, place)))
            await asyncio.sleep(0.3)
        return tasks

    async def updates(self, seconds: float) -> None:
        """The city hall every second; villages at random."""
        villages = [s for s in self.fleet if s != HALL]
        rng = random.Random(7)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            generation = len(self.published)
            self.published.append(time.monotonic())
            self.publish(HALL, generation)
            for site_id in rng.sample(villages, min(len(villages),
                                                    round(VILLAGE_CHANGES_PER_S))):
                self.publish(site_id, generation)
            await asyncio.sleep(1.0)

    def close(self) -> None:
        for writer in self._writers:
            writer.close()
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure(port: int, broker_port: int, fleet: dict[str, list[tuple[str, str]]],
                  phones: int, pid: int, window_s: float) -> dict[str, Any]:
    load = Load(port, broker_port, fleet, phones)
    for site_id in fleet:
        load.publish(site_id, 0)
    tasks = await load.open_all()
    await load.updates(WARMUP_S)
    load.measuring = True
    cpu_before, started = _cpu_seconds(pid), time.monotonic()
    await load.updates(window_s)
    cpu = (_cpu_seconds(pid) - cpu_before) / (time.monotonic() - started)
    load.measuring = False
    rss = _rss_mb(pid)
    open_pages = len(tasks) - load.refused
    delays = sorted(load.delays)
    load.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(2.0)  # the central lets the streams go
    return {
        "pages": open_pages, "refused": load.refused,
        "events_per_s": round(load.events / window_s),
        "cpu_share": round(cpu, 3), "rss_mb": round(rss, 1),
        "delay_p50_ms": round(1000 * statistics.median(delays)) if delays else None,
        "delay_p99_ms": round(1000 * delays[int(0.99 * (len(delays) - 1))]) if delays else None,
        "delay_max_ms": round(1000 * delays[-1]) if delays else None,
        "pages_per_core": round(open_pages / cpu) if cpu > 0 else None,
    }


def run(phones: tuple[int, ...] = PHONES, window_s: float = WINDOW_S) -> dict[str, Any]:
    from onedoor.broker import MosquittoProcess, free_port, wait_for_port

    results: dict[str, Any] = {"load1_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="onedoor-bench-progress-") as tmp:
        workdir = Path(tmp)
        broker = MosquittoProcess(workdir / "broker")
        broker.start()
        http_port = free_port()
        try:
            fleet = prepare(workdir, broker.port, http_port)
            pages = sum(len(t) for t in fleet.values())
            results["waiting_tickets"] = pages
            central = subprocess.Popen(
                [sys.executable, "-m", "onedoor", "central", "run", "--config",
                 str(workdir / "central.toml"), "--port", str(http_port)],
                stdout=subprocess.DEVNULL, stderr=(workdir / "central.log").open("wb"))
            try:
                wait_for_port("127.0.0.1", http_port, 60)
                time.sleep(2.0)  # subscribed
                results["rss_idle_mb"] = round(_rss_mb(central.pid), 1)
                for count in phones:
                    figures = asyncio.run(measure(http_port, broker.port, fleet, count,
                                                  central.pid, window_s))
                    for key, value in figures.items():
                        results[f"x{count} {key}"] = value
            finally:
                central.terminate()
                try:
                    central.wait(30)
                except subprocess.TimeoutExpired:
                    central.kill()
                    central.wait()
        finally:
            broker.stop()
    results["load1_after"] = round(os.getloadavg()[0], 2)
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2, ensure_ascii=False))

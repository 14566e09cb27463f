"""Scale figures for docs/RELIABILITY.md (run by hand, not in CI).

Starts real Mosquittos (one, or with ``--brokers N`` a hub and N-1 spokes
bridged to it by :func:`onedoor.broker.bridge_config`, the sites split evenly
over all of them), a central database (SQLite file or a throwaway PostgreSQL
cluster), one or two ``onedoor central run`` processes in one shared-subscription
group on the hub, registers the simulated sites, and runs ``onedoor loadgen``
against them at each (sites, speed) point. A point holds when the loadgen's
unacknowledged backlog does not grow over the run (last samples vs first ones)
and nothing is left unacked after the drain.

    .venv/bin/python -m tests.reliability.scale --db postgresql --centrals 1 \
        --points 2000x1 2000x10 2000x50 --duration 60

The province run of docs/RELIABILITY.md (20,000 sites over two brokers, 10 min)::

    .venv/bin/python -m tests.reliability.scale --db postgresql --brokers 2 \
        --processes 2 --points 20000x1 --duration 600

Each point prints one JSON line: the loadgen's totals, ack latency per tenth of
the run, CPU seconds and RSS of every process (sampled over the run), and the
central's CPU per ingest stage from its ``/metrics``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from central.auth import Role, TokenStore
from central.db import make_engine, session_factory
from onedoor.broker import MosquittoProcess, bridge_config
from onedoor.loadgen import site_ids
from tests.edge.sites import PYTHON, REPO
from tests.reliability.harness import CentralProcess, prepare_central_db
from tests.servers import PostgresCluster


def backlog_grows(samples: list[int]) -> bool:
    """Growing: the mean of the last third clearly above the first third's (and not tiny)."""
    if len(samples) < 6:
        return False
    third = len(samples) // 3
    first = sum(samples[:third]) / third
    last = sum(samples[-third:]) / third
    return last > 2 * first + 50


def log_problems(path: Path) -> dict[str, int]:
    """Warning-or-worse structlog events of a central's JSON log, counted by event name."""
    counts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            counts["(not JSON)"] += 1
            continue
        if isinstance(record, dict) and record.get("level") in {"warning", "error", "critical"}:
            counts[str(record.get("event"))] += 1
    return dict(counts)


def point_prefix(index: int) -> str:
    """Site ids of one point: each point's sites start at seq 1, so they must be new sites."""
    return f"p{index}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def tree_cpu_seconds(root: int) -> float:
    """CPU of ``root`` and of its live descendants, plus what its reaped children used
    (PostgreSQL: the postmaster and its backends)."""
    total = 0.0
    for pid in [root, *descendants(root)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class Sampler(threading.Thread):
    """Every ``every_s``: RSS and CPU seconds so far of each watched process."""

    def __init__(self, watched: dict[str, int], every_s: float) -> None:
        super().__init__(daemon=True)
        self.watched = watched
        self.every_s = every_s
        self.samples: list[dict[str, Any]] = []
        self._done = threading.Event()
        self._began = time.monotonic()

    def run(self) -> None:
        while not self._done.wait(self.every_s):
            sample: dict[str, Any] = {"t_s": round(time.monotonic() - self._began)}
            for name, pid in self.watched.items():
                with contextlib.suppress(OSError):
                    if name != "postgresql":  # its root is runuser; backends share memory
                        sample[f"{name}_rss_mib"] = rss_mib(pid)
                    sample[f"{name}_cpu_s"] = round(tree_cpu_seconds(pid), 1)
            sample["load1"] = os.getloadavg()[0]
            self.samples.append(sample)

    def stop(self) -> list[dict[str, Any]]:
        self._done.set()
        self.join(5)
        return self.samples


def ingest_stages(centrals: list[tuple[int, str]]) -> dict[str, float]:
    """CPU seconds per ingest stage, summed over the centrals' ``/metrics`` (port, token)."""
    total: dict[str, float] = {}
    for port, token in centrals:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith(("onedoor_central_ingest_cpu_seconds_total{",
                                "onedoor_central_ingest_received_total ")):
                name, value = line.rsplit(" ", 1)
                key = name.split('"')[1] if '"' in name else "received"
                total[key] = total.get(key, 0.0) + float(value)
    return total


def run_point(ports: list[int], sites: int, speed: float, duration: float,
              processes: int, prefix: str, watched: dict[str, int],
              centrals: list[tuple[int, str]]) -> dict[str, Any]:
    """One load point; ``watched`` names the processes (centrals, brokers, PostgreSQL) whose
    CPU and memory are reported.

    Everything shares one machine: the CPU split says who was starved of what.
    """
    command = [PYTHON, "-m", "onedoor", "loadgen", "--ports", ",".join(map(str, ports)),
               "--sites", str(sites), "--speed", str(speed), "--duration", str(duration),
               "--processes", str(processes), "--prefix", prefix]
    started = time.monotonic()
    cpu_before = {name: tree_cpu_seconds(pid) for name, pid in watched.items()}
    stages_before = ingest_stages(centrals)
    busy_before = machine_busy_seconds()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler = Sampler(watched, every_s=max(5.0, duration / 20))
    sampler.start()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    samples = sampler.stop()
    if not done.stdout.strip():
        raise RuntimeError(done.stderr[-2000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    wall = time.monotonic() - started
    result["wall_s"] = round(wall, 1)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {name: tree_cpu_seconds(pid) - cpu_before[name] for name, pid in watched.items()}
    cpu["loadgen"] = (children.ru_utime + children.ru_stime
                      - children_before.ru_utime - children_before.ru_stime)
    result["cpu_s"] = {name: round(value, 1) for name, value in cpu.items()}
    stages = ingest_stages(centrals)
    received = stages.pop("received", 0.0) - stages_before.pop("received", 0.0)
    result["central_publishes_received"] = int(received)
    result["central_cpu_ms_per_publish_by_stage"] = {
        name: round((value - stages_before.get(name, 0.0)) / max(received, 1) * 1000, 3)
        for name, value in stages.items()}  # fmt: skip
    result["samples"] = samples
    result["machine_busy_cores"] = round((machine_busy_seconds() - busy_before) / wall, 2)
    result["speed"] = speed
    result["holds"] = result["unacked_at_end"] == 0 and not backlog_grows(
        result["backlog_samples"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--centrals", type=int, default=1, help="replicas in one shared group")
    parser.add_argument("--points", nargs="+", default=["1000x1", "1000x20", "1000x100"],
                        help="SITESxSPEED")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=1, help="loadgen processes")
    parser.add_argument("--brokers", type=int, default=1,
                        help="Mosquittos: a hub (the centrals' broker) and N-1 bridged spokes; "
                             "the sites are split over all of them")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the centrals' logs here")
    args = parser.parse_args(argv)
    points = [(int(p.split("x")[0]), float(p.split("x")[1])) for p in args.points]
    # One socket per site: Mosquitto and the loadgen inherit the hard open-file limit.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="onedoor-scale-") as tmp:
        work = Path(tmp)
        broker = MosquittoProcess(work / "broker", extra_config="max_queued_messages 100000\n")
        broker.start()
        spokes = [
            MosquittoProcess(work / f"spoke{n}", extra_config="max_queued_messages 100000\n"
                             + bridge_config(f"spoke{n}", broker.host, broker.port))
            for n in range(1, args.brokers)
        ]  # fmt: skip
        for spoke in spokes:
            spoke.start()
        cluster = None
        try:
            if args.db == "postgresql":
                # its own temp dir: PostgresCluster chowns it to postgres (root's is 0700)
                cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="onedoor-scale-pg-")))
                cluster.start()
                url = cluster.create_database("scale")
            else:
                url = f"sqlite:///{work / 'central.db'}"
            prepare_central_db(url, work, [
                site for index, (sites, _) in enumerate(points)
                for site in site_ids(sites, point_prefix(index))])  # fmt: skip
            engine = make_engine(url)
            _, token = TokenStore(session_factory(engine)).create(Role.VIEWER, "scale")
            engine.dispose()
            centrals = []
            group = "scale"
            for n in range(args.centrals):
                folder = work / f"central{n}"
                folder.mkdir()
                central = CentralProcess(folder, url, broker.port, mqtt_group=group,
                                         mqtt_client_id=f"scale-central-{n}",
                                         batch_max_wait_ms=50, metrics_per_site=False)
                central.start()
                centrals.append(central)
            time.sleep(8)  # migrations done, subscriptions in place
            try:
                for index, (sites, speed) in enumerate(points):
                    watched = {f"central{n}": c.process.pid for n, c in enumerate(centrals)
                               if c.process is not None}
                    for name, process in [("broker", broker),
                                          *((f"spoke{n + 1}", s) for n, s in enumerate(spokes))]:
                        if process.pid is not None:
                            watched[name] = process.pid
                    if cluster is not None and cluster.pid is not None:
                        watched["postgresql"] = cluster.pid
                    result = run_point([broker.port, *(s.port for s in spokes)], sites, speed,
                                       args.duration, args.processes, point_prefix(index),
                                       watched, [(c.http_port, token) for c in centrals])
                    result.update(db=args.db, centrals=args.centrals, brokers=args.brokers)
                    print(json.dumps(result, ensure_ascii=False), flush=True)
            finally:
                for central in centrals:
                    central.stop()
                    print(f"central log: {log_problems(central.log)}", file=sys.stderr)
                    if args.keep_logs is not None:
                        args.keep_logs.mkdir(parents=True, exist_ok=True)
                        shutil.copy(central.log, args.keep_logs / f"{central.log.parent.name}.log")
        finally:
            for spoke in spokes:
                spoke.stop()
            broker.stop()
            if cluster is not None:
                cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

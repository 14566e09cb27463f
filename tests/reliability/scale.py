"""Scale figures for docs/RELIABILITY.md (run by hand, not in CI).

Starts a real Mosquitto, a central database (SQLite file or a throwaway
PostgreSQL cluster), one or two ``onedoor central run`` processes in one
shared-subscription group, registers the simulated sites, and runs
``onedoor loadgen`` against them at each (sites, speed) point. A point holds
when the loadgen's unacknowledged backlog does not grow over the run (last
samples vs first ones) and nothing is left unacked after the drain.

    .venv/bin/python -m tests.reliability.scale --db postgresql --centrals 1 \
        --points 2000x1 2000x10 2000x50 --duration 60

Each point prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from onedoor.broker import MosquittoProcess
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


def run_point(port: int, sites: int, speed: float, duration: float,
              processes: int, prefix: str, watched: dict[str, int]) -> dict[str, Any]:
    """One load point; ``watched`` names the processes (central, broker) whose CPU is reported.

    Everything shares one machine: the CPU split says who was starved of what.
    """
    command = [PYTHON, "-m", "onedoor", "loadgen", "--port", str(port), "--sites", str(sites),
               "--speed", str(speed), "--duration", str(duration),
               "--processes", str(processes), "--prefix", prefix]
    started = time.monotonic()
    cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    busy_before = machine_busy_seconds()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if not done.stdout.strip():
        raise RuntimeError(done.stderr[-2000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    wall = time.monotonic() - started
    result["wall_s"] = round(wall, 1)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in watched.items()}
    cpu["loadgen"] = (children.ru_utime + children.ru_stime
                      - children_before.ru_utime - children_before.ru_stime)
    result["cpu_s"] = {name: round(value, 1) for name, value in cpu.items()}
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
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the centrals' logs here")
    args = parser.parse_args(argv)
    points = [(int(p.split("x")[0]), float(p.split("x")[1])) for p in args.points]
    with tempfile.TemporaryDirectory(prefix="onedoor-scale-") as tmp:
        work = Path(tmp)
        broker = MosquittoProcess(work / "broker", extra_config="max_queued_messages 100000\n")
        broker.start()
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
            centrals = []
            group = "scale"
            for n in range(args.centrals):
                folder = work / f"central{n}"
                folder.mkdir()
                central = CentralProcess(folder, url, broker.port, mqtt_group=group,
                                         mqtt_client_id=f"scale-central-{n}",
                                         batch_max_wait_ms=50)
                central.start()
                centrals.append(central)
            time.sleep(8)  # migrations done, subscriptions in place
            try:
                for index, (sites, speed) in enumerate(points):
                    watched = {f"central{n}": c.process.pid for n, c in enumerate(centrals)
                               if c.process is not None}
                    if broker.pid is not None:
                        watched["broker"] = broker.pid
                    result = run_point(broker.port, sites, speed, args.duration, args.processes,
                                       point_prefix(index), watched)
                    result.update(db=args.db, centrals=args.centrals)
                    print(json.dumps(result, ensure_ascii=False), flush=True)
            finally:
                for central in centrals:
                    central.stop()
                    print(f"central log: {log_problems(central.log)}", file=sys.stderr)
                    if args.keep_logs is not None:
                        args.keep_logs.mkdir(parents=True, exist_ok=True)
                        shutil.copy(central.log, args.keep_logs / f"{central.log.parent.name}.log")
        finally:
            broker.stop()
            if cluster is not None:
                cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

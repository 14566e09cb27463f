"""Benchmark: the edge daemon's memory (RSS) and idle CPU with every device family.

``python -m onedoor.bench.edge`` (the lead wires ``make bench``). The real daemon
(``python -m edge run``) runs as a subprocess against the simulated hall of
:mod:`edge.simhall`: printer, LED window bars and hall screen, a Modbus
terminal bank on ptys at 19200 baud, gpiozero mock pins, WAV audio, and a
real Mosquitto when one is installed. Measured from ``/proc/<pid>``:

* RSS once the daemon is ready and has settled, and again after a busy spell
  of kiosk tickets and window calls (target: under 60 MB);
* idle CPU: user+system time over an idle interval, as percent of one core.
  "Idle" still polls the terminal bus and the printer, as in a quiet hall.

The devices helper's ``onedoor.bench.edge_devices`` measures press-to-LED/publish latency.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edge.simhall import simulated_hall

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime


def _post(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body or {}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST"),
                                timeout=10) as response:
        result: dict[str, Any] = json.load(response)
        return result


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _mosquitto(directory: Path) -> Iterator[int | None]:
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                           if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        yield None
        return
    port = _free_port()
    config = directory / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daemon exited with {process.returncode}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=1).close()
            return
        time.sleep(0.1)
    raise TimeoutError("daemon did not come up")


def run(idle_s: float = 10.0, settle_s: float = 3.0, tickets: int = 500) -> dict[str, Any]:
    """Start the daemon on the simulated hall and measure RSS and idle CPU."""
    from edge.devices.voice import make_clips

    with tempfile.TemporaryDirectory(prefix="onedoor-edge-bench-") as workdir:
        directory = Path(workdir)
        clips = directory / "clips"
        make_clips(clips)
        http_port = _free_port()
        with (_mosquitto(directory) as mqtt_port,
              simulated_hall(directory, clips_dir=clips, http_port=http_port,
                             mqtt_port=mqtt_port) as sim):
            env = {**os.environ, "ONEDOOR_LOG_JSON": "1"}
            with open(directory / "daemon.log", "ab") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "-m", "edge", "--log-level", "warning", "run",
                     "--config", str(sim.config_path)],
                    env=env, stdout=log_file, stderr=log_file)
            try:
                _wait_ready(http_port, process)
                time.sleep(settle_s)
                rss_ready = _rss_mb(process.pid)
                cpu_before = _cpu_seconds(process.pid)
                time.sleep(idle_s)
                idle_pct = 100 * (_cpu_seconds(process.pid) - cpu_before) / idle_s
                base = f"http://127.0.0.1:{http_port}"
                _post(f"{base}/windows/1/sign_in", {"staff": "101"})
                _post(f"{base}/windows/2/sign_in", {"staff": "202"})
                started = time.perf_counter()
                for i in range(tickets):
                    _post(f"{base}/tickets", {"service": "shebao" if i % 3 else "huji"})
                    if i % 2:
                        _post(f"{base}/windows/{1 + (i // 2) % 2}/next")
                busy_s = time.perf_counter() - started
                time.sleep(settle_s)
                rss_busy = _rss_mb(process.pid)
            finally:
                process.terminate()
                process.wait(20)
    return {
        "rss_ready_mb": round(rss_ready, 1),
        "rss_after_busy_mb": round(rss_busy, 1),
        "idle_cpu_pct_of_one_core": round(idle_pct, 2),
        "idle_s": idle_s,
        "busy_tickets": tickets,
        "busy_requests_per_s": round((tickets + tickets // 2) / busy_s, 1),
        "mqtt": mqtt_port is not None,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--idle", type=float, default=10.0, help="idle seconds measured")
    parser.add_argument("--tickets", type=int, default=500)
    args = parser.parse_args(argv)
    print(json.dumps(run(idle_s=args.idle, tickets=args.tickets), indent=2))


if __name__ == "__main__":
    main()


__all__ = ["run"]

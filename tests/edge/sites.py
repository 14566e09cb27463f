"""Site configs and small helpers shared by the edge core tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpiozero.pins.mock import MockFactory

    from edge.simhall import SimulatedHall
    from firmware_protocols.terminal_events import Key

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

BASE_SERVICES = """
[[services]]
id = "shebao"
prefix = "A"
name_zh = "社保医保"
name_en = "Social insurance"
sla_minutes = 30
overtime_minutes = 20

[[services]]
id = "huji"
prefix = "B"
name_zh = "户籍"
sla_minutes = 45
overtime_minutes = 30
"""

TIMED_SERVICES = BASE_SERVICES.replace(  # with durations: tickets get a predicted wait
    "overtime_minutes = 20", "overtime_minutes = 20\nmean_minutes = 6.0").replace(
    "overtime_minutes = 30", "overtime_minutes = 30\nmean_minutes = 8.0")

BASE_WINDOWS = """
[[windows]]
number = 1
services = { shebao = 2, huji = 1 }
priority = true
ratio_cap = 2

[[windows]]
number = 2
services = { huji = 2, shebao = 1 }
"""


# Subprocess daemons run on the host clock at whatever hour the tests run: open around
# the clock (the day still resets at 03:00). Tests of the opening hours pass their own.
ALL_DAY_HOURS = '[hours]\nopen = "00:00"\nclose = "24:00"\nreset = "03:00"\n'


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def site_toml(
    directory: Path,
    *,
    version: str = "v1",
    mqtt_port: int | None = None,
    mqtt_protocol: str = "5",
    http_port: int | None = None,
    services: str = BASE_SERVICES,
    windows: str = BASE_WINDOWS,
    extra: str = "",
    telemetry_seconds: int = 30,
    name: str = "site.toml",
    hours: str = ALL_DAY_HOURS,
) -> Path:
    """Write a small two-window site config into ``directory`` and return its path."""
    parts = [f'version = "{version}"', "", "[site]", 'id = "test-site"',
             'name = "测试镇便民服务中心"', 'town = "测试镇"', "", hours, services, windows]
    if mqtt_port is not None:
        parts += ["[mqtt]", 'host = "127.0.0.1"', f"port = {mqtt_port}",
                  f'protocol = "{mqtt_protocol}"', "keepalive_seconds = 5", ""]
    if http_port is not None:
        parts += ["[http]", 'host = "127.0.0.1"', f"port = {http_port}", "window_api = true", ""]
    parts += ["[paths]", 'journal = "journal.db"', "", "[daemon]",
              f"telemetry_seconds = {telemetry_seconds}", "help_escalation_minutes = 5", "",
              extra]
    path = directory / name
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def http(method: str, url: str, body: dict[str, Any] | None = None,
         timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def start_daemon(config: Path, env: dict[str, str] | None = None,
                 log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """``onedoor edge run`` as a real subprocess (logs to ``log_path`` when given)."""
    full_env = {**os.environ, "ONEDOOR_LOG_JSON": "1", **(env or {})}
    command = [PYTHON, "-m", "edge", "run", "--config", str(config)]
    if log_path is None:
        return subprocess.Popen(command, cwd=REPO, env=full_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    with open(log_path, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=REPO, env=full_env, stdout=out, stderr=out)


def wait_http(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0, *,
              numbering: bool = True) -> None:
    """Until the daemon answers ``/status`` and, with ``numbering``, may issue tickets (a new
    journal of a site with a central waits for the central's grant)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daemon exited with {process.returncode}")
        try:
            status, body = http("GET", f"http://127.0.0.1:{port}/status", timeout=1)
            if status == 200 and (not numbering or body.get("numbering") == "granted"):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError("daemon HTTP did not come up" + (" numbering" if numbering else ""))


def stop_daemon(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


# --------------------------------------------------------------------------- in-process daemons


async def until(condition: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def press_pin(factory: MockFactory, pin: int, hold_s: float) -> None:
    button = factory.pin(pin)
    button.drive_low()  # buttons switch to ground
    await asyncio.sleep(hold_s)
    button.drive_high()
    await asyncio.sleep(0.1)  # released long enough to debounce before any next press


async def keys(sim: SimulatedHall, window: int, *pressed: Key) -> None:
    for key in pressed:
        sim.terminals.press(window, key)
        await asyncio.sleep(0.03)

"""What a software rollout asks the edge (edge/upgrade.py): may it restart now, is it
healthy after. The verdicts on snapshots, then both commands against a running daemon."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edge.config import EdgeConfig, parse_config
from edge.daemon import SOFTWARE_VERSION
from edge.upgrade import HealthVerdict, health_verdict, restart_verdict, wait_healthy
from onedoor import __version__
from tests.edge.sites import (
    PYTHON,
    free_port,
    http,
    site_toml,
    start_daemon,
    stop_daemon,
    wait_http,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 2026-11-23 in Shanghai: 10:00 (open), 19:00 (closed).
MORNING_MS = int(datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI).timestamp() * 1000)
EVENING_MS = int(datetime(2026, 11, 23, 19, 0, tzinfo=SHANGHAI).timestamp() * 1000)

SITE = """
version = "v1"
[site]
id = "zs-test-01"
name = "测试村党群服务中心"
town = "测试镇"
[hours]
open = "08:30"
close = "17:30"
reset = "03:00"
[[services]]
id = "zonghe"
prefix = "A"
name_zh = "综合业务"
[[windows]]
number = 1
services = { zonghe = 1 }
[[windows]]
number = 2
services = { zonghe = 1 }
[paths]
journal = "journal.db"
"""


def config(extra: str = "") -> EdgeConfig:
    return parse_config(SITE + extra, check_files=False)


def status(*, serving: dict[int, str] | None = None, waiting: int = 0,
           help_open: int = 0) -> dict[str, Any]:  # fmt: skip
    tickets = serving or {}
    return {"windows": [{"window": n, "state": "open", "ticket": tickets.get(n)} for n in (1, 2)],
            "queues": [{"service": "zonghe", "waiting": waiting}],
            "help": [{"button": "help-1"}] * help_open}  # fmt: skip


def test_the_software_version_is_the_installed_release() -> None:
    assert f"onedoor-{__version__}" == SOFTWARE_VERSION


def test_an_idle_hall_after_closing_may_restart() -> None:
    verdict = restart_verdict(config(), status(), EVENING_MS, daemon_running=True)
    assert verdict.safe
    assert verdict.reasons == []
    assert verdict.local_time == "19:00"


@pytest.mark.parametrize(("snapshot", "now_ms", "reasons"), [
    (status(), MORNING_MS, ["营业时间内 within opening hours 08:30–17:30 (now 10:00)"]),
    (status(serving={2: "A007"}), EVENING_MS, ["2号窗口正在办理 window 2 is calling or serving"]),
    (status(waiting=3), EVENING_MS, ["3人等候 3 waiting"]),
    (status(help_open=1), EVENING_MS, ["1个呼叫帮办未处理 1 help call(s) open"]),
    (status(serving={1: "A001"}, waiting=1), MORNING_MS,
     ["营业时间内 within opening hours 08:30–17:30 (now 10:00)",
      "1号窗口正在办理 window 1 is calling or serving", "1人等候 1 waiting"]),
])
def test_a_hall_open_or_busy_may_not_restart(snapshot: dict[str, Any], now_ms: int,
                                             reasons: list[str]) -> None:  # fmt: skip
    verdict = restart_verdict(config(), snapshot, now_ms, daemon_running=True)
    assert not verdict.safe
    assert verdict.reasons == reasons


def test_a_stopped_daemon_interrupts_nobody_but_opening_hours_still_count() -> None:
    """Its journal's queue waits for it either way; only the hours keep it for the night."""
    queue_in_journal = status(serving={1: "A001"}, waiting=4)
    assert restart_verdict(config(), queue_in_journal, EVENING_MS, daemon_running=False).safe
    during = restart_verdict(config(), queue_in_journal, MORNING_MS, daemon_running=False)
    assert not during.safe
    assert during.busy_windows == []
    assert during.waiting == 0


def test_health_wants_the_release_a_new_process_and_the_uplink() -> None:
    with_mqtt = config('[mqtt]\nhost = "127.0.0.1"\n')
    up = {"software": "onedoor-0.2.0", "boot_id": "b2", "uplink": {"connected": True},
          "tasks": {"restarts": {}}}
    assert health_verdict(with_mqtt, up, software="onedoor-0.2.0", not_boot="b1").healthy
    assert health_verdict(with_mqtt, None, software=None, not_boot=None).problems == [
        "守护进程无应答 the daemon does not answer GET /status"]
    verdict = health_verdict(with_mqtt, {**up, "uplink": {"connected": False}},
                             software="onedoor-0.3.0", not_boot="b2")  # fmt: skip
    assert verdict.problems == ["版本不符 runs onedoor-0.2.0, expected onedoor-0.3.0",
                                "未重启 still the process of boot b2",
                                "未连接中心 the uplink to the broker is not connected"]


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def _poll(snapshots: list[dict[str, Any] | None], *, settle_s: float = 5,
          timeout_s: float = 30) -> HealthVerdict:  # fmt: skip
    clock = FakeTime()
    answers = iter(snapshots)
    last: list[dict[str, Any] | None] = [None]

    def fetch() -> dict[str, Any] | None:
        last[0] = next(answers, last[0])
        return last[0]

    return wait_healthy(config(), fetch, software="onedoor-0.2.0", not_boot="old",
                        timeout_s=timeout_s, settle_s=settle_s, sleep=clock.sleep,
                        monotonic=clock.monotonic)  # fmt: skip


def _up(boot: str, restarts: int = 0) -> dict[str, Any]:
    return {"software": "onedoor-0.2.0", "boot_id": boot,
            "tasks": {"restarts": {"uplink": restarts} if restarts else {}}}


def test_health_waits_for_the_new_process_and_for_it_to_stay_up() -> None:
    verdict = _poll([None, None, {**_up("old")}, _up("new")])
    assert verdict.healthy
    assert verdict.boot_id == "new"


def test_a_release_that_starts_then_crashes_is_not_healthy() -> None:
    """Each crash is a new process (systemd restarts it): never steady for 5 s."""
    verdict = _poll([_up(f"boot{n}") if n % 3 else None for n in range(40)], timeout_s=30)
    assert not verdict.healthy
    assert verdict.problems  # down at the end, or not steady for long enough


def test_a_task_that_keeps_restarting_is_not_healthy() -> None:
    verdict = _poll([_up("new", restarts=n) for n in range(40)], timeout_s=30)
    assert not verdict.healthy
    assert verdict.problems == ["不稳定 not steady for 5 s (restarted or a task restarting)"]


# --------------------------------------------------------------------------- the commands


def closed_now_hours() -> str:
    """Hours of one hour that exclude the present minute in Shanghai (and the 03:00 reset)."""
    now = datetime.now(SHANGHAI)
    hour = next(h for h in (5, 12, 20) if now.hour != h)
    return f'[hours]\nopen = "{hour:02d}:00"\nclose = "{hour + 1:02d}:00"\nreset = "03:00"\n'


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "edge", *args], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def can_restart(path: Path) -> tuple[int, dict[str, Any]]:
    done = edge("can-restart", "--config", str(path), "--json")
    return done.returncode, json.loads(done.stdout)


def test_can_restart_and_health_against_a_running_daemon(tmp_path: Path) -> None:
    port = free_port()
    path = site_toml(tmp_path, http_port=port)  # open around the clock
    process = start_daemon(path, log_path=tmp_path / "daemon.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(port, process)
        code, verdict = can_restart(path)
        assert code == 1
        assert verdict["open_now"]
        assert verdict["reasons"][0].startswith("营业时间内 within opening hours 00:00–24:00")

        assert http("POST", f"{base}/tickets", {"service": "shebao"})[0] == 201
        # The hall closes (a pushed config, reloaded) with a citizen still waiting.
        site_toml(tmp_path, http_port=port, version="v2", hours=closed_now_hours())
        process.send_signal(signal.SIGHUP)
        _wait_config(base, "v2")
        code, verdict = can_restart(path)
        assert (code, verdict["open_now"], verdict["reasons"]) == (1, False, ["1人等候 1 waiting"])

        assert http("POST", f"{base}/windows/1/sign_in", {"staff": "z1"})[0] == 200
        assert http("POST", f"{base}/windows/1/next")[1]["ticket"] == "A001"
        assert can_restart(path)[1]["reasons"] == [
            "1号窗口正在办理 window 1 is calling or serving"]
        assert http("POST", f"{base}/windows/1/finish")[0] == 200
        code, verdict = can_restart(path)
        assert (code, verdict["safe"], verdict["daemon_running"]) == (0, True, True)

        boot = http("GET", f"{base}/status")[1]["boot_id"]
        healthy = edge("health", "--config", str(path), "--software", SOFTWARE_VERSION,
                       "--settle", "1", "--timeout", "60", "--json")  # fmt: skip
        assert healthy.returncode == 0, healthy.stdout
        assert json.loads(healthy.stdout)["boot_id"] == boot
        stale = edge("health", "--config", str(path), "--software", "onedoor-9.9.9",
                     "--not-boot", boot, "--settle", "1", "--timeout", "3")  # fmt: skip
        assert stale.returncode == 1
        assert "版本不符 runs onedoor-" in stale.stdout
        assert f"未重启 still the process of boot {boot}" in stale.stdout
    finally:
        stop_daemon(process)
    code, verdict = can_restart(path)
    assert (code, verdict["daemon_running"]) == (0, False)


def _wait_config(base: str, version: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while http("GET", f"{base}/status")[1]["config"] != version:
        assert time.monotonic() < deadline, "the daemon did not reload"
        time.sleep(0.1)


def test_a_config_it_cannot_read_is_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('version = "x"\n')
    assert edge("can-restart", "--config", str(bad)).returncode == 2
    assert edge("health", "--config", str(bad), "--timeout", "1").returncode == 2

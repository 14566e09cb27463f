"""What a software rollout asks the edge: may it restart now, and is it healthy after.

::

    onedoor edge can-restart --config /etc/onedoor/edge.toml [--json]
        0: a restart interrupts nobody (outside opening hours, no window calling or
           serving, nobody waiting, no 呼叫帮办 open); 1: not now, with the reasons;
        2: the config cannot be read.
    onedoor edge health --config ... --software onedoor-0.1.1 [--not-boot ID] [--json]
        0: the daemon answers, runs that release (a new process when ``--not-boot`` names
           the old one's boot id), its uplink is connected, and it stayed so for
           ``--settle`` seconds; 1: it did not within ``--timeout``.

The rollout (``deploy/ansible/upgrade.yml``) asks the first before it touches a site and
the second after it switched the release; the central's view of the site is checked by
the playbook itself. Both read the daemon's ``GET /status`` (the journal when no daemon
answers: a stopped daemon serves nobody, so a restart cannot interrupt anyone).

:func:`restart_verdict` and :func:`health_verdict` are pure functions of a status
snapshot, the config and the time; the commands only fetch and print.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Final

from edge.config import EdgeConfig, HoursConfig, load_config
from edge.errors import ConfigInvalid, JournalError

EXIT_OK: Final = 0
EXIT_NOT_NOW: Final = 1
EXIT_CONFIG: Final = 2
DEFAULT_TIMEOUT_S: Final = 90.0
DEFAULT_SETTLE_S: Final = 10.0
POLL_S: Final = 1.0


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def within_hours(hours: HoursConfig, minute: int) -> bool:
    """Whether ``minute`` (after local midnight) falls between opening and closing."""
    return hours.open_minute <= minute < hours.close_minute


@dataclass(frozen=True, slots=True)
class RestartVerdict:
    """May the daemon restart now? ``reasons`` say why not (Chinese first)."""

    safe: bool
    reasons: list[str]
    open_now: bool
    local_time: str
    busy_windows: list[int]
    waiting: int
    help_open: int
    daemon_running: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def restart_verdict(config: EdgeConfig, status: dict[str, Any], now_ms: int, *,
                    daemon_running: bool) -> RestartVerdict:  # fmt: skip
    """Judge a status snapshot (``GET /status`` or the journal's) at ``now_ms``."""
    local = datetime.fromtimestamp(now_ms / 1000, config.site.tz)
    minute = local.hour * 60 + local.minute
    hours = config.hours
    open_now = within_hours(hours, minute)
    busy = [w["window"] for w in status.get("windows", []) if w.get("ticket")]
    waiting = sum(int(q.get("waiting", 0)) for q in status.get("queues", []))
    help_open = len(status.get("help", []))
    reasons = []
    if open_now:
        reasons.append(f"营业时间内 within opening hours {_clock(hours.open_minute)}–"
                       f"{_clock(hours.close_minute)} (now {local:%H:%M})")  # fmt: skip
    if daemon_running:  # a stopped daemon calls nobody: its journal's queue waits for it
        reasons += [f"{n}号窗口正在办理 window {n} is calling or serving" for n in busy]
        if waiting:
            reasons.append(f"{waiting}人等候 {waiting} waiting")
        if help_open:
            reasons.append(f"{help_open}个呼叫帮办未处理 {help_open} help call(s) open")
    return RestartVerdict(
        safe=not reasons, reasons=reasons, open_now=open_now, local_time=f"{local:%H:%M}",
        busy_windows=busy if daemon_running else [], waiting=waiting if daemon_running else 0,
        help_open=help_open if daemon_running else 0, daemon_running=daemon_running)


@dataclass(slots=True)
class HealthVerdict:
    """Is the daemon up, on the expected release, connected? ``problems`` say what is not."""

    healthy: bool
    problems: list[str]
    software: str | None = None
    boot_id: str | None = None
    uplink_connected: bool | None = None
    task_restarts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def health_verdict(config: EdgeConfig, status: dict[str, Any] | None, *,
                   software: str | None, not_boot: str | None) -> HealthVerdict:  # fmt: skip
    """One look at ``GET /status`` (``None``: the daemon does not answer)."""
    if status is None:
        return HealthVerdict(False, ["守护进程无应答 the daemon does not answer GET /status"])
    problems = []
    running = status.get("software")
    if software is not None and running != software:
        problems.append(f"版本不符 runs {running}, expected {software}")
    boot = status.get("boot_id")
    if not_boot is not None and boot == not_boot:
        problems.append(f"未重启 still the process of boot {not_boot}")
    uplink = status.get("uplink")
    connected = None if uplink is None else bool(uplink.get("connected"))
    if config.mqtt is not None and not connected:
        problems.append("未连接中心 the uplink to the broker is not connected")
    restarts = dict(status.get("tasks", {}).get("restarts", {}))
    return HealthVerdict(not problems, problems, running, boot, connected, restarts)


StatusSource = Callable[[], dict[str, Any] | None]
Sleep = Callable[[float], None]
Monotonic = Callable[[], float]


def wait_healthy(config: EdgeConfig, fetch: StatusSource, *, software: str | None,
                 not_boot: str | None, timeout_s: float, settle_s: float,
                 sleep: Sleep = time.sleep, monotonic: Monotonic = time.monotonic,
                 ) -> HealthVerdict:  # fmt: skip
    """Poll until healthy for ``settle_s`` in one process with no task restarting, or
    ``timeout_s``: a release that starts and then crashes (a new boot id) or whose tasks
    keep restarting is not healthy."""
    deadline = monotonic() + timeout_s
    steady_since: float | None = None
    steady: HealthVerdict | None = None
    while True:
        verdict = health_verdict(config, fetch(), software=software, not_boot=not_boot)
        now = monotonic()
        if not verdict.healthy:
            steady_since, steady = None, None
        elif steady is None or (verdict.boot_id, verdict.task_restarts) != (
                steady.boot_id, steady.task_restarts):  # fmt: skip
            steady_since, steady = now, verdict
        elif steady_since is not None and now - steady_since >= settle_s:
            return verdict
        if now >= deadline:
            if verdict.healthy:  # healthy at the end, but not for long enough
                verdict.healthy = False
                verdict.problems.append(f"不稳定 not steady for {settle_s:g} s (restarted or "
                                        f"a task restarting)")  # fmt: skip
            return verdict
        sleep(POLL_S)


# --------------------------------------------------------------------------- the commands


def _load(path: str) -> EdgeConfig | None:
    try:
        return load_config(path, check_files=False)
    except ConfigInvalid as exc:
        print(exc, file=sys.stderr)
        return None


def _cmd_can_restart(args: argparse.Namespace) -> int:
    from edge.cli import status_from_journal, status_over_http

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    status = status_over_http(config)
    running = status is not None
    if status is None:
        try:
            status = status_from_journal(config)
        except JournalError:
            status = {}  # no journal yet: a new site, nobody to interrupt
    verdict = restart_verdict(config, status, time.time_ns() // 1_000_000,
                              daemon_running=running)  # fmt: skip
    if args.json:
        print(json.dumps(verdict.as_dict(), ensure_ascii=False))
    elif verdict.safe:
        print(f"{config.site.id}: 可以重启 may restart now ({verdict.local_time}, "
              f"{'idle' if running else 'daemon not running'})")  # fmt: skip
    else:
        print(f"{config.site.id}: 暂不重启 not now: " + "; ".join(verdict.reasons))
    return EXIT_OK if verdict.safe else EXIT_NOT_NOW


def _cmd_health(args: argparse.Namespace) -> int:
    from edge.cli import status_over_http

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    verdict = wait_healthy(config, lambda: status_over_http(config), software=args.software,
                           not_boot=args.not_boot, timeout_s=args.timeout,
                           settle_s=args.settle)  # fmt: skip
    if args.json:
        print(json.dumps(verdict.as_dict(), ensure_ascii=False))
    elif verdict.healthy:
        print(f"{config.site.id}: healthy, {verdict.software}, boot {verdict.boot_id}")
    else:
        print(f"{config.site.id}: 不健康 unhealthy: " + "; ".join(verdict.problems))
    return EXIT_OK if verdict.healthy else EXIT_NOT_NOW


def add_upgrade_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``onedoor edge can-restart`` and ``onedoor edge health``."""
    check = sub.add_parser(
        "can-restart", help="可否重启 exit 0 when a restart interrupts nobody: outside opening "
                            "hours, no window serving, nobody waiting")  # fmt: skip
    check.add_argument("--config", required=True, help="site TOML file")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=_cmd_can_restart)
    health = sub.add_parser(
        "health", help="升级后健康检查 / wait until the daemon runs a release, connected "
                       "and steady (exit 0)")
    health.add_argument("--config", required=True, help="site TOML file")
    health.add_argument("--software", help="the release it must run, e.g. onedoor-0.1.1")
    health.add_argument("--not-boot", help="the boot id of the process it must have replaced")
    health.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds")
    health.add_argument("--settle", type=float, default=DEFAULT_SETTLE_S,
                        help="seconds it must stay healthy in one process")
    health.add_argument("--json", action="store_true")
    health.set_defaults(func=_cmd_health)


__all__ = [
    "HealthVerdict",
    "RestartVerdict",
    "add_upgrade_commands",
    "health_verdict",
    "restart_verdict",
    "wait_healthy",
    "within_hours",
]

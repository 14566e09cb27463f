"""``onedoor bench``: every benchmark of the project in one run, as Markdown.

Each part has its benchmark in this package (``onedoor/bench/<part>.py``) as a
function returning a flat dict of figures; this module only finds them, runs
them and writes the report with the command, the machine and the date, so
figures in docs/BENCHMARKS.md can always be traced to a run. The package runs
from a source checkout (``make bench``) and is left out of the wheel.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from onedoor import __version__

log = structlog.get_logger(__name__)

# (suite name, module, function). A part that is not built yet is skipped.
SUITES: tuple[tuple[str, str, str], ...] = (
    ("dispatcher", "onedoor.bench.dispatch", "run"),
    ("simulator", "onedoor.bench.simulator", "run_all"),
    ("protocols", "onedoor.bench.protocols", "run"),
    ("edge", "onedoor.bench.edge", "run"),
    ("edge-devices", "onedoor.bench.edge_devices", "run"),
    ("device-lines", "onedoor.bench.device_lines", "run"),
    ("central", "onedoor.bench.central", "run"),
    ("central-stats", "onedoor.bench.central_stats", "run"),
    ("central-web", "onedoor.bench.central_web", "run"),
    ("central-bulk", "onedoor.bench.central_bulk", "run"),
    ("central-progress", "onedoor.bench.central_progress", "run"),
)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    python = platform.python_version()
    return f"{model}, {os.cpu_count()} CPUs, Python {python}, {platform.system()}"


def _load(module_name: str, function: str) -> Callable[[], dict[str, Any]] | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    runner: Callable[[], dict[str, Any]] = getattr(module, function)
    return runner


def render(results: dict[str, dict[str, Any]], command: str, seconds: float) -> str:
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {machine()}  ",
        f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, onedoor {__version__}, "
        f"{seconds:.0f} s in all",
        "",
    ]
    for suite, figures in results.items():
        lines += [f"### {suite}", "", "| figure | value |", "|---|---|"]
        for key, value in figures.items():
            shown = f"{value:,}" if isinstance(value, int) else str(value)
            lines.append(f"| {key} | {shown} |")
        lines.append("")
    return "\n".join(lines)


def _cmd_bench(args: argparse.Namespace) -> int:
    wanted = set(args.only.split(",")) if args.only else None
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for suite, module_name, function in SUITES:
        if wanted is not None and suite not in wanted:
            continue
        runner = _load(module_name, function)
        if runner is None:
            log.info("bench.suite_absent", suite=suite, module=module_name)
            continue
        log.info("bench.suite_start", suite=suite)
        results[suite] = runner()
    command = "onedoor bench" + (f" --only {args.only}" if args.only else "")
    report = render(results, command, time.perf_counter() - started)
    print(report)
    if args.output:
        Path(args.output).write_text(report + "\n", encoding="utf-8")
    return 0


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("bench", help="性能测试 / "
                                          "run the benchmarks and print a Markdown report")
    parser.add_argument("--only", help="comma-separated suites: " + ",".join(s[0] for s in SUITES))
    parser.add_argument("--output", help="also write the report to this file")
    parser.set_defaults(func=_cmd_bench)


if __name__ == "__main__":
    sys.exit(_cmd_bench(argparse.Namespace(only=None, output=None)))

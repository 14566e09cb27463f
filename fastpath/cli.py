"""``onedoor simulate ...``: run a simulated day, plan staffing, generate arrivals.

::

    onedoor simulate run --example city_hall [--arrivals A.csv] [--seed 1] [--json]
    onedoor simulate staffing --hall H.toml --arrivals A.csv --sla-minutes 15 [--plot out.png]
    onedoor simulate arrivals --example village_station --seed 3 --out arrivals.csv
    ... --calendar site.toml --date 2026-12-31    the day as the hall's calendar has it

A hall is ``--hall FILE.toml`` or ``--example NAME`` (``fastpath/examples``).
Bad files are reported with the file, line and reason, and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from typing import Any, TextIO

import structlog

from fastpath.calendar import CalendarError, calendar_from_file
from fastpath.simulate import (
    EXAMPLES,
    IMPLEMENTATION,
    HallModel,
    ModelError,
    WaitStats,
    example_hall,
    format_clock,
    generate_arrivals,
    ljust_display,
    load_hall,
    read_arrivals,
    simulate_day,
    write_arrivals,
)
from fastpath.staffing import find_plan, format_table, plot_hourly

log = structlog.get_logger(__name__)


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate", help="排队仿真 / queue simulator: run a day, plan staffing, generate arrivals",
        description="排队仿真 / queue simulator driving the hall's own dispatch policy",
    )
    sub = parser.add_subparsers(dest="simulate_command", metavar="ACTION")

    run = sub.add_parser("run", help="仿真一天 / simulate one day and print the summary")
    _hall_args(run)
    run.add_argument("--arrivals", help="CSV of arrivals to replay (default: Poisson from the "
                                        "hall's profile)")
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(func=_cmd_run)

    staffing = sub.add_parser("staffing", help="窗口配置 / "
                                               "smallest window plan meeting a p90 wait SLA")
    _hall_args(staffing)
    staffing.add_argument("--arrivals", required=True, help="CSV of arrivals (time,service,...)")
    staffing.add_argument("--sla-minutes", type=float, required=True,
                          help="p90 wait target per service")
    staffing.add_argument("--replications", type=int, default=16,
                          help="simulated days per plan to start with (default 16)")
    staffing.add_argument("--max-replications", type=int, default=64,
                          help="simulated days per plan at most, for plans not yet decided "
                               "(default 64)")
    staffing.add_argument("--confidence", type=float, default=0.9,
                          help="how sure each judgement must be (default 0.9)")
    staffing.add_argument("--seed", type=int, default=1)
    staffing.add_argument("--plot", help="write a PNG of p90 wait by hour, current vs proposed")
    staffing.add_argument("--json", action="store_true")
    staffing.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    staffing.set_defaults(func=_cmd_staffing)

    arrivals = sub.add_parser("arrivals", help="生成到达 / generate a day of arrivals as CSV")
    _hall_args(arrivals)
    arrivals.add_argument("--seed", type=int, default=1)
    arrivals.add_argument("--scale", type=float, default=1.0,
                          help="multiply every service's daily visitors (default 1.0)")
    arrivals.add_argument("--out", help="output file (default: stdout)")
    arrivals.set_defaults(func=_cmd_arrivals)


def _hall_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--hall", help="hall model TOML")
    known = ", ".join(sorted(p.stem for p in EXAMPLES.glob("*.toml")))
    group.add_argument("--example", help=f"a shipped hall: {known}")
    parser.add_argument("--calendar", help="the hall's calendar: a site config (its [hours], "
                                           "[calendar] and services' last_ticket), as the "
                                           "edge runs it")
    parser.add_argument("--date", type=dt.date.fromisoformat,
                        help="the day to simulate by --calendar, YYYY-MM-DD (default today)")


def _load(args: argparse.Namespace) -> HallModel:
    model = load_hall(args.hall) if args.hall else example_hall(args.example)
    if args.calendar:
        try:
            calendar = calendar_from_file(args.calendar)
        except CalendarError as exc:
            raise ModelError(str(exc)) from None
        model = model.on_date(calendar, args.date or dt.date.today())
    elif args.date:
        raise ModelError("--date needs --calendar (the hall model file has no calendar)")
    return model


def _fail(exc: Exception) -> int:
    print(f"onedoor simulate: {exc}", file=sys.stderr)
    return 2


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        model = _load(args)
        arrivals = read_arrivals(args.arrivals, model) if args.arrivals else None
    except ModelError as exc:
        return _fail(exc)
    started = time.perf_counter()
    summary = simulate_day(model, args.seed, arrivals).summary()
    log.info("simulate.run", hall=model.name, seed=args.seed, tickets=summary.tickets,
             implementation=IMPLEMENTATION, seconds=round(time.perf_counter() - started, 3))
    if args.json:
        print(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2))
        return 0
    out = sys.stdout
    print(f"{model.name}  seed {args.seed}  ({IMPLEMENTATION})", file=out)
    print(f"取号 tickets {summary.tickets}  办结 done {summary.done}  过号 no-show "
          f"{summary.no_show}  未办理 unserved {summary.unserved}", file=out)
    mean_util = sum(summary.utilisation) / max(1, len(summary.utilisation))
    print(f"窗口利用率 window utilisation {mean_util:.1%}", file=out)
    _stats_table(out, [("全部 all", summary.overall)] + [
        (f"{m.service.name_zh} {m.service.id}", summary.services[m.service.id])
        for m in model.services
    ])
    return 0


def _stats_table(out: TextIO, rows: list[tuple[str, WaitStats]]) -> None:
    header = "".join(f"{h:>9}" for h in ("tickets", "mean", "p50", "p90", "p99", ">SLA"))
    print(f"{ljust_display('业务 service', 24)}{header}  (wait, minutes)", file=out)
    for name, s in rows:
        minutes = (s.mean_ms, s.p50_ms, s.p90_ms, s.p99_ms)
        cells = "".join(f"{m / 60_000:>9.1f}" for m in minutes)
        over = "—" if s.over_sla is None else str(s.over_sla)  # no SLA: nothing to be over
        print(f"{ljust_display(name, 24)}{s.tickets:>9}{cells}{over:>9}", file=out)


class ProgressBar:
    """Progress on stderr: a bar redrawn in place on a terminal, plain lines elsewhere.

    ``total`` is the number of steps fixed when the work starts. On a terminal
    the bar is redrawn with a carriage return; into a file or a pipe (a log, CI)
    it writes one line per step done and no carriage returns.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self._stream = stream
        self.width = width
        self._last_done = -1

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def __call__(self, done: int, total: int, label: str) -> None:
        stream = self.stream
        if not stream.isatty():
            if done != self._last_done or label == "done":
                stream.write(f"[{done}/{total}] {label}\n")
                stream.flush()
            self._last_done = done
            return
        filled = round(self.width * min(done, total) / max(1, total))
        bar = "#" * filled + "-" * (self.width - filled)
        stream.write(f"\r[{bar}] {done:>3}/{total:<3} {label[:40]:<40}")
        if label == "done":
            stream.write("\n")
        stream.flush()


def _cmd_staffing(args: argparse.Namespace) -> int:
    try:
        model = _load(args)
        arrivals = read_arrivals(args.arrivals, model)
        progress = None if args.no_progress else ProgressBar()
        result = find_plan(model, arrivals, args.sla_minutes, replications=args.replications,
                           max_replications=max(args.replications, args.max_replications),
                           confidence=args.confidence, seed=args.seed, progress=progress)
    except ModelError as exc:
        return _fail(exc)
    if args.plot:
        plot_hourly(result, args.plot)
    if args.json:
        def plan(p: Any) -> Any:
            return None if p is None else {
                "windows": p.windows,
                "groups": {g.name: n for g, n in zip(model.groups, p.plan, strict=True)},
                "p90_ms": p.p90_ms, "unserved": p.unserved, "replications": p.replications,
                "confidence": round(p.confidence, 4),
                "over_sla_share": {k: round(v.over_share, 4) for k, v in p.services.items()},
            }
        print(json.dumps({
            "hall": model.name, "sla_ms": result.sla_ms,
            "confidence_level": result.confidence_level,
            "evaluations": result.evaluations, "simulated_days": result.days,
            "current": plan(result.current), "proposed": plan(result.proposed),
            "validation": plan(result.validation), "validated": result.validated,
            "comparison": [dataclasses.asdict(c) for c in result.comparison],
            "trace": [dataclasses.asdict(step) for step in result.trace],
        }, ensure_ascii=False, indent=2))
    else:
        print(format_table(result))
    return 0 if result.proposed is not None and result.validated else 1


def _cmd_arrivals(args: argparse.Namespace) -> int:
    try:
        model = _load(args)
        if args.scale <= 0:
            raise ModelError("--scale must be > 0")
        arrivals = generate_arrivals(model, args.seed, args.scale)
        if args.out:
            write_arrivals(args.out, model, arrivals)
        else:
            write_arrivals(sys.stdout, model, arrivals)
    except (ModelError, OSError) as exc:
        return _fail(exc)
    log.info("simulate.arrivals", hall=model.name, seed=args.seed, count=len(arrivals),
             first=format_clock(arrivals.time_ms[0]) if len(arrivals) else None)
    return 0


__all__ = ["ProgressBar", "register_cli"]

"""``onedoor edge ...``: run the daemon, check a config, show the hall, probe the devices,
make voice clips; ask whether it may restart and whether it is healthy (:mod:`edge.upgrade`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from edge.config import EdgeConfig, load_config
from edge.errors import ConfigInvalid, EdgeError, JournalError
from edge.upgrade import add_upgrade_commands


def _cmd_run(args: argparse.Namespace) -> int:
    from edge.daemon import run_daemon
    from edge.devices_factory import build_devices

    try:
        asyncio.run(run_daemon(args.config, device_factory=build_devices))
    except ConfigInvalid as exc:
        print(exc, file=sys.stderr)
        return 2
    except JournalError as exc:
        print(f"journal: {exc}", file=sys.stderr)
        return 3
    except (EdgeError, OSError) as exc:  # what check-config cannot foresee: say what, not how
        print(f"onedoor edge run: cannot run: {exc}", file=sys.stderr)
        return 4
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file, check_files=not args.skip_files)
    except ConfigInvalid as exc:
        print(exc, file=sys.stderr)
        return 1
    warnings = list(config.warnings)
    errors: list[str] = []
    if not args.skip_files:
        from edge.preflight import check_machine

        findings = check_machine(config)
        errors, warnings = findings.errors, warnings + findings.warnings
    for warning in warnings:
        print(f"WARNING {args.file}: {warning}", file=sys.stderr)
    if errors:
        print(f"{args.file}: {len(errors)} problem(s) on this machine", file=sys.stderr)
        for error in errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    print(f"{args.file}: ok — site {config.site.id} ({config.site.name}), "
          f"version {config.version}, {len(config.services)} services, "
          f"{len(config.windows)} windows"
          + (f", {len(warnings)} warning(s)" if warnings else ""))
    return 0


def _cmd_make_clips(args: argparse.Namespace) -> int:
    from edge.devices.voice import VoiceError, make_clips

    try:
        written = make_clips(args.directory, overwrite=args.overwrite)
    except VoiceError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.directory}: {len(written)} clip(s) written")
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from edge.devices.probe import format_results, run_probe

    try:
        config = load_config(args.config, check_files=False)
    except ConfigInvalid as exc:
        print(exc, file=sys.stderr)
        return 2
    results = run_probe(config, args.device)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], ensure_ascii=False, indent=2))
    else:
        print(format_results(results))
    return 0 if results and all(r.ok for r in results) else 1


def status_over_http(config: EdgeConfig) -> dict[str, Any] | None:
    if config.http is None:
        return None
    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::") else config.http.host
    try:
        with urllib.request.urlopen(f"http://{host}:{config.http.port}/status", timeout=3) as r:
            data: dict[str, Any] = json.load(r)
            return data
    except (urllib.error.URLError, OSError, ValueError):
        return None


def status_from_journal(config: EdgeConfig) -> dict[str, Any]:
    from edge.clock import SystemClock
    from edge.hall import Hall
    from edge.journal import Journal

    journal = Journal(config.paths.journal, config.site.id, read_only=True)
    try:
        return Hall.read_only(config, journal, SystemClock()).snapshot()
    finally:
        journal.close()


def format_status(status: dict[str, Any]) -> str:
    """The hall at a glance, for a terminal."""
    lines = [f"{status['name']} ({status['site']})  day {status['day']}  "
             f"config {status['config']}  seq {status['seq']} (acked {status['acked_seq']})"]
    completion = status["completion_pct"]
    lines.append(f"issued {status['issued']}  办件 {status['cases']}  办结 {status['done']}  "
                 f"办结率 {'-' if completion is None else f'{completion}%'}  "
                 f"ratings {status['ratings']} avg {status['rating_avg'] or '-'}")
    lines.append("queues:  " + "  ".join(
        f"{q['service']}({q['name']}) {q['waiting']} waiting, oldest {q['oldest_wait_s']}s"
        for q in status["queues"]))
    for window in status["windows"]:
        lines.append(f"  window {window['window']:>3}  {window['state']:<7} "
                     f"staff {window['staff'] or '-':<10} ticket {window['ticket'] or '-'}")
    for help_request in status["help"]:
        flag = "escalated" if help_request["escalated"] else (
            "acknowledged" if help_request["acknowledged"] else "waiting")
        lines.append(f"  呼叫帮办 {help_request['button']} {help_request['location']}: {flag}")
    for device in status.get("devices", []):
        lines.append(f"  device {device['device']:<14} {device['state']:<9} {device['detail']}")
    uplink = status.get("uplink")
    if uplink:
        lines.append(f"uplink: {'connected' if uplink['connected'] else 'DISCONNECTED'}, "
                     f"session {uplink['session']}, outbox {uplink['outbox_depth']}")
    if "uplink" not in status:
        lines.append("(daemon not reachable: read from the journal)")
    return "\n".join(lines)


def _cmd_status(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, check_files=False)
    except ConfigInvalid as exc:
        print(exc, file=sys.stderr)
        return 2
    status = status_over_http(config)
    if status is None:
        try:
            status = status_from_journal(config)
        except JournalError as exc:
            print(f"no daemon answers and the journal cannot be read: {exc}", file=sys.stderr)
            return 3
    if args.json:
        print(json.dumps(status, ensure_ascii=False, indent=2))
    else:
        print(format_status(status))
    return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    edge = subparsers.add_parser("edge", help="大厅守护进程 / "
                                              "the hall daemon (run, check-config, status)")
    add_edge_commands(edge.add_subparsers(dest="edge_command", metavar="EDGE_COMMAND"))


def add_edge_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """run, check-config and status (also used by ``python -m edge``)."""
    run = sub.add_parser("run", help="运行守护进程 / run the hall daemon")
    run.add_argument("--config", required=True, help="site TOML file")
    run.set_defaults(func=_cmd_run)
    check = sub.add_parser("check-config", help="检查配置 / "
                                                "validate a site config and list every problem")
    check.add_argument("file")
    check.add_argument("--skip-files", action="store_true",
                       help="check the file alone, not this machine: TLS and password files, "
                            "the journal's folder, voice clips, serial ports, GPIO")
    check.set_defaults(func=_cmd_check_config)
    status = sub.add_parser("status", help="大厅状态 / "
                                           "the hall at a glance (daemon HTTP, else journal)")
    status.add_argument("--config", required=True, help="site TOML file")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_status)
    probe = sub.add_parser(
        "probe", help="探测设备 / ask each configured device what it is, its status and round trip "
                      "(stop the daemon first: it owns the ports)")
    probe.add_argument("--config", required=True, help="site TOML file")
    probe.add_argument("--device", choices=("printer", "screens", "terminals", "id_card"),
                       help="only this device family")
    probe.add_argument("--json", action="store_true")
    probe.set_defaults(func=_cmd_probe)
    clips = sub.add_parser("make-clips", help="生成语音 / "
                                              "generate the default voice clips (espeak-ng)")
    clips.add_argument("directory")
    clips.add_argument("--overwrite", action="store_true", help="replace existing clips")
    clips.set_defaults(func=_cmd_make_clips)
    add_upgrade_commands(sub)


__all__ = [
    "add_edge_commands",
    "format_status",
    "register_cli",
    "status_from_journal",
    "status_over_http",
]

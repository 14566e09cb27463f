"""``onedoor central site ...`` and ``onedoor central audit``: the registry from the command line.

::

    onedoor central site list [--retired] [--town 石岐街道]
    onedoor central site show zs-shiqi-01                       # its spec as JSON
    onedoor central site add zs-shiqi-13 --name 石岐新村党群服务中心 --town 石岐街道 \\
        --kind village --windows 2 [--hours 08:30-17:30] [--lat 22.5 --lon 113.4]
    onedoor central site set zs-shiqi-13 [--name ...] [--hours 08:30-12:00|default]
        [--last-ticket 11:30|none] [--reset 03:00] [--lat ... --lon ...]
    onedoor central site service set zs-shiqi-13 huji --name 户籍业务 --prefix A --sla-minutes 30 \
        --windows 2                                             # windows that call it too
    onedoor central site service remove zs-shiqi-13 huji
    onedoor central site window set zs-shiqi-13 3 --services zonghe,huji [--priority]
    onedoor central site window remove zs-shiqi-13 3
    onedoor central site retire zs-shiqi-12 [--force]  |  site restore zs-shiqi-12
    onedoor central site import --sites sites.csv [--services ...] [--windows ...] [--apply]
    onedoor central site export --dir DIR
    onedoor central site booking-rules zs-shiqi-13 [--set rules.json]   # 预约规则 (JSON)
    onedoor central audit [--since 2026-11-01T00:00+08:00] [--target zs-shiqi-13] [--csv]

Every change goes through :class:`central.registry.Registry` (the same checks
as the API) and is audited as the system user who ran it, from ``cli@<host>``.
``site add --windows N`` gives the site the packaged catalogue's services of
its kind and windows laid out as the seed does (:func:`central.seed.site_spec`);
``--catalogue`` names another ``services.csv``. An import is a dry run (the
diff) unless ``--apply``. A retirement here sends no webhook for the alarms it
clears (the API's does). Help is Chinese first, English second.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from central.audit import Actor, audit_csv
from central.bookings import Bookings
from central.cli import database_config, guarded, sessions_of, with_config
from central.config import CentralConfig
from central.errors import InvalidRequest
from central.models import SiteKind
from central.queries import ReadModel
from central.registry import Edit, Registry
from central.registry_csv import decode_csv, read_sheet
from central.seed import SERVICES_CSV, SiteRow, read_services, site_spec
from central.sitespec import DEFAULT_RESET, Hours, ServiceSpec, SiteSpec, WindowSpec, to_builtins


def _registry(config: CentralConfig) -> Registry:
    return Registry(sessions_of(config))


def _read(config: CentralConfig) -> ReadModel:
    return ReadModel(sessions_of(config))


def _now() -> datetime:
    return datetime.now(UTC)


def _hours_span(text: str) -> tuple[str, str]:
    opens, dash, closes = text.partition("-")
    if not dash:
        raise InvalidRequest(f"--hours {text!r}: give OPEN-CLOSE, e.g. 08:30-17:30, or default")
    return opens.strip(), closes.strip()


def _with_hours(spec: SiteSpec, args: argparse.Namespace) -> SiteSpec:
    """``spec`` with the hours options applied (the others' values kept)."""
    hours = spec.hours
    if args.hours == "default":
        hours = None
    elif args.hours:
        opens, closes = _hours_span(args.hours)
        hours = Hours(opens, closes, hours.reset if hours else DEFAULT_RESET,
                      hours.last_ticket if hours else None)  # fmt: skip
    if (args.last_ticket is not None or args.reset is not None) and hours is None:
        raise InvalidRequest("--last-ticket and --reset need opening hours of the site's own: "
                             "give --hours too")  # fmt: skip
    if hours is not None and args.last_ticket is not None:
        last = None if args.last_ticket == "none" else args.last_ticket
        hours = dataclasses.replace(hours, last_ticket=last)
    if hours is not None and args.reset is not None:
        hours = dataclasses.replace(hours, reset=args.reset)
    return dataclasses.replace(spec, hours=hours)


# --------------------------------------------------------------------------- commands


def _cmd_list(args: argparse.Namespace) -> int:
    summaries = _read(database_config(args)).site_summaries(town=args.town,
                                                            retired=args.retired)  # fmt: skip
    for s in summaries:
        state = "retired" if args.retired else ("online" if s.online else "offline")
        print(f"{s.id:<20} {s.kind:<10} {state:<8} {s.town}  {s.name}")
    print(f"# {len(summaries)} sites", file=sys.stderr)
    return 0


def _cmd_booking_rules(args: argparse.Namespace) -> int:
    """A site's booking rules (:mod:`central.booking_rules`), set from a file if given."""
    config = database_config(args)
    bookings = Bookings(sessions_of(config), config)
    if args.rules_file is not None:
        try:
            document = json.loads(args.rules_file.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidRequest(f"{args.rules_file}: {exc}") from None
        shown = bookings.set_rules(args.site, document, actor=Actor.command_line(), now=_now())
        print(f"{args.site}: 预约规则已更新 / booking rules set", file=sys.stderr)
    else:
        shown = bookings.rules(args.site)
    print(json.dumps(shown, ensure_ascii=False, indent=1))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    spec = _read(database_config(args)).site_spec(args.site)
    print(json.dumps(to_builtins(spec), ensure_ascii=False, indent=1))
    return 0


def _cmd_add(args: argparse.Namespace) -> int:
    config = database_config(args)
    row = SiteRow(id=args.site, name=args.name, town=args.town, kind=SiteKind(args.kind),
                  lat=args.lat, lon=args.lon, windows=args.windows)  # fmt: skip
    spec = _with_hours(site_spec(row, read_services(args.catalogue)), args)
    _registry(config).create_site(spec, actor=Actor.command_line(), now=_now())
    print(f"{spec.id}: 已新增 / added ({len(spec.services)} services, {len(spec.windows)} "
          "windows)")  # fmt: skip
    return 0


def _cmd_set(args: argparse.Namespace) -> int:
    fields = {name: getattr(args, name) for name in ("name", "town", "lat", "lon")
              if getattr(args, name) is not None}  # fmt: skip
    if args.kind is not None:
        fields["kind"] = SiteKind(args.kind)

    return _edit(args, lambda spec: _with_hours(dataclasses.replace(spec, **fields), args))


def _cmd_retire(args: argparse.Namespace) -> int:
    retirement = _registry(database_config(args)).retire_site(
        args.site, actor=Actor.command_line(), now=_now(), force=args.force)
    print(f"{args.site}: 已撤销 / retired ({retirement.alarms_cleared} active alarms cleared)")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    _registry(database_config(args)).restore_site(args.site, actor=Actor.command_line(),
                                                  now=_now())  # fmt: skip
    print(f"{args.site}: 已恢复 / restored")
    return 0


def _numbers(text: str | None) -> list[int]:
    try:
        return [int(part) for part in (text or "").split(",") if part.strip()]
    except ValueError:
        raise InvalidRequest(f"--windows {text!r}: window numbers, comma-separated") from None


def _edit(args: argparse.Namespace, edit: Edit) -> int:
    diff = _registry(database_config(args)).change_site(args.site, edit,
                                                        actor=Actor.command_line(), now=_now())
    print(f"{args.site}: {diff.summary() or '未变 / no change'}")
    return 0


def _cmd_service_set(args: argparse.Namespace) -> int:
    service = ServiceSpec(args.code, args.name, args.prefix, args.sla_minutes * 60)
    windows = _numbers(args.windows)
    return _edit(args, lambda spec: spec.with_service(service, windows))


def _cmd_service_remove(args: argparse.Namespace) -> int:
    return _edit(args, lambda spec: spec.without_service(args.code))


def _cmd_window_set(args: argparse.Namespace) -> int:
    codes = tuple(code.strip() for code in args.services.split(",") if code.strip())

    def edit(spec: SiteSpec) -> SiteSpec:
        current = spec.window(args.number)
        name = args.window_name if args.window_name is not None else (
            current.name if current else None)  # fmt: skip
        priority = args.priority if args.priority is not None else (
            current.priority if current else False)  # fmt: skip
        return spec.with_window(WindowSpec(args.number, codes, name, priority))

    return _edit(args, edit)


def _cmd_window_remove(args: argparse.Namespace) -> int:
    return _edit(args, lambda spec: spec.without_window(args.number))


def _cmd_import(args: argparse.Namespace) -> int:
    texts = {part: decode_csv(getattr(args, part).read_bytes(), f"{part}.csv")
             for part in ("sites", "services", "windows") if getattr(args, part) is not None}
    if not texts:
        raise InvalidRequest("give --sites, --services and/or --windows")
    sheet = read_sheet(**texts)
    registry = _registry(database_config(args))
    options: dict[str, Any] = {"retire_missing": args.retire_missing, "force": args.force}
    if args.apply:
        plan = registry.apply_import(sheet, actor=Actor.command_line(), now=_now(), **options)
    else:
        plan = registry.plan_import(sheet, **options)
    for line in plan.lines():
        print(line)
    if plan.applied:
        print("# 已导入 / applied", file=sys.stderr)
        return 0
    if plan.problems:
        print(f"# {len(plan.problems)} problem(s): nothing would be imported", file=sys.stderr)
        return 1
    print("# 预演，未修改 / dry run, nothing changed: add --apply to import", file=sys.stderr)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    texts = _read(database_config(args)).registry_sheet()
    args.dir.mkdir(parents=True, exist_ok=True)
    for part, text in texts.items():
        (args.dir / f"{part}.csv").write_text(text, encoding="utf-8")
    print(f"{args.dir}: sites.csv, services.csv, windows.csv")
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    entries = _read(database_config(args)).audit(
        since=args.since, until=args.until, action=args.action, target=args.target,
        actor=args.actor, limit=args.limit)  # fmt: skip
    if args.csv:
        sys.stdout.write(audit_csv(entries).lstrip("\ufeff"))
        return 0
    for e in entries:
        detail = json.dumps(e.detail, ensure_ascii=False, sort_keys=True)
        print(f"{e.id:>6} {e.at} {e.actor} ({e.source}) {e.action} {e.target} {detail[:300]}")
    return 0


# --------------------------------------------------------------------------- the parsers


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a time zone, e.g. +08:00")
    return value


def _add_hours_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hours", metavar="OPEN-CLOSE",
                        help="营业时间 / opening hours, e.g. 08:30-17:30; default: the fleet's")
    parser.add_argument("--last-ticket", metavar="HH:MM",
                        help="停止取号 / no ticket from then on (none: at closing)")
    parser.add_argument("--reset", metavar="HH:MM",
                        help=f"日切 / the day reset, outside opening hours (default "
                             f"{DEFAULT_RESET})")  # fmt: skip


def register_registry_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``site`` and ``audit`` to ``onedoor central``."""
    site = sub.add_parser("site", help="站点登记 / the site registry: add, change, retire, "
                          "import, export")  # fmt: skip
    actions = site.add_subparsers(dest="site_command", metavar="ACTION")

    def command(parent: Any, name: str, text: str, handler: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = with_config(parent.add_parser(name, help=text))
        parser.set_defaults(func=guarded(handler))
        return parser

    listing = command(actions, "list", "站点列表 / list the sites in service", _cmd_list)
    listing.add_argument("--retired", action="store_true", help="已撤销站点 / the retired ones")
    listing.add_argument("--town", help="只列此镇街 / only this town")
    show = command(actions, "show", "站点登记信息 / a site's registry entry (JSON)", _cmd_show)
    show.add_argument("site")

    add = command(actions, "add", "新增站点 / add a site", _cmd_add)
    add.add_argument("site", help="站点编号 / site id, e.g. zs-shiqi-13")
    add.add_argument("--name", required=True, help="名称 / name")
    add.add_argument("--town", required=True, help="镇街 / town")
    add.add_argument("--kind", required=True, choices=[k.value for k in SiteKind])
    add.add_argument("--windows", type=int, required=True,
                     help="窗口数 / number of windows (laid out as the seed does)")
    add.add_argument("--lat", type=float)
    add.add_argument("--lon", type=float)
    add.add_argument("--catalogue", type=Path, default=SERVICES_CSV,
                     help="服务目录 / services.csv whose services of the kind the site offers "
                          "(default: the packaged one)")  # fmt: skip
    _add_hours_options(add)

    change = command(actions, "set", "修改站点 / change a site's fields or hours", _cmd_set)
    change.add_argument("site")
    change.add_argument("--name")
    change.add_argument("--town")
    change.add_argument("--kind", choices=[k.value for k in SiteKind])
    change.add_argument("--lat", type=float)
    change.add_argument("--lon", type=float)
    _add_hours_options(change)

    retire = command(actions, "retire", "撤销站点 / retire a site (its history stays)",
                     _cmd_retire)  # fmt: skip
    retire.add_argument("site")
    retire.add_argument("--force", action="store_true",
                        help="即使在线 / although its edge is online (its messages are then "
                             "refused and counted)")  # fmt: skip
    restore = command(actions, "restore", "恢复站点 / bring a retired site back", _cmd_restore)
    restore.add_argument("site")

    service = actions.add_parser("service", help="服务事项 / a site's services")
    services = service.add_subparsers(dest="service_command", metavar="ACTION")
    put = command(services, "set", "新增或修改服务 / add or change a service", _cmd_service_set)
    put.add_argument("site")
    put.add_argument("code", help="服务代码 / service code, e.g. huji")
    put.add_argument("--name", required=True, help="名称 / name")
    put.add_argument("--prefix", required=True, help="票号字母 / ticket letter(s), A-Z")
    put.add_argument("--sla-minutes", type=int, default=0,
                     help="等候时限（分钟）/ waiting limit in minutes (0: none)")
    put.add_argument("--windows", metavar="N,N",
                     help="由这些窗口办理 / windows that call it too (a new service needs one)")
    drop = command(services, "remove", "删除服务 / remove a service", _cmd_service_remove)
    drop.add_argument("site")
    drop.add_argument("code")

    window = actions.add_parser("window", help="窗口 / a site's windows")
    windows = window.add_subparsers(dest="window_command", metavar="ACTION")
    put = command(windows, "set", "新增或修改窗口 / add or change a window", _cmd_window_set)
    put.add_argument("site")
    put.add_argument("number", type=int)
    put.add_argument("--services", required=True,
                     help="办理的服务 / service codes, comma-separated")
    put.add_argument("--name", dest="window_name", help="窗口名称 / name")
    put.add_argument("--priority", action=argparse.BooleanOptionalAction, default=None,
                     help="优先服务专窗 / calls priority tickets first")
    drop = command(windows, "remove", "删除窗口 / remove a window", _cmd_window_remove)
    drop.add_argument("site")
    drop.add_argument("number", type=int)

    load = command(actions, "import", "批量导入（默认预演）/ import CSV files: a dry run "
                   "(the diff) unless --apply", _cmd_import)  # fmt: skip
    load.add_argument("--sites", type=Path, help="sites.csv")
    load.add_argument("--services", type=Path, help="services.csv")
    load.add_argument("--windows", type=Path, help="windows.csv")
    load.add_argument("--apply", action="store_true", help="执行导入 / import for real")
    load.add_argument("--retire-missing", action="store_true",
                      help="撤销未列出的站点 / retire sites in service missing from sites.csv")
    load.add_argument("--force", action="store_true",
                      help="即使在线也撤销 / retire online sites too")
    dump = command(actions, "export", "导出 / write sites.csv, services.csv, windows.csv",
                   _cmd_export)  # fmt: skip
    dump.add_argument("--dir", type=Path, required=True, help="目标目录 / folder")
    rules = command(actions, "booking-rules", "预约规则 / a site's booking rules (quotas per "
                    "slot, hours): show them, or set them from a JSON file", _cmd_booking_rules)
    rules.add_argument("site")
    rules.add_argument("--set", dest="rules_file", type=Path,
                       help="规则文件 / a JSON file of the rules ({} clears them)")

    audit = with_config(sub.add_parser(
        "audit", help="审计日志 / the audit log: who changed what, when, from where"))  # fmt: skip
    audit.add_argument("--since", type=_aware, help="ISO time with zone, e.g. "
                       "2026-11-01T00:00+08:00")  # fmt: skip
    audit.add_argument("--until", type=_aware)
    audit.add_argument("--action", help="e.g. site.retire, or site. for every site change")
    audit.add_argument("--target", help="a site id, token:<id>, alarm:<id>, registry")
    audit.add_argument("--actor", help="a token name or system user")
    audit.add_argument("--limit", type=int, default=200)
    audit.add_argument("--csv", action="store_true", help="CSV, as the API's audit.csv")
    audit.set_defaults(func=guarded(_cmd_audit))


__all__ = ["register_registry_cli"]

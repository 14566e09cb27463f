"""``onedoor central user ...``: accounts for people, from the central's command line.

::

    onedoor central user create --username ops-chen --name 陈工 --role admin   # the first admin
    onedoor central user create --username li.ming --name 李明 --role operator --town 三乡镇
    onedoor central user list
    onedoor central user set li.ming [--role viewer] [--town 三乡镇 --town 坦洲镇 | --city]
    onedoor central user disable li.ming | enable li.ming
    onedoor central user password li.ming            # a new password (the user's sessions end)

The password is asked twice on the terminal, or read from the first line of
standard input with ``--password-stdin`` (for scripts; never on the command
line, where ``ps`` and the shell history would show it). Every change is in the
audit log as the system user who ran the command.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from central.accounts import UNSET, Unset, UserInfo, UserStore
from central.audit import Actor, AuditAction, AuditLog
from central.auth import Role
from central.cli import database_config, guarded, with_config
from central.db import make_engine, migrate, session_factory
from central.errors import InvalidRequest


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InvalidRequest("--password-stdin: standard input is empty")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InvalidRequest("no terminal to ask the password on: use --password-stdin")
    first = getpass.getpass("密码 / password: ")
    if getpass.getpass("再次输入 / again: ") != first:
        raise InvalidRequest("the two passwords differ")
    return first


def _show(info: UserInfo) -> str:
    towns = "全市/city" if info.towns is None else ",".join(info.towns)
    state = "" if info.enabled else "  (已停用 disabled)"
    last = f"  last login {info.last_login_at:%Y-%m-%d %H:%M}" if info.last_login_at else ""
    return f"{info.username:<20} {info.role.value:<8} {towns:<20} {info.display_name}{state}{last}"


@contextmanager
def _stores(args: argparse.Namespace) -> Iterator[tuple[UserStore, AuditLog]]:
    """The accounts and the audit log on the configured database (closed after)."""
    engine = make_engine(database_config(args).database_url)
    try:
        migrate(engine)
        sessions = session_factory(engine)
        yield UserStore(sessions), AuditLog(sessions)
    finally:
        engine.dispose()


def _towns(args: argparse.Namespace) -> list[str] | None:
    return list(args.town) if args.town else None


def _cmd_create(args: argparse.Namespace) -> int:
    password = _password(args)
    with _stores(args) as (users, audit):
        now = datetime.now(UTC)
        info = users.create(args.username, args.name, args.role, _towns(args), password, now=now)
        audit.write(Actor.command_line(), AuditAction.USER_CREATE, f"user:{info.username}",
                    {"display_name": info.display_name, "role": info.role.value,
                     "towns": None if info.towns is None else list(info.towns)},
                    now=now)  # fmt: skip
    print(_show(info))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    with _stores(args) as (users, _):
        for info in users.list():
            print(_show(info))
    return 0


def _cmd_set(args: argparse.Namespace) -> int:
    with _stores(args) as (users, audit):
        return _set(args, users, audit)


def _set(args: argparse.Namespace, users: UserStore, audit: AuditLog) -> int:
    now = datetime.now(UTC)
    towns: list[str] | Unset | None = UNSET
    if args.city:
        towns = None
    elif args.town:
        towns = list(args.town)
    before = users.get(args.username)
    info = users.update(args.username, now=now, display_name=args.name, role=args.role,
                        towns=towns)  # fmt: skip
    changed = {key: [old, new] for key, old, new in (
        ("display_name", before.display_name, info.display_name),
        ("role", before.role.value, info.role.value),
        ("towns", before.towns and list(before.towns), info.towns and list(info.towns)))
        if old != new}  # fmt: skip
    if changed:
        audit.write(Actor.command_line(), AuditAction.USER_UPDATE, f"user:{info.username}",
                    changed, now=now)  # fmt: skip
    print(_show(info))
    return 0


def _enabled(enabled: bool) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        with _stores(args) as (users, audit):
            now = datetime.now(UTC)
            info = users.set_enabled(args.username, enabled, now=now)
            audit.write(Actor.command_line(),
                        AuditAction.USER_ENABLE if enabled else AuditAction.USER_DISABLE,
                        f"user:{info.username}", {}, now=now)  # fmt: skip
        print(_show(info))
        return 0

    return command


def _cmd_password(args: argparse.Namespace) -> int:
    with _stores(args) as (users, audit):
        users.get(args.username)  # an unknown name fails before the password is asked
        now = datetime.now(UTC)
        info = users.set_password(args.username, _password(args), now=now)
        audit.write(Actor.command_line(), AuditAction.USER_PASSWORD, f"user:{info.username}",
                    {"by": "cli"}, now=now)  # fmt: skip
    print(f"password set for {info.username}; its sessions ended")
    return 0


def register_user_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="账号 / accounts for people (named users with a role "
                          "and their towns)")  # fmt: skip
    actions = user.add_subparsers(dest="user_command", metavar="ACTION")
    roles = [r.value for r in Role]

    create = with_config(actions.add_parser("create", help="新建账号 / create an account"))
    create.add_argument("--username", required=True, help="login name: a-z 0-9 . _ -")
    create.add_argument("--name", required=True, help="姓名 / the name people know, e.g. 李明")
    create.add_argument("--role", required=True, choices=roles)
    create.add_argument("--town", action="append", help="a town it covers (repeat for more); "
                        "none: the whole city")  # fmt: skip
    create.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    create.set_defaults(func=guarded(_cmd_create))

    listing = with_config(actions.add_parser("list", help="列出账号 / list accounts"))
    listing.set_defaults(func=guarded(_cmd_list))

    change = with_config(actions.add_parser("set", help="修改账号 / change role, towns, name"))
    change.add_argument("username")
    change.add_argument("--role", choices=roles)
    change.add_argument("--name")
    scope = change.add_mutually_exclusive_group()
    scope.add_argument("--town", action="append", help="the towns it covers (replaces them)")
    scope.add_argument("--city", action="store_true", help="the whole city")
    change.set_defaults(func=guarded(_cmd_set))

    for name, enabled, text in (("disable", False, "停用 / disable (its sessions end)"),
                                ("enable", True, "启用 / enable again")):  # fmt: skip
        parser = with_config(actions.add_parser(name, help=text))
        parser.add_argument("username")
        parser.set_defaults(func=guarded(_enabled(enabled)))

    password = with_config(actions.add_parser("password", help="重设密码 / set a new password "
                                              "(its sessions end)"))  # fmt: skip
    password.add_argument("username")
    password.add_argument("--password-stdin", action="store_true",
                          help="read the password from the first line of standard input")
    password.set_defaults(func=guarded(_cmd_password))


__all__ = ["register_user_cli"]

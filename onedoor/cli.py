"""The ``onedoor`` command line.

Each part of the system contributes its own subcommands through a
``register_cli(subparsers)`` function in its ``cli`` module; this file only
assembles them, so a newcomer finds ``onedoor edge ...`` in ``edge/cli.py``,
``onedoor simulate ...`` in ``fastpath/cli.py`` and so on.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from onedoor import __version__, log
from onedoor.cli_support import add_log_level, finish

# Modules that add subcommands, each with its command name.
CLI_MODULES = (
    ("fastpath.cli", "simulate"),
    ("edge.cli", "edge"),
    ("central.cli", "central"),
    ("onedoor.demo", "demo"),
    ("onedoor.bench", "bench"),
    ("onedoor.loadgen", "loadgen"),
)

# Parts that need an optional extra of pyproject.toml, with the top-level modules that
# extra installs. A Raspberry Pi runs `onedoor edge ...` without the central's extra:
# there `onedoor central` only says what to install. Any other missing module is a
# broken install and fails loudly.
OPTIONAL_EXTRAS = {
    "central.cli": ("central", frozenset({
        "fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg", "influxdb_client",
        "jinja2", "markdown_it",
    })),
}

EXTRA_MISSING = 3  # exit status of a command whose optional extra is not installed


def _cmd_version(args: argparse.Namespace) -> int:
    import fastpath

    print(f"onedoor {__version__} (fastpath: {fastpath.IMPLEMENTATION})")
    return 0


def _missing_extra(command: str, extra: str, missing: str) -> Callable[[argparse.Namespace], int]:
    def explain(_args: argparse.Namespace) -> int:
        print(f"onedoor {command}: 未安装 {extra} 组件 / needs the '{extra}' extra "
              f"(module {missing} is missing): pip install 'onedoor[{extra}]'",
              file=sys.stderr)
        return EXTRA_MISSING

    return explain


def _add_unavailable(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                     command: str, extra: str, missing: str) -> None:
    text = f"未安装 / not installed here: needs onedoor[{extra}]"
    parser = sub.add_parser(command, help=text, description=text)
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(func=_missing_extra(command, extra, missing))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onedoor",
        description="onedoor — 进一扇门，办成所有事: queueing and fleet system for service halls",
    )
    add_log_level(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    version = sub.add_parser("version", help="版本 / print the version and which fastpath is "
                                             "in use")
    version.set_defaults(func=_cmd_version)
    for name, command in CLI_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            extra, modules = OPTIONAL_EXTRAS.get(name, ("", frozenset()))
            top_level = (exc.name or "").partition(".")[0]
            if top_level not in modules:  # a broken install, not an optional part
                raise
            _add_unavailable(sub, command, extra, top_level)
            continue
        register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]
        register = module.register_cli
        register(sub)
    return finish(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log.configure(args.log_level)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

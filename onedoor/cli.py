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
from dataclasses import dataclass

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
    ("onedoor.release", "release"),
)



@dataclass(frozen=True, slots=True)
class OptionalPart:
    """A part an install may lack, and the missing modules that mean just that."""

    remedy: str
    modules: frozenset[str]


# A Raspberry Pi runs `onedoor edge ...` without the central's extra, and a wheel has no
# benchmarks: there `onedoor central` and `onedoor bench` only say how to get them. Any
# other missing module is a broken install and fails loudly.
OPTIONAL_PARTS = {
    "central.cli": OptionalPart(
        "pip install 'onedoor[central]'",
        # the top-level modules the `central` extra of pyproject.toml installs
        frozenset({"fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg",
                   "influxdb_client", "jinja2", "markdown_it"}),
    ),
    "onedoor.bench": OptionalPart(
        "run `make bench` in a source checkout (the wheel leaves the benchmarks out)",
        frozenset({"onedoor.bench"}),
    ),
}

PART_MISSING = 3  # exit status of a command whose part is not installed here


def _cmd_version(args: argparse.Namespace) -> int:
    import fastpath

    print(f"onedoor {__version__} (fastpath: {fastpath.IMPLEMENTATION})")
    return 0


def _add_unavailable(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                     command: str, part: OptionalPart, missing: str) -> None:
    text = f"此处未安装 / not installed here: {part.remedy}"
    # No option prefix: every argument the real command would take (--only, run, -h)
    # lands in `arguments` instead of failing as unknown before the explanation.
    parser = sub.add_parser(command, help=text, description=text, prefix_chars="\0",
                            add_help=False)
    parser.add_argument("arguments", nargs="*", help=argparse.SUPPRESS)

    def explain(_args: argparse.Namespace) -> int:
        print(f"onedoor {command}: 此处未安装 / not installed here (no module {missing}): "
              f"{part.remedy}", file=sys.stderr)
        return PART_MISSING

    parser.set_defaults(func=explain)


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
            part = OPTIONAL_PARTS.get(name)
            missing = exc.name or ""
            if part is None or not {missing, missing.partition(".")[0]} & part.modules:
                raise  # a broken install, not a part left out
            _add_unavailable(sub, command, part, missing)
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

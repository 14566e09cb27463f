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

# Modules that add subcommands. A part that is not built yet is simply absent.
CLI_MODULES = (
    "fastpath.cli",
    "firmware_protocols.cli",
    "edge.cli",
    "central.cli",
    "onedoor.demo",
    "onedoor.bench",
    "onedoor.loadgen",
    "onedoor.release",
)


# Parts whose dependencies come with an extra, by module: (its command, the extra). A Pi
# installs onedoor[pi] without the central's: `onedoor edge ...` must work there, and
# `onedoor central` say what is missing instead of failing every command.
NEEDS_EXTRA = {"central.cli": ("central", "central")}


def _missing_extra(sub: argparse._SubParsersAction[argparse.ArgumentParser], command: str,
                   extra: str, missing: str) -> None:  # fmt: skip
    def refuse(args: argparse.Namespace) -> int:
        print(f"onedoor {command} needs the {extra} extra (no module {missing!r} here): "
              f"pip install 'onedoor[{extra}]'", file=sys.stderr)
        return 2

    parser = sub.add_parser(command, help=f"(not installed: needs onedoor[{extra}])")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    parser.set_defaults(func=refuse)


def _cmd_version(args: argparse.Namespace) -> int:
    import fastpath

    print(f"onedoor {__version__} (fastpath: {fastpath.IMPLEMENTATION})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onedoor",
        description="onedoor — 进一扇门，办成所有事: queueing and fleet system for service halls",
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    version = sub.add_parser("version", help="print the version and which fastpath is in use")
    version.set_defaults(func=_cmd_version)
    for name in CLI_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            if name not in NEEDS_EXTRA:  # a real missing dependency, not an absent part
                raise
            _missing_extra(sub, *NEEDS_EXTRA[name], str(exc.name))
            continue
        register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]
        register = module.register_cli
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log.configure(args.log_level)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

"""Pieces shared by ``onedoor`` and ``python -m edge``: log level, command groups.

``finish(parser)`` runs once on an assembled parser. For every command group
(a parser with subcommands: ``onedoor``, ``onedoor central``, ``onedoor
central site`` ...) it makes a missing action print the group's help and say
on stderr which actions exist, exit status 2; and it gives every subcommand
without a description of its own its help line as description, so
``onedoor edge run --help`` says what the command does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator

from onedoor.log import LEVELS

MISSING_ACTION = 2  # argparse's own exit status for a usage error

Command = Callable[[argparse.Namespace], int]


def add_log_level(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` limited to the levels :func:`onedoor.log.configure` knows."""
    parser.add_argument("--log-level", default="info", choices=LEVELS, type=str.lower,
                        help="日志级别 / log level (default info)")


def subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[
        argparse.ArgumentParser] | None:
    """The parser's subcommand action, if it is a command group."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every parser below it, depth first."""
    yield parser
    group = subcommands(parser)
    if group is not None:
        seen: set[int] = set()
        for child in group.choices.values():
            if id(child) not in seen:  # aliases map several names to one parser
                seen.add(id(child))
                yield from walk(child)


def _missing_action(parser: argparse.ArgumentParser,
                    group: argparse._SubParsersAction[argparse.ArgumentParser]) -> Command:
    def explain(_args: argparse.Namespace) -> int:
        parser.print_help()
        names = ", ".join(choice.dest for choice in group._choices_actions)
        print(f"{parser.prog}: 缺少操作 / no action given; choose one of: {names}",
              file=sys.stderr)
        return MISSING_ACTION

    return explain


def finish(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Missing actions explained, descriptions filled in (see the module docstring)."""
    for each in walk(parser):
        group = subcommands(each)
        if group is None:
            continue
        group.required = False  # explained by the group's own default command instead
        each.set_defaults(func=_missing_action(each, group))
        for choice in group._choices_actions:
            child = group.choices[choice.dest]
            if not child.description:
                child.description = choice.help
    return parser


__all__ = ["add_log_level", "finish", "subcommands", "walk"]

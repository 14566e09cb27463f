"""``python -m edge run|check-config|status``: the edge commands without the rest of onedoor.

``onedoor edge ...`` does the same, but ``onedoor`` loads every part's CLI
(the central's SQLAlchemy and FastAPI among them); on a Raspberry Pi the
daemon starts faster and stays smaller through this entry point, which is
what the systemd unit uses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edge.cli import add_edge_commands
from onedoor import log
from onedoor.cli_support import add_log_level, finish


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge", description="onedoor hall daemon")
    add_log_level(parser)
    add_edge_commands(parser.add_subparsers(dest="command", metavar="COMMAND"))
    finish(parser)
    args = parser.parse_args(argv)
    log.configure(args.log_level)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

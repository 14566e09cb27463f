"""structlog setup shared by every onedoor process.

Events are key-value records: ``log.info("ticket.issued", number="A012")``.
On a terminal they render for people; under systemd (``ONEDOOR_LOG_JSON=1``
or no TTY) they render as one JSON object per line for journald.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog


class _StderrLogger:
    """Writes each line to the *current* ``sys.stderr``.

    structlog's PrintLogger keeps the stream it was given; a test runner that
    swaps and closes stderr would then break every later log call.
    """

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class _StderrLoggerFactory:
    def __call__(self, *args: object) -> _StderrLogger:
        return _StderrLogger()


# The levels ``--log-level`` accepts, quietest last.
LEVELS = ("debug", "info", "warning", "error")


def configure(level: str = "info", *, json: bool | None = None) -> None:
    """Configure structlog once per process; ``level`` is one of :data:`LEVELS`."""
    level = level.lower()
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}: choose one of {', '.join(LEVELS)}")
    if json is None:
        json = os.environ.get("ONEDOOR_LOG_JSON") == "1" or not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=_StderrLoggerFactory(),
        cache_logger_on_first_use=False,
    )


__all__ = ["LEVELS", "configure"]

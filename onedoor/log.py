"""structlog setup shared by every onedoor process, and the process's recent log lines.

Events are key-value records: ``log.info("ticket.issued", number="A012")``.
On a terminal they render for people; under systemd (``ONEDOOR_LOG_JSON=1``
or no TTY) they render as one JSON object per line for journald.

Every process also keeps its last :data:`RECENT_LINES` events in memory
(:data:`recent`, :class:`RecentLog`), rendered as one short line each with
secrets masked (:func:`redact`): the edge's remote diagnostics send them to the
central, so no port on the Pi has to be opened to read its log. What is masked:
values of keys that name a secret (``password``, ``token``, ``secret``,
``authorization``, ``cookie``, ...), values registered as secrets
(:meth:`RecentLog.add_secret`: the MQTT password, the window token), resident ID
numbers (18 and 15 digits), bearer and onedoor API tokens, and passwords or
keys in URLs. Journald keeps the full lines on the Pi itself.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

import structlog

RECENT_LINES: Final = 1000
"""Log lines a process keeps in memory for remote diagnostics."""
LINE_CHARS: Final = 400
"""A recent line is cut here (the MQTT contract's ``LogLine.text``)."""
MASK: Final = "***"

_SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|token|authori[sz]ation|cookie|api_?key|credential|"
    r"private_?key|id_?(number|card)|sfz", re.IGNORECASE)
_NOT_SECRET_KEY = re.compile(r"(_id|_ids|_count|_at|_ts)$", re.IGNORECASE)  # token_id: public
_PATTERNS: Final = (
    # 公民身份号码: 18 characters (17 digits and a check digit or X), and the old 15 digits.
    (re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])"), MASK),
    (re.compile(r"(?<![0-9A-Za-z])\d{15}(?![0-9A-Za-z])"), MASK),
    (re.compile(r"(?i)\bbearer\s+[^\s,;\"']+"), "Bearer " + MASK),
    (re.compile(r"\bod_[0-9a-f]{8}_[A-Za-z0-9_-]+"), MASK),  # central API tokens
    (re.compile(r"(://[^/\s:@]*):[^/\s@]*@"), r"\1:" + MASK + "@"),  # user:password@host
    (re.compile(r"(?i)\b(password|passwd|pwd|token|access_token|key|sign|secret)=[^&\s\"']+"),
     r"\1=" + MASK),
)
_LEVELS: Final = {"debug": "debug", "info": "info", "warning": "warning", "warn": "warning",
                  "error": "error", "exception": "error", "critical": "critical",
                  "fatal": "critical"}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secrets, ID numbers, tokens and URL passwords masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@dataclass(frozen=True, slots=True)
class RecentLine:
    ts_ms: int
    level: str  # debug, info, warning, error, critical
    text: str  # the event and its fields, redacted, at most LINE_CHARS, no control characters


class RecentLog:
    """The last log lines of this process, redacted (a structlog processor feeds it)."""

    def __init__(self, size: int = RECENT_LINES) -> None:
        self._lines: collections.deque[RecentLine] = collections.deque(maxlen=size)
        self._secrets: set[str] = set()
        self._lock = threading.Lock()  # paho's and the predictor's threads log too

    def add_secret(self, value: str | None) -> None:
        """Mask ``value`` wherever it appears in a line (short values would mask too much)."""
        if value is not None and len(value) >= 4:
            with self._lock:
                self._secrets.add(value)

    def capture(self, _logger: Any, method: str, event_dict: MutableMapping[str, Any]
                ) -> MutableMapping[str, Any]:
        """structlog processor: keep a redacted one-line copy, pass the event on unchanged."""
        with contextlib.suppress(Exception):  # logging must never fail because of the copy
            self.add(_LEVELS.get(method, "info"), _render(event_dict))
        return event_dict

    def add(self, level: str, text: str) -> None:
        with self._lock:
            secrets = tuple(self._secrets)
        clean = "".join(c if c.isprintable() else " " for c in redact(text, secrets))
        line = RecentLine(int(time.time() * 1000), level, clean[:LINE_CHARS] or "-")
        with self._lock:
            self._lines.append(line)

    def tail(self, count: int) -> list[RecentLine]:
        """The newest ``count`` lines, oldest first."""
        with self._lock:
            lines = list(self._lines)
        return lines[-count:] if count > 0 else []


def _render(event_dict: MutableMapping[str, Any]) -> str:
    parts = [str(event_dict.get("event", ""))]
    for key, value in event_dict.items():
        if key in ("event", "level", "timestamp"):
            continue
        shown = MASK if _SECRET_KEY.search(key) and not _NOT_SECRET_KEY.search(key) \
            else str(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts)


recent = RecentLog()
"""This process's recent log lines (every process that called :func:`configure`)."""


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
            recent.capture,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=_StderrLoggerFactory(),
        cache_logger_on_first_use=False,
    )


__all__ = ["LEVELS", "LINE_CHARS", "MASK", "RECENT_LINES", "RecentLine", "RecentLog",
           "configure", "recent", "redact"]

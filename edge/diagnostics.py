"""Remote diagnostics: the answer to ``cmd/diagnostics``, without a port opened on the Pi.

:func:`diagnostics_report` puts the daemon's status (numbering, seqs, outbox,
journal size, tasks and their restarts, every device's health, the host) and
the newest log lines of the process (:data:`onedoor.log.recent`: secrets, ID
numbers and tokens already masked) into one ``diag`` message. It is bounded:
at most the lines asked for (200), each cut to the contract's length, and the
oldest lines left out (``logs_dropped``) until the payload fits the topic's
limit, so a chatty log can never make the answer undeliverable.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from firmware_protocols import mqtt_messages as mm
from firmware_protocols.mqtt_topics import TOPICS, Kind
from onedoor.log import RecentLine


@dataclass(frozen=True, slots=True)
class DiagnosticsSource:
    """Who answers: the daemon's identity and its status at the moment of asking."""

    site_id: str
    device: str
    boot_id: str
    software: str


def diagnostics_report(source: DiagnosticsSource, command_id: uuid.UUID, now_ms: int,
                       status: mm.DiagStatus, lines: Sequence[RecentLine]) -> mm.Diagnostics:
    """The ``diag`` message for ``command_id``: ``status`` and as many of ``lines`` (the
    newest) as fit the topic's payload limit."""
    logs = [mm.LogLine(ts=line.ts_ms, level=_level(line.level),
                       text=line.text[:mm.MAX_LOG_TEXT] or "-")
            for line in lines[-mm.MAX_LOG_LINES:]]
    dropped = len(lines) - len(logs)
    limit = TOPICS[Kind.DIAG].max_payload
    while True:
        report = mm.Diagnostics(site=source.site_id, id=command_id, device=source.device,
                                boot_id=source.boot_id, software=source.software, ts=now_ms,
                                status=status, logs=logs, logs_dropped=dropped)
        size = len(msgspec.json.encode(report))
        if size <= limit or not logs:
            return report
        # Drop the oldest lines in proportion to the excess (at least one).
        cut = max(1, len(logs) * (size - limit) // size + 1)
        logs, dropped = logs[cut:], dropped + cut


def _level(level: str) -> mm.LogLevel:
    known: tuple[mm.LogLevel, ...] = ("debug", "info", "warning", "error", "critical")
    for name in known:
        if level == name:
            return name
    return "info"


__all__ = ["DiagnosticsSource", "diagnostics_report"]

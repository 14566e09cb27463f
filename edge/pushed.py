"""What the central pushed to the site, kept on the Pi: an emergency stop, the city
calendar, and the day's bookings (预约).

A small SQLite file beside the journal (``<journal>.pushed``), so that what the
central decided holds across restarts, days and outages: a stop decided while the
site was offline arrives when it is back and stays until it is lifted, whatever
day reset comes between. The journal keeps the history (``issuing.stopped``,
``calendar.applied`` events); this file keeps what is in force. The site reports
what it holds in its ``state`` and the central sends again what it does not.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import structlog

from edge.errors import JournalError

log = structlog.get_logger(__name__)


class PushedStore:
    """Documents by kind (``stop``, ``calendar``, ``bookings``): a version and a JSON body
    each."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a stop must survive a power cut
            self._db.execute("CREATE TABLE IF NOT EXISTS documents "
                             "(kind TEXT PRIMARY KEY, version TEXT NOT NULL, body TEXT NOT NULL)")
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def get(self, kind: str) -> tuple[str, dict[str, Any]] | None:
        row = self._db.execute("SELECT version, body FROM documents WHERE kind = ?",
                               (kind,)).fetchone()
        if row is None:
            return None
        body = json.loads(row[1])
        return str(row[0]), body if isinstance(body, dict) else {}

    def put(self, kind: str, version: str, body: dict[str, Any]) -> None:
        try:
            self._db.execute("INSERT INTO documents VALUES (?, ?, ?) ON CONFLICT (kind) "
                             "DO UPDATE SET version = excluded.version, body = excluded.body",
                             (kind, version, json.dumps(body, ensure_ascii=False)))
        except sqlite3.Error as exc:
            raise JournalError(f"cannot keep {kind} in {self.path}: {exc}") from exc

    def delete(self, kind: str) -> None:
        try:
            self._db.execute("DELETE FROM documents WHERE kind = ?", (kind,))
        except sqlite3.Error as exc:
            raise JournalError(f"cannot drop {kind} from {self.path}: {exc}") from exc


def store_beside(journal: str | Path) -> PushedStore:
    """The site's pushed documents, beside its journal."""
    return PushedStore(f"{journal}.pushed")


__all__ = ["PushedStore", "store_beside"]

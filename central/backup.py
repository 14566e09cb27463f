"""Backup and restore of the central database, SQLite or PostgreSQL, while the central runs.

::

    onedoor central backup --to /var/backups/onedoor-central/central.dump
    onedoor central backup --dir /var/backups/onedoor-central --keep 14    # the role's timer
    onedoor central restore --from /var/backups/onedoor-central/central-20261123T023000Z.dump

    backup_file = backup(url, path)          # BackupFile(path, backend, size)
    restore(path, url)                       # into an empty database only

SQLite: the online backup API (``sqlite3.Connection.backup``) copies the
database in one step under a read lock; in WAL mode the central keeps writing
meanwhile and the copy is the consistent state of one moment. The copy is a
plain SQLite file, checked with ``PRAGMA integrity_check``; restoring copies it
with the same API into the (new, empty) database file of the URL.

PostgreSQL: ``pg_dump --format=custom --no-owner --no-privileges``, one
consistent snapshot while the central runs, the password handed over in
``PGPASSWORD`` (never on a command line); the dump is checked with
``pg_restore --list``. Restoring runs ``pg_restore --no-owner --no-privileges
--single-transaction --exit-on-error`` into an empty database (``createdb -O
onedoor onedoor`` on a fresh server first): the central's user owns what it
restores. The dump carries the Alembic revision: a newer central migrates it
at start.

A backup is written to a temporary name and renamed when complete (mode 0600:
it holds the token hashes), so a name ``central-*`` is always a whole backup.
Restore refuses a database that has tables already: two histories must never
mix. Errors are :class:`central.errors.BackupError` with the tool's message.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import structlog
from sqlalchemy import URL, inspect, make_url

from central.db import make_engine
from central.errors import BackupError

log = structlog.get_logger(__name__)

SUFFIX: Final = {"sqlite": ".sqlite", "postgresql": ".dump"}
PREFIX: Final = "central-"
TOOL_TIMEOUT_S: Final = 6 * 3600


@dataclass(frozen=True, slots=True)
class BackupFile:
    path: Path
    backend: str
    size: int


def backend_of(url: str) -> str:
    name = make_url(url).get_backend_name()
    if name not in SUFFIX:
        raise BackupError(f"no backup for {name!r} databases (only SQLite and PostgreSQL)")
    return name


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database has nothing to back up")
    return Path(url.database)


def _pg_tool(name: str) -> str:
    """``pg_dump``/``pg_restore`` on the PATH, else the newest of the server packages."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if not candidates:
        raise BackupError(f"{name} not found: install the Debian package postgresql-client")
    return str(candidates[-1])


def _pg_run(tool: str, args: list[str], url: URL | None = None) -> str:
    """Run a PostgreSQL client tool (against ``url``: its password goes in the environment)."""
    command, env = [_pg_tool(tool), *args], {**os.environ}
    if url is not None:
        if url.password is not None:
            env["PGPASSWORD"] = str(url.password)
        target = url.set(drivername="postgresql", password=None)
        command.append(f"--dbname={target.render_as_string(hide_password=False)}")
    result = subprocess.run(command, env=env, capture_output=True, text=True,
                            timeout=TOOL_TIMEOUT_S, check=False)  # fmt: skip
    if result.returncode != 0:
        raise BackupError(f"{tool} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def _fresh(destination: Path) -> Path:
    """A temporary name beside ``destination``, readable by its owner only."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    partial.unlink(missing_ok=True)
    partial.touch(mode=0o600)
    return partial


def backup(url: str, destination: Path) -> BackupFile:
    """A consistent copy of the database at ``url`` in ``destination`` (see the module)."""
    backend = backend_of(url)
    parsed = make_url(url)
    partial = _fresh(destination)
    try:
        if backend == "sqlite":
            source = _sqlite_path(parsed)
            if not source.is_file():
                raise BackupError(f"no database file {source}")
            with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, \
                    sqlite3.connect(partial) as dst:  # fmt: skip
                src.backup(dst)
                verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
            src.close()
            dst.close()
            if verdict != "ok":
                raise BackupError(f"the copy fails its integrity check: {verdict}")
        else:
            _pg_run("pg_dump", ["--format=custom", "--no-owner", "--no-privileges",
                                f"--file={partial}"], parsed)  # fmt: skip
            _pg_run("pg_restore", ["--list", str(partial)])
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    size = destination.stat().st_size
    log.info("backup.written", path=str(destination), backend=backend, bytes=size)
    return BackupFile(destination, backend, size)


def backup_to_folder(url: str, folder: Path, *, keep: int, now: datetime) -> BackupFile:
    """``folder/central-<UTC time>.sqlite|.dump``; then only the ``keep`` newest stay."""
    if keep < 1:
        raise BackupError("keep at least one backup")
    suffix = SUFFIX[backend_of(url)]
    written = backup(url, folder / f"{PREFIX}{now.astimezone(UTC):%Y%m%dT%H%M%SZ}{suffix}")
    backups = sorted(folder.glob(f"{PREFIX}*{suffix}"))
    for old in backups[:-keep]:
        old.unlink()
        log.info("backup.removed", path=str(old))
    return written


def restore(source: Path, url: str) -> None:
    """Load a backup into the empty database at ``url`` (:class:`BackupError` otherwise)."""
    backend = backend_of(url)
    if not source.is_file():
        raise BackupError(f"no backup file {source}")
    engine = make_engine(url)
    try:
        tables = inspect(engine).get_table_names()
    finally:
        engine.dispose()
    if tables:
        raise BackupError(f"the database {make_url(url).render_as_string(hide_password=True)} "
                          f"is not empty ({len(tables)} tables): restore into a new, empty "
                          "database")  # fmt: skip
    parsed = make_url(url)
    if backend == "sqlite":
        target = _sqlite_path(parsed)
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src:
            if src.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise BackupError(f"{source} is not a sound SQLite database")
            with sqlite3.connect(target) as dst:
                src.backup(dst)
            dst.close()
        src.close()
    else:
        _pg_run("pg_restore", ["--no-owner", "--no-privileges", "--single-transaction",
                               "--exit-on-error", str(source)], parsed)  # fmt: skip
    log.info("backup.restored", source=str(source), backend=backend)


__all__ = ["BackupFile", "backend_of", "backup", "backup_to_folder", "restore"]

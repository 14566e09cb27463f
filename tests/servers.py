"""Real servers for the integration tests: a Mosquitto broker and a PostgreSQL cluster.

Both run from the Debian packages that `.ci/run` installs, in a temporary
directory, on a free loopback port, and are torn down at the end of the session.
Nothing here is a mock: a test that needs a broker talks to a real one.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from onedoor.broker import MosquittoProcess, free_port, wait_for_port

_START_TIMEOUT = 20.0


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} not found: install the Debian package {package!r}")
    return path


# The suite's broker is the package's: a real mosquitto; stop()/start() keep the port.
MosquittoBroker = MosquittoProcess


def _as_postgres_user() -> list[str]:
    """initdb refuses to run as root: CI runs as root, so run it as `postgres`."""
    if os.geteuid() != 0:
        return []
    pwd.getpwnam("postgres")  # KeyError with a clear name if the package is missing
    return ["runuser", "-u", "postgres", "--"]


def _pg_bindir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not candidates:
        _require("initdb", "postgresql")
        return Path(_require("initdb", "postgresql")).parent
    return candidates[-1].parent


@dataclass
class PostgresCluster:
    """A throwaway PostgreSQL cluster (trust auth on loopback) in its own directory."""

    workdir: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"

    def start(self) -> None:
        bindir = _pg_bindir()
        prefix = _as_postgres_user()
        data = self.workdir / "data"
        self.workdir.mkdir(parents=True, exist_ok=True)
        if prefix:
            shutil.chown(self.workdir, "postgres", "postgres")
        subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"],
            check=True,
            capture_output=True,
        )
        with (self.workdir / "postgres.log").open("ab") as log:
            self._process = subprocess.Popen(
                [*prefix, str(bindir / "postgres"), "-D", str(data), "-h", self.host,
                 "-p", str(self.port), "-k", str(self.workdir), "-c", "fsync=off",
                 "-c", "max_connections=200"],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        wait_for_port(self.host, self.port)
        self._wait_ready(bindir)

    def _wait_ready(self, bindir: Path) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while subprocess.run(
            [str(bindir / "pg_isready"), "-h", self.host, "-p", str(self.port)],
            capture_output=True,
        ).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError("postgres did not become ready")
            time.sleep(0.1)

    def create_database(self, name: str) -> str:
        subprocess.run(
            [str(_pg_bindir() / "createdb"), "-h", self.host, "-p", str(self.port),
             "-U", "postgres", name],
            check=True,
            capture_output=True,
        )
        return self.url(name)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

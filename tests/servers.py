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
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from onedoor.broker import MosquittoProcess, free_port, wait_for_port

_START_TIMEOUT = 20.0


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary) or next(
        (str(p) for p in (Path("/usr/sbin") / binary,) if p.exists()), None)
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

    @property
    def pid(self) -> int | None:
        """The server's process (``runuser``'s when run as root: its child is the postmaster)."""
        return self._process.pid if self._process is not None else None

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


@contextmanager
def temporary_postgres(prefix: str = "onedoor-postgres-") -> Iterator[PostgresCluster]:
    """A PostgreSQL server of its own in a folder under /tmp (the server runs as user
    postgres when the tests run as root: pytest's own folders are closed to it)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        cluster = PostgresCluster(Path(workdir))
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()


@dataclass(frozen=True)
class TlsBroker:
    port: int
    pki: Path  # ca.pem (trust this), server.pem/.key, passwd


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_test_pki(pki: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1, with the openssl CLI."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", "ca.key",
             "-out", "ca.pem", "-subj", "/CN=onedoor test CA", cwd=pki)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
             "server.csr", "-subj", "/CN=127.0.0.1", cwd=pki)
    (pki / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext",
             cwd=pki)


@contextmanager
def tls_mosquitto(workdir: Path, users: dict[str, str], *, log_all: bool = False,
                  ) -> Iterator[TlsBroker]:
    """A real mosquitto with only a TLS listener and password logins (no anonymous).

    The session broker allows anonymous clients on a plain port, so TLS tests get
    their own (same Debian binary).
    """
    pki = workdir / "pki"
    make_test_pki(pki)
    for number, (user, password) in enumerate(users.items()):
        create = ["-c"] if number == 0 else []
        subprocess.run([_require("mosquitto_passwd", "mosquitto"), "-b", *create, "passwd",
                        user, password], cwd=pki, check=True, capture_output=True)
    port = free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(
        "per_listener_settings false\nallow_anonymous false\n"
        f"password_file {pki / 'passwd'}\n"
        + ("user root\n" if os.geteuid() == 0 else "")
        + f"listener {port} 127.0.0.1\n"
        f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\nkeyfile {pki / 'server.key'}\n"
        "log_dest stderr\n" + ("log_type all\n" if log_all else ""))
    with (workdir / "mosquitto.log").open("ab") as broker_log:
        process = subprocess.Popen([_require("mosquitto", "mosquitto"), "-c", str(config)],
                                   stdout=broker_log, stderr=broker_log)
    try:
        wait_for_port("127.0.0.1", port)
        yield TlsBroker(port, pki)
    finally:
        process.terminate()
        process.wait(10)

"""An MQTT broker for the demo and the tests: Mosquitto when installed, else amqtt.

Production runs Mosquitto (or EMQX at scale), installed by the Ansible
``broker`` role. A newcomer's laptop may have neither, so ``make demo``
falls back to amqtt, a broker from PyPI started in-process. amqtt does not
implement shared subscriptions (``$share/...``): :attr:`Broker.shared_subscriptions`
tells the central to subscribe plainly.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import structlog

from firmware_protocols.mqtt_topics import ROOT, TOPICS, Direction, Kind

log = structlog.get_logger(__name__)

_START_TIMEOUT = 20.0


class BrokerError(RuntimeError):
    """The broker could not be started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = _START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BrokerError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found is None and Path("/usr/sbin/mosquitto").exists():
        found = "/usr/sbin/mosquitto"
    return found


class Broker(Protocol):
    host: str
    port: int
    shared_subscriptions: bool
    kind: str

    def start(self) -> None: ...
    def stop(self) -> None: ...


class _BrokerLifecycle:
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class MosquittoProcess(_BrokerLifecycle):
    """A real mosquitto on host:port with its config and persistence in ``workdir``.

    ``stop()`` then ``start()`` keeps the port and the persisted sessions, as a
    broker restart does in production.
    """

    kind = "mosquitto"
    shared_subscriptions = True

    def __init__(
        self, workdir: Path, host: str = "127.0.0.1", port: int | None = None,
        extra_config: str = "",
    ) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("mosquitto not found: install the Debian package 'mosquitto'")
        self.binary = binary
        self.workdir = workdir
        self.host = host
        self.port = port or free_port()
        self.extra_config = extra_config
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def start(self) -> None:
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            "max_queued_messages 100000\n" + self.extra_config
        )
        with (self.workdir / "mosquitto.log").open("ab") as broker_log:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(config)], stdout=broker_log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.host, self.port)
        log.info("broker.started", kind=self.kind, port=self.port)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


class EmbeddedBroker(_BrokerLifecycle):
    """amqtt in a background thread with its own event loop (loopback only).

    Anonymous logins by default, as the demo needs. amqtt keeps no session for an
    anonymous login; ``allow_anonymous=False`` (any user name, no password check)
    makes it keep them (docs/CAPACITY.md, "A second broker implementation here").
    """

    kind = "amqtt"
    shared_subscriptions = False

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *,
                 allow_anonymous: bool = True) -> None:
        self.host = host
        self.port = port or free_port()
        self.allow_anonymous = allow_anonymous
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="amqtt", daemon=True)
        self._thread.start()
        if not ready.wait(_START_TIMEOUT) or self._error is not None:
            raise BrokerError(f"embedded broker did not start: {self._error!r}")
        # No wait_for_port probe here: amqtt leaks the socket of a client that
        # connects without speaking MQTT; broker.start() has bound the port.
        log.info("broker.started", kind=self.kind, port=self.port)

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        from amqtt.broker import Broker as AmqttBroker

        broker = AmqttBroker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {
                        "allow_anonymous": self.allow_anonymous}
                },
            }
        )
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        await broker.start()
        ready.set()
        await self._stopped.wait()
        await broker.shutdown()

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=10)
        self._thread = None


def bridge_config(name: str, hub_host: str, hub_port: int) -> str:
    """Mosquitto config lines that join this broker to a hub broker, as one namespace.

    Edge-to-central kinds go out to the hub (where the centrals subscribe, shared
    subscriptions included); central-to-edge kinds come in from it, each at its
    contract QoS, so a site may connect to either broker. The bridge's session is
    persistent (``cleansession false``): a bridge that drops loses no QoS 1 message.
    A clustered broker (EMQX) does this routing itself; see docs/CAPACITY.md.
    """
    lines = [
        f"connection {name}",
        f"address {hub_host}:{hub_port}",
        "bridge_protocol_version mqttv50",
        "cleansession false",
        f"local_clientid {name}-local",
        f"remote_clientid {name}",
        "try_private true",
        "restart_timeout 1 10",
    ]
    for spec in TOPICS.values():
        pattern = f"{ROOT}/+/{spec.kind.value}" + ("/#" if spec.kind is Kind.CMD else "")
        direction = "out" if spec.direction is Direction.EDGE_TO_CENTRAL else "in"
        lines.append(f"topic {pattern} {direction} {spec.qos}")
    return "\n".join(lines) + "\n"


def start_demo_broker(workdir: Path) -> MosquittoProcess | EmbeddedBroker:
    """Mosquitto when it is installed, otherwise amqtt in-process; started."""
    broker: MosquittoProcess | EmbeddedBroker
    broker = MosquittoProcess(workdir) if mosquitto_binary() else EmbeddedBroker()
    broker.start()
    return broker

"""The production profile of deploy/ansible, deployed onto this machine for the tests.

`deploy_production` runs the real `site.yml` (twice: the second run must change
nothing) with connection `local`, a temporary root per host (`onedoor_root`) and
`onedoor_manage_system: false` (no packages, users, udev or systemd): the broker
with its TLS listener, two central replicas on a real PostgreSQL that asks for a
password, two villages and the city hall. The daemons a test needs are then
started from what the roles rendered: `FleetBroker` (Mosquitto with the rendered
config), `CentralServer` (through the `onedoor-central` command the central role
installs, PostgreSQL), an edge daemon from a rendered site config. `MqttClient`
logs in to the fleet broker as a site or a central replica.

A village whose daemon runs here gets its devices simulated (`village_devices`): the
printer and the window keypads of `edge.simhall` on pty pairs, at the settings the
village group ships (`group_vars/village.yml`); the inventory overlay only points their
ports at the ptys (`village_overlay`). Its GPIO stays the shipped `lgpio` in the config;
the daemon runs with ``ONEDOOR_GPIO_MOCK=1`` (gpiozero's mock pins: no header here).

The fixtures are in `tests/deploy/conftest.py`; `deploy_production` takes about
45 s on the 2-core CI machine (two `site.yml` runs on six hosts).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import queue
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.simhall import SimulatedDevices, TerminalBus, simulated_devices
from firmware_protocols.line import SerialTiming
from tests.servers import PostgresCluster, free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "deploy" / "ansible"
VENV_BIN = Path(sys.executable).parent
SAMPLE = ANSIBLE_DIR / "inventory" / "sample"
INVENTORY_SCRIPT = ANSIBLE_DIR / "inventory" / "onedoor_central.py"
BROKER = "mqtt.zs.example.cn"
CENTRAL = "onedoor.zs.example.cn"  # replica 1: runs as `onedoor central run` when asked
CENTRAL_2 = "onedoor-2.zs.example.cn"  # replica 2: its credentials play the test's central
SITE_A = "zs-shiqi-01"  # a village with its full device set (no daemon: no hardware here)
SITE_B = "zs-shiqi-02"  # a village whose daemon the tests run (its devices simulated)
HALL = "zs-city"  # the 220-window city hall
HOSTS = (BROKER, CENTRAL, CENTRAL_2, SITE_A, SITE_B, HALL)
# The hall group's adapters (group_vars/hall.yml), which a host's own list replaces.
HALL_ADAPTERS = yaml.safe_load((ANSIBLE_DIR / "group_vars" / "hall.yml").read_text(
    "utf-8"))["edge_serial_devices"]
# The village group's devices (group_vars/village.yml): what a village's config ships with.
VILLAGE = yaml.safe_load((ANSIBLE_DIR / "group_vars" / "village.yml").read_text("utf-8"))
# The keypads of a village's windows 1 and 2 (the inventories give window n terminal n).
VILLAGE_TERMINALS = (1, 2)
# The central's database user: PostgreSQL asks it for this password (scram-sha-256). Every
# character a URL or an EnvironmentFile could misread, and a regex group reference.
DATABASE_USER = "onedoor_deploy"
DATABASE_PASSWORD = "p@ss:w/rd \\1 %2F #?&='\"$x;"
_RECAP_RE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$", re.MULTILINE)


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    recap: dict[str, dict[str, int]]


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines as {host: {"ok": n, "changed": n, ...}}."""
    _, _, tail = output.rpartition("PLAY RECAP")
    return {m["host"]: {k: int(v) for k, v in (p.split("=") for p in m["counts"].split())}
            for m in _RECAP_RE.finditer(tail)}


def ansible_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of an ansible command run from deploy/ansible (its ansible.cfg)."""
    return {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_HOME": str(workdir / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
        "ANSIBLE_REMOTE_TEMP": str(workdir / "ansible-remote-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        **extra,
    }


def run_playbook(playbook: str, *args: str, workdir: Path,
                 env: Mapping[str, str] | None = None) -> Run:
    result = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), playbook, *args],
        cwd=ANSIBLE_DIR, env=ansible_env(workdir, **(env or {})), capture_output=True,
        text=True, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    return Run(result.returncode, output, parse_recap(output))


def local_vars(workdir: Path, broker_port: int) -> dict[str, Any]:
    """Variables that turn the fleet's hosts into folders of this machine."""
    return {
        "onedoor_root": f"{workdir}/root/{{{{ inventory_hostname }}}}",
        "onedoor_manage_system": False,
        "onedoor_pki_dir": str(workdir / "pki"),
        "onedoor_secrets_dir": str(workdir / "secrets"),
        "onedoor_broker_port": broker_port,
        "ansible_connection": "local",
        "ansible_become": False,
        "ansible_python_interpreter": sys.executable,
        # The onedoor under test plays the venv the roles would have installed.
        "edge_venv": str(VENV_BIN.parent),
        "central_venv": str(VENV_BIN.parent),
        "broker_user": pwd.getpwuid(os.getuid()).pw_name,
        "broker_log_dest": f"file {workdir}/mosquitto.log",
        "onedoor_batches": ["100%"],  # the rollout batches are for the fleet, not 3 sites
        "edge_calendar": {"holidays": ["2026-10-01..2026-10-08"], "workdays": ["2026-09-27"]},
        "edge_progress_url": "https://q.example.gov.cn",
    }


@dataclass
class Deployment:
    """A fleet deployed under ``workdir``: one folder per host in ``root/``, the control
    node's CA and passwords in ``pki/`` and ``secrets/``."""

    workdir: Path
    vars_file: Path
    overlay: Path
    broker_port: int
    central_port: int
    first: Run = field(default_factory=lambda: Run(0, "", {}))
    second: Run = field(default_factory=lambda: Run(0, "", {}))

    def root(self, host: str) -> Path:
        return self.workdir / "root" / host

    def site_config(self, host: str) -> Path:
        return self.root(host) / "etc" / "onedoor" / "edge.toml"

    def central_command(self, host: str = CENTRAL) -> Path:
        """`onedoor-central`, the central CLI with the host's config and secrets."""
        return self.root(host) / "usr" / "local" / "sbin" / "onedoor-central"

    def central_settings(self, host: str = CENTRAL) -> dict[str, Any]:
        """The [central] table of a replica's rendered central.toml."""
        path = self.root(host) / "etc" / "onedoor" / "central.toml"
        settings: dict[str, Any] = tomllib.loads(path.read_text("utf-8"))["central"]
        return settings

    def mqtt_user(self, host: str) -> str:
        """The broker user of a site (its id) or of a central replica (from its config)."""
        if (self.root(host) / "etc" / "onedoor" / "central.toml").exists():
            return str(self.central_settings(host)["mqtt_username"])
        return host

    def password(self, host: str) -> str:
        return (self.workdir / "secrets" / "mqtt" / self.mqtt_user(host)).read_text().strip()

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    def play(self, playbook: str, *args: str, inventory: tuple[str, ...] = (str(SAMPLE),),
             env: Mapping[str, str] | None = None, vars_file: Path | None = None) -> Run:
        sources = [arg for source in (*inventory, str(self.overlay)) for arg in ("-i", source)]
        return run_playbook(playbook, *sources, "-e", f"@{vars_file or self.vars_file}", *args,
                            workdir=self.workdir, env=env)


def prepare_database(cluster: PostgresCluster) -> str:
    """A database owned by a user that must give its password, as in production.

    The cluster trusts every other user on loopback; this one is asked for a password
    (scram-sha-256), so a wrong or mangled one fails the central's login.
    """
    import psycopg
    from psycopg import sql

    admin = f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(DATABASE_USER), sql.Literal(DATABASE_PASSWORD)))
        connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(DATABASE_USER), sql.Identifier(DATABASE_USER)))
        hba = Path(connection.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
        hba.write_text(f"host all {DATABASE_USER} 127.0.0.1/32 scram-sha-256\n"
                       + hba.read_text())
        connection.execute("SELECT pg_reload_conf()")
    return f"postgresql+psycopg://{DATABASE_USER}@127.0.0.1:{cluster.port}/{DATABASE_USER}"


@contextmanager
def village_devices() -> Iterator[SimulatedDevices]:
    """A village's printer and window keypads, simulated at the settings it ships with."""
    printer, terminals = VILLAGE["edge_printer"], VILLAGE["edge_terminals"]
    with simulated_devices(
        printer=SerialTiming(printer["baud"]),
        terminals=TerminalBus(terminals["kind"], SerialTiming(terminals["baud"],
                                                              terminals["parity"]),
                              VILLAGE_TERMINALS),
    ) as devices:
        yield devices


def village_overlay(devices: SimulatedDevices) -> dict[str, Any]:
    """A village's shipped device settings with only their ports moved to ``devices``."""
    return {"edge_printer": {**VILLAGE["edge_printer"], "port": devices.ports["printer"]},
            "edge_terminals": {**VILLAGE["edge_terminals"], "port": devices.ports["terminals"]}}


def village_host(devices: SimulatedDevices, workdir: Path, host: str) -> dict[str, Any]:
    """A village's overlay as this machine runs it: the shipped devices on the simulators'
    ptys, audio as WAV files under ``workdir`` (no sound card), the HTTP API on a free port."""
    wav_dir = workdir / "announcements" / host
    wav_dir.mkdir(parents=True, exist_ok=True)
    return {**village_overlay(devices), "edge_audio": {"output": "wav", "wav_dir": str(wav_dir)},
            "edge_http": {"host": "127.0.0.1", "port": free_port()}}


def deploy_production(workdir: Path, database_url: str,
                      site_b_devices: SimulatedDevices) -> Deployment:
    """site.yml, twice, on the broker, two central replicas on PostgreSQL, two villages and
    the city hall. Site B's ports are ``site_b_devices`` (simulated) so its daemon can run."""
    broker_port, central_port = free_port(), free_port()
    vars_file = workdir / "test-vars.yml"
    vars_file.write_text(yaml.safe_dump({
        **local_vars(workdir, broker_port),
        # Every host runs here: the sites reach the broker on loopback (its certificate
        # names 127.0.0.1).
        "onedoor_broker_host": "127.0.0.1",
        "central_listen_port": central_port,
        "central_database_url": database_url,
        "central_database_password": DATABASE_PASSWORD,
    }))
    # A second central replica, and site B as a daemon runs it here: its printer and
    # keypads simulated, its audio written as WAV files (no sound card), its HTTP API on a
    # free port. Every run uses this overlay, so that the second run is the same as the first.
    overlay = workdir / "overlay.yml"
    overlay.write_text(yaml.safe_dump({"all": {
        "children": {"central": {"hosts": {CENTRAL_2: None}}},
        "hosts": {HALL: {
            # The city hall's 二代身份证 reader at a kiosk, on its own USB adapter.
            "edge_id_card": {"port": "/dev/onedoor/id_card", "service": "huji",
                             "elder_age": 65, "call_by_name": True},
            "edge_serial_devices": [*HALL_ADAPTERS, {
                "name": "id_card", "vendor": "10c4", "product": "ea60", "serial": "IDR-0001",
                "description": "CP2102 to the ID card reader"}],
        }, SITE_B: {
            **village_host(site_b_devices, workdir, SITE_B),
            "edge_daemon": {"telemetry_seconds": 5, "outbox_limit": 1000,
                            "help_escalation_minutes": 5, "watchdog_seconds": 30},
        }},
    }}))
    deployment = Deployment(workdir, vars_file, overlay, broker_port, central_port)
    limit = ":".join(HOSTS)
    deployment.first = deployment.play("site.yml", "--limit", limit)
    if deployment.first.returncode != 0:
        raise AssertionError(deployment.first.output[-6000:])
    deployment.second = deployment.play("site.yml", "--limit", limit)
    return deployment


def load_module(path: Path) -> ModuleType:
    """A Python file of deploy/ansible (filter plugin, inventory script) as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_env_file(path: Path) -> dict[str, str]:
    """A systemd EnvironmentFile of KEY='value' lines (what the central role writes)."""
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            [values[name]] = shlex.split(value)
    return values


# --------------------------------------------------------------------------- the daemons


@dataclass
class FleetBroker:
    """Mosquitto started with the config, users and ACL the broker role rendered."""

    process: subprocess.Popen[bytes]
    port: int

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS for the broker")

    def reload(self) -> None:
        """What the broker role's reload handler makes systemd do (SIGHUP)."""
        self.process.send_signal(1)


@contextmanager
def fleet_broker(deployment: Deployment) -> Iterator[FleetBroker]:
    config = deployment.root(BROKER) / "etc/mosquitto/mosquitto.conf"
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([mosquitto, "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", deployment.broker_port)
        yield FleetBroker(process, deployment.broker_port)
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass(frozen=True)
class CentralServer:
    url: str
    admin_token: str
    operator_token: str
    log: Path

    def get(self, path: str) -> Any:
        request = urllib.request.Request(f"{self.url}{path}",
                                         headers={"Authorization": f"Bearer {self.admin_token}"})
        with urllib.request.urlopen(request, timeout=20) as response:
            return json.load(response)

    def site(self, site_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.get(f"/api/v1/sites/{site_id}")
        return data

    def text(self, path: str) -> str:
        request = urllib.request.Request(f"{self.url}{path}",
                                         headers={"Authorization": f"Bearer {self.admin_token}"})
        with urllib.request.urlopen(request, timeout=20) as response:
            body: bytes = response.read()
        return body.decode("utf-8")

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Any:
        """An admin request (or one with ``token``) with a JSON body; an HTTP error fails
        with the central's answer."""
        request = urllib.request.Request(
            f"{self.url}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token or self.admin_token}",
                     "Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: HTTP {exc.code} {exc.read()[:2000]!r}") \
                from None

    def log_events(self, event: str) -> int:
        """How many log lines of the central name ``event``."""
        return self.log.read_text(errors="replace").count(event)


def central_cli(deployment: Deployment, *args: str, host: str = CENTRAL,
                stdin: str | None = None) -> str:  # fmt: skip
    """`sudo onedoor-central ARGS` on the central host, as the README has ops run it."""
    result = subprocess.run([str(deployment.central_command(host)), *args], capture_output=True,
                            input=stdin, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise AssertionError(f"onedoor-central {' '.join(args)}: {result.stderr[-3000:]}")
    return result.stdout.strip()


@contextmanager
def central_server(deployment: Deployment) -> Iterator[CentralServer]:
    """Replica 1, seeded, running with the config and secrets its role rendered."""
    central_cli(deployment, "seed")
    admin = central_cli(deployment, "token", "create", "--role", "admin", "--name", "tests")
    operator = central_cli(deployment, "token", "create", "--role", "operator", "--name",
                           "ansible")
    log_path = deployment.workdir / "central.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(deployment.central_command()), "run", "--port", str(deployment.central_port)],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", deployment.central_port, timeout=60)
        yield CentralServer(f"http://127.0.0.1:{deployment.central_port}", admin, operator,
                            log_path)
    finally:
        process.terminate()
        process.wait(timeout=20)


class MqttClient:
    """A paho client (MQTT 5, TLS with the fleet CA) with blocking helpers.

    ``session_expiry_s`` > 0 keeps a persistent session (``clean_start`` false), as the
    central does; the broker replaces ``client_id`` with the user name anyway.
    """

    def __init__(self, deployment: Deployment, user: str | None, password: str | None, *,
                 client_id: str | None = None, session_expiry_s: int = 0) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.acks: queue.Queue[tuple[int, list[int]]] = queue.Queue()
        self.connack: queue.Queue[int] = queue.Queue()
        self.disconnects: list[int] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=client_id or f"test-{user}-{time.monotonic_ns()}")
        self.client.tls_set(ca_certs=str(deployment.ca_file))
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.connack.put(rc.value)
        self.client.on_disconnect = lambda _c, _u, _f, rc, _p: self.disconnects.append(rc.value)
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda _c, _u, mid, rcs, _p: self.acks.put(
            (mid, [rc.value for rc in rcs]))
        properties = None
        if session_expiry_s:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = session_expiry_s
        self.client.connect("127.0.0.1", deployment.broker_port, clean_start=not session_expiry_s,
                            properties=properties)
        self.client.loop_start()
        self.connect_code = self.connack.get(timeout=20)

    def subscribe(self, topic: str) -> int:
        _, mid = self.client.subscribe(topic, qos=1)
        ack_mid, codes = self.acks.get(timeout=20)
        assert ack_mid == mid
        return codes[0]

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(timeout=30)

    def received_until(self, sentinel_topic: str, timeout: float = 20) -> list[tuple[str, bytes]]:
        """Messages received up to and including the first one on ``sentinel_topic``."""
        seen = []
        while True:
            topic, payload = self.messages.get(timeout=timeout)
            seen.append((topic, payload))
            if topic == sentinel_topic:
                return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def mqtt_client(deployment: Deployment, host: str, **options: Any) -> Iterator[MqttClient]:
    """Logged in as ``host`` (a site or a central replica) with its current password."""
    client = MqttClient(deployment, deployment.mqtt_user(host), deployment.password(host),
                        **options)
    try:
        assert client.connect_code == 0, client.connect_code
        yield client
    finally:
        client.close()


def connect_code(deployment: Deployment, user: str, password: str) -> int:
    client = MqttClient(deployment, user, password)
    client.close()
    return client.connect_code


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)

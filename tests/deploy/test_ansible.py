"""deploy/ansible, run for real: lint, the broker and edge roles on local targets, idempotence,
the rendered configs through `onedoor edge check-config`, the ACL on a real Mosquitto, and a
running edge daemon taking a pushed config on SIGHUP.

The playbooks run against the committed sample inventory (generated from the central's seed)
with connection `local`, a temporary `onedoor_root` per host and `onedoor_manage_system: false`
(no packages, users, udev or systemd). The daemons the checks need, Mosquitto with the
rendered config and an edge daemon with a rendered site config, are started here.
"""

from __future__ import annotations

import json
import os
import pwd
import queue
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml

from edge.config import load_config
from tests.servers import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "deploy" / "ansible"
VENV_BIN = Path(sys.executable).parent
SAMPLE = ANSIBLE_DIR / "inventory" / "sample"
BROKER = "mqtt.zs.example.cn"
CENTRAL = "onedoor.zs.example.cn"
SITE_A = "zs-shiqi-01"  # a village with its full device set
SITE_B = "zs-shiqi-02"  # a village whose daemon runs in the test (no hardware attached)
HALL = "zs-city"  # the 220-window city hall
HOSTS = (BROKER, CENTRAL, SITE_A, SITE_B, HALL)
LIMIT = ":".join(HOSTS)
Broker = subprocess.Popen[bytes]  # the fleet's Mosquitto, started from the rendered config
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


@dataclass
class Deployment:
    workdir: Path
    vars_file: Path
    overlay: Path
    broker_port: int
    central_port: int
    first: Run
    second: Run

    def root(self, host: str) -> Path:
        return self.workdir / "root" / host

    def site_config(self, host: str) -> Path:
        return self.root(host) / "etc" / "onedoor" / "edge.toml"

    def password(self, user: str) -> str:
        return (self.workdir / "secrets" / "mqtt" / user).read_text().strip()

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    def play(self, playbook: str, *args: str) -> Run:
        return run_playbook(playbook, "-i", str(SAMPLE), "-i", str(self.overlay),
                            "-e", f"@{self.vars_file}", *args, workdir=self.workdir)


def _ansible_env(workdir: Path) -> dict[str, str]:
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
    }


def run_playbook(playbook: str, *args: str, workdir: Path) -> Run:
    result = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), playbook, *args],
        cwd=ANSIBLE_DIR, env=_ansible_env(workdir), capture_output=True, text=True,
        timeout=240, check=False,
    )
    output = result.stdout + result.stderr
    return Run(result.returncode, output, parse_recap(output))


@pytest.fixture(scope="module")
def terminal_bus() -> Iterator[str]:
    """A pty standing in for site B's RS485 adapter: its windows have keypads on the bus."""
    controller, device = os.openpty()
    try:
        yield os.ttyname(device)
    finally:
        os.close(controller)
        os.close(device)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, terminal_bus: str) -> Deployment:
    """site.yml run twice on the broker, two villages and the city hall."""
    workdir = tmp_path_factory.mktemp("ansible")
    broker_port, central_port, http_port = free_port(), free_port(), free_port()
    vars_file = workdir / "test-vars.yml"
    vars_file.write_text(yaml.safe_dump({
        "onedoor_root": f"{workdir}/root/{{{{ inventory_hostname }}}}",
        "onedoor_manage_system": False,
        "onedoor_pki_dir": str(workdir / "pki"),
        "onedoor_secrets_dir": str(workdir / "secrets"),
        "onedoor_broker_host": "127.0.0.1",
        "onedoor_broker_port": broker_port,
        "ansible_connection": "local",
        "ansible_become": False,
        "ansible_python_interpreter": sys.executable,
        # The onedoor under test plays the venv the role would have installed.
        "edge_venv": str(VENV_BIN.parent),
        "broker_user": pwd.getpwuid(os.getuid()).pw_name,
        "broker_log_dest": f"file {workdir}/mosquitto.log",
        "central_venv": str(VENV_BIN.parent),
        "central_listen_port": central_port,
        "onedoor_batches": ["100%"],  # the rollout batches are for the fleet, not 3 hosts
    }))
    # Site B runs a real daemon here: its terminal bus on a pty, no other hardware, its HTTP
    # API on a free port. The whole site.yml run uses it, so that the second run is the same.
    overlay = workdir / "overlay.yml"
    overlay.write_text(yaml.safe_dump({"all": {"hosts": {SITE_B: {
        "edge_printer": {}, "edge_gpio": {}, "edge_serial_devices": [],
        "edge_terminals": {"kind": "vendor", "port": terminal_bus, "baud": 9600},
        "edge_audio": {"output": "wav", "wav_dir": str(workdir / "announcements")},
        "edge_http": {"host": "127.0.0.1", "port": http_port},
        "edge_daemon": {"telemetry_seconds": 5, "outbox_limit": 1000,
                        "help_escalation_minutes": 5, "watchdog_seconds": 30},
    }}}}))
    partial = Deployment(workdir, vars_file, overlay, broker_port, central_port,
                         Run(0, "", {}), Run(0, "", {}))
    first = partial.play("site.yml", "--limit", LIMIT)
    assert first.returncode == 0, first.output[-4000:]
    second = partial.play("site.yml", "--limit", LIMIT)
    return Deployment(workdir, vars_file, overlay, broker_port, central_port, first, second)


# --------------------------------------------------------------------------- lint, idempotence


def test_ansible_lint_is_clean(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "ansible-lint"), "--offline", "--nocolor"],
        cwd=ANSIBLE_DIR, env=_ansible_env(tmp_path), capture_output=True, text=True,
        timeout=240, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in result.stderr + result.stdout


def test_sample_inventory_matches_the_central_seed() -> None:
    result = subprocess.run(
        [sys.executable, str(ANSIBLE_DIR / "inventory" / "generate_sample.py"), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    hosts = yaml.safe_load((SAMPLE / "hosts.yml").read_text(encoding="utf-8"))
    towns = hosts["all"]["children"]["edge"]["children"]
    villages = hosts["all"]["children"]["village"]["hosts"]
    assert len(towns) == 25
    assert len(villages) == 277


def test_first_run_changes_every_host_and_second_run_changes_nothing(
    deployment: Deployment,
) -> None:
    assert set(deployment.first.recap) == set(HOSTS)
    for host, counts in deployment.first.recap.items():
        assert counts["failed"] == 0, host
        assert counts["unreachable"] == 0, host
        assert counts["changed"] > 0, host
    assert deployment.second.returncode == 0, deployment.second.output[-4000:]
    assert set(deployment.second.recap) == set(HOSTS)
    for host, counts in deployment.second.recap.items():
        assert counts["changed"] == 0, (host, deployment.second.output[-4000:])
        assert counts["failed"] == 0, host


# --------------------------------------------------------------------------- rendered files


@pytest.mark.parametrize("site", [SITE_A, SITE_B, HALL])
def test_rendered_site_config_passes_check_config(deployment: Deployment, site: str) -> None:
    path = deployment.site_config(site)
    result = subprocess.run([str(VENV_BIN / "onedoor"), "edge", "check-config", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    host_vars = yaml.safe_load((SAMPLE / "host_vars" / f"{site}.yml").read_text("utf-8"))
    config = load_config(path)
    assert config.site.id == site
    assert config.site.name == host_vars["onedoor_site_name"]
    assert config.site.town == "石岐街道"
    assert config.version == "2026.11.1"
    assert [w.number for w in config.windows] == [w["number"] for w in host_vars["edge_windows"]]
    assert [s.id for s in config.services] == [s["id"] for s in host_vars["edge_services"]]
    assert config.mqtt is not None
    assert config.mqtt.username == site
    assert config.mqtt.password == deployment.password(site)
    assert config.mqtt.tls is not None
    assert config.mqtt.tls.ca_file.endswith("/ca.crt")
    assert config.paths.journal_retention_days == 90


def test_village_devices_and_udev_names(deployment: Deployment) -> None:
    config = load_config(deployment.site_config(SITE_A))
    assert config.devices.printer is not None
    assert config.devices.printer.port == "/dev/onedoor/printer"
    assert config.devices.terminals is not None
    assert config.devices.terminals.port == "/dev/onedoor/terminals"
    rules = (deployment.root(SITE_A) / "etc/udev/rules.d/70-onedoor.rules").read_text()
    assert ('ACTION=="add", SUBSYSTEM=="usb-serial", DRIVER=="ftdi_sio", '
            'ATTR{latency_timer}="1"') in rules
    assert 'SYMLINK+="onedoor/printer"' in rules
    assert 'SYMLINK+="onedoor/terminals"' in rules
    unit = (deployment.root(SITE_A) / "etc/systemd/system/onedoor-edge.service").read_text()
    assert "Type=notify" in unit
    assert "WatchdogSec=" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit


# The role renders deploy/systemd/onedoor-edge.service (the edge daemon's own unit) with the
# site's paths; these directives must stay the same in both.
UNIT_DIRECTIVES_ALIKE = ("Type", "NotifyAccess", "WatchdogSec", "ExecReload", "Restart",
                         "RestartSec", "TimeoutStopSec", "Environment", "User", "Group",
                         "SupplementaryGroups", "ProtectSystem", "ProtectHome", "PrivateTmp",
                         "NoNewPrivileges", "MemoryMax", "After", "Wants", "WantedBy")


def _unit_directives(text: str) -> dict[str, set[str]]:
    directives: dict[str, set[str]] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#") and name in UNIT_DIRECTIVES_ALIKE:
            directives.setdefault(name, set()).update(value.split())
    return directives


def test_the_roles_unit_is_the_edge_daemons_unit(deployment: Deployment) -> None:
    rendered = (deployment.root(SITE_A) / "etc/systemd/system/onedoor-edge.service").read_text()
    shipped = (REPO / "deploy" / "systemd" / "onedoor-edge.service").read_text()
    assert _unit_directives(rendered) == _unit_directives(shipped)
    assert f"ExecStart={VENV_BIN}/onedoor edge run --config {deployment.site_config(SITE_A)}" \
        in rendered


def test_the_broker_may_hold_a_city_fleet_of_connections(deployment: Deployment) -> None:
    """Debian's 1024 open files would stop Mosquitto at about a thousand sites."""
    dropin = deployment.root(BROKER) / "etc/systemd/system/mosquitto.service.d/onedoor.conf"
    lines = dropin.read_text().splitlines()
    assert "[Service]" in lines
    assert "LimitNOFILE=65536" in lines


def test_secrets_are_not_world_readable(deployment: Deployment) -> None:
    for path in (deployment.root(SITE_A) / "etc/onedoor/mqtt.password",
                 deployment.root(BROKER) / "etc/mosquitto/onedoor.passwd",
                 deployment.root(BROKER) / "etc/mosquitto/certs/server.key"):
        assert path.stat().st_mode & 0o007 == 0, path


def test_an_invalid_config_is_refused_and_the_old_one_stays(deployment: Deployment) -> None:
    path = deployment.site_config(SITE_A)
    before = path.read_bytes()
    run = deployment.play("edge-config.yml", "--limit", SITE_A, "-e",
                          json.dumps({"edge_hours": {"open": "18:00", "close": "08:00",
                                                     "reset": "03:00"}}))
    assert run.returncode != 0
    assert run.recap[SITE_A]["failed"] == 1
    assert "failed to validate" in run.output
    assert "hours.close: must be after hours.open" in run.output
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- the real broker


@pytest.fixture(scope="module")
def fleet_broker(deployment: Deployment) -> Iterator[Broker]:
    """Mosquitto started with the config, users and ACL the broker role rendered."""
    config = deployment.root(BROKER) / "etc/mosquitto/mosquitto.conf"
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([mosquitto, "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", deployment.broker_port)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


class Client:
    """A paho client (MQTT 5, TLS with the fleet CA) with blocking helpers."""

    def __init__(self, deployment: Deployment, user: str | None, password: str | None) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.acks: queue.Queue[tuple[int, list[int]]] = queue.Queue()
        self.connack: queue.Queue[int] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=f"test-{user}-{time.monotonic_ns()}")
        self.client.tls_set(ca_certs=str(deployment.ca_file))
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.connack.put(rc.value)
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda _c, _u, mid, rcs, _p: self.acks.put(
            (mid, [rc.value for rc in rcs]))
        self.client.connect("127.0.0.1", deployment.broker_port)
        self.client.loop_start()
        self.connect_code = self.connack.get(timeout=10)

    def subscribe(self, topic: str) -> int:
        _, mid = self.client.subscribe(topic, qos=1)
        ack_mid, codes = self.acks.get(timeout=10)
        assert ack_mid == mid
        return codes[0]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)

    def received_until(self, sentinel_topic: str) -> list[tuple[str, bytes]]:
        """Messages received up to and including the first one on ``sentinel_topic``."""
        seen = []
        while True:
            topic, payload = self.messages.get(timeout=10)
            seen.append((topic, payload))
            if topic == sentinel_topic:
                return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def central_client(deployment: Deployment, fleet_broker: Broker) -> Iterator[Client]:
    client = Client(deployment, "onedoor-central", deployment.password("onedoor-central"))
    assert client.connect_code == 0
    yield client
    client.close()


@pytest.fixture
def site_a_client(deployment: Deployment, fleet_broker: Broker) -> Iterator[Client]:
    client = Client(deployment, SITE_A, deployment.password(SITE_A))
    assert client.connect_code == 0
    yield client
    client.close()


def test_a_site_publishes_under_its_own_topics_only(
    central_client: Client, site_a_client: Client
) -> None:
    assert central_client.subscribe("onedoor/v1/+/event") == 1
    own, other = f"onedoor/v1/{SITE_A}/event", f"onedoor/v1/{SITE_B}/event"
    site_a_client.publish(other, b'{"forged": true}')
    site_a_client.publish(own, b'{"genuine": true}')
    # Same client, same QoS: had the forged one passed, it would have arrived first.
    assert central_client.received_until(own) == [(own, b'{"genuine": true}')]


def test_a_site_cannot_read_another_sites_topics(
    central_client: Client, site_a_client: Client
) -> None:
    # Mosquitto 2.0 grants the SUBACK and enforces read access per delivered message;
    # what matters is that nothing of site B's ever reaches site A.
    own = f"onedoor/v1/{SITE_A}/ack"
    site_a_client.subscribe(f"onedoor/v1/{SITE_B}/cmd/#")
    site_a_client.subscribe("onedoor/v1/+/ack")
    assert site_a_client.subscribe(own) == 1
    central_client.publish(f"onedoor/v1/{SITE_B}/cmd/announce", b'{"text": "B only"}')
    central_client.publish(f"onedoor/v1/{SITE_B}/ack", b'{"seq": 7}')
    central_client.publish(own, b'{"seq": 9}')
    received = site_a_client.received_until(own)
    assert {topic for topic, _ in received} == {own}


def test_wrong_password_and_anonymous_are_refused(
    deployment: Deployment, fleet_broker: Broker
) -> None:
    wrong = Client(deployment, SITE_A, deployment.password(SITE_B))
    anonymous = Client(deployment, None, None)
    try:
        assert wrong.connect_code >= 0x80
        assert anonymous.connect_code >= 0x80
    finally:
        wrong.close()
        anonymous.close()


# --------------------------------------------------------------------------- the central


@dataclass(frozen=True)
class CentralServer:
    url: str
    admin_token: str
    operator_token: str

    def site(self, site_id: str) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}/api/v1/sites/{site_id}",
                                         headers={"Authorization": f"Bearer {self.admin_token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            data: dict[str, Any] = json.load(response)
            return data


@pytest.fixture(scope="module")
def central_server(deployment: Deployment, fleet_broker: Broker) -> Iterator[CentralServer]:
    """`onedoor central` with the config and secrets the central role rendered, seeded."""
    etc = deployment.root(CENTRAL) / "etc" / "onedoor"
    env = {**os.environ}
    for line in (etc / "central.env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    onedoor = [str(VENV_BIN / "onedoor"), "central"]
    config = ["--config", str(etc / "central.toml")]

    def cli(*args: str) -> str:
        return subprocess.run([*onedoor, *args, *config], env=env, capture_output=True,
                              text=True, timeout=120, check=True).stdout.strip()

    cli("seed")
    admin, operator = cli("token", "create", "--role", "admin"), cli(
        "token", "create", "--role", "operator")
    log = (deployment.workdir / "central.log").open("wb")
    process = subprocess.Popen([*onedoor, "run", *config, "--port", str(deployment.central_port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", deployment.central_port, timeout=60)
        yield CentralServer(f"http://127.0.0.1:{deployment.central_port}", admin, operator)
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def test_the_central_signs_sessions_with_the_roles_secret(
    deployment: Deployment, central_server: CentralServer
) -> None:
    """One secret for every replica and restart: else a dashboard session ends with its process."""
    env = (deployment.root(CENTRAL) / "etc" / "onedoor" / "central.env").read_text()
    [secret] = [line.partition("=")[2] for line in env.splitlines()
                if line.startswith("ONEDOOR_CENTRAL_SESSION_SECRET=")]
    assert len(secret) >= 32
    log = (deployment.workdir / "central.log").read_text(errors="replace")
    assert "central.started" in log
    assert "session_secret_random" not in log
    assert secret not in log


def test_dynamic_inventory_from_the_central_equals_the_sample(
    central_server: CentralServer, tmp_path: Path
) -> None:
    env = {**_ansible_env(tmp_path), "ONEDOOR_CENTRAL_URL": central_server.url,
           "ONEDOOR_CENTRAL_TOKEN": central_server.operator_token}
    script = str(ANSIBLE_DIR / "inventory" / "onedoor_central.py")
    listed = subprocess.run([sys.executable, script, "--list"], env=env, capture_output=True,
                            text=True, timeout=120, check=True)
    dynamic = json.loads(listed.stdout)
    static = json.loads(subprocess.run(
        [str(VENV_BIN / "ansible-inventory"), "-i", str(SAMPLE), "--list"], env=env,
        capture_output=True, text=True, timeout=120, check=True, cwd=ANSIBLE_DIR).stdout)
    assert sorted(dynamic["edge"]["children"]) == sorted(static["edge"]["children"])
    for group in [*static["edge"]["children"], "village", "district", "city_hall"]:
        assert sorted(dynamic[group]["hosts"]) == sorted(static[group]["hosts"]), group
    for site in (SITE_A, HALL):
        mine, theirs = dynamic["_meta"]["hostvars"][site], static["_meta"]["hostvars"][site]
        for name in ("onedoor_site_name", "onedoor_site_kind", "edge_services", "edge_windows"):
            assert mine[name] == theirs[name], (site, name)
    one = subprocess.run([sys.executable, script, "--host", SITE_A], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(one.stdout)["onedoor_site_name"] == "石岐庆围村党群服务中心"
    # Ansible itself takes the script as an inventory source.
    graph = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", script, "--graph", "edge"],
                           env=env, capture_output=True, text=True, timeout=120, check=True,
                           cwd=ANSIBLE_DIR)
    assert SITE_A in graph.stdout


def test_dynamic_inventory_refuses_a_bad_token(central_server: CentralServer) -> None:
    env = {**os.environ, "ONEDOOR_CENTRAL_URL": central_server.url,
           "ONEDOOR_CENTRAL_TOKEN": "od_nope.nope"}
    result = subprocess.run(
        [sys.executable, str(ANSIBLE_DIR / "inventory" / "onedoor_central.py"), "--list"],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr
    assert result.stdout == ""


# --------------------------------------------------------------------------- a running daemon


def _wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def _state_of(client: Client, site: str, config_version: str, timeout: float) -> dict[str, Any]:
    """The first `state` message of ``site`` announcing ``config_version``."""
    deadline = time.monotonic() + timeout
    topic = f"onedoor/v1/{site}/state"
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no state with config {config_version} from {site}"
        try:
            got, payload = client.messages.get(timeout=remaining)
        except queue.Empty:
            continue
        state: dict[str, Any] = json.loads(payload)
        if got == topic and state.get("config") == config_version:
            return state


def test_a_running_daemon_takes_a_pushed_config_on_reload(
    deployment: Deployment, central_client: Client, central_server: CentralServer
) -> None:
    config = deployment.site_config(SITE_B)
    log = (deployment.workdir / "edge-daemon.log").open("wb")
    daemon = subprocess.Popen([str(VENV_BIN / "onedoor"), "edge", "run", "--config", str(config)],
                              cwd=deployment.workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert central_client.subscribe(f"onedoor/v1/{SITE_B}/state") == 1
        first = _state_of(central_client, SITE_B, "2026.11.1", timeout=30)
        assert first["status"] == "online"

        _wait_for(lambda: central_server.site(SITE_B)["reported_config_version"] == "2026.11.1")

        push = deployment.play("edge-config.yml", "--limit", SITE_B,
                               "-e", "edge_config_version=2026.11.2",
                               "-e", f"onedoor_central_url={central_server.url}",
                               "-e", f"onedoor_central_admin_token={central_server.admin_token}")
        assert push.returncode == 0, push.output[-4000:]
        # The TOML and the registry's expected version: no restart, no other file.
        assert push.recap[SITE_B]["changed"] == 2
        assert load_config(config).version == "2026.11.2"
        registry = central_server.site(SITE_B)
        assert registry["expected_config_version"] == "2026.11.2"
        assert registry["config_drift"] is True  # pushed, not yet running
        # What the role's reload handler makes systemd do (ExecReload=/bin/kill -HUP $MAINPID).
        daemon.send_signal(signal.SIGHUP)

        second = _state_of(central_client, SITE_B, "2026.11.2", timeout=30)
        assert second["status"] == "online"
        assert second["boot_id"] == first["boot_id"]  # reloaded, not restarted
        assert daemon.poll() is None
        status = subprocess.run(
            [str(VENV_BIN / "onedoor"), "edge", "status", "--config", str(config), "--json"],
            capture_output=True, text=True, timeout=30, check=True)
        assert json.loads(status.stdout)["config"] == "2026.11.2"
        _wait_for(lambda: central_server.site(SITE_B)["reported_config_version"] == "2026.11.2")
        assert central_server.site(SITE_B)["config_drift"] is False
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
        log.close()


# --------------------------------------------------------------------------- rotation (last:
# it changes site A's password)


def test_rotation_refuses_to_run_without_the_broker(deployment: Deployment) -> None:
    before = deployment.password(SITE_A)
    run = deployment.play("rotate-credentials.yml", "--limit", SITE_A)
    assert run.returncode != 0
    assert "add the broker to --limit" in run.output
    assert deployment.password(SITE_A) == before


def test_rotation_gives_a_site_a_new_password_the_broker_accepts(
    deployment: Deployment, fleet_broker: Broker
) -> None:
    old = deployment.password(SITE_A)
    run = deployment.play("rotate-credentials.yml", "--limit", f"{BROKER}:{SITE_A}")
    assert run.returncode == 0, run.output[-4000:]
    new = deployment.password(SITE_A)
    assert new != old
    assert len(new) == 32
    site_file = deployment.root(SITE_A) / "etc" / "onedoor" / "mqtt.password"
    assert site_file.read_text().strip() == new
    mqtt_config = load_config(deployment.site_config(SITE_A)).mqtt
    assert mqtt_config is not None
    assert mqtt_config.password == new
    # What the broker role's reload handler makes systemd do.
    fleet_broker.send_signal(signal.SIGHUP)
    _wait_for(lambda: _connect_code(deployment, SITE_A, new) == 0, timeout=10)
    assert _connect_code(deployment, SITE_A, old) >= 0x80
    assert _connect_code(deployment, SITE_B, deployment.password(SITE_B)) == 0  # untouched


def _connect_code(deployment: Deployment, user: str, password: str) -> int:
    client = Client(deployment, user, password)
    client.close()
    return client.connect_code

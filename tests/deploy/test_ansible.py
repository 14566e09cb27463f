"""deploy/ansible, run for real: lint, every role on local targets, idempotence, the rendered
configs through `onedoor edge check-config`, the central on PostgreSQL through the command
the role installs, a running edge daemon taking a pushed config on SIGHUP, rotation.

The playbooks run against the committed sample inventory (generated from the central's seed)
plus a second central replica, with connection `local`, a temporary `onedoor_root` per host
and `onedoor_manage_system: false` (see `tests/deploy/fleet.py`).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from edge.config import load_config
from firmware_protocols.mqtt_topics import TOPICS
from tests.deploy.fleet import (
    ANSIBLE_DIR,
    BROKER,
    CENTRAL,
    CENTRAL_2,
    DATABASE_PASSWORD,
    DATABASE_USER,
    HALL,
    HOSTS,
    REPO,
    SAMPLE,
    SITE_A,
    SITE_B,
    VENV_BIN,
    CentralServer,
    Deployment,
    FleetBroker,
    MqttClient,
    ansible_env,
    central_cli,
    connect_code,
    local_vars,
    read_env_file,
    run_playbook,
    wait_for,
)
from tests.servers import PostgresCluster

# --------------------------------------------------------------------------- lint, idempotence


def test_ansible_lint_is_clean(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "ansible-lint"), "--offline", "--nocolor"],
        cwd=ANSIBLE_DIR, env=ansible_env(tmp_path), capture_output=True, text=True,
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


def test_a_fresh_control_node_checks_then_deploys_a_sqlite_central(tmp_path: Path) -> None:
    """`site.yml --check` needs the CA before there is one; the role's default database
    (SQLite) seeds and hands out tokens through `onedoor-central`."""
    broker_port = 18883  # never listened on: nothing here connects
    vars_file = tmp_path / "vars.yml"
    vars_file.write_text(yaml.safe_dump({**local_vars(tmp_path, broker_port),
                                         "onedoor_broker_host": "127.0.0.1"}))
    args = ("-i", str(SAMPLE), "-e", f"@{vars_file}")
    check = run_playbook("site.yml", *args, "--check", "--limit", f"{BROKER}:{CENTRAL}:{SITE_A}",
                         workdir=tmp_path)
    assert check.returncode == 0, check.output[-4000:]
    assert set(check.recap) == {BROKER, CENTRAL, SITE_A}
    assert not (tmp_path / "root" / SITE_A / "etc/onedoor/edge.toml").exists()  # a dry run

    # The dry run made the CA (the central needs it), so the central alone may go first.
    real = run_playbook("site.yml", *args, "--limit", CENTRAL, workdir=tmp_path)
    assert real.returncode == 0, real.output[-4000:]
    deployment = Deployment(tmp_path, vars_file, tmp_path / "unused", broker_port, 0)
    env = read_env_file(deployment.root(CENTRAL) / "etc/onedoor/central.env")
    database = deployment.root(CENTRAL) / "var/lib/onedoor-central/central.db"
    assert env["ONEDOOR_CENTRAL_DATABASE_URL"] == f"sqlite:///{database}"
    assert central_cli(deployment, "seed").startswith("seed loaded: 303 sites")
    assert central_cli(deployment, "token", "create", "--role", "operator").startswith("od_")
    assert database.is_file()


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
    # The calendar and the progress pages' URL come from the inventory too.
    assert config.calendar.day(dt.date(2026, 10, 5)).kind == "holiday"
    assert config.calendar.day(dt.date(2026, 9, 27)).kind == "workday"
    assert config.progress.url == "https://q.example.gov.cn"


def test_village_devices_and_udev_names(deployment: Deployment) -> None:
    config = load_config(deployment.site_config(SITE_A))
    assert config.devices.printer is not None
    assert config.devices.printer.port == "/dev/onedoor/printer"
    assert config.devices.terminals is not None
    assert config.devices.terminals.port == "/dev/onedoor/terminals"
    assert config.devices.gpio is not None
    assert config.devices.gpio.pin_factory == "lgpio"
    rules = (deployment.root(SITE_A) / "etc/udev/rules.d/70-onedoor.rules").read_text()
    assert ('ACTION=="add", SUBSYSTEM=="usb-serial", DRIVER=="ftdi_sio", '
            'ATTR{latency_timer}="1"') in rules
    assert 'SYMLINK+="onedoor/printer"' in rules
    assert 'SYMLINK+="onedoor/terminals"' in rules
    unit = (deployment.root(SITE_A) / "etc/systemd/system/onedoor-edge.service").read_text()
    assert "Type=notify" in unit
    assert "WatchdogSec=" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit


def test_the_role_renders_the_id_card_reader_parity_and_rs485(deployment: Deployment) -> None:
    hall = load_config(deployment.site_config(HALL)).devices
    assert hall.id_card is not None
    assert (hall.id_card.port, hall.id_card.service, hall.id_card.elder_age) == (
        "/dev/onedoor/id_card", "huji", 65)
    assert hall.id_card.call_by_name is True
    # The ledger of today's cards beside the journal, in the state folder.
    assert hall.id_card.ledger == str(deployment.root(HALL) / "var/lib/onedoor/journal.db.idcards")
    assert hall.terminals is not None
    assert (hall.terminals.kind, hall.terminals.parity, hall.terminals.rs485) == (
        "modbus", "E", "auto")
    assert hall.screens is not None
    assert hall.screens.rs485 == "auto"
    village = load_config(deployment.site_config(SITE_A)).devices
    assert village.terminals is not None
    assert (village.terminals.kind, village.terminals.parity) == ("vendor", "N")
    assert village.id_card is None
    rules = (deployment.root(HALL) / "etc/udev/rules.d/70-onedoor.rules").read_text()
    assert ('SUBSYSTEM=="tty", ATTRS{idVendor}=="10c4", ATTRS{idProduct}=="ea60", '
            'ATTRS{serial}=="IDR-0001", SYMLINK+="onedoor/id_card", GROUP="onedoor", '
            'MODE="0660"') in rules
    # Two ports of one FT4232H told apart by their interface.
    assert 'ENV{ID_USB_INTERFACE_NUM}=="00", SYMLINK+="onedoor/screens"' in rules
    assert 'ENV{ID_USB_INTERFACE_NUM}=="01", SYMLINK+="onedoor/terminals"' in rules


def _directives(unit: str) -> list[str]:
    return [line for line in unit.splitlines() if line and not line.startswith("#")]


def _systemd_analyze_verify(unit: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    result = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_the_shipped_unit_is_the_roles_unit_and_systemd_accepts_both(
    deployment: Deployment, tmp_path: Path,
) -> None:
    """deploy/systemd/onedoor-edge.service is what the role installs with its default paths."""
    root = deployment.root(SITE_A)
    rendered = (root / "etc/systemd/system/onedoor-edge.service").read_text()
    # The role's defaults: the venv in /opt/onedoor, every other path under the root "".
    as_on_a_pi = rendered.replace(str(VENV_BIN.parent), "/opt/onedoor").replace(str(root), "")
    shipped_path = REPO / "deploy" / "systemd" / "onedoor-edge.service"
    assert _directives(shipped_path.read_text()) == _directives(as_on_a_pi)
    assert f"ExecStart={VENV_BIN}/onedoor edge run --config {deployment.site_config(SITE_A)}" \
        in rendered
    _systemd_analyze_verify(root / "etc/systemd/system/onedoor-edge.service")
    # The shipped unit, where its command exists: the venv under test in place of /opt/onedoor.
    shipped = tmp_path / "onedoor-edge.service"
    shipped.write_text(shipped_path.read_text().replace("/opt/onedoor", str(VENV_BIN.parent)))
    _systemd_analyze_verify(shipped)


def test_onedoor_is_on_the_path_of_a_site(deployment: Deployment) -> None:
    """`ssh <site> sudo -u onedoor onedoor edge ...` (the README): sudo's PATH has
    /usr/local/bin, where the role links the venv's command."""
    link = deployment.root(SITE_A) / "usr/local/bin/onedoor"
    assert link.is_symlink()
    assert link.resolve() == (VENV_BIN / "onedoor").resolve()
    result = subprocess.run(["onedoor", "edge", "check-config",
                             str(deployment.site_config(SITE_A))],
                            env={"PATH": f"{link.parent}:/usr/bin:/bin"}, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_the_broker_may_hold_a_city_fleet_of_connections(deployment: Deployment) -> None:
    """Debian's 1024 open files would stop Mosquitto at about a thousand sites."""
    dropin = deployment.root(BROKER) / "etc/systemd/system/mosquitto.service.d/onedoor.conf"
    lines = dropin.read_text().splitlines()
    assert "[Service]" in lines
    assert "LimitNOFILE=65536" in lines


def test_the_brokers_limits_follow_the_mqtt_contract(deployment: Deployment) -> None:
    largest = max(spec.max_payload for spec in TOPICS.values())
    defaults = yaml.safe_load((ANSIBLE_DIR / "roles/broker/defaults/main.yml").read_text())
    assert defaults["broker_max_payload_bytes"] == largest == 128 * 1024
    conf = (deployment.root(BROKER) / "etc/mosquitto/mosquitto.conf").read_text().splitlines()
    assert f"max_packet_size {largest + 512}" in conf
    assert "max_queued_bytes 67108864" in conf
    assert "memory_limit 1073741824" in conf
    # Mosquitto 2.0 reads it per listener: once under each.
    assert conf.count("use_username_as_clientid true") == sum(
        line.startswith("listener ") for line in conf)


def test_secrets_are_not_world_readable(deployment: Deployment) -> None:
    for path in (deployment.root(SITE_A) / "etc/onedoor/mqtt.password",
                 deployment.root(BROKER) / "etc/mosquitto/onedoor.passwd",
                 deployment.root(BROKER) / "etc/mosquitto/certs/server.key"):
        assert path.stat().st_mode & 0o007 == 0, path
    for root_only in (deployment.root(CENTRAL) / "etc/onedoor/central.env",
                      deployment.central_command()):
        assert root_only.stat().st_mode & 0o077 == 0, root_only


def test_two_hosts_sharing_a_broker_user_are_refused(
    deployment: Deployment, tmp_path: Path,
) -> None:
    """A broker user is a client id: a site also listed as a central replica would share one."""
    both = tmp_path / "both.yml"
    both.write_text(yaml.safe_dump({"all": {"children": {"central": {"hosts": {SITE_A: None}}}}}))
    run = deployment.play("site.yml", "--limit", BROKER, inventory=(str(SAMPLE), str(both)))
    assert run.returncode != 0
    assert f"share a broker user (a user is a client id: they would knock each other off the " \
        f"broker): {SITE_A} " in run.output


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


# --------------------------------------------------------------------------- the Pi's GPIO


def test_the_pi_gets_the_gpio_backend_of_the_village_default(
    deployment: Deployment, tmp_path: Path,
) -> None:
    """The role installs onedoor[pi], and the extra brings lgpio (not its empty 0.0.0.2)."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert extras["pi"] == ["lgpio>=0.2.2"]
    playbook = tmp_path / "show.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Show the edge role's pip requirement", "hosts": SITE_A, "gather_facts": False,
        "tasks": [{"name": "Load the role's defaults (and write the udev rules again)",
                   "ansible.builtin.import_role": {"name": "edge", "tasks_from": "udev.yml"}},
                  {"name": "Show", "ansible.builtin.debug": {"var": "edge_pip_package"}}]}]))
    # A playbook outside deploy/ansible: the fleet's group_vars come as extra vars.
    run = deployment.play(str(playbook), "-e", f"@{ANSIBLE_DIR / 'group_vars' / 'all.yml'}",
                          "-e", f"@{deployment.vars_file}", "--limit", SITE_A)
    assert run.returncode == 0, run.output[-3000:]
    assert '"edge_pip_package": "onedoor[pi]==0.1.0"' in run.output


def test_a_site_without_its_gpio_backend_stops_with_a_clear_message(
    deployment: Deployment,
) -> None:
    """Site A's config as rendered (pin_factory lgpio) in an environment without lgpio."""
    try:
        import lgpio  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("lgpio is installed here: the daemon would drive the GPIO header")
    result = subprocess.run(
        [str(VENV_BIN / "onedoor"), "edge", "run", "--config",
         str(deployment.site_config(SITE_A))],
        env={**os.environ, "ONEDOOR_GPIO_MOCK": "0"}, capture_output=True, text=True,
        timeout=120, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "pin_factory: 'lgpio' needs the Python package lgpio: install onedoor[pi]" \
        in result.stderr


# --------------------------------------------------------------------------- the real broker


def test_a_site_publishes_under_its_own_topics_only(
    central_client: MqttClient, site_a_client: MqttClient,
) -> None:
    assert central_client.subscribe("onedoor/v1/+/event") == 1
    own, other = f"onedoor/v1/{SITE_A}/event", f"onedoor/v1/{SITE_B}/event"
    site_a_client.publish(other, b'{"forged": true}')
    site_a_client.publish(own, b'{"genuine": true}')
    # Same client, same QoS: had the forged one passed, it would have arrived first.
    assert central_client.received_until(own) == [(own, b'{"genuine": true}')]


def test_a_site_publishes_its_progress_for_the_central(
    central_client: MqttClient, site_a_client: MqttClient,
) -> None:
    # The progress pages' topic: the site writes its own, the central reads every site's.
    assert central_client.subscribe("onedoor/v1/+/progress") == 1
    own, other = f"onedoor/v1/{SITE_A}/progress", f"onedoor/v1/{SITE_B}/progress"
    site_a_client.publish(other, b'{"forged": true}')
    site_a_client.publish(own, b'{"genuine": true}')
    assert central_client.received_until(own) == [(own, b'{"genuine": true}')]


def test_a_site_cannot_read_another_sites_topics(
    central_client: MqttClient, site_a_client: MqttClient,
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


def test_only_the_central_grants_a_sites_numbers(
    central_client: MqttClient, site_a_client: MqttClient,
) -> None:
    """A site reads its lease and restores and writes its diagnostics; a stolen site credential
    cannot publish a lease (one with a higher epoch would stop the site's real device)."""
    lease, restore = f"onedoor/v1/{SITE_A}/lease", f"onedoor/v1/{SITE_A}/restore"
    diag = f"onedoor/v1/{SITE_A}/diag"
    assert central_client.subscribe(lease) == 1
    assert central_client.subscribe(diag) == 1
    site_a_client.publish(lease, b'{"forged": true}')
    site_a_client.publish(diag, b'{"diag": true}')
    assert central_client.received_until(diag) == [(diag, b'{"diag": true}')]
    assert site_a_client.subscribe(restore) == 1
    central_client.publish(restore, b'{"restore": true}')
    assert site_a_client.received_until(restore) == [(restore, b'{"restore": true}')]


def test_wrong_password_and_anonymous_are_refused(
    deployment: Deployment, fleet_broker: FleetBroker,
) -> None:
    assert connect_code(deployment, SITE_A, deployment.password(SITE_B)) >= 0x80
    assert connect_code(deployment, deployment.mqtt_user(CENTRAL),
                        deployment.password(CENTRAL_2)) >= 0x80
    anonymous = MqttClient(deployment, None, None)
    anonymous.close()
    assert anonymous.connect_code >= 0x80


# --------------------------------------------------------------------------- the central


def test_each_central_replica_has_its_own_broker_user(deployment: Deployment) -> None:
    first, second = deployment.central_settings(CENTRAL), deployment.central_settings(CENTRAL_2)
    assert first["mqtt_username"] == first["mqtt_client_id"] == f"onedoor-central@{CENTRAL}"
    assert second["mqtt_username"] == f"onedoor-central@{CENTRAL_2}"
    assert deployment.password(CENTRAL) != deployment.password(CENTRAL_2)
    env = read_env_file(deployment.root(CENTRAL) / "etc/onedoor/central.env")
    assert env["ONEDOOR_CENTRAL_MQTT_PASSWORD"] == deployment.password(CENTRAL)


def test_the_central_runs_on_postgresql_with_a_quoted_password(
    deployment: Deployment, central_server: CentralServer,
) -> None:
    """The password, with every character a URL or a regex replacement could misread,
    reaches PostgreSQL intact (it asks for it), and the central serves from there."""
    env = read_env_file(deployment.root(CENTRAL) / "etc/onedoor/central.env")
    url = make_url(env["ONEDOOR_CENTRAL_DATABASE_URL"])
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.password, url.database) == (
        DATABASE_USER, DATABASE_PASSWORD, DATABASE_USER)
    assert central_server.get("/api/v1/sites")["total"] == 303
    import psycopg

    with psycopg.connect(host=url.host, port=url.port, user=url.username,
                         password=DATABASE_PASSWORD, dbname=url.database) as connection:
        row = connection.execute("SELECT count(*) FROM sites").fetchone()
    assert row is not None
    assert row[0] == 303


@pytest.mark.parametrize(("host", "status"), [
    (CENTRAL, 200),  # onedoor_central_url's name (what nginx passes on), and its own
    ("localhost", 200),
    (CENTRAL_2, 400),  # another replica's name
    ("evil.example.com", 400),
])
def test_the_central_answers_under_its_names_only(
    central_server: CentralServer, host: str, status: int,
) -> None:
    request = urllib.request.Request(f"{central_server.url}/healthz", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            answered = response.status
    except urllib.error.HTTPError as exc:
        answered = exc.code
    assert answered == status


def test_the_central_signs_sessions_with_the_roles_secret(
    deployment: Deployment, central_server: CentralServer,
) -> None:
    """One secret for every replica and restart: else a dashboard session ends with its process."""
    env = read_env_file(deployment.root(CENTRAL) / "etc/onedoor/central.env")
    secret = env["ONEDOOR_CENTRAL_SESSION_SECRET"]
    assert len(secret) >= 32
    assert secret == read_env_file(
        deployment.root(CENTRAL_2) / "etc/onedoor/central.env")["ONEDOOR_CENTRAL_SESSION_SECRET"]
    log = central_server.log.read_text(errors="replace")
    assert "central.started" in log
    assert "session_secret_random" not in log
    assert secret not in log
    assert DATABASE_PASSWORD not in log


def test_the_central_backs_its_database_up_every_night(
    deployment: Deployment, central_server: CentralServer, postgres_cluster: PostgresCluster,
) -> None:
    """The role's timer runs `onedoor-central backup` on the first central only; what it
    writes restores with the README's command into a new database, the same registry in it."""
    units = deployment.root(CENTRAL) / "etc/systemd/system"
    service, timer = (units / "onedoor-central-backup.service",
                      units / "onedoor-central-backup.timer")  # fmt: skip
    assert "OnCalendar=*-*-* 02:30:00" in timer.read_text()
    assert not (deployment.root(CENTRAL_2) / "etc/systemd/system"
                / "onedoor-central-backup.timer").exists()  # fmt: skip
    _systemd_analyze_verify(service)
    _systemd_analyze_verify(timer)
    [command] = [line.removeprefix("ExecStart=") for line in service.read_text().splitlines()
                 if line.startswith("ExecStart=")]  # fmt: skip
    folder = deployment.root(CENTRAL) / "var/backups/onedoor-central"
    assert f"backup --dir {folder} --keep 14" in command
    done = subprocess.run(command.split(), capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    [dump] = folder.glob("central-*.dump")
    assert dump.stat().st_mode & 0o777 == 0o600
    assert DATABASE_PASSWORD not in done.stdout + done.stderr

    restored = postgres_cluster.create_database("onedoor_restored")
    loaded = subprocess.run([str(VENV_BIN / "onedoor"), "central", "restore", "--from", str(dump)],
                            env={**os.environ, "ONEDOOR_CENTRAL_DATABASE_URL": restored},
                            capture_output=True, text=True, timeout=300, check=False)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    import psycopg

    url = make_url(read_env_file(deployment.root(CENTRAL) / "etc/onedoor/central.env")[
        "ONEDOOR_CENTRAL_DATABASE_URL"])  # fmt: skip
    query = "SELECT count(*), string_agg(id, ',' ORDER BY id) FROM sites"
    with psycopg.connect(host=url.host, port=url.port, user=url.username,
                         password=DATABASE_PASSWORD, dbname=url.database) as live:
        expected = live.execute(query).fetchone()
    with psycopg.connect(make_url(restored).set(drivername="postgresql")
                         .render_as_string(hide_password=False)) as copy:  # fmt: skip
        assert copy.execute(query).fetchone() == expected


# --------------------------------------------------------------------------- a running daemon


def _state_of(client: MqttClient, site: str, config_version: str,
              timeout: float) -> dict[str, Any]:
    """The first `state` message of ``site`` announcing ``config_version``."""
    topic = f"onedoor/v1/{site}/state"
    state: dict[str, Any] = {}

    def announced() -> bool:
        nonlocal state
        while not client.messages.empty():
            got, payload = client.messages.get()
            state = json.loads(payload)
            if got == topic and state.get("config") == config_version:
                return True
        return False

    wait_for(announced, timeout=timeout)
    return state


def test_a_running_daemon_takes_a_pushed_config_on_reload(
    deployment: Deployment, central_client: MqttClient, central_server: CentralServer,
) -> None:
    config = deployment.site_config(SITE_B)
    log = (deployment.workdir / "edge-daemon.log").open("wb")
    daemon = subprocess.Popen([str(VENV_BIN / "onedoor"), "edge", "run", "--config", str(config)],
                              cwd=deployment.workdir, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "ONEDOOR_GPIO_MOCK": "1"})  # no GPIO header
    try:
        assert central_client.subscribe(f"onedoor/v1/{SITE_B}/state") == 1
        first = _state_of(central_client, SITE_B, "2026.11.1", timeout=30)
        assert first["status"] == "online"

        wait_for(lambda: central_server.site(SITE_B)["reported_config_version"] == "2026.11.1")

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
        # The README's check, with the command the role put on the site's PATH.
        status = subprocess.run(
            ["onedoor", "edge", "status", "--config", str(config), "--json"],
            env={"PATH": f"{deployment.root(SITE_B)}/usr/local/bin:/usr/bin:/bin"},
            capture_output=True, text=True, timeout=30, check=True)
        assert json.loads(status.stdout)["config"] == "2026.11.2"
        wait_for(lambda: central_server.site(SITE_B)["reported_config_version"] == "2026.11.2")
        assert central_server.site(SITE_B)["config_drift"] is False
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
        log.close()


def test_a_first_install_records_the_sites_release_at_the_central(
    deployment: Deployment, central_server: CentralServer,
) -> None:
    """site.yml on a site the central expects no release of tells it the one installed (the
    fleet page's software drift is then known before any rollout); a second run leaves the
    central alone."""
    assert central_server.site(SITE_A)["expected_release"] is None
    central = ("-e", f"onedoor_central_url={central_server.url}",
               "-e", f"onedoor_central_admin_token={central_server.admin_token}")
    first = deployment.play("site.yml", "--limit", SITE_A, *central)
    assert first.returncode == 0, first.output[-4000:]
    installed = importlib.metadata.version("onedoor")  # the venv the role installed into
    assert central_server.site(SITE_A)["expected_release"] == installed
    versions = {row["site"]: row for row in central_server.get("/api/v1/fleet/versions")["rows"]}
    assert versions[SITE_A]["expected_release"] == installed
    again = deployment.play("site.yml", "--limit", SITE_A, *central)
    assert again.returncode == 0, again.output[-4000:]
    assert again.recap[SITE_A]["changed"] == 0, again.output[-4000:]


# --------------------------------------------------------------------------- rotation (the
# rotation itself runs with the dynamic inventory: test_inventory.py)


def test_rotation_refuses_to_run_without_the_broker(deployment: Deployment) -> None:
    before = deployment.password(SITE_A)
    run = deployment.play("rotate-credentials.yml", "--limit", SITE_A)
    assert run.returncode != 0
    assert "add the broker to --limit" in run.output
    assert deployment.password(SITE_A) == before

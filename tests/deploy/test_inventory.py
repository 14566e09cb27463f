"""The dynamic inventory (the central's registry) against the static sample, and the README's
onboarding, registry change, rotation and retirement commands run with it against the deployed
fleet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.config import load_config
from tests.deploy.fleet import (
    ANSIBLE_DIR,
    BROKER,
    CENTRAL,
    CENTRAL_2,
    INVENTORY_SCRIPT,
    SAMPLE,
    SITE_A,
    VENV_BIN,
    CentralServer,
    Deployment,
    FleetBroker,
    ansible_env,
    connect_code,
    load_module,
    read_env_file,
    wait_for,
)

NEW_SITE = "zs-shiqi-13"  # added to the registry through the API: the README's onboarding
NEW_SITE_SPEC = {
    "id": NEW_SITE, "name": "石岐新村党群服务中心", "town": "石岐街道", "kind": "village",
    "hours": {"open": "08:00", "close": "17:00", "last_ticket": "16:30"},
    # The village group's ticket buttons (group_vars/village.yml) name these three.
    "services": [{"code": "zonghe", "name": "综合受理（一窗通办）", "prefix": "Z", "sla_s": 1800},
                 {"code": "shebao", "name": "社会保障", "prefix": "B", "sla_s": 1800},
                 {"code": "minzheng", "name": "民政救助", "prefix": "D", "sla_s": 2400}],
    "windows": [{"number": 1, "services": ["zonghe", "shebao", "minzheng"]},
                {"number": 2, "services": ["zonghe"]}],
}  # fmt: skip
# What only the central knows (the dynamic inventory's live state).
LIVE_VARIABLES = load_module(INVENTORY_SCRIPT).LIVE_VARIABLES


@pytest.fixture(scope="module")
def new_site(central_server: CentralServer) -> str:
    """A village added through the registry API, as the README's onboarding starts."""
    central_server.call("POST", "/api/v1/sites", NEW_SITE_SPEC)
    return NEW_SITE


@pytest.fixture(scope="module")
def dynamic_env(central_server: CentralServer) -> dict[str, str]:
    """The README's exports for the dynamic inventory."""
    return {"ONEDOOR_CENTRAL_URL": central_server.url,
            "ONEDOOR_CENTRAL_TOKEN": central_server.operator_token,
            "ONEDOOR_BROKER_HOSTS": BROKER, "ONEDOOR_CENTRAL_HOSTS": CENTRAL}


def _inventory(source: str, env: dict[str, str], workdir: Path) -> dict[str, Any]:
    listed = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", source, "--list"],
                            env=ansible_env(workdir, **env), capture_output=True, text=True,
                            timeout=180, check=True, cwd=ANSIBLE_DIR)
    data: dict[str, Any] = json.loads(listed.stdout)
    return data


def _members(inventory: dict[str, Any]) -> dict[str, set[str]]:
    """Every group with all its hosts, those of its children included."""

    def hosts(group: str) -> set[str]:
        entry = inventory.get(group, {})
        found = set(entry.get("hosts", []))
        for child in entry.get("children", []):
            found |= hosts(child)
        return found

    return {group: hosts(group) for group in inventory if group not in ("_meta", "all")}


def _assert_same_inventory(dynamic: dict[str, Any], static: dict[str, Any]) -> None:
    """The same groups with the same hosts, each host with the same registry variables
    (the dynamic inventory adds the live ones only)."""
    assert _members(dynamic) == _members(static)
    static_vars, dynamic_vars = static["_meta"]["hostvars"], dynamic["_meta"]["hostvars"]
    assert set(dynamic_vars) == set(static_vars)
    for host, variables in dynamic_vars.items():
        registry = {name: value for name, value in variables.items()
                    if name not in LIVE_VARIABLES}
        static_registry = {name: value for name, value in static_vars[host].items()
                           if name != "onedoor_registry_revision"}
        assert registry == static_registry, host
        if "onedoor_registry_revision" in static_vars[host]:  # a registry export's
            assert static_vars[host]["onedoor_registry_revision"] == \
                variables["onedoor_registry_revision"], host


def test_both_inventories_give_the_same_groups_and_variables(
    dynamic_env: dict[str, str], tmp_path: Path,
) -> None:
    dynamic = _inventory(str(INVENTORY_SCRIPT), dynamic_env, tmp_path)
    static = _inventory(str(SAMPLE), {}, tmp_path)
    groups = _members(static)
    assert {"edge", "village", "hall", "district", "city_hall", "broker", "central"} <= set(groups)
    assert groups["broker"] == {BROKER}
    assert groups["central"] == {CENTRAL}
    _assert_same_inventory(dynamic, static)
    assert dynamic["_meta"]["hostvars"][SITE_A]["onedoor_site_name"] == "石岐庆围村党群服务中心"
    # The script's own answers (Ansible adds the playbook folder's group_vars to the above).
    def script(*args: str) -> Any:
        return json.loads(subprocess.run(
            [sys.executable, str(INVENTORY_SCRIPT), *args], env={**os.environ, **dynamic_env},
            capture_output=True, text=True, timeout=120, check=True).stdout)

    assert script("--host", SITE_A) == script("--list")["_meta"]["hostvars"][SITE_A]


def test_the_readme_graph_command(dynamic_env: dict[str, str], tmp_path: Path) -> None:
    """`ansible-inventory -i inventory/onedoor_central.py --graph edge`, from deploy/ansible."""
    graph = subprocess.run(
        [str(VENV_BIN / "ansible-inventory"), "-i", "inventory/onedoor_central.py", "--graph",
         "edge"], env=ansible_env(tmp_path, **dynamic_env), capture_output=True, text=True,
        timeout=120, check=True, cwd=ANSIBLE_DIR)
    assert "@town_zs_shiqi:" in graph.stdout
    assert f"|--{SITE_A}" in graph.stdout


def test_the_inventory_refuses_a_bad_token(dynamic_env: dict[str, str]) -> None:
    env = {**os.environ, **dynamic_env, "ONEDOOR_CENTRAL_TOKEN": "od_nope.nope"}
    result = subprocess.run([sys.executable, str(INVENTORY_SCRIPT), "--list"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr
    assert result.stdout == ""


@pytest.fixture(scope="module")
def production_vars(deployment: Deployment) -> Iterator[Path]:
    """The deployment's variables without its loopback broker address: the sites' broker is
    then the inventory's, as in production."""
    values = yaml.safe_load(deployment.vars_file.read_text())
    del values["onedoor_broker_host"]
    path = deployment.workdir / "production-vars.yml"
    path.write_text(yaml.safe_dump(values))
    yield path
    path.unlink()


def test_the_readme_onboarding_command_includes_the_broker(
    deployment: Deployment, dynamic_env: dict[str, str], production_vars: Path, new_site: str,
) -> None:
    """`ansible-playbook -i inventory/onedoor_central.py site.yml --limit 'broker:<site>'`,
    for a site just added through the registry API: its windows and hours reach its config."""
    run = deployment.play("site.yml", "--limit", f"broker:{NEW_SITE}",
                          inventory=("inventory/onedoor_central.py",), env=dynamic_env,
                          vars_file=production_vars)
    assert run.returncode == 0, run.output[-4000:]
    assert set(run.recap) == {BROKER, NEW_SITE}
    assert all(counts["failed"] == 0 for counts in run.recap.values())
    config = load_config(deployment.site_config(NEW_SITE))
    assert [w.number for w in config.windows] == [1, 2]
    assert (config.hours.open_minute, config.hours.issue_until_minute) == (480, 990)
    assert config.mqtt is not None
    assert config.mqtt.host == BROKER
    assert config.mqtt.username == NEW_SITE
    users = (deployment.root(BROKER) / "etc/mosquitto/onedoor.passwd").read_text()
    assert f"\n{NEW_SITE}:$7$" in users


def test_rotation_gives_a_site_and_a_replica_new_passwords_the_broker_accepts(
    deployment: Deployment, fleet_broker: FleetBroker, dynamic_env: dict[str, str],
    production_vars: Path,
) -> None:
    """`rotate-credentials.yml --limit 'broker:...'` with the dynamic inventory (it could
    not run before: no group `broker`), on the site just onboarded and replica 2 (replica 1
    is the running central: it would need a restart)."""
    hosts = (NEW_SITE, CENTRAL_2)
    old = {host: deployment.password(host) for host in hosts}
    run = deployment.play("rotate-credentials.yml", "--limit", ":".join(("broker", *hosts)),
                          inventory=("inventory/onedoor_central.py",), env=dynamic_env,
                          vars_file=production_vars)
    assert run.returncode == 0, run.output[-4000:]
    new = {host: deployment.password(host) for host in hosts}
    for host in hosts:
        assert new[host] != old[host]
        assert len(new[host]) == 32
    site_file = deployment.root(NEW_SITE) / "etc" / "onedoor" / "mqtt.password"
    assert site_file.read_text().strip() == new[NEW_SITE]
    mqtt_config = load_config(deployment.site_config(NEW_SITE)).mqtt
    assert mqtt_config is not None
    assert mqtt_config.password == new[NEW_SITE]
    env = read_env_file(deployment.root(CENTRAL_2) / "etc/onedoor/central.env")
    assert env["ONEDOOR_CENTRAL_MQTT_PASSWORD"] == new[CENTRAL_2]
    fleet_broker.reload()
    for host in hosts:
        user = deployment.mqtt_user(host)
        wait_for(lambda: connect_code(deployment, user, new[host]) == 0, timeout=10)  # noqa: B023
        assert connect_code(deployment, user, old[host]) >= 0x80
    assert connect_code(deployment, SITE_A, deployment.password(SITE_A)) == 0  # untouched


def test_without_a_broker_the_play_stops_instead_of_naming_localhost(
    deployment: Deployment, production_vars: Path, tmp_path: Path,
) -> None:
    """An inventory without group `broker` (the dynamic one had none) renders no config."""
    before = deployment.site_config(SITE_A).read_bytes()
    site_vars = yaml.safe_load((SAMPLE / "host_vars" / f"{SITE_A}.yml").read_text("utf-8"))
    bare = tmp_path / "bare.yml"
    bare.write_text(yaml.safe_dump({"all": {"children": {"edge": {"hosts": {
        SITE_A: {**site_vars, "onedoor_town": "石岐街道"}}}}}}, allow_unicode=True))
    run = deployment.play("edge-config.yml", "--limit", SITE_A, inventory=(str(bare),),
                          vars_file=production_vars)
    assert run.returncode != 0
    assert "no host in group 'broker'" in run.output
    assert deployment.site_config(SITE_A).read_bytes() == before


# --------------------------------------------------------------------------- registry changes


def _static_from_export(central_server: CentralServer, folder: Path) -> Path:
    """The README's static inventory of the live registry: its export through
    `generate_sample.py --registry` (the CSV files come from the API here)."""
    export = folder / "export"
    export.mkdir(parents=True)
    for part in ("sites", "services", "windows"):
        (export / f"{part}.csv").write_text(central_server.text(f"/api/v1/registry/{part}.csv"),
                                            encoding="utf-8")  # fmt: skip
    static_dir = folder / "static"
    subprocess.run([sys.executable, str(ANSIBLE_DIR / "inventory" / "generate_sample.py"),
                    "--registry", str(export), "--output", str(static_dir)],
                   capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return static_dir


def test_a_site_added_through_the_api_is_in_the_inventory_as_the_static_one_gives_it(
    central_server: CentralServer, dynamic_env: dict[str, str], new_site: str, tmp_path: Path,
) -> None:
    """The registry's export made into a static inventory (generate_sample.py --registry) and
    the dynamic inventory give the same groups and host variables, the new site included."""
    static = _inventory(str(_static_from_export(central_server, tmp_path)), {}, tmp_path)
    dynamic = _inventory(str(INVENTORY_SCRIPT), dynamic_env, tmp_path)
    _assert_same_inventory(dynamic, static)
    assert new_site in _members(dynamic)["town_zs_shiqi"]
    assert new_site in _members(dynamic)["village"]
    assert dynamic["_meta"]["hostvars"][new_site]["edge_hours"] == {
        "open": "08:00", "close": "17:00", "reset": "03:00", "last_ticket": "16:30"}


def test_a_registry_change_reaches_the_site_with_the_next_push(
    deployment: Deployment, central_server: CentralServer, dynamic_env: dict[str, str],
    production_vars: Path, new_site: str,
) -> None:
    """The site has an expected version (a push records it); a window added through the API
    moves it on (drift), and the next push of the dynamic inventory renders the window with
    that version, so the site reports what the central expects. A static inventory made
    before the change is refused instead of pushing the old windows."""
    central_server.call("PATCH", f"/api/v1/sites/{new_site}",
                        {"expected_config_version": "2026.11.1"})  # fmt: skip
    stale = _static_from_export(central_server, deployment.workdir / "stale-inventory")
    changed = central_server.call("PUT", f"/api/v1/sites/{new_site}/windows/3",
                                  {"services": ["shebao"], "name": "3号窗口"})  # fmt: skip
    assert (changed["expected_config_version"], changed["config_drift"]) == (
        "2026.11.1+r1", True)
    push = ("edge-config.yml", "--limit", new_site, "-e",
            f"onedoor_central_url={central_server.url}")  # fmt: skip
    admin = {"ONEDOOR_CENTRAL_ADMIN_TOKEN": central_server.admin_token}
    before = deployment.site_config(new_site).read_bytes()
    refused = deployment.play(*push, inventory=(str(stale),), vars_file=production_vars,
                              env=admin)  # fmt: skip
    assert refused.returncode != 0
    assert f"the central's registry changed {new_site} (revision 1) after this inventory " \
        "was made (revision 0)" in " ".join(refused.output.split())
    assert deployment.site_config(new_site).read_bytes() == before
    run = deployment.play(*push, inventory=("inventory/onedoor_central.py",),
                          vars_file=production_vars, env={**dynamic_env, **admin})
    assert run.returncode == 0, run.output[-4000:]
    config = load_config(deployment.site_config(new_site))
    assert config.version == "2026.11.1+r1"
    assert [w.number for w in config.windows] == [1, 2, 3]
    assert central_server.site(new_site)["expected_config_version"] == "2026.11.1+r1"


def test_a_retired_site_leaves_the_inventory_and_keeps_its_history(
    deployment: Deployment, central_server: CentralServer, dynamic_env: dict[str, str],
    production_vars: Path, new_site: str, tmp_path: Path,
) -> None:
    """Once the new site is retired, the dynamic inventory is the static sample again, and
    the README's broker run takes its user off the broker."""
    retired = central_server.call("POST", f"/api/v1/sites/{new_site}/retire")
    assert retired["was_online"] is False
    dynamic = _inventory(str(INVENTORY_SCRIPT), dynamic_env, tmp_path)
    assert new_site not in dynamic["_meta"]["hostvars"]
    _assert_same_inventory(dynamic, _inventory(str(SAMPLE), {}, tmp_path))
    assert central_server.site(new_site)["retired_at"] is not None  # its page stays
    assert new_site not in [s["id"] for s in central_server.get("/api/v1/sites")["sites"]]
    actions = [e["action"] for e in central_server.get(
        f"/api/v1/audit?target={new_site}")["entries"]]  # fmt: skip
    assert actions == ["site.retire", "site.update", "site.expected_config", "site.create"]
    users = deployment.root(BROKER) / "etc/mosquitto/onedoor.passwd"
    assert f"\n{new_site}:$7$" in users.read_text()
    run = deployment.play("site.yml", "--limit", "broker",
                          inventory=("inventory/onedoor_central.py",), env=dynamic_env,
                          vars_file=production_vars)  # fmt: skip
    assert run.returncode == 0, run.output[-4000:]
    assert f"\n{new_site}:" not in users.read_text()
    assert f"\n{SITE_A}:$7$" in users.read_text()

"""The ops year, rehearsed on the production deployment (`make rehearsal`, after `make test`).

The production profile deployed with the real playbooks (`tests/deploy/fleet.py`: the TLS
broker, the central on PostgreSQL, villages and the city hall), then, as the README's
walkthrough has ops do it:

1. **Onboard** a new village from the registry API, deploy it with the dynamic inventory
   (`site.yml --limit broker:<site>`), start its daemon: the central sees it online.
2. **Upgrade** it and site B by a staged rollout (the new village is the canary), with site
   B's release made not to start: site B is rolled back and the rollout stops.
3. **Rotate** both sites' MQTT passwords (`rotate-credentials.yml`): they come back online
   with the new ones; the old ones are refused.
4. **Retire** the new village: it leaves the fleet and the broker.

At each step the central's counts are checked, and nothing may be lost: every event a
site journaled is acknowledged by the central (its outbox empty), with no gap.

Not rehearsed here yet: replacing a site's Pi mid-day (a fresh journal), and tickets
issued and served across the steps; the sites run without their serial devices (site B's
terminal bus is a pty with nobody on it).

Set ``ONEDOOR_REHEARSAL=1`` to run it (the Makefile's ``rehearsal`` target does, with
`test_upgrade.py` on the same deployment).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import yaml

from onedoor.broker import free_port
from tests.deploy.fleet import (
    BROKER,
    CENTRAL,
    SITE_B,
    CentralServer,
    Deployment,
    FleetBroker,
    Run,
    connect_code,
    wait_for,
)
from tests.deploy.releases import (
    FROM,
    REHEARSAL,
    TO,
    Site,
    build_release,
    hours_around,
    sites_inventory,
    upgrade_vars,
)

if not os.environ.get(REHEARSAL):
    pytest.skip("the ops-year rehearsal runs by `make rehearsal`", allow_module_level=True)

NEW = "zs-shiqi-14"
NEW_SPEC = {
    "id": NEW, "name": "石岐新港村党群服务中心", "town": "石岐街道", "kind": "village",
    "services": [{"code": "zonghe", "name": "综合受理（一窗通办）", "prefix": "Z", "sla_s": 1800},
                 {"code": "shebao", "name": "社会保障", "prefix": "B", "sla_s": 1800},
                 {"code": "minzheng", "name": "民政救助", "prefix": "D", "sla_s": 2400}],
    "windows": [{"number": 1, "services": ["zonghe", "shebao", "minzheng"]},
                {"number": 2, "services": ["zonghe"]}],
}  # fmt: skip
DYNAMIC = "inventory/onedoor_central.py"


class Fleet:
    """The rehearsal's two running sites and how ops run the playbooks on them."""

    def __init__(self, deployment: Deployment, central: CentralServer, new: Site,
                 site_b: Site, new_overlay: Path) -> None:  # fmt: skip
        self.deployment, self.central = deployment, central
        self.sites = {NEW: new, SITE_B: site_b}
        self.new_overlay = new_overlay
        self.env = {"ONEDOOR_CENTRAL_URL": central.url,
                    "ONEDOOR_CENTRAL_TOKEN": central.operator_token,
                    "ONEDOOR_BROKER_HOSTS": BROKER, "ONEDOOR_CENTRAL_HOSTS": CENTRAL}

    def play(self, playbook: str, *args: str, hours: dict[str, str] | None = None) -> Run:
        """With the dynamic inventory, as the README has ops run it."""
        inventory = (DYNAMIC, str(self.new_overlay),
                     str(sites_inventory(self.deployment, list(self.sites.values()))))
        run = self.deployment.play(playbook, *args, inventory=inventory, env=self.env,
                                   vars_file=upgrade_vars(self.deployment, self.central, hours))
        assert run.returncode == 0, run.output[-6000:]
        return run

    def status(self, host: str) -> dict[str, Any]:
        site = self.sites[host]
        shown = subprocess.run([str(site.venv / "bin" / "onedoor"), "edge", "status", "--config",
                                str(self.deployment.site_config(host)), "--json"],
                               capture_output=True, text=True, timeout=30, check=True)
        data: dict[str, Any] = json.loads(shown.stdout)
        return data

    def nothing_lost(self, host: str) -> None:
        """Every event the site journaled is acknowledged by the central, with no gap."""
        def settled() -> bool:
            uplink = self.status(host).get("uplink") or {}
            site = self.central.site(host)
            return (uplink.get("connected") is True and uplink.get("outbox_depth") == 0
                    and site["acked_seq"] == site["max_seq"] > 0)  # fmt: skip
        wait_for(settled, timeout=60)

    def online_on(self, host: str, version: str) -> None:
        wait_for(lambda: (self.central.site(host)["online"], self.central.site(host)[
            "software_version"]) == (True, f"onedoor-{version}"), timeout=60)  # fmt: skip


def in_service(central: CentralServer) -> set[str]:
    return {s["id"] for s in central.get("/api/v1/sites")["sites"]}


def online(central: CentralServer) -> set[str]:
    return {s["id"] for s in central.get("/api/v1/sites")["sites"] if s["online"]}


@pytest.fixture
def fleet(deployment: Deployment, central_server: CentralServer,
          fleet_broker: FleetBroker) -> Iterator[Fleet]:  # fmt: skip
    releases = deployment.workdir / "releases"
    for version in (FROM, TO):
        central_server.call("POST", "/api/v1/releases", build_release(version, releases))
    controller, device = os.openpty()
    # The new village as this machine runs it: no printer, screens or GPIO; its terminal bus
    # a pty; its HTTP API on a free port.
    overlay = deployment.workdir / "new-site.yml"
    overlay.write_text(yaml.safe_dump({"all": {"hosts": {NEW: {
        "edge_printer": {}, "edge_gpio": {}, "edge_serial_devices": [],
        "edge_terminals": {"kind": "vendor", "port": os.ttyname(device), "baud": 9600},
        "edge_audio": {"output": "wav", "wav_dir": str(deployment.workdir / "announcements")},
        "edge_http": {"host": "127.0.0.1", "port": free_port()},
    }}}}, allow_unicode=True))  # fmt: skip
    sites = [Site(deployment, NEW, releases), Site(deployment, SITE_B, releases)]
    try:
        yield Fleet(deployment, central_server, *sites, overlay)
    finally:
        for site in sites:
            site.stop()
        os.close(controller)
        os.close(device)


@pytest.mark.timeout(1200)
def test_an_ops_year(fleet: Fleet, deployment: Deployment, central_server: CentralServer,
                     fleet_broker: FleetBroker) -> None:  # fmt: skip
    central = central_server
    before = in_service(central)
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    closed = hours_around(now, open_now=False)
    new, site_b = fleet.sites[NEW], fleet.sites[SITE_B]

    # 1. Onboard: registry API, then the README's `site.yml --limit broker:<site>`.
    central.call("POST", "/api/v1/sites", NEW_SPEC)
    fleet.play("site.yml", "--limit", f"broker:{NEW}", hours=closed)
    fleet_broker.reload()  # the broker role's handler, where systemd runs it
    fleet.play("edge-config.yml", "--limit", SITE_B, "-e", "edge_config_version=ops-1",
               hours=closed)  # fmt: skip
    for site in (new, site_b):
        site.restart()
    fleet.online_on(NEW, FROM)
    fleet.online_on(SITE_B, FROM)
    assert in_service(central) == before | {NEW}
    assert {NEW, SITE_B} <= online(central)
    for host in (NEW, SITE_B):
        fleet.nothing_lost(host)

    # 2. Upgrade: the new village is the canary, then site B, whose release does not start.
    site_b.fault.write_text(TO)
    rollout = central.call("POST", "/api/v1/rollouts", {
        "release": TO, "sites": [NEW, SITE_B], "canary": [NEW], "max_failures": 0})["id"]
    fleet.play("upgrade.yml", "-e", f"onedoor_rollout={rollout}", hours=closed)
    fleet.online_on(NEW, TO)
    assert central.get(f"/api/v1/rollouts/{rollout}")["counts"]["upgraded"] == 1
    fleet.play("upgrade.yml", "-e", f"onedoor_rollout={rollout}", hours=closed)
    view = central.get(f"/api/v1/rollouts/{rollout}")
    assert view["status"] == "stopped"
    assert view["stopped_reason"] == (
        f"1个站点失败，超过上限0 1 site(s) failed, more than 0 allowed: {SITE_B} rolled_back")
    assert (view["counts"]["upgraded"], view["counts"]["rolled_back"]) == (1, 1)
    fleet.online_on(SITE_B, FROM)
    town = central.get(f"/api/v1/fleet/versions?town={quote('石岐街道')}")
    versions = {row["site"]: row for row in town["rows"]}
    assert (versions[NEW]["expected_release"], versions[SITE_B]["expected_release"]) == (TO, FROM)
    assert not versions[NEW]["software_drift"]
    assert not versions[SITE_B]["software_drift"]
    page = central.text("/api/v1/fleet/versions")
    assert f"onedoor-{TO}" in page
    run = fleet.play("upgrade.yml", "-e", f"onedoor_rollout={rollout}", hours=closed)
    assert "is stopped: no site to upgrade" in run.output
    for host in (NEW, SITE_B):
        fleet.nothing_lost(host)

    # 3. Rotate both sites' passwords; the daemons restart with the new ones.
    old = {host: deployment.password(host) for host in (NEW, SITE_B)}
    fleet.play("rotate-credentials.yml", "--limit", f"broker:{NEW}:{SITE_B}", hours=closed)
    fleet_broker.reload()
    for site in (new, site_b):
        site.restart()
    for host in (NEW, SITE_B):
        assert deployment.password(host) != old[host]
        assert connect_code(deployment, host, old[host]) >= 0x80
    fleet.online_on(NEW, TO)
    fleet.online_on(SITE_B, FROM)
    for host in (NEW, SITE_B):
        fleet.nothing_lost(host)

    # 4. Retire the new village: its edge stopped first, then the registry, then the broker.
    new.stop()
    wait_for(lambda: not central.site(NEW)["online"], timeout=60)
    retired = central.call("POST", f"/api/v1/sites/{NEW}/retire")
    assert retired["was_online"] is False
    assert in_service(central) == before
    fleet.play("site.yml", "--limit", "broker", hours=closed)
    users = (deployment.root(BROKER) / "etc/mosquitto/onedoor.passwd").read_text()
    assert f"\n{NEW}:" not in users
    assert f"\n{SITE_B}:$7$" in users
    assert central.site(NEW)["retired_at"] is not None  # its history stays

    # The stopped rollout is cancelled (site B stays on the release it runs).
    assert central.call("POST", f"/api/v1/rollouts/{rollout}/cancel")["status"] == "cancelled"

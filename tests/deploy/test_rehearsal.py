"""The ops year, rehearsed on the production deployment (`make rehearsal`, after `make test`).

The production profile deployed with the real playbooks (`tests/deploy/fleet.py`: the TLS
broker, the central on PostgreSQL, villages and the city hall), then, as the README's
walkthrough has ops do it:

1. **Onboard** two new villages from the registry API, deploy them with the dynamic
   inventory (`site.yml --limit broker:<sites>`), start their daemons: with site B, three
   edges run; the central sees them online.
2. **Upgrade** the first of them and site B by a staged rollout (the new village is the
   canary), with site B's release made not to start: site B is rolled back and the
   rollout stops.
3. **Rotate** the three sites' MQTT passwords (`rotate-credentials.yml`): they come back
   online with the new ones; the old ones are refused.
4. **Replace** the first new village's Pi mid-day (its hours pushed open, tickets issued
   and served at its kiosk and window API): its daemon stopped, its journal deleted (a
   fresh SD card), started again; it waits for the central, an operator takes it over by
   the API, and the day goes on: the numbers continue, none repeats, the queue and the
   window are as they were.
5. **Retire** the new villages: they leave the fleet and the broker.

At each step the central's counts are checked, and nothing may be lost: every event a
site journaled is acknowledged by the central (its outbox empty), with no gap.

Not rehearsed here yet: tickets at site B (its hours stay closed for the upgrade); the
sites run without their serial devices (their terminal buses are ptys with nobody on
them).

Set ``ONEDOOR_REHEARSAL=1`` to run it (the Makefile's ``rehearsal`` target does, with
`test_upgrade.py` on the same deployment).
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from collections.abc import Iterator
from datetime import datetime
from functools import partial
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
from tests.edge.sites import http

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
NEW_2 = "zs-shiqi-15"  # onboarded with it: the third running edge, not in the rollout
NEW_2_SPEC = {**NEW_SPEC, "id": NEW_2, "name": "石岐东明村党群服务中心"}
DYNAMIC = "inventory/onedoor_central.py"
STAFF = "zs0231"


class Fleet:
    """The rehearsal's three running sites and how ops run the playbooks on them."""

    def __init__(self, deployment: Deployment, central: CentralServer, sites: list[Site],
                 new_overlay: Path, new_http_port: int) -> None:  # fmt: skip
        self.deployment, self.central = deployment, central
        self.sites = {site.host: site for site in sites}
        self.new_overlay, self.new_http_port = new_overlay, new_http_port
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

    def kiosk(self, method: str, path: str, body: dict[str, Any] | None = None,
              expect: int = 200) -> dict[str, Any]:  # fmt: skip
        """The new village's edge HTTP API (its kiosk, window terminals and status)."""
        code, answer = http(method, f"http://127.0.0.1:{self.new_http_port}{path}", body,
                            timeout=20)  # fmt: skip
        assert code == expect, (method, path, code, answer)
        return answer

    def numbering(self) -> str | None:
        """The new village's numbering state; ``None`` while its daemon does not answer."""
        try:
            return str(self.kiosk("GET", "/status")["numbering"])
        except OSError:
            return None

    def ticket(self, service: str = "zonghe") -> str:
        return str(self.kiosk("POST", "/tickets", {"service": service}, expect=201)["number"])

    def journal(self, host: str) -> Path:
        config = tomllib.loads(self.deployment.site_config(host).read_text("utf-8"))
        return Path(config["paths"]["journal"])

    def issued_at_central(self, host: str) -> list[str]:
        events = self.central.get(f"/api/v1/events?site={host}&type=ticket.issued&limit=1000")
        return [str(e["body"]["ticket"]) for e in events["events"]]

    def active_alarms(self, host: str) -> set[tuple[str, str]]:
        """(type, device) of the site's active alarms."""
        alarms = self.central.get(f"/api/v1/alarms?site={host}")["alarms"]
        return {(a["type"], a["device"]) for a in alarms}

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
    ptys = {host: os.openpty() for host in (NEW, NEW_2)}
    # The new villages as this machine runs them: no printer, screens or GPIO; a terminal
    # bus on a pty each; their HTTP APIs on free ports (the first one's window API on).
    overlay = deployment.workdir / "new-site.yml"
    http_ports = {host: free_port() for host in (NEW, NEW_2)}
    overlay.write_text(yaml.safe_dump({"all": {"hosts": {host: {
        "edge_printer": {}, "edge_gpio": {}, "edge_serial_devices": [],
        "edge_terminals": {"kind": "vendor", "port": os.ttyname(ptys[host][1]), "baud": 9600},
        "edge_audio": {"output": "wav", "wav_dir": str(deployment.workdir / "announcements")},
        "edge_http": {"host": "127.0.0.1", "port": http_ports[host], "window_api": True},
    } for host in (NEW, NEW_2)}}}, allow_unicode=True))  # fmt: skip
    sites = [Site(deployment, host, releases) for host in (NEW, SITE_B, NEW_2)]
    try:
        yield Fleet(deployment, central_server, sites, overlay, http_ports[NEW])
    finally:
        for site in sites:
            site.stop()
        for controller, device in ptys.values():
            os.close(controller)
            os.close(device)


@pytest.mark.timeout(1200)
def test_an_ops_year(fleet: Fleet, deployment: Deployment, central_server: CentralServer,
                     fleet_broker: FleetBroker) -> None:  # fmt: skip
    central = central_server
    before = in_service(central)
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    closed = hours_around(now, open_now=False)
    new, site_b, new_2 = fleet.sites[NEW], fleet.sites[SITE_B], fleet.sites[NEW_2]
    running = (NEW, SITE_B, NEW_2)

    # 1. Onboard: registry API, then the README's `site.yml --limit broker:<site>`.
    for spec in (NEW_SPEC, NEW_2_SPEC):
        central.call("POST", "/api/v1/sites", spec)
    fleet.play("site.yml", "--limit", f"broker:{NEW}:{NEW_2}", hours=closed)
    fleet_broker.reload()  # the broker role's handler, where systemd runs it
    fleet.play("edge-config.yml", "--limit", SITE_B, "-e", "edge_config_version=ops-1",
               hours=closed)  # fmt: skip
    for site in (new, site_b, new_2):
        site.restart()
    for host in running:
        fleet.online_on(host, FROM)
    assert in_service(central) == before | {NEW, NEW_2}
    assert set(running) <= online(central)
    for host in running:
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
    for host in running:
        fleet.nothing_lost(host)
    assert central.site(NEW_2)["software_version"] == f"onedoor-{FROM}"  # not in the rollout

    # 3. Rotate the three sites' passwords; the daemons restart with the new ones.
    old = {host: deployment.password(host) for host in running}
    fleet.play("rotate-credentials.yml", "--limit", ":".join(("broker", *running)),
               hours=closed)  # fmt: skip
    fleet_broker.reload()
    for site in (new, site_b, new_2):
        site.restart()
    for host in running:
        assert deployment.password(host) != old[host]
        assert connect_code(deployment, host, old[host]) >= 0x80
    fleet.online_on(NEW, TO)
    fleet.online_on(SITE_B, FROM)
    fleet.online_on(NEW_2, FROM)
    for host in running:
        fleet.nothing_lost(host)

    # 4. Mid-day at the new village: its hours pushed open, tickets issued and served.
    fleet.play("edge-config.yml", "--limit", NEW, hours=hours_around(now, open_now=True))
    new.restart()
    fleet.online_on(NEW, TO)
    wait_for(lambda: fleet.numbering() == "granted", timeout=60)
    first = [fleet.ticket() for _ in range(3)]
    prefix = first[0][0]
    first_numbers = [int(number[1:]) for number in first]
    assert first_numbers == list(range(first_numbers[0], first_numbers[0] + 3)), first
    fleet.kiosk("POST", "/windows/1/sign_in", {"staff": STAFF})
    assert fleet.kiosk("POST", "/windows/1/next")["ticket"] == first[0]
    fleet.nothing_lost(NEW)
    assert sorted(fleet.issued_at_central(NEW)) == sorted(first)

    # Its Pi replaced (the README's walkthrough): a fresh journal, the same config and
    # credentials; it waits for the central's grant, an operator takes it over.
    old_device = fleet.kiosk("GET", "/status")["device"]
    pid = int(new.pidfile.read_text())
    new.stop()
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=60)
    wait_for(lambda: not central.site(NEW)["online"], timeout=60)
    journal = fleet.journal(NEW)
    for part in journal.parent.glob(journal.name + "*"):  # the database, its WAL and shm
        part.unlink()
    new.restart()
    wait_for(lambda: fleet.numbering() == "waiting", timeout=60)
    shown = fleet.status(NEW)  # `onedoor edge status --json`, as the README has ops look
    assert shown["numbering"] == "waiting"
    device = shown["device"]
    assert device != old_device
    refused = fleet.kiosk("POST", "/tickets", {"service": "zonghe"}, expect=503)
    assert refused["error"] == "not_granted"
    wait_for(lambda: central.site(NEW)["online"], timeout=60)
    wait_for(lambda: ("takeover_pending", device) in fleet.active_alarms(NEW), timeout=60)
    devices = {d["device"]: d["role"]
               for d in central.get(f"/api/v1/sites/{NEW}/devices")["devices"]}
    assert (devices[old_device], devices[device]) == ("holder", "waiting")
    central.call("POST", f"/api/v1/sites/{NEW}/takeover", {"device": device, "skip": 0},
                 token=central.operator_token)
    wait_for(lambda: fleet.numbering() == "granted", timeout=60)
    status = fleet.kiosk("GET", "/status")
    assert status["windows"][0]["ticket"] == first[0]
    assert next(q["waiting"] for q in status["queues"] if q["service"] == "zonghe") == 2
    later = [fleet.ticket() for _ in range(2)]
    assert later == [f"{prefix}{n:03d}" for n in (first_numbers[-1] + 1, first_numbers[-1] + 2)]
    assert fleet.kiosk("POST", "/windows/1/next")["ticket"] == first[1]
    fleet.nothing_lost(NEW)
    issued = fleet.issued_at_central(NEW)
    assert sorted(issued) == sorted(first + later)  # each once: none lost, none repeated
    devices = {d["device"]: d["role"]
               for d in central.get(f"/api/v1/sites/{NEW}/devices")["devices"]}
    assert (devices[old_device], devices[device]) == ("replaced", "holder")
    alarms = fleet.active_alarms(NEW)
    assert not {kind for kind, _ in alarms} & {"site_offline", "takeover_pending"}, alarms
    assert ("device_fault", "journal") not in alarms  # no seq 'reused', no journal lost
    assert not central.get(f"/api/v1/events?site={NEW}&type=journal.lost")["events"]

    # 5. Retire the new villages: edges stopped first, then the registry, then the broker.
    for host in (NEW, NEW_2):
        fleet.sites[host].stop()
        wait_for(partial(lambda site: not central.site(site)["online"], host), timeout=60)
        retired = central.call("POST", f"/api/v1/sites/{host}/retire")
        assert retired["was_online"] is False
    assert in_service(central) == before
    fleet.play("site.yml", "--limit", "broker", hours=closed)
    users = (deployment.root(BROKER) / "etc/mosquitto/onedoor.passwd").read_text()
    assert f"\n{NEW}:" not in users
    assert f"\n{NEW_2}:" not in users
    assert f"\n{SITE_B}:$7$" in users
    for host in (NEW, NEW_2):
        assert central.site(host)["retired_at"] is not None  # its history stays

    # The stopped rollout is cancelled (site B stays on the release it runs).
    assert central.call("POST", f"/api/v1/rollouts/{rollout}/cancel")["status"] == "cancelled"

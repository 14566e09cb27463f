"""The ops year, rehearsed on the production deployment (`make rehearsal`, after `make test`).

The production profile deployed with the real playbooks (`tests/deploy/fleet.py`: the TLS
broker, the central on PostgreSQL, villages and the city hall), then, as the README's
walkthrough has ops do it. Every running edge has its devices simulated at the village's
shipped settings (`fleet.village_devices`: the ESC/POS printer at 19200 8N1 and the vendor
window keypads at 9600 8N1 on line-timed pty pairs; the config's `lgpio` GPIO on gpiozero's
mock pins; audio written as WAV files, there is no sound card): the playbooks render the
config, the inventory overlay only moves the device ports to the ptys.

1. **Onboard** two new villages from the registry API, deploy them with the dynamic
   inventory (`site.yml --limit broker:<sites>`), start their daemons: with site B, three
   edges run; the central sees them online. A day at every site: tickets at the kiosk
   (printed, read back from the printer), called and finished on window 1's keypad (its
   LED shows the number), the first rated on the pad.
2. **Upgrade** (hours pushed closed) the first new village and site B by a staged rollout
   (the new village is the canary), with site B's release made not to start: site B is
   rolled back and the rollout stops.
3. **Rotate** the three sites' MQTT passwords (`rotate-credentials.yml`): they come back
   online with the new ones; the old ones are refused.
4. **Mid-day** (hours pushed open): another day's tickets at site B and the third village,
   their numbers continuing. The first new village's Pi is **replaced**: tickets issued and
   called, its daemon stopped, its journal deleted (a fresh SD card), started again; it
   waits for the central, an operator takes it over on the site page (in Chromium), and
   the day goes on: the numbers continue, none repeats, the queue and the window are as
   they were, the keypad and the printer work with the new device.
5. **Retire** the new villages: they leave the fleet and the broker.

After each step, nothing may be lost: every event a site journaled is acknowledged by the
central (its outbox empty, no gap), and every ticket issued is at the central exactly once.
And the central's pages are read as a town manager reads them, logged in with an account
(`tests/deploy/dashboards.py`): the fleet page's tiles (healthy, in alarm, no version
drift), the site pages (the alarms, the edge devices, the day's counts of tickets issued,
served and rated) and the versions page (each site's release, the rollout stopped).

The city hall (LED window bars, hall screen, Modbus terminals) is deployed but its daemon
does not run here: the hall devices run against their simulators in `tests/edge`.

Set ``ONEDOOR_REHEARSAL=1`` to run it (the Makefile's ``rehearsal`` target does, with
`test_upgrade.py` on the same deployment).
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import yaml

from edge.clock import kernel_clock_synced
from edge.simhall import SimulatedDevices
from firmware_protocols.simulators.printer import VirtualPrinter
from firmware_protocols.simulators.vendor_bank import VendorTerminalBank
from firmware_protocols.terminal_events import Key
from tests.deploy.dashboards import Dashboards, DayCounts, chromium_page, create_account
from tests.deploy.fleet import (
    BROKER,
    CENTRAL,
    SITE_B,
    VILLAGE,
    CentralServer,
    Deployment,
    FleetBroker,
    Run,
    connect_code,
    village_devices,
    village_host,
    village_overlay,
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
TOWN = "石岐街道"
NEW_SPEC = {
    "id": NEW, "name": "石岐新港村党群服务中心", "town": TOWN, "kind": "village",
    "services": [{"code": "zonghe", "name": "综合受理（一窗通办）", "prefix": "Z", "sla_s": 1800},
                 {"code": "shebao", "name": "社会保障", "prefix": "B", "sla_s": 1800},
                 {"code": "minzheng", "name": "民政救助", "prefix": "D", "sla_s": 2400}],
    "windows": [{"number": 1, "services": ["zonghe", "shebao", "minzheng"]},
                {"number": 2, "services": ["zonghe"]}],
}  # fmt: skip
NEW_2 = "zs-shiqi-15"  # onboarded with it: the third running edge, not in the rollout
NEW_2_SPEC = {**NEW_SPEC, "id": NEW_2, "name": "石岐东明村党群服务中心"}
DYNAMIC = "inventory/onedoor_central.py"
WINDOW = 1  # the window the rehearsal serves at; its keypad is terminal 1 on the bus
STAFF = "0231"  # typed on the keypad, then 签到
STAFF_KEYS = (Key.DIGIT_0, Key.DIGIT_2, Key.DIGIT_3, Key.DIGIT_1, Key.SIGN_IN)
# A test machine's clock is not always NTP-synchronised: every edge then says so in its
# telemetry (the clock_not_synced warning), and a healthy site's tile and page show that
# warning once the site's first telemetry is in.
CLOCK_WARNING = None if kernel_clock_synced() else "时钟未同步"
HEALTHY = frozenset({"ok"} if CLOCK_WARNING is None else {"ok", "warn"})
ALARM = frozenset({"alarm"})
# People with accounts on the central: a town manager reading the pages, an operator.
MANAGER, OPERATOR, PASSWORD = "li.ming", "chen.jing", "Ops-year-rehearsal-2026"


class Fleet:
    """The rehearsal's three running sites, their simulated devices, and how ops run the
    playbooks on them."""

    def __init__(self, deployment: Deployment, central: CentralServer, sites: list[Site],
                 devices: dict[str, SimulatedDevices], new_overlay: Path) -> None:  # fmt: skip
        self.deployment, self.central = deployment, central
        self.sites = {site.host: site for site in sites}
        self.devices = devices
        self.new_overlay = new_overlay
        self.env = {"ONEDOOR_CENTRAL_URL": central.url,
                    "ONEDOOR_CENTRAL_TOKEN": central.operator_token,
                    "ONEDOOR_BROKER_HOSTS": BROKER, "ONEDOOR_CENTRAL_HOSTS": CENTRAL}
        # What the rehearsal did at each site: every number issued (in order), and the
        # local day of each ticket issued, served and rated, as the central's site page
        # counts them (its calendar day: a rehearsal across midnight compares the new day's).
        self.issued: dict[str, list[str]] = {host: [] for host in devices}
        self.http_ports: dict[str, int] = {}
        self.days: dict[str, dict[str, list[date]]] = {
            host: {"issued": [], "served": [], "rated": []} for host in devices}

    def play(self, playbook: str, *args: str, hours: dict[str, str] | None = None) -> Run:
        """With the dynamic inventory, as the README has ops run it."""
        inventory = (DYNAMIC, str(self.new_overlay),
                     str(sites_inventory(self.deployment, list(self.sites.values()))))
        run = self.deployment.play(playbook, *args, inventory=inventory, env=self.env,
                                   vars_file=upgrade_vars(self.deployment, self.central, hours))
        assert run.returncode == 0, run.output[-6000:]
        return run

    def config(self, host: str) -> dict[str, Any]:
        """The site's config as the playbooks rendered it."""
        return tomllib.loads(self.deployment.site_config(host).read_text("utf-8"))

    def status(self, host: str) -> dict[str, Any]:
        site = self.sites[host]
        shown = subprocess.run([str(site.venv / "bin" / "onedoor"), "edge", "status", "--config",
                                str(self.deployment.site_config(host)), "--json"],
                               capture_output=True, text=True, timeout=30, check=True)
        data: dict[str, Any] = json.loads(shown.stdout)
        return data

    def nothing_lost(self, host: str) -> None:
        """Every event the site journaled is acknowledged by the central, with no gap, and
        every ticket issued there is at the central exactly once."""
        def settled() -> bool:
            uplink = self.status(host).get("uplink") or {}
            site = self.central.site(host)
            return (uplink.get("connected") is True and uplink.get("outbox_depth") == 0
                    and site["acked_seq"] == site["max_seq"] > 0)  # fmt: skip
        wait_for(settled, timeout=60)
        issued = self.issued_at_central(host)
        assert sorted(issued) == sorted(self.issued[host]), (host, issued, self.issued[host])
        assert len(set(issued)) == len(issued), f"{host}: a number issued twice: {issued}"

    def edge(self, host: str, method: str, path: str, body: dict[str, Any] | None = None,
             expect: int = 200) -> dict[str, Any]:  # fmt: skip
        """The site's edge HTTP API (its kiosks and status)."""
        if host not in self.http_ports:  # fixed by the overlay: read once
            self.http_ports[host] = self.config(host)["http"]["port"]
        port = self.http_ports[host]
        code, answer = http(method, f"http://127.0.0.1:{port}{path}", body, timeout=20)
        assert code == expect, (host, method, path, code, answer)
        return answer

    def numbering(self, host: str) -> str | None:
        """The site's numbering state; ``None`` while its daemon does not answer."""
        try:
            return str(self.edge(host, "GET", "/status")["numbering"])
        except OSError:
            return None

    def window(self, host: str) -> dict[str, Any]:
        window: dict[str, Any] = self.edge(host, "GET", "/status")["windows"][WINDOW - 1]
        return window

    def printer(self, host: str) -> VirtualPrinter:
        printer = self.devices[host].printer
        assert printer is not None
        return printer

    def keypads(self, host: str) -> VendorTerminalBank:
        bank = self.devices[host].terminals
        assert isinstance(bank, VendorTerminalBank)
        return bank

    def ticket(self, host: str, service: str = "zonghe") -> str:
        """A ticket at the kiosk, printed: the printer decodes it (GB18030) with its number."""
        printer = self.printer(host)
        before = len(printer.tickets)
        answer = self.edge(host, "POST", "/tickets", {"service": service, "print": True},
                           expect=201)  # fmt: skip
        number = str(answer["number"])
        assert answer["printed"] is True, answer
        printed = printer.wait_for_tickets(before + 1, timeout=30)[before]
        lines = printed.text_lines
        assert number in "\n".join(lines), (number, lines)
        assert self.config(host)["site"]["name"] in lines, lines  # Chinese, decoded as printed
        self.issued[host].append(number)
        self.days[host]["issued"].append(_local_day())
        return number

    def press(self, host: str, *keys: Key) -> None:
        for key in keys:
            assert self.keypads(host).press(WINDOW, key) is not None

    def sign_in(self, host: str) -> None:
        if self.window(host)["staff"] != STAFF:
            self.press(host, *STAFF_KEYS)
            wait_for(lambda: self.window(host)["staff"] == STAFF, timeout=30)

    def call(self, host: str, number: str) -> None:
        """下一位 on the window's keypad: ``number`` is called, the terminal's LED shows it,
        the call is announced (a WAV file)."""
        self.press(host, Key.NEXT)
        wait_for(lambda: self.window(host)["ticket"] == number, timeout=30)
        keypads = self.keypads(host)
        wait_for(lambda: keypads.led_text(WINDOW) == number, timeout=30)
        spoken = Path(self.config(host)["devices"]["audio"]["wav_dir"])
        wait_for(lambda: any(spoken.glob(f"*-{number}-w{WINDOW}.wav")), timeout=30)

    def finish(self, host: str, rating: int | None = None) -> None:
        """办结 on the keypad; the citizen rates on the pad when ``rating`` is given."""
        self.press(host, Key.FINISH)
        wait_for(lambda: self.window(host)["ticket"] is None, timeout=30)
        self.days[host]["served"].append(_local_day())
        if rating is not None:
            keypads = self.keypads(host)
            wait_for(lambda: keypads.rating_requested(WINDOW), timeout=30)
            keypads.rate(WINDOW, rating)
            self.days[host]["rated"].append(_local_day())
            expected = len(self.days[host]["rated"])
            wait_for(lambda: self.edge(host, "GET", "/status")["ratings"] == expected,
                     timeout=30)  # fmt: skip

    def a_day(self, host: str, tickets: int = 2) -> list[str]:
        """Tickets at the kiosk, each called and finished at the window, the first rated;
        the numbers go on from the site's last one."""
        wait_for(lambda: self.numbering(host) == "granted", timeout=60)
        self.sign_in(host)
        before = list(self.issued[host])
        numbers = [self.ticket(host) for _ in range(tickets)]
        if before:
            assert _serial(numbers[0]) == _serial(before[-1]) + 1, (before, numbers)
        for index, number in enumerate(numbers):
            self.call(host, number)
            self.finish(host, rating=5 if index == 0 else None)
        return numbers

    def day_counts(self, host: str) -> DayCounts:
        """What the site page's charts should count: the tickets of the local day."""
        today = _local_day()
        days = self.days[host]
        return DayCounts(*(days[kind].count(today) for kind in ("issued", "served", "rated")))

    def journal(self, host: str) -> Path:
        return Path(self.config(host)["paths"]["journal"])

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

    def shipped_devices(self, host: str) -> None:
        """The rendered config has the village's shipped devices, only their ports on the
        simulators' ptys (the simulators run at those settings)."""
        devices = self.config(host)["devices"]
        expected = village_overlay(self.devices[host])
        assert devices["printer"] == expected["edge_printer"], devices["printer"]
        assert devices["terminals"] == expected["edge_terminals"], devices["terminals"]
        assert devices["gpio"] == VILLAGE["edge_gpio"], devices["gpio"]  # lgpio, as shipped
        terminals = {w["terminal"] for w in self.config(host)["windows"]}
        assert terminals <= set(self.keypads(host).addresses), terminals


def _local_day() -> date:
    """The halls' calendar day (Asia/Shanghai), the day the central's pages show."""
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


def _serial(number: str) -> int:
    """The serial of a ticket number: Z007 -> 7."""
    return int(number.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def at_each(hosts: Iterable[str], action: Callable[[str], object]) -> None:
    """``action`` at each site at the same time, as the sites live (the first failure
    raised)."""
    with ThreadPoolExecutor() as pool:
        list(pool.map(action, hosts))


def in_service(central: CentralServer) -> set[str]:
    return {s["id"] for s in central.get("/api/v1/sites")["sites"]}


def online(central: CentralServer) -> set[str]:
    return {s["id"] for s in central.get("/api/v1/sites")["sites"] if s["online"]}


def tiles_show(pages: Dashboards, expected: dict[str, frozenset[str]]) -> None:
    """The fleet page (the town's tiles) shows each site in one of its ``expected`` healths,
    with no version drift."""
    def shown() -> bool:
        tiles = pages.tiles(TOWN)
        return all(host in tiles and tiles[host].health in healths
                   for host, healths in expected.items())
    wait_for(shown, timeout=60)
    tiles = pages.tiles(TOWN)
    assert not [host for host in expected if tiles[host].drift], tiles


def site_page_shows(pages: Dashboards, fleet: Fleet, host: str, software: str) -> None:
    """The site page: healthy (no alarm but this machine's clock), the release it runs,
    the window's staff, the day's counts."""
    def badge() -> set[str]:
        live = pages.site(host).by_id("site-live")
        return next(e for e in live.descendants() if "badge" in e.classes).classes
    wait_for(lambda: bool(badge() & HEALTHY), timeout=60)
    page = pages.site(host)
    live = page.by_id("site-live")
    alarms = [item.text for alarm_list in page.by_class("site-alarms", "ul")
              for item in alarm_list.children]
    assert all(CLOCK_WARNING is not None and item.startswith(CLOCK_WARNING)
               for item in alarms), alarms  # fmt: skip
    assert f"onedoor-{software}" in live.text
    assert STAFF in page.by_id("windows").text
    wait_for(lambda: pages.day_counts(host) == fleet.day_counts(host), timeout=30)


def a_checked_day(fleet: Fleet, pages: Dashboards, software: str, host: str) -> None:
    """A day at the site (:meth:`Fleet.a_day`), nothing lost, and its page showing it."""
    fleet.a_day(host)
    fleet.nothing_lost(host)
    site_page_shows(pages, fleet, host, software)


@pytest.fixture
def fleet(deployment: Deployment, central_server: CentralServer, fleet_broker: FleetBroker,
          site_b_devices: SimulatedDevices) -> Iterator[Fleet]:  # fmt: skip
    releases = deployment.workdir / "releases"
    for version in (FROM, TO):
        central_server.call("POST", "/api/v1/releases", build_release(version, releases))
    with ExitStack() as stack:
        devices = {host: stack.enter_context(village_devices()) for host in (NEW, NEW_2)}
        # The new villages as this machine runs them: the shipped devices on the simulators'
        # ptys, audio as WAV files, their HTTP APIs on free ports.
        overlay = deployment.workdir / "new-site.yml"
        overlay.write_text(yaml.safe_dump({"all": {"hosts": {
            host: village_host(devices[host], deployment.workdir, host)
            for host in (NEW, NEW_2)}}}, allow_unicode=True))
        sites = [Site(deployment, host, releases) for host in (NEW, SITE_B, NEW_2)]
        try:
            yield Fleet(deployment, central_server, sites, {**devices, SITE_B: site_b_devices},
                        overlay)  # fmt: skip
        finally:
            for site in sites:
                site.stop()


@pytest.mark.timeout(1200)
def test_an_ops_year(fleet: Fleet, deployment: Deployment, central_server: CentralServer,
                     fleet_broker: FleetBroker) -> None:  # fmt: skip
    central = central_server
    before = in_service(central)
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    opened, closed = hours_around(now, open_now=True), hours_around(now, open_now=False)
    new, site_b, new_2 = fleet.sites[NEW], fleet.sites[SITE_B], fleet.sites[NEW_2]
    running = (NEW, SITE_B, NEW_2)
    create_account(deployment, MANAGER, "李明", "viewer", PASSWORD)
    create_account(deployment, OPERATOR, "陈静", "operator", PASSWORD)
    pages = Dashboards(central, MANAGER, PASSWORD)

    # 1. Onboard: registry API, then the README's `site.yml --limit broker:<site>`; open.
    for spec in (NEW_SPEC, NEW_2_SPEC):
        central.call("POST", "/api/v1/sites", spec)
    fleet.play("site.yml", "--limit", f"broker:{NEW}:{NEW_2}", hours=opened)
    fleet_broker.reload()  # the broker role's handler, where systemd runs it
    fleet.play("edge-config.yml", "--limit", SITE_B, "-e", "edge_config_version=ops-1",
               hours=opened)  # fmt: skip
    for site in (new, site_b, new_2):
        site.restart()
    for host in running:
        fleet.shipped_devices(host)
        fleet.online_on(host, FROM)
    assert in_service(central) == before | {NEW, NEW_2}
    assert set(running) <= online(central)
    at_each(running, partial(a_checked_day, fleet, pages, FROM))  # every site at once
    tiles_show(pages, dict.fromkeys(running, HEALTHY))

    # 2. Upgrade, closed: the new village is the canary, then site B, whose release does
    # not start.
    fleet.play("edge-config.yml", "--limit", ":".join(running), hours=closed)
    for site in (new, site_b, new_2):
        site.restart()
    site_b.fault.write_text(TO)
    rollout = central.call("POST", "/api/v1/rollouts", {
        "release": TO, "sites": [NEW, SITE_B], "canary": [NEW], "max_failures": 0})["id"]
    fleet.play("upgrade.yml", "-e", f"onedoor_rollout={rollout}", hours=closed)
    fleet.online_on(NEW, TO)
    assert central.get(f"/api/v1/rollouts/{rollout}")["counts"]["upgraded"] == 1
    fleet.play("upgrade.yml", "-e", f"onedoor_rollout={rollout}", hours=closed)
    view = central.get(f"/api/v1/rollouts/{rollout}")
    assert view["status"] == "stopped"
    reason = f"1个站点失败，超过上限0 1 site(s) failed, more than 0 allowed: {SITE_B} rolled_back"
    assert view["stopped_reason"] == reason
    assert (view["counts"]["upgraded"], view["counts"]["rolled_back"]) == (1, 1)
    fleet.online_on(SITE_B, FROM)
    town = central.get(f"/api/v1/fleet/versions?town={quote(TOWN)}")
    versions = {row["site"]: row for row in town["rows"]}
    assert (versions[NEW]["expected_release"], versions[SITE_B]["expected_release"]) == (TO, FROM)
    assert not versions[NEW]["software_drift"]
    assert not versions[SITE_B]["software_drift"]
    run = fleet.play("upgrade.yml", "-e", f"onedoor_rollout={rollout}", hours=closed)
    assert "is stopped: no site to upgrade" in run.output
    at_each(running, fleet.nothing_lost)
    assert central.site(NEW_2)["software_version"] == f"onedoor-{FROM}"  # not in the rollout
    # The versions page, as the manager sees it: the rollout stopped, who runs what.
    page = pages.page(f"/versions?town={quote(TOWN)}")
    section = page.by_id(f"rollout-{rollout}")
    assert "stopped" in page.by_class("rollout-status")[0].classes
    assert reason in section.text
    for host, software, step in ((NEW, TO, "upgraded"), (SITE_B, FROM, "rolled_back"),
                                 (NEW_2, FROM, None)):  # fmt: skip
        row = page.by_id(f"v-{host}")
        cells = [e for e in row.children if e.tag == "td"]
        assert cells[2].text == "在线"
        assert cells[3].text == f"onedoor-{software}"
        assert "drift" not in cells[3].classes
        assert (cells[6].text != "—") == (step is not None), cells[6].text
    tiles_show(pages, dict.fromkeys(running, HEALTHY))

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
    at_each(running, fleet.nothing_lost)
    tiles_show(pages, dict.fromkeys(running, HEALTHY))

    # 4. Mid-day: the hours pushed open; another day at site B and the third village.
    fleet.play("edge-config.yml", "--limit", ":".join(running), hours=opened)
    for site in (new, site_b, new_2):
        site.restart()
    fleet.online_on(NEW, TO)
    for host in (SITE_B, NEW_2):
        fleet.online_on(host, FROM)
    at_each((SITE_B, NEW_2), partial(a_checked_day, fleet, pages, FROM))

    # At the new village: tickets issued, the first called at the window.
    wait_for(lambda: fleet.numbering(NEW) == "granted", timeout=60)
    fleet.sign_in(NEW)
    first = [fleet.ticket(NEW) for _ in range(3)]
    prefix = first[0][0]
    assert [_serial(n) for n in first] == [_serial(fleet.issued[NEW][0]) + 2 + n
                                           for n in range(3)], fleet.issued[NEW]  # fmt: skip
    fleet.call(NEW, first[0])
    fleet.nothing_lost(NEW)

    # Its Pi replaced (the README's walkthrough): a fresh journal, the same config and
    # credentials; it waits for the central's grant, an operator takes it over.
    old_device = fleet.edge(NEW, "GET", "/status")["device"]
    pid = int(new.pidfile.read_text())
    new.stop()
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=60)
    wait_for(lambda: not central.site(NEW)["online"], timeout=60)
    journal = fleet.journal(NEW)
    for part in journal.parent.glob(journal.name + "*"):  # the database, its WAL and shm
        part.unlink()
    new.restart()
    wait_for(lambda: fleet.numbering(NEW) == "waiting", timeout=60)
    shown = fleet.status(NEW)  # `onedoor edge status --json`, as the README has ops look
    assert shown["numbering"] == "waiting"
    device = shown["device"]
    assert device != old_device
    refused = fleet.edge(NEW, "POST", "/tickets", {"service": "zonghe"}, expect=503)
    assert refused["error"] == "not_granted"
    wait_for(lambda: central.site(NEW)["online"], timeout=60)
    wait_for(lambda: ("takeover_pending", device) in fleet.active_alarms(NEW), timeout=60)
    devices = {d["device"]: d["role"]
               for d in central.get(f"/api/v1/sites/{NEW}/devices")["devices"]}
    assert (devices[old_device], devices[device]) == ("holder", "waiting")
    # The manager sees it: the tile in alarm, the alarm and the waiting device on its page.
    tiles_show(pages, {NEW: ALARM, SITE_B: HEALTHY, NEW_2: HEALTHY})
    page = pages.site(NEW)
    assert "新设备等待接管确认" in page.by_id("site-live").text
    [waiting] = page.by_class("role-waiting", "tr")
    assert waiting.attrs["data-device"] == device
    # The operator takes it over on the site page, in Chromium.
    with chromium_page(central, OPERATOR, PASSWORD) as browser:
        browser.goto(f"{central.url}/sites/{NEW}")
        browser.click(f'form.takeover[data-device="{device}"] button[type=submit]')
        browser.wait_for_selector(f'tr.role-holder[data-device="{device}"]')
        assert browser.locator("#takeover-error").inner_text() == ""
    wait_for(lambda: fleet.numbering(NEW) == "granted", timeout=60)
    status = fleet.edge(NEW, "GET", "/status")
    assert status["windows"][WINDOW - 1]["ticket"] == first[0]
    assert next(q["waiting"] for q in status["queues"] if q["service"] == "zonghe") == 2
    later = [fleet.ticket(NEW) for _ in range(2)]  # printed by the same printer
    assert later == [f"{prefix}{n:03d}" for n in (_serial(first[-1]) + 1, _serial(first[-1]) + 2)]
    fleet.call(NEW, first[1])  # the keypad, now driven by the new device
    fleet.nothing_lost(NEW)  # each once: none lost, none repeated
    devices = {d["device"]: d["role"]
               for d in central.get(f"/api/v1/sites/{NEW}/devices")["devices"]}
    assert (devices[old_device], devices[device]) == ("replaced", "holder")
    alarms = fleet.active_alarms(NEW)
    assert not {kind for kind, _ in alarms} & {"site_offline", "takeover_pending"}, alarms
    assert ("device_fault", "journal") not in alarms  # no seq 'reused', no journal lost
    assert not central.get(f"/api/v1/events?site={NEW}&type=journal.lost")["events"]
    tiles_show(pages, dict.fromkeys(running, HEALTHY))
    assert pages.day_counts(NEW).issued == fleet.day_counts(NEW).issued

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
        assert sorted(fleet.issued_at_central(host)) == sorted(fleet.issued[host])
        assert pages.site(host).has_id("retired")
    tiles = pages.tiles(TOWN)
    assert NEW not in tiles
    assert NEW_2 not in tiles
    assert tiles[SITE_B].health in HEALTHY

    # The stopped rollout is cancelled (site B stays on the release it runs).
    assert central.call("POST", f"/api/v1/rollouts/{rollout}/cancel")["status"] == "cancelled"

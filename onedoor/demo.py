"""``onedoor demo``: a living city fleet on one machine, with nothing installed beforehand.

What runs (all real parts, on loopback):

* an MQTT broker: Mosquitto when it is installed, else amqtt in-process
  (:mod:`onedoor.broker`);
* the central service (``onedoor central run``) on SQLite with the embedded
  telemetry store, the sample registry of the city loaded;
* N sites (default: the city hall, a district hall and 21 village stations
  from the registry; ``--villages 277`` for the whole city), each a real edge
  daemon driving simulated devices over ptys, with simulated citizens and
  staff (:mod:`onedoor.demo_site`), on a clock ``--speed`` times faster;
* between each site and the broker, a TCP proxy standing for the site's
  uplink, so that an uplink can be cut and restored;
* scripted incidents, so that every dashboard feature shows something within
  minutes: a printer out of paper, a village losing its uplink and catching
  up, an unanswered 呼叫帮办, a window running overtime.

It prints the dashboard URL and a viewer token, the progress page of a fresh
ticket (what its QR code opens on a citizen's phone), then a line per notable
thing (site offline/online, alarm raised/cleared). Ctrl-C stops everything and
leaves no process or pty behind. ``--headless --duration 120 --report out/``
runs without a browser and writes ``summary.json`` plus pictures of printed
tickets and hall screens; ``events_lost`` (neither at the central nor in a
site's journal) must be 0, and so should ``events_pending`` (kept in a journal,
not yet committed when the demo stopped).

``onedoor demo --walk-through`` instead prints the dispatcher deciding in one
small hall (:mod:`onedoor.walkthrough`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.cookiejar
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from onedoor.broker import free_port, start_demo_broker, wait_for_port
from onedoor.demo_site import ServiceSpec, SiteSpec

log = structlog.get_logger(__name__)

SERVICE_EN = {
    "zonghe": "Comprehensive", "huji": "Household registration", "shebao": "Social insurance",
    "yibao": "Medical insurance", "minzheng": "Civil affairs", "budongchan": "Real estate",
    "shangshi": "Business registration", "gongjijin": "Housing fund", "shuiwu": "Tax",
    "churujing": "Exit and entry", "chejiaguan": "Vehicles and drivers",
}
# (citizens per hour, staffed windows (0 = all), mean service minutes) by kind of site.
LOAD = {"city_hall": (300.0, 40, 6.0), "district": (150.0, 16, 5.0), "village": (12.0, 0, 8.0)}
DISTRICT_ID = "zs-xiqu"  # a 30-window street centre, close to the 33-window example hall
# More villages than this make "a whole city" on one machine: ten sites share a process,
# villages poll their window keypads every CITY_TERMINAL_POLL_MS instead of the shipped
# 100 ms (a key press shows up to half a second later), and the simulated printers,
# keypads and screens, on a machine kept busy, get CITY_REPLY_TIMEOUT_MS to answer. So
# 277 sites fit a laptop's cores; docs/bench/demo.md has the figures.
CITY_VILLAGES = 40
CITY_TERMINAL_POLL_MS = 500
CITY_REPLY_TIMEOUT_MS = 1000
QUIET_SETTLE_S = 2.0  # after the people stop, for a latched key press still to be polled


def whole_city(villages: int) -> bool:
    """Run as a whole city: sites share processes, village keypads are polled less."""
    return villages > CITY_VILLAGES


class DemoError(RuntimeError):
    """The demo could not start (a part failed); the message says which."""


# --------------------------------------------------------------------------- the fleet plan


def plan_sites(villages: int, halls: bool, broker_host: str, workdir: Path,
               speed: float) -> list[SiteSpec]:
    """Sites from the central's sample registry, so that the dashboards know them."""
    from central.seed import read_services, read_sites

    services = read_services()
    rows = read_sites()
    chosen = [r for r in rows if r.kind.value == "village"][:villages]
    if halls:
        chosen = [r for r in rows if r.kind.value == "city_hall"][:1] + [
            r for r in rows if r.id == DISTRICT_ID] + chosen
    specs = []
    for seed, row in enumerate(chosen, 1):
        kind = row.kind.value
        per_hour, staffed, service_minutes = LOAD[kind]
        offered = [s for s in services if row.kind in s.kinds]
        specs.append(SiteSpec(
            site_id=row.id, name=row.name, town=row.town, kind=kind, windows=row.windows,
            services=[ServiceSpec(s.code, s.prefix, s.name, SERVICE_EN.get(s.code, s.code),
                                  sla_minutes=s.sla_s // 60, overtime_minutes=20,
                                  mean_service_minutes=service_minutes) for s in offered],
            citizens_per_hour=per_hour, staff_windows=staffed, mqtt_host=broker_host,
            mqtt_port=0, workdir=str(workdir / "sites" / row.id), speed=speed, seed=seed,
        ))
        if whole_city(villages):
            specs[-1].device_timeout_ms = CITY_REPLY_TIMEOUT_MS
            if kind == "village":
                specs[-1].terminal_poll_ms = CITY_TERMINAL_POLL_MS
    return specs


# --------------------------------------------------------------------------- uplinks


class UplinkProxy:
    """A TCP proxy standing for one site's uplink to the broker; ``cut()`` drops it."""

    def __init__(self, site_id: str, broker_host: str, broker_port: int) -> None:
        self.site_id = site_id
        self.broker = (broker_host, broker_port)
        self.port = 0
        self.up = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.broker)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        """The village's line goes dead: connections drop, new ones are refused."""
        self.up = False
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


# --------------------------------------------------------------------------- processes


@dataclass
class SiteProcess:
    """One site as the orchestrator follows it; its process may run other sites too."""

    spec: SiteSpec
    group: SiteGroup | None = None
    status: dict[str, Any] = field(default_factory=dict)
    ever_online: bool = False
    final: dict[str, Any] | None = None

    @property
    def process(self) -> asyncio.subprocess.Process | None:
        return self.group.process if self.group is not None else None

    def send(self, command: dict[str, Any]) -> None:
        if self.group is not None:
            self.group.send({**command, "site": self.spec.site_id})


@dataclass
class SiteGroup:
    """One ``python -m onedoor.demo_site`` process running one or several sites."""

    sites: list[SiteProcess]
    process: asyncio.subprocess.Process | None = None

    async def start(self, spec_paths: list[Path], log_path: Path) -> None:
        for site in self.sites:
            site.group = self
        with log_path.open("ab") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "onedoor.demo_site", *map(str, spec_paths),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                start_new_session=True,  # Ctrl-C goes to the orchestrator, which stops us
            )

    async def follow(self, on_change: Callable[[SiteProcess, dict[str, Any]], None]) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        by_id = {site.spec.site_id: site for site in self.sites}
        while line := await self.process.stdout.readline():
            with contextlib.suppress(ValueError):
                status = json.loads(line)
                site = by_id.get(str(status.get("site"))) if isinstance(status, dict) else None
                if site is None:
                    continue
                previous, site.status = site.status, status
                site.ever_online |= bool(status.get("online"))
                if status.get("final"):
                    site.final = status
                on_change(site, previous)

    def send(self, command: dict[str, Any]) -> None:
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self.process.stdin.write((json.dumps(command) + "\n").encode())

    async def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.send({"do": "stop"})  # no "site": every site of the process
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()


def group_sites(specs: list[SiteSpec], per_process: int) -> list[list[SiteSpec]]:
    """Halls get a process each (they are busy); villages share, ``per_process`` at a time."""
    halls = [[spec] for spec in specs if spec.kind != "village"]
    villages = [spec for spec in specs if spec.kind == "village"]
    size = max(1, per_process)
    return halls + [villages[i:i + size] for i in range(0, len(villages), size)]


class CentralProcess:
    """``onedoor central run`` as a child process, on SQLite, with the sample registry."""

    def __init__(self, workdir: Path, broker: Any, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.config = workdir / "central.toml"
        self.database = workdir / "central.db"
        self.config.write_text(
            f'database_url = "sqlite:///{self.database}"\n'
            f'mqtt_host = "{broker.host}"\nmqtt_port = {broker.port}\n'
            f'progress_public_url = "{self.url}"\n'
            + ("" if broker.shared_subscriptions else  # amqtt: MQTT 3.1.1, no $share
               'mqtt_protocol = "3.1.1"\n') +
            "offline_after_s = 60\nhelp_unanswered_s = 30\nalarm_tick_s = 2\n"
            "config_drift_after_s = 120\n", encoding="utf-8")
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """The dashboards, and the progress pages the tickets' QR codes open."""
        return f"http://127.0.0.1:{self.port}"

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "onedoor", "central", *args, "--config", str(self.config)]

    async def prepare(self) -> str:
        """Load the registry and create a viewer token (printed for the manager)."""
        for args in (("seed",), ("token", "create", "--role", "operator", "--name", "demo")):
            result = await asyncio.create_subprocess_exec(
                *self._command(*args), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            out, err = await result.communicate()
            if result.returncode != 0:
                raise DemoError(f"onedoor central {' '.join(args)} failed: {err.decode()[-500:]}")
        return out.decode().strip().splitlines()[-1]

    async def start(self) -> None:
        with (self.workdir / "central.log").open("ab") as output:
            self.process = await asyncio.create_subprocess_exec(
                *self._command("run", "--port", str(self.port)), stdout=output,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        await asyncio.to_thread(wait_for_port, "127.0.0.1", self.port, 60)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the central's database directly (read-only) for the summary."""
        return read_only_query(self.database, sql)


# --------------------------------------------------------------------------- the demo


@dataclass
class Incident:
    at_s: float
    what: str
    site_index: int
    action: Callable[[], None]


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.keep = args.keep or args.workdir is not None
        self.workdir = Path(args.workdir or tempfile.mkdtemp(prefix="onedoor-demo-"))
        self.sites: list[SiteProcess] = []
        self.groups: list[SiteGroup] = []
        self.uplinks: dict[str, UplinkProxy] = {}
        self.alarms_seen: dict[int, bool] = {}  # alarm id -> cleared
        self.started = time.monotonic()
        self.progress_page: str | None = None  # of the fresh ticket taken at the start

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def _on_site(self, site: SiteProcess, previous: dict[str, Any]) -> None:
        was, now = bool(previous.get("online")), bool(site.status.get("online"))
        if now and not was:
            self.say(f"站点上线 online   {site.spec.site_id} {site.spec.name}")
        elif was and not now and not site.status.get("final"):
            self.say(f"站点离线 offline  {site.spec.site_id} {site.spec.name}")

    def _watch_alarms(self, central: CentralProcess) -> None:
        rows = central.query("SELECT id, site_id, type, device, cleared_at FROM alarms")
        for alarm_id, site_id, kind, device, cleared_at in rows:
            cleared = cleared_at is not None
            seen = self.alarms_seen.get(alarm_id)
            if seen is None:
                self.say(f"告警 alarm raised  {site_id} {kind} {device}".rstrip())
            if cleared and not seen:
                self.say(f"告警解除 cleared    {site_id} {kind} {device}".rstrip())
            self.alarms_seen[alarm_id] = cleared

    def incidents(self, duration: float) -> list[Incident]:
        """Scripted trouble, spread over the run (first within a minute)."""
        def at(fraction: float, cap_s: float) -> float:
            return min(duration * fraction, cap_s)

        plan: list[Incident] = []
        villages = [i for i, s in enumerate(self.sites) if s.spec.kind == "village"]
        halls = [i for i, s in enumerate(self.sites) if s.spec.kind != "village"] or villages
        if villages:
            paper = villages[0]
            plan += [
                Incident(at(0.15, 20), "printer out of paper", paper,
                         lambda: self.sites[paper].send({"do": "paper_out"})),
                Incident(at(0.45, 60), "paper loaded", paper,
                         lambda: self.sites[paper].send({"do": "paper_in"})),
            ]
            cut = villages[min(1, len(villages) - 1)]
            uplink = self.uplinks[self.sites[cut].spec.site_id]
            plan += [Incident(at(0.2, 30), "uplink cut", cut, uplink.cut),
                     Incident(at(0.5, 75), "uplink restored", cut, uplink.restore)]
        plan += [
            Incident(at(0.1, 15), "呼叫帮办 pressed, nobody answers", halls[-1],
                     lambda: self.sites[halls[-1]].send({"do": "help"})),
            Incident(at(0.1, 15), "window 1 runs overtime", halls[0],
                     lambda: self.sites[halls[0]].send({"do": "overtime"})),
        ]
        return sorted(plan, key=lambda incident: incident.at_s)

    async def run(self) -> dict[str, Any]:
        args = self.args
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.say(f"工作目录 workdir {self.workdir}")
        broker = await asyncio.to_thread(start_demo_broker, self.workdir / "broker")
        central = CentralProcess(self.workdir, broker, args.port or free_port())
        try:
            summary = await self._run(broker, central)
            if args.report:  # before the workdir (and its pictures) is removed
                self.write_report(summary, Path(args.report))
            return summary
        finally:
            await self._shutdown(central)
            await asyncio.to_thread(broker.stop)
            if not self.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)

    async def _run(self, broker: Any, central: CentralProcess) -> dict[str, Any]:
        args = self.args
        self.say(f"MQTT broker: {broker.kind} on {broker.host}:{broker.port}")
        token = await central.prepare()
        await central.start()
        url = f"http://127.0.0.1:{central.port}/"
        self.say(f"中心 dashboard: {url}  (登录令牌 token: {token})")
        specs = plan_sites(args.villages, not args.no_halls, broker.host, self.workdir,
                           args.speed)
        for spec in specs:
            spec.progress_url = central.url
        per_process = args.sites_per_process or (10 if whole_city(args.villages) else 1)
        for members in group_sites(specs, per_process):
            paths = []
            for spec in members:
                uplink = UplinkProxy(spec.site_id, broker.host, broker.port)
                await uplink.start()
                self.uplinks[spec.site_id] = uplink
                spec.mqtt_port = uplink.port
                spec.mqtt_protocol = "5" if broker.shared_subscriptions else "3.1.1"  # amqtt
                spec_path = Path(spec.workdir) / "spec.json"
                spec_path.parent.mkdir(parents=True, exist_ok=True)
                spec_path.write_text(spec.to_json(), encoding="utf-8")
                paths.append(spec_path)
            group = SiteGroup([SiteProcess(spec) for spec in members])
            await group.start(paths, paths[0].parent / "site.log")
            self.groups.append(group)
            self.sites += group.sites
        followers = [asyncio.create_task(g.follow(self._on_site)) for g in self.groups]
        self.say(f"{len(specs)} 个站点启动 sites started in {len(self.groups)} processes "
                 f"(speed ×{args.speed:g})")

        duration = args.duration if args.duration else float("inf")
        await self._wait_online(central, timeout=60.0)
        await self._fresh_ticket()
        plan_start = time.monotonic()
        plan = self.incidents(max(30.0, duration - (plan_start - self.started) - 10.0)
                              if args.duration else 600.0)
        while time.monotonic() - self.started < duration:
            elapsed = time.monotonic() - plan_start
            while plan and plan[0].at_s <= elapsed:
                incident = plan.pop(0)
                self.say(f"事件 incident: {incident.what} @ "
                         f"{self.sites[incident.site_index].spec.site_id}")
                incident.action()
            await asyncio.to_thread(self._watch_alarms, central)
            if any(s.process and s.process.returncode is not None and not s.final
                   for s in self.sites):
                dead = [s.spec.site_id for s in self.sites
                        if s.process and s.process.returncode is not None]
                raise DemoError(f"site process died: {dead} (see its site.log)")
            await asyncio.sleep(1.0)
        for incident in plan:  # restore anything still cut before draining
            if incident.what in ("uplink restored", "paper loaded"):
                incident.action()
        dashboards = await asyncio.to_thread(self._check_dashboards, url, token)
        # Quiet first, so that the drain is the end: a key press made while it ran would
        # be journaled after it and counted pending. A latched press still polled in.
        for group in self.groups:
            group.send({"do": "quiet"})
        await asyncio.sleep(QUIET_SETTLE_S)
        await self._drain()
        await asyncio.to_thread(self._watch_alarms, central)
        alarms = central.query(
            "SELECT site_id, type, device, cleared_at IS NOT NULL, detail FROM alarms ORDER BY id")
        await asyncio.gather(*(g.stop() for g in self.groups))
        await asyncio.gather(*followers, return_exceptions=True)
        await asyncio.sleep(2.0)  # the last commits
        return self._summary(central, dashboards, alarms)

    async def _wait_online(self, central: CentralProcess, timeout: float) -> None:
        """Incidents start once every site has connected (or after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(s.ever_online for s in self.sites):
            await asyncio.to_thread(self._watch_alarms, central)
            await asyncio.sleep(1.0)
        self.say("全部站点在线 every site online" if all(s.ever_online for s in self.sites)
                 else "部分站点未上线 some sites never connected")

    async def _fresh_ticket(self, timeout: float = 30.0) -> None:
        """Take a ticket at the first site's kiosk and print its progress page."""
        if not self.sites:
            return
        site = self.sites[0]
        site.send({"do": "ticket"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fresh = site.status.get("fresh_ticket")
            if fresh and fresh.get("url"):
                self.progress_page = str(fresh["url"])
                self.say(f"取号 a fresh ticket {fresh.get('number')} @ {site.spec.site_id}: "
                         f"排队进度 progress page {self.progress_page}")
                return
            await asyncio.sleep(0.5)
        self.say(f"未能取号 no fresh ticket at {site.spec.site_id} within {timeout:g} s")

    async def _drain(self, timeout: float = 60.0) -> None:
        """Wait until every site's journal is acknowledged by the central."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            behind = [s for s in self.sites
                      if s.status.get("acked_seq", 0) < s.status.get("last_seq", 0)]
            if not behind:
                return
            await asyncio.sleep(1.0)
        self.say(f"未确认 not drained after {timeout:.0f}s: "
                 f"{[s.spec.site_id for s in behind]}")

    def _check_dashboards(self, url: str, token: str) -> dict[str, int]:
        """Log in like a manager and open every page; status code per page."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        codes: dict[str, int] = {}
        login = urllib.parse.urlencode({"token": token}).encode()
        with contextlib.suppress(OSError), opener.open(url + "login", data=login,
                                                       timeout=20) as response:
            codes["login"] = response.status
        first = self.sites[0].spec.site_id if self.sites else ""
        for page in ("", f"sites/{first}", "alarms", "statistics"):
            try:
                with opener.open(url + page, timeout=30) as response:
                    codes[page or "fleet"] = response.status
            except urllib.error.HTTPError as error:
                codes[page or "fleet"] = error.code
            except OSError:
                codes[page or "fleet"] = 0
        if self.progress_page is not None:  # a citizen's phone: no login
            try:
                with urllib.request.urlopen(self.progress_page, timeout=30) as response:
                    codes["progress"] = response.status
            except urllib.error.HTTPError as error:
                codes["progress"] = error.code
            except OSError:
                codes["progress"] = 0
        return codes

    def _summary(self, central: CentralProcess, dashboards: dict[str, int],
                 alarms: list[tuple[Any, ...]]) -> dict[str, Any]:
        """Counts for the report; ``alarms`` were read before the sites were stopped."""
        at_central: dict[str, set[int]] = {}
        for site_id, seq in central.query("SELECT site_id, seq FROM events"):
            at_central.setdefault(site_id, set()).add(seq)
        sites = []
        for site in self.sites:
            final = site.final or site.status
            produced = int(final.get("last_seq", 0))
            committed = at_central.get(site.spec.site_id, set())
            pending, lost = undelivered(produced, committed,
                                        journal_seqs(Path(site.spec.workdir) / "journal.db"))
            sites.append({
                "site": site.spec.site_id, "kind": site.spec.kind,
                "ever_online": site.ever_online, "events_produced": produced,
                "events_committed": len(committed),
                "events_pending": pending, "events_lost": lost,
                "issued": final.get("issued", 0), "served": final.get("served", 0),
                "printed": final.get("printed", 0),
            })
        produced = sum(s["events_produced"] for s in sites)
        return {
            "sites": len(sites),
            "every_site_online": all(s["ever_online"] for s in sites),
            "tickets_issued": sum(s["issued"] for s in sites),
            "tickets_served": sum(s["served"] for s in sites),
            "tickets_printed": sum(s["printed"] for s in sites),
            "events_produced": produced,
            "events_committed": sum(s["events_committed"] for s in sites),
            # Not yet at the central when the demo stopped, but kept in the site's journal
            # (the site sends them when it runs again): a machine too slow for the fleet.
            "events_pending": sum(s["events_pending"] for s in sites),
            # Neither at the central nor in the site's journal: must be 0.
            "events_lost": sum(s["events_lost"] for s in sites),
            "alarms_raised": len(alarms),
            "alarms_cleared": sum(1 for a in alarms if a[3]),
            "alarm_types": sorted({a[1] for a in alarms}),
            "alarms": [{"site": a[0], "type": a[1], "device": a[2], "cleared": bool(a[3]),
                        "detail": _json_detail(a[4])} for a in alarms],
            "dashboards": dashboards,
            "progress_page": self.progress_page,
            "per_site": sites,
        }

    async def _shutdown(self, central: CentralProcess) -> None:
        await asyncio.gather(*(g.stop() for g in self.groups), return_exceptions=True)
        for uplink in self.uplinks.values():
            uplink.close()
        await central.stop()

    def write_report(self, summary: dict[str, Any], directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "summary.json").write_text(
            json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
        for site in self.sites:
            pictures = Path(site.spec.workdir) / "pictures"
            for picture in pictures.glob("*.png"):
                shutil.copy(picture, directory / picture.name)


def undelivered(produced: int, at_central: set[int], in_journal: set[int]) -> tuple[int, int]:
    """(pending, lost) of a site's seqs 1..produced: pending ones are not committed at the
    central but still in the site's journal (it sends them when it runs again); lost ones
    are in neither."""
    missing = set(range(1, produced + 1)) - at_central
    pending = len(missing & in_journal)
    return pending, len(missing) - pending


def read_only_query(database: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on a SQLite file opened read-only; none if the file is not there."""
    if not database.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True,
                                            timeout=10)) as db:
        return list(db.execute(sql))


def journal_seqs(path: Path) -> set[int]:
    """Seqs a stopped site's journal still holds."""
    return {seq for (seq,) in read_only_query(path, "SELECT seq FROM events")}


def _json_detail(raw: Any) -> Any:
    """An alarm's detail column as stored by SQLite (JSON text), for the summary."""
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return raw


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.walk_through:
        from onedoor import walkthrough

        return walkthrough.run()
    demo = Demo(args)
    loop = asyncio.new_event_loop()
    task = loop.create_task(demo.run())
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        summary = loop.run_until_complete(task)
    except asyncio.CancelledError:
        print("已停止 stopped", flush=True)
        return 130
    except DemoError as error:
        print(f"演示失败 demo failed: {error}", file=sys.stderr)
        return 1
    finally:
        loop.close()
    print(json.dumps({k: v for k, v in summary.items() if k not in ("per_site", "alarms")},
                     ensure_ascii=False))
    if summary["events_pending"]:
        print(f"未确认 {summary['events_pending']} events still in the sites' journals, not yet "
              "committed at the central: this machine is too slow for the fleet", flush=True)
    return 0 if summary["events_lost"] == 0 and summary["events_pending"] == 0 else 1


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("demo", help="演示 / a live fleet: broker, central, simulated sites")
    parser.add_argument("--villages", "--sites", type=int, default=21, dest="villages",
                        help="village stations to run (default 21; 277 = the whole city)")
    parser.add_argument("--sites-per-process", type=int, default=0,
                        help="village stations sharing one process (default: 1 up to 40 "
                             "villages, else 10: the whole city then needs ~30 processes)")
    parser.add_argument("--no-halls", action="store_true",
                        help="leave out the city hall and the district hall")
    parser.add_argument("--speed", type=float, default=20.0,
                        help="simulated time runs this many times faster (default 20)")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--headless", action="store_true",
                        help="no browser needed: for CI (the dashboard still runs)")
    parser.add_argument("--report", help="write summary.json and pictures to this directory")
    parser.add_argument("--port", type=int, default=0, help="dashboard port (default: free)")
    parser.add_argument("--workdir", help="keep all state here (default: a temporary dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workdir")
    parser.add_argument("--walk-through", action="store_true",
                        help="only print the dispatcher deciding in one small hall")
    parser.set_defaults(func=_cmd_demo)

"""`onedoor demo --headless` runs the whole fleet for a while and loses nothing.

Real parts throughout: Mosquitto (or amqtt where it is not installed), the
central service as a child process on SQLite, edge daemons driving simulated
devices over ptys, scripted incidents. The summary is read back from the
central's database and the sites' journals.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge.config import parse_config
from edge.journal import Journal
from fastpath import Dispatcher, Service, WindowProfile
from firmware_protocols import mqtt_messages as mm
from onedoor import demo_site
from onedoor.demo import (
    CITY_REPLY_TIMEOUT_MS,
    CITY_TERMINAL_POLL_MS,
    group_sites,
    journal_seqs,
    plan_sites,
    undelivered,
)
from onedoor.demo_site import DemoSite, SiteSpec, site_toml

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "demo"


@pytest.mark.slow
def test_headless_demo_commits_every_event_and_scripts_its_alarms(tmp_path: Path) -> None:
    report = ARTIFACTS
    result = subprocess.run(
        [sys.executable, "-m", "onedoor", "demo", "--headless", "--villages", "2",
         "--sites-per-process", "2",  # the two villages share a process: incidents routed
         "--duration", "100", "--speed", "40", "--report", str(report),
         "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=280,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((report / "summary.json").read_text(encoding="utf-8"))
    assert summary["sites"] == 4  # city hall, district hall, 2 villages
    assert "4 个站点启动 sites started in 3 processes" in result.stdout
    assert summary["every_site_online"]
    assert (summary["events_lost"], summary["events_pending"]) == (0, 0)
    assert summary["events_committed"] == summary["events_produced"] > 100
    assert summary["tickets_issued"] > 20
    assert summary["tickets_served"] > 5
    assert summary["tickets_printed"] > 0
    assert set(summary["dashboards"].values()) == {200}, summary["dashboards"]
    # A fresh ticket's progress page (what its QR opens), printed and opened like a phone.
    assert "progress" in summary["dashboards"]
    page = summary["progress_page"]
    assert page.startswith("http://127.0.0.1:")
    assert "/q/" in page
    assert f"排队进度 progress page {page}" in result.stdout

    alarms = summary["alarms"]
    villages = [s["site"] for s in summary["per_site"] if s["kind"] == "village"]
    # The script: paper out at the first village, uplink cut at the second.
    paper = [a for a in alarms if a["site"] == villages[0] and a["type"] == "device_fault"]
    assert [a["device"] for a in paper] == ["printer"], alarms  # nothing spurious at start
    assert paper[0]["cleared"], alarms  # paper loaded
    assert not [a for a in alarms if a["site"] == villages[1] and a["type"] == "device_fault"]
    offline = [a for a in alarms if a["type"] == "site_offline"]
    assert [a["site"] for a in offline] == [villages[1]], alarms
    assert offline[0]["cleared"], alarms  # the uplink came back
    assert any(a["type"] == "help_unanswered" and a["device"] == "help-1" for a in alarms)
    assert any(a["type"] == "serving_overtime" for a in alarms), alarms
    pictures = {p.name for p in report.glob("*.png")}
    assert any(name.endswith("-ticket.png") for name in pictures), pictures
    assert any(name.endswith("-hall-screen.png") for name in pictures), pictures


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if text in args:
            found.append(args)
    return found


@pytest.mark.slow
def test_ctrl_c_leaves_no_process_behind(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    demo = subprocess.Popen(
        [sys.executable, "-m", "onedoor", "demo", "--villages", "1", "--no-halls",
         "--workdir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert demo.stdout is not None
    seen = []
    for line in demo.stdout:  # until the site is up: broker, central and site all running
        seen.append(line)
        if "every site online" in line or "some sites never connected" in line:
            break
    assert _processes_mentioning(str(workdir)), "".join(seen)
    demo.send_signal(signal.SIGINT)
    rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 130, "".join(seen) + rest
    assert "已停止 stopped" in rest
    assert _processes_mentioning(str(workdir)) == []


def test_halls_get_a_process_each_and_villages_share() -> None:
    specs = plan_sites(25, True, "127.0.0.1", Path("/nonexistent"), 20.0)
    groups = group_sites(specs, 10)
    assert [len(g) for g in groups] == [1, 1, 10, 10, 5]
    assert [g[0].kind for g in groups[:2]] == ["city_hall", "district"]
    assert all(s.kind == "village" for g in groups[2:] for s in g)
    assert sorted(s.site_id for g in groups for s in g) == sorted(s.site_id for s in specs)
    assert [len(g) for g in group_sites(specs, 0)] == [1] * 27  # 0 and 1: one site each


def test_a_whole_city_polls_village_keypads_less_often_and_waits_longer() -> None:
    def buses(specs: list[SiteSpec]) -> set[tuple[str, int, int | None]]:
        return {(s.kind, s.terminal_poll_ms, s.device_timeout_ms) for s in specs}

    city = plan_sites(277, True, "127.0.0.1", Path("/nonexistent"), 20.0)
    assert len(city) == 279
    slow = CITY_REPLY_TIMEOUT_MS
    assert buses(city) == {("city_hall", 100, slow), ("district", 100, slow),
                           ("village", CITY_TERMINAL_POLL_MS, slow)}
    default = plan_sites(21, True, "127.0.0.1", Path("/nonexistent"), 20.0)
    assert buses(default) == {("city_hall", 100, None), ("district", 100, None),
                              ("village", 100, None)}  # as shipped

    ports = {"printer": "/dev/pts/90", "terminals": "/dev/pts/91", "screens": "/dev/pts/92"}
    for spec in (city[0], default[0]):  # the city hall has every kind of device
        spec.mqtt_port = 1883  # the orchestrator's uplink proxy, once it runs
    hall = parse_config(site_toml(city[0], ports, 8080)).devices
    assert hall.terminals is not None
    assert hall.printer is not None
    assert hall.screens is not None
    assert (hall.terminals.poll_ms, hall.terminals.timeout_ms, hall.printer.timeout_ms,
            hall.screens.timeout_ms) == (100, slow, slow, slow)
    shipped = parse_config(site_toml(default[0], ports, 8080)).devices
    assert shipped.terminals is not None
    assert shipped.printer is not None
    assert shipped.screens is not None
    assert (shipped.terminals.poll_ms, shipped.terminals.timeout_ms, shipped.printer.timeout_ms,
            shipped.screens.timeout_ms) == (100, 150, 300, 150)


def _idle_village_window() -> tuple[DemoSite, Dispatcher]:
    """A demo site whose daemon is stood in for by its hall's real dispatcher only
    (``_work_for`` reads nothing else): window 1 signed in, nobody waiting."""
    spec = plan_sites(1, False, "127.0.0.1", Path("/nonexistent"), 20.0)[0]
    dispatcher = Dispatcher([Service(s.id, s.prefix, s.name_zh) for s in spec.services],
                            [WindowProfile(1, {s.id: 1 for s in spec.services})])
    dispatcher.sign_in(1)
    site = DemoSite(spec)
    site.daemon = SimpleNamespace(hall=SimpleNamespace(dispatcher=dispatcher))  # type: ignore[assignment]
    return site, dispatcher


def test_idle_staff_press_next_when_someone_waits_for_them() -> None:
    async def scenario() -> None:
        site, dispatcher = _idle_village_window()
        work = asyncio.create_task(site._work_for(1))
        await asyncio.sleep(0.2)
        assert not work.done()  # nobody waiting: no 下一位
        dispatcher.issue(site.spec.services[0].id, site.clock.now_ms())
        site.hall_changed.set()  # as the daemon's journaled event does
        await asyncio.wait_for(work, 1.0)

    asyncio.run(scenario())


def test_idle_staff_still_press_next_now_and_then(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_site, "IDLE_NEXT_S", 0.1)

    async def scenario() -> None:
        site, _ = _idle_village_window()
        await asyncio.wait_for(site._work_for(1), 1.0)  # gives up waiting: shows 无人等候

    asyncio.run(scenario())


def test_staff_wait_for_their_finish_to_be_handled() -> None:
    async def scenario() -> None:
        site, dispatcher = _idle_village_window()
        now = site.clock.now_ms()
        dispatcher.issue(site.spec.services[0].id, now)
        ticket = dispatcher.call_next(1, now)
        assert ticket is not None
        done = asyncio.create_task(site._finished(1, ticket.number))
        await asyncio.sleep(0.2)
        assert not done.done()  # the 办结 is still on its way: no rating, no 下一位 yet
        dispatcher.finish(1, site.clock.now_ms())
        site.hall_changed.set()
        await asyncio.wait_for(done, 1.0)

    asyncio.run(scenario())


def test_events_not_at_the_central_are_pending_while_a_journal_holds_them(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with Journal(path, "zs-shiqi-01") as journal:
        for _ in range(5):
            journal.append([mm.HelpRequested(button="help-1", location="大厅")],
                           ts_ms=1_763_882_400_000, clock_synced=True)
    held = journal_seqs(path)
    assert held == {1, 2, 3, 4, 5}
    assert undelivered(5, {1, 2, 3}, held) == (2, 0)  # 4, 5 wait in the journal
    assert undelivered(6, {1, 2, 3}, held) == (2, 1)  # 6 is nowhere: lost
    assert undelivered(5, {1, 2, 3, 4, 5}, held) == (0, 0)
    assert journal_seqs(tmp_path / "missing.db") == set()

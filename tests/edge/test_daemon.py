"""The daemon process: SIGHUP reload, systemd notify + watchdog, supervisor, status CLI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

from edge.config import load_config
from edge.daemon import EdgeDaemon
from edge.device_set import device_detail_code, device_status_body
from edge.devices.base import DeviceHealth, DeviceKind, HealthState
from edge.journal import Journal
from edge.supervisor import Heartbeats, Supervisor, sd_notify, watchdog_interval
from edge.uplink import Uplink
from firmware_protocols import mqtt_messages as mm
from firmware_protocols import mqtt_topics as topics
from onedoor.cli import main
from tests.edge.central_probe import CentralProbe, wait_for
from tests.edge.sites import (
    BASE_WINDOWS,
    TIMED_SERVICES,
    free_port,
    http,
    site_toml,
    start_daemon,
    stop_daemon,
    wait_http,
)
from tests.servers import MosquittoBroker


def journal_types(config_path: Path) -> list[tuple[str, mm.EventBody]]:
    config = load_config(config_path)
    with Journal(config.paths.journal, config.site.id, read_only=True) as journal:
        return [(e.type, e.body) for e in journal.events()]


def test_sighup_reload_good_then_bad_keeps_the_queue(tmp_path: Path) -> None:
    port = free_port()
    config_path = site_toml(tmp_path, http_port=port)
    process = start_daemon(config_path, log_path=tmp_path / "daemon.log")
    try:
        wait_http(port, process)
        base = f"http://127.0.0.1:{port}"
        numbers = [http("POST", f"{base}/tickets", {"service": "shebao"})[1]["number"]
                   for _ in range(3)]
        assert numbers == ["A001", "A002", "A003"]
        http("POST", f"{base}/windows/1/sign_in", {"staff": "zhang01"})
        assert http("POST", f"{base}/windows/1/next")[1]["ticket"] == "A001"

        # A good config: a third window appears, the queue is untouched.
        site_toml(tmp_path, version="v2", http_port=port,
                  windows=BASE_WINDOWS + '[[windows]]\nnumber = 3\nservices = { shebao = 1 }\n')
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: http("GET", f"{base}/status")[1]["config"] == "v2", what="v2")
        status = http("GET", f"{base}/status")[1]
        assert [w["window"] for w in status["windows"]] == [1, 2, 3]
        assert status["windows"][0]["ticket"] == "A001"
        assert status["queues"][0]["waiting"] == 2

        # A broken file: refused, journaled, old config stays, queue survives.
        config_path.write_text(config_path.read_text().replace("number = 3", "number = 1"))
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: any(t == "config.rejected" for t, _ in journal_types(
            _copy_ok(tmp_path))), what="rejected")
        status = http("GET", f"{base}/status")[1]
        assert status["config"] == "v2"
        assert status["windows"][0]["ticket"] == "A001"
        assert http("POST", f"{base}/tickets", {"service": "shebao"})[1]["number"] == "A004"
        rejected = [b for t, b in journal_types(_copy_ok(tmp_path)) if t == "config.rejected"]
        assert isinstance(rejected[0], mm.ConfigRejected)
        assert rejected[0].version == "v2"
        duplicate = "windows[2].number: 1 already used by windows[0]"
        assert any(duplicate in e for e in rejected[0].errors)
        assert process.poll() is None
    finally:
        assert stop_daemon(process) == 0


def _copy_ok(tmp_path: Path) -> Path:
    """A valid config pointing at the same journal, to read it while the live file is broken."""
    return site_toml(tmp_path, name="ok.toml")


def test_systemd_ready_and_watchdog_over_the_notify_socket(tmp_path: Path) -> None:
    port = free_port()
    config_path = site_toml(tmp_path, http_port=port)
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(notify_path))
        server.settimeout(15)
        process = start_daemon(config_path, env={"NOTIFY_SOCKET": str(notify_path),
                                                 "WATCHDOG_USEC": "400000"})
        try:
            messages: list[str] = []
            while not any(m.startswith("WATCHDOG=1") for m in messages):
                messages.append(server.recv(4096).decode())
            assert messages[0].startswith("READY=1")
            process.send_signal(signal.SIGTERM)
            while "STOPPING=1" not in messages:
                messages.append(server.recv(4096).decode())
        finally:
            stop_daemon(process)


def test_sd_notify_is_quiet_without_systemd_and_handles_abstract_sockets() -> None:
    assert sd_notify("READY=1", environ={}) is False
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "2000000"}) == 1.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    name = f"onedoor-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert sd_notify("WATCHDOG=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert server.recv(100) == b"WATCHDOG=1"


def test_a_hung_task_withholds_the_watchdog(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The uplink stops checking in (hung, loop still healthy): no more WATCHDOG=1."""
    notify_path = tmp_path / "notify.sock"
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    config_path = site_toml(tmp_path, mqtt_port=free_port())
    config_path.write_text(config_path.read_text().replace(
        "help_escalation_minutes = 5", "help_escalation_minutes = 5\nwatchdog_seconds = 1"))

    hang = asyncio.Event()  # set by the test: from then on the uplink never checks in

    async def wedged(self: Uplink) -> None:
        """Checks in until told to hang, then hangs without failing (what a loop ping hides)."""
        while not hang.is_set():
            self.beat()
            await asyncio.sleep(0.05)
        await asyncio.Event().wait()

    monkeypatch.setattr(Uplink, "run", wedged)

    async def collect(server: socket.socket, seconds: float) -> list[str]:
        loop = asyncio.get_running_loop()
        received: list[str] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    received.append((await loop.sock_recv(server, 100)).decode())
        return received

    async def scenario() -> list[str]:
        daemon = EdgeDaemon(config_path, install_signals=False)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
            server.bind(str(notify_path))
            server.setblocking(False)
            task = asyncio.create_task(daemon.run())
            await asyncio.wait_for(daemon.ready.wait(), 30)
            early = await collect(server, 0.8)
            hang.set()
            await asyncio.sleep(1.5)  # the uplink's last check-in is now over 1 s old
            await collect(server, 0.01)
            late = await collect(server, 1.0)
            assert "uplink" in daemon.supervisor.running()  # alive, yet hung
            daemon.stop()
            await task
            return [*early, "--", *late]

    messages = asyncio.run(scenario())
    split = messages.index("--")
    assert "WATCHDOG=1" in messages[:split]
    assert "WATCHDOG=1" not in messages[split + 1:]


def test_supervisor_restarts_a_task_that_dies() -> None:
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("device unplugged")
        await asyncio.sleep(3600)

    async def scenario() -> dict[str, int]:
        supervisor = Supervisor(restart_delay_s=0.01)
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.TaskGroup() as group:
                supervisor.start(group, "flaky", flaky)
                while len(runs) < 3:
                    await asyncio.sleep(0.01)
                assert supervisor.running() == ["flaky"]
                supervisor.cancel_all()
        return supervisor.restarts

    assert asyncio.run(scenario()) == {"flaky": 2}


def test_heartbeats_give_a_first_period_of_grace() -> None:
    now = [100.0]
    beats = Heartbeats(lambda: now[0])
    assert beats.stale(["uplink"], 5) == []
    now[0] = 106.0
    assert beats.stale(["uplink"], 5) == ["uplink"]
    beats.beat("uplink")
    assert beats.stale(["uplink", "inputs"], 5) == ["inputs"]


@pytest.mark.parametrize(("detail", "code"), [
    ("缺纸 paper out", "paper_out"), ("纸将尽 paper low", "paper_low"), ("", None),
    ("no ack from address 2", "no_ack_from_address_2"), ("打印机故障", None),
])
def test_device_health_maps_onto_the_contract(detail: str, code: str | None) -> None:
    assert device_detail_code(detail) == code
    body = device_status_body(DeviceHealth("screen.hall", DeviceKind.SCREEN,
                                           HealthState.OFFLINE, detail))
    assert (body.kind, body.status, body.detail) == ("led", "offline", code)
    mm.encode(mm.Event(site="s", seq=1, id=uuid.uuid4(), ts=0,
                       clock_synced=False, body=body))


def test_edge_status_cli_live_and_from_the_journal(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    config_path = site_toml(tmp_path, http_port=port)
    process = start_daemon(config_path)
    try:
        wait_http(port, process)
        http("POST", f"http://127.0.0.1:{port}/tickets", {"service": "huji"})
        assert main(["edge", "status", "--config", str(config_path)]) == 0
        live = capsys.readouterr().out
        assert "测试镇便民服务中心" in live
        assert "huji(户籍) 1 waiting" in live
        assert "read from the journal" not in live
    finally:
        stop_daemon(process)
    assert main(["edge", "status", "--config", str(config_path)]) == 0
    offline = capsys.readouterr().out
    assert "huji(户籍) 1 waiting" in offline
    assert "read from the journal" in offline
    assert main(["edge", "status", "--json", "--config", str(config_path)]) == 0


def test_run_refuses_an_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('version = "x"\n')
    process = start_daemon(bad)
    assert process.wait(timeout=20) == 2


def test_kill_9_leaves_a_will_that_the_next_session_supersedes(
        tmp_path: Path, mqtt_broker: MosquittoBroker) -> None:
    port = free_port()
    config_path = site_toml(tmp_path, http_port=port, mqtt_port=mqtt_broker.port)
    probe = CentralProbe(mqtt_broker.host, mqtt_broker.port, "test-site")
    try:
        time.sleep(0.3)  # the retained state of an earlier test arrives first
        seen = len(probe.states)
        process = start_daemon(config_path)
        try:
            wait_http(port, process)
            wait_for(lambda: any(s.status == "online" for s in probe.states[seen:]),
                     what="online")
            online = next(s for s in probe.states[seen:] if s.status == "online")
        finally:
            process.kill()  # the fault under test; also no daemon left behind if a wait failed
            process.wait()
        wait_for(lambda: any(s.lwt for s in probe.states[seen:]), timeout=20, what="the Will")
        will = next(s for s in probe.states[seen:] if s.lwt)
        assert will.status == "offline"
        assert (will.session, will.boot_id) == (online.session, online.boot_id)
        process = start_daemon(config_path)
        try:
            wait_for(lambda: [s for s in probe.states if s.status == "online"
                              and s.device == will.device and s.session > will.session],
                     what="new session")
            newer = next(s for s in probe.states
                         if s.device == will.device and s.session > will.session)
            assert mm.state_supersedes(newer, will)
            assert not mm.state_supersedes(will, newer)  # a late Will loses
        finally:
            stop_daemon(process)
    finally:
        probe.close()


def test_an_ack_above_the_journal_moves_on_and_reports_journal_lost(
        tmp_path: Path, mqtt_broker: MosquittoBroker) -> None:
    """The central holds seqs this journal lost (torn WAL, new SD card): they are not reused."""
    port = free_port()
    config_path = site_toml(tmp_path, http_port=port, mqtt_port=mqtt_broker.port,
                            telemetry_seconds=1)
    probe = CentralProbe(mqtt_broker.host, mqtt_broker.port, "test-site")
    process = start_daemon(config_path)
    try:
        wait_http(port, process)
        status, first = http("POST", f"http://127.0.0.1:{port}/tickets", {"service": "shebao"})
        assert (status, first["number"]) == (201, "A001")
        wait_for(lambda: any(e.type == "ticket.issued" for e in probe.events), what="A001 sent")
        local_last = max(probe.seqs())
        probe.publish_raw(topics.ack_topic("test-site"),
                          mm.encode(mm.Ack(site="test-site", seq=local_last + 40)))
        wait_for(lambda: any(e.type == "journal.lost" for e in probe.events), what="the report")
        lost = next(e for e in probe.events if e.type == "journal.lost")
        assert lost.body == mm.JournalLost(first_seq=local_last + 1, last_seq=local_last + 40)
        assert lost.seq == local_last + 41
        status, second = http("POST", f"http://127.0.0.1:{port}/tickets", {"service": "shebao"})
        assert (status, second["number"]) == (201, "A002")  # the hall's own numbering carries on
        wait_for(lambda: any(e.type == "ticket.issued" and e.seq > lost.seq
                             for e in probe.events), what="A002 above the lost range")
        assert all(not local_last < seq <= local_last + 40 for seq in probe.seqs())
    finally:
        assert stop_daemon(process) == 0
        probe.close()


def test_an_ack_at_the_top_of_the_range_is_refused_reported_and_tickets_go_on(
        tmp_path: Path, mqtt_broker: MosquittoBroker) -> None:
    """seq 2**53-1 is a valid ack in the contract: taken as a torn tail it moved the seq
    there for good (every ticket then answered 503, over restarts, and no report). Today
    it is another epoch's ack, not this journal's; the top of its own epoch is refused."""
    port = free_port()
    config_path = site_toml(tmp_path, http_port=port, mqtt_port=mqtt_broker.port,
                            telemetry_seconds=1)
    probe = CentralProbe(mqtt_broker.host, mqtt_broker.port, "test-site")
    base = f"http://127.0.0.1:{port}"
    process = start_daemon(config_path)
    try:
        wait_http(port, process)
        assert http("POST", f"{base}/tickets", {"service": "shebao"})[0] == 201
        wait_for(lambda: any(e.type == "ticket.issued" for e in probe.events), what="A001 sent")
        for forged in (2**53 - 1, 2**32 - 1):
            probe.publish_raw(topics.ack_topic("test-site"),
                              mm.encode(mm.Ack(site="test-site", seq=forged)))
        wait_for(lambda: any(e.type == "ack.refused" for e in probe.events), what="the report")
        report = next(e.body for e in probe.events if e.type == "ack.refused")
        assert isinstance(report, mm.AckRefused)
        assert (report.ack, report.count) == (2**32 - 1, 1)
        status, second = http("POST", f"{base}/tickets", {"service": "shebao"})
        assert (status, second["number"]) == (201, "A002")
        assert second["seq"] < 100
    finally:
        assert stop_daemon(process) == 0
    process = start_daemon(config_path)  # and after a restart
    try:
        wait_http(port, process)
        status, third = http("POST", f"{base}/tickets", {"service": "shebao"})
        assert (status, third["number"]) == (201, "A003")
        assert third["seq"] < 100
        wait_for(lambda: max(probe.seqs()) >= third["seq"], what="A003 sent")
        assert not any(e.type == "journal.lost" for e in probe.events)
    finally:
        assert stop_daemon(process) == 0
        probe.close()


def test_an_invalid_file_at_start_runs_the_last_good_config(tmp_path: Path) -> None:
    port = free_port()
    config_path = site_toml(tmp_path, http_port=port)
    process = start_daemon(config_path)
    try:
        wait_http(port, process)
        assert http("POST", f"http://127.0.0.1:{port}/tickets",
                    {"service": "huji"})[1]["number"] == "B001"
    finally:
        assert stop_daemon(process) == 0
    config_path.write_text(config_path.read_text().replace('version = "v1"', 'version = "v2"')
                           .replace("sla_minutes = 30", "sla_minutes = -5"))
    process = start_daemon(config_path, log_path=tmp_path / "second.log")
    try:
        wait_http(port, process)
        status = http("GET", f"http://127.0.0.1:{port}/status")[1]
        assert status["config"] == "v1"
        assert http("POST", f"http://127.0.0.1:{port}/tickets",
                    {"service": "huji"})[1]["number"] == "B002"
    finally:
        assert stop_daemon(process) == 0
    rejected = [b for t, b in journal_types(_copy_ok(tmp_path)) if t == "config.rejected"]
    assert len(rejected) == 1
    assert isinstance(rejected[0], mm.ConfigRejected)
    assert rejected[0].version == "v2"
    assert any("services[0].sla_minutes" in e for e in rejected[0].errors)


def test_telemetry_carries_each_services_latest_predicted_wait(tmp_path: Path) -> None:
    """The dashboards' 预计等候 column: the prediction printed on the last ticket, while fresh."""
    port = free_port()
    config_path = site_toml(tmp_path, http_port=port, services=TIMED_SERVICES)

    async def scenario() -> tuple[mm.Telemetry, int]:
        daemon = EdgeDaemon(config_path, install_signals=False)
        task = asyncio.create_task(daemon.run())
        await asyncio.wait_for(daemon.ready.wait(), 30)
        for _ in range(3):
            status, body = await asyncio.to_thread(
                http, "POST", f"http://127.0.0.1:{port}/tickets", {"service": "shebao"})
            assert status == 201, body
        telemetry = daemon.telemetry()
        daemon.stop()
        await task
        return telemetry, body["wait"]["p50_s"]

    telemetry, printed_p50 = asyncio.run(scenario())
    by_service = {q.service: q for q in telemetry.queues}
    assert by_service["shebao"].wait is not None
    assert by_service["shebao"].wait.p50_s == printed_p50  # what the last ticket said
    assert by_service["huji"].wait is None  # no ticket yet: no number made up

"""One command to many sites over the real broker, edges answering: per-site results, the
per-site command limit, the caller's towns, the audit log (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from central.api_bulk import NOT_FOR_MANY
from central.auth import Role
from central.errors import InvalidRequest
from central.queries import ReadModel
from central.service import CentralService
from central.views import BulkView
from edge.daemon import EdgeDaemon
from firmware_protocols import mqtt_messages as mm
from tests.central.edge_sim import EdgeClient
from tests.central.sim import SimSite
from tests.central.test_api_support import running_app, wait_until
from tests.central.test_service_mqtt import _config, _connected, _run, _until
from tests.edge.sites import site_toml
from tests.servers import MosquittoBroker

NOTICE = mm.ScreenNoticeArgs(text="今日系统维护，暂停取号", screen=None, duration_s=600)


def _answer(edge: EdgeClient, ok: bool, error: str | None = None) -> mm.Cmd:
    command = edge.wait_command()
    edge.send(mm.CmdResult(site=command.site, id=command.id, ok=ok, error=error,
                           ts=command.issued_ts + 300))  # fmt: skip
    return command


def test_a_bulk_command_reaches_every_site_and_collects_each_result(
    mqtt_broker: MosquittoBroker,
    db_url: str,
    engine: Engine,
    sessions: sessionmaker[Session],
    sites: list[str],
) -> None:
    """Three sites of one town: one answers done, one fails, one is offline (its command
    waits in the broker); a fourth call past the per-site limit is refused for that site."""
    done_site, failing_site, offline_site = sites

    async def main() -> None:
        config = _config(mqtt_broker, db_url, command_limit_per_site=2)
        async with CentralService(config, engine=engine) as central:
            await _connected(central)
            edges = [await asyncio.to_thread(EdgeClient, mqtt_broker.host, mqtt_broker.port,
                                             SimSite(site)) for site in (done_site, failing_site)]
            try:
                for edge in edges:  # online (the offline site never connected)
                    edge.send(edge.site.state("online"))
                await central.wait_idle()
                read = ReadModel(central.sessions)
                targets = read.command_targets(towns=["测试镇"])
                assert targets == sorted(sites)
                sent = await central.send_bulk(targets, NOTICE, target={"towns": ["测试镇"]},
                                               ttl_s=600, issued_by="ops-li")  # fmt: skip
                assert (sent.sent, sent.refused) == (3, {})
                received = [await asyncio.to_thread(_answer, edges[0], True),
                            await asyncio.to_thread(_answer, edges[1], False, "screen_offline")]
                assert {c.args for c in received} == {NOTICE}
                await central.wait_idle()

                def counts() -> BulkView:
                    return read.bulk_command(sent.id, central.clock())

                await _until(lambda: counts().counts["pending"] == 1)
                view = counts()
                assert view.counts == {"pending": 1, "succeeded": 1, "failed": 1, "expired": 0,
                                       "refused": 0}  # fmt: skip
                assert not view.done
                rows = {r.site_id: r for r in view.rows}
                assert rows[done_site].state == "succeeded"
                assert (rows[failing_site].state, rows[failing_site].error) == ("failed",
                                                                                "screen_offline")
                assert rows[offline_site].waiting_for_site  # waits for the edge's session
                assert rows[offline_site].name == "测试二村党群服务中心"
                # one state's sites, the first of them, and the counts past the TTL (the
                # database counts: a province's commands are never loaded to count them)
                failed = read.bulk_command(sent.id, central.clock(), state="failed")
                assert [r.site_id for r in failed.rows] == [failing_site]
                assert (failed.matching, failed.counts) == (1, view.counts)
                first = read.bulk_command(sent.id, central.clock(), limit=1)
                assert ([r.site_id for r in first.rows], first.matching) == (
                    [min(sites)], 3)
                later = central.clock() + timedelta(seconds=600)
                assert read.bulk_command(sent.id, later).counts == {
                    "pending": 0, "succeeded": 1, "failed": 1, "expired": 1, "refused": 0}
                expired = read.bulk_command(sent.id, later, state="expired")
                assert [r.site_id for r in expired.rows] == [offline_site]
                assert read.bulk_command(sent.id, central.clock(), state="expired").rows == []
                # the per-site limit (2 here): one more command brings done_site to it, so
                # the next bulk skips that site and goes to the others
                await central.send_command(done_site, mm.ReprintArgs(ticket="Z001"), ttl_s=60)
                again = await central.send_bulk(targets, NOTICE, target={"all": True},
                                                ttl_s=60, issued_by="ops-li")  # fmt: skip
                assert sorted(again.refused) == [done_site]
                assert "指令过于频繁" in again.refused[done_site]
                refused_view = read.bulk_command(again.id, central.clock())
                assert refused_view.counts["refused"] == 1
                assert [r.site_id for r in refused_view.rows if r.state == "refused"] == [
                    done_site]
                only_refused = read.bulk_command(again.id, central.clock(), state="refused")
                assert [(r.site_id, r.command_id) for r in only_refused.rows] == [
                    (done_site, None)]
                assert read.bulk_command(again.id, central.clock(), state="refused",
                                         limit=0).rows == []  # fmt: skip
                with pytest.raises(InvalidRequest, match="state"):
                    read.bulk_command(again.id, central.clock(), state="done")  # type: ignore[arg-type]
            finally:
                for edge in edges:
                    edge.close()

    _run(main())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the edges are the point here
def test_real_edges_run_a_bulk_reload_and_each_result_is_collected(
    mqtt_broker: MosquittoBroker,
    db_url: str,
    engine: Engine,
    sites: list[str],
    tmp_path: Path,
) -> None:
    """Two real edge daemons (``edge.daemon.EdgeDaemon``, journal and uplink) and a third
    site offline: "reload config at v2" reaches all three; the edge whose file is at v2
    applies it, the one still at v1 refuses it with the edge's own reason, the offline one
    waits. The central learns the applied version from the edge's state."""
    offline_site, updated_site, stale_site = sites

    def edge_config(site_id: str, version: str) -> Path:
        directory = tmp_path / site_id
        directory.mkdir()
        path = site_toml(directory, mqtt_port=mqtt_broker.port, version=version)
        path.write_text(path.read_text("utf-8").replace('id = "test-site"', f'id = "{site_id}"'),
                        encoding="utf-8")  # fmt: skip
        return path

    updated_config = edge_config(updated_site, "v1")
    daemons = [EdgeDaemon(updated_config, install_signals=False),
               EdgeDaemon(edge_config(stale_site, "v1"), install_signals=False)]  # fmt: skip
    # the new version is on disk at one site (as an Ansible push leaves it)
    updated_config.write_text(updated_config.read_text("utf-8").replace(
        'version = "v1"', 'version = "v2"', 1), encoding="utf-8")  # fmt: skip

    async def main() -> None:
        async with CentralService(_config(mqtt_broker, db_url), engine=engine) as central:
            await _connected(central)
            tasks = [asyncio.create_task(d.run()) for d in daemons]
            try:
                for daemon in daemons:
                    await daemon.ready.wait()
                await _until(lambda: all(d.uplink is not None and d.uplink.connected
                                         for d in daemons))  # fmt: skip
                read = ReadModel(central.sessions)
                await _until(lambda: all(read.site_state(s).site.online for s in (updated_site,
                                                                       stale_site)))  # fmt: skip
                sent = await central.send_bulk(
                    read.command_targets(towns=["测试镇"]), mm.ReloadConfigArgs(version="v2"),
                    target={"towns": ["测试镇"]}, ttl_s=120, issued_by="ops-li")  # fmt: skip
                assert sent.sent == 3

                def view() -> BulkView:
                    return read.bulk_command(sent.id, central.clock())

                await _until(lambda: view().counts["pending"] == 1, timeout=30)
                rows = {r.site_id: r for r in view().rows}
                assert rows[updated_site].state == "succeeded"
                assert rows[stale_site].state == "failed"
                assert "the file has 'v1', the command expected 'v2'" in (
                    rows[stale_site].error or "")
                assert rows[offline_site].state == "pending"
                assert rows[offline_site].waiting_for_site
                def reported(site_id: str) -> str | None:
                    return read.site_state(site_id).site.reported_config_version

                await _until(lambda: reported(updated_site) == "v2")
                assert reported(stale_site) == "v1"
            finally:
                for daemon in daemons:
                    daemon.stop()
                await asyncio.gather(*tasks, return_exceptions=True)

    _run(main())


def test_bulk_commands_through_the_api_keep_to_the_towns_and_are_audited(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    with running_app(tmp_path, mqtt_broker) as env:
        wait_until(lambda: env.service.mqtt.connected, timeout=20)
        password = env.add_user("sanxiang.ops", Role.OPERATOR, ["三乡镇"])
        env.login_user("sanxiang.ops", password)
        edge = EdgeClient(mqtt_broker.host, mqtt_broker.port, SimSite("zs-sanxiang-01"),
                          client_id=f"bulk-edge-{time.time_ns()}")  # fmt: skip
        try:
            answer = env.client.post("/api/v1/bulk-commands", headers={"X-Requested-With": "x"},
                                     json={"name": "announce", "target": {"all": True},
                                           "args": {"text": "请注意：十分钟后暂停取号",
                                                    "repeat": 1}})  # fmt: skip
            assert answer.status_code == 202, answer.text
            bulk = answer.json()
            towns = {r["town"] for r in bulk["rows"]}
            assert towns == {"三乡镇"}  # "all" is all of this account's towns
            assert bulk["target"] == {"all": True, "within": ["三乡镇"]}
            _answer(edge, True)
            wait_until(lambda: env.client.get(f"/api/v1/bulk-commands/{bulk['id']}").json()
                       ["counts"]["succeeded"] == 1)  # fmt: skip
            # the contract refuses bad args before anything is recorded
            bad = env.client.post("/api/v1/bulk-commands", headers={"X-Requested-With": "x"},
                                  json={"name": "announce", "args": {"text": "x", "repeat": 9},
                                        "target": {"towns": ["三乡镇"]}})  # fmt: skip
            assert bad.status_code == 422
            # one site's kind of command is refused for many, as is stopping the issuing:
            # that is the emergency stop's (it holds the stop until lifted)
            for name, args in (("reprint", {"ticket": "A001"}), ("issuing", {})):
                refused = env.client.post(
                    "/api/v1/bulk-commands", headers={"X-Requested-With": "x"},
                    json={"name": name, "args": args, "target": {"towns": ["三乡镇"]}})
                assert refused.status_code == 422, refused.text
                assert NOT_FOR_MANY[name] in refused.text
            listed = env.client.get("/api/v1/bulk-commands").json()["bulk_commands"]
            assert [b["id"] for b in listed] == [bulk["id"]]
        finally:
            edge.close()
            env.clear_retained("zs-sanxiang-01")
        (entry,) = env.central.read.audit(action="command.bulk")
        assert (entry.actor, entry.role, entry.target) == ("sanxiang.ops", "operator",
                                                           f"bulk:{bulk['id']}")  # fmt: skip
        assert entry.detail["sent"] == len(bulk["rows"])
        assert entry.detail["target"] == {"all": True, "within": ["三乡镇"]}


@pytest.mark.parametrize("target", [{"towns": []}, {"all": True, "towns": ["三乡镇"]}, {}])
def test_a_bulk_target_is_exactly_one_kind(target: dict[str, object]) -> None:
    from pydantic import ValidationError

    from central.api_bulk import BulkTarget

    with pytest.raises(ValidationError, match="exactly one"):
        BulkTarget.model_validate(target)

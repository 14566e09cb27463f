"""Registry management and the audit log through the REST API (admin role), on the real app:
add, change, retire and restore sites, their services, windows and hours; CSV export and
import with a dry-run diff; every change in the audit log, viewable and exportable."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest

from central.auth import Role
from tests.central.sim import SimSite
from tests.central.test_api_support import RunningApp, running_app
from tests.servers import MosquittoBroker

A = Role.ADMIN
NEW = "zs-sanxiang-13"
NEW_SITE: dict[str, Any] = {
    "id": NEW, "name": "三乡新村党群服务中心", "town": "三乡镇", "kind": "village",
    "lat": 22.36, "lon": 113.44, "hours": {"open": "08:00", "close": "12:00"},
    "services": [{"code": "zonghe", "name": "综合受理（一窗通办）", "prefix": "Z", "sla_s": 1800},
                 {"code": "shebao", "name": "社会保障", "prefix": "B", "sla_s": 1800}],
    "windows": [{"number": 1, "services": ["zonghe", "shebao"], "priority": True},
                {"number": 2, "services": ["zonghe"]}],
}  # fmt: skip


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, mqtt_broker: MosquittoBroker
) -> Iterator[RunningApp]:
    with running_app(tmp_path_factory.mktemp("registry"), mqtt_broker) as running:
        yield running


def call(env: RunningApp, method: str, url: str, status: int = 200, role: Role = A,
         **kwargs: Any) -> Any:  # fmt: skip
    response = env.client.request(method, url, headers=env.headers(role), **kwargs)
    assert response.status_code == status, response.text
    return response.json() if response.headers.get("content-type", "").startswith(
        "application/json") else response.text


def test_an_admin_adds_a_site_that_the_inventory_then_hands_ansible(env: RunningApp) -> None:
    detail = call(env, "POST", "/api/v1/sites", 201, json=NEW_SITE)
    assert (detail["id"], detail["health"], detail["registry_revision"]) == (NEW, "unknown", 0)
    assert detail["hours"] == {"open": "08:00", "close": "12:00", "reset": "03:00",
                               "last_ticket": None}  # fmt: skip
    assert [w["number"] for w in detail["windows"]] == [1, 2]
    assert NEW in [s["id"] for s in call(env, "GET", "/api/v1/sites?town=三乡镇")["sites"]]
    hostvars = call(env, "GET", "/api/v1/inventory", role=Role.OPERATOR)["_meta"]["hostvars"]
    assert hostvars[NEW]["edge_hours"] == {"open": "08:00", "close": "12:00", "reset": "03:00"}
    assert hostvars[NEW]["edge_windows"][0] == {
        "number": 1, "services": {"zonghe": 1, "shebao": 1}, "priority": True, "ratio_cap": 3,
        "terminal": 1}  # fmt: skip
    assert "edge_hours" not in hostvars["zs-sanxiang-01"]  # the fleet's default hours
    problem = call(env, "POST", "/api/v1/sites", 409, json=NEW_SITE)
    assert problem["detail"] == f"site {NEW!r} already exists"
    broken = {**NEW_SITE, "id": "zs-sanxiang-14",
              "windows": [{"number": 1, "services": ["huji"]}]}  # fmt: skip
    refused = call(env, "POST", "/api/v1/sites", 422, json=broken)
    assert "zs-sanxiang-14: window 1.services.huji: unknown service" in refused["detail"]
    call(env, "POST", "/api/v1/sites", 403, role=Role.OPERATOR, json=NEW_SITE)


def test_an_admin_changes_fields_hours_services_and_windows(env: RunningApp) -> None:
    site = "zs-sanxiang-03"
    call(env, "PATCH", f"/api/v1/sites/{site}", json={"expected_config_version": "2026.11.1"})
    changed = call(env, "PATCH", f"/api/v1/sites/{site}",
                   json={"name": "三乡鸦岗村党群服务中心（新址）",
                         "hours": {"open": "08:30", "close": "17:30", "last_ticket": "17:00"}})
    assert changed["name"] == "三乡鸦岗村党群服务中心（新址）"
    assert changed["hours"]["last_ticket"] == "17:00"
    assert (changed["expected_config_version"], changed["config_drift"]) == (
        "2026.11.1+r1", True)
    assert call(env, "PATCH", f"/api/v1/sites/{site}", json={"hours": None})["hours"] is None
    call(env, "PATCH", f"/api/v1/sites/{site}", 422, json={"name": None})
    call(env, "PATCH", f"/api/v1/sites/{site}", 422,
         json={"hours": {"open": "12:00", "close": "08:00"}})
    call(env, "PATCH", "/api/v1/sites/zs-nowhere", 404, json={"name": "x"})

    with_huji = call(env, "PUT", f"/api/v1/sites/{site}/windows/3", json={
        "services": ["zonghe"], "name": "3号窗口"})
    assert [w["number"] for w in with_huji["windows"]] == [1, 2, 3]
    huji = {"name": "户籍业务", "prefix": "A", "sla_s": 1800}
    refused = call(env, "PUT", f"/api/v1/sites/{site}/services/huji", 422, json=huji)
    assert "no window serves 'huji'" in refused["detail"]  # say which windows call it
    call(env, "PUT", f"/api/v1/sites/{site}/services/huji", 404, json={**huji, "windows": [9]})
    served = call(env, "PUT", f"/api/v1/sites/{site}/services/huji", json={**huji,
                                                                            "windows": [3]})
    assert next(w for w in served["windows"] if w["number"] == 3)["services"] == [
        "zonghe", "huji"]
    call(env, "PUT", f"/api/v1/sites/{site}/services/shebao", json={
        "name": "社会保障（医保）", "prefix": "B", "sla_s": 2400})
    detail = call(env, "GET", f"/api/v1/sites/{site}")
    shebao = next(s for s in detail["services"] if s["code"] == "shebao")
    assert (shebao["name"], shebao["sla_s"]) == ("社会保障（医保）", 2400)
    call(env, "DELETE", f"/api/v1/sites/{site}/windows/3", 422)  # the only one calling huji
    # A service removed leaves the windows that called it ...
    gone = call(env, "DELETE", f"/api/v1/sites/{site}/services/huji")
    assert next(w for w in gone["windows"] if w["number"] == 3)["services"] == ["zonghe"]
    # ... but not a window with nothing left to call.
    alone = call(env, "DELETE", f"/api/v1/sites/{site}/services/zonghe", 422)
    assert "window 3.services: a window must serve at least one service" in alone["detail"]
    call(env, "DELETE", f"/api/v1/sites/{site}/services/huji", 404)
    call(env, "DELETE", f"/api/v1/sites/{site}/windows/3")
    call(env, "DELETE", f"/api/v1/sites/{site}/windows/3", 404)
    assert call(env, "GET", f"/api/v1/sites/{site}")["registry_revision"] == 7
    entries = call(env, "GET", f"/api/v1/audit?target={site}")["entries"]
    assert [e["action"] for e in entries] == ["site.update"] * 7 + ["site.expected_config"]
    first = entries[-1]
    assert (first["actor"], first["role"], first["source"]) == ("test admin", "admin",
                                                                "testclient")  # fmt: skip
    assert first["actor_id"] == env.central.tokens.verify(env.tokens[A]).id


def test_retiring_takes_a_site_off_the_fleet_page_and_keeps_its_page(env: RunningApp) -> None:
    site = SimSite("zs-sanxiang-04")
    env.feed(site.state(), site.telemetry())
    refused = call(env, "POST", "/api/v1/sites/zs-sanxiang-04/retire", 409)
    assert "is online" in refused["detail"]
    retired = call(env, "POST", "/api/v1/sites/zs-sanxiang-04/retire?force=true")
    assert (retired["was_online"], retired["detail"]["online"]) == (True, False)
    assert "zs-sanxiang-04" not in [s["id"] for s in call(env, "GET", "/api/v1/sites")["sites"]]
    assert [s["id"] for s in call(env, "GET", "/api/v1/sites?retired=true")["sites"]] == [
        "zs-sanxiang-04"]
    env.login(Role.VIEWER)
    try:
        assert 'data-site="zs-sanxiang-04"' not in env.client.get("/").text
        page = env.client.get("/sites/zs-sanxiang-04")
        assert page.status_code == 200
        assert "已撤销，不在站点总览中" in page.text
        assert 'id="retired"' not in env.client.get("/sites/zs-sanxiang-05").text
    finally:
        env.client.cookies.clear()
    call(env, "POST", "/api/v1/sites/zs-sanxiang-04/restore")
    call(env, "POST", "/api/v1/sites/zs-sanxiang-04/restore", 409)
    assert "zs-sanxiang-04" in [s["id"] for s in call(env, "GET", "/api/v1/sites")["sites"]]
    env.clear_retained("zs-sanxiang-04")


def test_a_csv_import_is_a_dry_run_unless_asked_and_refuses_whole(env: RunningApp) -> None:
    sites_csv = call(env, "GET", "/api/v1/registry/sites.csv", role=Role.OPERATOR)
    assert sites_csv.splitlines()[0] == ("id,name,town,kind,lat,lon,open,close,last_ticket,"
                                         "reset,status,revision")  # fmt: skip
    windows_csv = call(env, "GET", "/api/v1/registry/windows.csv", role=Role.OPERATOR)
    assert "zs-sanxiang-05,1,zonghe shebao minzheng,1号窗口,no" in windows_csv
    batch = {"sites": "id,name,town,kind\nzs-sanxiang-15,三乡桥头村党群服务中心,三乡镇,village\n",
             "services": "site,code,name,prefix,sla_s\n"
                         "zs-sanxiang-15,zonghe,综合受理（一窗通办）,Z,1800\n",
             "windows": "site,number,services\nzs-sanxiang-15,1,zonghe\n"
                        "zs-sanxiang-05,3,zonghe shebao minzheng\n"}  # fmt: skip
    plan = call(env, "POST", "/api/v1/registry/import", json=batch)
    assert (plan["applied"], plan["ok"]) == (False, True)
    assert plan["counts"] == {"added": 1, "changed": 1, "retired": 0, "restored": 0,
                              "unchanged": 0}  # fmt: skip
    assert plan["changed"][0]["windows"] == {"added": [
        {"number": 3, "services": ["zonghe", "shebao", "minzheng"], "name": None,
         "priority": False}],
        "removed": [1]}  # fmt: skip
    call(env, "GET", "/api/v1/sites/zs-sanxiang-15", 404)  # a dry run changes nothing
    bad = {**batch, "windows": batch["windows"] + "zs-sanxiang-15,2,huji\n"}
    shown = call(env, "POST", "/api/v1/registry/import", json=bad)
    assert shown["ok"] is False
    assert shown["problems"] == ["sites.csv:2 zs-sanxiang-15: window 2.services.huji: "
                                 "unknown service"]  # fmt: skip
    refused = call(env, "POST", "/api/v1/registry/import", 422, json={**bad, "dry_run": False})
    assert "window 2.services.huji" in refused["detail"]
    call(env, "GET", "/api/v1/sites/zs-sanxiang-15", 404)
    applied = call(env, "POST", "/api/v1/registry/import", json={**batch, "dry_run": False})
    assert applied["applied"] is True
    assert [w["number"] for w in call(env, "GET", "/api/v1/sites/zs-sanxiang-05")["windows"]] \
        == [3]
    assert call(env, "GET", "/api/v1/sites/zs-sanxiang-15")["services"][0]["code"] == "zonghe"
    [entry] = call(env, "GET", "/api/v1/audit?action=registry.import")["entries"]
    assert entry["detail"]["added"] == 1


def test_the_audit_log_names_who_what_when_and_from_where(env: RunningApp) -> None:
    created = call(env, "POST", "/api/v1/tokens", 201, json={"role": "viewer", "name": "王科长"})
    env.client.delete(f"/api/v1/tokens/{created['id']}", headers=env.headers(A))
    site = SimSite("zs-sanxiang-06")
    env.feed(site.state(), site.telemetry(outbox=900))
    [alarm] = call(env, "GET", "/api/v1/alarms?site=zs-sanxiang-06")["alarms"]
    call(env, "POST", f"/api/v1/alarms/{alarm['id']}/ack", role=Role.OPERATOR)
    call(env, "POST", "/api/v1/sites/zs-sanxiang-06/commands", 202, role=Role.OPERATOR,
         json={"name": "announce", "args": {"text": "请稍候", "repeat": 1}})
    env.clear_retained("zs-sanxiang-06")
    entries = call(env, "GET", "/api/v1/audit?limit=4")["entries"]
    assert [(e["action"], e["target"], e["actor"]) for e in entries] == [
        ("command.send", "zs-sanxiang-06", "test operator"),
        ("alarm.ack", f"alarm:{alarm['id']}", "test operator"),
        ("token.revoke", f"token:{created['id']}", "test admin"),
        ("token.create", f"token:{created['id']}", "test admin"),
    ]
    assert entries[3]["detail"] == {"role": "viewer", "name": "王科长", "towns": None}
    assert entries[0]["detail"]["args"] == {"text": "请稍候", "repeat": 1}
    sites_only = call(env, "GET", "/api/v1/audit?action=site.")["entries"]
    assert sites_only
    assert {e["action"].split(".")[0] for e in sites_only} == {"site"}
    text = call(env, "GET", "/api/v1/audit.csv?action=token.create")
    assert text.startswith("\ufeffid,at,actor,actor_id,role,source,action,target,detail")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert [(r["action"], r["target"], r["source"]) for r in rows] == [
        ("token.create", f"token:{created['id']}", "testclient")]
    assert '"name": "王科长"' in rows[0]["detail"]
    call(env, "GET", "/api/v1/audit?since=2026-11-23T08:00:00", 422)
    assert call(env, "GET", "/api/v1/audit?since=2999-01-01T00:00:00%2B08:00")["entries"] == []
    call(env, "GET", "/api/v1/audit", 403, role=Role.OPERATOR)

"""Releases and rollouts through the REST API and the versions page, on the real app: the
software a site runs comes from its edge's ``state`` message through the real ingest."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from central.auth import Role
from tests.central.sim import SimSite
from tests.central.test_api_support import RunningApp, running_app
from tests.central.test_rollout import manifest
from tests.servers import MosquittoBroker

A = Role.ADMIN
CANARY, OTHER = "zs-sanxiang-01", "zs-sanxiang-02"


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, mqtt_broker: MosquittoBroker
) -> Iterator[RunningApp]:
    with running_app(tmp_path_factory.mktemp("releases"), mqtt_broker) as running:
        yield running


def call(env: RunningApp, method: str, url: str, status: int = 200, role: Role = A,
         **kwargs: Any) -> Any:  # fmt: skip
    response = env.client.request(method, url, headers=env.headers(role), **kwargs)
    assert response.status_code == status, response.text
    return response.json()


def online_on(env: RunningApp, site_id: str, software: str) -> None:
    """The site's edge says it is online, running ``software``."""
    state = SimSite(site_id).state()
    env.feed(msgspec.structs.replace(state, software=software))


def test_a_release_is_rolled_out_through_the_api(env: RunningApp) -> None:
    for version in ("0.1.0", "0.1.1"):
        registered = call(env, "POST", "/api/v1/releases", 201, json=manifest(version))
        assert registered["software"] == f"onedoor-{version}"
    call(env, "POST", "/api/v1/releases", 403, role=Role.OPERATOR, json=manifest("0.1.2"))
    refused = call(env, "POST", "/api/v1/releases", 422, content=b"{not json")
    assert refused["detail"].startswith("not JSON")
    call(env, "POST", "/api/v1/releases", 409, json=manifest("0.1.1", sha="c" * 64))
    assert call(env, "GET", "/api/v1/releases/0.9.9", 404)["detail"]
    for site in (CANARY, OTHER):
        online_on(env, site, "onedoor-0.1.0")
        call(env, "PUT", f"/api/v1/sites/{site}/release", json={"version": "0.1.0"})
    call(env, "PUT", "/api/v1/sites/zs-nowhere/release", 404, json={"version": "0.1.0"})
    assert call(env, "GET", "/api/v1/releases/0.1.0", role=Role.VIEWER)["sites_running"] == 2

    rollout = call(env, "POST", "/api/v1/rollouts", 201,
                   json={"release": "0.1.1", "sites": [CANARY, OTHER], "canary": [CANARY]})
    rid = rollout["id"]
    plan = call(env, "GET", f"/api/v1/rollouts/{rid}/plan", role=Role.OPERATOR)
    assert plan["batches"] == [[CANARY], [OTHER]]
    assert call(env, "GET", f"/api/v1/rollouts/{rid}/gate?wave=1", role=Role.OPERATOR) == {
        "go": False, "reason": f"earlier waves are not finished: {CANARY} pending"}
    call(env, "POST", f"/api/v1/rollouts/{rid}/sites/{CANARY}",
         json={"step": "upgrading", "from_release": "0.1.0"})
    online_on(env, CANARY, "onedoor-0.1.1")
    done = call(env, "POST", f"/api/v1/rollouts/{rid}/sites/{CANARY}", json={"step": "upgraded"})
    assert (done["site"]["step"], done["rollout_status"]) == ("upgraded", "running")
    assert call(env, "GET", f"/api/v1/rollouts/{rid}/gate?wave=1", role=Role.OPERATOR)["go"]

    call(env, "POST", f"/api/v1/rollouts/{rid}/sites/{OTHER}",
         json={"step": "upgrading", "from_release": "0.1.0"})
    # Its health check failed: the playbook put 0.1.0 back; past max_failures 0 it stops.
    back = call(env, "POST", f"/api/v1/rollouts/{rid}/sites/{OTHER}",
                json={"step": "rolled_back", "detail": "健康检查失败 health: not connected"})
    assert back["rollout_status"] == "stopped"
    assert back["stopped_reason"] == (
        f"1个站点失败，超过上限0 1 site(s) failed, more than 0 allowed: {OTHER} rolled_back")
    versions = call(env, "GET", "/api/v1/fleet/versions?town=三乡镇", role=Role.VIEWER)
    rows = {row["site"]: row for row in versions["rows"]}
    assert (rows[CANARY]["expected_release"], rows[CANARY]["software_drift"]) == ("0.1.1", False)
    assert (rows[OTHER]["expected_release"], rows[OTHER]["rollout_step"]) == (
        "0.1.0", "rolled_back")
    call(env, "POST", "/api/v1/rollouts", 409, json={"release": "0.1.1"})

    # The page shows it in Chinese first, and a site whose edge runs other software as drift.
    online_on(env, OTHER, "onedoor-0.0.9")
    env.login(Role.VIEWER)
    page = env.client.get("/versions?town=三乡镇&drift=true")
    assert page.status_code == 200
    html = page.text
    assert "版本与升级" in html
    assert "已暂停（超过失败上限）" in html
    assert f"1 site(s) failed, more than 0 allowed: {OTHER} rolled_back" in html
    assert f'id="v-{OTHER}"' in html
    assert f'id="v-{CANARY}"' not in html  # drift only: the canary runs what it should
    assert '<td class="software drift">onedoor-0.0.9</td>' in html
    assert "已回滚" in html
    # The language switch keeps the page's filters (it used to drop them).
    assert 'href="?town=%E4%B8%89%E4%B9%A1%E9%95%87&amp;drift=true&amp;lang=en"' in html
    english = env.client.get("/versions?lang=en").text
    assert "stopped (past its error threshold)" in english
    assert 'class="lang" href="?lang=zh"' in english

    resumed = call(env, "POST", f"/api/v1/rollouts/{rid}/resume", json={"retry_failed": True})
    assert (resumed["status"], resumed["counts"]["pending"]) == ("running", 1)
    assert call(env, "POST", f"/api/v1/rollouts/{rid}/cancel")["status"] == "cancelled"
    listed = call(env, "GET", "/api/v1/rollouts", role=Role.VIEWER)["rollouts"]
    assert [r["id"] for r in listed] == [rid]

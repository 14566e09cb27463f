"""The versions page (版本与升级) in Debian's headless Chromium against uvicorn: a rollout
stopped by its canary, a site running other software than it should (drift), the town
and drift filters, the English switch."""

from __future__ import annotations

import msgspec
from playwright.sync_api import Browser

from central.auth import Role
from tests.central.browser.test_dashboards import (  # noqa: F401 - the module's fixtures
    LiveServer,
    browser,
    call,
    live,
    new_page,
    shot,
)
from tests.central.sim import SimSite
from tests.central.test_rollout import manifest

CANARY, OTHER, ELSEWHERE = "zs-sanxiang-01", "zs-sanxiang-02", "zs-shiqi-01"


def runs(server: LiveServer, site_id: str, software: str) -> None:
    server.env.feed(msgspec.structs.replace(SimSite(site_id).state(), software=software))


def test_the_versions_page_shows_drift_and_a_stopped_rollout(
    browser: Browser, live: LiveServer,  # noqa: F811 - the fixtures imported above
) -> None:
    for version in ("0.1.0", "0.1.1"):
        call(live, "POST", "/api/v1/releases", manifest(version))
    for site in (CANARY, OTHER, ELSEWHERE):
        runs(live, site, "onedoor-0.1.0")
        call(live, "PUT", f"/api/v1/sites/{site}/release", {"version": "0.1.0"})
    rollout = call(live, "POST", "/api/v1/rollouts",
                   {"release": "0.1.1", "sites": [CANARY, OTHER], "canary": [CANARY]})["id"]
    call(live, "POST", f"/api/v1/rollouts/{rollout}/sites/{CANARY}",
         {"step": "upgrading", "from_release": "0.1.0"})
    call(live, "POST", f"/api/v1/rollouts/{rollout}/sites/{CANARY}",
         {"step": "rolled_back", "detail": "不健康 unhealthy"})
    runs(live, ELSEWHERE, "onedoor-0.0.9")  # a Pi put back from an old card image

    page = new_page(browser, live, Role.VIEWER)
    page.click("header nav a[href='/versions']")
    page.wait_for_selector("#versions")
    assert page.locator("h1").inner_text() == "版本与升级"
    stopped = page.locator(f"#rollout-{rollout}")
    assert "已暂停（超过失败上限）" in stopped.inner_text()
    assert f"the canary {CANARY} rolled_back" in stopped.inner_text()
    assert page.locator('[data-count="software_drift"]').inner_text() == "1"
    assert "未上报版本" in page.locator("#version-counts").inner_text()  # the sites never seen
    assert page.locator(f"#v-{ELSEWHERE} td.software.drift").inner_text() == "onedoor-0.0.9"
    assert page.locator(f"#v-{CANARY} td.software.drift").count() == 0
    assert "已回滚" in page.locator(f"#v-{CANARY}").inner_text()
    shot(page, "versions")

    page.check("input[name=drift]")
    page.click(".filters button[type=submit]")
    page.wait_for_url("**/versions?*drift=true*")
    assert page.locator("#versions tbody tr").count() >= 1
    assert page.locator(f"#v-{ELSEWHERE}").count() == 1
    assert page.locator(f"#v-{CANARY}").count() == 0
    page.select_option("select[name=town]", "三乡镇")
    page.uncheck("input[name=drift]")
    page.click(".filters button[type=submit]")
    page.wait_for_selector(f"#v-{OTHER}")
    assert page.locator(f"#v-{ELSEWHERE}").count() == 0
    page.click("a.lang")
    assert "stopped (past its error threshold)" in page.locator(f"#rollout-{rollout}").inner_text()
    page.context.close()

"""A province-sized fleet in a real headless Chromium: towns aggregated, drill down, live.

3,000 synthetic sites (150 towns of 20) on SQLite behind the read-only app on a
real uvicorn server; live changes are written to the database, which is what
the live hub polls whether ingest runs in this process or in another replica.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from central.auth import Role, TokenStore
from central.db import make_engine, migrate, session_factory
from central.models import Alarm, AlarmType, Severity, Site
from onedoor.bench.central_web import log_in, serve_dashboards, synthetic_fleet
from tests.central.browser.test_dashboards import CHROMIUM, LAUNCH_ARGS, shot

if shutil.which(CHROMIUM) is None:  # pragma: no cover - CI installs Debian's chromium
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)


class Province:
    def __init__(self, url: str, token: str, sessions: sessionmaker[Session]) -> None:
        self.url = url
        self.token = token
        self.sessions = sessions


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Province]:
    db_url = f"sqlite:///{tmp_path_factory.mktemp('province') / 'central.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    synthetic_fleet(sessions, 3000)
    _, token = TokenStore(sessions).create(Role.VIEWER, "province manager")
    with serve_dashboards(db_url, live_interval_s=0.3) as url:
        yield Province(url, token, sessions)
    engine.dispose()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


def _logged_in(chromium: Browser, province: Province) -> Page:
    context = chromium.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(15_000)
    log_in(page, province.url, province.token)
    return page


def test_drill_down_from_towns_to_sites_and_back_with_live_updates(
    chromium: Browser, province: Province
) -> None:
    page = _logged_in(chromium, province)
    assert page.locator("a.t.town").count() == 150  # one tile per town
    assert page.locator("a.t[id^='t-']").count() == 0  # and no site tile
    page.wait_for_selector("#live.on")
    shot(page, "province")

    page.click("a.t.town[data-town='第0077镇']")  # drill down
    page.wait_for_url("**town=**")
    assert page.locator("a.t[id^='t-']").count() == 20
    assert page.locator("#t-p-0076-05.ok").count() == 1
    page.wait_for_selector("#live.on")
    with province.sessions.begin() as session:  # a village of this town goes offline
        session.execute(update(Site).where(Site.id == "p-0076-05").values(online=False))
    page.wait_for_selector("#t-p-0076-05.offline")
    shot(page, "province_town")

    page.click("#all-towns")  # back up; a village of another town raises an alarm
    page.wait_for_selector("a.t.town[data-town='第0003镇']")
    page.wait_for_selector("#live.on")
    town = page.locator("a.t.town[data-town='第0003镇']")
    assert "alarm" not in (town.get_attribute("class") or "")
    now = datetime.now(UTC)
    with province.sessions.begin() as session:
        session.add(Alarm(site_id="p-0002-07", device="printer-1", type=AlarmType.DEVICE_FAULT,
                          severity=Severity.MAJOR, message="打印机缺纸 / printer paper out",
                          detail={}, raised_at=now, updated_at=now, occurrences=1))  # fmt: skip
    page.wait_for_selector("a.t.town.alarm[data-town='第0003镇']")
    assert town.locator('[data-n="alarm"]').inner_text() == "1"
    assert page.evaluate("Number(document.body.dataset.liveLagMs)") >= 0
    page.context.close()


def test_a_search_below_the_town_threshold_lists_sites(
    chromium: Browser, province: Province
) -> None:
    page = _logged_in(chromium, province)
    page.fill("input[name=q]", "第77镇")
    page.click(".filters button[type=submit]")
    assert page.locator("a.t[id^='t-']").count() == 20
    assert page.locator("a.t.town").count() == 0
    page.context.close()

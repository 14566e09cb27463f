"""好差评 pages in a real headless Chromium against the real app on uvicorn, fed over the
real broker: a 差评 sent by an edge appears as a case, an operator contacts and appeals in
the browser, another admin upholds the appeal; the ranking, the statistics per window by
month, and the definitions page."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, sync_playwright

from central.audit import Actor
from central.auth import Role
from central.models import BadRatingCase
from central.ratings import RatingRoster
from central.stats import BUSINESS_TZ
from firmware_protocols import mqtt_messages as mm
from onedoor.broker import free_port
from tests.central.browser.test_dashboards import CHROMIUM, LAUNCH_ARGS, LiveServer, shot
from tests.central.sim import SimSite
from tests.central.test_api_support import RunningApp, build_app, wait_until
from tests.servers import MosquittoBroker

if shutil.which(CHROMIUM) is None:  # pragma: no cover - CI installs Debian's chromium
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

SITE = "zs-nanlang-01"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory,
         mqtt_broker: MosquittoBroker) -> Iterator[LiveServer]:  # fmt: skip
    app, service = build_app(tmp_path_factory.mktemp("ratings-browser") / "central.db",
                             mqtt_broker)
    central = app.state.central
    tokens = {role: central.tokens.create(role, f"browser {role.value}")[1] for role in Role}
    env = RunningApp(app, TestClient(app), central, service, tokens, mqtt_broker)
    with LiveServer(env, free_port()) as server:
        wait_until(lambda: service.mqtt.connected, timeout=20)
        yield server


@pytest.fixture(scope="module")
def browser(live: LiveServer) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


def open_as(browser: Browser, live: LiveServer, token: str) -> Page:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live.url}/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/")
    return page


def step(page: Page, action: str, note: str) -> None:
    page.fill("#case-step textarea[name=note]", note)
    with page.expect_navigation():
        page.click(f"#case-step button[data-action={action}]")


def test_a_bad_rating_is_handled_in_the_browser(browser: Browser, live: LiveServer) -> None:
    env = live.env
    RatingRoster(env.central.sessions).set_staff(SITE, [("zs0231", "张丽")],
                                                 actor=Actor.command_line(), now=env.central.now())
    now_ms = int(time.time() * 1000)
    site = SimSite(SITE, clock_ms=now_ms - 60_000)
    case = mm.CaseInfo(no="442000-2026-000888", item_code=None, item_name="社保卡补办",
                       department=None, department_name=None, source="keypad")
    issued = mm.TicketIssued(ticket="A001", service="zonghe", ticket_class="normal",
                             booked_ts=None, channel="kiosk", people_ahead=0, wait=None)
    env.publish(site.state(), *(site.event(body) for body in (
        mm.WindowSignedIn(window=2, staff="zs0231"), issued,
        mm.TicketCalled(ticket="A001", window=2),
        mm.TicketDone(ticket="A001", window=2, served_s=240),
        mm.RatingGiven(ticket="A001", window=2, staff="zs0231", value=1, case=case,
                       reasons=["attitude"]))))  # fmt: skip

    def case_id() -> int | None:
        with env.central.sessions() as session:
            found = session.query(BadRatingCase).filter_by(site_id=SITE).one_or_none()
            return None if found is None else found.id

    wait_until(lambda: case_id() is not None, timeout=20)
    number = case_id()
    operator = open_as(browser, live, env.tokens[Role.OPERATOR])
    operator.click("nav a[href='/ratings']")
    row = operator.locator(f"#cases tr[data-case='{number}']")
    assert "张丽" in row.inner_text()
    assert "非常不满意" in row.inner_text()
    assert "服务态度不好" in row.inner_text()
    shot(operator, "ratings")
    row.locator("a").click()
    operator.wait_for_selector("#case-step")
    assert operator.locator("#case-status").inner_text().startswith("待回访")
    operator.click("#case-step button[data-action=contact]")  # no note: refused in the page
    assert operator.locator("#step-error").is_visible()
    step(operator, "contact", "已电话回访，群众反映窗口态度生硬")
    assert operator.locator("#case-status").inner_text().startswith("已回访")
    assert operator.locator("#case-step button[data-action=contact]").count() == 0
    step(operator, "appeal", "监控显示群众误按")
    assert operator.locator("#case-status").inner_text() == "申诉审核中"
    assert operator.locator("button[data-action=uphold]").count() == 0  # operators cannot
    assert "群众误按" in operator.locator("#notes").inner_text()
    shot(operator, "rating_case")
    operator.context.close()

    admin = open_as(browser, live, env.tokens[Role.ADMIN])
    admin.goto(f"{live.url}/ratings/cases/{number}")
    step(admin, "uphold", "核实为误评")
    assert admin.locator("#case-status").inner_text() == "申诉成立，差评撤销"
    assert admin.locator("#case-step button[data-action=uphold]").count() == 0

    # The month's ranking and the statistics per window: the revoked 差评 counts nowhere.
    month = f"{dt.datetime.now(BUSINESS_TZ):%Y-%m}"
    admin.goto(f"{live.url}/ratings/ranking?month={month}&scope=staff")
    ranking = admin.locator("#ranking").inner_text()
    assert "张丽（" in ranking
    shot(admin, "ranking")
    admin.goto(f"{live.url}/statistics")
    admin.select_option("select[name=scope]", "window")
    admin.select_option("select[name=period]", "month")
    admin.fill("input[name=start]", f"{month}-01")
    admin.click("form#stat-form button[type=submit]")
    admin.wait_for_selector("#stats")
    assert " 2号窗口" in admin.locator("#stats").inner_text()
    assert month in admin.locator("#stats").inner_text()
    admin.click("#definitions-link")
    admin.wait_for_selector("#definitions table")
    assert "过号数" in admin.locator("#definitions").inner_text()
    shot(admin, "definitions")
    admin.goto(f"{live.url}/ratings")
    with admin.expect_download() as download_info:
        admin.click("#ratings-csv")
    text = Path(download_info.value.path()).read_text("utf-8-sig")
    assert text.startswith("评价编号 (evaluationId),办件编号 (projectNo),")
    assert "442000-2026-000888" in text
    admin.context.close()

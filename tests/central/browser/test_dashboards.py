"""The dashboards in a real headless Chromium (Debian's), against a real uvicorn server.

Log in, open every page, watch live updates arrive after a real MQTT publish,
acknowledge an alarm, download the statistics CSV, send a command to a town and
follow each site's result, make a town's account and use it, read and export the
audit log. Screenshots go to
``tests/artifacts/`` (CI keeps them; not committed).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, sync_playwright

from central.auth import Role
from central.models import Alarm
from central.stats import BUSINESS_TZ
from central.web import people
from firmware_protocols import mqtt_messages as mm
from onedoor.broker import free_port, wait_for_port
from tests.central.sim import SimSite
from tests.central.test_api_support import RunningApp, build_app, wait_until
from tests.servers import MosquittoBroker

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if shutil.which(CHROMIUM) is None:  # pragma: no cover - CI installs Debian's chromium
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)


class LiveServer:
    """uvicorn serving the real app in a thread, on a free port."""

    def __init__(self, env: RunningApp, port: int) -> None:
        self.env = env
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            env.app, host="127.0.0.1", port=port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_for_port("127.0.0.1", int(self.url.rsplit(":", 1)[1]))
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, mqtt_broker: MosquittoBroker
) -> Iterator[LiveServer]:
    app, service = build_app(tmp_path_factory.mktemp("browser") / "central.db", mqtt_broker)
    central = app.state.central
    tokens = {role: central.tokens.create(role, f"browser {role.value}")[1] for role in Role}
    # The TestClient stays unused (never entered): here uvicorn serves the app to chromium.
    env = RunningApp(app, TestClient(app), central, service, tokens, mqtt_broker)
    with LiveServer(env, free_port()) as server:
        wait_until(lambda: service.mqtt.connected, timeout=20)
        yield server
    env.clear_retained("zs-shiqi-01")


@pytest.fixture(scope="module")
def browser(live: LiveServer) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


def new_page(browser: Browser, live: LiveServer, role: Role) -> Page:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live.url}/login")
    page.fill("input[name=token]", live.env.tokens[role])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/")
    return page


def call(server: LiveServer, method: str, path: str, body: Any) -> Any:
    """The JSON API as an admin's script would call it."""
    request = urllib.request.Request(
        f"{server.url}{path}", method=method, data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {server.env.tokens[Role.ADMIN]}",
                 "Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.load(response)


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"central_{name}.png"), full_page=False)


def test_login_page_refuses_a_bad_token(browser: Browser, live: LiveServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live.url}/")
    assert "/login" in page.url
    shot(page, "login")
    page.fill("input[name=token]", "od_00000000_" + "x" * 43)
    page.click("button[type=submit]")
    assert page.locator("p.error").inner_text() == "令牌无效或已撤销"
    context.close()


def test_fleet_overview_updates_live_from_mqtt(browser: Browser, live: LiveServer) -> None:
    page = new_page(browser, live, Role.VIEWER)
    assert page.locator(".fleet a.t").count() == 303
    assert page.locator("section.town").count() == 25
    tile = page.locator("#t-zs-shiqi-01")
    assert "unknown" in (tile.get_attribute("class") or "")
    page.wait_for_selector("#live.on")  # the SSE stream said hello
    site = SimSite("zs-shiqi-01")
    live.env.publish(site.state(), site.telemetry(waiting=4))  # a real edge would do just this
    page.wait_for_selector("#t-zs-shiqi-01.ok")
    assert page.locator('[data-count="online"]').inner_text() != "0"
    # It should run 0.1.1 but reports 0.1.0: the marker and the count come live.
    assert page.locator('[data-count="software_drift"]').inner_text() == "0"
    call(live, "PUT", "/api/v1/sites/zs-shiqi-01/release", {"version": "0.1.1"})
    mark = page.wait_for_selector("#t-zs-shiqi-01 i.drift")
    assert mark.get_attribute("title") == "软件版本不一致：运行 0.1.0，应为 onedoor-0.1.1"
    page.wait_for_function(
        "document.querySelector('[data-count=\"software_drift\"]').textContent === '1'")
    assert page.locator("#drift-software").inner_text() == "1 软件版本不一致"
    assert page.locator("#drift-config").inner_text() == "0 配置版本不一致"
    shot(page, "fleet")
    page.click("#drift-software")  # the count leads to the filtered list
    page.wait_for_url("**/?drift=software")
    assert page.locator(".fleet a.t").count() == 1
    assert page.locator("#t-zs-shiqi-01 i.drift").count() == 1
    assert page.locator("select[name=drift]").input_value() == "software"
    shot(page, "fleet_drift")
    page.goto(f"{live.url}/")
    page.wait_for_selector("#live.on")
    call(live, "PUT", "/api/v1/sites/zs-shiqi-01/release", {"version": None})
    page.wait_for_selector("#t-zs-shiqi-01 i.drift", state="detached")  # in step again
    page.fill("input[name=q]", "石岐")
    page.click(".filters button[type=submit]")
    assert 0 < page.locator(".fleet a.t").count() < 303
    page.click("a.lang")
    assert page.locator("header nav a").first.inner_text() == "Fleet"
    page.context.close()


def test_site_page_shows_charts_and_live_queue(browser: Browser, live: LiveServer) -> None:
    site = SimSite("zs-shiqi-02")
    today9 = dt.datetime.now(BUSINESS_TZ).replace(hour=9, minute=0, second=0, microsecond=0)
    start_ms = int(today9.timestamp() * 1000)

    def event(seq: int, at_s: int, body: mm.EventBody) -> mm.Event:
        return mm.Event(site=site.site_id, seq=seq, id=uuid.uuid4(), ts=start_ms + at_s * 1000,
                        clock_synced=True, body=body)  # fmt: skip

    issued = [
        event(i + 1, i * 300, mm.TicketIssued(ticket=f"Z{i + 1:03d}", service="zonghe",
              ticket_class="normal", booked_ts=None, channel="kiosk", people_ahead=i, wait=None))
        for i in range(6)
    ]  # fmt: skip
    recent = SimSite(site.site_id, clock_ms=int(time.time() * 1000) - 20 * 60_000)
    live.env.feed(
        site.state(),
        site.telemetry(waiting=2),
        *(recent.telemetry(waiting=w) for w in (3, 8, 5)),  # the last hours, for the chart
        *issued,
        event(7, 200, mm.TicketCalled(ticket="Z001", window=1)),
        event(8, 700, mm.TicketDone(ticket="Z001", window=1, served_s=500)),
        event(9, 701, mm.RatingGiven(ticket="Z001", window=1, staff="w1", value=5)),
    )
    page = new_page(browser, live, Role.VIEWER)
    page.goto(f"{live.url}/sites/zs-shiqi-02")
    page.wait_for_selector("#chart-flow .uplot canvas")
    assert page.locator(".charts .uplot").count() == 4
    telemetry = json.loads(page.locator("#telemetry-data").inner_text())
    zonghe = next(s for s in telemetry["series"] if s["label"].startswith("综合受理"))
    assert [v for v in zonghe["values"] if v is not None] == [3, 8, 5]
    assert "综合受理" in page.locator("#chart-telemetry .u-legend").inner_text()
    assert page.locator("#windows tbody tr").count() >= 1
    assert page.locator("#events tbody tr").count() == 9
    page.wait_for_function("document.body.dataset.liveUpdates >= 1")
    live.env.publish(recent.telemetry(waiting=17, oldest_wait_s=900))
    page.wait_for_function(
        "document.querySelector('#queues').innerText.includes('17')", timeout=15_000
    )
    shot(page, "site")
    page.context.close()


def test_acknowledge_an_alarm_in_the_browser(browser: Browser, live: LiveServer) -> None:
    site = SimSite("zs-shiqi-03")
    live.env.feed(
        site.state(),
        site.event(
            mm.DeviceStatus(device="printer-1", kind="printer", status="fault", detail="paper_out")
        ),
    )
    with live.env.central.sessions() as session:
        alarm = session.query(Alarm).filter_by(site_id="zs-shiqi-03", device="printer-1").one()
    viewer = new_page(browser, live, Role.VIEWER)
    viewer.goto(f"{live.url}/alarms")
    assert viewer.locator(f"#alarm-{alarm.id}").count() == 1
    assert viewer.locator(f"#alarm-{alarm.id} button[data-ack]").count() == 0  # viewers cannot
    viewer.context.close()
    page = new_page(browser, live, Role.OPERATOR)
    page.goto(f"{live.url}/alarms")
    page.wait_for_function("document.body.dataset.liveUpdates >= 1")  # stream connected
    other = SimSite("zs-shiqi-05")
    live.env.feed(
        other.state(),
        other.event(mm.DeviceStatus(device="led-1", kind="led", status="fault", detail="silent")),
    )
    page.wait_for_selector("#alarms tr:has-text('led-1')")  # arrived live, no reload
    page.click(f"#alarm-{alarm.id} button[data-ack]")
    page.wait_for_selector(f"#alarm-{alarm.id} td.ack.acked")
    assert "browser operator" in page.locator(f"#alarm-{alarm.id} td.ack").inner_text()
    shot(page, "alarms")
    with live.env.central.sessions() as session:
        stored = session.get(Alarm, alarm.id)
        assert stored is not None
        assert stored.acknowledged_by == "browser operator"
    page.reload()
    assert "browser operator" in page.locator(f"#alarm-{alarm.id} td.ack").inner_text()
    page.context.close()


def test_statistics_page_and_csv_download(browser: Browser, live: LiveServer) -> None:
    page = new_page(browser, live, Role.VIEWER)
    today = dt.datetime.now(BUSINESS_TZ).date().isoformat()
    page.goto(f"{live.url}/statistics?scope=site&start={today}&end={today}")
    page.wait_for_selector("#stats")
    assert page.locator("#stats tbody tr.total").count() >= 1  # zs-shiqi-02's tickets of today
    href = page.locator("#csv").get_attribute("href") or ""
    assert href.startswith("/api/v1/statistics.csv?")
    with page.expect_download() as download_info:
        page.click("#csv")
    path = download_info.value.path()
    text = Path(path).read_text("utf-8-sig")
    assert text.startswith("范围 (scope),")
    assert "zs-shiqi-02" in text
    shot(page, "statistics")
    page.context.close()


def test_openapi_docs_render_offline(browser: Browser, live: LiveServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    external: list[str] = []
    page.on(
        "request",
        lambda request: (
            external.append(request.url) if not request.url.startswith(live.url) else None
        ),
    )
    page.goto(f"{live.url}/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    assert page.locator(".swagger-ui .opblock").count() >= 15
    assert external == []  # nothing fetched from outside: closed hall networks
    shot(page, "openapi")
    context.close()


def test_operator_sends_a_command_and_sees_its_result(browser: Browser, live: LiveServer) -> None:
    site = SimSite("zs-shiqi-04")
    live.env.feed(site.state())
    page = new_page(browser, live, Role.OPERATOR)
    page.goto(f"{live.url}/sites/zs-shiqi-04")
    page.fill("#command-form input[name=text]", "abc")
    page.select_option("#command-form select[name=name]", "reprint")
    page.click("#command-form button[type=submit]")
    page.wait_for_function("document.getElementById('command-error').textContent.length > 0")
    assert "invalid reprint args" in page.locator("#command-error").inner_text()
    page.select_option("#command-form select[name=name]", "announce")
    page.fill("#command-form input[name=text]", "请A001号到1号窗口办理")
    page.click("#command-form button[type=submit]")
    page.wait_for_function("document.getElementById('command-form').dataset.lastCommand")
    command_id = page.eval_on_selector("#command-form", "form => form.dataset.lastCommand")
    row = f'#commands tr[data-command="{command_id}"]'
    page.wait_for_selector(f"{row}.cmd-pending")
    assert "等待执行" in page.locator(f"{row} td.state").inner_text()
    live.env.feed(
        mm.CmdResult(site="zs-shiqi-04", id=uuid.UUID(command_id), ok=True, error=None, ts=1)
    )
    page.wait_for_selector(f"{row}.cmd-succeeded")
    shot(page, "site_command")
    page.context.close()


def test_viewers_get_no_command_form(browser: Browser, live: LiveServer) -> None:
    page = new_page(browser, live, Role.VIEWER)
    page.goto(f"{live.url}/sites/zs-shiqi-04")
    page.wait_for_selector("#site-live")
    assert page.locator("#command-form").count() == 0
    page.context.close()


def test_operator_sends_a_notice_to_a_town_and_sees_each_site(
    browser: Browser, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commands page: a screen notice to 东区街道's 12 sites; two edges answer (one
    done, one failed) and the per-site table and the counts follow live. The page lists
    the first sites only (5 here, as for a province's thousands) and each state's sites
    a click away."""
    monkeypatch.setattr(people, "BULK_PAGE_ROWS", 5)
    page = new_page(browser, live, Role.OPERATOR)
    page.goto(f"{live.url}/commands")
    assert page.locator("#bulk-form select[name=name] option[value=reprint]").count() == 0
    page.select_option("#bulk-form select[name=name]", "screen_notice")
    page.fill("#bulk-form input[name=text]", "今日下午系统维护，暂停取号")
    page.check("#bulk-form input[name=target][value=towns]")
    page.check('#bulk-form input[name=town][value="东区街道"]')
    page.click("#bulk-form button[type=submit]")
    page.wait_for_url(f"{live.url}/commands/*")
    bulk_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#bulk-sites tbody tr")
    assert page.locator("#bulk-sites tbody tr").count() == 5
    assert "列出前 5 个，共 12 个" in page.locator("#bulk-more").inner_text()
    assert page.locator('#bulk-counts b[data-state="pending"]').inner_text() == "12"
    bulk = live.env.central.read.bulk_command(uuid.UUID(bulk_id), live.env.central.now())
    rows = {r.site_id: r for r in bulk.rows}
    assert bulk.args["text"] == "今日下午系统维护，暂停取号"
    live.env.feed(
        mm.CmdResult(site="zs-dongqu-01", id=uuid.UUID(rows["zs-dongqu-01"].command_id),
                     ok=True, error=None, ts=1),
        mm.CmdResult(site="zs-dongqu-02", id=uuid.UUID(rows["zs-dongqu-02"].command_id),
                     ok=False, error="screen_offline", ts=1),
    )  # fmt: skip
    page.wait_for_selector('#bs-zs-dongqu-01[data-state="succeeded"]')
    page.wait_for_selector('#bs-zs-dongqu-02[data-state="failed"]')
    assert "screen_offline" in page.locator("#bs-zs-dongqu-02").inner_text()
    assert "已执行" in page.locator("#bs-zs-dongqu-01").inner_text()
    # the counts and the rows are two reads: a render between them catches up at the next
    page.wait_for_function("document.querySelector('#bulk-counts b[data-state=pending]')"
                           ".textContent === '10'")  # fmt: skip
    counts = {s: page.locator(f'#bulk-counts b[data-state="{s}"]').inner_text()
              for s in ("pending", "succeeded", "failed")}  # fmt: skip
    assert counts == {"pending": "10", "succeeded": "1", "failed": "1"}
    shot(page, "bulk_command")
    page.click("#bulk-counts a.s-failed")
    page.wait_for_url("**?state=failed")
    page.wait_for_selector("#bulk-sites tbody tr")
    assert page.locator("#bulk-sites tbody tr").evaluate_all(
        "rows => rows.map(r => r.id)") == ["bs-zs-dongqu-02"]
    assert page.locator("#bulk-more").count() == 0
    live.env.feed(mm.CmdResult(site="zs-dongqu-03", id=uuid.UUID(rows["zs-dongqu-03"].command_id),
                               ok=False, error="screen_offline", ts=1))  # fmt: skip
    page.wait_for_selector("#bs-zs-dongqu-03")  # the failed list follows live too
    page.wait_for_function("document.querySelector('#bulk-counts b[data-state=failed]')"
                           ".textContent === '2'")  # fmt: skip
    page.goto(f"{live.url}/commands")
    row = page.locator(f'#bulks a[href="/commands/{bulk_id}"]').locator("xpath=../..")
    assert "东区街道" in row.inner_text()
    assert "屏幕通知" in row.inner_text()
    shot(page, "bulk_commands")
    page.context.close()


def test_a_bulk_command_the_contract_refuses_shows_why(browser: Browser, live: LiveServer) -> None:
    page = new_page(browser, live, Role.OPERATOR)
    page.goto(f"{live.url}/commands")
    page.select_option("#bulk-form select[name=name]", "announce")
    # past the contract's length (the field's own maxlength taken off, as a script could)
    page.eval_on_selector("#bulk-form input[name=text]", "e => e.removeAttribute('maxlength')")
    page.fill("#bulk-form input[name=text]", "x" * 201)
    page.click("#bulk-form button[type=submit]")
    page.wait_for_function("document.getElementById('bulk-error').textContent.length > 0")
    assert "invalid announce args" in page.locator("#bulk-error").inner_text()
    assert page.url == f"{live.url}/commands"
    page.context.close()


def test_admin_reads_filters_and_exports_the_audit_log(
    browser: Browser, live: LiveServer, tmp_path: Path
) -> None:
    viewer = new_page(browser, live, Role.VIEWER)  # a login to find in the log
    viewer.goto(f"{live.url}/admin/audit")
    assert viewer.locator("#audit").count() == 0
    assert viewer.locator("a[href='/admin/audit']").count() == 0
    viewer.context.close()
    page = new_page(browser, live, Role.ADMIN)
    page.click("a[href='/admin/audit']")
    page.wait_for_selector("#audit tbody tr")
    page.select_option("#audit-form select[name=action]", "auth.login")
    page.click("#audit-form button[type=submit]")
    page.wait_for_url("**/admin/audit?*action=auth.login*")
    actions = page.locator("#audit tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.action)")
    assert actions
    assert set(actions) == {"auth.login"}
    assert "browser viewer" in page.locator("#audit").inner_text()
    assert "登录" in page.locator("#audit tbody tr").first.inner_text()
    shot(page, "audit_log")
    with page.expect_download() as download_info:
        page.click("#audit-csv")
    saved = tmp_path / "audit.csv"
    download_info.value.save_as(saved)
    text = saved.read_text("utf-8-sig")
    lines = text.splitlines()
    assert lines[0] == "id,at,actor,actor_id,role,source,action,target,detail"
    assert len(lines) - 1 == len(actions)
    assert all(",auth.login," in line for line in lines[1:])
    page.context.close()


def test_an_admin_makes_a_town_account_that_sees_and_acts_on_its_town_only(
    browser: Browser, live: LiveServer
) -> None:
    """Accounts page → a 三乡镇 operator; that person logs in with login name and password,
    sends a notice to "all my towns" (三乡镇's sites only), changes the password; the admin
    disables the account."""
    admin = new_page(browser, live, Role.ADMIN)
    admin.goto(f"{live.url}/admin/users")
    form = admin.locator("#new-user")
    form.locator("input[name=username]").fill("sanxiang.ops")
    form.locator("input[name=display_name]").fill("李明")
    form.locator("select[name=role]").select_option("operator")
    form.locator("input[name=towns]").fill("三乡镇")
    form.locator("input[name=password]").fill("Sanxiang-2026-ops")
    form.locator("button[type=submit]").click()
    row = admin.locator("#user-sanxiang\\.ops")
    row.wait_for()
    assert row.locator("input[name=towns]").input_value() == "三乡镇"
    shot(admin, "users")

    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    person = context.new_page()
    person.set_default_timeout(15_000)
    person.goto(f"{live.url}/login")
    person.fill("input[name=username]", "sanxiang.ops")
    person.fill("input[name=password]", "Sanxiang-2026-ops")
    person.click("button[type=submit]")
    person.wait_for_url(f"{live.url}/")
    assert person.locator("#who").inner_text() == "李明 · 运维 · 三乡镇"
    assert person.locator("a[href='/admin/users'], a[href='/admin/audit']").count() == 0
    person.goto(f"{live.url}/commands")
    towns = person.locator("#bulk-form input[name=town]").evaluate_all(
        "boxes => boxes.map(b => b.value)")
    assert towns == ["三乡镇"]
    assert "我管辖的全部镇街" in person.locator("#bulk-form fieldset").inner_text()
    person.select_option("#bulk-form select[name=name]", "screen_notice")
    person.fill("#bulk-form input[name=text]", "三乡镇今日下午停电，暂停办理")
    person.click("#bulk-form button[type=submit]")
    person.wait_for_url(f"{live.url}/commands/*")
    person.wait_for_selector("#bulk-sites tbody tr")
    sites_towns = set(person.locator("#bulk-sites tbody tr td:first-child").all_inner_texts())
    assert sites_towns == {"三乡镇"}
    person.goto(f"{live.url}/account")
    person.fill("#own-password input[name=old_password]", "Sanxiang-2026-ops")
    person.fill("#own-password input[name=new_password]", "Sanxiang-2026-new")
    person.click("#own-password button[type=submit]")
    person.wait_for_url(f"{live.url}/login*")
    context.close()

    admin.reload()
    admin.locator("#user-sanxiang\\.ops button[data-enable=false]").click()
    admin.wait_for_selector("#user-sanxiang\\.ops.disabled")
    assert admin.locator("#user-sanxiang\\.ops td.state").inner_text() == "已停用"
    admin.goto(f"{live.url}/admin/audit?actor=sanxiang.ops")
    actions = admin.locator("#audit tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.action)")
    assert actions[:3] == ["user.password", "command.bulk", "auth.login"]
    admin.context.close()


def test_an_operator_stops_and_lifts_issuing_for_a_town(browser: Browser, live: LiveServer) -> None:
    """The commands page's emergency stop (through the stop's own API): 东区街道 stops
    issuing with a reason, the stop is listed, then lifted."""
    page = new_page(browser, live, Role.OPERATOR)
    page.goto(f"{live.url}/commands")
    assert "没有正在执行的暂停" in page.locator("main").inner_text()
    page.select_option("#stop-form select[name=target]", "东区街道")
    page.fill("#stop-form input[name=reason]", "台风红色预警")
    page.click("#stop-form button[type=submit]")
    page.wait_for_selector("#stops tbody tr")
    row = page.locator("#stops tbody tr").first
    assert "东区街道" in row.inner_text()
    assert "台风红色预警" in row.inner_text()
    (stop,) = live.env.central.pushes.stops(active=True)
    assert (stop.scope, stop.target, stop.reason) == ("town", "东区街道", "台风红色预警")
    # Per-site results: none of the town's sites (no edge runs here) reports it yet.
    covered = live.env.central.pushes.stop_sites(stop.id)
    assert covered
    assert {s.status.value for s in covered} == {"offline"}
    assert row.locator("td.stop-applied").inner_text() == f"0 / {len(covered)}"
    shot(page, "issuing_stop")
    row.locator("button[data-lift]").click()
    page.wait_for_selector("#stops", state="detached")
    assert live.env.central.pushes.stops(active=True) == []
    page.context.close()

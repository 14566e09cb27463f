"""The citizen's progress page, end to end, on a small Android phone over a slow network.

Real parts: Mosquitto, the central (uvicorn), the edge daemon driving the simulated
hall's printer, screens and keypads over ptys, and Debian's headless Chromium with a
360x640 viewport, WeChat's user agent and a throttled network (CDP
``Network.emulateNetworkConditions``). The QR code the virtual printer received is
the URL the phone opens. Checked: the number, the people ahead in the dispatcher's
order, the predicted wait, the alert at 3 ahead and at the call (vibration recorded),
the 过号 state with what to do, large print, and the site going offline.
Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from central.models import Site, SiteKind
from edge.simhall import simulated_hall
from onedoor.broker import free_port
from tests.central.browser.test_dashboards import (
    ARTIFACTS,
    CHROMIUM,
    LAUNCH_ARGS,
    LiveServer,
    shot,
)
from tests.central.edge_thread import EdgeThread, post
from tests.central.test_api_support import RunningApp, build_app, wait_until
from tests.servers import MosquittoBroker

WECHAT_ANDROID = (
    "Mozilla/5.0 (Linux; Android 10; Redmi 8A Build/QKQ1.191014.001; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/86.0.4240.99 XWEB/4365 MMWEBSDK/20221012 Mobile "
    "Safari/537.36 MMWEBID/6163 MicroMessenger/8.0.30.2260(0x28001E3B) WeChat/arm64 "
    "Weixin NetType/4G Language/zh_CN ABI/arm64"
)
SLOW_3G = {"offline": False, "latency": 400, "downloadThroughput": 50_000,
           "uploadThroughput": 25_000}
# Headless Chromium has no vibration motor: record what the page asks for.
RECORD_VIBRATION = ("navigator.vibrate = function (p) {"
                    " window.__buzz = (window.__buzz || []).concat([p]); return true; };")


@pytest.fixture
def central(tmp_path: Path, mqtt_broker: MosquittoBroker) -> Iterator[LiveServer]:
    app, service = build_app(tmp_path / "central.db", mqtt_broker)
    central = app.state.central
    with central.sessions.begin() as session:  # the simulated hall is in the registry
        session.add(Site(id="sim-hall", name="模拟便民服务中心", town="模拟镇",
                         kind=SiteKind.DISTRICT))
    env = RunningApp(app, None, central, service, {}, mqtt_broker)  # type: ignore[arg-type]
    # Before the central subscribes: a state an earlier test's edge left retained (a later
    # MQTT session than this fresh journal's) would outrank this edge's.
    env.clear_retained("sim-hall")
    with LiveServer(env, free_port()) as server:
        wait_until(lambda: service.mqtt.connected, timeout=20)
        yield server
    env.clear_retained("sim-hall")
    env.publish_raw("onedoor/v1/sim-hall/progress", b"", retain=True)


@pytest.fixture
def phone(central: LiveServer) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser: Browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                      args=LAUNCH_ARGS)
        context = browser.new_context(
            viewport={"width": 360, "height": 640}, device_scale_factor=3, is_mobile=True,
            has_touch=True, user_agent=WECHAT_ANDROID, locale="zh-CN")
        context.add_init_script(RECORD_VIBRATION)
        page = context.new_page()
        page.set_default_timeout(30_000)
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", SLOW_3G)
        yield page
        browser.close()


def text(page: Page, selector: str) -> str:
    return page.locator(selector).inner_text()


def page_says(page: Page, expression: str, timeout: float = 30.0) -> None:
    """Poll a script expression (the page's CSP forbids wait_for_function's eval)."""
    wait_until(lambda: bool(page.evaluate(expression)), timeout=timeout)


def test_the_qr_on_the_ticket_opens_a_live_page_on_a_phone(
        tmp_path: Path, clips_dir: Path, central: LiveServer, phone: Page,
        mqtt_broker: MosquittoBroker) -> None:
    http_port = free_port()
    with simulated_hall(tmp_path, clips_dir=clips_dir, http_port=http_port,
                        mqtt_port=mqtt_broker.port, progress_url=central.url) as sim, \
            EdgeThread(sim) as edge:
        kiosk = f"http://127.0.0.1:{http_port}"
        post(kiosk, "/windows/2/sign_in", {"staff": "202"})
        [post(kiosk, "/tickets", {"service": "huji"}) for _ in range(5)]
        mine = post(kiosk, "/tickets", {"service": "huji", "print": True})
        assert mine["number"] == "B006"
        assert mine["printed"] is True
        ticket = sim.printer.wait_for_tickets(1, 20)[-1]
        (url,) = [q.decode() for q in ticket.qr_payloads]
        assert url == mine["progress_url"]
        assert url.startswith(f"{central.url}/q/")
        hall = edge.daemon.hall
        assert hall is not None
        wait_until(lambda: central.env.central.read.ticket_link(
            _digest(url)) is not None, timeout=20)  # ticket.issued committed: its link

        phone.goto(url)
        assert text(phone, "#number") == "B006"
        expect(phone.locator("#q")).to_have_attribute("data-live", "yes")
        assert text(phone, "#service") == "户籍"
        assert text(phone, "#headline") == "前面还有 5 人"
        expect(phone.locator("#detail")).to_contain_text("预计等候")
        assert "本页不含任何个人信息" in text(phone, ".privacy")
        shot(phone, "progress_waiting")
        # Window 2 calls and finishes the ones ahead: the page counts down live.
        post(kiosk, "/windows/2/next")
        post(kiosk, "/windows/2/next")
        expect(phone.locator("#headline")).to_have_text("前面还有 3 人")
        page_says(phone, "window.__progress.alerts.indexOf('near') >= 0")
        assert "快到您了" in text(phone, "#alert")
        for _ in range(3):
            post(kiosk, "/windows/2/next")
        called = post(kiosk, "/windows/2/next")
        assert called["ticket"] == "B006"
        expect(phone.locator("#q")).to_have_attribute("data-state", "called")
        assert text(phone, "#headline") == "请到 2 号窗口办理"
        page_says(phone, "window.__progress.alerts.indexOf('called') >= 0")
        assert phone.evaluate("window.__buzz.length") >= 2  # near and called both vibrated
        shot(phone, "progress_called")
        # Nobody comes: 过号, back in the queue once, and what to do.
        post(kiosk, "/windows/2/no_show")
        expect(phone.locator("#q")).to_have_attribute("data-state", "requeued")
        assert "已为您重新排队" in text(phone, "#advice")
        # Large print for the elderly, kept for the next visit.
        before = phone.evaluate("getComputedStyle(document.querySelector('#headline')).fontSize")
        phone.click("#big")
        after = phone.evaluate("getComputedStyle(document.querySelector('#headline')).fontSize")
        assert float(after.rstrip("px")) >= 1.4 * float(before.rstrip("px"))
        assert phone.evaluate("localStorage.getItem('progress-big')") == "1"
        shot(phone, "progress_large_print")
        # The site goes away: the page says so, with the last known state and its time.
        edge.stop()
        expect(phone.locator("#q")).to_have_attribute("data-live", "no", timeout=60_000)
        status = text(phone, "#status")
        assert status.startswith("站点暂时无法连接")
        assert "并非实时" in status
        assert text(phone, "#headline") == "下一位就是您"  # the last state, marked as such
        expect(phone.locator("#alert")).to_be_hidden()  # no alert from a state not live
        phone.screenshot(path=str(ARTIFACTS / "central_progress_offline.png"), full_page=True)


def _digest(url: str) -> str:
    from central.progress import token_digest

    return token_digest(url.rsplit("/", 1)[1])

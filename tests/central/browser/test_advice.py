"""Live staffing advice end to end: a real edge daemon under a simulated surge, the real
Mosquitto, the real central (ingest, alarms, webhook, uvicorn) and Debian's Chromium.

The surge: one window signed in, fourteen tickets of a six-minute service in a few
seconds. The edge simulates the next hour every two seconds (``daemon.advice_seconds``),
sees the p90 wait pass the 30-minute SLA and sends the advisory; the central stores it,
notifies the webhook (the manager's robot) with an info alarm, and the site page shows
it in Chinese. The manager opens the second window and the queue is served: the edge
sends a clear and the page drops it. A second surge, then the edge stops: the central
lets the advisory expire on its own.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import sync_playwright
from sqlalchemy import select

from central.auth import Role
from central.models import AdviceEnd, Alarm, AlarmType, StaffingAdvisory
from central.seed import SERVICES_CSV, load_seed
from onedoor.broker import free_port
from tests.central.browser.test_dashboards import CHROMIUM, LAUNCH_ARGS, LiveServer, shot
from tests.central.http_capture import Capture, capture_server
from tests.central.test_api_support import RunningApp, build_app, wait_until
from tests.edge.sites import (
    BASE_WINDOWS,
    TIMED_SERVICES,
    http,
    site_toml,
    start_daemon,
    stop_daemon,
    wait_http,
)
from tests.servers import MosquittoBroker

if shutil.which(CHROMIUM) is None:  # pragma: no cover - CI installs Debian's chromium
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

SITE = "test-site"  # the id tests/edge/sites.py writes
SERVICES = TIMED_SERVICES.replace("mean_minutes = 6.0",
                                  "mean_minutes = 6.0\nvisitors_per_day = 20").replace(
    "mean_minutes = 8.0", "mean_minutes = 8.0\nvisitors_per_day = 20")


@pytest.fixture
def webhook() -> Iterator[Capture]:
    with capture_server() as capture:
        yield capture


@pytest.fixture
def live(tmp_path: Path, mqtt_broker: MosquittoBroker,
         webhook: Capture) -> Iterator[LiveServer]:
    app, service = build_app(tmp_path / "central.db", mqtt_broker, alarm_tick_s=0.5,
                             webhook_url=webhook.url)
    sites = tmp_path / "sites.csv"
    sites.write_text("id,name,town,kind,lat,lon,windows\n"
                     f"{SITE},测试镇行政服务中心,测试镇,district,,,2\n", encoding="utf-8")
    with service.sessions.begin() as session:
        load_seed(session, sites, SERVICES_CSV)
    central = app.state.central
    tokens = {Role.VIEWER: central.tokens.create(Role.VIEWER, "advice viewer")[1]}
    env = RunningApp(app, TestClient(app), central, service, tokens, mqtt_broker)
    # The edge tests' daemons are "test-site" too: the state one of them left retained would
    # be adopted as the site's device (it numbered in epoch 0), and this test's new journal
    # would wait for an operator's takeover.
    env.clear_retained(SITE)
    with LiveServer(env, free_port()) as server:
        wait_until(lambda: service.mqtt.connected, timeout=20)
        yield server
    env.clear_retained(SITE)


def _advisories(env: RunningApp) -> list[StaffingAdvisory]:
    with env.central.sessions() as session:
        return list(session.scalars(select(StaffingAdvisory).where(
            StaffingAdvisory.site_id == SITE).order_by(StaffingAdvisory.id)))


def _active(env: RunningApp) -> StaffingAdvisory | None:
    return next((a for a in _advisories(env) if a.cleared_at is None), None)


def _surge(base: str, tickets: int = 14) -> None:
    for _ in range(tickets):
        assert http("POST", f"{base}/tickets", {"service": "shebao"})[0] == 201


def _notices(webhook: Capture) -> list[dict[str, object]]:
    found = [json.loads(r.body) for r in webhook.requests]
    return [n for n in found if n["type"] == "staffing_advice"]


def test_a_surge_is_advised_shown_in_chinese_cleared_and_expired(
        tmp_path: Path, mqtt_broker: MosquittoBroker, live: LiveServer,
        webhook: Capture) -> None:
    central = live.env
    port = free_port()
    config = site_toml(tmp_path, mqtt_port=mqtt_broker.port, http_port=port, services=SERVICES,
                       windows=BASE_WINDOWS, telemetry_seconds=2, extra="advice_seconds = 2\n")
    edge = start_daemon(config, log_path=tmp_path / "edge.log")
    try:
        wait_http(port, edge)
        base = f"http://127.0.0.1:{port}"
        assert http("POST", f"{base}/windows/1/sign_in", {"staff": "zhang01"})[0] == 200
        _surge(base)

        wait_until(lambda: _active(central) is not None, timeout=60)
        advisory = _active(central)
        assert advisory is not None
        assert advisory.services == ["shebao"]
        assert advisory.message_zh.startswith("未来60分钟社保医保预计p90等候")
        assert http("GET", f"{base}/status")[1]["advice"]["id"] == str(advisory.advisory_id)
        wait_until(lambda: len(_notices(webhook)) >= 1, timeout=20)
        raised = _notices(webhook)[0]
        assert (raised["action"], raised["severity"], raised["site_id"]) == (
            "raised", "info", SITE)
        assert raised["message"] == advisory.message_zh

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 900},
                                          locale="zh-CN")
            page = context.new_page()
            page.set_default_timeout(20_000)
            server = live.url
            page.goto(f"{server}/login")
            page.fill("input[name=token]", central.tokens[Role.VIEWER])
            page.click("button[type=submit]")
            page.wait_for_url(f"{server}/")
            page.goto(f"{server}/sites/{SITE}")
            box = page.locator("#advice")
            box.wait_for()
            assert box.locator("h2").inner_text() == "人员调配建议"
            assert box.locator(".advice-text").inner_text().startswith(
                "未来60分钟社保医保预计p90等候")
            assert "建议：" in box.locator(".advice-text").inner_text()
            breach = box.locator("#advice-outlook tr.breach td").first.inner_text()
            assert breach == "社会保障"  # the registry's name of the breaching service
            assert "窗口不会自动调整" in box.locator(".advice-note").inner_text()
            shot(page, "site_advice")

            # The manager opens window 2 and the queue is served: the edge clears it.
            assert http("POST", f"{base}/windows/2/sign_in", {"staff": "li02"})[0] == 200
            while http("POST", f"{base}/windows/1/next")[1].get("ticket"):
                http("POST", f"{base}/windows/2/next")
            http("POST", f"{base}/windows/2/next")
            page.locator("#advice").wait_for(state="detached", timeout=60_000)
            context.close()
            browser.close()
        # While window 2 opens the edge may name a new move first (a new advisory replaces
        # the old one); the last of the surge is cleared by the edge itself.
        *replaced, ended = _advisories(central)
        assert ended.cleared_by is AdviceEnd.EDGE
        assert all(a.cleared_by is AdviceEnd.REPLACED for a in replaced)
        wait_until(lambda: any(n["action"] == "cleared" for n in _notices(webhook)),
                   timeout=20)

        # A second surge, and the edge stops: nobody renews the advice, it expires.
        _surge(base, tickets=30)
        wait_until(lambda: _active(central) is not None, timeout=60)
    finally:
        assert stop_daemon(edge) == 0
    wait_until(lambda: _active(central) is None, timeout=60)
    assert _advisories(central)[-1].cleared_by is AdviceEnd.EXPIRED
    with central.central.sessions() as session:
        alarms = list(session.scalars(select(Alarm).where(
            Alarm.type == AlarmType.STAFFING_ADVICE)))
    assert len(alarms) == len(_advisories(central)) >= 2  # one alarm per advisory
    assert all(a.cleared_at is not None for a in alarms)
    log = (tmp_path / "edge.log").read_text(encoding="utf-8")
    assert "advice.raised" in log
    assert "advice.cleared" in log


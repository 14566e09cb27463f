"""The managers' robot groups: exact WeCom and DingTalk payloads, 加签, errcodes and retries,
rate limits, routing by town and severity, quiet hours, the daily summary per town.

Every message goes over HTTP to the fake robots of ``tests/central/robot_servers.py``,
which check the format, the key or token and DingTalk's signature as the real ones do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from central.alarms import AlarmBook
from central.errors import ConfigError
from central.models import Alarm, AlarmType, NotifyHeld, Severity
from central.notify import Notice, Notifier, QuietHours, RateWindow, Route, load_routes
from central.robots import RobotKind, dingtalk_sign, read_answer
from central.service import CentralService
from central.stats import BUSINESS_TZ
from firmware_protocols import mqtt_messages as mm
from tests.central.edge_sim import EdgeClient
from tests.central.robot_servers import FakeRobot, robot_server
from tests.central.sim import SimSite
from tests.central.test_service_mqtt import _config, _connected, _until
from tests.servers import MosquittoBroker

BASE = "https://onedoor.example.cn"
# 2026-11-23 09:00 business time (UTC+8)
MORNING = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
SANXIANG = "三乡镇"
SITE, SITE_NAME = "zs-sanxiang-01", "三乡雍陌村党群服务中心"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _notice(severity: str = "major", *, town: str = SANXIANG, action: str = "raised",
            at: datetime = MORNING, site: str = SITE, name: str = SITE_NAME,
            alarm_id: int | None = None, title: str = "站点离线",
            message: str = "") -> Notice:  # fmt: skip
    return Notice(site_id=site, site_name=name, town=town, severity=severity, title=title,
                  action=action, since=at - timedelta(minutes=5), at=at, link=f"/sites/{site}",
                  alarm_id=alarm_id, message=message)  # fmt: skip


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coroutine)


@asynccontextmanager
async def running(notifier: Notifier) -> AsyncIterator[Notifier]:
    task = asyncio.create_task(notifier.run())
    await asyncio.sleep(0)
    try:
        yield notifier
        await notifier.wait_idle()
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def _notifier(routes: list[Route], sessions: sessionmaker[Session], clock: Clock,
              **options: Any) -> Notifier:  # fmt: skip
    options = {"attempts": 3, "backoff_s": 0.01, "tick_s": 3600.0, **options}
    return Notifier(routes, sessions, clock=clock, base_url=BASE, **options)


# --------------------------------------------------------------------------- formats


def test_dingtalk_signature_is_the_documented_one() -> None:
    # DingTalk's own example: timestamp + "\n" + secret, HMAC-SHA256 with the secret as key,
    # base64, then URL-encoded; a 32-byte digest always ends in '=', so it arrives as %3D.
    sign = dingtalk_sign("SEC" + "a" * 61, 1_700_000_000_000)
    assert sign.endswith("%3D")
    assert "+" not in sign
    assert "/" not in sign


@pytest.mark.parametrize(
    ("status", "body", "ok", "limited"),
    [
        (200, b'{"errcode":0,"errmsg":"ok"}', True, False),
        (200, b'{"errcode":45009,"errmsg":"api freq out of limit"}', False, True),
        (200, b'{"errcode":130101,"errmsg":"send too fast"}', False, True),
        (200, b'{"errcode":310000,"errmsg":"sign not match"}', False, False),
        (200, b"<html>gateway</html>", False, False),
        (502, b'{"errcode":0,"errmsg":"ok"}', False, False),
    ],
)
def test_an_answer_is_ok_only_with_errcode_0(status: int, body: bytes, ok: bool,
                                             limited: bool) -> None:  # fmt: skip
    answer = read_answer(status, body)
    assert (answer.ok, answer.rate_limited) == (ok, limited)


def test_rate_window_holds_twenty_a_minute() -> None:
    now = [100.0]
    window = RateWindow(20, 60.0, clock=lambda: now[0])
    for _ in range(20):
        assert window.wait_s() == 0
        window.take()
        now[0] += 1.0
    assert window.wait_s() == pytest.approx(40.0)  # the first leaves the window at 160
    now[0] = 160.0
    assert window.wait_s() == 0
    window.block()
    assert window.wait_s() == pytest.approx(60.0)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_exact_wecom_and_dingtalk_payloads_with_signature(
    sessions: sessionmaker[Session],
) -> None:
    wecom = FakeRobot("wecom", "wk-1")
    ding = FakeRobot("dingtalk", "dt-1", secret="SECfa1e5ecret0123456789")
    with robot_server(wecom, ding):
        routes = [Route("wx", RobotKind.WECOM, wecom.url),
                  Route("dd", RobotKind.DINGTALK, ding.url, secret=ding.secret)]  # fmt: skip

        async def main() -> None:
            async with running(_notifier(routes, sessions, Clock(MORNING))) as notifier:
                notifier.submit(_notice(message="打印机缺纸"))

        _run(main())
    assert wecom.messages == [{"msgtype": "markdown", "markdown": {"content": (
        "## 【告警】站点离线 · 三乡雍陌村党群服务中心\n"
        "> 站点：三乡雍陌村党群服务中心（zs-sanxiang-01）\n"
        "> 镇街：三乡镇\n"
        '> 级别：<font color="warning">严重</font>\n'
        "> 开始：11-23 08:55\n"
        "> 说明：打印机缺纸\n"
        "[查看站点](https://onedoor.example.cn/sites/zs-sanxiang-01)")}}]  # fmt: skip
    assert ding.messages == [{"msgtype": "markdown", "markdown": {
        "title": "【告警】站点离线 · 三乡雍陌村党群服务中心",
        "text": (
            "#### 【告警】站点离线 · 三乡雍陌村党群服务中心\n\n"
            "> 站点：三乡雍陌村党群服务中心（zs-sanxiang-01）\n\n"
            "> 镇街：三乡镇\n\n"
            "> 级别：**严重**\n\n"
            "> 开始：11-23 08:55\n\n"
            "> 说明：打印机缺纸\n\n"
            "[查看站点](https://onedoor.example.cn/sites/zs-sanxiang-01)")}}]  # fmt: skip
    assert ding.answers == [{"errcode": 0, "errmsg": "ok"}]  # the signature checked out


def test_names_cannot_inject_markdown() -> None:
    from central.notify_messages import notice_body

    evil = _notice(name="村[点我](http://evil)<font>**")
    content = json.loads(notice_body(RobotKind.WECOM, evil, base_url=BASE))["markdown"]["content"]
    assert "[点我]" not in content
    assert "<font>" not in content
    assert "**" not in content.split(
        "\n")[1]
    assert "村【点我】(http://evil)＜font＞＊＊" in content


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_errcode_answers_are_failures_retried(sessions: sessionmaker[Session]) -> None:
    wecom = FakeRobot("wecom", "wk-retry")
    wecom.script = [(200, 93000), (503, 0)]  # an errcode with HTTP 200, then a 503; then ok
    with robot_server(wecom):
        route = Route("wx", RobotKind.WECOM, wecom.url)

        async def main() -> None:
            async with running(_notifier([route], sessions, Clock(MORNING))) as notifier:
                notifier.submit(_notice())
            assert (notifier.stats["wx"].sent, notifier.stats["wx"].failed) == (1, 0)

        with structlog.testing.capture_logs() as logs:
            _run(main())
    assert len(wecom.requests) == 3
    assert len(wecom.messages) == 1
    refused = [e for e in logs if e["event"] == "notify.refused"]
    assert [e["attempt"] for e in refused] == [1, 2]
    assert "errcode 93000" in refused[0]["answer"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_robot_that_keeps_refusing_is_counted_and_never_logs_its_secrets(
    sessions: sessionmaker[Session],
) -> None:
    ding = FakeRobot("dingtalk", "dt-secret-token-0123456789", secret="SECwrong-on-our-side")
    with robot_server(ding):
        route = Route("dd", RobotKind.DINGTALK, ding.url, secret="SECnot-the-robots-secret")

        async def main() -> None:
            async with running(_notifier([route], sessions, Clock(MORNING))) as notifier:
                notifier.submit(_notice())
            assert (notifier.stats["dd"].sent, notifier.stats["dd"].failed) == (0, 1)

        with structlog.testing.capture_logs() as logs:
            _run(main())
    assert [a["errcode"] for a in ding.answers] == [310000] * 3
    text = json.dumps(logs, ensure_ascii=False)
    assert "dt-secret-token" not in text
    assert "SECnot-the-robots-secret" not in text
    assert "sign not match" in text
    (failed,) = [e for e in logs if e["event"] == "notify.failed"]
    assert failed["robot"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_dead_robot_is_a_failure_without_the_url_in_the_log(
    sessions: sessionmaker[Session],
) -> None:
    url = "http://127.0.0.1:9/cgi-bin/webhook/send?key=dead-key-0123456789abcdef"
    route = Route("wx", RobotKind.WECOM, url)

    async def main() -> None:
        async with running(_notifier([route], sessions, Clock(MORNING), timeout_s=1)) as n:
            n.submit(_notice())
        assert n.stats["wx"].failed == 1

    with structlog.testing.capture_logs() as logs:
        _run(main())
    assert "dead-key" not in json.dumps(logs)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_rate_limits_are_kept_and_a_burst_is_merged(sessions: sessionmaker[Session]) -> None:
    """Our side: at most N a period (here 3 a second, the real robots 20 a minute); the
    robot's side: past its own limit it answers 45009 and we wait a period, losing nothing."""
    wecom = FakeRobot("wecom", "wk-burst", limit=2, period_s=1.0)
    with robot_server(wecom):
        route = Route("wx", RobotKind.WECOM, wecom.url)

        async def main() -> None:
            notifier = _notifier([route], sessions, Clock(MORNING), rate=(3, 1.0), attempts=5)
            async with running(notifier):
                for number in range(40):
                    notifier.submit(_notice(site=f"zs-sanxiang-{number:02d}",
                                            name=f"站点{number:02d}"))  # fmt: skip
                    await asyncio.sleep(0.01)
            assert notifier.stats["wx"].failed == 0

        _run(main())
    times = [t for t, _, _ in wecom.requests]
    assert all(sum(1 for u in times if t <= u < t + 1.0) <= 3 for t in times)
    delivered = "\n".join(wecom.contents())
    assert all(f"站点{number:02d}" in delivered for number in range(40))  # merged, none lost
    assert len(wecom.messages) < 40


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_routing_by_town_and_severity(sessions: sessionmaker[Session]) -> None:
    sanxiang = FakeRobot("wecom", "wk-sanxiang")
    shiqi = FakeRobot("dingtalk", "dt-shiqi")
    city = FakeRobot("wecom", "wk-city")
    with robot_server(sanxiang, shiqi, city):
        routes = [
            Route("sanxiang", RobotKind.WECOM, sanxiang.url, towns=frozenset({SANXIANG})),
            Route("shiqi", RobotKind.DINGTALK, shiqi.url, towns=frozenset({"石岐街道"}),
                  severities=frozenset({"major", "critical"})),
            Route("city", RobotKind.WECOM, city.url, severities=frozenset({"critical"}),
                  actions=frozenset({"raised"})),
        ]  # fmt: skip

        async def main() -> None:
            async with running(_notifier(routes, sessions, Clock(MORNING))) as notifier:
                for notice in (
                    _notice("warning", title="等候超时"),
                    _notice("warning", town="石岐街道", site="zs-shiqi-01", name="石岐甲"),
                    _notice("critical", town="石岐街道", site="zs-shiqi-02", name="石岐乙"),
                    _notice("critical", town="石岐街道", site="zs-shiqi-02", name="石岐乙",
                            action="cleared"),
                    _notice("info", title="提示"),
                ):
                    notifier.submit(notice)
                    await notifier.wait_idle()

        _run(main())
    assert [c.splitlines()[0] for c in sanxiang.contents()] == [
        "## 【告警】等候超时 · 三乡雍陌村党群服务中心"]  # fmt: skip
    assert [m["markdown"]["title"] for m in shiqi.messages] == [
        "【告警】站点离线 · 石岐乙", "【已恢复】站点离线 · 石岐乙"]  # fmt: skip
    assert [c.splitlines()[0] for c in city.contents()] == ["## 【告警】站点离线 · 石岐乙"]


# --------------------------------------------------------------------------- quiet hours


def test_quiet_hours_wrap_midnight() -> None:
    quiet = QuietHours(datetime.strptime("22:00", "%H:%M").time(),
                       datetime.strptime("07:30", "%H:%M").time())  # fmt: skip
    at = datetime(2026, 11, 23, tzinfo=UTC)  # 08:00 business time
    assert not quiet.covers(at)
    assert quiet.covers(at + timedelta(hours=14))  # 22:00
    assert quiet.covers(at + timedelta(hours=23, minutes=29))  # 07:29
    assert not quiet.covers(at + timedelta(hours=23, minutes=30))  # 07:30


def test_quiet_hours_hold_all_but_critical_and_summarise_after(
    small_registry: sessionmaker[Session],
) -> None:
    sessions = small_registry
    night = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 23:00 business time
    with sessions.begin() as session:  # a real alarm, so the digest can say it is still open
        book = AlarmBook(session, night)
        alarm = book.raise_alarm(SITE, AlarmType.SITE_OFFLINE)
        other = book.raise_alarm("zs-sanxiang-02", AlarmType.DEVICE_FAULT, device="printer-1")
        session.flush()
        open_id, gone_id = alarm.id, other.id
    with sessions.begin() as session:
        AlarmBook(session, night + timedelta(hours=1)).clear("zs-sanxiang-02",
                                                             AlarmType.DEVICE_FAULT, "printer-1")
    wecom = FakeRobot("wecom", "wk-quiet")
    clock = Clock(night)
    quiet = QuietHours(datetime.strptime("22:00", "%H:%M").time(),
                       datetime.strptime("07:30", "%H:%M").time())  # fmt: skip
    with robot_server(wecom):
        route = Route("sanxiang", RobotKind.WECOM, wecom.url, quiet_hours=quiet)

        async def main() -> None:
            async with running(_notifier([route], sessions, clock)) as notifier:
                notifier.submit(_notice("major", at=night, alarm_id=open_id))
                notifier.submit(_notice("warning", at=night + timedelta(minutes=10),
                                        site="zs-sanxiang-02", name="三乡平岚社区党群服务中心",
                                        title="设备故障", alarm_id=gone_id))  # fmt: skip
                await notifier.wait_idle()
                assert wecom.requests == []  # held
                notifier.submit(_notice("critical", at=night + timedelta(minutes=20),
                                        title="呼叫帮办无人响应"))  # fmt: skip
                await notifier.wait_idle()
                assert len(wecom.messages) == 1  # critical: at once
                await notifier.tick()  # still quiet: nothing
                assert len(wecom.messages) == 1
            # a restart in the night keeps what was held (the database has it)
            with sessions() as session:
                assert session.scalar(select(func.count()).select_from(NotifyHeld)) == 2
            clock.now = night + timedelta(hours=8, minutes=31)  # 07:31
            async with running(_notifier([route], sessions, clock)) as notifier:
                await notifier.tick()
                await notifier.tick()  # once only

        _run(main())
    assert len(wecom.messages) == 2
    assert wecom.contents()[1] == (
        "## 免打扰时段 22:00–07:30 暂缓的通知（2 条）\n"
        "- 【告警】严重 三乡雍陌村党群服务中心（三乡镇）站点离线 · 11-23 23:00（仍未恢复）"
        " [查看](https://onedoor.example.cn/sites/zs-sanxiang-01)\n"
        "- 【告警】一般 三乡平岚社区党群服务中心（三乡镇）设备故障 · 11-23 23:10（已恢复）"
        " [查看](https://onedoor.example.cn/sites/zs-sanxiang-02)\n"
        "[打开告警页](https://onedoor.example.cn/alarms)"
    )
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(NotifyHeld)) == 0


# --------------------------------------------------------------------------- daily summary


def test_daily_summary_per_town_once_across_replicas(
    small_registry: sessionmaker[Session],
) -> None:
    sessions = small_registry
    yesterday = MORNING - timedelta(hours=20)
    with sessions.begin() as session:
        book = AlarmBook(session, yesterday)
        book.raise_alarm(SITE, AlarmType.SITE_OFFLINE)
        book.raise_alarm("zs-sanxiang-02", AlarmType.WAITING_OVER_SLA, device="zonghe")
        book.raise_alarm("zs-sanxiang", AlarmType.DEVICE_FAULT, device="printer-1",
                         severity=Severity.CRITICAL)  # fmt: skip
    with sessions.begin() as session:
        AlarmBook(session, yesterday + timedelta(hours=2)).clear(
            "zs-sanxiang-02", AlarmType.WAITING_OVER_SLA, "zonghe")
    town = FakeRobot("wecom", "wk-daily")
    city = FakeRobot("dingtalk", "dt-daily")
    summary_at = datetime.strptime("08:30", "%H:%M").time()
    clock = Clock(MORNING - timedelta(minutes=31))  # 08:29
    with robot_server(town, city):
        routes = [
            Route("sanxiang", RobotKind.WECOM, town.url, towns=frozenset({SANXIANG}),
                  daily_summary=summary_at),
            Route("city", RobotKind.DINGTALK, city.url, daily_summary=summary_at),
        ]  # fmt: skip

        async def main() -> None:
            async with running(_notifier(routes, sessions, clock)) as notifier:
                await notifier.tick()
                assert town.requests == []
                assert city.requests == []
                clock.now = MORNING - timedelta(minutes=29)  # 08:31
                await notifier.tick()
                await notifier.tick()
            async with running(_notifier(routes, sessions, clock)) as replica:
                await replica.tick()  # another replica: already claimed

        _run(main())
    assert town.contents() == [
        "## 三乡镇 每日告警汇总 2026-11-23\n"
        "> 统计时段：11-22 08:31 – 11-23 08:31\n"
        "> 站点 3 个，当前离线 0 个\n"
        "> 新告警 3 条（紧急 1，严重 1，一般 1），已恢复 1 条，当前未恢复 2 条\n"
        "- 严重 三乡雍陌村党群服务中心 站点离线 · 自 11-22 13:00\n"
        "- 紧急 中山市三乡镇行政服务中心 设备故障 · 自 11-22 13:00\n"
        "[查看本镇街站点](https://onedoor.example.cn/?town=%E4%B8%89%E4%B9%A1%E9%95%87)"
    ]
    assert [m["markdown"]["title"] for m in city.messages] == ["全市每日告警汇总 2026-11-23"]
    assert "- 三乡镇：离线 0，新告警 3 条（紧急 1，严重 1，一般 1），未恢复 2" in city.contents()[0]


# --------------------------------------------------------------------------- the routes file


def test_routes_file(tmp_path: Path) -> None:
    path = tmp_path / "notify.toml"
    path.write_text(
        '[[route]]\nname = "sanxiang"\nkind = "wecom"\nurl_env = "SANXIANG_ROBOT"\n'
        'towns = ["三乡镇"]\nquiet_hours = "22:00-07:30"\ndaily_summary = "08:30"\n\n'
        '[[route]]\nname = "city"\nkind = "dingtalk"\nurl_env = "CITY_ROBOT"\n'
        'secret_env = "CITY_SECRET"\nseverities = ["critical"]\nquiet_pass = []\n',
        encoding="utf-8",
    )
    env = {"SANXIANG_ROBOT": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
           "CITY_ROBOT": "https://oapi.dingtalk.com/robot/send?access_token=t",
           "CITY_SECRET": "SECxyz"}  # fmt: skip
    sanxiang, city = load_routes(path, env)
    assert sanxiang.towns == frozenset({SANXIANG})
    assert city.towns is None
    assert sanxiang.quiet_hours is not None
    assert sanxiang.quiet_hours.label() == "22:00–07:30"
    assert city.secret == "SECxyz"
    assert city.quiet_pass == frozenset()
    assert "access_token" not in repr(city)
    assert "SECxyz" not in repr(city)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('name = "a"\nkind = "slack"\nurl = "https://x"', "kind must be wecom or dingtalk"),
        ('name = "a"\nkind = "wecom"\nurl = "ftp://x?key=SECRETKEY"', "not an http"),
        ('name = "a"\nkind = "wecom"\nurl_env = "NOPE"', "NOPE"),
        ('name = "a"\nkind = "wecom"\nurl = "https://x"\nsecret = "s"', "DingTalk's"),
        ('name = "a"\nkind = "wecom"\nurl = "https://x"\nquiet_hours = "22-7"', "HH:MM"),
        ('name = "a"\nkind = "wecom"\nurl = "https://x"\nseverities = ["loud"]', "unknown"),
        ('name = "a"\nkind = "wecom"\nurl = "https://x"\ncolour = "red"', "unknown keys"),
    ],
)
def test_routes_file_errors_name_the_route_not_the_secret(tmp_path: Path, table: str,
                                                         message: str) -> None:  # fmt: skip
    path = tmp_path / "notify.toml"
    path.write_text(f"[[route]]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as refused:
        load_routes(path, {})
    assert "SECRETKEY" not in str(refused.value)
    assert "route 1 (a)" in str(refused.value) or "route 1" in str(refused.value)


# --------------------------------------------------------------------------- the real central


def test_the_central_tells_the_towns_robots_over_the_real_broker(
    mqtt_broker: MosquittoBroker,
    db_url: str,
    engine: Engine,
    sessions: sessionmaker[Session],
    sites: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An edge reports a printer fault over Mosquitto; the central raises the alarm and the
    town's WeCom group and the signed DingTalk group get it, with the site's Chinese name."""
    site_id = sites[1]
    wecom = FakeRobot("wecom", "wk-town")
    ding = FakeRobot("dingtalk", "dt-duty", secret="SECduty0123456789abcdef")
    other = FakeRobot("wecom", "wk-other-town")
    with robot_server(wecom, ding, other):
        monkeypatch.setenv("TEST_TOWN_ROBOT", wecom.url)
        monkeypatch.setenv("TEST_DUTY_ROBOT", ding.url)
        monkeypatch.setenv("TEST_DUTY_SECRET", ding.secret)
        routes = tmp_path / "notify.toml"
        routes.write_text(
            '[[route]]\nname = "town"\nkind = "wecom"\nurl_env = "TEST_TOWN_ROBOT"\n'
            'towns = ["测试镇"]\n\n'
            '[[route]]\nname = "duty"\nkind = "dingtalk"\nurl_env = "TEST_DUTY_ROBOT"\n'
            'secret_env = "TEST_DUTY_SECRET"\nseverities = ["major", "critical"]\n'
            'actions = ["raised"]\n\n'
            f'[[route]]\nname = "other"\nkind = "wecom"\nurl = "{other.url}"\n'
            'towns = ["别的镇"]\n',
            encoding="utf-8",
        )
        routes.chmod(0o600)

        async def main() -> None:
            config = _config(mqtt_broker, db_url, notify_routes_file=str(routes),
                             dashboard_url="https://onedoor.example.cn/")  # fmt: skip
            async with CentralService(config, engine=engine) as central:
                assert central.robots is not None
                await _connected(central)
                sim = SimSite(site_id)
                edge = await asyncio.to_thread(EdgeClient, mqtt_broker.host, mqtt_broker.port, sim)
                try:
                    edge.send(sim.event(mm.DeviceStatus(device="printer-1", kind="printer",
                                                        status="fault", detail="paper_out")))
                    await _until(lambda: bool(wecom.messages) and bool(ding.messages))
                    with sessions() as session:
                        alarm = session.scalars(select(Alarm)).one()
                    central.acknowledge_alarm(alarm.id, "ops-li")  # not a route's action
                    await central.wait_idle()
                    await central.robots.wait_idle()
                finally:
                    edge.close()

        _run(main())
    with sessions() as session:
        raised_at = session.scalars(select(Alarm)).one().raised_at
    since = raised_at.astimezone(BUSINESS_TZ).strftime("%m-%d %H:%M")
    assert [m["markdown"]["content"] for m in wecom.messages] == [
        "## 【告警】设备故障 · 测试一村党群服务中心\n"
        f"> 站点：测试一村党群服务中心（{site_id}）\n"
        "> 镇街：测试镇\n"
        '> 级别：<font color="warning">严重</font>\n'
        f"> 开始：{since}\n"
        f"[查看站点](https://onedoor.example.cn/sites/{site_id})"
    ]
    assert [m["markdown"]["title"] for m in ding.messages] == [
        "【告警】设备故障 · 测试一村党群服务中心"]  # fmt: skip
    assert ding.answers == [{"errcode": 0, "errmsg": "ok"}]  # signed as DingTalk checks it
    assert other.requests == []

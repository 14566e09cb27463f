"""Time-based alarm rules and webhook notifications (a real local HTTP server)."""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest
import structlog.testing
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.alarms import AlarmBook, Notification, WebhookNotifier, run_timed_rules
from central.config import CentralConfig
from central.errors import ConfigError, UnknownAlarm
from central.ingest import IngestProcessor
from central.models import Alarm, AlarmType, Site
from central.telemetry import EmbeddedTelemetrySink
from firmware_protocols import mqtt_messages as mm
from tests.central.http_capture import capture_server
from tests.central.sim import SimSite, called, received

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SITE = "zs-sanxiang-01"
CONFIG = CentralConfig(
    offline_after_s=180, help_unanswered_s=120, gap_alarm_after_s=300, config_drift_after_s=600
)


def _tick(sessions: sessionmaker[Session], at: datetime) -> list[Notification]:
    with sessions.begin() as session:
        book = AlarmBook(session, at)
        run_timed_rules(book, CONFIG)
    return book.notifications


def _active(sessions: sessionmaker[Session]) -> set[tuple[AlarmType, str]]:
    with sessions() as session:
        return {
            (a.type, a.device)
            for a in session.scalars(select(Alarm).where(Alarm.cleared_at.is_(None)))
        }


def test_silent_site_goes_offline_and_comes_back(small_registry: sessionmaker[Session]) -> None:
    processor = IngestProcessor(small_registry, CONFIG, EmbeddedTelemetrySink(small_registry))
    site = SimSite(SITE)
    processor.process(received(site.state("online")), NOW)
    assert _tick(small_registry, NOW + timedelta(seconds=179)) == []
    (notice,) = _tick(small_registry, NOW + timedelta(seconds=181))
    assert (notice.action, notice.type, notice.site_id) == ("raised", "site_offline", SITE)
    assert notice.detail["cause"] == "silence"
    _tick(small_registry, NOW + timedelta(seconds=200))  # a repeat does not add an alarm
    assert _active(small_registry) == {(AlarmType.SITE_OFFLINE, "")}
    outcome = processor.process(received(site.telemetry()), NOW + timedelta(seconds=210))
    assert [(n.action, n.type) for n in outcome.notifications] == [("cleared", "site_offline")]


def test_help_call_unanswered(small_registry: sessionmaker[Session]) -> None:
    processor = IngestProcessor(small_registry, CONFIG)
    site = SimSite(SITE)
    processor.process(received(site.event(mm.HelpRequested(button="help-2", location="B区"))), NOW)
    assert _tick(small_registry, NOW + timedelta(seconds=100)) == []
    _tick(small_registry, NOW + timedelta(seconds=130))
    assert _active(small_registry) == {(AlarmType.HELP_UNANSWERED, "help-2")}
    processor.process(
        received(site.event(mm.HelpAcknowledged(button="help-2", staff=None))),
        NOW + timedelta(seconds=140),
    )
    assert _active(small_registry) == set()
    _tick(small_registry, NOW + timedelta(seconds=400))  # answered calls never alarm again
    assert _active(small_registry) == set()


def test_sequence_gap_alarm_after_delay(small_registry: sessionmaker[Session]) -> None:
    processor = IngestProcessor(small_registry, CONFIG)
    site = SimSite(SITE)
    events = [site.event(called()) for _ in range(4)]
    processor.process(received(events[0], events[3]), NOW)
    assert _tick(small_registry, NOW + timedelta(seconds=200)) == []
    (notice,) = _tick(small_registry, NOW + timedelta(seconds=301))
    assert (notice.type, notice.detail) == ("sequence_gap", {"gaps": [[2, 3]]})
    processor.process(received(events[1], events[2]), NOW + timedelta(seconds=310))
    (cleared,) = _tick(small_registry, NOW + timedelta(seconds=320))
    assert (cleared.action, cleared.type) == ("cleared", "sequence_gap")


def test_config_drift(small_registry: sessionmaker[Session]) -> None:
    processor = IngestProcessor(small_registry, CONFIG)
    site = SimSite(SITE, config="cfg-1")
    with small_registry.begin() as session:
        registry = session.get_one(Site, SITE)
        registry.expected_config_version = "cfg-2"
        registry.config_version_changed_at = NOW
    processor.process(received(site.state()), NOW)

    def drift(at: datetime) -> list[Notification]:  # the silent site also goes offline
        return [n for n in _tick(small_registry, at) if n.type == "config_drift"]

    assert drift(NOW + timedelta(seconds=599)) == []
    (notice,) = drift(NOW + timedelta(seconds=601))
    assert notice.detail == {"expected": "cfg-2", "reported": "cfg-1"}
    with small_registry.begin() as session:  # ops roll the expectation back
        session.get_one(Site, SITE).expected_config_version = "cfg-1"
    (cleared,) = drift(NOW + timedelta(seconds=700))
    assert cleared.action == "cleared"


def test_acknowledge_unknown_alarm(small_registry: sessionmaker[Session]) -> None:
    with small_registry.begin() as session, pytest.raises(UnknownAlarm):
        AlarmBook(session, NOW).acknowledge(424242, "ops-li")


def test_one_active_alarm_per_site_device_type(small_registry: sessionmaker[Session]) -> None:
    with small_registry.begin() as session:
        book = AlarmBook(session, NOW)
        first = book.raise_alarm(SITE, AlarmType.DEVICE_FAULT, device="printer-1")
        other = book.raise_alarm(SITE, AlarmType.DEVICE_FAULT, device="printer-2")
    with small_registry.begin() as session:  # a second book (another replica) repeats it
        again = AlarmBook(session, NOW).raise_alarm(
            SITE, AlarmType.DEVICE_FAULT, device="printer-1"
        )
    assert again.id == first.id != other.id
    assert again.occurrences == 2


def test_webhook_receives_notifications() -> None:
    notice = Notification(
        action="raised",
        alarm_id=7,
        site_id=SITE,
        device="printer-1",
        type="device_fault",
        severity="major",
        message="设备故障 / device fault",
        detail={"detail": "paper_out"},
        at=NOW.isoformat(),
    )
    with capture_server() as server:
        server.statuses = [500]  # the first attempt fails, the retry succeeds
        notifier = WebhookNotifier(server.url + "/hook", attempts=3, backoff_s=0.01)
        assert notifier.send(notice)
        assert len(server.requests) == 2
        request = server.requests[-1]
        assert request.path == "/hook"
        assert request.headers["Content-Type"] == "application/json; charset=utf-8"
        body = json.loads(request.body)
        assert body["type"] == "device_fault"
        assert body["message"] == "设备故障 / device fault"
        assert (notifier.sent, notifier.failed) == (1, 0)


def test_webhook_down_is_logged_not_raised() -> None:
    with capture_server() as server:
        url = server.url
    notifier = WebhookNotifier(url, attempts=2, backoff_s=0.01, timeout_s=1)
    notice = Notification("cleared", 1, SITE, "", "site_offline", "major", "m", {}, "t")
    assert notifier.send(notice) is False
    assert notifier.failed == 1


WECOM_KEY = "693a91f6-7f3e-4bc4-97a0-0ec2a1b05e11"
DINGTALK_TOKEN = "6b9d1c7e0f4a2b3c8d5e9f10a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
DINGTALK_SIGN = "ZyXwVuTs+RqPoNmLkJiHgFeDcBa1234567890abcdefg="
ROBOT_PATHS = {
    "wecom": f"/cgi-bin/webhook/send?key={WECOM_KEY}",
    "dingtalk": f"/robot/send?access_token={DINGTALK_TOKEN}&timestamp=1795426215123"
    f"&sign={urllib.parse.quote(DINGTALK_SIGN, safe='')}",
}
SECRETS = (WECOM_KEY, DINGTALK_TOKEN, DINGTALK_SIGN, urllib.parse.quote(DINGTALK_SIGN, safe=""))


@pytest.mark.parametrize("robot", sorted(ROBOT_PATHS))
@pytest.mark.parametrize("failure", ["http_500", "refused", "malformed"])
def test_a_failing_webhook_never_logs_its_secrets(robot: str, failure: str) -> None:
    """企业微信 keys and 钉钉 tokens/signatures live in the URL: no log line may carry them."""
    notice = Notification("raised", 1, SITE, "", "site_offline", "major", "m", {}, "t")
    with capture_server() as server:
        server.statuses = [500, 500]
        url = server.url + ROBOT_PATHS[robot] + (" x" if failure == "malformed" else "")
        notifier = WebhookNotifier(url, attempts=2, backoff_s=0.01, timeout_s=2)
        if failure != "refused":
            with structlog.testing.capture_logs() as logs:
                assert notifier.send(notice) is False
    if failure == "refused":  # the server is gone: nothing listens on its port any more
        with structlog.testing.capture_logs() as logs:
            assert notifier.send(notice) is False
    assert notifier.failed == 1
    failures = [e for e in logs if e["event"] == "alarm.webhook_failed"]
    assert len(failures) == 2
    assert failures[0]["webhook"].startswith("http://127.0.0.1:")
    written = repr(logs) + repr(notifier)
    for secret in SECRETS:
        assert secret not in written


def test_a_webhook_url_that_is_not_http_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="webhook_url: not an http") as refused:
        CentralConfig(webhook_url=f"ftp://qyapi.weixin.qq.com{ROBOT_PATHS['wecom']}")
    assert WECOM_KEY not in str(refused.value)


def test_command_without_result_expires(small_registry: sessionmaker[Session]) -> None:
    from central.ingest import new_command
    from central.models import Command, CommandStatus

    command = new_command(SITE, mm.ReprintArgs(ticket="Z001"), now=NOW, ttl_s=60)
    with small_registry.begin() as session:
        session.add(
            Command(
                id=command.id,
                site_id=SITE,
                name=command.name,
                args={},
                issued_at=NOW,
                expires_at=NOW + timedelta(seconds=60),
                status=CommandStatus.SENT,
            )
        )
    _tick(small_registry, NOW + timedelta(seconds=59))
    with small_registry() as session:
        assert session.get_one(Command, command.id).status is CommandStatus.SENT
    _tick(small_registry, NOW + timedelta(seconds=60))
    with small_registry() as session:
        assert session.get_one(Command, command.id).status is CommandStatus.EXPIRED

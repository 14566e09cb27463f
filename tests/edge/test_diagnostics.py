"""Remote diagnostics at the edge: the recent log lines (secrets masked) and the bounded answer."""

from __future__ import annotations

import uuid

import msgspec
import structlog

from edge.diagnostics import DiagnosticsSource, diagnostics_report
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.mqtt_topics import TOPICS, Kind
from onedoor.log import MASK, RecentLine, RecentLog, redact

ID_NUMBER = "11010519491231002X"  # a valid 公民身份号码 (GB 11643 check character X)


def test_secrets_id_numbers_and_tokens_are_masked() -> None:
    line = (f"kiosk.request key={ID_NUMBER} old_id=110105491231002 "
            "auth=Bearer od_0123abcd_s3cr3t-Token_value url=mqtts://site:hunter2@broker:8883 "
            "webhook=https://oapi.dingtalk.com/robot/send?access_token=abc123&sign=xyz "
            "pw=my-mqtt-password")
    masked = redact(line, ["my-mqtt-password"])
    for secret in (ID_NUMBER, "110105491231002", "od_0123abcd", "s3cr3t", "hunter2", "abc123",
                   "xyz", "my-mqtt-password"):
        assert secret not in masked, secret
    assert masked.startswith("kiosk.request key=***")
    assert "mqtts://site:***@broker" in masked
    # What is no secret stays readable: seqs, times, ticket numbers, ids of tokens.
    kept = redact("ack seq=4294967309 ts=1763882400000 ticket=A012 token_id=0123abcd")
    assert kept == "ack seq=4294967309 ts=1763882400000 ticket=A012 token_id=0123abcd"


def test_the_recent_log_keeps_redacted_lines_from_structlog() -> None:
    recent = RecentLog(size=3)
    recent.add_secret("0123456789abcdef-token")
    logger = structlog.wrap_logger(structlog.ReturnLogger(), processors=[
        structlog.processors.add_log_level, recent.capture,
        structlog.processors.KeyValueRenderer()])
    logger.info("config.loaded", password="pw-in-clear", window_token="0123456789abcdef-token")
    logger.warning("kiosk.card", id_number=ID_NUMBER, detail=f"read {ID_NUMBER}")
    logger.error("uplink.failed", error="line\nbreak\x00here")
    logger.info("four")
    lines = recent.tail(10)
    assert [line.level for line in lines] == ["warning", "error", "info"]  # bounded to 3
    assert lines[0].text == f"kiosk.card id_number={MASK} detail=read {MASK}"
    assert "\n" not in lines[1].text
    assert "\x00" not in lines[1].text
    recent.add("info", "config password=pw-in-clear token 0123456789abcdef-token")
    assert "0123456789abcdef-token" not in recent.tail(1)[0].text
    assert "pw-in-clear" not in recent.tail(1)[0].text


def _status() -> mm.DiagStatus:
    return mm.DiagStatus(
        config="v1", day="2026-11-23", numbering="granted", epoch=0, last_seq=9, acked_seq=9,
        outbox_depth=0, journal_bytes=4096, uplink_connects=1, tasks=[], devices=[],
        host=mm.HostStat(cpu_temp_c=None, load1=0.1, mem_used_pct=1.0, disk_used_pct=1.0,
                         uptime_s=1))


def test_the_answer_fits_the_topic_whatever_the_log_holds() -> None:
    source = DiagnosticsSource("zs-sanxiang-01", "0123456789abcdef", "boot", "onedoor-0.1.0")
    long_lines = [RecentLine(1_763_882_400_000 + n, "info", "办" * 400) for n in range(500)]
    report = diagnostics_report(source, uuid.uuid4(), 1_763_882_400_000, _status(), long_lines)
    size = len(msgspec.json.encode(report))
    assert size <= TOPICS[Kind.DIAG].max_payload
    assert report.logs
    assert report.logs[-1].ts == long_lines[-1].ts_ms
    assert len(report.logs) + report.logs_dropped == 500
    assert mm.decode(Kind.DIAG, mm.encode(report), site_id="zs-sanxiang-01") == report
    few = diagnostics_report(source, uuid.uuid4(), 0, _status(), long_lines[:3])
    assert (len(few.logs), few.logs_dropped) == (3, 0)

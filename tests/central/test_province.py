"""Reporting to a fake provincial platform (SQLite and PostgreSQL): the exact payload, the
signature, failures and retries, duplicates, refusals, and the lease between replicas."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralConfig
from central.ingest import IngestProcessor
from central.models import RatingProfile, RatingRecord, ReportStatus, StaffMember
from central.province import ProvincialReporter
from central.telemetry import EmbeddedTelemetrySink
from firmware_protocols import mqtt_messages as mm
from tests.central.province_fake import APP_KEY, APP_SECRET, FakeProvinceServer
from tests.central.sim import SimSite, received

SITE = "zs-sanxiang-01"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in the hall
LATER = NOW + timedelta(minutes=3)  # past the 120 s hold
CASE = mm.CaseInfo(no="442000-2026-000123", item_code="11442000007502434M4442111001000",
                   item_name="居民身份证换领", department=None, department_name=None,
                   source="hook")


@pytest.fixture
def province() -> Iterator[FakeProvinceServer]:
    with FakeProvinceServer() as server:
        yield server


def config(server: FakeProvinceServer, **changes: object) -> CentralConfig:
    values: dict[str, object] = {"province_url": server.url, "province_app_key": APP_KEY,
                                 "province_app_secret": APP_SECRET, "province_interval_s": 60.0,
                                 "province_timeout_s": 1.0} | changes  # fmt: skip
    return CentralConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def registry(small_registry: sessionmaker[Session]) -> sessionmaker[Session]:
    """The small registry with its region code, default department and a staff name."""
    with small_registry.begin() as session:
        session.add(RatingProfile(site_id=SITE, region_code="442000107201",
                                  department="11442000MB2C9211XA",
                                  department_name="中山市三乡镇人民政府"))
        session.add(StaffMember(site_id=SITE, staff_id="zs0231", name="张丽"))
    return small_registry


def feed(sessions: sessionmaker[Session], settings: CentralConfig, *bodies: mm.EventBody,
         site: SimSite | None = None) -> list[mm.Event]:  # fmt: skip
    site = site or SimSite(SITE, clock_ms=int(NOW.timestamp() * 1000))
    events = [site.event(body) for body in bodies]
    IngestProcessor(sessions, settings, EmbeddedTelemetrySink(sessions)).process(
        received(*events), NOW)
    return events


def rated(value: int, *, ticket: str = "A001", case: mm.CaseInfo | None = CASE,
          reasons: list[str] | None = None) -> mm.RatingGiven:
    return mm.RatingGiven(ticket=ticket, window=3, staff="zs0231", value=value, case=case,
                          reasons=reasons or [])


def keypad_case(number: str) -> mm.CaseInfo:
    return mm.CaseInfo(no=number, item_code=None, item_name=None, department=None,
                       department_name=None, source="keypad")


def statuses(sessions: sessionmaker[Session]) -> list[tuple[ReportStatus, int, str | None]]:
    with sessions() as session:
        return [(r.report_status, r.report_attempts, r.report_error)
                for r in session.scalars(select(RatingRecord).order_by(RatingRecord.seq))]


def test_the_exact_payload_and_its_signature(registry: sessionmaker[Session],
                                             province: FakeProvinceServer) -> None:
    settings = config(province)
    [event] = feed(registry, settings, rated(2, reasons=["attitude", "slow"]))
    reporter = ProvincialReporter(registry, settings)
    assert reporter.run_once(NOW).requests == 0  # held for follow-up reasons
    run = reporter.run_once(LATER)
    assert (run.requests, run.sent) == (1, 1)
    [request] = province.province.requests
    assert json.loads(request.body) == {"records": [{
        "evaluationId": event.id.hex,
        "projectNo": "442000-2026-000123",
        "taskCode": "11442000007502434M4442111001000",
        "taskName": "居民身份证换领",
        "deptCode": "11442000MB2C9211XA",  # the site's default: the hook named none
        "deptName": "中山市三乡镇人民政府",
        "areaCode": "442000107201",
        "siteName": "三乡雍陌村党群服务中心",
        "windowNo": "3",
        "staffId": "zs0231",
        "staffName": "张丽",
        "ticketNo": "A001",
        "pf": "5",
        "alternate": "2",
        "evaluateType": "1",
        "appraiseCodes": "attitude,slow",
        "appraiseLabels": "服务态度不好；办理效率低、等候时间长",
        "assessTime": "2026-11-23 10:00:01",
    }]}  # fmt: skip
    assert request.headers["x-app-key"] == APP_KEY
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert "张丽".encode() in request.body  # Chinese as UTF-8, not \\u escapes
    assert statuses(registry) == [(ReportStatus.SENT, 1, None)]
    assert reporter.run_once(LATER).requests == 0  # nothing more is due


def test_a_failing_platform_is_retried_with_backoff_then_failed(
        registry: sessionmaker[Session], province: FakeProvinceServer) -> None:
    settings = config(province, province_max_attempts=3)
    feed(registry, settings, rated(5))
    reporter = ProvincialReporter(registry, settings)
    province.province.fail_next = 1
    run = reporter.run_once(LATER)
    assert (run.requests, run.retried, run.errors) == (1, 1, ["HTTP 500"])
    assert statuses(registry) == [(ReportStatus.PENDING, 1, "HTTP 500")]
    assert reporter.run_once(LATER + timedelta(seconds=59)).requests == 0  # backoff: 60 s
    province.province.delay_s = 1.5  # beyond province_timeout_s
    run = reporter.run_once(LATER + timedelta(seconds=60))
    assert run.retried == 1
    assert "timed out" in run.errors[0]
    province.province.delay_s = 0.0
    assert reporter.run_once(LATER + timedelta(seconds=179)).requests == 0  # then 120 s
    province.province.fail_next = 1
    assert reporter.run_once(LATER + timedelta(seconds=180)).failed == 1
    assert statuses(registry)[0][:2] == (ReportStatus.FAILED, 3)
    assert reporter.retry_failed(LATER + timedelta(hours=1)) == 1
    assert reporter.run_once(LATER + timedelta(hours=1)).sent == 1
    # The timed-out request reached the platform before the timeout hit us; its resend
    # carried the same evaluationId, so the platform holds the record once.
    assert len(province.province.accepted) == 1


def test_duplicates_refusals_and_a_resend(registry: sessionmaker[Session],
                                          province: FakeProvinceServer) -> None:
    settings = config(province)
    feed(registry, settings, rated(5), rated(4, ticket="A002"),
         rated(3, ticket="A003", case=keypad_case("442000-2026-000124")))
    with registry.begin() as session:  # the third site has no region code: refused upstream
        record = session.scalars(select(RatingRecord).where(RatingRecord.ticket == "A003")).one()
        record.site_id = "zs-sanxiang-02"
    run = ProvincialReporter(registry, settings).run_once(LATER)
    assert (run.sent, run.duplicate, run.rejected) == (1, 1, 1)
    first, second, third = statuses(registry)
    assert first == (ReportStatus.SENT, 1, None)
    assert second[0] is ReportStatus.DUPLICATE
    assert second[2] is not None
    assert second[2].startswith("1001: 重复评价")
    assert third[0] is ReportStatus.REJECTED
    # A replica died after sending: its lease ran out and the record goes again. The
    # platform knows the evaluationId: taken once.
    with registry.begin() as session:
        record = session.scalars(select(RatingRecord).where(RatingRecord.ticket == "A001")).one()
        record.report_status, record.report_next_at = ReportStatus.PENDING, LATER
    assert ProvincialReporter(registry, settings).run_once(LATER).sent == 1
    assert len(province.province.accepted) == 1


def test_a_wrong_secret_is_refused_and_retried(registry: sessionmaker[Session],
                                               province: FakeProvinceServer) -> None:
    settings = config(province, province_app_secret="not-the-secret-0123456789")
    feed(registry, settings, rated(5))
    run = ProvincialReporter(registry, settings).run_once(LATER)
    assert run.errors == ["platform code 4011: signature mismatch"]
    assert statuses(registry)[0][0] is ReportStatus.PENDING
    assert province.province.accepted == {}


def test_a_claimed_batch_is_leased_to_one_replica(registry: sessionmaker[Session],
                                                  province: FakeProvinceServer) -> None:
    settings = config(province)
    feed(registry, settings, rated(5), rated(4, ticket="A002", case=keypad_case("C-2")))
    one, other = ProvincialReporter(registry, settings), ProvincialReporter(registry, settings)
    batch = one.claim(LATER)
    assert batch is not None
    assert len(batch.ids) == 2
    assert other.claim(LATER) is None  # leased
    assert other.claim(LATER + timedelta(seconds=33)) is not None  # the lease ran out


def test_unreportable_records_are_never_sent(registry: sessionmaker[Session],
                                             province: FakeProvinceServer) -> None:
    settings = config(province)
    feed(registry, settings, rated(5, case=None),
         mm.RatingMissed(ticket="A002", window=3, staff="zs0231", case=CASE))
    assert ProvincialReporter(registry, settings).run_once(LATER).requests == 0
    assert [s for s, _, _ in statuses(registry)] == [ReportStatus.SKIPPED] * 2


def test_an_unrated_offer_under_a_default_rule_is_reported_as_a_default_rating(
        registry: sessionmaker[Session], province: FakeProvinceServer) -> None:
    settings = config(province, rating_default_value=4)
    feed(registry, settings, mm.RatingMissed(ticket="A002", window=3, staff="zs0231", case=CASE))
    assert ProvincialReporter(registry, settings).run_once(LATER).sent == 1
    [record] = province.province.requests[0].records
    assert (record["alternate"], record["evaluateType"]) == ("4", "2")

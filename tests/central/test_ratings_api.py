"""好差评 over HTTP (the real app, real Mosquitto, SQLite): roster and profile, records and
their export, the 差评 steps with their roles, the ranking and the pages; and the read model
on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from central.audit import Actor
from central.auth import Role
from central.config import CentralConfig
from central.ingest import IngestProcessor
from central.models import EventRecord
from central.queries import ReadModel
from central.ratings import RatingRoster
from central.stats import BUSINESS_TZ
from central.telemetry import EmbeddedTelemetrySink
from firmware_protocols import mqtt_messages as mm
from tests.central.sim import SimSite, received
from tests.central.test_api_support import RunningApp, running_app
from tests.servers import MosquittoBroker

SITE = "zs-sanxiang"  # a town centre of the seed
DAY_MS = int(datetime(2026, 11, 23, 10, 0, tzinfo=BUSINESS_TZ).timestamp() * 1000)
CASE = mm.CaseInfo(no="442000-2026-000123", item_code="11442000007502434M4442111001000",
                   item_name="居民身份证换领", department=None, department_name=None,
                   source="hook")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory,
        mqtt_broker: MosquittoBroker) -> Iterator[RunningApp]:  # fmt: skip
    with running_app(tmp_path_factory.mktemp("ratings-api"), mqtt_broker) as running:
        yield running


def day_of_events() -> list[mm.Event]:
    """A morning at window 3: two tickets, a 差评 with a reason, a 满意, an unrated offer."""
    site = SimSite(SITE, clock_ms=DAY_MS)
    issued = [mm.TicketIssued(ticket=f"A00{n}", service="zonghe", ticket_class="normal",
                              booked_ts=None, channel="kiosk", people_ahead=0, wait=None)
              for n in (1, 2, 3)]  # fmt: skip
    return [site.event(body) for body in (
        mm.WindowSignedIn(window=3, staff="zs0231"), *issued,
        mm.TicketCalled(ticket="A001", window=3),
        mm.TicketDone(ticket="A001", window=3, served_s=300),
        mm.RatingGiven(ticket="A001", window=3, staff="zs0231", value=2, case=CASE),
        mm.RatingReason(ticket="A001", window=3, case_no=CASE.no, reason="slow"),
        mm.TicketCalled(ticket="A002", window=3),
        mm.TicketDone(ticket="A002", window=3, served_s=200),
        mm.RatingGiven(ticket="A002", window=3, staff="zs0231", value=4),
        mm.TicketCalled(ticket="A003", window=3),
        mm.TicketDone(ticket="A003", window=3, served_s=100),
        mm.RatingMissed(ticket="A003", window=3, staff="zs0231", case=None),
    )]  # fmt: skip


def post(env: RunningApp, url: str, body: object, role: Role | None = None,
         token: str | None = None, status: int = 200) -> dict[str, object]:  # fmt: skip
    headers = env.headers(role) if token is None else {"Authorization": f"Bearer {token}"}
    response = env.client.post(url, json=body, headers=headers)
    assert response.status_code == status, response.text
    answer: dict[str, object] = response.json()
    return answer


def test_ratings_over_http(env: RunningApp) -> None:
    roster = {"staff": [{"id": "zs0231", "name": "张丽"}, {"id": "zs0232", "name": "王强"}]}
    put = env.client.put(f"/api/v1/sites/{SITE}/staff", json=roster,
                         headers=env.headers(Role.ADMIN))
    assert put.status_code == 200
    assert put.json()["staff"][0] == {"id": "zs0231", "name": "张丽"}
    assert env.client.put(f"/api/v1/sites/{SITE}/staff", json=roster,
                          headers=env.headers(Role.OPERATOR)).status_code == 403
    bad = env.client.put(f"/api/v1/sites/{SITE}/rating-profile", json={"region_code": "44"},
                         headers=env.headers(Role.ADMIN))
    assert (bad.status_code, "6, 9 or 12 digits" in bad.json()["detail"]) == (422, True)
    profile = {"region_code": "442000107000", "department": "11442000MB2C9211XA",
               "department_name": "中山市三乡镇人民政府"}
    assert env.client.put(f"/api/v1/sites/{SITE}/rating-profile", json=profile,
                          headers=env.headers(Role.ADMIN)).json()["region_code"] == "442000107000"
    events = day_of_events()
    env.feed(*events)

    # Records, and the export in the province's field set.
    listed = env.client.get("/api/v1/ratings?from=2026-11-23&to=2026-11-23",
                            headers=env.headers(Role.VIEWER)).json()
    assert [(r["value"], r["origin"], r["report_status"]) for r in listed["ratings"]] == [
        (None, "unrated", "skipped"), (4, "citizen", "skipped"), (2, "citizen", "pending")]
    assert listed["ratings"][2]["reasons"] == ["办理效率低、等候时间长"]
    assert listed["ratings"][2]["staff_name"] == "张丽"
    text = env.client.get("/api/v1/ratings.csv?from=2026-11-23&to=2026-11-23",
                          headers=env.headers(Role.VIEWER)).text
    table = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert table[0][:3] == ["评价编号 (evaluationId)", "办件编号 (projectNo)",
                            "事项编码 (taskCode)"]
    assert table[0][-3:] == ["上报状态 (reportStatus)", "上报说明 (reportError)",
                             "申诉撤销 (revoked)"]
    first = dict(zip([h.split(" (")[1][:-1] for h in table[0]], table[1], strict=True))
    assert first == {
        "evaluationId": events[6].id.hex, "projectNo": CASE.no, "taskCode": CASE.item_code,
        "taskName": "居民身份证换领", "deptCode": "11442000MB2C9211XA",
        "deptName": "中山市三乡镇人民政府", "areaCode": "442000107000",
        "siteName": "中山市三乡镇行政服务中心", "windowNo": "3", "staffId": "zs0231",
        "staffName": "张丽", "ticketNo": "A001", "pf": "5", "alternate": "2",
        "evaluateType": "1", "appraiseCodes": "slow", "appraiseLabels": "办理效率低、等候时间长",
        "assessTime": "2026-11-23 10:00:07", "reportStatus": "pending", "reportError": "",
        "revoked": "",
    }  # fmt: skip

    # The 差评 case: an operator steps, an admin who did not appeal reviews.
    [case] = env.client.get("/api/v1/bad-ratings", headers=env.headers(Role.VIEWER)).json()["cases"]
    url = f"/api/v1/bad-ratings/{case['id']}"
    assert case["town"] == "三乡镇"
    assert case["staff_name"] == "张丽"
    post(env, f"{url}/contact", {"note": ""}, Role.OPERATOR, status=422)
    post(env, f"{url}/rectify", {"note": "已整改"}, Role.OPERATOR, status=409)
    post(env, f"{url}/contact", {"note": "已电话回访"}, Role.VIEWER, status=403)
    contacted = post(env, f"{url}/contact", {"note": "已电话回访"}, Role.OPERATOR)
    assert contacted["status"] == "contacted"
    post(env, f"{url}/appeal", {"note": "群众误按"}, Role.ADMIN)
    post(env, f"{url}/review", {"decision": "uphold", "note": "同意"}, Role.OPERATOR, status=403)
    post(env, f"{url}/review", {"decision": "uphold", "note": "同意"}, Role.ADMIN, status=403)
    _, other_admin = env.central.tokens.create(Role.ADMIN, f"reviewer {uuid.uuid4().hex[:4]}")
    upheld = post(env, f"{url}/review", {"decision": "uphold", "note": "核实为误评"},
                  token=other_admin)
    assert upheld["status"] == "revoked"
    assert [n["action"] for n in upheld["notes"]] == ["contact", "appeal", "uphold"]  # type: ignore[index]
    assert env.client.get("/api/v1/bad-ratings/99999",
                          headers=env.headers(Role.VIEWER)).status_code == 404
    audit = env.client.get(f"/api/v1/audit?target=bad_rating:{case['id']}",
                           headers=env.headers(Role.ADMIN)).json()["entries"]
    assert [(e["action"], e["actor"]) for e in audit] == [
        ("bad_rating.uphold", upheld["notes"][2]["actor"]),  # type: ignore[index]
        ("bad_rating.appeal", "test admin"), ("bad_rating.contact", "test operator")]
    assert env.client.get(f"/api/v1/audit?target={SITE}", headers=env.headers(Role.ADMIN)
                          ).json()["entries"][0]["action"] == "site.rating_profile"

    # The month's ranking, recounted from the events: the revoked 差评 counts nowhere.
    ranking = env.client.get("/api/v1/ratings/ranking?month=2026-11&scope=staff",
                             headers=env.headers(Role.VIEWER)).json()
    [row] = ranking["rows"]
    assert (row["name"], row["ratings"], row["bad_ratings"], row["revoked"], row["unrated"]) \
        == ("张丽（中山市三乡镇行政服务中心）", 1, 0, 1, 1)
    assert (row["good_rating_rate"], row["rated_rate"], row["served"]) == (1.0, 0.5, 3)

    # The pages.
    env.login(Role.VIEWER)
    assert "张丽" in env.client.get("/ratings?state=all").text
    detail = env.client.get(f"/ratings/cases/{case['id']}").text
    assert "申诉成立，差评撤销" in detail
    assert "核实为误评" in detail
    assert "张丽（中山市三乡镇行政服务中心）" in env.client.get(
        "/ratings/ranking?month=2026-11&scope=staff").text
    statistics = env.client.get("/statistics?scope=window&period=month&start=2026-11-01"
                                "&end=2026-11-30").text
    assert "中山市三乡镇行政服务中心 3号窗口" in statistics


def test_the_read_model_on_both_databases(small_registry: sessionmaker[Session]) -> None:
    """Records, cases, the export and window/staff statistics read back alike on SQLite and
    PostgreSQL (the ranking and the export run the same queries)."""
    site = SimSite("zs-sanxiang-01", clock_ms=DAY_MS)
    events = [site.event(body) for body in (
        mm.WindowSignedIn(window=1, staff="zs0231"),
        mm.TicketIssued(ticket="A001", service="zonghe", ticket_class="normal", booked_ts=None,
                        channel="kiosk", people_ahead=0, wait=None),
        mm.TicketCalled(ticket="A001", window=1),
        mm.TicketDone(ticket="A001", window=1, served_s=300),
        mm.RatingGiven(ticket="A001", window=1, staff="zs0231", value=1, case=CASE),
    )]  # fmt: skip
    IngestProcessor(small_registry, CentralConfig(), EmbeddedTelemetrySink(small_registry)
                    ).process(received(*events), datetime(2026, 11, 23, 2, tzinfo=UTC))
    RatingRoster(small_registry).set_staff("zs-sanxiang-01", [("zs0231", "张丽")],
                                          actor=Actor.command_line(), now=datetime.now(UTC))
    read = ReadModel(small_registry)
    first = last = datetime(2026, 11, 23).date()
    [record] = read.ratings.records(first, last)
    assert (record.value, record.level, record.staff_name) == (1, "非常不满意", "张丽")
    [case] = read.ratings.cases(datetime(2026, 11, 23, 4, tzinfo=UTC))
    assert (case.late, case.site_name) == ("contact", "三乡雍陌村党群服务中心")
    [row] = read.ratings.export(first, last)
    assert (row["projectNo"], row["areaCode"], row["reportStatus"]) == (CASE.no, "", "pending")
    rows = read.statistics("staff", first.replace(day=1), first.replace(day=30), period="month")
    names = read.stat_names("staff", [r.key for r in rows])
    assert names == {"zs-sanxiang-01/zs0231": "张丽（三乡雍陌村党群服务中心）"}
    total = next(r for r in rows if r.service == "*")
    assert (total.period_label, total.bad_ratings, total.served) == ("2026-11", 1, 1)
    # A row altered behind the central's back is skipped (and logged), the rest is counted.
    with small_registry.begin() as session:
        session.execute(update(EventRecord).where(EventRecord.seq == 5)
                        .values(body={"type": "rating.given", "value": "many"}))
    [total] = [r for r in read.statistics("staff", first, last) if r.service == "*"]
    assert (total.ratings, total.served) == (0, 1)

"""The REST API on a real app: real ingest, real Mosquitto, SQLite (stats also on PostgreSQL)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from central.auth import Role
from central.config import CentralConfig
from central.db import make_engine, migrate, session_factory
from central.ingest import IngestProcessor
from central.inventory import ansible_group
from central.models import IngestReject, Service, Site
from central.queries import ReadModel
from central.seed import load_seed
from central.stats import ALL_SERVICES, BUSINESS_TZ
from firmware_protocols import mqtt_messages as mm
from tests.central.sim import SimSite, received
from tests.central.test_api_support import RunningApp, running_app, wait_until
from tests.servers import MosquittoBroker

SITE = "zs-sanxiang-01"
V = Role.VIEWER
OP = Role.OPERATOR
A = Role.ADMIN


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, mqtt_broker: MosquittoBroker
) -> Iterator[RunningApp]:
    with running_app(tmp_path_factory.mktemp("api"), mqtt_broker) as running:
        yield running


def get(env: RunningApp, url: str, role: Role = V, status: int = 200) -> object:
    response = env.client.get(url, headers=env.headers(role))
    assert response.status_code == status, response.text
    return response.json()


def test_sites_list_filters_and_health(env: RunningApp) -> None:
    body = get(env, "/api/v1/sites")
    assert isinstance(body, dict)
    assert body["total"] == 303  # the seed: city hall, 25 centres, 277 villages
    assert {s["health"] for s in body["sites"]} == {"unknown"}
    site = SimSite("zs-sanxiang-02")
    env.feed(site.state(), site.telemetry(waiting=5, oldest_wait_s=120))
    town = get(env, "/api/v1/sites?town=三乡镇")
    assert isinstance(town, dict)
    assert town["total"] == 12
    online = get(env, "/api/v1/sites?health=ok")
    assert isinstance(online, dict)
    # (other modules' retained states on the shared broker may add sites: no equality here)
    assert "zs-sanxiang-02" in [s["id"] for s in online["sites"]]
    assert "zs-sanxiang-03" not in [s["id"] for s in online["sites"]]
    search = get(env, "/api/v1/sites?q=三乡凤头&limit=5")
    assert isinstance(search, dict)
    assert [s["id"] for s in search["sites"]] == ["zs-sanxiang-02"]
    get(env, "/api/v1/sites?health=purple", status=422)
    get(env, "/api/v1/sites?limit=0", status=422)


def test_site_detail_has_windows_queues_devices(env: RunningApp) -> None:
    site = SimSite(SITE)
    env.feed(
        site.state(),
        site.telemetry(
            waiting=3,
            oldest_wait_s=300,
            devices=[mm.DeviceStat(device="printer-1", kind="printer", status="ok", detail=None)],
        ),
    )
    detail = get(env, f"/api/v1/sites/{SITE}")
    assert isinstance(detail, dict)
    assert detail["online"] is True
    assert detail["health"] == "ok"
    zonghe = next(s for s in detail["services"] if s["code"] == "zonghe")
    assert (zonghe["waiting"], zonghe["oldest_wait_s"]) == (3, 300)
    first = detail["windows"][0]
    assert (first["number"], first["state"], first["ticket"], first["staff"]) == (
        1,
        "serving",
        "Z001",
        None,
    )
    assert [d["device"] for d in detail["devices"]] == ["printer-1"]
    get(env, "/api/v1/sites/no-such-site", status=404)


def test_events_listing(env: RunningApp) -> None:
    site = SimSite("zs-sanxiang-03")
    env.feed(site.state(), site.event(mm.HelpRequested(button="h1", location="自助区")))
    events = get(env, "/api/v1/events?site=zs-sanxiang-03")
    assert isinstance(events, dict)
    assert [(e["seq"], e["type"]) for e in events["events"]] == [(1, "help.requested")]
    assert events["events"][0]["body"]["location"] == "自助区"
    get(env, "/api/v1/events?site=nowhere", status=404)
    get(env, "/api/v1/events?limit=5000", status=422)


def test_alarm_acknowledge_through_the_api(env: RunningApp) -> None:
    site = SimSite("zs-sanxiang-04")
    env.feed(
        site.state(),
        site.event(
            mm.DeviceStatus(device="printer-1", kind="printer", status="fault", detail="paper_out")
        ),
    )
    alarms = get(env, "/api/v1/alarms?site=zs-sanxiang-04")
    assert isinstance(alarms, dict)
    (alarm,) = [a for a in alarms["alarms"] if a["type"] == "device_fault"]
    assert alarm["acknowledged_at"] is None
    assert alarm["device"] == "printer-1"
    url = f"/api/v1/alarms/{alarm['id']}/ack"
    acked = env.client.post(url, headers=env.headers(OP))
    assert acked.status_code == 200, acked.text
    assert acked.json()["acknowledged_by"] == "test operator"
    again = env.client.post(url, headers=env.headers(A))
    assert again.json()["acknowledged_by"] == "test operator"  # idempotent: first person kept
    assert (
        env.client.post("/api/v1/alarms/99999999/ack", headers=env.headers(OP)).status_code == 404
    )
    assert env.client.post("/api/v1/alarms/abc/ack", headers=env.headers(OP)).status_code == 422


def test_command_reaches_the_edge_and_completes(env: RunningApp) -> None:
    received_cmds: list[mqtt.MQTTMessage] = []
    edge = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-{uuid.uuid4().hex[:8]}")
    edge.on_message = lambda _c, _u, message: received_cmds.append(message)
    edge.connect(env.broker.host, env.broker.port)
    edge.subscribe(f"onedoor/v1/{SITE}/cmd/+", qos=1)
    edge.loop_start()
    try:
        wait_until(lambda: edge.is_connected())
        response = env.client.post(
            f"/api/v1/sites/{SITE}/commands",
            json={"name": "reprint", "args": {"ticket": "A012"}, "ttl_s": 120},
            headers=env.headers(OP),
        )
        assert response.status_code == 202, response.text
        sent = response.json()
        assert sent["state"] == "pending"
        assert sent["issued_by"] == "test operator"
        wait_until(lambda: len(received_cmds) == 1)
    finally:
        edge.disconnect()
        edge.loop_stop()
    message = received_cmds[0]
    assert message.topic == f"onedoor/v1/{SITE}/cmd/reprint"
    command = mm.decode("cmd", message.payload, site_id=SITE, command="reprint")
    assert isinstance(command, mm.Cmd)
    assert str(command.id) == sent["id"]
    env.feed(
        mm.CmdResult(site=SITE, id=command.id, ok=True, error=None, ts=command.issued_ts + 500)
    )
    done = get(env, f"/api/v1/commands/{sent['id']}")
    assert isinstance(done, dict)
    assert done["state"] == "succeeded"
    listing = get(env, f"/api/v1/sites/{SITE}/commands")
    assert isinstance(listing, dict)
    assert listing["commands"][0]["id"] == sent["id"]


def test_command_to_an_offline_site_waits_then_expires(env: RunningApp) -> None:
    response = env.client.post(
        "/api/v1/sites/zs-city/commands",
        json={"name": "announce", "args": {"text": "系统维护，请稍候", "repeat": 1}, "ttl_s": 60},
        headers=env.headers(OP),
    )
    sent = response.json()
    assert (sent["state"], sent["waiting_for_site"]) == ("pending", True)
    real_now = env.central.now
    env.central.now = lambda: real_now() + dt.timedelta(seconds=61)
    try:
        later = get(env, f"/api/v1/commands/{sent['id']}")
        assert isinstance(later, dict)
        assert later["state"] == "expired"
        metrics = env.client.get("/metrics", headers=env.headers(V)).text
        assert "onedoor_central_commands_pending 0" in metrics
    finally:
        env.central.now = real_now


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "reprint", "args": {"ticket": "lowercase"}}, 422),
        ({"name": "announce", "args": {"text": "x", "repeat": 9}}, 422),
        ({"name": "announce", "args": {"text": "line\nbreak", "repeat": 1}}, 422),
        ({"name": "format_disk", "args": {}}, 422),
        ({"name": "reprint", "args": {"ticket": "A001"}, "ttl_s": 0}, 422),
        ({"name": "reprint", "args": {"ticket": "A001", "extra": 1}}, 422),
    ],
)
def test_bad_commands_are_refused(env: RunningApp, body: dict[str, object], status: int) -> None:
    response = env.client.post(f"/api/v1/sites/{SITE}/commands", json=body, headers=env.headers(OP))
    assert response.status_code == status, response.text


def test_a_notice_the_led_font_cannot_show_is_refused_with_the_reason(env: RunningApp) -> None:
    body = {"name": "screen_notice", "args": {"text": "暂停取号😀", "screen": None,
                                              "duration_s": 60}}
    response = env.client.post(f"/api/v1/sites/{SITE}/commands", json=body, headers=env.headers(OP))
    assert response.status_code == 422, response.text
    assert "cannot be shown on the LED screens" in response.text
    assert "U+1F600" in response.text


def test_a_refused_command_says_why(env: RunningApp) -> None:
    """The contract's schema refusal reaches the operator as 422 with the field and reason."""
    response = env.client.post(
        f"/api/v1/sites/{SITE}/commands",
        json={"name": "announce", "args": {"text": "请到3号窗口", "repeat": 9}},
        headers=env.headers(OP),
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "invalid announce args" in detail
    assert "Expected `int` <= 5 - at `$.repeat`" in detail


def test_a_command_the_encoder_refuses_is_422_and_not_recorded(env: RunningApp) -> None:
    """Args that pass the schema but cannot go on the wire (a lone surrogate is not UTF-8):
    refused with the encoder's reason before anything is recorded or published."""
    site = "zs-sanxiang-07"
    body = b'{"name": "announce", "args": {"text": "\\ud800", "repeat": 1}}'
    response = env.client.post(
        f"/api/v1/sites/{site}/commands",
        content=body,
        headers={**env.headers(OP), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert "surrogates not allowed" in response.json()["detail"]
    listing = get(env, f"/api/v1/sites/{site}/commands")
    assert listing == {"commands": []}


def test_command_to_unknown_site_is_404(env: RunningApp) -> None:
    response = env.client.post(
        "/api/v1/sites/nowhere/commands",
        json={"name": "reprint", "args": {"ticket": "A001"}},
        headers=env.headers(OP),
    )
    assert response.status_code == 404


def test_inventory_is_ansible_json_with_towns_and_config_versions(env: RunningApp) -> None:
    patch = env.client.patch(
        "/api/v1/sites/zs-city", json={"expected_config_version": "cfg-42"}, headers=env.headers(A)
    )
    assert patch.status_code == 200
    assert patch.json()["config_drift"] is True
    bad = env.client.patch(
        "/api/v1/sites/zs-city",
        json={"expected_config_version": "has space"},
        headers=env.headers(A),
    )
    assert bad.status_code == 422
    inventory = get(env, "/api/v1/inventory", role=OP)
    assert isinstance(inventory, dict)
    hostvars = inventory["_meta"]["hostvars"]
    assert len(hostvars) == 303
    assert hostvars["zs-city"]["onedoor_expected_config_version"] == "cfg-42"
    towns = [g for g in inventory["all"]["children"] if not g.startswith(("kind_", "ungrouped"))]
    assert len(towns) == 25
    assert "zs-sanxiang-01" in inventory["三乡镇"]["hosts"]
    assert set(inventory["kind_village"]["hosts"]) <= set(hostvars)
    for group in inventory["all"]["children"]:
        assert re.fullmatch(r"[^\W\d]\w*", group), group  # Ansible's group-name rule


def test_ansible_group_names() -> None:
    assert ansible_group("三乡镇") == "三乡镇"
    assert ansible_group("火炬 开发区") == "火炬_开发区"
    assert ansible_group("1st-town") == "town_1st_town"


def test_metrics_exposition(env: RunningApp) -> None:
    response = env.client.get("/metrics", headers=env.headers(V))
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = [line for line in response.text.splitlines() if line and not line.startswith("#")]
    for line in lines:
        assert re.fullmatch(r'[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+', line), (
            line
        )
    assert 'onedoor_central_alarms_active{severity="critical"}' in response.text
    assert "onedoor_central_http_requests_total{" in response.text
    assert 'onedoor_central_ingest_cpu_seconds_total{stage="decode"}' in response.text
    assert 'onedoor_central_ingest_cpu_seconds_total{stage="mqtt.receive"}' in response.text
    assert "onedoor_central_ingest_committed_total " in response.text


def _samples(exposition: str) -> dict[str, str]:
    """``name{labels}`` -> value text, for every sample line of a Prometheus exposition."""
    pairs = (line.rsplit(" ", 1) for line in exposition.splitlines() if line[:1] not in "#")
    return dict(pairs)


def test_metrics_per_site_and_exact_numbers(env: RunningApp) -> None:
    """Counters past a million and unix times print every digit; sites have their own series."""
    site_id = "zs-xiaolan-01"
    seen = dt.datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=dt.UTC)
    with env.central.sessions.begin() as session:
        site = session.get_one(Site, site_id)
        site.online, site.last_seen_at, site.outbox_depth = True, seen, 7
        site.acked_seq, site.max_seq = 123_456_789, 123_456_790
        site.expected_config_version, site.reported_config_version = "cfg-9", "cfg-8"
        session.add(IngestReject(site_id=site_id, reason="schema", count=1_234_567,
                                 first_at=seen, last_at=seen, last_detail="x"))  # fmt: skip
        service = session.scalars(
            select(Service).where(Service.site_id == site_id, Service.code == "zonghe")
        ).one()
        service.waiting, service.oldest_wait_s = 4, 1_234
    samples = _samples(env.client.get("/metrics", headers=env.headers(V)).text)
    site = f'site="{site_id}"'
    assert samples[f"onedoor_site_acked_seq{{{site}}}"] == "123456789"
    assert samples[f"onedoor_site_max_seq{{{site}}}"] == "123456790"
    assert samples[f"onedoor_site_last_seen_timestamp_seconds{{{site}}}"] == "1795426215.123456"
    assert samples[f"onedoor_site_online{{{site}}}"] == "1"
    assert samples[f"onedoor_site_outbox_depth{{{site}}}"] == "7"
    assert samples[f"onedoor_site_config_drift{{{site}}}"] == "1"
    assert samples[f'onedoor_site_ingest_rejected_total{{{site},reason="schema"}}'] == "1234567"
    assert samples[f'onedoor_site_queue_waiting{{{site},service="zonghe"}}'] == "4"
    assert samples[f'onedoor_site_queue_oldest_wait_seconds{{{site},service="zonghe"}}'] == "1234"
    info = f'onedoor_site_info{{{site},name="小榄大塘村党群服务中心",town="小榄镇",kind="village"}}'
    assert samples[info] == "1"
    assert int(samples['onedoor_central_ingest_rejected_total{reason="schema"}']) >= 1_234_567
    started = samples["onedoor_central_start_time_seconds"]
    assert float(started) == env.central.metrics.started  # every digit, not 1.76e+09
    assert samples['onedoor_central_sites{state="online"}'].isdigit()


def test_tokens_admin_api(env: RunningApp) -> None:
    created = env.client.post(
        "/api/v1/tokens", json={"role": "viewer", "name": "manager-chen"}, headers=env.headers(A)
    )
    assert created.status_code == 201
    token = created.json()["token"]
    assert (
        env.client.get(
            "/api/v1/sites?limit=1", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 200
    )
    listing = get(env, "/api/v1/tokens", role=A)
    assert isinstance(listing, dict)
    assert token not in json.dumps(listing)
    token_id = created.json()["id"]
    assert (
        env.client.delete(f"/api/v1/tokens/{token_id}", headers=env.headers(A)).status_code == 204
    )
    assert (
        env.client.get(
            "/api/v1/sites?limit=1", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 401
    )
    bad = env.client.post(
        "/api/v1/tokens", json={"role": "root", "name": "x"}, headers=env.headers(A)
    )
    assert bad.status_code == 422


def test_statistics_bad_ranges(env: RunningApp) -> None:
    get(env, "/api/v1/statistics?from=2026-11-23&to=2026-11-01", status=422)
    get(env, "/api/v1/statistics?from=2026-01-01&to=2026-12-31", status=422)
    get(env, "/api/v1/statistics?from=yesterday", status=422)
    get(env, "/api/v1/statistics?scope=galaxy", status=422)
    get(env, "/api/v1/statistics?site=nowhere", status=404)


# --------------------------------------------------------------------------- statistics on both DBs

DAY = dt.date(2026, 11, 23)
T9 = int(dt.datetime(2026, 11, 23, 9, 0, tzinfo=BUSINESS_TZ).timestamp() * 1000)


def _event(site: str, seq: int, at_s: int, body: mm.EventBody) -> mm.Event:
    return mm.Event(
        site=site, seq=seq, id=uuid.uuid4(), ts=T9 + at_s * 1000, clock_synced=True, body=body
    )


def _issued(ticket: str) -> mm.TicketIssued:
    return mm.TicketIssued(
        ticket=ticket, service="zonghe", ticket_class="normal", booked_ts=None,
        channel="kiosk", people_ahead=0, wait=None,
    )  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_statistics_query_on_both_databases(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/s.db"
        if backend == "sqlite"
        else request.getfixturevalue("fresh_postgres_url")
    )
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        load_seed(session)
    site = "zs-sanxiang-01"
    events = [
        _event(site, 1, 0, _issued("Z001")),
        _event(site, 2, 30, _issued("Z002")),
        _event(site, 3, 120, mm.TicketCalled(ticket="Z001", window=1)),  # wait 120
        _event(site, 4, 420, mm.TicketDone(ticket="Z001", window=1, served_s=300)),
        _event(site, 5, 421, mm.RatingGiven(ticket="Z001", window=1, staff="w1", value=5)),
        _event(site, 6, 450, mm.TicketCalled(ticket="Z002", window=1)),  # wait 420
        _event(site, 7, 510, mm.TicketNoShow(ticket="Z002", window=1, requeued=False)),
        _event(site, 8, 600, mm.HelpRequested(button="h1", location="自助区")),
        _event(site, 9, 645, mm.HelpAcknowledged(button="h1", staff="w2")),  # 45 s
        _event(site, 10, 86_400, _issued("Z001")),  # next day: outside the range
    ]
    IngestProcessor(sessions, CentralConfig(database_url=url)).process(received(*events))
    rows = ReadModel(sessions).statistics("site", DAY, DAY, site_id=site)
    town_rows = ReadModel(sessions).statistics("town", DAY, DAY)
    total = next(r for r in rows if r.service == ALL_SERVICES)
    assert (total.issued, total.served, total.done_rate) == (2, 1, 0.5)
    assert (total.ratings, total.good_rating_rate) == (1, 1.0)
    assert (total.wait.mean, total.wait.p50, total.wait.p90) == (270, 120, 420)
    assert total.service_time.mean == 300
    assert (total.no_shows, total.no_show_rate) == (1, 0.5)
    assert total.help_requests == 1
    assert total.help_response is not None
    assert total.help_response.mean == 45
    assert [r.key for r in town_rows if r.service == ALL_SERVICES] == ["三乡镇"]
    engine.dispose()


def test_statistics_json_and_csv_endpoints(env: RunningApp) -> None:
    site = "zs-sanxiang-05"
    env.feed(
        _event(site, 1, 0, _issued("Z001")),
        _event(site, 2, 60, mm.TicketCalled(ticket="Z001", window=1)),
        _event(site, 3, 360, mm.TicketDone(ticket="Z001", window=1, served_s=300)),
    )
    body = get(env, f"/api/v1/statistics?scope=site&site={site}&from=2026-11-23&to=2026-11-23")
    assert isinstance(body, dict)
    total = body["rows"][0]
    assert (total["service"], total["issued"], total["served"], total["wait_mean_s"]) == (
        "*",
        1,
        1,
        60,
    )
    response = env.client.get(
        "/api/v1/statistics.csv?scope=town&from=2026-11-23&to=2026-11-23", headers=env.headers(V)
    )
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert table[0][7] == "办件量 (served)"
    assert table[1][:6] == ["town", "三乡镇", "三乡镇", "2026-11-23", "*", "全部事项"]


def test_site_telemetry_history(env: RunningApp) -> None:
    """The embedded store's history, as the site page charts it."""
    import time

    site_id = "zs-sanxiang-06"
    now_ms = int(time.time() * 1000)
    site = SimSite(site_id, clock_ms=now_ms - now_ms % 60_000 - 30 * 60_000)  # a minute's start
    env.feed(site.state(), *(site.telemetry(waiting=w, outbox=w * 10) for w in (1, 4, 6)))
    url = f"/api/v1/sites/{site_id}/telemetry"
    recent = get(env, f"{url}?metric=queue.waiting&key=zonghe&hours=1")
    assert isinstance(recent, dict)
    assert recent["resolution_s"] == 0  # raw points: the last day
    assert [p[1] for p in recent["points"]] == [1.0, 4.0, 6.0]
    month = get(env, f"{url}?metric=queue.waiting&key=zonghe&hours=240")
    assert isinstance(month, dict)
    assert month["resolution_s"] == 60  # older than the raw day: per-minute rollups
    assert [p[1:] for p in month["points"]] == [[11 / 3, 1.0, 6.0, 3]]
    outbox = get(env, f"{url}?metric=outbox.depth")
    assert isinstance(outbox, dict)
    assert [p[1] for p in outbox["points"]] == [10.0, 40.0, 60.0]
    assert get(env, f"{url}?metric=queue.waiting&key=huji")["points"] == []  # type: ignore[index]
    get(env, f"{url}?metric=queue.waiting", status=422)  # per service: key needed
    get(env, f"{url}?metric=outbox.depth&key=zonghe", status=422)
    get(env, f"{url}?metric=cpu", status=422)
    get(env, f"{url}?metric=outbox.depth&hours=0", status=422)
    get(env, "/api/v1/sites/no-such-site/telemetry?metric=outbox.depth", status=404)

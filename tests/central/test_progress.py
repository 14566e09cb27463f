"""The citizens' progress pages on the central: links from ingest, the page from the site's
latest ``progress`` (real broker, real app), limits, the public host, the live stream."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.app import create_app
from central.config import CentralConfig
from central.ingest import IngestProcessor
from central.models import EventRecord, TicketLink
from central.progress import Outcome, prune_ticket_links, token_digest
from central.queries import ReadModel
from central.seed import read_sites
from central.stats import BUSINESS_TZ
from firmware_protocols import mqtt_messages as mm
from tests.central.sim import SimSite, received
from tests.central.test_api_support import SECRET, RunningApp, running_app, wait_until
from tests.servers import MosquittoBroker

TOKEN = "q3Zf0pX9-aL_2mB7cD4eFg"
OTHER = "Zz9_yY8-xX7wW6vV5uU4tT"
SITE = "zs-sanxiang-01"


def issued(number: str = "A012", token: str | None = TOKEN, service: str = "zonghe"
           ) -> mm.TicketIssued:
    return mm.TicketIssued(ticket=number, service=service, ticket_class="normal",
                           booked_ts=None, channel="kiosk", people_ahead=2,
                           wait=mm.WaitPrediction(p50_s=300, p90_s=900), token=token)


def progress(site: SimSite, *, day_seq: int = 0, waiting: list[mm.WaitingProgress] | None = None,
             called: list[mm.CalledProgress] | None = None,
             ended: list[mm.EndedProgress] | None = None,
             issuing: mm.IssuingStatus = "open", notice: str | None = None) -> mm.Progress:
    site.clock_ms += 1000
    return mm.Progress(site=site.site_id, ts=site.clock_ms, clock_synced=True,
                       day="2026-11-23", day_seq=day_seq, seq=site.next_seq - 1,
                       issuing=issuing, notice=notice, services={"zonghe": "综合受理"},
                       waiting=waiting or [], called=called or [], ended=ended or [])


# --------------------------------------------------------------------------- the links


def test_ingest_keeps_the_link_by_its_hash_and_never_the_token(
        small_registry: sessionmaker[Session]) -> None:
    processor = IngestProcessor(small_registry, CentralConfig())
    site = SimSite(SITE)
    at = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # 22:00 in Zhongshan
    event = site.event(issued())
    processor.process(received(site.state(), event, site.event(issued("A013", None))), now=at)
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    assert token_digest(TOKEN) == digest
    with small_registry() as session:
        links = session.scalars(select(TicketLink)).all()
        bodies = [b for (b,) in session.execute(select(EventRecord.body))]
    assert [(x.token_sha256, x.ticket, x.service, x.issued_seq) for x in links] == [
        (digest, "A012", "zonghe", event.seq)]  # A013 came without a token: no page
    assert all("token" not in body for body in bodies)
    assert TOKEN not in json.dumps(bodies)
    # It expires at the end of the local day of issue (the event's time, clock synced).
    issue_day = datetime.fromtimestamp(event.ts / 1000, BUSINESS_TZ).date()
    assert links[0].expires_at == datetime.combine(
        issue_day + timedelta(days=1), datetime.min.time(), BUSINESS_TZ)
    read = ReadModel(small_registry)
    link = read.ticket_link(digest)
    assert link is not None
    assert (link.site_name, link.wait_p50_s, link.wait_p90_s) == (
        "三乡雍陌村党群服务中心", 300, 900)
    assert read.ticket_link(token_digest(OTHER)) is None
    # The outcome of its events, for a page whose ticket the site's message no longer holds.
    assert read.ticket_outcome(link) is None
    steps: list[tuple[mm.EventBody, Outcome]] = [
        (mm.TicketCalled(ticket="A012", window=2), Outcome("called", 2)),
        (mm.TicketNoShow(ticket="A012", window=2, requeued=True), Outcome("requeued", None)),
        (mm.TicketCalled(ticket="A013", window=1), Outcome("requeued", None)),  # not ours
        (mm.TicketCalled(ticket="A012", window=3), Outcome("called", 3)),
        (mm.TicketDone(ticket="A012", window=3, served_s=300), Outcome("done", 3)),
    ]
    for body, outcome in steps:
        processor.process(received(site.event(body)), now=at)
        assert read.ticket_outcome(link) == outcome
    with small_registry.begin() as session:
        assert prune_ticket_links(session, links[0].expires_at - timedelta(seconds=1)) == 0
        assert prune_ticket_links(session, links[0].expires_at + timedelta(seconds=1)) == 1


# --------------------------------------------------------------------------- the pages


@pytest.fixture
def env(tmp_path: Path, mqtt_broker: MosquittoBroker) -> Iterator[RunningApp]:
    with running_app(tmp_path, mqtt_broker) as env:
        wait_until(lambda: env.service.mqtt.connected, timeout=20)
        yield env
        env.clear_retained(SITE)
        env.publish_raw(f"onedoor/v1/{SITE}/progress", b"", retain=True)


def today_site() -> SimSite:
    """A site whose clock is now: its tickets' pages have not expired."""
    return SimSite(SITE, clock_ms=int(time.time() * 1000))


def arrived(env: RunningApp, count: int) -> None:
    wait_until(lambda: env.central.progress.received >= count, timeout=10)


def test_a_ticket_page_follows_its_sites_progress(env: RunningApp) -> None:
    site = today_site()
    env.feed(site.event(mm.DayReset(day="2026-11-23")), site.event(issued()))
    page = env.client.get(f"/q/{TOKEN}")
    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    seeded = next(row.name for row in read_sites() if row.id == SITE)
    assert "A012" in page.text
    assert seeded in page.text
    assert "暂未收到站点的排队信息" in page.text  # nothing from the site yet: no guess
    env.publish(site.state(), progress(site, day_seq=1, waiting=[
        mm.WaitingProgress(ticket="A012", service="zonghe", ahead=5, p50_s=300, p90_s=900,
                           requeued=False)]))
    arrived(env, 1)
    state = env.client.get(f"/q/{TOKEN}/state").json()
    assert (state["state"], state["ahead"], state["live"], state["alert"]) == (
        "waiting", 5, True, None)
    assert state["headline"] == "前面还有 5 人"
    assert state["detail"] == "预计等候 5–15 分钟"
    assert state["service"] == "综合受理"
    assert state["status"] == "实时"
    english = env.client.get(f"/q/{TOKEN}/state?lang=en").json()
    assert english["headline"] == "5 ahead of you"
    # 3 ahead: the page alerts; then called at window 3, then 过号 and requeued.
    for entry, expected in [
        ({"waiting": [mm.WaitingProgress(ticket="A012", service="zonghe", ahead=3, p50_s=60,
                                          p90_s=240, requeued=False)]},
         ("waiting", "near", "前面还有 3 人")),
        ({"called": [mm.CalledProgress(ticket="A012", service="zonghe", window=3,
                                        serving=False)]},
         ("called", "called", "请到 3 号窗口办理")),
        ({"waiting": [mm.WaitingProgress(ticket="A012", service="zonghe", ahead=0, p50_s=0,
                                          p90_s=0, requeued=True)]},
         ("requeued", "near", "下一位就是您")),
        ({"ended": [mm.EndedProgress(ticket="A012", outcome="no_show", window=3)]},
         ("no_show", None, "您已过号")),
    ]:
        before = env.central.progress.received
        env.publish(progress(site, day_seq=1, **entry))  # type: ignore[arg-type]
        arrived(env, before + 1)
        state = env.client.get(f"/q/{TOKEN}/state").json()
        assert (state["state"], state["alert"], state["headline"]) == expected
    assert state["advice"] == "请到取号机重新取号，或向大厅工作人员咨询。"
    # The site goes offline (its Will): the last known state with its time, not live.
    before = env.central.progress.received
    env.publish(site.state("offline", lwt=True))
    wait_until(lambda: not env.client.get(f"/q/{TOKEN}/state").json()["live"])
    state = env.client.get(f"/q/{TOKEN}/state").json()
    assert state["state"] == "no_show"
    assert state["alert"] is None
    assert state["status"].startswith("站点暂时无法连接")
    assert state["updated"] in state["status"]


def test_an_emergency_stop_reaches_the_page(env: RunningApp) -> None:
    site = today_site()
    env.feed(site.event(issued()))
    env.publish(site.state(), progress(site, issuing="stopped", notice="台风红色预警", waiting=[
        mm.WaitingProgress(ticket="A012", service="zonghe", ahead=9, p50_s=None, p90_s=None,
                           requeued=False)]))
    arrived(env, 1)
    state = env.client.get(f"/q/{TOKEN}/state").json()
    assert state["notice"] == "暂停取号：台风红色预警。已取的号码照常办理。"
    assert state["detail"] == "等候时间暂无预测"


def test_a_ticket_of_an_earlier_day_is_not_read_from_todays_message(env: RunningApp) -> None:
    site = today_site()
    env.feed(site.event(issued()))  # seq 1, then the site's day changed at seq 5
    env.publish(site.state(), progress(site, day_seq=5, waiting=[
        mm.WaitingProgress(ticket="A012", service="zonghe", ahead=0, p50_s=0, p90_s=0,
                           requeued=False)]))  # today's A012 is someone else
    arrived(env, 1)
    state = env.client.get(f"/q/{TOKEN}/state").json()
    assert (state["state"], state["ahead"]) == ("unknown", None)


def test_unknown_expired_and_too_many(env: RunningApp) -> None:
    assert env.client.get(f"/q/{OTHER}").status_code == 404
    assert env.client.get("/q/not-a-token/state").status_code == 404
    site = today_site()
    env.feed(site.event(issued()))
    with env.central.sessions.begin() as session:
        link = session.get_one(TicketLink, token_digest(TOKEN))
        link.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    env.app.state.progress_pages._links.clear()
    gone = env.client.get(f"/q/{TOKEN}")
    assert gone.status_code == 410
    assert "此二维码已过期" in gone.text
    # Guessing: unknown tokens from one address are throttled.
    statuses = [env.client.get(f"/q/{OTHER}/state").status_code for _ in range(25)]
    assert statuses[:5] == [404] * 5
    assert statuses[-1] == 429


def test_per_ticket_request_limit(tmp_path: Path) -> None:
    config = CentralConfig(database_url=f"sqlite:///{tmp_path / 'c.db'}",
                           http_allowed_hosts="testserver", progress_requests_burst=3,
                           progress_requests_per_min=1.0)
    app = create_app(config, with_service=False, secret=SECRET)
    with TestClient(app) as client:
        processor = IngestProcessor(app.state.central.sessions, config)
        with app.state.central.sessions.begin() as session:
            from central.seed import load_seed
            load_seed(session)
        site = today_site()
        processor.process(received(site.event(issued())))
        codes = [client.get(f"/q/{TOKEN}/state").status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        assert client.get(f"/q/{TOKEN}/state").headers.get("retry-after") is not None


def test_the_public_host_serves_the_pages_only(tmp_path: Path) -> None:
    config = CentralConfig(database_url=f"sqlite:///{tmp_path / 'c.db'}",
                           http_allowed_hosts="dashboards.example.cn",
                           progress_public_url="https://q.example.cn")
    app = create_app(config, with_service=False, secret=SECRET)
    with TestClient(app, base_url="https://q.example.cn") as public:
        assert public.get(f"/q/{OTHER}").status_code == 404  # a page route: not found
        assert public.get("/static/progress.js").status_code == 200
        assert public.get("/static/progress.css").status_code == 200
        for path in ("/", "/login", "/api/sites", "/static/app.css", "/docs", "/metrics"):
            answer = public.get(path)
            assert answer.status_code == 404, path
            assert "progress pages only" in answer.json()["detail"]
    with TestClient(app, base_url="https://elsewhere.example.cn") as other:
        assert other.get(f"/q/{OTHER}").status_code == 400
    with TestClient(app, base_url="https://dashboards.example.cn") as staff:
        assert staff.get("/login").status_code == 200


def test_the_live_stream_sends_each_change(env: RunningApp) -> None:
    site = today_site()
    env.feed(site.event(issued()))
    env.publish(site.state(), progress(site, waiting=[
        mm.WaitingProgress(ticket="A012", service="zonghe", ahead=4, p50_s=120, p90_s=600,
                           requeued=False)]))
    arrived(env, 1)
    with env.client.stream("GET", f"/q/{TOKEN}/live") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = _events(stream.iter_lines())
        first = next(events)
        assert first["ahead"] == 4
        env.publish(progress(site, called=[
            mm.CalledProgress(ticket="A012", service="zonghe", window=7, serving=False)]))
        second = next(events)
        assert (second["state"], second["window"], second["alert"]) == ("called", 7, "called")


def _events(lines: Iterator[str]) -> Iterator[dict[str, object]]:
    deadline = time.monotonic() + 20
    name = ""
    for line in lines:
        assert time.monotonic() < deadline
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name == "progress":
            yield json.loads(line[6:])

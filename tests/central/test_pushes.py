"""Emergency stops and the city calendar, from the central's API to the hall and back.

Real parts: Mosquitto, the central (service and API), the edge daemon driving the
simulated hall's screens, printer and keypads. A town-wide stop reaches the hall
screen, the kiosk and the progress message; the tickets issued are still served;
the stop is lifted while the site is offline and the site resumes when it is back.
The city calendar is pushed the same way, and a site that does not report it gets
it again.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from central.auth import Role
from central.errors import CommandRefused, InvalidRequest
from central.models import AuditEntry, EventRecord, Site, SiteKind
from central.pushes import Pushes, check_calendar, check_reason
from central.service import command_args
from edge.simhall import HALL_SCREEN, simulated_hall
from firmware_protocols import mqtt_messages as mm
from onedoor.broker import free_port
from tests.central.edge_thread import EdgeThread, post
from tests.central.test_api_support import RunningApp, running_app, wait_until
from tests.servers import MosquittoBroker

SITE = "sim-hall"


@contextmanager
def app_with_simulated_hall(tmp_path: Path, broker: MosquittoBroker,
                            **settings: Any) -> Iterator[RunningApp]:
    """The running central with the simulated hall's site registered (``settings`` as
    :func:`tests.central.test_api_support.build_app`); its retained messages cleared after."""
    with running_app(tmp_path, broker, **settings) as env:
        with env.central.sessions.begin() as session:
            session.add(Site(id=SITE, name="模拟便民服务中心", town="模拟镇",
                             kind=SiteKind.DISTRICT))
        wait_until(lambda: env.service.mqtt.connected, timeout=20)
        yield env
        env.clear_retained(SITE)
        env.publish_raw(f"onedoor/v1/{SITE}/progress", b"", retain=True)


@pytest.fixture
def env(tmp_path: Path, mqtt_broker: MosquittoBroker) -> Iterator[RunningApp]:
    with app_with_simulated_hall(tmp_path, mqtt_broker) as env:
        yield env


def progress_issuing(env: RunningApp) -> str | None:
    """What the site's latest progress says of issuing, as the central holds it."""
    site = env.central.progress.site(SITE)
    return None if site is None or site.message is None else site.message.issuing


def site_state(env: RunningApp) -> dict[str, object]:
    with env.central.sessions() as session:
        site = session.get_one(Site, SITE)
        return dict(site.state or {})


def stop_sites(env: RunningApp, stop: str) -> dict[str, str]:
    """A stop's per-site results as the API gives them: site -> status."""
    answer = env.client.get(f"/api/v1/issuing/stops/{stop}/sites",
                            headers=env.headers(Role.VIEWER))  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    statuses = {s["site_id"]: s["status"] for s in body["sites"]}
    assert sum(body["counts"].values()) == len(statuses)
    return statuses


def test_a_town_stop_reaches_the_hall_and_its_lift_the_site_offline(
        env: RunningApp, tmp_path: Path, clips_dir: Path, mqtt_broker: MosquittoBroker) -> None:
    http_port = free_port()
    operator = env.headers(Role.OPERATOR)
    with simulated_hall(tmp_path / "hall", clips_dir=clips_dir, http_port=http_port,
                        mqtt_port=mqtt_broker.port) as sim:
        kiosk = f"http://127.0.0.1:{http_port}"
        with EdgeThread(sim) as edge:
            hall = edge.daemon.hall
            assert hall is not None
            post(kiosk, "/windows/1/sign_in", {"staff": "101"})
            ticket = post(kiosk, "/tickets", {"service": "shebao"})
            waiting, token = ticket["number"], ticket["progress_url"].rsplit("/", 1)[1]
            wait_until(lambda: site_state(env).get("status") == "online")
            decided = env.client.post("/api/v1/issuing/stops", headers=operator, json={
                "scope": "town", "target": "模拟镇", "reason": "台风红色预警"})
            assert decided.status_code == 201, decided.text
            stop = decided.json()["stop"]["id"]
            assert SITE in decided.json()["sites"]
            wait_until(lambda: hall.stop == (stop, "台风红色预警"), timeout=20)
            # The hall screen, the kiosk, the status the kiosk reads, the progress pages.
            wait_until(lambda: any("暂停取号 台风红色预警" in sim.screens.text(HALL_SCREEN, 0, n)
                                   for n in range(5)), timeout=20)
            refused = post(kiosk, "/tickets", {"service": "shebao"})
            assert (refused["status"], refused["error"]) == (409, "stopped")
            assert refused["message"].startswith("暂停取号 台风红色预警")
            with urllib.request.urlopen(f"{kiosk}/status", timeout=15) as answer:
                assert json.load(answer)["issuing"] == {"status": "stopped",
                                                        "notice": "台风红色预警"}
            wait_until(lambda: progress_issuing(env) == "stopped", timeout=20)
            page = env.client.get(f"/q/{token}/state").json()
            assert page["notice"] == "暂停取号：台风红色预警。已取的号码照常办理。"
            # The tickets issued are served.
            assert post(kiosk, "/windows/1/next")["ticket"] == waiting
            # The central sees what the site holds, and its history.
            wait_until(lambda: site_state(env).get("stop") == stop, timeout=20)
            assert stop_sites(env, stop) == {SITE: "applied"}  # the per-site result
            with env.central.sessions() as session:
                types = {e.type for e in session.query(EventRecord).filter_by(site_id=SITE)}
            assert "issuing.stopped" in types
            assert env.client.get("/api/v1/issuing/stops", headers=operator).json()[
                "stops"][0]["id"] == stop
            with env.central.sessions() as session:
                audited = session.scalars(select(AuditEntry.action).where(
                    AuditEntry.target == f"stop:{stop}")).all()
            assert audited == ["issuing.stop"]
        # The site goes offline; the stop is lifted meanwhile.
        wait_until(lambda: site_state(env).get("status") == "offline", timeout=20)
        lifted = env.client.post(f"/api/v1/issuing/stops/{stop}/lift", headers=operator)
        assert lifted.status_code == 200
        assert stop_sites(env, stop) == {SITE: "offline"}  # the lift waits for it
        assert env.client.get("/api/v1/issuing/stops", headers=operator).json()["stops"] == []
        with EdgeThread(sim) as edge:  # back: the lift waited in its broker session
            hall = edge.daemon.hall
            assert hall is not None
            wait_until(lambda: hall.stop is None, timeout=30)
            assert post(kiosk, "/tickets", {"service": "shebao"})["number"] == "A002"
            wait_until(lambda: site_state(env).get("stop") is None
                       and site_state(env).get("status") == "online", timeout=20)
            assert stop_sites(env, stop) == {SITE: "lifted"}

            # The city calendar: today (the hall's date) a holiday for the whole city.
            today = dt.datetime.now(hall.config.site.tz).date().isoformat()
            admin = env.headers(Role.ADMIN)
            put = env.client.put("/api/v1/calendar", headers=admin,
                                 json={"holidays": [today], "workdays": [], "special": []})
            assert put.status_code == 201, put.text
            version = put.json()["version"]
            wait_until(lambda: hall.pushed_versions()[1] == version, timeout=20)
            refused = post(kiosk, "/tickets", {"service": "shebao"})
            assert refused["error"] == "closed"
            assert refused["message"].startswith("节假日休息")
            wait_until(lambda: site_state(env).get("calendar") == version, timeout=20)
            assert env.client.get("/api/v1/calendar", headers=operator).json()[
                "calendar"]["holidays"] == [today]


def test_a_site_that_lacks_a_push_is_sent_it_again(env: RunningApp) -> None:
    pushes: Pushes = env.central.pushes
    now = env.central.now()
    with env.central.sessions.begin() as session:  # a retired site is sent nothing
        session.get_one(Site, "zs-shiqi").retired_at = now
    city, covered = pushes.stop("city", "", "演练", by="t", now=now)
    assert "zs-city" in covered
    assert "zs-shiqi" not in covered
    pushes.lift(city.id, by="t", now=now)
    stop, sites = pushes.stop("site", "zs-city", "系统维护", by="t", now=now)
    assert sites == ["zs-city"]
    with env.central.sessions.begin() as session:  # an edge online that holds nothing yet
        site = session.get_one(Site, "zs-city")
        site.online = True
        site.state = {"status": "online", "stop": None, "calendar": None}
        old = session.get_one(Site, "zs-xiqu")
        old.online = True
        old.state = {"status": "online"}  # an edge older than the pushes: left alone
    pending = pushes.pending(now)
    assert [(s, type(a).__name__) for s, a in pending] == [("zs-city", "IssuingArgs")]
    assert env.client.portal is not None
    env.client.portal.call(env.service.push_pending)  # on the app's own event loop
    assert pushes.pending(now + dt.timedelta(seconds=30)) == []  # sent: not again at once
    assert len(pushes.pending(now + dt.timedelta(seconds=61))) == 1  # still lacking: again
    pushes.lift(stop.id, by="t", now=now)
    with env.central.sessions.begin() as session:
        session.get_one(Site, "zs-city").state = {"status": "online", "stop": stop.id,
                                                  "calendar": None}
    lift = pushes.pending(now + dt.timedelta(seconds=120))
    assert [(a.stop, a.stopped) for _, a in lift
            if isinstance(a, mm.IssuingArgs)] == [(stop.id, False)]


def test_bad_stops_and_calendars_are_refused(env: RunningApp) -> None:
    operator, admin = env.headers(Role.OPERATOR), env.headers(Role.ADMIN)
    bad = [
        ({"scope": "site", "target": "nowhere", "reason": "维护"}, 404),
        ({"scope": "town", "target": "火星镇", "reason": "维护"}, 422),
        ({"scope": "province", "target": "", "reason": "维护"}, 422),
        ({"scope": "city", "target": "", "reason": "暂停😀"}, 422),
    ]
    # By hand, a stop would be undone by the next push: only the stops API decides them.
    for name, args in (("issuing", {"stop": "x", "stopped": True, "reason": "维护"}),
                       ("calendar", {"version": "v", "holidays": [], "workdays": [],
                                     "special": []})):
        refused = env.client.post("/api/v1/sites/zs-city/commands", headers=operator,
                                  json={"name": name, "args": args})
        assert refused.status_code == 422, refused.text
        with pytest.raises(CommandRefused, match="decided through /api/v1/"):
            command_args(name, args)  # what bulk commands check too
    for body, status in bad:
        assert env.client.post("/api/v1/issuing/stops", headers=operator,
                               json=body).status_code == status, body
    answer = env.client.put("/api/v1/calendar", headers=admin,
                            json={"holidays": ["2026-02-30"], "workdays": ["2027-01-01"],
                                  "special": ["2027-01-01 12:00-09:00"]})
    assert answer.status_code == 422
    assert "no such date '2026-02-30'" in answer.json()["detail"]
    assert "must close after it opens" in answer.json()["detail"]
    assert env.client.get("/api/v1/calendar", headers=operator).json() == {"calendar": None}
    with pytest.raises(InvalidRequest):
        check_reason(" ")
    with pytest.raises(InvalidRequest, match="also a holiday"):
        check_calendar(["2027-01-01"], ["2027-01-01"], [])


def test_a_stops_per_site_results_name_each_sites_standing(env: RunningApp) -> None:
    """Offline sites wait for it; a later stop over a site supersedes it there; an edge
    whose state has no stop field predates stops; an unknown stop is a 404."""
    operator = env.headers(Role.OPERATOR)
    city = env.client.post("/api/v1/issuing/stops", headers=operator, json={
        "scope": "city", "target": "", "reason": "系统维护"}).json()["stop"]["id"]
    env.client.post("/api/v1/issuing/stops", headers=operator, json={
        "scope": "site", "target": "zs-city", "reason": "停电"})
    with env.central.sessions.begin() as session:
        older = session.scalars(select(Site).where(Site.id != "zs-city")
                                .order_by(Site.id).limit(1)).one()  # fmt: skip
        older.state = {"status": "online"}  # an edge from before the stops
        older_id = older.id
    statuses = stop_sites(env, city)
    assert statuses["zs-city"] == "superseded"
    assert statuses[older_id] == "older_edge"
    # The others: waiting when online (the shared broker may hold a retained state of an
    # earlier test's for one of them), else offline: none has applied it.
    with env.central.sessions() as session:
        online = dict(session.execute(select(Site.id, Site.online)).all())
    others = {site: status for site, status in statuses.items()
              if site not in ("zs-city", older_id)}
    assert others
    assert others == {site: "waiting" if online[site] else "offline" for site in others}
    assert env.client.get("/api/v1/issuing/stops/stop-nowhere/sites",
                          headers=operator).status_code == 404  # fmt: skip

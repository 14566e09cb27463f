"""A town's account sees and acts on its towns only: every read model method, every route.

``READS`` names every public method of :class:`central.queries.ReadModel` with a check
of what a 三乡镇 read model gives and refuses; a method missing from it fails the test,
so a new read cannot ship without deciding its scope. ``test_actions_*`` walk every
state-changing route as a 三乡镇 operator/admin against a 坦洲镇 site (403) and their own.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from central.alarms import AlarmBook
from central.auth import Role
from central.config import CentralConfig
from central.errors import Forbidden, OutOfScope
from central.ingest import IngestProcessor
from central.models import (
    Alarm,
    AlarmType,
    BulkCommand,
    Command,
    CommandStatus,
    Diagnostics,
    RatingRecord,
    Site,
)
from central.progress import LinkInfo
from central.queries import ReadModel
from central.seed import SERVICES_CSV, load_seed
from central.stats import business_date
from central.telemetry import EmbeddedTelemetrySink
from firmware_protocols import mqtt_messages as mm
from tests.central.sim import SimSite, called, received
from tests.central.test_api_support import RunningApp, running_app
from tests.servers import MosquittoBroker

OURS, THEIRS = "三乡镇", "坦洲镇"
SITES = """\
id,name,town,kind,lat,lon,windows
zs-sanxiang,中山市三乡镇行政服务中心,三乡镇,district,,,2
zs-sanxiang-01,三乡雍陌村党群服务中心,三乡镇,village,,,1
zs-tanzhou,中山市坦洲镇行政服务中心,坦洲镇,district,,,2
zs-tanzhou-01,坦洲金斗村党群服务中心,坦洲镇,village,,,1
"""
MINE, OTHER = "zs-sanxiang-01", "zs-tanzhou-01"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
SCOPE = frozenset({OURS})


def _issued(ticket: str) -> mm.TicketIssued:
    return mm.TicketIssued(ticket=ticket, service="zonghe", ticket_class="normal", booked_ts=None,
                           channel="kiosk", people_ahead=0, wait=None)  # fmt: skip


@pytest.fixture
def two_towns(sessions: sessionmaker[Session], tmp_path: Path) -> dict[str, Any]:
    """Two towns with events, telemetry, alarms, commands and a bulk command at each."""
    csv = tmp_path / "sites.csv"
    csv.write_text(SITES, encoding="utf-8")
    with sessions.begin() as session:
        load_seed(session, csv, SERVICES_CSV)
    sink = EmbeddedTelemetrySink(sessions)
    processor = IngestProcessor(sessions, CentralConfig(), sink)
    ids: dict[str, Any] = {}
    bulk = uuid.uuid4()
    for site_id in (MINE, OTHER):
        sim = SimSite(site_id, clock_ms=int(NOW.timestamp() * 1000) - 3_600_000)
        processor.process(received(sim.state("online"), sim.event(_issued("Z001")),
                                   sim.event(called()), sim.telemetry(), at=NOW), NOW)  # fmt: skip
    sink.flush()
    with sessions.begin() as session:
        book = AlarmBook(session, NOW)
        for site_id in (MINE, OTHER):
            book.raise_alarm(site_id, AlarmType.DEVICE_FAULT, device="printer-1")
            session.execute(update(Site).where(Site.id == site_id)
                            .values(expected_release="0.1.1"))  # it runs 0.1.0: drift
        session.add(BulkCommand(id=bulk, name="announce", args={}, ttl_s=60, target={"all": True},
                                issued_by="ops", issued_at=NOW, sites=2, refused={}))  # fmt: skip
        session.flush()
        for site_id in (MINE, OTHER):
            command = Command(id=uuid.uuid4(), site_id=site_id, name="announce", args={},
                              issued_at=NOW, expires_at=NOW + dt.timedelta(hours=1),
                              issued_by="ops", status=CommandStatus.SENT, bulk_id=bulk)  # fmt: skip
            session.add(command)
            ids[f"command:{site_id}"] = command.id
            session.flush()
            session.add(Diagnostics(command_id=command.id, site_id=site_id,
                                    device="0123456789abcdef", received_at=NOW,
                                    report={"logs": []}))  # fmt: skip
    with sessions() as session:
        for alarm in session.scalars(select(Alarm)):
            ids[f"alarm:{alarm.site_id}"] = alarm.id
    ids["bulk"] = bulk
    return ids


def _refused(call: Callable[[], object]) -> None:
    with pytest.raises(OutOfScope):
        call()


def _sites_of(rows: Any) -> set[str]:
    return {getattr(r, "id", None) or getattr(r, "site_id", None) or r for r in rows}


Check = Callable[[ReadModel, ReadModel, dict[str, Any]], None]

READS: dict[str, Check] = {
    "database_answers": lambda town, city, ids: None,  # says nothing about any site
    "scoped": lambda town, city, ids: (
        _check(town.scoped(None).scope == SCOPE),  # narrowing only: never widens
        _check(town.scoped(frozenset({THEIRS})).scope == frozenset())),
    "tile_states": lambda town, city, ids: _check(
        set(town.tile_states()) == {"zs-sanxiang", MINE} < set(city.tile_states())),
    "drift_states": lambda town, city, ids: _check(
        set(town.drift_states()) == {MINE} and set(city.drift_states()) == {MINE, OTHER}),
    "fleet_registry": lambda town, city, ids: _check(
        {t for _, t in town.fleet_registry().values()} == {OURS}),
    "fleet_tiles": lambda town, city, ids: _check({t.town for t in town.fleet_tiles()} == {OURS}),
    "site_summaries": lambda town, city, ids: (
        _check({s.town for s in town.site_summaries()} == {OURS}),
        _check(town.site_summaries(town=THEIRS) == [])),
    "towns": lambda town, city, ids: _check(town.towns() == [OURS] and city.towns() == [OURS,
                                                                                        THEIRS]),
    "service_names": lambda town, city, ids: _check(set(town.service_names()) <= set(
        city.service_names())),
    "sites": lambda town, city, ids: _check({s.town for s in town.sites()} == {OURS}),
    "require_site": lambda town, city, ids: (town.require_site(MINE),
                                             _refused(lambda: town.require_site(OTHER))),
    "require_town": lambda town, city, ids: (town.require_town(OURS),
                                             _refused(lambda: town.require_town(THEIRS))),
    "site_state": lambda town, city, ids: (town.site_state(MINE),
                                           _refused(lambda: town.site_state(OTHER))),
    "site_detail": lambda town, city, ids: (town.site_detail(MINE, NOW),
                                            _refused(lambda: town.site_detail(OTHER, NOW))),
    "site_live": lambda town, city, ids: (town.site_live(MINE, NOW),
                                          _refused(lambda: town.site_live(OTHER, NOW))),
    "events": lambda town, city, ids: (
        _check({e.site_id for e in town.events()} == {MINE}),
        _check({e.site_id for e in city.events()} == {MINE, OTHER}),
        _refused(lambda: town.events(site_id=OTHER))),
    "alarms": lambda town, city, ids: (
        _check({a.site_id for a in town.alarms(now=NOW, active=False)} == {MINE}),
        _refused(lambda: town.alarms(now=NOW, site_id=OTHER))),
    "alarm_board": lambda town, city, ids: (
        _check({a.site_id for a in town.alarm_board(NOW).active} == {MINE}),
        _check(OTHER not in town.alarm_board(NOW).names)),
    "alarm": lambda town, city, ids: (town.alarm(ids[f"alarm:{MINE}"], NOW),
                                      _refused(lambda: town.alarm(ids[f"alarm:{OTHER}"], NOW))),
    "command_targets": lambda town, city, ids: (
        _check(town.command_targets(whole_city=True) == ["zs-sanxiang", MINE]),
        _check(len(city.command_targets(whole_city=True)) == 4),
        _refused(lambda: town.command_targets(towns=[THEIRS])),
        _refused(lambda: town.command_targets(sites=[OTHER]))),
    "bulk_commands": lambda town, city, ids: (
        _check([b.sites for b in town.bulk_commands(NOW)] == [1]),
        _check([b.sites for b in city.bulk_commands(NOW)] == [2])),
    "bulk_command": lambda town, city, ids: _check(
        [r.site_id for r in town.bulk_command(ids["bulk"], NOW).rows] == [MINE]),
    "commands": lambda town, city, ids: (town.commands(MINE, NOW),
                                         _refused(lambda: town.commands(OTHER, NOW))),
    "command": lambda town, city, ids: (
        town.command(ids[f"command:{MINE}"], NOW),
        _refused(lambda: town.command(ids[f"command:{OTHER}"], NOW))),
    "site_devices": lambda town, city, ids: (town.site_devices(MINE),
                                             _refused(lambda: town.site_devices(OTHER))),
    "diagnostics": lambda town, city, ids: (
        _check(len(town.diagnostics(MINE)) == 1),
        _refused(lambda: town.diagnostics(OTHER))),
    "diagnostic": lambda town, city, ids: (
        town.diagnostic(ids[f"command:{MINE}"]),
        _refused(lambda: town.diagnostic(ids[f"command:{OTHER}"]))),
    "commands_pending": lambda town, city, ids: _check(
        (town.commands_pending(NOW), city.commands_pending(NOW)) == (1, 2)),
    "fleet_counts": lambda town, city, ids: _check(
        (town.fleet_counts(NOW).sites_online + town.fleet_counts(NOW).sites_offline,
         town.fleet_counts(NOW).alarms_active["major"],
         city.fleet_counts(NOW).alarms_active["major"]) == (2, 1, 2)),
    "site_gauges": lambda town, city, ids: (
        _check({g.town for g in town.site_gauges().sites} == {OURS}),
        _check({q.site_id for q in town.site_gauges().queues} <= {"zs-sanxiang", MINE})),
    "statistics": lambda town, city, ids: (
        _check({r.key for r in town.statistics("site", DAY, DAY)} == {MINE}),
        _check({r.key for r in town.statistics("town", DAY, DAY)} == {OURS}),
        _check({r.key for r in city.statistics("town", DAY, DAY)} == {OURS, THEIRS}),
        _check([r.issued for r in town.statistics("fleet", DAY, DAY) if r.service == "*"]
               == [1]),
        _refused(lambda: town.statistics("site", DAY, DAY, site_id=OTHER)),
        _refused(lambda: town.statistics("town", DAY, DAY, town=THEIRS))),
    # The citizens' progress pages: no account, a ticket's unguessable token opens one
    # ticket's page (of any town); the read model's towns do not apply.
    "ticket_link": lambda town, city, ids: _check(
        town.ticket_link("0" * 64) is None and city.ticket_link("0" * 64) is None),
    "ticket_outcome": lambda town, city, ids: _check(town.ticket_outcome(LinkInfo(
        "0" * 64, OTHER, "", "Z999", "zonghe", 0, 0, None, None, NOW)) is None),
    "stat_names": lambda town, city, ids: (
        _check(set(town.stat_names("site", [MINE, OTHER])) == {MINE}),
        _check(set(city.stat_names("site", [MINE, OTHER])) == {MINE, OTHER})),
    "hourly": lambda town, city, ids: (town.hourly(MINE, DAY),
                                       _refused(lambda: town.hourly(OTHER, DAY))),
    "telemetry_series": lambda town, city, ids: (
        _check(town.telemetry_series(MINE, "outbox.depth", "", hours=6, end=NOW).points != []),
        _refused(lambda: town.telemetry_series(OTHER, "outbox.depth", "", hours=6, end=NOW))),
    "waiting_chart": lambda town, city, ids: (
        town.waiting_chart(MINE, {"zonghe": "综合"}, hours=6, end=NOW),
        _refused(lambda: town.waiting_chart(OTHER, {"zonghe": "综合"}, hours=6, end=NOW))),
    "site_specs": lambda town, city, ids: _check({s.town for s in town.site_specs()} == {OURS}),
    "site_spec": lambda town, city, ids: (town.site_spec(MINE),
                                          _refused(lambda: town.site_spec(OTHER))),
    "inventory_sites": lambda town, city, ids: _check(
        {s.spec.town for s in town.inventory_sites()} == {OURS}),
    "registry_sheet": lambda town, city, ids: (
        _check(OTHER not in town.registry_sheet()["sites"]),
        _check(OTHER in city.registry_sheet()["sites"])),
    "audit": lambda town, city, ids: (city.audit(), _forbidden(town.audit)),
}
DAY = business_date(NOW)


def _check(condition: bool) -> None:
    assert condition


def _forbidden(call: Callable[[], object]) -> None:
    with pytest.raises(Forbidden):
        call()


def test_every_read_has_a_scope_rule() -> None:
    public = {name for name in dir(ReadModel) if not name.startswith("_")}
    assert public - set(READS) == set(), "a new ReadModel method needs a rule in READS"


def test_every_read_keeps_to_the_towns(sessions: sessionmaker[Session],
                                       two_towns: dict[str, Any]) -> None:  # fmt: skip
    city = ReadModel(sessions)
    town = city.scoped(SCOPE)
    for name, check in READS.items():
        try:
            check(town, city, two_towns)
        except AssertionError as exc:
            raise AssertionError(f"ReadModel.{name}: {exc}") from exc


# --------------------------------------------------------------------------- the routes


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory,
        mqtt_broker: MosquittoBroker) -> Iterator[RunningApp]:  # fmt: skip
    """The app over the seed (三乡镇 and 坦洲镇 among its 25 towns) with a 三乡镇 operator,
    a 三乡镇 admin and a 三乡镇 viewer; an alarm at a site of each town."""
    with running_app(tmp_path_factory.mktemp("scope"), mqtt_broker) as running:
        passwords = {role: running.add_user(f"sanxiang.{role}", Role(role), [OURS])
                     for role in ("viewer", "operator", "admin")}  # fmt: skip
        running.passwords = passwords  # type: ignore[attr-defined]
        with running.central.sessions.begin() as session:
            book = AlarmBook(session, datetime.now(UTC))
            for site_id in ("zs-sanxiang-01", "zs-tanzhou-01"):
                book.raise_alarm(site_id, AlarmType.DEVICE_FAULT, device="printer-1")
        yield running


def _as(env: RunningApp, role: str) -> None:
    env.login_user(f"sanxiang.{role}", env.passwords[role])  # type: ignore[attr-defined]


def _alarm_of(env: RunningApp, site_id: str) -> int:
    with env.central.sessions() as session:
        alarm_id: int = session.scalars(select(Alarm.id).where(Alarm.site_id == site_id)).one()
    return alarm_id


CSRF = {"X-Requested-With": "onedoor"}


def _actions(env: RunningApp, site: str, town: str) -> list[tuple[str, str, dict[str, Any]]]:
    notice = {"name": "screen_notice", "args": {"text": "系统维护", "screen": None,
                                                "duration_s": 60}, "ttl_s": 30}  # fmt: skip
    return [
        ("POST", f"/api/v1/sites/{site}/commands", notice),
        ("POST", f"/api/v1/alarms/{_alarm_of(env, site)}/ack", {}),
        ("POST", "/api/v1/bulk-commands", {**notice, "target": {"sites": [site]}}),
        ("POST", "/api/v1/bulk-commands", {**notice, "target": {"towns": [town]}}),
        ("PATCH", f"/api/v1/sites/{site}", {"expected_config_version": "cfg-9"}),
        ("PUT", f"/api/v1/sites/{site}/windows/9", {"services": ["zonghe"]}),
        ("DELETE", f"/api/v1/sites/{site}/windows/9", {}),
        ("POST", f"/api/v1/sites/{site}/retire?force=true", {}),
        ("POST", f"/api/v1/sites/{site}/restore", {}),
        ("POST", "/api/v1/sites", {"id": f"{site}-new", "name": "新站", "town": town,
                                   "kind": "village",
                                   "services": [{"code": "zonghe", "name": "综合受理",
                                                 "prefix": "Z", "sla_s": 1800}],
                                   "windows": [{"number": 1, "services": ["zonghe"]}]}),
    ]


def test_actions_on_another_towns_sites_are_refused(env: RunningApp) -> None:
    for role in ("operator", "admin"):
        _as(env, role)
        for method, url, body in _actions(env, "zs-tanzhou-01", THEIRS):
            answer = env.client.request(method, url, json=body or None, headers=CSRF)
            needs_admin = not url.startswith(("/api/v1/bulk", "/api/v1/alarms")) and \
                "/commands" not in url  # fmt: skip
            if needs_admin and role == "operator":
                assert answer.status_code == 403, (role, method, url)
                continue
            assert answer.status_code == 403, (role, method, url, answer.text)
            assert "不在您的管辖范围" in answer.json()["detail"], (method, url)
    with env.central.sessions() as session:  # nothing happened to 坦洲镇
        site = session.get(Site, "zs-tanzhou-01")
        assert site is not None
        assert (site.retired_at, site.expected_config_version) == (None, None)
        assert session.scalars(select(Command).where(Command.site_id == "zs-tanzhou-01")).all() \
            == []  # fmt: skip
        assert session.get(Site, "zs-tanzhou-01-new") is None
    env.client.cookies.clear()


def test_actions_on_its_own_towns_sites_go_through(env: RunningApp) -> None:
    _as(env, "admin")
    for method, url, body in _actions(env, "zs-sanxiang-01", OURS):
        answer = env.client.request(method, url, json=body or None, headers=CSRF)
        assert answer.status_code < 300, (method, url, answer.text)
    env.clear_retained("zs-sanxiang-01")
    entries = env.central.read.audit(actor="sanxiang.admin", limit=50)
    assert {e.action for e in entries} >= {"command.send", "alarm.ack", "command.bulk",
                                           "site.expected_config", "site.update", "site.retire",
                                           "site.restore", "site.create", "auth.login"}
    assert {e.source for e in entries} == {"testclient"}
    env.client.cookies.clear()


def test_a_towns_account_reads_its_towns_only(env: RunningApp) -> None:
    _as(env, "viewer")
    get = env.client.get
    assert {s["town"] for s in get("/api/v1/sites").json()["sites"]} == {OURS}
    assert get("/api/v1/sites/zs-tanzhou-01").status_code == 403
    assert get("/api/v1/sites/zs-sanxiang-01").status_code == 200
    alarms = get("/api/v1/alarms?active=false").json()["alarms"]  # retired above: cleared
    assert {a["site_id"] for a in alarms} == {"zs-sanxiang-01"}
    assert get("/api/v1/statistics?scope=town&town=坦洲镇").status_code == 403
    assert get("/api/v1/audit").status_code == 403  # an admin's; a viewer's 403 anyway
    metrics = get("/metrics").text
    assert 'site="zs-sanxiang-01"' in metrics
    assert "zs-tanzhou" not in metrics
    # The fleet page renders from the live hub's latest poll (once a second): take one now,
    # after the actions of the tests before (a retire and restore of this very site).
    env.client.portal.call(env.client.app.state.live_hub.poll_once)  # type: ignore[attr-defined,union-attr]
    fleet = get("/").text
    assert "zs-sanxiang-01" in fleet
    assert "zs-tanzhou" not in fleet
    assert get("/sites/zs-tanzhou-01").status_code == 403
    alarms_page = get("/alarms").text
    assert "三乡小尾社区党群服务中心" in alarms_page
    assert "坦洲" not in alarms_page
    with env.client.stream("GET", "/live/sites/zs-tanzhou-01") as stream:
        assert stream.status_code == 403
    env.client.cookies.clear()
    _as(env, "admin")
    assert get("/api/v1/audit").status_code == 403  # the city's log: a city-wide admin's
    assert get("/api/v1/tokens").status_code == 403
    inventory = get("/api/v1/inventory").json()
    assert "zs-tanzhou-01" not in str(inventory)
    assert "zs-sanxiang-01" in str(inventory)
    env.client.cookies.clear()


def test_a_towns_account_sees_and_works_its_towns_bad_ratings_only(env: RunningApp) -> None:
    """好差评: a 差评 at a site of each town; the 三乡镇 accounts read that town's records,
    cases, counts and rosters only, and cannot act on 坦洲镇's case (nothing is written)."""
    bad = mm.RatingGiven(ticket="A001", window=1, staff="zs01", value=1)
    for site_id in (MINE, OTHER):
        env.feed(SimSite(site_id).event(bad))
    cases = {c.site_id: c.id for c in env.central.read.ratings.cases(datetime.now(UTC))}
    assert set(cases) >= {MINE, OTHER}
    _as(env, "viewer")
    get = env.client.get
    listed = get("/api/v1/bad-ratings").json()["cases"]
    assert {c["town"] for c in listed} == {OURS}
    assert get(f"/api/v1/bad-ratings/{cases[OTHER]}").status_code == 403
    assert get(f"/api/v1/bad-ratings/{cases[MINE]}").status_code == 200
    with env.central.sessions() as session:  # the simulated site's day
        day = session.scalars(select(RatingRecord.day).where(RatingRecord.site_id == MINE)).first()
    records = get(f"/api/v1/ratings?from={day}&to={day}").json()
    assert {r["site_id"] for r in records["ratings"]} == {MINE}
    assert sum(records["report_counts"].values()) == len(records["ratings"])
    assert get(f"/api/v1/ratings?site={OTHER}").status_code == 403
    assert get(f"/api/v1/ratings.csv?town={THEIRS}").status_code == 403
    assert "坦洲" not in get(f"/api/v1/ratings.csv?from={day}&to={day}").text
    assert get(f"/api/v1/bad-ratings?town={THEIRS}").status_code == 403
    assert get(f"/api/v1/ratings/ranking?town={THEIRS}").status_code == 403
    assert get(f"/api/v1/sites/{OTHER}/staff").status_code == 403
    assert get(f"/api/v1/sites/{OTHER}/rating-profile").status_code == 403
    assert get(f"/ratings/cases/{cases[OTHER]}").status_code == 403
    assert "坦洲" not in get("/ratings?state=all").text
    _as(env, "operator")
    refused = env.client.post(f"/api/v1/bad-ratings/{cases[OTHER]}/note", headers=CSRF,
                              json={"note": "不是我镇的"})  # fmt: skip
    assert refused.status_code == 403, refused.text
    assert env.central.read.ratings.case(cases[OTHER], datetime.now(UTC)).notes == []
    taken = env.client.post(f"/api/v1/bad-ratings/{cases[MINE]}/note", headers=CSRF,
                            json={"note": "已电话联系"})  # fmt: skip
    assert taken.status_code == 200, taken.text
    _as(env, "admin")
    roster = {"staff": [{"id": "zs01", "name": "张丽"}]}
    assert env.client.put(f"/api/v1/sites/{OTHER}/staff", json=roster,
                          headers=CSRF).status_code == 403  # fmt: skip
    assert env.central.read.ratings.staff(OTHER) == []
    assert env.client.put(f"/api/v1/sites/{MINE}/staff", json=roster,
                          headers=CSRF).status_code == 200  # fmt: skip
    env.client.cookies.clear()


def test_a_towns_account_stops_and_lifts_issuing_in_its_towns_only(env: RunningApp) -> None:
    """The emergency stop: a 三乡镇 operator stops and lifts 三乡镇 (or one of its sites),
    not 坦洲镇, not one of its sites, not the whole city, not a city-wide stop; the city
    calendar takes a city-wide admin."""
    city = env.client.post("/api/v1/issuing/stops", headers=env.headers(Role.OPERATOR),
                           json={"scope": "city", "target": "", "reason": "台风红色预警"})
    assert city.status_code == 201, city.text
    _as(env, "operator")
    for scope, target in (("city", ""), ("town", THEIRS), ("site", OTHER)):
        answer = env.client.post("/api/v1/issuing/stops", headers=CSRF,
                                 json={"scope": scope, "target": target, "reason": "停电"})
        assert answer.status_code == 403, (scope, answer.text)
    lift_city = f"/api/v1/issuing/stops/{city.json()['stop']['id']}/lift"
    assert env.client.post(lift_city, headers=CSRF).status_code == 403
    ours = env.client.post("/api/v1/issuing/stops", headers=CSRF,
                           json={"scope": "town", "target": OURS, "reason": "停电"})
    assert ours.status_code == 201, ours.text
    covered = ours.json()["sites"]
    assert covered
    assert all(s.startswith("zs-sanxiang") for s in covered)
    lift_ours = f"/api/v1/issuing/stops/{ours.json()['stop']['id']}/lift"
    assert env.client.post(lift_ours, headers=CSRF).status_code == 200
    _as(env, "admin")
    assert env.client.put("/api/v1/calendar", headers=CSRF,
                          json={"holidays": ["2026-10-01"]}).status_code == 403  # fmt: skip
    env.client.cookies.clear()
    assert env.client.post(lift_city, headers=env.headers(Role.OPERATOR)).status_code == 200
    active = env.central.pushes.stops(active=True)
    assert active == []


def test_the_live_fleet_stream_of_a_town_carries_its_sites_only() -> None:
    from central.web.fleet import ALL, FleetSnapshot
    from central.web.live import LiveHub

    before = FleetSnapshot({"a": ("ok", 0), "b": ("ok", 0)},
                           {"a": ("甲", OURS), "b": ("乙", THEIRS)})  # fmt: skip
    after = FleetSnapshot({"a": ("alarm", 1), "b": ("alarm", 1)}, before.registry)

    class Read:
        def tile_states(self) -> dict[str, Any]:
            return after.tiles

        def fleet_registry(self) -> dict[str, Any]:
            return after.registry

        def drift_states(self) -> dict[str, Any]:
            return after.drift

    import asyncio

    async def main() -> tuple[str, str]:
        hub = LiveHub(Read())  # type: ignore[arg-type]
        hub._snapshot = before
        with hub.subscribe(ALL, frozenset({OURS})) as town, hub.subscribe(ALL) as city:
            await hub.poll_once()
            return town.get_nowait(), city.get_nowait()

    town, city = asyncio.run(main())
    assert '["a", "alarm", 1]' in town
    assert '"b"' not in town
    assert '"sites": 1' in town  # its own counts, not the city's
    assert '["b", "alarm", 1]' in city

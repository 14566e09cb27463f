"""Registry management on SQLite and PostgreSQL: create, change, retire, restore, import; every
change checked by the edge's own config check, audited, and moving the expected config on."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from central.alarms import AlarmBook, run_timed_rules
from central.audit import Actor
from central.config import CentralConfig
from central.errors import Conflict, RegistryRefused, UnknownSite
from central.ingest import RETIRED_SITE, IngestProcessor, reject_counts
from central.inventory import ansible_inventory, config_text
from central.models import (
    Alarm,
    AlarmHistory,
    EventRecord,
    HelpCall,
    SequenceGap,
    Site,
    SiteKind,
)
from central.queries import ReadModel
from central.registry import Registry
from central.registry_csv import read_sheet
from central.sitespec import Hours, ServiceSpec, SiteSpec, WindowSpec
from edge.config import parse_config
from firmware_protocols import mqtt_messages as mm
from tests.central.sim import SimSite, called, received

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ADMIN = Actor(name="ops-li", source="10.20.0.5", actor_id="0123abcd", role="admin")
NEW = "zs-sanxiang-13"
TOWN_SITES = {"zs-sanxiang", "zs-sanxiang-01", "zs-sanxiang-02"}


def village(site_id: str = NEW, **changes: object) -> SiteSpec:
    spec = SiteSpec(
        id=site_id, name="三乡新村党群服务中心", town="三乡镇", kind=SiteKind.VILLAGE,
        lat=22.36, lon=113.44,
        services=(ServiceSpec("zonghe", "综合受理（一窗通办）", "Z", 1800),
                  ServiceSpec("shebao", "社会保障", "B", 1800)),
        windows=(WindowSpec(1, ("zonghe", "shebao"), "1号窗口"), WindowSpec(2, ("zonghe",))),
    )  # fmt: skip
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def _registry(sessions: sessionmaker[Session]) -> Registry:
    return Registry(sessions)


def _site(sessions: sessionmaker[Session], site_id: str = NEW) -> Site:
    with sessions() as session:
        return session.get_one(Site, site_id)


# --------------------------------------------------------------------------- one site


def test_an_added_site_is_in_the_registry_the_inventory_and_the_audit_log(
    small_registry: sessionmaker[Session],
) -> None:
    spec = village(hours=Hours("08:00", "12:00", last_ticket="11:30"))
    _registry(small_registry).create_site(spec, actor=ADMIN, now=NOW)
    read = ReadModel(small_registry)
    assert read.site_spec(NEW) == spec.sorted()
    assert {s.id for s in read.site_summaries()} == TOWN_SITES | {NEW}
    hostvars = ansible_inventory(read.inventory_sites())["_meta"]["hostvars"][NEW]
    assert hostvars["edge_hours"] == {"open": "08:00", "close": "12:00", "reset": "03:00",
                                      "last_ticket": "11:30"}  # fmt: skip
    assert hostvars["edge_services"] == [
        {"id": "shebao", "prefix": "B", "name_zh": "社会保障", "sla_minutes": 30},
        {"id": "zonghe", "prefix": "Z", "name_zh": "综合受理（一窗通办）", "sla_minutes": 30},
    ]
    assert hostvars["edge_windows"][0] == {"number": 1, "services": {"zonghe": 1, "shebao": 1},
                                           "terminal": 1}  # fmt: skip
    assert (hostvars["onedoor_town"], hostvars["onedoor_expected_config_version"]) == (
        "三乡镇", None)
    # What the push renders from these variables is a config the edge takes.
    config = parse_config(config_text(spec), check_files=False)
    assert (config.hours.open_minute, config.hours.issue_until_minute) == (480, 690)
    detail = read.site_detail(NEW, NOW)
    assert (detail.hours, detail.registry_revision, detail.retired_at) == (
        {"open": "08:00", "close": "12:00", "reset": "03:00", "last_ticket": "11:30"}, 0, None)
    [entry] = read.audit(target=NEW)
    assert (entry.action, entry.actor, entry.actor_id, entry.role, entry.source) == (
        "site.create", "ops-li", "0123abcd", "admin", "10.20.0.5")
    assert entry.detail["site"]["windows"][0]["services"] == ["zonghe", "shebao"]
    assert entry.at == NOW.isoformat()


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda s: s.with_window(WindowSpec(3, ("huji",))), r"window 3\.services\.huji: unknown"),
    (lambda s: s.with_service(ServiceSpec("huji", "户籍", "Z", 1800)),
     r"service (huji|zonghe)\.prefix: prefix already used"),
    (lambda s: s.with_service(ServiceSpec("huji", "户籍", "A", 1800)),
     r"no window serves 'huji'"),
    (lambda s: s.with_service(ServiceSpec("zonghe", "综合", "Z", 1799)), "whole minutes"),
    (lambda s: dataclasses.replace(s, hours=Hours("08:30", "17:30", reset="12:00")),
     "hours.reset: must be outside opening hours"),
    (lambda s: dataclasses.replace(s, hours=Hours("17:30", "08:30")),
     "hours.close: must be after hours.open"),
    (lambda s: dataclasses.replace(s, hours=Hours("8h", "17:30")), "hours.open"),
    (lambda s: dataclasses.replace(s, id="ZS-Bad"), "site.id"),
    (lambda s: dataclasses.replace(s, name="名" * 101), r"name: 1\.\.100 characters"),
    (lambda s: dataclasses.replace(s, lat=91.0), "lat: 91.0 is outside"),
    (lambda s: dataclasses.replace(s, windows=()), "windows: at least one window"),
])  # fmt: skip
def test_a_site_the_edge_would_refuse_is_refused_and_nothing_changes(
    small_registry: sessionmaker[Session], edit: object, problem: str,
) -> None:
    spec = edit(village())  # type: ignore[operator]
    with pytest.raises(RegistryRefused, match=problem) as refused:
        _registry(small_registry).create_site(spec, actor=ADMIN, now=NOW)
    assert refused.value.status_code == 422
    read = ReadModel(small_registry)
    assert {s.id for s in read.site_summaries()} == TOWN_SITES
    assert read.audit() == []


def test_an_id_in_use_is_refused_even_when_retired(small_registry: sessionmaker[Session]) -> None:
    registry = _registry(small_registry)
    with pytest.raises(Conflict, match="already exists"):
        registry.create_site(village("zs-sanxiang-01"), actor=ADMIN, now=NOW)
    registry.retire_site("zs-sanxiang-02", actor=ADMIN, now=NOW)
    with pytest.raises(Conflict, match="retired since 2026-11-23: restore it"):
        registry.create_site(village("zs-sanxiang-02"), actor=ADMIN, now=NOW)


def test_a_config_change_moves_the_expected_version_on_so_the_site_drifts_until_pushed(
    small_registry: sessionmaker[Session],
) -> None:
    registry = _registry(small_registry)
    registry.create_site(village(), actor=ADMIN, now=NOW)
    # Never pushed: no expected version, nothing to drift from; the revision still counts.
    registry.change_site(NEW, lambda s: s.with_window(WindowSpec(3, ("shebao",))),
                         actor=ADMIN, now=NOW)  # fmt: skip
    assert (_site(small_registry).registry_revision,
            _site(small_registry).expected_config_version) == (1, None)
    # The push records 2026.11.1 and the site reports it: in sync.
    registry.set_expected_config(NEW, "2026.11.1", now=NOW, actor=ADMIN)
    with small_registry.begin() as session:
        session.execute(update(Site).where(Site.id == NEW)
                        .values(reported_config_version="2026.11.1"))  # fmt: skip
    assert not _site(small_registry).config_drift
    later = NOW + timedelta(minutes=5)
    diff = registry.change_site(
        NEW, lambda s: dataclasses.replace(s, hours=Hours("08:30", "12:00")), actor=ADMIN,
        now=later)  # fmt: skip
    assert diff.changes_config
    site = _site(small_registry)
    assert (site.expected_config_version, site.registry_revision) == ("2026.11.1+r2", 2)
    assert site.config_version_changed_at == later
    assert site.config_drift  # until the push renders the registry and the site reports it
    registry.change_site(NEW, lambda s: s.without_window(3), actor=ADMIN, now=later)
    assert _site(small_registry).expected_config_version == "2026.11.1+r3"
    # Its position is not in its config: no push needed.
    diff = registry.change_site(NEW, lambda s: dataclasses.replace(s, lat=22.4), actor=ADMIN,
                                now=later)  # fmt: skip
    assert (diff.fields, diff.changes_config) == ({"lat": (22.36, 22.4)}, False)
    assert _site(small_registry).expected_config_version == "2026.11.1+r3"
    # A version at the column's length keeps its suffix.
    registry.set_expected_config(NEW, "v" * 64, now=later, actor=ADMIN)
    registry.change_site(NEW, lambda s: dataclasses.replace(s, name="三乡新村"), actor=ADMIN,
                         now=later)  # fmt: skip
    assert _site(small_registry).expected_config_version == "v" * 61 + "+r4"
    actions = [e.action for e in ReadModel(small_registry).audit(target=NEW)]
    assert actions == ["site.update", "site.expected_config", "site.update", "site.update",
                       "site.update", "site.expected_config", "site.update", "site.create"]
    last = ReadModel(small_registry).audit(target=NEW, limit=1)[0]
    assert last.detail["fields"] == {"name": {"old": "三乡新村党群服务中心", "new": "三乡新村"}}
    assert last.detail["expected_config_version"] == {"old": "v" * 64, "new": "v" * 61 + "+r4"}


def test_a_change_to_an_unknown_site_or_an_unchanged_edit_writes_nothing(
    small_registry: sessionmaker[Session],
) -> None:
    registry = _registry(small_registry)
    with pytest.raises(UnknownSite):
        registry.change_site("zs-nowhere", lambda s: s, actor=ADMIN, now=NOW)
    diff = registry.change_site("zs-sanxiang-01", lambda s: s, actor=ADMIN, now=NOW)
    assert diff.empty
    assert ReadModel(small_registry).audit() == []


# --------------------------------------------------------------------------- retirement


def _bring_online(sessions: sessionmaker[Session], site: SimSite) -> IngestProcessor:
    processor = IngestProcessor(sessions, CentralConfig())
    outcome = processor.process(received(
        site.state(), site.event(called("Z001")), site.event(called("Z002")),
        site.event(mm.HelpRequested(button="h1", location="自助区")),
        site.telemetry(outbox=900)), NOW)  # fmt: skip
    assert outcome.acks == {site.site_id: 3}
    return processor


def test_retiring_an_online_site_needs_force_and_then_its_messages_are_counted_not_kept(
    small_registry: sessionmaker[Session],
) -> None:
    """The decision for an edge that still talks: refuse (409) unless forced; forced, its
    messages are refused and counted (retired_site), never acknowledged, so the edge keeps
    them; restoring the site brings them in."""
    site = SimSite("zs-sanxiang-01")
    processor = _bring_online(small_registry, site)
    read = ReadModel(small_registry)
    assert [a.type for a in read.alarms(now=NOW, site_id=site.site_id)] == ["outbox_backlog"]
    registry = _registry(small_registry)
    with pytest.raises(Conflict, match=r"is online .*retire it with force") as refused:
        registry.retire_site(site.site_id, actor=ADMIN, now=NOW)
    assert refused.value.status_code == 409
    assert read.site_detail(site.site_id, NOW).retired_at is None

    retirement = registry.retire_site(site.site_id, actor=ADMIN, now=NOW, force=True)
    assert (retirement.was_online, retirement.alarms_cleared) == (True, 1)
    assert [n.action for n in retirement.notifications] == ["cleared"]
    # Out of the fleet: lists, tiles, live hub, inventory, /metrics figures.
    assert site.site_id not in {s.id for s in read.site_summaries()}
    assert [s.id for s in read.site_summaries(retired=True)] == [site.site_id]
    assert site.site_id not in {t.id for t in read.fleet_tiles()}
    assert site.site_id not in read.tile_states()
    assert site.site_id not in ansible_inventory(read.inventory_sites())["_meta"]["hostvars"]
    assert site.site_id not in {g.id for g in read.site_gauges().sites}
    assert read.fleet_counts(NOW).sites_online == 0
    assert read.alarms(now=NOW, active=True) == []
    # ... its history stays: its page, events, the alarm and why it was cleared.
    detail = read.site_detail(site.site_id, NOW)
    assert (detail.retired_at, detail.online) == (NOW.isoformat(), False)
    assert [e.seq for e in read.events(site_id=site.site_id)] == [3, 2, 1]
    [alarm] = read.alarms(now=NOW, active=False, site_id=site.site_id)
    with small_registry() as session:
        notes = session.scalars(select(AlarmHistory.note)
                                .where(AlarmHistory.alarm_id == alarm.id)).all()  # fmt: skip
    assert notes[-1] == "站点已撤销 / site retired"

    # The edge goes on talking: nothing stored, nothing acknowledged, every message counted.
    later = NOW + timedelta(minutes=1)
    outcome = processor.process(received(site.event(called("Z003")), site.state(),
                                         site.telemetry()), later)  # fmt: skip
    assert (outcome.acks, outcome.rejected, outcome.events_stored) == ({}, 3, 0)
    with small_registry() as session:
        assert reject_counts(session)[(site.site_id, RETIRED_SITE)] == 3
        assert session.get_one(Site, site.site_id).online is False
    assert [e.seq for e in read.events(site_id=site.site_id)] == [3, 2, 1]
    # No rule raises anything for it, however long it stays silent.
    with small_registry.begin() as session:
        run_timed_rules(AlarmBook(session, later + timedelta(days=2)), CentralConfig())
    assert read.alarms(now=later, active=True) == []

    with pytest.raises(Conflict, match="already retired"):
        registry.retire_site(site.site_id, actor=ADMIN, now=later)
    registry.restore_site(site.site_id, actor=ADMIN, now=later)
    # The edge resends what was not acknowledged: nothing was lost.
    outcome = processor.process(received(site.sent[-1], site.state()), later)
    assert outcome.acks == {site.site_id: 4}
    assert [e.seq for e in read.events(site_id=site.site_id)] == [4, 3, 2, 1]
    assert site.site_id in {s.id for s in read.site_summaries()}
    with pytest.raises(Conflict, match="is not retired"):
        registry.restore_site(site.site_id, actor=ADMIN, now=later)
    entries = read.audit(action="site.")
    assert [(e.action, e.detail.get("was_online"), e.detail.get("forced")) for e in entries] == [
        ("site.restore", None, None), ("site.retire", True, True)]


def test_the_alarm_rules_skip_a_retired_site(small_registry: sessionmaker[Session]) -> None:
    """Open gaps, an unanswered help call and a config drift raise nothing once retired."""
    site_id = "zs-sanxiang-02"
    with small_registry.begin() as session:
        session.add(SequenceGap(site_id=site_id, first_seq=3, last_seq=4, detected_at=NOW))
        session.add(HelpCall(site_id=site_id, button="h1", requested_seq=1, requested_at=NOW))
        session.execute(update(Site).where(Site.id == site_id).values(
            expected_config_version="cfg-2", config_version_changed_at=NOW))  # fmt: skip
    later = NOW + timedelta(hours=1)
    with small_registry.begin() as session:
        run_timed_rules(AlarmBook(session, later), CentralConfig())
    read = ReadModel(small_registry)
    raised = {a.type for a in read.alarms(now=later, site_id=site_id)}
    assert raised == {"sequence_gap", "help_unanswered", "config_drift"}
    _registry(small_registry).retire_site(site_id, actor=ADMIN, now=later)
    with small_registry.begin() as session:
        run_timed_rules(AlarmBook(session, later + timedelta(hours=1)), CentralConfig())
        active = session.scalars(select(Alarm.type).where(Alarm.cleared_at.is_(None))).all()
    assert active == []
    with small_registry() as session:  # the gap and the call are history, kept
        assert session.scalars(select(SequenceGap.site_id)).all() == [site_id]
        assert session.scalars(select(EventRecord.id)).all() == []


# --------------------------------------------------------------------------- imports

SITES_CSV = """\
# 三乡镇 onboarding batch
id,name,town,kind,lat,lon,open,close,last_ticket,reset,status
zs-sanxiang-13,三乡新村党群服务中心,三乡镇,village,22.36,113.44,08:00,12:00,11:30,,
zs-sanxiang-01,三乡雍陌村党群服务中心（新址）,三乡镇,village,22.3600,113.4400,,,,,active
zs-sanxiang-02,三乡平岚社区党群服务中心,三乡镇,village,,,,,,,retired
"""
SERVICES_CSV = """\
site,code,name,prefix,sla_s
zs-sanxiang-13,zonghe,综合受理（一窗通办）,Z,1800
zs-sanxiang-13,shebao,社会保障,B,1800
"""
WINDOWS_CSV = """\
site,number,services,name,priority
zs-sanxiang-13,1,zonghe shebao,1号窗口,yes
zs-sanxiang-13,2,zonghe,,no
zs-sanxiang-01,3,zonghe,3号窗口,no
zs-sanxiang-01,1,zonghe shebao minzheng,1号窗口,
"""


def test_an_import_shows_its_diff_first_then_applies_it_whole(
    small_registry: sessionmaker[Session],
) -> None:
    registry, read = _registry(small_registry), ReadModel(small_registry)
    sheet = read_sheet(sites=SITES_CSV, services=SERVICES_CSV, windows=WINDOWS_CSV)
    assert sheet.problems == []
    plan = registry.plan_import(sheet)
    assert plan.problems == []
    assert [s.id for s in plan.added] == [NEW]
    [changed] = plan.changed
    assert changed.site == "zs-sanxiang-01"
    assert changed.fields == {"name": ("三乡雍陌村党群服务中心", "三乡雍陌村党群服务中心（新址）")}
    assert [w.number for w in changed.windows_added] == [3]
    assert [w.number for w in changed.windows_removed] == [2]
    assert (plan.retired, plan.restored, plan.unchanged) == (["zs-sanxiang-02"], [], 0)
    text = "\n".join(plan.lines())
    assert "+ 新增 add      zs-sanxiang-13" in text
    assert ("~ 变更 change   zs-sanxiang-01  name: 三乡雍陌村党群服务中心 → "
            "三乡雍陌村党群服务中心（新址）; windows +3 -2") in text
    assert "- 撤销 retire   zs-sanxiang-02" in text
    # The dry run changed nothing.
    assert NEW not in {s.id for s in read.site_summaries()}
    assert read.audit() == []

    applied = registry.apply_import(sheet, actor=ADMIN, now=NOW)
    assert applied.applied
    assert applied.to_json()["counts"] == {"added": 1, "changed": 1, "retired": 1,
                                           "restored": 0, "unchanged": 0}  # fmt: skip
    assert read.site_spec(NEW).hours == Hours("08:00", "12:00", "03:00", "11:30")
    assert read.site_spec(NEW).window(1) == WindowSpec(1, ("zonghe", "shebao"), "1号窗口", True)
    assert [w.number for w in read.site_spec("zs-sanxiang-01").windows] == [1, 3]
    assert [s.id for s in read.site_summaries(retired=True)] == ["zs-sanxiang-02"]
    audit = {(e.action, e.target, e.detail.get("via")) for e in read.audit()}
    assert audit == {("site.create", NEW, "import"), ("site.update", "zs-sanxiang-01", "import"),
                     ("site.retire", "zs-sanxiang-02", "import"),
                     ("registry.import", "registry", None)}  # fmt: skip

    # The export is the import's format: importing it back changes nothing...
    exported = read.registry_sheet()
    again = registry.plan_import(read_sheet(**exported))
    assert (again.problems, again.added, again.changed, again.retired, again.restored) == (
        [], [], [], [], [])
    assert again.unchanged == 4
    assert "zs-sanxiang-02,三乡平岚社区党群服务中心,三乡镇,village,,,,,,,retired,0\n" \
        in exported["sites"]
    assert f"{NEW},三乡新村党群服务中心,三乡镇,village,22.36,113.44,08:00,12:00,11:30,03:00," \
        "active,0\n" in exported["sites"]
    assert read_sheet(**exported).revisions["zs-sanxiang-01"] == 1
    # ... and status active brings a retired site back.
    active = exported["sites"].replace(",retired", ",active")
    back = registry.apply_import(read_sheet(sites=active), actor=ADMIN, now=NOW)
    assert (back.restored, back.unchanged) == (["zs-sanxiang-02"], 3)


@pytest.mark.parametrize(("sites", "services", "windows", "problems"), [
    ("id,name,town,kind,colour\nzs-x,甲,镇,village,red\n", None, None,
     ["sites.csv: unknown column 'colour' (columns: id, name, town, kind, lat, lon, open, "
      "close, last_ticket, reset, status, revision)"]),
    ("id,name,town\nzs-x,甲,镇\n", None, None, ["sites.csv: missing column 'kind'"]),
    ("id,name,town,kind,lat\nzs-x,甲,镇,hamlet,north\n", None, None,
     ["sites.csv:2: kind: 'hamlet' is not one of city_hall, district, village",
      "sites.csv:2: lat: 'north' is not a number"]),
    ("id,name,town,kind\nzs-x,甲,镇,village\nzs-x,乙,镇,village\n", None, None,
     ["sites.csv:3: site 'zs-x' twice (first at line 2)"]),
    (None, "site,code,name,prefix,sla_s\nzs-nowhere,zonghe,综合,Z,1800\n", None,
     ["services.csv:2 zs-nowhere: not in the registry; add it to sites.csv"]),
    (None, None, "site,number,services,priority\nzs-sanxiang-01,x,zonghe,maybe\n",
     ["windows.csv:2: number: 'x' is not an integer",
      "windows.csv:2: priority: 'maybe' is not yes or no"]),
    (None, None, "site,number,services\nzs-sanxiang-01,1,huji\n",
     ["windows.csv:2 zs-sanxiang-01: window 1.services.huji: unknown service",
      "windows.csv:2 zs-sanxiang-01: service shebao.id: no window serves 'shebao'",
      "windows.csv:2 zs-sanxiang-01: service minzheng.id: no window serves 'minzheng'",
      "windows.csv:2 zs-sanxiang-01: service zonghe.id: no window serves 'zonghe'"]),
    ("id,name,town,kind,status\nzs-new,甲,镇,village,retired\n", None, None,
     ["sites.csv:2 zs-new: services: at least one service is required",
      "sites.csv:2 zs-new: windows: at least one window is required",
      "sites.csv:2 zs-new: a new site cannot be retired"]),
])  # fmt: skip
def test_an_import_with_any_problem_changes_nothing_and_names_file_and_line(
    small_registry: sessionmaker[Session], sites: str | None, services: str | None,
    windows: str | None, problems: list[str],
) -> None:
    registry = _registry(small_registry)
    sheet = read_sheet(sites=sites, services=services, windows=windows)
    plan = registry.plan_import(sheet)
    assert plan.problems == problems
    assert not plan.to_json()["ok"]
    before = ReadModel(small_registry).registry_sheet()
    with pytest.raises(RegistryRefused) as refused:
        registry.apply_import(sheet, actor=ADMIN, now=NOW)
    assert refused.value.problems == problems
    assert ReadModel(small_registry).registry_sheet() == before
    assert ReadModel(small_registry).audit() == []


def test_an_import_may_retire_the_sites_it_does_not_list_but_not_online_ones_unforced(
    small_registry: sessionmaker[Session],
) -> None:
    registry = _registry(small_registry)
    _bring_online(small_registry, SimSite("zs-sanxiang-02"))
    sheet = read_sheet(sites="id,name,town,kind\n"
                             "zs-sanxiang,中山市三乡镇行政服务中心,三乡镇,district\n")
    plan = registry.plan_import(sheet, retire_missing=True)
    assert plan.retired == ["zs-sanxiang-01", "zs-sanxiang-02"]
    assert plan.problems == [
        "zs-sanxiang-02: site 'zs-sanxiang-02' is online (last heard 2026-11-23 10:00 UTC): "
        "stop its edge first, or retire it with force, and its messages are then refused and "
        "counted (retired_site), kept by the edge"]
    windows_only = read_sheet(windows="site,number,services\nzs-sanxiang,1,zonghe\n")
    assert registry.plan_import(windows_only, retire_missing=True).problems == [
        "retire_missing retires the sites missing from sites.csv: give sites.csv"]
    forced = registry.apply_import(sheet, actor=ADMIN, now=NOW, retire_missing=True, force=True)
    assert (forced.retired, forced.unchanged) == (["zs-sanxiang-01", "zs-sanxiang-02"], 1)
    assert [s.id for s in ReadModel(small_registry).site_summaries()] == ["zs-sanxiang"]


def test_a_service_named_differently_at_one_site_keeps_the_fleets_label(
    small_registry: sessionmaker[Session],
) -> None:
    """The statistics label of a code is the name most sites give it, not whichever row the
    database returns first (that changed after a restore)."""
    _registry(small_registry).create_site(village(), actor=ADMIN, now=NOW)
    _registry(small_registry).change_site(
        NEW, lambda s: s.with_service(ServiceSpec("zonghe", "综合受理", "Z", 1800)),
        actor=ADMIN, now=NOW)  # fmt: skip
    assert ReadModel(small_registry).service_names()["zonghe"] == "综合受理（一窗通办）"

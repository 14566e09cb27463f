"""Server-side dashboard pieces without a browser: large fleets, SSE framing, translations."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from central.auth import Principal, Role, SessionSigner, TokenStore
from central.config import CentralConfig
from central.context import Central
from central.db import make_engine, migrate, session_factory
from central.views import Health, SiteDrift
from central.web import TEXT, TOWN_TILES_ABOVE, FleetSnapshot, LiveHub, fleet_html, sse
from central.web.fleet import ALL, TOWNS, live_messages, town_health
from onedoor.bench.central_web import synthetic_fleet
from tests.central.test_api_support import TEST_HOSTS

VIEWER = Principal("0123abcd", "manager", Role.VIEWER)


@pytest.fixture(scope="module")
def big_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Central]:
    url = f"sqlite:///{tmp_path_factory.mktemp('fleet') / 'c.db'}"
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    synthetic_fleet(sessions, 3000)  # 150 towns of 20
    yield Central(
        config=CentralConfig(database_url=url),
        sessions=sessions,
        tokens=TokenStore(sessions),
        signer=SessionSigner(b"s" * 32),
        service=None,
    )
    engine.dispose()


def test_a_province_is_shown_town_by_town(big_fleet: Central) -> None:
    assert TOWN_TILES_ABOVE < 3000
    html = fleet_html(big_fleet, VIEWER, "zh", q="", health="", town="")
    assert 'class="fleet by-town" data-live="towns"' in html
    towns = re.findall(r'<a class="t town (\w+)" href="([^"]+)" data-town="([^"]+)"', html)
    assert len(towns) == 150  # one tile per town, no site tile
    assert '<a id="t-' not in html
    assert 'data-count="sites">3000<' in html  # the counts cover the whole fleet
    health, href, name = towns[76]
    assert name == "第0077镇"
    assert href == "/?town=%E7%AC%AC0077%E9%95%87"
    assert health == "warn"  # two of its 20 villages offline, the rest online
    assert '<i data-n="sites">20</i>' in html


def test_a_town_drills_down_to_its_sites(big_fleet: Central) -> None:
    html = fleet_html(big_fleet, VIEWER, "zh", q="", health="", town="第0077镇")
    sites = re.findall(r'<a id="t-([^"]+)"', html)
    assert sites == [f"p-0076-{n:02d}" for n in range(20)]
    assert 'data-live="town:第0077镇"' in html
    assert 'id="all-towns"' in html  # the way back up


def test_filtered_towns_keep_the_filter_on_the_way_down(big_fleet: Central) -> None:
    html = fleet_html(big_fleet, VIEWER, "zh", q="村", health="ok", town="")
    assert 'data-live=""' in html  # per-town counts of a filter are not recounted live
    href = re.findall(r'<a class="t town \w+" href="([^"]+)"', html)[0]
    assert href.startswith("/?q=%E6%9D%91&amp;health=ok&amp;town=")
    # ... and so does the language switch.
    assert 'class="lang" href="?q=%E6%9D%91&amp;health=ok&amp;lang=en"' in html
    town = fleet_html(big_fleet, VIEWER, "en", q="", health="", town="第0077镇")
    assert 'class="lang" href="?town=%E7%AC%AC0077%E9%95%87&amp;lang=zh"' in town


def test_live_messages_are_scoped_to_what_a_page_shows() -> None:
    registry = {"a-1": ("甲一", "甲镇"), "a-2": ("甲二", "甲镇"), "b-1": ("乙一", "乙镇")}
    before = FleetSnapshot({"a-1": ("ok", 0), "a-2": ("ok", 0), "b-1": ("ok", 0)}, registry)
    after = FleetSnapshot({"a-1": ("alarm", 1), "a-2": ("ok", 0), "b-1": ("ok", 0)}, registry)
    messages = live_messages(before, after, {ALL, TOWNS, "town:甲镇", "town:乙镇"})
    assert messages[ALL]["tiles"] == [["a-1", "alarm", 1]]
    assert messages[TOWNS]["towns"] == [["甲镇", "alarm", 2, 1, 0, 0, 1]]
    assert messages["town:甲镇"]["tiles"] == [["a-1", "alarm", 1]]
    assert messages["town:乙镇"]["tiles"] == []
    assert messages[ALL]["counts"]["alarm"] == 1
    assert live_messages(after, after, {ALL, TOWNS}) == {}


@pytest.mark.parametrize(
    ("found", "health"),
    [
        ({"ok": 3}, "ok"),
        ({"ok": 3, "offline": 1}, "warn"),
        ({"offline": 4}, "offline"),
        ({"unknown": 2}, "unknown"),
        ({"ok": 1, "warn": 1}, "warn"),
        ({"ok": 1, "warn": 1, "alarm": 1}, "alarm"),
    ],
)
def test_town_colour(found: dict[Health, int], health: Health) -> None:
    assert town_health(found) == health


def test_filters_cover_the_whole_fleet(big_fleet: Central) -> None:
    offline = fleet_html(big_fleet, VIEWER, "zh", q="", health="offline", town="")
    assert len(re.findall(r'<a id="t-', offline)) == 300  # every tenth site
    assert 'class="fleet" data-live="all"' in offline  # few enough to show every site
    one = fleet_html(big_fleet, VIEWER, "en", q="第77镇第3村", health="", town="")
    assert re.findall(r'<a id="t-([^"]+)"', one) == ["p-0076-02"]
    assert ">Fleet<" in one


def test_names_are_escaped(big_fleet: Central) -> None:
    from central.models import Site, SiteKind

    with big_fleet.sessions.begin() as session:
        session.add(Site(id="x-evil", name="<script>alert(1)</script>", town="第0001镇",
                         kind=SiteKind.VILLAGE))  # fmt: skip
    html = fleet_html(big_fleet, VIEWER, "zh", q="x-evil", health="", town="")
    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html


def test_live_hub_counts_and_snapshot(big_fleet: Central) -> None:
    tiles = LiveHub(big_fleet.read).snapshot()
    counts = LiveHub.counts(tiles.values())
    assert counts["offline"] == 300
    assert counts["sites"] == len(tiles)
    assert counts["alarms_active"] == len(range(0, 3000, 33))


def test_sse_framing() -> None:
    assert sse("tiles", {"a": 1}) == 'event: tiles\ndata: {"a": 1}\n\n'
    assert sse("live", "<p>\n甲</p>") == "event: live\ndata: <p>\ndata: 甲</p>\n\n"


def test_every_text_has_chinese_and_english() -> None:
    for key, (zh, en) in TEXT.items():
        assert zh, key
        assert en, key
        assert zh != en or key in {"csv"}, key


def test_templates_use_only_known_text_keys() -> None:
    templates = Path(__file__).resolve().parents[2] / "central" / "web" / "templates"
    used = set()
    for template in templates.glob("*.html"):
        used.update(re.findall(r"t\('([a-z_0-9]+)'\)", template.read_text("utf-8")))
    assert used - set(TEXT) == set()


def test_statistics_page_reports_bad_input(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from central.app import create_app

    url = f"sqlite:///{tmp_path}/c.db"
    config = CentralConfig(database_url=url, http_allowed_hosts=TEST_HOSTS)
    app = create_app(config, with_service=False, secret=b"s" * 32)
    with TestClient(app) as client:
        _, token = app.state.central.tokens.create(Role.VIEWER, "stats")
        client.post(
            "/login",
            content=f"token={token}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        bad = client.get("/statistics?start=2026-13-45")
        assert bad.status_code == 200
        assert "日期格式应为 YYYY-MM-DD" in bad.text
        reversed_range = client.get("/statistics?start=2026-11-23&end=2026-11-01")
        assert "the end date is before the start date" in reversed_range.text
        assert client.get("/sites/nowhere").status_code == 404
        # A read-only app (no ingest service) refuses acknowledgements with 503, not a crash.
        _, admin = app.state.central.tokens.create(Role.ADMIN, "root")
        answer = client.post("/api/v1/alarms/1/ack", headers={"Authorization": f"Bearer {admin}"})
        assert answer.status_code == 503
        assert "read-only" in answer.json()["detail"]


def test_statistics_definitions_are_served_from_the_one_document(tmp_path: Path) -> None:
    """The page managers open is docs/STATISTICS.md itself (packaged through a link)."""
    from fastapi.testclient import TestClient

    from central.app import create_app
    from central.web.docs import DEFINITIONS

    doc = Path(__file__).resolve().parents[2] / "docs" / "STATISTICS.md"
    assert DEFINITIONS.resolve() == doc.resolve()
    config = CentralConfig(database_url=f"sqlite:///{tmp_path}/c.db", http_allowed_hosts=TEST_HOSTS)
    app = create_app(config, with_service=False, secret=b"s" * 32)
    with TestClient(app) as client:
        anonymous = client.get("/statistics/definitions", follow_redirects=False)
        assert anonymous.status_code == 303
        assert anonymous.headers["location"] == "/login?next=/statistics/definitions"
        _, token = app.state.central.tokens.create(Role.VIEWER, "reader")
        client.post("/login", content=f"token={token}",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        answer = client.get("/statistics/definitions")
        assert answer.status_code == 200
        assert "<table>" in answer.text  # the Markdown tables are rendered
        assert "过号数 <code>no_shows</code>" in answer.text
        assert "floored at 0" in answer.text
        assert 'href="/statistics/definitions"' in client.get("/statistics").text


def test_per_site_metrics_can_be_turned_off(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from central.app import create_app

    url = f"sqlite:///{tmp_path}/c.db"
    for per_site in (True, False):
        config = CentralConfig(database_url=url, metrics_per_site=per_site,
                               http_allowed_hosts=TEST_HOSTS)
        app = create_app(config, with_service=False, secret=b"s" * 32)
        with TestClient(app) as client:
            if per_site:
                synthetic_fleet(app.state.central.sessions, 3)
            _, token = app.state.central.tokens.create(Role.VIEWER, "prometheus")
            text = client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
        assert ('onedoor_site_online{site="p-0000-01"} 1' in text) is per_site
        assert ("onedoor_site_" in text) is per_site
        assert 'onedoor_central_sites{state="online"} 2' in text


def test_every_refusal_carries_its_status() -> None:
    """The error tree of central/errors.py: one class per answer, its status with it."""
    from central import errors

    statuses = {name: getattr(errors, name).status_code for name in errors.__all__
                if issubclass(getattr(errors, name), errors.RequestError)}  # fmt: skip
    assert statuses == {
        "RequestError": 400, "BadRequest": 400, "AuthError": 401, "Unauthenticated": 401,
        "Forbidden": 403, "OutOfScope": 403, "NotFound": 404, "UnknownUser": 404,
        "UnknownSite": 404, "UnknownAlarm": 404,
        "UnknownCommand": 404, "UnknownToken": 404, "UnknownService": 404,
        "UnknownWindow": 404, "UnknownBadRating": 404, "Conflict": 409, "PayloadTooLarge": 413,
        "InvalidRequest": 422, "CommandRefused": 422, "RegistryRefused": 422,
        "TooManyRequests": 429,
        "Unavailable": 503,
    }  # fmt: skip
    assert str(errors.UnknownSite("zs-x")) == "unknown site 'zs-x'"  # not KeyError's repr
    assert isinstance(errors.UnknownSite("zs-x"), KeyError)
    assert errors.TooManyRequests("x", retry_after_s=0.2).headers == {"Retry-After": "1"}
    assert errors.Unauthenticated("x").headers == {"WWW-Authenticate": "Bearer"}
    assert errors.Forbidden("x").headers is None


def test_public_names_of_the_http_side_exist() -> None:
    import importlib

    for name in ("access", "api", "audit", "backup", "buckets", "cli_registry", "context",
                 "errors", "inventory", "limits", "metrics", "queries", "registry",
                 "registry_csv", "retention", "sitespec", "views", "web", "web.live",
                 "web.pages", "web.render", "web.text"):  # fmt: skip
        module = importlib.import_module(f"central.{name}")
        assert all(hasattr(module, public) for public in module.__all__), name


def _site_ids(html: str) -> list[str]:
    return re.findall(r'<a id="t-([^"]+)"', html)


SOFTWARE_DRIFTS = [f"p-{i // 20:04d}-{i % 20:02d}" for i in range(7, 3000, 100)]
CONFIG_DRIFTS = [f"p-{i // 20:04d}-{i % 20:02d}" for i in range(11, 3000, 250)]


def test_the_snapshot_counts_and_filters_drift(big_fleet: Central) -> None:
    from central.models import Site

    read = big_fleet.read
    # A site expecting a release that never reported its software drifts too.
    with big_fleet.sessions.begin() as session:
        session.get_one(Site, "p-0001-00").software_version = None
    try:
        snapshot = LiveHub(read)._next_snapshot()
    finally:
        with big_fleet.sessions.begin() as session:
            session.get_one(Site, "p-0001-00").software_version = "onedoor-0.1.1"
    software = sorted([*SOFTWARE_DRIFTS, "p-0001-00"])
    counts = snapshot.counts()
    assert (counts["software_drift"], counts["config_drift"]) == (31, 12)
    assert [t.id for t in snapshot.sites(drift="software")] == software
    assert [t.id for t in snapshot.sites(drift="config")] == CONFIG_DRIFTS
    assert snapshot.sites(drift="config", town="第0001镇")[0].drift == SiteDrift(
        "onedoor-0.1.1", "onedoor-0.1.1", "cfg-1", "cfg-2", False, True)
    assert snapshot.sites(town="第0002镇", drift="software")[0].drift == SiteDrift(
        None, "onedoor-0.1.1", "cfg-2", "cfg-2", True, False)
    assert all(t.drift is None for t in snapshot.sites(town="第0003镇"))
    town = snapshot.restricted(frozenset({"第0001镇"}))
    assert set(town.drift) == {"p-0000-07", "p-0000-11"}
    assert (town.counts()["software_drift"], town.counts()["config_drift"]) == (1, 1)

    page = fleet_html(big_fleet, VIEWER, "zh", q="", health="", town="", drift="software",
                      snapshot=snapshot)  # fmt: skip
    assert _site_ids(page) == software  # few enough: the sites, not the towns
    assert 'data-count="software_drift">31<' in page
    assert 'data-count="config_drift">12<' in page
    assert 'id="drift-software" href="/?drift=software"' in page
    assert 'class="c-drift here" id="drift-software"' in page
    assert ('<i class="drift" title="软件版本不一致：运行 onedoor-0.1.0，应为 onedoor-0.1.1"'
            in page)  # fmt: skip
    assert 'title="软件版本不一致：运行 —，应为 onedoor-0.1.1"' in page
    assert page.count('<i class="drift"') == 31
    assert '<option value="software" selected>软件版本不一致</option>' in page

    one_town = fleet_html(big_fleet, VIEWER, "en", q="", health="", town="第0001镇",
                          snapshot=snapshot)  # fmt: skip
    assert "p-0000-00" in _site_ids(one_town)
    assert one_town.count('<i class="drift"') == 2
    assert 'title="Config differs: running cfg-1, expected cfg-2"' in one_town
    unknown = fleet_html(big_fleet, VIEWER, "zh", q="", health="", town="第0001镇",
                         drift="<bad>", snapshot=snapshot)  # fmt: skip
    assert _site_ids(unknown) == _site_ids(one_town)  # an unknown filter is no filter


def test_drift_changes_are_pushed_live() -> None:
    registry = {"a-1": ("甲一", "甲镇"), "b-1": ("乙一", "乙镇")}
    tiles: dict[str, tuple[Health, int]] = {"a-1": ("ok", 0), "b-1": ("ok", 0)}
    drift = SiteDrift("onedoor-0.1.0", "onedoor-0.1.1", "cfg-2", "cfg-2", True, False)
    steady = FleetSnapshot(tiles, registry)
    drifting = FleetSnapshot(tiles, registry, {"a-1": drift})
    messages = live_messages(steady, drifting, {ALL, TOWNS, "town:甲镇", "town:乙镇"})
    wire = [True, "onedoor-0.1.0", "onedoor-0.1.1", False, "cfg-2", "cfg-2"]
    assert messages[ALL]["tiles"] == [["a-1", "ok", 0]]
    assert messages[ALL]["drift"] == {"a-1": wire}
    assert messages[ALL]["counts"]["software_drift"] == 1
    assert messages["town:甲镇"]["drift"] == {"a-1": wire}
    assert messages["town:乙镇"] == {"tiles": [], "drift": {}, "counts": messages[ALL]["counts"]}
    assert messages[TOWNS]["counts"]["software_drift"] == 1
    back = live_messages(drifting, steady, {ALL})
    assert back[ALL]["drift"] == {"a-1": None}  # the marker goes
    assert back[ALL]["counts"]["software_drift"] == 0
    assert live_messages(drifting, drifting, {ALL}) == {}

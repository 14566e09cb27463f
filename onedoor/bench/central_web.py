"""Benchmark of the fleet overview page: the seed fleet (277 villages + 26 halls) and 20,000 sites.

For each fleet size, on a fresh SQLite database:

* server render of ``/`` from the live hub's snapshot (what a request costs) and
  reading the database (the first request), median and worst of several runs,
  one town's page, and the HTML size;
* one poll of the live hub (what every dashboard's SSE stream costs per second)
  and the live messages of a busy second (:data:`CHURN_FRACTION` of the sites
  change);
* if Playwright and Debian's chromium are present: the page loaded in headless
  chromium over a real uvicorn server, time to ``DOMContentLoaded`` and to
  ``load``; at province scale also a town's page, and 20 busy seconds followed
  live: messages received, animation frames that applied them, and how far
  behind the server the page was (``data-live-lag-ms``).

``run()`` returns a flat dict for ``onedoor bench``; ``python -m
onedoor.bench.central_web`` prints it.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from central.auth import Principal, Role, SessionSigner, TokenStore
from central.config import CentralConfig
from central.context import Central
from central.db import make_engine, migrate, session_factory
from central.models import Alarm, AlarmType, Severity, Site, SiteKind
from central.seed import load_seed
from central.web import LiveHub, fleet_html
from central.web.fleet import ALL, TOWN_PREFIX, TOWNS, live_messages

CHROMIUM: Final = "/usr/bin/chromium"
RUNS: Final = 7


def synthetic_fleet(sessions: sessionmaker[Session], count: int) -> None:
    """``count`` village sites in towns of 20; 90 % online, 3 % with an alarm; every
    site expects release 0.1.1 and config ``cfg-2``: 1 % runs 0.1.0 (software drift),
    0.4 % reports ``cfg-1`` (config drift)."""
    now = datetime.now(UTC)
    sites: list[dict[str, Any]] = [
        {
            "id": f"p-{i // 20:04d}-{i % 20:02d}",
            "name": f"第{i // 20 + 1}镇第{i % 20 + 1}村党群服务中心",
            "town": f"第{i // 20 + 1:04d}镇",
            "kind": SiteKind.VILLAGE,
            "online": i % 10 != 0,
            "last_seen_at": now - timedelta(seconds=i % 60),
            "expected_release": "0.1.1",
            "software_version": "onedoor-0.1.0" if i % 100 == 7 else "onedoor-0.1.1",
            "expected_config_version": "cfg-2",
            "reported_config_version": "cfg-1" if i % 250 == 11 else "cfg-2",
        }
        for i in range(count)
    ]
    alarms = [
        {
            "site_id": sites[i]["id"],
            "device": "printer-1",
            "type": AlarmType.DEVICE_FAULT,
            "severity": Severity.MAJOR if i % 2 else Severity.WARNING,
            "message": "打印机缺纸 / printer paper out",
            "detail": {},
            "raised_at": now,
            "updated_at": now,
            "occurrences": 1,
        }
        for i in range(0, count, 33)
    ]
    with sessions.begin() as session:
        session.execute(insert(Site), sites)
        session.execute(insert(Alarm), alarms)


def _timed(function: Callable[[], Any], runs: int = RUNS) -> tuple[float, float, Any]:
    times = []
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times), result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_dashboards(db_url: str, *, live_interval_s: float = 1.0) -> Iterator[str]:
    """The read-only app (no MQTT) on a real uvicorn server in a thread; yields its URL."""
    import uvicorn

    from central.app import create_app

    config = CentralConfig(database_url=db_url)
    app = create_app(config, with_service=False, secret=b"b" * 32,
                     live_interval_s=live_interval_s)  # fmt: skip
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def log_in(page: Any, url: str, token: str) -> None:
    """Log ``page`` (Playwright) in with an access token; it lands on the fleet page."""
    page.goto(f"{url}/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def _navigation_ms(page: Any) -> tuple[float, float]:
    timing = page.evaluate(
        "(() => { const t = performance.getEntriesByType('navigation')[0];"
        " return [t.domContentLoadedEventEnd, t.loadEventEnd]; })()"
    )
    return float(timing[0]), float(timing[1])


def _browser_load(db_url: str, token: str, churn: Callable[[], None] | None = None,
                  ) -> dict[str, float] | None:  # fmt: skip
    """Chromium figures for ``/`` (and, at province scale, a town's page and live updates
    under ``churn``); None without Playwright or Debian's chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if shutil.which(CHROMIUM) is None:
        return None
    figures: dict[str, float] = {}
    with serve_dashboards(db_url, live_interval_s=1.0) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        log_in(page, url, token)
        loads = []
        for _ in range(3):
            page.reload(wait_until="load")
            loads.append(_navigation_ms(page))
        figures["DOMContentLoaded ms"] = statistics.median(x[0] for x in loads)
        figures["load ms"] = statistics.median(x[1] for x in loads)
        if page.locator("a.t.town").count():  # a province: drill down, then watch it live
            page.click("a.t.town")
            page.wait_for_url("**town=**")
            figures["town page DOMContentLoaded ms"] = _navigation_ms(page)[0]
            page.goto(f"{url}/")
            page.wait_for_selector("#live.on")
            if churn is not None:
                figures.update(_follow_live(page, churn))
        browser.close()
    return figures


def _follow_live(page: Any, churn: Callable[[], None], seconds: int = 20) -> dict[str, float]:
    """Change the fleet every second for ``seconds``; how far behind is the page?"""
    lags = []
    for _ in range(seconds):
        churn()
        time.sleep(1.0)
        lags.append(float(page.evaluate("Number(document.body.dataset.liveLagMs || 0)")))
    dataset = page.evaluate("({...document.body.dataset})")
    return {
        "live: messages received": float(dataset.get("liveMessages", 0)),
        "live: frames applied": float(dataset.get("liveUpdates", 0)),
        "live: lag median ms": statistics.median(lags),
        "live: lag worst ms": float(dataset.get("liveLagMaxMs", 0)),
    }


CHURN_FRACTION: Final = 0.02
"""A busy province: this share of the sites changes colour every second (400 of 20,000)."""


def churner(sessions: sessionmaker[Session], seed: int = 7) -> Callable[[], None]:
    """Each call flips ``CHURN_FRACTION`` of the sites online <-> offline (one commit)."""
    rng = random.Random(seed)
    with sessions() as session:
        ids = list(session.scalars(select(Site.id)))
    count = max(1, int(len(ids) * CHURN_FRACTION))

    def churn() -> None:
        chosen = rng.sample(ids, count)
        with sessions.begin() as session:
            session.execute(update(Site).where(Site.id.in_(chosen))
                            .values(online=~Site.online))  # fmt: skip

    return churn


def measure(label: str, populate: Callable[[sessionmaker[Session]], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="onedoor-bench-web-") as workdir:
        db_url = f"sqlite:///{Path(workdir) / 'central.db'}"
        engine = make_engine(db_url)
        migrate(engine)
        sessions = session_factory(engine)
        populate(sessions)
        tokens = TokenStore(sessions)
        _, token = tokens.create(Role.VIEWER, "bench")
        central = Central(
            config=CentralConfig(database_url=db_url),
            sessions=sessions,
            tokens=tokens,
            signer=SessionSigner(b"b" * 32),
            service=None,
        )
        viewer = Principal("bench000", "bench", Role.VIEWER)
        hub = LiveHub(central.read)
        cold, cold_worst, _ = _timed(
            lambda: fleet_html(central, viewer, "zh", q="", health="", town="")
        )
        poll, _, snapshot = _timed(hub._next_snapshot)  # the hub's poll, registry included
        warm, warm_worst, html = _timed(
            lambda: fleet_html(central, viewer, "zh", q="", health="", town="",
                               snapshot=snapshot)
        )
        first_town = next(iter(snapshot.registry.values()))[1]
        town, _, _ = _timed(
            lambda: fleet_html(central, viewer, "zh", q="", health="", town=first_town,
                               snapshot=snapshot)
        )
        churn = churner(sessions)
        churn()
        busier = hub._next_snapshot()
        diff, _, messages = _timed(
            lambda: live_messages(snapshot, busier, {ALL, TOWNS, f"{TOWN_PREFIX}{first_town}"})
        )
        figures: dict[str, Any] = {
            f"{label}: sites": len(snapshot.tiles),
            f"{label}: load average (1 min)": round(os.getloadavg()[0], 2),
            f"{label}: fleet page server render from the hub's snapshot, median ms":
                round(warm * 1000, 1),
            f"{label}: ... worst ms": round(warm_worst * 1000, 1),
            f"{label}: fleet page server render reading the database, median ms":
                round(cold * 1000, 1),
            f"{label}: ... worst ms (cold)": round(cold_worst * 1000, 1),
            f"{label}: one town's page server render, median ms": round(town * 1000, 1),
            f"{label}: fleet page HTML KiB": round(len(html.encode()) / 1024, 1),
            f"{label}: live hub poll (tile states), median ms": round(poll * 1000, 1),
            f"{label}: live messages for {CHURN_FRACTION:.0%} changed, median ms":
                round(diff * 1000, 1),
            f"{label}: towns changed in that second": len(messages.get(TOWNS, {}).get("towns", [])),
        }  # fmt: skip
        browser = _browser_load(db_url, token, churn)
        for key, value in (browser or {}).items():
            figures[f"{label}: chromium {key}"] = round(value)
        engine.dispose()
        return figures


def _seed(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        load_seed(session)


def run() -> dict[str, Any]:
    figures = measure("seed fleet", _seed)
    figures.update(measure("20,000 sites", lambda sessions: synthetic_fleet(sessions, 20_000)))
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")

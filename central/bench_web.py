"""Benchmark of the fleet overview page: the seed fleet (277 villages + 26 halls) and 20,000 sites.

For each fleet size, on a fresh SQLite database:

* server render of ``/`` (query + grouping + template), median and worst of several runs,
  and the HTML size;
* one poll of the live hub (what every dashboard's SSE stream costs per second);
* if Playwright and Debian's chromium are present: the page loaded in headless
  chromium over a real uvicorn server, time to ``DOMContentLoaded`` and to ``load``.

``run()`` returns a flat dict for ``onedoor bench``; ``python -m central.bench_web`` prints it.
"""

from __future__ import annotations

import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from central.auth import Principal, Role, SessionSigner, TokenStore
from central.config import CentralConfig
from central.context import Central
from central.db import make_engine, migrate, session_factory
from central.models import Alarm, AlarmType, Severity, Site, SiteKind
from central.seed import load_seed
from central.web import LiveHub, fleet_html

CHROMIUM: Final = "/usr/bin/chromium"
RUNS: Final = 7


def synthetic_fleet(sessions: sessionmaker[Session], count: int) -> None:
    """``count`` village sites in towns of 20; 90 % online, 3 % with an alarm."""
    now = datetime.now(UTC)
    sites = [
        {
            "id": f"p-{i // 20:04d}-{i % 20:02d}",
            "name": f"第{i // 20 + 1}镇第{i % 20 + 1}村党群服务中心",
            "town": f"第{i // 20 + 1:04d}镇",
            "kind": SiteKind.VILLAGE,
            "online": i % 10 != 0,
            "last_seen_at": now - timedelta(seconds=i % 60),
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


def _browser_load(db_url: str, token: str) -> tuple[float, float] | None:
    """(DOMContentLoaded, load) in ms for ``/`` in headless chromium; None without one."""
    try:
        import uvicorn
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if shutil.which(CHROMIUM) is None:
        return None
    from central.app import create_app

    app = create_app(CentralConfig(database_url=db_url), with_service=False, secret=b"b" * 32)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"],
            )  # fmt: skip
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/login")
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            page.wait_for_url(f"http://127.0.0.1:{port}/")
            loads = []
            for _ in range(3):
                page.reload(wait_until="load")
                timing = page.evaluate(
                    "(() => { const t = performance.getEntriesByType('navigation')[0];"
                    " return [t.domContentLoadedEventEnd, t.loadEventEnd]; })()"
                )
                loads.append((float(timing[0]), float(timing[1])))
            browser.close()
        return statistics.median(x[0] for x in loads), statistics.median(x[1] for x in loads)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


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
        median, worst, html = _timed(
            lambda: fleet_html(central, viewer, "zh", q="", health="", town="")
        )
        query_median, _, _ = _timed(central.read.fleet_tiles)
        hub = LiveHub(central.read)
        poll_median, _, tiles = _timed(hub.snapshot)
        figures: dict[str, Any] = {
            f"{label}: sites": len(tiles),
            f"{label}: fleet page server render, median ms": round(median * 1000, 1),
            f"{label}: fleet page server render, worst ms": round(worst * 1000, 1),
            f"{label}: of which the sites query, median ms": round(query_median * 1000, 1),
            f"{label}: fleet page HTML KiB": round(len(html.encode()) / 1024, 1),
            f"{label}: live hub poll, median ms": round(poll_median * 1000, 1),
        }
        browser = _browser_load(db_url, token)
        if browser is not None:
            figures[f"{label}: chromium DOMContentLoaded ms"] = round(browser[0])
            figures[f"{label}: chromium load ms"] = round(browser[1])
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

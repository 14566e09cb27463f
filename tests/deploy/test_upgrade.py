"""A staged software rollout by `upgrade.yml`, for real: the production deployment of
`tests/deploy/fleet.py`, its central on PostgreSQL, site B's daemon running from its own
venv on the TLS broker, two releases built from this checkout (`tests/deploy/releases.py`).

The site is first deferred (within its opening hours), then upgraded to a release that
does not come up (a fault injected by the restart command), checked unhealthy, rolled
back to the release before, and the rollout stops (a failed canary); resumed, the next
run upgrades it. The central's rollout, the site's expected release and the versions
page follow each step.

Minutes of playbook runs: it runs with the rehearsal (`make rehearsal`), not in `make test`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.deploy.fleet import SAMPLE, SITE_B, CentralServer, Deployment, Run, wait_for
from tests.deploy.releases import (
    FROM,
    REHEARSAL,
    TO,
    Site,
    build_release,
    hours_around,
    sites_inventory,
    upgrade_vars,
)

if not os.environ.get(REHEARSAL):
    pytest.skip("runs with the ops-year rehearsal (`make rehearsal`)", allow_module_level=True)


@pytest.fixture
def site_b(deployment: Deployment, central_server: CentralServer) -> Iterator[Site]:
    releases = deployment.workdir / "releases"
    for version in (FROM, TO):
        central_server.call("POST", "/api/v1/releases", build_release(version, releases))
    site = Site(deployment, SITE_B, releases)
    site.restart()
    try:
        yield site
    finally:
        site.stop()


def upgrade_run(deployment: Deployment, central: CentralServer, site: Site, rollout: int,
                hours: dict[str, str] | None = None) -> Run:  # fmt: skip
    """`ansible-playbook upgrade.yml -e onedoor_rollout=ID` as ops run it (after pushing
    ``hours`` with edge-config.yml, when given)."""
    vars_file = upgrade_vars(deployment, central, hours)
    inventory = (str(SAMPLE), str(sites_inventory(deployment, [site])))
    if hours is not None:
        push = deployment.play("edge-config.yml", "--limit", SITE_B,
                               "-e", f"edge_config_version=ota-{hours['open']}",
                               inventory=inventory, vars_file=vars_file)  # fmt: skip
        assert push.returncode == 0, push.output[-4000:]
        site.restart()  # a reload would do; the site then reports the pushed version
    return deployment.play("upgrade.yml", "-e", f"onedoor_rollout={rollout}",
                           inventory=inventory, vars_file=vars_file)  # fmt: skip


def step_of(central: CentralServer, rollout: int) -> tuple[str, str, str | None]:
    view: dict[str, Any] = central.get(f"/api/v1/rollouts/{rollout}")
    [site] = view["sites"]
    return view["status"], site["step"], site["detail"]


# Four playbook runs and two pushes, after the deployment (when this is the session's first
# deploy test, it sets it up inside its own time): minutes on a loaded 2-core machine.
@pytest.mark.timeout(900)
def test_a_release_is_deferred_rolled_back_then_upgraded(
    deployment: Deployment, central_server: CentralServer, site_b: Site,
) -> None:
    central = central_server
    wait_for(lambda: central.site(SITE_B)["software_version"] == f"onedoor-{FROM}", timeout=60)
    rollout = central.call("POST", "/api/v1/rollouts", {
        "release": TO, "sites": [SITE_B], "canary": [SITE_B], "max_failures": 0})["id"]
    now = datetime.now(ZoneInfo("Asia/Shanghai"))

    # Within its opening hours: deferred, not touched.
    run = upgrade_run(deployment, central, site_b, rollout, hours_around(now, open_now=True))
    assert run.returncode == 0, run.output[-6000:]
    status, step, detail = step_of(central, rollout)
    assert (status, step) == ("running", "deferred")
    assert detail is not None
    assert "营业时间内" in detail
    assert site_b.software() == FROM

    # Closed, but the release does not come up: rolled back, and the canary stops it.
    site_b.fault.write_text(TO)
    run = upgrade_run(deployment, central, site_b, rollout, hours_around(now, open_now=False))
    assert run.returncode == 0, run.output[-6000:]
    status, step, detail = step_of(central, rollout)
    assert (status, step) == ("stopped", "rolled_back"), run.output[-6000:]
    assert detail is not None
    assert detail.startswith(f"{TO}: ")
    assert "守护进程无应答" in detail  # what `onedoor edge health` said
    assert site_b.software() == FROM
    assert central.site(SITE_B)["software_version"] == f"onedoor-{FROM}"
    assert central.site(SITE_B)["online"] is True
    versions = {row["site"]: row for row in central.get("/api/v1/fleet/versions")["rows"]}
    assert versions[SITE_B]["expected_release"] == FROM
    assert versions[SITE_B]["rollout_step"] == "rolled_back"

    # A stopped rollout starts nothing.
    run = upgrade_run(deployment, central, site_b, rollout)
    assert run.returncode == 0, run.output[-4000:]
    assert "is stopped: no site to upgrade" in run.output
    assert step_of(central, rollout)[1] == "rolled_back"

    # Fixed (no fault), resumed with its failed sites: upgraded, and the rollout is done.
    site_b.fault.unlink()
    central.call("POST", f"/api/v1/rollouts/{rollout}/resume", {"retry_failed": True})
    run = upgrade_run(deployment, central, site_b, rollout)
    assert run.returncode == 0, run.output[-6000:]
    assert step_of(central, rollout)[:2] == ("done", "upgraded")
    assert site_b.software() == TO
    detail_b = central.site(SITE_B)
    assert (detail_b["software_version"], detail_b["online"]) == (f"onedoor-{TO}", True)
    assert SITE_B not in central.text("/api/v1/fleet/versions?drift=true")
    # The wheels stay on the site for a later rollback.
    kept = deployment.root(SITE_B) / "var" / "lib" / "onedoor" / "releases"
    assert sorted(p.name for p in kept.iterdir()) == [FROM, TO]

"""A staged software rollout by `upgrade.yml`, for real: the production deployment of
`tests/deploy/fleet.py`, its central on PostgreSQL, site B's daemon running from its own
venv on the TLS broker, two releases built from this checkout.

The site is first deferred (within its opening hours), then upgraded to a release that
does not come up (a fault injected by the restart command), checked unhealthy, rolled
back to the release before, and the rollout stops (a failed canary); resumed, the next
run upgrades it. The central's rollout, the site's expected release and the versions
page follow each step.

Two things stand in for what this machine lacks: the releases are pure-Python wheels of
onedoor only (its dependencies come from the test venv through a ``.pth`` file, where a
Pi installs the release's bundled wheels), and systemd's restart is a script that stops
the daemon of a pid file and starts the venv's ``onedoor edge run`` (``edge_restart_command``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from onedoor.release import Artifact, Manifest, TargetBuild, sha256, stage_source
from tests.deploy.fleet import REPO, SITE_B, CentralServer, Deployment, wait_for

FROM, TO = "1.0.0", "1.0.1"
ARCH = "x86_64"
# The restart command's fault: the daemon of this release gets a config that does not exist.
RESTART = '''\
"""systemd's `restart onedoor-edge` on a test machine (edge_restart_command)."""
import importlib.metadata, os, signal, subprocess, sys, time
from pathlib import Path
venv, config, pidfile, log, fault = sys.argv[1:6]
pid = Path(pidfile)
if pid.exists():
    try:
        os.kill(int(pid.read_text()), signal.SIGTERM)
        for _ in range(300):
            os.kill(int(pid.read_text()), 0)
            time.sleep(0.1)
    except ProcessLookupError:
        pass
version = subprocess.run([venv + "/bin/python", "-I", "-c",
                          "import importlib.metadata as m; print(m.version('onedoor'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
broken = Path(fault).exists() and Path(fault).read_text().strip() == version
env = {k: v for k, v in os.environ.items() if not k.startswith("ONEDOOR_")}
with open(log, "ab") as out:
    daemon = subprocess.Popen(
        [venv + "/bin/onedoor", "edge", "run", "--config", config + (".missing" if broken else "")],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        start_new_session=True)
pid.write_text(str(daemon.pid))
'''


def build_release(version: str, releases: Path) -> dict[str, Any]:
    """``releases/<version>/``: the onedoor wheel of this checkout at ``version`` and its
    manifest, as `onedoor release build` lays it out (one architecture, no bundled deps)."""
    tree = releases / f".src-{version}"
    stage_source(REPO, tree, version)
    folder = releases / version / ARCH
    folder.mkdir(parents=True)
    env = {**os.environ, "ONEDOOR_NO_EXTENSIONS": "1"}
    built = subprocess.run(
        [sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
         "print(b.build_wheel(sys.argv[1]))", str(folder)],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=True)
    wheel = folder / built.stdout.strip().splitlines()[-1]
    artifact = Artifact(f"{ARCH}/{wheel.name}", sha256(wheel))
    manifest = Manifest(version=version, software=f"onedoor-{version}", python="3.11",
                        glibc="2.36", built_at="2026-12-07T08:00:00+00:00", commit=None,
                        dirty=True, sdist=artifact,
                        targets={ARCH: TargetBuild(extras=[], wheel=artifact, compiled=False,
                                                   wheels=[artifact])})  # fmt: skip
    data = manifest.to_json()
    (releases / version / "manifest.json").write_text(json.dumps(data))
    return data


def hours_around(now: datetime, *, open_now: bool) -> dict[str, str]:
    """Opening hours that include ``now`` (local), or that do not."""
    if open_now:
        start, end = now - timedelta(hours=1), now + timedelta(hours=1)
        if start.date() != now.date() or end.date() != now.date():
            start, end = now.replace(hour=0, minute=0), now.replace(hour=23, minute=59)
    else:
        start = now + timedelta(hours=2) if now.hour < 12 else now - timedelta(hours=4)
        end = start + timedelta(hours=1)
    return {"open": f"{start:%H:%M}", "close": f"{end:%H:%M}", "reset": "03:00"}


class Site:
    """Site B with its own venv, started and restarted as the role's command does."""

    def __init__(self, deployment: Deployment, releases: Path) -> None:
        self.deployment = deployment
        work = deployment.workdir / "upgrade"
        work.mkdir(exist_ok=True)
        self.venv = deployment.root(SITE_B) / "opt" / "onedoor-upgrade"
        self.pidfile, self.fault = work / "edge.pid", work / "fault"
        self.log = work / "edge.log"
        script = work / "restart.py"
        script.write_text(RESTART)
        config = deployment.site_config(SITE_B)
        self.restart_command = (f"{sys.executable} {script} {self.venv} {config} "
                                f"{self.pidfile} {self.log} {self.fault}")  # fmt: skip
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(self.venv)], check=True,
                       timeout=120)  # fmt: skip
        purelib = Path(sysconfig.get_paths(vars={"base": str(self.venv)})["purelib"])
        (purelib / "onedoor-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        subprocess.run([str(self.venv / "bin" / "pip"), "install", "--quiet", "--no-index",
                        "--disable-pip-version-check", "--find-links",
                        str(releases / FROM / ARCH), f"onedoor=={FROM}"],
                       check=True, timeout=300)  # fmt: skip

    def restart(self) -> None:
        subprocess.run(self.restart_command, shell=True, check=True, timeout=60)

    def stop(self) -> None:
        if self.pidfile.exists():
            subprocess.run(["kill", self.pidfile.read_text().strip()], check=False)

    def software(self) -> str:
        return subprocess.run(
            [str(self.venv / "bin" / "python"), "-I", "-c",
             "import importlib.metadata as m; print(m.version('onedoor'))"],
            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


@pytest.fixture
def site_b(deployment: Deployment, central_server: CentralServer) -> Iterator[Site]:
    releases = deployment.workdir / "releases"
    for version in (FROM, TO):
        central_server.call("POST", "/api/v1/releases", build_release(version, releases))
    site = Site(deployment, releases)
    site.restart()
    try:
        yield site
    finally:
        site.stop()


def upgrade_run(deployment: Deployment, central: CentralServer, site: Site, rollout: int,
                hours: dict[str, str] | None = None) -> Any:  # fmt: skip
    """`ansible-playbook upgrade.yml -e onedoor_rollout=ID` as ops run it (after pushing
    ``hours`` with edge-config.yml, when given)."""
    settings = yaml.safe_load(deployment.vars_file.read_text())
    settings |= {
        "edge_venv": str(site.venv), "edge_arch": ARCH, "edge_release_extras": "",
        "onedoor_releases_dir": str(deployment.workdir / "releases"),
        "edge_restart_command": site.restart_command,
        "edge_health_timeout": 45, "edge_health_settle": 3, "edge_central_seen_timeout": 40,
        "onedoor_central_url": central.url, "onedoor_central_admin_token": central.admin_token,
    }  # fmt: skip
    if hours is not None:
        settings["edge_hours"] = hours
    vars_file = deployment.workdir / "upgrade" / "vars.yml"
    vars_file.write_text(yaml.safe_dump(settings, allow_unicode=True))
    if hours is not None:
        push = deployment.play("edge-config.yml", "--limit", SITE_B,
                               "-e", f"edge_config_version=ota-{hours['open']}",
                               vars_file=vars_file)  # fmt: skip
        assert push.returncode == 0, push.output[-4000:]
        site.restart()  # a reload would do; the site then reports the pushed version
    return deployment.play("upgrade.yml", "-e", f"onedoor_rollout={rollout}",
                           vars_file=vars_file)  # fmt: skip


def step_of(central: CentralServer, rollout: int) -> tuple[str, str, str | None]:
    view = central.get(f"/api/v1/rollouts/{rollout}")
    [site] = view["sites"]
    return view["status"], site["step"], site["detail"]


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
    page = central.text("/api/v1/fleet/versions?drift=true")
    assert SITE_B not in page  # runs what it should
    # The wheels stay on the site for a later rollback.
    kept = deployment.root(SITE_B) / "var" / "lib" / "onedoor" / "releases"
    assert sorted(p.name for p in kept.iterdir()) == [FROM, TO]


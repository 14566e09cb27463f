"""Releases and site daemons for the upgrade tests and the rehearsal.

Two things stand in for what this machine lacks: a release is a pure-Python wheel of
onedoor only (its dependencies come from the test venv through a ``.pth`` file, where a
Pi installs the release's bundled wheels), and systemd's restart is a script that stops
the daemon of a pid file and starts the venv's ``onedoor edge run`` (the role's
``edge_restart_command``); the script can make a release fail to start (a fault
injected, named in the site's ``fault`` file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from onedoor.release import Artifact, Manifest, TargetBuild, sha256, stage_source
from tests.deploy.fleet import REPO, CentralServer, Deployment

FROM, TO = "1.0.0", "1.0.1"
REHEARSAL = "ONEDOOR_REHEARSAL"
"""Set (to 1) by `make rehearsal`: the tests of minutes of playbook runs run then only."""
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
env["ONEDOOR_GPIO_MOCK"] = "1"  # the config's lgpio on gpiozero's mock pins: no header here
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
    built = releases / version / "manifest.json"
    if built.exists():  # built once per deployment: every test registers the same build
        data: dict[str, Any] = json.loads(built.read_text())
        return data
    tree = releases / f".src-{version}"
    stage_source(REPO, tree, version)
    folder = releases / version / ARCH
    folder.mkdir(parents=True)
    env = {**os.environ, "ONEDOOR_NO_EXTENSIONS": "1"}
    wheel_name = subprocess.run(
        [sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
         "print(b.build_wheel(sys.argv[1]))", str(folder)],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=True)
    wheel = folder / wheel_name.stdout.strip().splitlines()[-1]
    artifact = Artifact(f"{ARCH}/{wheel.name}", sha256(wheel))
    manifest = Manifest(version=version, software=f"onedoor-{version}", python="3.11",
                        glibc="2.36", built_at="2026-12-07T08:00:00+00:00", commit=None,
                        dirty=True, sdist=artifact,
                        targets={ARCH: TargetBuild(extras=[], wheel=artifact, compiled=False,
                                                   wheels=[artifact])})  # fmt: skip
    data = manifest.to_json()
    built.write_text(json.dumps(data))
    return data


def hours_around(now: datetime, *, open_now: bool) -> dict[str, str]:
    """Opening hours that include ``now`` (local), or that do not, with one reset for
    both. Near midnight the open hall is open around the clock."""
    reset = reset_around(now)
    if open_now:
        start, end = now - timedelta(hours=1), now + timedelta(hours=1)
        if start.date() != now.date() or end.date() != now.date():
            return {"open": "00:00", "close": "24:00", "reset": reset}
    else:
        start, end = _closed_hours(now)
    return {"open": f"{start:%H:%M}", "close": f"{end:%H:%M}", "reset": reset}


def _closed_hours(now: datetime) -> tuple[datetime, datetime]:
    start = now + timedelta(hours=2) if now.hour < 12 else now - timedelta(hours=4)
    return start, start + timedelta(hours=1)


def reset_around(now: datetime) -> str:
    """03:00, else midnight, else 90 minutes ago: the first outside both kinds of
    hours that is not due while a test runs (a new day would restart the numbers)."""
    def minute(t: datetime) -> int:
        return t.hour * 60 + t.minute

    opened = minute(now) - 60, minute(now) + 60
    closed = tuple(minute(t) for t in _closed_hours(now))
    for candidate in (3 * 60, 0, minute(now - timedelta(minutes=90))):
        clear = all((candidate - lo) % 1440 >= (hi - lo) % 1440 for lo, hi in (opened, closed))
        if clear and (candidate - minute(now)) % 1440 > 60:
            return f"{candidate // 60:02}:{candidate % 60:02}"
    raise AssertionError(f"no reset fits {now:%H:%M}")


class Site:
    """A site's daemon in its own venv (release ``FROM``), started and restarted as the
    role's ``edge_restart_command`` does."""

    def __init__(self, deployment: Deployment, host: str, releases: Path) -> None:
        self.deployment, self.host = deployment, host
        work = deployment.workdir / "upgrade" / host
        work.mkdir(parents=True, exist_ok=True)
        self.venv = deployment.root(host) / "opt" / "onedoor-upgrade"
        self.pidfile, self.fault = work / "edge.pid", work / "fault"
        self.fault.unlink(missing_ok=True)  # an earlier test's
        self.log = work / "edge.log"
        script = work / "restart.py"
        script.write_text(RESTART)
        config = deployment.site_config(host)
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


def upgrade_vars(deployment: Deployment, central: CentralServer,
                 hours: dict[str, str] | None = None) -> Path:  # fmt: skip
    """The deployment's variables for upgrade.yml (and a push of ``hours``); each site's
    venv and restart command are host variables (:func:`sites_inventory`)."""
    settings = yaml.safe_load(deployment.vars_file.read_text())
    del settings["edge_venv"]  # per site, below
    settings |= {
        "edge_arch": ARCH, "edge_release_extras": "",
        "onedoor_releases_dir": str(deployment.workdir / "releases"),
        "edge_health_timeout": 30, "edge_health_settle": 3, "edge_central_seen_timeout": 40,
        "onedoor_central_url": central.url, "onedoor_central_admin_token": central.admin_token,
    }  # fmt: skip
    if hours is not None:
        settings["edge_hours"] = hours
    path = deployment.workdir / "upgrade" / "vars.yml"
    path.write_text(yaml.safe_dump(settings, allow_unicode=True))
    return path


def sites_inventory(deployment: Deployment, sites: list[Site]) -> Path:
    """Host variables of the sites running from their own venvs."""
    path = deployment.workdir / "upgrade" / "sites.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {
        site.host: {"edge_venv": str(site.venv), "edge_restart_command": site.restart_command}
        for site in sites}}}))  # fmt: skip
    return path

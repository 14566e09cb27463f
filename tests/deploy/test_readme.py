"""The README's commands, run as written against a real central.

``deploy/ansible/README.md`` marks each command block a test runs with an HTML comment
line right above its fence, ``<!-- readme-test: NAME -->``. This test reads those blocks
from the README (not a copy of them), replaces only what the README tells the reader to
fill in — the central's address ``https://onedoor.zs.example.cn`` and the tokens of its
``export NAME=od_...`` lines — and runs each with ``bash -eu -o pipefail`` from a folder laid
out as the repository (the release the README's build step makes), against a real
``onedoor central`` process (seeded SQLite database, real Mosquitto). A README whose
commands drift from the API fails here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from onedoor.release import (
    Artifact,
    Manifest,
    TargetBuild,
    architecture,
    interpreter,
    load_manifest,
)
from tests.deploy.fleet import REPO, VENV_BIN
from tests.deploy.releases import REHEARSAL
from tests.edge.sites import free_port
from tests.servers import MosquittoBroker, wait_for_port

README = REPO / "deploy" / "ansible" / "README.md"
README_HOST = "https://onedoor.zs.example.cn"
TOKEN_VARIABLES = {"ONEDOOR_CENTRAL_ADMIN_TOKEN": "admin", "TOKEN": "operator"}
"""The ``export NAME=od_...`` lines of the README and the role of the token they want."""
RELEASE = "0.1.1"  # the README's example release
_BLOCK = re.compile(r"^(?P<indent>[ \t]*)<!-- readme-test: (?P<name>[a-z0-9-]+) -->\n"
                    r"(?P=indent)```sh\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)


def readme_blocks(text: str) -> dict[str, str]:
    """The marked command blocks of ``text``, by name (dedented)."""
    blocks: dict[str, str] = {}
    for match in _BLOCK.finditer(text):
        name = match["name"]
        assert name not in blocks, f"two README blocks named {name}"
        blocks[name] = textwrap.dedent(match["body"])
    return blocks


def filled_in(block: str, url: str, tokens: dict[str, str]) -> str:
    """What a reader types: the README's host and token placeholders replaced, nothing else."""
    for variable, role in TOKEN_VARIABLES.items():
        block = re.sub(rf"\b{variable}=od_\.\.\.", f"{variable}={tokens[role]}", block)
    assert "od_..." not in block, f"a token placeholder this test does not know: {block}"
    return block.replace(README_HOST, url)


def json_documents(output: str) -> list[Any]:
    """The JSON answers of several curl lines, printed one after the other."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    while at < len(output.rstrip()):
        document, at = decoder.raw_decode(output, at)
        documents.append(document)
        while at < len(output) and output[at].isspace():
            at += 1
    return documents


@dataclass(frozen=True)
class Central:
    url: str
    tokens: dict[str, str]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.tokens['admin']}",
                     "Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=20) as response:
            return json.load(response)


@pytest.fixture
def central(tmp_path: Path, mqtt_broker: MosquittoBroker) -> Iterator[Central]:
    """`onedoor central run` on a seeded database of its own (rollout ids start at 1, as
    the README's do)."""
    port = free_port()
    env = {**os.environ,
           "ONEDOOR_CENTRAL_DATABASE_URL": f"sqlite:///{tmp_path / 'central.db'}",
           "ONEDOOR_CENTRAL_MQTT_HOST": mqtt_broker.host,
           "ONEDOOR_CENTRAL_MQTT_PORT": str(mqtt_broker.port),
           "ONEDOOR_CENTRAL_MQTT_CLIENT_ID": f"central-readme-{port}"}
    onedoor = str(VENV_BIN / "onedoor")

    def cli(*args: str) -> str:
        done = subprocess.run([onedoor, "central", *args], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip()

    cli("seed")
    # The README's new village (its onboarding adds it with this command, over ssh).
    cli("site", "add", "zs-xiaolan-13", "--name", "小榄新村党群服务中心", "--town", "小榄镇",
        "--kind", "village", "--windows", "2", "--hours", "08:30-17:30")
    tokens = {role: cli("token", "create", "--role", role, "--name", f"readme-{role}")
              for role in ("admin", "operator")}
    with (tmp_path / "central.log").open("wb") as log:
        process = subprocess.Popen([onedoor, "central", "run", "--port", str(port)], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, timeout=60)
        yield Central(f"http://127.0.0.1:{port}", tokens)
    finally:
        process.terminate()
        process.wait(timeout=20)


def _release_folder(root: Path) -> None:
    """What step 1 (`onedoor release build --version 0.1.1 --output deploy/ansible/releases`)
    leaves for step 2: the manifest (the central reads only it; the wheels go to the sites)."""
    folder = root / "deploy" / "ansible" / "releases" / RELEASE
    folder.mkdir(parents=True)
    wheel = Artifact(f"aarch64/onedoor-{RELEASE}-cp311-cp311-manylinux_2_36_aarch64.whl",
                     "0" * 64)
    manifest = Manifest(version=RELEASE, software=f"onedoor-{RELEASE}", python="3.11",
                        glibc="2.36", built_at="2026-12-07T08:00:00+00:00", commit=None,
                        dirty=False, sdist=Artifact(f"onedoor-{RELEASE}.tar.gz", "1" * 64),
                        targets={"aarch64": TargetBuild(extras=["pi"], wheel=wheel,
                                                        compiled=True, wheels=[wheel])})
    (folder / "manifest.json").write_text(json.dumps(manifest.to_json()))


def test_every_marked_readme_block_runs_as_written(central: Central, tmp_path: Path) -> None:
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert set(blocks) == {"devices", "build-release", "register-and-plan", "resume", "cancel"}
    root = tmp_path / "repository"  # "from the repository's root"
    _release_folder(root)
    env = {key: value for key, value in os.environ.items() if not key.startswith("ONEDOOR_")}

    def run(name: str, session: tuple[str, ...] = ()) -> str:
        """One block as a reader runs it, in the shell where the ``session`` blocks ran
        (their ``export`` lines still hold)."""
        exported = [line for n in session for line in blocks[n].splitlines()
                    if line.startswith("export ")]
        script = filled_in("\n".join([*exported, blocks[name]]), central.url, central.tokens)
        done = subprocess.run(["bash", "-eu", "-o", "pipefail", "-c", script], cwd=root,
                              env=env, capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 0, f"README block {name}: {done.stderr[-2000:]}"
        return done.stdout

    # Replace a site's Pi, step 2: the site's devices (none has spoken for it yet).
    assert json.loads(run("devices")) == {"devices": []}

    # Software upgrades, step 2: the release registered, the rollout planned as rollout 1.
    answers = json_documents(run("register-and-plan"))
    assert answers[0]["version"] == RELEASE, answers
    assert (answers[-1]["id"], answers[-1]["release"]) == (1, RELEASE), answers
    assert central.call("GET", "/api/v1/rollouts/1")["status"] == "running"

    # The canary fails: the rollout stops; the README's resume puts it back in line.
    for report in ({"step": "upgrading", "from_release": "0.1.0"},
                   {"step": "failed", "detail": "neither release came up healthy"}):
        central.call("POST", "/api/v1/rollouts/1/sites/zs-shiqi-01", report)
    assert central.call("GET", "/api/v1/rollouts/1")["status"] == "stopped"
    resumed = json.loads(run("resume", session=("register-and-plan",)))
    assert resumed["status"] == "running", resumed
    cancelled = json.loads(run("cancel", session=("register-and-plan",)))
    assert cancelled["status"] == "cancelled", cancelled


@pytest.mark.skipif(not os.environ.get(REHEARSAL),
                    reason="minutes of downloads and cross-compiling: make rehearsal")
def test_the_readmes_release_build_gives_a_pi_bundle_that_installs_offline(
        tmp_path: Path) -> None:
    """Step 1 as written (the Pi's sysroot from Debian, the release with the fastpath
    cross-compiled and every dependency of ``onedoor[pi]`` downloaded for aarch64, checked
    under qemu), then the bundle installed with ``pip install --no-index`` from its own
    folder alone, and the daemon's modules, the GPIO backend and the compiled dispatcher
    loaded from it by the Pi's interpreter."""
    block = readme_blocks(README.read_text(encoding="utf-8"))["build-release"]
    root = tmp_path / "repository"
    root.mkdir()
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-eu", "-o", "pipefail", "-c", block], cwd=root, env=env,
                          capture_output=True, text=True, timeout=3600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    release = root / "deploy" / "ansible" / "releases" / RELEASE
    build = load_manifest(release).targets["aarch64"]
    assert (build.extras, build.compiled) == (["pi"], True)

    site = tmp_path / "pi-site-packages"
    tags = [arg for tag in architecture("aarch64").platform_tags((2, 36))
            for arg in ("--platform", tag)]
    pip = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "pip", "install", "--no-index", "--find-links",
         str(release / "aarch64"), "--only-binary=:all:", *tags, "--python-version", "3.11",
         "--implementation", "cp", "--target", str(site), f"onedoor[pi]=={RELEASE}"],
        capture_output=True, text=True, timeout=600, check=False)
    assert pip.returncode == 0, pip.stderr[-4000:]
    probe = ("import edge.daemon, lgpio, fastpath, onedoor, platform; "
             "print(onedoor.__version__, fastpath.IMPLEMENTATION, platform.machine())")
    python = interpreter("aarch64", root / "build" / "sysroot-aarch64", "/usr/bin/python3")
    ran = subprocess.run([*python, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); "
                          + probe], capture_output=True, text=True, timeout=600, check=False)
    assert ran.returncode == 0, ran.stderr[-4000:]
    assert ran.stdout.split() == [RELEASE, "cython", "aarch64"]

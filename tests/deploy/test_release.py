"""Releases (onedoor/release.py): what a Pi installs must run with what it installs.

The full build (a cross-compiled aarch64 wheel, the offline bundles, the Pi's interpreter
under qemu) runs in `make rehearsal`; these are the quick checks of `make test`.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from onedoor import software_token
from onedoor.release import (
    ARCHITECTURES,
    Artifact,
    Manifest,
    ReleaseError,
    TargetBuild,
    TargetSpec,
    check_files,
    check_version,
    load_manifest,
    stage_source,
)
from tests.deploy.fleet import REPO


def requirement_closure(name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Distributions ``name[extras]`` pulls in (normalised names), itself included."""
    seen: set[str] = set()
    todo = [(name, extras)]
    while todo:
        dist, wanted = todo.pop()
        key = re.sub(r"[-_.]+", "-", dist).lower()
        if key in seen and not wanted:
            continue
        seen.add(key)
        try:
            requires = importlib.metadata.requires(dist) or []
        except importlib.metadata.PackageNotFoundError:  # declared, not installed here (lgpio)
            continue
        for text in requires:
            requirement = Requirement(text)
            marker = requirement.marker
            environments = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if marker is None or any(marker.evaluate(env) for env in environments):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return seen


def test_the_edge_runs_with_its_declared_dependencies_alone() -> None:
    """A Pi has onedoor[pi] and nothing else: importing what it runs must not reach a
    module only the dev tools brought (h11 came with uvicorn, the central's server)."""
    allowed = sorted(requirement_closure("onedoor", frozenset({"pi"})) - {"onedoor"})
    probe = textwrap.dedent(f"""
        import importlib.metadata, re, sys
        allowed = set({allowed!r})
        owners = importlib.metadata.packages_distributions()
        first_party = {{"onedoor", "edge", "fastpath", "firmware_protocols", "central"}}

        class OnlyDeclared:
            def find_spec(self, name, path=None, target=None):
                top = name.partition(".")[0]
                if top in sys.stdlib_module_names or top in first_party:
                    return None
                dists = {{re.sub(r"[-_.]+", "-", d).lower() for d in owners.get(top, [])}}
                if not dists or dists & allowed:  # the interpreter's own, or declared
                    return None
                raise ModuleNotFoundError(f"undeclared: {{name}}", name=name)

        sys.meta_path.insert(0, OnlyDeclared())
        import edge.daemon, edge.devices_factory, edge.cli, edge.upgrade
        from onedoor.cli import main
        sys.exit(main(["version"]))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("onedoor ")


def test_versions_and_targets_are_checked() -> None:
    assert check_version("0.1.1+zs.2") == "0.1.1+zs.2"
    for bad in ("v0.1", "0.1.1 ", "latest", "0.1-1"):
        with pytest.raises(ReleaseError, match="not a PEP 440 version"):
            check_version(bad)
    assert TargetSpec.parse("aarch64:pi") == TargetSpec("aarch64", ("pi",))
    assert TargetSpec.parse("x86_64") == TargetSpec("x86_64", ())
    with pytest.raises(ReleaseError, match="unknown architecture 'arm64'"):
        TargetSpec.parse("arm64:pi")
    assert software_token("0.1.1") == "onedoor-0.1.1"


def test_the_platform_tags_reach_bookworms_glibc() -> None:
    """pip does not widen --platform by itself: lgpio's aarch64 wheel is manylinux_2_34."""
    tags = ARCHITECTURES["aarch64"].platform_tags((2, 36))
    assert tags[0] == "manylinux_2_36_aarch64"
    assert {"manylinux_2_34_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64",
            "linux_aarch64"} <= set(tags)  # fmt: skip
    assert "manylinux_2_37_aarch64" not in tags


def test_the_source_is_what_git_tracks_with_the_release_version(tmp_path: Path) -> None:
    commit, _ = stage_source(REPO, tmp_path, "9.8.7")
    assert commit is not None
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    assert 'version = "9.8.7"' in (tmp_path / "pyproject.toml").read_text()
    assert (tmp_path / "onedoor" / "release.py").is_file()
    assert not (tmp_path / ".venv").exists()


def _manifest(release: Path) -> Manifest:
    (release / "x86_64").mkdir(parents=True)
    wheel = release / "x86_64" / "onedoor-1.0-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(b"wheel")
    sdist = release / "onedoor-1.0.tar.gz"
    sdist.write_bytes(b"sdist")
    from onedoor.release import sha256

    artifact = Artifact("x86_64/" + wheel.name, sha256(wheel))
    return Manifest(version="1.0", software="onedoor-1.0", python="3.11", glibc="2.36",
                    built_at="2026-12-07T00:00:00+00:00", commit=None, dirty=False,
                    sdist=Artifact(sdist.name, sha256(sdist)),
                    targets={"x86_64": TargetBuild(extras=[], wheel=artifact, compiled=True,
                                                   wheels=[artifact])})  # fmt: skip


def test_a_manifest_round_trips_and_finds_a_tampered_file(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest.to_json()))
    assert load_manifest(tmp_path) == manifest
    assert check_files(tmp_path, manifest) == []
    (tmp_path / "x86_64" / "onedoor-1.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"other")
    (tmp_path / "onedoor-1.0.tar.gz").unlink()
    assert check_files(tmp_path, manifest) == [
        "onedoor-1.0.tar.gz: missing",
        "x86_64/onedoor-1.0-cp311-cp311-linux_x86_64.whl: sha256 differs from the manifest",
        "x86_64/onedoor-1.0-cp311-cp311-linux_x86_64.whl: sha256 differs from the manifest"]


def test_a_folder_without_a_manifest_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match=r"no manifest \(build the release with"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": 1}')
    with pytest.raises(ReleaseError, match="not a release manifest"):
        load_manifest(tmp_path)

"""Build a release once, for every architecture of the fleet, with its dependencies.

::

    onedoor release sysroot --arch aarch64 --dir build/sysroot-aarch64
    onedoor release build --version 0.1.1 --output deploy/ansible/releases \\
        --arch aarch64:pi --sysroot aarch64=build/sysroot-aarch64 --arch x86_64:central
    onedoor release verify deploy/ansible/releases/0.1.1 --arch aarch64 \\
        --sysroot aarch64=build/sysroot-aarch64

A release is a folder (``<output>/<version>/``) the Ansible roles install from, with no
index and no network (``pip install --no-index --find-links``)::

    manifest.json                 what is in it, with sha256 (:class:`Manifest`)
    onedoor-0.1.1.tar.gz          the sdist: the fallback for an architecture without a wheel
    aarch64/                      a Raspberry Pi (64-bit Raspberry Pi OS bookworm)
        onedoor-0.1.1-cp311-cp311-linux_aarch64.whl   compiled fastpath for aarch64
        msgspec-...aarch64.whl, lgpio-...aarch64.whl, ...   every dependency of onedoor[pi]
        build/                    setuptools, wheel, Cython: to build the sdist on the Pi
    x86_64/                       the central server (onedoor[central]), or a test machine

**How the aarch64 extension is built on an x86_64 control node**: cross-compiled.
Cython's C output does not depend on the architecture; Debian's cross compiler
(``gcc-aarch64-linux-gnu``) compiles it against the Pi's own Python headers, taken from
Debian's arm64 packages (``libpython3.11-dev:arm64``: the generic headers and the arm64
``pyconfig.h``) into a *sysroot* folder (``onedoor release sysroot``, which only
downloads and unpacks: nothing is installed). ``SETUPTOOLS_EXT_SUFFIX`` and
``_PYTHON_HOST_PLATFORM`` give the module and the wheel the target's names. It takes
seconds, needs no emulation, and the module is built with the same flags as the native
one (``-ffp-contract=off``: the same floating point as the pure-Python twin).
``onedoor release verify`` then runs the Pi's own interpreter (Debian's arm64
``python3.11``, from the same sysroot) under ``qemu-aarch64``: it imports the daemon from
the release's wheels alone and runs a day of the queue simulator with the compiled and
the pure-Python dispatcher, which must agree with each other and with this machine. The
alternatives were slower for the same result: an arm64 chroot (debootstrap +
qemu-user-static) builds by emulating gcc, and building on each Pi at install time needs
a compiler and Cython on 277 village Pis; that is kept as the fallback for an
architecture the release has no wheel for (the sdist and ``build/``).

The dependencies are downloaded once per architecture with ``pip download
--only-binary=:all: --platform ...`` (the target's manylinux tags up to its glibc,
bookworm's 2.36), so that a site on a weak link receives only files, never asks PyPI,
and every site runs the same dependency versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from onedoor import software_token

REPO: Final = Path(__file__).resolve().parents[1]
MANIFEST: Final = "manifest.json"
MANIFEST_FORMAT: Final = 1
BUILD_DEPS: Final = ("setuptools>=77", "wheel", "Cython>=3.0,<3.4")
DEFAULT_GLIBC: Final = (2, 36)
"""Debian 12 / Raspberry Pi OS bookworm: the newest manylinux tag its pip accepts."""
EXTENSIONS: Final = ("_core_c", "_sim_c")
"""The fastpath modules a release compiles (setup.py)."""
_VERSION_RE: Final = re.compile(
    r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[a-z0-9]+(\.[a-z0-9]+)*)?$")
_PROJECT_VERSION_RE: Final = re.compile(r'^version = "[^"]*"$', re.MULTILINE)


class ReleaseError(Exception):
    """A release cannot be built or verified; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Architecture:
    """A machine the fleet runs on: its ``uname -m``, Debian's name, the GNU triplet."""

    machine: str
    debian: str
    triplet: str

    @property
    def qemu(self) -> str:
        return {"aarch64": "qemu-aarch64", "armv7l": "qemu-arm"}.get(self.machine,
                                                                      f"qemu-{self.machine}")

    def platform_tags(self, glibc: tuple[int, int] = DEFAULT_GLIBC) -> list[str]:
        """Wheel platform tags a pip on this machine accepts, newest glibc first."""
        manylinux = self.machine if self.machine != "armv7l" else "armv7l"
        tags = [f"manylinux_2_{minor}_{manylinux}" for minor in range(glibc[1], 16, -1)]
        if self.machine in ("x86_64", "aarch64"):
            tags.append(f"manylinux2014_{self.machine}")
        return [*tags, f"linux_{self.machine}"]


ARCHITECTURES: Final = {
    a.machine: a for a in (
        Architecture("aarch64", "arm64", "aarch64-linux-gnu"),
        Architecture("armv7l", "armhf", "arm-linux-gnueabihf"),
        Architecture("x86_64", "amd64", "x86_64-linux-gnu"),
    )
}
# Debian bookworm's python3.11 and what it loads: the headers to compile against, the
# interpreter and libraries to verify the release with (unpacked, never installed).
SYSROOT_PACKAGES: Final = (
    "libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libexpat1", "libssl3", "libffi8",
    "libsqlite3-0", "libbz2-1.0", "liblzma5", "libuuid1", "libncursesw6", "libtinfo6",
    "libreadline8", "libdb5.3", "libgdbm6", "libcrypt1", "libnsl2", "libtirpc3",
    "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3", "libcom-err2", "libkrb5support0",
    "libkeyutils1", "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    "libpython3.11-dev",
)


def native_machine() -> str:
    return platform.machine()


def architecture(machine: str) -> Architecture:
    try:
        return ARCHITECTURES[machine]
    except KeyError:
        raise ReleaseError(f"unknown architecture {machine!r}: one of "
                           f"{', '.join(ARCHITECTURES)}") from None  # fmt: skip


def check_version(version: str) -> str:
    if not _VERSION_RE.match(version):
        raise ReleaseError(f"release version {version!r} is not a PEP 440 version "
                           "(e.g. 0.1.1, 0.2.0rc1, 0.1.1+zs.2)")  # fmt: skip
    return version


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- the manifest


@dataclass(frozen=True, slots=True)
class Artifact:
    file: str
    """Relative to the release folder."""
    sha256: str


@dataclass(frozen=True, slots=True)
class TargetBuild:
    """What a release holds for one architecture."""

    extras: list[str]
    wheel: Artifact
    compiled: bool
    """The fastpath extensions are in the wheel (else it runs the pure-Python twin)."""
    wheels: list[Artifact]
    """Every file pip installs from, the onedoor wheel included."""
    build: list[Artifact] = field(default_factory=list)
    """setuptools, wheel, Cython: for building the sdist on the machine itself."""


@dataclass(frozen=True, slots=True)
class Manifest:
    version: str
    software: str
    python: str
    glibc: str
    built_at: str
    commit: str | None
    dirty: bool
    sdist: Artifact
    targets: dict[str, TargetBuild]
    format: int = MANIFEST_FORMAT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        try:
            if data["format"] != MANIFEST_FORMAT:
                raise ReleaseError(f"manifest format {data['format']}: this onedoor reads "
                                   f"{MANIFEST_FORMAT}")  # fmt: skip
            targets = {
                machine: TargetBuild(
                    extras=list(t["extras"]), wheel=Artifact(**t["wheel"]),
                    compiled=bool(t["compiled"]), wheels=[Artifact(**a) for a in t["wheels"]],
                    build=[Artifact(**a) for a in t.get("build", [])])
                for machine, t in data["targets"].items()}  # fmt: skip
            return cls(version=check_version(data["version"]), software=data["software"],
                       python=data["python"], glibc=data["glibc"], built_at=data["built_at"],
                       commit=data["commit"], dirty=bool(data["dirty"]),
                       sdist=Artifact(**data["sdist"]), targets=targets)  # fmt: skip
        except (KeyError, TypeError) as exc:
            raise ReleaseError(f"not a release manifest: {exc}") from None


def load_manifest(release_dir: Path) -> Manifest:
    path = release_dir / MANIFEST
    try:
        return Manifest.from_json(json.loads(path.read_text("utf-8")))
    except FileNotFoundError:
        raise ReleaseError(f"{path}: no manifest (build the release with "
                           f"`onedoor release build`)") from None  # fmt: skip
    except ValueError as exc:
        raise ReleaseError(f"{path}: {exc}") from None


def check_files(release_dir: Path, manifest: Manifest) -> list[str]:
    """Files of the manifest that are missing or differ (empty: the release is intact)."""
    artifacts = [manifest.sdist]
    for target in manifest.targets.values():
        artifacts += [target.wheel, *target.wheels, *target.build]
    problems = []
    for artifact in artifacts:
        path = release_dir / artifact.file
        if not path.is_file():
            problems.append(f"{artifact.file}: missing")
        elif sha256(path) != artifact.sha256:
            problems.append(f"{artifact.file}: sha256 differs from the manifest")
    return problems


# --------------------------------------------------------------------------- building


def _run(command: Sequence[str], *, cwd: Path | None = None,
         env: Mapping[str, str] | None = None, what: str) -> str:  # fmt: skip
    result = subprocess.run(list(command), cwd=cwd, env=None if env is None else dict(env),
                            capture_output=True, text=True, check=False)  # fmt: skip
    if result.returncode != 0:
        raise ReleaseError(f"{what} failed ({' '.join(command[:4])} ...):\n"
                           f"{(result.stdout + result.stderr)[-3000:]}")  # fmt: skip
    return result.stdout


def _git(repo: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                                check=False)  # fmt: skip
    except OSError:
        return None
    return result.stdout if result.returncode == 0 else None


def stage_source(repo: Path, dest: Path, version: str) -> tuple[str | None, bool]:
    """Copy the files git tracks into ``dest`` with ``version`` as the project's version;
    the commit and whether the working tree differs from it."""
    listed = _git(repo, "ls-files", "-z")
    if listed is None:
        raise ReleaseError(f"{repo}: not a git checkout (a release is built from one)")
    for name in filter(None, listed.split("\0")):
        source = repo / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    pyproject = dest / "pyproject.toml"
    text, found = _PROJECT_VERSION_RE.subn(f'version = "{version}"', pyproject.read_text(), 1)
    if not found:
        raise ReleaseError("pyproject.toml has no `version = \"...\"` line")
    pyproject.write_text(text)
    commit = (_git(repo, "rev-parse", "HEAD") or "").strip() or None
    dirty = bool((_git(repo, "status", "--porcelain", "--untracked-files=no") or "").strip())
    return commit, dirty


_BACKEND = ("import sys; from setuptools import build_meta as b; "
            "print(getattr(b, sys.argv[1])(sys.argv[2]))")


def build_sdist(tree: Path, out: Path) -> Path:
    name = _run([sys.executable, "-c", _BACKEND, "build_sdist", str(out)], cwd=tree,
                what="the sdist").strip().splitlines()[-1]  # fmt: skip
    return out / name


def cross_environment(target: Architecture, sysroot: Path) -> dict[str, str]:
    """Compiler settings that make setuptools build for ``target`` with its headers."""
    compiler = shutil.which(f"{target.triplet}-gcc")
    if compiler is None:
        raise ReleaseError(f"no {target.triplet}-gcc: apt-get install gcc-{target.triplet}")
    include = sysroot / "usr" / "include"
    pyconfig = include / target.triplet / "python3.11" / "pyconfig.h"
    if not pyconfig.is_file():
        raise ReleaseError(f"{sysroot}: no {target.machine} Python headers "
                           f"({pyconfig.relative_to(sysroot)}): onedoor release sysroot "
                           f"--arch {target.machine} --dir {sysroot}")  # fmt: skip
    return {
        "CC": compiler,
        "LDSHARED": f"{compiler} -shared",
        # Debian's python3.11/pyconfig.h includes <TRIPLET/python3.11/pyconfig.h>.
        "CFLAGS": f"-I{include / 'python3.11'} -I{include}",
        "SETUPTOOLS_EXT_SUFFIX": f".cpython-311-{target.triplet}.so",
        "_PYTHON_HOST_PLATFORM": f"linux-{target.machine}",
    }


def build_wheel(tree: Path, out: Path, target: Architecture,
                sysroot: Path | None) -> Path:  # fmt: skip
    """The onedoor wheel for ``target`` with its compiled fastpath (cross-compiled unless
    it is this machine)."""
    env = dict(os.environ)
    env.pop("ONEDOOR_NO_EXTENSIONS", None)
    if target.machine != native_machine():
        if sysroot is None:
            raise ReleaseError(f"{target.machine} is not this machine ({native_machine()}): "
                               f"give --sysroot {target.machine}=DIR")  # fmt: skip
        env |= cross_environment(target, sysroot)
    shutil.rmtree(tree / "build", ignore_errors=True)  # another architecture's objects
    name = _run([sys.executable, "-c", _BACKEND, "build_wheel", str(out)], cwd=tree, env=env,
                what=f"the {target.machine} wheel").strip().splitlines()[-1]  # fmt: skip
    wheel = out / name
    with zipfile.ZipFile(wheel) as archive:
        modules = [n for n in archive.namelist() if n.startswith("fastpath/") and
                   n.endswith(f"-{target.triplet}.so")]  # fmt: skip
    if len(modules) != len(EXTENSIONS):
        raise ReleaseError(f"{wheel.name}: the fastpath extensions for {target.machine} were "
                           f"not built (found {modules}); is Cython installed?")  # fmt: skip
    return wheel


def download_wheels(requirements: Iterable[str], dest: Path, target: Architecture,
                    python: str, glibc: tuple[int, int]) -> None:  # fmt: skip
    """``pip download`` binary wheels for ``target`` (never an sdist to build there)."""
    tags = [arg for tag in target.platform_tags(glibc) for arg in ("--platform", tag)]
    abi = "cp" + python.replace(".", "")
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
          "--only-binary=:all:", *tags, "--python-version", python, "--implementation", "cp",
          "--abi", abi, "--dest", str(dest), *requirements],
         what=f"downloading the {target.machine} wheels")  # fmt: skip


def _artifacts(release_dir: Path, paths: Iterable[Path]) -> list[Artifact]:
    return [Artifact(p.relative_to(release_dir).as_posix(), sha256(p))
            for p in sorted(paths)]  # fmt: skip


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """``--arch aarch64:pi`` on the command line."""

    machine: str
    extras: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> TargetSpec:
        machine, _, extras = text.partition(":")
        architecture(machine)
        names = tuple(e for e in extras.split(",") if e)
        for name in names:
            if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
                raise ReleaseError(f"--arch {text}: {name!r} is not an extra")
        return cls(machine, names)


def build_release(version: str, output: Path, targets: Sequence[TargetSpec], *,
                  sysroots: Mapping[str, Path], repo: Path = REPO,
                  glibc: tuple[int, int] = DEFAULT_GLIBC) -> Manifest:  # fmt: skip
    """Build ``output/<version>/`` (refused when it exists: a release is built once)."""
    check_version(version)
    # The wheels are built from the staged source (another working directory): paths given
    # relative to where the command runs, as the README's are, must stay where they point.
    output = output.resolve()
    sysroots = {machine: path.resolve() for machine, path in sysroots.items()}
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    release_dir = output / version
    if release_dir.exists():
        raise ReleaseError(f"{release_dir} exists: a release is built once (choose a new "
                           f"version, or remove the folder)")  # fmt: skip
    if not targets:
        raise ReleaseError("no --arch given")
    work = output / f".{version}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        with tempfile.TemporaryDirectory(prefix="onedoor-release-") as temp:
            tree = Path(temp) / "src"
            commit, dirty = stage_source(repo, tree, version)
            sdist = build_sdist(tree, work)
            builds = {}
            for spec in targets:
                target = architecture(spec.machine)
                folder = work / spec.machine
                folder.mkdir()
                wheel = build_wheel(tree, folder, target, sysroots.get(spec.machine))
                extras = f"[{','.join(spec.extras)}]" if spec.extras else ""
                download_wheels([f"{wheel}{extras}"], folder, target, python, glibc)
                (folder / "build").mkdir()
                download_wheels(BUILD_DEPS, folder / "build", target, python, glibc)
                builds[spec.machine] = TargetBuild(
                    extras=list(spec.extras), wheel=_artifacts(work, [wheel])[0],
                    compiled=True, wheels=_artifacts(work, folder.glob("*.whl")),
                    build=_artifacts(work, (folder / "build").glob("*.whl")))  # fmt: skip
        manifest = Manifest(
            version=version, software=software_token(version), python=python,
            glibc=f"{glibc[0]}.{glibc[1]}",
            built_at=datetime.now(UTC).isoformat(timespec="seconds"), commit=commit,
            dirty=dirty, sdist=_artifacts(work, [sdist])[0], targets=builds)  # fmt: skip
        (work / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        work.rename(release_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


# --------------------------------------------------------------------------- sysroot, verify


def make_sysroot(machine: str, dest: Path) -> list[str]:
    """Unpack Debian's ``machine`` Python (headers, interpreter, libraries) into ``dest``."""
    target = architecture(machine)
    foreign = _run(["dpkg", "--print-foreign-architectures"], what="dpkg").split()
    if target.debian not in foreign and target.machine != native_machine():
        raise ReleaseError(f"apt knows no {target.debian} packages: as root, "
                           f"`dpkg --add-architecture {target.debian} && apt-get update`")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="onedoor-sysroot-") as temp:
        _run(["apt-get", "download", *(f"{p}:{target.debian}" for p in SYSROOT_PACKAGES)],
             cwd=Path(temp), what=f"apt-get download ({target.debian})")  # fmt: skip
        debs = sorted(Path(temp).glob("*.deb"))
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(dest)], what=f"unpacking {deb.name}")
    return [deb.name for deb in debs]


_PROBE = """
import contextlib, io, json, os, sys
sys.path.insert(0, sys.argv[1])
import edge.daemon, edge.devices_factory, fastpath, firmware_protocols.escpos, onedoor
from onedoor.cli import main
for extra in sys.argv[2:]:
    __import__(extra)
day = io.StringIO()
with contextlib.redirect_stdout(day):
    main(["--log-level", "error", "simulate", "run", "--example", "village_station",
          "--seed", "7", "--json"])
print(json.dumps({"version": onedoor.__version__, "machine": os.uname().machine,
                  "fastpath": fastpath.IMPLEMENTATION, "day": json.loads(day.getvalue())}))
"""
EXTRA_MODULES: Final = {"pi": ("lgpio",), "central": ("central.app",)}


@dataclass(frozen=True, slots=True)
class Verification:
    version: str
    machine: str
    fastpath: str
    day: dict[str, Any]
    """A day of the village example (seed 7) with the compiled dispatcher."""


def interpreter(machine: str, sysroot: Path | None, python: str) -> list[str]:
    """The command running the target's Python: itself here, or under qemu-user."""
    if machine == native_machine():
        return [python]
    if sysroot is None:
        raise ReleaseError(f"verifying {machine} needs its sysroot (--sysroot {machine}=DIR)")
    target = architecture(machine)
    qemu = shutil.which(target.qemu)
    if qemu is None:
        raise ReleaseError(f"no {target.qemu}: apt-get install qemu-user")
    return [qemu, "-L", str(sysroot), str(sysroot / "usr" / "bin" / "python3.11")]


def _without_implementation(day: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in day.items() if k != "implementation"}


def verify_release(release_dir: Path, machine: str, *, sysroot: Path | None,
                   python: str = "/usr/bin/python3") -> Verification:  # fmt: skip
    """Run the release's wheels for ``machine`` on that machine's interpreter: the daemon
    imports from them alone, the compiled fastpath loads, and a simulated day gives the
    same answers with the compiled and the pure dispatcher."""
    manifest = load_manifest(release_dir)
    problems = check_files(release_dir, manifest)
    if problems:
        raise ReleaseError(f"{release_dir}: " + "; ".join(problems))
    if machine not in manifest.targets:
        raise ReleaseError(f"release {manifest.version} has no {machine} build "
                           f"(it has {', '.join(manifest.targets)})")  # fmt: skip
    build = manifest.targets[machine]
    with tempfile.TemporaryDirectory(prefix="onedoor-verify-") as temp:
        site = Path(temp) / "site"
        for wheel in build.wheels:
            shutil.unpack_archive(release_dir / wheel.file, site, format="zip")
        extras = [m for e in build.extras for m in EXTRA_MODULES.get(e, ())]
        command = [*interpreter(machine, sysroot, python), "-c", _PROBE, str(site), *extras]
        runs = [json.loads(_run(command, env={**os.environ, **pure},
                                what=f"running the {machine} release").strip().splitlines()[-1])
                for pure in ({}, {"ONEDOOR_NO_EXTENSIONS": "1"})]  # fmt: skip
    report, pure_report = runs
    result = Verification(report["version"], report["machine"], report["fastpath"],
                          report["day"])  # fmt: skip
    if result.version != manifest.version:
        raise ReleaseError(f"the wheels say version {result.version}, the manifest "
                           f"{manifest.version}")  # fmt: skip
    if build.compiled and result.fastpath != "cython":
        raise ReleaseError(f"the compiled fastpath did not load on {machine} "
                           f"({result.fastpath})")  # fmt: skip
    if pure_report["fastpath"] != "python" or _without_implementation(
            report["day"]) != _without_implementation(pure_report["day"]):  # fmt: skip
        raise ReleaseError(f"on {machine} the compiled and the pure dispatcher disagree")
    return result


# --------------------------------------------------------------------------- the commands


def _sysroots(values: Sequence[str]) -> dict[str, Path]:
    found = {}
    for value in values:
        machine, sep, path = value.partition("=")
        if not sep:
            raise ReleaseError(f"--sysroot {value}: write ARCH=DIR")
        found[architecture(machine).machine] = Path(path)
    return found


def _glibc(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    if major != "2" or not minor.isdigit():
        raise ReleaseError(f"--glibc {text}: e.g. 2.36")
    return 2, int(minor)


def _cmd_build(args: argparse.Namespace) -> int:
    specs = [TargetSpec.parse(a) for a in args.arch] or [TargetSpec(native_machine(), ())]
    manifest = build_release(args.version, Path(args.output), specs,
                             sysroots=_sysroots(args.sysroot), glibc=_glibc(args.glibc))
    for machine, build in manifest.targets.items():
        print(f"{machine}: {Path(build.wheel.file).name} (+{len(build.wheels) - 1} "
              f"dependencies, extras {','.join(build.extras) or '-'})")  # fmt: skip
    print(f"release {manifest.version} in {Path(args.output) / manifest.version}"
          + (" (built from a working tree with uncommitted changes)" if manifest.dirty else ""))
    return 0


def _cmd_sysroot(args: argparse.Namespace) -> int:
    debs = make_sysroot(args.arch, Path(args.dir))
    print(f"{args.dir}: {len(debs)} Debian packages unpacked ({args.arch})")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    sysroots = _sysroots(args.sysroot)
    machines = args.arch or list(load_manifest(Path(args.release)).targets)
    days = {}
    for machine in machines:
        result = verify_release(Path(args.release), machine, sysroot=sysroots.get(machine),
                                python=args.python)  # fmt: skip
        days[machine] = _without_implementation(result.day)
        print(f"{machine}: onedoor {result.version} runs (fastpath {result.fastpath}); a "
              f"simulated day: {result.day['tickets']} tickets, p90 wait "
              f"{result.day['overall']['p90_ms']} ms, the same with the pure dispatcher")
    if len({json.dumps(day, sort_keys=True) for day in days.values()}) > 1:
        raise ReleaseError(f"the simulated day differs between {', '.join(days)}")
    if len(days) > 1:
        print(f"the same day on {', '.join(days)}")
    return 0


def _guard(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            result: int = command(args)
        except ReleaseError as exc:
            print(f"onedoor release: {exc}", file=sys.stderr)
            return 1
        return result

    return run


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    release = subparsers.add_parser("release", help="软件版本构建 / build and verify a software "
                                                    "release (wheels for every architecture, "
                                                    "offline)")
    sub = release.add_subparsers(dest="release_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="构建版本 / build <output>/<version>/ from this "
                                             "checkout")
    build.add_argument("--version", required=True, help="PEP 440, e.g. 0.1.1")
    build.add_argument("--output", default="deploy/ansible/releases")
    build.add_argument("--arch", action="append", default=[], metavar="ARCH[:EXTRAS]",
                       help="aarch64:pi (a Pi), x86_64:central (the central); repeatable; "
                            "default: this machine, no extras")  # fmt: skip
    build.add_argument("--sysroot", action="append", default=[], metavar="ARCH=DIR",
                       help="the target's Python headers (onedoor release sysroot)")
    build.add_argument("--glibc", default="2.36", help="the targets' glibc (bookworm: 2.36)")
    build.set_defaults(func=_guard(_cmd_build))
    sysroot = sub.add_parser("sysroot", help="解包目标架构的 Python / unpack Debian's Python "
                                             "of an architecture (headers, interpreter) into "
                                             "a folder")
    sysroot.add_argument("--arch", required=True, choices=sorted(ARCHITECTURES))
    sysroot.add_argument("--dir", required=True)
    sysroot.set_defaults(func=_guard(_cmd_sysroot))
    verify = sub.add_parser("verify", help="验证版本 / run a release on its architecture's "
                                           "Python (qemu-user for another architecture)")
    verify.add_argument("release", help="the release folder, e.g. deploy/ansible/releases/0.1.1")
    verify.add_argument("--arch", action="append", default=[], help="default: every one built")
    verify.add_argument("--sysroot", action="append", default=[], metavar="ARCH=DIR")
    verify.add_argument("--python", default="/usr/bin/python3",
                        help="this machine's interpreter to verify its own architecture with")
    verify.set_defaults(func=_guard(_cmd_verify))


__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "Artifact",
    "Manifest",
    "ReleaseError",
    "TargetBuild",
    "TargetSpec",
    "Verification",
    "build_release",
    "check_files",
    "load_manifest",
    "make_sysroot",
    "register_cli",
    "software_token",
    "verify_release",
]

"""The `onedoor` command: help, version, the dispatcher walk-through, the bench report."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import fastpath
from fastpath import Dispatcher, Policy
from onedoor import bench, cli, cli_support, walkthrough


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("version", "demo", "bench"):
        assert command in out


def test_version_names_the_implementation() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "onedoor", "version"], capture_output=True, text=True, check=True
    )
    assert f"fastpath: {fastpath.IMPLEMENTATION}" in result.stdout


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: onedoor" in capsys.readouterr().out


def test_walk_through_shows_the_policy_at_work() -> None:
    lines = walkthrough.walk_through(
        Dispatcher(walkthrough.SERVICES, walkthrough.WINDOWS, Policy())
    )
    text = "\n".join(lines)
    # Window 1 has a ratio cap of 2: after two priority calls, the oldest normal ticket.
    calls_at_1 = [line.split()[2] for line in lines if "到 1 号窗口" in line]
    assert calls_at_1[:3] == ["A003", "A005", "A001"]
    assert "B003 户籍/普通，预约迟到转现场" in text  # late appointment became a walk-in
    assert "重呼 A004" in text
    assert "A005 过号" in text
    assert "K002 由综合咨询转到 户籍" in text


def test_bench_report_names_command_machine_and_date() -> None:
    report = bench.render({"dispatcher": {"rate": 12_345_678, "hall": "33 windows"}},
                          "onedoor bench", 3.2)
    assert "Command: `onedoor bench`" in report
    assert "Machine: " in report
    assert "Date: " in report
    assert "| rate | 12,345,678 |" in report


def _command_groups() -> list[list[str]]:
    """The argument path of every command group, e.g. ``["central", "site", "service"]``."""
    groups: list[list[str]] = []

    def visit(parser: argparse.ArgumentParser, path: list[str]) -> None:
        group = cli_support.subcommands(parser)
        if group is None:
            return
        groups.append(path)
        for choice in group._choices_actions:
            visit(group.choices[choice.dest], [*path, choice.dest])

    visit(cli.build_parser(), [])
    return groups


def _has_chinese_and_english(text: str | None) -> bool:
    return bool(text and re.search(r"[\u4e00-\u9fff]", text) and re.search(r"[A-Za-z]{3}", text))


def test_every_subcommand_is_described_in_chinese_and_english() -> None:
    undescribed = []
    for parser in cli_support.walk(cli.build_parser()):
        group = cli_support.subcommands(parser)
        if group is None:
            continue
        for choice in group._choices_actions:
            child = group.choices[choice.dest]
            if not (_has_chinese_and_english(choice.help)
                    and _has_chinese_and_english(child.description)):
                undescribed.append(child.prog)
    assert not undescribed
    assert len(_command_groups()) >= 8  # the walk really went down the tree


@pytest.mark.parametrize("path", _command_groups(), ids=" ".join)
def test_group_without_action_names_its_actions(
        path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(path) == 2
    out, err = capsys.readouterr()
    assert "usage: onedoor" in out
    assert "缺少操作 / no action given" in err
    parser = cli.build_parser()
    for name in path:
        group = cli_support.subcommands(parser)
        assert group is not None
        parser = group.choices[name]
    group = cli_support.subcommands(parser)
    assert group is not None
    for action in group.choices:
        assert action in err.rsplit("choose one of:", 1)[1]


def test_unknown_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--log-level", "verbose", "version"])
    assert exited.value.code == 2
    assert "invalid choice: 'verbose'" in capsys.readouterr().err
    assert cli.main(["--log-level", "DEBUG", "version"]) == 0  # case does not matter


def test_edge_entry_point_explains_a_missing_action_and_level() -> None:
    from edge.__main__ import main as edge_main

    with pytest.raises(SystemExit) as exited:
        edge_main(["--log-level", "verbose", "status"])
    assert exited.value.code == 2
    assert edge_main([]) == 2


def test_cli_modules_are_real_modules() -> None:
    for name, _command in cli.CLI_MODULES:
        assert importlib.util.find_spec(name) is not None, name


def test_optional_extra_lists_every_module_it_installs() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    required = {re.split(r"[\[<>=~ ]", spec)[0].lower()
                for spec in pyproject["project"]["optional-dependencies"]["central"]}
    installs = {module for module, dists in importlib.metadata.packages_distributions().items()
                if required & {d.lower() for d in dists} and not module.startswith("_")}
    central = cli.OPTIONAL_PARTS["central.cli"]
    assert "onedoor[central]" in central.remedy
    assert required
    assert central.modules >= installs - {"psycopg_binary"}  # imported by psycopg itself


# Runs onedoor's CLI in a fresh interpreter where some top-level modules cannot be imported,
# as on a Raspberry Pi that has only `onedoor[pi]` installed.
WITHOUT_MODULES = """
import sys, importlib.abc
blocked = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in blocked or name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from onedoor.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run_without(modules: set[str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_MODULES, ",".join(modules), *argv],
        capture_output=True, text=True, timeout=120,
    )


def test_edge_commands_run_without_the_central_extra(tmp_path: Path) -> None:
    central_modules = cli.OPTIONAL_PARTS["central.cli"].modules
    example = Path(__file__).parents[2] / "edge" / "examples" / "village.toml"
    checked = _run_without(set(central_modules), "edge", "check-config", "--skip-files",
                           str(example))
    assert checked.returncode == 0, checked.stderr
    refused = _run_without(set(central_modules), "central", "run", "--config", "x.toml")
    assert refused.returncode == cli.PART_MISSING
    assert "pip install 'onedoor[central]'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_bench_left_out_of_an_install_says_where_it_runs() -> None:
    # As in a wheel, which leaves onedoor/bench/ out (pyproject.toml).
    refused = _run_without({"onedoor.bench"}, "bench", "--only", "dispatcher")
    assert refused.returncode == cli.PART_MISSING
    assert "make bench" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_missing_core_dependency_fails_loudly() -> None:
    broken = _run_without({"msgspec"}, "version")
    assert broken.returncode == 1
    assert "ModuleNotFoundError: No module named 'msgspec'" in broken.stderr


SYSTEM_DEPS = Path(__file__).parents[2] / "scripts" / "system-deps"


def test_system_deps_check_names_what_is_missing(tmp_path: Path) -> None:
    listed = subprocess.run(["/bin/bash", str(SYSTEM_DEPS), "list"], capture_output=True,
                            text=True, check=True).stdout.split()
    assert {"mosquitto", "postgresql", "socat", "chromium", "fonts-noto-cjk"} <= set(listed)
    complete = subprocess.run(["/bin/bash", str(SYSTEM_DEPS), "check"], capture_output=True,
                              text=True)
    assert complete.returncode == 0, complete.stderr  # this machine has them all, as CI
    # A PATH with every command the list probes for, except socat.
    for command in ("gcc", "make", "mosquitto_pub", "openssl", "chromium", "espeak-ng", "sox",
                    "aplay", "systemd-analyze"):
        found = shutil.which(command)
        if found:
            (tmp_path / command).symlink_to(found)
    lacking = subprocess.run(["/bin/bash", str(SYSTEM_DEPS), "check"], capture_output=True,
                             text=True, env={"PATH": str(tmp_path)})
    assert lacking.returncode == 1
    assert "missing system packages / 缺少系统软件包: socat\n" in lacking.stderr
    assert "apt-get install -y --no-install-recommends socat\n" in lacking.stderr


def test_system_deps_for_the_rehearsal_add_the_pi_cross_build(tmp_path: Path) -> None:
    listed = subprocess.run(["/bin/bash", str(SYSTEM_DEPS), "list", "rehearsal"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert {"mosquitto", "gcc-aarch64-linux-gnu", "qemu-user"} <= set(listed)
    # A PATH with the test set's commands (make test ensures them), the cross-build's
    # stand-ins and a dpkg that has arm64 added: complete, whatever this machine has.
    complete = tmp_path / "complete"
    complete.mkdir()
    for command in ("gcc", "make", "mosquitto_pub", "socat", "openssl", "chromium",
                    "espeak-ng", "sox", "aplay", "systemd-analyze"):
        found = shutil.which(command)
        if found:
            (complete / command).symlink_to(found)
    for stand_in in ("aarch64-linux-gnu-gcc", "qemu-aarch64"):
        (complete / stand_in).symlink_to("/bin/true")
    (complete / "dpkg").write_text("#!/bin/sh\necho arm64\n")
    (complete / "dpkg").chmod(0o755)
    checked = subprocess.run(["/bin/bash", str(SYSTEM_DEPS), "check", "rehearsal"],
                             capture_output=True, text=True, env={"PATH": str(complete)})
    assert checked.returncode == 0, checked.stderr
    # Every probed command but qemu-aarch64.
    (complete / "qemu-aarch64").unlink()
    lacking = subprocess.run(["/bin/bash", str(SYSTEM_DEPS), "check", "rehearsal"],
                             capture_output=True, text=True, env={"PATH": str(complete)})
    assert lacking.returncode == 1
    assert "缺少系统软件包: qemu-user\n" in lacking.stderr

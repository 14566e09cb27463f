"""The `onedoor` command: help, version, the dispatcher walk-through, the bench report."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fastpath
from fastpath import Dispatcher, Policy
from onedoor import bench, cli, walkthrough


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


def test_without_the_central_extra_the_edge_commands_still_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """A Pi installs onedoor[pi]: no sqlalchemy. Every command died on central.cli's import."""
    for name in [m for m in sys.modules if m == "central" or m.startswith("central.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # import sqlalchemy: not found
    assert cli.main(["version"]) == 0
    assert cli.main(["central", "token", "list"]) == 2
    assert "onedoor central needs the central extra (no module 'sqlalchemy' here): pip " \
        "install 'onedoor[central]'" in capsys.readouterr().err


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

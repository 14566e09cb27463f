"""``onedoor simulate ...`` on the shipped example halls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastpath.simulate import EXAMPLES, example_hall, read_arrivals
from onedoor.cli import main


def test_run_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "run", "--example", "village_station", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "东升镇同乐村为民服务站" in out
    assert "p90" in out
    assert "shebao" in out


def test_run_shows_no_sla_count_for_services_without_an_sla(
        capsys: pytest.CaptureFixture[str]) -> None:
    # The comprehensive hall gives 不动产 an SLA of 40 minutes and the others none:
    # those have nothing to be over, so ">SLA" shows "—", not 0.
    assert main(["simulate", "run", "--example", "comprehensive_hall"]) == 0
    rows = {line.split()[1]: line.split() for line in capsys.readouterr().out.splitlines()
            if line.split()[1:2] and line.split()[1] in ("gongan", "budongchan")}
    assert rows["gongan"][-1] == "—"
    assert rows["budongchan"][-1].isdigit()
    assert main(["simulate", "run", "--example", "comprehensive_hall", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["services"]["gongan"]["over_sla"] is None
    assert isinstance(summary["services"]["budongchan"]["over_sla"], int)


def test_run_json_for_machines(capsys: pytest.CaptureFixture[str]) -> None:
    hall = str(EXAMPLES / "comprehensive_hall.toml")
    assert main(["simulate", "run", "--hall", hall, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tickets"] == summary["done"] + summary["no_show"] + summary["unserved"]
    assert set(summary["services"]) == {"gongan", "shebao", "budongchan", "shuiwu", "qiye"}
    assert len(summary["utilisation"]) == 33
    assert main(["simulate", "run", "--hall", hall, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == summary  # same seed, same day


def test_arrivals_then_replay_then_staffing(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    arrivals = tmp_path / "arrivals.csv"
    assert main(["simulate", "arrivals", "--example", "comprehensive_hall", "--seed", "3",
                 "--scale", "0.5", "--out", str(arrivals)]) == 0
    count = len(read_arrivals(arrivals, example_hall("comprehensive_hall")))
    assert 300 < count < 700
    assert main(["simulate", "run", "--example", "comprehensive_hall", "--arrivals",
                 str(arrivals), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tickets"] == count
    plot = tmp_path / "plan.png"
    assert main(["simulate", "staffing", "--hall", str(EXAMPLES / "comprehensive_hall.toml"),
                 "--arrivals", str(arrivals), "--sla-minutes", "15", "--replications", "2",
                 "--max-replications", "4", "--plot", str(plot)]) == 0
    captured = capsys.readouterr()
    assert "建议 plan" in captured.out
    assert "合计 total" in captured.out
    assert "confidence" in captured.out  # how sure it is
    assert "fresh-seed validation" in captured.out
    assert "[" in captured.err
    assert "done" in captured.err
    assert "\r" not in captured.err  # not a terminal: lines, not a redrawn bar
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert main(["simulate", "staffing", "--example", "comprehensive_hall", "--arrivals",
                 str(arrivals), "--sla-minutes", "15", "--replications", "3",
                 "--max-replications", "6", "--json", "--no-progress"]) == 0
    captured = capsys.readouterr()
    plan = json.loads(captured.out)
    assert plan["proposed"]["windows"] <= 33
    assert plan["validated"] is True
    assert 0.9 <= plan["proposed"]["confidence"] <= 1.0
    assert plan["trace"][0]["phase"] == "current plan"
    assert {c["service"] for c in plan["comparison"]} == {
        "gongan", "shebao", "budongchan", "shuiwu", "qiye"}
    assert captured.err == ""


def test_arrivals_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "arrivals", "--example", "village_station", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "time,service,class,booked"
    assert len(lines) > 10


@pytest.mark.parametrize(("argv", "message"), [
    (["simulate", "run", "--example", "nope"], "no example hall 'nope'"),
    (["simulate", "run", "--hall", "/nonexistent.toml"], "cannot read"),
    (["simulate", "arrivals", "--example", "village_station", "--scale", "0"], "--scale"),
    (["simulate", "staffing", "--example", "village_station", "--arrivals", "/nonexistent.csv",
      "--sla-minutes", "15"], "cannot read"),
])
def test_errors_exit_2_with_a_message(argv: list[str], message: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_csv_line_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("time,service,class,booked\n08:00:00,nosuch,normal,\n", encoding="utf-8")
    assert main(["simulate", "run", "--example", "village_station", "--arrivals",
                 str(bad)]) == 2
    assert f"{bad}:2: unknown service 'nosuch'" in capsys.readouterr().err


def test_missing_required_arguments_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", "staffing", "--example", "village_station"])
    assert info.value.code == 2


def test_shipped_arrivals_file_drives_the_staffing_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = EXAMPLES / "comprehensive_hall_arrivals.csv"
    assert len(read_arrivals(csv_path, example_hall("comprehensive_hall"))) > 900
    assert main(["simulate", "staffing", "--hall", str(EXAMPLES / "comprehensive_hall.toml"),
                 "--arrivals", str(csv_path), "--sla-minutes", "15", "--replications", "2",
                 "--max-replications", "4", "--no-progress"]) == 0
    assert "优先服务专窗" in capsys.readouterr().out


def test_the_calendar_of_a_site_config_shapes_the_day(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The staffing tool and the simulator read the very file the edge runs.
    site = tmp_path / "site.toml"
    site.write_text(
        '[hours]\nopen = "08:30"\nclose = "17:30"\nlunch = "12:00-14:00"\n'
        'last_ticket = "17:00"\ndays = "mon-fri"\n'
        '[calendar]\nholidays = ["2026-10-01..2026-10-08"]\n'
        'special = ["2026-12-31 08:30-12:00"]\n'
        '[[services]]\nid = "minsheng"\nlast_ticket = "16:00"\n', encoding="utf-8")
    out = tmp_path / "arrivals.csv"
    assert main(["simulate", "arrivals", "--example", "village_station", "--calendar",
                 str(site), "--date", "2026-12-31", "--out", str(out)]) == 0
    hall = example_hall("village_station")
    times = read_arrivals(str(out), hall).time_ms
    assert times
    assert max(times) < 11.5 * 3_600_000
    assert main(["simulate", "run", "--example", "village_station", "--calendar",
                 str(site), "--date", "2026-10-03"]) == 2
    assert "closed on 2026-10-03 (holiday)" in capsys.readouterr().err
    site.write_text('[hours]\nopen = "08:30"\nclose = "17:30"\nlunch = "13:00"\n')
    assert main(["simulate", "run", "--example", "village_station", "--calendar",
                 str(site)]) == 2
    assert "hours.lunch: expected HH:MM-HH:MM" in capsys.readouterr().err
    assert main(["simulate", "run", "--example", "village_station", "--date",
                 "2026-10-03"]) == 2
    assert "--date needs --calendar" in capsys.readouterr().err

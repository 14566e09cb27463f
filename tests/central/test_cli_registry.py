"""`onedoor central site ...`, `audit`, `backup` and `restore` as ops type them (SQLite; the
backends themselves are covered by test_registry.py and test_backup.py)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from onedoor.cli import main


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A seeded central database, configured the way the service's environment file does."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    monkeypatch.setenv("ONEDOOR_CENTRAL_DATABASE_URL", url)
    monkeypatch.setenv("SUDO_USER", "ops-li")
    assert main(["central", "seed"]) == 0
    return url


def run(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0,
        stdout_only: bool = False) -> str:  # fmt: skip
    capsys.readouterr()
    assert main(["central", *args]) == code
    captured = capsys.readouterr()
    return captured.out if stdout_only else captured.out + captured.err


def test_help_is_chinese_first(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["central", "site", "--help"])
    text = capsys.readouterr().out
    for words in ("新增站点 / add a site", "撤销站点 / retire a site", "批量导入（默认预演）"):
        assert words in text


def test_ops_add_and_shape_a_site_from_the_command_line(
    database: str, capsys: pytest.CaptureFixture[str],
) -> None:
    out = run(capsys, "site", "add", "zs-shiqi-13", "--name", "石岐新村党群服务中心", "--town",
              "石岐街道", "--kind", "village", "--windows", "2", "--hours", "08:30-17:30")
    assert "zs-shiqi-13: 已新增 / added (3 services, 2 windows)" in out
    spec = json.loads(run(capsys, "site", "show", "zs-shiqi-13", stdout_only=True))
    assert [s["code"] for s in spec["services"]] == ["minzheng", "shebao", "zonghe"]
    assert spec["hours"] == {"open": "08:30", "close": "17:30", "reset": "03:00",
                             "last_ticket": None}  # fmt: skip
    out = run(capsys, "site", "window", "set", "zs-shiqi-13", "3", "--services", "zonghe",
              "--name", "3号窗口", "--priority")
    assert "zs-shiqi-13: windows +3" in out
    out = run(capsys, "site", "service", "set", "zs-shiqi-13", "huji", "--name", "户籍业务",
              "--prefix", "A", "--sla-minutes", "30", "--windows", "3")
    assert "services +huji; windows ~3" in out
    out = run(capsys, "site", "set", "zs-shiqi-13", "--last-ticket", "17:00", "--lat", "22.5")
    assert "last_ticket=17:00" in out
    out = run(capsys, "site", "window", "set", "zs-shiqi-13", "4", "--services", "nope", code=2)
    assert "zs-shiqi-13: window 4.services.nope: unknown service" in out
    out = run(capsys, "site", "set", "zs-shiqi-13", "--hours", "default", "--reset", "04:00",
              code=2)  # fmt: skip
    assert "need opening hours of the site's own" in out
    assert "zs-shiqi-13" in run(capsys, "site", "list", "--town", "石岐街道")
    assert "retired" in run(capsys, "site", "retire", "zs-shiqi-13")
    assert "zs-shiqi-13" in run(capsys, "site", "list", "--retired")
    out = run(capsys, "site", "add", "zs-shiqi-13", "--name", "x", "--town", "y", "--kind",
              "village", "--windows", "1", code=2)  # fmt: skip
    assert "restore it" in out
    run(capsys, "site", "restore", "zs-shiqi-13")

    text = run(capsys, "audit", "--target", "zs-shiqi-13", "--csv", stdout_only=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["action"] for r in rows] == ["site.restore", "site.retire", "site.update",
                                           "site.update", "site.update", "site.create"]
    assert {(r["actor"], r["source"].split("@")[0]) for r in rows} == {("ops-li", "cli")}
    assert json.loads(rows[-1]["detail"])["site"]["name"] == "石岐新村党群服务中心"
    seeded = run(capsys, "audit", "--action", "registry.seed")
    assert '"sites": 303' in seeded


def test_an_import_from_files_shows_the_diff_and_applies_on_request(
    database: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    exported = tmp_path / "export"
    run(capsys, "site", "export", "--dir", str(exported))
    sites = (exported / "sites.csv").read_text(encoding="utf-8")
    assert sites.count("\n") == 304
    edited = tmp_path / "sites.csv"
    edited.write_text(sites.replace("zs-shiqi-12,石岐", "zs-shiqi-12,新石岐"), encoding="utf-8")
    out = run(capsys, "site", "import", "--sites", str(edited))
    assert "~ 变更 change   zs-shiqi-12  name: 石岐" in out
    assert "= 未变 unchanged 302" in out
    assert "dry run, nothing changed" in out
    assert "新石岐" not in run(capsys, "site", "show", "zs-shiqi-12")
    windows = tmp_path / "windows.csv"
    windows.write_text("site,number,services\nzs-shiqi-12,1,huji\n", encoding="utf-8")
    out = run(capsys, "site", "import", "--windows", str(windows), code=1)
    assert "! 问题 problem  windows.csv:2 zs-shiqi-12: window 1.services.huji: unknown" in out
    out = run(capsys, "site", "import", "--windows", str(windows), "--apply", code=2)
    assert "registry change refused" in out
    excel = tmp_path / "excel.csv"  # what a Chinese Excel saves: GB18030
    excel.write_bytes(edited.read_text(encoding="utf-8").encode("gb18030"))
    assert "~ 变更 change   zs-shiqi-12  name: 石岐" in run(capsys, "site", "import", "--sites",
                                                         str(excel))
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00id")
    out = run(capsys, "site", "import", "--sites", str(tmp_path / "binary.csv"), code=2)
    assert "sites.csv: neither UTF-8 nor GB18030" in out
    out = run(capsys, "site", "import", "--sites", str(edited), "--apply")
    assert "applied" in out
    assert "新石岐" in run(capsys, "site", "show", "zs-shiqi-12")


def test_backup_and_restore_from_the_command_line(
    database: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "backups"
    for _ in range(3):
        assert "(sqlite, " in run(capsys, "backup", "--dir", str(folder), "--keep", "2")
    backups = sorted(folder.glob("central-*.sqlite"))
    assert 1 <= len(backups) <= 2  # three runs in one second share a name
    out = run(capsys, "restore", "--from", str(backups[-1]), code=2)
    assert "is not empty" in out
    monkeypatch.setenv("ONEDOOR_CENTRAL_DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    assert "restored" in run(capsys, "restore", "--from", str(backups[-1]))
    assert "zs-shiqi-12" in run(capsys, "site", "list", "--town", "石岐街道")
    monkeypatch.delenv("ONEDOOR_CENTRAL_DATABASE_URL")
    out = run(capsys, "backup", "--to", str(tmp_path / "x.sqlite"), code=2)
    assert "no database configured" in out


def test_ops_set_a_sites_booking_rules_from_a_file(
    database: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    rules = {"hours": {"open": "08:30", "close": "17:30", "lunch": "12:00-14:00"},
             "quotas": [{"service": "shebao", "time": "09:00-12:00", "quota": 4}]}
    good, bad = tmp_path / "rules.json", tmp_path / "bad.json"
    good.write_text(json.dumps(rules), encoding="utf-8")
    bad.write_text('{"quotas": [{"service": "nope", "quota": 1}]}', encoding="utf-8")
    shown = json.loads(run(capsys, "site", "booking-rules", "zs-sanxiang-01", "--set",
                           str(good), stdout_only=True))
    assert shown["rules"] == rules
    out = run(capsys, "site", "booking-rules", "zs-sanxiang-01", "--set", str(bad), code=2)
    assert "quotas[0].service: the site has no service 'nope'" in out
    out = run(capsys, "site", "booking-rules", "zs-sanxiang-01", "--set",
              str(tmp_path / "missing.json"), code=2)
    assert "missing.json" in out
    assert json.loads(run(capsys, "site", "booking-rules", "zs-sanxiang-01",
                          stdout_only=True))["rules"] == rules  # nothing lost
    text = run(capsys, "audit", "--target", "zs-sanxiang-01", "--csv", stdout_only=True)
    assert [r["action"] for r in csv.DictReader(io.StringIO(text))] == ["booking.rules"]

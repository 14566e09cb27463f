"""Malformed edge config files: each is refused, and the message names the key path.

One table row per kind of mistake an operator or a template can make. Each
row edits the valid ``tests/fuzz/site_base.toml`` in one place and gives the
key path the refusal must name. The file is written to disk and read with
:func:`edge.config.load_config`, as ``onedoor edge check-config FILE`` does;
a few rows also go through that command to check its exit code and output.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.config import load_config
from edge.errors import ConfigInvalid
from tests.fuzz.harness import BASE_CONFIG, base_config_text

BASE = base_config_text()


@dataclass(frozen=True, slots=True)
class BrokenConfig:
    name: str
    old: str  # text of the example to replace (must occur in it)
    new: str
    key_path: str  # the refusal must contain a problem starting with "<key_path>: "
    words: str = ""  # and, when given, this text in that problem

    def text(self) -> str:
        assert self.old in BASE, f"{self.name}: {self.old!r} is not in {BASE_CONFIG.name}"
        return BASE.replace(self.old, self.new, 1)


_WINDOW_1 = "[[windows]]\nnumber = 1\n"
_WINDOW_2 = "[[windows]]\nnumber = 2\n"
_PRINTER = '[devices.printer]\nport = "/dev/ttyUSB0"\n'
_SERVICE_B = 'id = "minzheng"\nprefix = "B"'

BROKEN: list[BrokenConfig] = [
    # --- TOML syntax: the parser's own message, under the pseudo key "<toml>"
    BrokenConfig("syntax: unclosed table header", "[site]\n", "[site\n", "<toml>"),
    BrokenConfig("syntax: unterminated string", 'name = "小榄镇', 'name = "小榄镇\n"', "<toml>"),
    BrokenConfig("syntax: key defined twice", 'town = "小榄镇"\n',
                 'town = "小榄镇"\ntown = "三乡镇"\n', "<toml>"),
    BrokenConfig("syntax: value missing", "repeat = 2", "repeat =", "<toml>"),
    # --- wrong types
    BrokenConfig("type: window number as text", _WINDOW_1, '[[windows]]\nnumber = "one"\n',
                 "windows[0].number", "expected integer, got string"),
    BrokenConfig("type: boolean for an integer", "ratio_cap = 2", "ratio_cap = true",
                 "windows[0].ratio_cap", "expected integer, got boolean"),
    BrokenConfig("type: float for an integer", "poll_ms = 100", "poll_ms = 1.5",
                 "devices.terminals.poll_ms", "expected integer, got float"),
    BrokenConfig("type: array for a table", '[site]\nid = "xiaolan-yongning"',
                 'site = [1, 2]\n[site_]\nid = "xiaolan-yongning"', "site", "expected a table"),
    BrokenConfig("type: date for a string", 'version = "2026.11.1"', "version = 2026-11-01",
                 "version", "expected string"),
    # --- unknown keys (a typo must never fall back to a default)
    BrokenConfig("unknown key in a table", 'town = "小榄镇"', 'town = "小榄镇"\ntonw = "x"',
                 "site.tonw", "unknown key"),
    BrokenConfig("unknown key at the top", 'version = "2026.11.1"',
                 'version = "2026.11.1"\nverison = "2"', "verison", "unknown key"),
    BrokenConfig("unknown key in a window", "terminal = 2\n", "terminal = 2\nscren = 2\n",
                 "windows[1].scren", "unknown key"),
    # --- windows
    BrokenConfig("duplicate window number", _WINDOW_2, "[[windows]]\nnumber = 1\n",
                 "windows[1].number", "already used"),
    BrokenConfig("window number out of range", _WINDOW_1, "[[windows]]\nnumber = 0\n",
                 "windows[0].number", "must be 1..9999"),
    BrokenConfig("unknown service in a window profile", "services = { shebao = 2, minzheng = 1 }",
                 "services = { shebao = 2, huji = 1 }", "windows[0].services.huji",
                 "unknown service"),
    BrokenConfig("service weight zero", "services = { minzheng = 2, shebao = 1 }",
                 "services = { minzheng = 2, shebao = 0 }", "windows[1].services.shebao"),
    BrokenConfig("window serving nothing", "services = { minzheng = 2, shebao = 1 }",
                 "services = {}", "windows[1].services", "at least one service"),
    BrokenConfig("terminal address above 247", "terminal = 1\n", "terminal = 300\n",
                 "windows[0].terminal", "must be 1..247"),
    BrokenConfig("two windows on one terminal", "terminal = 2\n", "terminal = 1\n",
                 "windows[1].terminal", "already used"),
    BrokenConfig("screen address without a screen bus", '[devices.screens]\nport = "/dev/ttyUSB2"\n'
                 "baud = 9600\nhall = 100\n", "", "devices.screens", "no screen bus"),
    BrokenConfig("hall screen on a window's address", "hall = 100", "hall = 1",
                 "devices.screens.hall", "already used"),
    # --- services
    BrokenConfig("bad prefix: lower case and digit", 'prefix = "A"', 'prefix = "a1"',
                 "services[0].prefix", "1-2 letters A-Z"),
    BrokenConfig("bad prefix: three letters", 'prefix = "A"', 'prefix = "ABC"',
                 "services[0].prefix"),
    BrokenConfig("duplicate prefix", _SERVICE_B, 'id = "minzheng"\nprefix = "A"',
                 "services[1].prefix", "already used"),
    BrokenConfig("duplicate service id", _SERVICE_B, 'id = "shebao"\nprefix = "B"',
                 "services[1].id", "duplicate service id"),
    BrokenConfig("negative SLA", "sla_minutes = 30\novertime_minutes = 20",
                 "sla_minutes = -5\novertime_minutes = 20", "services[0].sla_minutes",
                 "must be 0..1440"),
    BrokenConfig("SLA longer than a day", "sla_minutes = 30\novertime_minutes = 30",
                 "sla_minutes = 2000\novertime_minutes = 30", "services[1].sla_minutes"),
    BrokenConfig("Chinese name empty", 'name_zh = "社保医保"', 'name_zh = "  "',
                 "services[0].name_zh", "must not be empty"),
    # --- opening hours
    BrokenConfig("opening hour 25:00", 'open = "08:30"', 'open = "25:00"', "hours.open",
                 "HH:MM"),
    BrokenConfig("opening time without leading zero", 'open = "08:30"', 'open = "8:30"',
                 "hours.open"),
    BrokenConfig("closing before opening", 'close = "17:30"', 'close = "07:00"', "hours.close",
                 "after hours.open"),
    BrokenConfig("daily reset inside opening hours", 'reset = "03:00"', 'reset = "12:00"',
                 "hours.reset", "outside opening hours"),
    # --- devices
    BrokenConfig("printer port missing", _PRINTER, "[devices.printer]\n",
                 "devices.printer.port", "required key is missing"),
    BrokenConfig("printer port empty", _PRINTER, '[devices.printer]\nport = ""\n',
                 "devices.printer.port", "must not be empty"),
    BrokenConfig("baud rate no UART has", "baud = 19200\n\n[devices.screens]",
                 "baud = 12345\n\n[devices.screens]", "devices.printer.baud"),
    BrokenConfig("terminal bus kind unknown", 'kind = "vendor"', 'kind = "canbus"',
                 "devices.terminals.kind", "must be one of modbus, vendor"),
    BrokenConfig("GPIO pin above 27", "pin = 5\n", "pin = 40\n",
                 "devices.gpio.ticket_buttons[0].pin", "must be 0..27"),
    BrokenConfig("GPIO pin negative", "buzzer_pin = 18", "buzzer_pin = -1",
                 "devices.gpio.buzzer_pin"),
    BrokenConfig("GPIO pin used twice", "pin = 19\n", "pin = 5\n",
                 "devices.gpio.help_buttons[0].pin", "already used"),
    BrokenConfig("ticket button for an unknown service", 'pin = 6\nservice = "minzheng"',
                 'pin = 6\nservice = "huji"', "devices.gpio.ticket_buttons[1].service",
                 "unknown service"),
    BrokenConfig("gpio pin factory unknown", 'pin_factory = "lgpio"', 'pin_factory = "wiringpi"',
                 "devices.gpio.pin_factory"),
    BrokenConfig("wav audio without a folder", 'output = "alsa"', 'output = "wav"',
                 "devices.audio.wav_dir", "required"),
    # --- site, uplink, paths, daemon
    BrokenConfig("site id with capitals and a space", 'id = "xiaolan-yongning"',
                 'id = "Xiaolan Yongning"', "site.id", "lowercase"),
    BrokenConfig("time zone that does not exist", 'timezone = "Asia/Shanghai"',
                 'timezone = "Mars/Olympus"', "site.timezone", "unknown time zone"),
    BrokenConfig("MQTT port out of range", "port = 8883", "port = 70000", "mqtt.port",
                 "must be 1..65535"),
    BrokenConfig("password without a user name", 'username = "xiaolan-yongning"\n', "",
                 "mqtt.username", "required when a password is given"),
    BrokenConfig("password file that does not exist", 'password = "change-me"',
                 'password_file = "no-such-secret"', "mqtt.password_file", "file not found"),
    BrokenConfig("journal path missing", '[paths]\njournal = "/var/lib/onedoor/journal.db"',
                 "[paths]", "paths.journal", "required key is missing"),
    BrokenConfig("negative outbox limit", "outbox_limit = 20000", "outbox_limit = -1",
                 "daemon.outbox_limit"),
    BrokenConfig("ticket number width 5", "[[services]]", "[policy]\nnumber_width = 5\n\n"
                 "[[services]]", "policy.number_width", "must be 3..4"),
]  # fmt: skip


@pytest.mark.parametrize("broken", BROKEN, ids=[b.name for b in BROKEN])
def test_broken_config_is_refused_with_its_key_path(broken: BrokenConfig, tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(broken.text(), encoding="utf-8")
    with pytest.raises(ConfigInvalid) as caught:
        load_config(path)
    refusal = caught.value
    assert refusal.source == str(path)
    matching = [e for e in refusal.errors if e.startswith(f"{broken.key_path}: ")]
    assert matching, f"no problem at {broken.key_path!r} in {refusal.errors}"
    assert any(broken.words in e for e in matching), (broken.words, matching)
    assert str(path) in str(refusal)  # the message says which file


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """An operator fixes a file in one pass: three mistakes, three problems."""
    text = BASE.replace('prefix = "A"', 'prefix = "a"').replace("pin = 5\n", "pin = 99\n")
    text = text.replace('open = "08:30"', 'open = "8:30"')
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigInvalid) as caught:
        load_config(path)
    paths = {error.partition(": ")[0] for error in caught.value.errors}
    assert {"services[0].prefix", "devices.gpio.ticket_buttons[0].pin", "hours.open"} <= paths


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigInvalid) as caught:
        load_config(missing)
    assert caught.value.errors[0].startswith("<file>: ")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(BASE.encode("gb18030"))  # not UTF-8
    with pytest.raises(ConfigInvalid) as caught:
        load_config(latin1)
    assert caught.value.errors[0].startswith("<file>: ")


def _check_config(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onedoor", "edge", "check-config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_command_names_every_key_path(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    text = BASE.replace("[[windows]]\nnumber = 2\n", "[[windows]]\nnumber = 1\n")
    path.write_text(text.replace('prefix = "A"', 'prefix = "a1"'), encoding="utf-8")
    result = _check_config(str(path))
    assert result.returncode == 1, result
    assert "windows[1].number: " in result.stderr
    assert "services[0].prefix: " in result.stderr
    assert result.stdout == ""


def test_the_base_config_passes_check_config() -> None:
    """The table's starting point is valid: each row's refusal is that row's one mistake."""
    result = _check_config(str(BASE_CONFIG))
    assert result.returncode == 0, result.stderr
    assert ": ok" in result.stdout

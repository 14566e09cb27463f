"""The site config: every problem reported with its key path; examples valid; CLI."""

from __future__ import annotations

import asyncio
import subprocess
import tomllib
from pathlib import Path

import pytest

from edge.cli import register_cli
from edge.config import SETTINGS, load_config, parse_config, settings_reference
from edge.devices.printer import PrinterDriver
from edge.devices.screens import ScreenDriver
from edge.devices_factory import build_devices
from edge.errors import ConfigInvalid
from fastpath.types import Policy, TicketClass
from onedoor.cli import main
from tests.edge.sites import (
    BASE_SERVICES,
    BASE_WINDOWS,
    PYTHON,
    REPO,
    free_port,
    site_toml,
    start_daemon,
    stop_daemon,
    wait_http,
)
from tests.edge.sites import http as http_call
from tests.servers import make_test_pki

EXAMPLES = sorted((REPO / "edge" / "examples").glob("*.toml"))


@pytest.fixture(scope="module")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA and server certificate (openssl CLI)."""
    pki = tmp_path_factory.mktemp("pki")
    make_test_pki(pki)
    return pki


def problems(text: str, base_dir: Path = Path("/tmp")) -> tuple[str, ...]:
    with pytest.raises(ConfigInvalid) as info:
        parse_config(text, base_dir=base_dir)
    return info.value.errors


def test_register_cli_is_the_entry_point() -> None:
    assert callable(register_cli)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_examples_are_valid(path: Path) -> None:
    config = load_config(path, check_files=False)
    assert config.services
    assert config.windows
    assert {w.number for w in config.windows} == set(range(1, len(config.windows) + 1))


def test_examples_cover_a_village_and_a_33_window_hall() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"village.toml", "hall33.toml"} <= names
    assert len(load_config(REPO / "edge/examples/hall33.toml", check_files=False).windows) == 33


def test_minimal_config_reads_typed_values(tmp_path: Path) -> None:
    config = load_config(site_toml(tmp_path, http_port=8999))
    assert config.site.id == "test-site"
    assert config.service("shebao").overtime_minutes == 20
    assert dict(config.window(1).services) == {"shebao": 2, "huji": 1}
    assert config.window(1).priority
    assert config.window(1).ratio_cap == 2
    assert config.paths.journal == str(tmp_path / "journal.db")
    assert config.http is not None
    assert config.http.port == 8999
    assert config.mqtt is None
    assert config.text.startswith('version = "v1"')


def test_printer_and_screen_timeouts_reach_their_drivers(tmp_path: Path) -> None:
    windows = BASE_WINDOWS.replace("number = 1\n", "number = 1\nscreen = 1\n", 1)
    devices = ('[devices.printer]\nport = "/dev/ttyUSB0"\n{}'
               '[devices.screens]\nport = "/dev/ttyUSB1"\n{}')
    config = load_config(site_toml(tmp_path, windows=windows, extra=devices.format(
        "timeout_ms = 800\n", "timeout_ms = 400\n")))
    built = build_devices(config, asyncio.Queue())
    assert isinstance(built.printer, PrinterDriver)
    assert isinstance(built.screens, ScreenDriver)
    assert built.printer._settings.reply_timeout_s == 0.8
    assert built.screens._settings.ack_timeout_s == 0.4
    default = load_config(site_toml(tmp_path, windows=windows, extra=devices.format("", "")))
    assert default.devices.printer is not None
    assert default.devices.screens is not None
    assert (default.devices.printer.timeout_ms, default.devices.screens.timeout_ms) == (300, 150)


BAD_CASES = [
    # (what is changed, expected "key.path: message" fragments)
    ('[[windows]]\nnumber = 4\nservices = { huji = 1 }\n'.replace("huji", "nosuch"),
     ["windows[2].services.nosuch: unknown service"]),
    ('[[windows]]\nnumber = 1\nservices = { huji = 1 }\n',
     ["windows[2].number: 1 already used by windows[0]"]),
    ('[[windows]]\nnumber = 5\nservices = { huji = 0 }\nterminal = 300\n',
     ["windows[2].services.huji: must be 1..100", "windows[2].terminal: must be 1..247"]),
    ('[[windows]]\nnumber = 6\nservices = { huji = 1 }\ncolour = "red"\n',
     ["windows[2].colour: unknown key"]),
    ('[[windows]]\nnumber = "7"\nservices = {}\n',
     ["windows[2].number: expected integer, got string",
      "windows[2].services: a window must serve at least one service"]),
]


@pytest.mark.parametrize(("extra_window", "expected"), BAD_CASES)
def test_window_errors_carry_key_paths(extra_window: str, expected: list[str]) -> None:
    text = _text(windows=BASE_WINDOWS + extra_window)
    found = problems(text)
    for fragment in expected:
        assert any(fragment in p for p in found), (fragment, found)


def test_every_problem_is_listed_at_once() -> None:
    text = _text(
        services=BASE_SERVICES + '[[services]]\nid = "shebao"\nprefix = "a1"\nname_zh = ""\n'
        "sla_minutes = -1\n",
        extra='[hours]\nopen = "25:00"\nclose = "08:00"\n[mqtt]\nport = 70000\n'
              '[devices.printer]\nbaud = 1234\ntimeout_ms = 1\n'
              '[devices.screens]\nport = "/dev/ttyS1"\ntimeout_ms = 9000\n'
              '[devices.gpio]\nbuzzer_pin = 5\n[[devices.gpio.ticket_buttons]]\npin = 5\n'
              'service = "nosuch"\nclass = "vip"\n[devices.audio]\noutput = "wav"\n'
              '[daemon]\nbogus = 1\n',
    )
    found = problems(text)
    expected = [
        "services[2].id: duplicate service id, first at services[0]",
        "services[2].prefix: expected 1-2 letters A-Z",
        "services[2].name_zh: must not be empty",
        "services[2].sla_minutes: must be 0..1440",
        "hours.open: expected local time HH:MM",
        "mqtt.host: required key is missing",
        "mqtt.port: must be 1..65535",
        "devices.printer.port: required key is missing",
        "devices.printer.baud: must be one of",
        "devices.printer.timeout_ms: must be 20..5000",
        "devices.screens.timeout_ms: must be 20..5000",
        "devices.gpio.ticket_buttons[0].service: unknown service 'nosuch'",
        "devices.gpio.ticket_buttons[0].class: must be one of normal, priority",
        "devices.gpio.buzzer_pin: pin 5 already used by devices.gpio.ticket_buttons[0].pin",
        "daemon.bogus: unknown key",
        "devices.audio.wav_dir: required when output is \"wav\"",
    ]
    for fragment in expected:
        assert any(fragment in p for p in found), (fragment, found)


def test_toml_syntax_error_is_one_clear_problem() -> None:
    assert problems("version = \n")[0].startswith("<toml>:")


def test_missing_tables_and_bad_site_id() -> None:
    found = problems('version = "has space"\n[site]\nid = "Bad/Id"\nname = "x"\n')
    assert any(p.startswith("version: expected 1-64 printable") for p in found)
    assert any(p.startswith("site.id: site id must be") for p in found)
    assert "services: at least one service is required" in found
    assert "windows: at least one window is required" in found
    assert "paths: required table is missing" in found


def test_files_named_by_mqtt_must_exist_unless_skipped(tmp_path: Path, test_pki: Path) -> None:
    text = _text(extra='[mqtt]\nhost = "broker"\nusername = "u"\npassword_file = "pw"\n'
                       '[mqtt.tls]\nca_file = "ca.pem"\n')
    with pytest.raises(ConfigInvalid) as info:
        parse_config(text, base_dir=tmp_path)
    assert any(p.startswith("mqtt.password_file: file not found") for p in info.value.errors)
    assert any(p.startswith("mqtt.tls.ca_file: file not found") for p in info.value.errors)
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "ca.pem").write_bytes((test_pki / "ca.pem").read_bytes())
    config = parse_config(text, base_dir=tmp_path)
    assert config.mqtt is not None
    assert config.mqtt.password == "s3cret"
    assert config.mqtt.port == 8883  # TLS default
    assert "s3cret" not in repr(config.mqtt)


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = site_toml(tmp_path)
    assert main(["edge", "check-config", str(good)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace("services = { huji = 2, shebao = 1 }",
                                            "services = { huji = 2, kuaidi = 1 }"))
    assert main(["edge", "check-config", str(bad)]) == 1
    assert "windows[1].services.kuaidi: unknown service" in capsys.readouterr().err
    assert main(["edge", "check-config", str(REPO / "edge/examples/hall33.toml")]) == 1
    assert main(["edge", "check-config", "--skip-files",
                 str(REPO / "edge/examples/hall33.toml")]) == 0


def _text(*, services: str = BASE_SERVICES, windows: str = BASE_WINDOWS, extra: str = "") -> str:
    return "\n".join(['version = "v1"', "[site]", 'id = "t"', 'name = "测试"', services, windows,
                      '[paths]\njournal = "j.db"', extra])


def test_make_clips_cli_writes_the_default_clip_set(tmp_path: Path) -> None:
    assert main(["edge", "make-clips", str(tmp_path / "clips")]) == 0
    assert (tmp_path / "clips" / "qing.wav").is_file()
    assert len(list((tmp_path / "clips").glob("*.wav"))) > 40


# --------------------------------------------------------------------------- one table

EVERY_KEY = """version = "v9"
[site]
id = "every-key"
name = "每个键"
town = "测试镇"
timezone = "Asia/Shanghai"
[hours]
open = "08:00"
close = "18:00"
reset = "02:00"
last_ticket = "17:30"
lunch = "12:00-13:30"
days = "mon-fri"
week = { sat = "09:00-12:00" }
[calendar]
holidays = ["2026-10-01..2026-10-08"]
workdays = ["2026-09-27"]
special = ["2026-12-31 08:00-12:00"]
[policy]
priority_weight_pct = 50
appointment_weight_pct = 200
appointment_grace_minutes = 15
number_width = 4
no_show = "drop"
[[services]]
id = "shebao"
prefix = "A"
name_zh = "社保"
name_en = "Social insurance"
sla_minutes = 30
overtime_minutes = 20
mean_minutes = 6.5
cv = 0.4
visitors_per_day = 80
last_ticket = "16:30"
item_code = "11442000MB2C92107F4442115001000"
item_name = "社会保险登记"
department = "11442000MB2C92107F"
department_name = "中山市社会保险基金管理局"
[[windows]]
number = 1
services = { shebao = 2 }
priority = true
ratio_cap = 2
terminal = 1
screen = 1
[devices.printer]
port = "/dev/ttyUSB0"
baud = 9600
poll_seconds = 2.0
timeout_ms = 400
[devices.screens]
port = "/dev/ttyUSB1"
baud = 9600
hall = 100
timeout_ms = 200
rs485 = "rts"
[devices.terminals]
kind = "vendor"
port = "/dev/ttyUSB2"
baud = 9600
poll_ms = 50
timeout_ms = 40
parity = "N"
rs485 = "kernel"
[devices.id_card]
port = "/dev/ttyUSB3"
baud = 115200
service = "shebao"
elder_age = 65
tickets_per_day = 2
call_by_name = true
poll_ms = 300
ledger = "cards.sqlite"
booking_salt_file = "booking-salt"
[devices.gpio]
pin_factory = "mock"
buzzer_pin = 18
debounce_ms = 20
long_press_ms = 1000
leds = { paper = 21 }
[[devices.gpio.ticket_buttons]]
pin = 5
service = "shebao"
class = "priority"
[[devices.gpio.help_buttons]]
id = "help-1"
pin = 19
led_pin = 26
location = "自助服务区"
[devices.audio]
output = "wav"
alsa_device = "hw:1"
wav_dir = "calls"
repeat = 3
clips_dir = "clips-default"
[mqtt]
host = "127.0.0.1"
port = 1884
username = "every-key"
password_file = "pw"
keepalive_seconds = 20
protocol = "3.1.1"
session_expiry_seconds = 3600
yield_seconds = 30
[mqtt.tls]
ca_file = "ca.pem"
cert_file = "client.pem"
key_file = "client.key"
[paths]
journal = "journal.db"
clips = "clips"
journal_retention_days = 30
[http]
host = "0.0.0.0"
port = 8181
window_api = true
window_token = "0123456789abcdef-token"
case_hook = true
case_token = "business-system-token-01"
[ratings]
pad_seconds = 20
reason_seconds = 45
[[ratings.reasons]]
code = "attitude"
label = "服务态度不好"
[[ratings.reasons]]
code = "slow"
label = "等候时间长"
[daemon]
telemetry_seconds = 10
outbox_limit = 5000
help_escalation_minutes = 3
watchdog_seconds = 20.0
predict_budget_seconds = 2.0
advice = false
advice_seconds = 600
[progress]
url = "https://q.zs.gov.cn/onedoor"
predict_seconds = 30.0
"""


def _keys(table: dict[str, object], prefix: str = "") -> set[str]:
    """Every key path of a TOML document, as SETTINGS spells them."""
    found = set()
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in {"windows[].services", "devices.gpio.leds",
                                                    "hours.week"}:
            found |= _keys(value, f"{path}.")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                found |= _keys(item, f"{path}[].")
        else:
            found.add(path)
    return found


def test_one_table_holds_every_key_and_the_reader_takes_each(test_pki: Path,
                                                             tmp_path: Path) -> None:
    """Every row of SETTINGS is a key the reader accepts (a row it did not read would be
    an unknown key), and every key the reader reads has a row (else a KeyError)."""
    # password and password_file exclude each other: the file gives one of them
    assert _keys(tomllib.loads(EVERY_KEY)) | {"mqtt.password"} == {s.key for s in SETTINGS}
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", "client.key", "-out", "client.pem", "-subj", "/CN=every-key"],
                   cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "ca.pem").write_bytes((test_pki / "ca.pem").read_bytes())
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "booking-salt").write_text("the-city-booking-salt\n")
    config = parse_config(EVERY_KEY, base_dir=tmp_path)
    assert config.mqtt is not None
    assert (config.mqtt.protocol, config.mqtt.session_expiry_seconds,
            config.mqtt.yield_seconds) == ("3.1.1", 3600, 30)
    assert config.http is not None
    assert config.http.window_token == "0123456789abcdef-token"
    assert (config.http.case_hook, config.http.case_token) == (True, "business-system-token-01")
    assert config.services[0].item_code == "11442000MB2C92107F4442115001000"
    assert (config.ratings.pad_seconds, config.ratings.reason_seconds) == (20, 45)
    assert [r.code for r in config.ratings.reasons] == ["attitude", "slow"]
    assert (config.ratings.reason_code(2), config.ratings.reason_code(3)) == ("slow", None)
    assert config.devices.gpio is not None
    assert config.devices.gpio.ticket_buttons[0].klass is TicketClass.PRIORITY
    assert (config.daemon.advice, config.daemon.advice_seconds) == (False, 600)
    assert config.devices.id_card is not None
    assert config.devices.id_card.booking_salt == "the-city-booking-salt"
    assert "the-city-booking-salt" not in repr(config.devices.id_card)  # a secret


def test_defaults_come_from_the_table() -> None:
    config = parse_config(_text(), base_dir=Path("/tmp"))
    defaults = {s.key: s.default for s in SETTINGS}
    assert config.site.timezone == defaults["site.timezone"]
    assert config.paths.journal_retention_days == defaults["paths.journal_retention_days"]
    assert config.daemon.predict_budget_seconds == defaults["daemon.predict_budget_seconds"]
    assert (config.daemon.advice, config.daemon.advice_seconds) == (True, 300)
    assert config.services[0].cv == defaults["services[].cv"]
    assert config.policy == Policy()  # the dispatcher's own defaults
    assert defaults["policy.number_width"] == Policy().number_width


def test_every_setting_is_documented() -> None:
    """edge/README.md carries the settings table as the code renders it."""
    readme = (REPO / "edge" / "README.md").read_text(encoding="utf-8")
    assert settings_reference() in readme, "paste edge.config.settings_reference() into it"
    assert all(s.help for s in SETTINGS)
    assert [s.key for s in SETTINGS if f"`{s.key}`" not in readme] == []


# --------------------------------------------------------------------------- hardening


def test_a_ca_file_that_is_not_a_certificate_is_refused(tmp_path: Path, test_pki: Path) -> None:
    extra = '[mqtt]\nhost = "broker"\n[mqtt.tls]\nca_file = "ca.pem"\n'
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nnot one\n")
    found = problems(_text(extra=extra), base_dir=tmp_path)
    assert any(p.startswith("mqtt.tls.ca_file: not a PEM certificate") for p in found), found
    (tmp_path / "ca.pem").write_bytes((test_pki / "server.key").read_bytes())  # a key
    assert any(p.startswith("mqtt.tls.ca_file: not a PEM certificate")
               for p in problems(_text(extra=extra), base_dir=tmp_path))
    mismatched = extra + 'cert_file = "server.pem"\nkey_file = "ca.key"\n'
    for name in ("server.pem", "ca.key"):
        (tmp_path / name).write_bytes((test_pki / name).read_bytes())
    (tmp_path / "ca.pem").write_bytes((test_pki / "ca.pem").read_bytes())
    assert any(p.startswith("mqtt.tls.cert_file: not a certificate and key that match")
               for p in problems(_text(extra=mismatched), base_dir=tmp_path))
    assert parse_config(_text(extra=extra), base_dir=tmp_path).mqtt is not None
    assert parse_config(_text(extra=extra.replace("ca.pem", "nothing.pem")), base_dir=tmp_path,
                        check_files=False).mqtt is not None  # on another machine: not read


def test_two_buses_on_one_serial_port_are_refused(tmp_path: Path) -> None:
    (tmp_path / "ttyUSB0").write_text("")
    (tmp_path / "by-id").symlink_to(tmp_path / "ttyUSB0")
    windows = BASE_WINDOWS.replace("number = 1\n", "number = 1\nterminal = 1\n")
    extra = (f'[devices.printer]\nport = "{tmp_path / "ttyUSB0"}"\n'
             f'[devices.terminals]\nport = "{tmp_path / "by-id"}"\n')
    found = problems(_text(windows=windows, extra=extra))
    assert any(p.startswith("devices.terminals.port: ") and "devices.printer.port" in p
               and "two buses" in p for p in found), found


@pytest.mark.parametrize("key", ["journal", "clips"])
def test_a_nul_in_a_path_is_refused(key: str) -> None:
    text = _text().replace('[paths]\njournal = "j.db"',
                           f'[paths]\njournal = "j.db"\n{key} = "a\\u0000b"'
                           if key == "clips" else '[paths]\njournal = "j\\u0000.db"')
    found = problems(text)
    assert any(p.startswith(f"paths.{key}: not a valid file name") for p in found), found


def test_the_window_api_off_this_machine_needs_a_token() -> None:
    def http(lines: str) -> str:
        return _text(extra=f"[http]\n{lines}\n")

    found = problems(http('host = "0.0.0.0"\nwindow_api = true'))
    assert any(p.startswith("http.window_token: required when the window API listens on "
                            "0.0.0.0") for p in found), found
    assert any(p.startswith("http.window_token: expected 16-64")
               for p in problems(http('host = "0.0.0.0"\nwindow_api = true\n'
                                      'window_token = "short"')))
    for fine in ('host = "0.0.0.0"\nwindow_api = true\nwindow_token = "a-long-enough-token"',
                 'host = "0.0.0.0"', 'host = "127.0.0.1"\nwindow_api = true',
                 'host = "::1"\nwindow_api = true'):
        assert parse_config(http(fine), base_dir=Path("/tmp")).http is not None


def test_an_mqtt_password_in_clear_text_off_this_machine_is_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mqtt = '[mqtt]\nhost = "{}"\nusername = "t"\npassword = "secret"\n'
    config = parse_config(_text(extra=mqtt.format("mqtt.example.cn")), base_dir=tmp_path)
    assert config.warnings == ("mqtt.password: sent in clear text to mqtt.example.cn: "
                               "add [mqtt.tls]",)
    assert parse_config(_text(extra=mqtt.format("127.0.0.1")), base_dir=tmp_path).warnings == ()
    path = tmp_path / "site.toml"
    path.write_text(_text(extra=mqtt.format("mqtt.example.cn")), encoding="utf-8")
    assert main(["edge", "check-config", "--skip-files", str(path)]) == 0
    captured = capsys.readouterr()
    assert "WARNING" in captured.err
    assert "mqtt.password: sent in clear text" in captured.err
    assert "1 warning(s)" in captured.out


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = site_toml(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Windows Notepad saves
    config = load_config(path)
    assert config.text.startswith('version = "v1"')
    assert main(["edge", "check-config", str(path)]) == 0


# --------------------------------------------------------------------------- this machine


def test_check_config_catches_what_run_would_stop_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config said ok, then `edge run` died with a traceback (a journal folder that
    cannot be made); now check-config refuses, and run says why in one line."""
    (tmp_path / "a-file").write_text("")
    path = site_toml(tmp_path)
    path.write_text(path.read_text().replace('journal = "journal.db"',
                                             'journal = "a-file/journal.db"'))
    assert main(["edge", "check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "paths.journal: " in err
    assert "a-file is not a folder" in err
    assert main(["edge", "check-config", "--skip-files", str(path)]) == 0  # another machine
    run = subprocess.run([PYTHON, "-m", "edge", "run", "--config", str(path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 3, run.stderr
    assert "journal: cannot create the journal" in run.stderr
    assert "Traceback" not in run.stderr


def test_missing_voice_clips_are_a_warning_and_the_hall_runs_without_voice(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    path = site_toml(tmp_path, http_port=port, extra=(
        '[devices.audio]\noutput = "wav"\nwav_dir = "calls"\nclips_dir = "no-clips"\n'))
    (tmp_path / "calls").mkdir()
    assert main(["edge", "check-config", str(path)]) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err
    assert "devices.audio.clips_dir: no folder" in err
    assert "make-clips" in err
    process = start_daemon(path, log_path=tmp_path / "daemon.log")
    try:
        wait_http(port, process)
        status, ticket = http_call("POST", f"http://127.0.0.1:{port}/tickets",
                                   {"service": "shebao"})
        assert (status, ticket["number"]) == (201, "A001")
        voice = [d for d in http_call("GET", f"http://127.0.0.1:{port}/status")[1]["devices"]
                 if d["device"] == "voice"]
        assert voice == [{"device": "voice", "kind": "voice", "state": "offline",
                          "detail": "open failed"}]
    finally:
        assert stop_daemon(process) == 0


def test_a_booking_salt_file_missing_or_too_short_is_refused(tmp_path: Path) -> None:
    extra = ('[devices.id_card]\nport = "/dev/ttyUSB9"\nservice = "shebao"\n'
             'booking_salt_file = "salt"\n')
    assert any(p.startswith("devices.id_card.booking_salt_file: cannot read")
               for p in problems(_text(extra=extra), base_dir=tmp_path))
    (tmp_path / "salt").write_text("short\n")
    assert "devices.id_card.booking_salt_file: the salt has fewer than 16 characters" in problems(
        _text(extra=extra), base_dir=tmp_path)

"""The site config: every problem reported with its key path; examples valid; CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge.cli import register_cli
from edge.config import load_config, parse_config
from edge.devices.printer import PrinterDriver
from edge.devices.screens import ScreenDriver
from edge.devices_factory import build_devices
from edge.errors import ConfigInvalid
from onedoor.cli import main
from tests.edge.sites import BASE_SERVICES, BASE_WINDOWS, REPO, site_toml
from tests.servers import make_test_pki

EXAMPLES = sorted((REPO / "edge" / "examples").glob("*.toml"))


@pytest.fixture(scope="module")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA and server certificate (openssl CLI)."""
    pki = tmp_path_factory.mktemp("pki")
    make_test_pki(pki)
    return pki


def problems(text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigInvalid) as info:
        parse_config(text, base_dir=Path("/tmp"))
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

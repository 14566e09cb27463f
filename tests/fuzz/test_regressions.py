"""Minimal reproductions of the crashes the fuzzers found in other modules.

Each test states the documented contract the crash broke; all four (F1-F4)
are fixed and these are their regression tests. A new finding gets a
``xfail(strict=True)`` test here and an entry in
``tests.fuzz.harness.KNOWN_FINDINGS`` until its owner fixes it. Finding ids
(F1...) are the ones in ``docs/reliability/bad_input.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from central.ingest import IngestProcessor, Received
from edge.config import parse_config
from edge.errors import ConfigInvalid
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.mqtt_topics import InvalidMessage, Reason
from tests.fuzz.harness import KNOWN_FINDINGS, base_config_text, known_finding
from tests.fuzz.test_ingest import _processor

BASE = base_config_text()
CONFIG_DIR = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- F1: MQTT contract


@pytest.mark.parametrize(
    "payload",
    [
        b'{"v":1,"site":"\x80"}',  # invalid UTF-8 inside a string value
        b'{"v":1,"\xe3":1}',  # ... or inside an object key
    ],
    ids=["value", "key"],
)
def test_f1_invalid_utf8_in_a_json_string_is_an_invalid_message(payload: bytes) -> None:
    with pytest.raises(InvalidMessage) as caught:
        mm.decode_publish("onedoor/v1/zs-sanxiang-01/ack", payload)
    assert caught.value.reason is Reason.JSON


def test_f1_one_such_publish_does_not_fail_the_ingest_batch(tmp_path: Path) -> None:
    """Today the whole batch raises, so the service falls back to one-by-one commits."""
    processor: IngestProcessor
    processor, _ = _processor(f"sqlite:///{tmp_path}/central.db", tmp_path)
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    bad = Received("onedoor/v1/zs-sanxiang-01/state", b'{"v":1,"site":"\x80"}', now)
    assert processor.process([bad], now).rejected == 1


# --------------------------------------------------------------------------- F2-F4: edge config


def _refused(text: str, *, check_files: bool = True) -> ConfigInvalid:
    with pytest.raises(ConfigInvalid) as caught:
        parse_config(text, source="site.toml", base_dir=CONFIG_DIR, check_files=check_files)
    return caught.value


@pytest.mark.parametrize("zone", ["America", "Asia" + "x" * 300], ids=["directory", "too-long"])
def test_f2_timezone_that_is_not_a_zone_file_is_refused(zone: str) -> None:
    text = BASE.replace('timezone = "Asia/Shanghai"', f'timezone = "{zone}"')
    assert any(e.startswith("site.timezone: ") for e in _refused(text).errors)


@pytest.mark.parametrize("check_files", [True, False])
def test_f3_overlong_password_file_name_is_refused(check_files: bool) -> None:
    text = BASE.replace('password = "change-me"', f'password_file = "{"p" * 300}"')
    errors = _refused(text, check_files=check_files).errors
    assert any(e.startswith("mqtt.password_file: ") for e in errors)


def test_f3_overlong_tls_file_name_is_refused() -> None:
    text = BASE.replace("[paths]", f'[mqtt.tls]\nca_file = "{"c" * 300}"\n\n[paths]')
    assert any(e.startswith("mqtt.tls.ca_file: ") for e in _refused(text).errors)


def test_f4_password_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.pass"
    secret.write_bytes(b"\xff\xfe not text")
    text = BASE.replace('password = "change-me"', f'password_file = "{secret}"')
    assert any(e.startswith("mqtt.password_file: ") for e in _refused(text).errors)


# --------------------------------------------------------------------------- the tolerance list


def test_every_known_finding_has_a_regression_test() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    for finding in KNOWN_FINDINGS:
        assert f'@_finding("{finding.id}")' in source, finding.id


def test_known_finding_matcher_needs_the_right_module() -> None:
    """An exception of a known type raised elsewhere is never tolerated by the fuzz tests."""
    with pytest.raises(UnicodeDecodeError) as caught:
        b"\x80".decode("utf-8")
    assert known_finding(caught.value) is None


_REPRODUCTIONS: dict[str, Callable[[], object]] = {
    "F1": lambda: mm.decode_publish("onedoor/v1/a/ack", b'{"v":1,"site":"\x80"}'),
    "F2": lambda: parse_config(BASE.replace("Asia/Shanghai", "America"), base_dir=CONFIG_DIR),
    "F3": lambda: parse_config(
        BASE.replace('password = "change-me"', f'password_file = "{"p" * 300}"'),
        base_dir=CONFIG_DIR,
    ),
}


@pytest.mark.parametrize("finding_id", sorted(_REPRODUCTIONS))
def test_known_finding_matcher_recognises_its_crash(finding_id: str) -> None:
    """The tolerance in the fuzz tests covers exactly the pinned crash (while it exists)."""
    crash: Exception | None = None
    try:
        _REPRODUCTIONS[finding_id]()
    except (ConfigInvalid, InvalidMessage):
        pass  # fixed: the regression test above XPASSes and says so
    except Exception as exc:
        crash = exc
    if crash is not None:
        matched = known_finding(crash)
        assert matched is not None, repr(crash)
        assert matched.id == finding_id

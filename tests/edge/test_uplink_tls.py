"""The uplink over TLS with username/password, against a real Mosquitto configured for both.

Certificates come from the openssl CLI (a throwaway CA and a server cert for
127.0.0.1), the password file from mosquitto_passwd; the broker runs from
the Debian binary with its own config: a TLS listener and ``allow_anonymous
false`` (the session broker allows anonymous clients, so it cannot be reused).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.clock import ManualClock, SystemClock
from edge.config import load_config
from edge.hall import open_hall
from edge.uplink import Uplink
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import site_toml
from tests.edge.test_hall import OPENING
from tests.servers import TlsBroker, tls_mosquitto

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None,
    reason="needs the openssl CLI and mosquitto_passwd (Debian: openssl, mosquitto)")


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    with tls_mosquitto(tmp_path, {"test-site": "s3cret-pw"}) as broker:
        yield broker


def _connect_with(tmp_path: Path, broker: TlsBroker, password: str) -> tuple[bool, int]:
    pki = broker.pki
    (tmp_path / "pw").write_text(password + "\n")
    extra = f'[mqtt.tls]\nca_file = "{pki / "ca.pem"}"\n'
    config_path = site_toml(tmp_path, mqtt_port=broker.port)
    text = config_path.read_text().replace(
        "keepalive_seconds = 5",
        'keepalive_seconds = 5\nusername = "test-site"\npassword_file = "pw"\n' + extra)
    config_path.write_text(text)
    config = load_config(config_path)
    assert config.mqtt is not None
    assert config.mqtt.tls is not None
    hall = open_hall(config, ManualClock(OPENING))

    async def commands(cmd: mm.Cmd) -> None:
        return None

    async def main() -> tuple[bool, int]:
        assert config.mqtt is not None
        uplink = Uplink(config.site.id, config.mqtt, hall.journal, SystemClock(),
                        software="t", boot_id="b", config_version=lambda: "v1",
                        commands=commands, backoff_base_s=0.05, backoff_cap_s=0.2)
        task = asyncio.create_task(uplink.run())
        try:
            for _ in range(150):
                if hall.journal.acked_seq or uplink.connected:
                    break
                await asyncio.sleep(0.02)
            return uplink.connected, uplink.connects
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        return asyncio.run(main())
    finally:
        hall.journal.close()


def test_uplink_connects_with_tls_and_password(tmp_path: Path,
                                               tls_broker: TlsBroker) -> None:
    assert _connect_with(tmp_path, tls_broker, "s3cret-pw") == (True, 1)


def test_a_wrong_password_is_refused_and_retried(tmp_path: Path,
                                                 tls_broker: TlsBroker) -> None:
    assert _connect_with(tmp_path, tls_broker, "wrong") == (False, 0)

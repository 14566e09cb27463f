"""Security across processes: TLS on the whole MQTT path, hashed tokens, no secret in logs.

One run: a test CA and a broker certificate made with the openssl CLI, a real
Mosquitto with a TLS listener and password logins only, ``onedoor edge run``
and ``onedoor central run`` both on TLS with their own MQTT passwords, an admin
token made with ``onedoor central token create``, an API call with it, and a
dashboard login that yields a session cookie. Then: the events crossed TLS end
to end, the token is stored as a SHA-256 digest only, and none of the secrets
(token, MQTT passwords, session cookie and secret) appears in any log.
"""

from __future__ import annotations

import hashlib
import http.client as httpc
import os
import shutil
import sqlite3
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from central.auth import parse_token
from tests.edge.sites import (
    PYTHON,
    REPO,
    free_port,
    http,
    site_toml,
    start_daemon,
    stop_daemon,
    wait_http,
)
from tests.reliability.harness import (
    SITE_ID,
    CentralProcess,
    central_count,
    prepare_central_db,
    wait_until,
)
from tests.servers import tls_mosquitto

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None,
    reason="needs the openssl CLI and mosquitto_passwd (Debian: openssl, mosquitto)")

SITE_PASSWORD = "site-Pw-8f2c41d9e7"
CENTRAL_PASSWORD = "central-Pw-5b7e93a0c1"
SESSION_SECRET = "session-Secret-0d4f7a2b9c6e-3a8b1f5d7e90c2"


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    users = {SITE_ID: SITE_PASSWORD, "central": CENTRAL_PASSWORD}
    with tls_mosquitto(tmp_path, users, log_all=True) as broker:
        yield broker.port, broker.pki


def login_cookie(port: int, token: str) -> str:
    connection = httpc.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/login", urllib.parse.urlencode({"token": token, "next": "/"}),
                       {"Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    response.read()
    assert response.status == 303, response.status
    cookie = response.getheader("set-cookie") or ""
    connection.close()
    return cookie.split(";", 1)[0].split("=", 1)[1]


def get(port: int, path: str, headers: dict[str, str]) -> int:
    connection = httpc.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def test_tls_path_hashed_tokens_and_clean_logs(
    tmp_path: Path, tls_broker: tuple[int, Path]
) -> None:
    broker_port, pki = tls_broker
    db_path = tmp_path / "central.db"
    url = f"sqlite:///{db_path}"
    prepare_central_db(url, tmp_path, [SITE_ID])
    central = CentralProcess(
        tmp_path, url, broker_port, mqtt_tls=True, mqtt_ca_file=str(pki / "ca.pem"),
        mqtt_username="central", mqtt_password=CENTRAL_PASSWORD)
    env = {**os.environ, "ONEDOOR_CENTRAL_SESSION_SECRET": SESSION_SECRET}
    created = subprocess.run(
        [PYTHON, "-m", "onedoor", "central", "token", "create", "--config", str(central.config),
         "--role", "admin", "--name", "reliability"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True)
    token = created.stdout.strip().splitlines()[-1]
    os.environ["ONEDOOR_CENTRAL_SESSION_SECRET"] = SESSION_SECRET
    try:
        central.start()
    finally:
        del os.environ["ONEDOOR_CENTRAL_SESSION_SECRET"]
    (tmp_path / "mqtt-password").write_text(SITE_PASSWORD + "\n")
    http_port = free_port()
    config = site_toml(tmp_path, http_port=http_port, mqtt_port=broker_port)
    config.write_text(config.read_text().replace(
        "keepalive_seconds = 5",
        f'keepalive_seconds = 5\nusername = "{SITE_ID}"\npassword_file = "mqtt-password"\n'
        f'[mqtt.tls]\nca_file = "{pki / "ca.pem"}"\n'))
    daemon = start_daemon(config, log_path=tmp_path / "daemon.log")
    cookie = ""
    try:
        wait_http(http_port, daemon)
        for _ in range(5):
            status, body = http("POST", f"http://127.0.0.1:{http_port}/tickets",
                                {"service": "shebao"})
            assert status == 201, body
        wait_until(lambda: central_count(url, SITE_ID) >= 5, 60, "events over TLS")
        wait_until(lambda: _up(central.http_port), 30, "central HTTP")
        assert get(central.http_port, "/api/v1/events?site=test-site",
                   {"Authorization": f"Bearer {token}"}) == 200
        assert get(central.http_port, "/api/v1/events", {}) == 401
        cookie = login_cookie(central.http_port, token)
        assert get(central.http_port, "/api/v1/sites", {"Cookie": f"onedoor_session={cookie}"}) \
            == 200
    finally:
        stop_daemon(daemon)
        central.stop()

    # Tokens are stored hashed: no plaintext secret in any column, the digest matches.
    token_id, secret = parse_token(token)
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT * FROM api_tokens").fetchall()
    dump = repr(rows)
    assert token not in dump
    assert secret not in dump
    assert any(token_id in row and hashlib.sha256(secret.encode()).hexdigest() in row
               for row in rows), "the token's SHA-256 digest is not stored"

    logs = {name: (tmp_path / name).read_text(errors="replace")
            for name in ("daemon.log", "central.log", "mosquitto.log")}
    secrets = {"token": token, "token secret": secret, "site MQTT password": SITE_PASSWORD,
               "central MQTT password": CENTRAL_PASSWORD, "session cookie": cookie,
               "session secret": SESSION_SECRET}
    for log_name, text in logs.items():
        for what, value in secrets.items():
            assert value, f"{what} is empty"
            assert value not in text, f"{what} written to {log_name}"


def _up(port: int) -> bool:
    try:
        return get(port, "/healthz", {}) == 200
    except OSError:
        return False

"""Shared helpers of the API, auth and browser tests (no tests here).

``running_app`` builds the real application: a SQLite registry loaded from the
seed, a real :class:`central.service.CentralService` connected to the session's
Mosquitto, one token per role. ``feed`` pushes contract messages through the
real ingest processor; ``publish`` sends them over MQTT like an edge does.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from fastapi import FastAPI
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from central.app import create_app
from central.auth import Role
from central.config import CentralConfig
from central.context import Central
from central.db import make_engine, migrate, session_factory
from central.seed import load_seed
from central.service import CentralService
from firmware_protocols import mqtt_messages as mm
from tests.central.sim import received
from tests.servers import MosquittoBroker

SECRET = b"test-session-secret-0123456789abcdef"
TEST_HOSTS = "testserver,127.0.0.1,localhost"
"""Hosts the test apps answer: FastAPI's TestClient sends ``Host: testserver``."""
_client_ids = itertools.count(1)


@dataclass
class RunningApp:
    app: FastAPI
    client: TestClient
    central: Central
    service: CentralService
    tokens: dict[Role, str]
    broker: MosquittoBroker

    def headers(self, role: Role | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}

    def feed(self, *messages: mm.Message) -> None:
        """Through the real ingest processor (validation, dedup, live state, alarms)."""
        self.service.processor.process(received(*messages))

    def publish(self, *messages: mm.Message) -> None:
        """Over the real broker, QoS and retain as the contract says."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-edge-{time.time_ns()}")
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        try:
            for message in messages:
                publish = mm.to_publish(message)
                info = client.publish(
                    publish.topic, publish.payload, qos=publish.qos, retain=publish.retain
                )
                info.wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()

    def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Any bytes on any topic (an empty retained payload clears the retained one)."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-raw-{time.time_ns()}")
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        try:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()

    def clear_retained(self, *site_ids: str) -> None:
        """Remove retained ``state`` messages so later tests on the shared broker start clean."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-clean-{time.time_ns()}")
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        try:
            for site_id in site_ids:
                topic = f"onedoor/v1/{site_id}/state"
                client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()

    def add_user(self, username: str, role: Role, towns: list[str] | None = None,
                 password: str = "", name: str = "") -> str:  # fmt: skip
        """A named account (its password: given, or made from the name)."""
        password = password or f"Pass-{len(username)}-2026-onedoor"
        self.central.users.create(username, name or username, role, towns, password,
                                  now=self.central.now())  # fmt: skip
        return password

    def login_user(self, username: str, password: str, *, expect: int = 303) -> str:
        """Log in with a login name and password; returns the answer's location or text."""
        self.client.cookies.clear()
        response = self.client.post(
            "/login",
            data={"username": username, "password": password, "next": "/"},
            follow_redirects=False,
        )
        assert response.status_code == expect, response.text
        return response.headers.get("location", response.text)

    def login(self, role: Role) -> None:
        response = self.client.post(
            "/login",
            content=f"token={self.tokens[role]}&next=/",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text


def build_app(
    db_path: Path, broker: MosquittoBroker, *, live_interval_s: float = 0.2, **settings: Any
) -> tuple[FastAPI, CentralService]:
    """The real app over ``db_path`` (migrated, the seed loaded); ``settings`` change the
    central's config."""
    engine = make_engine(f"sqlite:///{db_path}")
    migrate(engine)
    with session_factory(engine).begin() as session:
        load_seed(session)
    config = CentralConfig(
        database_url=f"sqlite:///{db_path}",
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_client_id=f"central-test-{next(_client_ids)}-{time.time_ns()}",
        mqtt_group=f"g{time.time_ns()}",
        alarm_tick_s=3600.0,
        http_allowed_hosts=TEST_HOSTS,
    ).replace(**settings)
    service = CentralService(config, engine=engine)
    app = create_app(config, service=service, secret=SECRET, live_interval_s=live_interval_s)
    return app, service


@contextmanager
def running_app(tmp_path: Path, broker: MosquittoBroker, **settings: Any
                ) -> Iterator[RunningApp]:
    """The real app over a fresh database in ``tmp_path``; ``settings`` as :func:`build_app`."""
    app, service = build_app(tmp_path / "central.db", broker, **settings)
    with TestClient(app) as client:
        central: Central = app.state.central
        tokens = {role: central.tokens.create(role, f"test {role.value}")[1] for role in Role}
        yield RunningApp(app, client, central, service, tokens, broker)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)

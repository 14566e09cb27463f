"""Remote diagnostics end to end: the central asks a real edge daemon over the real Mosquitto
(no port opened on the Pi), the daemon answers with its status and recent log lines, and
the central keeps the answer; on SQLite and PostgreSQL. No secret reaches the answer."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from central.models import Command, CommandStatus, Diagnostics
from central.service import CentralService
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.mqtt_topics import TOPICS, Kind
from tests.central.pis import central_config, fresh_site, make_pi, started, until
from tests.servers import MosquittoBroker

__all__ = ["fresh_site"]  # the fixture

ID_NUMBER = "11010519491231002X"
WINDOW_TOKEN = "0123456789abcdef-token"
MQTT_PASSWORD = "site-password-7731"


def test_an_operator_reads_a_pis_status_and_log_without_its_secrets(
        mqtt_broker: MosquittoBroker, db_url: str, engine: Engine,
        sessions: sessionmaker[Session], tmp_path: Path, fresh_site: str) -> None:
    site_id = fresh_site
    pi = make_pi(tmp_path, "pi", site_id, mqtt_broker.port)
    text = pi.config.read_text()
    text = text.replace('window_api = true', f'window_api = true\nwindow_token = "{WINDOW_TOKEN}"')
    text = text.replace("keepalive_seconds = 5",
                        f'keepalive_seconds = 5\nusername = "{site_id}"\n'
                        f'password = "{MQTT_PASSWORD}"')
    pi.config.write_text(text)

    async def main() -> None:
        async with CentralService(central_config(mqtt_broker, db_url), engine=engine) as service:
            await started(service)
            await asyncio.to_thread(pi.start)
            url = f"http://127.0.0.1:{pi.port}/tickets"
            # A kiosk that uses the citizen's ID number (or the window token) as its retry key:
            # the daemon logs the key when it replays the ticket.
            for key in (ID_NUMBER, ID_NUMBER, WINDOW_TOKEN, WINDOW_TOKEN):
                status, _ = await asyncio.to_thread(_ticket, url, key)
                assert status == 201
            command = await service.send_command(site_id, mm.DiagnosticsArgs(lines=200),
                                                 issued_by="ops-li")

            def answered() -> bool:
                with sessions() as session:
                    return session.get(Diagnostics, command.id) is not None

            await until(answered, "the diagnostics answer")
            await until(lambda: _status(sessions, command) is CommandStatus.SUCCEEDED,
                        "the command's result")
            with sessions() as session:
                row = session.get(Diagnostics, command.id)
                assert row is not None
                report = row.report
            wire = json.dumps(report, ensure_ascii=False)
            assert len(wire.encode()) <= TOPICS[Kind.DIAG].max_payload
            for secret in (ID_NUMBER, WINDOW_TOKEN, MQTT_PASSWORD):
                assert secret not in wire, secret
            texts = [line["text"] for line in report["logs"]]
            assert sum(t.startswith("ticket.replayed key=***") for t in texts) == 2
            assert any(t.startswith("uplink.connected") for t in texts)
            assert len(texts) <= 200
            status = report["status"]
            assert (status["numbering"], status["epoch"]) == ("granted", 0)
            assert status["last_seq"] >= 4
            assert status["journal_bytes"] > 0
            assert {"uplink", "telemetry", "http"} <= {t["name"] for t in status["tasks"]}
            assert row.device == pi.status()["device"]
            await service.wait_idle()

    try:
        asyncio.run(main())
    finally:
        pi.stop()


def _ticket(url: str, key: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=b'{"service": "shebao"}', method="POST",
                                     headers={"Idempotency-Key": key})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.load(response)


def _status(sessions: sessionmaker[Session], command: mm.Cmd) -> CommandStatus | None:
    with sessions() as session:
        return session.scalar(select(Command.status).where(Command.id == command.id))

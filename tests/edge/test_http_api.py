"""The kiosk HTTP API (h11 on asyncio): tickets after durability, status, clear errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from edge.clock import ManualClock
from edge.config import load_config
from edge.device_set import DeviceSet
from edge.hall import Hall, IssuedTicket, open_hall
from edge.http_api import MAX_BODY, HttpApi
from edge.kiosk import TicketDesk
from edge.outputs import HallOutputs
from firmware_protocols import mqtt_messages as mm
from tests.edge.sites import site_toml
from tests.edge.test_hall import OPENING


async def request(port: int, method: str, path: str, body: bytes | None = None,
                  extra: str = "") -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{extra}"
    if body is not None:
        head += f"content-length: {len(body)}\r\n"
    writer.write(head.encode() + b"\r\n" + (body or b""))
    await writer.drain()
    raw = await reader.read()
    writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    payload = rest.split(b"\r\n\r\n", 1)[1]
    return int(status_line.split()[1]), json.loads(payload)


class PaperTray(HallOutputs):
    """The hall's outputs without devices, printing into a list (no printer here)."""

    def __init__(self, hall: Hall) -> None:
        super().__init__(hall, DeviceSet(None, asyncio.Queue()))
        self.printed: list[str] = []

    async def print_issued(self, issued: IssuedTicket) -> bool:
        self.printed.append(issued.ticket.number)
        return True


def with_api(tmp_path: Path, test: Callable[[HttpApi, Hall], Awaitable[None]],
             window_api: bool = True, window_token: str | None = None) -> None:
    config = load_config(site_toml(tmp_path))
    hall = open_hall(config, ManualClock(OPENING))

    async def main() -> None:
        desk = TicketDesk(hall, PaperTray(hall))
        api = HttpApi(hall, desk, status=hall.snapshot, port=0, window_api=window_api,
                      window_token=window_token)
        server = asyncio.create_task(api.run())
        await api.listening.wait()
        try:
            await test(api, hall)
        finally:
            server.cancel()
            with pytest.raises(asyncio.CancelledError):
                await server

    try:
        asyncio.run(main())
    finally:
        hall.journal.close()


def test_post_ticket_answers_after_the_event_is_journaled(tmp_path: Path) -> None:
    async def test(api: HttpApi, hall: Hall) -> None:
        status, first = await request(api.port, "POST", "/tickets", b'{"service": "shebao"}')
        assert status == 201
        assert first["number"] == "A001"
        assert first["people_ahead"] == 0
        assert first["wait"] is None
        assert first["printed"] is False
        status, second = await request(api.port, "POST", "/tickets",
                                       b'{"service": "shebao", "class": "priority", '
                                       b'"print": true}')
        assert status == 201
        assert second["number"] == "A002"
        assert second["printed"] is True
        events = list(hall.journal.events(first["seq"] - 1))
        assert isinstance(events[0].body, mm.TicketIssued)
        assert events[0].body.ticket == "A001"
        assert events[0].body.channel == "kiosk"
        assert events[1].body.ticket_class == "priority"  # type: ignore[union-attr]

    with_api(tmp_path, test)


def test_status(tmp_path: Path) -> None:
    async def test(api: HttpApi, hall: Hall) -> None:
        hall.issue("huji")
        status, body = await request(api.port, "GET", "/status")
        assert status == 200
        assert body["site"] == "test-site"
        assert body["issued"] == 1
        assert {q["service"]: q["waiting"] for q in body["queues"]} == {"shebao": 0, "huji": 1}

    with_api(tmp_path, test)


BAD_REQUESTS = [
    ("POST", "/tickets", b"{not json", 400, "bad_json"),
    ("POST", "/tickets", b"[1, 2]", 422, "bad_field"),
    ("POST", "/tickets", b'{"class": "normal"}', 422, "bad_field"),
    ("POST", "/tickets", b'{"service": "shebao", "class": "vip"}', 422, "bad_field"),
    ("POST", "/tickets", b'{"service": "shebao", "colour": 1}', 422, "bad_field"),
    ("POST", "/tickets", b'{"service": "shebao", "booked_ts": "noon"}', 422, "bad_field"),
    ("POST", "/tickets", b'{"service": "shebao", "class": "appointment"}', 422, "bad_booking"),
    ("POST", "/tickets", b'{"service": "kuaidi"}', 404, "unknown_service"),
    ("GET", "/tickets", None, 405, "method"),
    ("POST", "/status", b"{}", 405, "method"),
    ("GET", "/nowhere", None, 404, "not_found"),
    ("POST", "/windows/1/next", b"", 409, "state"),
    ("POST", "/windows/9/next", b"", 404, "unknown_window"),
    ("POST", "/windows/1/dance", b"", 404, "not_found"),
    ("POST", "/windows/1/sign_in", b'{"staff": 7}', 422, "bad_field"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD_REQUESTS)
def test_bad_requests_get_clear_errors_and_change_nothing(
        tmp_path: Path, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    async def test(api: HttpApi, hall: Hall) -> None:
        before = hall.journal.last_seq
        got_status, got = await request(api.port, method, path, body)
        assert (got_status, got["error"]) == (status, code), got
        assert got["message"]
        assert hall.journal.last_seq == before
        ok, _ = await request(api.port, "POST", "/tickets", b'{"service": "shebao"}')
        assert ok == 201  # and the server keeps serving

    with_api(tmp_path, test)


def test_oversized_body_and_garbage_request_line(tmp_path: Path) -> None:
    async def test(api: HttpApi, hall: Hall) -> None:
        status, body = await request(api.port, "POST", "/tickets", b"x" * (MAX_BODY + 10))
        assert status in (413, 400)
        assert body["error"]
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        writer.write(b"\x00\x01 garbage\r\n\r\n")
        await writer.drain()
        assert (await reader.read()).startswith(b"HTTP/1.1 400")
        writer.close()
        assert (await request(api.port, "GET", "/status"))[0] == 200

    with_api(tmp_path, test)


def test_window_api_drives_a_window_and_is_off_by_default(tmp_path: Path) -> None:
    async def test(api: HttpApi, hall: Hall) -> None:
        hall.issue("shebao")
        assert (await request(api.port, "POST", "/windows/1/sign_in", b'{"staff": "z1"}'))[0] \
            == 200
        status, body = await request(api.port, "POST", "/windows/1/next")
        assert status == 200
        assert body["ticket"] == "A001"
        assert (await request(api.port, "POST", "/windows/1/finish"))[1]["ticket"] == "A001"
        assert (await request(api.port, "POST", "/windows/1/rate", b'{"value": 5}'))[0] == 200

    with_api(tmp_path, test)

    async def off(api: HttpApi, hall: Hall) -> None:
        assert (await request(api.port, "POST", "/windows/1/next"))[0] == 404

    (tmp_path / "off").mkdir()
    with_api(tmp_path / "off", off, window_api=False)


def test_the_window_api_asks_for_its_token_when_it_has_one(tmp_path: Path) -> None:
    token = "0123456789abcdef-window"

    async def test(api: HttpApi, hall: Hall) -> None:
        body = b'{"staff": "z1"}'
        for header in ("", "authorization: Bearer wrong-token-0123456\r\n",
                       f"authorization: {token}\r\n"):
            status, refused = await request(api.port, "POST", "/windows/1/sign_in", body,
                                            header)
            assert (status, refused["error"]) == (401, "unauthorised")
        assert hall.staff_at(1) is None
        status, _ = await request(api.port, "POST", "/windows/1/sign_in", body,
                                  f"authorization: Bearer {token}\r\n")
        assert status == 200
        assert hall.staff_at(1) == "z1"
        assert (await request(api.port, "POST", "/tickets", b'{"service": "shebao"}'))[0] == 201

    with_api(tmp_path, test, window_token=token)

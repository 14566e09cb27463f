"""The local HTTP API for kiosks, on asyncio streams and h11 (light enough for a Pi).

::

    POST /tickets   {"service": "shebao", "class": "normal", "booked_ts": null, "print": false}
                    header Idempotency-Key: <1-64 printable ASCII> (optional, recommended)
                    -> 201 {"number": "A012", "people_ahead": 4, "wait": {...} | null,
                            "replayed": false, "progress_url": "https://.../q/<token>" | null,
                            ...}
                    answered only after the ticket.issued event is durable in the journal;
                    the daemon's wait prediction runs off the event loop first, for at most
                    daemon.predict_budget_seconds ("wait": null past it). A request retried
                    with the same key gets the same ticket ("replayed": true), even after
                    the daemon crashed mid-answer (edge.kiosk)
    POST /bookings/check_in  {"code": "1208123456", "print": true}: a booking (预约)
                    checked in by its code, typed or scanned from its QR -> 201 as /tickets
                    (an appointment ticket at the slot's start); 422 a malformed code,
                    404 ``unknown_booking``, 409 ``booking_used`` / ``booking_other_day``,
                    each with its Chinese message. Idempotent: header Idempotency-Key as
                    for /tickets (the same key gets the same ticket, "replayed": true; with
                    another code 422 ``key_reused``); a check-in of a code still being
                    answered (a double tap) gets its ticket too, printed once
    GET  /status    -> 200 the hall at a glance (queues, windows, counts, devices, uplink)
    POST /windows/{n}/{action}   only with ``http.window_api = true``: a software window
                    terminal; actions next, recall, finish, no_show, pause, resume, sign_in
                    ({"staff": id}), sign_out, transfer ({"to_service": id}), rate ({"value": n,
                    "reasons": [code, ...], "channel": "tablet"}: a software pad sends a
                    差评's follow-up reasons with it); with ``http.window_token`` set, only
                    with ``Authorization: Bearer <token>``
    GET  /ratings/reasons        (window API) the 差评 follow-up reasons a software pad offers:
                    {"reasons": [{"number": 1, "code": "attitude", "label": "服务态度不好"}, ...]}
    POST /cases/open             only with ``http.case_hook = true``, with
                    ``Authorization: Bearer <http.case_token>``: the window's business system
                    opened a 办件: {"window": 3, "case_no": "...", "item_code": ..., "item_name":
                    ..., "department": ..., "department_name": ...} (the item and department
                    default to the ticket's service) -> {"opened": true|false (already open), ...}
    POST /cases/close            {"window": 3, "case_no": "..."} 办结: the rating pad is offered
                    -> {"closed": true|false (closed before), "rating_offered": bool, ...}

Errors are JSON ``{"error": code, "message": text}`` with their HTTP status
(400 bad JSON, 401 no or wrong window or hook token, 404 unknown service, 405, 413,
422 bad field or an idempotency key reused for another request, 409/503 refused).
Outside the issuing hours (``hours.open`` until ``hours.last_ticket``, default
``close``) ``POST /tickets`` gets 409 ``{"error": "closed", "message":
"今日取号已结束 (...)"}`` or ``"尚未开始取号 08:30 (...)"``, Chinese first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import typing
from collections.abc import Callable
from typing import Any

import h11
import structlog

from edge.errors import CommandRejected, HttpError, JournalError
from edge.hall import Hall
from edge.kiosk import TicketAnswer, TicketDesk, TicketRequest
from fastpath.types import CLASS_BY_LABEL
from firmware_protocols import mqtt_messages as mm

log = structlog.get_logger(__name__)

MAX_BODY = 16 * 1024
READ_TIMEOUT_S = 30.0
StatusSource = Callable[[], dict[str, Any]]


def _ticket_json(answer: TicketAnswer, progress_url: str | None) -> dict[str, Any]:
    issued = answer.issued
    ticket = issued.ticket
    return {
        "number": ticket.number,
        "service": ticket.service_id,
        "class": ticket.klass.label,
        "people_ahead": issued.people_ahead,
        "wait": None if issued.wait is None else {"p50_s": issued.wait.p50_s,
                                                  "p90_s": issued.wait.p90_s},
        "issued_ts": ticket.issued_ms,
        "seq": issued.event.seq,
        "printed": answer.printed,
        "replayed": answer.replayed,
        "progress_url": progress_url,
    }


def _header(request: h11.Request, name: bytes) -> str | None:
    """A request header's value (h11 gives names lower-cased), None when absent."""
    for key, value in request.headers:
        if key == name:
            return value.decode("ascii", "replace")
    return None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpError(400, "bad_json", f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HttpError(422, "bad_field", "body must be a JSON object")
    return data


def _field(data: dict[str, Any], name: str, kind: type[Any]) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise HttpError(422, "bad_field", f"{name}: a {kind.__name__} is required")
    return value


def _optional_text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise HttpError(422, "bad_field", f"{name}: a string or null")
    return value or None


def _only(data: dict[str, Any], *names: str) -> None:
    unknown = set(data) - set(names)
    if unknown:
        raise HttpError(422, "bad_field", f"unknown field(s): {', '.join(sorted(unknown))}")


CHANNELS: tuple[str, ...] = typing.get_args(mm.RatingChannel)


class HttpApi:
    """Serves the kiosk API on ``host:port``; ``port=0`` picks a free one (see :attr:`port`)."""

    def __init__(self, hall: Hall, desk: TicketDesk, *, status: StatusSource,
                 host: str = "127.0.0.1", port: int = 8180, window_api: bool = False,
                 window_token: str | None = None, case_token: str | None = None,
                 beat: Callable[[], None] = lambda: None) -> None:
        self.hall = hall
        self.desk = desk
        self.status = status
        self.host = host
        self.port = port
        self.beat = beat
        self.window_api = window_api
        self._window_token = window_token
        self._case_token = case_token  # the business system's hook: on with its token only
        self._server: asyncio.Server | None = None
        self.listening = asyncio.Event()

    async def run(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("http.listening", host=self.host, port=self.port)
        self.listening.set()
        try:
            async with self._server:
                await self._server.serve_forever()
        finally:
            self._server = None
            self.listening.clear()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_BODY)
        try:
            while True:
                request, body = await self._read_request(conn, reader)
                if request is None:
                    return
                status, payload = await self._dispatch(request, body)
                await self._send(conn, writer, status, payload)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (h11.RemoteProtocolError, HttpError) as exc:
            status = exc.status if isinstance(exc, HttpError) else (exc.error_status_hint or 400)
            code = exc.code if isinstance(exc, HttpError) else "bad_request"
            with contextlib.suppress(h11.LocalProtocolError, OSError):
                await self._send(conn, writer, status, {"error": code, "message": str(exc)})
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader
                            ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                async with asyncio.timeout(READ_TIMEOUT_S):
                    data = await reader.read(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise HttpError(413, "too_large", f"body above {MAX_BODY} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int,
                    payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        headers = [("content-type", "application/json; charset=utf-8"),
                   ("content-length", str(len(data)))]
        if conn.their_state is h11.ERROR or conn.our_state is h11.MUST_CLOSE:
            headers.append(("connection", "close"))
        writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
        writer.write(conn.send(h11.Data(data=data)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()

    async def _dispatch(self, request: h11.Request, body: bytes) -> tuple[int, dict[str, Any]]:
        self.beat()
        method = request.method.decode("ascii", "replace")
        path = request.target.decode("ascii", "replace").split("?", 1)[0]
        try:
            if path == "/tickets":
                if method != "POST":
                    raise HttpError(405, "method", "use POST /tickets")
                return 201, await self._post_ticket(body, _header(request, b"idempotency-key"))
            if path == "/bookings/check_in":
                if method != "POST":
                    raise HttpError(405, "method", "use POST /bookings/check_in")
                return 201, await self._check_in(body, _header(request, b"idempotency-key"))
            if path == "/status":
                if method != "GET":
                    raise HttpError(405, "method", "use GET /status")
                return 200, self.status()
            if path.startswith("/windows/") and self.window_api:
                if method != "POST":
                    raise HttpError(405, "method", "use POST /windows/{n}/{action}")
                self._authorise(request, self._window_token, "the window API")
                return 200, self._window_action(path, body)
            if path == "/ratings/reasons" and self.window_api:
                if method != "GET":
                    raise HttpError(405, "method", "use GET /ratings/reasons")
                self._authorise(request, self._window_token, "the window API")
                return 200, self._reasons()
            if path in ("/cases/open", "/cases/close") and self._case_token is not None:
                if method != "POST":
                    raise HttpError(405, "method", f"use POST {path}")
                self._authorise(request, self._case_token, "the business system's hook")
                return 200, self._case_action(path, _json_object(body))
            raise HttpError(404, "not_found", f"no resource {path}")
        except HttpError as exc:
            return exc.status, {"error": exc.code, "message": str(exc)}
        except CommandRejected as exc:
            return exc.status, {"error": exc.code, "message": str(exc)}
        except JournalError as exc:  # e.g. the disk is full: nothing was issued or changed
            log.error("http.journal_error", path=path, error=str(exc))
            return 503, {"error": "journal", "message": f"暂停取号 cannot record: {exc}"}

    @staticmethod
    def _authorise(request: h11.Request, token: str | None, what: str) -> None:
        if token is None:
            return
        given = _header(request, b"authorization") or ""
        expected = f"Bearer {token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise HttpError(401, "unauthorised", f"{what} needs its bearer token")

    def _reasons(self) -> dict[str, Any]:
        return {"reasons": [{"number": number, "code": reason.code, "label": reason.label}
                            for number, reason in enumerate(self.hall.config.ratings.reasons, 1)]}

    def _case_action(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        hall = self.hall
        window = _field(data, "window", int)
        if path == "/cases/open":
            _only(data, "window", "case_no", "item_code", "item_name", "department",
                  "department_name")
            event = hall.open_case(
                window, _field(data, "case_no", str), source="hook",
                item_code=_optional_text(data, "item_code"),
                item_name=_optional_text(data, "item_name"),
                department=_optional_text(data, "department"),
                department_name=_optional_text(data, "department_name"))
            case = hall.case_at(window)
            return {"window": window, "case_no": None if case is None else case.no,
                    "opened": event is not None,
                    "item_code": None if case is None else case.item_code,
                    "ticket": hall.dispatcher.window(window).current,
                    "seq": hall.journal.last_seq}
        _only(data, "window", "case_no")
        case_no = _optional_text(data, "case_no")
        event = hall.close_case(window, case_no)
        offer = hall.pending_rating(window)
        offered = event is not None and offer is not None and offer.seq == event.seq
        return {"window": window, "case_no": case_no, "closed": event is not None,
                "rating_offered": offered, "seq": hall.journal.last_seq}

    def _window_action(self, path: str, body: bytes) -> dict[str, Any]:
        parts = path.split("/")
        if len(parts) != 4 or not parts[2].isdigit():
            raise HttpError(404, "not_found", f"no resource {path}")
        window, action = int(parts[2]), parts[3]
        data = _json_object(body) if body else {}
        hall = self.hall
        ticket = None
        if action == "next":
            ticket = hall.call_next(window)
        elif action in ("recall", "finish", "no_show", "start_serving"):
            ticket = getattr(hall, action)(window)
        elif action == "transfer":
            ticket = hall.transfer(window, _field(data, "to_service", str))
        elif action in ("pause", "resume", "sign_out"):
            getattr(hall, action)(window)
        elif action == "sign_in":
            hall.sign_in(window, _field(data, "staff", str))
        elif action == "rate":
            _only(data, "value", "reasons", "channel")
            reasons = data.get("reasons", [])
            if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
                raise HttpError(422, "bad_field", "reasons: a list of reason codes")
            channel = data.get("channel", "tablet")
            if channel not in CHANNELS:
                raise HttpError(422, "bad_field", f"channel: one of {', '.join(CHANNELS)}")
            hall.rate(window, _field(data, "value", int), reasons=tuple(reasons),
                      channel=channel)
        else:
            raise HttpError(404, "not_found", f"unknown window action {action!r}")
        return {"window": window, "action": action,
                "ticket": None if ticket is None else ticket.number, "seq": hall.journal.last_seq}

    async def _post_ticket(self, body: bytes, key: str | None) -> dict[str, Any]:
        data = _json_object(body)
        unknown = set(data) - {"service", "class", "booked_ts", "print"}
        if unknown:
            raise HttpError(422, "bad_field", f"unknown field(s): {', '.join(sorted(unknown))}")
        service = data.get("service")
        if not isinstance(service, str):
            raise HttpError(422, "bad_field", "service: a service id string is required")
        klass_name = data.get("class", "normal")
        if klass_name not in CLASS_BY_LABEL:
            raise HttpError(422, "bad_field", f"class: one of {', '.join(CLASS_BY_LABEL)}")
        booked = data.get("booked_ts")
        if booked is not None and (not isinstance(booked, int) or isinstance(booked, bool)):
            raise HttpError(422, "bad_field", "booked_ts: unix milliseconds or null")
        print_it = data.get("print", False)
        if not isinstance(print_it, bool):
            raise HttpError(422, "bad_field", "print: true or false")
        answer = await self.desk.take(TicketRequest(service, CLASS_BY_LABEL[klass_name], "kiosk",
                                                    booked, print_it, key))
        return _ticket_json(answer, self.hall.progress_url(answer.issued.ticket.number))

    async def _check_in(self, body: bytes, key: str | None) -> dict[str, Any]:
        data = _json_object(body)
        _only(data, "code", "print")
        code = data.get("code")
        if not isinstance(code, str):
            raise HttpError(422, "bad_field", "code: the booking code, a string of 10 digits")
        print_it = data.get("print", False)
        if not isinstance(print_it, bool):
            raise HttpError(422, "bad_field", "print: true or false")
        answer = await self.desk.check_in(code, print_it=print_it, key=key)
        return _ticket_json(answer, self.hall.progress_url(answer.issued.ticket.number))


__all__ = ["MAX_BODY", "HttpApi", "HttpError"]

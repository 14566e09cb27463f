"""A fake provincial 好差评 platform (no test here): a real HTTP server in a thread.

It checks what such platforms check — the app key, a timestamp within five minutes,
a nonce never seen before, the HMAC-SHA256 signature over
``app_key \\n timestamp \\n nonce \\n sha256_hex(body)`` — computed here on its own,
not with the central's function, so a mistake in one is not hidden by the other. Per
record it answers 0 (taken; again 0 for an ``evaluationId`` it already holds), 1001
重复评价 for a second evaluation of a 办件, 2001 for a record without ``projectNo`` or
``areaCode``. ``fail_next`` makes the next requests answer HTTP 500, ``delay_s`` holds
every answer (a timeout), ``requests`` keeps every request as received.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

APP_KEY = "zs-onedoor"
APP_SECRET = "s3cret-of-the-province-0123456789"
SKEW_MS = 300_000


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    answer: dict[str, Any] | None

    @property
    def records(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = json.loads(self.body)["records"]
        return records


@dataclass
class FakeProvince:
    fail_next: int = 0
    delay_s: float = 0.0
    requests: list[Request] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # evaluationId -> record
    rated_cases: dict[str, str] = field(default_factory=dict)  # projectNo -> evaluationId
    nonces: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                return 500, {"code": 500, "msg": "internal error"}
            refusal = self._check_signature(headers, body)
            if refusal is not None:
                return 200, refusal
            results = [self._take(record) for record in json.loads(body)["records"]]
            return 200, {"code": 0, "msg": "ok", "results": results}

    def _check_signature(self, headers: dict[str, str], body: bytes) -> dict[str, Any] | None:
        key, stamp = headers.get("x-app-key", ""), headers.get("x-timestamp", "")
        nonce, given = headers.get("x-nonce", ""), headers.get("x-signature", "")
        if key != APP_KEY:
            return {"code": 4010, "msg": "unknown app key"}
        if not stamp.isdigit() or abs(int(stamp) - time.time() * 1000) > SKEW_MS:
            return {"code": 4012, "msg": "timestamp out of range"}
        if len(nonce) != 32 or nonce in self.nonces:
            return {"code": 4013, "msg": "nonce reused"}
        digest = hashlib.sha256(body).hexdigest()
        expected = hmac.new(APP_SECRET.encode(), f"{key}\n{stamp}\n{nonce}\n{digest}".encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            return {"code": 4011, "msg": "signature mismatch"}
        self.nonces.add(nonce)
        return None

    def _take(self, record: dict[str, Any]) -> dict[str, Any]:
        key = record["evaluationId"]
        if key in self.accepted:
            return {"evaluationId": key, "code": 0, "msg": "已接收"}
        if not record["projectNo"] or not record["areaCode"]:
            return {"evaluationId": key, "code": 2001, "msg": "projectNo and areaCode required"}
        holder = self.rated_cases.get(record["projectNo"])
        if holder is not None:
            return {"evaluationId": key, "code": 1001, "msg": f"重复评价 (held by {holder})"}
        self.accepted[key] = record
        self.rated_cases[record["projectNo"]] = key
        return {"evaluationId": key, "code": 0, "msg": "成功"}


class _Handler(BaseHTTPRequestHandler):
    province: FakeProvince

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.province.delay_s:
            time.sleep(self.province.delay_s)
        status, answer = self.province.answer(headers, body)
        self.province.requests.append(Request(headers, body, answer if status == 200 else None))
        data = json.dumps(answer, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (a timeout under test)
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeProvinceServer:
    """``with FakeProvinceServer() as server: server.url, server.province``."""

    def __init__(self) -> None:
        self.province = FakeProvince()
        handler = type("Handler", (_Handler,), {"province": self.province})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/hcp/evaluations"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-province",
                                        daemon=True)

    def __enter__(self) -> FakeProvinceServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

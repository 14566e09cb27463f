"""Fake 企业微信 and 钉钉 group robots: real HTTP servers on loopback that check what they get.

They answer as the real robots do (HTTP 200 and ``{"errcode": ..., "errmsg": ...}``):

* WeCom ``POST /cgi-bin/webhook/send?key=KEY``: the key must match (else 93000),
  the body must be a markdown message with ``content`` of at most 4096 bytes
  (else 40058), at most ``limit`` messages per ``period_s`` (else 45009).
* DingTalk ``POST /robot/send?access_token=TOKEN[&timestamp=..&sign=..]``: the
  token must match (else 300001); a robot with a secret (加签) checks the
  timestamp (within an hour of its clock) and recomputes the signature as
  DingTalk documents it — base64(HMAC-SHA256(key=secret, "timestamp\\nsecret")),
  URL-encoded — else 310000 "sign not match"; markdown needs ``title`` and
  ``text``; past ``limit`` per ``period_s``, 130101.

``script`` lists answers to give instead, in order (``(http_status, errcode)``),
for the retry tests. ``messages`` holds every message the robot took; ``requests``
every request with the time it came.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeRobot:
    kind: str  # "wecom" | "dingtalk"
    credential: str  # the WeCom key / the DingTalk access_token
    secret: str = ""  # DingTalk signing secret
    limit: int = 20
    period_s: float = 60.0
    url: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[float, str, bytes]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _taken: list[float] = field(default_factory=list)

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        now = time.monotonic()
        with self.lock:
            self.requests.append((now, path, body))
            if self.script:
                status, errcode = self.script.pop(0)
                answer = {"errcode": errcode, "errmsg": "scripted" if errcode else "ok"}
                if errcode == 0 and status == 200:
                    self.messages.append(json.loads(body))
                return status, answer
            errcode, errmsg = self._check(path, headers, body, now)
            if errcode == 0:
                self.messages.append(json.loads(body))
                self._taken.append(now)
            answer = {"errcode": errcode, "errmsg": errmsg}
            self.answers.append(answer)
            return 200, answer

    def _check(self, path: str, headers: dict[str, str], body: bytes,
               now: float) -> tuple[int, str]:  # fmt: skip
        parts = urllib.parse.urlsplit(path)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        if not headers.get("Content-Type", "").startswith("application/json"):
            return 40008, "invalid message type"
        try:
            message = json.loads(body)
        except ValueError:
            return 40035, "invalid json"
        if self.kind == "wecom":
            if parts.path != "/cgi-bin/webhook/send" or query.get("key") != self.credential:
                return 93000, "invalid webhook url"
            content = message.get("markdown", {}).get("content")
            if message.get("msgtype") != "markdown" or not isinstance(content, str):
                return 40008, "invalid message type"
            if len(content.encode("utf-8")) > 4096:
                return 40058, "markdown.content exceed max length 4096"
            limited = 45009, "api freq out of limit"
        else:
            if parts.path != "/robot/send" or query.get("access_token") != self.credential:
                return 300001, "token is not exist"
            if self.secret:
                stamp = query.get("timestamp", "")
                if not stamp.isdigit() or abs(time.time() * 1000 - int(stamp)) > 3_600_000:
                    return 310000, "invalid timestamp"
                digest = hmac.new(self.secret.encode(), f"{stamp}\n{self.secret}".encode(),
                                  hashlib.sha256).digest()  # fmt: skip
                # parse_qsl decoded the URL-encoding once: compare with the plain base64
                if query.get("sign") != base64.b64encode(digest).decode():
                    return 310000, "sign not match"
                if "%" not in parts.query.split("sign=", 1)[1]:
                    return 310000, "sign not match"  # '+' '/' '=' must arrive URL-encoded
            markdown = message.get("markdown", {})
            if message.get("msgtype") != "markdown" or not markdown.get("title") or not \
                    markdown.get("text"):  # fmt: skip
                return 40035, "缺少参数 markdown.title or markdown.text"
            limited = 130101, "send too fast, exceed 20 times per minute"
        self._taken[:] = [t for t in self._taken if t > now - self.period_s]
        if len(self._taken) >= self.limit:
            return limited
        return 0, "ok"

    def contents(self) -> list[str]:
        """What the group shows: WeCom's content, DingTalk's text."""
        key = "content" if self.kind == "wecom" else "text"
        return [m["markdown"][key] for m in self.messages]


@contextmanager
def robot_server(*robots: FakeRobot) -> Iterator[tuple[FakeRobot, ...]]:
    """One loopback server for the robots (WeCom by key, DingTalk by access token)."""

    def find(path: str) -> FakeRobot | None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
        for robot in robots:
            if robot.credential in (query.get("key"), query.get("access_token")):
                return robot
        return robots[0] if robots else None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            robot = find(self.path)
            status, answer = (404, {"errcode": 404, "errmsg": "no such robot"}) if robot is None \
                else robot.answer(self.path, dict(self.headers.items()), body)  # fmt: skip
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    for robot in robots:
        robot.url = (f"{base}/cgi-bin/webhook/send?key={robot.credential}" if robot.kind == "wecom"
                     else f"{base}/robot/send?access_token={robot.credential}")  # fmt: skip
    thread = threading.Thread(target=server.serve_forever, name="fake-robots", daemon=True)
    thread.start()
    try:
        yield robots
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

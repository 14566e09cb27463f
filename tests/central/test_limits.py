"""The central's bounds on its HTTP callers, against a real ``onedoor central run`` process.

One real central (uvicorn, SQLite, the session's Mosquitto) serves every test
here over real sockets: body caps before authentication (with the process's
peak RSS measured), the login rate limit and login CSRF, live streams per
session, the Host allowlist, and commands per site. Tokens are made in the
central's database; client addresses are told apart with ``X-Forwarded-For``,
which uvicorn takes from a proxy on 127.0.0.1, as behind the deploy's nginx.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from central.auth import Role, TokenStore
from central.db import make_engine, session_factory
from central.limits import host_allowed
from tests.reliability.harness import CentralProcess, prepare_central_db, wait_until
from tests.servers import MosquittoBroker

SITES = ["lim-a", "lim-b"]
FLOOD_BYTES = 64 * 1024 * 1024
FLOOD_PARALLEL = 8
RSS_GROWTH_LIMIT_MIB = 48
"""Peak RSS growth allowed for the whole flood (8 x 64 MiB; it was ~1.4 GiB before the cap)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def detail(self) -> str:
        detail: str = json.loads(self.body)["detail"]
        return detail


@dataclass
class Central:
    process: CentralProcess
    tokens: dict[Role, str]

    @property
    def port(self) -> int:
        return self.process.http_port

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Answer:  # fmt: skip
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()

    def bearer(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def login(self, role: Role, client: str) -> str:
        """A session cookie for ``role``, logging in from address ``client``."""
        response = self.request("POST", "/login", f"token={self.tokens[role]}".encode(),
                                {"Content-Type": "application/x-www-form-urlencoded",
                                 "X-Forwarded-For": client})  # fmt: skip
        assert response.status == 303, response.body
        cookie = response.header("set-cookie") or ""
        return cookie.split(";", 1)[0]


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory,
            mqtt_broker: MosquittoBroker) -> Iterator[Central]:  # fmt: skip
    workdir = tmp_path_factory.mktemp("limits")
    url = f"sqlite:///{workdir / 'central.db'}"
    prepare_central_db(url, workdir, SITES)
    engine = make_engine(url)
    store = TokenStore(session_factory(engine))
    tokens = {role: store.create(role, f"limits {role.value}")[1] for role in Role}
    engine.dispose()
    process = CentralProcess(
        workdir, url, mqtt_broker.port,
        http_allowed_hosts="127.0.0.1, localhost, onedoor.zs.example.cn",
        login_attempts_per_min=1, login_attempts_burst=5,
        sse_streams_per_session=2, command_limit_per_site=3, command_limit_window_s=600,
    )  # fmt: skip
    process.start()
    try:
        wait_until(lambda: _answers(process.http_port), 60, "the central's HTTP port")
        yield Central(process, tokens)
    finally:
        process.stop()


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def _flood(port: int, path: str, results: list[str]) -> None:
    """Send one unauthenticated POST declaring 64 MiB and push the body until answered."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {FLOOD_BYTES}\r\n\r\n").encode()  # fmt: skip
    chunk = b"x" * (1024 * 1024)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        sent = 0
        try:
            while sent < FLOOD_BYTES:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:  # answered (or closed) before the body went out
                    break
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:  # the server closed the connection on us: it will not read more
            pass
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    results.append(answer.split(b"\r\n", 1)[0].decode("latin-1"))


def test_huge_unauthenticated_bodies_are_refused_before_they_are_read(central: Central) -> None:
    before = _peak_rss_kib(central.process.process.pid)  # type: ignore[union-attr]
    results: list[str] = []
    paths = ["/login", "/api/v1/tokens", "/api/v1/sites/lim-a/commands", "/no-such-route"]
    threads = [threading.Thread(target=_flood, args=(central.port, paths[i % 4], results))
               for i in range(FLOOD_PARALLEL)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    growth_mib = (_peak_rss_kib(central.process.process.pid) - before) / 1024  # type: ignore[union-attr]
    assert results == ["HTTP/1.1 413 Request Entity Too Large"] * FLOOD_PARALLEL, results
    assert growth_mib < RSS_GROWTH_LIMIT_MIB, f"peak RSS grew {growth_mib:.0f} MiB"
    # The process still serves, and a body within the limit is read as before.
    padded = b"token=od_00000000_" + b"x" * 43 + b"&pad=" + b"p" * 60_000
    response = central.request("POST", "/login", padded, {
        "Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": "198.51.100.9"})
    assert response.status == 401  # read and checked: a wrong token, not a refused body


def test_a_chunked_body_over_the_limit_is_refused(central: Central) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", central.port, timeout=30)
    # 65 KiB without a Content-Length: just over the limit, so the server reads it all
    # (a connection closed on unread bytes may be reset before the answer is read).
    chunks = (b"x" * 1024 for _ in range(65))
    try:
        connection.request("POST", "/api/v1/tokens", body=chunks, encode_chunked=True,
                           headers={"Content-Type": "application/json"})  # fmt: skip
        response = connection.getresponse()
        assert response.status == 413
        assert "http_max_body_bytes" in json.loads(response.read())["detail"]
    finally:
        connection.close()


def test_unknown_hosts_get_400(central: Central) -> None:
    evil = central.request("GET", "/healthz", headers={"Host": "evil.example"})
    assert evil.status == 400
    assert "unknown host 'evil.example'" in evil.detail()
    for host in ("onedoor.zs.example.cn", "localhost:8443", f"127.0.0.1:{central.port}"):
        assert central.request("GET", "/healthz", headers={"Host": host}).status == 200, host


def test_login_is_rate_limited_per_client_address(central: Central) -> None:
    wrong = b"token=od_00000000_" + b"x" * 43
    form = {"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": "203.0.113.7"}
    statuses = [central.request("POST", "/login", wrong, form).status for _ in range(5)]
    assert statuses == [401] * 5  # the burst: wrong tokens, answered as such
    throttled = central.request("POST", "/login", wrong, form)
    assert throttled.status == 429
    assert 1 <= int(throttled.header("Retry-After") or 0) <= 60
    assert "登录尝试过多" in throttled.body.decode()
    # Throttled, even the right token waits; another address is not affected.
    right = f"token={central.tokens[Role.VIEWER]}".encode()
    assert central.request("POST", "/login", right, form).status == 429
    assert central.login(Role.VIEWER, client="203.0.113.8").startswith("onedoor_session=")


def test_login_from_another_site_is_refused(central: Central) -> None:
    right = f"token={central.tokens[Role.ADMIN]}".encode()
    base = {"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": "192.0.2.1"}
    for attack in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                   {"Origin": "null"}):  # fmt: skip
        response = central.request("POST", "/login", right, {**base, **attack})
        assert response.status == 403, attack
        assert response.header("set-cookie") is None
        assert "another site" in response.detail()
    own = {**base, "Origin": f"http://127.0.0.1:{central.port}", "Sec-Fetch-Site": "same-origin"}
    assert central.request("POST", "/login", right, own).status == 303


class Stream:
    """A ``/live/fleet`` request held open like a dashboard tab."""

    def __init__(self, central: Central, cookie: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", central.port, timeout=30)
        self.connection.request("GET", "/live/fleet", headers={"Cookie": cookie})
        self.response = self.connection.getresponse()
        self.status = self.response.status

    def close(self) -> None:
        self.response.close()
        self.connection.close()


def test_live_streams_are_capped_per_session(central: Central) -> None:
    cookie = central.login(Role.VIEWER, client="192.0.2.20")
    streams = [Stream(central, cookie), Stream(central, cookie)]
    try:
        assert [s.status for s in streams] == [200, 200]
        assert streams[0].response.readline() == b"retry: 2000\n"
        streams.append(Stream(central, cookie))
        assert streams[-1].status == 429
        assert "sse_streams_per_session" in json.loads(streams[-1].response.read())["detail"]
        streams.append(Stream(central, central.login(Role.VIEWER, client="192.0.2.21")))
        assert streams[-1].status == 200  # another session has its own allowance
        streams[0].close()  # a closed tab frees its stream

        def reopen() -> bool:
            streams.append(Stream(central, cookie))
            return streams[-1].status == 200

        wait_until(reopen, 30, "a freed stream")
    finally:
        for stream in streams:
            stream.close()


def test_commands_are_rate_limited_per_site(central: Central) -> None:
    body = json.dumps({"name": "screen_notice", "ttl_s": 60,
                       "args": {"text": "系统维护", "screen": None, "duration_s": 60}}).encode()
    headers = {**central.bearer(Role.OPERATOR), "Content-Type": "application/json"}
    sent = [central.request("POST", "/api/v1/sites/lim-a/commands", body, headers).status
            for _ in range(3)]  # fmt: skip
    assert sent == [202, 202, 202]
    refused = central.request("POST", "/api/v1/sites/lim-a/commands", body, headers)
    assert refused.status == 429
    assert 1 <= int(refused.header("Retry-After") or 0) <= 600
    assert "command_limit_per_site" in refused.detail()
    listing = central.request("GET", "/api/v1/sites/lim-a/commands", headers=headers)
    assert len(json.loads(listing.body)["commands"]) == 3  # the refused one was not recorded
    other = central.request("POST", "/api/v1/sites/lim-b/commands", body, headers)
    assert other.status == 202


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("onedoor.zs.example.cn", True),
        ("ONEDOOR.zs.example.cn:443", True),
        ("town.example.cn", True),  # *.example.cn
        ("example.cn.evil.example", False),
        ("[::1]:8080", True),
        ("::1", True),
        ("", False),
        ("evil.example", False),
    ],
)
def test_host_allowlist_entries(host: str, allowed: bool) -> None:
    entries = ("onedoor.zs.example.cn", "*.example.cn", "::1")
    assert host_allowed(host, entries) is allowed
    assert host_allowed(host or "x", ("*",))

"""Named accounts: scrypt passwords, the rules, sessions that expire (idle and absolute) or end
(logout, disable, a new password), logins through the real app, the audit of each, the CLI."""

from __future__ import annotations

import argparse
import base64
import io
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from central.accounts import SessionStore, UserStore, hash_password, verify_password
from central.auth import SESSION_COOKIE, Role, TokenStore
from central.cli import register_cli
from central.errors import Conflict, InvalidRequest, Unauthenticated
from central.models import LoginSession, User
from central.queries import ReadModel
from tests.central.test_api_support import RunningApp, running_app
from tests.servers import MosquittoBroker

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
PASSWORD = "Sanxiang-2026-pw"


def test_passwords_are_scrypt_and_salted() -> None:
    stored = hash_password(PASSWORD)
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert (len(base64.b64decode(salt)), len(base64.b64decode(digest))) == (16, 32)
    assert PASSWORD not in stored
    assert hash_password(PASSWORD) != stored  # a salt of its own
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + "x", stored)
    assert not verify_password(PASSWORD, "md5$whatever")
    assert not verify_password(PASSWORD, "scrypt$garbage")


@pytest.fixture
def users(small_registry: sessionmaker[Session]) -> UserStore:
    return UserStore(small_registry)


@pytest.mark.parametrize(
    ("username", "password", "towns", "message"),
    [
        ("Li Ming", PASSWORD, None, "login name"),
        ("li.ming", "short-1", None, "at least 10"),
        ("li.ming", "xx-li.ming-xx", None, "login name"),
        ("li.ming", "aaaaaaaaaaaa", None, "different characters"),
        ("li.ming", PASSWORD, ["三乡"], "三乡"),  # a typo of 三乡镇: no site is there
        ("li.ming", PASSWORD, [], "at least one town"),
    ],
)
def test_account_rules(users: UserStore, username: str, password: str, towns: list[str] | None,
                       message: str) -> None:  # fmt: skip
    with pytest.raises(InvalidRequest, match=message):
        users.create(username, "李明", Role.OPERATOR, towns, password, now=NOW)


def test_create_authenticate_and_keep_an_admin(users: UserStore) -> None:
    admin = users.create("ops-chen", "陈工", Role.ADMIN, None, PASSWORD, now=NOW)
    town = users.create("Li.Ming", "李明", "operator", ["三乡镇"], PASSWORD, now=NOW)
    assert town.username == "li.ming"
    with pytest.raises(Conflict, match="taken"):
        users.create("li.ming", "另一个", Role.VIEWER, None, PASSWORD, now=NOW)
    principal = users.authenticate("LI.MING ", PASSWORD, now=NOW)
    assert (principal.id, principal.name, principal.role) == (f"user:{town.id}", "li.ming",
                                                               Role.OPERATOR)  # fmt: skip
    assert principal.towns == frozenset({"三乡镇"})
    assert users.get("li.ming").last_login_at == NOW
    for name, password in (("li.ming", "wrong-password"), ("nobody", PASSWORD), ("", "")):
        with pytest.raises(Unauthenticated):
            users.authenticate(name, password, now=NOW)
    # the last enabled city-wide admin stays one
    for change in (lambda: users.set_enabled("ops-chen", False, now=NOW),
                   lambda: users.update("ops-chen", role=Role.OPERATOR, now=NOW),
                   lambda: users.update("ops-chen", towns=["三乡镇"], now=NOW)):  # fmt: skip
        with pytest.raises(Conflict, match="last"):
            change()
    users.create("ops-wu", "吴工", Role.ADMIN, None, PASSWORD, now=NOW)
    assert not users.set_enabled("ops-chen", False, now=NOW).enabled
    with pytest.raises(Unauthenticated):
        users.authenticate("ops-chen", PASSWORD, now=NOW)
    assert admin.username == "ops-chen"


def test_sessions_expire_idle_and_absolute_and_end(small_registry: sessionmaker[Session]) -> None:
    users = UserStore(small_registry)
    users.create("li.ming", "李明", Role.VIEWER, ["三乡镇"], PASSWORD, now=NOW)
    store = SessionStore(small_registry, TokenStore(small_registry), idle_s=1800, max_s=8 * 3600)
    principal = users.authenticate("li.ming", PASSWORD, now=NOW)

    def start() -> str:
        return store.start(principal, "10.1.2.3", now=NOW)[0]

    # idle: each request within 30 minutes keeps it; 30 minutes of nothing ends it
    idle = start()
    at = NOW
    for _ in range(10):
        at += timedelta(minutes=29)
        assert store.principal(idle, now=at).name == "li.ming"
    with pytest.raises(Unauthenticated, match="idle"):
        store.principal(idle, now=at + timedelta(minutes=30))
    # absolute: 8 hours after the login, however busy
    busy = start()
    at = NOW
    while at < NOW + timedelta(hours=8) - timedelta(minutes=10):
        at += timedelta(minutes=10)
        store.principal(busy, now=at)
    with pytest.raises(Unauthenticated, match="expired"):
        store.principal(busy, now=NOW + timedelta(hours=8))
    # logout ends one; a new password and a disable end all of the user's
    first, second, third = start(), start(), start()
    store.end(first, now=NOW)
    with pytest.raises(Unauthenticated, match="logged out"):
        store.principal(first, now=NOW)
    store.principal(second, now=NOW)
    users.set_password("li.ming", "Another-pass-2026", now=NOW)
    for ended in (second, third):
        with pytest.raises(Unauthenticated):
            store.principal(ended, now=NOW)
    fourth = store.start(users.authenticate("li.ming", "Another-pass-2026", now=NOW), "x",
                         now=NOW)[0]  # fmt: skip
    users.create("ops-chen", "陈工", Role.ADMIN, None, PASSWORD, now=NOW)
    users.set_enabled("li.ming", False, now=NOW)
    with pytest.raises(Unauthenticated):
        store.principal(fourth, now=NOW)
    # role and towns changes apply at the next request, without a new login
    users.set_enabled("li.ming", True, now=NOW)
    fifth = store.start(users.authenticate("li.ming", "Another-pass-2026", now=NOW), "x",
                        now=NOW)[0]  # fmt: skip
    users.update("li.ming", towns=None, role=Role.OPERATOR, now=NOW)
    changed = store.principal(fifth, now=NOW)
    assert (changed.role, changed.towns) == (Role.OPERATOR, None)


# --------------------------------------------------------------------------- the real app


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory,
        mqtt_broker: MosquittoBroker) -> Iterator[RunningApp]:  # fmt: skip
    with running_app(tmp_path_factory.mktemp("accounts"), mqtt_broker) as running:
        yield running


def _audit(env: RunningApp, limit: int = 5) -> list[tuple[str, str, str]]:
    entries = env.central.read.audit(limit=limit)
    return [(e.action, e.actor, e.target) for e in entries]


def test_login_with_a_named_user_and_its_audit(env: RunningApp) -> None:
    password = env.add_user("li.ming", Role.OPERATOR, ["三乡镇"], name="李明")
    assert env.login_user("li.ming", "not-the-password", expect=401).count("登录名或密码错误") == 1
    assert env.login_user("li.ming", password) == "/"
    page = env.client.get("/")
    assert page.status_code == 200
    assert "李明 · 运维 · 三乡镇" in page.text
    me = env.client.get("/api/v1/me").json()
    assert me == {"id": me["id"], "name": "li.ming", "display_name": "李明", "role": "operator",
                  "towns": ["三乡镇"]}  # fmt: skip
    env.client.post("/logout")
    assert env.client.get("/api/v1/me").status_code == 401  # the session row ended
    assert _audit(env, 3) == [("auth.logout", "li.ming", me["id"]),
                              ("auth.login", "li.ming", me["id"]),
                              ("auth.login_failed", "li.ming", "li.ming")]  # fmt: skip
    (logout,) = env.central.read.audit(action="auth.logout", limit=1)
    assert (logout.actor_id, logout.role, logout.source) == (me["id"], "operator", "testclient")


def test_a_stolen_cookie_is_dead_after_logout(env: RunningApp) -> None:
    password = env.add_user("wang.fang", Role.VIEWER)
    env.login_user("wang.fang", password)
    cookie = env.client.cookies[SESSION_COOKIE]
    env.client.post("/logout")
    env.client.cookies.set(SESSION_COOKIE, cookie)
    assert env.client.get("/", follow_redirects=False).status_code == 303
    env.client.cookies.clear()


def test_an_idle_session_needs_a_new_login(env: RunningApp) -> None:
    password = env.add_user("zhao.lei", Role.VIEWER)
    env.login_user("zhao.lei", password)
    assert env.client.get("/alarms").status_code == 200
    with env.central.sessions.begin() as session:  # 31 minutes without a request
        session.execute(update(LoginSession).values(
            last_seen_at=datetime.now(UTC) - timedelta(minutes=31)))  # fmt: skip
    response = env.client.get("/alarms", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/alarms"
    env.client.cookies.clear()


def test_admins_manage_accounts_through_the_api_and_it_is_audited(env: RunningApp) -> None:
    admin = env.headers(Role.ADMIN)
    created = env.client.post("/api/v1/users", headers=admin, json={
        "username": "chen.jing", "display_name": "陈静", "role": "viewer", "towns": ["三乡镇"],
        "password": "Chen-jing-2026"})  # fmt: skip
    assert created.status_code == 201, created.text
    assert "password" not in created.text.lower().replace("password_changed_at", "")
    changed = env.client.patch("/api/v1/users/chen.jing", headers=admin,
                               json={"role": "operator", "towns": None})  # fmt: skip
    assert (changed.json()["role"], changed.json()["towns"]) == ("operator", None)
    env.login_user("chen.jing", "Chen-jing-2026")
    env.client.cookies.clear()
    assert env.client.post("/api/v1/users/chen.jing/password", headers=admin,
                           json={"password": "short"}).status_code == 422  # fmt: skip
    assert env.client.post("/api/v1/users/chen.jing/password", headers=admin,
                           json={"password": "Chen-jing-2027"}).status_code == 200  # fmt: skip
    disabled = env.client.patch("/api/v1/users/chen.jing", headers=admin, json={"enabled": False})
    assert disabled.json()["enabled"] is False
    env.login_user("chen.jing", "Chen-jing-2027", expect=401)
    entries = env.central.read.audit(target="user:chen.jing")
    assert [(e.action, e.actor) for e in entries] == [
        ("user.disable", "test admin"), ("user.password", "test admin"),
        ("user.update", "test admin"), ("user.create", "test admin")]  # fmt: skip
    assert entries[2].detail == {"role": ["viewer", "operator"], "towns": [["三乡镇"], None]}
    assert "Chen-jing" not in str([e.detail for e in entries])
    # a town's admin may not manage accounts
    password = env.add_user("town.admin", Role.ADMIN, ["三乡镇"])
    env.login_user("town.admin", password)
    refused = env.client.get("/api/v1/users")
    assert refused.status_code == 403
    assert env.client.get("/admin/users").status_code == 403
    env.client.cookies.clear()


def test_own_password_change(env: RunningApp) -> None:
    password = env.add_user("sun.li", Role.VIEWER)
    env.login_user("sun.li", password)
    headers = {"X-Requested-With": "onedoor"}
    wrong = env.client.post("/api/v1/me/password", headers=headers,
                            json={"old_password": "nope", "new_password": "Sun-li-new-2026"})
    assert wrong.status_code == 403
    done = env.client.post("/api/v1/me/password", headers=headers,
                           json={"old_password": password, "new_password": "Sun-li-new-2026"})
    assert done.status_code == 200
    assert env.client.get("/api/v1/me").status_code == 401  # every session ended, this one too
    env.login_user("sun.li", "Sun-li-new-2026")
    env.client.cookies.clear()


def test_token_logins_can_be_turned_off(tmp_path: Path, mqtt_broker: MosquittoBroker) -> None:
    with running_app(tmp_path, mqtt_broker) as env:
        env.login(Role.VIEWER)  # the default: the form takes a token too
        env.client.cookies.clear()
        object.__setattr__(env.central.config, "dashboard_token_login", False)
        refused = env.client.post("/login", data={"token": env.tokens[Role.VIEWER]},
                                  follow_redirects=False)  # fmt: skip
        assert refused.status_code == 401
        assert 'name="token"' not in env.client.get("/login").text


# --------------------------------------------------------------------------- the CLI


def _cli(argv: list[str], stdin: str = "") -> int:
    parser = argparse.ArgumentParser(prog="onedoor")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    saved, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        result: int = args.func(args)
    finally:
        sys.stdin = saved
    return result


def test_cli_creates_the_first_admin_and_manages_users(
    db_url: str, small_registry: sessionmaker[Session], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ONEDOOR_CENTRAL_DATABASE_URL", db_url)
    assert _cli(["central", "user", "create", "--username", "ops-chen", "--name", "陈工",
                 "--role", "admin", "--password-stdin"], stdin=PASSWORD + "\n") == 0  # fmt: skip
    assert _cli(["central", "user", "create", "--username", "li.ming", "--name", "李明",
                 "--role", "operator", "--town", "三乡镇", "--password-stdin"],
                stdin="Li-ming-2026\n") == 0  # fmt: skip
    assert _cli(["central", "user", "set", "li.ming", "--role", "viewer"]) == 0
    assert _cli(["central", "user", "disable", "ops-chen"]) == 2  # the last city-wide admin
    assert _cli(["central", "user", "password", "li.ming", "--password-stdin"],
                stdin="short\n") == 2  # fmt: skip
    assert _cli(["central", "user", "create", "--username", "x.y", "--name", "x", "--role",
                 "viewer"]) == 2  # no terminal and no --password-stdin: refused, nothing made
    capsys.readouterr()
    assert _cli(["central", "user", "list"]) == 0
    listing = [line for line in capsys.readouterr().out.splitlines()
               if not line.startswith("20")]  # not the log lines  # fmt: skip
    assert [line.split()[:3] for line in listing] == [["li.ming", "viewer", "三乡镇"],
                                                      ["ops-chen", "admin", "全市/city"]]
    with small_registry() as session:
        stored = session.scalars(select(User.password_hash)).all()
    assert all(h.startswith("scrypt$") for h in stored)
    actions = [(e.action, e.target, e.source.startswith("cli@"))
               for e in ReadModel(small_registry).audit()]  # fmt: skip
    assert actions == [("user.update", "user:li.ming", True),
                       ("user.create", "user:li.ming", True),
                       ("user.create", "user:ops-chen", True)]  # fmt: skip

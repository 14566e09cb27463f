"""Tokens (hashed, constant-time, revocable), session cookies, the login flow, the CLI."""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.auth import (
    SESSION_COOKIE,
    Forbidden,
    Principal,
    Role,
    SessionSigner,
    TokenStore,
    Unauthenticated,
    api_tokens,
    parse_token,
)
from central.cli import register_cli
from central.db import make_engine, migrate, session_factory
from tests.central.test_api_support import RunningApp, running_app
from tests.servers import MosquittoBroker

SECRET = b"k" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TokenStore]:
    engine = make_engine(f"sqlite:///{tmp_path}/auth.db")
    migrate(engine)
    yield TokenStore(session_factory(engine))
    engine.dispose()


def test_role_order() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR)
    assert Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR)
    assert not Role.OPERATOR.allows(Role.ADMIN)
    with pytest.raises(Forbidden, match="operator needed"):
        Principal("abcd0123", "li", Role.VIEWER).require(Role.OPERATOR)


def test_token_is_stored_hashed_and_verifies(store: TokenStore) -> None:
    info, token = store.create("operator", "ops-li")
    assert token.startswith(f"od_{info.token_id}_")
    principal = store.verify(token)
    assert principal == Principal(info.token_id, "ops-li", Role.OPERATOR, None, "ops-li")
    sessions: sessionmaker[Session] = store._sessions
    with sessions() as session:
        stored = session.execute(select(api_tokens)).one()
    secret = token.split("_", 2)[2]
    assert secret not in str(tuple(stored))
    assert len(stored.secret_sha256) == 64


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Bearer",
        "od_zzzzzzzz_" + "a" * 43,
        "od_0123abcd_short",
        "x" * 500,
        "od_0123abcd_" + "a" * 43,
    ],
)
def test_malformed_or_unknown_tokens_are_refused(store: TokenStore, bad: str) -> None:
    store.create("viewer", "someone")
    with pytest.raises(Unauthenticated):
        store.verify(bad)


def test_wrong_secret_for_a_real_id_is_refused(store: TokenStore) -> None:
    info, token = store.create("admin", "root")
    forged = f"od_{info.token_id}_{'A' * 43}"
    with pytest.raises(Unauthenticated, match="unknown or revoked"):
        store.verify(forged)
    assert parse_token(token)[0] == info.token_id


def test_revoked_token_stops_working(store: TokenStore) -> None:
    info, token = store.create("viewer", "manager-wang")
    assert store.revoke(info.token_id)
    assert not store.revoke(info.token_id)
    with pytest.raises(Unauthenticated):
        store.verify(token)
    with pytest.raises(Unauthenticated):
        store.principal(info.token_id)
    assert store.list()[0].revoked_at is not None


def test_bad_role_or_name_is_refused(store: TokenStore) -> None:
    with pytest.raises(ValueError, match="superuser"):
        store.create("superuser", "x")
    with pytest.raises(ValueError, match="name"):
        store.create("viewer", "  ")


def test_session_cookie_signs_checks_and_expires() -> None:
    signer = SessionSigner(SECRET)
    cookie = signer.sign("0123456789abcdef", 1060.0)
    assert signer.session_id(cookie, now=1059.0) == "0123456789abcdef"
    with pytest.raises(Unauthenticated, match="expired"):
        signer.session_id(cookie, now=1060.0)
    payload, mac = cookie.split(".")
    with pytest.raises(Unauthenticated, match="bad session"):
        signer.session_id(payload + "x." + mac, now=1000.0)
    with pytest.raises(Unauthenticated, match="bad session"):
        SessionSigner(b"o" * 32).session_id(cookie, now=1000.0)
    for garbage in ("", ".", "abc", "a.b.c"):
        with pytest.raises(Unauthenticated):
            signer.session_id(garbage, now=1000.0)
    with pytest.raises(ValueError, match="32 bytes"):
        SessionSigner(b"short")


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, mqtt_broker: MosquittoBroker
) -> Iterator[RunningApp]:
    with running_app(tmp_path_factory.mktemp("auth"), mqtt_broker) as running:
        yield running


def test_login_sets_a_strict_httponly_cookie(env: RunningApp) -> None:
    env.client.cookies.clear()
    response = env.client.post(
        "/login",
        content=f"token={env.tokens[Role.VIEWER]}&next=/alarms",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/alarms"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    assert env.tokens[Role.VIEWER] not in cookie
    assert env.client.get("/alarms").status_code == 200
    logout = env.client.post("/logout", follow_redirects=False)
    assert logout.status_code == 303
    env.client.cookies.clear()


def test_login_with_a_bad_token_shows_an_error(env: RunningApp) -> None:
    env.client.cookies.clear()
    response = env.client.post(
        "/login",
        content="token=od_nope&next=//evil.example/",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert response.status_code == 401
    assert "令牌无效或已撤销" in response.text
    assert 'value="/"' in response.text  # the open redirect was neutralised


def test_login_refuses_open_redirects(env: RunningApp) -> None:
    env.client.cookies.clear()
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil"):
        response = env.client.post(
            "/login",
            content=f"token={env.tokens[Role.VIEWER]}&next={target}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/", target
    env.client.cookies.clear()


def test_forged_cookie_redirects_to_login(env: RunningApp) -> None:
    env.client.cookies.clear()
    env.client.cookies.set(SESSION_COOKIE, "eyJ0aWQiOiIwMTIzYWJjZCJ9.forged")
    response = env.client.get("/", follow_redirects=False)
    assert response.status_code == 303
    env.client.cookies.clear()


def run_cli(argv: list[str]) -> int:
    """``onedoor central ...`` through this package's register_cli.

    Not through ``onedoor.cli.main``: that reconfigures structlog onto the
    current (captured) stderr, which later tests would find closed.
    """
    parser = argparse.ArgumentParser(prog="onedoor")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def test_cli_token_create_prints_the_token_once(tmp_path: Path) -> None:
    config = tmp_path / "central.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path}/cli.db"\n', encoding="utf-8")
    out = io.StringIO()
    with redirect_stdout(out):
        assert (
            run_cli(["central", "token", "create", "--role", "viewer", "--config", str(config)])
            == 0
        )
    token = out.getvalue().strip().splitlines()[-1]  # structlog's default also prints here
    engine = make_engine(f"sqlite:///{tmp_path}/cli.db")
    assert TokenStore(session_factory(engine)).verify(token).role is Role.VIEWER
    listing = io.StringIO()
    with redirect_stdout(listing):
        run_cli(["central", "token", "list", "--config", str(config)])
    assert "viewer" in listing.getvalue()
    assert token not in listing.getvalue()
    engine.dispose()


def test_cli_refuses_an_unknown_role(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_cli(["central", "token", "create", "--role", "root"])
    assert "invalid choice" in capsys.readouterr().err


def test_cookie_sessions_need_the_csrf_header_to_change_state(env: RunningApp) -> None:
    env.client.cookies.clear()
    env.login(Role.OPERATOR)
    bare = env.client.post("/api/v1/alarms/424242/ack")
    assert bare.status_code == 403
    assert "x-requested-with" in bare.text
    with_header = env.client.post(
        "/api/v1/alarms/424242/ack", headers={"X-Requested-With": "onedoor"}
    )
    assert with_header.status_code == 404  # authorised; the alarm just does not exist
    assert env.client.get("/api/v1/alarms").status_code == 200  # reads need no header
    env.client.cookies.clear()


def test_cli_revoke_and_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "central.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path}/cli.db"\n', encoding="utf-8")
    assert run_cli(["central", "seed", "--config", str(config)]) == 0
    assert "303 sites" in capsys.readouterr().out
    assert run_cli(["central", "token", "create", "--role", "admin", "--config", str(config)]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert run_cli(["central", "token", "revoke", token[3:11], "--config", str(config)]) == 0
    assert run_cli(["central", "token", "revoke", token[3:11], "--config", str(config)]) == 1
    assert "no active token" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_setting = 1\n", encoding="utf-8")
    assert run_cli(["central", "seed", "--config", str(bad)]) == 2
    assert "unknown setting" in capsys.readouterr().err


def test_cli_refuses_to_guess_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the central's environment, a token for an empty local file would be useless."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ONEDOOR_CENTRAL_DATABASE_URL", raising=False)
    for argv in (["token", "create", "--role", "admin"], ["token", "list"], ["seed"]):
        assert run_cli(["central", *argv]) == 2
        error = capsys.readouterr().err
        assert "no database configured" in error
        assert "--env-file" in error
    assert list(tmp_path.iterdir()) == []  # no onedoor-central.db made here


def test_cli_reads_the_services_env_file_and_says_which_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / "central.env"
    env_file.write_text(
        f"# rendered by the central role\nONEDOOR_CENTRAL_DATABASE_URL=sqlite:///{tmp_path}/c.db\n"
        "ONEDOOR_CENTRAL_SESSION_SECRET='not read by token create, but not in the way'\n",
        encoding="utf-8",
    )
    assert run_cli(["central", "token", "create", "--role", "operator",
                    "--env-file", str(env_file)]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert f"# database: sqlite:///{tmp_path}/c.db (from ONEDOOR_CENTRAL_DATABASE_URL)" in (
        captured.err
    )
    engine = make_engine(f"sqlite:///{tmp_path}/c.db")
    token = captured.out.strip().splitlines()[-1]
    assert TokenStore(session_factory(engine)).verify(token).role is Role.OPERATOR
    engine.dispose()
    config = tmp_path / "central.toml"
    config.write_text('database_url = "postgresql+psycopg://onedoor:s3cret@127.0.0.1:1/x"\n')
    assert run_cli(["central", "token", "list", "--config", str(config)]) == 1  # nothing there
    error = capsys.readouterr().err
    assert f"# database: postgresql+psycopg://onedoor:***@127.0.0.1:1/x (from {config})" in error
    assert "the database does not answer: connection failed" in error
    assert "s3cret" not in error

"""Who may do what: bearer tokens with roles, and the dashboard's signed session cookie.

Roles, each including the ones before it::

    viewer     managers: read sites, events, alarms, statistics, dashboards
    operator   ops: + commands to sites, acknowledging alarms, the Ansible inventory
    admin      + tokens and the registry

A token reads ``od_<id>_<secret>``: ``id`` (8 hex characters) is public and
names the row; only ``sha256(secret)`` is stored, compared in constant time.
The plaintext is shown once, by ``onedoor central token create``.

People log in to the dashboard with their own account (:mod:`central.accounts`:
named users with a role and their towns); a token may log in too (machines,
kiosks; ``dashboard_token_login``). Either way the browser then carries a
session cookie: a random session id and its absolute expiry, signed with
HMAC-SHA256 (HttpOnly, SameSite=Strict); the session itself is a row of
``login_sessions`` (idle and absolute expiry, logout). Each request re-reads the
session, and the user or token row, so logging out, disabling a user or revoking
a token ends its sessions at once.

A principal is city-wide (``towns`` is ``None``) or covers some towns only: it
reads and acts on those towns' sites only (:meth:`Principal.covers`; the read
model is scoped with :meth:`central.queries.ReadModel.scoped`).

Errors (drawn with the rest of the tree in :mod:`central.errors`)::

    AuthError(RequestError)
    ├── Unauthenticated   no credentials, a malformed/unknown/revoked token, a bad cookie (401)
    └── Forbidden         a valid principal whose role is too low (403)

Secrets never reach the logs: events name the token id only.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import structlog
from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from central.errors import (
    AuthError,
    ConfigError,
    Forbidden,
    InvalidRequest,
    OutOfScope,
    Unauthenticated,
)
from central.models import ApiToken

log = structlog.get_logger(__name__)

SESSION_COOKIE: Final = "onedoor_session"

_TOKEN_RE: Final = re.compile(r"od_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")


class Role(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS: Final = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token (its id and label) or a user (``user:<id>`` and the login
    name), the role, and the towns covered (``None``: the whole city)."""

    id: str
    name: str
    role: Role
    towns: frozenset[str] | None = None
    display_name: str = ""
    """A user's name as people know it (李明); a token's label."""

    @property
    def is_user(self) -> bool:
        return self.id.startswith("user:")

    @property
    def city_wide(self) -> bool:
        return self.towns is None

    def require(self, needed: Role) -> None:
        if not self.role.allows(needed):
            raise Forbidden(f"role {self.role.value} may not do this; {needed.value} needed")

    def covers(self, town: str) -> bool:
        return self.towns is None or town in self.towns

    def require_town(self, town: str, what: str) -> None:
        """:class:`OutOfScope` unless ``town`` is one of this principal's."""
        if not self.covers(town):
            raise OutOfScope(what)

    def require_city(self, what: str) -> None:
        """:class:`Forbidden` unless the principal covers the whole city."""
        if self.towns is not None:
            raise Forbidden(f"只有全市范围的账号可以{what} / only a city-wide account may do this")


def scope_of(towns: list[str] | None) -> frozenset[str] | None:
    """A stored towns list as a principal's scope (``None`` stays the whole city)."""
    return None if towns is None else frozenset(towns)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None
    towns: frozenset[str] | None = None


# Core statements on the ORM model's table: token checks run on every request.
api_tokens: Final[Table] = ApiToken.__table__  # type: ignore[assignment]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def parse_token(token: str) -> tuple[str, str]:
    """Split a token into (id, secret); :class:`Unauthenticated` if it is not one of ours."""
    match = _TOKEN_RE.fullmatch(token.strip())
    if match is None:
        raise Unauthenticated("malformed token")
    return match.group(1), match.group(2)


class TokenStore:
    """Create, verify, list and revoke API tokens in the central database."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(self, role: Role | str, name: str,
               towns: list[str] | None = None) -> tuple[TokenInfo, str]:  # fmt: skip
        """A new token (``towns``: the towns it covers; ``None``: the whole city); returns
        its info and the plaintext (to show once, never stored)."""
        try:
            role = Role(role)
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise InvalidRequest(f"unknown role {role!r}; one of {known}") from None
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidRequest("a token needs a name of 1..100 characters")
        token_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)  # 256 bits: a plain hash suffices, no KDF needed
        now = datetime.now(UTC)
        with self._sessions.begin() as session:
            session.execute(
                insert(api_tokens).values(
                    id=token_id,
                    secret_sha256=_digest(secret),
                    name=name,
                    role=role.value,
                    created_at=now,
                    towns=None if towns is None else sorted(set(towns)),
                )
            )
        log.info("auth.token_created", token_id=token_id, role=role.value, name=name)
        info = TokenInfo(token_id, name, role, now, None, scope_of(towns))
        return info, f"od_{token_id}_{secret}"

    def verify(self, token: str) -> Principal:
        """The principal of a bearer token; :class:`Unauthenticated` if it does not check out."""
        token_id, secret = parse_token(token)
        row = self._row(token_id)
        # compare_digest also when the row is missing, so timing does not tell ids apart
        stored = row.secret_sha256 if row is not None else "0" * 64
        if not hmac.compare_digest(stored, _digest(secret)) or row is None:
            log.info("auth.token_refused", token_id=token_id)
            raise Unauthenticated("unknown or revoked token")
        return row.principal()

    def principal(self, token_id: str) -> Principal:
        """The principal of a still-active token id (for sessions)."""
        row = self._row(token_id)
        if row is None:
            raise Unauthenticated("session token revoked")
        return row.principal()

    def _row(self, token_id: str) -> TokenRow | None:
        with self._sessions() as session:
            found = session.execute(
                select(
                    api_tokens.c.id,
                    api_tokens.c.secret_sha256,
                    api_tokens.c.name,
                    api_tokens.c.role,
                    api_tokens.c.towns,
                ).where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            ).first()
        if found is None:
            return None
        return TokenRow(found.id, found.secret_sha256, found.name, found.role, found.towns)

    def list(self) -> list[TokenInfo]:
        with self._sessions() as session:
            rows = session.execute(select(api_tokens).order_by(api_tokens.c.created_at)).all()
        return [
            TokenInfo(
                r.id,
                r.name,
                Role(r.role),
                _utc(r.created_at),
                None if r.revoked_at is None else _utc(r.revoked_at),
                scope_of(r.towns),
            )
            for r in rows
        ]

    def revoke(self, token_id: str) -> bool:
        """Revoke a token; False if no active token has this id."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        revoked = bool(result.rowcount)  # type: ignore[attr-defined]
        if revoked:
            log.info("auth.token_revoked", token_id=token_id)
        return revoked


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str
    secret_sha256: str
    name: str
    role: str
    towns: list[str] | None

    def principal(self) -> Principal:
        return Principal(self.id, self.name, Role(self.role), scope_of(self.towns), self.name)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --------------------------------------------------------------------------- session cookie


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class SessionSigner:
    """Signs and checks session cookies: ``base64(json).base64(hmac_sha256)``.

    The cookie carries the session id and its absolute expiry only; whether the
    session is still open is the ``login_sessions`` row's (:mod:`central.accounts`).
    The signature lets a forged or altered cookie be refused without a database read.
    """

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) < 32:
            raise ConfigError("the session secret must have at least 32 bytes")

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, payload.encode("ascii"), hashlib.sha256).digest())

    def sign(self, session_id: str, expires: float) -> str:
        payload = _b64(json.dumps({"sid": session_id, "exp": int(expires)},
                                  separators=(",", ":")).encode("ascii"))  # fmt: skip
        return f"{payload}.{self._mac(payload)}"

    def session_id(self, cookie: str, now: float | None = None) -> str:
        """The session id of a valid, unexpired cookie; :class:`Unauthenticated` otherwise."""
        payload, _, mac = cookie.partition(".")
        if not payload or not mac or not hmac.compare_digest(mac, self._mac(payload)):
            raise Unauthenticated("bad session cookie")
        try:
            data = json.loads(_unb64(payload))
            session_id, expires = str(data["sid"]), int(data["exp"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise Unauthenticated("bad session cookie") from None
        if (time.time() if now is None else now) >= expires:
            raise Unauthenticated("session expired")
        return session_id


__all__ = [
    "SESSION_COOKIE",
    "AuthError",
    "Forbidden",
    "Principal",
    "Role",
    "SessionSigner",
    "TokenInfo",
    "TokenStore",
    "Unauthenticated",
    "api_tokens",
    "parse_token",
    "scope_of",
]

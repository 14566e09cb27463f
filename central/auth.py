"""Who may do what: bearer tokens with roles, and the dashboard's signed session cookie.

Roles, each including the ones before it::

    viewer     managers: read sites, events, alarms, statistics, dashboards
    operator   ops: + commands to sites, acknowledging alarms, the Ansible inventory
    admin      + tokens and the registry

A token reads ``od_<id>_<secret>``: ``id`` (8 hex characters) is public and
names the row; only ``sha256(secret)`` is stored, compared in constant time.
The plaintext is shown once, by ``onedoor central token create``.

The dashboard logs in with a token and then carries a session cookie: the
token id, role, expiry and a random session id (two logins are two sessions),
signed with HMAC-SHA256 (HttpOnly, SameSite=Strict).
Each request re-reads the token row, so revoking a token ends its sessions.

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
    Unauthenticated,
)
from central.models import ApiToken

log = structlog.get_logger(__name__)

SESSION_COOKIE: Final = "onedoor_session"
SESSION_TTL_S: Final = 12 * 3600
"""A dashboard session lasts one working day."""

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
    """Who is calling: the token's id, its label and its role."""

    token_id: str
    name: str
    role: Role

    def require(self, needed: Role) -> None:
        if not self.role.allows(needed):
            raise Forbidden(f"role {self.role.value} may not do this; {needed.value} needed")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


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

    def create(self, role: Role | str, name: str) -> tuple[TokenInfo, str]:
        """A new token; returns its info and the plaintext (to show once, never stored)."""
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
                )
            )
        log.info("auth.token_created", token_id=token_id, role=role.value, name=name)
        return TokenInfo(token_id, name, role, now, None), f"od_{token_id}_{secret}"

    def verify(self, token: str) -> Principal:
        """The principal of a bearer token; :class:`Unauthenticated` if it does not check out."""
        token_id, secret = parse_token(token)
        row = self._row(token_id)
        # compare_digest also when the row is missing, so timing does not tell ids apart
        stored = row.secret_sha256 if row is not None else "0" * 64
        if not hmac.compare_digest(stored, _digest(secret)) or row is None:
            log.info("auth.token_refused", token_id=token_id)
            raise Unauthenticated("unknown or revoked token")
        return Principal(row.id, row.name, Role(row.role))

    def principal(self, token_id: str) -> Principal:
        """The principal of a still-active token id (for sessions)."""
        row = self._row(token_id)
        if row is None:
            raise Unauthenticated("session token revoked")
        return Principal(row.id, row.name, Role(row.role))

    def _row(self, token_id: str) -> TokenRow | None:
        with self._sessions() as session:
            found = session.execute(
                select(
                    api_tokens.c.id,
                    api_tokens.c.secret_sha256,
                    api_tokens.c.name,
                    api_tokens.c.role,
                ).where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            ).first()
        if found is None:
            return None
        return TokenRow(found.id, found.secret_sha256, found.name, found.role)

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


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --------------------------------------------------------------------------- session cookie


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class SessionSigner:
    """Signs and checks session cookies: ``base64(json).base64(hmac_sha256)``."""

    secret: bytes
    ttl_s: int = SESSION_TTL_S

    def __post_init__(self) -> None:
        if len(self.secret) < 32:
            raise ConfigError("the session secret must have at least 32 bytes")

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, payload.encode("ascii"), hashlib.sha256).digest())

    def sign(self, principal: Principal, now: float | None = None) -> str:
        issued = time.time() if now is None else now
        payload = _b64(
            json.dumps(
                {
                    "tid": principal.token_id,
                    "role": principal.role.value,
                    "exp": int(issued + self.ttl_s),
                    "sid": secrets.token_hex(8),  # each login its own session (stream quota)
                },
                separators=(",", ":"),
            ).encode("ascii")
        )
        return f"{payload}.{self._mac(payload)}"

    def token_id(self, cookie: str, now: float | None = None) -> str:
        """The token id of a valid, unexpired cookie; :class:`Unauthenticated` otherwise."""
        payload, _, mac = cookie.partition(".")
        if not payload or not mac or not hmac.compare_digest(mac, self._mac(payload)):
            raise Unauthenticated("bad session cookie")
        try:
            data = json.loads(_unb64(payload))
            token_id, expires = str(data["tid"]), int(data["exp"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise Unauthenticated("bad session cookie") from None
        if (time.time() if now is None else now) >= expires:
            raise Unauthenticated("session expired")
        return token_id


__all__ = [
    "SESSION_COOKIE",
    "SESSION_TTL_S",
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
]

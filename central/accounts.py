"""Named accounts for people, their passwords, and every dashboard session.

::

    users = UserStore(sessions)
    users.create("li.ming", "李明", Role.OPERATOR, ["三乡镇"], password, now=now)   # a town's
    users.create("ops-chen", "陈工", Role.ADMIN, None, password, now=now)          # city-wide
    principal = users.authenticate("li.ming", password, now=now)   # Unauthenticated if not

    logins = SessionStore(sessions, tokens, idle_s=1800, max_s=43200)
    session_id, expires = logins.start(principal, source="10.1.2.3", now=now)
    logins.principal(session_id, now=now)      # each request: open, not idle, user enabled
    logins.end(session_id, now=now)            # log out

Accounts are for people, tokens (:mod:`central.auth`) for machines (the Ansible
inventory, a booking platform). An account has a login name (``li.ming``: a-z,
0-9, ``.``, ``_``, ``-``), the name people know it by (李明), a role, and the
towns it covers (``None``: the whole city; a town manager's account lists its
town). Managing accounts takes a city-wide admin; the last enabled city-wide
admin cannot be disabled or narrowed (the central would have nobody to manage it).

Passwords: at least :data:`MIN_PASSWORD` characters, not containing the login
name; stored as scrypt (:func:`hashlib.scrypt`, n=2^14, r=8, p=1, a 16-byte
salt per password): ``scrypt$16384$8$1$<salt>$<hash>``. An unknown login name
costs the same hash as a wrong password, so timing does not tell them apart.

Sessions (table ``login_sessions``) end ``idle_s`` after their last request (a
page, an API call, or an open page's live stream, which checks in once a
minute), ``max_s`` after the login whatever happens, at logout, and at once when
the user is disabled or its password changes (every session of that user).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from central.auth import Principal, Role, TokenStore, scope_of
from central.errors import Conflict, InvalidRequest, Unauthenticated, UnknownUser
from central.models import LoginSession, Site, User

log = structlog.get_logger(__name__)

MIN_PASSWORD: Final = 10
MAX_PASSWORD: Final = 256
USERNAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
TOUCH_EVERY: Final = timedelta(seconds=60)
"""A session's last-seen time is written at most this often (not on every request)."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R,
                            p=SCRYPT_P, dklen=32)  # fmt: skip
    encode = base64.b64encode
    return (f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$"
            f"{encode(salt).decode()}${encode(digest).decode()}")  # fmt: skip


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt),
                                n=int(n), r=int(r), p=int(p), dklen=len(expected))  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


_DUMMY_HASH: Final = hash_password(secrets.token_urlsafe(16))


def check_password(password: str, username: str) -> None:
    """:class:`InvalidRequest` (in Chinese first: the page shows it) for a weak password."""
    if len(password) < MIN_PASSWORD:
        raise InvalidRequest(f"密码至少 {MIN_PASSWORD} 个字符 / a password needs at least "
                             f"{MIN_PASSWORD} characters")  # fmt: skip
    if len(password) > MAX_PASSWORD:
        raise InvalidRequest(f"password longer than {MAX_PASSWORD} characters")
    if username.lower() in password.lower():
        raise InvalidRequest("密码不能包含登录名 / a password may not contain the login name")
    if len(set(password)) < 4:
        raise InvalidRequest("密码过于简单 / a password needs more different characters")


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    username: str
    display_name: str
    role: Role
    towns: tuple[str, ...] | None
    created_at: datetime
    password_changed_at: datetime
    disabled_at: datetime | None
    last_login_at: datetime | None

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None

    def principal(self) -> Principal:
        return Principal(f"user:{self.id}", self.username, self.role,
                         scope_of(list(self.towns) if self.towns is not None else None),
                         self.display_name)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {"id": self.id, "username": self.username, "display_name": self.display_name,
                "role": self.role.value,
                "towns": None if self.towns is None else list(self.towns),
                "enabled": self.enabled, "created_at": iso(self.created_at),
                "password_changed_at": iso(self.password_changed_at),
                "disabled_at": iso(self.disabled_at),
                "last_login_at": iso(self.last_login_at)}  # fmt: skip

    @classmethod
    def of(cls, user: User) -> UserInfo:
        return cls(user.id, user.username, user.display_name, Role(user.role),
                   None if user.towns is None else tuple(user.towns), user.created_at,
                   user.password_changed_at, user.disabled_at, user.last_login_at)  # fmt: skip


class Unset:
    pass


UNSET: Final = Unset()


class UserStore:
    """Create, change, disable and authenticate named accounts."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # ------------------------------------------------------------------ checks

    @staticmethod
    def _username(username: str) -> str:
        name = username.strip().lower()
        if not USERNAME_RE.fullmatch(name):
            raise InvalidRequest("登录名为 2-64 个小写字母、数字或 . _ - / a login name is 2-64 of "
                                 "a-z 0-9 . _ -")  # fmt: skip
        return name

    @staticmethod
    def _towns(session: Session, towns: list[str] | None) -> list[str] | None:
        if towns is None:
            return None
        chosen = sorted({t.strip() for t in towns if t.strip()})
        if not chosen:
            raise InvalidRequest("give at least one town, or none for the whole city")
        known = set(session.scalars(select(Site.town).distinct()))
        if unknown := [t for t in chosen if t not in known]:
            raise InvalidRequest(f"没有这些镇街 / no site is in {', '.join(unknown)}")
        return chosen

    @staticmethod
    def _display_name(value: str) -> str:
        name = value.strip()
        if not name or len(name) > 100:
            raise InvalidRequest("a name of 1..100 characters")
        return name

    @staticmethod
    def _user(session: Session, username: str) -> User:
        user = session.scalar(select(User).where(User.username == username.strip().lower()))
        if user is None:
            raise UnknownUser(username)
        return user

    @staticmethod
    def _keep_an_admin(session: Session, user: User, *, role: Role, towns: list[str] | None,
                       enabled: bool) -> None:  # fmt: skip
        """:class:`Conflict` if this change leaves no enabled city-wide admin."""
        was = user.role == Role.ADMIN.value and user.towns is None and user.disabled_at is None
        stays = role is Role.ADMIN and towns is None and enabled
        if not was or stays:
            return
        admins = session.scalars(select(User).where(
            User.id != user.id, User.role == Role.ADMIN.value,
            User.disabled_at.is_(None)))  # fmt: skip
        # towns in Python: a JSON column stores None as JSON null, which IS NULL does not match
        if not any(other.towns is None for other in admins):
            raise Conflict("这是最后一个全市管理员账号 / the last enabled city-wide admin "
                           "cannot be disabled, demoted or narrowed to towns")  # fmt: skip

    # ------------------------------------------------------------------ changes

    def create(self, username: str, display_name: str, role: Role | str,
               towns: list[str] | None, password: str, *, now: datetime) -> UserInfo:  # fmt: skip
        name = self._username(username)
        try:
            role = Role(role)
        except ValueError:
            raise InvalidRequest(f"unknown role {role!r}; one of "
                                 f"{', '.join(r.value for r in Role)}") from None  # fmt: skip
        check_password(password, name)
        try:
            with self._sessions.begin() as session:
                user = User(username=name, display_name=self._display_name(display_name),
                            role=role.value, towns=self._towns(session, towns),
                            password_hash=hash_password(password), created_at=now,
                            password_changed_at=now)  # fmt: skip
                session.add(user)
                session.flush()
                info = UserInfo.of(user)
        except IntegrityError:
            raise Conflict(f"登录名已存在 / the login name {name!r} is taken") from None
        log.info("accounts.user_created", user=name, role=role.value, towns=towns)
        return info

    def update(self, username: str, *, now: datetime, display_name: str | None = None,
               role: Role | str | None = None,
               towns: list[str] | Unset | None = UNSET) -> UserInfo:  # fmt: skip
        """Change the name, role or towns (``towns=None``: the whole city)."""
        with self._sessions.begin() as session:
            user = self._user(session, username)
            new_role = Role(role) if role is not None else Role(user.role)
            new_towns = (self._towns(session, towns) if not isinstance(towns, Unset)
                         else user.towns)  # fmt: skip
            self._keep_an_admin(session, user, role=new_role, towns=new_towns,
                                enabled=user.disabled_at is None)  # fmt: skip
            if display_name is not None:
                user.display_name = self._display_name(display_name)
            user.role = new_role.value
            user.towns = new_towns
            return UserInfo.of(user)

    def set_password(self, username: str, password: str, *, now: datetime) -> UserInfo:
        """A new password; every session of the user ends (it must log in again)."""
        with self._sessions.begin() as session:
            user = self._user(session, username)
            check_password(password, user.username)
            user.password_hash = hash_password(password)
            user.password_changed_at = now
            _end_sessions(session, user.id, now)
            return UserInfo.of(user)

    def set_enabled(self, username: str, enabled: bool, *, now: datetime) -> UserInfo:
        """Disable (every session ends at once) or enable again."""
        with self._sessions.begin() as session:
            user = self._user(session, username)
            self._keep_an_admin(session, user, role=Role(user.role), towns=user.towns,
                                enabled=enabled)  # fmt: skip
            if enabled:
                user.disabled_at = None
            elif user.disabled_at is None:
                user.disabled_at = now
                _end_sessions(session, user.id, now)
            return UserInfo.of(user)

    # ------------------------------------------------------------------ reads

    def get(self, username: str) -> UserInfo:
        with self._sessions() as session:
            return UserInfo.of(self._user(session, username))

    def list(self) -> list[UserInfo]:
        with self._sessions() as session:
            return [UserInfo.of(u) for u in session.scalars(select(User).order_by(User.username))]

    def authenticate(self, username: str, password: str, *, now: datetime) -> Principal:
        """The principal of a right login name and password of an enabled account."""
        name = username.strip().lower()
        with self._sessions.begin() as session:
            user = (session.scalar(select(User).where(User.username == name))
                    if USERNAME_RE.fullmatch(name) else None)  # fmt: skip
            good = verify_password(password, user.password_hash if user else _DUMMY_HASH)
            if user is None or not good or user.disabled_at is not None:
                raise Unauthenticated("wrong login name or password, or the account is disabled")
            user.last_login_at = now
            return UserInfo.of(user).principal()


def _end_sessions(session: Session, user_id: int, now: datetime) -> int:
    open_ones = (LoginSession.user_id == user_id, LoginSession.ended_at.is_(None))
    result = session.execute(update(LoginSession).where(*open_ones).values(ended_at=now))
    return int(result.rowcount)  # type: ignore[attr-defined]


class SessionStore:
    """Dashboard sessions of users and tokens: open, check on each request, end."""

    def __init__(self, sessions: sessionmaker[Session], tokens: TokenStore, *, idle_s: int,
                 max_s: int) -> None:  # fmt: skip
        self._sessions = sessions
        self._tokens = tokens
        self.idle = timedelta(seconds=idle_s)
        self.max = timedelta(seconds=max_s)

    def start(self, principal: Principal, source: str, *, now: datetime) -> tuple[str, datetime]:
        """A new session of ``principal``; its id (for the signed cookie) and absolute end."""
        session_id = secrets.token_hex(16)
        expires = now + self.max
        user_id = int(principal.id.removeprefix("user:")) if principal.is_user else None
        with self._sessions.begin() as session:
            session.add(LoginSession(id=session_id, user_id=user_id,
                                     token_id=None if principal.is_user else principal.id,
                                     created_at=now, last_seen_at=now, expires_at=expires,
                                     source=source[:100]))  # fmt: skip
        return session_id, expires

    def principal(self, session_id: str, *, now: datetime) -> Principal:
        """Who holds the open session ``session_id``; :class:`Unauthenticated` when it is
        unknown, ended, past its absolute end or idle too long, or its user is disabled."""
        with self._sessions() as session:
            row = session.get(LoginSession, session_id)
            if row is None or row.ended_at is not None:
                raise Unauthenticated("no such session (logged out?)")
            if now >= row.expires_at:
                raise Unauthenticated("session expired: log in again")
            if now - row.last_seen_at >= self.idle:
                raise Unauthenticated("session idle too long: log in again")
            if row.user_id is not None:
                user = session.get(User, row.user_id)
                if user is None or user.disabled_at is not None:
                    raise Unauthenticated("account disabled")
                principal = UserInfo.of(user).principal()
            else:
                principal = self._tokens.principal(row.token_id or "")
            stale = now - row.last_seen_at >= TOUCH_EVERY
        if stale:
            with self._sessions.begin() as session:
                session.execute(update(LoginSession).where(LoginSession.id == session_id)
                                .values(last_seen_at=now))  # fmt: skip
        return principal

    def end(self, session_id: str, *, now: datetime) -> None:
        with self._sessions.begin() as session:
            session.execute(update(LoginSession).where(
                LoginSession.id == session_id, LoginSession.ended_at.is_(None))
                .values(ended_at=now))  # fmt: skip

    def prune(self, now: datetime) -> int:
        """Delete sessions over a day past their end (the rows are not the audit log)."""
        cutoff = now - timedelta(days=1)
        with self._sessions.begin() as session:
            result = session.execute(delete(LoginSession).where(
                or_(LoginSession.expires_at < cutoff, LoginSession.ended_at < cutoff)))  # fmt: skip
        return int(result.rowcount)  # type: ignore[attr-defined]


__all__ = [
    "MIN_PASSWORD",
    "UNSET",
    "SessionStore",
    "Unset",
    "UserInfo",
    "UserStore",
    "check_password",
    "hash_password",
    "verify_password",
]

"""Who is calling, for routes and pages: bearer tokens, the session cookie, the CSRF rule.

::

    @router.get("/sites")
    def api_sites(request: Request, _: Viewer) -> ...        # 401 / 403 before the handler

    principal = session_principal(request)                    # pages and live streams

Roles and tokens are :mod:`central.auth`; this module only reads them off a
request. Failures raise :class:`central.errors.AuthError` (401 with
``WWW-Authenticate: Bearer``, or 403), answered by the app's one error handler.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import Depends, Request

from central.audit import Actor
from central.auth import SESSION_COOKIE, Principal, Role
from central.context import central_of
from central.errors import Forbidden, Unauthenticated

CSRF_HEADER: Final = "x-requested-with"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def session_principal(request: Request) -> Principal:
    """The principal of the session cookie only (bearer tokens are not accepted here): the
    signature, then the session's row (open, not idle, its user enabled or token active)."""
    central = central_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise Unauthenticated("no session")
    return central.web_sessions.principal(central.signer.session_id(cookie), now=central.now())


def client_address(request: Request) -> str:
    """The caller's address (behind nginx on the same host, the one it forwards)."""
    return request.client.host if request.client else "unknown"


def authenticate(request: Request) -> Principal:
    """The caller from a bearer token or the session cookie; :class:`AuthError` if none.

    A state-changing request carried by the session cookie must also send
    ``X-Requested-With`` (the dashboard's scripts do): besides SameSite=Strict,
    a header a cross-site form cannot set.
    """
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthenticated("use Authorization: Bearer <token>")
        return central_of(request).tokens.verify(credentials)
    if request.cookies.get(SESSION_COOKIE):
        principal = session_principal(request)
        if request.method not in _SAFE_METHODS and not request.headers.get(CSRF_HEADER):
            raise Forbidden(f"a dashboard request that changes state needs {CSRF_HEADER}")
        return principal
    raise Unauthenticated("authentication required")


def requires(role: Role) -> Any:
    """A dependency admitting callers whose role includes ``role`` (401 or 403 otherwise)."""

    def dependency(request: Request) -> Principal:
        principal = authenticate(request)
        principal.require(role)
        return principal

    return Depends(dependency)


def actor_of(request: Request, principal: Principal) -> Actor:
    """Who is calling and from where, for the audit log: the user's login name (or the
    token's name), ``user:<id>`` (or the token id), the role, and the client address."""
    return Actor(name=principal.name, source=client_address(request), actor_id=principal.id,
                 role=principal.role.value)  # fmt: skip


Viewer = Annotated[Principal, requires(Role.VIEWER)]
Operator = Annotated[Principal, requires(Role.OPERATOR)]
Admin = Annotated[Principal, requires(Role.ADMIN)]


__all__ = [
    "CSRF_HEADER",
    "Admin",
    "Operator",
    "Viewer",
    "actor_of",
    "authenticate",
    "client_address",
    "requires",
    "session_principal",
]

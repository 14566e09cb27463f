"""Accounts through the REST API (the users page calls these too).

::

    GET   /api/v1/users                      admin (city-wide)   every account
    POST  /api/v1/users                      admin (city-wide)   create: login name, name, role,
                                                                 towns (null: the city), password
    PATCH /api/v1/users/{username}           admin (city-wide)   name, role, towns, enabled
    POST  /api/v1/users/{username}/password  admin (city-wide)   set a password (sessions end)
    GET   /api/v1/me                         viewer              who am I: role, towns
    POST  /api/v1/me/password                viewer (a user)     change one's own password

Every change is in the audit log (``user.*``), with who made it and from where;
passwords never are, nor in any log.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from central.access import Admin, Viewer, actor_of
from central.accounts import UNSET, verify_password
from central.audit import AuditAction
from central.auth import Principal, Role
from central.context import Central, central_of
from central.errors import Forbidden, InvalidRequest
from central.models import User

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/v1", tags=["users"])

_MANAGE = "管理账号"


class NewUser(BaseModel):
    username: str = Field(min_length=2, max_length=64, description="a-z 0-9 . _ -")
    display_name: str = Field(min_length=1, max_length=100, description="李明")
    role: Role
    towns: list[str] | None = Field(None, description="the towns covered; null: the whole city")
    password: str = Field(min_length=1, max_length=256)


class UserPatch(BaseModel):
    display_name: str | None = Field(None, min_length=1, max_length=100)
    role: Role | None = None
    towns: list[str] | None = Field(None, description="null: the whole city (when given)")
    enabled: bool | None = None


class PasswordBody(BaseModel):
    password: str = Field(min_length=1, max_length=256)


class OwnPassword(BaseModel):
    old_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


def _audit(request: Request, principal: Principal, action: AuditAction, username: str,
           detail: dict[str, Any]) -> None:  # fmt: skip
    central = central_of(request)
    central.audit.write(actor_of(request, principal), action, f"user:{username}", detail,
                        now=central.now())  # fmt: skip


@router.get("/users")
def api_users(request: Request, principal: Admin) -> dict[str, Any]:
    principal.require_city(_MANAGE)
    return {"users": [u.to_json() for u in central_of(request).users.list()]}


@router.post("/users", status_code=201)
def api_create_user(request: Request, body: NewUser, principal: Admin) -> dict[str, Any]:
    principal.require_city(_MANAGE)
    central = central_of(request)
    info = central.users.create(body.username, body.display_name, body.role, body.towns,
                                body.password, now=central.now())  # fmt: skip
    _audit(request, principal, AuditAction.USER_CREATE, info.username,
           {"display_name": info.display_name, "role": info.role.value,
            "towns": None if info.towns is None else list(info.towns)})  # fmt: skip
    return info.to_json()


@router.patch("/users/{username}")
def api_patch_user(request: Request, username: str, body: UserPatch,
                   principal: Admin) -> dict[str, Any]:  # fmt: skip
    principal.require_city(_MANAGE)
    central = central_of(request)
    now = central.now()
    given = body.model_fields_set
    before = central.users.get(username)
    info = before
    if given & {"display_name", "role", "towns"}:
        info = central.users.update(
            username, now=now, display_name=body.display_name, role=body.role,
            towns=body.towns if "towns" in given else UNSET)  # fmt: skip
        changed = {name: [old, new] for name, old, new in (
            ("display_name", before.display_name, info.display_name),
            ("role", before.role.value, info.role.value),
            ("towns", _towns(before.towns), _towns(info.towns))) if old != new}  # fmt: skip
        if changed:
            _audit(request, principal, AuditAction.USER_UPDATE, info.username, changed)
    if body.enabled is not None and body.enabled != info.enabled:
        if info.username == principal.name and principal.is_user and not body.enabled:
            raise InvalidRequest("不能停用自己的账号 / you cannot disable your own account")
        info = central.users.set_enabled(username, body.enabled, now=now)
        _audit(request, principal,
               AuditAction.USER_ENABLE if body.enabled else AuditAction.USER_DISABLE,
               info.username, {})  # fmt: skip
    return info.to_json()


def _towns(towns: tuple[str, ...] | None) -> list[str] | None:
    return None if towns is None else list(towns)


@router.post("/users/{username}/password")
def api_set_password(request: Request, username: str, body: PasswordBody,
                     principal: Admin) -> dict[str, Any]:  # fmt: skip
    """An admin sets a password (a forgotten one): the user's sessions end."""
    principal.require_city(_MANAGE)
    central = central_of(request)
    info = central.users.set_password(username, body.password, now=central.now())
    _audit(request, principal, AuditAction.USER_PASSWORD, info.username, {"by": "admin"})
    return info.to_json()


@router.get("/me")
def api_me(request: Request, principal: Viewer) -> dict[str, Any]:
    return {"id": principal.id, "name": principal.name, "display_name": principal.display_name,
            "role": principal.role.value,
            "towns": None if principal.towns is None else sorted(principal.towns)}  # fmt: skip


def _own_password(central: Central, principal: Principal, body: OwnPassword) -> None:
    with central.sessions() as session:
        user = session.get(User, int(principal.id.removeprefix("user:")))
        stored = user.password_hash if user is not None else ""
    if not verify_password(body.old_password, stored):
        raise Forbidden("原密码不正确 / the current password is wrong")
    central.users.set_password(principal.name, body.new_password, now=central.now())


@router.post("/me/password")
async def api_own_password(request: Request, body: OwnPassword,
                           principal: Viewer) -> dict[str, Any]:  # fmt: skip
    """Change one's own password (the current one first); every session ends, this one too."""
    if not principal.is_user:
        raise InvalidRequest("a token has no password: accounts have")
    central = central_of(request)
    await run_in_threadpool(_own_password, central, principal, body)
    await run_in_threadpool(_audit, request, principal, AuditAction.USER_PASSWORD,
                            principal.name, {"by": "self"})  # fmt: skip
    log.info("accounts.password_changed", user=principal.name)
    return {"changed": True}


__all__ = ["router"]

"""Pages for accounts and for commands to many sites.

::

    GET  /admin/users              accounts (a city-wide admin): roles, towns, enable, passwords
    GET  /account                  who am I; change my password
    GET  /commands                 send one command to a town, several towns or the whole city;
                                   the latest such commands with their counts
    GET  /commands/{id}            per site: pending, done, failed, expired, refused (live)
    GET  /live/commands/{id}       the per-site table, re-rendered when it changed (SSE)

The pages change nothing themselves: their scripts call the REST API
(:mod:`central.api_users`, :mod:`central.api_bulk`) with the session cookie
and the CSRF header, so every rule and audit entry is the API's.
"""

from __future__ import annotations

import uuid
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from central.auth import Role
from central.context import central_of
from central.views import BULK_STATES
from central.web.live import _fragment_stream, _stream_principal
from central.web.pages import page_principal
from central.web.render import chrome, language, page, render
from central.web.text import TEXT
from firmware_protocols.mqtt_messages import COMMAND_ARGS

router = APIRouter(include_in_schema=False)

NOT_FOR_MANY: Final = frozenset({"reprint"})
"""Command kinds that make no sense at many sites at once (a ticket number is one hall's)."""


def _known_texts() -> frozenset[str]:
    return frozenset(key for key in TEXT if key.startswith("cmd_"))


@router.get("/admin/users")
def users_page(request: Request) -> HTMLResponse:
    principal = page_principal(request, Role.ADMIN)
    principal.require_city("管理账号")
    central = central_of(request)
    return page(request, "users.html", principal, users=central.users.list(),
                roles=[r.value for r in Role], towns=central.read.towns())  # fmt: skip


@router.get("/account")
def account_page(request: Request) -> HTMLResponse:
    return page(request, "account.html", page_principal(request))


@router.get("/commands")
def commands_page(request: Request) -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    read = central.read_as(principal)
    return page(request, "commands.html", principal,
                bulks=read.bulk_commands(central.now()), towns=read.towns(),
                kinds=[k for k in COMMAND_ARGS if k not in NOT_FOR_MANY],
                states=BULK_STATES, known_texts=_known_texts(),
                commands_enabled=central.service is not None)  # fmt: skip


@router.get("/commands/{bulk_id}")
def bulk_page(request: Request, bulk_id: uuid.UUID) -> HTMLResponse:
    principal = page_principal(request)
    central = central_of(request)
    bulk = central.read_as(principal).bulk_command(bulk_id, central.now())
    return page(request, "bulk.html", principal, bulk=bulk, states=BULK_STATES,
                known_texts=_known_texts())  # fmt: skip


@router.get("/live/commands/{bulk_id}")
async def live_bulk(request: Request, bulk_id: uuid.UUID) -> StreamingResponse:
    principal = _stream_principal(request)
    central = central_of(request)
    lang = language(request)
    read = central.read_as(principal)
    await run_in_threadpool(read.bulk_command, bulk_id, central.now())  # 404/403 first

    def fragment() -> str:
        bulk = read.bulk_command(bulk_id, central.now())
        return render("_bulk_live.html", **chrome(lang, principal), bulk=bulk, states=BULK_STATES,
                      known_texts=_known_texts())  # fmt: skip

    return _fragment_stream(request, fragment)


__all__ = ["router"]

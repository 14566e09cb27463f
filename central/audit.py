"""The central's one audit log: who changed what, when, and from where.

::

    actor = actor_of(request, principal)      # central.access: token name, id, role, address
    actor = Actor.command_line()              # `onedoor central ...`: the system user, cli@host
    with sessions.begin() as session:
        ...the change...
        record(session, actor, AuditAction.SITE_UPDATE, "zs-shiqi-01", {"fields": ...}, now=now)

    AuditLog(sessions).write(actor, AuditAction.TOKEN_CREATE, "token:0123abcd", {...}, now=now)
    read.audit(target="zs-shiqi-01")          # [AuditView], newest first (central.queries)
    audit_csv(views)                          # the CSV export (GET /api/v1/audit.csv)

Every change people make through the central goes into the table ``audit``:
registry changes (written in the same transaction as the change, so neither
exists without the other), tokens, accounts, logins and logouts (and refused
logins), alarm acknowledgements, commands to one site and to many. A new kind
of change adds an :class:`AuditAction` and calls :func:`record` (or
:meth:`AuditLog.write` when the change commits elsewhere). Entries are never
changed or pruned by the central.
"""

from __future__ import annotations

import csv
import enum
import getpass
import io
import json
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import structlog
from sqlalchemy.orm import Session, sessionmaker

from central.models import AuditEntry

if TYPE_CHECKING:
    from central.views import AuditView

log = structlog.get_logger(__name__)


class AuditAction(enum.StrEnum):
    SITE_CREATE = "site.create"
    SITE_UPDATE = "site.update"
    SITE_RETIRE = "site.retire"
    SITE_RESTORE = "site.restore"
    SITE_EXPECTED_CONFIG = "site.expected_config"
    """The config version a site should run (each Ansible push records it)."""
    REGISTRY_IMPORT = "registry.import"
    """A CSV import applied (its sites' changes have entries of their own)."""
    REGISTRY_SEED = "registry.seed"
    """The packaged sample registry loaded (``onedoor central seed``)."""
    TOKEN_CREATE = "token.create"
    TOKEN_REVOKE = "token.revoke"
    ALARM_ACK = "alarm.ack"
    COMMAND_SEND = "command.send"
    DEVICE_TAKEOVER = "device.takeover"
    """A new edge device (a replaced Pi or SD card) takes a site's numbers over."""
    RELEASE_ADD = "release.add"
    """A software release registered for rollout (central.releases)."""
    SITE_EXPECTED_RELEASE = "site.expected_release"
    """The release a site should run (a rollout's result, or an admin's)."""
    ROLLOUT_CREATE = "rollout.create"
    ROLLOUT_SITE = "rollout.site"
    """A site's upgrade finished: upgraded, deferred, rolled back or failed."""
    ROLLOUT_STOP = "rollout.stop"
    ROLLOUT_RESUME = "rollout.resume"
    ROLLOUT_CANCEL = "rollout.cancel"
    COMMAND_BULK = "command.bulk"
    """One command to many sites (a town, the city); each site's command has its own id."""
    LOGIN = "auth.login"
    LOGIN_FAILED = "auth.login_failed"
    LOGOUT = "auth.logout"
    USER_CREATE = "user.create"
    USER_UPDATE = "user.update"
    USER_PASSWORD = "user.password"
    """A password set by an admin, or changed by its owner."""
    USER_DISABLE = "user.disable"
    USER_ENABLE = "user.enable"
    ISSUING_STOP = "issuing.stop"
    """An emergency stop of ticket issuing decided (a site, a town, the city)."""
    ISSUING_LIFT = "issuing.lift"
    CALENDAR_SET = "calendar.set"
    """A new version of the city calendar."""
    BAD_RATING_NOTE = "bad_rating.note"
    """A step on a 差评 case (central.ratings): a note, the contact (回访), the
    rectification (整改), an appeal (申诉) and its review (upheld or rejected)."""
    BAD_RATING_CONTACT = "bad_rating.contact"
    BAD_RATING_RECTIFY = "bad_rating.rectify"
    BAD_RATING_APPEAL = "bad_rating.appeal"
    BAD_RATING_UPHOLD = "bad_rating.uphold"
    BAD_RATING_REJECT = "bad_rating.reject"
    STAFF_ROSTER = "site.staff"
    """A site's roster of staff names replaced."""
    RATING_PROFILE = "site.rating_profile"
    """A site's region code and default department for the 好差评 records."""
    RATINGS_RETRY = "ratings.retry"
    """Records that failed to reach the province put back in line."""
    BOOKING_CREATE = "booking.create"
    """A booking (预约) a booking platform pushed (central.bookings)."""
    BOOKING_CHANGE = "booking.change"
    """A booking moved to another day, slot or service, its code kept."""
    BOOKING_CANCEL = "booking.cancel"
    BOOKING_CHECK_IN = "booking.check_in"
    """A site's kiosk checked a booking in (by code or ID card): the actor is the site."""
    BOOKING_NO_SHOW = "booking.no_show"
    """A checked-in booking's ticket called and not answered (过号) at the site."""
    BOOKING_RULES = "booking.rules"
    """A site's booking rules (quotas per slot, hours) replaced."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change and from where."""

    name: str
    """The user's login name, the token's name, or the system user at the command line."""
    source: str
    """The client address, or ``cli@<host>``."""
    actor_id: str | None = None
    """``user:<id>``, the token id, or none for the command line."""
    role: str | None = None

    @classmethod
    def command_line(cls) -> Actor:
        """The person at the central's command line: the user ``sudo`` was run by, if any."""
        try:
            user = os.environ.get("SUDO_USER") or getpass.getuser()
        except (KeyError, OSError):  # no name for this uid (a bare container)
            user = f"uid {os.getuid()}"
        return cls(name=user, source=f"cli@{socket.gethostname()}")


def record(session: Session, actor: Actor, action: AuditAction, target: str,
           detail: dict[str, Any] | None = None, *, now: datetime) -> AuditEntry:  # fmt: skip
    """Add an entry inside the caller's transaction."""
    entry = AuditEntry(at=now, actor=actor.name[:100], actor_id=actor.actor_id,
                       role=actor.role, source=actor.source[:100], action=action.value,
                       target=target[:100], detail=detail or {})  # fmt: skip
    session.add(entry)
    log.info("audit", action=action.value, target=target, actor=actor.name, source=actor.source)
    return entry


class AuditLog:
    """Entries for changes committed elsewhere (tokens, alarms, commands)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def write(self, actor: Actor, action: AuditAction, target: str,
              detail: dict[str, Any] | None = None, *, now: datetime) -> None:  # fmt: skip
        with self._sessions.begin() as session:
            record(session, actor, action, target, detail, now=now)


CSV_COLUMNS: Final = ("id", "at", "actor", "actor_id", "role", "source", "action", "target",
                      "detail")  # fmt: skip


def audit_csv(entries: Iterable[AuditView]) -> str:
    """The entries as CSV (UTF-8 with a byte-order mark, so that Excel shows the Chinese)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        writer.writerow([e.id, e.at, e.actor, e.actor_id or "", e.role or "", e.source,
                         e.action, e.target,
                         json.dumps(e.detail, ensure_ascii=False, sort_keys=True)])  # fmt: skip
    return out.getvalue()


__all__ = ["CSV_COLUMNS", "Actor", "AuditAction", "AuditLog", "audit_csv", "record"]

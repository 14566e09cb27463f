"""Live staffing advice at the central: keep each site's advisory, tell its manager, drop it.

The edges send ``advice`` messages (``docs/PROTOCOLS.md``, computed by ``edge/advice.py``):
an advisory naming the services whose p90 wait will pass their SLA in the next hour and
the move that prevents it, renewed every few minutes while it holds, or null once it is
no longer needed. :func:`apply_advice` folds one message into ``staffing_advisories``
inside ingest's transaction; :func:`expire_advice` (one of the timed rules) ends the
advisories the edge stopped renewing.

How it reaches the site's manager: as an alarm of type ``staffing_advice`` with severity
``info``, raised when an advisory starts (its Chinese text as the alarm message), and
cleared when it ends, is replaced by another one or expires. The alarm path is the one
the manager already receives (the webhook, the alarms page, acknowledging "收到" records
who saw it, history says when it was given and when it ended); ``info`` keeps it from
looking like a fault: a site's tile colour only counts warnings and worse
(:func:`central.views.site_health`), and webhook receivers can route it by type. A
renewal of the same advisory changes the row, not the alarm: no second notification.

Only the newest message of a site counts, by ``(session, ts)``: a message delayed across
central replicas never overwrites a newer one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from central.alarms import AlarmBook
from central.models import AdviceEnd, AlarmType, Site, StaffingAdvisory
from firmware_protocols import mqtt_messages as mm

log = structlog.get_logger(__name__)


def _latest(session: Session, site_id: str) -> StaffingAdvisory | None:
    return session.scalars(
        select(StaffingAdvisory).where(StaffingAdvisory.site_id == site_id)
        .order_by(StaffingAdvisory.id.desc()).limit(1)).first()


def _end(book: AlarmBook, row: StaffingAdvisory, how: AdviceEnd) -> None:
    row.cleared_at = row.updated_at = book.now
    row.cleared_by = how
    book.clear(row.site_id, AlarmType.STAFFING_ADVICE, note=how.value)
    log.info("advice.ended", site=row.site_id, advisory=str(row.advisory_id), how=how.value)


def _alarm_detail(advisory: mm.Advisory, expires_at: datetime) -> dict[str, Any]:
    return {"advisory_id": str(advisory.id), "services": list(advisory.breaching),
            "move": None if advisory.move is None else msgspec.to_builtins(advisory.move),
            "message_en": advisory.message_en, "expires_at": expires_at.isoformat()}


def apply_advice(session: Session, site: Site, message: mm.Advice, book: AlarmBook,
                 now: datetime) -> None:
    """Fold one ``advice`` message of ``site`` (whose row ingest holds locked)."""
    latest = _latest(session, site.id)
    if latest is not None and not message.supersedes(latest.session, latest.ts_ms):
        log.info("advice.stale_ignored", site=site.id, session=message.session, ts=message.ts)
        return
    active = latest if latest is not None and latest.cleared_at is None else None
    advisory = message.advisory
    if latest is not None:
        latest.session, latest.ts_ms = message.session, message.ts
    if advisory is None:
        if active is not None:
            _end(book, active, AdviceEnd.EDGE)
        return
    expires_at = now + timedelta(milliseconds=message.expires_ts - message.ts)
    outlook = {"horizon_s": advisory.horizon_s,
               "before": msgspec.to_builtins(advisory.before),
               "after": None if advisory.after is None else msgspec.to_builtins(advisory.after)}
    if active is not None and active.advisory_id == advisory.id:  # renewed
        active.updated_at, active.expires_at = now, expires_at
        active.outlook, active.services = outlook, list(advisory.breaching)
        active.message_zh, active.message_en = advisory.message_zh, advisory.message_en
        return
    if active is not None:
        _end(book, active, AdviceEnd.REPLACED)
        session.flush()  # the partial unique index: one active advisory per site
    session.add(StaffingAdvisory(
        site_id=site.id, advisory_id=advisory.id, since_ms=advisory.since_ts,
        session=message.session, ts_ms=message.ts, raised_at=now, updated_at=now,
        expires_at=expires_at, services=list(advisory.breaching),
        move=None if advisory.move is None else msgspec.to_builtins(advisory.move),
        outlook=outlook, message_zh=advisory.message_zh, message_en=advisory.message_en))
    book.raise_alarm(site.id, AlarmType.STAFFING_ADVICE, message=advisory.message_zh,
                     detail=_alarm_detail(advisory, expires_at))
    log.info("advice.raised", site=site.id, advisory=str(advisory.id),
             services=list(advisory.breaching))


def expire_advice(book: AlarmBook) -> int:
    """End the advisories no edge renewed in time; how many."""
    expired = book.session.scalars(select(StaffingAdvisory).where(
        StaffingAdvisory.cleared_at.is_(None), StaffingAdvisory.expires_at <= book.now)).all()
    for row in expired:
        _end(book, row, AdviceEnd.EXPIRED)
    return len(expired)


__all__ = ["apply_advice", "expire_advice"]

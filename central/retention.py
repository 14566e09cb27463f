"""Retention of the central's history: old events, alarms and commands leave the database.

::

    retention = Retention(sessions, config)
    pruned, more = retention.prune_step(now)    # one bounded batch of each kind, one transaction
    # CentralService.prune_history repeats the step (taking turns with ingest) while ``more``

The settings (:mod:`central.config`; ``0`` keeps forever)::

    events_retention_days    events, with the sequence gaps filled and the 呼叫帮办
                             calls resolved before then (statistics reach back this far),
                             and the bookings (预约) of days before then
    alarms_retention_days    cleared alarms and their history, and staffing advisories
                             ended before then; an active alarm or advisory never
    commands_retention_days  commands issued, expired and answered before then
    retention_interval_s     how often the service prunes (a task of CentralService)

"Older than N days" means strictly before ``now - N days`` by every clock the
row has: an event goes only once both its arrival (central clock) and its
``ts_ms`` (edge clock) are that old, and only when its seq is at or below the
site's acknowledged seq (the edge will never send it again, so it cannot come
back as new). Telemetry has its own retention (``telemetry_*_days``, the
embedded sink's ``prune``).

Each step deletes at most ``batch`` rows of each kind in one short
transaction, so ingest waits for one step, not for the whole clean-up. Events
are walked type by type along the ``(type, ts_ms)`` index up to the cutoff (a
step reads index ranges, never the whole table); rows kept back (acknowledged
later, or received late) are passed over and looked at again in the next run.
Event types the contract no longer has are not walked.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralConfig
from central.models import (
    Alarm,
    Booking,
    Command,
    EventRecord,
    HelpCall,
    SequenceGap,
    Site,
    StaffingAdvisory,
)
from central.stats import business_date
from firmware_protocols.mqtt_messages import EVENT_TYPES

log = structlog.get_logger(__name__)

BATCH: Final = 5000
"""Rows of each kind one step deletes at most."""


@dataclass
class Pruned:
    """Rows deleted, by kind."""

    events: int = 0
    sequence_gaps: int = 0
    help_calls: int = 0
    alarms: int = 0
    advisories: int = 0
    commands: int = 0
    bookings: int = 0

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def __iadd__(self, other: Pruned) -> Pruned:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _cutoff(now: datetime, days: int) -> datetime | None:
    return None if days <= 0 else now - timedelta(days=days)


class Retention:
    """Deletes what is older than the retention settings, a bounded step at a time."""

    def __init__(self, sessions: sessionmaker[Session], config: CentralConfig, *,
                 batch: int = BATCH) -> None:  # fmt: skip
        self._sessions = sessions
        self._config = config
        self._batch = batch
        self._walk: dict[str, tuple[int, int] | None] = {}
        """Per event type, the (ts_ms, id) the walk of this run has passed; ``None`` once
        the type is walked to its cutoff. Reset when a run ends."""

    def prune_step(self, now: datetime) -> tuple[Pruned, bool]:
        """One step: at most ``batch`` rows of each kind, in one transaction; and whether
        there may be more (the run is done when not)."""
        pruned = Pruned()
        config = self._config
        with self._sessions.begin() as session:
            if (cut := _cutoff(now, config.events_retention_days)) is not None:
                pruned.events = self._events(session, cut)
                pruned.sequence_gaps = self._delete(session, SequenceGap, SequenceGap.id,
                                                    SequenceGap.filled_at < cut)  # fmt: skip
                pruned.help_calls = self._delete(
                    session, HelpCall, HelpCall.id,
                    and_(HelpCall.resolved_at < cut, HelpCall.requested_at < cut))  # fmt: skip
                pruned.bookings = self._delete(  # their day (a local date, ISO: sorts as text)
                    session, Booking, Booking.code,
                    Booking.day < business_date(cut).isoformat())  # fmt: skip
            if (cut := _cutoff(now, config.alarms_retention_days)) is not None:
                # alarm_history goes with its alarm (ON DELETE CASCADE).
                pruned.alarms = self._delete(session, Alarm, Alarm.id,
                                             and_(Alarm.cleared_at.is_not(None),
                                                  Alarm.cleared_at < cut))  # fmt: skip
                pruned.advisories = self._delete(
                    session, StaffingAdvisory, StaffingAdvisory.id,
                    and_(StaffingAdvisory.cleared_at.is_not(None),
                         StaffingAdvisory.cleared_at < cut))  # fmt: skip
            if (cut := _cutoff(now, config.commands_retention_days)) is not None:
                pruned.commands = self._delete(
                    session, Command, Command.id,
                    and_(Command.issued_at < cut, Command.expires_at < cut,
                         or_(Command.result_at.is_(None), Command.result_at < cut)))  # fmt: skip
        walking = config.events_retention_days > 0 and not self._events_walked
        more = walking or any(count >= self._batch for count in pruned.as_dict().values())
        if not more:
            self._walk.clear()  # the next run starts from the oldest again
        return pruned, more

    def _delete(self, session: Session, model: Any, key: Any, condition: Any) -> int:
        ids = list(session.scalars(select(key).where(condition).order_by(key).limit(self._batch)))
        if ids:
            session.execute(delete(model).where(key.in_(ids)))
        return len(ids)

    def _events(self, session: Session, cut: datetime) -> int:
        """The next batch of the walk: per event type along the ``(type, ts_ms)`` index up to
        the cutoff, deleting what is old by both clocks and acknowledged."""
        cut_ms = int(cut.timestamp() * 1000)
        budget, deleted = self._batch, 0
        for event_type in sorted(EVENT_TYPES):
            after = self._walk.get(event_type, (-1, 0))
            if after is None or budget <= 0:  # done in this run, or the step is full
                continue
            ts_ms, row_id = after
            rows = session.execute(
                select(EventRecord.id, EventRecord.site_id, EventRecord.seq,
                       EventRecord.ts_ms, EventRecord.received_at)
                .where(EventRecord.type == event_type, EventRecord.ts_ms < cut_ms,
                       or_(EventRecord.ts_ms > ts_ms,
                           and_(EventRecord.ts_ms == ts_ms, EventRecord.id > row_id)))
                .order_by(EventRecord.ts_ms, EventRecord.id)
                .limit(budget)
            ).all()  # fmt: skip
            budget -= len(rows)
            self._walk[event_type] = (rows[-1].ts_ms, rows[-1].id) if rows else None
            acked = dict(session.execute(
                select(Site.id, Site.acked_seq).where(Site.id.in_({r.site_id for r in rows}))
            ).all()) if rows else {}  # fmt: skip
            old = [r.id for r in rows if r.received_at < cut and r.seq <= acked.get(r.site_id, 0)]
            if old:
                session.execute(delete(EventRecord).where(EventRecord.id.in_(old)))
                deleted += len(old)
        return deleted

    @property
    def _events_walked(self) -> bool:
        return all(self._walk.get(t, (-1, 0)) is None for t in EVENT_TYPES)


__all__ = ["BATCH", "Pruned", "Retention"]

"""Live staffing advice at the edge: see an SLA breach coming, name the move, tell the central.

Every ``daemon.advice_seconds`` (5 minutes by default, ``daemon.advice`` turns it off)
:class:`StaffingAdvice` snapshots the live hall on the event loop (the state the wait
prediction builds, :func:`edge.predict.hall_state`, and each service's issue times
today), then simulates the next hour in a worker thread with the hall's own dispatch
policy (:class:`fastpath.advice.Advisor`: 7 ms on a calm village station, 40-110 ms
with a move search on a 33-window hall, about a second for the city hall here, several
times that on a Pi). When a service's p90 wait will pass its SLA it keeps the advisory
and hands the uplink an ``advice`` message (``docs/PROTOCOLS.md``): again on every run
while it holds (the same id while the breach and the move stay), a clear once when it
goes away. It never touches the dispatcher's windows: a person makes the move.

Only while the hall is open (``hours.open`` .. ``hours.close``), and only for services
with an SLA (``services[].sla_minutes``) and a duration (``services[].mean_minutes``,
without which the hall has no model at all).

The day's arrivals come from the journal: :func:`learn_arrivals` averages the tickets
of each service per hour of the opening day over the last :data:`HISTORY_DAYS` days
that issued any (a day without tickets was a closed day). Learned rather than
configured: the config is rendered from the registry by people who do not know a
hall's hourly shape (they would leave it flat, as the wait prediction's model is); the
journal has each hall's own history (90 days kept by default), which follows the hall
as it changes and costs one indexed read a day, in a worker thread (0.63 s CPU here for
the city hall's 20 days of 7,000 tickets; docs/bench/simulator.md). A hall with fewer than
:data:`MIN_HISTORY_DAYS` such days, and a service with fewer than
:data:`MIN_SERVICE_TICKETS` tickets in them, keep ``visitors_per_day`` from the config
(a flat day, or the hall's learned shape). What has come so far today corrects the
level (the advisor's arrival factor).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from edge.clock import Clock
from edge.config import EdgeConfig
from edge.errors import JournalError
from edge.hall import Hall
from edge.journal import Journal
from edge.predict import hall_model, hall_state, local_midnight_ms
from fastpath.advice import Advisor, Advisory, Outlook
from fastpath.simulate import HOUR_MS, HallModel, ModelError
from fastpath.types import MINUTE_MS
from firmware_protocols import mqtt_messages as mm

log = structlog.get_logger(__name__)

HISTORY_DAYS = 20  # the last open days the arrival profile averages
MIN_HISTORY_DAYS = 3  # fewer: the config's visitors_per_day over a flat day
MIN_SERVICE_TICKETS = 20  # a service with fewer in the history keeps its configured volume
SHAPE_PRIOR = 10.0  # pseudo-tickets pulling a quiet service's hourly shape to the hall's
TTL_PERIODS = 3  # the central drops advice not renewed within this many periods
TEXT_LIMIT = 400  # characters of a message (the contract's AdviceText)


# --------------------------------------------------------------------------- arrivals


@dataclass(frozen=True, slots=True)
class ArrivalProfile:
    """Mean tickets per hourly slot of the opening day (slot 0 starts at ``hours.open``),
    per service, over ``days`` past open days."""

    days: int
    slots: int
    per_service: Mapping[str, tuple[float, ...]]

    def apply(self, model: HallModel) -> HallModel:
        """``model`` with the learned volumes and hourly shapes (see the module docstring)."""
        if self.days < MIN_HISTORY_DAYS:
            return model
        lengths = [min(HOUR_MS, model.arrivals_until_ms - (model.opens_ms + h * HOUR_MS))
                   for h in range(self.slots)]
        hall = [sum(counts[h] for counts in self.per_service.values())
                for h in range(self.slots)]
        hall_total = sum(hall)
        if hall_total <= 0:
            return model
        # Weights are rates: a slot cut short by closing counts per hour it is open.
        hall_shape = tuple(_rate(c, n) for c, n in zip(hall, lengths, strict=True))
        services = []
        for service in model.services:
            counts = self.per_service.get(service.service.id, (0.0,) * self.slots)
            total = sum(counts)
            if total * self.days < MIN_SERVICE_TICKETS:
                services.append(dataclasses.replace(service, profile=hall_shape))
                continue
            # SHAPE_PRIOR tickets over the history, spread as the hall's: per day, per slot.
            pulled = [c + SHAPE_PRIOR / self.days * h / hall_total
                      for c, h in zip(counts, hall, strict=True)]
            scale = total / sum(pulled)
            shape = tuple(_rate(c * scale, n) for c, n in zip(pulled, lengths, strict=True))
            services.append(dataclasses.replace(service, visitors_per_day=total,
                                                profile=shape))
        return dataclasses.replace(model, services=tuple(services), hourly_profile=hall_shape)


def _rate(count: float, length_ms: int) -> float:
    return count * HOUR_MS / length_ms if length_ms > 0 else 0.0


def learn_arrivals(journal: Journal, config: EdgeConfig, before_seq: int,
                   days: int = HISTORY_DAYS) -> ArrivalProfile:
    """The arrival profile of the open days before ``before_seq`` (today's ``day.reset``)."""
    open_minute, close_minute = config.hours.open_minute, config.hours.close_minute
    slots = max(1, math.ceil((close_minute - open_minute) / 60))
    starts = [seq for seq, _day in journal.day_starts() if seq < before_seq]
    # Closed days (weekends, holidays) still reset: look back far enough for ``days`` open ones.
    after = starts[-3 * days] - 1 if len(starts) > 3 * days else 0
    per_day: list[dict[str, list[int]]] = []
    tz = config.site.tz
    for event in journal.events_of(("day.reset", "ticket.issued"), after_seq=after,
                                   before_seq=before_seq):
        body = event.body
        if isinstance(body, mm.DayReset):
            per_day.append({})
            continue
        if not isinstance(body, mm.TicketIssued) or not per_day:
            continue
        local = datetime.fromtimestamp(event.ts / 1000, tz)
        slot = (local.hour * 60 + local.minute - open_minute) // 60
        if 0 <= slot < slots:
            per_day[-1].setdefault(body.service, [0] * slots)[slot] += 1
    kept = [day for day in per_day if day][-days:]
    services = {sid for day in kept for sid in day}
    per_service = {sid: tuple(sum(day.get(sid, [0] * slots)[h] for day in kept) / len(kept)
                              for h in range(slots)) for sid in sorted(services)}
    return ArrivalProfile(len(kept), slots, per_service)


def issued_today(model: HallModel, hall: Hall, midnight_ms: int) -> dict[str, list[int]]:
    """Each modelled service's issue times today, ms since local midnight."""
    ids = {m.service.id for m in model.services}
    issued: dict[str, list[int]] = {sid: [] for sid in ids}
    for ticket in hall.dispatcher.tickets():
        if ticket.service_id in ids:
            issued[ticket.service_id].append(ticket.issued_ms - midnight_ms)
    return issued


# --------------------------------------------------------------------------- the contract


def _text(text: str) -> str:
    clean = "".join(c if c.isprintable() else " " for c in text).strip()
    return clean if len(clean) <= TEXT_LIMIT else clean[:TEXT_LIMIT - 1] + "…"


def _outlook(outlook: Outlook) -> mm.AdviceOutlook:
    return mm.AdviceOutlook(
        service=outlook.service_id, sla_s=outlook.sla_ms // 1000, p90_s=outlook.p90_ms // 1000,
        over_sla_pct=round(100 * outlook.over_share, 1),
        breach_pct=round(100 * outlook.breach_probability, 1),
        tickets=round(outlook.tickets, 1))


def contract_advisory(advisory: Advisory, advisory_id: uuid.UUID,
                      since_ms: int) -> mm.Advisory:
    """The advisory as the ``advice`` message carries it."""
    move = advisory.move
    return mm.Advisory(
        id=advisory_id, since_ts=since_ms, horizon_s=advisory.horizon_ms // 1000,
        breaching=[o.service_id for o in advisory.breaching[:mm.MAX_QUEUES]],
        move=None if move is None else mm.AdviceMove(
            kind=move.kind,  # type: ignore[arg-type]  # "switch", "open" or "add"
            windows=list(move.windows), services=list(move.services), count=move.count),
        before=[_outlook(o) for o in advisory.before[:mm.MAX_QUEUES]],
        after=None if advisory.after is None else [
            _outlook(o) for o in advisory.after[:mm.MAX_QUEUES]],
        message_zh=_text(advisory.message_zh), message_en=_text(advisory.message_en))


@dataclass(frozen=True, slots=True)
class _Latest:
    """The advice to send (without the MQTT session: the uplink knows it)."""

    ts: int
    clock_synced: bool
    expires_ms: int
    advisory: mm.Advisory | None


# --------------------------------------------------------------------------- the task


class StaffingAdvice:
    """The staffing advice task (module docstring); the uplink reads :meth:`message`."""

    def __init__(self, hall: Hall, clock: Clock, *, enabled: Callable[[], bool],
                 period_s: Callable[[], float], wake_uplink: Callable[[], None],
                 beat: Callable[[], None] = lambda: None) -> None:
        self._hall = hall
        self._clock = clock
        self._enabled = enabled
        self._period_s = period_s
        self._wake_uplink = wake_uplink
        self._beat = beat
        self._advisor: Advisor | None = None
        self._built_for: tuple[EdgeConfig, str] | None = None  # (config, day) of the advisor
        self._current: Advisory | None = None
        self._latest: _Latest | None = None
        self.profile: ArrivalProfile | None = None
        self.runs = 0

    @property
    def current(self) -> mm.Advisory | None:
        """The advisory in force, as last sent (None: no breach coming)."""
        latest = self._latest
        return None if latest is None else latest.advisory

    def message(self, session: int) -> mm.Advice | None:
        """The latest advice for the uplink to send in MQTT session ``session``."""
        latest = self._latest
        if latest is None:
            return None
        return mm.Advice(site=self._hall.config.site.id, session=session, ts=latest.ts,
                         clock_synced=latest.clock_synced, expires_ts=latest.expires_ms,
                         advisory=latest.advisory)

    async def run(self) -> None:
        while True:
            self._beat()
            await self.update()
            await asyncio.sleep(self._period_s())

    async def update(self) -> mm.Advisory | None:
        """Simulate the next hour now; the advisory in force afterwards."""
        hall, config = self._hall, self._hall.config
        now = self._clock.now_ms()
        period_ms = int(self._period_s() * 1000)
        midnight = local_midnight_ms(config, now)
        minute = (now - midnight) // MINUTE_MS
        if not self._enabled() or not config.hours.open_minute <= minute < \
                config.hours.close_minute:
            self._publish(None, now, period_ms, 0)
            return None
        advisor = await self._advisor_for(config, hall.day)
        if self._hall.config is not config:  # reloaded meanwhile: the next turn has it
            return self.current
        if advisor is None:  # no model: a service without mean_minutes
            self._publish(None, now, period_ms, 0)
            return None
        state = hall_state(advisor.model, config, hall.dispatcher, now)
        issued = issued_today(advisor.model, hall, midnight)
        started = time.monotonic()
        try:
            advisory = await asyncio.to_thread(advisor.advise, state, issued, now & 0x7FFFFFFF)
        except ModelError as exc:  # a state the model cannot take: no advice this turn
            log.error("advice.failed", error=str(exc))
            advisory = None
        run_ms = int((time.monotonic() - started) * 1000)
        self.runs += 1
        self._publish(advisory, now, period_ms, run_ms)
        return self.current

    async def _advisor_for(self, config: EdgeConfig, day: str) -> Advisor | None:
        """The advisor of this config and day, built again after a reload or a day reset
        (the arrival profile is learned in a worker thread)."""
        if self._built_for is not None and self._built_for[0] is config \
                and self._built_for[1] == day:
            return self._advisor
        model = hall_model(config)
        if model is None:
            log.info("advice.off", reason="a service has no mean_minutes")
            self._built_for, self._advisor = (config, day), None
            return None
        today = self._hall.journal.last_seq_of("day.reset")
        path, site = self._hall.journal.path, config.site.id
        try:
            profile = await asyncio.to_thread(_learn, path, site, config, today)
        except JournalError as exc:  # the profile improves the advice; without it, flat
            log.warning("advice.history_unreadable", error=str(exc))
            profile = None
        self.profile = profile
        if profile is not None:
            model = profile.apply(model)
            log.info("advice.arrivals", days=profile.days,
                     per_day={sid: round(sum(c), 1) for sid, c in profile.per_service.items()})
        self._advisor = Advisor(model, window_numbers=[w.number for w in config.windows])
        self._built_for = (config, day)  # only once built: a failure is tried again
        return self._advisor

    def _publish(self, advisory: Advisory | None, now: int, period_ms: int,
                 run_ms: int) -> None:
        previous = self._current
        expires = now + TTL_PERIODS * period_ms + 4 * run_ms
        synced = self._clock.synced()
        if advisory is None:
            self._current = None
            if previous is not None:  # one clear; the central drops it anyway at expiry
                self._latest = _Latest(now, synced, expires, None)
                log.info("advice.cleared", services=[o.service_id for o in previous.breaching])
                self._wake_uplink()
            return
        latest = self._latest
        if previous is not None and previous.key == advisory.key and latest is not None \
                and latest.advisory is not None:
            advisory_id, since = latest.advisory.id, latest.advisory.since_ts
        else:
            advisory_id, since = uuid.uuid4(), now
            log.warning("advice.raised", services=[o.service_id for o in advisory.breaching],
                        move=None if advisory.move is None else advisory.move.kind,
                        message=advisory.message_zh)
        self._current = advisory
        self._latest = _Latest(now, synced, expires,
                               contract_advisory(advisory, advisory_id, since))
        self._wake_uplink()

    def status(self) -> dict[str, Any] | None:
        """The advisory in force for ``GET /status`` (None: none)."""
        advisory = self.current
        return None if advisory is None else {
            "id": str(advisory.id), "since_ts": advisory.since_ts,
            "breaching": list(advisory.breaching), "message_zh": advisory.message_zh,
            "message_en": advisory.message_en,
            "move": None if advisory.move is None else {
                "kind": advisory.move.kind, "windows": list(advisory.move.windows),
                "services": list(advisory.move.services), "count": advisory.move.count}}


def _learn(path: Path, site_id: str, config: EdgeConfig, before_seq: int) -> ArrivalProfile:
    """Read the history beside the live daemon (its own read-only connection)."""
    with Journal(path, site_id, read_only=True) as journal:
        return learn_arrivals(journal, config, before_seq)


__all__ = ["HISTORY_DAYS", "ArrivalProfile", "StaffingAdvice", "contract_advisory",
           "issued_today", "learn_arrivals"]

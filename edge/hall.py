"""The hall state: the fold of today's journal events over a fastpath Dispatcher.

Every change goes the same way::

    command ─> validate against the current state ─> journal.append (durable)
            ─> apply (the very function a replay uses) ─> tell the listeners

so the live state and the state rebuilt after a crash cannot differ: after
``kill -9`` or a power cut, :meth:`Hall.open` folds the events since the last
``day.reset`` and carries on with the same ticket numbers. Applying an event
checks that the dispatcher reproduces it (the number issued, the ticket
called); if not, :class:`~edge.errors.ReplayDiverged` is raised rather than
guessing. Configs are journaled with their ``config.applied`` event, so a
replay uses the config that was in force at each point of the day.

Commands that cannot run now raise :class:`~edge.errors.CommandRejected`
(nothing is journaled). Time comes from an injected :class:`~edge.clock.Clock`.

Key flows: sign in/out, next (finishes the ticket the window still holds,
then calls), recall, transfer, no-show, pause/resume, finish; overtime and
SLA breaches become events once per ticket; 呼叫帮办 requests are acknowledged,
resolved, or escalated after N minutes.

好差评 (一次一评): a 办件 of the business system is opened at a window (the HTTP
hook or the keypad's 办件 key) and closed (the hook, or the ticket's finish).
Each close, or the finish of a ticket that had no 办件, offers the rating pad
for ``ratings.pad_seconds``; a rating then binds to that 办件 (or ticket), the
window and the staff signed in, and after a 差评 (1 or 2) the pad's follow-up
reasons are taken for ``ratings.reason_seconds``. An offer that ends unrated —
its time ran out, another close or finish at the window replaced it, the day
ended — is journaled as ``rating.missed``. A 办件 is offered once a day: closing
it again offers nothing.

Ticket numbers, the late-appointment rule and the people ahead are the
dispatcher's (:meth:`fastpath.dispatcher.Dispatcher.plan_issue`); the hall asks
it. A command from a window terminal passes its ``mark``
(:class:`~edge.input_mark.InputMark`), journaled with the command's events.

Tickets are issued only while the journal holds the site's epoch
(``journal.numbering``): a new device waits for the central's restore
(:meth:`Hall.take_restore`: the day's counters, queue and windows as the central
knows them, journaled as ``day.restored``), a replaced one stops
(:meth:`Hall.replaced`). Both refuse a ticket with HTTP 503.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import msgspec
import structlog

from edge.clock import Clock, business_day
from edge.config import EdgeConfig, ServiceConfig, parse_config
from edge.errors import CommandRejected, ConfigInvalid, JournalError, ReplayDiverged
from edge.input_mark import InputMark
from edge.journal import Journal, RequestKey
from edge.predict import PredictionJob, WaitPredictor
from edge.pushed import PushedStore, store_beside
from fastpath.calendar import (
    Calendar,
    Problems,
    hhmm,
    parse_dates,
    parse_special,
    with_city_days,
)
from fastpath.dispatcher import Dispatcher, IssuePlan, WindowTakeover
from fastpath.types import (
    CLASS_BY_LABEL,
    MINUTE_MS,
    DispatchError,
    NoShowPolicy,
    Ticket,
    TicketClass,
    TicketState,
    WindowState,
)
from firmware_protocols import mqtt_messages as mm

log = structlog.get_logger(__name__)

_STAFF_RE = re.compile(mm.IDENT_PATTERN)  # the contract's ids (工号 in window.signed_in)
_TOKEN_RE = re.compile(mm.TOKEN_PATTERN)
_TEXT_LIMIT = 200
_CASE_NO_RE = re.compile(mm.IDENT_PATTERN)  # 办件编号 as the contract takes it
BAD_RATING_MAX = 2  # 不满意 and 非常不满意: a 差评, with follow-up reasons
RATING_GRACE_S = 10  # a press latched as the pad went dark still counts
Listener = Callable[[mm.Event], None]
_RESTORE_PARTS = msgspec.json.Decoder(list[mm.Restore])
_RESTORE_ENCODER = msgspec.json.Encoder()

NOT_NUMBERING: dict[str, tuple[str, str]] = {
    "waiting": ("not_granted", "暂停取号：新设备等待中心确认接管并恢复今日号码 "
                "(this device waits for the central to hand it the site's numbers)"),
    "replaced": ("replaced", "本机已被新设备接替，不再取号 "
                 "(another device numbers this site's tickets now)"),
}
"""Why the hall issues no ticket, by ``journal.numbering``: the code and the message."""


def _restored_tickets(parts: Sequence[mm.Restore]) -> list[Ticket]:
    tickets = []
    for part in parts:
        for t in part.tickets:
            state = TicketState(t.state)
            tickets.append(Ticket(
                number=t.ticket, service_id=t.service, klass=CLASS_BY_LABEL[t.ticket_class],
                issued_ms=t.issued_ts, key_ms=t.key_ts, state=state, window=t.window,
                recalls=t.recalls, requeued=t.requeued, transfers=t.transfers))
    return tickets


def _restored_windows(parts: Sequence[mm.Restore]) -> list[WindowTakeover]:
    return [WindowTakeover(w.window, WindowState(w.state), w.staff, w.ticket)
            for w in parts[0].windows]


# --------------------------------------------------------------------------- state records


@dataclass(slots=True)
class HelpRequest:
    button: str
    location: str
    requested_ms: int
    acknowledged_ms: int | None = None
    staff: str | None = None
    escalated: bool = False


@dataclass(frozen=True, slots=True)
class PendingRating:
    """The rating pad's offer at a window: what a rating given now is about."""

    ticket: str
    staff: str
    case: mm.CaseInfo | None
    until_ms: int  # a rating after this is refused; the offer ends as rating.missed
    seq: int  # the event that made the offer (outputs light the pad for it)


@dataclass(frozen=True, slots=True)
class OpenCase:
    """A 办件 open at a window, and the ticket served there when it was opened."""

    case: mm.CaseInfo
    ticket: str | None


@dataclass(slots=True)
class ReasonWindow:
    """After a 差评: the rating the pad's follow-up reasons are for, until ``until_ms``."""

    ticket: str
    case_no: str | None
    until_ms: int
    chosen: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class IssuedTicket:
    """What the kiosk, the button and the printer need once the ticket is durable."""

    ticket: Ticket
    people_ahead: int
    wait: mm.WaitPrediction | None
    event: mm.Event


@dataclass(slots=True)
class _Day:
    """Everything folded from the events of one business day."""

    day: str
    dispatcher: Dispatcher
    reset_seq: int = 0  # the seq of the day's day.reset
    staff: dict[int, str] = field(default_factory=dict)  # window -> staff signed in
    pending_rating: dict[int, PendingRating] = field(default_factory=dict)
    cases: dict[int, OpenCase] = field(default_factory=dict)  # window -> its open 办件
    reasons: dict[int, ReasonWindow] = field(default_factory=dict)  # window -> last 差评
    offered_cases: set[str] = field(default_factory=set)  # 办件 offered today (一次一评)
    closed_cases: set[str] = field(default_factory=set)  # 办件 closed today
    ticket_cases: set[str] = field(default_factory=set)  # tickets whose 办件 was closed
    help: dict[str, HelpRequest] = field(default_factory=dict)  # open requests by button
    sla_breached: set[str] = field(default_factory=set)
    overtime: set[str] = field(default_factory=set)
    recent_calls: list[tuple[str, int]] = field(default_factory=list)  # newest last
    waits: dict[str, mm.WaitPrediction] = field(default_factory=dict)  # printed per ticket
    tokens: dict[str, str] = field(default_factory=dict)  # ticket -> its progress-page token
    bookings: dict[str, str] = field(default_factory=dict)  # booking code -> ticket it took
    service_waits: dict[str, tuple[mm.WaitPrediction, int]] = field(
        default_factory=dict)  # service -> its latest prediction and when it was made
    done: int = 0
    no_show: int = 0
    ratings: int = 0
    rating_sum: int = 0


def _dispatcher_for(config: EdgeConfig) -> Dispatcher:
    return Dispatcher([s.to_service() for s in config.services],
                      [w.to_profile() for w in config.windows], config.policy)


def contract_class(klass: TicketClass) -> mm.TicketClass:
    """The class as ``ticket.issued`` spells it: its label (the contract's are the same
    labels, tested)."""
    return cast(mm.TicketClass, klass.label)


class Predict(enum.Enum):
    """``Hall.issue(wait=Predict.HERE)``: simulate the wait on the caller's thread."""

    HERE = "here"


BOOKING_CODE_RE = re.compile(mm.BOOKING_CODE_PATTERN)


def _run_prediction(job: PredictionJob, service_id: str) -> mm.WaitPrediction | None:
    """The wait to print; advisory, so a failure gives None and the ticket is issued."""
    try:
        return job()
    except Exception as exc:
        log.error("wait.predict_failed", service=service_id, error=repr(exc))
        return None


def closed_reason(calendar: Calendar, local: datetime, service: ServiceConfig | None = None
                  ) -> tuple[str, str] | None:
    """Why no ticket (of ``service``) is issued at the local time ``local``, (Chinese,
    English); None when one is. The Chinese fits the hall screen's font."""
    plan = calendar.day(local.date())
    hours = plan.hours
    if hours is None:
        if plan.kind == "holiday":
            return "节假日休息", "closed today: public holiday"
        return "今日休息", "closed today"
    minute = local.hour * 60 + local.minute
    if minute < hours.opens:
        return (f"尚未开始取号 {hhmm(hours.opens)}",
                f"tickets are issued from {hhmm(hours.opens)}")
    if not hours.open_at(minute) and minute < hours.last_ticket:
        again = hours.next_open(minute)
        if again is not None:
            return (f"午间休息 {hhmm(again)}开始取号",
                    f"lunch break: tickets again from {hhmm(again)}")
    if not hours.issuing(minute):
        return ("今日取号已结束", f"ticket issuing ended at {hhmm(hours.last_ticket)}; "
                "windows serve the tickets already waiting")
    margin = 0 if service is None else calendar.service_margin(service.id)
    if service is not None and not hours.issuing(minute, margin):
        until = hhmm(hours.last_ticket - margin)
        return (f"{service.name_zh}今日取号已结束",
                f"{service.name_en or service.id} takes no more tickets today (since {until})")
    return None


def _text(message: str) -> str:
    clean = "".join(c if c.isprintable() else " " for c in message)
    return clean[:_TEXT_LIMIT] or "?"


# --------------------------------------------------------------------------- the hall


class Hall:
    """One hall's live state over its journal."""

    RECENT_CALLS = 8

    def __init__(self, config: EdgeConfig, journal: Journal, clock: Clock,
                 pushed: PushedStore | None = None) -> None:
        self._pushed = pushed  # what the central pushed: a stop, the city calendar
        self.config = config
        self.journal = journal
        self.clock = clock
        self._listeners: list[Listener] = []
        self._day = _Day("", _dispatcher_for(config))
        self._in_force = config  # the config whose services/windows the dispatcher uses
        self._predictor: WaitPredictor | None = None
        self.predictor_factory: Callable[[EdgeConfig], WaitPredictor] = WaitPredictor

    # -- open / replay -------------------------------------------------------

    @property
    def config(self) -> EdgeConfig:
        """The config in force, with the city calendar the central pushed over its own."""
        return self._config

    @config.setter
    def config(self, config: EdgeConfig) -> None:
        self._config = self._with_pushed(config)

    def _with_pushed(self, config: EdgeConfig) -> EdgeConfig:
        found = None if self._pushed is None else self._pushed.get("calendar")
        if found is None:
            return config
        body = found[1]
        problems = Problems()
        calendar = with_city_days(config.calendar, body, "calendar.", problems)
        if problems.items:  # checked when it came: a later reader that disagrees
            log.error("calendar.pushed_unreadable", problems=problems.items)
            return config
        return dataclasses.replace(config, calendar=calendar)

    @classmethod
    def open(cls, config: EdgeConfig, journal: Journal, clock: Clock,
             pushed: PushedStore | None = None) -> Hall:
        """Rebuild today's state from the journal, then bring it up to date.

        A fresh journal gets the config and the first ``day.reset``; a changed
        config file is applied (or rejected) as on SIGHUP; a new business day
        starts with ``day.reset``. ``pushed``: what the central pushed (a stop, the
        city calendar), kept beside the journal.
        """
        hall = cls(config, journal, clock, pushed)
        hall._replay()
        now = clock.now_ms()
        if journal.config_at(journal.last_seq) is None:
            hall._pending_config = config
            hall._commit([mm.ConfigApplied(version=config.version)], now,
                         config=(config.version, config.text))
        elif config.text != hall._in_force.text:
            hall.config = hall._in_force  # the old config stays unless the new one applies
            hall.reconfigure(config)
        else:
            hall.config = config
        if hall._day.day != business_day(now, config.site.tz, config.hours.reset_minute):
            hall.tick()
        log.info("hall.opened", day=hall._day.day, seq=journal.last_seq,
                 tickets=len(hall.dispatcher.tickets()))
        return hall

    @classmethod
    def read_only(cls, config: EdgeConfig, journal: Journal, clock: Clock) -> Hall:
        """Today's state as journaled, writing nothing (``onedoor edge status``)."""
        hall = cls(config, journal, clock)
        hall._replay()
        return hall

    def _replay(self) -> None:
        start = self.journal.last_seq_of("day.reset")
        stored = self.journal.config_at(start)
        if stored is not None:
            self._in_force = self._stored_config(stored.text)
        self._day = _Day("", _dispatcher_for(self._in_force))
        replayed = 0
        for event in self.journal.events(after_seq=max(start - 1, 0)):
            self._apply(event, replay=True)
            replayed += 1
        log.info("hall.replayed", events=replayed, from_seq=start)

    def _stored_config(self, text: str) -> EdgeConfig:
        try:
            return parse_config(text, source="<journal>", check_files=False,
                                base_dir=Path(self.config.base_dir))
        except ConfigInvalid as exc:
            raise ReplayDiverged(f"a journaled config no longer parses: {exc}") from exc

    # -- listeners and queries -----------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(event)`` after each live event is durable and applied."""
        self._listeners.append(listener)

    @property
    def dispatcher(self) -> Dispatcher:
        return self._day.dispatcher

    @property
    def day(self) -> str:
        return self._day.day

    @property
    def day_seq(self) -> int:
        """The seq of the day's ``day.reset`` (0 before the first)."""
        return self._day.reset_seq

    def staff_at(self, window: int) -> str | None:
        return self._day.staff.get(window)

    def pending_rating(self, window: int) -> PendingRating | None:
        """The rating pad's offer at ``window``, if one is open."""
        return self._day.pending_rating.get(window)

    def case_at(self, window: int) -> mm.CaseInfo | None:
        """The 办件 open at ``window``, if any."""
        open_case = self._day.cases.get(window)
        return None if open_case is None else open_case.case

    def open_help(self) -> list[HelpRequest]:
        return sorted(self._day.help.values(), key=lambda h: h.requested_ms)

    def recent_calls(self) -> list[tuple[str, int]]:
        return list(self._day.recent_calls)

    def issued_wait(self, number: str) -> mm.WaitPrediction | None:
        """The wait predicted (and printed) when ``number`` was issued today."""
        return self._day.waits.get(number)

    def token_of(self, number: str) -> str | None:
        """The progress-page token of ticket ``number`` issued today (None: issued by an
        edge older than the progress page)."""
        return self._day.tokens.get(number)

    def progress_url(self, number: str) -> str | None:
        """The progress page of ticket ``number`` (its QR), None without ``progress.url``
        or without a token."""
        token = self._day.tokens.get(number)
        return None if token is None else self.config.progress.page_url(token)

    def latest_wait(self, service_id: str) -> tuple[mm.WaitPrediction, int] | None:
        """The service's latest predicted wait today, and when (unix ms) it was made."""
        return self._day.service_waits.get(service_id)

    def counts(self) -> tuple[int, int]:
        """(当天办件量, of which 办结): tickets served to an end today, and those done."""
        return self._day.done + self._day.no_show, self._day.done

    def snapshot(self) -> dict[str, Any]:
        """The hall at a glance (``GET /status``, ``onedoor edge status``)."""
        dispatcher = self.dispatcher
        now = self.clock.now_ms()
        queues = []
        for service in self.config.services:
            try:
                waiting = dispatcher.waiting(service.id)
            except DispatchError:
                waiting = []
            queues.append({
                "service": service.id, "name": service.name_zh, "waiting": len(waiting),
                "oldest_wait_s": max(((now - t.issued_ms) // 1000 for t in waiting), default=0),
            })
        cases, done = self.counts()
        return {
            "site": self.config.site.id, "name": self.config.site.name, "day": self.day,
            "device": self.journal.device_id, "epoch": self.journal.epoch,
            "numbering": self.journal.numbering,
            "seq": self.journal.last_seq, "acked_seq": self.journal.acked_seq,
            "config": self._in_force.version,
            "queues": queues,
            "windows": [{"window": w.number, "state": w.state.value, "staff": w.staff_id,
                         "ticket": w.current} for w in dispatcher.windows()],
            "issued": len(dispatcher.tickets()), "cases": cases, "done": done,
            "completion_pct": None if cases == 0 else round(100 * done / cases, 1),
            "ratings": self._day.ratings,
            "rating_avg": (round(self._day.rating_sum / self._day.ratings, 2)
                           if self._day.ratings else None),
            "help": [{"button": h.button, "location": h.location,
                      "acknowledged": h.acknowledged_ms is not None, "escalated": h.escalated}
                     for h in self.open_help()],
            "recent_calls": [{"ticket": t, "window": w} for t, w in self._day.recent_calls],
        }

    # -- commit / apply ------------------------------------------------------

    def _commit(self, bodies: list[mm.EventBody], now_ms: int,
                config: tuple[str, str] | None = None, *, mark: InputMark | None = None,
                request: RequestKey | None = None,
                restore: bytes | None = None) -> list[mm.Event]:
        events = self.journal.append(bodies, ts_ms=now_ms, clock_synced=self.clock.synced(),
                                     config=config, input_mark=mark, request=request,
                                     restore=restore)
        self._after_commit(events)
        return events

    def _after_commit(self, events: list[mm.Event]) -> None:
        """Apply durable live events and tell the listeners."""
        for event in events:
            self._apply(event, replay=False)
        for event in events:
            log.info("hall.event", seq=event.seq, type=event.type)
            for listener in self._listeners:
                listener(event)

    def _apply(self, event: mm.Event, *, replay: bool) -> None:
        try:
            self._fold(event, replay)
        except DispatchError as exc:
            raise ReplayDiverged(f"event {event.seq} ({event.type}) does not apply: {exc}") from exc

    def _fold(self, event: mm.Event, replay: bool) -> None:
        day = self._day
        dispatcher = day.dispatcher
        body = event.body
        now = event.ts

        def expect(actual: str | None, wanted: str) -> None:
            if actual != wanted:
                raise ReplayDiverged(
                    f"event {event.seq} ({event.type}) says {wanted}, the dispatcher gave {actual}")

        match body:
            case mm.TicketIssued():
                ticket = dispatcher.issue(body.service, now, CLASS_BY_LABEL[body.ticket_class],
                                          body.booked_ts)
                expect(ticket.number, body.ticket)
                if body.token is not None:
                    day.tokens[body.ticket] = body.token
                if body.wait is not None:
                    day.waits[body.ticket] = body.wait
                    day.service_waits[body.service] = (body.wait, now)
            case mm.TicketCalled():
                called = dispatcher.call_next(body.window, now)
                expect(None if called is None else called.number, body.ticket)
                day.recent_calls.append((body.ticket, body.window))
                del day.recent_calls[:-self.RECENT_CALLS]
            case mm.TicketRecalled():
                expect(dispatcher.recall(body.window, now).number, body.ticket)
                day.recent_calls.append((body.ticket, body.window))
                del day.recent_calls[:-self.RECENT_CALLS]
            case mm.TicketServing():
                expect(dispatcher.start_serving(body.window, now).number, body.ticket)
            case mm.TicketDone():
                expect(dispatcher.finish(body.window, now).number, body.ticket)
                day.done += 1
                staff = day.staff.get(body.window)
                if staff is not None and body.ticket not in day.ticket_cases:
                    day.pending_rating[body.window] = PendingRating(
                        body.ticket, staff, None, self._offer_until(now), event.seq)
            case mm.TicketNoShow():
                ticket = dispatcher.no_show(body.window, now)
                expect(ticket.number, body.ticket)
                if ticket.state is TicketState.NO_SHOW:
                    day.no_show += 1
            case mm.TicketTransferred():
                dispatcher.transfer(body.ticket, body.to_service, now)
            case mm.TicketCancelled():
                dispatcher.cancel(body.ticket, now)
            case mm.RatingGiven():
                day.pending_rating.pop(body.window, None)
                day.ratings += 1
                day.rating_sum += body.value
                case_no = None if body.case is None else body.case.no
                if body.value <= BAD_RATING_MAX:
                    until = now + self._in_force.ratings.reason_seconds * 1000
                    day.reasons[body.window] = ReasonWindow(body.ticket, case_no, until,
                                                            set(body.reasons))
            case mm.RatingReason():
                reasons = day.reasons.get(body.window)
                if reasons is not None:
                    reasons.chosen.add(body.reason)
            case mm.RatingMissed():
                day.pending_rating.pop(body.window, None)
            case mm.CaseOpened():
                day.cases[body.window] = OpenCase(body.case, body.ticket)
            case mm.CaseClosed():
                self._fold_case_closed(body, event.seq, now)
            case mm.WindowSignedIn():
                dispatcher.sign_in(body.window, body.staff)
                day.staff[body.window] = body.staff
            case mm.WindowSignedOut():
                dispatcher.sign_out(body.window)
                day.staff.pop(body.window, None)  # a rating offer outlives the sign-out
            case mm.WindowPaused():
                dispatcher.pause(body.window)
            case mm.WindowResumed():
                dispatcher.resume(body.window)
            case mm.HelpRequested():
                day.help[body.button] = HelpRequest(body.button, body.location, now)
            case mm.HelpAcknowledged():
                request = day.help.get(body.button)
                if request is not None:
                    request.acknowledged_ms, request.staff = now, body.staff
            case mm.HelpResolved():
                day.help.pop(body.button, None)
            case mm.HelpEscalated():
                if body.button in day.help:
                    day.help[body.button].escalated = True
            case mm.SlaBreached():
                day.sla_breached.add(body.ticket)
            case mm.ServiceOvertime():
                day.overtime.add(body.ticket)
            case mm.DayReset():
                self._day = _Day(body.day, _dispatcher_for(self._in_force), event.seq)
            case mm.DayRestored():
                parts = _RESTORE_PARTS.decode(self.journal.restore_payload(event.seq))
                dispatcher.restore(_restored_tickets(parts),
                                   {c.prefix: c.last for c in parts[0].counters},
                                   _restored_windows(parts), skip=body.skipped)
                for window in parts[0].windows:
                    if window.staff is not None and window.window not in day.staff:
                        day.staff[window.window] = window.staff
            case mm.ConfigApplied():
                new = (self._stored_config(self.journal.config_text(event.seq)) if replay
                       else self._pending_config)
                dispatcher.reconfigure([s.to_service() for s in new.services],
                                       [w.to_profile() for w in new.windows], new.policy)
                self._in_force = new
                if not replay:
                    self.config = new
            case mm.BookingCheckedIn():
                day.bookings[body.code] = body.ticket
            case (mm.DeviceStatus() | mm.ConfigRejected() | mm.OutboxDropped()
                  | mm.JournalLost() | mm.AckRefused() | mm.DeviceReplaced()
                  | mm.IssuingStopped() | mm.IssuingResumed() | mm.CalendarApplied()
                  | mm.BookingsApplied()):
                pass  # reported upstream; what the central pushed is kept in edge.pushed

    _pending_config: EdgeConfig

    def _offer_until(self, now_ms: int) -> int:
        """When a rating offer made at ``now_ms`` ends; the pad's own time plus a grace
        for a press latched at its last moment to cross the bus."""
        return now_ms + (self._in_force.ratings.pad_seconds + RATING_GRACE_S) * 1000

    def _fold_case_closed(self, body: mm.CaseClosed, seq: int, now_ms: int) -> None:
        day = self._day
        open_case = day.cases.pop(body.window, None)
        day.closed_cases.add(body.case_no)
        if body.ticket is not None:
            day.ticket_cases.add(body.ticket)
        if open_case is None or body.ticket is None or body.case_no in day.offered_cases:
            return  # no ticket to bind a rating to, or offered already today (一次一评)
        day.offered_cases.add(body.case_no)
        staff = day.staff.get(body.window, f"w{body.window}")
        day.pending_rating[body.window] = PendingRating(
            body.ticket, staff, open_case.case, self._offer_until(now_ms), seq)

    # -- tickets -------------------------------------------------------------

    def issue(self, service_id: str, klass: TicketClass = TicketClass.NORMAL, *,
              channel: mm.Channel = "api", booked_ms: int | None = None,
              wait: mm.WaitPrediction | Predict | None = Predict.HERE,
              request: RequestKey | None = None, booking: str | None = None) -> IssuedTicket:
        """Take a ticket (取号); returns once its ``ticket.issued`` event is durable.

        Outside ``hours.open`` .. ``hours.last_ticket`` (default ``close``) it raises
        :class:`CommandRejected` with code ``closed`` (HTTP 409), whatever the class.
        ``wait`` is the prediction to record, made from :meth:`prediction_job` off the
        event loop; by default it is simulated here, on the caller's thread.
        ``request``: a kiosk's idempotency key, journaled with the ticket. ``booking``:
        the code of the booking checked in (:meth:`booking`), journaled with the ticket.
        """
        now = self.clock.now_ms()
        plan = self._plan(service_id, klass, booked_ms, now)
        numbering = self.journal.numbering
        if numbering != "granted":
            code, message = NOT_NUMBERING[numbering]
            raise CommandRejected(message, status=503, code=code)
        if plan.widened:  # the contract, the screens and the voice take 3-4 digits
            prefix = plan.number.rstrip("0123456789")
            raise CommandRejected(f"ticket numbers of {prefix} are used up for today",
                                  status=503, code="numbers_exhausted")
        if wait is Predict.HERE:
            job = self.prediction_job(service_id, klass, booked_ms=booked_ms)
            wait = None if job is None else _run_prediction(job, service_id)
        booked_ts = booked_ms if plan.klass is TicketClass.APPOINTMENT else None
        body = mm.TicketIssued(ticket=plan.number, service=service_id,
                               ticket_class=contract_class(plan.klass), booked_ts=booked_ts,
                               channel=channel, people_ahead=plan.people_ahead, wait=wait,
                               token=secrets.token_urlsafe(16))
        bodies: list[mm.EventBody] = [body]
        if booking is not None:
            bodies.append(mm.BookingCheckedIn(code=booking, ticket=plan.number))
        event = self._commit(bodies, now, request=request)[0]
        return IssuedTicket(self.dispatcher.ticket(plan.number), plan.people_ahead, wait, event)

    def _plan(self, service_id: str, klass: TicketClass, booked_ms: int | None,
              now: int) -> IssuePlan:
        """Check a ticket request and ask the dispatcher what it would issue (number,
        class after the late-appointment rule, people ahead); else :class:`CommandRejected`."""
        self._check_request(service_id, klass, booked_ms, now)
        return self.dispatcher.plan_issue(service_id, now, klass, booked_ms)

    def _check_request(self, service_id: str, klass: TicketClass, booked_ms: int | None,
                       now: int) -> None:
        """:class:`CommandRejected` for a ticket request the hall cannot take now."""
        self.check_issuing(now, service_id)
        try:
            self.config.service(service_id)
            self.dispatcher.waiting_count(service_id)
        except (KeyError, DispatchError):
            raise CommandRejected(f"unknown service {service_id!r}", status=404,
                                  code="unknown_service") from None
        try:
            klass = TicketClass(klass)
        except ValueError:
            raise CommandRejected(f"unknown ticket class {klass!r}", status=422,
                                  code="bad_class") from None
        if (klass is TicketClass.APPOINTMENT) != (booked_ms is not None):
            raise CommandRejected("booked time is required for appointments and only for them",
                                  status=422, code="bad_booking")
        if booked_ms is not None and not 0 <= booked_ms <= 4_102_444_800_000:
            raise CommandRejected("booked time out of range", status=422, code="bad_booking")

    def prediction_job(self, service_id: str, klass: TicketClass = TicketClass.NORMAL, *,
                       booked_ms: int | None = None) -> PredictionJob | None:
        """Check a ticket request as :meth:`issue` would and snapshot the hall for its
        wait prediction; the job may run in a worker thread. None: no prediction (a
        service without ``mean_minutes``, or a failure, logged)."""
        now = self.clock.now_ms()
        self._check_request(service_id, klass, booked_ms, now)
        if booked_ms is not None and self.dispatcher.policy.appointment_late(now, booked_ms):
            klass, booked_ms = TicketClass.NORMAL, None  # a walk-in now (the policy's rule)
        if self._predictor is None or self._predictor.config is not self.config:
            self._predictor = self.predictor_factory(self.config)
        try:
            return self._predictor.job(self.dispatcher, service_id, klass, now, booked_ms)
        except Exception as exc:
            log.error("wait.predict_failed", service=service_id, error=repr(exc))
            return None

    def closed_notice(self, now_ms: int, service_id: str | None = None) -> str | None:
        """None while tickets (of ``service_id``) may be taken, else what the hall screen
        says: 暂停取号 (a stop's reason), 今日休息, 尚未开始取号 08:30, 午间休息
        14:00开始取号, 今日取号已结束."""
        stop = self.stop
        if stop is not None:
            return f"暂停取号 {stop[1]}"
        closed = self._closed(now_ms, service_id)
        return None if closed is None else closed[0]

    def _closed(self, now_ms: int, service_id: str | None) -> tuple[str, str] | None:
        """(Chinese, English) of why no ticket is issued now, by the hall's calendar."""
        local = datetime.fromtimestamp(now_ms / 1000, self.config.site.tz)
        service = None
        if service_id is not None:
            with contextlib.suppress(KeyError):
                service = self.config.service(service_id)
        return closed_reason(self.config.calendar, local, service)

    def issuing_status(self, now_ms: int) -> tuple[mm.IssuingStatus, str | None]:
        """Whether tickets are issued now, and what the hall says about it."""
        stop = self.stop
        if stop is not None:
            return "stopped", stop[1]
        notice = self.closed_notice(now_ms)
        return ("open", None) if notice is None else ("closed", notice)

    def check_issuing(self, now_ms: int, service_id: str | None = None) -> None:
        """Refuse a ticket during an emergency stop (``stopped``) or outside the calendar's
        issuing hours (``closed``), HTTP 409 either way."""
        stop = self.stop
        if stop is not None:
            raise CommandRejected(f"暂停取号 {stop[1]} (ticket issuing stopped: {stop[1]}; "
                                  "tickets already issued are served)", code="stopped")
        closed = self._closed(now_ms, service_id)
        if closed is not None:
            raise CommandRejected(f"{closed[0]} ({closed[1]})", code="closed")

    # -- what the central pushed: an emergency stop, the city calendar ---------

    @property
    def stop(self) -> tuple[str, str] | None:
        """The emergency stop in force: (its id, the reason), or None."""
        found = None if self._pushed is None else self._pushed.get("stop")
        return None if found is None else (found[0], str(found[1].get("reason", "")))

    def pushed_versions(self) -> tuple[str | None, str | None]:
        """(the stop in force, the city calendar's version): what ``state`` reports."""
        calendar = None if self._pushed is None else self._pushed.get("calendar")
        stop = self.stop
        return (None if stop is None else stop[0], None if calendar is None else calendar[0])

    def stop_issuing(self, stop_id: str, reason: str) -> mm.Event | None:
        """An emergency stop: no ticket until it is lifted (kept across restarts and
        days); the tickets issued are served. None: that stop is in force already."""
        if self.stop == (stop_id, reason):
            return None
        self._require_pushed().put("stop", stop_id, {"reason": reason})
        return self._commit([mm.IssuingStopped(stop=stop_id, reason=reason)],
                            self.clock.now_ms())[0]

    def resume_issuing(self, stop_id: str) -> mm.Event | None:
        """Lift the stop ``stop_id``; None when no stop is in force. Another stop in force
        is refused (``CommandRejected``): the central lifts what it decided."""
        stop = self.stop
        if stop is None:
            return None
        if stop[0] != stop_id:
            raise CommandRejected(f"stop {stop[0]!r} is in force, not {stop_id!r}",
                                  code="other_stop")
        self._require_pushed().delete("stop")
        return self._commit([mm.IssuingResumed(stop=stop_id)], self.clock.now_ms())[0]

    def set_calendar(self, version: str, holidays: list[str], workdays: list[str],
                     special: list[str]) -> mm.Event | None:
        """The city calendar's dated days over the site's own (checked first: a bad one
        is refused with every problem, and the one in force stays). None: in force."""
        pushed = self._require_pushed()
        found = pushed.get("calendar")
        body: dict[str, Any] = {"holidays": holidays, "workdays": workdays, "special": special}
        if found == (version, body):
            return None
        problems = Problems()
        dated_holidays = parse_dates(holidays, "holidays", problems)
        dated_workdays = parse_dates(workdays, "workdays", problems)
        parse_special(special, "special", problems, self.config.calendar.margin)
        problems.items += [f"workdays: {d} is also a holiday"
                           for d in sorted(dated_holidays & dated_workdays)]
        if problems.items:
            raise CommandRejected("; ".join(problems.items)[:_TEXT_LIMIT], status=422,
                                  code="bad_calendar")
        pushed.put("calendar", version, body)
        self.config = self._in_force  # the file's config, with the new calendar over it
        return self._commit([mm.CalendarApplied(version=version)], self.clock.now_ms())[0]

    # -- bookings (预约) the central pushed ------------------------------------

    def bookings_version(self) -> str | None:
        """The version of the day's bookings held: what ``state`` reports."""
        found = None if self._pushed is None else self._pushed.get("bookings")
        return None if found is None else found[0]

    def set_bookings(self, version: str, day: str, bookings: list[mm.Booking]
                     ) -> mm.Event | None:
        """Hold the bookings of ``day`` the central pushed (each version replaces the one
        before; kept across restarts); None: that version is held already."""
        if self.bookings_version() == version:
            return None
        rows = [[b.code, b.service, b.start, b.person] for b in bookings]
        self._require_pushed().put("bookings", version, {"day": day, "bookings": rows})
        return self._commit([mm.BookingsApplied(version=version, day=day, count=len(rows))],
                            self.clock.now_ms())[0]

    def booking(self, code: str) -> tuple[str, int]:
        """The service and booked time (unix ms, the slot's start) of today's booking
        ``code`` not checked in yet; else :class:`CommandRejected` with a Chinese
        message for the kiosk: a wrong code (404), one used or of another day (409)."""
        code = code.strip()
        if not BOOKING_CODE_RE.fullmatch(code):
            raise CommandRejected("预约码为10位数字，请核对 (a booking code has 10 digits)",
                                  status=422, code="bad_booking_code")
        used = self._day.bookings.get(code)
        if used is not None:
            raise CommandRejected(f"此预约已签到，号码{used} (booking checked in: ticket {used})",
                                  status=409, code="booking_used")
        day = self._day.day
        held = None if self._pushed is None else self._pushed.get("bookings")
        rows = [] if held is None or held[1].get("day") != day else held[1].get("bookings", [])
        for row_code, service, start, _person in rows:
            if row_code == code:  # looked up first: a booking moved keeps its code (MMDD)
                hour, minute = (int(part) for part in str(start).split(":"))
                slot = datetime.fromisoformat(day).replace(hour=hour, minute=minute,
                                                           tzinfo=self.config.site.tz)
                return str(service), int(slot.timestamp() * 1000)
        if code[:4] != day[5:7] + day[8:10]:
            raise CommandRejected(f"此预约不是今天的（{int(code[:2])}月{int(code[2:4])}日），"
                                  "请在预约当天取号 (the booking is for another day)",
                                  status=409, code="booking_other_day")
        raise CommandRejected("预约码无效或预约已取消，请核对或到咨询台 (no booking with this "
                              "code today)", status=404, code="unknown_booking")

    def booking_of(self, person: str) -> str | None:
        """The code of today's booking of ``person`` (the hash a site is sent) not
        checked in yet, the earliest slot first; None if there is none."""
        held = None if self._pushed is None else self._pushed.get("bookings")
        if held is None or held[1].get("day") != self._day.day:
            return None
        return next((str(code) for code, _service, _start, who in held[1].get("bookings", [])
                     if who == person and code not in self._day.bookings), None)

    def close(self) -> None:
        """Close the journal and what the central pushed."""
        self.journal.close()
        if self._pushed is not None:
            self._pushed.close()

    def _require_pushed(self) -> PushedStore:
        if self._pushed is None:
            raise CommandRejected("this hall keeps nothing the central pushes (read only)",
                                  status=503, code="read_only")
        return self._pushed

    def cancel(self, number: str) -> mm.Event:
        ticket = self._ticket(number)
        if ticket.state is not TicketState.WAITING:
            raise CommandRejected(f"ticket {number} is {ticket.state.value}: cannot cancel")
        return self._commit([mm.TicketCancelled(ticket=number)], self.clock.now_ms())[0]

    def _ticket(self, number: str) -> Ticket:
        try:
            return self.dispatcher.ticket(number)
        except DispatchError:
            raise CommandRejected(f"unknown ticket {number!r}", status=404,
                                  code="unknown_ticket") from None

    # -- windows -------------------------------------------------------------

    def _window(self, window: int) -> tuple[WindowState, Ticket | None]:
        try:
            status = self.dispatcher.window(window)
        except DispatchError:
            raise CommandRejected(f"unknown window {window}", status=404,
                                  code="unknown_window") from None
        current = None if status.current is None else self.dispatcher.ticket(status.current)
        return status.state, current

    def _holding(self, window: int, action: str, *states: TicketState) -> Ticket:
        _, current = self._window(window)
        if current is None:
            raise CommandRejected(f"window {window} holds no ticket: cannot {action}",
                                  code="no_ticket")
        if current.state not in states:
            raise CommandRejected(f"ticket {current.number} is {current.state.value}: "
                                  f"cannot {action}", code="bad_state")
        return current

    def sign_in(self, window: int, staff: str | None, *, mark: InputMark | None = None) -> mm.Event:
        """签到. A terminal without staff entry signs in as ``w{window}``."""
        self._window(window)
        staff = staff or f"w{window}"
        if not _STAFF_RE.fullmatch(staff):
            raise CommandRejected(f"bad staff id {staff!r}", status=422, code="bad_staff")
        return self._commit([mm.WindowSignedIn(window=window, staff=staff)],
                            self.clock.now_ms(), mark=mark)[0]

    def sign_out(self, window: int, *, mark: InputMark | None = None) -> mm.Event:
        state, current = self._window(window)
        if state is WindowState.CLOSED:
            raise CommandRejected(f"window {window} is not signed in", code="closed")
        if current is not None:
            raise CommandRejected(f"window {window} still holds {current.number}", code="busy")
        staff = self._day.staff.get(window, f"w{window}")
        return self._commit([mm.WindowSignedOut(window=window, staff=staff)],
                            self.clock.now_ms(), mark=mark)[0]

    def pause(self, window: int, *, mark: InputMark | None = None) -> mm.Event:
        state, _ = self._window(window)
        if state is not WindowState.OPEN:
            raise CommandRejected(f"window {window} is {state.value}: cannot pause", code="state")
        return self._commit([mm.WindowPaused(window=window)], self.clock.now_ms(), mark=mark)[0]

    def resume(self, window: int, *, mark: InputMark | None = None) -> mm.Event:
        state, _ = self._window(window)
        if state is not WindowState.PAUSED:
            raise CommandRejected(f"window {window} is {state.value}: cannot resume", code="state")
        return self._commit([mm.WindowResumed(window=window)], self.clock.now_ms(), mark=mark)[0]

    def call_next(self, window: int, *, mark: InputMark | None = None) -> Ticket | None:
        """叫号. A window still holding a ticket finishes it first (the keypad's 下一位)."""
        state, current = self._window(window)
        if state is not WindowState.OPEN:
            raise CommandRejected(f"window {window} is {state.value}: cannot call", code="state")
        if current is not None:
            self.finish(window, mark=mark)
        now = self.clock.now_ms()
        ticket = self.dispatcher.peek(window, now)
        if ticket is None:
            return None
        self._commit([mm.TicketCalled(ticket=ticket.number, window=window)], now, mark=mark)
        return self.dispatcher.ticket(ticket.number)

    def recall(self, window: int, *, mark: InputMark | None = None) -> Ticket:
        ticket = self._holding(window, "recall", TicketState.CALLED)
        recall = min(ticket.recalls + 1, 99)
        self._commit([mm.TicketRecalled(ticket=ticket.number, window=window, recall=recall)],
                     self.clock.now_ms(), mark=mark)
        return self.dispatcher.ticket(ticket.number)

    def start_serving(self, window: int, *, mark: InputMark | None = None) -> Ticket:
        ticket = self._holding(window, "start serving", TicketState.CALLED)
        self._commit([mm.TicketServing(ticket=ticket.number, window=window)],
                     self.clock.now_ms(), mark=mark)
        return self.dispatcher.ticket(ticket.number)

    def finish(self, window: int, *, mark: InputMark | None = None) -> Ticket:
        """办结. A 办件 still open at the window is closed with it (and offered for rating);
        a ticket without one is offered itself."""
        ticket = self._holding(window, "finish", TicketState.CALLED, TicketState.SERVING)
        now = self.clock.now_ms()
        started = ticket.served_ms if ticket.served_ms is not None else ticket.called_ms
        served_s = max(0, (now - (started or now)) // 1000)
        bodies: list[mm.EventBody] = []
        if window in self._day.cases:
            bodies += self._close_case_bodies(window)
        elif ticket.number not in self._day.ticket_cases:
            bodies += self._missed_at(window)  # this finish replaces the pad's offer
        bodies.append(mm.TicketDone(ticket=ticket.number, window=window, served_s=served_s))
        self._commit(bodies, now, mark=mark)
        return self.dispatcher.ticket(ticket.number)

    def no_show(self, window: int, *, mark: InputMark | None = None) -> Ticket:
        ticket = self._holding(window, "mark no-show", TicketState.CALLED)
        requeued = (self.config.policy.no_show is NoShowPolicy.REQUEUE_ONCE
                    and not ticket.requeued)
        self._commit([mm.TicketNoShow(ticket=ticket.number, window=window, requeued=requeued)],
                     self.clock.now_ms(), mark=mark)
        return self.dispatcher.ticket(ticket.number)

    def transfer(self, window: int, to_service: str | None, *,
                 mark: InputMark | None = None) -> Ticket:
        ticket = self._holding(window, "transfer", TicketState.CALLED, TicketState.SERVING)
        if to_service is None or to_service not in {s.id for s in self.config.services}:
            raise CommandRejected(f"unknown service {to_service!r} to transfer to",
                                  status=404, code="unknown_service")
        if to_service == ticket.service_id:
            raise CommandRejected(f"ticket {ticket.number} is already in {to_service}",
                                  code="same_service")
        self._commit([mm.TicketTransferred(ticket=ticket.number, window=window,
                                           from_service=ticket.service_id,
                                           to_service=to_service)],
                     self.clock.now_ms(), mark=mark)
        return self.dispatcher.ticket(ticket.number)

    def rate(self, window: int, value: int, *, reasons: tuple[str, ...] = (),
             channel: mm.RatingChannel = "pad", mark: InputMark | None = None) -> mm.Event:
        """好差评: bound to the pad's offer at ``window`` (the 办件 or ticket last finished
        there, and the staff who served it). ``reasons``: codes of ``ratings.reasons``,
        for a 差评 only (a software pad sends them with the rating)."""
        self._window(window)
        if not 1 <= value <= 5:
            raise CommandRejected(f"rating must be 1..5, got {value}", status=422,
                                  code="bad_rating")
        now = self.clock.now_ms()
        pending = self._day.pending_rating.get(window)
        if pending is None or now > pending.until_ms:
            raise CommandRejected(f"window {window} has nothing to rate (no 办结 offered "
                                  f"in the last {self.config.ratings.pad_seconds} s)",
                                  code="nothing_to_rate")
        chosen = self._reason_codes(reasons)
        if chosen and value > BAD_RATING_MAX:
            raise CommandRejected("follow-up reasons go with 不满意 or 非常不满意 only",
                                  status=422, code="bad_reason")
        body = mm.RatingGiven(ticket=pending.ticket, window=window, staff=pending.staff,
                              value=value, case=pending.case, channel=channel,
                              reasons=list(chosen))
        return self._commit([body], now, mark=mark)[0]

    def _reason_codes(self, reasons: tuple[str, ...]) -> tuple[str, ...]:
        known = {r.code for r in self.config.ratings.reasons}
        unknown = [r for r in reasons if r not in known]
        if unknown:
            raise CommandRejected(f"unknown reason(s) {', '.join(map(repr, unknown))}; known: "
                                  f"{', '.join(sorted(known))}", status=422, code="bad_reason")
        if len(reasons) > mm.MAX_RATING_REASONS:
            raise CommandRejected(f"at most {mm.MAX_RATING_REASONS} reasons", status=422,
                                  code="bad_reason")
        return tuple(dict.fromkeys(reasons))  # once each, in the order chosen

    def rate_reason(self, window: int, number: int, *,
                    mark: InputMark | None = None) -> mm.Event | None:
        """The rating pad's follow-up page after a 差评: reason ``number`` (1-based, as
        ``ratings.reasons`` lists them). Choosing a reason again changes nothing (None)."""
        self._window(window)
        now = self.clock.now_ms()
        after = self._day.reasons.get(window)
        if after is None or now > after.until_ms:
            raise CommandRejected(f"window {window} has no 差评 to give a reason for",
                                  code="no_bad_rating")
        code = self.config.ratings.reason_code(number)
        if code is None:
            raise CommandRejected(f"reason {number} is not in ratings.reasons (1.."
                                  f"{len(self.config.ratings.reasons)})", status=422,
                                  code="bad_reason")
        if code in after.chosen:
            return None
        body = mm.RatingReason(ticket=after.ticket, window=window, case_no=after.case_no,
                               reason=code)
        return self._commit([body], now, mark=mark)[0]

    def _missed_at(self, window: int) -> list[mm.EventBody]:
        """``rating.missed`` for the pad's offer at ``window``, if one is open."""
        pending = self._day.pending_rating.get(window)
        if pending is None:
            return []
        return [mm.RatingMissed(ticket=pending.ticket, window=window, staff=pending.staff,
                                case=pending.case)]

    # -- 办件 (the business system's cases) ------------------------------------

    def open_case(self, window: int, case_no: str | None, *, source: mm.CaseSource,
                  item_code: str | None = None, item_name: str | None = None,
                  department: str | None = None, department_name: str | None = None,
                  mark: InputMark | None = None) -> mm.Event | None:
        """A 办件 opened at ``window`` for the ticket served there. Its 事项 and department
        default to the ticket's service in the site config. The same number opened again
        changes nothing (None); another number closes the open one first."""
        self._window(window)
        if case_no is None or not _CASE_NO_RE.fullmatch(case_no):
            raise CommandRejected(f"bad 办件编号 {case_no!r}: letters, digits, '_', '.', '-', "
                                  "at most 64", status=422, code="bad_case")
        open_case = self._day.cases.get(window)
        if open_case is not None and open_case.case.no == case_no:
            return None
        current = self.dispatcher.window(window).current
        service = None if current is None else self.config.service(
            self.dispatcher.ticket(current).service_id)
        if service is not None:
            item_code = item_code or service.item_code
            item_name = item_name or service.item_name or service.name_zh
            department = department or service.department
            department_name = department_name or service.department_name
        try:
            case = mm.CaseInfo(no=case_no, item_code=item_code, item_name=item_name,
                               department=department, department_name=department_name,
                               source=source)
            msgspec.convert(msgspec.to_builtins(case), mm.CaseInfo)  # the contract's checks
        except (msgspec.ValidationError, ValueError) as exc:
            raise CommandRejected(f"bad 办件: {exc}", status=422, code="bad_case") from None
        bodies: list[mm.EventBody] = []
        if open_case is not None:
            bodies += self._close_case_bodies(window)
        bodies.append(mm.CaseOpened(window=window, ticket=current, case=case))
        return self._commit(bodies, self.clock.now_ms(), mark=mark)[-1]

    def close_case(self, window: int, case_no: str | None = None, *,
                   mark: InputMark | None = None) -> mm.Event | None:
        """办结 of the 办件 open at ``window`` (``case_no``, when given, must be it): the pad
        is offered for it. One closed already today changes nothing (None)."""
        self._window(window)
        open_case = self._day.cases.get(window)
        if open_case is None:
            if case_no is not None and case_no in self._day.closed_cases:
                return None
            raise CommandRejected(f"window {window} has no open 办件", code="no_case")
        if case_no is not None and case_no != open_case.case.no:
            raise CommandRejected(f"window {window} has 办件 {open_case.case.no} open, "
                                  f"not {case_no}", code="case_mismatch")
        events = self._commit(self._close_case_bodies(window), self.clock.now_ms(), mark=mark)
        return events[-1]

    def _close_case_bodies(self, window: int) -> list[mm.EventBody]:
        """``case.closed`` of the 办件 open at ``window`` (bound to its ticket, or the one
        served there now), after ``rating.missed`` of the offer it replaces."""
        open_case = self._day.cases[window]
        ticket = open_case.ticket or self.dispatcher.window(window).current
        offers = ticket is not None and open_case.case.no not in self._day.offered_cases
        return [*(self._missed_at(window) if offers else []),
                mm.CaseClosed(window=window, ticket=ticket, case_no=open_case.case.no)]

    # -- 呼叫帮办 --------------------------------------------------------------

    def help_request(self, button: str) -> mm.Event | None:
        """A press; a second press while the request is open changes nothing (None)."""
        buttons = {b.id: b for b in (self.config.devices.gpio.help_buttons
                                     if self.config.devices.gpio else ())}
        if button not in buttons:
            raise CommandRejected(f"unknown help button {button!r}", status=404,
                                  code="unknown_button")
        if button in self._day.help:
            return None
        location = buttons[button].location[:64]
        return self._commit([mm.HelpRequested(button=button, location=location)],
                            self.clock.now_ms())[0]

    def help_long_press(self, button: str) -> mm.Event | None:
        """Staff at the button: acknowledge an open request, or resolve an acknowledged one."""
        request = self._day.help.get(button)
        if request is None:
            return None
        now = self.clock.now_ms()
        if request.acknowledged_ms is None:
            return self._commit([mm.HelpAcknowledged(button=button, staff=None)], now)[0]
        return self._commit([mm.HelpResolved(button=button)], now)[0]

    def help_ack_from_window(self, window: int, *,
                             mark: InputMark | None = None) -> mm.Event | None:
        """The keypad's help key: acknowledge the oldest unanswered request, else resolve
        the oldest acknowledged one."""
        self._window(window)
        staff = self._day.staff.get(window)
        requests = self.open_help()
        now = self.clock.now_ms()
        for request in requests:
            if request.acknowledged_ms is None:
                return self._commit([mm.HelpAcknowledged(button=request.button, staff=staff)],
                                    now, mark=mark)[0]
        if requests:
            return self._commit([mm.HelpResolved(button=requests[0].button)], now, mark=mark)[0]
        return None

    # -- devices, timers, config ---------------------------------------------

    # -- the site's numbers: taken over, handed on ------------------------------

    def take_restore(self, parts: Sequence[mm.Restore]) -> list[mm.Event]:
        """The central's restore (every part of one, in order).

        The first one grants the journal its epoch: from then on it numbers tickets,
        continuing the day the central describes (``day.restored``). A later one of the
        same epoch hands over tickets a replaced device issued since: they join the
        queue. A restore of another day only grants the epoch.
        """
        first = parts[0]
        journal = self.journal
        granting = journal.epoch is None
        # A forked journal (found behind the central's) drops its own view of the day for
        # the central's, numbering on above whatever it issued itself before the fence.
        fresh = granting and journal.forked is not None
        bodies: list[mm.EventBody] = []
        restored = None
        if first.day is not None and first.day == self._day.day:
            planner = _dispatcher_for(self._in_force) if fresh else self.dispatcher
            taken = planner.plan_restore(_restored_tickets(parts))
            skipped = first.skipped + (self._own_lead(first) if fresh else 0)
            restored = mm.DayRestored(day=first.day, epoch=first.epoch,
                                      tickets=len(taken.taken), left_out=len(taken.left_out),
                                      skipped=min(skipped, 9999) if granting else 0)
            bodies = [mm.DayReset(day=first.day), restored] if fresh else [restored]
        payload = _RESTORE_ENCODER.encode(list(parts))
        now = self.clock.now_ms()
        if granting:
            events = journal.grant(first.epoch, bodies, ts_ms=now,
                                   clock_synced=self.clock.synced(),
                                   restore=payload if bodies else None)
            self._after_commit(events)
            return events
        if first.epoch != journal.epoch:
            raise CommandRejected(f"a restore of epoch {first.epoch}; this journal numbers "
                                  f"in epoch {journal.epoch}", code="other_epoch")
        if restored is None or restored.tickets == 0:
            return []  # nothing new for the queue
        return self._commit(bodies, now, restore=payload)

    def _own_lead(self, restore: mm.Restore) -> int:
        """How far this hall's own counters run above the central's (the most of any
        prefix): numbers it issued that the central has not seen yet."""
        central = {c.prefix: c.last for c in restore.counters}
        leads = [self.dispatcher.last_counter(s.prefix) - central.get(s.prefix, 0)
                 for s in self.config.services]
        return max([0, *leads])

    def replaced(self, device: str, epoch: int) -> list[mm.Event]:
        """Another device numbers this site now (its lease): journal ``device.replaced``."""
        events = self.journal.mark_replaced(device, epoch, ts_ms=self.clock.now_ms(),
                                            clock_synced=self.clock.synced())
        self._after_commit(events)
        return events

    def device_status(self, body: mm.DeviceStatus) -> mm.Event:
        return self._commit([body], self.clock.now_ms())[0]

    def report(self, body: mm.EventBody) -> mm.Event:
        """Journal an event that changes no hall state (outbox.dropped, ...)."""
        return self._commit([body], self.clock.now_ms())[0]

    def tick(self) -> list[mm.Event]:
        """Timers: day reset, rating offers run out, SLA breaches, overtime, help escalation.
        Call every few seconds."""
        now = self.clock.now_ms()
        today = business_day(now, self.config.site.tz, self.config.hours.reset_minute)
        if today != self._day.day:
            unrated = [b for w in sorted(self._day.pending_rating) for b in self._missed_at(w)]
            return self._commit([*unrated, mm.DayReset(day=today)], now)
        bodies: list[mm.EventBody] = [
            b for w, offer in sorted(self._day.pending_rating.items())
            if now > offer.until_ms for b in self._missed_at(w)]
        services = {s.id: s for s in self.config.services}
        for ticket in self.dispatcher.tickets():
            service = services.get(ticket.service_id)
            if service is None:
                continue
            if (ticket.state is TicketState.WAITING and service.sla_minutes
                    and ticket.number not in self._day.sla_breached
                    and now - ticket.issued_ms > service.sla_minutes * MINUTE_MS):
                bodies.append(mm.SlaBreached(ticket=ticket.number, service=service.id,
                                             waited_s=(now - ticket.issued_ms) // 1000))
            started = ticket.served_ms if ticket.served_ms is not None else ticket.called_ms
            if (ticket.state in (TicketState.CALLED, TicketState.SERVING)
                    and service.overtime_minutes and started is not None
                    and ticket.window is not None
                    and ticket.number not in self._day.overtime
                    and now - started > service.overtime_minutes * MINUTE_MS):
                bodies.append(mm.ServiceOvertime(ticket=ticket.number, window=ticket.window,
                                                 served_s=(now - started) // 1000))
        limit = self.config.daemon.help_escalation_minutes * MINUTE_MS
        for request in self.open_help():
            if (request.acknowledged_ms is None and not request.escalated
                    and now - request.requested_ms > limit):
                bodies.append(mm.HelpEscalated(button=request.button,
                                               waited_s=(now - request.requested_ms) // 1000))
        return self._commit(bodies, now) if bodies else []

    def reconfigure(self, new: EdgeConfig) -> mm.Event:
        """Apply a new config keeping every ticket; on a problem journal ``config.rejected``.

        Returns the ``config.applied`` or ``config.rejected`` event.
        """
        now = self.clock.now_ms()
        errors = self._reconfigure_problems(new)
        if errors:
            log.error("config.rejected", version=new.version, errors=errors)
            return self.reject_config(new.version, errors)
        self._pending_config = new
        (event,) = self._commit([mm.ConfigApplied(version=new.version)], now,
                                config=(new.version, new.text))
        log.info("config.applied", version=new.version)
        return event

    def reject_config(self, version: str, errors: list[str]) -> mm.Event:
        version = version if _TOKEN_RE.fullmatch(version) else "invalid"
        body = mm.ConfigRejected(version=version,
                                 errors=[_text(e) for e in errors[:mm.MAX_CONFIG_ERRORS]])
        return self._commit([body], self.clock.now_ms())[0]

    def _reconfigure_problems(self, new: EdgeConfig) -> list[str]:
        if new.site.id != self.config.site.id:
            return [f"site.id: cannot change from {self.config.site.id!r} while running"]
        try:
            _dispatcher_for(new)
        except DispatchError as exc:
            return [str(exc)]
        errors = []
        services = {s.id for s in new.services}
        windows = {w.number for w in new.windows}
        for ticket in self.dispatcher.tickets():
            live = ticket.state in (TicketState.WAITING, TicketState.CALLED, TicketState.SERVING)
            if live and ticket.service_id not in services:
                errors.append(f"services: {ticket.service_id!r} still has ticket "
                              f"{ticket.number} today; it cannot be removed")
        for status in self.dispatcher.windows():
            if status.number not in windows and status.current is not None:
                errors.append(f"windows: window {status.number} still holds "
                              f"{status.current}; it cannot be removed")
        return errors


def open_hall(config: EdgeConfig, clock: Clock) -> Hall:
    """Open the journal named in ``config`` (and what the central pushed, beside it) and
    rebuild the hall from it.

    With ``[mqtt]`` the site has a central: a new journal waits for its epoch."""
    journal = Journal(config.paths.journal, config.site.id,
                      outbox_limit=config.daemon.outbox_limit, central=config.mqtt is not None)
    try:
        pushed = store_beside(config.paths.journal)
    except JournalError:
        journal.close()
        raise
    try:
        return Hall.open(config, journal, clock, pushed)
    except (JournalError, CommandRejected):
        journal.close()
        pushed.close()
        raise


__all__ = ["BAD_RATING_MAX", "Hall", "HelpRequest", "IssuedTicket", "OpenCase", "PendingRating",
           "Predict", "ReasonWindow", "closed_reason", "contract_class", "open_hall"]

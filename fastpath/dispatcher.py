"""The hall's queue: ticket lifecycle and windows, over a dispatch core.

:class:`Dispatcher` is what the edge daemon and the simulator use. It owns
ticket numbers, ticket states and window states, and asks a
:class:`~fastpath.core.QueueCore` (Cython or pure Python, same answers) which
ticket a window calls next. Every method validates first and mutates after,
so a raised :class:`~fastpath.types.DispatchError` leaves the hall unchanged.

Lifecycle (docs/ARCHITECTURE.md, "The ticket lifecycle")::

    issued ─> WAITING ─call─> CALLED ─start─> SERVING ─finish─> DONE
                 ^  │          │  ↺ recall      │
                 │  └cancel─> CANCELLED         │
                 │             ├─no_show─> NO_SHOW (or back to WAITING once)
                 └──transfer───┴────────────────┘  (keeps the original key time)

All times are integer milliseconds. Nothing here reads a clock: the caller
passes ``now_ms``, which is what makes replaying a journal exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from fastpath import core as _core
from fastpath.core import QueueCore
from fastpath.types import (
    MAX_TIME_MS,
    MINUTE_MS,
    ConfigError,
    DispatchError,
    InvalidTransition,
    NoCurrentTicket,
    NoShowPolicy,
    Policy,
    Service,
    Ticket,
    TicketClass,
    TicketState,
    UnknownService,
    UnknownTicket,
    UnknownWindow,
    WindowBusy,
    WindowClosed,
    WindowProfile,
    WindowState,
    number_order,
)


@dataclass(frozen=True, slots=True)
class IssuePlan:
    """What :meth:`Dispatcher.issue` would hand out now (:meth:`Dispatcher.plan_issue`)."""

    number: str
    klass: TicketClass  # after the late-appointment rule
    key_ms: int  # the queue's order time: now, or the booked time of an appointment
    late_appointment: bool
    people_ahead: int  # waiting tickets of the service that will be called before it
    widened: bool  # the counter no longer fits ``policy.number_width`` digits


@dataclass(frozen=True, slots=True)
class WindowTakeover:
    """A window as another device of the hall left it (:meth:`Dispatcher.restore`)."""

    number: int
    state: WindowState  # OPEN or PAUSED: signed in
    staff_id: str | None
    current: str | None  # the ticket it holds (called or serving)


@dataclass(frozen=True, slots=True)
class Restored:
    """What :meth:`Dispatcher.restore` took, and the numbers it left out."""

    taken: tuple[str, ...]
    left_out: tuple[str, ...]  # a service this hall has not, or a number it already has


@dataclass(frozen=True, slots=True)
class WindowStatus:
    """A snapshot of one window."""

    number: int
    state: WindowState
    staff_id: str | None
    current: str | None  # ticket number held (called or serving)
    priority_streak: int


@dataclass(slots=True)
class _Window:
    profile: WindowProfile
    index: int  # index in the core
    state: WindowState = WindowState.CLOSED
    staff_id: str | None = None
    current: int | None = None  # tid


def _number_key(number: str) -> int:
    """The order key of a ticket number ("A012" -> number_order("A", 12))."""
    prefix = number.rstrip("0123456789")
    return number_order(prefix, int(number[len(prefix):]))


def _check_time(name: str, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value < MAX_TIME_MS:
        raise DispatchError(f"{name} must be an int of milliseconds in [0, 2**42), got {value!r}")


class Dispatcher:
    """One hall's queue for one day."""

    _core: QueueCore  # the waiting tickets, rebuilt by _configure

    def __init__(
        self,
        services: Sequence[Service],
        windows: Sequence[WindowProfile],
        policy: Policy | None = None,
        *,
        core_class: type[QueueCore] | None = None,
    ) -> None:
        self._core_class = core_class or _core.QueueCore
        self._tickets: list[Ticket] = []  # indexed by tid
        self._by_number: dict[str, int] = {}
        self._counters: dict[str, int] = {}
        self._configure(services, windows, policy or Policy(), previous=None)

    # -- configuration -------------------------------------------------------

    def _configure(
        self,
        services: Sequence[Service],
        windows: Sequence[WindowProfile],
        policy: Policy,
        previous: dict[int, _Window] | None,
    ) -> None:
        service_index = {}
        prefixes = set()
        for index, service in enumerate(services):
            if service.id in service_index:
                raise ConfigError(f"service id {service.id!r} appears twice")
            if service.prefix in prefixes:
                raise ConfigError(f"ticket prefix {service.prefix!r} is used by two services")
            service_index[service.id] = index
            prefixes.add(service.prefix)
        numbers = [w.number for w in windows]
        if len(set(numbers)) != len(numbers):
            raise ConfigError("window numbers must be unique")
        for profile in windows:
            for service_id in profile.services:
                if service_id not in service_index:
                    raise ConfigError(
                        f"window {profile.number} serves unknown service {service_id!r}"
                    )
        if previous is not None:
            self._check_reconfigure(service_index, {w.number for w in windows}, previous)

        queue = self._core_class(
            [s.sla_minutes * MINUTE_MS for s in services], policy.class_weights_pct()
        )
        new_windows: dict[int, _Window] = {}
        for profile in windows:
            index = queue.add_window(
                [(service_index[sid], weight) for sid, weight in profile.services.items()],
                profile.priority_window,
                profile.ratio_cap,
            )
            old = previous.get(profile.number) if previous else None
            if old is None:
                new_windows[profile.number] = _Window(profile, index)
            else:
                new_windows[profile.number] = _Window(
                    profile, index, old.state, old.staff_id, old.current
                )
                for _ in range(self._core.priority_streak(old.index)):
                    queue.record_call(index, TicketClass.PRIORITY)

        self.services: tuple[Service, ...] = tuple(services)
        self.policy = policy
        self._service_index = service_index
        self._windows = new_windows
        self._core = queue
        for tid, ticket in enumerate(self._tickets):
            if ticket.state is TicketState.WAITING:
                self._push(tid, ticket)

    def _check_reconfigure(
        self, service_index: dict[str, int], window_numbers: set[int],
        previous: dict[int, _Window],
    ) -> None:
        for ticket in self._tickets:
            live = ticket.state in (TicketState.WAITING, TicketState.CALLED, TicketState.SERVING)
            if live and ticket.service_id not in service_index:
                raise ConfigError(
                    f"service {ticket.service_id!r} still has ticket {ticket.number}; "
                    "it cannot be removed today"
                )
        for number, window in previous.items():
            if number not in window_numbers and window.current is not None:
                raise ConfigError(f"window {number} still holds a ticket; it cannot be removed")

    def reconfigure(
        self,
        services: Sequence[Service],
        windows: Sequence[WindowProfile],
        policy: Policy | None = None,
    ) -> None:
        """Apply a new hall config (SIGHUP) keeping every ticket, number and window state."""
        self._configure(services, windows, policy or self.policy, previous=self._windows)

    # -- lookups -------------------------------------------------------------

    def _service(self, service_id: str) -> int:
        try:
            return self._service_index[service_id]
        except KeyError:
            raise UnknownService(service_id) from None

    def _window(self, number: int) -> _Window:
        try:
            return self._windows[number]
        except KeyError:
            raise UnknownWindow(number) from None

    def _tid(self, number: str) -> int:
        try:
            return self._by_number[number]
        except KeyError:
            raise UnknownTicket(number) from None

    def _push(self, tid: int, ticket: Ticket) -> None:
        # The order key comes from the number itself, so a transferred ticket
        # keeps breaking ties by its own number ("deterministic tie-break").
        self._core.push(
            tid, self._service(ticket.service_id), int(ticket.klass), ticket.key_ms,
            _number_key(ticket.number),
        )

    def ticket(self, number: str) -> Ticket:
        return self._tickets[self._tid(number)]

    def tickets(self) -> tuple[Ticket, ...]:
        """Every ticket issued today, in issue order."""
        return tuple(self._tickets)

    def waiting(self, service_id: str | None = None) -> list[Ticket]:
        """Waiting tickets in queue order (key time, then number), per service or all."""
        if service_id is None:
            return [t for t in self._tickets if t.state is TicketState.WAITING]
        return [self._tickets[tid] for tid in self._core.queued(self._service(service_id))]

    def waiting_count(self, service_id: str) -> int:
        return self._core.waiting(self._service(service_id))

    def last_counter(self, prefix: str) -> int:
        """How many numbers of ``prefix`` were handed out today (the last one's counter)."""
        return self._counters.get(prefix, 0)

    def call_order(self, service_id: str, now_ms: int) -> list[Ticket]:
        """The service's waiting tickets in the order the policy calls them at ``now_ms``.

        The order the cores apply within one service (``fastpath/_core_py.py``): a
        ticket past the service's SLA first (earliest deadline), then the highest
        ageing score ``(100 + class weight) x wait``, then the lower number. A window's
        own rules (a priority window, a ratio cap) are left out: they only move
        priority tickets, and only at that window. Ageing moves tickets over time (a
        priority ticket overtakes an older normal one after a while), so this is the
        order *now*; the simulator's predicted waits account for what comes later.
        """
        _check_time("now_ms", now_ms)
        service = self._service(service_id)
        rank = self._ranker(service, now_ms)
        tickets = self._tickets
        return sorted((tickets[tid] for tid in self._core.queued(service)),
                      key=lambda t: rank(t.key_ms, t.klass, _number_key(t.number)))

    def _ranker(self, service: int, now_ms: int) -> Callable[[int, int, int], tuple[int, int, int]]:
        """The call order's sort key of a ticket (key time, class, number order) at
        ``now_ms``: lower is called first (see :meth:`call_order`)."""
        sla = self.services[service].sla_minutes * MINUTE_MS
        factors = [100 + pct for pct in self.policy.class_weights_pct()]

        def rank(key_ms: int, klass: int, order: int) -> tuple[int, int, int]:
            wait = now_ms - key_ms
            if sla > 0 and wait > sla:
                return (0, key_ms + sla, order)
            return (1, -factors[klass] * wait, order)

        return rank

    def people_ahead(self, number: str, now_ms: int) -> int:
        """Waiting tickets of the same service the policy calls before this one at
        ``now_ms`` (:meth:`call_order`); 0 for a ticket no longer waiting. For a ticket
        just issued it is :attr:`IssuePlan.people_ahead`."""
        ticket = self.ticket(number)
        if ticket.state is not TicketState.WAITING:
            return 0
        return next(i for i, t in enumerate(self.call_order(ticket.service_id, now_ms))
                    if t.number == number)

    def people_ahead_all(self, now_ms: int) -> dict[str, int]:
        """:meth:`people_ahead` of every waiting ticket at once."""
        ahead: dict[str, int] = {}
        for service in self.services:
            for place, ticket in enumerate(self.call_order(service.id, now_ms)):
                ahead[ticket.number] = place
        return ahead

    def window(self, number: int) -> WindowStatus:
        window = self._window(number)
        current = None if window.current is None else self._tickets[window.current].number
        return WindowStatus(
            number, window.state, window.staff_id, current,
            self._core.priority_streak(window.index),
        )

    def windows(self) -> list[WindowStatus]:
        return [self.window(number) for number in sorted(self._windows)]

    def window_profiles(self) -> list[WindowProfile]:
        return [self._windows[number].profile for number in sorted(self._windows)]

    # -- tickets -------------------------------------------------------------

    def plan_issue(
        self,
        service_id: str,
        now_ms: int,
        klass: TicketClass = TicketClass.NORMAL,
        booked_ms: int | None = None,
    ) -> IssuePlan:
        """What :meth:`issue` would hand out at ``now_ms``, changing nothing: the number,
        the class after the late-appointment rule, and the people ahead.

        The people ahead are counted in queue (key, number) order, which for a ticket
        taken now is the call order of :meth:`people_ahead`: its wait is zero (or, for
        an early appointment, negative), so every ticket queued before it scores at
        least as high and every one after it lower.
        """
        number, klass, key_ms, late, widened = self._next(service_id, now_ms, klass, booked_ms)
        service = self._service(service_id)
        rank = self._ranker(service, now_ms)
        mine = rank(key_ms, klass, _number_key(number))
        # The queue is in key order and a later key ranks lower in every class, so the
        # scan stops where even the fastest-ageing class falls behind.
        factors = [100 + pct for pct in self.policy.class_weights_pct()]
        wait = now_ms - key_ms
        factor = max(factors) if wait >= 0 else min(factors)
        overdue = mine[0] == 0
        ahead = 0
        for tid in self._core.queued(service):
            ticket = self._tickets[tid]
            if (ticket.key_ms > key_ms if overdue
                    else factor * (now_ms - ticket.key_ms) < factors[klass] * wait):
                break
            if rank(ticket.key_ms, ticket.klass, _number_key(ticket.number)) < mine:
                ahead += 1
        return IssuePlan(number, klass, key_ms, late, ahead, widened)

    def _next(self, service_id: str, now_ms: int, klass: TicketClass, booked_ms: int | None
              ) -> tuple[str, TicketClass, int, bool, bool]:
        """(number, class, key time, late appointment, widened) of the next ticket."""
        service = self.services[self._service(service_id)]
        _check_time("now_ms", now_ms)
        klass = TicketClass(klass)
        key_ms, late = now_ms, False
        if klass is TicketClass.APPOINTMENT:
            if booked_ms is None:
                raise DispatchError("an appointment ticket needs booked_ms")
            _check_time("booked_ms", booked_ms)
            if self.policy.appointment_late(now_ms, booked_ms):
                klass, late = TicketClass.NORMAL, True
            else:
                key_ms = booked_ms
        elif booked_ms is not None:
            raise DispatchError("booked_ms is only for appointment tickets")
        counter = self._counters.get(service.prefix, 0) + 1
        width = self.policy.number_width
        return (f"{service.prefix}{counter:0{width}d}", klass, key_ms, late,
                counter >= 10 ** width)

    def issue(
        self,
        service_id: str,
        now_ms: int,
        klass: TicketClass = TicketClass.NORMAL,
        booked_ms: int | None = None,
    ) -> Ticket:
        """Take a ticket (取号). An appointment past its grace period becomes a walk-in."""
        number, klass, key_ms, late, _ = self._next(service_id, now_ms, klass, booked_ms)
        prefix = self.services[self._service(service_id)].prefix
        ticket = Ticket(
            number=number, service_id=service_id, klass=klass, issued_ms=now_ms,
            key_ms=key_ms, state=TicketState.WAITING, late_appointment=late,
        )
        tid = len(self._tickets)
        self._push(tid, ticket)
        self._counters[prefix] = self._counters.get(prefix, 0) + 1
        self._tickets.append(ticket)
        self._by_number[number] = tid
        return ticket

    def cancel(self, number: str, now_ms: int) -> Ticket:
        """The citizen left before being called (取消)."""
        tid = self._tid(number)
        ticket = self._tickets[tid]
        if ticket.state is not TicketState.WAITING:
            raise InvalidTransition(number, ticket.state, "cancel")
        _check_time("now_ms", now_ms)
        self._core.remove(tid)
        return self._set(tid, state=TicketState.CANCELLED, finished_ms=now_ms)

    def transfer(self, number: str, to_service_id: str, now_ms: int) -> Ticket:
        """Move a ticket to another service's queue, keeping its original key time (转办)."""
        tid = self._tid(number)
        ticket = self._tickets[tid]
        self._service(to_service_id)
        _check_time("now_ms", now_ms)
        if ticket.state not in (TicketState.WAITING, TicketState.CALLED, TicketState.SERVING):
            raise InvalidTransition(number, ticket.state, "transfer")
        if to_service_id == ticket.service_id:
            raise InvalidTransition(number, ticket.state, "transfer to its own service")
        if ticket.state is TicketState.WAITING:
            self._core.remove(tid)
        elif ticket.window is not None:
            self._windows[ticket.window].current = None
        moved = self._set(
            tid, service_id=to_service_id, state=TicketState.WAITING, window=None,
            recalls=0, transfers=ticket.transfers + 1,
        )
        self._push(tid, moved)
        return moved

    def _set(self, tid: int, **changes: object) -> Ticket:
        ticket = replace(self._tickets[tid], **changes)  # type: ignore[arg-type]
        self._tickets[tid] = ticket
        return ticket

    def restore(
        self,
        tickets: Sequence[Ticket],
        counters: Mapping[str, int],
        windows: Sequence[WindowTakeover] = (),
        *,
        skip: int = 0,
    ) -> Restored:
        """Take over the day of another device of this hall (a replaced edge device).

        ``tickets`` (waiting, called or serving) join the hall with their numbers and
        queue times; ``counters`` (prefix -> last number issued) only move up, and each
        of the hall's prefixes then goes ``skip`` further (numbers the other device may
        have issued unseen). A window takes its restored state while it is closed and
        holds nothing; a called ticket goes back to its window when that window is open
        and free, and waits again otherwise (its citizen is not forgotten). A ticket
        whose number the hall has, or whose service it does not serve, is left out.
        Everything is checked first: :class:`DispatchError` changes nothing.
        """
        if not 0 <= skip < 10_000:
            raise DispatchError(f"skip must be in 0..9999, got {skip!r}")
        for prefix, last in counters.items():
            if not isinstance(last, int) or not 0 <= last < 10_000:
                raise DispatchError(f"counter of {prefix!r} must be in 0..9999, got {last!r}")
        for ticket in tickets:
            _check_time("issued_ms", ticket.issued_ms)
            _check_time("key_ms", ticket.key_ms)
            live = (TicketState.WAITING, TicketState.CALLED, TicketState.SERVING)
            if ticket.state not in live:
                raise DispatchError(f"ticket {ticket.number} is {ticket.state.value}: "
                                    "only tickets still in the hall are restored")
            if (ticket.state is TicketState.WAITING) != (ticket.window is None):
                raise DispatchError(f"ticket {ticket.number}: a window exactly when called")
        for restored in windows:
            if restored.state is WindowState.CLOSED:
                raise DispatchError(f"window {restored.number}: only open or paused windows")

        plan = self.plan_restore(tickets)
        holders = {w.current: w for w in windows if w.current is not None}
        for restored in windows:
            window = self._windows.get(restored.number)
            if window is not None and window.state is WindowState.CLOSED \
                    and window.current is None:
                window.state, window.staff_id = restored.state, restored.staff_id
        taken = set(plan.taken)
        for ticket in tickets:
            if ticket.number not in taken:
                continue
            tid = len(self._tickets)
            window = None if ticket.window is None else self._windows.get(ticket.window)
            held_there = holders.get(ticket.number)
            if (window is not None and window.current is None
                    and window.state is not WindowState.CLOSED
                    and (held_there is None or held_there.number == ticket.window)):
                window.current = tid
                self._tickets.append(ticket)
            else:
                waiting = replace(ticket, state=TicketState.WAITING, window=None)
                self._tickets.append(waiting)
                self._push(tid, waiting)
            self._by_number[ticket.number] = tid
            prefix = ticket.number.rstrip("0123456789")
            counter = int(ticket.number[len(prefix):])
            self._counters[prefix] = max(self._counters.get(prefix, 0), counter)
        for prefix, last in counters.items():
            self._counters[prefix] = max(self._counters.get(prefix, 0), last)
        if skip:
            for service in self.services:
                self._counters[service.prefix] = self._counters.get(service.prefix, 0) + skip
        return plan

    def plan_restore(self, tickets: Sequence[Ticket]) -> Restored:
        """Which of ``tickets`` :meth:`restore` would take, changing nothing: those whose
        number the hall has not and whose service it serves (once per number)."""
        taken: list[str] = []
        left_out: list[str] = []
        for ticket in tickets:
            if (ticket.number in self._by_number or ticket.service_id not in self._service_index
                    or ticket.number in taken):
                left_out.append(ticket.number)
            else:
                taken.append(ticket.number)
        return Restored(tuple(taken), tuple(left_out))

    # -- windows -------------------------------------------------------------

    def sign_in(self, window: int, staff_id: str | None = None) -> WindowStatus:
        """Staff signs in (签到); signing in again hands the window to ``staff_id``."""
        record = self._window(window)
        if record.state is WindowState.CLOSED:
            record.state = WindowState.OPEN
        record.staff_id = staff_id
        return self.window(window)

    def sign_out(self, window: int) -> WindowStatus:
        record = self._window(window)
        if record.current is not None:
            raise WindowBusy(window, self._tickets[record.current].number)
        record.state, record.staff_id = WindowState.CLOSED, None
        return self.window(window)

    def pause(self, window: int) -> WindowStatus:
        """Stop calling new tickets (暂停); the ticket being served is unaffected."""
        record = self._window(window)
        if record.state is WindowState.CLOSED:
            raise WindowClosed(window, record.state)
        record.state = WindowState.PAUSED
        return self.window(window)

    def resume(self, window: int) -> WindowStatus:
        record = self._window(window)
        if record.state is WindowState.CLOSED:
            raise WindowClosed(window, record.state)
        record.state = WindowState.OPEN
        return self.window(window)

    def peek(self, window: int, now_ms: int) -> Ticket | None:
        """The ticket ``window`` would call at ``now_ms``; changes nothing."""
        record = self._window(window)
        _check_time("now_ms", now_ms)
        tid = self._core.select(record.index, now_ms)
        return None if tid == _core.NO_TICKET else self._tickets[tid]

    def call_next(self, window: int, now_ms: int) -> Ticket | None:
        """Call the next ticket (叫号); None when nobody waits for this window."""
        record = self._window(window)
        if record.state is not WindowState.OPEN:
            raise WindowClosed(window, record.state)
        if record.current is not None:
            raise WindowBusy(window, self._tickets[record.current].number)
        _check_time("now_ms", now_ms)
        tid = self._core.select(record.index, now_ms)
        if tid == _core.NO_TICKET:
            return None
        ticket = self._tickets[tid]
        self._core.remove(tid)
        self._core.record_call(record.index, int(ticket.klass))
        record.current = tid
        return self._set(tid, state=TicketState.CALLED, window=window, called_ms=now_ms)

    def _current(self, window: int, action: str, allowed: Iterable[TicketState]) -> int:
        record = self._window(window)
        if record.current is None:
            raise NoCurrentTicket(window)
        ticket = self._tickets[record.current]
        if ticket.state not in allowed:
            raise InvalidTransition(ticket.number, ticket.state, action)
        return record.current

    def recall(self, window: int, now_ms: int) -> Ticket:
        """Call the same ticket again (重呼)."""
        tid = self._current(window, "recall", (TicketState.CALLED,))
        _check_time("now_ms", now_ms)
        return self._set(tid, recalls=self._tickets[tid].recalls + 1)

    def start_serving(self, window: int, now_ms: int) -> Ticket:
        """The citizen arrived at the window (开始办理)."""
        tid = self._current(window, "start serving", (TicketState.CALLED,))
        _check_time("now_ms", now_ms)
        return self._set(tid, state=TicketState.SERVING, served_ms=now_ms)

    def finish(self, window: int, now_ms: int) -> Ticket:
        """Business done (办结); a rating may follow at the edge."""
        tid = self._current(window, "finish", (TicketState.CALLED, TicketState.SERVING))
        _check_time("now_ms", now_ms)
        ticket = self._tickets[tid]
        self._windows[window].current = None
        served = ticket.served_ms if ticket.served_ms is not None else ticket.called_ms
        return self._set(tid, state=TicketState.DONE, served_ms=served, finished_ms=now_ms)

    def no_show(self, window: int, now_ms: int) -> Ticket:
        """Nobody came (过号): back of the queue once, or dropped, as the policy says."""
        tid = self._current(window, "mark no-show", (TicketState.CALLED,))
        _check_time("now_ms", now_ms)
        ticket = self._tickets[tid]
        self._windows[window].current = None
        if self.policy.no_show is NoShowPolicy.REQUEUE_ONCE and not ticket.requeued:
            requeued = self._set(
                tid, state=TicketState.WAITING, window=None, key_ms=now_ms, requeued=True,
                recalls=0,
            )
            self._push(tid, requeued)
            return requeued
        return self._set(tid, state=TicketState.NO_SHOW, finished_ms=now_ms)


__all__ = ["Dispatcher", "IssuePlan", "Restored", "WindowStatus", "WindowTakeover"]

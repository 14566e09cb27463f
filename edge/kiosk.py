"""Issuing tickets: the kiosk API, the 取号 buttons, and any other ticket source.

:class:`TicketDesk` is the one entry point: :meth:`TicketDesk.take` takes a
:class:`TicketRequest` (service, class, channel, booked time, print or not, an
optional idempotency key) and answers a :class:`TicketAnswer` once the ticket is
journaled. A new source of tickets builds a request and calls it, as the 二代身份证
reader does (:meth:`TicketDesk.card`: :mod:`edge.id_card_kiosk` decides which ticket
a card may take).

The predicted wait is simulated in one worker thread over a snapshot taken on
the event loop, so keypads, screens and the kiosk API carry on meanwhile; the
ticket waits for it at most ``daemon.predict_budget_seconds`` and is otherwise
issued without a wait (``wait.predict_late``).

Idempotency: a kiosk whose answer was cut (the daemon killed mid-answer, the
network dropped) retries with the same key and gets the same ticket, not a
second one the citizen never sees (it would become a no-show). The key is
journaled with the ticket's event in one transaction, so this holds over a
crash; while the first request is still being answered a retry waits for its
answer. A key is good for the business day it was used in; the same key with
another request (service, class, booked time; for a check-in, the booking code) is
refused (422).

Check-ins (预约签到) are idempotent too. A check-in of a code whose check-in is still
being answered (a double tap, a scan read twice, a kiosk retry without a key) waits
for it and gets the same ticket, printed once; with a key, a retry after the answer
was lost gets the same ticket, as for a plain ticket. A keyless check-in of a code
already checked in is refused (409 ``booking_used``, the ticket's number in the
message), as is an ID card read again within :data:`REPEAT_CARD_S` of its check-in.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import date
from typing import Any

import structlog

from edge.devices.base import IdCardRead, TicketButton
from edge.errors import CommandRejected, OutputRefused
from edge.hall import Hall, IssuedTicket
from edge.id_card_kiosk import IdCardKiosk
from edge.journal import RequestKey
from edge.outputs import HallOutputs
from edge.predict import PredictionJob
from fastpath.types import TicketClass
from firmware_protocols import mqtt_messages as mm

log = structlog.get_logger(__name__)

CLOSED_NOTICE_S = 60  # 今日取号已结束 on the hall screen after a ticket button press
CARD_REFUSAL_NOTICE_S = 30  # why a card took no ticket (今日已用此身份证取号1次)
REPEAT_CARD_S = 60  # a card read again this soon after its booking's check-in is a repeat
IDEMPOTENCY_KEY_RE = re.compile(mm.TOKEN_PATTERN)  # 1-64 printable ASCII, no spaces
# Test fault injection (tests/edge/test_kiosk_retry.py), never set in service: with this
# variable set the daemon dies (os._exit) right after a keyed ticket is journaled, before
# the kiosk is answered.
TEST_FAULT_EXIT_AFTER_TICKET_ENV = "ONEDOOR_TEST_FAULT_EXIT_AFTER_KEYED_TICKET"


@dataclass(frozen=True, slots=True)
class TicketRequest:
    """One ticket asked for; ``key`` is the kiosk's idempotency key (or None)."""

    service_id: str
    klass: TicketClass = TicketClass.NORMAL
    channel: mm.Channel = "kiosk"
    booked_ms: int | None = None
    print_it: bool = False
    key: str | None = None
    booking: str | None = None  # the booking (预约) code checked in with this ticket

    def fingerprint(self) -> str:
        """What must be the same when a key is used again (printing may differ); a
        check-in's is :func:`check_in_fingerprint` of its code (:meth:`TicketDesk.check_in`)."""
        what = [self.service_id, self.klass.label, self.booked_ms]
        return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:32]


def check_in_fingerprint(code: str) -> str:
    """A check-in's fingerprint: its code alone (the service and slot follow from it,
    and are not known before the code is checked)."""
    return hashlib.sha256(json.dumps(["booking", code]).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class TicketAnswer:
    issued: IssuedTicket
    printed: bool
    replayed: bool = False  # the ticket an earlier request with the same key got


Spawner = Callable[[Coroutine[Any, Any, None], str], None]
"""Runs a short task in the daemon's task group (it must catch its own errors)."""


class TicketDesk:
    """Takes tickets for a hall (module docstring)."""

    def __init__(self, hall: Hall, outputs: HallOutputs, *,
                 predict_budget_s: Callable[[], float] = lambda: 1.5,
                 spawn: Spawner | None = None, cards: IdCardKiosk | None = None) -> None:
        self._hall = hall
        self._outputs = outputs
        self._budget = predict_budget_s
        self._spawn = spawn
        self._cards = cards  # [devices.id_card]: who may take which ticket by ID card
        self._predictions: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: dict[str, tuple[str, asyncio.Future[TicketAnswer]]] = {}
        self._check_ins: dict[str, asyncio.Future[TicketAnswer]] = {}  # code -> its answer

    def close(self) -> None:
        """Stop the prediction thread (a running simulation finishes and is dropped)."""
        if self._predictions is not None:
            self._predictions.shutdown(wait=False, cancel_futures=True)
            self._predictions = None

    # -- the entry point -----------------------------------------------------

    async def take(self, request: TicketRequest) -> TicketAnswer:
        """Issue (and print, if asked) a ticket; the same ``key`` gets the same ticket.

        Raises :class:`CommandRejected` for a request the hall refuses, or a key used
        with another request (422 ``key_reused``) or on an earlier day (409
        ``key_expired``).
        """
        return await self._answer(request.key, request.fingerprint(), request.print_it,
                                  lambda: request)

    async def _answer(self, key: str | None, fingerprint: str, print_it: bool,
                      build: Callable[[], TicketRequest]) -> TicketAnswer:
        """The ticket of ``key`` if it has one (being answered or journaled), else the
        ticket of ``build()`` (called only then: it may refuse), journaled with the key."""
        if key is None:
            request = build()
            issued = await self.issue(request)
            return TicketAnswer(issued, await self._print(issued, request.print_it))
        if not IDEMPOTENCY_KEY_RE.fullmatch(key):
            raise CommandRejected("idempotency key: 1-64 printable ASCII characters, no spaces",
                                  status=422, code="bad_key")
        pending = self._pending.get(key)
        if pending is not None:  # the first request with this key is still being answered
            self._same_request(key, pending[0], fingerprint)
            answer = await asyncio.shield(pending[1])
            return TicketAnswer(answer.issued, answer.printed, replayed=True)
        journaled = self._journaled(key, fingerprint)
        if journaled is not None:
            log.info("ticket.replayed", key=key, ticket=journaled.ticket.number)
            return TicketAnswer(journaled, await self._print(journaled, print_it),
                                replayed=True)
        request = build()
        future: asyncio.Future[TicketAnswer] = asyncio.get_running_loop().create_future()
        self._pending[key] = (fingerprint, future)
        try:
            return await _settling(future, self._issue_keyed(request, key, fingerprint))
        finally:
            del self._pending[key]

    async def _issue_keyed(self, request: TicketRequest, key: str,
                           fingerprint: str) -> TicketAnswer:
        issued = await self.issue(request, RequestKey(key, fingerprint))
        if os.environ.get(TEST_FAULT_EXIT_AFTER_TICKET_ENV) == "1":
            log.warning("test_fault.exit_after_ticket", ticket=issued.ticket.number)
            os._exit(87)
        return TicketAnswer(issued, await self._print(issued, request.print_it))

    async def check_in(self, code: str, *, print_it: bool,
                       key: str | None = None) -> TicketAnswer:
        """Check a booking (预约) in by its code, typed or scanned from its QR: an
        appointment ticket booked at the slot's start (the dispatcher's late rule
        applies). A wrong, used or other-day code: :class:`CommandRejected` in Chinese.

        Idempotent (module docstring): while a check-in of ``code`` is answered, another
        gets its ticket (``replayed``); ``key`` works as for :meth:`take`."""
        code = code.strip()
        same = self._check_ins.get(code)
        if same is not None:  # a double tap, a scan read twice: the same ticket
            answer = await asyncio.shield(same)
            log.info("booking.check_in_replayed", code=code, ticket=answer.issued.ticket.number)
            return TicketAnswer(answer.issued, answer.printed, replayed=True)

        def request() -> TicketRequest:
            service_id, booked_ms = self._hall.booking(code)
            return TicketRequest(service_id, TicketClass.APPOINTMENT, "kiosk", booked_ms,
                                 print_it, key, booking=code)

        future: asyncio.Future[TicketAnswer] = asyncio.get_running_loop().create_future()
        self._check_ins[code] = future
        try:
            return await _settling(future, self._answer(key, check_in_fingerprint(code),
                                                        print_it, request))
        finally:
            del self._check_ins[code]

    def _same_request(self, key: str, stored: str, fingerprint: str) -> None:
        if stored != fingerprint:
            raise CommandRejected(f"idempotency key {key!r} was used for another request",
                                  status=422, code="key_reused")

    def _journaled(self, key: str, fingerprint: str) -> IssuedTicket | None:
        """The ticket journaled for ``key`` today, as it was first answered."""
        found = self._hall.journal.issued_for(key)
        if found is None:
            return None
        stored, event = found
        self._same_request(key, stored, fingerprint)
        body = event.body
        if (not isinstance(body, mm.TicketIssued)
                or event.seq < self._hall.journal.last_seq_of("day.reset")):
            raise CommandRejected(f"idempotency key {key!r} belongs to an earlier day",
                                  status=409, code="key_expired")
        return IssuedTicket(self._hall.dispatcher.ticket(body.ticket), body.people_ahead,
                            body.wait, event)

    async def _print(self, issued: IssuedTicket, print_it: bool) -> bool:
        return await self._outputs.print_issued(issued) if print_it else False

    # -- 取号 buttons and ID cards -------------------------------------------

    def press(self, button: TicketButton) -> None:
        """A 取号 button: outside the issuing hours say so on the hall screen, else issue
        and print in the background (keypads must not wait behind a prediction)."""
        if self._closed(button.service_id, button.service_id):
            return
        request = TicketRequest(button.service_id, button.klass, "button", print_it=True)
        self._background(self._button(request), f"ticket:{button.service_id}")

    def card(self, read: IdCardRead) -> None:
        """An ID card read at the kiosk: the card policy (:mod:`edge.id_card_kiosk`) says
        which ticket it takes, if any; issued and printed in the background."""
        if self._cards is None:
            log.warning("id_card.ignored", reader=read.reader, detail="no [devices.id_card]")
            return
        if self._closed("id_card", self._cards.policy.service_id):
            return
        self._background(self._card(read, self._cards), "ticket:id_card")

    def _closed(self, source: str, service_id: str | None) -> bool:
        """Outside the issuing hours: nothing to print, the hall screen says so."""
        closed = self._hall.closed_notice(self._hall.clock.now_ms(), service_id)
        if closed is not None:
            log.info("ticket.closed", source=source, notice=closed)
            self._outputs.notice("closed", closed, CLOSED_NOTICE_S)
        return closed is not None

    def _background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        if self._spawn is None:
            work.close()
            raise RuntimeError("this desk has no task group for button presses and cards")
        self._spawn(work, name)

    async def _button(self, request: TicketRequest) -> None:
        try:
            await self.take(request)
        except CommandRejected as exc:
            log.warning("input.rejected", input=repr(request), reason=str(exc))
        except Exception:  # in the task group: a failure must not take the daemon down
            log.exception("ticket.button_failed", input=repr(request))

    async def _card(self, read: IdCardRead, cards: IdCardKiosk) -> None:
        hall = self._hall

        async def issue(service_id: str, klass: TicketClass) -> str:
            answer = await self.take(TicketRequest(service_id, klass, "kiosk", print_it=True))
            return answer.issued.ticket.number

        def refuse(message: str) -> None:
            with contextlib.suppress(OutputRefused):  # logged by the outputs
                self._outputs.notice("id_card", message, CARD_REFUSAL_NOTICE_S)

        try:
            person = cards.booking_person(read.card)
            if person is not None:
                now_ms = hall.clock.now_ms()
                # A card read again soon after its check-in: that check-in again (its
                # ticket while it is answered, else booking_used), not a new ticket.
                booking = (cards.recent_check_in(person, now_ms, REPEAT_CARD_S * 1000)
                           or hall.booking_of(person))
                if booking is not None:  # 预约: checked in as the code would be
                    cards.checked_in(person, booking, now_ms)  # before awaiting: see above
                    try:
                        answer = await self.check_in(booking, print_it=True)
                    except CommandRejected as exc:
                        refuse(str(exc))
                        raise
                    log.info("id_card.booking", reader=read.reader, booking=booking,
                             ticket=answer.issued.ticket.number, replayed=answer.replayed)
                    return
            await cards.take_ticket(read, hall.day, date.fromisoformat(hall.day), issue, refuse)
        except CommandRejected as exc:
            log.warning("input.rejected", input="id_card", reason=str(exc))
        except Exception:  # in the task group: a failure must not take the daemon down
            log.exception("ticket.id_card_failed")

    # -- issuing with a predicted wait ---------------------------------------

    async def issue(self, request: TicketRequest, key: RequestKey | None = None
                    ) -> IssuedTicket:
        """Take a ticket with its predicted wait, simulated off the event loop.

        The request is checked and the hall snapshotted on the loop; the simulation
        runs in the one worker thread for at most ``daemon.predict_budget_seconds``.
        Past that the ticket goes without a wait (people ahead only), logged as
        ``wait.predict_late``. The ticket is journaled before anyone is told, as ever.
        """
        hall = self._hall
        job = hall.prediction_job(request.service_id, request.klass, booked_ms=request.booked_ms)
        wait = None if job is None else await self._predict(job, request.service_id)
        return hall.issue(request.service_id, request.klass, channel=request.channel,
                          booked_ms=request.booked_ms, wait=wait, request=key,
                          booking=request.booking)

    async def _predict(self, job: PredictionJob, service_id: str) -> mm.WaitPrediction | None:
        loop = asyncio.get_running_loop()
        budget = self._budget()
        started = time.monotonic()
        if self._predictions is None:  # one worker: a prediction never blocks the loop,
            self._predictions = concurrent.futures.ThreadPoolExecutor(  # two never run at once
                max_workers=1, thread_name_prefix="predict")
        try:
            async with asyncio.timeout(budget):
                # On timeout the future is cancelled: a job still queued never runs; one
                # already running finishes in its thread and is dropped.
                return await loop.run_in_executor(self._predictions, job)
        except TimeoutError:
            log.warning("wait.predict_late", service=service_id, budget_s=budget,
                        detail="issued without a predicted wait")
        except Exception as exc:
            log.error("wait.predict_failed", service=service_id, error=repr(exc),
                      seconds=round(time.monotonic() - started, 3))
        return None


async def _settling(future: asyncio.Future[TicketAnswer],
                   work: Awaitable[TicketAnswer]) -> TicketAnswer:
    """Await ``work`` and settle ``future`` with its outcome, for the requests that
    wait on it (a cancelled ``work`` cancels them)."""
    try:
        answer = await work
    except asyncio.CancelledError:
        future.cancel()
        raise
    except Exception as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: nobody else may be waiting
        raise
    future.set_result(answer)
    return answer


__all__ = ["CLOSED_NOTICE_S", "REPEAT_CARD_S", "TicketAnswer", "TicketDesk", "TicketRequest"]

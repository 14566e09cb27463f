"""The citizens' progress pages: every site's latest ``progress`` in memory, and what a
ticket's page says.

::

    hub = ProgressHub(clock, stale_s=150)
    hub.receive(topic, payload, at)        # from the MQTT thread: progress and state
    hub.site("zs-sanxiang-01")             # its latest progress, indexed (SiteProgress)
    await hub.changed("zs-sanxiang-01", timeout=25)   # the site's progress moved

What a ticket's page says is :mod:`central.web.progress`'s.

A ticket's QR carries an unguessable token; the central finds the ticket by the
token's SHA-256 (:class:`LinkInfo`, from the ``ticket_links`` row written when its
``ticket.issued`` event was committed). What the page shows comes from the site's
latest ``progress`` (:class:`firmware_protocols.mqtt_messages.Progress`), which
every replica receives (a plain subscription, retained) and keeps here: opening
a page reads one row, and keeping it live reads nothing at all. A ticket no longer
in the site's message (it ended over half an hour ago) shows the outcome of its
events (``outcome``, read once by the page's route).

A site is live while it is online and its last ``progress`` is younger than
``stale_s``; otherwise the page shows the last known state with its time, and no
wait counting down: never a guess presented as live.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Literal

import structlog
from sqlalchemy import delete
from sqlalchemy.orm import Session

from central.models import TicketLink
from central.stats import BUSINESS_TZ
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.mqtt_topics import InvalidMessage, Kind

log = structlog.get_logger(__name__)

PageState = Literal["waiting", "requeued", "called", "serving", "done", "no_show",
                    "cancelled", "unknown"]


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """A ticket's progress page as the database knows it (``ticket_links``)."""

    token_sha256: str
    site_id: str
    site_name: str
    ticket: str
    service: str
    issued_seq: int
    issued_ms: int
    wait_p50_s: int | None
    wait_p90_s: int | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a ticket's events say it came to (for a ticket no longer in the message)."""

    state: PageState
    window: int | None


@dataclass(slots=True)
class SiteProgress:
    """One site's latest ``progress`` (indexed by ticket) and whether it is online."""

    message: mm.Progress | None = None
    received_at: float = 0.0  # the central's clock (unix s): the edge's may be off
    waiting: dict[str, mm.WaitingProgress] = field(default_factory=dict)
    called: dict[str, mm.CalledProgress] = field(default_factory=dict)
    ended: dict[str, mm.EndedProgress] = field(default_factory=dict)
    state: mm.State | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, message: mm.Progress, at: float) -> None:
        self.message, self.received_at = message, at
        self.waiting = {w.ticket: w for w in message.waiting}
        self.called = {c.ticket: c for c in message.called}
        self.ended = {e.ticket: e for e in message.ended}

    @property
    def online(self) -> bool:
        return self.state is not None and self.state.status == "online"


def of_today(link: LinkInfo, site: SiteProgress) -> bool:
    """Whether the site's latest message is of the ticket's day (it was issued after the
    message's day reset): else the message says nothing about it."""
    return site.message is not None and site.message.day_seq < link.issued_seq


def token_digest(token: str) -> str:
    """What the database keeps of a progress token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def link_expiry(issued_ms: int, clock_synced: bool, received: datetime) -> datetime:
    """The end of the local day of issue (business time); by the central's clock when the
    edge's was not synchronised."""
    moment = datetime.fromtimestamp(issued_ms / 1000, UTC) if clock_synced else received
    day = moment.astimezone(BUSINESS_TZ).date()
    return datetime.combine(day + timedelta(days=1), time(), BUSINESS_TZ).astimezone(UTC)


def ticket_link_row(site_id: str, event: mm.Event, received: datetime) -> TicketLink | None:
    """The ``ticket_links`` row of a committed ``ticket.issued`` (None without a token)."""
    body = event.body
    if not isinstance(body, mm.TicketIssued) or body.token is None:
        return None
    wait = body.wait
    return TicketLink(token_sha256=token_digest(body.token), site_id=site_id,
                      ticket=body.ticket, service=body.service, issued_seq=event.seq,
                      issued_ms=event.ts, wait_p50_s=None if wait is None else wait.p50_s,
                      wait_p90_s=None if wait is None else wait.p90_s,
                      expires_at=link_expiry(event.ts, event.clock_synced, received))


def prune_ticket_links(session: Session, now: datetime) -> int:
    """Delete the links of pages expired before ``now``; how many went."""
    result = session.execute(delete(TicketLink).where(TicketLink.expires_at < now))
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        log.info("progress.links_pruned", count=count)
    return count


class ProgressHub:
    """Every site's latest progress, fed from the MQTT thread (see the module docstring)."""

    def __init__(self, clock: Callable[[], datetime], *, stale_s: float) -> None:
        self._clock = clock
        self.stale_s = stale_s
        self._sites: dict[str, SiteProgress] = {}
        self._pending: collections.deque[tuple[str, bytes, float]] = collections.deque()
        self._handoff = threading.Lock()
        self._wakeup_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.received = 0
        self.rejected = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the pages wait on (the app's)."""
        self._loop = loop

    # -- input ---------------------------------------------------------------

    def receive(self, topic: str, payload: bytes, at: float) -> None:
        """A ``progress`` or ``state`` publish, from any thread (one wake-up per burst)."""
        with self._handoff:
            self._pending.append((topic, payload, at))
            if self._wakeup_scheduled or self._loop is None:
                return
            self._wakeup_scheduled = True
        self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._handoff:
            batch, self._pending = self._pending, collections.deque()
            self._wakeup_scheduled = False
        for topic, payload, at in batch:
            self.apply(topic, payload, at)

    def apply(self, topic: str, payload: bytes, at: float) -> None:
        """Take one publish (on the event loop)."""
        try:
            site_id, kind, message = mm.decode_publish(topic, payload)
        except InvalidMessage as exc:  # ingest counts the bad states; these are logged
            self.rejected += 1
            log.warning("progress.rejected", site=exc.site_id, reason=exc.reason.value,
                        detail=exc.detail[:200])
            return
        site = self._sites.get(site_id)
        if site is None:
            site = self._sites[site_id] = SiteProgress()
        if kind is Kind.PROGRESS and isinstance(message, mm.Progress):
            self.received += 1
            site.take(message, at)
        elif isinstance(message, mm.State):
            if not mm.state_supersedes(message, site.state):
                return
            site.state = message
        else:
            return
        site.changed.set()  # wake every page of the site, then a new event for the next
        site.changed = asyncio.Event()

    # -- output --------------------------------------------------------------

    def site(self, site_id: str) -> SiteProgress | None:
        return self._sites.get(site_id)

    async def changed(self, site_id: str, timeout: float) -> bool:
        """Wait until the site's progress or state changes; False on timeout."""
        site = self._sites.get(site_id)
        if site is None:
            site = self._sites[site_id] = SiteProgress()
        try:
            async with asyncio.timeout(timeout):
                await site.changed.wait()
        except TimeoutError:
            return False
        return True

    def is_live(self, site: SiteProgress | None) -> bool:
        now = self._clock().timestamp()
        return (site is not None and site.message is not None and site.online
                and now - site.received_at <= self.stale_s)

    def needs_outcome(self, link: LinkInfo) -> bool:
        """Whether the page needs the ticket's events: the message does not hold it."""
        site = self._sites.get(link.site_id)
        if site is None or not of_today(link, site):
            return True
        number = link.ticket
        return not (number in site.waiting or number in site.called or number in site.ended)


__all__ = ["LinkInfo", "Outcome", "PageState", "ProgressHub", "SiteProgress", "link_expiry",
           "of_today", "prune_ticket_links", "ticket_link_row", "token_digest"]

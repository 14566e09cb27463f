"""Bookings (预约) a booking platform pushes, the rules they keep, what each site is sent.

::

    bookings = Bookings(sessions, config)
    view = bookings.book("zs-city", "shebao", "2026-12-08", "09:00-09:30",
                         "44200019900101001X", reference="yss-123", actor=actor, now=now)
    bookings.change(view.code, day="2026-12-09", slot="10:00-10:30", actor=actor, now=now)
    bookings.cancel(view.code, actor=actor, now=now)
    bookings.set_rules("zs-city", {"default_quota": 6, "quotas": [...]}, actor=actor, now=now)
    bookings.of_site("zs-city", "2026-12-08", now)      # with derived no-shows
    bookings.counts("2026-12-08", now)                   # booked / checked in / no-show
    bookings.slots("zs-city", "2026-12-08", now)         # per slot, with its quota
    documents(session, "2026-12-08")                     # {site: cmd/bookings args}

The rules (:class:`central.config.CentralConfig`, ``booking_*``): how many days
ahead, the cancel (and change) deadline before the slot, the default quota per
site, service and slot, one booking per person and day. A site's own rules
(:mod:`central.booking_rules`) give quotas per slot and the hours a booking must
fit; the city calendar and an emergency stop in force apply as on the edge. The
person is the HMAC-SHA256 of the ID number with the central's salt: the number is
checked (GB 11643 check digit) and dropped.

A booking is admitted with its site's row locked (``SELECT ... FOR UPDATE`` on
PostgreSQL, the one writer on SQLite), so concurrent pushes for one site are
counted one after the other and a quota is never exceeded; on PostgreSQL an
advisory lock per person keeps "one a day" across sites.

A site holds its bookings of the day (``cmd/bookings``, pushed by
:mod:`central.pushes` like stops and calendars); a check-in at its kiosk comes back
as a ``booking.checked_in`` event (:func:`record_check_in`). A booking still
``booked`` once its day is over is a no-show: derived when read, nothing runs at
midnight. Every operation is in the audit log (:mod:`central.audit`, ``booking.*``):
the platform's pushes, changes and cancels, the site's check-ins and 过号 of a
booking's ticket.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import structlog
from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session, sessionmaker

from central.audit import Actor, AuditAction, record
from central.booking_rules import NO_RULES, BookingRules, check_slot, parse_rules
from central.config import CentralConfig
from central.errors import Conflict, InvalidRequest, NotFound, Unavailable, UnknownSite
from central.models import Booking, BookingStatus, Service, Site, SiteBookingRules
from central.sitespec import hours_of
from central.stats import business_date
from fastpath.calendar import minute_of
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.id_card import booking_person_hash

log = structlog.get_logger(__name__)

_SLOT_RE: Final = re.compile(r"^([0-2][0-9]):([0-5][0-9])-([0-2][0-9]):([0-5][0-9])\Z")
_ID_RE: Final = re.compile(r"^[0-9]{17}[0-9X]\Z")
_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK: Final = "10X98765432"
BUSINESS_TZ: Final = dt.timezone(dt.timedelta(hours=8))
FIGURES: Final = ("booked", "checked_in", "no_show", "waiting", "cancelled")
"""The figures of a site's or a slot's day (:meth:`Bookings.counts`, :meth:`Bookings.slots`)."""


class UnknownBooking(NotFound, KeyError):
    what = "booking"


@dataclass(frozen=True, slots=True)
class WantedSlot:
    """A service, day and slot asked for, well-formed (:meth:`Bookings._wanted`)."""

    service: str
    day: str
    date: dt.date
    start: str
    end: str


def _registry_hours(site: Site) -> dict[str, str] | None:
    """The site's hours in the registry as an ``[hours]`` table (None: the fleet's)."""
    hours = hours_of(site)
    if hours is None:
        return None
    table = {"open": hours.open, "close": hours.close}
    if hours.last_ticket is not None:
        table["last_ticket"] = hours.last_ticket
    return table


@dataclass(frozen=True, slots=True)
class BookingView:
    code: str
    site: str
    service: str
    day: str
    slot: str
    status: str
    """``booked``, ``cancelled``, ``checked_in``, or ``no_show`` (booked, the day over)."""
    reference: str | None
    ticket: str | None
    created_at: str
    cancelled_at: str | None
    checked_in_at: str | None

    @classmethod
    def of(cls, row: Booking, today: dt.date) -> BookingView:
        status = row.status.value
        if row.status is BookingStatus.BOOKED and dt.date.fromisoformat(row.day) < today:
            status = "no_show"
        return cls(row.code, row.site_id, row.service, row.day,
                   f"{row.slot_start}-{row.slot_end}", status, row.reference, row.ticket,
                   row.created_at.isoformat(), _iso(row.cancelled_at), _iso(row.checked_in_at))

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def check_id_number(id_number: str) -> str:
    """An 18-character resident ID number (居民身份证号), its check digit verified."""
    number = id_number.strip().upper()
    if not _ID_RE.fullmatch(number):
        raise InvalidRequest("id_number: 18 characters, 17 digits and a digit or X")
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != number[17]:
        raise InvalidRequest("id_number: the check digit does not match")
    return number


def person_hash(salt: str, id_number: str) -> str:
    """Who booked, without the ID number: HMAC-SHA256 with the central's salt, hex (a
    kiosk's ID card reader computes the same, :mod:`edge.id_card_kiosk`)."""
    return booking_person_hash(salt, id_number)


def parse_slot(slot: str) -> tuple[str, str]:
    """``"09:00-09:30"`` as (start, end); :class:`InvalidRequest` otherwise."""
    match = _SLOT_RE.fullmatch(slot.strip())
    if match is None:
        raise InvalidRequest("slot: HH:MM-HH:MM, e.g. 09:00-09:30")
    start_h, start_m, end_h, end_m = (int(g) for g in match.groups())
    if start_h > 23 or end_h > 23 or (start_h, start_m) >= (end_h, end_m):
        raise InvalidRequest("slot: the end must come after the start, within the day")
    return f"{start_h:02d}:{start_m:02d}", f"{end_h:02d}:{end_m:02d}"


def slot_moment(day: str, hhmm: str) -> dt.datetime:
    """The aware local (UTC+8) time of ``hhmm`` on ``day``."""
    hour, minute = (int(p) for p in hhmm.split(":"))
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour, minute),
                               tzinfo=BUSINESS_TZ)


class Bookings:
    """The bookings the platforms push and cancel, under the central's rules."""

    def __init__(self, sessions: sessionmaker[Session], config: CentralConfig) -> None:
        self.sessions = sessions
        self.config = config

    def _salt(self) -> str:
        if not self.config.booking_person_salt:
            raise Unavailable("bookings are not set up: booking_person_salt is empty")
        return self.config.booking_person_salt

    def book(self, site_id: str, service: str, day: str, slot: str, id_number: str, *,
             reference: str | None, actor: Actor, now: dt.datetime) -> BookingView:
        """A booking under the rules: 404 unknown site or service, 422 a bad day or slot
        or ID number or one the site's calendar closes, 409 a full slot, a second booking
        of the person that day, or an emergency stop in force."""
        person = person_hash(self._salt(), check_id_number(id_number))
        wanted = self._wanted(service, day, slot, now)
        with self.sessions.begin() as session:
            self._admit(session, site_id, wanted, person, now, changing=None)
            code = self._new_code(session, wanted.date)
            row = Booking(code=code, site_id=site_id, service=service, day=wanted.day,
                          slot_start=wanted.start, slot_end=wanted.end, person=person,
                          reference=reference, status=BookingStatus.BOOKED, created_at=now,
                          created_by=actor.name[:64])
            session.add(row)
            view = BookingView.of(row, business_date(now))
            record(session, actor, AuditAction.BOOKING_CREATE, f"booking:{code}",
                   {"site": site_id, "service": service, "day": view.day, "slot": view.slot,
                    "reference": reference}, now=now)
        log.info("booking.created", code=code, site=site_id, service=service, day=view.day,
                 slot=view.slot, by=actor.name)
        return view

    def change(self, code: str, *, service: str | None = None, day: str | None = None,
               slot: str | None = None, actor: Actor, now: dt.datetime
               ) -> tuple[BookingView, BookingView]:
        """Move a booking to another day, slot or service (``None``: as it is), keeping
        its code: the new slot is checked as a new booking would be (calendar, quota,
        one a day), in the same transaction that moves it. Before the cancel deadline of
        its current slot only (409), and not once checked in or cancelled (409). The
        booking (before, after); the same change again changes nothing."""
        with self.sessions.begin() as session:
            row = session.get(Booking, code)
            if row is None:
                raise UnknownBooking(code)
            today = business_date(now)
            before = BookingView.of(row, today)
            wanted = self._wanted(service or row.service, day or row.day,
                                  slot or f"{row.slot_start}-{row.slot_end}", now)
            if (wanted.service, wanted.day, wanted.start, wanted.end) == (
                    row.service, row.day, row.slot_start, row.slot_end):
                return before, before
            self._still_open(row, "changing", now)
            self._admit(session, row.site_id, wanted, row.person, now, changing=code)
            row.service, row.day = wanted.service, wanted.day
            row.slot_start, row.slot_end, row.changed_at = wanted.start, wanted.end, now
            after = BookingView.of(row, today)
            record(session, actor, AuditAction.BOOKING_CHANGE, f"booking:{code}",
                   {"site": row.site_id,
                    "from": {"service": before.service, "day": before.day, "slot": before.slot},
                    "to": {"service": after.service, "day": after.day, "slot": after.slot}},
                   now=now)
        log.info("booking.changed", code=code, site=after.site, service=after.service,
                 day=after.day, slot=after.slot, by=actor.name)
        return before, after

    def _wanted(self, service: str, day: str, slot: str, now: dt.datetime) -> WantedSlot:
        """A service, day and slot a booking may ask for (422 otherwise): not over, not
        further ahead than ``booking_days_ahead``."""
        start, end = parse_slot(slot)
        today = business_date(now)
        try:
            date = dt.date.fromisoformat(day)
        except ValueError:
            raise InvalidRequest(f"day: {day!r} is not a date YYYY-MM-DD") from None
        if date < today or (date == today and slot_moment(day, end) <= now):
            raise InvalidRequest(f"day: {day} {start}-{end} is over")
        if (date - today).days > self.config.booking_days_ahead:
            raise InvalidRequest(
                f"day: bookings open {self.config.booking_days_ahead} days ahead")
        return WantedSlot(service, date.isoformat(), date, start, end)

    def _admit(self, session: Session, site_id: str, wanted: WantedSlot, person: str,
               now: dt.datetime, *, changing: str | None) -> None:
        """Whether the site takes ``wanted`` for ``person`` (raises otherwise), with the
        site's row locked so that concurrent bookings of the site are counted one after
        the other (``FOR UPDATE`` on PostgreSQL; SQLite has one writer at a time).
        ``changing``: the booking being moved (not counted against itself)."""
        site, services = self._locked_site(session, site_id)
        if session.get_bind().dialect.name == "postgresql":  # one a day, across the sites
            session.execute(select(func.pg_advisory_xact_lock(
                func.hashtext(literal(f"booking-person:{person}")))))
        if services and wanted.service not in services:
            raise InvalidRequest(f"service: {site_id} has no service {wanted.service!r}")
        # central.pushes sends the bookings (it imports this module): imported here.
        from central.pushes import stop_in_force, with_city_calendar

        stop = stop_in_force(session, site_id, site.town)
        if stop is not None:
            raise Conflict(f"{site_id}暂停取号（{stop.reason}），暂不受理预约 "
                           f"(issuing is stopped at {site_id}: {stop.reason})")
        rules = self._rules_of(session, site_id)
        check_slot(with_city_calendar(session, rules.calendar(_registry_hours(site))),
                   wanted.date, wanted.start, wanted.end, wanted.service)
        alive = [Booking.status != BookingStatus.CANCELLED]
        if changing is not None:
            alive.append(Booking.code != changing)
        quota = rules.quota_for(wanted.service, wanted.date, minute_of(wanted.start),
                                default=self.config.booking_slot_quota)
        taken = session.scalar(select(func.count()).select_from(Booking).where(
            Booking.site_id == site_id, Booking.service == wanted.service,
            Booking.day == wanted.day, Booking.slot_start == wanted.start, *alive)) or 0
        if taken >= quota:
            raise Conflict(f"slot full: {site_id} {wanted.service} {wanted.day} "
                           f"{wanted.start} has {quota} bookings (该时段已约满)")
        if (session.scalar(select(func.count()).select_from(Booking).where(
                Booking.site_id == site_id, Booking.day == wanted.day, *alive)) or 0
                ) >= mm.MAX_BOOKINGS_PER_DAY:
            raise Conflict(f"{site_id} has {mm.MAX_BOOKINGS_PER_DAY} bookings on "
                           f"{wanted.day}, what one site takes in a day")
        if self.config.booking_one_per_day and session.scalar(select(Booking.code).where(
                Booking.person == person, Booking.day == wanted.day, *alive).limit(1)):
            raise Conflict(f"this person has a booking on {wanted.day} already (one a day)")

    @staticmethod
    def _locked_site(session: Session, site_id: str) -> tuple[Site, set[str]]:
        """The site's row, locked (``FOR UPDATE``), and its service codes;
        :class:`UnknownSite` if it is missing or retired."""
        site = session.scalars(select(Site).where(Site.id == site_id).with_for_update()).first()
        if site is None or site.retired_at is not None:
            raise UnknownSite(site_id)
        return site, set(session.scalars(select(Service.code).where(Service.site_id == site_id)))

    @staticmethod
    def _rules_of(session: Session, site_id: str) -> BookingRules:
        row = session.get(SiteBookingRules, site_id)
        if row is None:
            return NO_RULES
        return parse_rules(row.rules, services=())  # checked when set

    @staticmethod
    def _new_code(session: Session, date: dt.date) -> str:
        for _ in range(20):
            code = f"{date:%m%d}{secrets.randbelow(10**6):06d}"
            if session.get(Booking, code) is None:
                return code
        raise Unavailable(f"no free booking code left for {date:%m-%d}")

    def _still_open(self, row: Booking, doing: str, now: dt.datetime) -> None:
        """409 unless the booking is booked and before its cancel deadline."""
        if row.status is BookingStatus.CHECKED_IN:
            raise Conflict(f"booking {row.code} is checked in (ticket {row.ticket})")
        if row.status is BookingStatus.CANCELLED:
            raise Conflict(f"booking {row.code} is cancelled")
        deadline = (slot_moment(row.day, row.slot_start)
                    - dt.timedelta(seconds=self.config.booking_cancel_before_s))
        if now > deadline:
            raise Conflict(f"booking {row.code}: {doing} closed at "
                           f"{deadline.astimezone(BUSINESS_TZ):%Y-%m-%d %H:%M}")

    def cancel(self, code: str, *, actor: Actor, now: dt.datetime) -> BookingView:
        """Cancel a booking before the deadline (409 after it, or once checked in);
        cancelling a cancelled booking changes nothing."""
        with self.sessions.begin() as session:
            row = session.get(Booking, code)
            if row is None:
                raise UnknownBooking(code)
            if row.status is not BookingStatus.CANCELLED:  # _still_open: 409 if checked in
                self._still_open(row, "cancelling", now)
                row.status, row.cancelled_at = BookingStatus.CANCELLED, now
                record(session, actor, AuditAction.BOOKING_CANCEL, f"booking:{code}",
                       {"site": row.site_id, "day": row.day,
                        "slot": f"{row.slot_start}-{row.slot_end}"}, now=now)
                log.info("booking.cancelled", code=code, site=row.site_id, by=actor.name)
            return BookingView.of(row, business_date(now))

    # -- the site's rules ----------------------------------------------------

    def rules(self, site_id: str) -> dict[str, Any]:
        """A site's booking rules as set (``{}``: none), with who set them and when."""
        with self.sessions() as session:
            if session.get(Site, site_id) is None:
                raise UnknownSite(site_id)
            row = session.get(SiteBookingRules, site_id)
            if row is None:
                return {"site": site_id, "rules": {}, "updated_at": None, "updated_by": None}
            return {"site": site_id, "rules": row.rules, "updated_at": row.updated_at.isoformat(),
                    "updated_by": row.updated_by}

    def set_rules(self, site_id: str, document: object, *, actor: Actor,
                  now: dt.datetime) -> dict[str, Any]:
        """Replace a site's booking rules (422 naming every problem); ``{}`` clears them.
        Bookings already taken stay (a lower quota takes no more, cancels none)."""
        with self.sessions.begin() as session:
            site, services = self._locked_site(session, site_id)
            rules = parse_rules(document, services=services)
            rules.calendar(_registry_hours(site))  # with the registry's hours, if it uses them
            row = session.get(SiteBookingRules, site_id)
            if row is None:
                row = SiteBookingRules(site_id=site_id, rules=dict(rules.document),
                                       updated_at=now, updated_by=actor.name[:64])
                session.add(row)
            else:
                row.rules, row.updated_at = dict(rules.document), now
                row.updated_by = actor.name[:64]
            record(session, actor, AuditAction.BOOKING_RULES, site_id,
                   {"rules": dict(rules.document)}, now=now)
        log.info("booking.rules_set", site=site_id, by=actor.name)
        return self.rules(site_id)

    def get(self, code: str, now: dt.datetime) -> BookingView:
        with self.sessions() as session:
            row = session.get(Booking, code)
            if row is None:
                raise UnknownBooking(code)
            return BookingView.of(row, business_date(now))

    def of_site(self, site_id: str, day: str, now: dt.datetime) -> list[BookingView]:
        with self.sessions() as session:
            if session.get(Site, site_id) is None:
                raise UnknownSite(site_id)
            rows = session.scalars(select(Booking).where(
                Booking.site_id == site_id, Booking.day == day).order_by(
                Booking.slot_start, Booking.created_at))
            today = business_date(now)
            return [BookingView.of(row, today) for row in rows]

    def counts(self, day: str, now: dt.datetime, site_id: str | None = None, *,
               towns: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Per site: ``booked`` (not cancelled), ``checked_in``, ``no_show`` (booked and
        the day over), ``waiting`` (booked, the day not over), ``cancelled``; ``towns``:
        the sites of those towns only (None: every site)."""
        past = dt.date.fromisoformat(day) < business_date(now)
        query = select(Booking.site_id, Booking.status, func.count()).where(
            Booking.day == day).group_by(Booking.site_id, Booking.status)
        if site_id is not None:
            query = query.where(Booking.site_id == site_id)
        if towns is not None:
            query = query.where(Booking.site_id.in_(
                select(Site.id).where(Site.town.in_(list(towns)))))
        with self.sessions() as session:
            rows = session.execute(query).all()
        out: dict[str, dict[str, Any]] = {}
        for site, status, count in rows:
            figures = out.setdefault(site, {"site": site, "day": day,
                                            **dict.fromkeys(FIGURES, 0)})
            _tally(figures, status, count, past=past)
        return [out[site] for site in sorted(out)]

    def slots(self, site_id: str, day: str, now: dt.datetime) -> list[dict[str, Any]]:
        """A site's day per service and slot: ``booked`` (not cancelled), its ``quota``
        under the site's rules, ``checked_in``, ``no_show`` (booked, the day over),
        ``waiting`` (booked, the day not over), ``cancelled``; the slots with bookings,
        in time order."""
        date = dt.date.fromisoformat(day)
        past = date < business_date(now)
        with self.sessions() as session:
            if session.get(Site, site_id) is None:
                raise UnknownSite(site_id)
            rules = self._rules_of(session, site_id)
            rows = session.execute(select(
                Booking.service, Booking.slot_start, Booking.slot_end, Booking.status,
                func.count()).where(Booking.site_id == site_id, Booking.day == day).group_by(
                Booking.service, Booking.slot_start, Booking.slot_end, Booking.status)).all()
        out: dict[tuple[str, str, str], dict[str, Any]] = {}
        for service, start, end, status, count in rows:
            figures = out.setdefault((start, end, service), {
                "service": service, "slot": f"{start}-{end}",
                "quota": rules.quota_for(service, date, minute_of(start),
                                         default=self.config.booking_slot_quota),
                **dict.fromkeys(FIGURES, 0)})
            _tally(figures, status, count, past=past)
        return [out[key] for key in sorted(out)]


def _tally(figures: dict[str, Any], status: BookingStatus, count: int, *, past: bool) -> None:
    """Add ``count`` bookings of ``status`` to ``figures`` (booked counts all but the
    cancelled; one still booked is a no-show once its day is over, else waiting)."""
    if status is BookingStatus.CANCELLED:
        figures["cancelled"] += count
        return
    figures["booked"] += count
    if status is BookingStatus.CHECKED_IN:
        figures["checked_in"] += count
    else:
        figures["no_show" if past else "waiting"] += count


def documents(session: Session, day: str) -> dict[str, mm.BookingsArgs]:
    """What each site with bookings on ``day`` is sent: its bookings still to check in."""
    rows = session.execute(select(
        Booking.site_id, Booking.code, Booking.service, Booking.slot_start, Booking.person
    ).where(Booking.day == day, Booking.status == BookingStatus.BOOKED).order_by(
        Booking.site_id, Booking.slot_start, Booking.code)).all()
    per_site: dict[str, list[mm.Booking]] = {}
    for site_id, code, service, start, person in rows:
        per_site.setdefault(site_id, []).append(
            mm.Booking(code, service, start, person[:mm.PERSON_HASH_HEX]))
    return {site: bookings_args(day, entries) for site, entries in per_site.items()}


def bookings_args(day: str, entries: list[mm.Booking]) -> mm.BookingsArgs:
    """The ``cmd/bookings`` args of a site's day; the version names the day and content."""
    digest = hashlib.sha256(msgspec.json.encode(entries)).hexdigest()[:12]
    return mm.BookingsArgs(version=f"bk-{day.replace('-', '')}-{digest}", day=day,
                           bookings=entries)


def site_actor(site_id: str) -> Actor:
    """A site as the audit log names it when its kiosk or windows act."""
    return Actor(name=site_id, source="edge", role="site")


def record_check_in(session: Session, site_id: str, code: str, ticket: str,
                    at: dt.datetime) -> None:
    """A site's ``booking.checked_in``: the booking is checked in with its ticket (and
    audited, once: an event delivered again changes nothing)."""
    row = session.get(Booking, code)
    if row is None or row.site_id != site_id:
        log.warning("booking.check_in_unknown", site=site_id, code=code)
        return
    if row.status is not BookingStatus.CHECKED_IN:
        row.status, row.ticket, row.checked_in_at = BookingStatus.CHECKED_IN, ticket, at
        record(session, site_actor(site_id), AuditAction.BOOKING_CHECK_IN, f"booking:{code}",
               {"site": site_id, "ticket": ticket, "day": row.day,
                "slot": f"{row.slot_start}-{row.slot_end}"}, now=at)


def record_no_show(session: Session, site_id: str, ticket: str, at: dt.datetime) -> None:
    """A site's ``ticket.no_show`` (not requeued) of a checked-in booking's ticket: an
    audit entry for the booking. Other tickets are no bookings' business."""
    row = session.scalars(select(Booking).where(
        Booking.site_id == site_id, Booking.day == business_date(at).isoformat(),
        Booking.ticket == ticket, Booking.status == BookingStatus.CHECKED_IN)).first()
    if row is not None:
        record(session, site_actor(site_id), AuditAction.BOOKING_NO_SHOW,
               f"booking:{row.code}", {"site": site_id, "ticket": ticket, "day": row.day},
               now=at)


__all__ = ["FIGURES", "BookingView", "Bookings", "UnknownBooking", "bookings_args",
           "check_id_number", "documents", "parse_slot", "person_hash", "record_check_in",
           "record_no_show", "site_actor", "slot_moment"]

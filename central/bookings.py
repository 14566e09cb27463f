"""Bookings (预约) a booking platform pushes, the rules they keep, what each site is sent.

::

    bookings = Bookings(sessions, config)
    view = bookings.book("zs-city", "shebao", "2026-12-08", "09:00-09:30",
                         "44200019900101001X", reference="yss-123", by="yss", now=now)
    bookings.cancel(view.code, by="yss", now=now)
    bookings.of_site("zs-city", "2026-12-08", now)      # with derived no-shows
    bookings.counts("2026-12-08", now)                   # booked / checked in / no-show
    documents(session, "2026-12-08")                     # {site: cmd/bookings args}

The rules (:class:`central.config.CentralConfig`, ``booking_*``): how many days
ahead, the cancel deadline before the slot, the quota per site, service and slot,
one booking per person and day. The person is the HMAC-SHA256 of the ID number
with the central's salt: the number is checked (GB 11643 check digit) and dropped.

A site holds its bookings of the day (``cmd/bookings``, pushed by
:mod:`central.pushes` like stops and calendars); a check-in at its kiosk comes back
as a ``booking.checked_in`` event (:func:`record_check_in`). A booking still
``booked`` once its day is over is a no-show: derived when read, nothing runs at
midnight.
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
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralConfig
from central.errors import Conflict, InvalidRequest, NotFound, Unavailable, UnknownSite
from central.models import Booking, BookingStatus, Service, Site
from central.stats import business_date
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.id_card import booking_person_hash

log = structlog.get_logger(__name__)

_SLOT_RE: Final = re.compile(r"^([0-2][0-9]):([0-5][0-9])-([0-2][0-9]):([0-5][0-9])\Z")
_ID_RE: Final = re.compile(r"^[0-9]{17}[0-9X]\Z")
_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK: Final = "10X98765432"
BUSINESS_TZ: Final = dt.timezone(dt.timedelta(hours=8))


class UnknownBooking(NotFound, KeyError):
    what = "booking"


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
             reference: str | None, by: str | None, now: dt.datetime) -> BookingView:
        """A booking under the rules: 404 unknown site or service, 422 a bad day or slot
        or ID number, 409 a full slot or a second booking of the person that day."""
        person = person_hash(self._salt(), check_id_number(id_number))
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
        with self.sessions.begin() as session:
            site = session.get(Site, site_id)
            if site is None or site.retired_at is not None:
                raise UnknownSite(site_id)
            services = set(session.scalars(select(Service.code).where(
                Service.site_id == site_id)))
            if services and service not in services:
                raise InvalidRequest(f"service: {site_id} has no service {service!r}")
            alive = Booking.status != BookingStatus.CANCELLED
            taken = session.scalar(select(func.count()).select_from(Booking).where(
                Booking.site_id == site_id, Booking.service == service, Booking.day == day,
                Booking.slot_start == start, alive))
            if (taken or 0) >= self.config.booking_slot_quota:
                raise Conflict(f"slot full: {site_id} {service} {day} {start} has "
                               f"{self.config.booking_slot_quota} bookings")
            if (session.scalar(select(func.count()).select_from(Booking).where(
                    Booking.site_id == site_id, Booking.day == day, alive)) or 0
                    ) >= mm.MAX_BOOKINGS_PER_DAY:
                raise Conflict(f"{site_id} has {mm.MAX_BOOKINGS_PER_DAY} bookings on {day}, "
                               "what one site takes in a day")
            if self.config.booking_one_per_day and session.scalar(select(Booking.code).where(
                    Booking.person == person, Booking.day == day, alive).limit(1)):
                raise Conflict(f"this person has a booking on {day} already (one a day)")
            code = self._new_code(session, date)
            row = Booking(code=code, site_id=site_id, service=service, day=day,
                          slot_start=start, slot_end=end, person=person, reference=reference,
                          status=BookingStatus.BOOKED, created_at=now, created_by=by)
            session.add(row)
            view = BookingView.of(row, today)
        log.info("booking.created", code=code, site=site_id, service=service, day=day,
                 slot=view.slot, by=by)
        return view

    @staticmethod
    def _new_code(session: Session, date: dt.date) -> str:
        for _ in range(20):
            code = f"{date:%m%d}{secrets.randbelow(10**6):06d}"
            if session.get(Booking, code) is None:
                return code
        raise Unavailable(f"no free booking code left for {date:%m-%d}")

    def cancel(self, code: str, *, by: str | None, now: dt.datetime) -> BookingView:
        """Cancel a booking before the deadline (409 after it, or once checked in);
        cancelling a cancelled booking changes nothing."""
        with self.sessions.begin() as session:
            row = session.get(Booking, code)
            if row is None:
                raise UnknownBooking(code)
            if row.status is BookingStatus.CHECKED_IN:
                raise Conflict(f"booking {code} is checked in (ticket {row.ticket})")
            if row.status is BookingStatus.BOOKED:
                deadline = (slot_moment(row.day, row.slot_start)
                            - dt.timedelta(seconds=self.config.booking_cancel_before_s))
                if now > deadline:
                    raise Conflict(f"booking {code}: cancelling closed at "
                                   f"{deadline.astimezone(BUSINESS_TZ):%Y-%m-%d %H:%M}")
                row.status, row.cancelled_at = BookingStatus.CANCELLED, now
                log.info("booking.cancelled", code=code, site=row.site_id, by=by)
            return BookingView.of(row, business_date(now))

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
            figures = out.setdefault(site, {"site": site, "day": day, "booked": 0,
                                            "checked_in": 0, "no_show": 0, "waiting": 0,
                                            "cancelled": 0})
            if status is BookingStatus.CANCELLED:
                figures["cancelled"] += count
                continue
            figures["booked"] += count
            if status is BookingStatus.CHECKED_IN:
                figures["checked_in"] += count
            else:
                figures["no_show" if past else "waiting"] += count
        return [out[site] for site in sorted(out)]


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


def record_check_in(session: Session, site_id: str, code: str, ticket: str,
                    at: dt.datetime) -> None:
    """A site's ``booking.checked_in``: the booking is checked in with its ticket."""
    row = session.get(Booking, code)
    if row is None or row.site_id != site_id:
        log.warning("booking.check_in_unknown", site=site_id, code=code)
        return
    if row.status is not BookingStatus.CHECKED_IN:
        row.status, row.ticket, row.checked_in_at = BookingStatus.CHECKED_IN, ticket, at


__all__ = ["BookingView", "Bookings", "UnknownBooking", "bookings_args", "check_id_number",
           "documents", "parse_slot", "person_hash", "record_check_in", "slot_moment"]

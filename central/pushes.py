"""What the central pushes to sites, and keeps pushing until each holds it: emergency
stops of ticket issuing (one site, a town, the whole city), the city calendar, and
each site's bookings (预约) of the day (:mod:`central.bookings`).

::

    pushes = Pushes(sessions)
    stop, sites = pushes.stop("town", "三乡镇", "台风红色预警", by="ops-li", now=now)
    pushes.lift(stop.id, by="ops-li", now=now)
    pushes.set_calendar(["2026-10-01..2026-10-08"], ["2026-09-27"], [], by="admin", now=now)
    pushes.pending(now)            # [(site id, command args)] each online site lacks

A site reports what it holds in its ``state`` (``stop``, ``calendar``,
``bookings``); a site that does not hold what the central decided is sent it again
(``cmd/issuing``, ``cmd/calendar``, ``cmd/bookings``), at most once a
:data:`RESEND_S` per kind, so a site that was
offline when a city-wide stop was decided stops as soon as it is back, and one
whose Pi was replaced gets the city calendar again. A stop is decided for the
sites it covers at that moment and for any that come later while it lasts; the
latest active stop covering a site is the one it shows. Tickets issued before a
stop are served: only issuing stops.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.bookings import bookings_args, documents
from central.errors import InvalidRequest, NotFound, UnknownSite
from central.models import CityCalendar, Command, IssuingStop, Site, StopScope
from central.stats import business_date
from fastpath.calendar import Calendar, Problems, parse_dates, parse_special, with_city_days
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.gb2312 import display_text_problem

log = structlog.get_logger(__name__)

RESEND_S: Final = 60
"""A site that still lacks what it was sent gets it again after this long."""
PUSH_TTL_S: Final = 3600
"""A push waits this long in the broker for a site that is offline (then: sent again
when the site is back, from its state)."""


PUSHED_COMMANDS: Final = {"issuing": "/api/v1/issuing/stops", "calendar": "/api/v1/calendar",
                          "bookings": "/api/v1/bookings"}
"""The commands only this module sends (a site given one by hand would be sent back what
the central decided), and where people decide them."""


class UnknownStop(NotFound, KeyError):
    what = "issuing stop"


@dataclass(frozen=True, slots=True)
class StopView:
    id: str
    scope: str
    target: str
    reason: str
    created_at: str
    created_by: str | None
    lifted_at: str | None
    lifted_by: str | None

    @classmethod
    def of(cls, stop: IssuingStop) -> StopView:
        return cls(stop.id, stop.scope.value, stop.target, stop.reason,
                   stop.created_at.isoformat(), stop.created_by,
                   None if stop.lifted_at is None else stop.lifted_at.isoformat(),
                   stop.lifted_by)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class StopStatus(enum.StrEnum):
    """Where one site stands with a stop, by the state it last reported."""

    APPLIED = "applied"  # the site reports this stop in force: it issues no tickets
    LIFTED = "lifted"  # the stop is lifted and the site no longer reports it
    WAITING = "waiting"  # online, not reporting it yet (sent; the next state says)
    OFFLINE = "offline"  # gets it from the broker, or from its state, when back
    OLDER_EDGE = "older_edge"  # its software predates stops: it cannot apply one
    SUPERSEDED = "superseded"  # a later stop covers the site too: that one is sent


@dataclass(frozen=True, slots=True)
class StopSite:
    site_id: str
    name: str
    town: str
    online: bool
    status: StopStatus

    def to_json(self) -> dict[str, Any]:
        return {"site_id": self.site_id, "name": self.name, "town": self.town,
                "online": self.online, "status": self.status.value}


def _stop_status(stop_id: str, lifted: bool, online: bool,
                 state: dict[str, Any] | None) -> StopStatus:
    if state is not None and "stop" not in state:
        return StopStatus.OLDER_EDGE
    reports = (state or {}).get("stop") == stop_id
    if reports != lifted:  # in force and reported, or lifted and no longer reported
        return StopStatus.LIFTED if lifted else StopStatus.APPLIED
    return StopStatus.WAITING if online else StopStatus.OFFLINE


def _active_stops(session: Session) -> list[IssuingStop]:
    """The stops not lifted, oldest first."""
    return list(session.scalars(select(IssuingStop).where(
        IssuingStop.lifted_at.is_(None)).order_by(IssuingStop.created_at)))


def _in_force(active: list[IssuingStop], site_id: str, town: str) -> IssuingStop | None:
    """The stop a site is sent: the latest active one that covers it."""
    return next((s for s in reversed(active) if covers(s, site_id, town)), None)


def stop_in_force(session: Session, site_id: str, town: str) -> IssuingStop | None:
    """The stop in force for a site now (what it is sent), or None."""
    return _in_force(_active_stops(session), site_id, town)


def with_city_calendar(session: Session, calendar: Calendar) -> Calendar:
    """``calendar`` with the latest city calendar's dated days over it, as a site that
    holds it reads them (its version was checked when decided)."""
    latest = _latest_calendar(session)
    if latest is None:
        return calendar
    days = {"holidays": latest.holidays, "workdays": latest.workdays,
            "special": latest.special}
    return with_city_days(calendar, days, "", Problems())


def covers(stop: IssuingStop, site_id: str, town: str) -> bool:
    return (stop.scope is StopScope.CITY
            or (stop.scope is StopScope.TOWN and stop.target == town)
            or (stop.scope is StopScope.SITE and stop.target == site_id))


def check_reason(reason: str) -> str:
    """A stop's reason: shown on the hall screens (GB2312), the kiosks and the pages."""
    reason = reason.strip()
    if not 1 <= len(reason) <= 64:
        raise InvalidRequest("reason: 1-64 characters")
    problem = display_text_problem(reason)
    if problem is not None or any(not c.isprintable() for c in reason):
        raise InvalidRequest(f"reason: the hall screens cannot show it: {problem}")
    return reason


def check_calendar(holidays: list[str], workdays: list[str], special: list[str]) -> None:
    """The dated days as a site would read them (:class:`InvalidRequest` with every problem)."""
    problems = Problems()
    for name, values in (("holidays", holidays), ("workdays", workdays), ("special", special)):
        if len(values) > mm.MAX_CALENDAR_ENTRIES:
            problems.add(name, f"at most {mm.MAX_CALENDAR_ENTRIES} entries")
    both = (parse_dates(holidays, "holidays", problems)
            & parse_dates(workdays, "workdays", problems))
    problems.items += [f"workdays: {d} is also a holiday" for d in sorted(both)]
    parse_special(special, "special", problems, 0)
    if problems.items:
        raise InvalidRequest("; ".join(problems.items))


class Pushes:
    """The stops and calendars people decide, and what each site still lacks."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    # -- emergency stops -----------------------------------------------------

    def stop(self, scope: str, target: str, reason: str, *, by: str | None,
             now: datetime) -> tuple[StopView, list[str]]:
        """Decide a stop; the sites it covers now (to push to at once)."""
        try:
            kind = StopScope(scope)
        except ValueError:
            raise InvalidRequest("scope: site, town or city") from None
        reason = check_reason(reason)
        target = "" if kind is StopScope.CITY else target.strip()
        with self.sessions.begin() as session:
            sites = _sites(session)
            if kind is StopScope.SITE and target not in sites:
                raise UnknownSite(target)
            if kind is StopScope.TOWN and target not in {town for town, _ in sites.values()}:
                raise InvalidRequest(f"target: no site is in the town {target!r}")
            stop = IssuingStop(id=f"stop-{now:%Y%m%d}-{secrets.token_hex(4)}", scope=kind,
                               target=target, reason=reason, created_at=now, created_by=by)
            session.add(stop)
            covered = sorted(s for s, (town, _) in sites.items() if covers(stop, s, town))
            view = StopView.of(stop)
        log.info("issuing.stop_decided", stop=view.id, scope=scope, target=target, by=by,
                 sites=len(covered))
        return view, covered

    def lift(self, stop_id: str, *, by: str | None, now: datetime) -> tuple[StopView, list[str]]:
        """Lift a stop; the sites it covered (to push to at once)."""
        with self.sessions.begin() as session:
            stop = session.get(IssuingStop, stop_id)
            if stop is None:
                raise UnknownStop(stop_id)
            if stop.lifted_at is None:
                stop.lifted_at, stop.lifted_by = now, by
            covered = sorted(s for s, (town, _) in _sites(session).items()
                             if covers(stop, s, town))
            view = StopView.of(stop)
        log.info("issuing.stop_lifted", stop=stop_id, by=by, sites=len(covered))
        return view, covered

    def stops(self, *, active: bool) -> list[StopView]:
        with self.sessions() as session:
            query = select(IssuingStop).order_by(IssuingStop.created_at.desc())
            if active:
                query = query.where(IssuingStop.lifted_at.is_(None))
            return [StopView.of(s) for s in session.scalars(query.limit(500))]

    def stop_sites(self, stop_id: str) -> list[StopSite]:
        """Each site in service the stop covers, and where it stands with it by the
        state the site last reported (what a bulk stop's per-site results are)."""
        return self.standings([stop_id])[stop_id]

    def standings(self, stop_ids: list[str]) -> dict[str, list[StopSite]]:
        """:meth:`stop_sites` of several stops, from one read of the sites."""
        with self.sessions() as session:
            stops = {s.id: s for s in session.scalars(
                select(IssuingStop).where(IssuingStop.id.in_(stop_ids)))}
            missing = [i for i in stop_ids if i not in stops]
            if missing:
                raise UnknownStop(missing[0])
            rows = session.execute(select(Site.id, Site.name, Site.town, Site.online,
                                          Site.state).where(Site.retired_at.is_(None))
                                   .order_by(Site.town, Site.id)).all()  # fmt: skip
            active = _active_stops(session)
        out: dict[str, list[StopSite]] = {stop_id: [] for stop_id in stop_ids}
        for site_id, name, town, online, state in rows:
            in_force = _in_force(active, site_id, town)
            for stop_id, stop in stops.items():
                if not covers(stop, site_id, town):
                    continue
                lifted = stop.lifted_at is not None
                if not lifted and in_force is not None and in_force.id != stop_id:
                    status = StopStatus.SUPERSEDED
                else:
                    status = _stop_status(stop_id, lifted, online, state)
                out[stop_id].append(StopSite(site_id, name, town, online, status))
        return out

    # -- the city calendar ---------------------------------------------------

    def set_calendar(self, holidays: list[str], workdays: list[str], special: list[str], *,
                     by: str | None, now: datetime) -> str:
        """A new version of the city calendar (pushed to every site); its version."""
        check_calendar(holidays, workdays, special)
        version = f"cal-{now:%Y%m%d%H%M%S}-{secrets.token_hex(2)}"
        with self.sessions.begin() as session:
            session.add(CityCalendar(version=version, holidays=holidays, workdays=workdays,
                                     special=special, created_at=now, created_by=by))
        log.info("calendar.decided", version=version, by=by, holidays=len(holidays),
                 workdays=len(workdays), special=len(special))
        return version

    def calendar(self) -> dict[str, Any] | None:
        with self.sessions() as session:
            latest = _latest_calendar(session)
            if latest is None:
                return None
            return {"version": latest.version, "holidays": latest.holidays,
                    "workdays": latest.workdays, "special": latest.special,
                    "created_at": latest.created_at.isoformat(),
                    "created_by": latest.created_by}

    # -- what to send --------------------------------------------------------

    def pending(self, now: datetime, *, sites: Iterable[str] | None = None,
                online_only: bool = True) -> list[tuple[str, mm.CommandArgs]]:
        """The pushes each site lacks by its last state, not sent in the last
        :data:`RESEND_S`; ``sites``: only those (default: all); ``online_only``: leave
        out the sites that are offline (their state is read when they are back)."""
        wanted = set(sites) if sites is not None else None
        with self.sessions() as session:
            rows = session.execute(select(Site.id, Site.town, Site.online, Site.state).where(
                Site.retired_at.is_(None))).all()
            active = _active_stops(session)
            calendar = _latest_calendar(session)
            today = business_date(now).isoformat()
            bookings = documents(session, today)
            recent = {(c.site_id, c.name, _key(c.args)) for c in session.scalars(
                select(Command).where(Command.issued_at > now - timedelta(seconds=RESEND_S),
                                      Command.name.in_(tuple(PUSHED_COMMANDS))))}
        out: list[tuple[str, mm.CommandArgs]] = []
        for site_id, town, online, state in rows:
            if wanted is not None and site_id not in wanted:
                continue
            if online_only and not online:
                continue
            if state is not None and "stop" not in state:
                continue  # an edge older than the pushes: it would refuse them
            reported = state or {}
            stop = _in_force(active, site_id, town)
            args: list[mm.CommandArgs] = []
            if stop is not None and reported.get("stop") != stop.id:
                args.append(mm.IssuingArgs(stop=stop.id, stopped=True, reason=stop.reason))
            elif stop is None and reported.get("stop"):
                args.append(mm.IssuingArgs(stop=str(reported["stop"]), stopped=False,
                                           reason=None))
            if calendar is not None and reported.get("calendar") != calendar.version:
                args.append(mm.CalendarArgs(version=calendar.version,
                                            holidays=list(calendar.holidays),
                                            workdays=list(calendar.workdays),
                                            special=list(calendar.special)))
            if state is None or "bookings" in state:  # an older edge would refuse them
                held = reported.get("bookings")
                day_bookings = bookings.get(site_id)
                if day_bookings is None and isinstance(held, str) and held.startswith(
                        f"bk-{today.replace('-', '')}-"):
                    day_bookings = bookings_args(today, [])  # the last one cancelled
                if day_bookings is not None and held != day_bookings.version:
                    args.append(day_bookings)
            for one in args:
                name = _COMMAND_OF[type(one)]
                if (site_id, name, _key(msgspec.to_builtins(one))) not in recent:
                    out.append((site_id, one))
        return out


_COMMAND_OF: Final[dict[type, str]] = {mm.IssuingArgs: "issuing", mm.CalendarArgs: "calendar",
                                       mm.BookingsArgs: "bookings"}


def _key(args: dict[str, Any]) -> str:
    """What makes two pushes the same: the stop and whether it is lifted, the version."""
    return f"{args.get('stop', '')}|{args.get('stopped', '')}|{args.get('version', '')}"


def _sites(session: Session) -> dict[str, tuple[str, bool]]:
    """The sites in service (a retired one is sent nothing)."""
    return {site_id: (town, online) for site_id, town, online in session.execute(
        select(Site.id, Site.town, Site.online).where(Site.retired_at.is_(None)))}


def _latest_calendar(session: Session) -> CityCalendar | None:
    return session.scalars(select(CityCalendar).order_by(
        CityCalendar.created_at.desc()).limit(1)).first()


__all__ = ["PUSHED_COMMANDS", "PUSH_TTL_S", "RESEND_S", "Pushes", "StopView", "UnknownStop",
           "check_calendar", "check_reason", "covers", "stop_in_force", "with_city_calendar"]

"""The read model: every read of the central's state, for the JSON API and the pages alike.

::

    read = ReadModel(sessions, telemetry_sink)
    read.site_detail("zs-sanxiang-01", now)         # SiteDetail (UnknownSite: 404)
    read.alarms(active=True, now=now)                # [AlarmView], worst first
    read.statistics("town", first, last)             # [stats.StatRow] (InvalidRequest: 422)

Each method opens its own session, reads, and returns the typed records of
:mod:`central.views` (no ORM object escapes except through :class:`SiteState`,
which is the rows themselves). Refusals are :class:`central.errors.RequestError`
subclasses carrying their HTTP status, so :mod:`central.api` and
:mod:`central.web` call these methods and render, nothing else: neither face
holds SQL. Writes go elsewhere: the ingest service (commands, alarm
acknowledgements), :mod:`central.registry`, :class:`central.auth.TokenStore`.

**Scope**: ``read.scoped(towns)`` is the same read model for an account that
covers some towns only (a town manager): lists and counts hold those towns'
sites only, and a site (or its alarm, command, statistics) outside them is
refused with :class:`central.errors.OutOfScope` (403). Routes and pages read
through ``central.read_as(principal)``; only the process itself (the live hub,
the notifier) reads unscoped. ``tests/central/test_scope.py`` holds every public
method to this.

To add a screen or an endpoint: a record in :mod:`central.views`, a method
here (scoped: filter with :meth:`ReadModel._in_scope`, check one site with
:meth:`ReadModel._site`), and a test that reads it through the API
(``tests/central/test_api.py``) and an entry in ``tests/central/test_scope.py``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import msgspec
import structlog
from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.orm import Session, sessionmaker

from central import stats
from central.errors import (
    Forbidden,
    InvalidRequest,
    OutOfScope,
    UnknownAlarm,
    UnknownCommand,
    UnknownSite,
)
from central.inventory import InventorySite
from central.models import (
    Alarm,
    AuditEntry,
    BulkCommand,
    Command,
    CommandStatus,
    Device,
    Diagnostics,
    EventRecord,
    IngestReject,
    SequenceGap,
    Service,
    Severity,
    Site,
    SiteDevice,
    StaffingAdvisory,
    StaffMember,
    TicketLink,
    Window,
    config_drift,
)
from central.progress import LinkInfo, Outcome, PageState
from central.rating_reads import RatingReads
from central.ratings import revoked_ratings
from central.registry_csv import write_sheet
from central.releases import software_drift
from central.sitespec import SiteSpec, load_specs
from central.telemetry import (
    QUEUE_METRICS,
    SITE_METRICS,
    EmbeddedTelemetrySink,
    TelemetrySink,
)
from central.views import (
    BULK_STATES,
    SEVERITY_RANK,
    AlarmBoard,
    AlarmView,
    AuditView,
    BulkSiteView,
    BulkState,
    BulkView,
    CommandView,
    DiagnosticsView,
    EventView,
    FleetCounts,
    FleetTile,
    Health,
    QueueGauge,
    SiteDetail,
    SiteDeviceView,
    SiteDrift,
    SiteGauge,
    SiteGauges,
    SiteReject,
    SiteState,
    SiteSummary,
    TelemetrySeries,
    iso,
    site_health,
    state_of,
)
from onedoor import software_token

log = structlog.get_logger(__name__)

_OUTCOMES: Final[dict[str, PageState]] = {
    "ticket.called": "called", "ticket.recalled": "called", "ticket.serving": "serving",
    "ticket.done": "done", "ticket.no_show": "no_show", "ticket.cancelled": "cancelled",
    "ticket.transferred": "waiting",
}
"""A ticket's events that change what its progress page says, and to what."""

MAX_STAT_DAYS: Final = 92
"""Longest date range of one statistics query by day (a quarter)."""
MAX_PERIOD_DAYS: Final = 366
"""Longest date range summed by month or year (a year)."""

STAT_EVENT_TYPES: Final = (
    "ticket.issued",
    "ticket.called",
    "ticket.done",
    "ticket.no_show",
    "ticket.transferred",
    "ticket.cancelled",
    "rating.given",
    "help.requested",
    "help.acknowledged",
    "help.resolved",
    "day.reset",
    "window.signed_in",
    "window.signed_out",
    "rating.missed",
)
STREAM_ROWS: Final = 5000

RECENTLY_CLEARED: Final = 50
"""Cleared alarms the alarms page lists under the active ones."""

IN_SERVICE: Final = Site.retired_at.is_(None)
"""Sites of the fleet: a retired site leaves the fleet page, lists, inventory and /metrics
(its history stays: events, alarms, statistics, its own page)."""


def _severity_order() -> Any:
    return case({s.value: r for s, r in SEVERITY_RANK.items()}, value=Alarm.severity, else_=0)


def active_alarm_counts(session: Session) -> dict[str, tuple[int, Severity]]:
    """Per site: number of active alarms and the worst severity among them."""
    rows = session.execute(
        select(Alarm.site_id, Alarm.severity, func.count())
        .where(Alarm.cleared_at.is_(None))
        .group_by(Alarm.site_id, Alarm.severity)
    ).all()
    found: dict[str, tuple[int, Severity]] = {}
    for site_id, severity, count in rows:
        total, worst = found.get(site_id, (0, severity))
        if SEVERITY_RANK[severity] > SEVERITY_RANK[worst]:
            worst = severity
        found[site_id] = (total + count, worst)
    return found


def day_bounds_ms(first: dt.date, last: dt.date) -> tuple[int, int]:
    """Unix ms of the start of ``first`` and of the day after ``last``, business time."""
    start = dt.datetime.combine(first, dt.time(), stats.BUSINESS_TZ)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), stats.BUSINESS_TZ)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


class ReadModel:
    """Reads of the central database (and of the telemetry history) as typed records,
    of the whole city or (:meth:`scoped`) of some towns only."""

    def __init__(self, sessions: sessionmaker[Session], telemetry: TelemetrySink | None = None,
                 towns: frozenset[str] | None = None) -> None:  # fmt: skip
        self.sessions = sessions
        self.telemetry: TelemetrySink = telemetry or EmbeddedTelemetrySink(sessions)
        self.ratings = RatingReads(sessions, towns)
        """好差评 records, 差评 cases, the export (:mod:`central.rating_reads`), of the
        same towns."""
        self.scope = towns
        """``None``: the whole city; else the towns this read model shows."""

    def scoped(self, towns: frozenset[str] | None) -> ReadModel:
        """This read model limited to ``towns`` (``None``: as it is)."""
        if towns is None:
            return self
        if self.scope is not None:
            towns = towns & self.scope
        return ReadModel(self.sessions, self.telemetry, towns)

    def _in_scope(self) -> ColumnElement[bool]:
        """A condition on :class:`Site` rows: in this read model's towns."""
        return true() if self.scope is None else Site.town.in_(sorted(self.scope))

    def _scope_sites(self) -> Any:
        """The ids of the sites in scope (a subquery), for tables keyed by ``site_id``."""
        return select(Site.id).where(self._in_scope())

    def _covers(self, town: str) -> bool:
        return self.scope is None or town in self.scope

    def _require_city(self, what: str) -> None:
        if self.scope is not None:
            raise Forbidden(f"只有全市范围的账号可以{what} / only a city-wide account may do this")

    # -- the citizens' progress pages (central.progress) -------------------------

    def ticket_link(self, token_sha256: str) -> LinkInfo | None:
        """The ticket a progress token opens (by the token's SHA-256), or None."""
        with self.sessions() as session:
            row = session.execute(
                select(TicketLink, Site.name).join(Site, Site.id == TicketLink.site_id)
                .where(TicketLink.token_sha256 == token_sha256)
            ).first()
        if row is None:
            return None
        link, site_name = row
        return LinkInfo(link.token_sha256, link.site_id, site_name, link.ticket, link.service,
                        link.issued_seq, link.issued_ms, link.wait_p50_s, link.wait_p90_s,
                        link.expires_at)

    def ticket_outcome(self, link: LinkInfo) -> Outcome | None:
        """What a ticket came to by its events (after it was issued): None if nothing yet.

        For a page whose ticket the site's ``progress`` no longer holds; reads the site's
        events after the issue along the (site, seq) index, the latest of the ticket's.
        """
        with self.sessions() as session:
            row = session.execute(
                select(EventRecord.type, EventRecord.body)
                .where(EventRecord.site_id == link.site_id,
                       EventRecord.seq > link.issued_seq,
                       EventRecord.type.in_(_OUTCOMES),
                       EventRecord.body["ticket"].as_string() == link.ticket)
                .order_by(EventRecord.seq.desc()).limit(1)
            ).first()
        if row is None:
            return None
        kind, body = row
        if kind == "ticket.no_show" and body.get("requeued"):
            return Outcome("requeued", None)
        state = _OUTCOMES[kind]
        return Outcome(state, body.get("window") if state != "cancelled" else None)

    def database_answers(self) -> bool:
        """Whether the database answers a trivial query (``/healthz``); failures are logged."""
        try:
            with self.sessions() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "not healthy"; logged, not hidden
            log.warning("healthz.db_failed", error=str(exc)[:300])
            return False
        return True

    # ------------------------------------------------------------------ fleet

    def tile_states(self) -> dict[str, tuple[Health, int]]:
        """Health and active-alarm count per site: the live hub's poll (ids and flags only)."""
        with self.sessions() as session:
            alarms = active_alarm_counts(session)
            rows = session.execute(select(Site.id, Site.online, Site.last_seen_at.is_not(None))
                                   .where(IN_SERVICE, self._in_scope()))  # fmt: skip
            no_alarm = (0, None)
            states: dict[str, tuple[Health, int]] = {}
            for site_id, online, seen in rows:
                count, worst = alarms.get(site_id, no_alarm)
                states[site_id] = (site_health(online, seen, worst), count)
            return states

    def fleet_registry(self) -> dict[str, tuple[str, str]]:
        """Site id -> (name, town), ordered by town then id: what the fleet page groups by."""
        with self.sessions() as session:
            rows = session.execute(select(Site.id, Site.name, Site.town).where(self._in_scope())
                                   .order_by(Site.town, Site.id))  # fmt: skip
            return {site_id: (name, town) for site_id, name, town in rows}

    def drift_states(self) -> dict[str, SiteDrift]:
        """Every site in service whose software or config differs from what it should run
        (the live hub's poll, next to :meth:`tile_states`). The database keeps only the
        candidates, so a fleet in step costs an index-free scan and no Python per site."""
        expected_software = literal(software_token("")) + Site.expected_release
        software_differs = and_(Site.expected_release.is_not(None), or_(
            Site.software_version.is_(None), Site.software_version != expected_software))
        config_differs = and_(Site.expected_config_version.is_not(None), or_(
            Site.reported_config_version.is_(None),
            Site.reported_config_version != Site.expected_config_version))  # fmt: skip
        with self.sessions() as session:
            rows = session.execute(
                select(Site.id, Site.software_version, Site.expected_release,
                       Site.reported_config_version, Site.expected_config_version)
                .where(IN_SERVICE, self._in_scope(), or_(software_differs, config_differs))
            ).all()  # fmt: skip
        states: dict[str, SiteDrift] = {}
        for site_id, software, release, config, expected_config in rows:
            drift = SiteDrift(
                software, software_token(release) if release is not None else None,
                config, expected_config, software_drift(release, software),
                config_drift(expected_config, config))  # fmt: skip
            if drift.software_differs or drift.config_differs:
                states[site_id] = drift
        return states

    def fleet_tiles(self) -> list[FleetTile]:
        """Every site as a tile, ordered by town then id: two light queries, no ORM objects."""
        with self.sessions() as session:
            alarms = active_alarm_counts(session)
            rows = session.execute(
                select(Site.id, Site.name, Site.town, Site.online,
                       Site.last_seen_at.is_not(None)).where(IN_SERVICE, self._in_scope())
                .order_by(Site.town, Site.id)
            ).all()  # fmt: skip
        no_alarm = (0, None)
        tiles = []
        for site_id, name, town, online, seen in rows:
            count, worst = alarms.get(site_id, no_alarm)
            tiles.append(FleetTile(site_id, name, town, site_health(online, seen, worst), count))
        return tiles

    def site_summaries(
        self, *, town: str | None = None, query: str | None = None, health: str | None = None,
        retired: bool = False,
    ) -> list[SiteSummary]:
        """Every site in service (filtered; ``retired``: the retired ones instead), ordered by
        town then id. One query for sites, one for alarms."""
        statement = select(
            Site.id,
            Site.name,
            Site.town,
            Site.kind,
            Site.online,
            Site.last_seen_at,
            Site.expected_config_version,
            Site.reported_config_version,
        ).order_by(Site.town, Site.id)
        statement = statement.where(Site.retired_at.is_not(None) if retired else IN_SERVICE,
                                    self._in_scope())  # fmt: skip
        if town:
            statement = statement.where(Site.town == town)
        if query:
            pattern = f"%{query.strip()}%"
            statement = statement.where(
                or_(Site.id.like(pattern), Site.name.like(pattern), Site.town.like(pattern))
            )
        with self.sessions() as session:
            alarms = active_alarm_counts(session)
            rows = session.execute(statement).all()
        summaries = []
        for row in rows:
            count, worst = alarms.get(row.id, (0, None))
            summaries.append(
                SiteSummary(
                    id=row.id,
                    name=row.name,
                    town=row.town,
                    kind=row.kind.value,
                    online=row.online,
                    health=site_health(row.online, row.last_seen_at is not None, worst),
                    alarms=count,
                    last_seen_at=iso(row.last_seen_at),
                    expected_config_version=row.expected_config_version,
                    reported_config_version=row.reported_config_version,
                )
            )
        if health:
            summaries = [s for s in summaries if s.health == health]
        return summaries

    def towns(self) -> list[str]:
        with self.sessions() as session:
            return sorted(set(session.execute(select(Site.town)
                                              .where(IN_SERVICE, self._in_scope())).scalars()))

    def service_names(self) -> dict[str, str]:
        """Service code -> name across the registry (the statistics page's labels): where
        sites name a service differently, the name most sites use (then the first by text),
        the same answer whatever order the database returns rows in."""
        with self.sessions() as session:
            rows = session.execute(
                select(Service.code, Service.name, func.count())
                .where(Service.site_id.in_(self._scope_sites()))
                .group_by(Service.code, Service.name)
                .order_by(Service.code, func.count().desc(), Service.name)
            ).all()
        names: dict[str, str] = {}
        for code, name, _ in rows:
            names.setdefault(code, name)
        return names

    def sites(self) -> list[Site]:
        """The registry rows of the sites in service, by town then id."""
        with self.sessions() as session:
            return list(session.scalars(select(Site).where(IN_SERVICE, self._in_scope())
                                        .order_by(Site.town, Site.id)))  # fmt: skip

    # ------------------------------------------------------------------ one site

    def _site(self, session: Session, site_id: str) -> Site:
        """The site's row: :class:`UnknownSite` if none, :class:`OutOfScope` if not ours."""
        site = session.get(Site, site_id)
        if site is None:
            raise UnknownSite(site_id)
        if not self._covers(site.town):
            raise OutOfScope(f"site {site_id!r} ({site.town})")
        return site

    def require_town(self, town: str) -> None:
        """:class:`OutOfScope` unless ``town`` is one of this read model's."""
        if not self._covers(town):
            raise OutOfScope(f"town {town!r}")

    def require_site(self, site_id: str) -> None:
        """:class:`UnknownSite` unless the registry has ``site_id``."""
        with self.sessions() as session:
            self._site(session, site_id)

    def _site_state(self, session: Session, site_id: str) -> SiteState:
        site = self._site(session, site_id)

        def rows(model: Any, *conditions: Any, order: Sequence[Any]) -> list[Any]:
            statement = select(model).where(model.site_id == site_id, *conditions)
            return list(session.scalars(statement.order_by(*order)))

        return SiteState(
            site=site,
            services=rows(Service, order=[Service.code]),
            windows=rows(Window, order=[Window.number]),
            devices=rows(Device, order=[Device.device]),
            alarms=rows(Alarm, Alarm.cleared_at.is_(None),
                        order=[Alarm.raised_at.desc(), Alarm.id.desc()]),
            open_gaps=rows(SequenceGap, SequenceGap.filled_at.is_(None),
                           order=[SequenceGap.first_seq]),
            rejects=rows(IngestReject, order=[IngestReject.reason]),
            advice=session.scalars(select(StaffingAdvisory).where(
                StaffingAdvisory.site_id == site_id,
                StaffingAdvisory.cleared_at.is_(None))).first(),
        )  # fmt: skip

    def site_state(self, site_id: str) -> SiteState:
        """The rows of one site: registry and live state, services, windows, devices,
        active alarms, open gaps, reject counters."""
        with self.sessions() as session:
            return self._site_state(session, site_id)

    def site_detail(self, site_id: str, now: datetime) -> SiteDetail:
        return SiteDetail.of(self.site_state(site_id), now)

    def site_live(
        self, site_id: str, now: datetime, *, commands: int = 10
    ) -> tuple[SiteDetail, list[CommandView]]:
        """What the live part of the site page shows: the detail and the latest commands."""
        with self.sessions() as session:
            state = self._site_state(session, site_id)
            rows = self._command_rows(session, site_id, commands)
        detail = SiteDetail.of(state, now)
        return detail, [CommandView.of(c, now, site_online=detail.online) for c in rows]

    # ------------------------------------------------------------------ events, alarms

    def events(
        self,
        *,
        site_id: str | None = None,
        event_type: str | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[EventView]:
        """Committed events, newest first (by seq for one site, else by arrival)."""
        statement = select(EventRecord)
        if site_id:
            statement = statement.where(EventRecord.site_id == site_id)
        if event_type:
            statement = statement.where(EventRecord.type == event_type)
        if before_seq is not None:
            statement = statement.where(EventRecord.seq < before_seq)
        if self.scope is not None and not site_id:
            statement = statement.where(EventRecord.site_id.in_(self._scope_sites()))
        order = (EventRecord.seq.desc(),) if site_id else (EventRecord.id.desc(),)
        with self.sessions() as session:
            if site_id:
                self._site(session, site_id)
            rows = session.scalars(statement.order_by(*order).limit(limit)).all()
            return [EventView.of(r) for r in rows]

    def _alarm_rows(self, session: Session, *, active: bool, site_id: str | None,
                    limit: int) -> list[Alarm]:  # fmt: skip
        statement = select(Alarm)
        if active:
            statement = statement.where(Alarm.cleared_at.is_(None))
        if site_id:
            self._site(session, site_id)
            statement = statement.where(Alarm.site_id == site_id)
        elif self.scope is not None:
            statement = statement.where(Alarm.site_id.in_(self._scope_sites()))
        order = (_severity_order().desc(), Alarm.raised_at.desc())
        return list(session.scalars(statement.order_by(*order).limit(limit)))

    def alarms(
        self, *, now: datetime, active: bool = True, site_id: str | None = None, limit: int = 500
    ) -> list[AlarmView]:
        """Active (or all) alarms, worst severity first, then newest."""
        with self.sessions() as session:
            rows = self._alarm_rows(session, active=active, site_id=site_id, limit=limit)
            return [AlarmView.of(a, now) for a in rows]

    def alarm_board(self, now: datetime) -> AlarmBoard:
        """Active alarms (worst first) and the latest cleared ones, with site names."""
        with self.sessions() as session:
            active = self._alarm_rows(session, active=True, site_id=None, limit=500)
            latest = self._alarm_rows(session, active=False, site_id=None, limit=200)
            names = dict(session.execute(select(Site.id, Site.name)
                                         .where(self._in_scope())).all())  # fmt: skip
        cleared = [a for a in latest if a.cleared_at is not None][:RECENTLY_CLEARED]
        return AlarmBoard(
            active=[AlarmView.of(a, now) for a in active],
            recent=[AlarmView.of(a, now) for a in cleared],
            names=names,
        )

    def alarm(self, alarm_id: int, now: datetime) -> AlarmView:
        """One alarm (:class:`UnknownAlarm`, or :class:`OutOfScope` for another town's)."""
        with self.sessions() as session:
            alarm = session.get(Alarm, alarm_id)
            if alarm is None:
                raise UnknownAlarm(alarm_id)
            self._site(session, alarm.site_id)
            return AlarmView.of(alarm, now)

    # ------------------------------------------------------------------ commands

    @staticmethod
    def _command_rows(session: Session, site_id: str, limit: int) -> list[Command]:
        statement = (
            select(Command)
            .where(Command.site_id == site_id)
            .order_by(Command.issued_at.desc())
            .limit(limit)
        )
        return list(session.scalars(statement))

    def commands(self, site_id: str, now: datetime, *, limit: int = 50) -> list[CommandView]:
        """The latest commands to one site, newest first."""
        with self.sessions() as session:
            site = self._site(session, site_id)
            rows = self._command_rows(session, site_id, limit)
            return [CommandView.of(c, now, site_online=site.online) for c in rows]

    def command(self, command_id: uuid.UUID, now: datetime) -> CommandView:
        with self.sessions() as session:
            command = session.get(Command, command_id)
            if command is None:
                raise UnknownCommand(command_id)
            site = self._site(session, command.site_id)
            return CommandView.of(command, now, site_online=site.online)

    def command_targets(self, *, whole_city: bool = False, towns: Sequence[str] = (),
                        sites: Sequence[str] = ()) -> list[str]:  # fmt: skip
        """The sites in service a command to many goes to — given ``sites``, the sites of
        ``towns``, or ``whole_city`` (of this read model's towns, for a town's account) —
        by town then id. :class:`OutOfScope` for a site or town not covered,
        :class:`UnknownSite`, or :class:`InvalidRequest` (a retired site, a town with no
        site, nothing chosen)."""
        with self.sessions() as session:
            if sites:
                for site_id in sites:
                    if self._site(session, site_id).retired_at is not None:
                        raise InvalidRequest(f"site {site_id!r} is retired")
                return list(dict.fromkeys(sites))
            statement = (select(Site.id, Site.town).where(IN_SERVICE, self._in_scope())
                         .order_by(Site.town, Site.id))  # fmt: skip
            if towns:
                for town in towns:
                    self.require_town(town)
                statement = statement.where(Site.town.in_(list(towns)))
            elif not whole_city:
                raise InvalidRequest("choose sites, towns or the whole city")
            rows = session.execute(statement).all()
        if empty := sorted(set(towns) - {town for _, town in rows}):
            raise InvalidRequest(f"没有站点 / no site in service in {', '.join(empty)}")
        return [site_id for site_id, _ in rows]

    def _bulk_counts(self, session: Session, bulk: BulkCommand,
                     now: datetime) -> dict[str, int]:  # fmt: skip
        """Sites of ``bulk`` in scope per state, counted by the database (a province's
        20,000 commands are never loaded to count them)."""
        counts: dict[str, int] = dict.fromkeys(BULK_STATES, 0)
        past = Command.expires_at <= now
        for status, expired, number in session.execute(
            select(Command.status, past, func.count())
            .join(Site, Site.id == Command.site_id)
            .where(Command.bulk_id == bulk.id, self._in_scope())
            .group_by(Command.status, past)
        ):  # fmt: skip
            if status is CommandStatus.SENT:
                counts["expired" if expired else "pending"] += number
            else:
                counts[status.value] += number
        if bulk.refused:
            counts["refused"] = len(self._bulk_refused(session, bulk))
        return counts

    def _bulk_refused(self, session: Session, bulk: BulkCommand) -> list[BulkSiteView]:
        """The sites in scope ``bulk`` was not sent to, with why."""
        refused: list[BulkSiteView] = []
        site_ids = list(bulk.refused)
        for start in range(0, len(site_ids), 500):
            refused.extend(
                BulkSiteView(site_id=site_id, name=name, town=town, state="refused",
                             waiting_for_site=False, error=bulk.refused[site_id],
                             result_at=None, command_id=None)
                for site_id, name, town in session.execute(
                    select(Site.id, Site.name, Site.town)
                    .where(Site.id.in_(site_ids[start : start + 500]), self._in_scope()))
            )  # fmt: skip
        return refused

    def _bulk_rows(self, session: Session, bulk: BulkCommand, now: datetime,
                   state: BulkState | None, limit: int | None) -> list[BulkSiteView]:  # fmt: skip
        """A row per site in scope (of ``state`` only, when given), by town then id; the
        first ``limit`` of them (all without)."""
        rows: list[BulkSiteView] = []
        if state != "refused":
            statement = (
                select(Command.id, Command.site_id, Command.status, Command.expires_at,
                       Command.error, Command.result_at, Site.name, Site.town, Site.online)
                .join(Site, Site.id == Command.site_id)
                .where(Command.bulk_id == bulk.id, self._in_scope())
                .order_by(Site.town, Command.site_id)
            )  # fmt: skip
            if state == "pending":
                statement = statement.where(Command.status == CommandStatus.SENT,
                                            Command.expires_at > now)  # fmt: skip
            elif state == "expired":
                statement = statement.where(Command.status == CommandStatus.SENT,
                                            Command.expires_at <= now)  # fmt: skip
            elif state is not None:
                statement = statement.where(Command.status == CommandStatus(state))
            if limit is not None:
                statement = statement.limit(limit)
            for command_id, site_id, status, expires_at, error, result_at, name, town, online in (
                    session.execute(statement)):  # fmt: skip
                row_state = state_of(status, expires_at, now)
                rows.append(BulkSiteView(
                    site_id=site_id, name=name, town=town, state=row_state,
                    waiting_for_site=row_state == "pending" and not online, error=error,
                    result_at=iso(result_at), command_id=str(command_id)))  # fmt: skip
        if bulk.refused and state in (None, "refused"):
            rows.extend(self._bulk_refused(session, bulk))
            rows.sort(key=lambda r: (r.town, r.site_id))
        return rows if limit is None else rows[:limit]

    @staticmethod
    def _bulk_view(bulk: BulkCommand, counts: dict[str, int], rows: list[BulkSiteView],
                   state: BulkState | None = None) -> BulkView:  # fmt: skip
        sites = sum(counts.values())
        return BulkView(id=str(bulk.id), name=bulk.name, args=bulk.args, ttl_s=bulk.ttl_s,
                        target=bulk.target, issued_by=bulk.issued_by,
                        issued_at=iso(bulk.issued_at), sites=sites, counts=counts,
                        done=counts["pending"] == 0, state=state,
                        matching=sites if state is None else counts[state],
                        rows=rows)  # fmt: skip

    def bulk_commands(self, now: datetime, *, limit: int = 50) -> list[BulkView]:
        """The latest commands to many sites, newest first, with their counts (of the
        sites in scope; a town's account sees those that reached its towns)."""
        with self.sessions() as session:
            latest = select(BulkCommand).order_by(BulkCommand.issued_at.desc()).limit(limit)
            bulks = session.scalars(latest)
            views = []
            for bulk in bulks:
                counts = self._bulk_counts(session, bulk, now)
                if sum(counts.values()):
                    views.append(self._bulk_view(bulk, counts, []))
            return views

    def bulk_command(self, bulk_id: uuid.UUID, now: datetime, *, state: BulkState | None = None,
                     limit: int | None = None) -> BulkView:  # fmt: skip
        """One command to many sites: the counts per state and a row per site in scope —
        of ``state`` only when given, the first ``limit`` (by town, then id) when given."""
        if state is not None and state not in BULK_STATES:
            raise InvalidRequest(f"state: one of {', '.join(BULK_STATES)}")
        with self.sessions() as session:
            bulk = session.get(BulkCommand, bulk_id)
            if bulk is None:
                raise UnknownCommand(bulk_id)
            counts = self._bulk_counts(session, bulk, now)
            if not sum(counts.values()) and self.scope is not None:
                raise OutOfScope(f"command {bulk_id}")
            rows = self._bulk_rows(session, bulk, now, state, limit)
            return self._bulk_view(bulk, counts, rows, state)

    # ------------------------------------------------------------------ edge devices

    def site_devices(self, site_id: str) -> list[SiteDeviceView]:
        """The site's edge devices: the holder first, then waiting, then replaced ones."""
        order = {"holder": 0, "waiting": 1, "legacy": 2, "replaced": 3}
        with self.sessions() as session:
            site = self._site(session, site_id)
            rows = session.scalars(select(SiteDevice).where(SiteDevice.site_id == site_id))
            views = [SiteDeviceView.of(row, site.holder) for row in rows]
        return sorted(views, key=lambda v: (order[v.role], -(v.epoch or 0), v.device))

    def diagnostics(self, site_id: str, *, limit: int = 20) -> list[DiagnosticsView]:
        """The site's diagnostics answers, newest first."""
        with self.sessions() as session:
            self._site(session, site_id)
            rows = session.scalars(select(Diagnostics).where(Diagnostics.site_id == site_id)
                                   .order_by(Diagnostics.received_at.desc()).limit(limit))
            return [DiagnosticsView.of(row) for row in rows]

    def diagnostic(self, command_id: uuid.UUID) -> DiagnosticsView:
        """The answer to one diagnostics command; :class:`UnknownCommand` until it came."""
        with self.sessions() as session:
            row = session.get(Diagnostics, command_id)
            if row is None:
                raise UnknownCommand(command_id)
            self._site(session, row.site_id)  # OutOfScope for another town's site
            return DiagnosticsView.of(row)

    def commands_pending(self, now: datetime) -> int:
        """Commands sent, not answered and not expired."""
        with self.sessions() as session:
            return session.execute(
                select(func.count())
                .select_from(Command)
                .where(Command.status == CommandStatus.SENT, Command.expires_at > now,
                       *self._scoped_by(Command.site_id))
            ).scalar_one()

    # ------------------------------------------------------------------ monitoring

    def fleet_counts(self, now: datetime) -> FleetCounts:
        """Sites online, active alarms, ingest rejects, events, pending commands (/metrics)."""
        with self.sessions() as session:
            by_state = (select(Site.online, func.count()).where(IN_SERVICE, self._in_scope())
                        .group_by(Site.online))  # fmt: skip
            online = dict(session.execute(by_state).all())
            severities = dict(
                session.execute(
                    select(Alarm.severity, func.count())
                    .where(Alarm.cleared_at.is_(None), *self._scoped_by(Alarm.site_id))
                    .group_by(Alarm.severity)
                ).all()
            )
            rejects = session.execute(
                select(IngestReject.reason, func.sum(IngestReject.count))
                .where(*self._scoped_by(IngestReject.site_id))
                .group_by(IngestReject.reason)
            ).all()  # fmt: skip
            max_event = session.scalar(select(func.max(EventRecord.id))
                                       .where(*self._scoped_by(EventRecord.site_id)))  # fmt: skip
        return FleetCounts(
            sites_online=online.get(True, 0),
            sites_offline=online.get(False, 0),
            alarms_active={s.value: severities.get(s, 0) for s in Severity},
            rejects={reason: count or 0 for reason, count in rejects},
            events_stored=max_event or 0,
            commands_pending=self.commands_pending(now),
        )

    def site_gauges(self) -> SiteGauges:
        """Per site: registry labels, connection, seqs, drift, alarms; queues; rejects.

        Four light queries however large the fleet (no ORM objects).
        """
        with self.sessions() as session:
            alarms = active_alarm_counts(session)
            sites = session.execute(
                select(Site.id, Site.name, Site.town, Site.kind, Site.online, Site.last_seen_at,
                       Site.outbox_depth, Site.acked_seq, Site.max_seq,
                       Site.expected_config_version, Site.reported_config_version)
                .where(IN_SERVICE, self._in_scope()).order_by(Site.id)
            ).all()  # fmt: skip
            queues = session.execute(
                select(Service.site_id, Service.code, Service.waiting, Service.oldest_wait_s)
                .where(Service.site_id.in_(select(Site.id).where(IN_SERVICE, self._in_scope())))
                .order_by(Service.site_id, Service.code)
            ).all()  # fmt: skip
            rejects = session.execute(
                select(IngestReject.site_id, IngestReject.reason, IngestReject.count)
                .where(IngestReject.site_id != "", *self._scoped_by(IngestReject.site_id))
                .order_by(IngestReject.site_id, IngestReject.reason)
            ).all()  # fmt: skip
        return SiteGauges(
            sites=[
                SiteGauge(
                    id=row.id, name=row.name, town=row.town, kind=row.kind.value,
                    online=row.online, last_seen_at=row.last_seen_at,
                    outbox_depth=row.outbox_depth, acked_seq=row.acked_seq, max_seq=row.max_seq,
                    config_drift=config_drift(row.expected_config_version,
                                              row.reported_config_version),
                    alarms_active=alarms.get(row.id, (0, None))[0],
                )
                for row in sites
            ],
            queues=[QueueGauge(site_id=q.site_id, service=q.code, waiting=q.waiting,
                               oldest_wait_s=q.oldest_wait_s) for q in queues],
            rejects=[SiteReject(site_id=site_id, reason=reason, count=count)
                     for site_id, reason, count in rejects],
        )  # fmt: skip

    def _scoped_by(self, site_id: Any) -> tuple[Any, ...]:
        """Conditions limiting rows by their ``site_id`` column to the scope (none if city)."""
        return () if self.scope is None else (site_id.in_(self._scope_sites()),)

    # ------------------------------------------------------------------ statistics

    @staticmethod
    def _stat_facts(
        session: Session, first: dt.date, last: dt.date, *, site_ids: Sequence[str] | None = None
    ) -> stats.FoldResult:
        """The statistics facts of ``first`` .. ``last``, folded site by site.

        Reads one more day on each side: past ``last`` so that a ticket issued before
        midnight and finished after it is complete, before ``first`` so that a rating or a
        call in the period finds its ticket and the staff signed in;
        :func:`stats.aggregate` keeps the days asked for. Rows stream in (site, seq)
        order, so only one site's events are held at a time."""
        start_ms, end_ms = day_bounds_ms(first - dt.timedelta(days=1),
                                         last + dt.timedelta(days=1))  # fmt: skip
        statement = (
            # The body as JSON text: decoded straight into its struct, not through dicts.
            select(EventRecord.site_id, EventRecord.seq, EventRecord.ts_ms,
                   cast(EventRecord.body, Text).label("body"))
            .where(EventRecord.type.in_(STAT_EVENT_TYPES), EventRecord.ts_ms >= start_ms,
                   EventRecord.ts_ms < end_ms)
            .order_by(EventRecord.site_id, EventRecord.seq)
            .execution_options(yield_per=STREAM_ROWS)
        )  # fmt: skip
        if site_ids is not None:
            statement = statement.where(EventRecord.site_id.in_(list(site_ids)))
        result = stats.FoldResult()
        site: str | None = None
        records: list[stats.EventRecord] = []
        for row in session.execute(statement):
            if row.site_id != site:
                if site is not None:
                    stats.fold_site(site, records, result)
                site, records = row.site_id, []
            try:
                records.append(stats.to_stat_record(row.site_id, row.seq, row.ts_ms, row.body))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:  # a row was altered
                log.warning("stats.bad_event_row", site=row.site_id, seq=row.seq, error=str(exc))
        if site is not None:
            stats.fold_site(site, records, result)
        return result

    def statistics(
        self,
        scope: stats.Scope,
        first: dt.date,
        last: dt.date,
        *,
        site_id: str | None = None,
        town: str | None = None,
        service: str | None = None,
        period: stats.Period = "day",
        default_value: int = 0,
        default_in_rates: bool = False,
    ) -> list[stats.StatRow]:
        """Statistics rows (see ``docs/STATISTICS.md``) for ``first`` .. ``last``, per
        ``period``; ``default_value`` and ``default_in_rates`` are the 默认好评 rule."""
        if last < first:
            raise InvalidRequest("the end date is before the start date")
        limit = MAX_STAT_DAYS if period == "day" else MAX_PERIOD_DAYS
        if (last - first).days >= limit:
            raise InvalidRequest(f"at most {limit} days per query by {period}")
        with self.sessions() as session:
            town_of = dict(session.execute(select(Site.id, Site.town)
                                           .where(self._in_scope())).all())  # fmt: skip
            site_ids: list[str] | None = None
            if site_id:
                self._site(session, site_id)
                site_ids = [site_id]
            elif town:
                self.require_town(town)
                site_ids = [sid for sid, t in town_of.items() if t == town]
            elif self.scope is not None:
                site_ids = list(town_of)
            facts = self._stat_facts(session, first, last, site_ids=site_ids)
            revoked = revoked_ratings(session, first, last, site_ids)
        rules = stats.RatingRules(default_value, default_in_rates, frozenset(revoked))
        rows = stats.aggregate(facts, scope, town_of, days=(first, last), period=period,
                               rules=rules)  # fmt: skip
        if service:
            rows = [r for r in rows if r.service == service]
        return rows

    def stat_names(self, scope: stats.Scope, keys: Sequence[str]) -> dict[str, str]:
        """What people call the keys of statistics rows: the site's name, ``name 3号窗口``,
        the staff member's name with their site's. A staff member not on the roster
        (``staff``) is left out: the export shows the id; so is a site out of scope."""
        if scope in ("town", "fleet"):
            return {key: key for key in keys}
        with self.sessions() as session:
            sites: dict[str, str] = dict(session.execute(
                select(Site.id, Site.name).where(self._in_scope())).all())  # fmt: skip
            if scope == "site":
                return {key: sites[key] for key in keys if key in sites}
            if scope == "window":
                return {key: f"{sites.get(site, site)} {window}号窗口"
                        for key in keys for site, _, window in [key.partition("/")]}
            roster = {stats.staff_key(m.site_id, m.staff_id): m.name
                      for m in session.scalars(select(StaffMember).where(
                          StaffMember.site_id.in_(self._scope_sites())))}  # fmt: skip
        return {key: f"{roster[key]}（{sites.get(key.split('/', 1)[0], '')}）"
                for key in keys if key in roster}  # fmt: skip

    def hourly(self, site_id: str, day: dt.date) -> dict[str, list[float | None]]:
        """Per hour of ``day`` at one site: arrivals, served and mean wait (the site charts)."""
        with self.sessions() as session:
            self._site(session, site_id)
            facts = self._stat_facts(session, day, day, site_ids=[site_id])
        return stats.hourly(facts, day)

    # ------------------------------------------------------------------ telemetry

    def telemetry_series(
        self, site_id: str, metric: str, key: str, *, hours: float, end: datetime
    ) -> TelemetrySeries:
        """One series over the last ``hours`` before ``end``, from the configured sink."""
        if metric in QUEUE_METRICS and not key:
            raise InvalidRequest(f"{metric} is per service: give key=<service code>")
        if metric not in QUEUE_METRICS | SITE_METRICS:
            known = ", ".join(sorted(QUEUE_METRICS | SITE_METRICS))
            raise InvalidRequest(f"unknown metric {metric!r}; known: {known}")
        if metric in SITE_METRICS and key:
            raise InvalidRequest(f"{metric} is site-wide: no key")
        self.require_site(site_id)
        return self._series(site_id, metric, key, hours=hours, end=end)

    def _series(
        self, site_id: str, metric: str, key: str, *, hours: float, end: datetime
    ) -> TelemetrySeries:
        end_ms = int(end.timestamp() * 1000)
        start_ms = end_ms - int(hours * 3_600_000)
        points = self.telemetry.history(site_id, metric, key, start_ms=start_ms,
                                        end_ms=end_ms + 1, now_ms=end_ms)  # fmt: skip
        return TelemetrySeries(
            site=site_id,
            metric=metric,
            key=key,
            resolution_s=self.telemetry.resolution_for(start_ms, end_ms),
            points=[(p.ts_ms, p.mean, p.minimum, p.maximum, p.count) for p in points],
        )

    def waiting_chart(
        self, site_id: str, services: dict[str, str], *, hours: float, end: datetime
    ) -> dict[str, Any]:
        """People waiting per service (``services``: code -> label) over the last hours:
        ``t`` in unix seconds and one series per service, as the site page charts it.
        ``error`` when the telemetry store does not answer (the page shows the rest)."""
        self.require_site(site_id)
        try:
            history = {code: self._series(site_id, "queue.waiting", code, hours=hours,
                                          end=end).points
                       for code in services}  # fmt: skip
        except Exception as exc:  # InfluxDB down: the page still shows everything else
            log.warning("web.telemetry_unavailable", site=site_id, error=repr(exc)[:200])
            return {"t": [], "series": [], "error": True}
        times = sorted({p[0] for points in history.values() for p in points})
        column = {ts: i for i, ts in enumerate(times)}
        series = []
        for code, points in history.items():
            values: list[float | None] = [None] * len(times)
            for p in points:
                values[column[p[0]]] = p[1]
            series.append({"label": services[code], "values": values})
        return {"t": [ts / 1000 for ts in times], "series": series}

    # ------------------------------------------------------------------ registry, audit

    def site_specs(self, *, retired: bool | None = False) -> list[SiteSpec]:
        """Registry specs by id: of the sites in service, the retired ones, or (``None``) all."""
        with self.sessions() as session:
            specs = load_specs(session, retired=retired).values()
        return [spec for spec in specs if self._covers(spec.town)]

    def site_spec(self, site_id: str) -> SiteSpec:
        with self.sessions() as session:
            specs = load_specs(session, [site_id], retired=None)
        if site_id not in specs:
            raise UnknownSite(site_id)
        self.require_town(specs[site_id].town)
        return specs[site_id]

    def inventory_sites(self) -> list[InventorySite]:
        """The sites in service with their config versions and connection, by town then id."""
        with self.sessions() as session:
            specs = load_specs(session)
            live = session.execute(
                select(Site.id, Site.expected_config_version, Site.reported_config_version,
                       Site.online, Site.registry_revision)
                .where(IN_SERVICE, self._in_scope()).order_by(Site.town, Site.id)
            ).all()  # fmt: skip
        return [InventorySite(specs[row.id], row.expected_config_version,
                              row.reported_config_version, row.online, row.registry_revision)
                for row in live if row.id in specs]  # fmt: skip

    def registry_sheet(self) -> dict[str, str]:
        """The registry as its three CSV files (retired sites marked), for an export."""
        with self.sessions() as session:
            specs = {site_id: spec for site_id, spec in load_specs(session, retired=None).items()
                     if self._covers(spec.town)}  # fmt: skip
            rows = session.execute(select(Site.id, Site.retired_at, Site.registry_revision)
                                   .where(self._in_scope()))  # fmt: skip
            retired, revisions = set(), {}
            for site_id, retired_at, revision in rows:
                revisions[site_id] = revision
                if retired_at is not None:
                    retired.add(site_id)
            return write_sheet(specs.values(), retired, revisions)

    def audit(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
        target: str | None = None,
        actor: str | None = None,
        before_id: int | None = None,
        limit: int = 500,
    ) -> list[AuditView]:
        """Audit entries, newest first, filtered (``action`` ``site.`` matches every site.*).
        The whole city's log: a town's account may not read it."""
        self._require_city("查看审计日志")
        if since is not None and until is not None and until < since:
            raise InvalidRequest("until is before since")
        statement = select(AuditEntry)
        if since is not None:
            statement = statement.where(AuditEntry.at >= since)
        if until is not None:
            statement = statement.where(AuditEntry.at < until)
        if action:
            statement = statement.where(AuditEntry.action.startswith(action, autoescape=True)
                                        if action.endswith(".") else AuditEntry.action == action)
        if target:
            statement = statement.where(AuditEntry.target == target)
        if actor:
            statement = statement.where(AuditEntry.actor == actor)
        if before_id is not None:
            statement = statement.where(AuditEntry.id < before_id)
        with self.sessions() as session:
            rows = session.scalars(statement.order_by(AuditEntry.id.desc()).limit(limit))
            return [AuditView.of(row) for row in rows]


__all__ = [
    "IN_SERVICE",
    "MAX_PERIOD_DAYS",
    "MAX_STAT_DAYS",
    "STAT_EVENT_TYPES",
    "ReadModel",
    "active_alarm_counts",
    "day_bounds_ms",
]

"""The REST API under ``/api/v1``, plus ``/healthz`` and ``/metrics``.

Every route declares the least role it needs (:func:`requires`); the table in
``tests/central/test_api_roles.py`` walks every route with every role. Callers
authenticate with ``Authorization: Bearer od_...`` or, from the dashboard, the
session cookie (see :mod:`central.auth`).

::

    GET  /api/v1/sites                     viewer    registry + live summary, filters
    GET  /api/v1/sites/{id}                viewer    windows, queues, devices, alarms, gaps
    GET  /api/v1/sites/{id}/telemetry      viewer    history of one series (metric, key, hours)
    PATCH /api/v1/sites/{id}               admin     registry: expected config version
    GET  /api/v1/events                    viewer    committed events (site, type, seq range)
    GET  /api/v1/alarms                    viewer    active (default) or all alarms
    POST /api/v1/alarms/{id}/ack           operator
    GET  /api/v1/statistics[.csv]          viewer    see docs/STATISTICS.md
    POST /api/v1/sites/{id}/commands       operator  announce, reprint, screen_notice, reload_config
    GET  /api/v1/sites/{id}/commands       viewer
    GET  /api/v1/commands/{id}             viewer
    GET  /api/v1/inventory                 operator  Ansible dynamic inventory (JSON)
    GET|POST /api/v1/tokens, DELETE /api/v1/tokens/{id}   admin
    GET  /metrics                          viewer    Prometheus text exposition
    GET  /healthz, /docs, /openapi.json    anyone (Swagger UI vendored: no CDN)

Errors are JSON ``{"detail": ...}`` with the HTTP status of the error class.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, NamedTuple

import msgspec
import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine, case, func, or_, select, text
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from central import stats
from central.auth import (
    SESSION_COOKIE,
    AuthError,
    Forbidden,
    Principal,
    Role,
    SessionSigner,
    TokenStore,
    Unauthenticated,
)
from central.config import CentralConfig
from central.errors import UnknownAlarm, UnknownSite
from central.inventory import ansible_inventory
from central.models import (
    Alarm,
    Command,
    CommandStatus,
    Device,
    IngestReject,
    SequenceGap,
    Service,
    Severity,
    Site,
    Window,
)
from central.models import EventRecord as EventRow
from central.service import CentralService
from central.telemetry import (
    QUEUE_METRICS,
    SITE_METRICS,
    EmbeddedTelemetrySink,
    HistoryPoint,
    TelemetrySink,
)
from firmware_protocols.mqtt_messages import (
    COMMAND_ARGS,
    MAX_COMMAND_TTL_MS,
    CommandArgs,
    EventBody,
)

log = structlog.get_logger(__name__)

API_PREFIX: Final = "/api/v1"
DEFAULT_COMMAND_TTL_S: Final = 600
MAX_STAT_DAYS: Final = 92
"""Longest date range of one statistics query (a quarter)."""

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
)

Health = Literal["ok", "warn", "alarm", "offline", "unknown"]
_SEVERITY_RANK: Final = {
    Severity.INFO: 0,
    Severity.WARNING: 1,
    Severity.MAJOR: 2,
    Severity.CRITICAL: 3,
}


# --------------------------------------------------------------------------- wiring


@dataclass
class HttpMetrics:
    """In-process counters exported on ``/metrics``."""

    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    sse_clients: int = 0
    started: float = field(default_factory=time.time)


@dataclass
class Central:
    """What the routes need; kept on ``app.state.central``."""

    config: CentralConfig
    engine: Engine
    sessions: sessionmaker[Session]
    tokens: TokenStore
    signer: SessionSigner
    service: CentralService | None
    """Ingest, alarms and the MQTT client; ``None`` for a read-only app (benchmarks)."""
    metrics: HttpMetrics = field(default_factory=HttpMetrics)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    telemetry: TelemetrySink | None = None
    """Where telemetry history is read from: InfluxDB or the embedded store (the default)."""

    def telemetry_history(self, site_id: str, metric: str, key: str, *, hours: float,
                          end: datetime) -> tuple[int, list[HistoryPoint]]:  # fmt: skip
        """(resolution in s, 0 for raw points; the points) of one series over ``hours``."""
        sink = self.telemetry or EmbeddedTelemetrySink(self.sessions)
        end_ms = int(end.timestamp() * 1000)
        start_ms = end_ms - int(hours * 3_600_000)
        points = sink.history(site_id, metric, key, start_ms=start_ms, end_ms=end_ms + 1,
                              now_ms=end_ms)
        return sink.resolution_for(start_ms, end_ms), points


def central_of(request: Request) -> Central:
    central: Central = request.app.state.central
    return central


def service_of(central: Central) -> CentralService:
    if central.service is None:
        raise HTTPException(503, "this process runs without ingest (read-only)")
    return central.service


# --------------------------------------------------------------------------- auth


CSRF_HEADER: Final = "x-requested-with"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def authenticate(request: Request) -> Principal:
    """The caller from a bearer token or the session cookie; :class:`AuthError` if none.

    A state-changing request carried by the session cookie must also send
    ``X-Requested-With`` (the dashboard's scripts do): besides SameSite=Strict,
    a header a cross-site form cannot set.
    """
    central = central_of(request)
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthenticated("use Authorization: Bearer <token>")
        return central.tokens.verify(credentials)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        principal = central.tokens.principal(central.signer.token_id(cookie))
        if request.method not in _SAFE_METHODS and not request.headers.get(CSRF_HEADER):
            raise Forbidden(f"a dashboard request that changes state needs {CSRF_HEADER}")
        return principal
    raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})


def requires(role: Role) -> Any:
    """A dependency admitting callers whose role includes ``role`` (401 or 403 otherwise)."""

    def dependency(request: Request) -> Principal:
        try:
            principal = authenticate(request)
            principal.require(role)
        except AuthError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
            raise HTTPException(exc.status_code, str(exc), headers=headers) from None
        return principal

    return Depends(dependency)


Viewer = Annotated[Principal, requires(Role.VIEWER)]
Operator = Annotated[Principal, requires(Role.OPERATOR)]
Admin = Annotated[Principal, requires(Role.ADMIN)]


# --------------------------------------------------------------------------- queries


def site_health(online: bool, ever_seen: bool, worst: Severity | None) -> Health:
    """Tile colour of a site: never seen, offline, then the worst active alarm."""
    if not online:
        return "offline" if ever_seen else "unknown"
    if worst is None:
        return "ok"
    rank = _SEVERITY_RANK[worst]
    return "alarm" if rank >= _SEVERITY_RANK[Severity.MAJOR] else "warn" if rank else "ok"


class FleetTile(NamedTuple):
    """What a fleet tile shows; the dashboards and the live hub read only this."""

    id: str
    name: str
    town: str
    health: Health
    alarms: int


def tile_states(session: Session) -> dict[str, tuple[Health, int]]:
    """Health and active-alarm count per site: the live hub's poll (ids and flags only)."""
    alarms = active_alarm_counts(session)
    no_alarm = (0, None)
    states: dict[str, tuple[Health, int]] = {}
    for site_id, online, seen in session.execute(
        select(Site.id, Site.online, Site.last_seen_at.is_not(None))
    ):
        count, worst = alarms.get(site_id, no_alarm)
        states[site_id] = (site_health(online, seen, worst), count)
    return states


def fleet_tiles(session: Session) -> list[FleetTile]:
    """Every site as a tile, ordered by town then id: two light queries, no ORM objects."""
    alarms = active_alarm_counts(session)
    rows = session.execute(
        select(Site.id, Site.name, Site.town, Site.online, Site.last_seen_at.is_not(None)).order_by(
            Site.town, Site.id
        )
    ).all()
    no_alarm = (0, None)
    tiles = []
    for site_id, name, town, online, seen in rows:
        count, worst = alarms.get(site_id, no_alarm)
        tiles.append(FleetTile(site_id, name, town, site_health(online, seen, worst), count))
    return tiles


@dataclass(frozen=True, slots=True)
class SiteSummary:
    id: str
    name: str
    town: str
    kind: str
    online: bool
    last_seen_at: datetime | None
    alarms: int
    health: Health
    expected_config_version: str | None
    reported_config_version: str | None


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
        if _SEVERITY_RANK[severity] > _SEVERITY_RANK[worst]:
            worst = severity
        found[site_id] = (total + count, worst)
    return found


def site_summaries(
    session: Session,
    *,
    town: str | None = None,
    query: str | None = None,
    health: str | None = None,
) -> list[SiteSummary]:
    """Every site (filtered), ordered by town then id. One query for sites, one for alarms."""
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
    if town:
        statement = statement.where(Site.town == town)
    if query:
        pattern = f"%{query.strip()}%"
        statement = statement.where(
            or_(Site.id.like(pattern), Site.name.like(pattern), Site.town.like(pattern))
        )
    alarms = active_alarm_counts(session)
    summaries = []
    for row in session.execute(statement):
        count, worst = alarms.get(row.id, (0, None))
        summaries.append(
            SiteSummary(
                row.id,
                row.name,
                row.town,
                row.kind.value,
                row.online,
                row.last_seen_at,
                count,
                site_health(row.online, row.last_seen_at is not None, worst),
                row.expected_config_version,
                row.reported_config_version,
            )
        )
    if health:
        summaries = [s for s in summaries if s.health == health]
    return summaries


def get_site(session: Session, site_id: str) -> Site:
    site = session.get(Site, site_id)
    if site is None:
        raise HTTPException(404, f"unknown site {site_id!r}")
    return site


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def site_detail(session: Session, site_id: str, now: datetime) -> dict[str, Any]:
    """Registry, live state, services with queues, windows, devices, alarms, open gaps."""
    site = get_site(session, site_id)
    services = session.scalars(
        select(Service).where(Service.site_id == site_id).order_by(Service.code)
    ).all()
    windows = session.scalars(
        select(Window).where(Window.site_id == site_id).order_by(Window.number)
    ).all()
    devices = session.scalars(
        select(Device).where(Device.site_id == site_id).order_by(Device.device)
    ).all()
    alarms = session.scalars(
        select(Alarm)
        .where(Alarm.site_id == site_id, Alarm.cleared_at.is_(None))
        .order_by(Alarm.raised_at.desc())
    ).all()
    gaps = session.scalars(
        select(SequenceGap)
        .where(SequenceGap.site_id == site_id, SequenceGap.filled_at.is_(None))
        .order_by(SequenceGap.first_seq)
    ).all()
    worst = max((a.severity for a in alarms), key=_SEVERITY_RANK.__getitem__, default=None)
    return {
        "id": site.id,
        "name": site.name,
        "town": site.town,
        "kind": site.kind.value,
        "lat": site.lat,
        "lon": site.lon,
        "health": site_health(site.online, site.last_seen_at is not None, worst),
        "online": site.online,
        "status_changed_at": _iso(site.status_changed_at),
        "last_seen_at": _iso(site.last_seen_at),
        "clock_synced": site.clock_synced,
        "outbox_depth": site.outbox_depth,
        "software_version": site.software_version,
        "expected_config_version": site.expected_config_version,
        "reported_config_version": site.reported_config_version,
        "config_drift": (
            site.expected_config_version is not None
            and site.reported_config_version != site.expected_config_version
        ),
        "host": site.host,
        "acked_seq": site.acked_seq,
        "max_seq": site.max_seq,
        "services": [
            {
                "code": s.code,
                "name": s.name,
                "prefix": s.prefix,
                "sla_s": s.sla_s,
                "waiting": s.waiting,
                "oldest_wait_s": s.oldest_wait_s,
                "wait_p50_s": s.wait_p50_s,
                "wait_p90_s": s.wait_p90_s,
            }
            for s in services
        ],
        "windows": [
            {
                "number": w.number,
                "name": w.name,
                "services": w.services,
                "priority": w.priority,
                "state": w.state,
                "ticket": w.ticket,
                "staff": w.staff,
            }
            for w in windows
        ],
        "devices": [
            {
                "device": d.device,
                "kind": d.kind,
                "status": d.status,
                "detail": d.detail,
                "changed_at": _iso(d.changed_at),
            }
            for d in devices
        ],
        "alarms": [alarm_json(a, now) for a in alarms],
        "sequence_gaps": [{"first_seq": g.first_seq, "last_seq": g.last_seq} for g in gaps],
    }


def alarm_json(alarm: Alarm, now: datetime) -> dict[str, Any]:
    return {
        "id": alarm.id,
        "site_id": alarm.site_id,
        "device": alarm.device,
        "type": alarm.type.value,
        "severity": alarm.severity.value,
        "message": alarm.message,
        "raised_at": _iso(alarm.raised_at),
        "updated_at": _iso(alarm.updated_at),
        "occurrences": alarm.occurrences,
        "acknowledged_at": _iso(alarm.acknowledged_at),
        "acknowledged_by": alarm.acknowledged_by,
        "cleared_at": _iso(alarm.cleared_at),
        "active": alarm.cleared_at is None,
        "age_s": int((now - alarm.raised_at).total_seconds()),
    }


def list_alarms(
    session: Session, *, active: bool = True, site_id: str | None = None, limit: int = 500
) -> list[Alarm]:
    statement = select(Alarm)
    if active:
        statement = statement.where(Alarm.cleared_at.is_(None))
    if site_id:
        statement = statement.where(Alarm.site_id == site_id)
    rank = _severity_order()
    return list(
        session.scalars(statement.order_by(rank.desc(), Alarm.raised_at.desc()).limit(limit))
    )


def _severity_order() -> Any:
    return case({s.value: r for s, r in _SEVERITY_RANK.items()}, value=Alarm.severity, else_=0)


def event_json(row: EventRow) -> dict[str, Any]:
    return {
        "site_id": row.site_id,
        "seq": row.seq,
        "event_id": str(row.event_id),
        "type": row.type,
        "ts_ms": row.ts_ms,
        "clock_synced": row.clock_synced,
        "received_at": _iso(row.received_at),
        "body": row.body,
    }


def recent_events(
    session: Session,
    *,
    site_id: str | None,
    event_type: str | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> list[EventRow]:
    statement = select(EventRow)
    if site_id:
        statement = statement.where(EventRow.site_id == site_id)
    if event_type:
        statement = statement.where(EventRow.type == event_type)
    if before_seq is not None:
        statement = statement.where(EventRow.seq < before_seq)
    order = (EventRow.seq.desc(),) if site_id else (EventRow.id.desc(),)
    return list(session.scalars(statement.order_by(*order).limit(limit)))


def to_stat_record(site_id: str, seq: int, ts_ms: int, body: dict[str, Any]) -> stats.EventRecord:
    decoded: EventBody = msgspec.convert(body, EventBody)
    return stats.EventRecord(site_id, seq, ts_ms, decoded)


def day_bounds_ms(first: dt.date, last: dt.date) -> tuple[int, int]:
    """Unix ms of the start of ``first`` and of the day after ``last``, business time."""
    start = dt.datetime.combine(first, dt.time(), stats.BUSINESS_TZ)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), stats.BUSINESS_TZ)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def load_stat_events(
    session: Session,
    first: dt.date,
    last: dt.date,
    *,
    site_ids: Sequence[str] | None = None,
) -> list[stats.EventRecord]:
    """The events the statistics fold needs, for tickets issued between ``first`` and ``last``.

    Reads one more day past ``last`` so that a ticket issued before midnight and
    finished after it is complete; :func:`stats.aggregate` keeps issue days only.
    """
    start_ms, end_ms = day_bounds_ms(first, last + dt.timedelta(days=1))
    statement = select(EventRow.site_id, EventRow.seq, EventRow.ts_ms, EventRow.body).where(
        EventRow.type.in_(STAT_EVENT_TYPES),
        EventRow.ts_ms >= start_ms,
        EventRow.ts_ms < end_ms,
    )
    if site_ids is not None:
        statement = statement.where(EventRow.site_id.in_(list(site_ids)))
    records = []
    for row in session.execute(statement):
        try:
            records.append(to_stat_record(row.site_id, row.seq, row.ts_ms, row.body))
        except msgspec.ValidationError as exc:  # ingest validated it: a stored row was altered
            log.warning("stats.bad_event_row", site=row.site_id, seq=row.seq, error=str(exc))
    return records


def statistics_rows(
    session: Session,
    scope: stats.Scope,
    first: dt.date,
    last: dt.date,
    *,
    site_id: str | None = None,
    town: str | None = None,
    service: str | None = None,
) -> list[stats.StatRow]:
    if last < first:
        raise HTTPException(422, "the end date is before the start date")
    if (last - first).days >= MAX_STAT_DAYS:
        raise HTTPException(422, f"at most {MAX_STAT_DAYS} days per query")
    town_rows = session.execute(select(Site.id, Site.town)).all()
    town_of = {row.id: row.town for row in town_rows}
    site_ids: list[str] | None = None
    if site_id:
        get_site(session, site_id)
        site_ids = [site_id]
    elif town:
        site_ids = [sid for sid, t in town_of.items() if t == town]
    events = load_stat_events(session, first, last, site_ids=site_ids)
    rows = stats.compute(events, scope, town_of, days=(first, last))
    if service:
        rows = [r for r in rows if r.service == service]
    return rows


def hourly_today(session: Session, site_id: str, day: dt.date) -> dict[str, list[float | None]]:
    """Per hour of ``day`` at one site: arrivals, served and mean wait (for the site charts)."""
    events = load_stat_events(session, day, day, site_ids=[site_id])
    facts = stats.fold_tickets(events)
    return stats.hourly(facts, day)


# --------------------------------------------------------------------------- commands


class CommandRequest(BaseModel):
    """A command to one site; ``args`` are those of the command (see the MQTT contract)."""

    name: Literal["announce", "reprint", "screen_notice", "reload_config"]
    args: dict[str, Any] = Field(default_factory=dict)
    ttl_s: int = Field(DEFAULT_COMMAND_TTL_S, ge=1, le=MAX_COMMAND_TTL_MS // 1000)


def command_state(command: Command, now: datetime) -> str:
    """``succeeded``/``failed`` once a result came; ``expired`` past its TTL; else ``pending``."""
    if command.status is CommandStatus.SENT:
        return "expired" if now >= command.expires_at else "pending"
    return command.status.value


def command_json(
    command: Command, now: datetime, *, site_online: bool | None = None
) -> dict[str, Any]:
    state = command_state(command, now)
    return {
        "id": str(command.id),
        "site_id": command.site_id,
        "name": command.name,
        "args": command.args,
        "issued_at": _iso(command.issued_at),
        "expires_at": _iso(command.expires_at),
        "issued_by": command.issued_by,
        "state": state,
        "waiting_for_site": state == "pending" and site_online is False,
        "error": command.error,
        "result_at": _iso(command.result_at),
    }


def command_args(request: CommandRequest) -> CommandArgs:
    """The typed args of the command; 422 if they do not fit its schema."""
    try:
        converted = msgspec.convert(
            {**request.args, "name": request.name}, COMMAND_ARGS[request.name]
        )
    except msgspec.ValidationError as exc:
        raise HTTPException(422, f"invalid {request.name} args: {exc}") from None
    args: CommandArgs = converted  # type: ignore[assignment]  # COMMAND_ARGS maps to these
    return args


# --------------------------------------------------------------------------- metrics


def _metric_line(name: str, value: float, labels: dict[str, str] | None = None) -> str:
    if labels:
        inner = ",".join(
            f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'.replace(
                "\n", "\\n"
            )
            for k, v in labels.items()
        )
        return f"{name}{{{inner}}} {value:g}"
    return f"{name} {value:g}"


def render_metrics(central: Central) -> str:
    """Prometheus text exposition format 0.0.4, written by hand (no client library)."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.extend((f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"))

    with central.sessions() as session:
        online = dict(
            session.execute(select(Site.online, func.count()).group_by(Site.online)).all()
        )
        severities = dict(
            session.execute(
                select(Alarm.severity, func.count())
                .where(Alarm.cleared_at.is_(None))
                .group_by(Alarm.severity)
            ).all()
        )
        rejects = session.execute(
            select(IngestReject.reason, func.sum(IngestReject.count)).group_by(IngestReject.reason)
        ).all()
        max_event = session.execute(select(func.max(EventRow.id))).scalar()
        pending = session.execute(
            select(func.count())
            .select_from(Command)
            .where(Command.status == CommandStatus.SENT, Command.expires_at > central.now())
        ).scalar_one()
    family("onedoor_central_sites", "gauge", "Sites in the registry by connection state.")
    lines.append(_metric_line("onedoor_central_sites", online.get(True, 0), {"state": "online"}))
    lines.append(_metric_line("onedoor_central_sites", online.get(False, 0), {"state": "offline"}))
    family("onedoor_central_alarms_active", "gauge", "Active alarms by severity.")
    for severity in Severity:
        lines.append(
            _metric_line(
                "onedoor_central_alarms_active",
                severities.get(severity, 0),
                {"severity": severity.value},
            )
        )
    family("onedoor_central_ingest_rejected_total", "counter", "Refused MQTT payloads by reason.")
    for reason, count in rejects:
        lines.append(
            _metric_line("onedoor_central_ingest_rejected_total", count or 0, {"reason": reason})
        )
    family("onedoor_central_events_stored", "gauge", "Highest event row id (events committed).")
    lines.append(_metric_line("onedoor_central_events_stored", max_event or 0))
    family("onedoor_central_commands_pending", "gauge", "Commands sent, not answered, not expired.")
    lines.append(_metric_line("onedoor_central_commands_pending", pending))
    family("onedoor_central_http_requests_total", "counter", "HTTP requests by route and status.")
    for (method, route, status), count in sorted(central.metrics.requests.items()):
        lines.append(
            _metric_line(
                "onedoor_central_http_requests_total",
                count,
                {"method": method, "route": route, "status": str(status)},
            )
        )
    family("onedoor_central_sse_clients", "gauge", "Open server-sent-event streams.")
    lines.append(_metric_line("onedoor_central_sse_clients", central.metrics.sse_clients))
    family("onedoor_central_start_time_seconds", "gauge", "Process start, unix seconds.")
    lines.append(_metric_line("onedoor_central_start_time_seconds", central.metrics.started))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- routes

router = APIRouter(prefix=API_PREFIX)
root_router = APIRouter()


def _today(central: Central) -> dt.date:
    return central.now().astimezone(stats.BUSINESS_TZ).date()


@router.get("/sites", tags=["sites"])
def api_sites(
    request: Request,
    _: Viewer,
    town: str | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    health: Annotated[str | None, Query(pattern="^(ok|warn|alarm|offline|unknown)$")] = None,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 50_000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    central = central_of(request)
    with central.sessions() as session:
        summaries = site_summaries(session, town=town, query=q, health=health)
    page = summaries[offset : offset + limit]
    return {
        "total": len(summaries),
        "sites": [
            {
                "id": s.id,
                "name": s.name,
                "town": s.town,
                "kind": s.kind,
                "online": s.online,
                "health": s.health,
                "alarms": s.alarms,
                "last_seen_at": _iso(s.last_seen_at),
                "expected_config_version": s.expected_config_version,
                "reported_config_version": s.reported_config_version,
            }
            for s in page
        ],
    }


@router.get("/sites/{site_id}", tags=["sites"])
def api_site(request: Request, site_id: str, _: Viewer) -> dict[str, Any]:
    central = central_of(request)
    with central.sessions() as session:
        return site_detail(session, site_id, central.now())


@router.get("/sites/{site_id}/telemetry", tags=["sites"])
def api_site_telemetry(
    request: Request,
    site_id: str,
    _: Viewer,
    metric: Annotated[str, Query(description="e.g. queue.waiting, outbox.depth, host.load1")],
    key: Annotated[str, Query(max_length=64, description="service code for queue.*")] = "",
    hours: Annotated[float, Query(gt=0, le=24 * 400)] = 6.0,
) -> dict[str, Any]:
    """Telemetry history of one series: raw points, or per minute/hour mean, min, max, count."""
    central = central_of(request)
    if metric in QUEUE_METRICS and not key:
        raise HTTPException(422, f"{metric} is per service: give key=<service code>")
    if metric not in QUEUE_METRICS | SITE_METRICS:
        known = ", ".join(sorted(QUEUE_METRICS | SITE_METRICS))
        raise HTTPException(422, f"unknown metric {metric!r}; known: {known}")
    if metric in SITE_METRICS and key:
        raise HTTPException(422, f"{metric} is site-wide: no key")
    with central.sessions() as session:
        get_site(session, site_id)
    resolution, points = central.telemetry_history(site_id, metric, key, hours=hours,
                                                   end=central.now())
    return {
        "site": site_id, "metric": metric, "key": key, "resolution_s": resolution,
        "points": [[p.ts_ms, p.mean, p.minimum, p.maximum, p.count] for p in points],
    }  # fmt: skip


class SitePatch(BaseModel):
    expected_config_version: str | None = Field(
        None, pattern=r"^[\x21-\x7e]{1,64}$", description="config version the site should run"
    )


@router.patch("/sites/{site_id}", tags=["registry"])
def api_patch_site(
    request: Request, site_id: str, patch: SitePatch, principal: Admin
) -> dict[str, Any]:
    central = central_of(request)
    now = central.now()
    with central.sessions.begin() as session:
        site = get_site(session, site_id)
        if site.expected_config_version != patch.expected_config_version:
            site.expected_config_version = patch.expected_config_version
            site.config_version_changed_at = now
        log.info(
            "registry.site_updated",
            site=site_id,
            by=principal.token_id,
            expected_config_version=patch.expected_config_version,
        )
    with central.sessions() as session:
        return site_detail(session, site_id, now)


@router.get("/events", tags=["events"])
def api_events(
    request: Request,
    _: Viewer,
    site: str | None = None,
    type: Annotated[str | None, Query(max_length=32)] = None,
    before_seq: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    central = central_of(request)
    with central.sessions() as session:
        if site:
            get_site(session, site)
        rows = recent_events(
            session, site_id=site, event_type=type, before_seq=before_seq, limit=limit
        )
        return {"events": [event_json(r) for r in rows]}


@router.get("/alarms", tags=["alarms"])
def api_alarms(
    request: Request,
    _: Viewer,
    active: bool = True,
    site: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    central = central_of(request)
    now = central.now()
    with central.sessions() as session:
        alarms = list_alarms(session, active=active, site_id=site, limit=limit)
        return {"alarms": [alarm_json(a, now) for a in alarms]}


@router.post("/alarms/{alarm_id}/ack", tags=["alarms"])
def api_ack_alarm(request: Request, alarm_id: int, principal: Operator) -> dict[str, Any]:
    """Acknowledge through the service, so that history and the webhook stay right."""
    central = central_of(request)
    try:
        alarm = service_of(central).acknowledge_alarm(alarm_id, principal.name)
    except UnknownAlarm:
        raise HTTPException(404, f"unknown alarm {alarm_id}") from None
    log.info("alarm.acknowledged", alarm_id=alarm_id, by=principal.token_id)
    return alarm_json(alarm, central.now())


def _stat_params(
    scope: Annotated[Literal["site", "town", "fleet"], Query()] = "site",
    start: Annotated[dt.date | None, Query(alias="from")] = None,
    end: Annotated[dt.date | None, Query(alias="to")] = None,
    site: str | None = None,
    town: str | None = None,
    service: str | None = None,
) -> dict[str, Any]:
    return {
        "scope": scope,
        "start": start,
        "end": end,
        "site": site,
        "town": town,
        "service": service,
    }


StatParams = Annotated[dict[str, Any], Depends(_stat_params)]


def _stat_rows(central: Central, params: dict[str, Any]) -> list[stats.StatRow]:
    today = _today(central)
    end = params["end"] or today
    start = params["start"] or end
    with central.sessions() as session:
        return statistics_rows(
            session,
            params["scope"],
            start,
            end,
            site_id=params["site"],
            town=params["town"],
            service=params["service"],
        )


@router.get("/statistics", tags=["statistics"])
def api_statistics(request: Request, _: Viewer, params: StatParams) -> dict[str, Any]:
    rows = _stat_rows(central_of(request), params)
    return {"rows": [stats.row_values(r) for r in rows]}


@router.get("/statistics.csv", tags=["statistics"], response_class=PlainTextResponse)
def api_statistics_csv(request: Request, _: Viewer, params: StatParams) -> Response:
    rows = _stat_rows(central_of(request), params)
    name = f"onedoor-stats-{params['scope']}.csv"
    return Response(
        stats.rows_to_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/sites/{site_id}/commands", tags=["commands"], status_code=202)
async def api_send_command(
    request: Request, site_id: str, body: CommandRequest, principal: Operator
) -> dict[str, Any]:
    """Publish ``cmd/{name}`` to the site (QoS 1) and record it.

    A command to an offline site waits in the broker for the edge's persistent
    session; the edge refuses it at or after ``expires_at``, and the API shows
    it ``expired`` once that time has passed with no result.
    """
    central = central_of(request)
    service = service_of(central)
    args = command_args(body)
    try:
        command = await service.send_command(
            site_id, args, ttl_s=body.ttl_s, issued_by=principal.name
        )
    except UnknownSite:
        raise HTTPException(404, f"unknown site {site_id!r}") from None
    log.info("command.sent", site=site_id, command=body.name, id=str(command.id),
             by=principal.token_id, ttl_s=body.ttl_s)  # fmt: skip

    def read() -> dict[str, Any]:
        with central.sessions() as session:
            row = session.get(Command, command.id)
            online = session.execute(select(Site.online).where(Site.id == site_id)).scalar_one()
            assert row is not None  # send_command committed it
            return command_json(row, central.now(), site_online=online)

    return await run_in_threadpool(read)


@router.get("/sites/{site_id}/commands", tags=["commands"])
def api_site_commands(
    request: Request,
    site_id: str,
    _: Viewer,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    central = central_of(request)
    now = central.now()
    with central.sessions() as session:
        site = get_site(session, site_id)
        rows = session.scalars(
            select(Command)
            .where(Command.site_id == site_id)
            .order_by(Command.issued_at.desc())
            .limit(limit)
        ).all()
        return {"commands": [command_json(c, now, site_online=site.online) for c in rows]}


@router.get("/commands/{command_id}", tags=["commands"])
def api_command(request: Request, command_id: uuid.UUID, _: Viewer) -> dict[str, Any]:
    central = central_of(request)
    now = central.now()
    with central.sessions() as session:
        command = session.get(Command, command_id)
        if command is None:
            raise HTTPException(404, f"unknown command {command_id}")
        online = session.execute(select(Site.online).where(Site.id == command.site_id)).scalar_one()
        return command_json(command, now, site_online=online)


@router.get("/inventory", tags=["registry"])
def api_inventory(request: Request, _: Operator) -> dict[str, Any]:
    central = central_of(request)
    with central.sessions() as session:
        sites = session.scalars(select(Site).order_by(Site.town, Site.id)).all()
        return ansible_inventory(sites)


class TokenRequest(BaseModel):
    role: Role
    name: str = Field(min_length=1, max_length=100)


@router.get("/tokens", tags=["tokens"])
def api_tokens(request: Request, _: Admin) -> dict[str, Any]:
    return {
        "tokens": [
            {
                "id": t.token_id,
                "name": t.name,
                "role": t.role.value,
                "created_at": _iso(t.created_at),
                "revoked_at": _iso(t.revoked_at),
            }
            for t in central_of(request).tokens.list()
        ]
    }


@router.post("/tokens", tags=["tokens"], status_code=201)
def api_create_token(request: Request, body: TokenRequest, principal: Admin) -> dict[str, Any]:
    info, plaintext = central_of(request).tokens.create(body.role, body.name)
    log.info("auth.token_created_via_api", token_id=info.token_id, by=principal.token_id)
    return {"id": info.token_id, "name": info.name, "role": info.role.value, "token": plaintext}


@router.delete("/tokens/{token_id}", tags=["tokens"], status_code=204)
def api_revoke_token(request: Request, token_id: str, _: Admin) -> Response:
    if not central_of(request).tokens.revoke(token_id):
        raise HTTPException(404, f"no active token {token_id!r}")
    return Response(status_code=204)


@root_router.get("/healthz", tags=["ops"])
def healthz(request: Request) -> JSONResponse:
    """200 when the database answers; 503 otherwise. No authentication (load balancers)."""
    central = central_of(request)
    try:
        with central.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not healthy"; logged, not hidden
        log.warning("healthz.db_failed", error=str(exc))
        return JSONResponse({"status": "unhealthy", "database": "down"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "up"})


@root_router.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
def metrics(request: Request, _: Viewer) -> Response:
    return Response(
        render_metrics(central_of(request)), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


def install(app: FastAPI) -> None:
    """Add the API routes and the request counter to ``app``."""
    app.include_router(router)
    app.include_router(root_router)

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        central_of(request).metrics.requests[(request.method, path, response.status_code)] += 1
        return response


__all__ = [
    "API_PREFIX",
    "Central",
    "CommandRequest",
    "FleetTile",
    "HttpMetrics",
    "SiteSummary",
    "active_alarm_counts",
    "authenticate",
    "command_args",
    "command_state",
    "day_bounds_ms",
    "fleet_tiles",
    "hourly_today",
    "install",
    "list_alarms",
    "load_stat_events",
    "render_metrics",
    "requires",
    "site_detail",
    "site_health",
    "site_summaries",
    "statistics_rows",
    "tile_states",
]

"""What the read model hands out: typed records, the same for the JSON API and the pages.

:mod:`central.queries` builds these from the database; :mod:`central.api`
answers ``view.to_json()`` and the templates of :mod:`central.web` read the
same attributes (``site.health``, ``alarm.raised_at``). A new screen or
endpoint adds a record here and a method there, so both faces show one truth.

::

    SiteState     the rows of one site (ORM objects): tests, and the source of SiteDetail
    SiteDetail    one site for the API and the site page: registry, live state,
                  ServiceQueue, WindowView, DeviceView, AlarmView, GapView, AdviceView
    SiteSummary   one line of the site list;  FleetTile: one tile of the fleet page
    AlarmView, AlarmBoard, EventView, CommandView, TokenView, TelemetrySeries, AuditView
    SiteDeviceView  an edge device of a site: holder, waiting for takeover, or replaced
    DiagnosticsView the answer to a remote diagnostics command

Times are ISO 8601 strings in UTC (``None`` when unknown), as the API has
always answered; the pages format them in business time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple

import msgspec

from central.auth import TokenInfo
from central.models import (
    Alarm,
    AuditEntry,
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
    Window,
)
from central.sitespec import hours_of, to_builtins

Health = Literal["ok", "warn", "alarm", "offline", "unknown"]
HEALTHS: Final[tuple[Health, ...]] = ("alarm", "warn", "offline", "ok", "unknown")
"""Every tile colour, in the order the fleet page counts them."""

SEVERITY_RANK: Final = {
    Severity.INFO: 0,
    Severity.WARNING: 1,
    Severity.MAJOR: 2,
    Severity.CRITICAL: 3,
}


def site_health(online: bool, ever_seen: bool, worst: Severity | None) -> Health:
    """Tile colour of a site: never seen, offline, then the worst active alarm."""
    if not online:
        return "offline" if ever_seen else "unknown"
    if worst is None:
        return "ok"
    rank = SEVERITY_RANK[worst]
    return "alarm" if rank >= SEVERITY_RANK[Severity.MAJOR] else "warn" if rank else "ok"


def worst_severity(severities: list[Severity]) -> Severity | None:
    return max(severities, key=SEVERITY_RANK.__getitem__, default=None)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


class View(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the records: immutable, typed, and JSON through :meth:`to_json`."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data


# --------------------------------------------------------------------------- fleet


class FleetTile(NamedTuple):
    """What a fleet tile shows; the fleet page and the live hub read only this.

    A tuple, not a :class:`View`: the fleet page builds 20,000 of them per render.
    """

    id: str
    name: str
    town: str
    health: Health
    alarms: int
    drift: SiteDrift | None = None
    """Set when the site runs other software or config than expected."""


class SiteDrift(NamedTuple):
    """A site whose software or config differs from what it should run (the fleet page's
    marker): what it reports, what it should report (``None``: nothing reported or nothing
    expected). Only drifting sites get one, so a 20,000-site snapshot holds few."""

    software: str | None
    expected_software: str | None
    config: str | None
    expected_config: str | None
    software_differs: bool
    config_differs: bool


class SiteSummary(View, frozen=True, kw_only=True):
    """One site of the site list."""

    id: str
    name: str
    town: str
    kind: str
    online: bool
    health: Health
    alarms: int
    last_seen_at: str | None
    expected_config_version: str | None
    reported_config_version: str | None


# --------------------------------------------------------------------------- one site


class ServiceQueue(View, frozen=True, kw_only=True):
    code: str
    name: str
    prefix: str | None
    sla_s: int | None
    waiting: int | None
    oldest_wait_s: int | None
    wait_p50_s: int | None
    wait_p90_s: int | None

    @classmethod
    def of(cls, s: Service) -> ServiceQueue:
        return cls(code=s.code, name=s.name, prefix=s.prefix, sla_s=s.sla_s, waiting=s.waiting,
                   oldest_wait_s=s.oldest_wait_s, wait_p50_s=s.wait_p50_s,
                   wait_p90_s=s.wait_p90_s)  # fmt: skip


class WindowView(View, frozen=True, kw_only=True):
    number: int
    name: str | None
    services: list[str]
    priority: bool
    state: str
    ticket: str | None
    staff: str | None

    @classmethod
    def of(cls, w: Window) -> WindowView:
        return cls(number=w.number, name=w.name, services=list(w.services), priority=w.priority,
                   state=w.state, ticket=w.ticket, staff=w.staff)  # fmt: skip


class DeviceView(View, frozen=True, kw_only=True):
    device: str
    kind: str
    status: str
    detail: str | None
    changed_at: str | None

    @classmethod
    def of(cls, d: Device) -> DeviceView:
        return cls(device=d.device, kind=d.kind, status=d.status, detail=d.detail,
                   changed_at=iso(d.changed_at))  # fmt: skip


class GapView(View, frozen=True, kw_only=True):
    first_seq: int
    last_seq: int


class AlarmView(View, frozen=True, kw_only=True):
    id: int
    site_id: str
    device: str
    type: str
    severity: str
    message: str
    raised_at: str | None
    updated_at: str | None
    occurrences: int
    acknowledged_at: str | None
    acknowledged_by: str | None
    cleared_at: str | None
    active: bool
    age_s: int

    @classmethod
    def of(cls, alarm: Alarm, now: datetime) -> AlarmView:
        return cls(
            id=alarm.id,
            site_id=alarm.site_id,
            device=alarm.device,
            type=alarm.type.value,
            severity=alarm.severity.value,
            message=alarm.message,
            raised_at=iso(alarm.raised_at),
            updated_at=iso(alarm.updated_at),
            occurrences=alarm.occurrences,
            acknowledged_at=iso(alarm.acknowledged_at),
            acknowledged_by=alarm.acknowledged_by,
            cleared_at=iso(alarm.cleared_at),
            active=alarm.cleared_at is None,
            age_s=int((now - alarm.raised_at).total_seconds()),
        )


class AdviceView(View, frozen=True, kw_only=True):
    """The site's staffing advisory in force (``central/advice.py``)."""

    advisory_id: str
    services: list[str]
    """Services whose p90 wait will pass their SLA within ``horizon_s``."""
    move: dict[str, Any] | None
    """``kind`` (switch, open, add), ``windows``, ``services``, ``count``; null: none
    found, more staff is needed."""
    message_zh: str
    message_en: str
    horizon_s: int
    before: list[dict[str, Any]]
    after: list[dict[str, Any]] | None
    raised_at: str | None
    updated_at: str | None
    expires_at: str | None

    @classmethod
    def of(cls, row: StaffingAdvisory) -> AdviceView:
        outlook = row.outlook
        return cls(advisory_id=str(row.advisory_id), services=list(row.services), move=row.move,
                   message_zh=row.message_zh, message_en=row.message_en,
                   horizon_s=int(outlook.get("horizon_s", 0)),
                   before=list(outlook.get("before") or []), after=outlook.get("after"),
                   raised_at=iso(row.raised_at), updated_at=iso(row.updated_at),
                   expires_at=iso(row.expires_at))  # fmt: skip

    def outlook(self, names: dict[str, str]) -> list[tuple[str, dict[str, Any],
                                                           dict[str, Any] | None]]:
        """(name, before, after) of each service judged, breaching ones first."""
        after = {o["service"]: o for o in self.after or []}
        rows = sorted(self.before, key=lambda o: (o["service"] not in self.services,
                                                  o["service"]))
        return [(names.get(o["service"], o["service"]), o, after.get(o["service"]))
                for o in rows]


@dataclass(frozen=True, slots=True)
class SiteState:
    """The rows of one site as the database holds them now (detached ORM objects)."""

    site: Site
    services: list[Service]
    windows: list[Window]
    devices: list[Device]
    alarms: list[Alarm]
    """Active alarms, newest first."""
    open_gaps: list[SequenceGap]
    rejects: list[IngestReject]
    advice: StaffingAdvisory | None = None
    """The staffing advisory in force, if any."""

    @property
    def health(self) -> Health:
        worst = worst_severity([a.severity for a in self.alarms])
        return site_health(self.site.online, self.site.last_seen_at is not None, worst)

    @property
    def config_drift(self) -> bool:
        return self.site.config_drift

    @property
    def windows_open(self) -> int:
        return sum(w.state in ("open", "serving") for w in self.windows)

    @property
    def windows_busy(self) -> int:
        return sum(w.state == "serving" for w in self.windows)


class SiteDetail(View, frozen=True, kw_only=True):
    """Registry, live state, services with queues, windows, devices, alarms, open gaps."""

    id: str
    name: str
    town: str
    kind: str
    lat: float | None
    lon: float | None
    health: Health
    online: bool
    status_changed_at: str | None
    last_seen_at: str | None
    clock_synced: bool | None
    outbox_depth: int | None
    software_version: str | None
    expected_release: str | None
    """The release it should run (a rollout, or the install, records it)."""
    expected_config_version: str | None
    reported_config_version: str | None
    config_drift: bool
    host: dict[str, Any] | None
    acked_seq: int
    max_seq: int
    services: list[ServiceQueue]
    windows: list[WindowView]
    devices: list[DeviceView]
    alarms: list[AlarmView]
    sequence_gaps: list[GapView]
    hours: dict[str, str | None] | None
    """Opening hours of its own (open, close, reset, last_ticket); ``None``: the fleet's."""
    registry_revision: int
    retired_at: str | None
    """When it left the fleet (its page and history stay); ``None`` while in service."""
    advice: AdviceView | None = None

    @classmethod
    def of(cls, state: SiteState, now: datetime) -> SiteDetail:
        site = state.site
        return cls(
            id=site.id,
            name=site.name,
            town=site.town,
            kind=site.kind.value,
            lat=site.lat,
            lon=site.lon,
            health=state.health,
            online=site.online,
            status_changed_at=iso(site.status_changed_at),
            last_seen_at=iso(site.last_seen_at),
            clock_synced=site.clock_synced,
            outbox_depth=site.outbox_depth,
            software_version=site.software_version,
            expected_release=site.expected_release,
            expected_config_version=site.expected_config_version,
            reported_config_version=site.reported_config_version,
            config_drift=state.config_drift,
            host=site.host,
            acked_seq=site.acked_seq,
            max_seq=site.max_seq,
            services=[ServiceQueue.of(s) for s in state.services],
            windows=[WindowView.of(w) for w in state.windows],
            devices=[DeviceView.of(d) for d in state.devices],
            alarms=[AlarmView.of(a, now) for a in state.alarms],
            sequence_gaps=[GapView(first_seq=g.first_seq, last_seq=g.last_seq)
                           for g in state.open_gaps],
            hours=to_builtins(hours_of(site)),
            registry_revision=site.registry_revision,
            retired_at=iso(site.retired_at),
            advice=None if state.advice is None else AdviceView.of(state.advice),
        )  # fmt: skip

    @property
    def service_names(self) -> dict[str, str]:
        return {s.code: s.name for s in self.services}


# --------------------------------------------------------------------------- lists


class AlarmBoard(View, frozen=True, kw_only=True):
    """The alarms page: active alarms (worst first), recently cleared ones, site names."""

    active: list[AlarmView]
    recent: list[AlarmView]
    names: dict[str, str]


class EventView(View, frozen=True, kw_only=True):
    site_id: str
    seq: int
    event_id: str
    type: str
    ts_ms: int
    clock_synced: bool
    received_at: str | None
    body: dict[str, Any]

    @classmethod
    def of(cls, row: EventRecord) -> EventView:
        return cls(site_id=row.site_id, seq=row.seq, event_id=str(row.event_id), type=row.type,
                   ts_ms=row.ts_ms, clock_synced=row.clock_synced,
                   received_at=iso(row.received_at), body=row.body)  # fmt: skip


CommandState = Literal["pending", "succeeded", "failed", "expired"]


def command_state(command: Command, now: datetime) -> CommandState:
    """``succeeded``/``failed`` once a result came; ``expired`` past its TTL; else ``pending``."""
    return state_of(command.status, command.expires_at, now)


def state_of(status: CommandStatus, expires_at: datetime, now: datetime) -> CommandState:
    """:func:`command_state` from the two columns it depends on (rows read without the
    whole command)."""
    if status is CommandStatus.SENT:
        return "expired" if now >= expires_at else "pending"
    state: CommandState = status.value  # type: ignore[assignment]  # the other three
    return state


class CommandView(View, frozen=True, kw_only=True):
    id: str
    site_id: str
    name: str
    args: dict[str, Any]
    issued_at: str | None
    expires_at: str | None
    issued_by: str | None
    state: CommandState
    waiting_for_site: bool
    """Pending while the site is offline: it waits in the broker for the edge's session."""
    error: str | None
    result_at: str | None

    @classmethod
    def of(cls, command: Command, now: datetime, *, site_online: bool | None) -> CommandView:
        state = command_state(command, now)
        return cls(
            id=str(command.id),
            site_id=command.site_id,
            name=command.name,
            args=command.args,
            issued_at=iso(command.issued_at),
            expires_at=iso(command.expires_at),
            issued_by=command.issued_by,
            state=state,
            waiting_for_site=state == "pending" and site_online is False,
            error=command.error,
            result_at=iso(command.result_at),
        )


BulkState = Literal["pending", "succeeded", "failed", "expired", "refused"]
BULK_STATES: Final[tuple[BulkState, ...]] = ("pending", "succeeded", "failed", "expired",
                                             "refused")  # fmt: skip


class BulkSiteView(View, frozen=True, kw_only=True):
    """One site of a bulk command: its command's state, or ``refused`` (never sent)."""

    site_id: str
    name: str
    town: str
    state: BulkState
    waiting_for_site: bool
    error: str | None
    result_at: str | None
    command_id: str | None


class BulkView(View, frozen=True, kw_only=True):
    """A command sent to many sites, and how far it got (of the sites the reader covers)."""

    id: str
    name: str
    args: dict[str, Any]
    ttl_s: int
    target: dict[str, Any]
    issued_by: str
    issued_at: str | None
    sites: int
    """Sites of the target the reader covers."""
    counts: dict[str, int]
    """Sites per state (``pending`` … ``refused``)."""
    done: bool
    """No site is pending any more."""
    state: BulkState | None
    """The rows are of this state only (none: every state)."""
    matching: int
    """Sites of ``state`` (or all of them); ``rows`` may hold fewer (a limit)."""
    rows: list[BulkSiteView]
    """Per site, by town then id (empty in a list of bulk commands)."""


class TokenView(View, frozen=True, kw_only=True):
    """A token as listed: never its secret."""

    id: str
    name: str
    role: str
    created_at: str | None
    revoked_at: str | None
    towns: list[str] | None = None

    @classmethod
    def of(cls, info: TokenInfo) -> TokenView:
        return cls(id=info.token_id, name=info.name, role=info.role.value,
                   created_at=iso(info.created_at), revoked_at=iso(info.revoked_at),
                   towns=None if info.towns is None else sorted(info.towns))  # fmt: skip


class AuditView(View, frozen=True, kw_only=True):
    """One entry of the audit log (see :mod:`central.audit`)."""

    id: int
    at: str | None
    actor: str
    actor_id: str | None
    role: str | None
    source: str
    action: str
    target: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditView:
        return cls(id=entry.id, at=iso(entry.at), actor=entry.actor, actor_id=entry.actor_id,
                   role=entry.role, source=entry.source, action=entry.action,
                   target=entry.target, detail=entry.detail)  # fmt: skip


class TelemetrySeries(View, frozen=True, kw_only=True):
    """One series: raw points (``resolution_s`` 0) or per minute/hour mean, min, max, count."""

    site: str
    metric: str
    key: str
    resolution_s: int
    points: list[tuple[int, float, float, float, int]]


class FleetCounts(View, frozen=True, kw_only=True):
    """What ``/metrics`` exports about the fleet as a whole."""

    sites_online: int
    sites_offline: int
    alarms_active: dict[str, int]
    """Severity -> active alarms (every severity present, 0 if none)."""
    rejects: dict[str, int]
    """Reject reason -> payloads refused by ingest, summed over sites."""
    events_stored: int
    """Highest event row id: events committed."""
    commands_pending: int


class SiteGauge(View, frozen=True, kw_only=True):
    """One site's figures for ``/metrics`` (per-site series)."""

    id: str
    name: str
    town: str
    kind: str
    online: bool
    last_seen_at: datetime | None
    outbox_depth: int | None
    acked_seq: int
    max_seq: int
    config_drift: bool
    alarms_active: int


class QueueGauge(View, frozen=True, kw_only=True):
    """One service queue of one site for ``/metrics``."""

    site_id: str
    service: str
    waiting: int | None
    oldest_wait_s: int | None


class SiteReject(View, frozen=True, kw_only=True):
    site_id: str
    reason: str
    count: int


class SiteGauges(View, frozen=True, kw_only=True):
    """Every site's figures, its queues and its ingest reject counters (``/metrics``)."""

    sites: list[SiteGauge]
    queues: list[QueueGauge]
    rejects: list[SiteReject]


__all__ = [
    "BULK_STATES",
    "HEALTHS",
    "SEVERITY_RANK",
    "AdviceView",
    "AlarmBoard",
    "AlarmView",
    "AuditView",
    "BulkSiteView",
    "BulkState",
    "BulkView",
    "CommandState",
    "CommandView",
    "DeviceView",
    "EventView",
    "FleetCounts",
    "FleetTile",
    "GapView",
    "Health",
    "QueueGauge",
    "ServiceQueue",
    "SiteDetail",
    "SiteDrift",
    "SiteGauge",
    "SiteGauges",
    "SiteReject",
    "SiteState",
    "SiteSummary",
    "TelemetrySeries",
    "TokenView",
    "View",
    "WindowView",
    "command_state",
    "iso",
    "site_health",
    "state_of",
    "worst_severity",
]


# --------------------------------------------------------------------------- edge devices

DeviceRole = Literal["holder", "waiting", "replaced", "legacy"]


class SiteDeviceView(View, frozen=True, kw_only=True):
    """An edge device (journal) of a site and its part in numbering the site's tickets."""

    device: str
    """16 hex digits; ``""`` for an edge from before device identity."""
    role: DeviceRole
    epoch: int | None
    online: bool
    first_seen_at: str | None
    last_seen_at: str | None
    boot_id: str | None
    software: str | None
    session: int | None
    granted_at: str | None
    granted_by: str | None
    replaced_at: str | None
    restore_waits: bool
    """Granted; its restore waits until the replaced device has stopped numbering."""
    restored_day: str | None
    restored_tickets: int
    skipped: int

    @classmethod
    def of(cls, row: SiteDevice, holder: str | None) -> SiteDeviceView:
        state = row.state or {}
        restore = row.restore or {}
        role: DeviceRole
        if row.device == (holder if holder is not None else ""):
            role = "holder"
        elif row.device == "":
            role = "legacy"
        elif row.epoch is None:
            role = "waiting"
        else:
            role = "replaced"
        return cls(device=row.device, role=role, epoch=row.epoch, online=row.online,
                   first_seen_at=iso(row.first_seen_at), last_seen_at=iso(row.last_seen_at),
                   boot_id=state.get("boot_id"), software=state.get("software"),
                   session=state.get("session"), granted_at=iso(row.granted_at),
                   granted_by=row.granted_by, replaced_at=iso(row.replaced_at),
                   restore_waits=row.restore_due, restored_day=restore.get("day"),
                   restored_tickets=len(restore.get("tickets", [])),
                   skipped=int(restore.get("skipped", row.skip)))


class DiagnosticsView(View, frozen=True, kw_only=True):
    """What a device answered to ``cmd/diagnostics``: status and its recent log lines."""

    command_id: str
    site_id: str
    device: str
    received_at: str | None
    report: dict[str, Any]
    """The ``diag`` payload: ``status`` (numbering, seqs, outbox, tasks, devices, host) and
    ``logs`` (``ts``, ``level``, ``text``, secrets masked by the edge)."""

    @classmethod
    def of(cls, row: Diagnostics) -> DiagnosticsView:
        return cls(command_id=str(row.command_id), site_id=row.site_id, device=row.device,
                   received_at=iso(row.received_at), report=row.report)

"""ORM models of the central database (SQLAlchemy 2, typed ``Mapped[...]``).

The schema is created and upgraded only by Alembic (``central/migrations``,
run by :func:`central.db.migrate`); a test checks that the migrations and these
models agree. Portable between SQLite and PostgreSQL: no dialect-only types.

Tables::

    sites             registry (name, town, kind, position, expected config) + live state,
                      the device that numbers its tickets and its epoch
    site_devices      every edge device (journal) that spoke for a site: holder, waiting, replaced
    services          per site: code, name, SLA + live queue (waiting, oldest wait)
    windows           per site: number, services + live state (open/serving, ticket, staff)
    devices           per site: device id, kind + live health
    events            every committed business event, unique (site_id, seq)
    sequence_gaps     missing seq ranges of a site, open until filled
    help_calls        呼叫帮办 requests and their answer
    alarms            one active alarm per (site, device, type); cleared ones kept
    alarm_history     raised / repeated severity change / acknowledged / cleared
    ingest_rejects    bad payload counters per (site, reason)
    commands          remote commands and their results
    staffing_advisories  live staffing advice of the edges; at most one active per site
    telemetry_points  embedded telemetry sink: raw points
    telemetry_rollups embedded telemetry sink: 1-minute and 1-hour aggregates
    api_tokens        API tokens: id, SHA-256 of the secret, label, role, towns (see central.auth)
    diagnostics       the answers to cmd/diagnostics: status and recent log lines of a device
    ticket_links      a ticket's progress page: SHA-256 of its token -> site, ticket, expiry
    issuing_stops     emergency stops of ticket issuing for a site, a town or the city
    city_calendars    the city calendar's dated days, by version (the latest is pushed)
    ratings           好差评 records (one per rating or unrated offer) and their report status
    bad_ratings       差评 cases: the closed loop (contact, rectify, appeal, review)
    bad_rating_notes  what people did and wrote on a 差评 case
    staff             staff names per site (exports and rankings show names, not ids)
    rating_profiles   per site: region code and default department for the province's record
    audit             who changed what, when, from where: the central's one audit log
    releases          software releases registered for rollout (their build manifests)
    rollouts          staged rollouts of a release: canary, then town by town
    rollout_sites     each site of a rollout: its wave and how its upgrade went
    users             named people: login name, role, towns, scrypt password hash (central.accounts)
    login_sessions    dashboard sessions of a user or a token: idle and absolute expiry, logout
    bulk_commands     one command sent to many sites (a town, the city); its commands point here
    notify_held       robot notifications held during a route's quiet hours (central.notify)
    notify_claims     daily summaries and digests already sent, once across replicas

Times are timezone-aware UTC ``datetime`` (:class:`UtcDateTime`); edge wall
times stay unix milliseconds (``*_ms``) as they came, with their sync flag.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both engines (SQLite drops the offset on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored as VARCHAR on both engines (no native enum), so adding a value needs no DDL.
    return Enum(
        cls,
        native_enum=False,
        length=24,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def _one_active(name: str, *columns: str) -> Index:
    """A unique index over the rows not cleared yet: one active row per ``columns``."""
    return Index(name, *columns, unique=True, sqlite_where=text("cleared_at IS NULL"),
                 postgresql_where=text("cleared_at IS NULL"))


class SiteKind(enum.StrEnum):
    CITY_HALL = "city_hall"
    DISTRICT = "district"
    VILLAGE = "village"


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    MAJOR = "major"
    CRITICAL = "critical"


class AlarmType(enum.StrEnum):
    SITE_OFFLINE = "site_offline"
    DEVICE_FAULT = "device_fault"
    HELP_UNANSWERED = "help_unanswered"
    WAITING_OVER_SLA = "waiting_over_sla"
    SERVING_OVERTIME = "serving_overtime"
    CLOCK_NOT_SYNCED = "clock_not_synced"
    CONFIG_DRIFT = "config_drift"
    OUTBOX_BACKLOG = "outbox_backlog"
    SEQUENCE_GAP = "sequence_gap"
    TAKEOVER_PENDING = "takeover_pending"
    """A new device of the site (a replaced Pi or SD card) waits for an operator to let it
    take over the site's numbers."""
    DEVICE_CONFLICT = "device_conflict"
    """Two devices may have numbered one site at once: a replaced one that kept issuing
    while it could not hear it was replaced, or one without device identity."""
    STAFFING_ADVICE = "staffing_advice"  # not a fault: a move the site's manager may make
    BAD_RATING = "bad_rating"


class AlarmAction(enum.StrEnum):
    RAISED = "raised"
    SEVERITY_CHANGED = "severity_changed"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


class CommandStatus(enum.StrEnum):
    SENT = "sent"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"  # no result before expires_at: the edge will not run it any more


def config_drift(expected: str | None, reported: str | None) -> bool:
    """A config version is expected and the site reports another one (or none)."""
    return expected is not None and reported != expected


class Site(Base):
    """A hall or village station. Registry columns first, then the live state ingest keeps."""

    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    town: Mapped[str] = mapped_column(String(50), index=True)
    kind: Mapped[SiteKind] = mapped_column(_enum(SiteKind))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    expected_config_version: Mapped[str | None] = mapped_column(String(64))
    reported_config_version: Mapped[str | None] = mapped_column(String(64))
    config_version_changed_at: Mapped[datetime | None]
    """When expected or reported last changed: drift is judged from here."""
    software_version: Mapped[str | None] = mapped_column(String(64))
    """What the site's edge reports it runs (``state.software``, e.g. ``onedoor-0.1.1``)."""
    expected_release: Mapped[str | None] = mapped_column(String(64))
    """The release the site should run (``0.1.1``): set when a rollout upgrades or rolls
    the site back, or by an admin; ``software_version`` differing from it is software drift."""
    # registry kept by people (central.registry): opening hours, retirement
    hours_open: Mapped[str | None] = mapped_column(String(5))
    """Opening hours ``HH:MM`` (with ``hours_close``, ``hours_reset`` and optionally
    ``hours_last_ticket``); all ``None``: the fleet's default hours of the edge role."""
    hours_close: Mapped[str | None] = mapped_column(String(5))
    hours_reset: Mapped[str | None] = mapped_column(String(5))
    hours_last_ticket: Mapped[str | None] = mapped_column(String(5))
    registry_revision: Mapped[int] = mapped_column(
        Integer, default=0, server_default=text("0")
    )
    """Counts the registry changes that alter the site's config (see central.registry)."""
    retired_at: Mapped[datetime | None]
    """Set when the site is retired: it leaves the fleet, its history stays."""

    # live state
    state: Mapped[dict[str, Any] | None]
    """The last accepted ``state`` payload; a newer one replaces it per ``state_supersedes``."""
    online: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    mqtt_session: Mapped[int | None] = mapped_column(BigInteger)
    boot_id: Mapped[str | None] = mapped_column(String(64))
    status_changed_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]
    clock_synced: Mapped[bool | None] = mapped_column(Boolean)
    outbox_depth: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[dict[str, Any] | None]
    """Last host figures: cpu_temp_c, load1, mem_used_pct, disk_used_pct, uptime_s."""
    last_telemetry_ms: Mapped[int | None] = mapped_column(BigInteger)
    acked_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    """Highest seq of the holder's epoch such that every one of the epoch up to it is
    committed (what ``ack`` carries); its epoch's base before the first."""
    max_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    """The epoch of the device that numbers the site's tickets (seqs ``epoch << 32 | n``)."""
    holder: Mapped[str | None] = mapped_column(String(16))
    """That device's id; None until a device with identity spoke for the site."""
    reported_seq: Mapped[int | None] = mapped_column(BigInteger)
    """The holder's last journaled seq as its latest telemetry reported it: above
    ``acked_seq``, events it holds that the central has not (yet)."""

    @property
    def config_drift(self) -> bool:
        """The site reports another config version than the registry expects (at once;
        the ``config_drift`` alarm waits ``config_drift_after_s`` before it is raised)."""
        return config_drift(self.expected_config_version, self.reported_config_version)

    # Deleting a site deletes its rows through ON DELETE CASCADE, without loading them.
    services: Mapped[list[Service]] = relationship(
        back_populates="site", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )
    windows: Mapped[list[Window]] = relationship(
        back_populates="site", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )
    devices: Mapped[list[Device]] = relationship(
        back_populates="site", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class Service(Base):
    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("site_id", "code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str | None] = mapped_column(String(2))
    sla_s: Mapped[int | None] = mapped_column(Integer)
    # live queue
    waiting: Mapped[int | None] = mapped_column(Integer)
    oldest_wait_s: Mapped[int | None] = mapped_column(Integer)
    wait_p50_s: Mapped[int | None] = mapped_column(Integer)
    wait_p90_s: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime | None]

    site: Mapped[Site] = relationship(back_populates="services", lazy="raise")


class Window(Base):
    __tablename__ = "windows"
    __table_args__ = (UniqueConstraint("site_id", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(100))
    services: Mapped[list[str]] = mapped_column(default=list)
    priority: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # live
    state: Mapped[str] = mapped_column(String(16), default="closed", server_default="closed")
    ticket: Mapped[str | None] = mapped_column(String(8))
    staff: Mapped[str | None] = mapped_column(String(64))
    last_event_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    updated_at: Mapped[datetime | None]

    site: Mapped[Site] = relationship(back_populates="windows", lazy="raise")


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("site_id", "device"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    device: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="ok", server_default="ok")
    detail: Mapped[str | None] = mapped_column(String(32))
    last_event_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    """The site seq up to which ``status`` is known: the last device event applied, or a
    newer telemetry snapshot's ``outbox.last_seq`` (which has seen the events before it)."""
    changed_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]
    """When a report last changed kind, status or detail: a report that changes nothing is
    not written (an UPDATE per device and snapshot was most of the ingest's CPU at 20,000
    sites)."""

    site: Mapped[Site] = relationship(back_populates="devices", lazy="raise")


class EventRecord(Base):
    """A committed business event; ``body`` is the event body as received (with ``type``)."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("site_id", "seq"),
        Index("ix_events_type_ts_ms", "type", "ts_ms"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[uuid.UUID]
    type: Mapped[str] = mapped_column(String(32))
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    clock_synced: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[datetime]
    body: Mapped[dict[str, Any]]


class SequenceGap(Base):
    """Seqs ``first_seq..last_seq`` of a site are missing; ``filled_at`` set once they arrive."""

    __tablename__ = "sequence_gaps"
    __table_args__ = (Index("ix_sequence_gaps_site_id_filled_at", "site_id", "filled_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    detected_at: Mapped[datetime]
    filled_at: Mapped[datetime | None]


class HelpCall(Base):
    __tablename__ = "help_calls"
    __table_args__ = (Index("ix_help_calls_site_id_resolved_at", "site_id", "resolved_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    button: Mapped[str] = mapped_column(String(64))
    location: Mapped[str | None] = mapped_column(String(64))
    requested_seq: Mapped[int] = mapped_column(BigInteger)
    requested_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None]


class Alarm(Base):
    """One alarm. At most one active (``cleared_at`` null) per (site, device, type)."""

    __tablename__ = "alarms"
    __table_args__ = (
        _one_active("uq_alarms_active", "site_id", "device", "type"),
        Index("ix_alarms_cleared_at_severity", "cleared_at", "severity"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    device: Mapped[str] = mapped_column(String(64), default="", server_default="")
    """Device, window, service or button the alarm is about; empty for the whole site."""
    type: Mapped[AlarmType] = mapped_column(_enum(AlarmType))
    severity: Mapped[Severity] = mapped_column(_enum(Severity))
    message: Mapped[str] = mapped_column(String(400))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    raised_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    cleared_at: Mapped[datetime | None]

    history: Mapped[list[AlarmHistory]] = relationship(
        back_populates="alarm", lazy="raise", order_by="AlarmHistory.id"
    )


class AlarmHistory(Base):
    __tablename__ = "alarm_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    action: Mapped[AlarmAction] = mapped_column(_enum(AlarmAction))
    severity: Mapped[Severity] = mapped_column(_enum(Severity))
    actor: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(400))

    alarm: Mapped[Alarm] = relationship(back_populates="history", lazy="raise")


class IngestReject(Base):
    """How many payloads of a site were refused for a reason (site ``""``: topic unparsable)."""

    __tablename__ = "ingest_rejects"

    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    first_at: Mapped[datetime]
    last_at: Mapped[datetime]
    last_detail: Mapped[str] = mapped_column(Text)


class Command(Base):
    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_site_id_issued_at", "site_id", "issued_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]]
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    issued_by: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[CommandStatus] = mapped_column(_enum(CommandStatus))
    error: Mapped[str | None] = mapped_column(String(400))
    result_at: Mapped[datetime | None]
    bulk_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("bulk_commands.id", ondelete="SET NULL"), index=True
    )
    """The bulk command this one was part of (none for a command to one site)."""


class AdviceEnd(enum.StrEnum):
    """Why a staffing advisory ended."""

    EDGE = "edge"  # the edge said it is no longer needed
    REPLACED = "replaced"  # another breach or another move took its place
    EXPIRED = "expired"  # the edge stopped renewing it (stopped, or offline)


class StaffingAdvisory(Base):
    """One advisory of a site's live staffing advice (the edge's ``advice`` messages),
    active while ``cleared_at`` is null: at most one per site."""

    __tablename__ = "staffing_advisories"
    __table_args__ = (
        _one_active("uq_staffing_advisories_active", "site_id"),
        Index("ix_staffing_advisories_site_id_id", "site_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    advisory_id: Mapped[uuid.UUID]
    """The edge's id: the same while the breaching services and the move stay the same."""
    since_ms: Mapped[int] = mapped_column(BigInteger)
    """When the edge first gave it (edge clock, unix ms)."""
    session: Mapped[int] = mapped_column(BigInteger)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    """MQTT session and edge time of the latest message applied: orders the next one."""
    raised_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    """Cleared then unless renewed (arrival time plus the message's own time to live)."""
    services: Mapped[list[str]] = mapped_column(default=list)
    """The services whose p90 wait will pass the SLA."""
    move: Mapped[dict[str, Any] | None]
    """``kind``, ``windows``, ``services``, ``count``; null: no move found, more staff."""
    outlook: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """``horizon_s``, ``before`` and ``after`` (each service judged, as the edge sent them)."""
    message_zh: Mapped[str] = mapped_column(String(400))
    message_en: Mapped[str] = mapped_column(String(400))
    cleared_at: Mapped[datetime | None]
    cleared_by: Mapped[AdviceEnd | None] = mapped_column(_enum(AdviceEnd))


class TelemetryPoint(Base):
    """Raw telemetry of the embedded sink: ``metric`` (e.g. ``queue.waiting``) and ``key``."""

    __tablename__ = "telemetry_points"
    __table_args__ = (
        Index("ix_telemetry_points_series", "site_id", "metric", "key", "ts_ms"),
        Index("ix_telemetry_points_ts_ms", "ts_ms"),  # retention deletes by time alone
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(64))
    """Series key inside the metric: service code, device id; empty for site-wide metrics."""
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)


class TelemetryRollup(Base):
    """Aggregates per ``resolution_s`` bucket (60 and 3600), updated on every write."""

    __tablename__ = "telemetry_rollups"

    resolution_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[float] = mapped_column(Float)
    minimum: Mapped[float] = mapped_column(Float)
    maximum: Mapped[float] = mapped_column(Float)


class SiteDevice(Base):
    """An edge device of a site: its journal's identity, its epoch, its last state.

    The holder (``sites.holder``) numbers the site's tickets; a device without an epoch
    waits for an operator's takeover; one with ``replaced_at`` gave the site up, and
    its epoch's stream (``acked_seq``, ``max_seq``) is acknowledged here. Device ``""``
    is the edge of a site from before device identity (its states carry none).
    """

    __tablename__ = "site_devices"

    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"),
                                         primary_key=True)
    device: Mapped[str] = mapped_column(String(16), primary_key=True)
    epoch: Mapped[int | None] = mapped_column(BigInteger)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    online: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    state: Mapped[dict[str, Any] | None]
    """Its last accepted ``state`` payload (``state_supersedes`` within the device)."""
    granted_at: Mapped[datetime | None]
    granted_by: Mapped[str | None] = mapped_column(String(100))
    replaced_at: Mapped[datetime | None]
    acked_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    max_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    restore: Mapped[dict[str, Any] | None]
    """What the central handed it (day, counters, tickets, windows, skipped): the start of
    its day when it is replaced in turn."""
    restore_due: Mapped[bool] = mapped_column(Boolean, default=False,
                                              server_default=text("false"))
    """Granted, its restore waits until the device it replaces has stopped numbering."""
    skip: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """Numbers per prefix the operator asked to leave unused above the restored counters."""


class Diagnostics(Base):
    """The ``diag`` answer to one ``cmd/diagnostics`` command."""

    __tablename__ = "diagnostics"

    command_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("commands.id", ondelete="CASCADE"), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    device: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime]
    report: Mapped[dict[str, Any]]
    """The ``diag`` payload (status, log lines) as received."""


class ApiToken(Base):
    """An API token. Only the SHA-256 of its secret is kept: a leaked database leaks no token."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(8), primary_key=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    towns: Mapped[list[str] | None] = mapped_column(JSON)
    """The towns it may read and act on; ``None``: the whole city."""


class StopScope(enum.StrEnum):
    SITE = "site"
    TOWN = "town"
    CITY = "city"


class IssuingStop(Base):
    """An emergency stop of ticket issuing (台风, an outage): no ticket at the sites it
    covers until it is lifted; tickets issued are served. Pushed until each site holds
    it (``state.stop``)."""

    __tablename__ = "issuing_stops"
    __table_args__ = (Index("ix_issuing_stops_lifted_at", "lifted_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    scope: Mapped[StopScope] = mapped_column(_enum(StopScope))
    target: Mapped[str] = mapped_column(String(64))
    """The site id, the town's name, or empty for the city."""
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(64))
    lifted_at: Mapped[datetime | None]
    lifted_by: Mapped[str | None] = mapped_column(String(64))


class CityCalendar(Base):
    """A version of the city calendar's dated days; the latest goes to every site."""

    __tablename__ = "city_calendars"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    holidays: Mapped[list[str]]
    workdays: Mapped[list[str]]
    special: Mapped[list[str]]
    created_at: Mapped[datetime] = mapped_column(index=True)
    created_by: Mapped[str | None] = mapped_column(String(64))


class BookingStatus(enum.StrEnum):
    BOOKED = "booked"
    CANCELLED = "cancelled"
    CHECKED_IN = "checked_in"


class Booking(Base):
    """A booking (预约) a booking platform pushed: a site, a service, a time slot of a day.

    The person is kept only as the salted hash of the ID number the platform sent
    (:func:`central.bookings.person_hash`), never the number. A booking still
    ``booked`` when its day is over is a no-show (:mod:`central.bookings`).
    """

    __tablename__ = "bookings"
    __table_args__ = (Index("ix_bookings_day_site", "day", "site_id"),
                      Index("ix_bookings_person_day", "person", "day"))

    code: Mapped[str] = mapped_column(String(10), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    service: Mapped[str] = mapped_column(String(64))
    day: Mapped[str] = mapped_column(String(10))
    """The local date ``YYYY-MM-DD``."""
    slot_start: Mapped[str] = mapped_column(String(5))
    slot_end: Mapped[str] = mapped_column(String(5))
    person: Mapped[str] = mapped_column(String(64))
    """HMAC-SHA256 of the ID number with the central's salt, hex."""
    reference: Mapped[str | None] = mapped_column(String(64))
    """The platform's own id of the booking, if it sent one."""
    status: Mapped[BookingStatus] = mapped_column(_enum(BookingStatus))
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(64))
    cancelled_at: Mapped[datetime | None]
    checked_in_at: Mapped[datetime | None]
    ticket: Mapped[str | None] = mapped_column(String(8))
    """The ticket the check-in took."""
    changed_at: Mapped[datetime | None]
    """The last change of day, slot or service (:meth:`central.bookings.Bookings.change`)."""


class SiteBookingRules(Base):
    """A site's booking rules (:mod:`central.booking_rules`): quotas per slot, its hours."""

    __tablename__ = "booking_rules"

    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"),
                                         primary_key=True)
    rules: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]
    updated_by: Mapped[str | None] = mapped_column(String(64))


class TicketLink(Base):
    """A ticket's progress page, found by the SHA-256 of the token its QR carries.

    Written when the ticket's ``ticket.issued`` event is committed. The token itself
    is kept nowhere here (nor in the event stored): a copied database opens no page.
    """

    __tablename__ = "ticket_links"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    ticket: Mapped[str] = mapped_column(String(8))
    service: Mapped[str] = mapped_column(String(64))
    issued_seq: Mapped[int] = mapped_column(BigInteger)
    issued_ms: Mapped[int] = mapped_column(BigInteger)
    wait_p50_s: Mapped[int | None] = mapped_column(Integer)
    """The wait printed on the ticket (seconds from issue), if any."""
    wait_p90_s: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    """The end of the local day of issue: the page answers 410 from then, and the row goes."""
class AuditEntry(Base):
    """One change made by a person or a tool: who, from where, what, to which object.

    Not tied to other tables by foreign keys: the log outlives what it talks about.
    """

    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_target_at", "target", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(100))
    """Who: the token's name, or the system user who ran the command line."""
    actor_id: Mapped[str | None] = mapped_column(String(64))
    """The token id (``None`` for the command line)."""
    role: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(100))
    """From where: the client address, or ``cli@<host>``."""
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(100))
    """What was changed: a site id, ``token:<id>``, ``alarm:<id>``, ``registry``."""
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class RolloutStatus(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"  # past its error threshold (or a canary failed): resume or cancel
    DONE = "done"
    CANCELLED = "cancelled"


class RolloutStep(enum.StrEnum):
    """Where one site of a rollout is."""

    PENDING = "pending"
    DEFERRED = "deferred"  # open or serving when its turn came: tried again at the next run
    UPGRADING = "upgrading"
    UPGRADED = "upgraded"
    ROLLED_BACK = "rolled_back"  # unhealthy on the release: back on the one before
    FAILED = "failed"  # neither the release nor the one before came up healthy


class Release(Base):
    """A release that may be rolled out: the manifest ``onedoor release build`` wrote."""

    __tablename__ = "releases"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    software: Mapped[str] = mapped_column(String(80))
    """What its daemons report (``onedoor-<version>``)."""
    registered_at: Mapped[datetime]
    manifest: Mapped[dict[str, Any]]


class Rollout(Base):
    """A staged rollout of one release to a set of sites, wave by wave."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    release: Mapped[str] = mapped_column(ForeignKey("releases.version"), index=True)
    status: Mapped[RolloutStatus] = mapped_column(_enum(RolloutStatus))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(100))
    max_failures: Mapped[int] = mapped_column(Integer)
    """It stops when more sites than this failed (a failed canary stops it at once)."""
    stopped_reason: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None]


class RolloutSite(Base):
    __tablename__ = "rollout_sites"
    __table_args__ = (UniqueConstraint("rollout_id", "site_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"))
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    wave: Mapped[int] = mapped_column(Integer)
    """0: the canary; then one wave per town, in the rollout's town order."""
    position: Mapped[int] = mapped_column(Integer)
    step: Mapped[RolloutStep] = mapped_column(_enum(RolloutStep))
    from_release: Mapped[str | None] = mapped_column(String(64))
    """The release it ran before its upgrade (what a rollback returns to)."""
    detail: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    updated_at: Mapped[datetime | None]
class User(Base):
    """A named person who logs in to the dashboards (see :mod:`central.accounts`)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    towns: Mapped[list[str] | None] = mapped_column(JSON)
    """The towns the person sees and acts on; ``None``: the whole city."""
    password_hash: Mapped[str] = mapped_column(String(200))
    """``scrypt$n$r$p$salt$hash`` (base64), never the password."""
    created_at: Mapped[datetime]
    password_changed_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]


class LoginSession(Base):
    """A dashboard session: of a user or of a token; the cookie carries the signed id."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_id: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    """The absolute end (``session_max_s`` after the login)."""
    ended_at: Mapped[datetime | None]
    """Logged out, or ended by an admin (disable, password change)."""
    source: Mapped[str] = mapped_column(String(100))


class BulkCommand(Base):
    """One command sent to many sites at once; each site's command row points here."""

    __tablename__ = "bulk_commands"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]]
    ttl_s: Mapped[int] = mapped_column(Integer)
    target: Mapped[dict[str, Any]]
    """What was asked: ``{"all": true}``, ``{"towns": [...]}`` or ``{"sites": [...]}``."""
    issued_by: Mapped[str] = mapped_column(String(100))
    issued_at: Mapped[datetime] = mapped_column(index=True)
    sites: Mapped[int] = mapped_column(Integer)
    """Sites in the target (sent or refused)."""
    refused: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Site id -> why it was not sent (the per-site command limit)."""


class NotifyHeld(Base):
    """A notification held during its route's quiet hours, summarised when they end."""

    __tablename__ = "notify_held"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    route: Mapped[str] = mapped_column(String(64), index=True)
    held_at: Mapped[datetime]
    notice: Mapped[dict[str, Any]]


class NotifyClaim(Base):
    """A summary sent (or being sent) by one replica: the primary key makes it once."""

    __tablename__ = "notify_claims"

    route: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    period: Mapped[str] = mapped_column(String(32), primary_key=True)
    claimed_at: Mapped[datetime]


# --------------------------------------------------------------------------- 好差评


class RatingOrigin(enum.StrEnum):
    CITIZEN = "citizen"  # rating.given
    UNRATED = "unrated"  # rating.missed: offered, not rated (未评价)


class ReportStatus(enum.StrEnum):
    """Where a record stands with the provincial platform (see central.province)."""

    PENDING = "pending"  # waiting for its turn, or for a retry after a failure
    SENT = "sent"  # the platform took it
    DUPLICATE = "duplicate"  # the platform holds a rating of that 办件 already (一次一评)
    REJECTED = "rejected"  # the platform refused the record itself: not retried
    FAILED = "failed"  # no answer after every attempt: an operator retries it
    SKIPPED = "skipped"  # not reportable: no 办件编号, or unrated without 默认好评


class BadRatingStatus(enum.StrEnum):
    OPEN = "open"  # waiting for someone to contact the citizen
    CONTACTED = "contacted"  # 回访 done, rectification under way
    APPEALED = "appealed"  # the window says the rating is wrong or malicious: under review
    RECTIFIED = "rectified"  # 整改 done: closed
    REVOKED = "revoked"  # appeal upheld: the rating no longer counts; closed


class RatingRecord(Base):
    """One 好差评 record: a rating given, or an offer left unrated, at a window.

    Written by ingest from ``rating.given`` / ``rating.missed`` (``rating.reason`` adds
    to ``reasons``), so its fields are the event's; names and codes the edge does not
    know (staff name, region code) are looked up when the record is exported.
    """

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("site_id", "seq"),
        Index("ix_ratings_day", "day"),
        Index("ix_ratings_site_id_case_no", "site_id", "case_no"),
        Index("ix_ratings_report_status_report_next_at", "report_status", "report_next_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    """Seq of the ``rating.given`` or ``rating.missed`` event."""
    event_id: Mapped[uuid.UUID]
    """The event's id: the record's stable id upward (评价编号), the same on every retry."""
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    day: Mapped[str] = mapped_column(String(10))
    """Business day (UTC+8) of ``ts_ms``, ``YYYY-MM-DD``."""
    ticket: Mapped[str] = mapped_column(String(8))
    window: Mapped[int] = mapped_column(Integer)
    staff_id: Mapped[str] = mapped_column(String(64))
    origin: Mapped[RatingOrigin] = mapped_column(_enum(RatingOrigin))
    value: Mapped[int | None] = mapped_column(Integer)
    """1..5 as given; None when unrated."""
    channel: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(default=list)
    case_no: Mapped[str | None] = mapped_column(String(64))
    case_source: Mapped[str | None] = mapped_column(String(16))
    item_code: Mapped[str | None] = mapped_column(String(64))
    item_name: Mapped[str | None] = mapped_column(String(64))
    department: Mapped[str | None] = mapped_column(String(64))
    department_name: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    """Set when an appeal against this 差评 was upheld: it no longer counts anywhere."""
    report_status: Mapped[ReportStatus] = mapped_column(_enum(ReportStatus))
    report_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    report_next_at: Mapped[datetime | None]
    """When the reporter may (re)send it; None once final."""
    report_error: Mapped[str | None] = mapped_column(String(400))
    reported_at: Mapped[datetime | None]


class BadRatingCase(Base):
    """A 差评 (不满意 or 非常不满意) and the town manager's closed loop on it."""

    __tablename__ = "bad_ratings"
    __table_args__ = (Index("ix_bad_ratings_status_town", "status", "town"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rating_id: Mapped[int] = mapped_column(
        ForeignKey("ratings.id", ondelete="CASCADE"), unique=True
    )
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    town: Mapped[str] = mapped_column(String(50))
    """The site's town when the case opened: the manager who owns it."""
    status: Mapped[BadRatingStatus] = mapped_column(_enum(BadRatingStatus))
    opened_at: Mapped[datetime]
    contact_due_at: Mapped[datetime]
    rectify_due_at: Mapped[datetime]
    contacted_at: Mapped[datetime | None]
    rectified_at: Mapped[datetime | None]
    appealed_at: Mapped[datetime | None]
    appeal_from: Mapped[str | None] = mapped_column(String(16))
    """The status the case had when it was appealed (a rejected appeal returns to it)."""
    reviewed_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]

    notes: Mapped[list[BadRatingNote]] = relationship(
        back_populates="case", lazy="raise", order_by="BadRatingNote.id"
    )


class BadRatingNote(Base):
    """One step on a 差评 case: who, when, from where, what they did and wrote."""

    __tablename__ = "bad_rating_notes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("bad_ratings.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(16))
    """note, contact, rectify, appeal, uphold, reject."""
    actor: Mapped[str] = mapped_column(String(100))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(String(1000))

    case: Mapped[BadRatingCase] = relationship(back_populates="notes", lazy="raise")


class StaffMember(Base):
    """A staff member's name at a site, keyed by the id (工号) the windows sign in with."""

    __tablename__ = "staff"

    site_id: Mapped[str] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    staff_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class RatingProfile(Base):
    """What the province's record needs of a site that the edge does not send."""

    __tablename__ = "rating_profiles"

    site_id: Mapped[str] = mapped_column(
        ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    region_code: Mapped[str] = mapped_column(String(12))
    """行政区划代码 (GB/T 2260, 12 digits with the 统计用区划代码 of towns and villages)."""
    department: Mapped[str | None] = mapped_column(String(64))
    """The department (实施机构) of 办件 whose record names none."""
    department_name: Mapped[str | None] = mapped_column(String(64))


__all__ = [
    "AdviceEnd",
    "Alarm",
    "AlarmAction",
    "AlarmHistory",
    "AlarmType",
    "ApiToken",
    "AuditEntry",
    "BadRatingCase",
    "BadRatingNote",
    "BadRatingStatus",
    "Base",
    "Booking",
    "BookingStatus",
    "BulkCommand",
    "CityCalendar",
    "Command",
    "CommandStatus",
    "Device",
    "Diagnostics",
    "EventRecord",
    "HelpCall",
    "IngestReject",
    "IssuingStop",
    "LoginSession",
    "NotifyClaim",
    "NotifyHeld",
    "RatingOrigin",
    "RatingProfile",
    "RatingRecord",
    "Release",
    "ReportStatus",
    "Rollout",
    "RolloutSite",
    "RolloutStatus",
    "RolloutStep",
    "SequenceGap",
    "Service",
    "Severity",
    "Site",
    "SiteDevice",
    "SiteKind",
    "StaffMember",
    "StaffingAdvisory",
    "StopScope",
    "TelemetryPoint",
    "TelemetryRollup",
    "TicketLink",
    "User",
    "UtcDateTime",
    "Window",
    "config_drift",
]

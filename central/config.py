"""Settings of the central service: one typed table of name, default and help.

Sources, later ones win: the defaults below, a TOML file (keys of the table, at
top level or under ``[central]``), then environment variables
``ONEDOOR_CENTRAL_<NAME>`` (upper case). Every value is validated at start;
an unknown key or a malformed value raises :class:`ConfigError` naming it.

::

    config = load_config(Path("/etc/onedoor/central.toml"))
    config.database_url, config.mqtt_host, config.influx_url, ...
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from central.errors import ConfigError
from central.workdays import WorkCalendar

ENV_PREFIX: Final = "ONEDOOR_CENTRAL_"


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str


def _setting(default: Any, help_text: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclass(frozen=True, slots=True)
class CentralConfig:
    """Every setting; the field metadata holds the help text (see :data:`SETTINGS`)."""

    database_url: str = _setting(
        "sqlite:///onedoor-central.db",
        "SQLAlchemy URL: sqlite:///path.db (default) or postgresql+psycopg://user@host/db",
    )
    mqtt_host: str = _setting("127.0.0.1", "MQTT broker host")
    mqtt_port: int = _setting(1883, "MQTT broker port (8883 for TLS)")
    mqtt_username: str = _setting("", "MQTT user name (empty: anonymous)")
    mqtt_password: str = _setting("", "MQTT password")
    mqtt_tls: bool = _setting(False, "connect with TLS")
    mqtt_ca_file: str = _setting("", "CA bundle for the broker certificate (empty: system CAs)")
    mqtt_client_id: str = _setting(
        "onedoor-central-1", "MQTT client id; unique per central replica, stable across restarts"
    )
    mqtt_group: str = _setting(
        "onedoor-central", "shared-subscription group: replicas in one group split the load"
    )
    mqtt_protocol: str = _setting(
        "5",
        "MQTT 5 (shared subscriptions, session expiry) or 3.1.1 for brokers without them "
        "(the demo's embedded amqtt): plain subscriptions, so run one replica only",
    )
    mqtt_session_expiry_s: int = _setting(
        120,
        "how long the broker keeps a stopped replica's session and queue; keep it short: "
        "Mosquitto goes on sending the stopped replica its share of the events until then "
        "(nothing is lost either way: the edges resend what the central has not acked)",
    )
    batch_max_messages: int = _setting(
        2000,
        "commit after this many messages (a backlog is taken this many at a time, so batches "
        "grow with the arrival rate: fewer round trips per event when busy) ...",
    )
    batch_max_wait_ms: int = _setting(50, "... or this long after the first one")
    influx_url: str = _setting("", "InfluxDB 2 URL; empty: keep telemetry in the central DB")
    influx_org: str = _setting("onedoor", "InfluxDB organisation")
    influx_bucket: str = _setting("onedoor", "InfluxDB bucket")
    influx_token: str = _setting("", "InfluxDB API token")
    influx_batch_size: int = _setting(1000, "points per InfluxDB write")
    influx_flush_interval_ms: int = _setting(1000, "flush InfluxDB batches at least this often")
    telemetry_raw_days: int = _setting(1, "embedded sink: keep raw points this many days")
    telemetry_minute_days: int = _setting(30, "embedded sink: keep 1-minute rollups this long")
    webhook_url: str = _setting("", "POST alarm notifications here (empty: none)")
    webhook_timeout_s: float = _setting(5.0, "timeout of one webhook call (and of one robot call)")
    notify_routes_file: str = _setting(
        "", "TOML file of the managers' 企业微信/钉钉 robot routes: towns, severities, quiet "
        "hours, daily summary (see docs/NOTIFY.md); empty: no robots"
    )
    dashboard_url: str = _setting(
        "", "the dashboards' address as managers reach them (https://onedoor.example.cn): "
        "robot messages link to the site's page under it"
    )
    session_idle_s: int = _setting(
        1800, "a dashboard session ends after this long without a request (open pages' live "
        "streams count as requests)"
    )
    session_max_s: int = _setting(
        12 * 3600, "a dashboard session ends this long after the login, used or not"
    )
    dashboard_token_login: bool = _setting(
        True, "the login page also takes an API token (machines and kiosks); people log in "
        "with their own account (onedoor central user create)"
    )
    alarm_tick_s: float = _setting(15.0, "how often time-based alarm rules run")
    offline_after_s: int = _setting(180, "site offline when nothing was heard for this long")
    help_unanswered_s: int = _setting(120, "呼叫帮办 not acknowledged after this long")
    default_sla_s: int = _setting(1800, "waiting limit of a service without its own SLA")
    outbox_backlog: int = _setting(500, "outbox depth above which a site is backlogged")
    rate_telemetry_per_s: float = _setting(
        1.0, "telemetry a site may send per second, sustained (edges send one per 5-60 s)"
    )
    rate_telemetry_burst: int = _setting(30, "... and in a burst; beyond, dropped and counted")
    rate_messages_per_s: float = _setting(
        1000.0,
        "other messages (events, state, results) a site may send per second, sustained; "
        "generous, as an edge catching up after an outage resends its backlog",
    )
    rate_messages_burst: int = _setting(
        10000, "... and in a burst; beyond, dropped (events come back: the edge resends)"
    )
    http_allowed_hosts: str = _setting(
        "localhost,127.0.0.1,::1",
        "Host headers this central answers (comma-separated names, *.example.cn for a domain, "
        "* for any; ports ignored); others get 400. Add the name the dashboards are reached "
        "by behind the reverse proxy",
    )
    http_max_body_bytes: int = _setting(
        65536, "largest request body; a larger one gets 413 before it is read (no auth needed)"
    )
    login_attempts_per_min: float = _setting(
        10.0, "dashboard logins one client address may try per minute, sustained ..."
    )
    login_attempts_burst: int = _setting(
        20, "... and in a burst; beyond, 429 with Retry-After (right or wrong token alike)"
    )
    sse_streams_per_session: int = _setting(
        8, "live streams (open dashboard tabs) one login session may hold; beyond, 429"
    )
    sse_streams_max: int = _setting(
        500, "live streams this process serves in all (each site or alarm stream re-renders "
        "once a second); beyond, 429"
    )
    command_limit_per_site: int = _setting(
        10, "commands one site may be sent within command_limit_window_s; beyond, 429 with "
        "Retry-After (a flood of announcements would hold back ticket calls)"
    )
    command_limit_window_s: int = _setting(60, "... the window of command_limit_per_site")
    metrics_per_site: bool = _setting(
        True,
        "/metrics also exports per-site series (about ten lines per site and service); "
        "turn off for a province-size fleet if Prometheus should hold fleet totals only",
    )
    progress_public_url: str = _setting(
        "",
        "public base URL of the citizens' progress pages, the edges' progress.url "
        "(https://q.example.gov.cn): its host is answered for /q/ pages only, no dashboards; "
        "empty: the pages are served on the dashboards' hosts alone",
    )
    progress_stale_s: int = _setting(
        150,
        "a site's progress older than this is shown as the last known state, not live "
        "(edges send one at least every minute while connected)",
    )
    progress_requests_per_min: float = _setting(
        30.0,
        "loads, polls and stream openings of one ticket's progress page per minute (per "
        "ticket, not per address: a hall's Wi-Fi puts hundreds of phones behind one) ...",
    )
    progress_requests_burst: int = _setting(30, "... and in a burst; beyond, 429")
    progress_misses_per_min: float = _setting(
        10.0, "unknown progress tokens one client address may try per minute (no guessing)"
    )
    progress_misses_burst: int = _setting(20, "... and in a burst; beyond, 429")
    progress_streams_per_ticket: int = _setting(
        4, "live progress streams open at once for one ticket (the citizen's phones)"
    )
    progress_streams_max: int = _setting(
        20000, "live progress streams this process serves in all; beyond, pages poll instead"
    )
    gap_alarm_after_s: int = _setting(300, "sequence gap still open after this long")
    config_drift_after_s: int = _setting(600, "config version differing this long is drift")
    events_retention_days: int = _setting(
        400, "business events older than this leave the database once their site's edge "
        "has them acknowledged, with the sequence gaps filled and help calls resolved "
        "before then (statistics reach back this far: 400 compares a month with the same "
        "month a year before); 0 keeps them forever"
    )
    alarms_retention_days: int = _setting(
        180, "cleared alarms (with their history) and ended staffing advisories older than "
        "this are deleted; an active one never is; 0 keeps them forever"
    )
    commands_retention_days: int = _setting(
        90, "commands issued, expired and answered more than this long ago are deleted; "
        "0 keeps them forever"
    )
    retention_interval_s: int = _setting(
        3600, "how often the service deletes what is past the retention settings (in "
        "bounded batches, taking turns with ingest)"
    )
    rating_default_value: int = _setting(
        0, "默认好评: the level 1..5 an offer left unrated (rating.missed) counts as, in "
        "reports and when rating_default_in_rates; 0: none (unrated stays unrated)"
    )
    rating_default_in_rates: bool = _setting(
        False, "default ratings count in 评价数 and 好评率 (else they are only counted apart)"
    )
    bad_rating_contact_s: int = _setting(
        3600, "a 差评's citizen must be contacted (回访) within this long of its arrival"
    )
    bad_rating_rectify_days: int = _setting(
        15, "... and the 差评 rectified (整改) by the end of this many working days after it"
    )
    rating_holidays: str = _setting(
        "", "dates off work for the working-day count, comma-separated YYYY-MM-DD (法定节假日)"
    )
    rating_workdays: str = _setting(
        "", "weekend dates that are working days (调休), comma-separated YYYY-MM-DD"
    )
    province_url: str = _setting(
        "", "the provincial 好差评 platform's endpoint for rating records (empty: do not report)"
    )
    province_app_key: str = _setting("", "app key the platform issued to this city")
    province_app_secret: str = _setting(
        "", "its secret: signs every request (HMAC-SHA256), never sent"
    )
    province_batch_size: int = _setting(50, "records per request to the platform")
    province_interval_s: float = _setting(60.0, "how often the reporter sends what is due")
    province_hold_s: int = _setting(
        120, "a record waits this long after arriving before it is reported, for the "
        "差评 follow-up reasons pressed after the rating"
    )
    province_timeout_s: float = _setting(10.0, "timeout of one request to the platform")
    booking_person_salt: str = _setting(
        "", "预约: the secret salt of the hash that stands for a booker's ID number (at least "
        "16 characters; empty: the bookings API answers 503)"
    )
    booking_days_ahead: int = _setting(
        7, "预约: a booking may be for today up to this many days on"
    )
    booking_cancel_before_s: int = _setting(
        3600, "预约: a booking may be cancelled until this long before its slot starts"
    )
    booking_slot_quota: int = _setting(
        10, "预约: bookings per site, service and time slot where the site's booking rules "
        "give none")
    booking_one_per_day: bool = _setting(
        True, "预约: one booking per person (ID number) and day, across all sites"
    )
    province_max_attempts: int = _setting(
        8, "attempts per record (backoff doubling from province_interval_s) before it is "
        "marked failed for an operator to retry"
    )

    def __post_init__(self) -> None:
        for setting in SETTINGS:  # defined below the class, used only at run time
            value = getattr(self, setting.name)
            if setting.type is float and type(value) is int:
                object.__setattr__(self, setting.name, float(value))
            elif type(value) is not setting.type:
                raise ConfigError(
                    f"{setting.name}: expected {setting.type.__name__}, got {value!r}"
                )
        if self.mqtt_protocol not in ("5", "3.1.1"):
            raise ConfigError(f"mqtt_protocol: {self.mqtt_protocol!r} is not '5' or '3.1.1'")
        if not 0 < self.mqtt_port < 65536:
            raise ConfigError(f"mqtt_port: {self.mqtt_port} is not a TCP port")
        for name in (
            "batch_max_messages",
            "batch_max_wait_ms",
            "influx_batch_size",
            "telemetry_raw_days",
            "telemetry_minute_days",
            "offline_after_s",
            "rate_telemetry_per_s",
            "rate_telemetry_burst",
            "rate_messages_per_s",
            "rate_messages_burst",
            "http_max_body_bytes",
            "login_attempts_per_min",
            "login_attempts_burst",
            "sse_streams_per_session",
            "sse_streams_max",
            "command_limit_per_site",
            "command_limit_window_s",
            "progress_stale_s",
            "progress_requests_per_min",
            "progress_requests_burst",
            "progress_misses_per_min",
            "progress_misses_burst",
            "progress_streams_per_ticket",
            "progress_streams_max",
            "bad_rating_contact_s",
            "province_batch_size",
            "province_interval_s",
            "province_hold_s",
            "province_timeout_s",
            "province_max_attempts",
            "retention_interval_s",
            "booking_slot_quota",
            "session_idle_s",
            "session_max_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive")
        for name in ("events_retention_days", "alarms_retention_days", "commands_retention_days"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be 0 (keep forever) or more days")
        if self.influx_url and not self.influx_url.startswith(("http://", "https://")):
            raise ConfigError(f"influx_url: {self.influx_url!r} is not an http(s) URL")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            # Not the value itself: a robot URL carries its key (WeCom) or token (DingTalk).
            scheme = self.webhook_url.partition(":")[0][:10]
            raise ConfigError(f"webhook_url: not an http(s) URL (it starts with {scheme!r})")
        if self.dashboard_url and not self.dashboard_url.startswith(("http://", "https://")):
            raise ConfigError(f"dashboard_url: {self.dashboard_url!r} is not an http(s) URL")
        if not self.allowed_hosts:
            raise ConfigError("http_allowed_hosts: name at least one host (or * for any)")
        if self.progress_public_url:
            parts = urllib.parse.urlsplit(self.progress_public_url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
                    or parts.fragment:
                raise ConfigError(f"progress_public_url: {self.progress_public_url!r} is not "
                                  "an http(s) URL without query or fragment")
        if not 0 <= self.rating_default_value <= 5:
            raise ConfigError("rating_default_value: 0 (none) or a level 1..5")
        if self.booking_person_salt and len(self.booking_person_salt) < 16:
            raise ConfigError("booking_person_salt: at least 16 characters")
        if self.booking_days_ahead < 0 or self.booking_cancel_before_s < 0:
            raise ConfigError("booking_days_ahead, booking_cancel_before_s: must not be negative")
        if self.bad_rating_rectify_days < 0:
            raise ConfigError("bad_rating_rectify_days: must not be negative")
        self.work_calendar  # noqa: B018 - a bad date is refused at start, naming its setting
        if self.province_url:
            if not self.province_url.startswith(("http://", "https://")):
                raise ConfigError("province_url: not an http(s) URL")
            if not (self.province_app_key and self.province_app_secret):
                raise ConfigError("province_url needs province_app_key and province_app_secret")

    @property
    def progress_hosts(self) -> tuple[str, ...]:
        """The host of ``progress_public_url`` (answered for progress pages only), if any."""
        host = urllib.parse.urlsplit(self.progress_public_url).hostname
        return (host.lower(),) if host else ()

    def progress_page_url(self, token: str) -> str:
        """The page a ticket's QR opens (a relative URL without ``progress_public_url``)."""
        return f"{self.progress_public_url.rstrip('/')}/q/{token}"

    @property
    def work_calendar(self) -> WorkCalendar:
        """Working days for the 差评 deadlines (``rating_holidays``, ``rating_workdays``)."""
        return WorkCalendar.parse(holidays=self.rating_holidays, workdays=self.rating_workdays)

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        """``http_allowed_hosts`` as lower-case entries."""
        return tuple(h.strip().lower() for h in self.http_allowed_hosts.split(",") if h.strip())

    def replace(self, **changes: Any) -> CentralConfig:
        return dataclasses.replace(self, **changes)


_TYPES: Final = {"str": str, "int": int, "bool": bool, "float": float}

SETTINGS: Final[tuple[Setting, ...]] = tuple(
    Setting(f.name, _TYPES[str(f.type)], f.default, f.metadata["help"])
    for f in dataclasses.fields(CentralConfig)
)
"""The settings table (name, type, default, help), derived from :class:`CentralConfig`."""

_BY_NAME: Final = {s.name: s for s in SETTINGS}


def _parse_env(setting: Setting, raw: str) -> Any:
    if setting.type is bool:
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"{ENV_PREFIX}{setting.name.upper()}: {raw!r} is not a boolean")
    try:
        return setting.type(raw)
    except ValueError:
        raise ConfigError(
            f"{ENV_PREFIX}{setting.name.upper()}: {raw!r} is not a {setting.type.__name__}"
        ) from None


def _file_values(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    table = document.get("central", document)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [central] must be a table")
    for key in table:
        if key not in _BY_NAME:
            raise ConfigError(f"{path}: unknown setting {key!r}")
    return dict(table)


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> CentralConfig:
    """Defaults, then the TOML file (if given), then ``ONEDOOR_CENTRAL_*`` variables."""
    values: dict[str, Any] = {} if path is None else _file_values(path)
    environ = os.environ if env is None else env
    for setting in SETTINGS:
        raw = environ.get(ENV_PREFIX + setting.name.upper())
        if raw is not None:
            values[setting.name] = _parse_env(setting, raw)
    return CentralConfig(**values)


def setting_source(
    name: str, path: Path | None = None, env: Mapping[str, str] | None = None
) -> str | None:
    """Where setting ``name`` is set (the variable or the file, as :func:`load_config`
    reads them), or ``None`` when it is left at its default."""
    variable = ENV_PREFIX + name.upper()
    if variable in (os.environ if env is None else env):
        return variable
    if path is not None and name in _file_values(path):
        return str(path)
    return None


def read_env_file(path: Path) -> dict[str, str]:
    """The ``ONEDOOR_CENTRAL_*`` lines of a systemd ``EnvironmentFile`` (what the service
    runs with): ``NAME=value``, ``#`` comments, optional quotes around the value."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        name, equals, value = line.partition("=")
        if not equals:
            raise ConfigError(f"{path}:{number}: not NAME=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if name.strip().startswith(ENV_PREFIX):
            found[name.strip()] = value
    return found


__all__ = [
    "ENV_PREFIX",
    "SETTINGS",
    "CentralConfig",
    "Setting",
    "load_config",
    "read_env_file",
    "setting_source",
]

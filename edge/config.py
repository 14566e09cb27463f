"""The site configuration: one TOML file, read into frozen dataclasses, strictly.

Ops render this file from the Ansible inventory (``deploy/ansible/README.md``).
:func:`load_config` checks everything it can before the daemon touches a
device and raises :class:`~edge.errors.ConfigInvalid` listing *every* problem
with its key path, e.g. ``windows[3].services.huji: unknown service``
(array positions count from 0, as in the file). Unknown keys are errors too:
a typo must not silently fall back to a default. A UTF-8 byte order mark at
the start of the file (Windows Notepad writes one) is accepted.

Every key, its type, default and meaning is one row of :data:`SETTINGS`; the
reader takes defaults and range checks from there only, and ``edge/README.md``
documents the same rows (a test keeps them equal). See ``edge/examples/*.toml``
for complete files. Sections::

    version = "2026.11.1"                 # config version reported to the central
    [site] [hours] [policy] [[services]] [[windows]]
    [ratings] [[ratings.reasons]]         # 好差评: the pad's time, the 差评 follow-up reasons
    [devices.printer] [devices.screens] [devices.terminals] [devices.gpio] [devices.audio]
    [devices.id_card]                     # 二代身份证 reader at the kiosk (edge.id_card_kiosk)
    [mqtt] [mqtt.tls] [paths] [http] [daemon]
    [progress]                            # the citizens' progress pages (edge.progress)
    [calendar]                            # holidays, 调休 make-up days, half days

``[hours]`` (with lunch, weekdays of their own) and ``[calendar]`` make the hall's
calendar, with each service's ``last_ticket`` (:mod:`fastpath.calendar`, the same
reader as the simulator's): :attr:`EdgeConfig.calendar`.

Besides the problems that refuse a file, :attr:`EdgeConfig.warnings` lists what
works but should not be left so (a password sent without TLS); ``check-config``
prints them and the daemon logs them at start.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar, cast

from edge.errors import ConfigInvalid
from fastpath.calendar import Calendar, always_open, calendar_from_tables
from fastpath.types import (
    CLASS_BY_LABEL,
    MAX_SERVICE_WEIGHT,
    NoShowPolicy,
    Policy,
    Service,
    TicketClass,
    WindowProfile,
)
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.mqtt_topics import is_valid_site_id
from firmware_protocols.terminal_events import DEFAULT_REASONS, REASON_MAX

_IDENT_RE = re.compile(mm.IDENT_PATTERN)
_TOKEN_RE = re.compile(mm.TOKEN_PATTERN)
_PREFIX_RE = re.compile(r"^[A-Z]{1,2}\Z")
_HHMM_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])\Z")
_PUBLIC_URL_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~-]+)*/?\Z")
TerminalBusKind = Literal["modbus", "vendor"]
ParityName = Literal["N", "E", "O"]
Rs485Name = Literal["auto", "kernel", "rts"]
RS485_NAMES = ("auto", "kernel", "rts")
AudioOutput = Literal["alsa", "wav"]
MqttProtocol = Literal["5", "3.1.1"]
UTF8_BOM: Final = "\ufeff"


# --------------------------------------------------------------------------- typed config


@dataclass(frozen=True, slots=True)
class SiteConfig:
    id: str
    name: str
    town: str
    timezone: str

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class HoursConfig:
    """Opening hours and the daily reset, minutes after local midnight.

    Tickets are issued from ``open`` until ``last_ticket`` (停止取号, often half an
    hour before closing; default ``close``); windows keep calling the tickets
    already waiting after that. ``close = "24:00"`` with ``open = "00:00"`` is a hall
    that never closes: its ``reset`` may then fall at any time.
    """

    open_minute: int
    close_minute: int
    reset_minute: int  # a new business day (ticket counters restart) begins here
    last_ticket_minute: int  # 停止取号; -1: at close

    @property
    def issue_until_minute(self) -> int:
        return self.close_minute if self.last_ticket_minute < 0 else self.last_ticket_minute

    def issuing(self, minute: int) -> bool:
        """Whether a ticket may be taken at ``minute`` after local midnight."""
        return self.open_minute <= minute < self.issue_until_minute


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    id: str
    prefix: str
    name_zh: str
    name_en: str
    sla_minutes: int  # waiting longer than this is an SLA breach (0: none)
    overtime_minutes: int  # 限时办结: serving longer than this is overtime (0: none)
    mean_minutes: float | None  # typical duration; the wait prediction needs it
    cv: float  # spread of durations (standard deviation / mean)
    visitors_per_day: float  # expected arrivals, for the prediction's future
    item_code: str | None  # 事项编码 of a 办件 typed on the keypad (好差评 records)
    item_name: str | None  # 事项名称 (default: name_zh)
    department: str | None  # code of the department (实施机构) handling it
    department_name: str | None
    last_ticket: str | None = None  # stops taking numbers earlier (HH:MM, a standard day)

    def to_service(self) -> Service:
        return Service(self.id, self.prefix, self.name_zh, self.name_en, self.sla_minutes)


@dataclass(frozen=True, slots=True)
class WindowConfig:
    number: int
    services: Mapping[str, int]  # service id -> weight (一窗通办 windows list several)
    priority: bool  # 优先服务专窗
    ratio_cap: int
    terminal: int | None  # address of its keypad/rating terminal on the bus
    screen: int | None  # address of its LED window bar on the screen bus

    def to_profile(self) -> WindowProfile:
        return WindowProfile(self.number, dict(self.services), self.priority, self.ratio_cap)


@dataclass(frozen=True, slots=True)
class RatingReasonConfig:
    """One 差评 follow-up reason the rating pad offers; the pad numbers them from 1."""

    code: str
    label: str


DEFAULT_RATING_REASONS: Final = tuple(RatingReasonConfig(code, label)
                                      for code, label in DEFAULT_REASONS)
"""What the pad offers when the site config lists no ``[[ratings.reasons]]``."""


@dataclass(frozen=True, slots=True)
class RatingsConfig:
    """好差评 at the windows (``edge.hall``): how long the pad is offered, and the reasons."""

    pad_seconds: int  # the rating pad stays lit this long after 办结
    reason_seconds: int  # after a 差评, reasons are taken this long
    reasons: tuple[RatingReasonConfig, ...]

    def reason_code(self, number: int) -> str | None:
        """The code of reason ``number`` as the pad numbers them (1-based), or None."""
        return self.reasons[number - 1].code if 1 <= number <= len(self.reasons) else None


@dataclass(frozen=True, slots=True)
class PrinterConfig:
    port: str  # a serial device, /dev/usb/lp0 (USB) or tcp://host:9100 (network)
    baud: int  # serial only
    poll_seconds: float
    timeout_ms: int  # for each status answer (a slow USB-serial adapter needs more)


@dataclass(frozen=True, slots=True)
class ScreensConfig:
    port: str
    baud: int
    hall: int | None  # address of the hall screen, if any
    timeout_ms: int  # each screen's turnaround, on top of the frames' wire time
    rs485: Rs485Name  # who switches the RS485 direction (edge.devices.serial_port)


@dataclass(frozen=True, slots=True)
class TerminalBusConfig:
    kind: TerminalBusKind
    port: str
    baud: int
    poll_ms: int
    timeout_ms: int
    parity: ParityName  # Modbus: 8E1 as the serial-line spec says; vendor keypads: N
    rs485: Rs485Name


@dataclass(frozen=True, slots=True)
class IdCardConfig:
    """The 二代身份证 reader at the kiosk: a card read takes a ticket (edge.id_card_kiosk)."""

    port: str
    baud: int
    service: str  # the service a card takes a ticket for
    elder_age: int  # 老年人优先 from this age (0: never)
    tickets_per_day: int  # per ID number and service and day (0: no limit)
    call_by_name: bool  # masked name (张*女士) on the hall screen with the number
    poll_ms: int
    ledger: str  # salted hashes of today's cards (never the ID number)
    booking_salt: str | None = field(default=None, repr=False)
    """The city's booking salt (a secret): a card checks in its holder's 预约."""


@dataclass(frozen=True, slots=True)
class TicketButtonConfig:
    pin: int
    service: str
    klass: TicketClass


@dataclass(frozen=True, slots=True)
class HelpButtonConfig:
    id: str
    pin: int
    led_pin: int | None
    location: str


@dataclass(frozen=True, slots=True)
class GpioConfig:
    pin_factory: str  # gpiozero factory name: "lgpio", "rpigpio", "native", "mock"
    ticket_buttons: tuple[TicketButtonConfig, ...]
    help_buttons: tuple[HelpButtonConfig, ...]
    leds: Mapping[str, int]  # LED name -> pin (e.g. "paper" -> 21)
    buzzer_pin: int | None
    debounce_ms: int
    long_press_ms: int


@dataclass(frozen=True, slots=True)
class AudioConfig:
    output: AudioOutput
    alsa_device: str  # for "alsa": the aplay -D device
    wav_dir: str | None  # for "wav": where each announcement is written
    repeat: int  # 请 A012 号 到 3 号窗口 办理, said this many times
    clips_dir: str  # the generated default clips (onedoor edge make-clips); paths.clips overrides


@dataclass(frozen=True, slots=True)
class DevicesConfig:
    printer: PrinterConfig | None = None
    screens: ScreensConfig | None = None
    terminals: TerminalBusConfig | None = None
    gpio: GpioConfig | None = None
    audio: AudioConfig | None = None
    id_card: IdCardConfig | None = None


@dataclass(frozen=True, slots=True)
class TlsConfig:
    ca_file: str
    cert_file: str | None
    key_file: str | None


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    tls: TlsConfig | None
    keepalive_seconds: int
    protocol: MqttProtocol
    session_expiry_seconds: int  # the broker keeps commands for an offline edge this long
    yield_seconds: int = 60  # a device that does not number the site leaves the broker this long


@dataclass(frozen=True, slots=True)
class PathsConfig:
    journal: str
    clips: str | None  # recorded clips that replace the generated ones, if any
    journal_retention_days: int  # older days the central has acknowledged are pruned


@dataclass(frozen=True, slots=True)
class HttpConfig:
    host: str
    port: int
    window_api: bool  # POST /windows/{n}/{action}: software window terminals
    window_token: str | None = field(repr=False)  # bearer token the window API requires
    case_hook: bool = False  # POST /cases/...: the business system opens and closes 办件
    case_token: str | None = field(default=None, repr=False)  # bearer token the hook requires


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    telemetry_seconds: int
    outbox_limit: int  # rows of unsent telemetry + events before telemetry is dropped
    help_escalation_minutes: int
    watchdog_seconds: float  # a task that has not checked in for this long stops the pings
    predict_budget_seconds: float  # a ticket waits this long for its predicted wait
    advice: bool  # live staffing advice (edge.advice)
    advice_seconds: int  # how often it simulates the next hour


@dataclass(frozen=True, slots=True)
class ProgressConfig:
    """The citizens' progress pages, served by the central (the Pi is never reachable)."""

    url: str | None = None  # public base URL; a ticket's QR opens {url}/q/{token}
    predict_seconds: float = 20.0  # the pages' waits are simulated again this often

    def page_url(self, token: str) -> str | None:
        """The progress page of the ticket with ``token`` (None without ``url``)."""
        return None if self.url is None else f"{self.url.rstrip('/')}/q/{token}"


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    version: str
    site: SiteConfig
    hours: HoursConfig
    policy: Policy
    services: tuple[ServiceConfig, ...]
    windows: tuple[WindowConfig, ...]
    devices: DevicesConfig
    mqtt: MqttConfig | None
    paths: PathsConfig
    http: HttpConfig | None
    daemon: DaemonConfig
    ratings: RatingsConfig
    progress: ProgressConfig = ProgressConfig()
    calendar: Calendar = field(default_factory=always_open, compare=False)
    """Open days and hours ([hours], [calendar], services' last_ticket)."""
    text: str = field(default="", repr=False, compare=False)  # the file, kept for the journal
    base_dir: str = field(default=".", repr=False, compare=False)  # relative paths start here
    warnings: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def service(self, service_id: str) -> ServiceConfig:
        for service in self.services:
            if service.id == service_id:
                return service
        raise KeyError(service_id)

    def window(self, number: int) -> WindowConfig:
        for window in self.windows:
            if window.number == number:
                return window
        raise KeyError(number)


# --------------------------------------------------------------------------- checks

Check = Callable[[Any], "str | None"]


def _between(low: float, high: float) -> Check:
    def check(value: float) -> str | None:
        return None if low <= value <= high else f"must be {low}..{high}, got {value}"
    return check


def _matches(pattern: re.Pattern[str], what: str) -> Check:
    def check(value: str) -> str | None:
        return None if pattern.fullmatch(value) else f"{what}, got {value!r}"
    return check


def _one_of(*choices: str) -> Check:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"
    return check


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _path_name(value: str) -> str | None:
    """A path the OS can open: no NUL, no part over 255 bytes, not empty."""
    if not value.strip():
        return "must not be empty"
    if "\0" in value or any(len(part.encode()) > 255 for part in Path(value).parts):
        return "not a valid file name (NUL, or a part over 255 bytes)"
    return None


DAY_MINUTES = 24 * 60


def _minute_of(value: str) -> int:
    match = _HHMM_RE.fullmatch(value)
    return int(match.group(1)) * 60 + int(match.group(2)) if match else 0


_check_hhmm = _matches(_HHMM_RE, "expected local time HH:MM")


def _check_close(value: str) -> str | None:
    """A closing time may also be "24:00" (the end of the day)."""
    return None if value == "24:00" else _check_hhmm(value)


_check_ident = _matches(_IDENT_RE, "expected an id of letters, digits, '_', '.', '-'")
_check_pin = _between(0, 27)  # BCM numbering of the Raspberry Pi header
BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


def _check_baud_rate(value: int) -> str | None:
    return None if value in BAUDS else f"must be one of {BAUDS}, got {value}"


def _check_timezone(value: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory,
        return f"unknown time zone {value!r}"                      # a name too long
    return None


def _check_site_id(value: str) -> str | None:
    return None if is_valid_site_id(value) else (
        f"site id must be 1-64 lowercase letters, digits, '-' or '_', got {value!r}")


def _check_public_url(value: str) -> str | None:
    if len(value) > 120 or not _PUBLIC_URL_RE.fullmatch(value):
        return ("expected http(s)://host[:port][/path], at most 120 characters, no query "
                f"or fragment, got {value!r}")
    return None


def _check_window_token(value: str) -> str | None:
    if not _TOKEN_RE.fullmatch(value) or len(value) < 16:
        return "expected 16-64 printable ASCII characters, no spaces"
    return None


# --------------------------------------------------------------------------- the settings


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Final[Any] = _Required()
"""The default of a key that must be given."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One key of the site config: ``key`` is its path (``services[].id``: in each
    ``[[services]]``), ``default`` is :data:`REQUIRED`, None (optional, no value) or
    the value taken when it is absent."""

    key: str
    type: type
    default: Any
    help: str
    check: Check | None = None


_POLICY = Policy()  # the dispatcher owns the policy's defaults

SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("version", str, REQUIRED, "config version the edge reports to the central "
            "(1-64 printable ASCII, no spaces)",
            _matches(_TOKEN_RE, "expected 1-64 printable ASCII characters, no spaces")),
    # site
    Setting("site.id", str, REQUIRED, "site id of the MQTT contract: 1-64 lowercase letters, "
            "digits, '-', '_'", _check_site_id),
    Setting("site.name", str, REQUIRED, "the hall's name, printed on tickets", _non_empty),
    Setting("site.town", str, "", "town or street (镇/街道) the site belongs to"),
    Setting("site.timezone", str, "Asia/Shanghai", "IANA time zone of the hall's clock",
            _check_timezone),
    # hours
    Setting("hours.open", str, "08:30", "tickets from this local time (HH:MM)", _check_hhmm),
    Setting("hours.close", str, "17:30", "closing time (HH:MM, or 24:00)", _check_close),
    Setting("hours.reset", str, "03:00", "a new business day starts (numbers restart); "
            "outside opening hours", _check_hhmm),
    Setting("hours.last_ticket", str, None, "停止取号: no ticket from then on; windows serve "
            "who waits (default: close)", _check_close),
    Setting("hours.lunch", str, None, "午休 HH:MM-HH:MM: no tickets and windows closed (the "
            "predicted waits know)"),
    Setting("hours.days", str, "mon-sun", "the weekdays open with these hours: mon-fri, "
            "mon-sat, mon,wed,fri"),
    Setting("hours.week", dict, None, "weekdays of their own: { sat = \"09:00-12:00\", sun = "
            "\"closed\" } (sessions HH:MM-HH:MM, comma-separated; 停止取号 as long before "
            "closing as on a standard day)"),
    # calendar (fastpath.calendar)
    Setting("calendar.holidays", list, None, "法定节假日, closed: [\"2026-10-01..2026-10-08\", "
            "\"2027-01-01\"]"),
    Setting("calendar.workdays", list, None, "调休 make-up working days, open with the "
            "standard hours: [\"2026-09-27\"]"),
    Setting("calendar.special", list, None, "days of their own hours (half days): "
            "[\"2026-12-31 08:30-12:00\"]"),
    # policy: the defaults are fastpath.types.Policy's
    Setting("policy.priority_weight_pct", int, _POLICY.priority_weight_pct,
            "a priority ticket's wait counts (1 + this/100) times", _between(0, 10_000)),
    Setting("policy.appointment_weight_pct", int, _POLICY.appointment_weight_pct,
            "an appointment's wait counts (1 + this/100) times", _between(0, 10_000)),
    Setting("policy.appointment_grace_minutes", int, _POLICY.appointment_grace_minutes,
            "an appointment later than this becomes a walk-in", _between(0, 1440)),
    # The MQTT contract carries 3-4 digit counters (TicketNo).
    Setting("policy.number_width", int, _POLICY.number_width,
            "digits of the daily ticket counter (A012: 3)", _between(3, 4)),
    Setting("policy.no_show", str, _POLICY.no_show.value,
            "a no-show goes back once (requeue_once) or is dropped (drop)",
            _one_of(*(p.value for p in NoShowPolicy))),
    # services
    Setting("services[].id", str, REQUIRED, "service id (letters, digits, '_', '.', '-')",
            _check_ident),
    Setting("services[].prefix", str, REQUIRED, "ticket prefix, 1-2 letters A-Z, one per "
            "service", _matches(_PREFIX_RE, "expected 1-2 letters A-Z")),
    Setting("services[].name_zh", str, REQUIRED, "Chinese name, on tickets and screens",
            _non_empty),
    Setting("services[].name_en", str, "", "English name"),
    Setting("services[].sla_minutes", int, 0, "waiting longer is an SLA breach (0: none)",
            _between(0, 1440)),
    Setting("services[].overtime_minutes", int, 0, "限时办结: serving longer is overtime "
            "(0: none)", _between(0, 1440)),
    Setting("services[].mean_minutes", float, None, "typical duration; every service needs "
            "it for the predicted wait on tickets", _between(0.1, 600)),
    Setting("services[].cv", float, 0.5, "spread of durations (standard deviation / mean)",
            _between(0.0, 5.0)),
    Setting("services[].visitors_per_day", float, 100.0, "expected arrivals per day, for the "
            "prediction", _between(0, 100_000)),
    Setting("services[].item_code", str, None, "事项编码 of the service item: a 办件 typed on "
            "the keypad is recorded under it (the business system's hook names its own)",
            _check_ident),
    Setting("services[].item_name", str, None, "事项名称 (default: name_zh)", _non_empty),
    Setting("services[].department", str, None, "code of the department (实施机构) handling "
            "it", _check_ident),
    Setting("services[].department_name", str, None, "its name", _non_empty),
    Setting("services[].last_ticket", str, None, "this service stops taking numbers earlier: "
            "HH:MM on a standard day (other days keep the margin)", _check_hhmm),
    # windows
    Setting("windows[].number", int, REQUIRED, "window number, unique", _between(1, 9999)),
    Setting("windows[].services", dict, REQUIRED, "{ service id = weight 1..100 } the window "
            "serves (一窗通办: several)"),
    Setting("windows[].priority", bool, False, "优先服务专窗: calls priority tickets first"),
    Setting("windows[].ratio_cap", int, 0, "after this many priority calls in a row, a "
            "normal ticket if one waits (0: no cap)", _between(0, 100)),
    Setting("windows[].terminal", int, None, "bus address of its keypad/rating terminal",
            _between(1, 247)),
    Setting("windows[].screen", int, None, "bus address of its LED window bar",
            _between(1, 254)),
    # ratings (好差评)
    Setting("ratings.pad_seconds", int, 30, "the rating pad is offered this long after 办结 "
            "(a rating after it is refused; unrated: rating.missed)", _between(5, 255)),
    Setting("ratings.reason_seconds", int, 60, "after 不满意 or 非常不满意 the pad takes "
            "follow-up reasons this long", _between(5, 600)),
    Setting("ratings.reasons[].code", str, REQUIRED, "a 差评 follow-up reason's code (as "
            "reported upward); the pad numbers the reasons from 1 in this order (at most 15; "
            "none listed: firmware_protocols.terminal_events.DEFAULT_REASONS)", _check_ident),
    Setting("ratings.reasons[].label", str, REQUIRED, "what the pad and the reports show",
            _non_empty),
    # devices
    Setting("devices.printer.port", str, REQUIRED, "the ESC/POS printer: a serial port, "
            "/dev/usb/lp0 (USB) or tcp://host:9100 (network)", _path_name),
    Setting("devices.printer.baud", int, 9600, "baud rate (serial only)", _check_baud_rate),
    Setting("devices.printer.poll_seconds", float, 5.0, "status (paper) query period",
            _between(0.2, 600)),
    Setting("devices.printer.timeout_ms", int, 300, "wait for each status answer",
            _between(20, 5_000)),
    Setting("devices.screens.port", str, REQUIRED, "serial port of the LED screen bus",
            _path_name),
    Setting("devices.screens.baud", int, 9600, "baud rate", _check_baud_rate),
    Setting("devices.screens.hall", int, None, "bus address of the hall screen",
            _between(1, 254)),
    Setting("devices.screens.timeout_ms", int, 150, "each screen's turnaround, on top of the "
            "frames' wire time", _between(20, 5_000)),
    Setting("devices.screens.rs485", str, "auto", "who switches the RS485 direction: auto, "
            "kernel or rts", _one_of(*RS485_NAMES)),
    Setting("devices.terminals.kind", str, "modbus", "window terminal bus: modbus or vendor",
            _one_of("modbus", "vendor")),
    Setting("devices.terminals.port", str, REQUIRED, "serial port of the terminal bus",
            _path_name),
    Setting("devices.terminals.baud", int, None, "baud rate (default 19200 for modbus, 9600 "
            "for vendor)", _check_baud_rate),
    Setting("devices.terminals.poll_ms", int, 100, "poll period of each terminal",
            _between(10, 10_000)),
    Setting("devices.terminals.timeout_ms", int, 50, "wait for each terminal's answer",
            _between(5, 5_000)),
    Setting("devices.terminals.parity", str, None, "N, E or O (default E for modbus, as the "
            "serial-line spec says; N for vendor)", _one_of("N", "E", "O")),
    Setting("devices.terminals.rs485", str, "auto", "who switches the RS485 direction: auto, "
            "kernel or rts", _one_of(*RS485_NAMES)),
    Setting("devices.gpio.pin_factory", str, "lgpio", "gpiozero pin factory: lgpio, rpigpio, "
            "pigpio, native, mock", _one_of("lgpio", "rpigpio", "pigpio", "native", "mock")),
    Setting("devices.gpio.buzzer_pin", int, None, "BCM pin of the buzzer", _check_pin),
    Setting("devices.gpio.debounce_ms", int, 30, "button debounce", _between(1, 1000)),
    Setting("devices.gpio.long_press_ms", int, 1500, "a 呼叫帮办 press this long is staff "
            "acknowledging", _between(200, 10_000)),
    Setting("devices.gpio.leds", dict, None, "{ LED name = BCM pin }, e.g. paper = 21"),
    Setting("devices.gpio.ticket_buttons[].pin", int, REQUIRED, "BCM pin of a 取号 button",
            _check_pin),
    Setting("devices.gpio.ticket_buttons[].service", str, REQUIRED, "the service it issues"),
    Setting("devices.gpio.ticket_buttons[].class", str, "normal", "normal or priority",
            _one_of("normal", "priority")),
    Setting("devices.gpio.help_buttons[].id", str, REQUIRED, "呼叫帮办 button id",
            _check_ident),
    Setting("devices.gpio.help_buttons[].pin", int, REQUIRED, "its BCM pin", _check_pin),
    Setting("devices.gpio.help_buttons[].led_pin", int, None, "BCM pin of its LED",
            _check_pin),
    Setting("devices.gpio.help_buttons[].location", str, REQUIRED, "where it is, shown on the "
            "hall screen", _non_empty),
    Setting("devices.audio.output", str, "alsa", "alsa (a sound card) or wav (files)",
            _one_of("alsa", "wav")),
    Setting("devices.audio.alsa_device", str, "default", "the aplay -D device", _non_empty),
    Setting("devices.audio.wav_dir", str, None, "for wav: where each announcement is written",
            _path_name),
    Setting("devices.audio.repeat", int, 2, "each call is said this many times",
            _between(1, 5)),
    Setting("devices.audio.clips_dir", str, "/var/lib/onedoor/clips-default",
            "the generated clips (onedoor edge make-clips)", _path_name),
    Setting("devices.id_card.port", str, REQUIRED, "serial port of the 二代身份证 reader at "
            "the kiosk", _path_name),
    Setting("devices.id_card.baud", int, 115200, "baud rate", _check_baud_rate),
    Setting("devices.id_card.service", str, REQUIRED, "the service a card takes a ticket for",
            _non_empty),
    Setting("devices.id_card.elder_age", int, 60, "老年人优先: a priority ticket from this age "
            "(0: never)", _between(0, 150)),
    Setting("devices.id_card.tickets_per_day", int, 1, "tickets per ID number, service and day "
            "(0: no limit)", _between(0, 100)),
    Setting("devices.id_card.call_by_name", bool, False, "masked name (张*女士) on the hall "
            "screen with the number, and said by the voice"),
    Setting("devices.id_card.poll_ms", int, 500, "reader poll period", _between(100, 10_000)),
    Setting("devices.id_card.ledger", str, None, "salted hashes of today's cards, never the ID "
            "number (default: beside the journal, <journal>.idcards)", _path_name),
    Setting("devices.id_card.booking_salt_file", str, None, "file holding the central's "
            "booking_person_salt: a card then checks in its holder's booking (预约) of today "
            "(unset: cards take ordinary tickets only)", _path_name),
    # mqtt
    Setting("mqtt.host", str, REQUIRED, "broker host", _non_empty),
    Setting("mqtt.port", int, None, "broker port (default 8883 with [mqtt.tls], else 1883)",
            _between(1, 65535)),
    Setting("mqtt.username", str, None, "user name (the site id)", _non_empty),
    Setting("mqtt.password", str, None, "password (prefer password_file)"),
    Setting("mqtt.password_file", str, None, "file holding the password", _path_name),
    Setting("mqtt.keepalive_seconds", int, 30, "MQTT keepalive", _between(5, 3600)),
    Setting("mqtt.protocol", str, "5", "MQTT 5, or 3.1.1 for a broker without it",
            _one_of("5", "3.1.1")),
    Setting("mqtt.session_expiry_seconds", int, 86_400, "the broker keeps the session (and "
            "commands sent meanwhile) this long after the edge went offline; commands expire "
            "after at most a day", _between(60, 7 * 86_400)),
    Setting("mqtt.yield_seconds", int, 60, "a device that does not number the site's tickets "
            "(a new one waiting for its takeover, a replaced one) waits this long after losing "
            "its connection: the site's devices share one client id, so each connection ends "
            "the other's", _between(1, 3600)),
    Setting("mqtt.tls.ca_file", str, REQUIRED, "CA certificate(s) the broker's certificate "
            "must chain to (PEM)", _path_name),
    Setting("mqtt.tls.cert_file", str, None, "client certificate (PEM), with key_file",
            _path_name),
    Setting("mqtt.tls.key_file", str, None, "client key (PEM), with cert_file", _path_name),
    # paths
    Setting("paths.journal", str, REQUIRED, "the SQLite journal (event log and outbox)",
            _path_name),
    Setting("paths.clips", str, None, "recorded clips replacing generated ones by name",
            _path_name),
    Setting("paths.journal_retention_days", int, 90, "acknowledged days older than this are "
            "pruned at the day reset", _between(1, 3660)),
    # http
    Setting("http.host", str, "127.0.0.1", "address of the kiosk API", _non_empty),
    Setting("http.port", int, 8180, "port of the kiosk API (0: any free one)",
            _between(0, 65535)),
    Setting("http.window_api", bool, False, "POST /windows/{n}/{action}: software window "
            "terminals"),
    Setting("http.window_token", str, None, "bearer token the window API requires; needed "
            "when http.host is not a loopback address", _check_window_token),
    Setting("http.case_hook", bool, False, "POST /cases/open and /cases/close: the window's "
            "business system opens and closes 办件, and the pad is offered at each close"),
    Setting("http.case_token", str, None, "bearer token the business system's hook sends; "
            "required with case_hook", _check_window_token),
    # daemon
    Setting("daemon.telemetry_seconds", int, 30, "telemetry period", _between(1, 3600)),
    Setting("daemon.outbox_limit", int, 10_000, "unsent events + telemetry kept before "
            "telemetry is dropped (events never are)", _between(10, 10_000_000)),
    Setting("daemon.help_escalation_minutes", int, 5, "an unanswered 呼叫帮办 escalates",
            _between(1, 240)),
    Setting("daemon.watchdog_seconds", float, 30.0, "a task silent this long stops systemd's "
            "watchdog pings", _between(1, 3600)),
    Setting("daemon.predict_budget_seconds", float, 1.5, "a ticket waits this long for its "
            "predicted wait, then prints without it", _between(0.1, 60)),
    # progress
    Setting("progress.url", str, None, "public base URL of the central's progress pages "
            "(https://q.example.gov.cn): a ticket's QR opens <url>/q/<token>; without it "
            "tickets print no QR", _check_public_url),
    Setting("progress.predict_seconds", float, 20.0, "the progress pages' waits are simulated "
            "again this often while the queue changes", _between(2, 600)),
    Setting("daemon.advice", bool, True, "live staffing advice: simulate the next hour and tell "
            "the central when a service's p90 wait will pass its SLA, with the move that "
            "prevents it (never moves a window itself)"),
    Setting("daemon.advice_seconds", int, 300, "how often the staffing advice simulates the "
            "next hour; the central drops advice not renewed within three periods",
            _between(1, 3600)),
)
"""Every key of the site config, once: type, default, help and range check."""

_BY_KEY: Final[Mapping[str, Setting]] = MappingProxyType({s.key: s for s in SETTINGS})


def settings_reference() -> str:
    """The settings as the Markdown table of ``edge/README.md``."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for setting in SETTINGS:
        default = setting.default
        if default is REQUIRED or default is None:
            shown = "**required**" if default is REQUIRED else "—"
        elif isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        elif isinstance(default, str):
            shown = f'`"{default}"`'  # as TOML writes it
        else:
            shown = f"`{default}`"
        rows.append(f"| `{setting.key}` | {setting.type.__name__} | {shown} | "
                    f"{setting.help} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- reader

T = TypeVar("T")
_MISSING: Any = object()


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.warnings: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path}: {message}")


def _type_name(value: object) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)


class _Table:
    """Reads one TOML table, recording problems instead of raising at the first.

    ``schema`` is the table's place in :data:`SETTINGS` ("devices.printer",
    "services[]"); :meth:`setting` reads a key with its row's type, default and check.
    """

    def __init__(self, data: object, path: str, problems: _Problems, schema: str) -> None:
        self.path = path
        self.schema = schema
        self.problems = problems
        self.ok = isinstance(data, dict)
        if not self.ok:
            problems.add(path or "<root>", f"expected a table, got {_type_name(data)}")
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self.used: set[str] = set()

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def setting(self, key: str, check: Check | None = None) -> Any:
        """The value of ``key`` as its :data:`SETTINGS` row says (``check``: one more
        check that needs the context); None for an absent optional key."""
        row = _BY_KEY[f"{self.schema}.{key}" if self.schema else key]

        def both(value: Any) -> str | None:
            for one in (row.check, check):
                message = None if one is None else one(value)
                if message is not None:
                    return message
            return None

        if row.default is None:
            return self.optional(key, row.type, both)
        return self.get(key, row.type, _MISSING if row.default is REQUIRED else row.default,
                        both)

    def get(self, key: str, kind: type[T], default: Any = _MISSING,
            check: Check | None = None) -> T:
        """The value of ``key`` if it has type ``kind`` and passes ``check``; else a problem.

        On a problem the default (or a harmless placeholder) is returned so that
        reading goes on and every other problem is reported too.
        """
        self.used.add(key)
        path = self.key_path(key)
        if key not in self.data:
            if default is _MISSING:
                if self.ok:
                    self.problems.add(path, "required key is missing")
                return cast(T, _placeholder(kind))
            return cast(T, default)
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.problems.add(path, f"expected {_type_name(_placeholder(kind))}, "
                                    f"got {_type_name(value)}")
            return cast(T, _placeholder(kind) if default is _MISSING or default is None
                        else default)
        if check is not None:
            message = check(value)
            if message is not None:
                self.problems.add(path, message)
        return value

    def optional(self, key: str, kind: type[T], check: Check | None = None) -> T | None:
        if key not in self.data:
            self.used.add(key)
            return None
        return self.get(key, kind, None, check)

    def table(self, key: str, required: bool = False) -> _Table | None:
        self.used.add(key)
        if key not in self.data:
            if required and self.ok:
                self.problems.add(self.key_path(key), "required table is missing")
            return None
        return _Table(self.data[key], self.key_path(key), self.problems,
                      f"{self.schema}.{key}" if self.schema else key)

    def array_of_tables(self, key: str) -> list[_Table]:
        self.used.add(key)
        value = self.data.get(key, [])
        if not isinstance(value, list):
            self.problems.add(self.key_path(key), f"expected an array of tables, "
                                                  f"got {_type_name(value)}")
            return []
        schema = f"{self.schema}.{key}[]" if self.schema else f"{key}[]"
        return [_Table(item, f"{self.key_path(key)}[{i}]", self.problems, schema)
                for i, item in enumerate(value)]

    def finish(self) -> None:
        for key in self.data:
            if key not in self.used:
                self.problems.add(self.key_path(key), "unknown key")


def _placeholder(kind: type[Any]) -> Any:
    return {str: "", int: 0, float: 0.0, bool: False, list: [], dict: {}}.get(kind)


def _absent(schema: str, problems: _Problems) -> _Table:
    """An absent optional section: every key at its default."""
    return _Table({}, schema, problems, schema)


# --------------------------------------------------------------------------- sections


def _read_site(root: _Table) -> SiteConfig:
    table = root.table("site", required=True) or _absent("site", _Problems())
    site = SiteConfig(id=table.setting("id"), name=table.setting("name"),
                      town=table.setting("town"), timezone=table.setting("timezone"))
    table.finish()
    return site


def _read_hours(root: _Table) -> tuple[HoursConfig, dict[str, Any]]:
    """The standard day's hours, and the table as the calendar reads it."""
    table = root.table("hours") or _absent("hours", root.problems)
    open_text, close_text = table.setting("open"), table.setting("close")
    opening = _minute_of(open_text)
    closing = DAY_MINUTES if close_text == "24:00" else _minute_of(close_text)
    reset = _minute_of(table.setting("reset"))
    last_text = table.setting("last_ticket")
    last = -1
    if last_text is not None:
        last = DAY_MINUTES if last_text == "24:00" else _minute_of(last_text)
    around_the_clock = opening == 0 and closing == DAY_MINUTES
    if opening < closing and opening <= reset < closing and not around_the_clock:
        root.problems.add("hours.reset", "must be outside opening hours")
    raw = {"open": open_text, "close": close_text, "last_ticket": last_text,
           "lunch": table.setting("lunch"), "days": table.setting("days"),
           "week": table.setting("week") or {}}
    table.finish()
    return HoursConfig(opening, closing, reset, last), {k: v for k, v in raw.items()
                                                        if v is not None}


def _read_calendar(root: _Table, hours: dict[str, Any], services: tuple[ServiceConfig, ...],
                   ok: bool) -> Calendar:
    """The hall's calendar from ``[hours]``, ``[calendar]`` and the services' hours; its
    problems (close before open, a lunch outside the day, a bad date) are the file's."""
    table = root.table("calendar") or _absent("calendar", root.problems)
    raw = {key: value for key in ("holidays", "workdays", "special")
           if (value := table.setting(key)) is not None}
    table.finish()
    last = {s.id: s.last_ticket for s in services if s.last_ticket is not None}
    calendar, problems = calendar_from_tables(hours, raw, last)
    if ok:  # a time that is not HH:MM is reported once, by its own key
        root.problems.items.extend(problems)
    return calendar


def _read_policy(root: _Table) -> Policy:
    table = root.table("policy") or _absent("policy", root.problems)
    values = {key: table.setting(key) for key in (
        "priority_weight_pct", "appointment_weight_pct", "appointment_grace_minutes",
        "number_width")}
    no_show = table.setting("no_show")
    table.finish()
    try:
        return Policy(no_show=NoShowPolicy(no_show), **values)
    except ValueError:
        return _POLICY  # already reported key by key above


def _read_services(root: _Table) -> tuple[ServiceConfig, ...]:
    services = []
    seen_ids: dict[str, str] = {}
    seen_prefixes: dict[str, str] = {}
    tables = root.array_of_tables("services")
    if not tables and root.ok:
        root.problems.add("services", "at least one service is required")
    for table in tables:
        service = ServiceConfig(**{key: table.setting(key) for key in (
            "id", "prefix", "name_zh", "name_en", "sla_minutes", "overtime_minutes",
            "mean_minutes", "cv", "visitors_per_day", "item_code", "item_name", "department",
            "department_name", "last_ticket")})
        if service.id in seen_ids:
            root.problems.add(table.key_path("id"), f"duplicate service id, "
                                                    f"first at {seen_ids[service.id]}")
        seen_ids.setdefault(service.id, table.path)
        if service.prefix in seen_prefixes:
            root.problems.add(table.key_path("prefix"), f"prefix already used by "
                                                        f"{seen_prefixes[service.prefix]}")
        seen_prefixes.setdefault(service.prefix, table.path)
        table.finish()
        services.append(service)
    return tuple(services)


def _read_windows(root: _Table, service_ids: set[str]) -> tuple[WindowConfig, ...]:
    windows = []
    seen: dict[int, str] = {}
    terminals: dict[int, str] = {}
    screens: dict[int, str] = {}
    tables = root.array_of_tables("windows")
    if not tables and root.ok:
        root.problems.add("windows", "at least one window is required")
    for table in tables:
        number = table.setting("number")
        weights: dict[str, int] = {}
        served = table.table("services")
        if served is None:
            root.problems.add(table.key_path("services"), "required table is missing")
        else:
            if served.ok and not served.data:
                root.problems.add(served.path, "a window must serve at least one service")
            for service_id in served.data:
                weight = served.get(service_id, int, 1, _between(1, MAX_SERVICE_WEIGHT))
                if service_id not in service_ids:
                    root.problems.add(served.key_path(service_id), "unknown service")
                weights[service_id] = weight
        window = WindowConfig(
            number=number,
            services=MappingProxyType(weights),
            priority=table.setting("priority"),
            ratio_cap=table.setting("ratio_cap"),
            terminal=table.setting("terminal"),
            screen=table.setting("screen"),
        )
        for value, registry, key in ((number, seen, "number"),
                                     (window.terminal, terminals, "terminal"),
                                     (window.screen, screens, "screen")):
            if value is None:
                continue
            if value in registry:
                root.problems.add(table.key_path(key), f"{value} already used by {registry[value]}")
            registry.setdefault(value, table.path)
        table.finish()
        windows.append(window)
    return tuple(windows)


def _read_ratings(root: _Table) -> RatingsConfig:
    table = root.table("ratings") or _absent("ratings", root.problems)
    reasons = []
    codes: dict[str, str] = {}
    tables = table.array_of_tables("reasons")
    for sub in tables:
        reason = RatingReasonConfig(code=sub.setting("code"), label=sub.setting("label"))
        if reason.code in codes:
            root.problems.add(sub.key_path("code"), f"duplicate reason, first at "
                                                    f"{codes[reason.code]}")
        codes.setdefault(reason.code, sub.path)
        sub.finish()
        reasons.append(reason)
    if len(reasons) > REASON_MAX:  # the pad reports a reason's number in 1..15
        root.problems.add(table.key_path("reasons"), f"at most {REASON_MAX} reasons, "
                                                     f"got {len(reasons)}")
    ratings = RatingsConfig(pad_seconds=table.setting("pad_seconds"),
                            reason_seconds=table.setting("reason_seconds"),
                            reasons=tuple(reasons) if tables else DEFAULT_RATING_REASONS)
    table.finish()
    return ratings


def _read_id_card(sub: _Table, service_ids: set[str], config_dir: Path,
                  ledger_default: str) -> IdCardConfig:
    service = sub.setting("service")
    if service and service not in service_ids:
        sub.problems.add(sub.key_path("service"), f"unknown service {service!r}")
    ledger = sub.setting("ledger")
    salt = None
    if (salt_file := sub.setting("booking_salt_file")) is not None:
        try:
            salt = (config_dir / salt_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            sub.problems.add(sub.key_path("booking_salt_file"), f"cannot read: {exc}")
        else:
            if len(salt) < 16:
                sub.problems.add(sub.key_path("booking_salt_file"),
                                 "the salt has fewer than 16 characters")
    config = IdCardConfig(
        port=sub.setting("port"), baud=sub.setting("baud"), service=service,
        elder_age=sub.setting("elder_age"), tickets_per_day=sub.setting("tickets_per_day"),
        call_by_name=sub.setting("call_by_name"), poll_ms=sub.setting("poll_ms"),
        ledger=str(config_dir / (ledger_default if ledger is None else ledger)),
        booking_salt=salt,
    )
    sub.finish()
    return config


def _read_devices(root: _Table, config_dir: Path, service_ids: set[str],
                  windows: tuple[WindowConfig, ...]) -> DevicesConfig:
    table = root.table("devices")
    if table is None:
        return DevicesConfig()
    printer = screens = terminals = gpio = audio = None
    if (sub := table.table("printer")) is not None:
        printer = PrinterConfig(**{key: sub.setting(key) for key in (
            "port", "baud", "poll_seconds", "timeout_ms")})
        sub.finish()
    if (sub := table.table("screens")) is not None:
        screens = ScreensConfig(**{key: sub.setting(key) for key in (
            "port", "baud", "hall", "timeout_ms", "rs485")})
        if screens.hall is not None and screens.hall in {w.screen for w in windows}:
            root.problems.add(sub.key_path("hall"), "address already used by a window screen")
        sub.finish()
    elif any(w.screen is not None for w in windows):
        root.problems.add("devices.screens", "windows have screen addresses but no screen bus")
    if (sub := table.table("terminals")) is not None:
        kind = sub.setting("kind")
        modbus = kind == "modbus"  # Modbus terminals 19200 8E1, vendor keypads 9600 8N1
        baud, parity = sub.setting("baud"), sub.setting("parity")
        terminals = TerminalBusConfig(
            kind=kind, port=sub.setting("port"),
            baud=(19200 if modbus else 9600) if baud is None else baud,
            poll_ms=sub.setting("poll_ms"), timeout_ms=sub.setting("timeout_ms"),
            parity=("E" if modbus else "N") if parity is None else parity,
            rs485=sub.setting("rs485"))
        sub.finish()
    elif any(w.terminal is not None for w in windows):
        root.problems.add("devices.terminals", "windows have terminal addresses but no bus")
    if (sub := table.table("gpio")) is not None:
        gpio = _read_gpio(sub, service_ids, root.problems)
    if (sub := table.table("audio")) is not None:
        output = sub.setting("output")
        audio = AudioConfig(
            output=output,
            alsa_device=sub.setting("alsa_device"),
            wav_dir=_resolved(config_dir, sub.setting("wav_dir")),
            repeat=sub.setting("repeat"),
            clips_dir=str(config_dir / sub.setting("clips_dir")),
        )
        if output == "wav" and audio.wav_dir is None:
            root.problems.add(sub.key_path("wav_dir"), "required when output is \"wav\"")
        sub.finish()
    id_card = None
    if (sub := table.table("id_card")) is not None:
        # The ledger of today's card hashes sits beside the journal unless placed elsewhere.
        paths = root.data.get("paths")
        journal = paths.get("journal") if isinstance(paths, dict) else None
        beside = f"{journal}.idcards" if isinstance(journal, str) and journal else "idcards.sqlite"
        id_card = _read_id_card(sub, service_ids, config_dir, beside)
    _one_port_each(root.problems, printer=printer, screens=screens, terminals=terminals,
                   id_card=id_card)
    table.finish()
    return DevicesConfig(printer, screens, terminals, gpio, audio, id_card)


def _one_port_each(problems: _Problems, **buses: PrinterConfig | ScreensConfig
                   | TerminalBusConfig | IdCardConfig | None) -> None:
    """Two drivers on one serial port interleave their bytes: neither works."""
    owners: dict[str, str] = {}
    for name, bus in buses.items():
        if bus is None or not bus.port:
            continue
        port = _real_port(bus.port)
        if port in owners:
            problems.add(f"devices.{name}.port", f"{bus.port} is also devices.{owners[port]}.port:"
                                                 " one serial port cannot serve two buses")
        owners.setdefault(port, name)


def _real_port(port: str) -> str:
    """The device a port name stands for (/dev/serial/by-id/... links to /dev/ttyUSB0)."""
    try:
        return str(Path(port).resolve())
    except (OSError, ValueError, RuntimeError):
        return port


def _read_gpio(table: _Table, service_ids: set[str], problems: _Problems) -> GpioConfig:
    pins: dict[int, str] = {}

    def claim(pin: int | None, path: str) -> None:
        if pin is None:
            return
        if pin in pins:
            problems.add(path, f"pin {pin} already used by {pins[pin]}")
        pins.setdefault(pin, path)

    ticket_buttons = []
    for sub in table.array_of_tables("ticket_buttons"):
        button = TicketButtonConfig(pin=sub.setting("pin"), service=sub.setting("service"),
                                    klass=CLASS_BY_LABEL.get(sub.setting("class"),
                                                             TicketClass.NORMAL))
        if button.service and button.service not in service_ids:
            problems.add(sub.key_path("service"), f"unknown service {button.service!r}")
        claim(button.pin, sub.key_path("pin"))
        sub.finish()
        ticket_buttons.append(button)
    help_buttons = []
    ids: set[str] = set()
    for sub in table.array_of_tables("help_buttons"):
        help_button = HelpButtonConfig(**{key: sub.setting(key) for key in (
            "id", "pin", "led_pin", "location")})
        if help_button.id in ids:
            problems.add(sub.key_path("id"), "duplicate help button id")
        ids.add(help_button.id)
        claim(help_button.pin, sub.key_path("pin"))
        claim(help_button.led_pin, sub.key_path("led_pin"))
        sub.finish()
        help_buttons.append(help_button)
    leds: dict[str, int] = {}
    if (led_table := table.table("leds")) is not None:
        for name in led_table.data:
            leds[name] = led_table.get(name, int, 0, _check_pin)
            claim(leds[name], led_table.key_path(name))
        led_table.finish()
    buzzer = table.setting("buzzer_pin")
    claim(buzzer, table.key_path("buzzer_pin"))
    gpio = GpioConfig(
        pin_factory=table.setting("pin_factory"),
        ticket_buttons=tuple(ticket_buttons),
        help_buttons=tuple(help_buttons),
        leds=MappingProxyType(leds),
        buzzer_pin=buzzer,
        debounce_ms=table.setting("debounce_ms"),
        long_press_ms=table.setting("long_press_ms"),
    )
    table.finish()
    return gpio


def _is_file(path: Path) -> bool:
    """``Path.is_file`` that says no, instead of raising, for names the OS refuses."""
    try:
        return path.is_file()
    except (OSError, ValueError):  # ENAMETOOLONG, an embedded NUL
        return False


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_mqtt(root: _Table, config_dir: Path, check_files: bool) -> MqttConfig | None:
    table = root.table("mqtt")
    if table is None:
        return None  # a site without uplink (or not yet): the hall works alone

    def existing_file(value: str) -> str | None:
        if not check_files or _path_name(value) is not None:
            return None
        path = config_dir / value
        return None if _is_file(path) else f"file not found: {path}"

    password = table.setting("password")
    password_file = table.setting("password_file", existing_file)
    if password is not None and password_file is not None:
        root.problems.add(table.key_path("password_file"), "give password or password_file, "
                                                           "not both")
    if password_file is not None and _is_file(config_dir / password_file):
        try:
            password = (config_dir / password_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            root.problems.add(table.key_path("password_file"), f"cannot read: {exc}")
    tls = None
    if (sub := table.table("tls")) is not None:
        tls = TlsConfig(
            ca_file=str(config_dir / sub.setting("ca_file", existing_file)),
            cert_file=_resolved(config_dir, sub.setting("cert_file", existing_file)),
            key_file=_resolved(config_dir, sub.setting("key_file", existing_file)),
        )
        if (tls.cert_file is None) != (tls.key_file is None):
            root.problems.add(sub.path, "cert_file and key_file go together")
        elif check_files:
            _check_tls_files(tls, sub, root.problems)
        sub.finish()
    port = table.setting("port")
    mqtt = MqttConfig(
        host=table.setting("host"),
        port=(8883 if tls else 1883) if port is None else port,
        username=table.setting("username"),
        password=password,
        tls=tls,
        keepalive_seconds=table.setting("keepalive_seconds"),
        protocol=table.setting("protocol"),
        session_expiry_seconds=table.setting("session_expiry_seconds"),
        yield_seconds=table.setting("yield_seconds"),
    )
    if mqtt.password is not None and mqtt.username is None:
        root.problems.add(table.key_path("username"), "required when a password is given")
    if mqtt.password is not None and tls is None and not is_loopback(mqtt.host):
        root.problems.warn(table.key_path("password"), f"sent in clear text to {mqtt.host}: "
                                                       "add [mqtt.tls]")
    table.finish()
    return mqtt


def _check_tls_files(tls: TlsConfig, table: _Table, problems: _Problems) -> None:
    """The CA file must hold certificates, a client pair must match: what the TLS
    handshake would refuse at every connection attempt, refused here once."""
    if not _is_file(Path(tls.ca_file)):
        return  # reported as not found
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
    except (ssl.SSLError, OSError, ValueError) as exc:
        problems.add(table.key_path("ca_file"), f"not a PEM certificate: {exc}")
        return
    if tls.cert_file is None or tls.key_file is None:
        return
    if not (_is_file(Path(tls.cert_file)) and _is_file(Path(tls.key_file))):
        return
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (ssl.SSLError, OSError, ValueError) as exc:
        problems.add(table.key_path("cert_file"), f"not a certificate and key that match: {exc}")


def _resolved(config_dir: Path, value: str | None) -> str | None:
    return None if value is None else str(config_dir / value)


def _read_rest(root: _Table, config_dir: Path) -> tuple[PathsConfig, HttpConfig | None,
                                                        DaemonConfig]:
    table = root.table("paths", required=True) or _absent("paths", _Problems())
    paths = PathsConfig(
        journal=str(config_dir / table.setting("journal")),
        clips=_resolved(config_dir, table.setting("clips")),
        journal_retention_days=table.setting("journal_retention_days"),
    )
    table.finish()
    http = None
    if (table_http := root.table("http")) is not None:
        http = HttpConfig(**{key: table_http.setting(key) for key in (
            "host", "port", "window_api", "window_token", "case_hook", "case_token")})
        if http.window_api and http.window_token is None and not is_loopback(http.host):
            root.problems.add(table_http.key_path("window_token"),
                              f"required when the window API listens on {http.host}: "
                              "anyone on the network could call and finish tickets")
        if http.case_hook and http.case_token is None:
            root.problems.add(table_http.key_path("case_token"),
                              "required with case_hook: the hook binds ratings to 办件 that "
                              "are reported to the province")
        table_http.finish()
    table = root.table("daemon") or _absent("daemon", root.problems)
    daemon = DaemonConfig(**{key: table.setting(key) for key in (
        "telemetry_seconds", "outbox_limit", "help_escalation_minutes", "watchdog_seconds",
        "predict_budget_seconds", "advice", "advice_seconds")})
    table.finish()
    return paths, http, daemon


def _read_progress(root: _Table) -> ProgressConfig:
    table = root.table("progress") or _absent("progress", root.problems)
    progress = ProgressConfig(url=table.setting("url"),
                              predict_seconds=table.setting("predict_seconds"))
    table.finish()
    return progress


# --------------------------------------------------------------------------- entry points


def parse_config(
    text: str, *, source: str = "<config>", base_dir: Path | None = None,
    check_files: bool = True,
) -> EdgeConfig:
    """Read a config from TOML text; relative paths are resolved against ``base_dir``.

    ``check_files=False`` skips checking the TLS and password files on this
    machine (to check a site's config on another machine). Raises
    :class:`ConfigInvalid` with every problem found.
    """
    text = text.removeprefix(UTF8_BOM)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigInvalid(source, [f"<toml>: {exc}"]) from None
    problems = _Problems()
    config_dir = base_dir or Path.cwd()
    root = _Table(data, "", problems, "")
    version = root.setting("version")
    site = _read_site(root)
    hours, hours_table = _read_hours(root)
    policy = _read_policy(root)
    services = _read_services(root)
    times_ok = not any(p.startswith("hours.") and "HH:MM" in p for p in problems.items)
    calendar = _read_calendar(root, hours_table, services, times_ok)
    windows = _read_windows(root, {s.id for s in services})
    devices = _read_devices(root, config_dir, {s.id for s in services}, windows)
    mqtt = _read_mqtt(root, config_dir, check_files)
    paths, http, daemon = _read_rest(root, config_dir)
    progress = _read_progress(root)
    ratings = _read_ratings(root)
    root.finish()
    served = {sid for w in windows for sid in w.services}
    for index, service in enumerate(services):
        if service.id and service.id not in served and windows:
            problems.add(f"services[{index}].id", f"no window serves {service.id!r}")
    if problems.items:
        raise ConfigInvalid(source, problems.items)
    return EdgeConfig(version, site, hours, policy, services, windows, devices, mqtt, paths,
                      http, daemon, ratings, progress, calendar, text, str(config_dir),
                      tuple(problems.warnings))


def load_config(path: str | Path, *, check_files: bool = True) -> EdgeConfig:
    """Read and check the config file at ``path`` (see :func:`parse_config`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigInvalid(str(path), [f"<file>: cannot read: {exc}"]) from None
    return parse_config(text, source=str(path), base_dir=path.resolve().parent,
                        check_files=check_files)


__all__ = [
    "DEFAULT_RATING_REASONS",
    "REQUIRED",
    "SETTINGS",
    "AudioConfig",
    "DaemonConfig",
    "DevicesConfig",
    "EdgeConfig",
    "GpioConfig",
    "HelpButtonConfig",
    "HoursConfig",
    "HttpConfig",
    "IdCardConfig",
    "MqttConfig",
    "PathsConfig",
    "PrinterConfig",
    "ProgressConfig",
    "RatingReasonConfig",
    "RatingsConfig",
    "ScreensConfig",
    "ServiceConfig",
    "Setting",
    "SiteConfig",
    "TerminalBusConfig",
    "TicketButtonConfig",
    "TlsConfig",
    "WindowConfig",
    "is_loopback",
    "load_config",
    "parse_config",
    "settings_reference",
]

"""The site configuration: one TOML file, read into frozen dataclasses, strictly.

Ops render this file from the Ansible inventory (deploy/ansible/README.md).
:func:`load_config` checks everything it can before the daemon touches a
device and raises :class:`~edge.errors.ConfigInvalid` listing *every* problem
with its key path, e.g. ``windows[3].services.huji: unknown service``
(array positions count from 0, as in the file). Unknown keys are errors too:
a typo must not silently fall back to a default.

Layout (see ``edge/examples/*.toml`` for complete files)::

    version = "2026.11.1"                 # config version reported to the central
    [site]      id, name, town, timezone
    [hours]     open, close, reset,       # "HH:MM" local time; reset starts a new day
                last_ticket               # 停止取号: no ticket from then on (default: close)
    [policy]    dispatch policy (fastpath.types.Policy)
    [[services]] id, prefix, name_zh, name_en, sla_minutes, overtime_minutes,
                 mean_minutes, cv, visitors_per_day (for the predicted wait)
    [[windows]]  number, services = {id = weight}, priority, ratio_cap, terminal, screen
    [devices.printer] [devices.screens] [devices.terminals] [devices.gpio] [devices.audio]
    [devices.id_card]                     # 二代身份证 reader at the kiosk (edge.id_card_kiosk)
    [mqtt]      host, port, username, password | password_file, [mqtt.tls]
    [paths]     journal, clips, journal_retention_days (90: older acknowledged days are
                pruned at the day reset)
    [http]      host, port
    [daemon]    telemetry_seconds, outbox_limit, help_escalation_minutes, watchdog_seconds,
                predict_budget_seconds    # past it a ticket prints without its predicted wait
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar, cast

from edge.errors import ConfigInvalid
from fastpath.types import (
    MAX_SERVICE_WEIGHT,
    NoShowPolicy,
    Policy,
    Service,
    TicketClass,
    WindowProfile,
)
from firmware_protocols.mqtt_topics import is_valid_site_id

_IDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_TOKEN_RE = re.compile(r"^[\x21-\x7e]{1,64}\Z")
_PREFIX_RE = re.compile(r"^[A-Z]{1,2}\Z")
_HHMM_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])\Z")
TicketClassName = Literal["normal", "priority", "appointment"]
TerminalBusKind = Literal["modbus", "vendor"]
ParityName = Literal["N", "E", "O"]
Rs485Name = Literal["auto", "kernel", "rts"]
RS485_NAMES = ("auto", "kernel", "rts")
AudioOutput = Literal["alsa", "wav"]
KLASS_BY_NAME: Mapping[str, TicketClass] = MappingProxyType(
    {"normal": TicketClass.NORMAL, "priority": TicketClass.PRIORITY,
     "appointment": TicketClass.APPOINTMENT}
)


# --------------------------------------------------------------------------- typed config


@dataclass(frozen=True, slots=True)
class SiteConfig:
    id: str
    name: str
    town: str
    timezone: str = "Asia/Shanghai"

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
    last_ticket_minute: int = -1  # 停止取号; -1: at close

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
    mean_minutes: float | None = None  # typical duration; the wait prediction needs it
    cv: float = 0.5  # spread of durations (standard deviation / mean)
    visitors_per_day: float = 100.0  # expected arrivals, for the prediction's future

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
class PrinterConfig:
    port: str  # a serial device, /dev/usb/lp0 (USB) or tcp://host:9100 (network)
    baud: int  # serial only
    poll_seconds: float
    timeout_ms: int = 300  # for each status answer (a slow USB-serial adapter needs more)


@dataclass(frozen=True, slots=True)
class ScreensConfig:
    port: str
    baud: int
    hall: int | None  # address of the hall screen, if any
    timeout_ms: int = 150  # each screen's turnaround, on top of the frames' wire time
    rs485: Rs485Name = "auto"  # who switches the RS485 direction (edge.devices.serial_port)


@dataclass(frozen=True, slots=True)
class TerminalBusConfig:
    kind: TerminalBusKind
    port: str
    baud: int
    poll_ms: int
    timeout_ms: int
    parity: ParityName = "E"  # Modbus: 8E1 as the serial-line spec says; vendor keypads: N
    rs485: Rs485Name = "auto"


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


@dataclass(frozen=True, slots=True)
class TicketButtonConfig:
    pin: int
    service: str
    klass: TicketClassName


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


@dataclass(frozen=True, slots=True)
class PathsConfig:
    journal: str
    clips: str | None  # recorded clips that replace the generated ones, if any
    journal_retention_days: int = 90  # older days the central has acknowledged are pruned


@dataclass(frozen=True, slots=True)
class HttpConfig:
    host: str
    port: int
    window_api: bool  # POST /windows/{n}/{action}: software window terminals


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    telemetry_seconds: int
    outbox_limit: int  # rows of unsent telemetry + events before telemetry is dropped
    help_escalation_minutes: int
    watchdog_seconds: float  # a task that has not checked in for this long stops the pings
    predict_budget_seconds: float = 1.5  # a ticket waits this long for its predicted wait


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
    text: str = field(default="", repr=False, compare=False)  # the file, kept for the journal
    base_dir: str = field(default=".", repr=False, compare=False)  # relative paths start here

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


# --------------------------------------------------------------------------- reader

T = TypeVar("T")
_MISSING: Any = object()


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")


def _type_name(value: object) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)


class _Table:
    """Reads one TOML table, recording problems instead of raising at the first."""

    def __init__(self, data: object, path: str, problems: _Problems) -> None:
        self.path = path
        self.problems = problems
        self.ok = isinstance(data, dict)
        if not self.ok:
            problems.add(path or "<root>", f"expected a table, got {_type_name(data)}")
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self.used: set[str] = set()

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(
        self,
        key: str,
        kind: type[T],
        default: Any = _MISSING,
        check: Callable[[T], str | None] | None = None,
    ) -> T:
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

    def optional(
        self, key: str, kind: type[T], check: Callable[[T], str | None] | None = None
    ) -> T | None:
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
        return _Table(self.data[key], self.key_path(key), self.problems)

    def array_of_tables(self, key: str) -> list[_Table]:
        self.used.add(key)
        value = self.data.get(key, [])
        if not isinstance(value, list):
            self.problems.add(self.key_path(key), f"expected an array of tables, "
                                                  f"got {_type_name(value)}")
            return []
        return [_Table(item, f"{self.key_path(key)}[{i}]", self.problems)
                for i, item in enumerate(value)]

    def finish(self) -> None:
        for key in self.data:
            if key not in self.used:
                self.problems.add(self.key_path(key), "unknown key")


def _placeholder(kind: type[Any]) -> Any:
    return {str: "", int: 0, float: 0.0, bool: False, list: [], dict: {}}.get(kind)


def _between(low: float, high: float) -> Callable[[float], str | None]:
    def check(value: float) -> str | None:
        return None if low <= value <= high else f"must be {low}..{high}, got {value}"
    return check


def _matches(pattern: re.Pattern[str], what: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if pattern.fullmatch(value) else f"{what}, got {value!r}"
    return check


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"
    return check


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


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


# --------------------------------------------------------------------------- sections


def _read_site(root: _Table) -> SiteConfig:
    table = root.table("site", required=True) or _Table({}, "site", _Problems())
    site = SiteConfig(
        id=table.get("id", str, check=_check_site_id),
        name=table.get("name", str, check=_non_empty),
        town=table.get("town", str, ""),
        timezone=table.get("timezone", str, "Asia/Shanghai", _check_timezone),
    )
    table.finish()
    return site


def _read_hours(root: _Table) -> HoursConfig:
    table = root.table("hours") or _Table({}, "hours", root.problems)
    opening = _minute_of(table.get("open", str, "08:30", _check_hhmm))
    close_text = table.get("close", str, "17:30", _check_close)
    closing = DAY_MINUTES if close_text == "24:00" else _minute_of(close_text)
    reset = _minute_of(table.get("reset", str, "03:00", _check_hhmm))
    last_text = table.optional("last_ticket", str, _check_close)
    last = -1
    if last_text is not None:
        last = DAY_MINUTES if last_text == "24:00" else _minute_of(last_text)
    if closing <= opening:
        root.problems.add("hours.close", "must be after hours.open")
    around_the_clock = opening == 0 and closing == DAY_MINUTES
    if opening <= reset < closing and not around_the_clock:
        root.problems.add("hours.reset", "must be outside opening hours")
    if last_text is not None and not opening < last <= closing:
        root.problems.add("hours.last_ticket", "must be after hours.open and not after "
                                               "hours.close")
    table.finish()
    return HoursConfig(opening, closing, reset, last)


def _read_policy(root: _Table) -> Policy:
    table = root.table("policy") or _Table({}, "policy", root.problems)
    defaults = Policy()
    values = {
        "priority_weight_pct": table.get("priority_weight_pct", int,
                                         defaults.priority_weight_pct, _between(0, 10_000)),
        "appointment_weight_pct": table.get("appointment_weight_pct", int,
                                            defaults.appointment_weight_pct, _between(0, 10_000)),
        "appointment_grace_minutes": table.get("appointment_grace_minutes", int,
                                               defaults.appointment_grace_minutes,
                                               _between(0, 1440)),
        # The MQTT contract carries 3-4 digit counters (TicketNo).
        "number_width": table.get("number_width", int, defaults.number_width, _between(3, 4)),
    }
    no_show = table.get("no_show", str, defaults.no_show.value,
                        _one_of(*(p.value for p in NoShowPolicy)))
    table.finish()
    try:
        return Policy(no_show=NoShowPolicy(no_show), **values)
    except ValueError:
        return defaults  # already reported key by key above


def _read_services(root: _Table) -> tuple[ServiceConfig, ...]:
    services = []
    seen_ids: dict[str, str] = {}
    seen_prefixes: dict[str, str] = {}
    tables = root.array_of_tables("services")
    if not tables and root.ok:
        root.problems.add("services", "at least one service is required")
    for table in tables:
        service = ServiceConfig(
            id=table.get("id", str, check=_check_ident),
            prefix=table.get("prefix", str, check=_matches(_PREFIX_RE, "expected 1-2 letters A-Z")),
            name_zh=table.get("name_zh", str, check=_non_empty),
            name_en=table.get("name_en", str, ""),
            sla_minutes=table.get("sla_minutes", int, 0, _between(0, 1440)),
            overtime_minutes=table.get("overtime_minutes", int, 0, _between(0, 1440)),
            mean_minutes=table.optional("mean_minutes", float, _between(0.1, 600)),
            cv=table.get("cv", float, 0.5, _between(0.0, 5.0)),
            visitors_per_day=table.get("visitors_per_day", float, 100.0, _between(0, 100_000)),
        )
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
        number = table.get("number", int, check=_between(1, 9999))
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
            priority=table.get("priority", bool, False),
            ratio_cap=table.get("ratio_cap", int, 0, _between(0, 100)),
            terminal=table.optional("terminal", int, _between(1, 247)),
            screen=table.optional("screen", int, _between(1, 254)),
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


def _read_id_card(sub: _Table, service_ids: set[str], config_dir: Path,
                  ledger_default: str) -> IdCardConfig:
    service = sub.get("service", str, check=_non_empty)
    if service and service not in service_ids:
        sub.problems.add(sub.key_path("service"), f"unknown service {service!r}")
    config = IdCardConfig(
        port=sub.get("port", str, check=_non_empty),
        baud=sub.get("baud", int, 115200, _check_baud_rate),
        service=service,
        elder_age=sub.get("elder_age", int, 60, _between(0, 150)),
        tickets_per_day=sub.get("tickets_per_day", int, 1, _between(0, 100)),
        call_by_name=sub.get("call_by_name", bool, False),
        poll_ms=sub.get("poll_ms", int, 500, _between(100, 10_000)),
        ledger=str(config_dir / sub.get("ledger", str, ledger_default, _non_empty)),
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
        printer = PrinterConfig(
            port=sub.get("port", str, check=_non_empty),
            baud=sub.get("baud", int, 9600, _check_baud_rate),
            poll_seconds=sub.get("poll_seconds", float, 5.0, _between(0.2, 600)),
            timeout_ms=sub.get("timeout_ms", int, 300, _between(20, 5_000)),
        )
        sub.finish()
    if (sub := table.table("screens")) is not None:
        screens = ScreensConfig(
            port=sub.get("port", str, check=_non_empty),
            baud=sub.get("baud", int, 9600, _check_baud_rate),
            hall=sub.optional("hall", int, _between(1, 254)),
            timeout_ms=sub.get("timeout_ms", int, 150, _between(20, 5_000)),
            rs485=cast(Rs485Name, sub.get("rs485", str, "auto", _one_of(*RS485_NAMES))),
        )
        if screens.hall is not None and screens.hall in {w.screen for w in windows}:
            root.problems.add(sub.key_path("hall"), "address already used by a window screen")
        sub.finish()
    elif any(w.screen is not None for w in windows):
        root.problems.add("devices.screens", "windows have screen addresses but no screen bus")
    if (sub := table.table("terminals")) is not None:
        kind = cast(TerminalBusKind, sub.get("kind", str, "modbus", _one_of("modbus", "vendor")))
        modbus = kind == "modbus"  # Modbus terminals 19200 8E1, vendor keypads 9600 8N1
        terminals = TerminalBusConfig(
            kind=kind,
            port=sub.get("port", str, check=_non_empty),
            baud=sub.get("baud", int, 19200 if modbus else 9600, _check_baud_rate),
            poll_ms=sub.get("poll_ms", int, 100, _between(10, 10_000)),
            timeout_ms=sub.get("timeout_ms", int, 50, _between(5, 5_000)),
            parity=cast(ParityName, sub.get("parity", str, "E" if modbus else "N",
                                            _one_of("N", "E", "O"))),
            rs485=cast(Rs485Name, sub.get("rs485", str, "auto", _one_of(*RS485_NAMES))),
        )
        sub.finish()
    elif any(w.terminal is not None for w in windows):
        root.problems.add("devices.terminals", "windows have terminal addresses but no bus")
    if (sub := table.table("gpio")) is not None:
        gpio = _read_gpio(sub, service_ids, root.problems)
    if (sub := table.table("audio")) is not None:
        output = cast(AudioOutput, sub.get("output", str, "alsa", _one_of("alsa", "wav")))
        audio = AudioConfig(
            output=output,
            alsa_device=sub.get("alsa_device", str, "default", _non_empty),
            wav_dir=_resolved(config_dir, sub.optional("wav_dir", str, _non_empty)),
            repeat=sub.get("repeat", int, 2, _between(1, 5)),
            clips_dir=str(config_dir / sub.get("clips_dir", str, "/var/lib/onedoor/clips-default",
                                                _non_empty)),
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
    table.finish()
    return DevicesConfig(printer, screens, terminals, gpio, audio, id_card)


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
        button = TicketButtonConfig(
            pin=sub.get("pin", int, check=_check_pin),
            service=sub.get("service", str),
            klass=cast(TicketClassName, sub.get("class", str, "normal",
                                                _one_of("normal", "priority"))),
        )
        if button.service and button.service not in service_ids:
            problems.add(sub.key_path("service"), f"unknown service {button.service!r}")
        claim(button.pin, sub.key_path("pin"))
        sub.finish()
        ticket_buttons.append(button)
    help_buttons = []
    ids: set[str] = set()
    for sub in table.array_of_tables("help_buttons"):
        help_button = HelpButtonConfig(
            id=sub.get("id", str, check=_check_ident),
            pin=sub.get("pin", int, check=_check_pin),
            led_pin=sub.optional("led_pin", int, _check_pin),
            location=sub.get("location", str, check=_non_empty),
        )
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
    buzzer = table.optional("buzzer_pin", int, _check_pin)
    claim(buzzer, table.key_path("buzzer_pin"))
    gpio = GpioConfig(
        pin_factory=table.get("pin_factory", str, "lgpio",
                              _one_of("lgpio", "rpigpio", "pigpio", "native", "mock")),
        ticket_buttons=tuple(ticket_buttons),
        help_buttons=tuple(help_buttons),
        leds=MappingProxyType(leds),
        buzzer_pin=buzzer,
        debounce_ms=table.get("debounce_ms", int, 30, _between(1, 1000)),
        long_press_ms=table.get("long_press_ms", int, 1500, _between(200, 10_000)),
    )
    table.finish()
    return gpio


def _is_file(path: Path) -> bool:
    """``Path.is_file`` that says no, instead of raising, for names the OS refuses."""
    try:
        return path.is_file()
    except (OSError, ValueError):  # ENAMETOOLONG, an embedded NUL
        return False


def _read_mqtt(root: _Table, config_dir: Path, check_files: bool) -> MqttConfig | None:
    table = root.table("mqtt")
    if table is None:
        return None  # a site without uplink (or not yet): the hall works alone

    def existing_file(value: str) -> str | None:
        path = config_dir / value
        if "\0" in value or any(len(part.encode()) > 255 for part in path.parts):
            return "not a valid file name (NUL, or a part over 255 bytes)"
        return None if not check_files or _is_file(path) else f"file not found: {path}"

    password = table.optional("password", str)
    password_file = table.optional("password_file", str, existing_file)
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
            ca_file=str(config_dir / sub.get("ca_file", str, check=existing_file)),
            cert_file=_resolved(config_dir, sub.optional("cert_file", str, existing_file)),
            key_file=_resolved(config_dir, sub.optional("key_file", str, existing_file)),
        )
        if (tls.cert_file is None) != (tls.key_file is None):
            root.problems.add(sub.path, "cert_file and key_file go together")
        sub.finish()
    mqtt = MqttConfig(
        host=table.get("host", str, check=_non_empty),
        port=table.get("port", int, 8883 if tls else 1883, _between(1, 65535)),
        username=table.optional("username", str, _non_empty),
        password=password,
        tls=tls,
        keepalive_seconds=table.get("keepalive_seconds", int, 30, _between(5, 3600)),
    )
    if mqtt.password is not None and mqtt.username is None:
        root.problems.add(table.key_path("username"), "required when a password is given")
    table.finish()
    return mqtt


def _resolved(config_dir: Path, value: str | None) -> str | None:
    return None if value is None else str(config_dir / value)


def _read_rest(root: _Table, config_dir: Path) -> tuple[PathsConfig, HttpConfig | None,
                                                        DaemonConfig]:
    table = root.table("paths", required=True) or _Table({}, "paths", _Problems())
    paths = PathsConfig(
        journal=str(config_dir / table.get("journal", str, check=_non_empty)),
        clips=_resolved(config_dir, table.optional("clips", str, _non_empty)),
        journal_retention_days=table.get("journal_retention_days", int, 90,
                                         _between(1, 3660)),
    )
    table.finish()
    http = None
    if (table_http := root.table("http")) is not None:
        http = HttpConfig(
            host=table_http.get("host", str, "127.0.0.1", _non_empty),
            port=table_http.get("port", int, 8180, _between(0, 65535)),
            window_api=table_http.get("window_api", bool, False),
        )
        table_http.finish()
    table = root.table("daemon") or _Table({}, "daemon", root.problems)
    daemon = DaemonConfig(
        telemetry_seconds=table.get("telemetry_seconds", int, 30, _between(1, 3600)),
        outbox_limit=table.get("outbox_limit", int, 10_000, _between(10, 10_000_000)),
        help_escalation_minutes=table.get("help_escalation_minutes", int, 5, _between(1, 240)),
        watchdog_seconds=table.get("watchdog_seconds", float, 30.0, _between(1, 3600)),
        predict_budget_seconds=table.get("predict_budget_seconds", float, 1.5,
                                         _between(0.1, 60)),
    )
    table.finish()
    return paths, http, daemon


# --------------------------------------------------------------------------- entry points


def parse_config(
    text: str, *, source: str = "<config>", base_dir: Path | None = None,
    check_files: bool = True,
) -> EdgeConfig:
    """Read a config from TOML text; relative paths are resolved against ``base_dir``.

    ``check_files=False`` skips checking that TLS and password files exist (to
    check a site's config on another machine). Raises :class:`ConfigInvalid`
    with every problem found.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigInvalid(source, [f"<toml>: {exc}"]) from None
    problems = _Problems()
    config_dir = base_dir or Path.cwd()
    root = _Table(data, "", problems)
    version = root.get("version", str, check=_matches(_TOKEN_RE, "expected 1-64 printable "
                                                                  "ASCII characters, no spaces"))
    site = _read_site(root)
    hours = _read_hours(root)
    policy = _read_policy(root)
    services = _read_services(root)
    windows = _read_windows(root, {s.id for s in services})
    devices = _read_devices(root, config_dir, {s.id for s in services}, windows)
    mqtt = _read_mqtt(root, config_dir, check_files)
    paths, http, daemon = _read_rest(root, config_dir)
    root.finish()
    served = {sid for w in windows for sid in w.services}
    for index, service in enumerate(services):
        if service.id and service.id not in served and windows:
            problems.add(f"services[{index}].id", f"no window serves {service.id!r}")
    if problems.items:
        raise ConfigInvalid(source, problems.items)
    return EdgeConfig(version, site, hours, policy, services, windows, devices, mqtt, paths,
                      http, daemon, text, str(config_dir))


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
    "KLASS_BY_NAME",
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
    "ScreensConfig",
    "ServiceConfig",
    "SiteConfig",
    "TerminalBusConfig",
    "TicketButtonConfig",
    "TlsConfig",
    "WindowConfig",
    "load_config",
    "parse_config",
]

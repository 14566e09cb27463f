"""The hall simulator: hall models, arrivals, one simulated day and its summary.

The engine is :mod:`fastpath._sim_c` when it is built, else its pure twin
:mod:`fastpath._sim_py` (chosen by :func:`fastpath.extensions.load_twin`; both
give the same results for the same seed). This module adds what people and
files speak:

* :class:`HallModel`: services with their demand and service times, window
  groups (how many windows of which service mix, shifts and breaks), the
  dispatch :class:`~fastpath.types.Policy`; loaded from TOML
  (:func:`load_hall`, examples in ``fastpath/examples/``);
* arrivals: generated from the model (Poisson, time-of-day profile) or read
  from a CSV of real arrivals (:func:`read_arrivals`, :func:`write_arrivals`);
* :func:`simulate_day`: one seeded day, per-ticket records and a summary.

Time is integer ms since midnight of the simulated day.

Errors::

    ConfigError (fastpath.types)
    └── ModelError          a hall file that cannot describe a hall
        └── ArrivalsError   an arrivals CSV line that cannot be read (with its line number)
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import itertools
import math
import tomllib
import unicodedata
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TextIO

from fastpath._sim_py import (  # the shared tables
    COLUMNS,
    DIST_EMPIRICAL,
    DIST_EXPONENTIAL,
    DIST_FIXED,
    DIST_LOGNORMAL,
    OUT_DONE,
    OUT_NO_SHOW,
)
from fastpath.calendar import Calendar
from fastpath.extensions import load_twin
from fastpath.types import (
    APPOINTMENT,
    CLASS_BY_LABEL,
    MINUTE_MS,
    ConfigError,
    NoShowPolicy,
    Policy,
    Service,
    TicketClass,
    WindowProfile,
    number_order,
)

_engine, IMPLEMENTATION = load_twin("fastpath._sim_c", "fastpath._sim_py")

if TYPE_CHECKING:
    from fastpath._sim_py import Engine, Xoshiro256
else:
    Engine = _engine.Engine
    Xoshiro256 = _engine.Xoshiro256


HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
CLASS_NAMES = {label: int(klass) for label, klass in CLASS_BY_LABEL.items()}
DISTRIBUTIONS = {
    "exponential": DIST_EXPONENTIAL,
    "lognormal": DIST_LOGNORMAL,
    "fixed": DIST_FIXED,
    "empirical": DIST_EMPIRICAL,
}


class ModelError(ConfigError):
    """A hall model (TOML) that cannot describe a hall."""


class ArrivalsError(ModelError):
    """A line of an arrivals CSV that cannot be read."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line


# --- the hall model -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceModel:
    """A service, how many come for it, and how long it takes."""

    service: Service
    visitors_per_day: float
    distribution: str = "lognormal"
    mean_minutes: float = 8.0
    cv: float = 0.5  # lognormal: standard deviation / mean
    samples_ms: tuple[int, ...] = ()  # empirical
    no_show: float = 0.0
    priority_share: float = 0.0
    appointment_share: float = 0.0
    profile: tuple[float, ...] = ()  # hourly weights; empty: the hall's

    def dist(self) -> tuple[int, float, float, list[int]]:
        """The engine's ``(kind, a, b, samples)``."""
        mean_ms = self.mean_minutes * MINUTE_MS
        kind = DISTRIBUTIONS[self.distribution]
        if kind == DIST_LOGNORMAL:
            sigma2 = math.log(1.0 + self.cv * self.cv)
            return kind, math.log(mean_ms) - sigma2 / 2.0, math.sqrt(sigma2), []
        return kind, mean_ms, 0.0, list(self.samples_ms)

    def mean_service_ms(self) -> float:
        if self.distribution == "empirical":
            return sum(self.samples_ms) / len(self.samples_ms)
        return self.mean_minutes * MINUTE_MS


@dataclass(frozen=True, slots=True)
class WindowGroup:
    """``count`` identical windows: one service mix, one set of shifts."""

    name: str
    count: int
    services: Mapping[str, int]
    priority_window: bool = False
    ratio_cap: int = 0
    shifts: tuple[tuple[int, int], ...] = ()  # (open ms, close ms); empty: hall hours


@dataclass(frozen=True, eq=False)
class HallModel:
    """One hall: its services, windows and opening hours."""

    name: str
    services: tuple[ServiceModel, ...]
    groups: tuple[WindowGroup, ...]
    opens_ms: int
    closes_ms: int
    arrivals_until_ms: int
    hourly_profile: tuple[float, ...]
    policy: Policy = field(default_factory=Policy)
    no_show_timeout_ms: int = MINUTE_MS
    breaks: tuple[tuple[int, int], ...] = ()
    """Closed within the day (lunch): no arrivals, and windows without shifts of their
    own closed (:meth:`on_date` cuts the others' shifts to the day's sessions)."""
    service_until: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """A service's arrivals stop here, before ``arrivals_until`` (its own 停止取号)."""

    def __post_init__(self) -> None:
        ids = [m.service.id for m in self.services]
        if not ids:
            raise ModelError(f"{self.name}: a hall needs at least one service")
        if len(set(ids)) != len(ids):
            raise ModelError(f"{self.name}: service ids must be unique")
        prefixes = [m.service.prefix for m in self.services]
        if len(set(prefixes)) != len(prefixes):
            raise ModelError(f"{self.name}: ticket prefixes must be unique")
        if not 0 <= self.opens_ms < self.arrivals_until_ms <= self.closes_ms <= DAY_MS:
            raise ModelError(f"{self.name}: need opens < arrivals_until <= closes within a day")
        if not self.groups:
            raise ModelError(f"{self.name}: a hall needs at least one window group")
        for group in self.groups:
            for service_id in group.services:
                if service_id not in ids:
                    raise ModelError(f"window group {group.name!r} serves unknown service "
                                     f"{service_id!r}")
            for opens, closes in group.shifts:
                if not 0 <= opens < closes <= DAY_MS:
                    raise ModelError(f"window group {group.name!r}: shift must open before it "
                                     "closes, within the day")
        for model in self.services:
            if not any(model.service.id in g.services for g in self.groups if g.count):
                raise ModelError(f"no window serves {model.service.id!r}")
        for start, end in self.breaks:
            if not self.opens_ms < start < end < self.closes_ms:
                raise ModelError(f"{self.name}: a break must lie within the opening hours")
        for service_id in self.service_until:
            if service_id not in ids:
                raise ModelError(f"{self.name}: service_until names unknown {service_id!r}")

    def on_date(self, calendar: Calendar, date: dt.date) -> HallModel:
        """This hall on ``date`` as its calendar says: opening, lunch, 停止取号 (the hall's
        and each service's). :class:`ModelError` if the hall is closed that day."""
        plan = calendar.day(date)
        hours = plan.hours
        if hours is None:
            raise ModelError(f"{self.name}: closed on {date} ({plan.kind})")
        ms = MINUTE_MS
        breaks = tuple((a * ms, b * ms) for (_, a), (b, _) in
                       itertools.pairwise(hours.sessions))
        until = {m.service.id: (hours.last_ticket - margin) * ms for m in self.services
                 if (margin := calendar.service_margin(m.service.id))}
        sessions = [(a * ms, b * ms) for a, b in hours.sessions]
        # A group's own shifts (a half-day window) only within the day's sessions.
        groups = tuple(dataclasses.replace(g, shifts=_within(g.shifts, sessions))
                       if g.shifts else g for g in self.groups)
        return dataclasses.replace(
            self, groups=groups, opens_ms=hours.opens * ms, closes_ms=hours.closes * ms,
            arrivals_until_ms=hours.last_ticket * ms, breaks=breaks,
            service_until=MappingProxyType(until))

    # -- derived ---------------------------------------------------------------

    @property
    def plan(self) -> tuple[int, ...]:
        """Windows per group: the hall's current staffing plan."""
        return tuple(g.count for g in self.groups)

    @property
    def n_windows(self) -> int:
        return sum(self.plan)

    def service_index(self, service_id: str) -> int:
        for index, model in enumerate(self.services):
            if model.service.id == service_id:
                return index
        raise ModelError(f"unknown service {service_id!r}")

    def with_plan(self, plan: Sequence[int]) -> HallModel:
        """The same hall with ``plan[i]`` windows in group *i*."""
        if len(plan) != len(self.groups) or any(n < 0 for n in plan):
            raise ModelError("a plan needs one window count >= 0 per group")
        groups = tuple(
            WindowGroup(g.name, n, g.services, g.priority_window, g.ratio_cap, g.shifts)
            for g, n in zip(self.groups, plan, strict=True)
        )
        return dataclasses.replace(self, groups=groups)

    def window_profiles(self) -> list[WindowProfile]:
        """The windows as the live dispatcher sees them, numbered 1.. in group order."""
        profiles: list[WindowProfile] = []
        for group in self.groups:
            for _ in range(group.count):
                profiles.append(WindowProfile(len(profiles) + 1, dict(group.services),
                                              group.priority_window, group.ratio_cap))
        return profiles

    def window_shifts(self) -> list[tuple[tuple[int, int], ...]]:
        default = _without(((self.opens_ms, self.closes_ms),), self.breaks)
        return [g.shifts or default for g in self.groups for _ in range(g.count)]

    def streams(self, scale: float = 1.0) -> list[tuple[list[int], list[float], float, float]]:
        """Per service: hourly Poisson segments from opening until its arrivals stop, none
        in a break (lunch)."""
        out = []
        for model in self.services:
            weights = model.profile or self.hourly_profile
            until = min(self.arrivals_until_ms,
                        self.service_until.get(model.service.id, self.arrivals_until_ms))
            pieces: list[tuple[int, int, float, bool]] = []  # (start, end, weight, a break)
            for hour, weight in enumerate(weights):
                start = self.opens_ms + hour * HOUR_MS
                if start >= until:
                    break
                end = min(start + HOUR_MS, until)
                cursor = start
                for cut_start, cut_end in self.breaks:
                    if cut_end <= cursor or cut_start >= end:
                        continue
                    if cut_start > cursor:
                        pieces.append((cursor, cut_start, weight, False))
                    pieces.append((max(cut_start, cursor), min(cut_end, end), 0.0, True))
                    cursor = min(cut_end, end)
                if cursor < end:
                    pieces.append((cursor, end, weight, False))
            total_weight = sum(w * (b - a) / HOUR_MS for a, b, w, _ in pieces)
            # One segment per piece, a break over an hour's end one segment: without
            # breaks, one per hour (an hour's draws do not move).
            segments = [(a, w) for i, (a, _, w, cut) in enumerate(pieces)
                        if not (cut and i and pieces[i - 1][3])]
            per_weight = model.visitors_per_day * scale / total_weight if total_weight else 0.0
            # A closing segment of rate 0: a prediction running past the time the
            # kiosks stop must not draw new arrivals.
            out.append(([s for s, _ in segments] + [until],
                        [w * per_weight / HOUR_MS for _, w in segments] + [0.0],
                        model.priority_share, model.appointment_share))
        return out

    def engine(self) -> Engine:
        """A simulation engine for this hall (the selected implementation)."""
        engine: Engine = make_engine(self, Engine)
        return engine


def _without(intervals: Iterable[tuple[int, int]], breaks: Sequence[tuple[int, int]]
             ) -> tuple[tuple[int, int], ...]:
    """``intervals`` with the ``breaks`` cut out (both sorted, ms)."""
    out = []
    for start, end in intervals:
        for cut_start, cut_end in breaks:
            if cut_end <= start or cut_start >= end:
                continue
            if cut_start > start:
                out.append((start, cut_start))
            start = max(start, cut_end)
        if start < end:
            out.append((start, end))
    return tuple(out)


def _within(shifts: Iterable[tuple[int, int]], sessions: Sequence[tuple[int, int]]
            ) -> tuple[tuple[int, int], ...]:
    """The parts of ``shifts`` inside ``sessions`` (both sorted, ms)."""
    return tuple((max(a, c), min(b, d)) for a, b in shifts for c, d in sessions
                 if max(a, c) < min(b, d))


def make_engine(model: HallModel, engine_class: Any, **kwargs: Any) -> Any:
    """Build ``engine_class`` (either twin) for ``model``."""
    index = {m.service.id: i for i, m in enumerate(model.services)}
    windows = [
        ([(index[sid], weight) for sid, weight in profile.services.items()],
         profile.priority_window, profile.ratio_cap)
        for profile in model.window_profiles()
    ]
    policy = model.policy
    return engine_class(
        [m.service.sla_minutes * MINUTE_MS for m in model.services],
        list(policy.class_weights_pct()),
        [number_order(m.service.prefix, 0) for m in model.services],
        windows,
        [m.dist() for m in model.services],
        [m.no_show for m in model.services],
        model.no_show_timeout_ms,
        policy.no_show is NoShowPolicy.REQUEUE_ONCE,
        policy.appointment_grace_ms,  # Policy.appointment_late's constant
        **kwargs,
    )


# --- TOML ----------------------------------------------------------------------


def parse_clock(value: object, where: str) -> int:
    """"HH:MM" or "HH:MM:SS" → ms since midnight."""
    if not isinstance(value, str):
        raise ModelError(f"{where}: expected a time like \"09:00\", got {value!r}")
    parts = value.split(":")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise ModelError(f"{where}: {value!r} is not a time like \"09:00\"") from None
    if len(numbers) not in (2, 3) or not (0 <= numbers[0] <= 24 and 0 <= numbers[1] < 60):
        raise ModelError(f"{where}: {value!r} is not a time like \"09:00\"")
    seconds = numbers[2] if len(numbers) == 3 else 0
    if not 0 <= seconds < 60 or (numbers[0] == 24 and (numbers[1] or seconds)):
        raise ModelError(f"{where}: {value!r} is not a time like \"09:00\"")
    return (numbers[0] * 3600 + numbers[1] * 60 + seconds) * 1000


def ljust_display(text: str, width: int) -> str:
    """Left-justify for a terminal, where a Chinese character takes two columns."""
    columns = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - columns)


def format_clock(ms: int) -> str:
    seconds = ms // 1000
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Table:
    """A TOML table read with types checked and unknown keys refused."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise ModelError(f"{where}: expected a table")
        self.data: dict[str, Any] = data
        self.where = where
        self.used: set[str] = set()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise ModelError(f"{self.where}: missing {key!r}")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
            raise ModelError(f"{self.where}: {key!r} has the wrong type ({value!r})")
        return value

    def done(self) -> None:
        unknown = set(self.data) - self.used
        if unknown:
            raise ModelError(f"{self.where}: unknown keys {sorted(unknown)}")


def _share(table: _Table, key: str) -> float:
    value: float = table.get(key, float, 0.0)
    if not 0.0 <= value <= 1.0:
        raise ModelError(f"{table.where}: {key} must be within 0..1")
    return value


def _profile(table: _Table, key: str) -> tuple[float, ...]:
    values = table.get(key, list, [])
    if any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in values):
        raise ModelError(f"{table.where}: {key} must be a list of numbers >= 0")
    return tuple(float(v) for v in values)


def _service(data: object, where: str, history: Mapping[str, list[int]]) -> ServiceModel:
    t = _Table(data, where)
    try:
        service = Service(
            id=t.get("id", str), prefix=t.get("prefix", str), name_zh=t.get("name_zh", str),
            name_en=t.get("name_en", str, ""), sla_minutes=t.get("sla_minutes", int, 0),
        )
    except ConfigError as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"{where}: {exc}") from None
    distribution = t.get("distribution", str, "lognormal")
    if distribution not in DISTRIBUTIONS:
        raise ModelError(f"{where}: distribution must be one of {sorted(DISTRIBUTIONS)}")
    samples: tuple[int, ...] = tuple(
        round(s * 1000) for s in t.get("samples_seconds", list, [])
    ) or tuple(history.get(service.id, ()))
    if distribution == "empirical" and (not samples or min(samples) <= 0):
        raise ModelError(f"{where}: an empirical service needs positive samples_seconds "
                         "or lines in the hall's history file")
    model = ServiceModel(
        service=service,
        visitors_per_day=t.get("visitors_per_day", float),
        distribution=distribution,
        mean_minutes=t.get("service_minutes", float, 8.0),
        cv=t.get("service_cv", float, 0.5),
        samples_ms=samples if distribution == "empirical" else (),
        no_show=_share(t, "no_show"),
        priority_share=_share(t, "priority_share"),
        appointment_share=_share(t, "appointment_share"),
        profile=_profile(t, "profile"),
    )
    t.done()
    if model.visitors_per_day < 0 or model.mean_minutes <= 0 or model.cv < 0:
        raise ModelError(f"{where}: visitors_per_day >= 0, service_minutes > 0, service_cv >= 0")
    if model.priority_share + model.appointment_share > 1.0:
        raise ModelError(f"{where}: priority_share + appointment_share must not exceed 1")
    return model


def _group(data: object, where: str) -> WindowGroup:
    t = _Table(data, where)
    services = t.get("services", dict)
    for sid, weight in services.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 100:
            raise ModelError(f"{where}: weight of {sid!r} must be an integer 1..100")
    shifts = tuple(
        (parse_clock(pair[0], where), parse_clock(pair[1], where))
        if isinstance(pair, list) and len(pair) == 2
        else _bad_shift(where)
        for pair in t.get("shifts", list, [])
    )
    if any(b[0] < a[1] for a, b in itertools.pairwise(shifts)):
        raise ModelError(f"{where}: shifts must be in order and must not overlap")
    group = WindowGroup(
        name=t.get("name", str), count=t.get("count", int, 1), services=services,
        priority_window=t.get("priority_window", bool, False),
        ratio_cap=t.get("ratio_cap", int, 0), shifts=shifts,
    )
    t.done()
    if group.count < 0 or not services or group.ratio_cap < 0:
        raise ModelError(f"{where}: count >= 0, at least one service, ratio_cap >= 0")
    return group


def _bad_shift(where: str) -> tuple[int, int]:
    raise ModelError(f"{where}: each shift is [\"HH:MM\", \"HH:MM\"]")


def read_history(path: Path) -> dict[str, list[int]]:
    """Observed service times (CSV ``service,seconds``) → ms per service."""
    samples: dict[str, list[int]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                seconds = float(row["seconds"])
                service = row["service"]
            except (KeyError, TypeError, ValueError):
                raise ArrivalsError(str(path), line, "expected columns service,seconds") from None
            if seconds <= 0:
                raise ArrivalsError(str(path), line, "seconds must be > 0")
            samples.setdefault(service, []).append(round(seconds * 1000))
    return samples


def hall_from_dict(data: Mapping[str, Any], where: str = "hall",
                   base: Path | None = None) -> HallModel:
    """A :class:`HallModel` from parsed TOML; ``base`` resolves the history file."""
    top = _Table(dict(data), where)
    hall = _Table(top.get("hall", dict), f"{where} [hall]")
    history_name = hall.get("history", str, "")
    history = read_history((base or Path()) / history_name) if history_name else {}
    policy_table = _Table(top.get("policy", dict, {}), f"{where} [policy]")
    try:
        policy = Policy(
            priority_weight_pct=policy_table.get("priority_weight_pct", int, 100),
            appointment_weight_pct=policy_table.get("appointment_weight_pct", int, 300),
            appointment_grace_minutes=policy_table.get("appointment_grace_minutes", int, 10),
            no_show=NoShowPolicy(policy_table.get("no_show", str, "requeue_once")),
        )
    except ValueError as exc:
        raise ModelError(f"{where} [policy]: {exc}") from None
    policy_table.done()
    services = tuple(_service(s, f"{where} services[{i}]", history)
                     for i, s in enumerate(top.get("services", list)))
    groups = tuple(_group(g, f"{where} windows[{i}]")
                   for i, g in enumerate(top.get("windows", list)))
    top.done()
    opens = parse_clock(hall.get("opens", str), f"{where} [hall] opens")
    closes = parse_clock(hall.get("closes", str), f"{where} [hall] closes")
    until = parse_clock(hall.get("arrivals_until", str, hall.data.get("closes", "")),
                        f"{where} [hall] arrivals_until")
    model = HallModel(
        name=hall.get("name", str), services=services, groups=groups, opens_ms=opens,
        closes_ms=closes, arrivals_until_ms=until,
        hourly_profile=_profile(hall, "hourly_profile") or (1.0,) * 24,
        policy=policy,
        no_show_timeout_ms=round(hall.get("no_show_timeout_seconds", float, 60.0) * 1000),
    )
    hall.get("name_en", str, "")
    hall.done()
    return model


def load_hall(path: str | Path) -> HallModel:
    """Read a hall TOML file (see ``fastpath/examples/*.toml``)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror}") from None
    return hall_from_dict(data, str(path), path.parent)


EXAMPLES = Path(__file__).parent / "examples"


def example_hall(name: str) -> HallModel:
    """One of the shipped halls: ``city_hall``, ``comprehensive_hall``, ``village_station``."""
    path = EXAMPLES / f"{name}.toml"
    if not path.exists():
        known = sorted(p.stem for p in EXAMPLES.glob("*.toml"))
        raise ModelError(f"no example hall {name!r}; known: {', '.join(known)}")
    return load_hall(path)


# --- arrivals --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrivals:
    """Arrivals as columns (time-sorted), the engine's replay input."""

    time_ms: tuple[int, ...]
    service: tuple[int, ...]
    klass: tuple[int, ...]
    booked_ms: tuple[int, ...]  # -1 unless an appointment

    def __len__(self) -> int:
        return len(self.time_ms)

    def replay(self) -> tuple[list[int], list[int], list[int], list[int]]:
        return list(self.time_ms), list(self.service), list(self.klass), list(self.booked_ms)


def generate_arrivals(model: HallModel, seed: int, scale: float = 1.0) -> Arrivals:
    """One day of arrivals from the model's Poisson profile (same draws as the engine's)."""
    # The engine makes the draws: a run with no window open records every arrival.
    engine = make_engine(model, Engine)
    result = engine.run(seed, model.opens_ms, [()] * model.n_windows, model.streams(scale),
                        arrivals_until_ms=model.arrivals_until_ms)
    cols = result["columns"]
    klass = cols["klass"]
    booked = tuple(k if c == APPOINTMENT else -1 for k, c in zip(cols["key"], klass, strict=True))
    return Arrivals(tuple(cols["arrival"]), tuple(cols["service"]), tuple(klass), booked)


def write_arrivals(path: str | Path | TextIO, model: HallModel, arrivals: Arrivals) -> None:
    """CSV ``time,service,class,booked`` (times HH:MM:SS) to a file or an open stream."""
    if not isinstance(path, str | Path):
        _write_csv(path, model, arrivals)
        return
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        _write_csv(handle, model, arrivals)


def _write_csv(handle: TextIO, model: HallModel, arrivals: Arrivals) -> None:
    names = {v: k for k, v in CLASS_NAMES.items()}
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(["time", "service", "class", "booked"])
    for t, s, k, b in zip(arrivals.time_ms, arrivals.service, arrivals.klass,
                          arrivals.booked_ms, strict=True):
        writer.writerow([format_clock(t), model.services[s].service.id, names[k],
                         format_clock(b) if b >= 0 else ""])


def read_arrivals(path: str | Path, model: HallModel) -> Arrivals:
    """Read ``time,service,class,booked``; any bad line is an :class:`ArrivalsError`."""
    path = Path(path)
    index = {m.service.id: i for i, m in enumerate(model.services)}
    rows: list[tuple[int, int, int, int]] = []
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"time", "service"} <= set(reader.fieldnames):
            raise ArrivalsError(str(path), 1, "header must have time,service[,class,booked]")
        for line, row in enumerate(reader, start=2):
            try:
                t = parse_clock(row["time"], "time")
            except ModelError as exc:
                raise ArrivalsError(str(path), line, str(exc)) from None
            service = row["service"]
            if service not in index:
                raise ArrivalsError(str(path), line, f"unknown service {service!r}")
            klass_name = (row.get("class") or "normal").strip()
            if klass_name not in CLASS_NAMES:
                raise ArrivalsError(str(path), line, f"class must be one of {list(CLASS_NAMES)}")
            klass = CLASS_NAMES[klass_name]
            booked = -1
            if klass == APPOINTMENT:
                try:
                    booked = parse_clock(row.get("booked") or "", "booked")
                except ModelError:
                    raise ArrivalsError(str(path), line,
                                        "an appointment needs booked=HH:MM") from None
            rows.append((t, index[service], klass, booked))
    rows.sort(key=lambda r: r[0])  # stable: same-ms arrivals keep the file's order
    return Arrivals(tuple(r[0] for r in rows), tuple(r[1] for r in rows),
                    tuple(r[2] for r in rows), tuple(r[3] for r in rows))


# --- one day ---------------------------------------------------------------------


def percentile(sorted_values: Sequence[int], pct: float) -> int:
    """Nearest-rank percentile of sorted ints (0 for an empty list)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True)
class WaitStats:
    tickets: int
    called: int
    mean_ms: float
    p50_ms: int
    p90_ms: int
    p99_ms: int
    over_sla: int | None  # None: no SLA to be over (a service without sla_minutes)

    @classmethod
    def of(cls, tickets: int, waits: Iterable[int], sla_ms: int) -> WaitStats:
        values = sorted(waits)
        over = sum(1 for w in values if w > sla_ms) if sla_ms > 0 else None
        return cls(tickets, len(values), sum(values) / len(values) if values else 0.0,
                   percentile(values, 50), percentile(values, 90), percentile(values, 99), over)


@dataclass(frozen=True, slots=True)
class DaySummary:
    hall: str
    seed: int
    implementation: str
    tickets: int
    done: int
    no_show: int
    unserved: int
    overall: WaitStats
    services: dict[str, WaitStats]
    utilisation: list[float]  # per window, busy ÷ open time

    def to_dict(self) -> dict[str, Any]:
        def stats(s: WaitStats) -> dict[str, Any]:
            return {"tickets": s.tickets, "called": s.called, "mean_ms": round(s.mean_ms, 1),
                    "p50_ms": s.p50_ms, "p90_ms": s.p90_ms, "p99_ms": s.p99_ms,
                    "over_sla": s.over_sla}
        return {
            "hall": self.hall, "seed": self.seed, "implementation": self.implementation,
            "tickets": self.tickets, "done": self.done, "no_show": self.no_show,
            "unserved": self.unserved, "overall": stats(self.overall),
            "services": {k: stats(v) for k, v in self.services.items()},
            "utilisation": [round(u, 4) for u in self.utilisation],
            "mean_utilisation": round(sum(self.utilisation) / max(1, len(self.utilisation)), 4),
        }


@dataclass(frozen=True, slots=True)
class DayResult:
    """Per-ticket records of one simulated day: the engine's ``COLUMNS``, one array
    each, indexed by ticket serial (order of arrival); a read-only mapping whose
    columns the compiled engine builds on first read (see ``Records``)."""

    model: HallModel
    seed: int
    columns: Mapping[str, array[int]]
    busy_ms: list[int]
    implementation: str = IMPLEMENTATION  # the engine that ran it: "cython" or "python"

    def waits(self) -> array[int]:
        """Per ticket: ms from the start of its wait to its first call, or -1 if never
        called. A wait starts at arrival, or at the booked time of an appointment that
        checked in early: max(issued, booked) (docs/STATISTICS.md); the engine
        measures it when it calls the ticket."""
        return self.columns["wait"]

    def summary(self) -> DaySummary:
        c = self.columns
        waits = self.waits()
        by_service: list[list[int]] = [[] for _ in self.model.services]
        tickets = [0] * len(self.model.services)
        for service, wait in zip(c["service"], waits, strict=True):
            tickets[service] += 1
            if wait >= 0:
                by_service[service].append(wait)
        per_service = {
            model.service.id: WaitStats.of(tickets[index], by_service[index],
                                           model.service.sla_minutes * MINUTE_MS)
            for index, model in enumerate(self.model.services)
        }
        called = [w for w in waits if w >= 0]
        overall = WaitStats.of(len(waits), called, 0)
        with_sla = [s.over_sla for s in per_service.values() if s.over_sla is not None]
        overall = WaitStats(overall.tickets, overall.called, overall.mean_ms, overall.p50_ms,
                            overall.p90_ms, overall.p99_ms, sum(with_sla) if with_sla else None)
        open_ms = [sum(b - a for a, b in shifts) for shifts in self.model.window_shifts()]
        return DaySummary(
            hall=self.model.name, seed=self.seed, implementation=self.implementation,
            tickets=len(waits), done=c["outcome"].count(OUT_DONE),
            no_show=c["outcome"].count(OUT_NO_SHOW),
            unserved=sum(1 for w in waits if w < 0),
            overall=overall, services=per_service,
            utilisation=[b / o if o else 0.0 for b, o in zip(self.busy_ms, open_ms, strict=True)],
        )

    def hourly_p90(self) -> dict[int, int]:
        """p90 wait of the tickets taken in each hour of the day (hour → ms)."""
        by_hour: dict[int, list[int]] = {}
        for arrival, wait in zip(self.columns["arrival"], self.waits(), strict=True):
            if wait >= 0:
                by_hour.setdefault(arrival // HOUR_MS, []).append(wait)
        return {h: percentile(sorted(v), 90) for h, v in sorted(by_hour.items())}


def simulate_day(
    model: HallModel,
    seed: int,
    arrivals: Arrivals | None = None,
    *,
    engine: Any = None,
) -> DayResult:
    """One day of ``model``: Poisson arrivals from its profile, or ``arrivals`` replayed."""
    engine = engine if engine is not None else model.engine()
    shifts = model.window_shifts()
    if arrivals is None:
        result = engine.run(seed, model.opens_ms, shifts, model.streams(),
                            arrivals_until_ms=model.arrivals_until_ms)
    else:
        no_streams: list[tuple[list[int], list[float], float, float]] = [
            ([], [], 0.0, 0.0)] * len(model.services)
        result = engine.run(seed, model.opens_ms, shifts, no_streams, replay=arrivals.replay())
    implementation = "cython" if type(engine).__module__ == "fastpath._sim_c" else "python"
    return DayResult(model, seed, result["columns"], result["busy_ms"], implementation)


__all__ = [
    "COLUMNS",
    "DIST_EMPIRICAL",
    "DIST_EXPONENTIAL",
    "DIST_FIXED",
    "DIST_LOGNORMAL",
    "IMPLEMENTATION",
    "Arrivals",
    "ArrivalsError",
    "DayResult",
    "DaySummary",
    "Engine",
    "HallModel",
    "ModelError",
    "ServiceModel",
    "TicketClass",
    "WaitStats",
    "WindowGroup",
    "Xoshiro256",
    "example_hall",
    "format_clock",
    "generate_arrivals",
    "hall_from_dict",
    "ljust_display",
    "load_hall",
    "make_engine",
    "parse_clock",
    "percentile",
    "read_arrivals",
    "read_history",
    "simulate_day",
    "write_arrivals",
]

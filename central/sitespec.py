"""A site as the registry describes it: what people decide, not what ingest keeps live.

::

    spec = SiteSpec(id="zs-shiqi-13", name="石岐新村党群服务中心", town="石岐街道",
                    kind=SiteKind.VILLAGE,
                    services=(ServiceSpec("zonghe", "综合受理（一窗通办）", "Z", 1800),),
                    windows=(WindowSpec(1, ("zonghe",)),))
    with sessions() as session:
        specs = load_specs(session)            # {site id: SiteSpec} of the sites in service
    diff = diff_site(old, new)                 # SiteDiff: fields, services, windows changed

:mod:`central.registry` writes specs (API, command line, CSV import),
:meth:`central.queries.ReadModel.site_specs` reads them (export, inventory),
and :mod:`central.inventory` renders them as the variables of the Ansible edge
role, so that a site's config follows from its spec.

``hours`` ``None`` leaves the site on the fleet's default opening hours (the
edge role's ``edge_hours``); a retired site keeps its spec, outside the fleet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.errors import UnknownService, UnknownWindow
from central.models import Service, Site, SiteKind, Window

DEFAULT_RESET: Final = "03:00"
"""The edge's own default day reset (ticket counters restart), outside any opening hours."""

LOCATION_FIELDS: Final = frozenset({"lat", "lon"})
"""Registry fields the site's config does not contain: changing them needs no push."""


@dataclass(frozen=True, slots=True)
class Hours:
    """Opening hours, ``HH:MM`` local time, as the edge's ``[hours]`` table has them."""

    open: str
    close: str
    reset: str = DEFAULT_RESET
    last_ticket: str | None = None
    """停止取号: no ticket from then on (``None``: at closing)."""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    code: str
    name: str
    prefix: str
    """The ticket letter(s), A-Z, one or two."""
    sla_s: int
    """Waiting limit in seconds, whole minutes (the edge counts minutes; 0: none)."""


@dataclass(frozen=True, slots=True)
class WindowSpec:
    number: int
    services: tuple[str, ...]
    """Codes of the services it calls (一窗通办 windows list several)."""
    name: str | None = None
    priority: bool = False
    """优先服务专窗: calls priority tickets first."""


@dataclass(frozen=True, slots=True)
class SiteSpec:
    id: str
    name: str
    town: str
    kind: SiteKind
    lat: float | None = None
    lon: float | None = None
    hours: Hours | None = None
    services: tuple[ServiceSpec, ...] = ()
    windows: tuple[WindowSpec, ...] = ()

    def service(self, code: str) -> ServiceSpec | None:
        return next((s for s in self.services if s.code == code), None)

    def window(self, number: int) -> WindowSpec | None:
        return next((w for w in self.windows if w.number == number), None)

    def with_service(self, service: ServiceSpec, windows: Iterable[int] = ()) -> SiteSpec:
        """This spec with ``service`` added, or replacing the one of the same code, and
        called also by the ``windows`` (:class:`UnknownWindow` for a number it lacks)."""
        others = tuple(s for s in self.services if s.code != service.code)
        spec = dataclasses.replace(self, services=(*others, service))
        for number in windows:
            window = spec.window(number)
            if window is None:
                raise UnknownWindow(number)
            if service.code not in window.services:
                spec = spec.with_window(dataclasses.replace(
                    window, services=(*window.services, service.code)))  # fmt: skip
        return spec

    def without_service(self, code: str) -> SiteSpec:
        """This spec without the service (:class:`UnknownService` if it has none of this
        code), taken off the windows that called it too."""
        if self.service(code) is None:
            raise UnknownService(code)
        return dataclasses.replace(
            self,
            services=tuple(s for s in self.services if s.code != code),
            windows=tuple(dataclasses.replace(w, services=tuple(c for c in w.services
                                                                if c != code))
                          for w in self.windows),
        )  # fmt: skip

    def with_window(self, window: WindowSpec) -> SiteSpec:
        others = tuple(w for w in self.windows if w.number != window.number)
        return dataclasses.replace(self, windows=(*others, window))

    def without_window(self, number: int) -> SiteSpec:
        """This spec without the window (:class:`UnknownWindow` if it has none of this number)."""
        if self.window(number) is None:
            raise UnknownWindow(number)
        return dataclasses.replace(self, windows=tuple(w for w in self.windows
                                                       if w.number != number))  # fmt: skip

    def sorted(self) -> SiteSpec:
        """Services by code, windows by number: one order for comparing and showing."""
        return dataclasses.replace(
            self,
            services=tuple(sorted(self.services, key=lambda s: s.code)),
            windows=tuple(sorted(self.windows, key=lambda w: w.number)),
        )


def to_builtins(value: Any) -> Any:
    """A spec (or a part of one) as JSON-ready dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_builtins(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, SiteKind):
        return value.value
    if isinstance(value, tuple | list):
        return [to_builtins(item) for item in value]
    return value


# --------------------------------------------------------------------------- rows <-> specs


def hours_of(site: Site) -> Hours | None:
    if site.hours_open is None or site.hours_close is None:
        return None
    return Hours(site.hours_open, site.hours_close, site.hours_reset or DEFAULT_RESET,
                 site.hours_last_ticket)  # fmt: skip


def set_hours(site: Site, hours: Hours | None) -> None:
    site.hours_open = hours.open if hours else None
    site.hours_close = hours.close if hours else None
    site.hours_reset = hours.reset if hours else None
    site.hours_last_ticket = hours.last_ticket if hours else None


def load_specs(
    session: Session, site_ids: Iterable[str] | None = None, *, retired: bool | None = False
) -> dict[str, SiteSpec]:
    """Specs of the sites in service (``retired=True``: retired ones, ``None``: both), or
    of ``site_ids`` only; three queries however many sites."""
    sites = select(Site).order_by(Site.id)
    services = select(Service).order_by(Service.site_id, Service.code)
    windows = select(Window).order_by(Window.site_id, Window.number)
    if site_ids is not None:
        wanted = sorted(set(site_ids))
        sites = sites.where(Site.id.in_(wanted))
        services = services.where(Service.site_id.in_(wanted))
        windows = windows.where(Window.site_id.in_(wanted))
    if retired is not None:
        sites = sites.where(Site.retired_at.is_not(None) if retired else Site.retired_at.is_(None))
    offered: dict[str, list[ServiceSpec]] = {}
    for s in session.scalars(services):
        offered.setdefault(s.site_id, []).append(
            ServiceSpec(s.code, s.name, s.prefix or "", s.sla_s or 0))
    counters: dict[str, list[WindowSpec]] = {}
    for w in session.scalars(windows):
        counters.setdefault(w.site_id, []).append(
            WindowSpec(w.number, tuple(w.services), w.name, w.priority))
    return {
        site.id: SiteSpec(id=site.id, name=site.name, town=site.town, kind=site.kind,
                          lat=site.lat, lon=site.lon, hours=hours_of(site),
                          services=tuple(offered.get(site.id, ())),
                          windows=tuple(counters.get(site.id, ())))
        for site in session.scalars(sites)
    }  # fmt: skip


# --------------------------------------------------------------------------- differences


@dataclass(frozen=True, slots=True)
class SiteDiff:
    """What changes from one spec of a site to another."""

    site: str
    fields: dict[str, tuple[Any, Any]]
    """Field -> (old, new), for name, town, kind, lat, lon, hours (as dicts)."""
    services_added: tuple[ServiceSpec, ...] = ()
    services_changed: tuple[tuple[ServiceSpec, ServiceSpec], ...] = ()
    services_removed: tuple[ServiceSpec, ...] = ()
    windows_added: tuple[WindowSpec, ...] = ()
    windows_changed: tuple[tuple[WindowSpec, WindowSpec], ...] = ()
    windows_removed: tuple[WindowSpec, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.fields or self.services_added or self.services_changed
                    or self.services_removed or self.windows_added or self.windows_changed
                    or self.windows_removed)  # fmt: skip

    @property
    def changes_config(self) -> bool:
        """Whether the site's rendered config changes (anything but its position)."""
        return not dataclasses.replace(
            self, fields={k: v for k, v in self.fields.items() if k not in LOCATION_FIELDS}
        ).empty

    def to_json(self) -> dict[str, Any]:
        """Only what changed: ``fields``, ``services`` and ``windows`` as added/changed/removed."""
        data: dict[str, Any] = {"site": self.site}
        if self.fields:
            data["fields"] = {name: {"old": old, "new": new}
                              for name, (old, new) in self.fields.items()}  # fmt: skip
        for part, added, changed, removed, key in (
            ("services", self.services_added, self.services_changed, self.services_removed,
             "code"),
            ("windows", self.windows_added, self.windows_changed, self.windows_removed,
             "number"),
        ):  # fmt: skip
            entry: dict[str, Any] = {}
            if added:
                entry["added"] = to_builtins(added)
            if changed:
                entry["changed"] = [{key: getattr(old, key), "old": to_builtins(old),
                                     "new": to_builtins(new)} for old, new in changed]
            if removed:
                entry["removed"] = [getattr(item, key) for item in removed]
            if entry:
                data[part] = entry
        return data

    def summary(self) -> str:
        """One line for people: ``name: 旧 → 新; services +zonghe -huji; windows +3 ~1``."""
        parts = [f"{name}: {_show(old)} → {_show(new)}" for name, (old, new) in self.fields.items()]
        for label, added, changed, removed, key in (
            ("services", self.services_added, self.services_changed, self.services_removed,
             "code"),
            ("windows", self.windows_added, self.windows_changed, self.windows_removed,
             "number"),
        ):  # fmt: skip
            marks = [f"+{getattr(x, key)}" for x in added]
            marks += [f"~{getattr(old, key)}" for old, _ in changed]
            marks += [f"-{getattr(x, key)}" for x in removed]
            if marks:
                parts.append(f"{label} {' '.join(marks)}")
        return "; ".join(parts)


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    return str(value)


def diff_site(old: SiteSpec, new: SiteSpec) -> SiteDiff:
    """What changes from ``old`` to ``new`` (two specs of the same site)."""
    fields: dict[str, tuple[Any, Any]] = {}
    for name in ("name", "town", "kind", "lat", "lon", "hours"):
        before, after = to_builtins(getattr(old, name)), to_builtins(getattr(new, name))
        if before != after:
            fields[name] = (before, after)
    old_services = {s.code: s for s in old.services}
    new_services = {s.code: s for s in new.services}
    old_windows = {w.number: w for w in old.windows}
    new_windows = {w.number: w for w in new.windows}
    return SiteDiff(
        site=new.id,
        fields=fields,
        services_added=tuple(s for c, s in sorted(new_services.items()) if c not in old_services),
        services_changed=tuple((old_services[c], s) for c, s in sorted(new_services.items())
                               if c in old_services and old_services[c] != s),
        services_removed=tuple(s for c, s in sorted(old_services.items())
                               if c not in new_services),
        windows_added=tuple(w for n, w in sorted(new_windows.items()) if n not in old_windows),
        windows_changed=tuple((old_windows[n], w) for n, w in sorted(new_windows.items())
                              if n in old_windows and old_windows[n] != w),
        windows_removed=tuple(w for n, w in sorted(old_windows.items()) if n not in new_windows),
    )  # fmt: skip


__all__ = [
    "DEFAULT_RESET",
    "Hours",
    "ServiceSpec",
    "SiteDiff",
    "SiteSpec",
    "WindowSpec",
    "diff_site",
    "hours_of",
    "load_specs",
    "set_hours",
    "to_builtins",
]

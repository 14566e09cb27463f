"""Changes people make to the site registry (admin role): sites, their services, windows and
opening hours, retirement, and the config version a site should run; one by one or as a CSV
import with a dry run. Reads go through :class:`central.queries.ReadModel`.

::

    registry = Registry(sessions)
    registry.create_site(spec, actor=actor, now=now)                     # Conflict if taken
    registry.change_site("zs-shiqi-01", lambda s: s.with_window(WindowSpec(3, ("zonghe",))),
                         actor=actor, now=now)                           # -> SiteDiff
    registry.retire_site("zs-shiqi-12", actor=actor, now=now)            # Conflict if online
    registry.restore_site("zs-shiqi-12", actor=actor, now=now)
    plan = registry.plan_import(read_sheet(sites=text, windows=text))    # the dry run
    plan = registry.apply_import(sheet, actor=actor, now=now)            # all or nothing

The rules, the same for the API, the command line and an import:

- A change is checked as the whole site it leaves behind: field lengths and
  ranges here, and the config the site would be pushed through the edge's own
  check (:func:`central.inventory.config_problems`). A refused change changes
  nothing; :class:`RegistryRefused` (422) lists every problem.
- Every change is audited in its own transaction (:mod:`central.audit`): who,
  from where, and what (the :class:`SiteDiff`, old and new values).
- A change to what the site's config holds (anything but its position) adds
  one to ``registry_revision`` and, once the site has an expected config
  version, makes it ``<version>+r<revision>``: the site shows config drift
  until the next push renders the registry (the dynamic inventory hands the
  push that version) and the site reports it.
- Retiring takes a site out of the fleet (fleet page, site list, inventory,
  ``/metrics``, alarm rules) and clears its active alarms; its events, alarms,
  commands and statistics stay. An online site is refused (409) unless
  ``force``: ingest then refuses its messages and counts them (reject reason
  ``retired_site``) without acknowledging them, so the edge keeps its events and
  restoring the site brings them in. A retired site's id cannot be reused:
  restore it instead.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from central.alarms import AlarmBook, Notification
from central.audit import Actor, AuditAction, record
from central.errors import Conflict, InvalidRequest, RegistryRefused, UnknownSite
from central.inventory import config_problems
from central.models import Alarm, Service, Site, Window
from central.registry_csv import RegistrySheet
from central.sitespec import SiteDiff, SiteSpec, diff_site, load_specs, set_hours, to_builtins

log = structlog.get_logger(__name__)

RETIRED_NOTE: Final = "站点已撤销 / site retired"
_REVISION_SUFFIX: Final = re.compile(r"\+r\d+\Z")
MAX_VERSION_LENGTH: Final = 64
LIMITS: Final = {"name": 100, "town": 50, "service name": 100, "window name": 100}
"""Longest text of each field (the columns of central.models)."""
MAX_SLA_S: Final = 24 * 3600


Edit = Callable[[SiteSpec], SiteSpec]


def normalized(spec: SiteSpec) -> SiteSpec:
    """Surrounding blanks dropped, an empty window name as none, one order."""
    return dataclasses.replace(
        spec,
        name=spec.name.strip(),
        town=spec.town.strip(),
        services=tuple(dataclasses.replace(s, code=s.code.strip(), name=s.name.strip(),
                                           prefix=s.prefix.strip()) for s in spec.services),
        windows=tuple(dataclasses.replace(w, name=(w.name or "").strip() or None)
                      for w in spec.windows),
    ).sorted()  # fmt: skip


def spec_problems(spec: SiteSpec) -> list[str]:
    """Everything wrong with a site as a whole (empty: the registry may hold it)."""
    problems = []
    for label, value in (("name", spec.name), ("town", spec.town)):
        if not value or len(value) > LIMITS[label]:
            problems.append(f"{label}: 1..{LIMITS[label]} characters")
    for label, degrees, bound in (("lat", spec.lat, 90), ("lon", spec.lon, 180)):
        if degrees is not None and not -bound <= degrees <= bound:
            problems.append(f"{label}: {degrees} is outside -{bound}..{bound}")
    for s in spec.services:
        if len(s.name) > LIMITS["service name"]:
            problems.append(f"service {s.code}: name longer than {LIMITS['service name']}")
        if s.sla_s % 60 or not 0 <= s.sla_s <= MAX_SLA_S:
            problems.append(f"service {s.code}: sla_s {s.sla_s} is not whole minutes "
                            f"in 0..{MAX_SLA_S}")  # fmt: skip
    for w in spec.windows:
        if w.name is not None and len(w.name) > LIMITS["window name"]:
            problems.append(f"window {w.number}: name longer than {LIMITS['window name']}")
    return problems + config_problems(spec)


def _checked(spec: SiteSpec, where: str) -> list[str]:
    return [f"{where}: {problem}" for problem in spec_problems(spec)]


@dataclass(frozen=True, slots=True)
class Retirement:
    site: str
    was_online: bool
    alarms_cleared: int
    notifications: list[Notification]
    """Alarm clearances for the webhook (the API hands them to the service)."""


@dataclass
class ImportPlan:
    """What an import does (or, in a dry run, would do)."""

    added: list[SiteSpec] = field(default_factory=list)
    changed: list[SiteDiff] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    unchanged: int = 0
    problems: list[str] = field(default_factory=list)
    applied: bool = False
    notifications: list[Notification] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "changed": len(self.changed),
                "retired": len(self.retired), "restored": len(self.restored),
                "unchanged": self.unchanged}  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "ok": not self.problems,
            "counts": self.counts(),
            "added": [{"site": s.id, "name": s.name, "town": s.town, "kind": s.kind.value,
                       "services": [v.code for v in s.services],
                       "windows": [w.number for w in s.windows]} for s in self.added],
            "changed": [diff.to_json() for diff in self.changed],
            "retired": self.retired,
            "restored": self.restored,
            "problems": self.problems,
        }  # fmt: skip

    def lines(self) -> list[str]:
        """The plan for people, one line per site, Chinese first."""
        lines = [f"+ 新增 add      {s.id}  {s.name} ({s.town}, {s.kind.value}): "
                 f"{len(s.services)} services, {len(s.windows)} windows" for s in self.added]
        lines += [f"~ 变更 change   {d.site}  {d.summary()}" for d in self.changed]
        lines += [f"- 撤销 retire   {site}" for site in self.retired]
        lines += [f"^ 恢复 restore  {site}" for site in self.restored]
        lines.append(f"= 未变 unchanged {self.unchanged}")
        lines += [f"! 问题 problem  {problem}" for problem in self.problems]
        return lines


class Registry:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # ------------------------------------------------------------------ one site

    def create_site(self, spec: SiteSpec, *, actor: Actor, now: datetime) -> SiteSpec:
        """Add a site with its services, windows and hours; :class:`Conflict` if the id is
        taken (by a retired site too), :class:`RegistryRefused` if the spec is not valid."""
        spec = normalized(spec)
        problems = _checked(spec, spec.id)
        if problems:
            raise RegistryRefused(problems)
        try:
            with self._sessions.begin() as session:
                existing = session.get(Site, spec.id)
                if existing is not None:
                    raise Conflict(self._taken(existing))
                self._create(session, spec, actor, now)
        except IntegrityError:  # another admin added it just now
            raise Conflict(f"site {spec.id!r} already exists") from None
        return spec

    def change_site(self, site_id: str, edit: Edit, *, actor: Actor, now: datetime) -> SiteDiff:
        """Apply ``edit`` (current spec -> wanted spec) to a site, retired or not."""
        with self._sessions.begin() as session:
            site = self._locked(session, [site_id]).get(site_id)
            if site is None:
                raise UnknownSite(site_id)
            current = load_specs(session, [site_id], retired=None)[site_id]
            wanted = normalized(edit(current))
            if wanted.id != site_id:
                raise InvalidRequest("a site's id cannot change (add a new site and retire "
                                     "this one)")  # fmt: skip
            diff = diff_site(current, wanted)
            if diff.empty:
                return diff
            problems = _checked(wanted, site_id)
            if problems:
                raise RegistryRefused(problems)
            self._update(session, site, wanted, diff, actor, now)
        return diff

    def retire_site(self, site_id: str, *, actor: Actor, now: datetime,
                    force: bool = False) -> Retirement:  # fmt: skip
        with self._sessions.begin() as session:
            site = self._locked(session, [site_id]).get(site_id)
            if site is None:
                raise UnknownSite(site_id)
            if site.retired_at is not None:
                raise Conflict(f"site {site_id!r} is already retired "
                               f"(since {site.retired_at:%Y-%m-%d %H:%M} UTC)")  # fmt: skip
            if site.online and not force:
                raise Conflict(self._online(site))
            book = AlarmBook(session, now)
            was_online = site.online
            cleared = self._retire(session, site, book, actor, now, forced=force)
        return Retirement(site_id, was_online, cleared, book.notifications)

    def restore_site(self, site_id: str, *, actor: Actor, now: datetime) -> None:
        with self._sessions.begin() as session:
            site = self._locked(session, [site_id]).get(site_id)
            if site is None:
                raise UnknownSite(site_id)
            if site.retired_at is None:
                raise Conflict(f"site {site_id!r} is not retired")
            self._restore(session, site, actor, now)

    def set_expected_config(self, site_id: str, version: str | None, *, now: datetime,
                            actor: Actor) -> None:  # fmt: skip
        """Set (or clear, with ``None``) the config version the site should run."""
        with self._sessions.begin() as session:
            site = session.get(Site, site_id)
            if site is None:
                raise UnknownSite(site_id)
            old = site.expected_config_version
            if old == version:
                return
            site.expected_config_version = version
            site.config_version_changed_at = now
            record(session, actor, AuditAction.SITE_EXPECTED_CONFIG, site_id,
                   {"old": old, "new": version}, now=now)  # fmt: skip
        log.info("registry.expected_config", site=site_id, version=version, by=actor.name)

    # ------------------------------------------------------------------ imports

    def plan_import(self, sheet: RegistrySheet, *, retire_missing: bool = False,
                    force: bool = False) -> ImportPlan:  # fmt: skip
        """The dry run: what :meth:`apply_import` would do, with every problem."""
        with self._sessions() as session:
            plan, _, _ = self._plan(session, sheet, retire_missing=retire_missing,
                                    force=force, lock=False)  # fmt: skip
        return plan

    def apply_import(self, sheet: RegistrySheet, *, actor: Actor, now: datetime,
                     retire_missing: bool = False, force: bool = False) -> ImportPlan:  # fmt: skip
        """Apply the sheet in one transaction, or nothing (:class:`RegistryRefused`)."""
        with self._sessions.begin() as session:
            plan, wanted, sites = self._plan(session, sheet, retire_missing=retire_missing,
                                             force=force, lock=True)  # fmt: skip
            if plan.problems:
                raise RegistryRefused(plan.problems)
            via = {"via": "import"}
            for spec in plan.added:
                self._create(session, spec, actor, now, via)
            for diff in plan.changed:
                self._update(session, sites[diff.site], wanted[diff.site], diff, actor, now, via)
            book = AlarmBook(session, now)
            for site_id in plan.retired:
                self._retire(session, sites[site_id], book, actor, now, forced=force, via=via)
            for site_id in plan.restored:
                self._restore(session, sites[site_id], actor, now, via)
            record(session, actor, AuditAction.REGISTRY_IMPORT, "registry",
                   {**plan.counts(), "retire_missing": retire_missing, "force": force},
                   now=now)  # fmt: skip
        plan.applied = True
        plan.notifications = book.notifications
        return plan

    def _plan(self, session: Session, sheet: RegistrySheet, *, retire_missing: bool,
              force: bool, lock: bool) -> tuple[ImportPlan, dict[str, SiteSpec],
                                                dict[str, Site]]:  # fmt: skip
        plan = ImportPlan(problems=list(sheet.problems))
        if plan.problems:
            return plan, {}, {}
        if not sheet.site_ids:
            plan.problems.append("nothing to import: give sites, services or windows")
            return plan, {}, {}
        if retire_missing and not sheet.sites:
            plan.problems.append("retire_missing retires the sites missing from sites.csv: "
                                 "give sites.csv")  # fmt: skip
            return plan, {}, {}
        every = None if retire_missing else sheet.site_ids  # every site: no long IN (...)
        sites = self._locked(session, every) if lock else self._rows(session, every)
        current = load_specs(session, every, retired=None)
        wanted: dict[str, SiteSpec] = {}
        for site_id in sorted(sheet.site_ids | set(sites)):
            row, spec, site = sheet.sites.get(site_id), current.get(site_id), sites.get(site_id)
            where = sheet.where(site_id)
            if spec is None and row is None:
                plan.problems.append(f"{where}: not in the registry; add it to sites.csv")
                continue
            new = row.applied_to(spec) if row is not None else spec
            assert new is not None
            if site_id in sheet.services:
                new = dataclasses.replace(new, services=tuple(sheet.services[site_id]))
            if site_id in sheet.windows:
                new = dataclasses.replace(new, windows=tuple(sheet.windows[site_id]))
            new = normalized(new)
            wanted[site_id] = new
            retire: bool | None = row.given.get("retired") if row is not None else None
            if retire_missing and site_id not in sheet.sites:
                retire = True
            if spec is None or site is None:
                plan.problems += _checked(new, where)
                if retire:
                    plan.problems.append(f"{where}: a new site cannot be retired")
                plan.added.append(new)
                continue
            diff = diff_site(spec, new)
            if not diff.empty:
                plan.problems += _checked(new, where)
                plan.changed.append(diff)
            if retire and site.retired_at is None:
                if site.online and not force:
                    plan.problems.append(f"{where}: {self._online(site)}")
                plan.retired.append(site_id)
            elif retire is False and site.retired_at is not None:
                plan.restored.append(site_id)
            elif diff.empty:
                plan.unchanged += 1
        return plan, wanted, sites

    # ------------------------------------------------------------------ rows

    @staticmethod
    def _rows(session: Session, site_ids: Iterable[str] | None) -> dict[str, Site]:
        statement = select(Site).order_by(Site.id)
        if site_ids is not None:
            statement = statement.where(Site.id.in_(sorted(site_ids)))
        return {site.id: site for site in session.scalars(statement)}

    @staticmethod
    def _locked(session: Session, site_ids: Iterable[str] | None) -> dict[str, Site]:
        """The site rows, locked in id order (as ingest locks them: no deadlock)."""
        statement = select(Site).order_by(Site.id).with_for_update()
        if site_ids is not None:
            statement = statement.where(Site.id.in_(sorted(site_ids)))
        return {site.id: site for site in session.scalars(statement)}

    @staticmethod
    def _taken(site: Site) -> str:
        if site.retired_at is not None:
            return (f"site {site.id!r} exists, retired since {site.retired_at:%Y-%m-%d}: "
                    "restore it (its history is kept) or choose another id")
        return f"site {site.id!r} already exists"

    @staticmethod
    def _online(site: Site) -> str:
        seen = f"{site.last_seen_at:%Y-%m-%d %H:%M} UTC" if site.last_seen_at else "never"
        return (f"site {site.id!r} is online (last heard {seen}): stop its edge first, or "
                "retire it with force, and its messages are then refused and counted "
                "(retired_site), kept by the edge")

    def _create(self, session: Session, spec: SiteSpec, actor: Actor, now: datetime,
                via: dict[str, str] | None = None) -> None:  # fmt: skip
        site = Site(id=spec.id, name=spec.name, town=spec.town, kind=spec.kind, lat=spec.lat,
                    lon=spec.lon, registry_revision=0)  # fmt: skip
        set_hours(site, spec.hours)
        session.add(site)
        session.flush()
        self._write_parts(session, spec.id, diff_site(dataclasses.replace(
            spec, services=(), windows=()), spec), {}, {})  # fmt: skip
        record(session, actor, AuditAction.SITE_CREATE, spec.id,
               {**(via or {}), "site": to_builtins(spec)}, now=now)  # fmt: skip

    def _update(self, session: Session, site: Site, spec: SiteSpec, diff: SiteDiff,
                actor: Actor, now: datetime,
                via: dict[str, str] | None = None) -> None:  # fmt: skip
        site.name, site.town, site.kind = spec.name, spec.town, spec.kind
        site.lat, site.lon = spec.lat, spec.lon
        set_hours(site, spec.hours)
        services = {s.code: s for s in session.scalars(
            select(Service).where(Service.site_id == site.id))}  # fmt: skip
        windows = {w.number: w for w in session.scalars(
            select(Window).where(Window.site_id == site.id))}  # fmt: skip
        self._write_parts(session, site.id, diff, services, windows)
        detail: dict[str, Any] = {**(via or {}), **diff.to_json()}
        if diff.changes_config:
            site.registry_revision += 1
            detail["registry_revision"] = site.registry_revision
            if site.expected_config_version is not None:
                old = site.expected_config_version
                site.expected_config_version = _revised(old, site.registry_revision)
                site.config_version_changed_at = now
                detail["expected_config_version"] = {"old": old,
                                                     "new": site.expected_config_version}
        record(session, actor, AuditAction.SITE_UPDATE, site.id, detail, now=now)

    @staticmethod
    def _write_parts(session: Session, site_id: str, diff: SiteDiff,
                     services: dict[str, Service], windows: dict[int, Window]) -> None:  # fmt: skip
        for gone in diff.services_removed:
            session.delete(services[gone.code])
        for closed in diff.windows_removed:
            session.delete(windows[closed.number])
        session.flush()
        for _, new in diff.services_changed:
            row = services[new.code]
            row.name, row.prefix, row.sla_s = new.name, new.prefix, new.sla_s
        for _, w in diff.windows_changed:
            counter = windows[w.number]
            counter.name, counter.services, counter.priority = w.name, list(w.services), w.priority
        for s in diff.services_added:
            session.add(Service(site_id=site_id, code=s.code, name=s.name, prefix=s.prefix,
                                sla_s=s.sla_s))  # fmt: skip
        for w in diff.windows_added:
            session.add(Window(site_id=site_id, number=w.number, name=w.name,
                               services=list(w.services), priority=w.priority))  # fmt: skip

    @staticmethod
    def _retire(session: Session, site: Site, book: AlarmBook, actor: Actor, now: datetime,
                *, forced: bool, via: dict[str, str] | None = None) -> int:  # fmt: skip
        was_online = site.online
        site.retired_at = now
        if site.online:
            site.online = False
            site.status_changed_at = now
        active = session.scalars(
            select(Alarm).where(Alarm.site_id == site.id, Alarm.cleared_at.is_(None))
        ).all()
        for alarm in active:
            book.clear(site.id, alarm.type, alarm.device, note=RETIRED_NOTE)
        record(session, actor, AuditAction.SITE_RETIRE, site.id,
               {**(via or {}), "was_online": was_online, "forced": forced and was_online,
                "alarms_cleared": len(active)}, now=now)  # fmt: skip
        log.warning("registry.site_retired", site=site.id, was_online=was_online,
                    alarms_cleared=len(active), by=actor.name)  # fmt: skip
        return len(active)

    @staticmethod
    def _restore(session: Session, site: Site, actor: Actor, now: datetime,
                 via: dict[str, str] | None = None) -> None:  # fmt: skip
        retired_at = site.retired_at
        site.retired_at = None
        record(session, actor, AuditAction.SITE_RESTORE, site.id,
               {**(via or {}), "retired_at": retired_at.isoformat() if retired_at else None},
               now=now)  # fmt: skip
        log.info("registry.site_restored", site=site.id, by=actor.name)


def _revised(version: str, revision: int) -> str:
    """``2026.11.1`` (or ``2026.11.1+r4``) -> ``2026.11.1+r<revision>``, at most 64 long."""
    suffix = f"+r{revision}"
    base = _REVISION_SUFFIX.sub("", version)
    return base[: MAX_VERSION_LENGTH - len(suffix)] + suffix


__all__ = [
    "Edit",
    "ImportPlan",
    "Registry",
    "Retirement",
    "normalized",
    "spec_problems",
]

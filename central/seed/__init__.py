"""Registry seed: the sample Zhongshan fleet (``sites.csv``) and service catalogue.

``sites.csv`` and ``services.csv`` are SAMPLE DATA (see their headers). The loader
is idempotent: it inserts missing sites, services and windows, updates the
registry columns (name, town, kind, position) of existing sites, and never
touches live state or windows an operator has changed.

::

    with sessions.begin() as session:
        counts = load_seed(session)          # SeedCounts(sites=303, services=..., windows=...)
    specs = seed_specs()                     # the same sites as central.sitespec.SiteSpec

A site offers the catalogue's services of its kind; window 1 of a hall is the
优先服务专窗 and, like every village window, serves them all; a hall's other
windows serve one service each, in turn (:func:`site_spec`, also used by
``onedoor central site add --windows N``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.errors import SeedError
from central.models import Service, Site, SiteKind, Window
from central.registry_csv import csv_rows
from central.sitespec import ServiceSpec, SiteSpec, WindowSpec
from firmware_protocols.mqtt_topics import is_valid_site_id

SEED_DIR: Final = Path(__file__).parent
SITES_CSV: Final = SEED_DIR / "sites.csv"
SERVICES_CSV: Final = SEED_DIR / "services.csv"


@dataclass(frozen=True, slots=True)
class SiteRow:
    id: str
    name: str
    town: str
    kind: SiteKind
    lat: float | None
    lon: float | None
    windows: int


@dataclass(frozen=True, slots=True)
class ServiceRow:
    code: str
    name: str
    prefix: str
    sla_s: int
    kinds: frozenset[SiteKind]


@dataclass(frozen=True, slots=True)
class SeedCounts:
    sites: int
    services: int
    windows: int


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with ``#`` comment lines, as (line number, row)."""
    try:
        yield from csv_rows(path.read_text(encoding="utf-8"), path.name)
    except ValueError as exc:
        raise SeedError(str(exc)) from None


def read_sites(path: Path = SITES_CSV) -> list[SiteRow]:
    sites: list[SiteRow] = []
    seen: set[str] = set()
    for number, row in _rows(path):
        try:
            site = SiteRow(
                id=row["id"],
                name=row["name"].strip(),
                town=row["town"].strip(),
                kind=SiteKind(row["kind"]),
                lat=float(row["lat"]) if row["lat"] else None,
                lon=float(row["lon"]) if row["lon"] else None,
                windows=int(row["windows"]),
            )
        except (KeyError, ValueError) as exc:
            raise SeedError(f"{path.name}:{number}: {exc}") from None
        if not is_valid_site_id(site.id):
            raise SeedError(f"{path.name}:{number}: invalid site id {site.id!r}")
        if site.id in seen:
            raise SeedError(f"{path.name}:{number}: duplicate site id {site.id!r}")
        if not site.name or not site.town or not 1 <= site.windows <= 999:
            raise SeedError(f"{path.name}:{number}: empty name/town or windows out of 1..999")
        seen.add(site.id)
        sites.append(site)
    return sites


def read_services(path: Path = SERVICES_CSV) -> list[ServiceRow]:
    services: list[ServiceRow] = []
    for number, row in _rows(path):
        try:
            services.append(
                ServiceRow(
                    code=row["code"],
                    name=row["name"],
                    prefix=row["prefix"],
                    sla_s=int(row["sla_s"]),
                    kinds=frozenset(SiteKind(k) for k in row["kinds"].split()),
                )
            )
        except (KeyError, ValueError) as exc:
            raise SeedError(f"{path.name}:{number}: {exc}") from None
    return services


def site_spec(site: SiteRow, catalogue: list[ServiceRow]) -> SiteSpec:
    """The spec of a seed site: the catalogue's services of its kind, ``windows`` windows."""
    offered = [s for s in catalogue if site.kind in s.kinds]
    codes = tuple(s.code for s in offered)
    windows = []
    for number in range(1, site.windows + 1):
        serves_all = number == 1 or site.kind is SiteKind.VILLAGE
        windows.append(WindowSpec(
            number=number, name=f"{number}号窗口",
            services=codes if serves_all else (codes[(number - 2) % len(codes)],),
            priority=number == 1 and site.kind is not SiteKind.VILLAGE))  # fmt: skip
    return SiteSpec(
        id=site.id, name=site.name, town=site.town, kind=site.kind, lat=site.lat, lon=site.lon,
        services=tuple(ServiceSpec(s.code, s.name, s.prefix, s.sla_s) for s in offered),
        windows=tuple(windows),
    )  # fmt: skip


def seed_specs(sites_csv: Path = SITES_CSV, services_csv: Path = SERVICES_CSV) -> list[SiteSpec]:
    catalogue = read_services(services_csv)
    return [site_spec(site, catalogue) for site in read_sites(sites_csv)]


def load_seed(
    session: Session, sites_csv: Path = SITES_CSV, services_csv: Path = SERVICES_CSV
) -> SeedCounts:
    """Upsert the registry from the seed files inside the caller's transaction."""
    specs = seed_specs(sites_csv, services_csv)
    existing = {s.id: s for s in session.scalars(select(Site))}
    have_services = set(session.execute(select(Service.site_id, Service.code)))
    have_windows = set(session.execute(select(Window.site_id, Window.number)))
    added_services = added_windows = 0
    for spec in specs:
        site = existing.get(spec.id)
        if site is None:
            site = Site(id=spec.id, name=spec.name, town=spec.town, kind=spec.kind)
            session.add(site)
        site.name, site.town, site.kind, site.lat, site.lon = (
            spec.name, spec.town, spec.kind, spec.lat, spec.lon)  # fmt: skip
        for service in spec.services:
            if (spec.id, service.code) not in have_services:
                session.add(Service(site_id=spec.id, code=service.code, name=service.name,
                                    prefix=service.prefix, sla_s=service.sla_s))  # fmt: skip
                added_services += 1
        for window in spec.windows:
            if (spec.id, window.number) not in have_windows:
                session.add(Window(site_id=spec.id, number=window.number, name=window.name,
                                   services=list(window.services),
                                   priority=window.priority))  # fmt: skip
                added_windows += 1
    session.flush()
    return SeedCounts(sites=len(specs), services=added_services, windows=added_windows)


__all__ = [
    "SeedCounts",
    "ServiceRow",
    "SiteRow",
    "load_seed",
    "read_services",
    "read_sites",
    "seed_specs",
    "site_spec",
]

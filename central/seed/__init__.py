"""Registry seed: the sample Zhongshan fleet (``sites.csv``) and service catalogue.

``sites.csv`` and ``services.csv`` are SAMPLE DATA (see their headers). The loader
is idempotent: it inserts missing sites, services and windows, updates the
registry columns (name, town, kind, position) of existing sites, and never
touches live state or windows an operator has changed.

::

    with sessions.begin() as session:
        counts = load_seed(session)          # SeedCounts(sites=303, services=..., windows=...)
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.errors import SeedError
from central.models import Service, Site, SiteKind, Window
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
    with path.open(encoding="utf-8", newline="") as handle:
        lines = [(n, line) for n, line in enumerate(handle, 1) if not line.startswith("#")]
    reader = csv.DictReader(line for _, line in lines)
    for (number, _), row in zip(lines[1:], reader, strict=True):
        if None in row or any(value is None for value in row.values()):
            raise SeedError(f"{path.name}:{number}: wrong number of columns")
        yield number, row


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


def load_seed(
    session: Session, sites_csv: Path = SITES_CSV, services_csv: Path = SERVICES_CSV
) -> SeedCounts:
    """Upsert the registry from the seed files inside the caller's transaction."""
    sites = read_sites(sites_csv)
    catalogue = read_services(services_csv)
    existing = {s.id: s for s in session.scalars(select(Site))}
    have_services = set(session.execute(select(Service.site_id, Service.code)))
    have_windows = set(session.execute(select(Window.site_id, Window.number)))
    added_services = added_windows = 0
    for row in sites:
        site = existing.get(row.id)
        if site is None:
            site = Site(id=row.id, name=row.name, town=row.town, kind=row.kind)
            session.add(site)
        site.name, site.town, site.kind, site.lat, site.lon = (
            row.name,
            row.town,
            row.kind,
            row.lat,
            row.lon,
        )
        offered = [s for s in catalogue if row.kind in s.kinds]
        for service in offered:
            if (row.id, service.code) not in have_services:
                session.add(
                    Service(
                        site_id=row.id,
                        code=service.code,
                        name=service.name,
                        prefix=service.prefix,
                        sla_s=service.sla_s,
                    )
                )
                added_services += 1
        every = [s.code for s in offered]
        for number in range(1, row.windows + 1):
            if (row.id, number) in have_windows:
                continue
            # Window 1 of a hall is the 优先服务专窗 and, like a village's windows, serves all.
            serves_all = number == 1 or row.kind is SiteKind.VILLAGE
            services = every if serves_all else [every[(number - 2) % len(every)]]
            session.add(
                Window(
                    site_id=row.id,
                    number=number,
                    name=f"{number}号窗口",
                    services=services,
                    priority=number == 1 and row.kind is not SiteKind.VILLAGE,
                )
            )
            added_windows += 1
    session.flush()
    return SeedCounts(sites=len(sites), services=added_services, windows=added_windows)


__all__ = ["SeedCounts", "ServiceRow", "SiteRow", "load_seed", "read_services", "read_sites"]

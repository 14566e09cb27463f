"""The registry as CSV sheets, for imports and exports (a spreadsheet is what ops keep).

::

    sheet = read_sheet(sites=text, services=text, windows=text)   # any of the three
    sheet.problems                  # ["sites.csv:4: kind: 'hamlet' is not one of ..."]
    texts = write_sheet(specs, retired={"zs-x"})   # {"sites": csv, "services": ..., ...}

Three files, UTF-8 (a byte-order mark is fine; the command line also reads GB18030,
a Chinese Excel's CSV), ``#`` lines are comments::

    sites.csv     id,name,town,kind[,lat,lon][,open,close[,last_ticket][,reset]][,status]
                  [,revision]
    services.csv  site,code,name,prefix,sla_s
    windows.csv   site,number,services[,name][,priority]

What an import means (see :meth:`central.registry.Registry.plan_import`): a row
of ``sites.csv`` creates the site or sets its fields; an optional column left
out keeps the registry's value, an empty cell clears it (empty ``open`` and
``close``: the fleet's default hours). ``status`` is ``active`` (or empty) or
``retired``. A site that has rows in ``services.csv`` (``windows.csv``) gets
exactly those services (windows); sites without rows there keep theirs.
``services`` of a window are codes separated by spaces; ``priority`` is
``yes``/``no`` (also ``true``/``false``, ``1``/``0``); ``sla_s`` is seconds in
whole minutes. An export writes every column, so that importing it back
changes nothing; its ``revision`` (the site's ``registry_revision``) is for the
static inventory made from it (``generate_sample.py --registry``) and ignored by
an import.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from central.models import SiteKind
from central.sitespec import DEFAULT_RESET, Hours, ServiceSpec, SiteSpec, WindowSpec

SITE_COLUMNS: Final = ("id", "name", "town", "kind", "lat", "lon", "open", "close",
                       "last_ticket", "reset", "status", "revision")  # fmt: skip
SERVICE_COLUMNS: Final = ("site", "code", "name", "prefix", "sla_s")
WINDOW_COLUMNS: Final = ("site", "number", "services", "name", "priority")
REQUIRED: Final = {
    "sites": ("id", "name", "town", "kind"),
    "services": SERVICE_COLUMNS,
    "windows": ("site", "number", "services"),
}
COLUMNS: Final = {"sites": SITE_COLUMNS, "services": SERVICE_COLUMNS, "windows": WINDOW_COLUMNS}
ACTIVE: Final = "active"
RETIRED: Final = "retired"
_TRUE: Final = frozenset({"yes", "true", "1", "y", "是"})
_FALSE: Final = frozenset({"no", "false", "0", "n", "否", ""})


def decode_csv(data: bytes, name: str) -> str:
    """A CSV file's text: UTF-8 (with or without a byte-order mark), else GB18030, which
    is what a Chinese Excel saves as "CSV (逗号分隔)"; ``ValueError`` naming the file."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise ValueError(f"{name}: neither UTF-8 nor GB18030 text; save it as CSV UTF-8") \
            from None


def csv_rows(text: str, name: str) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of CSV text with ``#`` comment lines, as (line number, row); a row with the
    wrong number of columns raises ``ValueError`` naming ``name`` and the line."""
    lines = [(n, line) for n, line in enumerate(text.lstrip("\ufeff").splitlines(True), 1)
             if line.strip() and not line.startswith("#")]  # fmt: skip
    reader = csv.DictReader(line for _, line in lines)
    for (number, _), row in zip(lines[1:], reader, strict=True):
        if None in row or any(value is None for value in row.values()):
            raise ValueError(f"{name}:{number}: wrong number of columns")
        yield number, {key.strip(): value for key, value in row.items()}


@dataclass(frozen=True, slots=True)
class SiteLine:
    """One line of ``sites.csv``: ``given`` holds the optional fields its columns set."""

    line: int
    id: str
    name: str
    town: str
    kind: SiteKind
    given: Mapping[str, Any]
    """Of ``lat``, ``lon``, ``hours`` (an :class:`Hours` or ``None``), ``retired`` (bool)."""

    def applied_to(self, spec: SiteSpec | None) -> SiteSpec:
        """``spec`` (or a new, empty site) with what this row sets."""
        return SiteSpec(
            id=self.id, name=self.name, town=self.town, kind=self.kind,
            lat=self.given.get("lat", spec.lat if spec else None),
            lon=self.given.get("lon", spec.lon if spec else None),
            hours=self.given.get("hours", spec.hours if spec else None),
            services=spec.services if spec else (),
            windows=spec.windows if spec else (),
        )  # fmt: skip


@dataclass
class RegistrySheet:
    """What an import says, per site id."""

    sites: dict[str, SiteLine] = field(default_factory=dict)
    services: dict[str, list[ServiceSpec]] = field(default_factory=dict)
    windows: dict[str, list[WindowSpec]] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)
    """Site id -> registry revision, from an export's ``revision`` column (not imported)."""
    lines: dict[tuple[str, str], int] = field(default_factory=dict)
    """(file, site id) -> first line naming the site, for problem messages."""
    problems: list[str] = field(default_factory=list)

    @property
    def site_ids(self) -> set[str]:
        return set(self.sites) | set(self.services) | set(self.windows)

    def specs(self) -> list[SiteSpec]:
        """The sites in service of a whole sheet (an export), without a database."""
        return [dataclasses.replace(row.applied_to(None),
                                    services=tuple(self.services.get(site_id, ())),
                                    windows=tuple(self.windows.get(site_id, ())))
                for site_id, row in sorted(self.sites.items())
                if not row.given.get("retired")]  # fmt: skip

    def where(self, site_id: str) -> str:
        """``sites.csv:4 zs-x`` (the first file and line naming the site)."""
        for part in ("sites", "services", "windows"):
            if (part, site_id) in self.lines:
                return f"{part}.csv:{self.lines[(part, site_id)]} {site_id}"
        return site_id


class _Row:
    """Reads the cells of one row; each problem is noted with the file and line."""

    def __init__(self, part: str, number: int, row: dict[str, str], problems: list[str]):
        self.where = f"{part}.csv:{number}"
        self.row = row
        self.problems = problems
        self.ok = True

    def problem(self, message: str) -> None:
        self.problems.append(f"{self.where}: {message}")
        self.ok = False

    def text(self, column: str) -> str:
        return self.row.get(column, "").strip()

    def number(self, column: str, kind: type[int] | type[float]) -> Any:
        raw = self.text(column)
        if not raw:
            return None
        try:
            value = kind(raw)
        except ValueError:
            self.problem(f"{column}: {raw!r} is not a{'n integer' if kind is int else ' number'}")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(f"{column}: {raw!r} is not a finite number")
            return None
        return value

    def flag(self, column: str) -> bool:
        raw = self.text(column).lower()
        if raw in _TRUE:
            return True
        if raw not in _FALSE:
            self.problem(f"{column}: {raw!r} is not yes or no")
        return False


def _header_problems(part: str, text: str) -> list[str]:
    reader = csv.reader(line for line in text.lstrip("\ufeff").splitlines()
                        if line.strip() and not line.startswith("#"))  # fmt: skip
    header = [h.strip() for h in next(reader, [])]
    problems = [f"{part}.csv: unknown column {h!r} (columns: {', '.join(COLUMNS[part])})"
                for h in header if h not in COLUMNS[part]]  # fmt: skip
    problems += [f"{part}.csv: missing column {c!r}" for c in REQUIRED[part] if c not in header]
    if part == "sites" and ({"open", "close"} & set(header)) and not (
        {"open", "close"} <= set(header)
    ):
        problems.append("sites.csv: give both columns open and close (or neither)")
    if part == "sites" and ({"last_ticket", "reset"} & set(header)) and "open" not in header:
        problems.append("sites.csv: last_ticket and reset need the columns open and close")
    return problems


def _read_site(cells: _Row, number: int, columns: set[str]) -> SiteLine | None:
    given: dict[str, Any] = {}
    kind_text = cells.text("kind")
    try:
        kind = SiteKind(kind_text)
    except ValueError:
        cells.problem(f"kind: {kind_text!r} is not one of {', '.join(k.value for k in SiteKind)}")
        kind = SiteKind.VILLAGE
    for column in ("lat", "lon"):
        if column in columns:
            given[column] = cells.number(column, float)
    if "open" in columns:
        opens, closes = cells.text("open"), cells.text("close")
        if opens or closes:
            given["hours"] = Hours(opens, closes, cells.text("reset") or DEFAULT_RESET,
                                   cells.text("last_ticket") or None)  # fmt: skip
        elif cells.text("last_ticket") or cells.text("reset"):
            cells.problem("last_ticket and reset need open and close")
        else:
            given["hours"] = None
    if "status" in columns:
        status = cells.text("status").lower() or ACTIVE
        if status not in (ACTIVE, RETIRED):
            cells.problem(f"status: {status!r} is not {ACTIVE} or {RETIRED}")
        given["retired"] = status == RETIRED
    if not cells.ok:
        return None
    return SiteLine(number, cells.text("id"), cells.text("name"), cells.text("town"), kind, given)


def read_sheet(*, sites: str | None = None, services: str | None = None,
               windows: str | None = None) -> RegistrySheet:  # fmt: skip
    """Parse the given files; every problem (file, line, column) lands in ``problems``."""
    sheet = RegistrySheet()
    problems = sheet.problems
    for part, text in (("sites", sites), ("services", services), ("windows", windows)):
        if text is None:
            continue
        header = _header_problems(part, text)
        if header:
            problems.extend(header)
            continue
        try:
            rows = list(csv_rows(text, f"{part}.csv"))
        except (ValueError, csv.Error) as exc:
            problems.append(str(exc))
            continue
        columns = set(rows[0][1]) if rows else set()
        for number, row in rows:
            cells = _Row(part, number, row, problems)
            site_id = cells.text("id" if part == "sites" else "site")
            sheet.lines.setdefault((part, site_id), number)
            if part == "sites":
                if site_id in sheet.sites:
                    cells.problem(f"site {site_id!r} twice (first at line "
                                  f"{sheet.sites[site_id].line})")  # fmt: skip
                elif (site := _read_site(cells, number, columns)) is not None:
                    sheet.sites[site_id] = site
                    if (revision := cells.number("revision", int)) is not None:
                        sheet.revisions[site_id] = revision
            elif part == "services":
                sla_s = cells.number("sla_s", int)
                if cells.ok:
                    sheet.services.setdefault(site_id, []).append(ServiceSpec(
                        cells.text("code"), cells.text("name"), cells.text("prefix"),
                        sla_s if sla_s is not None else 0))  # fmt: skip
            else:
                window_number = cells.number("number", int)
                if window_number is None and cells.ok:
                    cells.problem("number: empty")
                priority = cells.flag("priority")
                if cells.ok:
                    sheet.windows.setdefault(site_id, []).append(WindowSpec(
                        window_number, tuple(cells.text("services").split()),
                        cells.text("name") or None, priority))  # fmt: skip
    return sheet


# --------------------------------------------------------------------------- export


def _csv(columns: tuple[str, ...], rows: Iterable[Iterable[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if value is None else value for value in row])
    return out.getvalue()


def _flag(value: bool) -> str:
    return "yes" if value else "no"


def write_sheet(specs: Iterable[SiteSpec], retired: Iterable[str] = (),
                revisions: Mapping[str, int] | None = None) -> dict[str, str]:  # fmt: skip
    """The three files of ``specs`` (by id; ``retired``: ids of retired sites; ``revisions``:
    their registry revisions)."""
    ordered = sorted(specs, key=lambda s: s.id)
    gone = set(retired)
    sites = _csv(SITE_COLUMNS, (
        (s.id, s.name, s.town, s.kind.value, s.lat, s.lon,
         *((s.hours.open, s.hours.close, s.hours.last_ticket, s.hours.reset) if s.hours
           else (None, None, None, None)),
         RETIRED if s.id in gone else ACTIVE, (revisions or {}).get(s.id, 0))
        for s in ordered))  # fmt: skip
    services = _csv(SERVICE_COLUMNS, (
        (s.id, v.code, v.name, v.prefix, v.sla_s)
        for s in ordered for v in sorted(s.services, key=lambda v: v.code)))  # fmt: skip
    windows = _csv(WINDOW_COLUMNS, (
        (s.id, w.number, " ".join(w.services), w.name, _flag(w.priority))
        for s in ordered for w in sorted(s.windows, key=lambda w: w.number)))  # fmt: skip
    return {"sites": sites, "services": services, "windows": windows}


__all__ = [
    "COLUMNS",
    "RegistrySheet",
    "SiteLine",
    "csv_rows",
    "decode_csv",
    "read_sheet",
    "write_sheet",
]

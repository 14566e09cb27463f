"""The fleet overview's data: one snapshot of every site's tile, and towns aggregated from it.

::

    snapshot = FleetSnapshot(read.tile_states(), read.fleet_registry(), read.drift_states())
    snapshot.sites(q="石岐", health="", town="")   # FleetTile rows, ordered by town then id
    snapshot.sites(drift="software")               # the sites running other software
    snapshot.towns(sites)                          # TownTile per town: counts and colour
    snapshot.counts()                              # the totals at the top of the page

The live hub (:mod:`central.web.live`) keeps the latest snapshot, so a page
render at province scale reads memory, not 20,000 rows. A province is shown
town by town: above :data:`TOWN_TILES_ABOVE` sites the overview draws one
tile per town (its sites' colours counted) and a click drills down to the
town's sites; live updates are scoped the same way (:func:`live_messages`).

Drift (a site running other software or config than it should, as the versions
page judges it: :func:`central.releases.software_drift`, :func:`central.models.config_drift`)
is read into the snapshot with the tiles, so its counts, its filter and the tiles'
markers cost a render nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from central.views import HEALTHS, FleetTile, Health, SiteDrift

TOWN_TILES_ABOVE: Final = 2000
"""Above this many shown sites (no town chosen) the overview draws towns, not sites."""

TileState = tuple[Health, int]
"""A site's colour and its number of active alarms."""

DRIFTS: Final = ("software", "config")
"""The fleet page's drift filter: sites whose software, or whose config, differs."""


def drift_filter(value: str) -> str:
    """The drift filter asked for, ``""`` (no filter) for anything else."""
    return value if value in DRIFTS else ""


def differs(drift: SiteDrift | None, kind: str) -> bool:
    """The site's ``kind`` of version (``software`` or ``config``) differs."""
    if drift is None:
        return False
    return drift.software_differs if kind == "software" else drift.config_differs


def drift_live(drift: SiteDrift | None) -> list[Any] | None:
    """What a live update carries for a site's drift marker (``None``: no marker)."""
    if drift is None:
        return None
    return [drift.software_differs, drift.software, drift.expected_software,
            drift.config_differs, drift.config, drift.expected_config]  # fmt: skip


class TownTile(NamedTuple):
    """One town of the province overview: how many of its sites are in which state."""

    town: str
    health: Health
    sites: int
    alarm: int
    warn: int
    offline: int
    alarms: int
    """Active alarms over the town's sites."""

    def live(self) -> list[Any]:
        """What a live update carries for this town (the page's ``towns`` event)."""
        return [self.town, self.health, self.sites, self.alarm, self.warn, self.offline,
                self.alarms]  # fmt: skip


def town_health(found: dict[Health, int]) -> Health:
    """A town's colour: its worst site; grey only when none of its sites is online."""
    for health in ("alarm", "warn"):
        if found.get(health):
            return health
    if found.get("ok"):
        return "warn" if found.get("offline") else "ok"
    return "offline" if found.get("offline") else "unknown"


def count_tiles(tiles: Iterable[tuple[str, int]]) -> dict[str, int]:
    """The totals at the top of the fleet page."""
    found: dict[str, int] = dict.fromkeys(HEALTHS, 0)
    alarms = 0
    for health, count in tiles:
        found[health] += 1
        alarms += count
    return {
        **found,
        "sites": sum(found.values()),
        "alarms_active": alarms,
        "online": found["ok"] + found["warn"] + found["alarm"],
    }


@dataclass
class FleetSnapshot:
    """Every site's tile state with its name and town (registry order: town, then id)."""

    tiles: dict[str, TileState]
    registry: dict[str, tuple[str, str]]
    """Site id -> (name, town), ordered by town then id."""
    drift: dict[str, SiteDrift] = field(default_factory=dict)
    """The sites whose software or config differs from what they should run."""
    _towns: dict[str, TownTile] | None = field(default=None, repr=False)

    def sites(self, *, q: str = "", health: str = "", town: str = "",
              drift: str = "") -> list[FleetTile]:  # fmt: skip
        """The tiles shown; ``drift``: ``software`` or ``config``, the sites differing so."""
        tiles = self.tiles
        drifting = self.drift
        shown = []
        for site_id, (name, site_town) in self.registry.items():
            state = tiles.get(site_id)
            if state is None:
                continue
            if town and site_town != town:
                continue
            if health and state[0] != health:
                continue
            if q and q not in site_id and q not in name and q not in site_town:
                continue
            site_drift = drifting.get(site_id)
            if drift and not differs(site_drift, drift):
                continue
            shown.append(FleetTile(site_id, name, site_town, state[0], state[1], site_drift))
        return shown

    @staticmethod
    def towns(sites: Iterable[FleetTile]) -> list[TownTile]:
        """Aggregate ``sites`` per town, in the order the towns come."""
        groups: dict[str, list[FleetTile]] = {}
        for tile in sites:
            groups.setdefault(tile.town, []).append(tile)
        out = []
        for town, members in groups.items():
            found: dict[Health, int] = {}
            for tile in members:
                found[tile.health] = found.get(tile.health, 0) + 1
            out.append(TownTile(town, town_health(found), len(members), found.get("alarm", 0),
                                found.get("warn", 0), found.get("offline", 0),
                                sum(t.alarms for t in members)))  # fmt: skip
        return out

    def all_towns(self) -> dict[str, TownTile]:
        """Every town of the unfiltered fleet (computed once per snapshot)."""
        if self._towns is None:
            self._towns = {t.town: t for t in self.towns(self.sites())}
        return self._towns

    def restricted(self, towns: frozenset[str] | None) -> FleetSnapshot:
        """The snapshot of ``towns``' sites only (a town manager's); itself for ``None``."""
        if towns is None:
            return self
        registry = {site_id: entry for site_id, entry in self.registry.items()
                    if entry[1] in towns}  # fmt: skip
        return FleetSnapshot({site_id: state for site_id, state in self.tiles.items()
                              if site_id in registry}, registry,
                             {site_id: drift for site_id, drift in self.drift.items()
                              if site_id in registry})  # fmt: skip

    def town_names(self) -> list[str]:
        return sorted({town for _, town in self.registry.values()})

    def counts(self) -> dict[str, int]:
        """The totals at the top of the page, with the sites whose software or config
        differs (of the sites shown as tiles: in service)."""
        tiles = self.tiles
        drifting = [d for site_id, d in self.drift.items() if site_id in tiles]
        return {**count_tiles(tiles.values()),
                "software_drift": sum(d.software_differs for d in drifting),
                "config_drift": sum(d.config_differs for d in drifting)}  # fmt: skip


ALL: Final = "all"
TOWNS: Final = "towns"
TOWN_PREFIX: Final = "town:"


def live_scope(value: str) -> str:
    """A live stream's scope: ``all`` sites, the ``towns`` overview, or ``town:<name>``."""
    if value == TOWNS or (value.startswith(TOWN_PREFIX) and len(value) <= 200):
        return value
    return ALL


def live_messages(before: FleetSnapshot | None, after: FleetSnapshot,
                  scopes: Iterable[str]) -> dict[str, dict[str, Any]]:  # fmt: skip
    """What changed between two snapshots, per scope asked for (nothing for a quiet scope).

    ``all``: changed site tiles ``[id, health, alarms]``; ``towns``: changed town tiles
    (:meth:`TownTile.live`); ``town:<name>``: changed tiles of that town only. A site
    tile whose drift changed also comes in ``drift``: id -> :func:`drift_live`. Each
    message also carries the whole fleet's counts.
    """
    old = before.tiles if before is not None else {}
    old_drift = before.drift if before is not None else {}
    new_drift = after.drift
    drift_changed = {site_id for site_id in old_drift.keys() | new_drift.keys()
                     if old_drift.get(site_id) != new_drift.get(site_id)
                     and site_id in after.tiles}  # fmt: skip
    changed = [site_id for site_id, state in after.tiles.items()
               if old.get(site_id) != state or site_id in drift_changed]  # fmt: skip
    if not changed:
        return {}
    counts = after.counts()
    messages: dict[str, dict[str, Any]] = {}
    wanted = set(scopes)
    def drift_of(site_ids: Iterable[str]) -> dict[str, list[Any] | None]:
        return {s: drift_live(new_drift.get(s)) for s in site_ids if s in drift_changed}

    if ALL in wanted:
        messages[ALL] = {"tiles": [[s, *after.tiles[s]] for s in changed],
                         "drift": drift_of(changed), "counts": counts}  # fmt: skip
    if TOWNS in wanted:
        old_towns = before.all_towns() if before is not None else {}
        towns = [t.live() for name, t in after.all_towns().items() if old_towns.get(name) != t]
        messages[TOWNS] = {"towns": towns, "counts": counts}
    by_town: dict[str, list[list[Any]]] = {}
    drift_by_town: dict[str, list[str]] = {}
    if any(scope.startswith(TOWN_PREFIX) for scope in wanted):
        for site_id in changed:
            entry = after.registry.get(site_id)
            if entry is not None:
                by_town.setdefault(entry[1], []).append([site_id, *after.tiles[site_id]])
                drift_by_town.setdefault(entry[1], []).append(site_id)
    for scope in wanted:
        if scope.startswith(TOWN_PREFIX):
            name = scope[len(TOWN_PREFIX):]
            messages[scope] = {"tiles": by_town.get(name, []),
                               "drift": drift_of(drift_by_town.get(name, [])),
                               "counts": counts}  # fmt: skip
    return messages


__all__ = [
    "ALL",
    "DRIFTS",
    "TOWNS",
    "TOWN_PREFIX",
    "TOWN_TILES_ABOVE",
    "FleetSnapshot",
    "TileState",
    "TownTile",
    "count_tiles",
    "differs",
    "drift_filter",
    "drift_live",
    "live_messages",
    "live_scope",
    "town_health",
]

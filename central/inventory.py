"""Ansible's dynamic inventory of the fleet, from the central's registry.

::

    GET /api/v1/inventory   (operator)  ->  ansible_inventory(read.inventory_sites())
    site_variables(spec)                ->  the edge role's variables of one site
    config_problems(spec)               ->  what `onedoor edge check-config` would refuse

Towns become groups (:func:`ansible_group` makes a valid group name of a Chinese
town name), sites become hosts with their registry variables and config
versions as ``_meta.hostvars``, and each site kind a ``kind_<kind>`` group.

How a site's spec becomes the edge role's variables is decided here once:
the dynamic inventory serves them, ``deploy/ansible/inventory/generate_sample.py``
writes them into the static sample, and the registry refuses a spec whose
rendered config the edge would refuse (:func:`config_problems` asks
:func:`edge.config.parse_config`, the edge's own check).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from central.sitespec import Hours, ServiceSpec, SiteSpec, WindowSpec
from edge.config import parse_config
from edge.errors import ConfigInvalid

_GROUP_UNSAFE: Final = re.compile(r"\W")
PRIORITY_RATIO_CAP: Final = 3
"""A priority window calls at most this many priority tickets in a row."""


def ansible_group(town: str) -> str:
    """A valid Ansible group name for a town: word characters (Chinese included) only."""
    name = _GROUP_UNSAFE.sub("_", town)
    return name if name and not name[0].isdigit() else f"town_{name}"


# --------------------------------------------------------------------------- edge variables


def edge_services(services: Iterable[ServiceSpec]) -> list[dict[str, Any]]:
    """Services as the `[[services]]` of the site TOML, in ticket-letter order."""
    return [{"id": s.code, "prefix": s.prefix, "name_zh": s.name, "sla_minutes": s.sla_s // 60}
            for s in sorted(services, key=lambda s: s.prefix)]  # fmt: skip


def edge_windows(kind: str, windows: Iterable[WindowSpec]) -> list[dict[str, Any]]:
    """Windows as `[[windows]]`: each window's keypad sits at bus address = its number;
    halls also have an LED window bar at that address (villages have none)."""
    result = []
    for window in sorted(windows, key=lambda w: w.number):
        entry: dict[str, Any] = {"number": window.number,
                                 "services": dict.fromkeys(window.services, 1)}
        if window.priority:
            entry |= {"priority": True, "ratio_cap": PRIORITY_RATIO_CAP}
        entry["terminal"] = window.number
        if kind != "village":
            entry["screen"] = window.number
        result.append(entry)
    return result


def edge_hours(hours: Hours) -> dict[str, str]:
    """The `[hours]` table (the role's ``edge_hours``)."""
    table = {"open": hours.open, "close": hours.close, "reset": hours.reset}
    if hours.last_ticket is not None:
        table["last_ticket"] = hours.last_ticket
    return table


def site_variables(spec: SiteSpec) -> dict[str, Any]:
    """The edge role's variables of a site, as the static sample's host_vars hold them
    (the town comes from the town's group_vars there, so it is not among them)."""
    variables: dict[str, Any] = {
        "onedoor_site_id": spec.id,
        "onedoor_site_name": spec.name,
        "onedoor_site_kind": spec.kind.value,
        "edge_services": edge_services(spec.services),
        "edge_windows": edge_windows(spec.kind.value, spec.windows),
    }
    if spec.hours is not None:  # else the fleet's default (group_vars edge_hours)
        variables["edge_hours"] = edge_hours(spec.hours)
    return variables


# --------------------------------------------------------------------------- the edge's check


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, dict):
        pairs = ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + pairs + " }"
    raise TypeError(f"no TOML for {value!r}")


def _toml_table(header: str, table: dict[str, Any]) -> list[str]:
    return [header, *(f"{key} = {_toml_value(value)}" for key, value in table.items())]


def config_text(spec: SiteSpec) -> str:
    """The registry's part of the site TOML, as the edge role's template renders it."""
    variables = site_variables(spec)
    lines = ['version = "registry-check"']
    lines += _toml_table("[site]", {"id": spec.id, "name": spec.name, "town": spec.town})
    if "edge_hours" in variables:
        lines += _toml_table("[hours]", variables["edge_hours"])
    for service in variables["edge_services"]:
        lines += _toml_table("[[services]]", service)
    for window in variables["edge_windows"]:
        lines += _toml_table("[[windows]]", window)
    lines += _toml_table("[paths]", {"journal": "journal.db"})
    return "\n".join(lines) + "\n"


_INDEXED: Final = re.compile(r"^(services|windows)\[(\d+)\]")


def config_problems(spec: SiteSpec) -> list[str]:
    """What the edge's own config check refuses in the config this spec renders, with
    services named by code and windows by number (``window 3.services.huji: unknown
    service``); empty when the edge would take it."""
    try:
        parse_config(config_text(spec), source=spec.id, check_files=False)
    except ConfigInvalid as exc:
        services = [s.code for s in sorted(spec.services, key=lambda s: s.prefix)]
        windows = [w.number for w in sorted(spec.windows, key=lambda w: w.number)]

        def named(match: re.Match[str]) -> str:
            index = int(match[2])
            if match[1] == "services" and index < len(services):
                return f"service {services[index]}"
            if match[1] == "windows" and index < len(windows):
                return f"window {windows[index]}"
            return match[0]

        return [_INDEXED.sub(named, error) for error in exc.errors]
    return []


# --------------------------------------------------------------------------- the inventory


@dataclass(frozen=True, slots=True)
class InventorySite:
    """A site of the inventory: its spec and what only the central knows of it."""

    spec: SiteSpec
    expected_config_version: str | None
    reported_config_version: str | None
    online: bool
    registry_revision: int = 0
    """The edge role refuses to push an inventory that knows an older revision."""


def ansible_inventory(sites: Iterable[InventorySite]) -> dict[str, Any]:
    """Ansible's JSON inventory: towns as groups, sites as hosts, ``_meta.hostvars``."""
    groups: dict[str, dict[str, Any]] = {}
    hostvars: dict[str, dict[str, Any]] = {}
    kinds: dict[str, list[str]] = {}
    for site in sites:
        spec = site.spec
        group = ansible_group(spec.town)
        groups.setdefault(group, {"hosts": [], "vars": {"onedoor_town": spec.town}})
        groups[group]["hosts"].append(spec.id)
        kinds.setdefault(f"kind_{spec.kind.value}", []).append(spec.id)
        hostvars[spec.id] = {
            **site_variables(spec),
            "onedoor_town": spec.town,
            "onedoor_expected_config_version": site.expected_config_version,
            "onedoor_reported_config_version": site.reported_config_version,
            "onedoor_online": site.online,
            "onedoor_registry_revision": site.registry_revision,
        }
    inventory: dict[str, Any] = {
        "_meta": {"hostvars": hostvars},
        "all": {"children": ["ungrouped", *sorted(groups), *sorted(kinds)]},
        "ungrouped": {"hosts": []},
    }
    inventory.update(groups)
    inventory.update({name: {"hosts": hosts} for name, hosts in kinds.items()})
    return inventory


__all__ = [
    "InventorySite",
    "ansible_group",
    "ansible_inventory",
    "config_problems",
    "config_text",
    "edge_hours",
    "edge_services",
    "edge_windows",
    "site_variables",
]

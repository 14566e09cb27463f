"""Ansible's dynamic inventory of the fleet, from the central's registry.

::

    GET /api/v1/inventory   (operator)  ->  ansible_inventory(sites)

Towns become groups (:func:`ansible_group` makes a valid group name of a Chinese
town name), sites become hosts with their registry and config versions as
``_meta.hostvars``, and each site kind a ``kind_<kind>`` group.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from central.models import Site

_GROUP_UNSAFE: Final = re.compile(r"\W")


def ansible_group(town: str) -> str:
    """A valid Ansible group name for a town: word characters (Chinese included) only."""
    name = _GROUP_UNSAFE.sub("_", town)
    return name if name and not name[0].isdigit() else f"town_{name}"


def ansible_inventory(sites: Iterable[Site]) -> dict[str, Any]:
    """Ansible's JSON inventory: towns as groups, sites as hosts, ``_meta.hostvars``."""
    groups: dict[str, dict[str, Any]] = {}
    hostvars: dict[str, dict[str, Any]] = {}
    for site in sites:
        group = ansible_group(site.town)
        groups.setdefault(group, {"hosts": [], "vars": {"onedoor_town": site.town}})
        groups[group]["hosts"].append(site.id)
        hostvars[site.id] = {
            "onedoor_site_id": site.id,
            "onedoor_site_name": site.name,
            "onedoor_town": site.town,
            "onedoor_site_kind": site.kind.value,
            "onedoor_expected_config_version": site.expected_config_version,
            "onedoor_reported_config_version": site.reported_config_version,
            "onedoor_online": site.online,
        }
    kinds: dict[str, list[str]] = {}
    for site_id, variables in hostvars.items():
        kinds.setdefault(f"kind_{variables['onedoor_site_kind']}", []).append(site_id)
    inventory: dict[str, Any] = {
        "_meta": {"hostvars": hostvars},
        "all": {"children": ["ungrouped", *sorted(groups), *sorted(kinds)]},
        "ungrouped": {"hosts": []},
    }
    inventory.update(groups)
    inventory.update({name: {"hosts": hosts} for name, hosts in kinds.items()})
    return inventory


__all__ = ["ansible_group", "ansible_inventory"]

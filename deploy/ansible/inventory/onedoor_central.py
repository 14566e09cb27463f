#!/usr/bin/env python3
"""Ansible dynamic inventory from the onedoor central registry (the single source of truth).

Reads ``GET {ONEDOOR_CENTRAL_URL}/api/v1/inventory`` with
``Authorization: Bearer {ONEDOOR_CENTRAL_TOKEN}`` (an operator token), one request
for the whole fleet, and prints the inventory in Ansible's script protocol::

    ONEDOOR_CENTRAL_URL=https://onedoor.zs.example.cn ONEDOOR_CENTRAL_TOKEN=od_... \\
        ansible-playbook -i inventory/onedoor_central.py edge-config.yml --limit town_zs_xiaolan

Groups match the static sample inventory (``generate_sample.py`` uses the
functions below): ``edge`` holds one group per town, ``town_<district site id>``;
``village``, ``district`` and ``city_hall`` group sites by kind (the last two
are the children of ``hall``); ``broker`` and ``central`` hold the hosts named by
``ONEDOOR_BROKER_HOSTS`` (required: without a broker the sites' configs would
name none) and ``ONEDOOR_CENTRAL_HOSTS`` (default: the host of
``ONEDOOR_CENTRAL_URL``), comma-separated. Host variables are the central's, made
from its registry by ``central.inventory`` as for the sample (``onedoor_site_id``,
``onedoor_site_name``, ``onedoor_town``, ``onedoor_site_kind``, ``edge_services``,
``edge_windows``, and ``edge_hours`` for a site with hours of its own), plus the
registry's live state, which only the central knows (``LIVE_VARIABLES``). Retired
sites are not in it.

Needs only the Python standard library. Optional: ``ONEDOOR_CENTRAL_CA`` (CA
bundle for the central's certificate), ``ONEDOOR_CENTRAL_TIMEOUT`` (seconds,
default 20).
Errors go to stderr with exit status 1, so Ansible shows why the inventory failed.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

KINDS = ("village", "district", "city_hall")
HALL_KINDS = ("district", "city_hall")  # children of group `hall`: they share devices
# Host variables of the registry's live state: the dynamic inventory has them, the
# static sample cannot (the roles read only the first, with a fallback).
LIVE_VARIABLES = ("onedoor_expected_config_version", "onedoor_reported_config_version",
                  "onedoor_online", "onedoor_registry_revision")

Fetch = Callable[[str], Any]


class InventoryError(Exception):
    """The central could not be read or answered something unexpected."""


# --------------------------------------------------------------------------- shared with the
# sample generator: how registry rows become groups.


def town_group(district_site_id: str) -> str:
    """The Ansible group of a town, named after its district centre's site id."""
    return "town_" + district_site_id.replace("-", "_")


# --------------------------------------------------------------------------- the central


def _fetcher(base_url: str, token: str, timeout: float, cafile: str | None) -> Fetch:
    context = ssl.create_default_context(cafile=cafile) if base_url.startswith("https") else None

    def fetch(path: str) -> Any:
        url = base_url.rstrip("/") + path
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}",
                                                       "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise InventoryError(f"GET {url}: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise InventoryError(f"GET {url}: {exc}") from None
        except ValueError as exc:
            raise InventoryError(f"GET {url}: not JSON: {exc}") from None

    return fetch


def build_inventory(fetch: Fetch, *, brokers: Iterable[str] = (),
                    centrals: Iterable[str] = ()) -> dict[str, Any]:
    """The whole inventory in Ansible's JSON form, with ``_meta.hostvars``; ``brokers`` and
    ``centrals`` are the hosts of groups ``broker`` and ``central``."""
    central = fetch("/api/v1/inventory")
    try:
        hostvars: dict[str, dict[str, Any]] = central["_meta"]["hostvars"]
    except (KeyError, TypeError):
        raise InventoryError("/api/v1/inventory: no _meta.hostvars in the answer") from None
    for site_id, variables in hostvars.items():
        missing = [name for name in ("onedoor_site_kind", "onedoor_town", "edge_services",
                                     "edge_windows") if name not in variables]
        if missing or variables.get("onedoor_site_kind") not in KINDS:
            raise InventoryError(f"/api/v1/inventory: site {site_id}: bad or missing "
                                 f"{', '.join(missing) or 'onedoor_site_kind'}")
    district_of_town = {v["onedoor_town"]: site_id for site_id, v in hostvars.items()
                        if v["onedoor_site_kind"] == "district"}
    towns: dict[str, list[str]] = {}
    kinds: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for site_id, variables in sorted(hostvars.items(), key=lambda item: item[0]):
        town = variables["onedoor_town"]
        group = town_group(district_of_town.get(town) or _slug(town))
        towns.setdefault(group, []).append(site_id)
        kinds[variables["onedoor_site_kind"]].append(site_id)
    inventory: dict[str, Any] = {
        "_meta": {"hostvars": hostvars},
        "all": {"children": ["edge", "village", "hall", "broker", "central"]},
        "edge": {"children": sorted(towns)},
        "hall": {"children": list(HALL_KINDS)},
        "broker": {"hosts": list(brokers)},
        "central": {"hosts": list(centrals)},
    }
    inventory |= {group: {"hosts": hosts} for group, hosts in towns.items()}
    inventory |= {kind: {"hosts": hosts} for kind, hosts in kinds.items()}
    return inventory


def _slug(town: str) -> str:
    """A town without a district centre still gets a valid group name."""
    return "".join(c if c.isalnum() else "_" for c in town) or "unknown"


def _host_list(variable: str) -> list[str]:
    """Comma-separated host names of an environment variable, blanks dropped."""
    return [host.strip() for host in os.environ.get(variable, "").split(",") if host.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="onedoor dynamic inventory (central registry)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--list", action="store_true", help="the whole inventory")
    mode.add_argument("--host", help="one host's variables")
    args = parser.parse_args(argv)
    base_url = os.environ.get("ONEDOOR_CENTRAL_URL", "")
    token = os.environ.get("ONEDOOR_CENTRAL_TOKEN", "")
    try:
        if not base_url.startswith(("http://", "https://")):
            raise InventoryError("set ONEDOOR_CENTRAL_URL to the central's http(s) URL")
        if not token:
            raise InventoryError("set ONEDOOR_CENTRAL_TOKEN to an operator token "
                                 "(onedoor central token create --role operator)")
        try:
            timeout = float(os.environ.get("ONEDOOR_CENTRAL_TIMEOUT", "20"))
        except ValueError as exc:
            raise InventoryError(f"ONEDOOR_CENTRAL_TIMEOUT: {exc}") from None
        brokers = _host_list("ONEDOOR_BROKER_HOSTS")
        if not brokers:
            raise InventoryError("set ONEDOOR_BROKER_HOSTS to the broker's inventory host name "
                                 "(e.g. mqtt.zs.example.cn): the sites' configs name it")
        centrals = (_host_list("ONEDOOR_CENTRAL_HOSTS")
                    or [urllib.parse.urlsplit(base_url).hostname or ""])
        fetch = _fetcher(base_url, token, timeout, os.environ.get("ONEDOOR_CENTRAL_CA") or None)
        inventory = build_inventory(fetch, brokers=brokers, centrals=centrals)
    except InventoryError as exc:
        print(f"onedoor_central.py: {exc}", file=sys.stderr)
        return 1
    if args.host is not None:
        result = inventory["_meta"]["hostvars"].get(args.host, {})
    else:
        result = inventory
    json.dump(result, sys.stdout, ensure_ascii=False, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

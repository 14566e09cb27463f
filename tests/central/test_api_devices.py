"""The API of edge devices: the list, the takeover, and remote diagnostics (real app, real
service and Mosquitto, SQLite; the site's messages through the real ingest)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from central.auth import Role
from firmware_protocols import mqtt_messages as mm
from tests.central.sim import SimSite
from tests.central.test_api_support import RunningApp, running_app
from tests.servers import MosquittoBroker

SITE = "zs-sanxiang-02"
OLD, NEW = "0123456789abcdef", "fedcba9876543210"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory,
        mqtt_broker: MosquittoBroker) -> Iterator[RunningApp]:
    with running_app(tmp_path_factory.mktemp("devices"), mqtt_broker) as running:
        yield running
        running.clear_retained(SITE)


def _headers(env: RunningApp, role: Role) -> dict[str, str]:
    return env.headers(role)


def test_a_waiting_device_is_listed_and_taken_over_once(env: RunningApp) -> None:
    old = SimSite(SITE, device=OLD)
    env.feed(old.state())
    old.epoch = 0
    env.feed(old.state(), old.event(mm.DayReset(day="2026-11-23")), old.state("offline"))
    env.feed(SimSite(SITE, device=NEW).state())
    listing = env.client.get(f"/api/v1/sites/{SITE}/devices", headers=_headers(env, Role.VIEWER))
    assert [(d["device"], d["role"], d["epoch"]) for d in listing.json()["devices"]] == [
        (OLD, "holder", 0), (NEW, "waiting", None)]
    url = f"/api/v1/sites/{SITE}/takeover"
    assert env.client.post(url, json={"device": NEW}, headers=_headers(env, Role.VIEWER)
                           ).status_code == 403
    for bad in ({"device": "NOT-HEX"}, {"device": NEW, "skip": -1}, {"device": NEW, "skip": 10**4}):
        assert env.client.post(url, json=bad, headers=_headers(env, Role.OPERATOR)
                               ).status_code == 422
    unknown = env.client.post(url, json={"device": "0" * 16}, headers=_headers(env, Role.OPERATOR))
    assert unknown.status_code == 404, unknown.text
    taken = env.client.post(url, json={"device": NEW, "skip": 3},
                            headers=_headers(env, Role.OPERATOR))
    assert taken.status_code == 200, taken.text
    devices = {d["device"]: d for d in taken.json()["devices"]}
    assert (devices[NEW]["role"], devices[NEW]["epoch"], devices[NEW]["granted_by"]) == (
        "holder", 1, "test operator")
    assert (devices[NEW]["restored_day"], devices[NEW]["skipped"]) == ("2026-11-23", 3)
    assert devices[OLD]["role"] == "replaced"
    assert devices[OLD]["replaced_at"] is not None
    again = env.client.post(url, json={"device": NEW}, headers=_headers(env, Role.OPERATOR))
    assert again.status_code == 409
    assert "numbers the site" in again.json()["detail"]
    audit = env.client.get(f"/api/v1/audit?target={SITE}", headers=_headers(env, Role.ADMIN))
    [entry] = [e for e in audit.json()["entries"] if e["action"] == "device.takeover"]
    assert (entry["actor"], entry["role"], entry["detail"]) == (
        "test operator", "operator", {"device": NEW, "skip": 3})


def test_diagnostics_are_asked_for_by_an_operator_and_kept(env: RunningApp) -> None:
    asked = env.client.post(f"/api/v1/sites/{SITE}/commands",
                            json={"name": "diagnostics", "args": {"lines": 300}},
                            headers=_headers(env, Role.OPERATOR))
    assert asked.status_code == 422  # at most 200 lines: the contract's bound
    assert env.client.post(f"/api/v1/sites/{SITE}/commands",
                           json={"name": "diagnostics", "args": {"lines": 50}},
                           headers=_headers(env, Role.VIEWER)).status_code == 403
    asked = env.client.post(f"/api/v1/sites/{SITE}/commands",
                            json={"name": "diagnostics", "args": {"lines": 50}, "ttl_s": 120},
                            headers=_headers(env, Role.OPERATOR))
    assert asked.status_code == 202, asked.text
    command_id = uuid.UUID(asked.json()["id"])
    audit = env.client.get(f"/api/v1/audit?target={SITE}", headers=_headers(env, Role.ADMIN))
    assert any(e["action"] == "command.send" and e["detail"]["command"] == "diagnostics"
               and e["detail"]["id"] == str(command_id) for e in audit.json()["entries"])
    url = f"/api/v1/diagnostics/{command_id}"
    assert env.client.get(url, headers=_headers(env, Role.OPERATOR)).status_code == 404
    site = SimSite(SITE, device=NEW, epoch=1)
    report = mm.Diagnostics(
        site=SITE, id=command_id, device=NEW, boot_id="b", software="onedoor-0.1.0",
        ts=site.clock_ms,
        status=mm.DiagStatus(config="cfg-1", day="2026-11-23", numbering="granted", epoch=1,
                             last_seq=mm.epoch_base(1) + 3, acked_seq=mm.epoch_base(1) + 3,
                             outbox_depth=0, journal_bytes=4096, uplink_connects=1, tasks=[],
                             devices=[],
                             host=mm.HostStat(cpu_temp_c=None, load1=0.1, mem_used_pct=10.0,
                                              disk_used_pct=10.0, uptime_s=60)),
        logs=[mm.LogLine(ts=site.clock_ms, level="info", text="uplink.connected session=1")],
        logs_dropped=0)
    stray = mm.Diagnostics(**{**{f: getattr(report, f) for f in report.__struct_fields__},
                              "id": uuid.uuid4()})
    env.feed(report, stray)  # an answer nobody asked for is not kept
    assert env.client.get(url, headers=_headers(env, Role.VIEWER)).status_code == 403
    got = env.client.get(url, headers=_headers(env, Role.OPERATOR)).json()
    assert got["report"]["logs"][0]["text"] == "uplink.connected session=1"
    listing = env.client.get(f"/api/v1/sites/{SITE}/diagnostics",
                             headers=_headers(env, Role.OPERATOR)).json()
    assert [d["command_id"] for d in listing["diagnostics"]] == [str(command_id)]

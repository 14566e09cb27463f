"""The broker the role renders, attacked with one village's credentials (site A): it cannot
take over another site's or a central replica's session, cannot get a message above the
contract's largest through, and cannot make the broker hold more than a bounded queue for an
offline central. The threat model is in docs/RELIABILITY.md (the broker's part)."""

from __future__ import annotations

import time
from typing import Final

import pytest
import yaml

from firmware_protocols import mqtt_messages as mm
from firmware_protocols.mqtt_topics import TOPICS, state_topic
from tests.deploy.fleet import (
    ANSIBLE_DIR,
    CENTRAL,
    CENTRAL_2,
    SITE_A,
    SITE_B,
    CentralServer,
    Deployment,
    FleetBroker,
    MqttClient,
    mqtt_client,
    wait_for,
)

LARGEST_PAYLOAD: Final = max(spec.max_payload for spec in TOPICS.values())  # telemetry, 128 KiB


def _attack(deployment: Deployment, client_id: str) -> None:
    """Site A logs in with its own credentials but someone else's client id."""
    attacker = MqttClient(deployment, SITE_A, deployment.password(SITE_A), client_id=client_id)
    attacker.close()
    assert attacker.connect_code == 0  # it may log in: as itself, under its own id


def _probe_state(deployment: Deployment, central: CentralServer, tag: str) -> None:
    """A state of site A, published after the attacks, processed by the running central."""
    state = mm.State(site=SITE_A, status="online", lwt=False, boot_id="probe",
                     session=time.time_ns() // 1000, software="0.1.0", config=tag,
                     ts=time.time_ns() // 1_000_000, clock_synced=True)
    with mqtt_client(deployment, SITE_A) as site:
        site.publish(state_topic(SITE_A), mm.encode(state))
    wait_for(lambda: central.site(SITE_A)["reported_config_version"] == tag)


def test_a_site_cannot_take_over_another_sites_or_a_central_replicas_session(
    deployment: Deployment, fleet_broker: FleetBroker, central_server: CentralServer,
) -> None:
    central_disconnects = central_server.log_events("mqtt.disconnected")
    stolen_ids = [
        f"onedoor-edge-{SITE_B}", SITE_B,  # the id site B's edge sends, and its user name
        deployment.central_settings(CENTRAL)["mqtt_client_id"],  # replica 1, running
        deployment.central_settings(CENTRAL_2)["mqtt_client_id"],
        "onedoor-central-1",  # the central's default mqtt_client_id
    ]
    with mqtt_client(deployment, SITE_B) as site_b, \
            mqtt_client(deployment, CENTRAL_2) as replica_2:
        assert replica_2.subscribe(f"onedoor/v1/{SITE_A}/event") == 1
        assert site_b.subscribe(f"onedoor/v1/{SITE_B}/ack") == 1
        for _ in range(11):  # 11 takeovers in 20 s knocked the central off before
            for client_id in stolen_ids:
                _attack(deployment, client_id)
        # Both still connected, and still served on the connection they had.
        with mqtt_client(deployment, SITE_A) as site_a:
            site_a.publish(f"onedoor/v1/{SITE_A}/event", b"after")
        assert replica_2.received_until(f"onedoor/v1/{SITE_A}/event") == [
            (f"onedoor/v1/{SITE_A}/event", b"after")]
        replica_2.publish(f"onedoor/v1/{SITE_B}/ack", b"ack")
        assert site_b.received_until(f"onedoor/v1/{SITE_B}/ack") == [
            (f"onedoor/v1/{SITE_B}/ack", b"ack")]
        assert site_b.disconnects == []
        assert replica_2.disconnects == []
    # The running central: had it been knocked off, it would have logged it before this
    # later message came in over its new connection.
    _probe_state(deployment, central_server, f"probe-{time.monotonic_ns()}")
    assert central_server.log_events("mqtt.disconnected") == central_disconnects


def test_a_message_above_the_contracts_largest_never_reaches_the_central(
    deployment: Deployment, fleet_broker: FleetBroker,
) -> None:
    topic = f"onedoor/v1/{SITE_A}/telemetry"
    with mqtt_client(deployment, CENTRAL_2) as central:
        assert central.subscribe(topic) == 1
        for size in (16 * 1024 * 1024, LARGEST_PAYLOAD + 1024):
            attacker = MqttClient(deployment, SITE_A, deployment.password(SITE_A))
            attacker.client.publish(topic, b"x" * size, qos=0)
            wait_for(lambda: attacker.disconnects != [])  # noqa: B023  # cut off by the broker
            attacker.close()
        with mqtt_client(deployment, SITE_A) as site:
            site.publish(topic, b"y" * LARGEST_PAYLOAD)  # the contract's largest passes
        received = central.received_until(topic)
    assert [len(payload) for _, payload in received] == [LARGEST_PAYLOAD]


def _queued_bytes_limit() -> int:
    defaults = yaml.safe_load((ANSIBLE_DIR / "roles/broker/defaults/main.yml").read_text())
    limit: int = defaults["broker_max_queued_bytes"]
    return limit


@pytest.mark.usefixtures("fleet_broker")
def test_what_waits_for_an_offline_central_is_bounded(deployment: Deployment) -> None:
    """One site fills an offline replica's session: the broker keeps at most its byte limit
    (whatever is dropped is an edge's to resend: it resends until the central acks)."""
    topic = f"onedoor/v1/{SITE_A}/event"
    size = 120 * 1024  # under the packet limit, far above an event's 8 KiB
    limit = _queued_bytes_limit()
    count = limit * 4 // 3 // size
    with mqtt_client(deployment, CENTRAL_2, session_expiry_s=600) as central:
        assert central.subscribe(topic) == 1
    try:
        with mqtt_client(deployment, SITE_A) as site:
            for number in range(count):
                info = site.client.publish(topic, number.to_bytes(4, "big") * (size // 4), qos=1)
            info.wait_for_publish(timeout=120)
        with mqtt_client(deployment, CENTRAL_2, session_expiry_s=600) as central, \
                mqtt_client(deployment, SITE_A) as site:
            site.publish(topic, b"sentinel")  # delivered after whatever was queued
            queued = [payload for _, payload in central.received_until(topic, timeout=60)]
            while queued[-1] != b"sentinel":
                queued += [payload for _, payload in central.received_until(topic, timeout=60)]
    finally:
        with mqtt_client(deployment, CENTRAL_2):  # a clean start drops the session
            pass
    kept = len(queued) - 1
    in_flight = 20  # max_inflight_messages: sent before the queue counts
    assert 0 < kept <= limit // size + in_flight < count, (kept, count)

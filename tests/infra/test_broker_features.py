"""The broker features the MQTT contract relies on, checked on each broker we can run.

docs/CAPACITY.md lists what onedoor needs of a broker; these tests check, on
Mosquitto and on amqtt (tests/brokers.py), the three that the end-to-end contract
tests cannot isolate: retained messages reach only matching subscriptions, a kept
session queues QoS 1 publishes for an offline client, and a QoS 1 publish not yet
acknowledged when a connection drops is sent again when the session resumes.
"""

from __future__ import annotations

import socket
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from onedoor.broker import Broker
from tests.brokers import (
    AMQTT_DROPS_UNACKED_QOS1,
    AMQTT_SENDS_EVERY_RETAINED_MESSAGE,
    on_both_brokers,
)

_WAIT_S = 5.0  # a kept session's queue is delivered at the connect


class Client:
    """A paho client (MQTT 3.1.1, logged in as ``user``) recording what it receives."""

    def __init__(self, broker: Broker, client_id: str, *, clean: bool = True,
                 manual_ack: bool = False) -> None:
        self.received: list[mqtt.MQTTMessage] = []
        self._arrived = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=clean, manual_ack=manual_ack)
        self.client.username_pw_set("site-a")  # amqtt keeps sessions only for a login
        self.client.on_message = self._message
        connected = threading.Event()
        self.client.on_connect = lambda *_: connected.set()
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not connected.wait(10):
            raise TimeoutError(f"{client_id} did not connect")

    def _message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._arrived:
            self.received.append(message)
            self._arrived.notify_all()

    def subscribe(self, topic_filter: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe(topic_filter, qos=1)
        if not done.wait(10):
            raise TimeoutError(f"no SUBACK for {topic_filter}")

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def wait_for(self, payload: bytes, timeout: float = _WAIT_S) -> mqtt.MQTTMessage:
        with self._arrived:
            if not self._arrived.wait_for(
                    lambda: any(m.payload == payload for m in self.received), timeout):
                raise TimeoutError(f"{payload!r} never arrived; got "
                                   f"{[(m.topic, m.payload) for m in self.received]}")
            return next(m for m in self.received if m.payload == payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Lose the connection without DISCONNECT (and without acknowledging anything)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _root() -> str:
    return f"onedoor-test/{uuid.uuid4().hex[:8]}"


@on_both_brokers(amqtt_fails=AMQTT_SENDS_EVERY_RETAINED_MESSAGE, raises=AssertionError)
def test_retained_messages_reach_only_matching_subscriptions(contract_broker: Broker) -> None:
    """The central's ``+/state`` subscription must not bring other sites' retained state
    to a site that subscribes to its own commands (the ACL relies on this too)."""
    root = _root()
    central = Client(contract_broker, f"central-{root[-8:]}")
    site = None
    try:
        central.subscribe(f"{root}/+/state")
        central.publish(f"{root}/b/state", b"site b online", retain=True)
        site = Client(contract_broker, f"site-{root[-8:]}")
        site.subscribe(f"{root}/a/cmd/#")
        site.publish(f"{root}/a/cmd/reload", b"marker")
        site.wait_for(b"marker")  # whatever came at the connect came before it
        assert [m.topic for m in site.received] == [f"{root}/a/cmd/reload"]
    finally:
        central.publish(f"{root}/b/state", b"", retain=True)
        central.close()
        if site is not None:
            site.close()


@on_both_brokers(logins=True)
def test_a_kept_session_queues_qos1_for_an_offline_client(contract_broker: Broker) -> None:
    root = _root()
    client_id = f"site-{root[-8:]}"
    site = Client(contract_broker, client_id, clean=False)
    site.subscribe(f"{root}/cmd/#")
    site.close()
    central = Client(contract_broker, f"central-{root[-8:]}")
    try:
        central.publish(f"{root}/cmd/reload", b"while offline")
        site = Client(contract_broker, client_id, clean=False)
        site.wait_for(b"while offline")
    finally:
        site.close()
        central.close()


@on_both_brokers(amqtt_fails=AMQTT_DROPS_UNACKED_QOS1, raises=TimeoutError, logins=True)
def test_an_unacknowledged_qos1_publish_is_sent_again_when_the_session_resumes(
        contract_broker: Broker) -> None:
    root = _root()
    client_id = f"site-{root[-8:]}"
    site = Client(contract_broker, client_id, clean=False, manual_ack=True)
    site.subscribe(f"{root}/cmd/#")
    central = Client(contract_broker, f"central-{root[-8:]}")
    try:
        central.publish(f"{root}/cmd/reload", b"not acknowledged")
        site.wait_for(b"not acknowledged")  # and never PUBACKed
        site.drop()
        site = Client(contract_broker, client_id, clean=False)
        assert site.wait_for(b"not acknowledged").dup
    finally:
        site.close()
        central.close()

"""A simulated edge on a real broker: a paho client with the contract's Will, acks and commands."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_protocols import mqtt_messages as mm
from firmware_protocols.mqtt_topics import edge_subscriptions, parse_topic
from tests.central.sim import SimSite


class EdgeClient:
    def __init__(
        self, host: str, port: int, site: SimSite, *, client_id: str | None = None
    ) -> None:
        self.site = site
        self.acks: list[int] = []
        self.commands: list[mm.Cmd] = []
        self._lock = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"edge-{site.site_id}-{site.session}",
        )
        will = mm.will_for(site.state("online"))
        self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self.client.on_message = self._message
        self.client.on_connect = self._connect
        self._subscribed = threading.Event()
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("edge did not connect")

    def _connect(self, client: mqtt.Client, *_: Any) -> None:
        for sub in edge_subscriptions(self.site.site_id):
            client.subscribe(sub.filter, qos=sub.qos)
        self._subscribed.set()

    def _message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic = parse_topic(message.topic)
        decoded = mm.decode(
            topic.kind, message.payload, site_id=topic.site_id, command=topic.command
        )
        with self._lock:
            if isinstance(decoded, mm.Ack):
                self.acks.append(decoded.seq)
            elif isinstance(decoded, mm.Cmd):
                self.commands.append(decoded)
            self._lock.notify_all()

    def send(self, *messages: mm.Message) -> None:
        for message in messages:
            publish = mm.to_publish(message)
            info = self.client.publish(
                publish.topic, publish.payload, qos=publish.qos, retain=publish.retain
            )
            info.wait_for_publish(10)

    def send_raw(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def wait_ack(self, seq: int, timeout: float = 20.0) -> None:
        with self._lock:
            if not self._lock.wait_for(
                lambda: seq in self.acks or (self.acks and max(self.acks) >= seq), timeout
            ):
                raise TimeoutError(f"no ack {seq}; got {self.acks[-5:]}")

    def wait_command(self, timeout: float = 20.0) -> mm.Cmd:
        with self._lock:
            if not self._lock.wait_for(lambda: self.commands, timeout):
                raise TimeoutError("no command")
            return self.commands[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def die(self) -> None:
        """Lose the connection without DISCONNECT: the broker publishes the Will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        time.sleep(0.05)

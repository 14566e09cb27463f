"""The load generator speaks the contract, keeps an outbox until acked, and resends."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import defaultdict

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_protocols import mqtt_messages as msgs
from firmware_protocols.mqtt_topics import ack_topic
from onedoor.loadgen import LoadProfile, SimulatedSite, run_sites, site_ids
from tests.servers import MosquittoBroker


class CountingAcker:
    """The test's stand-in for the central's ingest: validates, counts, acks contiguous seqs.

    (The real central is tested against the loadgen in tests/central; here the
    subject is the generator itself.)
    """

    def __init__(self, broker: MosquittoBroker) -> None:
        self.seen: dict[str, set[int]] = defaultdict(set)
        self.duplicates = 0
        self.types: set[str] = set()
        self.invalid = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="acker")
        self.client.on_connect = lambda c, *_: c.subscribe("onedoor/v1/+/+", qos=1)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            incoming = msgs.decode_publish(message.topic, message.payload)
        except msgs.InvalidMessage:
            self.invalid += 1
            return
        if not isinstance(incoming.message, msgs.Event):
            return
        with self.lock:
            seqs = self.seen[incoming.site_id]
            if incoming.message.seq in seqs:
                self.duplicates += 1
            seqs.add(incoming.message.seq)
            self.types.add(incoming.message.type)
            contiguous = 0
            while contiguous + 1 in seqs:
                contiguous += 1
        ack = msgs.Ack(site=incoming.site_id, seq=contiguous)
        client.publish(ack_topic(incoming.site_id), msgs.encode(ack), qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_every_event_is_acked_and_valid(mqtt_broker: MosquittoBroker) -> None:
    acker = CountingAcker(mqtt_broker)
    try:
        profile = LoadProfile(citizens_per_day=60, telemetry_interval_s=2, speed=2000)
        result = asyncio.run(run_sites(mqtt_broker.host, mqtt_broker.port, site_ids(20),
                                       profile, duration_s=3.0))
    finally:
        acker.close()
    assert result.produced > 100
    assert result.acked == result.produced
    assert result.unacked_at_end == 0
    assert acker.invalid == 0
    assert {"ticket.issued", "ticket.called", "ticket.serving", "ticket.done"} <= acker.types
    assert sum(len(s) for s in acker.seen.values()) == result.produced


def test_outbox_survives_a_broker_restart(mqtt_broker: MosquittoBroker) -> None:
    acker = CountingAcker(mqtt_broker)

    async def scenario() -> object:
        # The test's acker subscribes without a session: what it missed while reconnecting
        # comes back by the resend, made quick here to fit the drain time.
        profile = LoadProfile(citizens_per_day=60, telemetry_interval_s=5, speed=3000,
                              resend_after_s=5.0)
        task = asyncio.create_task(run_sites(mqtt_broker.host, mqtt_broker.port,
                                             site_ids(5, "restart"), profile, duration_s=6.0,
                                             drain_s=20.0))
        await asyncio.sleep(2.0)
        await asyncio.to_thread(mqtt_broker.stop)
        await asyncio.sleep(1.0)  # events produced now wait in the outboxes
        await asyncio.to_thread(mqtt_broker.start)
        return await task

    try:
        result = asyncio.run(scenario())
    finally:
        acker.close()
    assert result.unacked_at_end == 0  # type: ignore[attr-defined]
    assert result.acked == result.produced  # type: ignore[attr-defined]


def test_resend_covers_recent_events_behind_a_stuck_ack() -> None:
    """A missed event sent just before the ack stopped moving must come back at the next resend.

    (Resending only "old" entries left such events unacked until the resend after it.)
    """
    clock = [0.0]
    site = SimulatedSite("load-0001", 1, random.Random(1), lambda: clock[0])
    site.connected = True  # no broker: _send is captured below
    sent: list[int] = []

    def capture(publish: msgs.Publish) -> None:
        event = msgs.decode(msgs.Kind.EVENT, publish.payload, site_id="load-0001")
        assert isinstance(event, msgs.Event)
        sent.append(event.seq)

    site._send = capture  # type: ignore[method-assign]
    site.citizen()  # seqs 1..4 or 1..5 at t=0
    clock[0] = 29.0
    site.citizen()  # more, at t=29: the ack is still 0
    produced = list(range(1, site.seq + 1))
    assert sent == produced
    sent.clear()
    clock[0] = 30.5
    site.resend_unacked(30.0)
    assert sent == produced
    sent.clear()
    site.resend_unacked(30.0)  # right after a resend: nothing until the next quiet period
    assert sent == []


def test_an_ack_above_anything_produced_is_counted() -> None:
    """Two runs under the same site ids against one central: reported, not silently absorbed."""
    site = SimulatedSite("load-0001", 1, random.Random(1), lambda: 0.0)
    site.connected = True
    site._send = lambda publish: None  # type: ignore[method-assign]
    site.citizen()
    message = mqtt.MQTTMessage(topic=ack_topic("load-0001").encode())
    message.payload = msgs.encode(msgs.Ack(site="load-0001", seq=site.seq))
    site._on_message(site.client, None, message)
    assert (site.counters.acks_beyond_produced, site.outbox) == (0, {})
    message.payload = msgs.encode(msgs.Ack(site="load-0001", seq=site.seq + 40))
    site._on_message(site.client, None, message)
    assert site.counters.acks_beyond_produced == 1

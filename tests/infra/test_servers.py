"""The real servers the integration tests rely on actually serve."""

from __future__ import annotations

import queue

import paho.mqtt.client as mqtt
import sqlalchemy as sa

from onedoor.broker import Broker, EmbeddedBroker
from tests.servers import MosquittoBroker


def _round_trip(broker: Broker, topic: str) -> bytes:
    received: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, message: received.put(message.payload)
    client.connect(broker.host, broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        client.publish(topic, "你好", qos=1).wait_for_publish(timeout=5)
        return received.get(timeout=5)
    finally:
        client.loop_stop()
        client.disconnect()


def test_broker_round_trip_survives_restart(mqtt_broker: MosquittoBroker) -> None:
    assert _round_trip(mqtt_broker, "onedoor/test/a") == "你好".encode()
    mqtt_broker.stop()
    assert not mqtt_broker.running
    mqtt_broker.start()
    assert _round_trip(mqtt_broker, "onedoor/test/b") == "你好".encode()


def test_postgres_answers(postgres_url: str, fresh_postgres_url: str) -> None:
    for url in (postgres_url, fresh_postgres_url):
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            assert connection.execute(sa.text("select 6 * 7")).scalar_one() == 42
        engine.dispose()
    assert postgres_url != fresh_postgres_url


def test_embedded_broker_serves_qos1_retained_and_will() -> None:
    """The demo's fallback broker (amqtt) does what the edge and central rely on."""
    with EmbeddedBroker() as broker:
        assert _round_trip(broker, "onedoor/v1/s1/event") == "你好".encode()
        wills: queue.Queue[tuple[bytes, bool]] = queue.Queue()
        dying = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="site-1")
        dying.will_set("onedoor/v1/s1/state", "offline", qos=1, retain=True)
        dying.connect(broker.host, broker.port)
        dying.loop_start()
        dying.publish("onedoor/v1/s1/state", "online", qos=1, retain=True).wait_for_publish(5)
        watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        watcher.on_message = lambda _c, _u, m: wills.put((m.payload, m.retain))
        watcher.connect(broker.host, broker.port)
        watcher.subscribe("onedoor/v1/+/state", qos=1)
        watcher.loop_start()
        try:
            assert wills.get(timeout=5) == (b"online", True)  # retained on subscribe
            dying.loop_stop()
            dying.socket().close()  # vanish without DISCONNECT: the broker sends the Will
            assert wills.get(timeout=10)[0] == b"offline"
        finally:
            watcher.loop_stop()
            watcher.disconnect()
        assert not broker.shared_subscriptions

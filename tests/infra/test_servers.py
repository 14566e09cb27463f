"""The real servers the integration tests rely on actually serve."""

from __future__ import annotations

import queue

import paho.mqtt.client as mqtt
import sqlalchemy as sa

from tests.servers import MosquittoBroker


def _round_trip(broker: MosquittoBroker, topic: str) -> bytes:
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

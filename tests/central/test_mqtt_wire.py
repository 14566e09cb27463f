"""The central's MQTT packets (sans-IO): one table feeds encoding and decoding, and the
asyncio client against a real Mosquitto (receive, PUBACK, QoS 1 out, reconnect)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import structlog.testing
from paho.mqtt.enums import CallbackAPIVersion

from central import mqtt_wire as wire
from central.mqtt_client import ConnectOptions, MqttClient
from tests.servers import MosquittoBroker

# (what the broker sends, the packet the reader hands out), for both protocol versions
INCOMING: list[tuple[int, bytes, wire.Packet]] = [
    (wire.MQTT5, b"\x20\x03\x01\x00\x00", wire.ConnAck(True, 0)),
    (wire.MQTT5, b"\x20\x06\x00\x00\x03\x21\x00\x14",
     wire.ConnAck(False, 0, receive_maximum=20)),
    (wire.MQTT5, b"\x20\x0b\x00\x00\x08\x13\x00\x3c\x27\x00\x10\x00\x00",
     wire.ConnAck(False, 0, server_keepalive_s=60, maximum_packet_size=1_048_576)),
    (wire.MQTT5, b"\x20\x03\x00\x87\x00", wire.ConnAck(False, 0x87)),
    (wire.MQTT5, b"\x20\x05\x00\x00\x02\x2a\x00",
     wire.ConnAck(False, 0, shared_subscriptions=False)),
    (wire.MQTT311, b"\x20\x02\x00\x05", wire.ConnAck(False, 5)),
    (wire.MQTT5, b"\x32\x0b\x00\x03a/b\x00\x07\x00" + b"xyz",
     wire.Publish("a/b", b"xyz", 1, 7, False, False)),
    (wire.MQTT5, b"\x3b\x0c\x00\x03a/b\x00\x07\x02\x01\x01" + b"{}",
     wire.Publish("a/b", b"{}", 1, 7, True, True)),  # DUP, retained, a property skipped
    (wire.MQTT311, b"\x30\x07\x00\x03a/b" + b"hi", wire.Publish("a/b", b"hi", 0, 0, False, False)),
    (wire.MQTT5, b"\x30\x06\x00\x02\xff\xfe\x00" + b"x",
     wire.Publish(wire.INVALID_UTF8_TOPIC, b"x", 0, 0, False, False)),
    (wire.MQTT5, b"\x40\x02\x01\x02", wire.PubAck(258, 0)),
    (wire.MQTT5, b"\x40\x04\x01\x02\x10\x00", wire.PubAck(258, 0x10)),
    (wire.MQTT5, b"\x90\x06\x00\x01\x00\x01\x00\x87", wire.SubAck(1, (1, 0, 0x87))),
    (wire.MQTT311, b"\x90\x04\x00\x01\x01\x80", wire.SubAck(1, (1, 0x80))),
    (wire.MQTT5, b"\xd0\x00", wire.PingResp()),
    (wire.MQTT5, b"\xe0\x02\x8e\x00", wire.Disconnect(0x8E)),
]  # fmt: skip

# (what the client sends, the bytes on the wire)
OUTGOING: list[tuple[bytes, bytes]] = [
    (wire.connect("c1", session_expiry_s=3600, keepalive_s=30),
     b"\x10\x14\x00\x04MQTT\x05\x00\x00\x1e\x05\x11\x00\x00\x0e\x10\x00\x02c1"),
    (wire.connect("c1", version=wire.MQTT311, username="u", password="p", clean_start=True),
     b"\x10\x14\x00\x04MQTT\x04\xc2\x00\x1e\x00\x02c1\x00\x01u\x00\x01p"),
    (wire.subscribe(1, [("$share/g/a/+", 1), ("a/+", 0)]),
     b"\x82\x18\x00\x01\x00\x00\x0c$share/g/a/+\x01\x00\x03a/+\x00"),
    (wire.subscribe(1, [("a/+", 1)], version=wire.MQTT311), b"\x82\x08\x00\x01\x00\x03a/+\x01"),
    (wire.publish("a/b", b"x", qos=1, packet_id=9), b"\x32\x09\x00\x03a/b\x00\x09\x00x"),
    (wire.publish("a/b", b"x", qos=1, packet_id=9, dup=True, retain=True),
     b"\x3b\x09\x00\x03a/b\x00\x09\x00x"),
    (wire.publish("a/b", b"x", qos=0, version=wire.MQTT311), b"\x30\x06\x00\x03a/bx"),
    (wire.puback(258), b"\x40\x02\x01\x02"),
    (wire.PINGREQ, b"\xc0\x00"),
    (wire.DISCONNECT, b"\xe0\x00"),
]  # fmt: skip


@pytest.mark.parametrize(("version", "data", "packet"), INCOMING)
def test_decode(version: int, data: bytes, packet: wire.Packet) -> None:
    reader = wire.PacketReader(version)
    reader.receive_data(data)
    assert reader.next_packet() == packet
    assert reader.next_packet() is None


@pytest.mark.parametrize(("version", "data", "packet"), INCOMING)
def test_decode_byte_by_byte(version: int, data: bytes, packet: wire.Packet) -> None:
    """A packet split anywhere is handed out once it is complete, and only then."""
    reader = wire.PacketReader(version)
    for byte in data[:-1]:
        reader.receive_data(bytes((byte,)))
        assert reader.next_packet() is None
    reader.receive_data(data[-1:])
    assert reader.next_packet() == packet


def test_many_packets_in_one_read() -> None:
    reader = wire.PacketReader()
    stream = b"".join(data for version, data, _ in INCOMING if version == wire.MQTT5)
    reader.receive_data(stream)
    packets = []
    while (packet := reader.next_packet()) is not None:
        packets.append(packet)
    assert packets == [p for version, _, p in INCOMING if version == wire.MQTT5]


@pytest.mark.parametrize(("encoded", "expected"), OUTGOING)
def test_encode(encoded: bytes, expected: bytes) -> None:
    assert encoded == expected


def test_large_remaining_length_round_trip() -> None:
    payload = b"p" * 20_000  # three length bytes
    reader = wire.PacketReader()
    reader.receive_data(wire.publish("t", payload, qos=1, packet_id=1))
    assert reader.next_packet() == wire.Publish("t", payload, 1, 1, False, False)


@pytest.mark.parametrize(
    "data",
    [
        b"\x30\xff\xff\xff\xff\x01",  # five length bytes
        b"\x34\x05\x00\x01t\x00\x01",  # QoS 2 is never granted
        b"\xa0\x00",  # UNSUBACK: never asked for
        b"\x20\x05\x00\x00\x02\x7f\x00",  # unknown property
        b"\x20\x04\x00\x00\x09\x21",  # properties past the end
    ],
)
def test_bad_bytes_are_a_wire_error(data: bytes) -> None:
    reader = wire.PacketReader()
    reader.receive_data(data)
    with pytest.raises(wire.MqttWireError):
        reader.next_packet()


def test_packet_over_the_limit_is_refused_before_it_is_buffered_whole() -> None:
    reader = wire.PacketReader(max_packet_size=100)
    reader.receive_data(b"\x30\xc8\x01")  # says 200 bytes follow
    with pytest.raises(wire.MqttWireError, match="limit 100"):
        reader.next_packet()


# --------------------------------------------------------------------------- the client


def _paho(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)  # fmt: skip
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


async def _until(condition: object, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("version", [wire.MQTT5, wire.MQTT311])
def test_client_receives_publishes_and_its_qos1_publishes_arrive(
    mqtt_broker: MosquittoBroker, version: int
) -> None:
    topic = f"t/{uuid.uuid4().hex[:8]}"
    got_back: list[bytes] = []
    arrived = threading.Event()
    watcher = _paho(mqtt_broker.port)
    watcher.on_message = lambda _c, _u, m: (got_back.append(m.payload), arrived.set())
    watcher.subscribe(f"{topic}/out", qos=1)

    async def scenario() -> list[wire.Publish]:
        received: list[wire.Publish] = []
        options = ConnectOptions("127.0.0.1", mqtt_broker.port, f"c-{uuid.uuid4().hex[:8]}",
                                 version=version, session_expiry_s=60)  # fmt: skip
        client = MqttClient(options, [(f"{topic}/in", 1)], received.extend)
        task = asyncio.create_task(client.run())
        await _until(lambda: client.connected)
        await asyncio.sleep(0.3)  # SUBACK
        sender = _paho(mqtt_broker.port)
        for n in range(300):
            sender.publish(f"{topic}/in", f"{n}".encode(), qos=1)
        await _until(lambda: len(received) >= 300)
        for n in range(50):  # more than mosquitto's 20 in flight: the rest wait their turn
            client.publish(f"{topic}/out", f"ack{n}".encode(), qos=1)
        await _until(lambda: len(got_back) >= 50)
        client.close()
        await asyncio.wait_for(task, 10)
        sender.loop_stop()
        return received

    received = asyncio.run(scenario())
    watcher.loop_stop()
    assert [p.payload for p in received] == [f"{n}".encode() for n in range(300)]
    assert all(p.qos == 1 and p.topic == f"{topic}/in" for p in received)
    assert sorted(got_back) == sorted(f"ack{n}".encode() for n in range(50))


def test_client_reconnects_and_gets_what_was_queued_for_its_session(tmp_path: Path) -> None:
    """Broker restart: the persistent session resumes; publishes made meanwhile arrive."""
    broker = MosquittoBroker(tmp_path / "broker")
    broker.start()
    topic = f"t/{uuid.uuid4().hex[:8]}"
    states: list[bool] = []

    async def scenario() -> list[bytes]:
        received: list[wire.Publish] = []
        options = ConnectOptions("127.0.0.1", broker.port, "c-restart", session_expiry_s=600)
        client = MqttClient(options, [(topic, 1)], received.extend, on_connected=states.append)
        task = asyncio.create_task(client.run())
        await _until(lambda: client.connected)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(broker.stop)
        await _until(lambda: not client.connected)
        await asyncio.to_thread(broker.start)
        await _until(lambda: client.connected, timeout=40)  # backoff up to 2 s, jittered
        sender = _paho(broker.port)
        sender.publish(topic, b"after", qos=1).wait_for_publish(10)
        await _until(lambda: len(received) >= 1)
        client.close()
        await asyncio.wait_for(task, 10)
        sender.loop_stop()
        return [p.payload for p in received]

    try:
        assert asyncio.run(scenario()) == [b"after"]
    finally:
        broker.stop()
    assert states[:3] == [True, False, True]


class ScriptedBroker:
    """A TCP server that answers CONNECT with a given CONNACK and then hangs up or stays.

    A stand-in (a mock) for brokers that behave this way: Debian's ejabberd 23.01
    answers ``Shared Subscription Available = 0`` and disconnects a ``$share/``
    SUBSCRIBE with 0x9E (checked by hand, docs/CAPACITY.md); CI has no such broker.
    """

    def __init__(self, connack: bytes, *, hang_up: bool) -> None:
        self.connack = connack
        self.hang_up = hang_up
        self.connects: list[float] = []
        self.subscribes = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(65536)
        if data[:1] == b"\x10":
            self.connects.append(asyncio.get_running_loop().time())
            writer.write(self.connack)
            await writer.drain()
        if self.hang_up:
            writer.close()
            return
        while data := await reader.read(65536):
            if data[:1] == b"\x82":
                self.subscribes += 1
        writer.close()


def test_a_broker_without_shared_subscriptions_is_refused_clearly_and_not_hammered() -> None:
    """MQTT 5 CONNACK with Shared Subscription Available = 0: no SUBSCRIBE, a clear error,
    and reconnects spaced by the backoff (the client used to retry at once, for ever)."""
    broker = ScriptedBroker(b"\x20\x05\x00\x00\x02\x2a\x00", hang_up=False)

    async def scenario() -> None:
        server = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = MqttClient(ConnectOptions("127.0.0.1", port, "c-noshare"),
                            [("$share/g/onedoor/v1/+/event", 1)], lambda _: None)  # fmt: skip
        task = asyncio.create_task(client.run())
        await asyncio.sleep(3.5)
        client.close()
        task.cancel()
        server.close()

    # Captured from structlog itself: another test may have bound its output to a stream
    # capsys does not see.
    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    assert broker.subscribes == 0
    assert 1 <= len(broker.connects) <= 4  # backoff 1, 2, 4 s (jittered), not hundreds
    gaps = [b - a for a, b in zip(broker.connects, broker.connects[1:], strict=False)]
    # Each wait is at least half its step (equal jitter): never an immediate retry.
    assert all(gap >= 0.5 * 2**i - 0.05 for i, gap in enumerate(gaps)), gaps
    failures = [e for e in logs if e["event"] == "mqtt.connect_failed"]
    assert failures
    assert "offers no shared subscriptions" in failures[0]["error"]


def test_a_connection_that_drops_at_once_backs_off() -> None:
    """A broker that accepts and hangs up straight away is retried with growing delays."""
    broker = ScriptedBroker(b"\x20\x03\x00\x00\x00", hang_up=True)

    async def scenario() -> None:
        server = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = MqttClient(ConnectOptions("127.0.0.1", port, "c-drop"), [("t", 1)],
                            lambda _: None)  # fmt: skip
        task = asyncio.create_task(client.run())
        await asyncio.sleep(3.5)
        client.close()
        task.cancel()
        server.close()

    asyncio.run(scenario())
    assert 1 <= len(broker.connects) <= 4

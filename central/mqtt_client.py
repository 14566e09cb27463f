"""One central replica's connection to its broker, on the asyncio loop (no threads).

::

    client = MqttClient(options, [("$share/g/onedoor/v1/+/event", 1)], on_publishes)
    task = asyncio.create_task(client.run())     # connect, subscribe, reconnect for ever
    client.publish(topic, payload, qos=1)        # queued; QoS 1 kept until the broker's PUBACK
    client.close()                               # DISCONNECT (the session stays), end run()

``on_publishes`` gets every publish of one read at once, after their PUBACKs were
written (in one write). The broker's copy is released on receipt, as with paho:
an event received and then lost in a crash before its commit is not lost, since
the edge keeps it until the central's ``ack`` (sent only after the commit).

Reconnects use capped equal-jitter backoff (1 s doubling to 30 s; each wait is
at least half its step, so a broker that refuses at once is not hammered). Outgoing QoS 1
publishes stay queued while disconnected and are sent again (DUP) after a
reconnect until acknowledged; at most the broker's Receive Maximum are in flight.
The packets are :mod:`central.mqtt_wire`'s.
"""

from __future__ import annotations

import asyncio
import collections
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog

from central import mqtt_wire as wire
from central.errors import CentralError

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0
BACKOFF_FIRST_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
STABLE_AFTER_S: Final = 10.0
"""A connection that lasted this long resets the backoff; one that ends sooner (a broker
refusing a subscription, say) counts as a failed attempt, so it is not retried at once."""


class SharedSubscriptionsUnavailable(CentralError, ConnectionError):
    """The broker says it has no shared subscriptions, and we asked for ``$share/`` filters."""


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    host: str
    port: int
    client_id: str
    version: int = wire.MQTT5
    keepalive_s: int = 30
    username: str = ""
    password: str = ""
    session_expiry_s: int = 0
    tls: ssl.SSLContext | None = None


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: parses reads, answers QoS 1 publishes, reports the rest."""

    def __init__(self, client: MqttClient) -> None:
        self.client = client
        assert client.loop is not None
        self.loop = client.loop
        self.reader = wire.PacketReader(client.options.version)
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[wire.ConnAck] = client.loop.create_future()
        self.closed: asyncio.Future[None] = client.loop.create_future()
        self.last_heard = client.loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        started = time.thread_time()
        self.last_heard = self.loop.time()
        self.reader.receive_data(data)
        received: list[wire.Publish] = []
        answers: list[bytes] = []
        try:
            while (packet := self.reader.next_packet()) is not None:
                if isinstance(packet, wire.Publish):
                    received.append(packet)
                    if packet.qos:
                        answers.append(wire.puback(packet.packet_id))
                else:
                    self._control(packet)
        except wire.MqttWireError as exc:
            log.error("mqtt.bad_packet", error=str(exc)[:200])
            self.abort()
            return
        finally:
            if answers:
                self.write(b"".join(answers))
        self.client.receive_cpu_s += time.thread_time() - started
        if received:
            self.client.on_publishes(received)

    def _control(self, packet: wire.Packet) -> None:
        if isinstance(packet, wire.PubAck):
            self.client.acknowledged(packet.packet_id)
        elif isinstance(packet, wire.ConnAck):
            if not self.connack.done():
                self.connack.set_result(packet)
        elif isinstance(packet, wire.SubAck):
            if any(code >= 0x80 for code in packet.reasons):
                log.error("mqtt.subscribe_refused", reasons=[hex(c) for c in packet.reasons])
        elif isinstance(packet, wire.Disconnect):
            log.warning("mqtt.broker_disconnected", reason=hex(packet.reason))
            self.abort()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connack.done():
            self.connack.set_exception(exc or ConnectionError("connection closed before CONNACK"))
        if not self.closed.done():
            self.closed.set_result(None)


class MqttClient:
    """Connect, subscribe, receive and publish for ever (see the module docstring)."""

    def __init__(
        self,
        options: ConnectOptions,
        subscriptions: list[tuple[str, int]],
        on_publishes: Callable[[list[wire.Publish]], None],
        *,
        on_connected: Callable[[bool], None] | None = None,
    ) -> None:
        self.options = options
        self.subscriptions = subscriptions
        self.on_publishes = on_publishes
        self._on_connected = on_connected
        self.loop: asyncio.AbstractEventLoop | None = None  # run()'s
        self._connection: _Connection | None = None
        self._ready = False
        self._closing = False
        self._queued: collections.deque[tuple[str, bytes, bool]] = collections.deque()
        self._in_flight: dict[int, tuple[str, bytes, bool]] = {}
        self._receive_maximum = 65_535
        self._next_id = 0
        self._writes: list[bytes] = []
        self._flush_scheduled = False
        self.receive_cpu_s = 0.0
        """CPU seconds spent parsing reads and answering them (the ``mqtt.receive`` stage)."""

    @property
    def connected(self) -> bool:
        return self._ready

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        attempt = 0
        while not self._closing:
            started = self.loop.time()
            try:
                await self._session()
            except (OSError, TimeoutError, ConnectionError) as exc:
                log.error("mqtt.connect_failed", host=self.options.host, port=self.options.port,
                          error=str(exc)[:300] or type(exc).__name__)  # fmt: skip
            if self.loop.time() - started >= STABLE_AFTER_S:
                attempt = 0  # it had been up for a while: the next retry starts small again
            if self._closing:
                return
            step = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**attempt)
            # Equal jitter: replicas still spread out, but never retry at once after a refusal.
            delay = step / 2 + random.uniform(0, step / 2)
            attempt += 1
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        assert self.loop is not None
        options = self.options
        connection = _Connection(self)
        self._writes.clear()  # meant for the last connection; its QoS 1 ones are resent below
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await self.loop.create_connection(
                lambda: connection, options.host, options.port, ssl=options.tls,
                server_hostname=options.host if options.tls else None)  # fmt: skip
            self._connection = connection
            connection.write(wire.connect(
                options.client_id, version=options.version, keepalive_s=options.keepalive_s,
                clean_start=False, username=options.username, password=options.password,
                session_expiry_s=options.session_expiry_s))  # fmt: skip
            connack = await connection.connack
        try:
            if connack.reason:
                raise ConnectionError(f"broker refused the connection: 0x{connack.reason:02x}")
            shared = [f for f, _ in self.subscriptions if f.startswith("$share/")]
            if shared and not connack.shared_subscriptions:
                raise SharedSubscriptionsUnavailable(
                    f"the broker offers no shared subscriptions ({shared[0]} refused): use a "
                    "broker that has them, or mqtt_protocol = \"3.1.1\" (plain subscriptions, "
                    "one replica only)")
            self._receive_maximum = max(1, connack.receive_maximum)
            connection.write(wire.subscribe(1, self.subscriptions, version=options.version))
            self._ready = True
            log.info("mqtt.connected", host=options.host, port=options.port,
                     session_present=connack.session_present)  # fmt: skip
            if self._on_connected is not None:
                self._on_connected(True)
            for packet_id, (topic, payload, retain) in sorted(self._in_flight.items()):
                connection.write(wire.publish(topic, payload, qos=1, retain=retain,
                                              packet_id=packet_id, dup=True,
                                              version=options.version))  # fmt: skip
            self._pump()
            keepalive = options.keepalive_s
            if connack.server_keepalive_s is not None:
                keepalive = connack.server_keepalive_s
            await self._serve(connection, keepalive)
        finally:
            was_ready, self._ready = self._ready, False
            self._connection = None
            connection.abort()
            if was_ready:
                log.warning("mqtt.disconnected", host=options.host, port=options.port)
                if self._on_connected is not None:
                    self._on_connected(False)

    async def _serve(self, connection: _Connection, keepalive_s: int) -> None:
        """Until the connection ends: PINGREQ every half keepalive, give up after 1.5 silent."""
        if keepalive_s <= 0:
            await connection.closed
            return
        while not connection.closed.done():
            await asyncio.wait([connection.closed], timeout=keepalive_s / 2)
            if connection.closed.done():
                return
            if connection.loop.time() - connection.last_heard > keepalive_s * 1.5:
                log.error("mqtt.keepalive_timeout", host=self.options.host)
                return
            connection.write(wire.PINGREQ)

    def close(self) -> None:
        """Send DISCONNECT (the broker keeps the session for its expiry) and stop ``run()``."""
        self._closing = True
        connection = self._connection
        if connection is not None:
            self._flush()
            connection.write(wire.DISCONNECT)
            connection.abort()

    # ------------------------------------------------------------------ publishing

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> None:
        """QoS 0: sent now if connected, else dropped. QoS 1: queued until acknowledged."""
        if qos == 0:
            if self._ready:
                self._write(wire.publish(topic, payload, qos=0, retain=retain,
                                         version=self.options.version))  # fmt: skip
            return
        self._queued.append((topic, payload, retain))
        self._pump()

    def acknowledged(self, packet_id: int) -> None:
        if self._in_flight.pop(packet_id, None) is not None:
            self._pump()

    def _pump(self) -> None:
        while self._ready and self._queued and len(self._in_flight) < self._receive_maximum:
            topic, payload, retain = self._queued.popleft()
            packet_id = self._packet_id()
            self._in_flight[packet_id] = (topic, payload, retain)
            self._write(wire.publish(topic, payload, qos=1, retain=retain, packet_id=packet_id,
                                     version=self.options.version))  # fmt: skip

    def _packet_id(self) -> int:
        while True:
            self._next_id = self._next_id % 65_535 + 1
            if self._next_id not in self._in_flight:
                return self._next_id

    def _write(self, data: bytes) -> None:
        """Writes of one loop iteration leave in one send (acks of a batch, one per site)."""
        self._writes.append(data)
        if not self._flush_scheduled and self.loop is not None:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data, self._writes = b"".join(self._writes), []
        if data and self._connection is not None:
            self._connection.write(data)


__all__ = ["ConnectOptions", "MqttClient", "SharedSubscriptionsUnavailable"]

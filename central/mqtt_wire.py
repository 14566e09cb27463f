"""The MQTT packets a central replica exchanges with its broker, sans-IO (MQTT 5 and 3.1.1).

No sockets, no clocks: encoders return ``bytes``; :class:`PacketReader` takes
``receive_data(bytes)`` and hands out complete packets (``next_packet()`` returns
``None`` until one is complete), like h11's reader. :mod:`central.mqtt_client`
drives it over an asyncio connection.

Why not paho on the ingest path: paho reads a packet with three ``recv`` calls
and answers each QoS 1 publish with its own ``send`` (plus a wake-up write to
its socket pair), which cost more CPU per event than validating, deduplicating
and committing it (``docs/bench/central_ingest.md``). Here every packet of a
read is parsed from one buffer and the PUBACKs of a read go out in one write.

Only what the central uses: CONNECT (persistent session, session expiry, user
name and password), SUBSCRIBE, PUBLISH at QoS 0/1 both ways, PUBACK, PING,
DISCONNECT. Incoming QoS 2 is never granted (the central subscribes at QoS 1 at
most) and topic aliases are never allowed (no Topic Alias Maximum is sent).

Errors::

    MqttWireError(CentralError, ValueError)   the broker sent bytes this reader cannot accept
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from central.errors import CentralError


class MqttWireError(CentralError, ValueError):
    """Malformed or unexpected bytes from the broker: close the connection and reconnect."""


class PacketType(enum.IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    SUBSCRIBE = 8
    SUBACK = 9
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


MQTT5: Final = 5
MQTT311: Final = 4

# Property identifiers this module reads or writes (MQTT 5, section 2.2.2.2).
SESSION_EXPIRY_INTERVAL: Final = 0x11
SERVER_KEEP_ALIVE: Final = 0x13
RECEIVE_MAXIMUM: Final = 0x21
MAXIMUM_PACKET_SIZE: Final = 0x27
SHARED_SUBSCRIPTION_AVAILABLE: Final = 0x2A

# How each property's value is encoded, to walk past the ones not read.
_BYTE, _U16, _U32, _VARINT, _STR, _BIN, _PAIR = range(7)
_PROPERTY_KINDS: Final = {
    0x01: _BYTE, 0x02: _U32, 0x03: _STR, 0x08: _STR, 0x09: _BIN, 0x0B: _VARINT,
    0x11: _U32, 0x12: _STR, 0x13: _U16, 0x15: _STR, 0x16: _BIN, 0x17: _BYTE,
    0x18: _U32, 0x19: _BYTE, 0x1A: _STR, 0x1C: _STR, 0x1F: _STR, 0x21: _U16,
    0x22: _U16, 0x23: _U16, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _U32,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip

MAX_REMAINING_LENGTH: Final = 268_435_455
"""The largest packet body the protocol can express (four length bytes)."""

PINGREQ: Final = b"\xc0\x00"
DISCONNECT: Final = b"\xe0\x00"  # normal disconnection; the session stays for its expiry


# --------------------------------------------------------------------------- encoding


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + _varint(len(body)) + body


def connect(
    client_id: str,
    *,
    version: int = MQTT5,
    keepalive_s: int = 30,
    clean_start: bool = False,
    username: str = "",
    password: str = "",
    session_expiry_s: int = 0,
) -> bytes:
    """CONNECT: a persistent session (``clean_start=False``) kept ``session_expiry_s`` (MQTT 5)."""
    flags = 0x02 if clean_start else 0
    if username:
        flags |= 0x80
    if password:
        flags |= 0x40
    body = _utf8("MQTT") + bytes((version, flags)) + struct.pack("!H", keepalive_s)
    if version == MQTT5:
        properties = bytes((SESSION_EXPIRY_INTERVAL,)) + struct.pack("!I", session_expiry_s)
        body += _varint(len(properties)) + properties
    body += _utf8(client_id)
    if username:
        body += _utf8(username)
    if password:
        body += _utf8(password)
    return _packet(PacketType.CONNECT << 4, body)


def subscribe(packet_id: int, filters: list[tuple[str, int]], *, version: int = MQTT5) -> bytes:
    """SUBSCRIBE to ``(filter, qos)`` pairs (no MQTT 5 options beyond the QoS)."""
    body = struct.pack("!H", packet_id) + (b"\x00" if version == MQTT5 else b"")
    for topic_filter, qos in filters:
        body += _utf8(topic_filter) + bytes((qos,))
    return _packet(PacketType.SUBSCRIBE << 4 | 0x02, body)


def publish(topic: str, payload: bytes, *, qos: int, retain: bool = False, packet_id: int = 0,
            dup: bool = False, version: int = MQTT5) -> bytes:  # fmt: skip
    """PUBLISH at QoS 0 or 1 (``packet_id`` needed for QoS 1)."""
    first = PacketType.PUBLISH << 4 | qos << 1 | (0x08 if dup else 0) | (0x01 if retain else 0)
    header = _utf8(topic)
    if qos:
        header += struct.pack("!H", packet_id)
    if version == MQTT5:
        header += b"\x00"  # no properties
    return _packet(first, header + payload)


_PUBACK_PREFIX: Final = bytes((PacketType.PUBACK << 4, 2))


def puback(packet_id: int) -> bytes:
    """PUBACK with success (the short form both versions accept)."""
    return _PUBACK_PREFIX + packet_id.to_bytes(2, "big")


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    reason: int
    """0 is success; MQTT 5 reason codes >= 0x80, MQTT 3.1.1 return codes 1..5 are refusals."""
    receive_maximum: int = 65_535
    """QoS 1 publishes the broker accepts in flight from us."""
    server_keepalive_s: int | None = None
    maximum_packet_size: int | None = None
    shared_subscriptions: bool = True
    """False when the broker says it has none (MQTT 5; absent means available)."""


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    packet_id: int
    retain: bool
    dup: bool


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int
    reason: int


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    reasons: tuple[int, ...]
    """Granted QoS (0..2) per filter, or a failure code >= 0x80."""


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason: int


Packet = ConnAck | Publish | PubAck | SubAck | PingResp | Disconnect

INVALID_UTF8_TOPIC: Final = "\x00invalid-utf8"
"""Stands for a topic that is not UTF-8: the contract's topic parser rejects it by reason."""


class PacketReader:
    """Bytes from the broker in, packets out (``receive_data`` / ``next_packet``)."""

    def __init__(self, version: int = MQTT5, max_packet_size: int = MAX_REMAINING_LENGTH) -> None:
        self.version = version
        self.max_packet_size = max_packet_size
        self._buffer = bytearray()
        self._start = 0

    def receive_data(self, data: bytes) -> None:
        if self._start:  # drop what was consumed, once per read rather than per packet
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += data

    def next_packet(self) -> Packet | None:
        """The next complete packet, or ``None`` until more bytes arrive."""
        buffer, start = self._buffer, self._start
        available = len(buffer) - start
        if available < 2:
            return None
        length = 0
        shift = 0
        position = start + 1
        while True:
            if position >= len(buffer):
                return None
            digit = buffer[position]
            length |= (digit & 0x7F) << shift
            position += 1
            if not digit & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MqttWireError("remaining length longer than four bytes")
        if length > self.max_packet_size:
            raise MqttWireError(f"packet of {length} bytes, limit {self.max_packet_size}")
        end = position + length
        if end > len(buffer):
            return None
        self._start = end
        first = buffer[start]
        body = bytes(buffer[position:end])
        if first >> 4 == PacketType.PUBLISH:
            return self._publish(first, body)
        return self._control(first, body)

    def _publish(self, first: int, body: bytes) -> Publish:
        qos = (first >> 1) & 0x03
        if qos > 1:
            raise MqttWireError(f"PUBLISH at QoS {qos}: the central subscribes at QoS 1 at most")
        topic_length = int.from_bytes(body[:2], "big")
        offset = 2 + topic_length
        try:
            topic = body[2:offset].decode("utf-8")
        except UnicodeDecodeError:
            topic = INVALID_UTF8_TOPIC
        packet_id = 0
        if qos:
            packet_id = int.from_bytes(body[offset : offset + 2], "big")
            offset += 2
        if self.version == MQTT5:
            properties_length, offset = _read_varint(body, offset)
            offset += properties_length
        if offset > len(body):
            raise MqttWireError("PUBLISH shorter than its header")
        return Publish(topic, body[offset:], qos, packet_id, bool(first & 0x01), bool(first & 0x08))

    def _control(self, first: int, body: bytes) -> Packet:
        kind = first >> 4
        mqtt5 = self.version == MQTT5
        if kind == PacketType.PUBACK:
            if len(body) < 2:
                raise MqttWireError("PUBACK without a packet id")
            return PubAck(int.from_bytes(body[:2], "big"), body[2] if len(body) > 2 else 0)
        if kind == PacketType.CONNACK:
            if len(body) < 2:
                raise MqttWireError("CONNACK shorter than two bytes")
            values = _properties(body, 2) if mqtt5 and len(body) > 2 else {}
            return ConnAck(
                session_present=bool(body[0] & 0x01),
                reason=body[1],
                receive_maximum=values.get(RECEIVE_MAXIMUM, 65_535),
                server_keepalive_s=values.get(SERVER_KEEP_ALIVE),
                maximum_packet_size=values.get(MAXIMUM_PACKET_SIZE),
                shared_subscriptions=values.get(SHARED_SUBSCRIPTION_AVAILABLE, 1) == 1,
            )
        if kind == PacketType.SUBACK:
            offset = 2
            if mqtt5:
                properties_length, offset = _read_varint(body, offset)
                offset += properties_length
            return SubAck(int.from_bytes(body[:2], "big"), tuple(body[offset:]))
        if kind == PacketType.PINGRESP:
            return PingResp()
        if kind == PacketType.DISCONNECT:
            return Disconnect(body[0] if body else 0)
        raise MqttWireError(f"unexpected packet type {kind} from the broker")


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    value = 0
    for shift in (0, 7, 14, 21):
        if offset >= len(data):
            raise MqttWireError("truncated variable-length integer")
        digit = data[offset]
        offset += 1
        value |= (digit & 0x7F) << shift
        if not digit & 0x80:
            return value, offset
    raise MqttWireError("variable-length integer longer than four bytes")


def _properties(data: bytes, offset: int) -> dict[int, int]:
    """The integer-valued properties of a property block (others are walked past)."""
    length, offset = _read_varint(data, offset)
    end = offset + length
    if end > len(data):
        raise MqttWireError("properties run past the packet")
    values: dict[int, int] = {}
    while offset < end:
        identifier = data[offset]
        offset += 1
        kind = _PROPERTY_KINDS.get(identifier)
        if kind is None:
            raise MqttWireError(f"unknown property 0x{identifier:02x}")
        if kind == _BYTE:
            values[identifier] = data[offset]
            offset += 1
        elif kind == _U16:
            values[identifier] = int.from_bytes(data[offset : offset + 2], "big")
            offset += 2
        elif kind == _U32:
            values[identifier] = int.from_bytes(data[offset : offset + 4], "big")
            offset += 4
        elif kind == _VARINT:
            values[identifier], offset = _read_varint(data, offset)
        else:
            for _ in range(2 if kind == _PAIR else 1):
                offset += 2 + int.from_bytes(data[offset : offset + 2], "big")
    if offset != end:
        raise MqttWireError("a property runs past its block")
    return values


__all__ = [
    "DISCONNECT",
    "INVALID_UTF8_TOPIC",
    "MQTT5",
    "MQTT311",
    "PINGREQ",
    "ConnAck",
    "Disconnect",
    "MqttWireError",
    "Packet",
    "PacketReader",
    "PacketType",
    "PingResp",
    "PubAck",
    "Publish",
    "SubAck",
    "connect",
    "puback",
    "publish",
    "subscribe",
]

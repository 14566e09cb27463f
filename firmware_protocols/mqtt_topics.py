"""MQTT topics of the onedoor contract (v1): names, QoS/retain table, filters.

Every topic lives under ``onedoor/v1/{site_id}/``::

    onedoor/v1/{site_id}/state          edge -> central   QoS 1, retained, also the LWT
    onedoor/v1/{site_id}/event          edge -> central   QoS 1
    onedoor/v1/{site_id}/telemetry      edge -> central   QoS 0
    onedoor/v1/{site_id}/ack            central -> edge   QoS 1
    onedoor/v1/{site_id}/cmd/{name}     central -> edge   QoS 1
    onedoor/v1/{site_id}/cmd_result     edge -> central   QoS 1
    onedoor/v1/{site_id}/lease          central -> edge   QoS 1, retained: who numbers the site
    onedoor/v1/{site_id}/restore        central -> edge   QoS 1: a device's share of the day
    onedoor/v1/{site_id}/diag           edge -> central   QoS 1: answer to cmd/diagnostics
    onedoor/v1/{site_id}/progress       edge -> central   QoS 0, retained (progress pages)
    onedoor/v1/{site_id}/advice         edge -> central   QoS 1, live staffing advice

This module is pure: no paho, no sockets, no clocks. It builds topic strings,
parses received ones, and lists the subscription filters each side needs.

Errors (all from :mod:`firmware_protocols.errors`)::

    ProtocolError(ValueError)
    ├── LocalProtocolError        we were asked to build a topic/payload we must not send
    └── RemoteProtocolError
        └── InvalidMessage        a peer sent a bad topic or payload; carries ``reason``
            └── InvalidTopic      reason is always ``Reason.TOPIC``
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from firmware_protocols.errors import LocalProtocolError, RemoteProtocolError

ROOT: Final = "onedoor/v1"
"""Topic root; the ``v1`` is the contract version, also carried as ``"v": 1`` in payloads."""

SITE_ID_PATTERN: Final = r"[a-z0-9][a-z0-9_-]{0,63}"
"""Site id: 1..64 chars of lowercase ASCII letters, digits, ``-`` and ``_``; starts alphanumeric.

No ``+``, ``#`` or ``/`` can appear, so a site id is always one literal topic level.
"""

_SITE_ID_RE: Final = re.compile(SITE_ID_PATTERN)
_GROUP_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

MAX_TOPIC_CHARS: Final = 256
"""Longer topics are rejected before any parsing (the longest valid one is ~100 chars)."""


class Kind(enum.StrEnum):
    """The message kinds; the value is the topic level after the site id."""

    STATE = "state"
    EVENT = "event"
    TELEMETRY = "telemetry"
    ACK = "ack"
    CMD = "cmd"
    CMD_RESULT = "cmd_result"
    LEASE = "lease"
    RESTORE = "restore"
    DIAG = "diag"
    PROGRESS = "progress"
    ADVICE = "advice"


class Direction(enum.StrEnum):
    EDGE_TO_CENTRAL = "edge->central"
    CENTRAL_TO_EDGE = "central->edge"


class Reason(enum.StrEnum):
    """Machine-readable reason of an :class:`InvalidMessage`, for per-site counters."""

    TOPIC = "topic"  # not an onedoor/v1 topic, bad site id, wildcard, unknown kind/command
    TOO_LARGE = "too_large"  # payload above the kind's byte limit
    JSON = "json"  # not UTF-8 JSON, or nested too deep
    VERSION = "version"  # "v" missing or not 1
    SCHEMA = "schema"  # unknown field, missing field, wrong type, value out of range
    SITE_MISMATCH = "site_mismatch"  # payload "site" differs from the topic's site id
    COMMAND_MISMATCH = "command_mismatch"  # cmd payload name differs from topic cmd/{name}


COMMAND_NAMES: Final = ("announce", "reprint", "screen_notice", "reload_config", "diagnostics",
                         "issuing", "calendar", "bookings")
"""Names allowed in ``cmd/{name}``; each has a typed args struct in :mod:`.mqtt_messages`."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """Delivery rules of one kind: the single table both sides read."""

    kind: Kind
    direction: Direction
    qos: int
    retain: bool
    max_payload: int
    """Largest accepted payload in bytes (checked on encode and before decode)."""
    shared: bool = True
    """Central replicas split this kind (a shared subscription); False: every replica
    needs every message (and the retained ones, which brokers do not send to shared
    subscriptions)."""


TOPICS: Final[Mapping[Kind, TopicSpec]] = MappingProxyType(
    {
        # kind            direction                   qos retain max bytes
        Kind.STATE: TopicSpec(Kind.STATE, Direction.EDGE_TO_CENTRAL, 1, True, 1024, False),
        Kind.EVENT: TopicSpec(Kind.EVENT, Direction.EDGE_TO_CENTRAL, 1, False, 8 * 1024),
        Kind.TELEMETRY: TopicSpec(Kind.TELEMETRY, Direction.EDGE_TO_CENTRAL, 0, False, 128 * 1024),
        Kind.ACK: TopicSpec(Kind.ACK, Direction.CENTRAL_TO_EDGE, 1, False, 256),
        # 64 KiB: the day's bookings of a site (cmd/bookings) go in one message.
        Kind.CMD: TopicSpec(Kind.CMD, Direction.CENTRAL_TO_EDGE, 1, False, 64 * 1024),
        Kind.CMD_RESULT: TopicSpec(Kind.CMD_RESULT, Direction.EDGE_TO_CENTRAL, 1, False, 1024),
        Kind.LEASE: TopicSpec(Kind.LEASE, Direction.CENTRAL_TO_EDGE, 1, True, 512),
        Kind.RESTORE: TopicSpec(Kind.RESTORE, Direction.CENTRAL_TO_EDGE, 1, False, 128 * 1024),
        Kind.DIAG: TopicSpec(Kind.DIAG, Direction.EDGE_TO_CENTRAL, 1, False, 64 * 1024),
        Kind.PROGRESS: TopicSpec(Kind.PROGRESS, Direction.EDGE_TO_CENTRAL, 0, True, 128 * 1024,
                                 False),
        Kind.ADVICE: TopicSpec(Kind.ADVICE, Direction.EDGE_TO_CENTRAL, 1, False, 32 * 1024),
    }
)
"""QoS, retain flag, direction and size limit of every kind. The LWT is a ``state`` message."""

WILL_KIND: Final = Kind.STATE


class InvalidMessage(RemoteProtocolError):
    """A peer published a topic or payload we cannot accept.

    ``reason`` is a :class:`Reason`; ``site_id`` and ``kind`` are filled when the
    topic was valid, so the central can count bad payloads per site and reason.
    """

    def __init__(
        self,
        reason: Reason,
        detail: str,
        *,
        site_id: str | None = None,
        kind: Kind | None = None,
    ) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.site_id = site_id
        self.kind = kind


class InvalidTopic(InvalidMessage):
    """The topic itself is not a valid onedoor v1 topic."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.TOPIC, detail)


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic. ``command`` is set only for :attr:`Kind.CMD`."""

    site_id: str
    kind: Kind
    command: str | None = None

    def __str__(self) -> str:
        return build_topic(self.site_id, self.kind, self.command)

    @property
    def spec(self) -> TopicSpec:
        return TOPICS[self.kind]


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscription filter and the QoS to request for it."""

    filter: str
    qos: int


def is_valid_site_id(site_id: str) -> bool:
    return _SITE_ID_RE.fullmatch(site_id) is not None


def check_site_id(site_id: str) -> str:
    """Return ``site_id`` or raise :class:`LocalProtocolError` (use for our own config)."""
    if not isinstance(site_id, str) or not is_valid_site_id(site_id):
        raise LocalProtocolError(f"invalid site id {site_id!r}: expected {SITE_ID_PATTERN}")
    return site_id


def build_topic(site_id: str, kind: Kind | str, command: str | None = None) -> str:
    """Build ``onedoor/v1/{site_id}/{kind}`` (``.../cmd/{command}`` for commands).

    Raises :class:`LocalProtocolError` for a bad site id, kind or command name.
    """
    check_site_id(site_id)
    try:
        kind = Kind(kind)
    except ValueError:
        raise LocalProtocolError(f"unknown topic kind {kind!r}") from None
    if kind is Kind.CMD:
        if command not in COMMAND_NAMES:
            raise LocalProtocolError(f"unknown command name {command!r}")
        return f"{ROOT}/{site_id}/cmd/{command}"
    if command is not None:
        raise LocalProtocolError(f"only cmd topics take a command name, not {kind.value}")
    return f"{ROOT}/{site_id}/{kind.value}"


def state_topic(site_id: str) -> str:
    return build_topic(site_id, Kind.STATE)


def event_topic(site_id: str) -> str:
    return build_topic(site_id, Kind.EVENT)


def telemetry_topic(site_id: str) -> str:
    return build_topic(site_id, Kind.TELEMETRY)


def ack_topic(site_id: str) -> str:
    return build_topic(site_id, Kind.ACK)


def cmd_topic(site_id: str, command: str) -> str:
    return build_topic(site_id, Kind.CMD, command)


def cmd_result_topic(site_id: str) -> str:
    return build_topic(site_id, Kind.CMD_RESULT)


def lease_topic(site_id: str) -> str:
    return build_topic(site_id, Kind.LEASE)


def restore_topic(site_id: str) -> str:
    return build_topic(site_id, Kind.RESTORE)


def diag_topic(site_id: str) -> str:
    return build_topic(site_id, Kind.DIAG)


def progress_topic(site_id: str) -> str:
    return build_topic(site_id, Kind.PROGRESS)


def advice_topic(site_id: str) -> str:
    return build_topic(site_id, Kind.ADVICE)


_PREFIX: Final = ROOT + "/"


def parse_topic(topic: str) -> Topic:
    """Parse a received topic; raise :class:`InvalidTopic` (reason ``topic``) if it is not ours.

    Rejects wildcards, a wrong root or version, a bad site id, an unknown kind
    or command name, and extra levels.
    """
    if not isinstance(topic, str):
        raise InvalidTopic(f"topic must be str, not {type(topic).__name__}")
    if len(topic) > MAX_TOPIC_CHARS:
        raise InvalidTopic(f"topic longer than {MAX_TOPIC_CHARS} chars")
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise InvalidTopic(f"wildcard or NUL in topic {topic!r}")
    if not topic.startswith(_PREFIX):
        raise InvalidTopic(f"topic {topic!r} is not under {ROOT}/")
    levels = topic[len(_PREFIX) :].split("/")
    site_id = levels[0]
    if not is_valid_site_id(site_id):
        raise InvalidTopic(f"invalid site id {site_id!r} in topic")
    rest = levels[1:]
    if len(rest) == 2 and rest[0] == Kind.CMD.value:
        if rest[1] not in COMMAND_NAMES:
            raise InvalidTopic(f"unknown command {rest[1]!r}")
        return Topic(site_id, Kind.CMD, rest[1])
    if len(rest) == 1 and rest[0] != Kind.CMD.value:
        try:
            return Topic(site_id, Kind(rest[0]))
        except ValueError:
            pass
    raise InvalidTopic(f"unknown topic kind {'/'.join(rest)!r}")


def edge_subscriptions(site_id: str) -> tuple[Subscription, ...]:
    """What an edge subscribes to: its own ``ack``, ``cmd/+``, ``lease`` and ``restore``."""
    check_site_id(site_id)
    return (
        Subscription(f"{ROOT}/{site_id}/{Kind.ACK.value}", TOPICS[Kind.ACK].qos),
        Subscription(f"{ROOT}/{site_id}/{Kind.CMD.value}/+", TOPICS[Kind.CMD].qos),
        Subscription(f"{ROOT}/{site_id}/{Kind.LEASE.value}", TOPICS[Kind.LEASE].qos),
        Subscription(f"{ROOT}/{site_id}/{Kind.RESTORE.value}", TOPICS[Kind.RESTORE].qos),
    )


def central_subscriptions(
    group: str | None = "onedoor-central",
) -> tuple[Subscription, ...]:
    """What the central subscribes to: every edge->central kind of every site.

    With a ``group`` the filters of the kinds replicas split (``TopicSpec.shared``) are
    MQTT 5 shared subscriptions ``$share/{group}/onedoor/v1/+/{kind}``; the others
    (``state``, ``progress``: every replica needs them, retained ones included, which
    brokers do not send to shared subscriptions) stay plain ``onedoor/v1/+/{kind}``.
    ``group=None`` gives plain filters only (a single node).
    """
    if group is not None and _GROUP_RE.fullmatch(group) is None:
        raise LocalProtocolError(f"invalid shared-subscription group {group!r}")
    prefix = "" if group is None else f"$share/{group}/"
    return tuple(
        Subscription(f"{prefix if spec.shared else ''}{ROOT}/+/{spec.kind.value}", spec.qos)
        for spec in TOPICS.values()
        if spec.direction is Direction.EDGE_TO_CENTRAL
    )


__all__ = [
    "COMMAND_NAMES",
    "MAX_TOPIC_CHARS",
    "ROOT",
    "SITE_ID_PATTERN",
    "TOPICS",
    "WILL_KIND",
    "Direction",
    "InvalidMessage",
    "InvalidTopic",
    "Kind",
    "Reason",
    "Subscription",
    "Topic",
    "TopicSpec",
    "ack_topic",
    "advice_topic",
    "build_topic",
    "central_subscriptions",
    "check_site_id",
    "cmd_result_topic",
    "cmd_topic",
    "diag_topic",
    "edge_subscriptions",
    "event_topic",
    "is_valid_site_id",
    "lease_topic",
    "parse_topic",
    "progress_topic",
    "restore_topic",
    "state_topic",
    "telemetry_topic",
]

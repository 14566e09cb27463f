"""MQTT topics of the v1 contract: building, parsing, rejecting injection, subscriptions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocols.errors import LocalProtocolError, RemoteProtocolError
from firmware_protocols.mqtt_topics import (
    COMMAND_NAMES,
    MAX_TOPIC_CHARS,
    SITE_ID_PATTERN,
    TOPICS,
    WILL_KIND,
    Direction,
    InvalidMessage,
    InvalidTopic,
    Kind,
    Reason,
    Subscription,
    Topic,
    ack_topic,
    advice_topic,
    build_topic,
    central_subscriptions,
    check_site_id,
    cmd_result_topic,
    cmd_topic,
    diag_topic,
    edge_subscriptions,
    event_topic,
    is_valid_site_id,
    lease_topic,
    parse_topic,
    restore_topic,
    state_topic,
    telemetry_topic,
)

# One table feeds both directions (h11 style): parsed topic <-> wire string.
TOPIC_TABLE: list[tuple[Topic, str]] = [
    (Topic("zs-sanxiang-01", Kind.STATE), "onedoor/v1/zs-sanxiang-01/state"),
    (Topic("zs-sanxiang-01", Kind.EVENT), "onedoor/v1/zs-sanxiang-01/event"),
    (Topic("city_hall", Kind.TELEMETRY), "onedoor/v1/city_hall/telemetry"),
    (Topic("v277", Kind.ACK), "onedoor/v1/v277/ack"),
    (Topic("v277", Kind.CMD, "announce"), "onedoor/v1/v277/cmd/announce"),
    (Topic("v277", Kind.CMD, "reprint"), "onedoor/v1/v277/cmd/reprint"),
    (Topic("v277", Kind.CMD, "screen_notice"), "onedoor/v1/v277/cmd/screen_notice"),
    (Topic("v277", Kind.CMD, "reload_config"), "onedoor/v1/v277/cmd/reload_config"),
    (Topic("v277", Kind.CMD, "diagnostics"), "onedoor/v1/v277/cmd/diagnostics"),
    (Topic("v277", Kind.CMD_RESULT), "onedoor/v1/v277/cmd_result"),
    (Topic("v277", Kind.LEASE), "onedoor/v1/v277/lease"),
    (Topic("v277", Kind.RESTORE), "onedoor/v1/v277/restore"),
    (Topic("v277", Kind.DIAG), "onedoor/v1/v277/diag"),
    (Topic("city_hall", Kind.ADVICE), "onedoor/v1/city_hall/advice"),
]


@pytest.mark.parametrize(("topic", "wire"), TOPIC_TABLE)
def test_build_matches_table(topic: Topic, wire: str) -> None:
    assert build_topic(topic.site_id, topic.kind, topic.command) == wire
    assert str(topic) == wire


@pytest.mark.parametrize(("topic", "wire"), TOPIC_TABLE)
def test_parse_matches_table(topic: Topic, wire: str) -> None:
    assert parse_topic(wire) == topic


def test_helpers_build_the_same_topics() -> None:
    assert state_topic("s1") == "onedoor/v1/s1/state"
    assert event_topic("s1") == "onedoor/v1/s1/event"
    assert telemetry_topic("s1") == "onedoor/v1/s1/telemetry"
    assert ack_topic("s1") == "onedoor/v1/s1/ack"
    assert cmd_topic("s1", "reprint") == "onedoor/v1/s1/cmd/reprint"
    assert cmd_result_topic("s1") == "onedoor/v1/s1/cmd_result"
    assert lease_topic("s1") == "onedoor/v1/s1/lease"
    assert restore_topic("s1") == "onedoor/v1/s1/restore"
    assert diag_topic("s1") == "onedoor/v1/s1/diag"
    assert advice_topic("s1") == "onedoor/v1/s1/advice"


def test_delivery_table_is_the_contract() -> None:
    rules = {k: (s.direction, s.qos, s.retain, s.shared) for k, s in TOPICS.items()}
    assert rules == {
        Kind.STATE: (Direction.EDGE_TO_CENTRAL, 1, True, False),
        Kind.EVENT: (Direction.EDGE_TO_CENTRAL, 1, False, True),
        Kind.TELEMETRY: (Direction.EDGE_TO_CENTRAL, 0, False, True),
        Kind.ACK: (Direction.CENTRAL_TO_EDGE, 1, False, True),
        Kind.CMD: (Direction.CENTRAL_TO_EDGE, 1, False, True),
        Kind.CMD_RESULT: (Direction.EDGE_TO_CENTRAL, 1, False, True),
        Kind.LEASE: (Direction.CENTRAL_TO_EDGE, 1, True, True),
        Kind.RESTORE: (Direction.CENTRAL_TO_EDGE, 1, False, True),
        Kind.DIAG: (Direction.EDGE_TO_CENTRAL, 1, False, True),
        Kind.PROGRESS: (Direction.EDGE_TO_CENTRAL, 0, True, False),
        Kind.ADVICE: (Direction.EDGE_TO_CENTRAL, 1, False, True),
    }
    assert WILL_KIND is Kind.STATE
    assert all(spec.kind is kind for kind, spec in TOPICS.items())
    assert Topic("s", Kind.ACK).spec is TOPICS[Kind.ACK]


BAD_TOPICS = [
    "",
    "onedoor/v1",
    "onedoor/v1/",
    "onedoor/v2/s1/state",
    "Onedoor/v1/s1/state",
    "/onedoor/v1/s1/state",
    "onedoor/v1/+/state",
    "onedoor/v1/#",
    "onedoor/v1/s1/#",
    "onedoor/v1/s1/+",
    "onedoor/v1/s+1/state",
    "onedoor/v1/S1/state",  # upper case is not a site id
    "onedoor/v1/-s1/state",
    "onedoor/v1/s1/../state",
    "onedoor/v1//state",
    "onedoor/v1/s1",
    "onedoor/v1/s1/",
    "onedoor/v1/s1/state/",
    "onedoor/v1/s1/state/extra",
    "onedoor/v1/s1/states",
    "onedoor/v1/s1/cmd",
    "onedoor/v1/s1/cmd/",
    "onedoor/v1/s1/cmd/format_disk",
    "onedoor/v1/s1/cmd/announce/x",
    "onedoor/v1/s1/event\x00",
    "onedoor/v1/站点/state",
    "$share/onedoor-central/onedoor/v1/s1/state",
    "onedoor/v1/" + "a" * 65 + "/state",
    "onedoor/v1/s1/" + "x" * MAX_TOPIC_CHARS,
]


@pytest.mark.parametrize("topic", BAD_TOPICS)
def test_parse_rejects_with_topic_reason(topic: str) -> None:
    with pytest.raises(InvalidTopic) as info:
        parse_topic(topic)
    assert info.value.reason is Reason.TOPIC
    assert info.value.site_id is None
    assert isinstance(info.value, InvalidMessage)
    assert isinstance(info.value, RemoteProtocolError)
    assert isinstance(info.value, ValueError)


def test_parse_rejects_non_str() -> None:
    with pytest.raises(InvalidTopic):
        parse_topic(b"onedoor/v1/s1/state")  # type: ignore[arg-type]


BAD_SITE_IDS = ["", "+", "#", "a/b", "a+", "a#", "A1", "-a", "_a", "a b", "a\n", "站", "a" * 65]


@pytest.mark.parametrize("site_id", BAD_SITE_IDS)
def test_build_refuses_injected_site_ids(site_id: str) -> None:
    assert not is_valid_site_id(site_id)
    with pytest.raises(LocalProtocolError):
        check_site_id(site_id)
    with pytest.raises(LocalProtocolError):
        state_topic(site_id)
    with pytest.raises(LocalProtocolError):
        edge_subscriptions(site_id)


@pytest.mark.parametrize(
    ("kind", "command"),
    [
        ("nope", None),
        (Kind.CMD, None),
        (Kind.CMD, "format_disk"),
        (Kind.CMD, "announce/x"),
        (Kind.STATE, "announce"),
    ],
)
def test_build_refuses_bad_kind_or_command(kind: str, command: str | None) -> None:
    with pytest.raises(LocalProtocolError):
        build_topic("s1", kind, command)


def test_edge_subscriptions() -> None:
    assert edge_subscriptions("v001") == (
        Subscription("onedoor/v1/v001/ack", 1),
        Subscription("onedoor/v1/v001/cmd/+", 1),
        Subscription("onedoor/v1/v001/lease", 1),
        Subscription("onedoor/v1/v001/restore", 1),
    )


def test_central_subscriptions_shared_and_plain() -> None:
    # Replicas split events, telemetry and results; each needs every state and progress.
    shared = central_subscriptions()
    assert [s.filter for s in shared] == [
        "onedoor/v1/+/state",
        "$share/onedoor-central/onedoor/v1/+/event",
        "$share/onedoor-central/onedoor/v1/+/telemetry",
        "$share/onedoor-central/onedoor/v1/+/cmd_result",
        "$share/onedoor-central/onedoor/v1/+/diag",
        "onedoor/v1/+/progress",
        "$share/onedoor-central/onedoor/v1/+/advice",
    ]
    assert [s.qos for s in shared] == [1, 1, 0, 1, 1, 0, 1]
    plain = central_subscriptions(None)
    assert [s.filter for s in plain] == [s.filter.removeprefix("$share/onedoor-central/")
                                         for s in shared]
    for group in ["", "a/b", "a+", "#", "x" * 65]:
        with pytest.raises(LocalProtocolError):
            central_subscriptions(group)


site_ids = st.from_regex(rf"\A{SITE_ID_PATTERN}\Z", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(
    site_id=site_ids,
    kind=st.sampled_from(list(Kind)),
    command=st.sampled_from(COMMAND_NAMES),
)
def test_round_trip(site_id: str, kind: Kind, command: str) -> None:
    cmd = command if kind is Kind.CMD else None
    wire = build_topic(site_id, kind, cmd)
    assert parse_topic(wire) == Topic(site_id, kind, cmd)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parse_arbitrary_text_only_raises_invalid_topic(text: str) -> None:
    try:
        topic = parse_topic(text)
    except InvalidTopic:
        return
    assert str(topic) == text


@settings(max_examples=200, deadline=None)
@given(site_id=site_ids, junk=st.sampled_from(["+", "#", "/", "\x00", "/+", "/#"]))
def test_wildcards_anywhere_in_site_id_are_rejected(site_id: str, junk: str) -> None:
    position = len(site_id) // 2
    injected = site_id[:position] + junk + site_id[position:]
    with pytest.raises(InvalidTopic):
        parse_topic(f"onedoor/v1/{injected}/state")
    with pytest.raises(LocalProtocolError):
        state_topic(injected)

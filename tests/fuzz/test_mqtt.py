"""Fuzz the MQTT contract's receive path: ``mqtt_messages.decode_publish(topic, payload)``.

Property: any topic and any payload either decode to a message that encodes
back to an equal message, or raise :class:`InvalidMessage` (a
``ProtocolError``) whose reason and site are filled the way the central
counts rejects. Nothing else escapes: no ``msgspec`` error, no ``ValueError``
from a ``__post_init__``, no ``RecursionError``.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocols import mqtt_messages as mm
from firmware_protocols.mqtt_topics import COMMAND_NAMES, InvalidMessage, Kind, Reason
from tests.fuzz import strategies as fs
from tests.fuzz.harness import fuzz_settings, golden_mqtt, known_findings_rejected, test_timeout

pytestmark = pytest.mark.timeout(test_timeout())

GOLDEN = golden_mqtt()
_LEVELS = ["onedoor", "v1", "v2", "zs-sanxiang-01", "ZS", "", "+", "#", "cmd", "\x00",
           *[k.value for k in Kind], *COMMAND_NAMES]  # fmt: skip

topics = st.one_of(
    st.sampled_from([topic for topic, _ in GOLDEN]),
    st.lists(st.sampled_from(_LEVELS), min_size=1, max_size=6).map("/".join),
    st.text(max_size=300),
)


@st.composite
def publishes(draw: st.DrawFn) -> tuple[str, bytes]:
    topic, payload = draw(st.sampled_from(GOLDEN))
    how = draw(st.sampled_from(["json", "bytes", "raw", "topic", "deep"]))
    if how == "json":
        doc = draw(fs.mutated_json(json.loads(payload)))
        payload = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    elif how == "bytes":
        payload = draw(fs.mutated(st.just(payload)))
    elif how == "raw":
        payload = draw(st.binary(max_size=400))
    elif how == "topic":
        topic = draw(topics)
    else:  # nesting far past any schema: the decoder must refuse, not recurse to death
        depth = draw(st.integers(100, 20_000))
        payload = b'{"v":1,"body":' + b"[" * depth + b"]" * depth + b"}"
    return topic, payload


def _check(topic: str, payload: bytes) -> None:
    try:
        with known_findings_rejected():  # F1, pinned in test_regressions.py
            incoming = mm.decode_publish(topic, payload)
    except InvalidMessage as exc:
        rejected = exc
    else:
        again = mm.decode(incoming.kind, mm.encode(incoming.message), site_id=incoming.site_id)
        assert again == incoming.message
        return
    # The central counts bad payloads per site and kind; only a bad topic has neither.
    has_site = rejected.site_id is not None and rejected.kind is not None
    assert has_site == (rejected.reason is not Reason.TOPIC), rejected


@fuzz_settings()
@given(publish=publishes())
def test_decode_publish_raises_only_invalid_message(publish: tuple[str, bytes]) -> None:
    _check(*publish)


@fuzz_settings(0.5)
@given(topic=topics, payload=st.binary(max_size=200))
def test_decode_publish_of_random_topics_and_bytes(topic: str, payload: bytes) -> None:
    _check(topic, payload)


def test_golden_publishes_decode() -> None:
    """The seeds themselves are valid, so the mutations start from real messages."""
    for topic, payload in GOLDEN:
        mm.decode_publish(topic, payload)

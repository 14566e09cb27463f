"""The vendor RS485 caller/rating-pad frame: golden frames, round trips, resync, garbage."""

from __future__ import annotations

import importlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocols import vendor_frame as vf
from firmware_protocols.errors import (
    ChecksumError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from firmware_protocols.terminal_events import (
    Key,
    KeyPressed,
    RatingPressed,
    ReasonPressed,
    RequestRating,
    ShowText,
)

# One table feeds the encode and the decode test (h11 style). The same hex is in
# docs/PROTOCOLS.md (section 4).
GOLDEN: list[tuple[vf.VendorEvent, str]] = [
    (vf.Poll(3, 0), "ff 68 03 03 68 03 01 00 04 16"),
    (vf.Poll(3, 7), "ff 68 03 03 68 03 01 07 0b 16"),
    (vf.Idle(3, 0), "ff 68 03 03 68 03 80 00 83 16"),
    (vf.Idle(5, vf.STATUS_RATING_PENDING), "ff 68 03 03 68 05 80 01 86 16"),
    (KeyPressed(3, Key.NEXT, 1), "ff 68 03 03 68 03 81 01 85 16"),
    (KeyPressed(3, Key.NO_SHOW, 255), "ff 68 03 03 68 03 84 ff 86 16"),
    (KeyPressed(3, Key.SIGN_IN, 9), "ff 68 03 03 68 03 88 09 94 16"),
    (RatingPressed(5, 4, 2), "ff 68 03 03 68 05 a4 02 ab 16"),
    (ReasonPressed(5, 2, 3), "ff 68 03 03 68 05 b2 03 ba 16"),
    (KeyPressed(3, Key.CASE, 4), "ff 68 03 03 68 03 8c 04 93 16"),
    (vf.CallDisplay(3, "A012", 5), "ff 68 07 07 68 03 02 05 41 30 31 32 de 16"),
    (vf.RecallDisplay(3, "A012"), "ff 68 06 06 68 03 03 41 30 31 32 da 16"),
    (RequestRating(5, 30), "ff 68 03 03 68 05 04 1e 27 16"),
    (
        ShowText(3, "请A012号到3号窗口"),
        "ff 68 13 13 68 03 05 c7 eb 41 30 31 32 ba c5 b5 bd 33 ba c5 b4 b0 bf da 2e 16",
    ),
    (vf.Ack(3, vf.Function.LED_TEXT), "ff 68 03 03 68 03 c0 05 c8 16"),
    (vf.Ack(5, vf.Function.RATING_REQUEST), "ff 68 03 03 68 05 c0 04 c9 16"),
    (vf.Poll(3, 1), "ff 68 03 03 68 03 01 01 05 16"),
]


def _decode_all(data: bytes, chunk: int | None = None) -> list[vf.VendorEvent | Exception]:
    """Feed ``data`` (in chunks) and collect every event and every codec error."""
    decoder = vf.VendorDecoder()
    out: list[vf.VendorEvent | Exception] = []
    size = chunk or max(len(data), 1)
    for offset in range(0, len(data), size):
        decoder.receive_data(data[offset : offset + size])
        for _ in range(len(data) + 2):  # bounded: each call consumes or returns NEED_DATA
            try:
                event = decoder.next_event()
            except ProtocolError as exc:
                out.append(exc)
                continue
            if event is vf.NEED_DATA:
                break
            out.append(event)
        else:
            pytest.fail("decoder made no progress")
    return out


@pytest.mark.parametrize(("event", "wire"), GOLDEN, ids=lambda v: type(v).__name__)
def test_encode_is_golden(event: vf.VendorEvent, wire: str) -> None:
    assert vf.encode(event) == bytes.fromhex(wire)


@pytest.mark.parametrize(("event", "wire"), GOLDEN, ids=lambda v: type(v).__name__)
def test_decode_is_golden(event: vf.VendorEvent, wire: str) -> None:
    assert _decode_all(bytes.fromhex(wire)) == [event]
    assert _decode_all(bytes.fromhex(wire), chunk=1) == [event]


def test_stream_of_all_golden_frames_with_garbage_between() -> None:
    noise = bytes.fromhex("00 68 68 16 ff 68 05 04 68")  # false starts, bad header
    stream = noise.join(bytes.fromhex(wire) for _, wire in GOLDEN) + noise
    assert _decode_all(stream, chunk=3) == [event for event, _ in GOLDEN]


def test_function_codes_name_each_key_and_rating() -> None:
    assert vf.key_function(Key.NEXT) == 0x81
    assert vf.key_function(Key.FINISH) == 0x87
    assert vf.key_function(Key.TRANSFER) == 0x83
    assert vf.key_function(Key.DIGIT_9) == 0x99
    assert vf.rating_function(5) == 0xA5
    assert vf.rating_function(1) == 0xA1


def test_checksum_error_is_reported_and_stream_continues() -> None:
    bad = bytearray.fromhex("ff 68 03 03 68 03 81 01 85 16")
    bad[-2] ^= 0x01
    good = bytes.fromhex("ff 68 03 03 68 05 a4 02 ab 16")
    out = _decode_all(bytes(bad) + good)
    assert isinstance(out[0], ChecksumError)
    assert (out[0].expected, out[0].actual) == (0x85, 0x84)
    assert out[1:] == [RatingPressed(5, 4, 2)]


def test_header_promising_too_much_is_abandoned_for_a_later_frame() -> None:
    truncated = bytes.fromhex("ff 68 40 40 68 03 05 c7")  # a 64-byte LED frame, cut short
    good = bytes.fromhex("ff 68 03 03 68 03 81 01 85 16")
    assert _decode_all(truncated + good) == [KeyPressed(3, Key.NEXT, 1)]


def test_need_data_on_partial_frame() -> None:
    decoder = vf.VendorDecoder()
    wire = bytes.fromhex("ff 68 03 03 68 03 81 01 85 16")
    decoder.receive_data(wire[:-1])
    assert decoder.next_event() is vf.NEED_DATA
    decoder.receive_data(wire[-1:])
    assert decoder.next_event() == KeyPressed(3, Key.NEXT, 1)
    assert decoder.discarded == 1  # the FF preamble
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("03 7f 00", "unknown function"),
        ("03 81", "carries 1 data bytes"),
        ("03 81 00", "sequence 0"),
        ("03 9a 01", "unknown key code"),
        ("03 a6 01", "unknown function"),
        ("00 01 00", "address 0"),
        ("f8 01 00", "address 248"),
        ("03 05 c7", "not valid GB2312"),
        ("03 02", "without data"),
        ("03 03 41 09", "printable ASCII"),
        ("03 c0 77", "ACK of unknown function"),
    ],
)
def test_well_formed_but_meaningless_frames_are_remote_errors(body: str, message: str) -> None:
    raw = bytes.fromhex(body)
    out = _decode_all(vf.encode_frame(raw[0], raw[1], raw[2:]))
    assert len(out) == 1
    assert isinstance(out[0], RemoteProtocolError)
    assert message in str(out[0])


@pytest.mark.parametrize(
    "event",
    [
        vf.Poll(0, 0),
        vf.Poll(3, 256),
        KeyPressed(3, Key.NEXT, 0),
        RatingPressed(3, 6, 1),
        ReasonPressed(3, 16, 1),
        ReasonPressed(3, 0, 1),
        vf.CallDisplay(3, "", 1),
        vf.CallDisplay(3, "A0123456789", 1),
        vf.RecallDisplay(3, "号"),
        ShowText(3, "𠀀"),
        ShowText(3, "窗" * 81),
        RequestRating(3, 300),
    ],
)
def test_bad_local_input_is_refused_clearly(event: vf.VendorEvent) -> None:
    with pytest.raises(LocalProtocolError):
        vf.encode(event)


# --- round trips -------------------------------------------------------------------------------

ADDRESS = st.integers(1, 247)
SEQUENCE = st.integers(1, 255)
TICKET = st.text(alphabet="ABCDEFGH0123456789-", min_size=1, max_size=vf.MAX_TICKET)
TEXT = st.text(
    alphabet=st.sampled_from("请号到窗口暂停服务办结评价满意ABC 0123456789"), max_size=80
).filter(lambda text: len(text.encode("gb2312")) <= vf.MAX_DATA)
EVENTS = st.one_of(
    st.builds(vf.Poll, ADDRESS, st.integers(0, 255)),
    st.builds(vf.Idle, ADDRESS, st.integers(0, 255)),
    st.builds(KeyPressed, ADDRESS, st.sampled_from(list(Key)), SEQUENCE),
    st.builds(RatingPressed, ADDRESS, st.integers(1, 5), SEQUENCE),
    st.builds(ReasonPressed, ADDRESS, st.integers(1, 15), SEQUENCE),
    st.builds(vf.CallDisplay, ADDRESS, TICKET, st.integers(0, 255)),
    st.builds(vf.RecallDisplay, ADDRESS, TICKET),
    st.builds(RequestRating, ADDRESS, st.integers(0, 255)),
    st.builds(ShowText, ADDRESS, TEXT),
    st.builds(vf.Ack, ADDRESS, st.sampled_from(list(vf.Function))),
)


@settings(max_examples=200, deadline=None)
@given(events=st.lists(EVENTS, max_size=8), chunk=st.integers(1, 40))
def test_round_trip_any_stream(events: list[vf.VendorEvent], chunk: int) -> None:
    stream = b"".join(vf.encode(event) for event in events)
    assert _decode_all(stream, chunk=chunk) == events


@settings(max_examples=200, deadline=None)
@given(event=EVENTS, after=EVENTS, bit=st.integers(0, 10_000))
def test_a_flipped_bit_costs_at_most_that_frame(
    event: vf.VendorEvent, after: vf.VendorEvent, bit: int
) -> None:
    damaged = bytearray(vf.encode(event))
    bit %= 8 * len(damaged)
    damaged[bit // 8] ^= 1 << (bit % 8)
    out = _decode_all(bytes(damaged) + vf.encode(after))
    assert out[-1] == after
    assert all(isinstance(item, ProtocolError) or item == event for item in out[:-1])


# --- garbage: only codec errors, never a hang --------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), chunk=st.integers(1, 64))
def test_random_bytes_raise_only_protocol_errors(data: bytes, chunk: int) -> None:
    _decode_all(data, chunk=chunk)  # _decode_all lets only ProtocolError through


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(EVENTS, min_size=1, max_size=5),
    cut=st.integers(0, 10_000),
    noise=st.binary(max_size=30),
)
def test_truncated_frames_and_noise(events: list[vf.VendorEvent], cut: int, noise: bytes) -> None:
    stream = b"".join(vf.encode(event) for event in events)
    cut %= len(stream)
    out = _decode_all(stream[:cut] + noise + vf.encode(events[-1]))  # only codec errors
    if not noise:  # a cut frame never hides the complete one after it
        assert out[-1] == events[-1]


def test_many_random_bit_flips_in_a_long_stream() -> None:
    rng = random.Random(7)
    stream = bytearray(b"".join(bytes.fromhex(wire) for _, wire in GOLDEN) * 20)
    for _ in range(40):
        stream[rng.randrange(len(stream))] ^= 1 << rng.randrange(8)
    out = _decode_all(bytes(stream), chunk=17)
    decoded = [item for item in out if not isinstance(item, Exception)]
    assert len(decoded) >= len(GOLDEN) * 20 - 2 * 40  # a flip costs at most two frames


# --- the report queue: terminal and host ends --------------------------------------------------


def test_poll_answers_oldest_report_and_ack_drops_it() -> None:
    terminal = vf.TerminalReports(3)
    poller = vf.VendorPoller()
    assert terminal.press(Key.NEXT) == 1
    assert terminal.rate(5) == 2
    first = terminal.answer_poll(vf.Poll(3, 0))
    assert first == KeyPressed(3, Key.NEXT, 1)
    assert terminal.answer_poll(vf.Poll(3, 0)) == first  # retried poll: same report
    poller.taken(first)
    assert poller.poll(3) == bytes.fromhex("ff 68 03 03 68 03 01 01 05 16")
    assert terminal.answer_poll(vf.Poll(3, 1)) == RatingPressed(3, 5, 2)
    assert terminal.answer_poll(vf.Poll(3, 1)) == RatingPressed(3, 5, 2)  # ack 1 already applied
    assert terminal.answer_poll(vf.Poll(3, 2), status=1) == vf.Idle(3, 1)


def test_stale_ack_after_power_cycle_drops_nothing() -> None:
    terminal = vf.TerminalReports(3)
    terminal.press(Key.SIGN_IN)
    # The host last took sequence 1 from the terminal's previous life.
    assert terminal.answer_poll(vf.Poll(3, 1)) == KeyPressed(3, Key.SIGN_IN, 1)


def test_full_report_queue_refuses() -> None:
    terminal = vf.TerminalReports(3)
    results = [terminal.press(Key.RECALL) for _ in range(vf.REPORT_QUEUE_SIZE + 2)]
    assert results[-2:] == [None, None]
    assert terminal.refused == 2
    assert terminal.pending == vf.REPORT_QUEUE_SIZE


@settings(max_examples=150, deadline=None)
@given(
    script=st.lists(
        st.one_of(
            st.tuples(st.just("key"), st.sampled_from(list(Key))),
            st.tuples(st.just("rate"), st.integers(1, 5)),
            st.tuples(st.just("poll"), st.sampled_from(["ok", "poll lost", "answer lost"])),
        ),
        max_size=120,
    )
)
def test_lossy_bus_delivers_each_report_once_in_order(script: list[tuple[str, object]]) -> None:
    terminal = vf.TerminalReports(9)
    poller = vf.VendorPoller()
    latched: list[KeyPressed | RatingPressed] = []
    received: list[KeyPressed | RatingPressed] = []

    def poll(fate: str) -> vf.TerminalFrame | None:
        request = _decode_all(poller.poll(9))
        assert len(request) == 1
        assert isinstance(request[0], vf.Poll)
        if fate == "poll lost":
            return None
        answer = _decode_all(vf.encode(terminal.answer_poll(request[0])))
        if fate == "answer lost":
            return None
        assert len(answer) == 1
        frame = answer[0]
        if isinstance(frame, KeyPressed | RatingPressed):
            received.append(frame)
            poller.taken(frame)
        assert isinstance(frame, vf.Idle | KeyPressed | RatingPressed)
        return frame

    for action, value in script:
        if action == "poll":
            poll(str(value))
        elif action == "key":
            assert isinstance(value, Key)
            sequence = terminal.press(value)
            if sequence is not None:
                latched.append(KeyPressed(9, value, sequence))
        else:
            assert isinstance(value, int)
            sequence = terminal.rate(value)
            if sequence is not None:
                latched.append(RatingPressed(9, value, sequence))
    for _ in range(vf.REPORT_QUEUE_SIZE + 1):
        poll("ok")
    assert received == latched
    assert terminal.pending == 0


@pytest.mark.parametrize("module_name", ["terminal_events", "modbus_terminal", "vendor_frame"])
def test_public_names_are_exported_and_defined(module_name: str) -> None:
    """The edge daemon builds on these names: each one in ``__all__`` must exist."""
    module = importlib.import_module(f"firmware_protocols.{module_name}")
    for name in module.__all__:
        assert hasattr(module, name), name

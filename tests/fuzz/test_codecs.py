"""Fuzz every sans-IO decoder in firmware_protocols with hostile bytes (hypothesis).

Properties: only :class:`~firmware_protocols.errors.ProtocolError` subclasses
escape; a stream decoder takes a bounded number of ``next_event()`` calls per
input byte (:func:`tests.fuzz.harness.drain`); valid frames after garbage are
still decoded (resynchronisation). Budget: ``ONEDOOR_FUZZ_PROFILE`` (see
``tests/fuzz/harness.py``).
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from firmware_protocols import escpos, led
from firmware_protocols import modbus_terminal as mt
from firmware_protocols import vendor_frame as vf
from firmware_protocols.errors import ProtocolError, RemoteProtocolError
from firmware_protocols.gb2312 import decode_gb2312
from firmware_protocols.terminal_events import check_rating, key_from_code
from tests.fuzz import strategies as fs
from tests.fuzz.harness import (
    drain,
    escpos_garbage_is_closed,
    fuzz_settings,
    led_swallowing_frame,
    split,
    test_timeout,
    vendor_swallowing_frame,
)

pytestmark = pytest.mark.timeout(test_timeout())

# --------------------------------------------------------------------------- ESC/POS


@fuzz_settings()
@given(data=fs.escpos_stream, cuts=fs.CUTS, chinese=st.booleans())
def test_escpos_decoder_raises_only_protocol_errors(
    data: bytes, cuts: list[int], chinese: bool
) -> None:
    decoder = escpos.EscPosDecoder(chinese_mode_at_power_on=chinese)
    result = drain(decoder, escpos.NEED_DATA, split(data, cuts))
    assert all(isinstance(e, RemoteProtocolError) for e in result.errors)
    # What is still pending is bounded: one unfinished command (GS ( k: 65,540 bytes at
    # most) or one text line, never the whole stream.
    assert decoder.pending_bytes <= min(len(data), 5 + 0xFFFF + escpos.MAX_LINE_BYTES)


@fuzz_settings(0.5)
@given(data=fs.escpos_stream)
def test_escpos_decode_all_raises_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        escpos.decode_all(data)


@fuzz_settings(0.5)
@given(
    request=st.sampled_from(escpos.StatusRequest),
    reply=st.one_of(st.binary(max_size=3), st.integers(-300, 600)),
)
def test_escpos_status_reply_raises_only_remote_errors(request: int, reply: bytes | int) -> None:
    try:
        parsed = escpos.parse_status_reply(request, reply)
    except RemoteProtocolError:
        return
    assert escpos.encode_status_reply(parsed) == (
        bytes([reply]) if isinstance(reply, int) else reply
    ) or isinstance(parsed, escpos.PaperSensor)  # two sensor bits fold into one flag


@fuzz_settings(0.5)
@given(garbage=fs.escpos_stream, ticket=fs.escpos_tickets(), cuts=fs.CUTS)
def test_escpos_ticket_after_garbage_prints_exactly(
    garbage: bytes, ticket: bytes, cuts: list[int]
) -> None:
    assume(escpos_garbage_is_closed(garbage))
    expected = escpos.decode_all(ticket)
    result = drain(escpos.EscPosDecoder(), escpos.NEED_DATA, split(garbage + ticket, cuts))
    assert result.events[-len(expected) :] == expected


# --------------------------------------------------------------------------- LED screens


@fuzz_settings()
@given(data=fs.led_stream, cuts=fs.CUTS, idle=st.booleans())
def test_led_decoder_raises_only_protocol_errors(data: bytes, cuts: list[int], idle: bool) -> None:
    decoder = led.LedDecoder()
    result = drain(
        decoder, led.NEED_DATA, split(data, cuts), after=decoder.line_idle if idle else None
    )
    for error in result.errors:
        assert isinstance(error, RemoteProtocolError)
    if idle:  # after the line went quiet nothing may wait but a lone 0xAA
        assert decoder.pending_bytes == 0
    else:  # a frame waits for at most its own maximum size
        assert decoder.pending_bytes < 7 + led.MAX_PAYLOAD + 2


@fuzz_settings(0.5)
@given(data=fs.led_stream)
def test_led_decode_all_raises_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        led.decode_all(data)


@fuzz_settings()
@given(
    garbage=fs.led_stream,
    frames=st.lists(fs.led_events, min_size=1, max_size=4),
    cuts=fs.CUTS,
)
def test_led_frames_after_garbage_are_found(
    garbage: bytes, frames: list[led.LedEvent], cuts: list[int]
) -> None:
    wire = garbage + b"".join(led.encode(frame) for frame in frames)
    assume(not led_swallowing_frame(wire, len(garbage)))
    decoder = led.LedDecoder()
    result = drain(decoder, led.NEED_DATA, split(wire, cuts), after=decoder.line_idle)
    assert result.events[-len(frames) :] == frames
    assert decoder.pending_bytes == 0


# --------------------------------------------------------------------------- vendor frame


@fuzz_settings()
@given(data=fs.vendor_stream, cuts=fs.CUTS)
def test_vendor_decoder_raises_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    decoder = vf.VendorDecoder()
    result = drain(decoder, vf.NEED_DATA, split(data, cuts))
    for error in result.errors:
        assert isinstance(error, RemoteProtocolError)
    assert decoder.buffered < vf.MAX_FRAME  # a lying header is abandoned, never hoarded


@fuzz_settings(0.5)
@given(address=st.integers(0, 255), function=st.integers(0, 255), data=st.binary(max_size=170))
def test_vendor_decode_body_raises_only_remote_errors(
    address: int, function: int, data: bytes
) -> None:
    try:
        event = vf.decode_body(address, function, data)
    except RemoteProtocolError:
        return
    assert vf.encode(event)[5:-2] == bytes([address, function]) + data


@fuzz_settings()
@given(
    garbage=fs.vendor_stream,
    frames=st.lists(fs.vendor_events, min_size=1, max_size=4),
    cuts=fs.CUTS,
)
def test_vendor_frames_after_garbage_are_found(
    garbage: bytes, frames: list[vf.VendorEvent], cuts: list[int]
) -> None:
    wire = garbage + b"".join(vf.encode(frame) for frame in frames)
    assume(not vendor_swallowing_frame(wire, len(garbage)))
    result = drain(vf.VendorDecoder(), vf.NEED_DATA, split(wire, cuts))
    assert result.events[-len(frames) :] == frames


# --------------------------------------------------------------------------- Modbus terminal


@fuzz_settings()
@given(data=fs.modbus_response)
def test_modbus_response_raises_only_protocol_errors(data: bytes) -> None:
    """The way a driver cuts a response: ``response_size``, then ``decode_response``."""
    try:
        size = mt.response_size(data)
    except RemoteProtocolError:
        return
    for frame in (data, data[:size] if size is not None else data):
        try:
            response = mt.decode_response(frame)
        except RemoteProtocolError:
            continue
        assert response.slave == frame[0]


_CURSORS = st.none() | st.builds(
    mt.PollCursor, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)
)


@fuzz_settings()
@given(
    address=st.integers(1, 247),
    registers=st.one_of(
        st.lists(fs.register_values, min_size=16, max_size=16),
        st.lists(fs.register_values, max_size=20),
    ),
    cursor=_CURSORS,
)
def test_modbus_poll_block_raises_only_remote_errors(
    address: int, registers: list[int], cursor: mt.PollCursor | None
) -> None:
    try:
        result = mt.decode_poll_block(address, registers, cursor)
    except RemoteProtocolError:
        return
    assert len(result.events) <= mt.INPUT_QUEUE_SIZE + 1
    # The documented contract: the same block with the returned cursor is all old news.
    assert mt.decode_poll_block(address, registers, result.cursor).events == ()


@fuzz_settings(0.5)
@given(registers=st.lists(fs.register_values, max_size=40))
def test_modbus_led_text_raises_only_remote_errors(registers: list[int]) -> None:
    try:
        text = mt.decode_led_text(registers)
    except RemoteProtocolError:
        return
    assert len(text.encode("gb2312")) <= mt.LED_TEXT_MAX_BYTES


@fuzz_settings(0.5)
@given(address=st.integers(1, 247), sequence=st.integers(0, 0xFFFF), entry=st.integers(0, 0xFFFF))
def test_modbus_input_entry_raises_only_remote_errors(
    address: int, sequence: int, entry: int
) -> None:
    with contextlib.suppress(RemoteProtocolError):
        mt.decode_input(address, sequence, entry)


# --------------------------------------------------------------------------- terminal events


@fuzz_settings(0.5)
@given(code=st.integers(-1000, 1000), rating=st.integers(-10, 300), text=st.binary(max_size=80))
def test_terminal_event_checks_raise_only_remote_errors(
    code: int, rating: int, text: bytes
) -> None:
    for check in (
        lambda: key_from_code(code),
        lambda: check_rating(rating, RemoteProtocolError),
        lambda: decode_gb2312(text),
    ):
        with contextlib.suppress(RemoteProtocolError):
            check()

"""The LED-screen frame codec: golden bytes, round-trips, garbage, resynchronisation."""

from __future__ import annotations

import random
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocols import led
from firmware_protocols.crc import crc16_modbus
from firmware_protocols.errors import (
    ChecksumError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from firmware_protocols.gb2312 import encode_gb2312
from firmware_protocols.led import (
    BROADCAST,
    NEED_DATA,
    Ack,
    Clear,
    Colour,
    Effect,
    LedDecoder,
    LedEvent,
    LedFrameError,
    Nack,
    NackReason,
    Ping,
    SetBrightness,
    SetClock,
    ShowText,
)


def crc_bitwise(data: bytes) -> int:
    """CRC-16/MODBUS the slow way, to check the table-driven one and the fixtures."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


# (event, wire bytes). Hand-checked: AA 55, address, command, seq, length (big endian),
# payload, CRC-16/MODBUS of address..payload low byte first; GB2312 of 请=C7EB 到=B5BD
# 号=BAC5 窗=B4B0 口=BFDA. The CRCs are also recomputed bit by bit in test_fixture_crcs.
GOLDEN: list[tuple[LedEvent, str]] = [
    (Ping(1, 0), "aa 55 01 01 00 00 00 18 3c"),
    (Ack(1, 0), "aa 55 01 80 00 00 00 30 00"),
    (Ack(0x10, 0xFF), "aa 55 10 80 ff 00 00 fc 33"),
    (Nack(2, 9, NackReason.BAD_TEXT), "aa 55 02 81 09 00 01 04 3e 28"),
    (Clear(3, 4), "aa 55 03 11 04 00 01 ff bc cb"),
    (Clear(3, 5, area=2), "aa 55 03 11 05 00 01 02 7c b6"),
    (SetBrightness(BROADCAST, 6, 12), "aa 55 ff 12 06 00 01 0c ad 0a"),
    (
        SetClock(0x10, 7, datetime(2026, 11, 23, 9, 5, 7)),
        "aa 55 10 13 07 00 06 1a 0b 17 09 05 07 d3 51",
    ),
    (ShowText(1, 8, "A012"), "aa 55 01 10 08 00 09 00 00 01 00 00 41 30 31 32 34 16"),
    (
        ShowText(
            0x10, 0xFF, "请A012到3号窗口", area=1, line=2,
            colour=Colour.GREEN, effect=Effect.FLASH, speed=3,
        ),
        "aa 55 10 10 ff 00 14 01 02 02 03 03 c7 eb 41 30 31 32 b5 bd 33 ba c5 b4 b0 bf da af e9",
    ),
]  # fmt: skip


def drain(decoder: LedDecoder) -> tuple[list[LedEvent], list[ProtocolError]]:
    """Every event and every error the decoder yields before it needs data."""
    events: list[LedEvent] = []
    errors: list[ProtocolError] = []
    for _ in range(100_000):  # a hang would be a bug: bound it
        try:
            event = decoder.next_event()
        except ProtocolError as exc:
            errors.append(exc)
            continue
        if event is NEED_DATA:
            return events, errors
        events.append(event)
    raise AssertionError("decoder did not settle")


def test_crc_check_value() -> None:
    assert crc16_modbus(b"123456789") == 0x4B37 == crc_bitwise(b"123456789")


@pytest.mark.parametrize(("event", "wire"), GOLDEN)
def test_encode_golden(event: LedEvent, wire: str) -> None:
    assert led.encode(event) == bytes.fromhex(wire)


@pytest.mark.parametrize(("event", "wire"), GOLDEN)
def test_decode_golden(event: LedEvent, wire: str) -> None:
    assert led.decode_all(bytes.fromhex(wire)) == [event]


@pytest.mark.parametrize(("event", "wire"), GOLDEN)
def test_fixture_crcs(event: LedEvent, wire: str) -> None:
    frame = bytes.fromhex(wire)
    assert frame[:2] == led.SYNC
    assert int.from_bytes(frame[5:7], "big") == len(frame) - 9
    assert crc_bitwise(frame[2:-2]).to_bytes(2, "little") == frame[-2:]


def test_golden_stream_byte_by_byte() -> None:
    stream = b"".join(bytes.fromhex(wire) for _, wire in GOLDEN)
    decoder = LedDecoder()
    got: list[LedEvent] = []
    for byte in stream:
        decoder.receive_data(bytes([byte]))
        events, errors = drain(decoder)
        assert errors == []
        got += events
    assert got == [event for event, _ in GOLDEN]
    assert decoder.skipped_bytes == 0


def test_expects_reply_and_matching() -> None:
    request = ShowText(5, 42, "A001")
    assert led.expects_reply(request)
    assert not led.expects_reply(ShowText(BROADCAST, 42, "A001"))
    assert not led.expects_reply(Ack(5, 42))
    assert led.is_reply_to(Ack(5, 42), request)
    assert led.is_reply_to(Nack(5, 42, NackReason.BUSY), request)
    assert not led.is_reply_to(Ack(5, 41), request)
    assert not led.is_reply_to(Ack(6, 42), request)
    assert not led.is_reply_to(Ping(5, 42), request)
    assert led.next_seq(255) == 0
    assert led.next_seq(7) == 8


def test_set_clock_truncates_microseconds() -> None:
    event = led.set_clock(1, 0, datetime(2026, 1, 2, 3, 4, 5, 999_999))
    assert event.when == datetime(2026, 1, 2, 3, 4, 5)


# --- bad input on the encoding side ------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: ShowText(1, 0, "𠀀号"), "not in GB2312"),
        (lambda: ShowText(1, 0, "€5"), "not in GB2312"),
        (lambda: ShowText(1, 0, "A\nB"), "control character"),
        (lambda: ShowText(1, 0, "号" * 600), "longer than"),
        (lambda: ShowText(1, 0, "A", area=0xFF), "area"),
        (lambda: ShowText(1, 0, "A", speed=16), "speed"),
        (lambda: ShowText(256, 0, "A"), "address"),
        (lambda: ShowText(1, 256, "A"), "seq"),
        (lambda: SetBrightness(1, 0, 16), "brightness"),
        (lambda: SetClock(1, 0, datetime(1999, 12, 31)), "year"),
        (lambda: SetClock(1, 0, datetime(2026, 1, 1, 0, 0, 0, 5)), "whole seconds"),
        (lambda: Clear(1, -1, 0), "seq"),
        (lambda: led.encode_frame(1, 0x10, 0, b"x" * 1025), "exceeds"),
        (lambda: led.encode_frame(1, 0x100, 0), "command"),
    ],
)
def test_encoder_refuses(build: object, match: str) -> None:
    assert callable(build)
    with pytest.raises(LocalProtocolError, match=match):
        build()


def test_text_outside_gb2312_never_becomes_question_mark() -> None:
    with pytest.raises(LocalProtocolError, match="U\\+4E7D") as info:
        encode_gb2312("请乽号")  # 乽 U+4E7D is GBK, not GB2312
    assert "?" not in str(info.value).replace("'请乽号'", "")


# --- bad input on the decoding side ------------------------------------------------------------
def frame_error(address: int, command: int, seq: int, payload: bytes) -> LedFrameError:
    decoder = LedDecoder()
    decoder.receive_data(led.encode_frame(address, command, seq, payload))
    with pytest.raises(LedFrameError) as info:
        decoder.next_event()
    assert decoder.pending_bytes == 0
    return info.value


@pytest.mark.parametrize(
    ("command", "payload", "reason"),
    [
        (0x42, b"", NackReason.UNKNOWN_COMMAND),
        (led.Command.PING, b"\x00", NackReason.BAD_LENGTH),
        (led.Command.CLEAR, b"", NackReason.BAD_LENGTH),
        (led.Command.SET_CLOCK, b"\x1a\x0b\x17\x09\x05", NackReason.BAD_LENGTH),
        (led.Command.SHOW_TEXT, b"\x00\x00\x01", NackReason.BAD_LENGTH),
        (led.Command.BRIGHTNESS, b"\x10", NackReason.BAD_PARAMETER),
        (led.Command.SET_CLOCK, b"\x1a\x02\x1e\x09\x05\x07", NackReason.BAD_PARAMETER),  # 30 Feb
        (led.Command.SET_CLOCK, b"\x64\x01\x01\x00\x00\x00", NackReason.BAD_PARAMETER),
        (led.Command.SHOW_TEXT, b"\xff\x00\x01\x00\x00A", NackReason.BAD_PARAMETER),
        (led.Command.SHOW_TEXT, b"\x00\x00\x07\x00\x00A", NackReason.BAD_PARAMETER),
        (led.Command.SHOW_TEXT, b"\x00\x00\x01\x09\x00A", NackReason.BAD_PARAMETER),
        (led.Command.SHOW_TEXT, b"\x00\x00\x01\x00\x10A", NackReason.BAD_PARAMETER),
        (led.Command.SHOW_TEXT, b"\x00\x00\x01\x00\x00\xc7", NackReason.BAD_TEXT),
        (led.Command.SHOW_TEXT, b"\x00\x00\x01\x00\x00A\x0dB", NackReason.BAD_TEXT),
        (led.Command.NACK, b"\x77", NackReason.BAD_PARAMETER),
    ],
)
def test_frame_errors_carry_nack_reason(command: int, payload: bytes, reason: NackReason) -> None:
    error = frame_error(7, command, 33, payload)
    assert (error.address, error.command, error.seq, error.reason) == (7, command, 33, reason)


def test_bad_crc_is_reported_and_next_frame_survives() -> None:
    bad = bytearray(led.encode(ShowText(1, 1, "A001")))
    bad[-1] ^= 0x01
    good = led.encode(Ping(2, 2))
    decoder = LedDecoder()
    decoder.receive_data(bytes(bad) + good)
    with pytest.raises(ChecksumError) as info:
        decoder.next_event()
    assert info.value.actual != info.value.expected
    assert decoder.next_event() == Ping(2, 2)
    assert decoder.next_event() is NEED_DATA


def test_corrupt_length_does_not_swallow_next_frame() -> None:
    bad = bytearray(led.encode(Ping(1, 1)))
    bad[6] = 0x30  # claims 48 payload bytes: the next frames would be eaten as payload
    good = led.encode(ShowText(2, 2, "请等候"))  # 20 bytes
    decoder = LedDecoder()
    decoder.receive_data(bytes(bad) + good + good)
    assert drain(decoder) == ([], [])  # 49 bytes < 57: could still be one long frame
    decoder.line_idle()  # the bus went quiet: it was not
    events, errors = drain(decoder)
    assert events == [ShowText(2, 2, "请等候")] * 2
    assert len(errors) == 1
    assert "truncated" in str(errors[0])


def test_corrupt_length_with_traffic_after_is_a_crc_error() -> None:
    bad = bytearray(led.encode(Ping(1, 1)))
    bad[6] = 0x30
    good = led.encode(ShowText(2, 2, "请等候"))
    decoder = LedDecoder()
    decoder.receive_data(bytes(bad) + good * 3)
    events, errors = drain(decoder)
    assert events == [ShowText(2, 2, "请等候")] * 3
    assert len(errors) == 1
    assert isinstance(errors[0], ChecksumError)


def test_oversized_length_is_an_error_at_once() -> None:
    decoder = LedDecoder()
    decoder.receive_data(b"\xaa\x55\x01\x10\x00\x04\x01" + led.encode(Ping(3, 3)))
    with pytest.raises(RemoteProtocolError, match="above 1024"):
        decoder.next_event()
    assert decoder.next_event() == Ping(3, 3)


def test_truncated_frame_reported_when_line_goes_idle() -> None:
    frame = led.encode(ShowText(1, 1, "A001"))
    decoder = LedDecoder()
    decoder.receive_data(frame[:-3])
    assert decoder.next_event() is NEED_DATA
    decoder.line_idle()
    with pytest.raises(RemoteProtocolError, match="truncated"):
        decoder.next_event()
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(frame)  # new data ends the idle state
    assert decoder.next_event() == ShowText(1, 1, "A001")


def test_garbage_before_sync_is_skipped_and_counted() -> None:
    decoder = LedDecoder()
    decoder.receive_data(b"\x00\xaa\x13\x55\xaa" + led.encode(Ack(4, 4)))
    assert decoder.next_event() == Ack(4, 4)
    assert decoder.skipped_bytes == 5


def test_decode_all_refuses_leftovers() -> None:
    with pytest.raises(RemoteProtocolError, match="left over"):
        led.decode_all(led.encode(Ping(1, 1))[:-1])
    with pytest.raises(RemoteProtocolError, match="skipped"):
        led.decode_all(b"\x00" + led.encode(Ping(1, 1)))


# --- hypothesis --------------------------------------------------------------------------------
addresses = st.integers(0, 0xFF)
seqs = st.integers(0, 0xFF)
gb2312_chars = st.sampled_from(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz -:#"
    "请到号窗口办理综合受理中心暂停服务欢迎光临户籍社保公积金不动产老人优先等候人分钟，。：（）"
)
events: st.SearchStrategy[LedEvent] = st.one_of(
    st.builds(Ping, addresses, seqs),
    st.builds(Ack, addresses, seqs),
    st.builds(Nack, addresses, seqs, st.sampled_from(NackReason)),
    st.builds(Clear, addresses, seqs, st.integers(0, 0xFF)),
    st.builds(SetBrightness, addresses, seqs, st.integers(0, 15)),
    st.builds(
        SetClock,
        addresses,
        seqs,
        st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31, 23, 59, 59)).map(
            lambda when: when.replace(microsecond=0)
        ),
    ),
    st.builds(
        ShowText,
        addresses,
        seqs,
        st.text(gb2312_chars, max_size=40),
        st.integers(0, 0xFE),
        st.integers(0, 0xFE),
        st.sampled_from(Colour),
        st.sampled_from(Effect),
        st.integers(0, 15),
    ),
)


@settings(max_examples=200)
@given(st.lists(events, max_size=8), st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_round_trip_in_any_chunking(sent: list[LedEvent], chunk_sizes: list[int]) -> None:
    stream = b"".join(led.encode(event) for event in sent)
    decoder = LedDecoder()
    got: list[LedEvent] = []
    position = 0
    index = 0
    while position < len(stream):
        size = chunk_sizes[index % len(chunk_sizes)]
        decoder.receive_data(stream[position : position + size])
        position += size
        index += 1
        events_, errors = drain(decoder)
        assert errors == []
        got += events_
    assert got == sent


@settings(max_examples=200)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_codec_errors(data: bytes) -> None:
    decoder = LedDecoder()
    decoder.receive_data(data)
    drain(decoder)
    decoder.line_idle()
    drain(decoder)
    assert decoder.pending_bytes == 0  # idle line: nothing may stay stuck


@settings(max_examples=200)
@given(st.lists(events, min_size=1, max_size=5), st.data())
def test_truncation_and_bit_flips(sent: list[LedEvent], data: st.DataObject) -> None:
    stream = bytearray(b"".join(led.encode(event) for event in sent))
    cut = data.draw(st.integers(0, len(stream)), label="cut")
    flips = data.draw(st.lists(st.integers(0, len(stream) * 8 - 1), max_size=4), label="flips")
    for bit in flips:
        stream[bit // 8] ^= 1 << (bit % 8)
    decoder = LedDecoder()
    decoder.receive_data(bytes(stream[:cut]))
    got, _ = drain(decoder)
    decoder.line_idle()
    more, _ = drain(decoder)
    assert decoder.pending_bytes == 0
    if not flips:
        assert got + more == sent[: len(got + more)]


def test_single_flip_in_one_frame_loses_only_that_frame() -> None:
    """CRC-16 catches every single-bit error; resync keeps the frames around it."""
    frames = [led.encode(ShowText(1, n, f"A{n:03d}")) for n in range(3)]
    rng = random.Random(4)
    for _ in range(300):
        middle = bytearray(frames[1])
        bit = rng.randrange(len(middle) * 8)
        middle[bit // 8] ^= 1 << (bit % 8)
        decoder = LedDecoder()
        decoder.receive_data(frames[0] + bytes(middle) + frames[2])
        got, errors = drain(decoder)
        decoder.line_idle()
        got_idle, errors_idle = drain(decoder)
        got += got_idle
        assert got[0] == ShowText(1, 0, "A000")
        assert ShowText(1, 2, "A002") in got
        assert ShowText(1, 1, "A001") not in got
        assert errors + errors_idle or decoder.skipped_bytes  # a hit sync byte: skipped

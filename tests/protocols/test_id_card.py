"""The ID card reader's SAM frame: golden bytes, the card text, checksums, resynchronisation."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocols import id_card
from firmware_protocols.decoding import NEED_DATA
from firmware_protocols.errors import (
    ChecksumError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from firmware_protocols.id_card import (
    Command,
    Direction,
    Gender,
    IdCardDecoder,
    IdCardEvent,
    IdCardText,
    Request,
    Response,
    Status,
)

# (event, wire): the commands and answers of a find, select and read; the checksum is the
# XOR of the length and body bytes (00 03 20 01 -> 22).
GOLDEN: list[tuple[IdCardEvent, str]] = [
    (Request(Command.FIND_CARD), "aa aa aa 96 69 00 03 20 01 22"),
    (Request(Command.SELECT_CARD), "aa aa aa 96 69 00 03 20 02 21"),
    (Request(Command.READ_BASE_INFO), "aa aa aa 96 69 00 03 30 01 32"),
    (Request(Command.SAM_STATUS), "aa aa aa 96 69 00 03 11 ff ed"),
    (Request(Command.READ_SAM_ID), "aa aa aa 96 69 00 03 12 ff ee"),
    (Response(Status.NOT_FOUND), "aa aa aa 96 69 00 04 00 00 80 84"),
    (Response(Status.FOUND, id_card.FIND_DATA), "aa aa aa 96 69 00 08 00 00 9f 00 00 00 00 97"),
    (Response(Status.OK, id_card.SELECT_DATA),
     "aa aa aa 96 69 00 0c 00 00 90 00 00 00 00 00 00 00 00 9c"),
    (Response(Status.READ_FAILED), "aa aa aa 96 69 00 04 00 00 41 45"),
]  # fmt: skip

CARD = IdCardText(
    name="张秀兰",
    gender=Gender.FEMALE,
    nation="01",
    birth=date(1958, 3, 15),
    address="广东省中山市三乡镇雅居乐花园12栋301",
    id_number="442000195803151248",
    authority="中山市公安局",
    valid_from=date(2016, 5, 20),
    valid_until=None,
)


def direction_of(event: IdCardEvent) -> Direction:
    return Direction.TO_READER if isinstance(event, Request) else Direction.FROM_READER


def decode_all(data: bytes, direction: Direction) -> list[IdCardEvent]:
    decoder = IdCardDecoder(direction)
    decoder.receive_data(data)
    events = []
    while (event := decoder.next_event()) is not NEED_DATA:
        events.append(event)
    return events


@pytest.mark.parametrize(("event", "wire"), GOLDEN)
def test_encode_golden(event: IdCardEvent, wire: str) -> None:
    assert id_card.encode(event) == bytes.fromhex(wire)


@pytest.mark.parametrize(("event", "wire"), GOLDEN)
def test_decode_golden_byte_by_byte(event: IdCardEvent, wire: str) -> None:
    decoder = IdCardDecoder(direction_of(event))
    got = []
    for byte in bytes.fromhex(wire):
        decoder.receive_data(bytes([byte]))
        if (item := decoder.next_event()) is not NEED_DATA:
            got.append(item)
    assert got == [event]


def test_base_info_answer_is_1295_bytes_and_round_trips() -> None:
    photo = bytes(range(256)) * 4
    wire = id_card.encode(Response(Status.OK, id_card.encode_base_info(CARD, photo)))
    assert len(wire) == 1295
    assert wire[:12] == bytes.fromhex("aa aa aa 96 69 05 08 00 00 90 01 00")  # 1288, 256 text
    [answer] = decode_all(wire, Direction.FROM_READER)
    assert isinstance(answer, Response)
    info = id_card.parse_base_info(answer.data)
    assert info.text == CARD
    assert info.photo == photo


def test_the_card_text_is_ucs2_in_fixed_fields() -> None:
    raw = id_card.encode_text(CARD)
    assert len(raw) == 256
    assert raw[:6] == "张秀兰".encode("utf-16-le")
    assert raw[30:32] == b"2\x00"  # gender 2: female
    assert raw[32:36] == "01".encode("utf-16-le")
    assert raw[122:158] == CARD.id_number.encode("utf-16-le")
    assert raw[204:212] == "长期  ".encode("utf-16-le")  # valid for life


def test_the_text_never_shows_in_a_repr() -> None:
    assert "张" not in repr(CARD)
    assert CARD.id_number not in repr(CARD)
    assert CARD.id_number not in repr(id_card.parse_base_info(id_card.encode_base_info(CARD)))


@pytest.mark.parametrize(
    ("id_number", "problem"),
    [
        ("11010519491231002X", None),  # the example of GB 11643
        ("442000195803151248", None),
        ("442000195803151247", "check character is wrong"),
        ("44200019580315124", "17 digits and a check character"),
        ("4420001958031512X8", "17 digits and a check character"),
        ("442000195802301240", "no real birth date"),
    ],
)
def test_id_number_checks(id_number: str, problem: str | None) -> None:
    found = id_card.id_number_problem(id_number)
    assert (found is None) if problem is None else (problem in (found or ""))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"id_number": "442000195803151247"}, "check character"),
        ({"birth": date(1958, 3, 16)}, "birth date and the ID number disagree"),
    ],
)
def test_a_card_text_that_does_not_hold_together_is_refused(
    changes: dict[str, object], match: str
) -> None:
    bad = replace(CARD, **changes)  # type: ignore[arg-type]
    raw = bytearray(id_card.encode_text(CARD))
    if "id_number" in changes:
        raw[122:158] = str(changes["id_number"]).encode("utf-16-le")
    else:
        raw[36:52] = bad.birth.strftime("%Y%m%d").encode("utf-16-le")
    with pytest.raises(RemoteProtocolError, match=match):
        id_card.parse_text(bytes(raw))
    with pytest.raises(LocalProtocolError):
        id_card.encode_text(replace(CARD, id_number="442000195803151247"))


def test_a_bad_checksum_is_reported_and_the_next_frame_found() -> None:
    good = bytes.fromhex(GOLDEN[6][1])
    bad = bytearray(good)
    bad[-1] ^= 0x01
    decoder = IdCardDecoder(Direction.FROM_READER)
    decoder.receive_data(b"\x00\x13" + bytes(bad) + good)
    with pytest.raises(ChecksumError):
        decoder.next_event()
    assert decoder.next_event() == GOLDEN[6][0]
    assert decoder.next_event() is NEED_DATA
    assert decoder.skipped_bytes > 2


def test_a_corrupt_length_drops_only_the_preamble() -> None:
    decoder = IdCardDecoder(Direction.FROM_READER)
    decoder.receive_data(id_card.PREAMBLE + b"\xff\xff" + bytes.fromhex(GOLDEN[5][1]))
    with pytest.raises(RemoteProtocolError, match="length field"):
        decoder.next_event()
    assert decoder.next_event() == Response(Status.NOT_FOUND)


def test_unknown_status_and_command_are_remote_errors() -> None:
    with pytest.raises(RemoteProtocolError, match="unknown status"):
        decode_all(id_card.encode_frame(b"\x00\x00\x55"), Direction.FROM_READER)
    with pytest.raises(RemoteProtocolError, match="unknown command"):
        decode_all(id_card.encode_frame(b"\x99\x01"), Direction.TO_READER)


@settings(max_examples=200)
@given(st.binary(max_size=400), st.sampled_from(list(Direction)))
def test_random_bytes_raise_only_codec_errors(data: bytes, direction: Direction) -> None:
    decoder = IdCardDecoder(direction)
    decoder.receive_data(data)
    for _ in range(len(data) + 2):  # each call consumes or returns NEED_DATA
        try:
            if decoder.next_event() is NEED_DATA:
                return
        except ProtocolError:
            continue
    raise AssertionError("the decoder did not settle")


@settings(max_examples=100)
@given(st.sampled_from(GOLDEN), st.integers(0, 200), st.integers(1, 7))
def test_a_flipped_bit_costs_at_most_its_own_frame(
    golden: tuple[IdCardEvent, str], position: int, bit: int
) -> None:
    event, wire = golden
    frame = bytearray(bytes.fromhex(wire))
    frame[position % len(frame)] ^= 1 << bit
    got: list[IdCardEvent] = []
    decoder = IdCardDecoder(direction_of(event))
    decoder.receive_data(bytes(frame) + bytes.fromhex(wire))
    for _ in range(64):
        try:
            item = decoder.next_event()
        except ProtocolError:
            continue
        if item is NEED_DATA:
            break
        got.append(item)
    assert got[-1:] == [event]

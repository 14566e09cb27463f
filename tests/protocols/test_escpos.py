"""The ESC/POS codec: golden bytes, status replies, QR capacity, garbage (a ticket from
``edge.devices.ticket`` stands in for a realistic stream)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.devices.ticket import (
    LARGE_PRINT_LAYOUT,
    NORMAL_LAYOUT,
    ticket_bytes,
    ticket_events,
)
from firmware_protocols import escpos
from firmware_protocols.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from firmware_protocols.escpos import (
    NEED_DATA,
    Align,
    CharSize,
    ChineseMode,
    Cut,
    EscPosDecoder,
    EscPosEvent,
    Feed,
    Init,
    OfflineCause,
    PaperSensor,
    PrinterHealth,
    PrinterIdQuery,
    PrinterInfo,
    PrinterStatus,
    QrCode,
    QrErrorCorrection,
    QrModel,
    StatusQuery,
    StatusRequest,
    Text,
    Unhandled,
)
from tests.edge.devices.test_ticket import TICKET  # a realistic stream for the decoder

# (event, wire bytes), hand-checked against the Epson ESC/POS command reference:
# ESC @ = 1B 40; FS & = 1C 26; ESC a n = 1B 61 n; ESC E n = 1B 45 n; GS ! n = 1D 21 n with
# (width-1) in the high nibble and (height-1) in the low one; GS ( k pL pH cn fn ... with
# pL+pH*256 counting cn, fn and the parameters; GB18030 中=D6D0 号=BAC5.
GOLDEN: list[tuple[EscPosEvent, str]] = [
    (Init(), "1b 40"),
    (ChineseMode(True), "1c 26"),
    (ChineseMode(False), "1c 2e"),
    (Text("A012", CharSize(4, 4), bold=True, align=Align.CENTER),
     "1b 61 01 1b 45 01 1d 21 33 41 30 31 32 0a"),
    (Text("中号", CharSize(1, 2), align=Align.RIGHT), "1b 61 02 1b 45 00 1d 21 01 d6 d0 ba c5 0a"),
    (Text(""), "1b 61 00 1b 45 00 1d 21 00 0a"),
    (QrCode(b"A012", module_size=6, error_correction=QrErrorCorrection.M),
     "1d 28 6b 04 00 31 41 32 00"  # <Function 165> model 2
     "1d 28 6b 03 00 31 43 06"  # <Function 167> module 6 dots
     "1d 28 6b 03 00 31 45 31"  # <Function 169> level M
     "1d 28 6b 07 00 31 50 30 41 30 31 32"  # <Function 180> store 'A012' (k + 3 = 7)
     "1d 28 6b 03 00 31 51 30"),  # <Function 181> print
    (Feed(4), "1b 64 04"),
    (Cut(), "1d 56 00"),
    (Cut(partial=True), "1d 56 01"),
    (Cut(feed_dots=3), "1d 56 41 03"),
    (Cut(partial=True, feed_dots=0), "1d 56 42 00"),
    (StatusQuery(StatusRequest.PRINTER), "10 04 01"),
    (StatusQuery(StatusRequest.OFFLINE_CAUSE), "10 04 02"),
    (StatusQuery(StatusRequest.ERROR_CAUSE), "10 04 03"),
    (StatusQuery(StatusRequest.PAPER_SENSOR), "10 04 04"),
    (Unhandled(b"\x1b\x33\x18"), "1b 33 18"),
    (PrinterIdQuery(PrinterInfo.MODEL), "1d 49 43"),  # GS I 67: model name
]  # fmt: skip



def drain(decoder: EscPosDecoder) -> tuple[list[EscPosEvent], list[ProtocolError]]:
    events: list[EscPosEvent] = []
    errors: list[ProtocolError] = []
    for _ in range(200_000):
        try:
            event = decoder.next_event()
        except ProtocolError as exc:
            errors.append(exc)
            continue
        if event is NEED_DATA:
            return events, errors
        events.append(event)
    raise AssertionError("decoder did not settle")


@pytest.mark.parametrize(("event", "wire"), GOLDEN)
def test_encode_golden(event: EscPosEvent, wire: str) -> None:
    assert escpos.encode(event) == bytes.fromhex(wire)


@pytest.mark.parametrize(("event", "wire"), GOLDEN)
def test_decode_golden(event: EscPosEvent, wire: str) -> None:
    assert escpos.decode_all(bytes.fromhex(wire), chinese_mode_at_power_on=True) == [event]


def test_golden_stream_byte_by_byte() -> None:
    stream = b"".join(bytes.fromhex(wire) for _, wire in GOLDEN[3:])
    decoder = EscPosDecoder(chinese_mode_at_power_on=True)
    got: list[EscPosEvent] = []
    for byte in stream:
        decoder.receive_data(bytes([byte]))
        events, errors = drain(decoder)
        assert errors == []
        got += events
    assert got == [event for event, _ in GOLDEN[3:]]


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: CharSize(0, 1), "width"),
        (lambda: CharSize(1, 9), "height"),
        (lambda: QrCode(b"x", module_size=17), "module size"),
        (lambda: Feed(256), "feed"),
        (lambda: Cut(feed_dots=256), "cut feed"),
        (lambda: escpos.encode_status_query(5), "1..4"),
        (lambda: escpos.parse_status_reply(9, b"\x12"), "1..4"),
    ],
)
def test_encoder_refuses(build: object, match: str) -> None:
    assert callable(build)
    with pytest.raises(LocalProtocolError, match=match):
        build()


# --- status ------------------------------------------------------------------------------------
# (request, reply byte, parsed): bits 1 and 4 always set, 0 and 7 always clear.
STATUS_GOLDEN = [
    (1, 0x12, PrinterStatus(offline=False)),
    (1, 0x1A, PrinterStatus(offline=True)),
    (1, 0x5A, PrinterStatus(offline=True, feed_button_pressed=True)),
    (2, 0x12, OfflineCause(cover_open=False, paper_end_stop=False, error=False)),
    (2, 0x16, OfflineCause(cover_open=True, paper_end_stop=False, error=False)),
    (2, 0x32, OfflineCause(cover_open=False, paper_end_stop=True, error=False)),
    (2, 0x52, OfflineCause(cover_open=False, paper_end_stop=False, error=True)),
    (3, 0x1A, escpos.ErrorCause(autocutter_error=True, unrecoverable_error=False,
                                auto_recoverable_error=False)),
    (4, 0x12, PaperSensor(near_end=False, paper_out=False)),
    (4, 0x1E, PaperSensor(near_end=True, paper_out=False)),
    (4, 0x72, PaperSensor(near_end=False, paper_out=True)),
    (4, 0x7E, PaperSensor(near_end=True, paper_out=True)),
]  # fmt: skip


@pytest.mark.parametrize(("request_n", "byte", "parsed"), STATUS_GOLDEN)
def test_status_golden(request_n: int, byte: int, parsed: escpos.StatusReply) -> None:
    assert escpos.parse_status_reply(request_n, bytes([byte])) == parsed
    assert escpos.encode_status_reply(parsed) == bytes([byte])


@pytest.mark.parametrize("reply", [b"", b"\x12\x12", b"\x00", b"\xff", b"\x10", b"\x92", b"\x13"])
def test_status_malformed_rejected(reply: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        escpos.parse_status_reply(StatusRequest.PRINTER, reply)


def test_asb_packet_is_not_a_status_byte() -> None:
    # An Automatic Status Back packet is four bytes: never mistaken for one reply.
    with pytest.raises(RemoteProtocolError, match="one byte"):
        escpos.parse_status_reply(1, bytes.fromhex("14 00 00 0f"))


@settings(max_examples=200)
@given(st.integers(1, 4), st.integers(0, 255))
def test_any_status_byte_parses_or_is_rejected(request_n: int, byte: int) -> None:
    try:
        reply = escpos.parse_status_reply(request_n, bytes([byte]))
    except RemoteProtocolError:
        assert byte & 0x93 != 0x12
        return
    assert byte & 0x93 == 0x12
    if request_n != 4:  # DLE EOT 4 folds each pair of sensor bits into one flag
        assert escpos.encode_status_reply(reply) == bytes([byte])


def test_health_fold() -> None:
    assert escpos.HEALTH_QUERIES == (1, 2, 4)
    replies = [
        escpos.parse_status_reply(n, r) for n, r in zip((1, 2, 4), (0x1A, 0x36, 0x7E), strict=True)
    ]
    printer, cause, paper = replies
    assert isinstance(printer, PrinterStatus)
    assert isinstance(cause, OfflineCause)
    assert isinstance(paper, PaperSensor)
    health = PrinterHealth.from_replies(printer, cause, paper)
    assert health == PrinterHealth(
        online=False, cover_open=True, paper_low=True, paper_out=True, error=False
    )
    fine = PrinterHealth.from_replies(
        PrinterStatus(False),
        OfflineCause(False, False, False),
        PaperSensor(False, False),
        escpos.ErrorCause(False, False, True),
    )
    assert fine == PrinterHealth(
        online=True, cover_open=False, paper_low=False, paper_out=False, error=True
    )


# --- decoder behaviour and errors --------------------------------------------------------------
def test_text_without_chinese_mode_is_code_page_mojibake() -> None:
    events = escpos.decode_all(escpos.encode(Text("中")))
    assert events == [Text("╓╨")]  # D6 D0 in PC437, as a printer without FS & prints it


def test_format_change_mid_line_splits_runs() -> None:
    data = b"\x1b\x40ab\x1b\x45\x01cd\x1d\x21\x11ef\x0a"
    events = escpos.decode_all(data)
    assert events == [
        Init(),
        Text("ab", newline=False),
        Text("cd", bold=True, newline=False),
        Text("ef", CharSize(2, 2), bold=True),
    ]
    assert escpos.text_lines(events) == ["abcdef"]


def test_justification_only_at_line_start() -> None:
    events = escpos.decode_all(b"ab\x1b\x61\x01cd\x0a\x1b\x61\x32ef\x0a")
    assert events == [Text("abcd"), Text("ef", align=Align.RIGHT)]


def test_esc_bang_print_mode_and_init_discards_partial_line() -> None:
    events = escpos.decode_all(b"\x1b\x21\x38AB\x0alost\x1b\x40")
    assert events == [Text("AB", CharSize(2, 2), bold=True), Init()]


def test_unmodelled_commands_are_reported_not_errors() -> None:
    data = (
        b"\x1b\x32\x1b\x2d\x01\x1d\x42\x01\x1c\x21\x08\x1d\x28\x6b\x03\x00\x31\x52\x30"
        b"\x1d\x28\x41\x02\x00\x00\x02\x10\x05\x01"
    )
    assert escpos.decode_all(data) == [
        Unhandled(b"\x1b\x32"),
        Unhandled(b"\x1b\x2d\x01"),
        Unhandled(b"\x1d\x42\x01"),
        Unhandled(b"\x1c\x21\x08"),
        Unhandled(b"\x1d\x28\x6b\x03\x00\x31\x52\x30"),
        Unhandled(b"\x1d\x28\x41\x02\x00\x00\x02"),  # GS ( A: test print
        Unhandled(b"\x10\x05\x01"),  # DLE ENQ 1
    ]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x1b\x7f", "unknown command ESC"),
        (b"\x1d\x7f", "unknown command GS"),
        (b"\x1c\x7f", "unknown command FS"),
        (b"\x10\x7f", "real-time command"),
        (b"\x10\x04\x09", "status request"),
        (b"\x1b\x61\x07", "justification"),
        (b"\x1d\x21\x08", "size bits"),
        (b"\x1d\x56\x07", "cut mode"),
        (b"\x1d\x28\x6b\x01\x00\x31", "needs cn and fn"),
        (b"\x1d\x28\x6b\x04\x00\x31\x41\x39\x00", "Function 165"),
        (b"\x1d\x28\x6b\x03\x00\x31\x43\x00", "Function 167"),
        (b"\x1d\x28\x6b\x03\x00\x31\x45\x40", "Function 169"),
        (b"\x1d\x28\x6b\x03\x00\x31\x50\x30", "Function 180"),
        (b"\x1d\x28\x6b\x03\x00\x31\x51\x30", "no stored data"),
        (b"\x1d\x28\x6b\x03\x00\x31\x51\x31", "Function 181"),
        (b"\x07", "control byte"),
        (b"x" * 5000, "longer than"),
    ],
)
def test_decoder_errors(data: bytes, match: str) -> None:
    decoder = EscPosDecoder()
    decoder.receive_data(data + b"\x0aok\x0a")
    events, errors = drain(decoder)
    assert len(errors) == 1
    with pytest.raises(RemoteProtocolError, match=match):
        raise errors[0]
    assert events[-1] == Text("ok")  # the decoder carried on


def test_invalid_gb18030_keeps_line_and_later_mode_change() -> None:
    decoder = EscPosDecoder(chinese_mode_at_power_on=True)
    decoder.receive_data(b"\x81\x20A\x1b\x45\x01B\x0a")  # 81 20 is no GB18030 sequence
    with pytest.raises(RemoteProtocolError, match="GB18030"):
        decoder.next_event()
    first = decoder.next_event()
    assert isinstance(first, Text)
    assert first.line.endswith("A")
    assert not first.newline
    assert decoder.next_event() == Text("B", bold=True)  # ESC E 1 was not lost


def test_decode_all_refuses_truncated() -> None:
    data = ticket_bytes(TICKET)
    with pytest.raises(RemoteProtocolError, match="left over"):
        escpos.decode_all(data[:-1])


def test_every_prefix_of_a_ticket_is_a_prefix_of_its_events() -> None:
    data = ticket_bytes(TICKET)
    full = escpos.decode_all(data)
    for cut in range(len(data)):
        decoder = EscPosDecoder()
        decoder.receive_data(data[:cut])
        events, errors = drain(decoder)
        assert errors == []
        assert events == full[: len(events)]


EVENT_TYPES = (Init, ChineseMode, Text, QrCode, Feed, Cut, StatusQuery, Unhandled)

# --- hypothesis --------------------------------------------------------------------------------
sizes = st.builds(CharSize, st.integers(1, 8), st.integers(1, 8))
printable = st.characters(codec="gb18030", min_codepoint=0x20).filter(lambda char: char != "\x7f")
events_strategy: st.SearchStrategy[EscPosEvent] = st.one_of(
    st.just(Init()),
    st.builds(Text, st.text(printable, max_size=30), sizes, st.booleans(), st.sampled_from(Align)),
    st.sampled_from(sorted(escpos._QR_CAPACITY)).flatmap(
        lambda kind: st.builds(
            QrCode,
            st.binary(min_size=1, max_size=min(200, escpos._QR_CAPACITY[kind][2])).map(
                lambda data: bytes(b | 0x80 if b < 0x20 or b == 0x7F else b for b in data)
            ),
            st.integers(1, 16),
            st.just(kind[1]),
            st.just(kind[0]),
        )
    ),
    st.builds(Feed, st.integers(0, 255)),
    st.builds(Cut, st.booleans(), st.none() | st.integers(0, 255)),
    st.builds(StatusQuery, st.sampled_from(StatusRequest)),
)


@settings(max_examples=200)
@given(st.lists(events_strategy, max_size=12), st.integers(1, 50))
def test_round_trip(sent: list[EscPosEvent], chunk: int) -> None:
    data = escpos.encode_all([ChineseMode(True), *sent])
    decoder = EscPosDecoder(chinese_mode_at_power_on=True)
    got: list[EscPosEvent] = []
    for start in range(0, len(data), chunk):
        decoder.receive_data(data[start : start + chunk])
        events, errors = drain(decoder)
        assert errors == []
        got += events
    assert got == [ChineseMode(True), *sent]


def test_ticket_round_trip_sample() -> None:
    events = ticket_events(TICKET)
    assert escpos.decode_all(escpos.encode_all(events)) == events


@settings(max_examples=200)
@given(st.binary(max_size=800))
def test_random_bytes_raise_only_codec_errors(data: bytes) -> None:
    decoder = EscPosDecoder()
    decoder.receive_data(data)
    events, _ = drain(decoder)
    assert decoder.pending_bytes <= len(data)
    assert all(isinstance(event, EVENT_TYPES) for event in events)


@settings(max_examples=150)
@given(st.data())
def test_ticket_with_flipped_bits(data: st.DataObject) -> None:
    wire = bytearray(
        ticket_bytes(
            TICKET, data.draw(st.sampled_from([NORMAL_LAYOUT, LARGE_PRINT_LAYOUT]))
        )
    )
    for bit in data.draw(st.lists(st.integers(0, len(wire) * 8 - 1), min_size=1, max_size=6)):
        wire[bit // 8] ^= 1 << (bit % 8)
    cut = data.draw(st.integers(0, len(wire)))
    decoder = EscPosDecoder()
    decoder.receive_data(bytes(wire[:cut]))
    events, _ = drain(decoder)
    assert decoder.pending_bytes <= cut  # bounded: nothing grows without input
    for event in events:
        assert isinstance(event, EVENT_TYPES)
        if isinstance(event, Text):  # whatever the flips did, no control byte reaches a line
            assert not any(ord(char) < 0x20 and char != "\t" for char in event.line)


# --- QR capacity and content ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "model", "level", "capacity"),
    [
        (b"https://q.example.cn/t/A012", QrModel.MODEL_2, QrErrorCorrection.M, 2331),
        (b"https://q.example.cn/t/A012", QrModel.MODEL_2, QrErrorCorrection.L, 2953),
        (b"https://q.example.cn/t/A012", QrModel.MODEL_2, QrErrorCorrection.H, 1273),
        (b"HTTPS://Q.EXAMPLE.CN/T/A012", QrModel.MODEL_2, QrErrorCorrection.M, 3391),
        (b"20261123012", QrModel.MODEL_2, QrErrorCorrection.M, 5596),
        (b"A012", QrModel.MICRO, QrErrorCorrection.M, 18),
        (b"a012", QrModel.MODEL_1, QrErrorCorrection.L, 486),
    ],
)
def test_qr_capacity_of_the_chosen_model_and_level(
    payload: bytes, model: QrModel, level: QrErrorCorrection, capacity: int
) -> None:
    assert escpos.qr_capacity(payload, model, level) == capacity


def test_qr_past_the_symbol_capacity_is_refused_not_sent() -> None:
    """Function 180 stores up to 7089 bytes, but a model 2 symbol at level M holds 2331
    bytes of 8-bit data: a printer given more prints nothing at all."""
    assert escpos.encode(QrCode(b"x" * 2331))
    with pytest.raises(LocalProtocolError, match="2332 bytes exceeds the 2331"):
        escpos.encode(QrCode(b"x" * 2332))
    with pytest.raises(LocalProtocolError, match="no documented capacity"):
        escpos.encode(QrCode(b"x", model=QrModel.MODEL_1, error_correction=QrErrorCorrection.M))


def test_what_a_printer_would_not_print_comes_out_as_an_error() -> None:
    """The decoder is the printer's side: too much data for the symbol prints nothing."""
    store = bytes.fromhex("1d 28 6b") + (3 + 2332).to_bytes(2, "little") + b"\x31\x50\x30"
    wire = (
        bytes.fromhex("1d 28 6b 03 00 31 45 31")  # level M
        + store + b"x" * 2332
        + bytes.fromhex("1d 28 6b 03 00 31 51 30")  # print
    )
    decoder = EscPosDecoder()
    decoder.receive_data(wire)
    events, errors = drain(decoder)
    assert not any(isinstance(event, QrCode) for event in events)
    assert [str(e) for e in errors] == [
        "QR <Function 181>: 2332 bytes exceed the capacity of MODEL_2 at level M: nothing printed"
    ]


@pytest.mark.parametrize("payload", [b"t/A012\x10\x04\x01", b"\x00", b"a\x1b@", b"\x7f"])
def test_control_bytes_in_qr_data_are_refused(payload: bytes) -> None:
    """A printer scans every byte for real-time commands: DLE EOT inside QR data would be
    answered as a status query."""
    with pytest.raises(LocalProtocolError, match="control byte"):
        escpos.encode(QrCode(payload))


# --- printer identity (GS I) ------------------------------------------------------------------
def test_printer_id_answers_decode_one_by_one() -> None:
    reply = escpos.encode_printer_id_reply("TM-T88V")
    assert reply == b"_TM-T88V\x00"
    decoder = escpos.PrinterIdDecoder()
    for byte in b"\x12" + reply + escpos.encode_printer_id_reply("EPSON"):
        decoder.receive_data(bytes([byte]))
    assert decoder.next_event() == escpos.PrinterId("TM-T88V")
    assert decoder.next_event() == escpos.PrinterId("EPSON")
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"_bad\x07\x00")
    with pytest.raises(RemoteProtocolError, match="not printable"):
        decoder.next_event()
    assert decoder.next_event() is NEED_DATA

"""The Modbus window-terminal register map: golden values, latch properties, garbage."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocols import modbus_terminal as mt
from firmware_protocols.crc import crc16_modbus_bytes
from firmware_protocols.errors import (
    ChecksumError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from firmware_protocols.terminal_events import (
    InputsRefused,
    Key,
    KeyPressed,
    RatingPressed,
    ReasonPressed,
    RequestRating,
    ShowText,
)

LED_EXAMPLE = "请A012号到3号窗口"

# (what, bytes we build, golden hex). The same hex is in docs/PROTOCOLS.md (section 3).
GOLDEN_REQUESTS = [
    (
        "poll slave 3 (FC04, 16 registers from 0)",
        mt.encode_read_request(3),
        "03 04 00 00 00 10 f0 24",
    ),
    (
        "ack sequence 2 at slave 3",
        mt.encode_write_request(mt.RegisterWrite(3, mt.INPUT_ACK, (2,))),
        "03 10 01 00 00 01 02 00 02 2e 31",
    ),
    (
        "LED text at slave 3",
        mt.encode_write_request(mt.command_write(ShowText(3, LED_EXAMPLE))),
        "03 10 01 10 00 0a 14 00 11 c7 eb 41 30 31 32 ba c5 b5 bd 33 ba c5 b4 b0 bf da 00 92 2a",
    ),
    (
        "poll slave 3 carrying the ack of sequence 2 (FC23)",
        mt.encode_poll_request(3, mt.RegisterWrite(3, mt.INPUT_ACK, (2,))),
        "03 17 00 00 00 10 01 00 00 01 02 00 02 02 2d",
    ),
    (
        "light the rating pad of slave 5 for 30 s",
        mt.encode_write_request(mt.command_write(RequestRating(5, 30))),
        "05 10 01 01 00 01 02 00 1e 05 89",
    ),
]

# Slave 3 answers its poll: boot 0xA17E, up 120 s, NEXT then rating 4 queued.
GOLDEN_POLL_ANSWER = bytes.fromhex(
    "03 04 20 4f 44 01 00 a1 7e 00 78 00 00 00 02 00 02 00 00 01 01 02 04"
    " 00 00 00 00 00 00 00 00 00 00 00 00 dc 90"
)
GOLDEN_POLL_BLOCK = (
    0x4F44, 0x0100, 0xA17E, 120, 0, 2, 2, 0, 0x0101, 0x0204, 0, 0, 0, 0, 0, 0,
)  # fmt: skip


def _queue_with(*entries: int) -> mt.InputQueue:
    queue = mt.InputQueue()
    for entry in entries:
        queue.latch(entry)
    return queue


def _block(queue: mt.InputQueue, boot_id: int = 0xA17E) -> list[int]:
    return mt.encode_poll_block(
        firmware_version=(1, 0), boot_id=boot_id, uptime=120, flags=0, inputs=queue
    )


def _read_response(slave: int, registers: list[int], function: int = 4) -> bytes:
    body = bytes((slave, function, 2 * len(registers)))
    body += b"".join(value.to_bytes(2, "big") for value in registers)
    return body + crc16_modbus_bytes(body)


# --- golden ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("what", "built", "golden"), GOLDEN_REQUESTS, ids=lambda v: str(v)[:30])
def test_request_bytes_are_golden(what: str, built: bytes, golden: str) -> None:
    assert built == bytes.fromhex(golden), what


def test_poll_block_golden_encode_and_decode() -> None:
    queue = _queue_with(mt.encode_input(Key.NEXT), mt.encode_input(4, rating=True))
    assert tuple(_block(queue)) == GOLDEN_POLL_BLOCK
    assert _read_response(3, _block(queue)) == GOLDEN_POLL_ANSWER

    response = mt.decode_response(GOLDEN_POLL_ANSWER)
    assert isinstance(response, mt.ReadResponse)
    assert response.registers == GOLDEN_POLL_BLOCK
    result = mt.decode_poll_block(3, response.registers, None)
    assert result.events == (KeyPressed(3, Key.NEXT, 1), RatingPressed(3, 4, 2))
    assert result.ack == mt.RegisterWrite(3, mt.INPUT_ACK, (2,))
    assert result.cursor == mt.PollCursor(0xA17E, 2, 0)
    assert result.status.firmware_version == (1, 0)
    assert result.status.uptime == 120
    assert not result.status.rating_pending


def test_led_text_golden_registers() -> None:
    registers = mt.encode_led_text(LED_EXAMPLE)
    assert registers[0] == 17  # 6 hanzi x 2 + 5 ASCII bytes
    assert registers[1:3] == [0xC7EB, 0x4130]  # 请 = C7 EB, then "A0"
    assert registers[-1] == 0xDA00  # odd length: the last register is padded
    assert mt.decode_led_text(registers) == LED_EXAMPLE
    assert mt.encode_led_text("") == [0]


def test_write_and_exception_responses_decode() -> None:
    ack_echo = bytes.fromhex("03 10 01 00 00 01") + crc16_modbus_bytes(
        bytes.fromhex("03 10 01 00 00 01")
    )
    assert mt.decode_response(ack_echo) == mt.WriteResponse(3, mt.INPUT_ACK, 1)
    refused = bytes.fromhex("03 90 03") + crc16_modbus_bytes(bytes.fromhex("03 90 03"))
    assert mt.decode_response(refused) == mt.ExceptionResponse(3, 0x10, 3)


# --- latching rules ----------------------------------------------------------------------------


def test_retried_read_and_lost_ack_report_nothing_twice() -> None:
    queue = _queue_with(mt.encode_input(Key.NEXT))
    block = _block(queue)
    first = mt.decode_poll_block(3, block, None)
    again = mt.decode_poll_block(3, block, None)
    assert first == again  # a retried read with the same cursor: the same answer
    assert mt.decode_poll_block(3, block, first.cursor).events == ()  # ack was lost
    assert mt.decode_poll_block(3, block, first.cursor).ack == first.ack  # so ack again
    queue.latch(mt.encode_input(Key.FINISH))
    later = mt.decode_poll_block(3, _block(queue), first.cursor)
    assert later.events == (KeyPressed(3, Key.FINISH, 2),)


def test_full_queue_refuses_and_is_reported() -> None:
    queue = mt.InputQueue()
    cursor = mt.decode_poll_block(1, _block(queue), None).cursor
    sequences = [queue.latch(mt.encode_input(Key.RECALL)) for _ in range(mt.INPUT_QUEUE_SIZE + 3)]
    assert sequences[-3:] == [None, None, None]
    result = mt.decode_poll_block(1, _block(queue), cursor)
    assert len(result.events) == mt.INPUT_QUEUE_SIZE + 1
    assert result.events[-1] == InputsRefused(1, 3)
    assert queue.acknowledge(mt.INPUT_QUEUE_SIZE) == mt.INPUT_QUEUE_SIZE
    assert queue.pending == 0


def test_stale_ack_drops_nothing() -> None:
    queue = _queue_with(mt.encode_input(Key.NEXT), mt.encode_input(Key.FINISH))
    assert queue.acknowledge(0) == 0
    assert queue.acknowledge(40000) == 0
    assert queue.acknowledge(1) == 1
    assert queue.acknowledge(1) == 0  # repeated ack
    assert queue.pending == 1


def test_reboot_resets_cursor_and_reports_new_inputs() -> None:
    old = _queue_with(*(mt.encode_input(Key.NEXT) for _ in range(5)))
    cursor = mt.decode_poll_block(2, _block(old, boot_id=100), None).cursor
    rebooted = _queue_with(mt.encode_input(Key.SIGN_IN))
    result = mt.decode_poll_block(2, _block(rebooted, boot_id=101), cursor)
    assert result.events == (KeyPressed(2, Key.SIGN_IN, 1),)


def test_sequence_going_backwards_is_the_devices_fault() -> None:
    queue = _queue_with(*(mt.encode_input(Key.NEXT) for _ in range(3)))
    cursor = mt.PollCursor(0xA17E, 10, 0)
    with pytest.raises(RemoteProtocolError, match="backwards"):
        mt.decode_poll_block(3, _block(queue), cursor)


def test_sequences_wrap_at_65536() -> None:
    queue = mt.InputQueue()
    queue.sequence = 0xFFFE
    cursor = mt.decode_poll_block(1, _block(queue), None).cursor
    for _ in range(3):
        queue.latch(mt.encode_input(Key.NEXT))
    result = mt.decode_poll_block(1, _block(queue), cursor)
    assert [e.sequence for e in result.events if isinstance(e, KeyPressed)] == [0xFFFF, 0, 1]
    assert queue.acknowledge(1) == 3


# --- resuming after a host restart --------------------------------------------------------------
# The host persisted (BOOT_ID, sequence) of the last input whose effect it handled; the
# terminal still holds what was never acknowledged. (queue entries, boot id of the block,
# persisted boot id and sequence, sequences reported as new)
RESUME_CASES = [
    ("handled the last of three, ack lost", 3, 0xA17E, 0xA17E, 3, []),
    ("handled the first of three", 3, 0xA17E, 0xA17E, 1, [2, 3]),
    ("handled one already acknowledged", 2, 0xA17E, 0xA17E, 0, [1, 2]),
    ("rebooted meanwhile: counts from 1 again", 2, 0x0BAD, 0xA17E, 7, [1, 2]),
    ("handled ahead of the terminal: not its history", 2, 0xA17E, 0xA17E, 9, [1, 2]),
]


@pytest.mark.parametrize(
    ("what", "queued", "boot_now", "boot_then", "handled", "new"),
    RESUME_CASES,
    ids=[case[0] for case in RESUME_CASES],
)
def test_resume_cursor_reports_only_what_was_not_handled(
    what: str, queued: int, boot_now: int, boot_then: int, handled: int, new: list[int]
) -> None:
    queue = _queue_with(*(mt.encode_input(Key.NEXT) for _ in range(queued)))
    block = _block(queue, boot_id=boot_now)
    cursor = mt.resume_cursor(block, boot_then, handled)
    result = mt.decode_poll_block(3, block, cursor)
    assert [e.sequence for e in result.events if isinstance(e, KeyPressed)] == new
    assert result.ack == mt.RegisterWrite(3, mt.INPUT_ACK, (queued,))  # all of it, either way
    assert queue.acknowledge(result.ack.values[0]) == queued


def test_resume_cursor_across_the_wrap_and_without_old_refusals() -> None:
    queue = mt.InputQueue()
    queue.sequence = 0xFFFE
    for _ in range(3):
        queue.latch(mt.encode_input(Key.NEXT))  # 0xFFFF, 0, 1
    for _ in range(mt.INPUT_QUEUE_SIZE):
        queue.latch(mt.encode_input(Key.RECALL))  # five fit, three refused
    assert queue.refused == 3
    block = _block(queue)
    result = mt.decode_poll_block(3, block, mt.resume_cursor(block, 0xA17E, 0))
    sequences = [e.sequence for e in result.events if isinstance(e, KeyPressed)]
    assert sequences == [1, 2, 3, 4, 5, 6]  # 0xFFFF and 0 were handled
    assert not any(isinstance(e, InputsRefused) for e in result.events)  # reported before
    assert mt.resume_cursor(block[:-1], 0xA17E, 0) is None  # a short block: decode's to refuse


@settings(max_examples=150, deadline=None)
@given(
    script=st.lists(
        st.one_of(
            st.tuples(st.just("key"), st.sampled_from(list(Key))),
            st.tuples(st.just("rate"), st.integers(1, 5)),
            st.tuples(st.just("poll"), st.booleans()),  # bool: the ack write gets lost
        ),
        max_size=80,
    ),
    start=st.integers(0, 0xFFFF),
)
def test_every_latched_input_reaches_the_host_once_in_order(
    script: list[tuple[str, object]], start: int
) -> None:
    """A lossy master (acks lost at random) still sees each latched input exactly once."""
    queue = mt.InputQueue()
    queue.sequence = start
    cursor = mt.decode_poll_block(7, _block(queue), None).cursor
    latched: list[KeyPressed | RatingPressed] = []
    received: list[KeyPressed | RatingPressed] = []
    refused = reported_refused = 0

    def poll(ack_lost: bool) -> None:
        nonlocal cursor, reported_refused
        result = mt.decode_poll_block(7, _block(queue), cursor)
        for event in result.events:
            if isinstance(event, InputsRefused):
                reported_refused += event.count
            else:
                received.append(event)
        cursor = result.cursor
        if result.ack is not None and not ack_lost:
            queue.acknowledge(result.ack.values[0])

    for action, value in script:
        if action == "poll":
            poll(bool(value))
        elif action == "key":
            assert isinstance(value, Key)
            sequence = queue.latch(mt.encode_input(value))
            if sequence is None:
                refused += 1
            else:
                latched.append(KeyPressed(7, value, sequence))
        else:
            assert isinstance(value, int)
            sequence = queue.latch(mt.encode_input(value, rating=True))
            if sequence is None:
                refused += 1
            else:
                latched.append(RatingPressed(7, value, sequence))
    poll(False)
    assert received == latched
    assert reported_refused == refused
    assert queue.pending == 0


# --- round trips -------------------------------------------------------------------------------

GB2312_TEXT = st.text(
    alphabet=st.sampled_from("请号到窗口暂停服务办结评价非常满意ABC0123456789 -:"), max_size=32
).filter(lambda text: len(text.encode("gb2312")) <= mt.LED_TEXT_MAX_BYTES)


@settings(max_examples=200, deadline=None)
@given(text=GB2312_TEXT, slave=st.integers(1, 247))
def test_led_text_round_trip(text: str, slave: int) -> None:
    write = mt.command_write(ShowText(slave, text))
    assert write.address == mt.LED_TEXT_LENGTH
    assert mt.decode_led_text(list(write.values)) == text
    frame = mt.encode_write_request(write)
    assert frame[:2] == bytes((slave, mt.FC_WRITE_MULTIPLE_REGISTERS))


@settings(max_examples=200, deadline=None)
@given(
    slave=st.integers(1, 247),
    registers=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=mt.MAX_READ_COUNT),
    function=st.sampled_from(
        [
            mt.FC_READ_HOLDING_REGISTERS,
            mt.FC_READ_INPUT_REGISTERS,
            mt.FC_READ_WRITE_MULTIPLE_REGISTERS,
        ]
    ),
)
def test_read_response_round_trip(slave: int, registers: list[int], function: int) -> None:
    frame = _read_response(slave, registers, function)
    assert mt.response_size(frame[:3]) == len(frame)
    assert mt.decode_response(frame) == mt.ReadResponse(slave, function, tuple(registers))


@settings(max_examples=100, deadline=None)
@given(entries=st.lists(st.one_of(st.sampled_from(list(Key)), st.integers(1, 5),
                                   st.integers(1, 15).map(str)), max_size=8))
def test_input_entries_round_trip(entries: list[Key | int | str]) -> None:
    for sequence, value in enumerate(entries, start=1):
        if isinstance(value, Key):
            assert mt.decode_input(4, sequence, mt.encode_input(value)) == KeyPressed(
                4, value, sequence
            )
        elif isinstance(value, str):  # a 差评 reason, drawn as text to tell it from a rating
            entry = mt.encode_input(int(value), reason=True)
            assert entry == mt.INPUT_KIND_REASON << 8 | int(value)
            assert mt.decode_input(4, sequence, entry) == ReasonPressed(4, int(value), sequence)
        else:
            entry = mt.encode_input(value, rating=True)
            assert mt.decode_input(4, sequence, entry) == RatingPressed(4, value, sequence)


# --- bad input: clear local errors -------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: mt.command_write(ShowText(3, "请到𠀀窗口")),  # not in GB2312
        lambda: mt.command_write(ShowText(3, "窗" * 33)),  # 66 bytes > 64
        lambda: mt.command_write(ShowText(0, "x")),  # slave id 0
        lambda: mt.command_write(RequestRating(3, 256)),
        lambda: mt.encode_input(6, rating=True),
        lambda: mt.encode_input(16, reason=True),
        lambda: mt.encode_input(0x55),
        lambda: mt.encode_read_request(3, count=126),
        lambda: mt.encode_write_request(mt.RegisterWrite(3, 0, ())),
        lambda: mt.encode_write_request(mt.RegisterWrite(3, 0, (70000,))),
        lambda: _block(mt.InputQueue(), boot_id=0),
        lambda: mt.encode_poll_request(3, mt.RegisterWrite(4, mt.INPUT_ACK, (1,))),
        lambda: mt.encode_poll_request(3, mt.RegisterWrite(3, mt.LED_TEXT, (1,))),
    ],
)
def test_bad_local_input_is_refused_clearly(make: object) -> None:
    assert callable(make)
    with pytest.raises(LocalProtocolError):
        make()


def test_gb2312_error_names_the_character() -> None:
    with pytest.raises(LocalProtocolError, match="U\\+20000"):
        mt.encode_led_text("请到𠀀窗口")


# --- garbage from the bus: only our own errors, never a hang -----------------------------------


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ([0x1234, *GOLDEN_POLL_BLOCK[1:]], "not a window terminal"),
        ([*GOLDEN_POLL_BLOCK[:2], 0, *GOLDEN_POLL_BLOCK[3:]], "boot id 0"),
        ([*GOLDEN_POLL_BLOCK[:6], 9, *GOLDEN_POLL_BLOCK[7:]], "pending inputs"),
        ([*GOLDEN_POLL_BLOCK[:8], 0x0401, *GOLDEN_POLL_BLOCK[9:]], "unknown kind"),
        ([*GOLDEN_POLL_BLOCK[:8], 0x0310, *GOLDEN_POLL_BLOCK[9:]], "reason must be 1..15"),
        ([*GOLDEN_POLL_BLOCK[:8], 0x0155, *GOLDEN_POLL_BLOCK[9:]], "unknown key code"),
        ([*GOLDEN_POLL_BLOCK[:9], 0x0209, *GOLDEN_POLL_BLOCK[10:]], "rating must be"),
        (list(GOLDEN_POLL_BLOCK[:-1]), "expected 16 registers"),
    ],
)
def test_bad_poll_blocks_are_remote_errors(block: list[int], message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        mt.decode_poll_block(3, block, None)


@settings(max_examples=300, deadline=None)
@given(
    registers=st.lists(st.integers(0, 0x1FFFF), max_size=20),
    cursor=st.none()
    | st.builds(
        mt.PollCursor, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)
    ),
)
def test_random_registers_raise_only_protocol_errors(
    registers: list[int], cursor: mt.PollCursor | None
) -> None:
    for decode in (
        lambda: mt.decode_poll_block(3, registers, cursor),
        lambda: mt.decode_led_text(registers),
    ):
        with contextlib.suppress(ProtocolError):
            decode()


@settings(max_examples=300, deadline=None)
@given(block=st.lists(st.integers(0, 0xFFFF), min_size=16, max_size=16))
def test_random_plausible_blocks_raise_only_remote_errors(block: list[int]) -> None:
    block[0], block[2] = mt.DEVICE_TYPE_WINDOW_TERMINAL, block[2] or 1
    block[6] %= mt.INPUT_QUEUE_SIZE + 1
    try:
        result = mt.decode_poll_block(3, block, mt.PollCursor(block[2], 0, 0))
    except RemoteProtocolError:
        return
    assert len(result.events) <= mt.INPUT_QUEUE_SIZE + 1


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_response_bytes_raise_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        mt.decode_response(data)


def test_truncated_and_bit_flipped_responses_are_detected() -> None:
    rng = random.Random(4)
    for cut in range(len(GOLDEN_POLL_ANSWER)):
        with pytest.raises(RemoteProtocolError):
            mt.decode_response(GOLDEN_POLL_ANSWER[:cut])
    for bit in range(8 * len(GOLDEN_POLL_ANSWER)):
        flipped = bytearray(GOLDEN_POLL_ANSWER)
        flipped[bit // 8] ^= 1 << (bit % 8)
        # CRC-16 catches every single-bit error; a flip in the header may change the size.
        with pytest.raises(RemoteProtocolError):
            mt.decode_response(bytes(flipped))
    for _ in range(200):
        flipped = bytearray(GOLDEN_POLL_ANSWER)
        flipped[rng.randrange(3, len(flipped))] ^= rng.randrange(1, 256)
        with pytest.raises(ChecksumError):
            mt.decode_response(bytes(flipped))


def test_exception_01_for_a_function_the_firmware_lacks() -> None:
    """Slave 3 refuses FC06 (write single register): ILLEGAL FUNCTION."""
    wire = mt.encode_exception_response(3, 0x06, mt.EXCEPTION_ILLEGAL_FUNCTION)
    assert wire == bytes.fromhex("03 86 01 22 60")  # CRC checked bit by bit
    assert mt.decode_response(wire) == mt.ExceptionResponse(3, 0x06, 1)
    assert 0x06 not in mt.SUPPORTED_FUNCTIONS

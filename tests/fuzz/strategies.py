"""Hypothesis strategies for hostile input: raw bytes, near-valid frames, valid frames.

Pure random bytes rarely get past a sync word or a checksum, so every wire
format gets a "near-valid" strategy too: real command prefixes and headers,
correct checksums with random contents, and valid frames with a few bytes
flipped. The valid-frame strategies feed the resynchronisation tests.
"""

from __future__ import annotations

from datetime import datetime

from hypothesis import strategies as st

from edge.devices.ticket import LARGE_PRINT_LAYOUT, NORMAL_LAYOUT, TicketContent, ticket_bytes
from firmware_protocols import escpos, led
from firmware_protocols import vendor_frame as vf
from firmware_protocols.crc import crc16_modbus_bytes, sum8
from firmware_protocols.terminal_events import (
    Key,
    KeyPressed,
    RatingPressed,
    RequestRating,
    ShowText,
)

# Chunk offsets: where a stream is cut before it is fed (covers every NEED_DATA path).
CUTS = st.lists(st.integers(0, 10_000), max_size=12)

# --------------------------------------------------------------------------- generic


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A valid byte string with a few bytes flipped, inserted or deleted, or truncated."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(data))))
        if op == "flip" and data:
            data[pos % len(data)] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and data:
            del data[pos % len(data)]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


def hostile(near_valid: st.SearchStrategy[bytes], max_size: int = 600) -> st.SearchStrategy[bytes]:
    """Random bytes, near-valid pieces, or a mix of both, concatenated."""
    piece = st.one_of(st.binary(max_size=64), near_valid, mutated(near_valid))
    joined = st.lists(piece, max_size=12).map(b"".join)
    return st.one_of(st.binary(max_size=max_size), joined)


# --------------------------------------------------------------------------- ESC/POS

_ESCPOS_PREFIXES = [
    bytes([escpos.ESC, c]) for c in (0x40, 0x61, 0x45, 0x64, 0x21, 0x2D, 0x32, 0x33, 0x20,
                                    0x4A, 0x4D, 0x74)
] + [
    bytes([escpos.GS, c]) for c in (0x21, 0x56, 0x42)
] + [
    b"\x1d\x28\x6b", b"\x1d\x28\x41", b"\x1c\x26", b"\x1c\x2e", b"\x1c\x21", b"\x1c\x2d",
    b"\x10\x04", b"\x10\x05", b"\n", b"\r", b"\t",
]  # fmt: skip

_GB18030_TEXT = st.text(alphabet="中山市政务服务中心号请到窗口A012 abc", max_size=12)


@st.composite
def _escpos_command(draw: st.DrawFn) -> bytes:
    prefix = draw(st.sampled_from(_ESCPOS_PREFIXES))
    if prefix.startswith(b"\x1d\x28"):  # GS ( X pL pH: a length that fits or lies
        body = draw(st.binary(max_size=24))
        size = draw(st.one_of(st.just(len(body)), st.integers(0, 0xFFFF)))
        return prefix + size.to_bytes(2, "little") + body
    return prefix + draw(st.binary(max_size=3))


escpos_pieces = st.one_of(
    _escpos_command(),
    _GB18030_TEXT.map(lambda text: text.encode("gb18030")),
    st.sampled_from(
        [
            escpos.encode(e)
            for e in (escpos.Init(), escpos.ChineseMode(True), escpos.Cut(), escpos.Feed(2))
        ]
    ),
)
escpos_stream = hostile(escpos_pieces)

_TICKET_TIME = datetime(2026, 11, 23, 9, 30)


@st.composite
def escpos_tickets(draw: st.DrawFn) -> bytes:
    """A valid queue ticket as the edge prints it."""
    p50 = draw(st.none() | st.integers(0, 300))
    content = TicketContent(
        hall_name=draw(st.sampled_from(["中山市政务服务中心", "三乡镇行政服务中心"])),
        service_name=draw(st.sampled_from(["综合受理", "社保医保", "Exit and entry"])),
        ticket_number=draw(st.from_regex(r"[A-H][0-9]{3}", fullmatch=True)),
        people_ahead=draw(st.integers(0, 500)),
        wait_p50_minutes=p50,
        wait_p90_minutes=None if p50 is None else p50 + draw(st.integers(0, 60)),
        issued_at=_TICKET_TIME,
        qr_payload=draw(
            st.text(alphabet="abcdefghijklmnop0123456789:/.-", min_size=1, max_size=80)
        ),
        footer_lines=tuple(draw(st.lists(_GB18030_TEXT, max_size=2))),
    )
    layout = draw(st.sampled_from([NORMAL_LAYOUT, LARGE_PRINT_LAYOUT]))
    return ticket_bytes(content, layout)


# --------------------------------------------------------------------------- LED

_GB2312_TEXT = st.text(alphabet="请到号窗口办理中心A0123456789 ", max_size=30)
_BYTE = st.integers(0, 255)
_SCREEN = st.integers(1, 0xFF)

led_events: st.SearchStrategy[led.LedEvent] = st.one_of(
    st.builds(led.Ping, _SCREEN, _BYTE),
    st.builds(led.Ack, _SCREEN, _BYTE),
    st.builds(led.Nack, _SCREEN, _BYTE, st.sampled_from(led.NackReason)),
    st.builds(led.Clear, _SCREEN, _BYTE, _BYTE),
    st.builds(led.SetBrightness, _SCREEN, _BYTE, st.integers(0, led.MAX_BRIGHTNESS)),
    st.builds(
        led.ShowText,
        _SCREEN,
        _BYTE,
        _GB2312_TEXT,
        st.integers(0, 0xFE),
        st.integers(0, 0xFE),
        st.sampled_from(led.Colour),
        st.sampled_from(led.Effect),
        st.integers(0, led.MAX_SPEED),
    ),
    st.builds(
        led.SetClock,
        _SCREEN,
        _BYTE,
        st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(
            lambda when: when.replace(microsecond=0)
        ),
    ),
)


@st.composite
def _led_raw_frame(draw: st.DrawFn) -> bytes:
    """A frame with a good CRC and any command and payload (the screen must refuse most)."""
    return led.encode_frame(draw(_BYTE), draw(_BYTE), draw(_BYTE), draw(st.binary(max_size=40)))


@st.composite
def _led_lying_header(draw: st.DrawFn) -> bytes:
    length = draw(st.integers(0, 0xFFFF))
    return b"\xaa\x55" + bytes([draw(_BYTE), draw(_BYTE), draw(_BYTE)]) + length.to_bytes(2, "big")


led_pieces = st.one_of(led_events.map(led.encode), _led_raw_frame(), _led_lying_header())
led_stream = hostile(led_pieces)

# --------------------------------------------------------------------------- vendor frame

_ADDRESS = st.integers(1, 247)
_SEQUENCE = st.integers(1, vf.SEQUENCE_MAX)
_TICKET = st.text(alphabet="ABCDEFGH0123456789-", min_size=1, max_size=vf.MAX_TICKET)

vendor_events: st.SearchStrategy[vf.VendorEvent] = st.one_of(
    st.builds(vf.Poll, _ADDRESS, _BYTE),
    st.builds(vf.CallDisplay, _ADDRESS, _TICKET, _BYTE),
    st.builds(vf.RecallDisplay, _ADDRESS, _TICKET),
    st.builds(RequestRating, _ADDRESS, _BYTE),
    st.builds(ShowText, _ADDRESS, _GB2312_TEXT),
    st.builds(vf.Idle, _ADDRESS, _BYTE),
    st.builds(vf.Ack, _ADDRESS, st.sampled_from(vf.Function)),
    st.builds(KeyPressed, _ADDRESS, st.sampled_from(Key), _SEQUENCE),
    st.builds(RatingPressed, _ADDRESS, st.integers(1, 5), _SEQUENCE),
)


@st.composite
def _vendor_raw_frame(draw: st.DrawFn) -> bytes:
    """Correct framing and sum, any address, function and data."""
    body = bytes([draw(_BYTE), draw(_BYTE)]) + draw(st.binary(max_size=vf.MAX_DATA))
    length = len(body)
    return bytes((0xFF, 0x68, length, length, 0x68)) + body + bytes((sum8(body), 0x16))


@st.composite
def _vendor_lying_header(draw: st.DrawFn) -> bytes:
    length = draw(_BYTE)
    other = draw(st.one_of(st.just(length), _BYTE))
    return bytes((0x68, length, other, 0x68))


vendor_pieces = st.one_of(vendor_events.map(vf.encode), _vendor_raw_frame(), _vendor_lying_header())
vendor_stream = hostile(vendor_pieces)

# --------------------------------------------------------------------------- Modbus RTU


@st.composite
def _rtu_response(draw: st.DrawFn) -> bytes:
    """A response-shaped frame with a good CRC: read, write or exception, sizes honest or not."""
    slave = draw(_BYTE)
    kind = draw(st.sampled_from(["read", "write", "exception", "other"]))
    if kind == "read":
        function = draw(st.sampled_from([0x03, 0x04]))
        data = draw(st.binary(max_size=250))
        count = draw(st.one_of(st.just(len(data)), _BYTE))
        head = bytes((slave, function, count)) + data
    elif kind == "write":
        head = bytes((slave, 0x10)) + draw(st.binary(min_size=4, max_size=4))
    elif kind == "exception":
        head = bytes((slave, draw(st.integers(0x80, 0xFF)), draw(_BYTE)))
    else:
        head = bytes((slave, draw(_BYTE))) + draw(st.binary(max_size=20))
    return head + crc16_modbus_bytes(head)


modbus_response = st.one_of(st.binary(max_size=300), _rtu_response(), mutated(_rtu_response()))
register_values = st.one_of(
    st.integers(0, 0xFFFF), st.sampled_from([0x4F44, 0, 1, 8, 9, 0xFFFF]), st.integers(-5, 70_000)
)

# --------------------------------------------------------------------------- JSON / MQTT

_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.sampled_from([0, 1, -1, 2**53 - 1, 2**53, 2**63, 4_102_444_800_001, 9999, 10_000]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "A012",
            "zs-sanxiang-01",
            "ticket.called",
            "叫号\x00",
            "\ud7ff",
            "x" * 300,
            "0b8f5f7e-3c2a-4d7e-9a51-6f1e2d3c4b5a",
            "online",
            "offline",
            "normal",
        ]
    ),
)
json_values = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found: list[tuple[object, ...]] = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def mutated_json(draw: st.DrawFn, doc: object) -> object:
    """``doc`` (a decoded JSON document) with 1-3 values replaced, deleted or added."""
    import copy

    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            continue
        *parents, last = path
        holder = doc
        for step in parents:
            holder = holder[step]  # type: ignore[index]
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "delete":
            del holder[last]  # type: ignore[attr-defined]
        elif op == "add" and isinstance(holder, dict):
            holder[draw(st.text(max_size=10))] = draw(json_values)
        else:
            holder[last] = draw(json_values)  # type: ignore[index]
    return doc


# --------------------------------------------------------------------------- TOML (edge config)

_TOML_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, -1, 27, 28, 65535, 65536, 9999, 10_000, 247, 248, 254, 255, 1441]),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            " ",
            "08:30",
            "24:00",
            "8:30",
            "17:30",
            "03:00",
            "Asia/Shanghai",
            "America",
            "Etc/GMT+3",
            "../etc",
            "UTC",
            "zs-hall",
            "A",
            "AB",
            "ABC",
            "a",
            "modbus",
            "vendor",
            "alsa",
            "wav",
            "mock",
            "normal",
            "priority",
            "requeue_once",
            "/dev/ttyUSB0",
            "x" * 300,
        ]
    ),
    st.datetimes(timezones=st.none() | st.timezones()).filter(lambda d: d.year > 1),
    st.dates(),
    st.times(),
)
toml_values = st.recursive(
    _TOML_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)


def toml_dumps(doc: dict[str, object]) -> str:
    """``doc`` as TOML, one ``key = value`` line per top-level key (tables inline).

    Enough for fuzzing: tomllib reads it back to the same dict (strings that TOML
    cannot carry, such as lone surrogates, make it invalid TOML, which is fine).
    """
    return "".join(f"{_toml_key(key)} = {_toml_value(value)}\n" for key, value in doc.items())


def _toml_key(key: str) -> str:
    import json

    return json.dumps(key)


def _toml_value(value: object) -> str:
    import json
    import math
    from datetime import date, time

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    raise TypeError(f"not a TOML value: {value!r}")


@st.composite
def mutated_toml_doc(draw: st.DrawFn, doc: dict[str, object]) -> str:
    """An example config with 1-3 values replaced, deleted or added, written as TOML."""
    import copy

    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            continue
        *parents, last = path
        holder: object = doc
        for step in parents:
            holder = holder[step]  # type: ignore[index]
        op = draw(st.sampled_from(["replace", "delete", "add", "copy"]))
        if op == "delete":
            del holder[last]  # type: ignore[attr-defined]
        elif op == "add" and isinstance(holder, dict):
            holder[draw(st.text(min_size=1, max_size=10))] = draw(toml_values)
        elif op == "copy" and isinstance(holder, list):  # a second window / service alike
            holder.append(copy.deepcopy(holder[last]))  # type: ignore[call-overload]
        else:
            holder[last] = draw(toml_values)  # type: ignore[index]
    return toml_dumps(doc)


@st.composite
def mutated_toml_text(draw: st.DrawFn, text: str) -> str:
    """An example config edited line by line or character by character, as a person might."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "value", "insert", "chars"]))
        if op == "delete":
            del lines[index]
        elif op == "duplicate":
            lines.insert(index, lines[index])
        elif op == "value" and "=" in lines[index]:
            key = lines[index].split("=", 1)[0]
            lines[index] = f"{key}= {_toml_value(draw(toml_values))}"
        elif op == "insert":
            key = draw(
                st.sampled_from(
                    [
                        "port",
                        "pin",
                        "number",
                        "services",
                        "id",
                        "prefix",
                        "open",
                        "timezone",
                        "sla_minutes",
                        "[site]",
                        "[[windows]]",
                        "extra",
                    ]
                )
            )
            line = key if key.startswith("[") else f"{key} = {_toml_value(draw(toml_values))}"
            lines.insert(index, line)
        else:
            chars = list(lines[index])
            pos = draw(st.integers(0, len(chars)))
            chars[pos : pos + draw(st.integers(0, 3))] = draw(st.text(max_size=3))
            lines[index] = "".join(chars)
    return "\n".join(lines) + "\n"

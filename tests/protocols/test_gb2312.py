"""GB2312 text for LED fonts: the punctuation input methods type, one encoder for every bus."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocols import led
from firmware_protocols import modbus_terminal as mt
from firmware_protocols import vendor_frame as vf
from firmware_protocols.errors import LocalProtocolError, RemoteProtocolError
from firmware_protocols.gb2312 import (
    LED_FONT_SUBSTITUTES,
    decode_gb2312,
    display_text_problem,
    encode_gb2312,
)
from firmware_protocols.terminal_events import ShowText

# What input methods and GB18030 systems produce, and what the LED font shows.
TYPED = [
    ("系统维护——暂停取号", bytes.fromhex("cfb5cdb3ceacbba4a1aaa1aad4ddcda3c8a1bac5")),
    ("张三·李四", bytes.fromhex("d5c5c8fda1a4c0eecbc4")),
    ("9:00–17:00", b"9:00-17:00"),
    ("温度−5℃", bytes.fromhex("cec2b6c82d35a1e6")),
    ("材料•身份证", bytes.fromhex("b2c4c1cfa1a4c9edb7ddd6a4")),
    ("8〜10人", bytes.fromhex("38a1ab3130c8cb")),
]


@pytest.mark.parametrize(("text", "wire"), TYPED)
def test_typed_punctuation_encodes_to_the_glyph_the_font_has(text: str, wire: bytes) -> None:
    assert encode_gb2312(text) == wire


@pytest.mark.parametrize("text", ["系统维护——暂停取号", "张三·李四", "请A012号到3号窗口"])
def test_the_dash_and_middle_dot_come_back_as_typed(text: str) -> None:
    assert decode_gb2312(encode_gb2312(text)) == text


@pytest.mark.parametrize("text", ["系统维护——暂停取号", "张三·李四"])
def test_every_bus_carries_the_typed_punctuation(text: str) -> None:
    """The LED frame, the vendor terminal frame and the Modbus LED registers alike."""
    frame = led.encode(led.ShowText(0x10, 1, text))
    assert led.decode_all(frame) == [led.ShowText(0x10, 1, text)]
    vendor = vf.encode(ShowText(3, text))
    decoder = vf.VendorDecoder()
    decoder.receive_data(vendor)
    assert decoder.next_event() == ShowText(3, text)
    assert mt.decode_led_text(mt.encode_led_text(text)) == text


def test_every_substitute_is_something_the_font_has() -> None:
    for typed, shown in LED_FONT_SUBSTITUTES.items():
        assert shown.encode("gb2312"), typed


@pytest.mark.parametrize(
    ("text", "named"),
    [("请乽号", "U+4E7D"), ("价格€5", "U+20AC"), ("排队😀", "U+1F600"), ("两行\n文字", "U+000A")],
)
def test_what_no_font_has_is_refused_by_name(text: str, named: str) -> None:
    with pytest.raises(LocalProtocolError, match=named.replace("+", "\\+")):
        encode_gb2312(text)
    problem = display_text_problem(text)
    assert problem is not None
    assert named in problem


def test_length_limit_counts_bytes_not_characters() -> None:
    assert encode_gb2312("中" * 32, 64)
    with pytest.raises(LocalProtocolError, match="66 bytes in GB2312, at most 64"):
        encode_gb2312("中" * 33, 64)


def test_bytes_outside_gb2312_from_a_device_are_its_fault() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_gb2312(b"\x81\x40")  # GBK, not GB2312


_GB2312_TEXT = st.characters(codec="gb2312", min_codepoint=0x20, blacklist_characters="\x7f")


@given(st.text(alphabet=_GB2312_TEXT, max_size=40))
def test_round_trip_of_any_gb2312_text(text: str) -> None:
    canonical = text.replace("\u2015", "\u2014").replace("\u30fb", "\u00b7")
    assert decode_gb2312(encode_gb2312(text)) == canonical

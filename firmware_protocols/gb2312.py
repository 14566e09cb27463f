"""GB2312 text for LED fonts: what the screens and window terminals can show.

LED controllers and window terminals carry 16×16 dot fonts of GB2312 (the 6,763
hanzi and the punctuation of rows 1–9). Text typed by staff, or sent by the
central, comes from input methods and GB18030 systems, and two GB2312
punctuation marks differ between those and Python's ``gb2312`` codec:

==========  ================  ==============================  ===============
GB2312      glyph             GB18030, CP936, input methods   Python gb2312
==========  ================  ==============================  ===============
``A1 AA``   dash ——           U+2014 EM DASH                  U+2015
``A1 A4``   middle dot ·      U+00B7 MIDDLE DOT               U+30FB
==========  ================  ==============================  ===============

So "系统维护——暂停取号" or "张三·李四" would be refused although the screen's
font has both marks. :data:`LED_FONT_SUBSTITUTES` maps these and the other
common look-alikes (en dash, minus, bullet, wave dash, no-break space) to the
glyph an LED font has; :func:`decode_gb2312` gives the GB18030 forms back, so
what a screen shows compares equal to what was sent.

Anything else outside GB2312 (rare hanzi such as 乽, emoji, €) is refused with
:class:`~firmware_protocols.errors.LocalProtocolError` naming the character:
a screen would show a blank or a '?' instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from .errors import LocalProtocolError, RemoteProtocolError

LED_FONT_SUBSTITUTES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "\u2014": "\u2015",  # EM DASH (what IMEs type for ——) -> A1AA
        "\u00b7": "\u30fb",  # MIDDLE DOT (张三·李四) -> A1A4
        "\u2013": "-",  # EN DASH (9:00–17:00)
        "\u2010": "-",  # HYPHEN
        "\u2011": "-",  # NON-BREAKING HYPHEN
        "\u2012": "-",  # FIGURE DASH
        "\u2212": "-",  # MINUS SIGN
        "\u2022": "\u30fb",  # BULLET -> the middle dot
        "\u2027": "\u30fb",  # HYPHENATION POINT (Taiwanese middle dot) -> the middle dot
        "\u2219": "\u30fb",  # BULLET OPERATOR
        "\u22c5": "\u30fb",  # DOT OPERATOR
        "\u301c": "\uff5e",  # WAVE DASH -> FULLWIDTH TILDE (A1AB)
        "\u00a0": " ",  # NO-BREAK SPACE
    }
)
"""Characters outside Python's gb2312 codec that an LED font shows as another glyph."""

# Python's gb2312 codec decodes these two GB2312 marks differently from GB18030.
_GB18030_FORMS: Final = str.maketrans({"\u2015": "\u2014", "\u30fb": "\u00b7"})


def encode_gb2312(text: str, max_bytes: int | None = None) -> bytes:
    """``text`` as GB2312 bytes for an LED font.

    Raises :class:`LocalProtocolError` for a control character (one line per
    call), a character no GB2312 font has (named in the message), or text
    longer than ``max_bytes`` once encoded.
    """
    out = bytearray()
    for char in text:
        if ord(char) < 0x20 or ord(char) == 0x7F:
            raise LocalProtocolError(
                f"control character U+{ord(char):04X} in display text {text!r}: one line each"
            )
        try:
            out += LED_FONT_SUBSTITUTES.get(char, char).encode("gb2312")
        except UnicodeEncodeError:
            raise LocalProtocolError(
                f"character {char!r} (U+{ord(char):04X}) in {text!r} is not in GB2312: "
                "the LED font cannot show it"
            ) from None
    if max_bytes is not None and len(out) > max_bytes:
        raise LocalProtocolError(
            f"text longer than the display holds: {len(out)} bytes in GB2312, at most {max_bytes}"
        )
    return bytes(out)


def decode_gb2312(data: bytes) -> str:
    """Text from GB2312 bytes a device sent (dash and middle dot in their GB18030 forms).

    Bytes that are not GB2312 are the device's fault: :class:`RemoteProtocolError`.
    """
    try:
        text = data.decode("gb2312")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"text is not valid GB2312: {exc.reason}") from None
    return text.translate(_GB18030_FORMS)


def display_text_problem(text: str, max_bytes: int | None = None) -> str | None:
    """Why ``text`` cannot be shown on an LED font, or None when it can."""
    try:
        encode_gb2312(text, max_bytes)
    except LocalProtocolError as exc:
        return str(exc)
    return None


__all__ = ["LED_FONT_SUBSTITUTES", "decode_gb2312", "display_text_problem", "encode_gb2312"]

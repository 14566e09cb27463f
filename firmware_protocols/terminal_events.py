"""Typed events of the window terminals, the same whichever bus carries them.

A window terminal is the keypad (叫号器), the rating pad (评价器) and the small
window LED of one service window. Two buses reach them: onedoor's own Modbus RTU
register map (:mod:`firmware_protocols.modbus_terminal`) and the common vendor
RS485 frame (:mod:`firmware_protocols.vendor_frame`). Both decode to the events
below, so the edge daemon handles one set of types.

``window_address`` is always the terminal's *bus address* (Modbus slave id or
vendor frame address); the site configuration maps addresses to windows.

Terminal → host: :class:`KeyPressed`, :class:`RatingPressed`, :class:`ReasonPressed`
(the follow-up page of a 差评: the number of a reason), and
:class:`InputsRefused` when a terminal's small queue of unacknowledged inputs
was full and it refused presses (it beeps at the person, who presses again).
Host → terminal: :class:`ShowText` (the window LED) and :class:`RequestRating`
(light the rating pad for the citizen).

Both buses use the same latching rule: a terminal keeps each key press and
rating as ``(sequence, code)`` in a small FIFO until the host acknowledges it,
so a slow poll cycle loses nothing and a retried read is harmless. The
``sequence`` is numbered by the terminal (keys, ratings and reasons share one
counter, so their order survives: a rating after 办结 belongs to the finished
ticket, a reason to the rating before it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .errors import LocalProtocolError, RemoteProtocolError


class Key(IntEnum):
    """Keys of the window keypad. The values are the key codes on both buses."""

    NEXT = 0x01  # 顺呼 / 下一位
    RECALL = 0x02  # 重呼
    TRANSFER = 0x03  # 转移
    NO_SHOW = 0x04  # 过号 (弃号)
    PAUSE = 0x05  # 暂停服务
    RESUME = 0x06  # 恢复服务
    FINISH = 0x07  # 办结
    SIGN_IN = 0x08  # 登录 / 签到
    SIGN_OUT = 0x09  # 退出 / 签退
    HELP_ACK = 0x0A  # 帮办应答 (acknowledge a 呼叫帮办 request)
    CALL = 0x0B  # 特呼: call the ticket number typed on the digit keys
    CASE = 0x0C  # 办件: the 办件编号 of the business system, typed on the digit keys
    CLEAR = 0x0E  # 清除 digit entry
    CONFIRM = 0x0F  # 确认 digit entry (transfer target window, sign-in staff number)
    DIGIT_0 = 0x10
    DIGIT_1 = 0x11
    DIGIT_2 = 0x12
    DIGIT_3 = 0x13
    DIGIT_4 = 0x14
    DIGIT_5 = 0x15
    DIGIT_6 = 0x16
    DIGIT_7 = 0x17
    DIGIT_8 = 0x18
    DIGIT_9 = 0x19

    @property
    def digit(self) -> int | None:
        """0..9 for a digit key, None otherwise."""
        if Key.DIGIT_0 <= self <= Key.DIGIT_9:
            return int(self) - Key.DIGIT_0
        return None


RATING_MIN = 1  # 非常不满意
RATING_MAX = 5  # 非常满意

RATING_LABELS: dict[int, str] = {
    5: "非常满意",
    4: "满意",
    3: "基本满意",
    2: "不满意",
    1: "非常不满意",
}
"""The 好差评 scale: 5 and 4 count as 好评, 2 and 1 as 差评."""

DEFAULT_REASONS: tuple[tuple[str, str], ...] = (
    ("attitude", "服务态度不好"),
    ("slow", "办理效率低、等候时间长"),
    ("not_told", "未一次性告知所需材料"),
    ("many_trips", "多次跑动仍未办结"),
    ("rules", "流程或材料要求不合理"),
    ("system", "系统或设备故障"),
    ("other", "其他"),
)
"""(code, label) of the 差评 follow-up reasons a pad offers when its site lists none."""

REASON_MIN = 1
REASON_MAX = 15
"""After a 差评 (不满意, 非常不满意) the pad shows its follow-up reasons, numbered from 1 as
the site config lists them (``ratings.reasons``); the citizen may press several."""

ADDRESS_MIN = 1
ADDRESS_MAX = 247  # the Modbus limit; the vendor frame uses the same range

RATING_REQUEST_MAX_SECONDS = 255
"""Longest a rating pad stays lit for one request (one byte on the vendor bus)."""


def check_address(address: int) -> int:
    if not ADDRESS_MIN <= address <= ADDRESS_MAX:
        raise LocalProtocolError(
            f"terminal address must be {ADDRESS_MIN}..{ADDRESS_MAX}, got {address}"
        )
    return address


def key_from_code(code: int) -> Key:
    """The :class:`Key` for a wire code; an unknown code is the device's fault."""
    try:
        return Key(code)
    except ValueError:
        raise RemoteProtocolError(f"unknown key code {code:#04x}") from None


def check_rating_timeout(seconds: int) -> int:
    if not 0 <= seconds <= RATING_REQUEST_MAX_SECONDS:
        raise LocalProtocolError(
            f"rating request timeout must be 0..{RATING_REQUEST_MAX_SECONDS} s, got {seconds}"
        )
    return seconds


def check_rating(value: int, error: type[LocalProtocolError | RemoteProtocolError]) -> int:
    if not RATING_MIN <= value <= RATING_MAX:
        raise error(f"rating must be {RATING_MIN}..{RATING_MAX}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class KeyPressed:
    """A staff member pressed a key on the window keypad."""

    window_address: int
    key: Key
    sequence: int


@dataclass(frozen=True, slots=True)
class RatingPressed:
    """A citizen pressed a rating key: 5 = 非常满意 … 1 = 非常不满意."""

    window_address: int
    value: int
    sequence: int

    @property
    def label(self) -> str:
        return RATING_LABELS[self.value]

    @property
    def is_good(self) -> bool:
        """好评 (4 or 5)."""
        return self.value >= 4

    @property
    def is_bad(self) -> bool:
        """差评 (1 or 2)."""
        return self.value <= 2


def check_reason(value: int, error: type[LocalProtocolError | RemoteProtocolError]) -> int:
    if not REASON_MIN <= value <= REASON_MAX:
        raise error(f"reason must be {REASON_MIN}..{REASON_MAX}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class ReasonPressed:
    """A citizen chose follow-up reason ``reason`` (1-based) after a 差评 on the rating pad."""

    window_address: int
    reason: int
    sequence: int


@dataclass(frozen=True, slots=True)
class InputsRefused:
    """The terminal's queue was full: it refused ``count`` presses or ratings.

    Nothing was latched for them (the terminal beeped instead), so there is no
    sequence to report; the daemon logs and counts it as a slow-bus symptom.
    """

    window_address: int
    count: int


@dataclass(frozen=True, slots=True)
class ShowText:
    """Host → terminal: show ``text`` on the window LED (GB2312 on the wire)."""

    window_address: int
    text: str


@dataclass(frozen=True, slots=True)
class RequestRating:
    """Host → terminal: light the rating pad for ``timeout_seconds``; 0 cancels."""

    window_address: int
    timeout_seconds: int


TerminalEvent = KeyPressed | RatingPressed | ReasonPressed | InputsRefused
"""What a terminal reports, whichever bus it is on."""

HostCommand = ShowText | RequestRating
"""What the host asks of a terminal, whichever bus it is on."""


__all__ = [
    "ADDRESS_MAX",
    "ADDRESS_MIN",
    "DEFAULT_REASONS",
    "RATING_LABELS",
    "RATING_MAX",
    "RATING_MIN",
    "RATING_REQUEST_MAX_SECONDS",
    "REASON_MAX",
    "REASON_MIN",
    "HostCommand",
    "InputsRefused",
    "Key",
    "KeyPressed",
    "RatingPressed",
    "ReasonPressed",
    "RequestRating",
    "ShowText",
    "TerminalEvent",
    "check_address",
    "check_rating",
    "check_rating_timeout",
    "check_reason",
    "key_from_code",
]

"""The 二代身份证 reader's serial protocol (the SAM frame of GA 467), as a sans-IO codec.

Every resident ID card reader sold in China carries a security module (SAM)
that speaks one frame, both ways, usually at 115200 baud 8N1 over RS232 or a
USB-serial bridge::

    AA AA AA 96 69   LEN (2, big endian)   body            CHK
    preamble         len(body) + 1         host:   CMD PARA data…
                                           reader: SW1 SW2 SW3 data…

``CHK`` is the XOR of the two ``LEN`` bytes and the body. The host sends one
command and the reader answers with one frame; ``SW3`` says how it went
(:class:`Status`). The commands a kiosk needs (:class:`Command`):

=================  =========  ====================================================
find card          20 01      ``9F`` a card is in the field, ``80`` none
select card        20 02      ``90`` selected, ``81`` could not select
read base info     30 01      ``90`` and: text length (2), photo length (2), the
                              256-byte text, the 1024-byte photo (WLT, kept as is)
SAM status         11 FF      ``90``: the module works
read SAM id        12 FF      ``90`` and 16 bytes (the module's serial number)
reset SAM          10 FF      ``90``
=================  =========  ====================================================

The text (:class:`IdCardText`) is GB 13000 (UCS-2, little endian) in fixed
fields padded with spaces: name 15 characters, gender code 1, nation code 2,
birth date ``YYYYMMDD``, address 35, ID number 18, issuing authority 15, valid
from and until (``YYYYMMDD`` or ``长期``). :func:`parse_base_info` checks what
it can: the ID number's ISO 7064 check digit, that it holds the birth date
field, real dates. The reader answers an ID number in clear; what the edge keeps
of it is the kiosk's business (``edge.id_card_kiosk`` keeps a salted hash).

Decoding: :class:`IdCardDecoder` (``receive_data`` / ``next_event`` /
:data:`~firmware_protocols.decoding.NEED_DATA`) works for either end
(``Direction``). Bytes before a preamble are skipped and counted. A frame whose
checksum is wrong raises :class:`~firmware_protocols.errors.ChecksumError`; a
length field beyond :data:`MAX_BODY` or a body too short for its direction
raises :class:`~firmware_protocols.errors.RemoteProtocolError`; either way
only the preamble is dropped first, so the next frame is found. A header
whose length promises more than ever comes is abandoned (with an error) as
soon as a complete, good frame follows it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass
from datetime import date
from typing import Final

from .decoding import NEED_DATA, NeedData
from .errors import ChecksumError, LocalProtocolError, RemoteProtocolError

PREAMBLE: Final = b"\xaa\xaa\xaa\x96\x69"
LENGTH_SIZE: Final = 2
HEADER_SIZE: Final = len(PREAMBLE) + LENGTH_SIZE
MAX_BODY: Final = 4096  # base info with fingerprints is 2,321 bytes: more is a corrupt length
BAUD: Final = 115200  # 8N1, the SAM's default
TEXT_SIZE: Final = 256
PHOTO_SIZE: Final = 1024  # the WLT-compressed photo
SAM_ID_SIZE: Final = 16
FIND_DATA: Final = b"\x00\x00\x00\x00"
SELECT_DATA: Final = b"\x00" * 8
LONG_TERM: Final = "长期"  # 有效期限 of a card that never expires


class Command(enum.Enum):
    """(CMD, PARA) of the commands onedoor sends."""

    RESET_SAM = (0x10, 0xFF)
    SAM_STATUS = (0x11, 0xFF)
    READ_SAM_ID = (0x12, 0xFF)
    FIND_CARD = (0x20, 0x01)
    SELECT_CARD = (0x20, 0x02)
    READ_BASE_INFO = (0x30, 0x01)


class Status(enum.IntEnum):
    """SW3 of a reader's answer (GA 467 names)."""

    OK = 0x90  # 操作成功
    NO_CONTENT = 0x91  # 证/卡中此项无内容
    FOUND = 0x9F  # 寻找证/卡成功
    BAD_CHECKSUM = 0x10  # 接收业务终端数据的校验和错
    BAD_LENGTH = 0x11  # 接收业务终端数据的长度错
    BAD_COMMAND = 0x21  # 接收业务终端的命令错误
    NOT_ALLOWED = 0x23  # 越权操作
    UNKNOWN_ERROR = 0x24  # 无法识别的错误
    CARD_AUTH_FAILED = 0x31  # 证/卡认证机具失败
    READER_AUTH_FAILED = 0x32  # 机具认证证/卡失败
    CHECK_FAILED = 0x33  # 信息验证错误
    LENGTH_ERROR = 0x3F  # 信息长度错误
    UNKNOWN_CARD = 0x40  # 无法识别的证/卡类型
    READ_FAILED = 0x41  # 读证/卡操作失败 (the card left during the read)
    NO_RANDOM = 0x47  # 取随机数失败
    SAM_SELF_TEST_FAILED = 0x60  # SAM_A自检失败
    SAM_NOT_AUTHORISED = 0x66  # SAM_A没经过授权
    NOT_FOUND = 0x80  # 寻找证/卡失败
    SELECT_FAILED = 0x81  # 选取证/卡失败


_STATUSES: Final = frozenset(status.value for status in Status)
_COMMANDS: Final = {command.value: command for command in Command}


class Direction(enum.Enum):
    TO_READER = "to_reader"  # host commands: CMD PARA data
    FROM_READER = "from_reader"  # answers: SW1 SW2 SW3 data


class Gender(enum.Enum):
    """GB/T 2261.1 codes."""

    UNKNOWN = "0"
    MALE = "1"
    FEMALE = "2"
    UNSPECIFIED = "9"


# --- events --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Request:
    """A host command."""

    command: Command
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    """A reader's answer: ``SW1 SW2 SW3`` and the data."""

    status: Status
    data: bytes = b""
    sw1: int = 0
    sw2: int = 0

    @property
    def ok(self) -> bool:
        return self.status in (Status.OK, Status.FOUND)


IdCardEvent = Request | Response


@dataclass(frozen=True, slots=True, repr=False)
class IdCardText:
    """The text of a resident ID card. Personal data: never logged (``repr`` withholds it)."""

    name: str
    gender: Gender
    nation: str  # GB 3304 two-digit code, "01" = 汉族
    birth: date
    address: str
    id_number: str
    authority: str  # 签发机关
    valid_from: date
    valid_until: date | None  # None: 长期

    def __repr__(self) -> str:
        return "IdCardText(<personal data withheld>)"


@dataclass(frozen=True, slots=True, repr=False)
class BaseInfo:
    text: IdCardText
    photo: bytes  # WLT as the card holds it (not decoded here)

    def __repr__(self) -> str:
        return f"BaseInfo(<personal data withheld>, photo={len(self.photo)} bytes)"


# --- ID numbers ----------------------------------------------------------------------------------
_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS: Final = "10X98765432"


def id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits (GB 11643)."""
    if len(first17) != 17 or not first17.isdigit() or not first17.isascii():
        raise ValueError(f"expected 17 digits, got {first17!r}")
    return _CHECK_CHARS[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def id_number_problem(id_number: str) -> str | None:
    """Why ``id_number`` is not a valid 18-character resident ID number, or None."""
    if len(id_number) != 18 or not id_number[:17].isdigit() or not id_number.isascii():
        return "an ID number is 17 digits and a check character"
    if id_number[17] != id_check_char(id_number[:17]):
        return "the ID number's check character is wrong"
    try:
        birth_of(id_number)
    except ValueError:
        return "the ID number holds no real birth date"
    return None


def birth_of(id_number: str) -> date:
    """The birth date digits 7-14 of an ID number hold (ValueError if none)."""
    return _yyyymmdd(id_number[6:14])


def booking_person_hash(salt: str, id_number: str) -> str:
    """Who booked (预约), without the ID number: HMAC-SHA256 of the number (upper case)
    under the city's booking salt, hex. The central keeps it whole; a site is sent, and
    a kiosk compares, its first 16 digits."""
    return hmac.new(salt.encode(), id_number.strip().upper().encode(),
                    hashlib.sha256).hexdigest()


def _yyyymmdd(text: str) -> date:
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"not a YYYYMMDD date: {text!r}")
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


# --- encoding ------------------------------------------------------------------------------------
def _checksum(length_and_body: bytes | bytearray) -> int:
    value = 0
    for byte in length_and_body:
        value ^= byte
    return value


def encode_frame(body: bytes) -> bytes:
    """Preamble, length, body, checksum."""
    if not 1 <= len(body) < MAX_BODY:
        raise LocalProtocolError(f"frame body must be 1..{MAX_BODY - 1} bytes, got {len(body)}")
    framed = (len(body) + 1).to_bytes(LENGTH_SIZE, "big") + body
    return PREAMBLE + framed + bytes([_checksum(framed)])


def encode(event: IdCardEvent) -> bytes:
    """The frame of a command (host side) or an answer (the simulated reader)."""
    if isinstance(event, Request):
        cmd, para = event.command.value
        return encode_frame(bytes([cmd, para]) + event.data)
    return encode_frame(bytes([event.sw1, event.sw2, int(event.status)]) + event.data)


def encode_request(command: Command) -> bytes:
    return encode(Request(command))


def _field(value: str, chars: int, what: str) -> bytes:
    if len(value) > chars:
        raise LocalProtocolError(f"{what} has {len(value)} characters, at most {chars}")
    try:
        return value.ljust(chars).encode("utf-16-le")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} {value!r} is not UCS-2 text") from None


def encode_text(text: IdCardText) -> bytes:
    """The 256-byte text field of a card (for the simulated reader)."""
    problem = id_number_problem(text.id_number)
    if problem is not None:
        raise LocalProtocolError(problem)
    until = LONG_TERM if text.valid_until is None else text.valid_until.strftime("%Y%m%d")
    raw = (
        _field(text.name, 15, "name")
        + _field(text.gender.value, 1, "gender")
        + _field(text.nation, 2, "nation")
        + _field(text.birth.strftime("%Y%m%d"), 8, "birth date")
        + _field(text.address, 35, "address")
        + _field(text.id_number, 18, "ID number")
        + _field(text.authority, 15, "authority")
        + _field(text.valid_from.strftime("%Y%m%d"), 8, "valid from")
        + _field(until, 8, "valid until")
    )
    return raw + b"\x20\x00" * ((TEXT_SIZE - len(raw)) // 2)


def encode_base_info(text: IdCardText, photo: bytes = bytes(PHOTO_SIZE)) -> bytes:
    """The data of a successful READ_BASE_INFO answer."""
    raw = encode_text(text)
    return len(raw).to_bytes(2, "big") + len(photo).to_bytes(2, "big") + raw + photo


# --- decoding ------------------------------------------------------------------------------------
def _text_field(raw: bytes, start: int, chars: int) -> str:
    return raw[start : start + 2 * chars].decode("utf-16-le").rstrip(" \x00")


def parse_text(raw: bytes) -> IdCardText:
    """The card's text field; :class:`RemoteProtocolError` when it is not a resident ID text."""
    if len(raw) != TEXT_SIZE:
        raise RemoteProtocolError(f"card text is {len(raw)} bytes, expected {TEXT_SIZE}")
    try:
        fields = [
            _text_field(raw, start, chars)
            for start, chars in ((0, 15), (30, 1), (32, 2), (36, 8), (52, 35), (122, 18),
                                 (158, 15), (188, 8), (204, 8))
        ]
    except UnicodeDecodeError:
        raise RemoteProtocolError("card text is not UCS-2") from None
    name, gender, nation, birth, address, id_number, authority, since, until = fields
    problem = id_number_problem(id_number)
    if problem is not None:
        raise RemoteProtocolError(f"card text: {problem}")
    try:
        born = _yyyymmdd(birth)
        valid_from = _yyyymmdd(since)
        valid_until = None if until == LONG_TERM else _yyyymmdd(until)
        sex = Gender(gender)
    except ValueError as exc:
        raise RemoteProtocolError(f"card text: {exc}") from None
    if born != birth_of(id_number):
        raise RemoteProtocolError("card text: the birth date and the ID number disagree")
    if not name or not nation.isdigit():
        raise RemoteProtocolError("card text: no name or no nation code")
    return IdCardText(name, sex, nation, born, address, id_number, authority, valid_from,
                      valid_until)


def parse_base_info(data: bytes) -> BaseInfo:
    """The data of a READ_BASE_INFO answer: text and photo lengths, then both."""
    if len(data) < 4:
        raise RemoteProtocolError(f"base info of {len(data)} bytes has no lengths")
    text_size, photo_size = int.from_bytes(data[:2], "big"), int.from_bytes(data[2:4], "big")
    if len(data) != 4 + text_size + photo_size:
        raise RemoteProtocolError(
            f"base info of {len(data)} bytes, its lengths say {4 + text_size + photo_size}"
        )
    return BaseInfo(parse_text(data[4 : 4 + text_size]), data[4 + text_size :])


def _parse_body(direction: Direction, body: bytes) -> IdCardEvent:
    if direction is Direction.TO_READER:
        if len(body) < 2:
            raise RemoteProtocolError(f"command body of {len(body)} bytes: needs CMD and PARA")
        command = _COMMANDS.get((body[0], body[1]))
        if command is None:
            raise RemoteProtocolError(f"unknown command {body[0]:02X} {body[1]:02X}")
        return Request(command, bytes(body[2:]))
    if len(body) < 3:
        raise RemoteProtocolError(f"answer body of {len(body)} bytes: needs SW1 SW2 SW3")
    if body[2] not in _STATUSES:
        raise RemoteProtocolError(f"unknown status SW3 {body[2]:#04x}")
    return Response(Status(body[2]), bytes(body[3:]), body[0], body[1])


class IdCardDecoder:
    """Resynchronising frame reader for one direction of the reader's line."""

    def __init__(self, direction: Direction = Direction.FROM_READER) -> None:
        self.direction = direction
        self._buf = bytearray()
        self.skipped_bytes = 0

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

    def _drop(self, n: int) -> None:
        del self._buf[:n]
        self.skipped_bytes += n

    def _later_frame(self) -> int | None:
        """Where a complete frame with a good checksum starts after position 0, if one does."""
        buf = self._buf
        start = buf.find(PREAMBLE, 1)
        while start >= 0:
            if len(buf) >= start + HEADER_SIZE:
                length = int.from_bytes(buf[start + len(PREAMBLE) : start + HEADER_SIZE], "big")
                end = start + HEADER_SIZE + length
                complete = 2 <= length <= MAX_BODY and len(buf) >= end
                if complete and _checksum(buf[start + len(PREAMBLE) : end - 1]) == buf[end - 1]:
                    return start
            start = buf.find(PREAMBLE, start + 1)
        return None

    def next_event(self) -> IdCardEvent | NeedData:
        buf = self._buf
        start = buf.find(PREAMBLE)
        if start < 0:
            # Keep a tail that may be the start of a preamble.
            keep = next((n for n in range(len(PREAMBLE) - 1, 0, -1)
                         if buf.endswith(PREAMBLE[:n])), 0)
            self._drop(len(buf) - keep)
            return NEED_DATA
        self._drop(start)
        if len(buf) < HEADER_SIZE:
            return NEED_DATA
        length = int.from_bytes(buf[len(PREAMBLE) : HEADER_SIZE], "big")
        if not 2 <= length <= MAX_BODY:
            self._drop(len(PREAMBLE))
            raise RemoteProtocolError(f"length field {length} outside 2..{MAX_BODY}")
        total = HEADER_SIZE + length
        if len(buf) < total:
            later = self._later_frame()
            if later is None:
                return NEED_DATA
            self._drop(later)  # a header that promised more than ever came (a bit flipped)
            raise RemoteProtocolError(f"frame truncated: length {length}, a later frame follows")
        framed = bytes(buf[len(PREAMBLE) : total - 1])
        expected, received = _checksum(framed), buf[total - 1]
        if expected != received:
            self._drop(len(PREAMBLE))
            raise ChecksumError("ID card reader frame XOR", expected=expected, actual=received)
        del buf[:total]
        return _parse_body(self.direction, framed[LENGTH_SIZE:])


__all__ = [
    "BAUD",
    "FIND_DATA",
    "LONG_TERM",
    "MAX_BODY",
    "PHOTO_SIZE",
    "PREAMBLE",
    "SAM_ID_SIZE",
    "SELECT_DATA",
    "TEXT_SIZE",
    "BaseInfo",
    "Command",
    "Direction",
    "Gender",
    "IdCardDecoder",
    "IdCardEvent",
    "IdCardText",
    "Request",
    "Response",
    "Status",
    "birth_of",
    "booking_person_hash",
    "encode",
    "encode_base_info",
    "encode_frame",
    "encode_request",
    "encode_text",
    "id_check_char",
    "id_number_problem",
    "parse_base_info",
    "parse_text",
]

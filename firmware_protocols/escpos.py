"""ESC/POS for onedoor's ticket printers, as a pure sans-IO codec.

Three parts, none of which touches a port or a clock:

* **Encoder.** :func:`encode` turns one event into the bytes of its commands,
  :func:`encode_all` a list of them. What a ticket says and how it is laid out
  is the edge's business (``edge.devices.ticket`` builds the events); the codec
  is about bytes only.
* **Status and identity.** :func:`encode_status_query` builds ``DLE EOT n``;
  :func:`parse_status_reply` checks and decodes the one-byte answer and
  :meth:`PrinterHealth.from_replies` folds the answers to n = 1, 2, 4 (and
  optionally 3) into online / cover open / paper low / paper out / error.
  ``GS I n`` (:class:`PrinterIdQuery`) asks maker, model, firmware or serial
  number; :class:`PrinterIdDecoder` reads the ``_`` text ``NUL`` answers.
* **Decoder.** :class:`EscPosDecoder` (``receive_data`` / ``next_event`` /
  :data:`NEED_DATA`) turns a printer's input stream back into events; the
  virtual printer uses it.

Text is GB18030 in Chinese mode (``FS &``), which every Chinese-market
ESC/POS printer implements; outside Chinese mode bytes above 0x7F are the
printer's single-byte code page (PC437 on power-up), so Chinese sent without
``FS &`` decodes as the mojibake a real printer would print.

Every event encodes on its own, with no hidden encoder state: a :class:`Text`
carries its alignment, emphasis and size and is sent as ``ESC a``, ``ESC E``,
``GS !``, the text bytes and ``LF``. That costs nine bytes a line and makes
any event list replayable from any point.

Errors (see :mod:`firmware_protocols.errors`): the encoder raises
:class:`LocalProtocolError` for things it cannot send: text GB18030 lacks, a
QR payload past the symbol's real capacity (:func:`qr_capacity`) or holding
control bytes (:func:`check_qr_payload`). The decoder raises
:class:`RemoteProtocolError` from :meth:`EscPosDecoder.next_event` for an
unknown or malformed command *after* skipping the offending bytes, so the
caller counts it and simply calls ``next_event()`` again (a real printer
prints garbage and carries on, too).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from .decoding import NEED_DATA, NeedData
from .errors import LocalProtocolError, RemoteProtocolError

# --- Control bytes (Epson ESC/POS Application Programming Guide names) -------------------------
LF: Final = 0x0A  # LF    Print and line feed
CR: Final = 0x0D  # CR    Print and carriage return (ignored when auto line feed is off)
HT: Final = 0x09  # HT    Horizontal tab
DLE: Final = 0x10  # DLE   prefix of real-time commands
EOT: Final = 0x04  # EOT   (DLE EOT n: Transmit real-time status)
DLE_ENQ: Final = 0x05  # ENQ  (DLE ENQ n: Send real-time request to printer; not modelled)
ESC: Final = 0x1B  # ESC   prefix
FS: Final = 0x1C  # FS    prefix of the Kanji / Chinese commands
GS: Final = 0x1D  # GS    prefix

# --- Second bytes after ESC ----------------------------------------------------------------------
ESC_INIT: Final = 0x40  # ESC @   Initialize printer
ESC_ALIGN: Final = 0x61  # ESC a n Select justification
ESC_BOLD: Final = 0x45  # ESC E n Turn emphasized mode on/off
ESC_FEED_LINES: Final = 0x64  # ESC d n Print and feed n lines
ESC_PRINT_MODE: Final = 0x21  # ESC ! n Select print mode(s) (bit3 bold, bit4 2x high, bit5 2x wide)
ESC_UNDERLINE: Final = 0x2D  # ESC - n Turn underline mode on/off          (accepted, not modelled)
ESC_LINE_SPACING_DEFAULT: Final = 0x32  # ESC 2 Select default line spacing (accepted, not modelled)
ESC_LINE_SPACING: Final = 0x33  # ESC 3 n Set line spacing                 (accepted, not modelled)
ESC_RIGHT_SPACING: Final = 0x20  # ESC SP n Set right-side character spacing (accepted)
ESC_FEED_DOTS: Final = 0x4A  # ESC J n Print and feed paper n dots        (accepted, not modelled)
ESC_FONT: Final = 0x4D  # ESC M n Select character font                 (accepted, not modelled)
ESC_CODE_TABLE: Final = 0x74  # ESC t n Select character code table    (accepted, not modelled)

# --- Second bytes after GS -----------------------------------------------------------------------
GS_CHAR_SIZE: Final = 0x21  # GS ! n  Select character size
GS_CUT: Final = 0x56  # GS V m [n] Select cut mode and cut paper
GS_PAREN_K: Final = 0x28  # GS ( k  2D codes (followed by 'k')
GS_PAREN_K_2: Final = 0x6B  # the 'k' of GS ( k
GS_REVERSE: Final = 0x42  # GS B n  Turn white/black reverse on/off   (accepted, not modelled)
GS_PRINTER_ID: Final = 0x49  # GS I n  Transmit printer ID
PRINTER_ID_HEADER: Final = 0x5F  # the "_" before a GS I text answer, which ends in NUL

# --- Second bytes after FS -----------------------------------------------------------------------
FS_CHINESE_ON: Final = 0x26  # FS &  Select Kanji (Chinese) character mode
FS_CHINESE_OFF: Final = 0x2E  # FS .  Cancel Kanji (Chinese) character mode
FS_CHINESE_PRINT_MODE: Final = 0x21  # FS ! n Select print mode for Kanji  (accepted, not modelled)
FS_CHINESE_UNDERLINE: Final = 0x2D  # FS - n Kanji underline on/off        (accepted, not modelled)

# --- GS ( k, symbol type cn = 49: QR Code ------------------------------------------------------
QR_CN: Final = 49  # cn = 49 selects QR Code
QR_FN_SELECT_MODEL: Final = 65  # <Function 165> Select the model
QR_FN_MODULE_SIZE: Final = 67  # <Function 167> Set the size of module
QR_FN_ERROR_CORRECTION: Final = 69  # <Function 169> Select the error correction level
QR_FN_STORE: Final = 80  # <Function 180> Store the data in the symbol storage area
QR_FN_PRINT: Final = 81  # <Function 181> Print the symbol data in the symbol storage area
QR_FN_TRANSMIT_SIZE: Final = 82  # <Function 182> Transmit the size information (not modelled)
QR_M: Final = 48  # the m parameter of functions 180 and 181

# --- GS V cut modes ------------------------------------------------------------------------------
CUT_FULL: Final = 0x00  # GS V 0   Full cut           (also 48 = '0')
CUT_PARTIAL: Final = 0x01  # GS V 1   Partial cut        (also 49 = '1')
CUT_FULL_AFTER_FEED: Final = 0x41  # GS V 65 n Feed n dots to the cut position, full cut
CUT_PARTIAL_AFTER_FEED: Final = 0x42  # GS V 66 n Feed n dots to the cut position, partial cut

MAX_QR_DATA: Final = 7089  # Function 180: 1 <= k <= 7089 bytes (what the storage area takes)
MAX_LINE_BYTES: Final = 4096  # decoder bound on one line of text (a 80 mm line holds 48)


class Align(enum.IntEnum):
    """``ESC a n`` justification (n = 0/48, 1/49, 2/50)."""

    LEFT = 0
    CENTER = 1
    RIGHT = 2


class QrModel(enum.IntEnum):
    """``GS ( k`` <Function 165> n1."""

    MODEL_1 = 49
    MODEL_2 = 50
    MICRO = 51


class QrErrorCorrection(enum.IntEnum):
    """``GS ( k`` <Function 169> n: recovers about 7 %, 15 %, 25 %, 30 %."""

    L = 48
    M = 49
    Q = 50
    H = 51


# What the largest symbol of each model holds (ISO/IEC 18004): numeric, alphanumeric and
# 8-bit byte data. A printer stores up to 7089 bytes (Function 180) but prints *nothing* for
# data past the symbol's capacity. Model 1 is documented here for level L only; micro QR
# has no level H.
_QR_CAPACITY: Final[dict[tuple[QrModel, QrErrorCorrection], tuple[int, int, int]]] = {
    (QrModel.MODEL_2, QrErrorCorrection.L): (7089, 4296, 2953),
    (QrModel.MODEL_2, QrErrorCorrection.M): (5596, 3391, 2331),
    (QrModel.MODEL_2, QrErrorCorrection.Q): (3993, 2420, 1663),
    (QrModel.MODEL_2, QrErrorCorrection.H): (3057, 1852, 1273),
    (QrModel.MODEL_1, QrErrorCorrection.L): (1167, 707, 486),
    (QrModel.MICRO, QrErrorCorrection.L): (35, 21, 15),
    (QrModel.MICRO, QrErrorCorrection.M): (30, 18, 13),
    (QrModel.MICRO, QrErrorCorrection.Q): (21, 13, 9),
}
_QR_ALPHANUMERIC: Final = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def qr_capacity(payload: bytes, model: QrModel, level: QrErrorCorrection) -> int:
    """How many bytes like ``payload`` one symbol of ``model`` at ``level`` holds (the
    numeric or alphanumeric capacity when every byte fits that mode, else 8-bit bytes)."""
    try:
        numeric, alphanumeric, octets = _QR_CAPACITY[model, level]
    except KeyError:
        raise LocalProtocolError(
            f"QR {model.name} has no documented capacity at level {level.name}: use MODEL_2"
        ) from None
    if payload.isdigit():
        return numeric
    if all(byte in _QR_ALPHANUMERIC for byte in payload):
        return alphanumeric
    return octets


def check_qr_payload(payload: bytes, model: QrModel, level: QrErrorCorrection) -> None:
    """Refuse QR data a printer would not print whole, or would act on.

    A byte below 0x20 (or 0x7F) is refused: printers scan every byte they receive for
    real-time commands, so a ``DLE EOT`` inside QR data is answered as a status query
    (and a stray status byte confuses the status exchange that follows).
    """
    if not payload:
        raise LocalProtocolError("QR payload is empty")
    for index, byte in enumerate(payload):
        if byte < 0x20 or byte == 0x7F:
            raise LocalProtocolError(
                f"control byte {byte:#04x} at {index} in QR data: a printer may execute it"
            )
    capacity = qr_capacity(payload, model, level)
    if len(payload) > capacity:
        raise LocalProtocolError(
            f"QR payload of {len(payload)} bytes exceeds the {capacity} a {model.name} symbol "
            f"holds at level {level.name}: the printer would print nothing"
        )


@dataclass(frozen=True, slots=True)
class CharSize:
    """Character magnification of ``GS !``: 1..8 times in each direction."""

    width: int = 1
    height: int = 1

    def __post_init__(self) -> None:
        for name, value in (("width", self.width), ("height", self.height)):
            if not 1 <= value <= 8:
                raise LocalProtocolError(f"character {name} must be 1..8, got {value}")

    def to_byte(self) -> int:
        """The n of ``GS ! n``: width - 1 in bits 4-6, height - 1 in bits 0-2."""
        return (self.width - 1) << 4 | (self.height - 1)


NORMAL_SIZE: Final = CharSize(1, 1)


# --- Events ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Init:
    """``ESC @``: clear the print buffer, reset modes to power-on settings."""


@dataclass(frozen=True, slots=True)
class ChineseMode:
    """``FS &`` (enabled) or ``FS .``: multi-byte GB18030 text on or off."""

    enabled: bool


@dataclass(frozen=True, slots=True)
class Text:
    """One printed line (``newline=True``) or a run of it with one format.

    Encoded as ``ESC a``, ``ESC E``, ``GS !``, the text, then ``LF`` when
    ``newline``. Non-ASCII text must follow ``ChineseMode(True)``.
    """

    line: str
    size: CharSize = NORMAL_SIZE
    bold: bool = False
    align: Align = Align.LEFT
    newline: bool = True


@dataclass(frozen=True, slots=True)
class QrCode:
    """A native QR code: <Function 165, 167, 169, 180, 181> of ``GS ( k``."""

    payload: bytes
    module_size: int = 6
    error_correction: QrErrorCorrection = QrErrorCorrection.M
    model: QrModel = QrModel.MODEL_2

    def __post_init__(self) -> None:
        if not 1 <= len(self.payload) <= MAX_QR_DATA:
            raise LocalProtocolError(
                f"QR payload must be 1..{MAX_QR_DATA} bytes, got {len(self.payload)}"
            )
        if not 1 <= self.module_size <= 16:
            raise LocalProtocolError(f"QR module size must be 1..16, got {self.module_size}")


@dataclass(frozen=True, slots=True)
class Feed:
    """``ESC d n``: print the buffer and feed ``lines`` lines (0..255)."""

    lines: int

    def __post_init__(self) -> None:
        if not 0 <= self.lines <= 255:
            raise LocalProtocolError(f"feed must be 0..255 lines, got {self.lines}")


@dataclass(frozen=True, slots=True)
class Cut:
    """``GS V``: cut (``partial`` leaves a hinge); ``feed_dots`` feeds to the cutter first."""

    partial: bool = False
    feed_dots: int | None = None

    def __post_init__(self) -> None:
        if self.feed_dots is not None and not 0 <= self.feed_dots <= 255:
            raise LocalProtocolError(f"cut feed must be 0..255 dots, got {self.feed_dots}")


class StatusRequest(enum.IntEnum):
    """The n of ``DLE EOT n``."""

    PRINTER = 1  # printer status
    OFFLINE_CAUSE = 2  # offline cause status
    ERROR_CAUSE = 3  # error cause status
    PAPER_SENSOR = 4  # roll paper sensor status


@dataclass(frozen=True, slots=True)
class StatusQuery:
    """``DLE EOT n``: a real-time status request; the printer answers one byte."""

    request: StatusRequest


class PrinterInfo(enum.IntEnum):
    """The n of ``GS I n`` for the text answers (``_`` text ``NUL``)."""

    FIRMWARE = 65  # firmware version
    MAKER = 66  # maker name
    MODEL = 67  # model name
    SERIAL = 68  # serial number


@dataclass(frozen=True, slots=True)
class PrinterIdQuery:
    """``GS I n``: transmit one item of the printer's identity (``onedoor edge probe``)."""

    info: PrinterInfo


@dataclass(frozen=True, slots=True)
class PrinterId:
    """The answer to ``GS I n``: ``5F``, the text (ASCII), ``00``."""

    text: str


@dataclass(frozen=True, slots=True)
class Unhandled:
    """A well-formed command the decoder knows the length of but does not model."""

    command: bytes


EscPosEvent = (
    Init | ChineseMode | Text | QrCode | Feed | Cut | StatusQuery | PrinterIdQuery | Unhandled
)


# --- Encoder -----------------------------------------------------------------------------------
def encode_text(line: str) -> bytes:
    """The GB18030 bytes of one printed line (LocalProtocolError for a control character
    or a character GB18030 lacks)."""
    for char in line:
        if ord(char) < 0x20 or ord(char) == 0x7F:
            raise LocalProtocolError(
                f"control character U+{ord(char):04X} in ticket text {line!r}; "
                "send one Text per line"
            )
    try:
        return line.encode("gb18030")
    except UnicodeEncodeError as exc:
        bad = line[exc.start]
        raise LocalProtocolError(
            f"character {bad!r} (U+{ord(bad):04X}) cannot be encoded in GB18030"
        ) from None


def _gs_paren_k(fn: int, params: bytes) -> bytes:
    size = 2 + len(params)  # cn, fn, params
    return bytes([GS, GS_PAREN_K, GS_PAREN_K_2, size & 0xFF, size >> 8, QR_CN, fn]) + params


def encode(event: EscPosEvent) -> bytes:
    """The ESC/POS bytes of one event."""
    match event:
        case Init():
            return bytes([ESC, ESC_INIT])
        case ChineseMode(enabled=enabled):
            return bytes([FS, FS_CHINESE_ON if enabled else FS_CHINESE_OFF])
        case Text(line=line, size=size, bold=bold, align=align, newline=newline):
            return (
                bytes([ESC, ESC_ALIGN, int(align), ESC, ESC_BOLD, int(bold)])
                + bytes([GS, GS_CHAR_SIZE, size.to_byte()])
                + encode_text(line)
                + (bytes([LF]) if newline else b"")
            )
        case QrCode(payload=payload, module_size=module, error_correction=ec, model=model):
            check_qr_payload(payload, model, ec)
            return (
                _gs_paren_k(QR_FN_SELECT_MODEL, bytes([int(model), 0]))
                + _gs_paren_k(QR_FN_MODULE_SIZE, bytes([module]))
                + _gs_paren_k(QR_FN_ERROR_CORRECTION, bytes([int(ec)]))
                + _gs_paren_k(QR_FN_STORE, bytes([QR_M]) + payload)
                + _gs_paren_k(QR_FN_PRINT, bytes([QR_M]))
            )
        case Feed(lines=lines):
            return bytes([ESC, ESC_FEED_LINES, lines])
        case Cut(partial=partial, feed_dots=None):
            return bytes([GS, GS_CUT, CUT_PARTIAL if partial else CUT_FULL])
        case Cut(partial=partial, feed_dots=int(dots)):
            mode = CUT_PARTIAL_AFTER_FEED if partial else CUT_FULL_AFTER_FEED
            return bytes([GS, GS_CUT, mode, dots])
        case StatusQuery(request=request):
            return encode_status_query(request)
        case PrinterIdQuery(info=info):
            return bytes([GS, GS_PRINTER_ID, int(info)])
        case Unhandled(command=command):
            return command
    raise LocalProtocolError(f"not an ESC/POS event: {event!r}")  # pragma: no cover


def encode_all(events: Iterable[EscPosEvent]) -> bytes:
    """The concatenated bytes of several events."""
    return b"".join(encode(event) for event in events)


# --- Status ------------------------------------------------------------------------------------
_FIXED_MASK: Final = 0b1001_0011  # bits 0, 1, 4, 7 are fixed in every DLE EOT reply
_FIXED_VALUE: Final = 0b0001_0010  # bit 1 and bit 4 set, bits 0 and 7 clear


def encode_status_query(request: StatusRequest | int) -> bytes:
    """``DLE EOT n`` for n = 1 (printer), 2 (offline cause), 3 (error cause), 4 (paper)."""
    try:
        n = StatusRequest(request)
    except ValueError:
        raise LocalProtocolError(f"DLE EOT n must be 1..4, got {request}") from None
    return bytes([DLE, EOT, n])


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """Reply to ``DLE EOT 1``."""

    offline: bool  # bit 3
    drawer_pin3_high: bool = False  # bit 2
    waiting_online_recovery: bool = False  # bit 5
    feed_button_pressed: bool = False  # bit 6

    def to_byte(self) -> int:
        return (
            _FIXED_VALUE
            | self.drawer_pin3_high << 2
            | self.offline << 3
            | self.waiting_online_recovery << 5
            | self.feed_button_pressed << 6
        )


@dataclass(frozen=True, slots=True)
class OfflineCause:
    """Reply to ``DLE EOT 2``."""

    cover_open: bool  # bit 2
    paper_end_stop: bool  # bit 5: printing stopped because the paper ran out
    error: bool  # bit 6
    feed_button_feeding: bool = False  # bit 3

    def to_byte(self) -> int:
        return (
            _FIXED_VALUE
            | self.cover_open << 2
            | self.feed_button_feeding << 3
            | self.paper_end_stop << 5
            | self.error << 6
        )


@dataclass(frozen=True, slots=True)
class ErrorCause:
    """Reply to ``DLE EOT 3``."""

    autocutter_error: bool  # bit 3
    unrecoverable_error: bool  # bit 5
    auto_recoverable_error: bool  # bit 6
    recoverable_error: bool = False  # bit 2 (mechanical error on some models)

    def to_byte(self) -> int:
        return (
            _FIXED_VALUE
            | self.recoverable_error << 2
            | self.autocutter_error << 3
            | self.unrecoverable_error << 5
            | self.auto_recoverable_error << 6
        )


@dataclass(frozen=True, slots=True)
class PaperSensor:
    """Reply to ``DLE EOT 4``; each condition is reported on two bits (two sensors)."""

    near_end: bool  # bits 2-3
    paper_out: bool  # bits 5-6

    def to_byte(self) -> int:
        return (
            _FIXED_VALUE | (0b1100 if self.near_end else 0) | (0b110_0000 if self.paper_out else 0)
        )


StatusReply = PrinterStatus | OfflineCause | ErrorCause | PaperSensor


def encode_status_reply(reply: StatusReply) -> bytes:
    """The one byte a printer answers (used by the virtual printer)."""
    return bytes([reply.to_byte()])


def parse_status_reply(request: StatusRequest | int, reply: bytes | int) -> StatusReply:
    """Decode the one-byte answer to ``DLE EOT request``.

    Raises :class:`RemoteProtocolError` when the reply is not exactly one byte
    or its fixed bits (1 and 4 set, 0 and 7 clear) are wrong, which is what
    an Automatic Status Back packet or line noise looks like.
    """
    try:
        kind = StatusRequest(request)
    except ValueError:
        raise LocalProtocolError(f"DLE EOT n must be 1..4, got {request}") from None
    if isinstance(reply, bytes | bytearray):
        if len(reply) != 1:
            raise RemoteProtocolError(f"status reply must be one byte, got {bytes(reply)!r}")
        value = reply[0]
    else:
        value = reply
    if not 0 <= value <= 0xFF:
        raise RemoteProtocolError(f"status reply {value} is not a byte")
    if value & _FIXED_MASK != _FIXED_VALUE:
        raise RemoteProtocolError(
            f"status reply {value:#04x} has wrong fixed bits (expect bit1=1 bit4=1 bit0=0 bit7=0)"
        )

    def bit(n: int) -> bool:
        return bool(value >> n & 1)

    match kind:
        case StatusRequest.PRINTER:
            return PrinterStatus(
                offline=bit(3),
                drawer_pin3_high=bit(2),
                waiting_online_recovery=bit(5),
                feed_button_pressed=bit(6),
            )
        case StatusRequest.OFFLINE_CAUSE:
            return OfflineCause(
                cover_open=bit(2), paper_end_stop=bit(5), error=bit(6), feed_button_feeding=bit(3)
            )
        case StatusRequest.ERROR_CAUSE:
            return ErrorCause(
                autocutter_error=bit(3),
                unrecoverable_error=bit(5),
                auto_recoverable_error=bit(6),
                recoverable_error=bit(2),
            )
        case StatusRequest.PAPER_SENSOR:
            return PaperSensor(near_end=bit(2) or bit(3), paper_out=bit(5) or bit(6))
    raise AssertionError(kind)  # pragma: no cover


class StatusReplyDecoder:
    """The host's reader of the one-byte answer to ``DLE EOT request``.

    The answer does not say which query it answers: send one query at a time and
    read its answer with a fresh decoder. A byte that is not a status reply raises
    :class:`RemoteProtocolError` (after it was dropped).
    """

    def __init__(self, request: StatusRequest) -> None:
        self.request = request
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def next_event(self) -> StatusReply | NeedData:
        if not self._buf:
            return NEED_DATA
        byte = self._buf.pop(0)
        return parse_status_reply(self.request, byte)


@dataclass(frozen=True, slots=True)
class PrinterHealth:
    """What the edge daemon reports for a ticket printer."""

    online: bool
    cover_open: bool
    paper_low: bool
    paper_out: bool
    error: bool

    @classmethod
    def from_replies(
        cls,
        printer: PrinterStatus,
        offline_cause: OfflineCause,
        paper: PaperSensor,
        error_cause: ErrorCause | None = None,
    ) -> PrinterHealth:
        """Fold the answers to ``DLE EOT 1, 2, 4`` (and optionally 3)."""
        error = offline_cause.error
        if error_cause is not None:
            error = error or error_cause.autocutter_error or error_cause.unrecoverable_error
            error = error or error_cause.auto_recoverable_error or error_cause.recoverable_error
        return cls(
            online=not printer.offline,
            cover_open=offline_cause.cover_open,
            paper_low=paper.near_end,
            paper_out=paper.paper_out or offline_cause.paper_end_stop,
            error=error,
        )


HEALTH_QUERIES: Final = (
    StatusRequest.PRINTER,
    StatusRequest.OFFLINE_CAUSE,
    StatusRequest.PAPER_SENSOR,
)
"""The queries :meth:`PrinterHealth.from_replies` needs, in the order to send them."""


MAX_PRINTER_ID: Final = 80  # longest GS I text answer accepted


def encode_printer_id_reply(text: str) -> bytes:
    """The printer's answer to ``GS I n`` (used by the virtual printer)."""
    data = text.encode("ascii", errors="strict") if text.isascii() else b""
    if not data or len(data) > MAX_PRINTER_ID or not text.isprintable():
        raise LocalProtocolError(f"printer id must be 1..{MAX_PRINTER_ID} printable ASCII")
    return bytes([PRINTER_ID_HEADER]) + data + b"\x00"


class PrinterIdDecoder:
    """The host's reader of ``GS I n`` answers: ``5F`` text ``00``, one event each.

    Bytes before a ``5F`` are dropped (a status byte, noise); an answer longer than
    :data:`MAX_PRINTER_ID` or with a non-printable byte raises :class:`RemoteProtocolError`
    after it was dropped.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def next_event(self) -> PrinterId | NeedData:
        start = self._buf.find(PRINTER_ID_HEADER)
        if start < 0:
            self._buf.clear()
            return NEED_DATA
        del self._buf[:start]
        end = self._buf.find(0)
        if end < 0:
            if len(self._buf) > MAX_PRINTER_ID + 1:
                del self._buf[:1]
                raise RemoteProtocolError("GS I answer without its NUL")
            return NEED_DATA
        raw = bytes(self._buf[1:end])
        del self._buf[: end + 1]
        if not raw or not all(0x20 <= byte < 0x7F for byte in raw):
            raise RemoteProtocolError(f"GS I answer {raw!r} is not printable ASCII")
        return PrinterId(raw.decode("ascii"))


# --- Decoder -----------------------------------------------------------------------------------
_ALIGN_BYTES: Final = {
    0: Align.LEFT,
    1: Align.CENTER,
    2: Align.RIGHT,
    48: Align.LEFT,
    49: Align.CENTER,
    50: Align.RIGHT,
}
_QR_MODELS: Final = frozenset(model.value for model in QrModel)
_QR_LEVELS: Final = frozenset(level.value for level in QrErrorCorrection)

# Commands with a fixed number of parameter bytes that the decoder accepts but does not model.
_ESC_UNMODELLED: Final = {
    ESC_UNDERLINE: 1,
    ESC_LINE_SPACING_DEFAULT: 0,
    ESC_LINE_SPACING: 1,
    ESC_RIGHT_SPACING: 1,
    ESC_FEED_DOTS: 1,
    ESC_FONT: 1,
    ESC_CODE_TABLE: 1,
}
_GS_UNMODELLED: Final = {GS_REVERSE: 1}
_FS_UNMODELLED: Final = {FS_CHINESE_PRINT_MODE: 1, FS_CHINESE_UNDERLINE: 1}


class EscPosDecoder:
    """Sans-IO ESC/POS reader: feed bytes, take events one at a time.

    The decoder keeps the printer's modes (justification, emphasis, size,
    Chinese mode, QR settings) and reports what gets printed:
    :class:`Text` at each ``LF`` (or when the format changes mid-line, with
    ``newline=False``), :class:`QrCode` at <Function 181>, :class:`Feed`,
    :class:`Cut`, :class:`StatusQuery`, :class:`Init`, :class:`ChineseMode`,
    and :class:`Unhandled` for commands it recognises but does not model.

    ``ESC a`` only takes effect at the start of a line, as on a real printer.
    ``ESC @`` discards an unfinished line, as the real print buffer does.
    ``ESC d`` and ``GS V`` first print an unfinished line.

    :meth:`next_event` raises :class:`RemoteProtocolError` for unknown or
    malformed commands after skipping them; call it again to carry on.
    """

    def __init__(self, *, chinese_mode_at_power_on: bool = False) -> None:
        self._buf = bytearray()
        # Errors wait in line with the events so that each is raised in stream order and only
        # after the command that revealed it has taken effect (no half-applied mode changes).
        self._events: deque[EscPosEvent | RemoteProtocolError] = deque()
        self._chinese_default = chinese_mode_at_power_on
        self._reset_modes()

    def _reset_modes(self) -> None:
        self.chinese = self._chinese_default
        self.align = Align.LEFT
        self.bold = False
        self.size = NORMAL_SIZE
        self.qr_model = QrModel.MODEL_2
        self.qr_module_size = 3
        self.qr_error_correction = QrErrorCorrection.L
        self._qr_data: bytes | None = None
        self._line = bytearray()
        self._line_started = False  # something was printed on the current line

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the line."""
        self._buf += data

    @property
    def pending_bytes(self) -> int:
        """Bytes received but not yet turned into events (an incomplete command or line)."""
        return len(self._buf) + len(self._line)

    def next_event(self) -> EscPosEvent | NeedData:
        """The next event, or :data:`NEED_DATA`. Raises only :class:`RemoteProtocolError`."""
        while not self._events:
            if not self._step():
                return NEED_DATA
        item = self._events.popleft()
        if isinstance(item, RemoteProtocolError):
            raise item
        return item

    # Each _step consumes bytes (possibly queueing events) and returns True, or returns False
    # when the buffer holds only an incomplete command. It never loops without consuming.
    def _step(self) -> bool:
        buf = self._buf
        if not buf:
            return False
        first = buf[0]
        if first >= 0x20 or first == HT:
            end = 1
            while end < len(buf) and (buf[end] >= 0x20 or buf[end] == HT):
                end += 1
            if len(self._line) + end > MAX_LINE_BYTES:
                del buf[:end]
                self._line.clear()
                raise RemoteProtocolError(f"line longer than {MAX_LINE_BYTES} bytes without LF")
            self._line += buf[:end]
            del buf[:end]
            return True
        if first == LF:
            del buf[:1]
            self._flush_line(newline=True, force=True)
            return True
        if first == CR:
            del buf[:1]
            return True
        if first == ESC:
            return self._esc()
        if first == GS:
            return self._gs()
        if first == FS:
            return self._fs()
        if first == DLE:
            return self._dle()
        del buf[:1]
        raise RemoteProtocolError(f"unexpected control byte {first:#04x}")

    def _take(self, n: int) -> bytes | None:
        if len(self._buf) < n:
            return None
        taken = bytes(self._buf[:n])
        del self._buf[:n]
        return taken

    def _decode_line(self) -> str:
        raw = bytes(self._line)
        self._line.clear()
        if not self.chinese:
            return raw.decode("cp437")  # cannot fail: every byte maps
        try:
            return raw.decode("gb18030")
        except UnicodeDecodeError as exc:
            # A printer prints something for bad bytes: keep the line (U+FFFD for the bad
            # bytes) and report the error just before it.
            self._events.append(
                RemoteProtocolError(f"invalid GB18030 at byte {exc.start} of line {raw!r}")
            )
            return raw.decode("gb18030", errors="replace")

    def _flush_line(self, *, newline: bool, force: bool) -> None:
        """Queue the pending text as a Text event (``force``: even when empty, for an LF)."""
        if newline:
            self._line_started = False
        if not self._line and not force:
            return
        text = self._decode_line()
        self._events.append(Text(text, self.size, self.bold, self.align, newline))
        if not newline:
            self._line_started = True

    def _format_change(self) -> None:
        """Text already buffered keeps the format it was received in."""
        if self._line:
            self._flush_line(newline=False, force=False)

    def _esc(self) -> bool:
        if len(self._buf) < 2:
            return False
        cmd = self._buf[1]
        if cmd == ESC_INIT:
            del self._buf[:2]
            self._reset_modes()
            self._events.append(Init())
            return True
        if cmd == ESC_LINE_SPACING_DEFAULT:
            self._events.append(Unhandled(bytes(self._buf[:2])))
            del self._buf[:2]
            return True
        params = 1 if cmd in (ESC_ALIGN, ESC_BOLD, ESC_FEED_LINES, ESC_PRINT_MODE) else None
        if params is None:
            params = _ESC_UNMODELLED.get(cmd)
        if params is None:
            del self._buf[:2]
            raise RemoteProtocolError(f"unknown command ESC {cmd:#04x}")
        raw = self._take(2 + params)
        if raw is None:
            return False
        n = raw[2]
        if cmd == ESC_ALIGN:
            if n not in _ALIGN_BYTES:
                raise RemoteProtocolError(f"ESC a {n}: justification must be 0..2 or 48..50")
            if not self._line and not self._line_started:
                self.align = _ALIGN_BYTES[n]
        elif cmd == ESC_BOLD:
            if bool(n & 1) != self.bold:
                self._format_change()
            self.bold = bool(n & 1)
        elif cmd == ESC_PRINT_MODE:
            self._format_change()
            self.bold = bool(n & 0x08)
            self.size = CharSize(2 if n & 0x20 else 1, 2 if n & 0x10 else 1)
        elif cmd == ESC_FEED_LINES:
            self._flush_line(newline=True, force=False)
            self._events.append(Feed(n))
        else:
            self._events.append(Unhandled(raw))
        return True

    def _gs(self) -> bool:
        if len(self._buf) < 2:
            return False
        cmd = self._buf[1]
        if cmd == GS_CHAR_SIZE:
            raw = self._take(3)
            if raw is None:
                return False
            n = raw[2]
            if n & 0x88:
                raise RemoteProtocolError(f"GS ! {n:#04x}: size bits 3 and 7 must be clear")
            size = CharSize((n >> 4) + 1, (n & 0x07) + 1)
            if size != self.size:
                self._format_change()
            self.size = size
            return True
        if cmd == GS_CUT:
            if len(self._buf) < 3:
                return False
            mode = self._buf[2]
            if mode in (0, 1, 48, 49):
                del self._buf[:3]
                cut = Cut(partial=mode in (1, 49))
            elif mode in (CUT_FULL_AFTER_FEED, CUT_PARTIAL_AFTER_FEED):
                raw = self._take(4)
                if raw is None:
                    return False
                cut = Cut(partial=mode == CUT_PARTIAL_AFTER_FEED, feed_dots=raw[3])
            else:
                del self._buf[:3]
                raise RemoteProtocolError(f"GS V {mode:#04x}: unknown cut mode")
            self._flush_line(newline=True, force=False)
            self._events.append(cut)
            return True
        if cmd == GS_PAREN_K:
            return self._gs_paren_k()
        if cmd == GS_PRINTER_ID:
            raw = self._take(3)
            if raw is None:
                return False
            try:
                self._events.append(PrinterIdQuery(PrinterInfo(raw[2])))
            except ValueError:
                self._events.append(Unhandled(raw))  # n = 1..3: one-byte IDs, not modelled
            return True
        if cmd in _GS_UNMODELLED:
            raw = self._take(2 + _GS_UNMODELLED[cmd])
            if raw is None:
                return False
            self._events.append(Unhandled(raw))
            return True
        del self._buf[:2]
        raise RemoteProtocolError(f"unknown command GS {cmd:#04x}")

    def _gs_paren_k(self) -> bool:
        if len(self._buf) < 5:
            return False
        size = self._buf[3] | self._buf[4] << 8
        raw = self._take(5 + size)
        if raw is None:
            return False
        if raw[2] != GS_PAREN_K_2:
            # Every GS ( X command (test print, NV memory, ...) has the same pL pH framing.
            self._events.append(Unhandled(raw))
            return True
        body = raw[5:]  # cn fn params...
        if len(body) < 2:
            raise RemoteProtocolError(f"GS ( k with length {size}: needs cn and fn")
        cn, fn, params = body[0], body[1], body[2:]
        if cn != QR_CN:
            self._events.append(Unhandled(raw))  # PDF417, MaxiCode, ...: well delimited
            return True
        if fn == QR_FN_SELECT_MODEL:
            if len(params) != 2 or params[0] not in _QR_MODELS or params[1] != 0:
                raise RemoteProtocolError(f"QR <Function 165> bad parameters {params!r}")
            self.qr_model = QrModel(params[0])
        elif fn == QR_FN_MODULE_SIZE:
            if len(params) != 1 or not 1 <= params[0] <= 16:
                raise RemoteProtocolError(f"QR <Function 167> bad parameters {params!r}")
            self.qr_module_size = params[0]
        elif fn == QR_FN_ERROR_CORRECTION:
            if len(params) != 1 or params[0] not in _QR_LEVELS:
                raise RemoteProtocolError(f"QR <Function 169> bad parameters {params!r}")
            self.qr_error_correction = QrErrorCorrection(params[0])
        elif fn == QR_FN_STORE:
            if not params or params[0] != QR_M or not 1 <= len(params) - 1 <= MAX_QR_DATA:
                raise RemoteProtocolError(f"QR <Function 180> bad data of {len(params)} bytes")
            self._qr_data = bytes(params[1:])
        elif fn == QR_FN_PRINT:
            if params != bytes([QR_M]):
                raise RemoteProtocolError(f"QR <Function 181> bad parameters {params!r}")
            if self._qr_data is None:
                raise RemoteProtocolError("QR <Function 181> with no stored data")
            model, level = self.qr_model, self.qr_error_correction
            known = (model, level) in _QR_CAPACITY  # else: no documented limit to hold it to
            if known and len(self._qr_data) > qr_capacity(self._qr_data, model, level):
                raise RemoteProtocolError(
                    f"QR <Function 181>: {len(self._qr_data)} bytes exceed the capacity of "
                    f"{self.qr_model.name} at level {self.qr_error_correction.name}: "
                    "nothing printed"
                )
            self._flush_line(newline=True, force=False)
            self._events.append(
                QrCode(
                    self._qr_data,
                    module_size=self.qr_module_size,
                    error_correction=self.qr_error_correction,
                    model=self.qr_model,
                )
            )
        else:
            self._events.append(Unhandled(raw))  # e.g. <Function 182> size query
        return True

    def _fs(self) -> bool:
        if len(self._buf) < 2:
            return False
        cmd = self._buf[1]
        if cmd in (FS_CHINESE_ON, FS_CHINESE_OFF):
            enabled = cmd == FS_CHINESE_ON
            # Bytes already buffered were received in the old mode.
            self._format_change()
            del self._buf[:2]
            self.chinese = enabled
            self._events.append(ChineseMode(enabled))
            return True
        if cmd in _FS_UNMODELLED:
            raw = self._take(2 + _FS_UNMODELLED[cmd])
            if raw is None:
                return False
            self._events.append(Unhandled(raw))
            return True
        del self._buf[:2]
        raise RemoteProtocolError(f"unknown command FS {cmd:#04x}")

    def _dle(self) -> bool:
        if len(self._buf) < 3:
            return False
        if self._buf[1] == DLE_ENQ:
            self._events.append(Unhandled(bytes(self._buf[:3])))
            del self._buf[:3]
            return True
        if self._buf[1] != EOT:
            cmd = self._buf[1]
            del self._buf[:2]
            raise RemoteProtocolError(f"unknown real-time command DLE {cmd:#04x}")
        n = self._buf[2]
        del self._buf[:3]
        try:
            request = StatusRequest(n)
        except ValueError:
            raise RemoteProtocolError(f"DLE EOT {n}: status request must be 1..4") from None
        self._events.append(StatusQuery(request))
        return True


def decode_all(data: bytes, *, chinese_mode_at_power_on: bool = False) -> list[EscPosEvent]:
    """Every event in a complete byte string; raises on the first error or a trailing fragment."""
    decoder = EscPosDecoder(chinese_mode_at_power_on=chinese_mode_at_power_on)
    decoder.receive_data(data)
    events: list[EscPosEvent] = []
    while (event := decoder.next_event()) is not NEED_DATA:
        events.append(event)
    if decoder.pending_bytes:
        raise RemoteProtocolError(f"{decoder.pending_bytes} bytes left over (truncated command?)")
    return events


def text_lines(events: Sequence[EscPosEvent]) -> list[str]:
    """The printed text of a list of events, one string per printed line."""
    lines: list[str] = []
    current = ""
    for event in events:
        if isinstance(event, Text):
            current += event.line
            if event.newline:
                lines.append(current)
                current = ""
    if current:
        lines.append(current)
    return lines


__all__ = [
    "HEALTH_QUERIES",
    "NEED_DATA",
    "NORMAL_SIZE",
    "Align",
    "CharSize",
    "ChineseMode",
    "Cut",
    "ErrorCause",
    "EscPosDecoder",
    "EscPosEvent",
    "Feed",
    "Init",
    "OfflineCause",
    "PaperSensor",
    "PrinterHealth",
    "PrinterId",
    "PrinterIdDecoder",
    "PrinterIdQuery",
    "PrinterInfo",
    "PrinterStatus",
    "QrCode",
    "QrErrorCorrection",
    "QrModel",
    "StatusQuery",
    "StatusReply",
    "StatusReplyDecoder",
    "StatusRequest",
    "Text",
    "Unhandled",
    "check_qr_payload",
    "decode_all",
    "encode",
    "encode_all",
    "encode_printer_id_reply",
    "encode_status_query",
    "encode_status_reply",
    "encode_text",
    "parse_status_reply",
    "qr_capacity",
    "text_lines",
]

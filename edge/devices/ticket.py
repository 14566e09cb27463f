"""The queue ticket: what it says and how it is laid out, as ESC/POS events.

The codec (:mod:`firmware_protocols.escpos`) is about bytes; the wording and
the two layouts of a ticket live here, on the edge: :func:`ticket_events`
turns a :class:`TicketContent` into the events of one ticket in the everyday
:data:`NORMAL_LAYOUT` or the large-print 老人版 :data:`LARGE_PRINT_LAYOUT`, and
:func:`ticket_bytes` encodes them for the printer driver.

:class:`TicketContent` checks its text (GB18030, no control characters) and its
QR payload (the real capacity of the symbol, no control bytes) when it is made,
so a ticket that cannot print fails where it was built, not at the printer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from firmware_protocols.errors import LocalProtocolError
from firmware_protocols.escpos import (
    NORMAL_SIZE,
    Align,
    CharSize,
    ChineseMode,
    Cut,
    EscPosEvent,
    Feed,
    Init,
    QrCode,
    QrErrorCorrection,
    QrModel,
    Text,
    check_qr_payload,
    encode_all,
    encode_text,
)


@dataclass(frozen=True, slots=True)
class TicketContent:
    """What a queue ticket says. The issue time is passed in (the daemon's clock)."""

    hall_name: str  # 中山市政务服务中心
    service_name: str  # 综合受理
    ticket_number: str  # A012
    people_ahead: int
    wait_p50_minutes: int | None  # median predicted wait, None when unknown
    wait_p90_minutes: int | None  # 90th percentile, None when unknown
    issued_at: datetime
    qr_payload: str | None  # the ticket's progress page; None: no QR and no "scan" line
    footer_lines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.people_ahead < 0:
            raise LocalProtocolError(f"people_ahead must be >= 0, got {self.people_ahead}")
        for name in ("wait_p50_minutes", "wait_p90_minutes"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise LocalProtocolError(f"{name} must be >= 0, got {value}")
        p50, p90 = self.wait_p50_minutes, self.wait_p90_minutes
        if p50 is not None and p90 is not None and p90 < p50:
            raise LocalProtocolError(f"wait p90 ({p90}) is below p50 ({p50})")
        if not self.ticket_number:
            raise LocalProtocolError("empty ticket number")
        # Refuse what cannot be printed now, where the caller made it, not at print time.
        for line in (self.hall_name, self.service_name, self.ticket_number, *self.footer_lines):
            encode_text(line)
        if self.qr_payload is None:
            return
        try:
            qr_bytes = self.qr_payload.encode("utf-8")
        except UnicodeEncodeError:
            raise LocalProtocolError(f"QR payload {self.qr_payload!r} is not valid text") from None
        for layout in LAYOUTS:
            check_qr_payload(qr_bytes, QrModel.MODEL_2, layout.qr_error_correction)


@dataclass(frozen=True, slots=True)
class TicketLayout:
    """Sizes and wording of a ticket. Use :data:`NORMAL_LAYOUT` or :data:`LARGE_PRINT_LAYOUT`."""

    name: str
    hall_size: CharSize
    service_size: CharSize
    number_size: CharSize
    body_size: CharSize
    footer_size: CharSize
    qr_module_size: int
    qr_error_correction: QrErrorCorrection
    concise: bool  # fewer words: no p90, no date, short captions
    feed_lines: int
    partial_cut: bool


NORMAL_LAYOUT: Final = TicketLayout(
    name="normal",
    hall_size=CharSize(1, 2),
    service_size=CharSize(1, 1),
    number_size=CharSize(4, 4),
    body_size=CharSize(1, 1),
    footer_size=CharSize(1, 1),
    qr_module_size=6,
    qr_error_correction=QrErrorCorrection.M,
    concise=False,
    feed_lines=4,
    partial_cut=False,
)
"""The everyday ticket for 58 mm and 80 mm paper."""

LARGE_PRINT_LAYOUT: Final = TicketLayout(
    name="large_print",
    hall_size=CharSize(2, 2),
    service_size=CharSize(2, 2),
    number_size=CharSize(6, 6),
    body_size=CharSize(2, 2),
    footer_size=CharSize(1, 2),
    qr_module_size=8,
    qr_error_correction=QrErrorCorrection.M,
    concise=True,
    feed_lines=4,
    partial_cut=False,
)
"""老人版: bigger characters, fewer words, a bigger QR code (80 mm paper)."""

LAYOUTS: Final = (NORMAL_LAYOUT, LARGE_PRINT_LAYOUT)


def _wait_line(content: TicketContent, concise: bool) -> str:
    p50, p90 = content.wait_p50_minutes, content.wait_p90_minutes
    if p50 is None:
        return "等候时间暂无预测" if concise else "预计等候：暂无法预测"
    if concise or p90 is None or p90 == p50:
        return f"约等{p50}分钟" if concise else f"预计等候约{p50}分钟"
    return f"预计等候约{p50}分钟（最长约{p90}分钟）"


def _ahead_line(content: TicketContent, concise: bool) -> str:
    if content.people_ahead == 0:
        return "前面无人等候" if concise else "您前面无人等候，请留意叫号"
    return f"前面{content.people_ahead}人" if concise else f"您前面还有{content.people_ahead}人等候"


def ticket_events(
    content: TicketContent, layout: TicketLayout = NORMAL_LAYOUT
) -> list[EscPosEvent]:
    """The events of one ticket, from ``ESC @`` to the cut."""
    concise = layout.concise
    center = Align.CENTER
    issued = (
        content.issued_at.strftime("%H:%M")
        if concise
        else content.issued_at.strftime("%Y-%m-%d %H:%M:%S")
    )
    events: list[EscPosEvent] = [
        Init(),
        ChineseMode(True),
        Text(content.hall_name, layout.hall_size, bold=True, align=center),
        Text(content.service_name, layout.service_size, bold=False, align=center),
        Text("", NORMAL_SIZE, align=center),
        Text(content.ticket_number, layout.number_size, bold=True, align=center),
        Text("", NORMAL_SIZE, align=center),
        Text(_ahead_line(content, concise), layout.body_size, align=center),
        Text(_wait_line(content, concise), layout.body_size, align=center),
        Text(("取号 " if concise else "取号时间：") + issued, layout.footer_size, align=center),
    ]
    if content.qr_payload is not None:  # the promise only where a page keeps it
        events += [
            QrCode(
                content.qr_payload.encode("utf-8"),
                module_size=layout.qr_module_size,
                error_correction=layout.qr_error_correction,
            ),
            Text("扫码看进度" if concise else "微信扫码查看排队进度", layout.footer_size,
                 align=center),
        ]
    events.extend(Text(line, layout.footer_size, align=center) for line in content.footer_lines)
    events.append(Feed(layout.feed_lines))
    events.append(Cut(partial=layout.partial_cut))
    return events


def ticket_bytes(content: TicketContent, layout: TicketLayout = NORMAL_LAYOUT) -> bytes:
    """The bytes of one ticket, ready to write to the printer."""
    return encode_all(ticket_events(content, layout))


__all__ = [
    "LARGE_PRINT_LAYOUT",
    "LAYOUTS",
    "NORMAL_LAYOUT",
    "TicketContent",
    "TicketLayout",
    "ticket_bytes",
    "ticket_events",
]

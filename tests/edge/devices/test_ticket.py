"""The queue ticket's wording and layouts (``edge.devices.ticket``), as the printer decodes them."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from edge.devices.ticket import LARGE_PRINT_LAYOUT, TicketContent, ticket_bytes, ticket_events
from firmware_protocols import escpos
from firmware_protocols.errors import LocalProtocolError
from firmware_protocols.escpos import Align, CharSize, Cut, QrCode, Text

TICKET = TicketContent(
    hall_name="中山市政务服务中心",
    service_name="综合受理",
    ticket_number="A012",
    people_ahead=3,
    wait_p50_minutes=8,
    wait_p90_minutes=15,
    issued_at=datetime(2026, 11, 23, 9, 5, 7),
    qr_payload="https://q.example.cn/t/20261123-A012",
    footer_lines=("请留意叫号，过号需重新取号",),
)


def test_ticket_layout_normal() -> None:
    data = ticket_bytes(TICKET)
    assert data.startswith(bytes.fromhex("1b 40 1c 26"))  # ESC @, FS &
    assert data.endswith(bytes.fromhex("1b 64 04 1d 56 00"))  # feed 4 lines, full cut
    # The number: centred, bold, 4x4.
    assert bytes.fromhex("1b 61 01 1b 45 01 1d 21 33 41 30 31 32 0a") in data
    events = escpos.decode_all(data)
    assert escpos.text_lines(events) == [
        "中山市政务服务中心",
        "综合受理",
        "",
        "A012",
        "",
        "您前面还有3人等候",
        "预计等候约8分钟（最长约15分钟）",
        "取号时间：2026-11-23 09:05:07",
        "微信扫码查看排队进度",
        "请留意叫号，过号需重新取号",
    ]
    number = next(e for e in events if isinstance(e, Text) and e.line == "A012")
    assert (number.size, number.bold, number.align) == (CharSize(4, 4), True, Align.CENTER)
    qr = next(e for e in events if isinstance(e, QrCode))
    assert qr.payload == b"https://q.example.cn/t/20261123-A012"
    assert isinstance(events[-1], Cut)


def test_ticket_layout_large_print() -> None:
    events = escpos.decode_all(ticket_bytes(TICKET, LARGE_PRINT_LAYOUT))
    texts = [e for e in events if isinstance(e, Text)]
    assert escpos.text_lines(events) == [
        "中山市政务服务中心",
        "综合受理",
        "",
        "A012",
        "",
        "前面3人",
        "约等8分钟",
        "取号 09:05",
        "扫码看进度",
        "请留意叫号，过号需重新取号",
    ]
    number = next(t for t in texts if t.line == "A012")
    assert number.size == CharSize(6, 6)
    body = next(t for t in texts if t.line == "前面3人")
    assert body.size == CharSize(2, 2)
    qr = next(e for e in events if isinstance(e, QrCode))
    assert qr.module_size == 8


@pytest.mark.parametrize(
    ("ahead", "p50", "p90", "normal", "concise"),
    [
        (0, None, None, ["您前面无人等候，请留意叫号", "预计等候：暂无法预测"],
         ["前面无人等候", "等候时间暂无预测"]),
        (12, 30, 30, ["您前面还有12人等候", "预计等候约30分钟"], ["前面12人", "约等30分钟"]),
        (1, 5, None, ["您前面还有1人等候", "预计等候约5分钟"], ["前面1人", "约等5分钟"]),
    ],
)  # fmt: skip
def test_ticket_wording(
    ahead: int, p50: int | None, p90: int | None, normal: list[str], concise: list[str]
) -> None:
    content = replace(TICKET, people_ahead=ahead, wait_p50_minutes=p50, wait_p90_minutes=p90)
    assert escpos.text_lines(ticket_events(content))[5:7] == normal
    assert escpos.text_lines(ticket_events(content, LARGE_PRINT_LAYOUT))[5:7] == concise


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"people_ahead": -1}, "people_ahead"),
        ({"wait_p50_minutes": -3}, "wait_p50"),
        ({"wait_p50_minutes": 20, "wait_p90_minutes": 10}, "below p50"),
        ({"ticket_number": ""}, "empty ticket number"),
        ({"hall_name": "中山\n市"}, "control character"),
        ({"service_name": "综合\ud800"}, "cannot be encoded in GB18030"),
        ({"footer_lines": ("ok", "\x1b@")}, "control character"),
        ({"qr_payload": ""}, "QR payload"),
        ({"qr_payload": "x" * 7090}, "QR payload"),
        ({"qr_payload": "x" * 2332}, "exceeds the 2331 a MODEL_2 symbol holds at level M"),
        ({"qr_payload": "t/A012\x10\x04\x01"}, "control byte 0x10"),
        ({"qr_payload": "t/\udc80"}, "not valid text"),
    ],
)
def test_ticket_content_refuses(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        replace(TICKET, **changes)

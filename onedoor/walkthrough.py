"""``onedoor demo --walk-through``: watch a hall's dispatcher decide, in Chinese first.

A morning at a small comprehensive hall (综合窗口): citizens take tickets of
every class, windows call, recall, mark no-shows and transfer, and every
decision is printed with the policy rule behind it. This is the walk-through
of the dispatcher; the fleet demo (:mod:`onedoor.demo`: edge daemons, broker,
central dashboard) runs the same dispatcher in every simulated hall.
"""

from __future__ import annotations

import fastpath
from fastpath import Dispatcher, Policy, Service, Ticket, TicketClass, WindowProfile
from fastpath.types import MINUTE_MS

SERVICES = [
    Service("shebao", "A", "社保医保", "Social insurance", sla_minutes=20),
    Service("huji", "B", "户籍", "Household registration", sla_minutes=30),
    Service("zonghe", "K", "综合咨询", "General enquiries", sla_minutes=15),
]
WINDOWS = [
    WindowProfile(1, {"shebao": 100, "zonghe": 50}, ratio_cap=2),
    WindowProfile(2, {"huji": 100, "shebao": 50}),
    WindowProfile(3, {"shebao": 50, "huji": 50, "zonghe": 100}, priority_window=True),
]
CLASS_ZH = {
    TicketClass.NORMAL: "普通",
    TicketClass.PRIORITY: "优先(老弱病残孕军)",
    TicketClass.APPOINTMENT: "预约",
}
OPEN_MS = 9 * 60 * MINUTE_MS  # 09:00


def _clock(ms: int) -> str:
    minutes = ms // MINUTE_MS
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _describe(ticket: Ticket, services: dict[str, Service]) -> str:
    service = services[ticket.service_id]
    late = "，预约迟到转现场" if ticket.late_appointment else ""
    return f"{ticket.number} {service.name_zh}/{CLASS_ZH[ticket.klass]}{late}"


def walk_through(dispatcher: Dispatcher) -> list[str]:
    """Run the scripted morning; return the lines it prints (tests read them)."""
    services = {s.id: s for s in dispatcher.services}
    lines: list[str] = []

    def say(now: int, text: str) -> None:
        lines.append(f"[{_clock(now)}] {text}")

    for profile in WINDOWS:
        dispatcher.sign_in(profile.number, staff_id=f"staff-{profile.number}")
    arrivals = [
        (0, "shebao", TicketClass.NORMAL, None),
        (1, "shebao", TicketClass.NORMAL, None),
        (2, "huji", TicketClass.NORMAL, None),
        (3, "shebao", TicketClass.PRIORITY, None),
        (4, "zonghe", TicketClass.NORMAL, None),
        (5, "shebao", TicketClass.PRIORITY, None),
        (6, "huji", TicketClass.APPOINTMENT, 8),
        (7, "shebao", TicketClass.PRIORITY, None),
        (8, "huji", TicketClass.APPOINTMENT, -15),  # booked 15 minutes ago: late
        (9, "zonghe", TicketClass.NORMAL, None),
    ]
    for minute, service_id, klass, booked in arrivals:
        now = OPEN_MS + minute * MINUTE_MS
        booked_ms = None if booked is None else now + booked * MINUTE_MS
        ticket = dispatcher.issue(service_id, now, klass, booked_ms=booked_ms)
        ahead = dispatcher.people_ahead(ticket.number, now)
        say(now, f"取号 {_describe(ticket, services)}，前面还有 {ahead} 人 (people ahead)")

    now = OPEN_MS + 12 * MINUTE_MS
    moved = dispatcher.transfer("K002", "huji", now)
    say(now, f"{moved.number} 由综合咨询转到 户籍，保留原取号时间 (transfer keeps arrival time)")
    script = [1, 2, 3, 1, 1, 2, 3, 1, 2, 3]
    for step, window in enumerate(script):
        now += MINUTE_MS
        current = dispatcher.window(window).current
        if current is not None:
            if step == 4:
                dispatcher.no_show(window, now)
                say(now, f"{window} 号窗口：{current} 过号 (no-show, requeued once)")
            else:
                dispatcher.finish(window, now)
                say(now, f"{window} 号窗口：{current} 办结 (done)")
        called = dispatcher.call_next(window, now)
        if called is None:
            say(now, f"{window} 号窗口：无人等候 (nobody waiting)")
            continue
        say(now, f"请 {called.number} 号 到 {window} 号窗口 办理 — {_describe(called, services)}")
        if step == 2:
            dispatcher.recall(window, now)
            say(now, f"{window} 号窗口：重呼 {called.number} (recall)")
    for status in dispatcher.windows():
        lines.append(f"  窗口 {status.number}: {status.state.value}, 当前 {status.current or '—'}")
    remaining = ", ".join(t.number for t in dispatcher.waiting()) or "—"
    lines.append(f"  等候中 waiting: {remaining}")
    return lines


def run() -> int:
    print(f"onedoor 调度演示 (dispatcher walk-through), fastpath={fastpath.IMPLEMENTATION}")
    for line in walk_through(Dispatcher(SERVICES, WINDOWS, Policy())):
        print(line)
    return 0

"""The dispatch policy written as literally as possible, for tests only.

It scans every waiting ticket and applies the dispatch policy's rules
(docs/ARCHITECTURE.md) in order. The two real cores only look at queue heads;
this oracle checks that shortcut.
"""

from __future__ import annotations

from fastpath import Dispatcher, Ticket, TicketClass, TicketState
from fastpath.types import MINUTE_MS, number_order


def _order(ticket: Ticket) -> int:
    prefix = ticket.number.rstrip("0123456789")
    return number_order(prefix, int(ticket.number[len(prefix):]))


def oracle_select(dispatcher: Dispatcher, window: int, now_ms: int) -> str | None:
    profile = next(p for p in dispatcher.window_profiles() if p.number == window)
    streak = dispatcher.window(window).priority_streak
    class_pct = dispatcher.policy.class_weights_pct()
    sla = {s.id: s.sla_minutes * MINUTE_MS for s in dispatcher.services}
    candidates = [
        t for t in dispatcher.tickets()
        if t.state is TicketState.WAITING and t.service_id in profile.services
    ]
    if not candidates:
        return None

    overdue = [t for t in candidates if sla[t.service_id] and now_ms - t.key_ms > sla[t.service_id]]
    if overdue:
        return min(overdue, key=lambda t: (t.key_ms + sla[t.service_id], _order(t))).number

    def best(tickets: list[Ticket]) -> str:
        def score(t: Ticket) -> int:
            weight = profile.services[t.service_id]
            return weight * (100 + class_pct[t.klass]) * (now_ms - t.key_ms)

        return min(tickets, key=lambda t: (-score(t), _order(t))).number

    normal = [t for t in candidates if t.klass is TicketClass.NORMAL]
    if profile.ratio_cap and streak >= profile.ratio_cap and normal:
        return best(normal)
    priority = [t for t in candidates if t.klass is TicketClass.PRIORITY]
    if profile.priority_window and priority:
        return best(priority)
    return best(candidates)

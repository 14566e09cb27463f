"""One worked example per rule of the dispatch policy (docs/ARCHITECTURE.md), on both cores."""

from __future__ import annotations

from typing import Any

import pytest

from fastpath import Dispatcher, Policy, Service, TicketClass, WindowProfile
from tests.fastpath.oracle import oracle_select

MIN = 60_000
OPEN = 8 * 60 * MIN  # 08:00 as ms since midnight
P, N, APPT = TicketClass.PRIORITY, TicketClass.NORMAL, TicketClass.APPOINTMENT

SOCIAL = Service("social", "A", "社保", "Social insurance", sla_minutes=0)
TAX = Service("tax", "B", "税务", "Tax")


def at(minutes: float) -> int:
    return OPEN + int(minutes * MIN)


def make(core_class: Any, services: list[Service], windows: list[WindowProfile],
         policy: Policy | None = None) -> Dispatcher:
    hall = Dispatcher(services, windows, policy, core_class=core_class)
    for profile in windows:
        hall.sign_in(profile.number, f"staff{profile.number}")
    return hall


def call(hall: Dispatcher, window: int, now: int) -> str | None:
    """call_next, checked against the oracle, then finished so the window is free."""
    expected = oracle_select(hall, window, now)
    ticket = hall.call_next(window, now)
    got = None if ticket is None else ticket.number
    assert got == expected
    if ticket is not None:
        hall.finish(window, now)
    return got


def test_fifo_within_one_service(core_class: Any) -> None:
    hall = make(core_class, [SOCIAL], [WindowProfile(1, {"social": 1})])
    for minute in (0, 1, 2):
        hall.issue("social", at(minute))
    assert [call(hall, 1, at(5)) for _ in range(4)] == ["A001", "A002", "A003", None]


def test_ageing_priority_counts_double_but_does_not_jump_everyone(core_class: Any) -> None:
    # priority_weight_pct=100: a priority ticket's wait counts 2x.
    hall = make(core_class, [SOCIAL], [WindowProfile(1, {"social": 1})],
                Policy(priority_weight_pct=100))
    hall.issue("social", at(0))            # A001 normal, arrived 08:00
    hall.issue("social", at(6), P)         # A002 priority, arrived 08:06
    # At 08:10 the normal ticket has waited 10 min (score 10), the priority 4x2 = 8.
    assert hall.peek(1, at(10)).number == "A001"
    # At 08:14: normal 14, priority 8x2 = 16 -> the priority ticket goes first.
    assert hall.peek(1, at(14)).number == "A002"


def test_priority_stream_does_not_starve_a_normal_ticket(core_class: Any) -> None:
    # A priority citizen arrives every minute and the window serves one a minute;
    # the normal ticket still gets called once its wait exceeds twice theirs.
    hall = make(core_class, [SOCIAL], [WindowProfile(1, {"social": 1})])
    hall.issue("social", at(0))  # A001, normal
    called = []
    for minute in range(1, 30):
        hall.issue("social", at(minute), P)
        called.append(call(hall, 1, at(minute) + 30_000))
        if "A001" in called:
            break
    assert "A001" in called
    assert len(called) <= 3


def test_ratio_cap_two_priority_then_one_normal(core_class: Any) -> None:
    # Priority weight so high that score alone would always pick priority tickets.
    hall = make(core_class, [SOCIAL], [WindowProfile(1, {"social": 1}, ratio_cap=2)],
                Policy(priority_weight_pct=10_000))
    for minute in range(3):
        hall.issue("social", at(minute))          # A001-A003 normal
    for minute in range(3, 8):
        hall.issue("social", at(minute), P)       # A004-A008 priority
    order = [call(hall, 1, at(20)) for _ in range(8)]
    klass = ["P" if hall.ticket(n).klass is P else "N" for n in order]
    assert klass == ["P", "P", "N", "P", "P", "N", "P", "N"]


def test_ratio_cap_lets_priority_continue_when_no_normal_waits(core_class: Any) -> None:
    hall = make(core_class, [SOCIAL], [WindowProfile(1, {"social": 1}, ratio_cap=1)])
    for minute in range(3):
        hall.issue("social", at(minute), P)
    assert [call(hall, 1, at(10)) for _ in range(3)] == ["A001", "A002", "A003"]


def test_service_weights_of_a_comprehensive_window(core_class: Any) -> None:
    # 一窗通办: window 1 serves social with weight 3 and tax with weight 1.
    hall = make(core_class, [SOCIAL, TAX], [WindowProfile(1, {"social": 3, "tax": 1})])
    hall.issue("tax", at(0))       # B001 waits 10 min at 08:10: score 10
    hall.issue("social", at(6))    # A001 waits 4 min: score 3 x 4 = 12
    assert call(hall, 1, at(10)) == "A001"
    assert call(hall, 1, at(10)) == "B001"


def test_appointments_ordered_by_booked_time_not_check_in(core_class: Any) -> None:
    hall = make(core_class, [SOCIAL], [WindowProfile(1, {"social": 1})])
    hall.issue("social", at(20), APPT, booked_ms=at(30))   # A001 booked 08:30, came first
    hall.issue("social", at(21), APPT, booked_ms=at(25))   # A002 booked 08:25
    assert [call(hall, 1, at(35)) for _ in range(2)] == ["A002", "A001"]


def test_early_appointment_waits_for_its_time_behind_walk_ins(core_class: Any) -> None:
    hall = make(core_class, [SOCIAL], [WindowProfile(1, {"social": 1})],
                Policy(appointment_weight_pct=300))
    hall.issue("social", at(0))                             # A001 walk-in
    hall.issue("social", at(5), APPT, booked_ms=at(30))     # A002 booked 08:30
    # Before 08:30 the appointment's wait is negative: the walk-in goes first.
    assert hall.peek(1, at(20)).number == "A001"
    # At 08:40 the appointment has waited 10 min x 4 = 40 > the walk-in's 40? tie -> number.
    assert hall.peek(1, at(40)).number == "A001"
    # At 08:41: 11 x 4 = 44 > 41.
    assert hall.peek(1, at(41)).number == "A002"


def test_appointment_twenty_minutes_late_becomes_a_walk_in(core_class: Any) -> None:
    hall = make(core_class, [SOCIAL], [WindowProfile(1, {"social": 1})],
                Policy(appointment_grace_minutes=10))
    hall.issue("social", at(25))                                  # A001 walk-in at 08:25
    late = hall.issue("social", at(30), APPT, booked_ms=at(10))   # booked 08:10, came 08:30
    assert late.klass is N
    assert late.late_appointment
    assert late.key_ms == at(30)
    on_time = hall.issue("social", at(31), APPT, booked_ms=at(35))
    assert on_time.klass is APPT
    assert on_time.key_ms == at(35)
    assert [call(hall, 1, at(32)) for _ in range(3)] == ["A001", "A002", "A003"]


def test_sla_override_beats_weights_and_priority(core_class: Any) -> None:
    social = Service("social", "A", "社保", sla_minutes=15)
    hall = make(core_class, [social, TAX],
                [WindowProfile(1, {"social": 1, "tax": 10}, priority_window=True)])
    hall.issue("social", at(0))       # A001: 16 min at 08:16, past its 15-min SLA
    hall.issue("tax", at(11), P)      # B001: priority, heavy weight, priority window
    assert call(hall, 1, at(16)) == "A001"


def test_sla_override_earliest_deadline_first(core_class: Any) -> None:
    social = Service("social", "A", "社保", sla_minutes=30)
    tax = Service("tax", "B", "税务", sla_minutes=10)
    hall = make(core_class, [social, tax], [WindowProfile(1, {"social": 1, "tax": 1})])
    hall.issue("social", at(0))   # deadline 08:30
    hall.issue("tax", at(15))     # deadline 08:25
    assert call(hall, 1, at(40)) == "B001"
    assert call(hall, 1, at(40)) == "A001"


def test_priority_window_serves_priority_first(core_class: Any) -> None:
    hall = make(core_class, [SOCIAL],
                [WindowProfile(1, {"social": 1}), WindowProfile(2, {"social": 1},
                                                                priority_window=True)])
    hall.issue("social", at(0))          # A001 normal, long wait
    hall.issue("social", at(29), P)      # A002 priority, just arrived
    assert hall.peek(1, at(30)).number == "A001"
    assert hall.peek(2, at(30)).number == "A002"


def test_tie_break_by_ticket_number(core_class: Any) -> None:
    hall = make(core_class, [TAX, SOCIAL], [WindowProfile(1, {"social": 1, "tax": 1})])
    hall.issue("tax", at(0))
    hall.issue("social", at(0))
    assert [call(hall, 1, at(5)) for _ in range(2)] == ["A001", "B001"]


def test_window_serves_only_its_services(core_class: Any) -> None:
    hall = make(core_class, [SOCIAL, TAX],
                [WindowProfile(1, {"social": 1}), WindowProfile(2, {"tax": 1})])
    hall.issue("tax", at(0))
    assert call(hall, 1, at(5)) is None
    assert call(hall, 2, at(5)) == "B001"


def test_recall_keeps_the_same_ticket(core_class: Any) -> None:
    hall = make(core_class, [SOCIAL], [WindowProfile(1, {"social": 1})])
    hall.issue("social", at(0))
    hall.call_next(1, at(1))
    again = hall.recall(1, at(2))
    assert again.number == "A001"
    assert again.recalls == 1
    assert hall.recall(1, at(3)).recalls == 2
    assert hall.window(1).current == "A001"


@pytest.mark.parametrize("requeue", [True, False])
def test_no_show_requeues_once_at_the_back_or_drops(core_class: Any, requeue: bool) -> None:
    from fastpath import NoShowPolicy, TicketState

    policy = Policy(no_show=NoShowPolicy.REQUEUE_ONCE if requeue else NoShowPolicy.DROP)
    hall = make(core_class, [SOCIAL], [WindowProfile(1, {"social": 1})], policy)
    hall.issue("social", at(0))
    hall.issue("social", at(1))
    hall.call_next(1, at(2))
    first = hall.no_show(1, at(3))
    if not requeue:
        assert first.state is TicketState.NO_SHOW
        assert call(hall, 1, at(4)) == "A002"
        return
    assert first.state is TicketState.WAITING
    assert first.requeued
    assert first.key_ms == at(3)
    assert [t.number for t in hall.waiting("social")] == ["A002", "A001"]  # at the back
    assert call(hall, 1, at(4)) == "A002"
    hall.call_next(1, at(5))
    assert hall.no_show(1, at(6)).state is TicketState.NO_SHOW  # second time: dropped
    assert hall.waiting("social") == []


def test_transfer_keeps_original_arrival_time(core_class: Any) -> None:
    hall = make(core_class, [SOCIAL, TAX],
                [WindowProfile(1, {"social": 1}), WindowProfile(2, {"tax": 1})])
    hall.issue("social", at(0))   # A001 at 08:00
    hall.issue("tax", at(5))      # B001 at 08:05
    hall.call_next(1, at(10))
    hall.start_serving(1, at(11))
    moved = hall.transfer("A001", "tax", at(15))
    assert moved.service_id == "tax"
    assert moved.key_ms == at(0)
    assert moved.transfers == 1
    assert hall.window(1).current is None
    assert call(hall, 2, at(16)) == "A001"  # ahead of B001: it arrived earlier


def test_pause_and_resume(core_class: Any) -> None:
    from fastpath import WindowClosed, WindowState

    hall = make(core_class, [SOCIAL], [WindowProfile(1, {"social": 1})])
    hall.issue("social", at(0))
    assert hall.pause(1).state is WindowState.PAUSED
    with pytest.raises(WindowClosed):
        hall.call_next(1, at(1))
    assert hall.resume(1).state is WindowState.OPEN
    assert call(hall, 1, at(2)) == "A001"


def test_numbers_per_prefix_never_reused_and_widen_past_width(core_class: Any) -> None:
    hall = make(core_class, [SOCIAL, TAX], [WindowProfile(1, {"social": 1, "tax": 1})],
                Policy(number_width=2))
    numbers = [hall.issue("social", at(0)).number for _ in range(100)]
    assert numbers[0] == "A01"
    assert numbers[98] == "A99"
    assert numbers[99] == "A100"
    assert hall.issue("tax", at(0)).number == "B01"
    hall.cancel("A05", at(1))
    assert hall.issue("social", at(2)).number == "A101"  # a cancelled number is not reused
    assert len(set(numbers)) == 100

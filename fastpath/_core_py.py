"""The dispatch policy over waiting tickets: the readable pure-Python core.

:mod:`fastpath._core_c` is its Cython twin with the same API and the same
answers; :mod:`fastpath.core` picks one. Both know tickets only as small
integers (``tid``) with a service index, a class, a key time and an order key;
the lifecycle (numbers, states, windows) is written once, in
:mod:`fastpath.dispatcher`.

The policy (docs/ARCHITECTURE.md, "The dispatch policy"), for window *w* at time *now*:

1. Candidates are the tickets of the services *w* serves. Within one
   (service, class) group the queue is ordered by (key time, ticket number),
   so only the head of each group can win: the cores look at heads only.
2. SLA override: a ticket whose wait exceeds its service's limit goes first;
   among several, the earliest deadline (key + limit), then ticket number.
3. Ratio cap: after ``ratio_cap`` consecutive priority calls at *w*, the best
   normal ticket goes next if one waits.
4. Priority window (优先服务专窗): the best priority ticket, if one waits.
5. Otherwise the highest score
   ``service_weight × (100 + class_weight_pct) × (now − key)``,
   i.e. ageing: a priority ticket's wait counts (1 + weight) times.
   Ties go to the lower ticket number.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass

from fastpath.types import N_CLASSES, NORMAL, PRIORITY

NO_TICKET = -1


@dataclass(slots=True)
class _Window:
    services: list[tuple[int, int]]  # (service index, weight)
    priority_window: bool
    ratio_cap: int
    priority_streak: int = 0


class QueueCore:
    """Waiting tickets grouped by (service, class), and the windows' profiles."""

    def __init__(self, sla_ms: Sequence[int], class_weight_pct: Sequence[int]) -> None:
        if len(class_weight_pct) != N_CLASSES:
            raise ValueError(f"class_weight_pct needs {N_CLASSES} values")
        self.n_services = len(sla_ms)
        self._sla = list(sla_ms)
        self._class_factor = [100 + pct for pct in class_weight_pct]
        # One sorted list of (key_ms, order, tid) per (service, class) group.
        self._groups: list[list[tuple[int, int, int]]] = [
            [] for _ in range(self.n_services * N_CLASSES)
        ]
        self._where: dict[int, tuple[int, int, int]] = {}  # tid -> (group, key_ms, order)
        self._windows: list[_Window] = []

    # -- windows -------------------------------------------------------------

    def add_window(
        self, services: Sequence[tuple[int, int]], priority_window: bool, ratio_cap: int
    ) -> int:
        self._windows.append(_Window(self._checked(services), priority_window, ratio_cap))
        return len(self._windows) - 1

    def _checked(self, services: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        for service, _weight in services:
            if not 0 <= service < self.n_services:
                raise IndexError(f"service index {service} out of range")
        return [(int(s), int(w)) for s, w in services]

    @property
    def n_windows(self) -> int:
        return len(self._windows)

    def record_call(self, widx: int, klass: int) -> None:
        """Update the window's ratio-cap counter after it called a ``klass`` ticket."""
        window = self._windows[widx]
        if klass == PRIORITY:
            window.priority_streak += 1
        elif klass == NORMAL:
            window.priority_streak = 0

    def priority_streak(self, widx: int) -> int:
        return self._windows[widx].priority_streak

    # -- tickets -------------------------------------------------------------

    def push(self, tid: int, service: int, klass: int, key_ms: int, order: int) -> None:
        if tid in self._where:
            raise ValueError(f"ticket {tid} is already queued")
        if not 0 <= service < self.n_services or not 0 <= klass < N_CLASSES:
            raise IndexError("service or class out of range")
        group = service * N_CLASSES + klass
        insort(self._groups[group], (key_ms, order, tid))
        self._where[tid] = (group, key_ms, order)

    def remove(self, tid: int) -> None:
        group, key_ms, order = self._where.pop(tid)
        queue = self._groups[group]
        del queue[bisect_left(queue, (key_ms, order, tid))]

    def __contains__(self, tid: int) -> bool:
        return tid in self._where

    def __len__(self) -> int:
        return len(self._where)

    def waiting(self, service: int) -> int:
        base = service * N_CLASSES
        return sum(len(self._groups[base + klass]) for klass in range(N_CLASSES))

    def queued(self, service: int) -> list[int]:
        """Ticket ids of one service in (key time, number) order, all classes merged."""
        base = service * N_CLASSES
        merged = sorted(
            entry for klass in range(N_CLASSES) for entry in self._groups[base + klass]
        )
        return [tid for _key, _order, tid in merged]

    # -- the policy ----------------------------------------------------------

    def select(self, widx: int, now_ms: int) -> int:
        """The ticket id window ``widx`` should call at ``now_ms``, or -1."""
        window = self._windows[widx]
        best = best_normal = best_priority = NO_TICKET
        best_score = best_normal_score = best_priority_score = 0
        best_order = best_normal_order = best_priority_order = 0
        overdue = NO_TICKET
        overdue_deadline = overdue_order = 0

        for service, weight in window.services:
            sla = self._sla[service]
            for klass in range(N_CLASSES):
                queue = self._groups[service * N_CLASSES + klass]
                if not queue:
                    continue
                key, order, tid = queue[0]
                wait = now_ms - key
                if sla > 0 and wait > sla:
                    deadline = key + sla
                    earlier = (deadline, order) < (overdue_deadline, overdue_order)
                    if overdue == NO_TICKET or earlier:
                        overdue, overdue_deadline, overdue_order = tid, deadline, order
                score = weight * self._class_factor[klass] * wait
                if best == NO_TICKET or score > best_score or (
                    score == best_score and order < best_order
                ):
                    best, best_score, best_order = tid, score, order
                if klass == NORMAL:
                    if best_normal == NO_TICKET or score > best_normal_score or (
                        score == best_normal_score and order < best_normal_order
                    ):
                        best_normal, best_normal_score, best_normal_order = tid, score, order
                elif klass == PRIORITY and (
                    best_priority == NO_TICKET or score > best_priority_score or (
                        score == best_priority_score and order < best_priority_order
                    )
                ):
                    best_priority, best_priority_score, best_priority_order = tid, score, order

        if overdue != NO_TICKET:
            return overdue
        if (
            window.ratio_cap > 0
            and window.priority_streak >= window.ratio_cap
            and best_normal != NO_TICKET
        ):
            return best_normal
        if window.priority_window and best_priority != NO_TICKET:
            return best_priority
        return best

    def select_many(self, windows: Sequence[int], nows: Sequence[int], out: array[int]) -> None:
        """``out[i] = select(windows[i], nows[i])``: many decisions in one call."""
        if not len(windows) == len(nows) == len(out):
            raise ValueError("windows, nows and out must have the same length")
        for i in range(len(windows)):
            out[i] = self.select(windows[i], nows[i])


__all__ = ["NO_TICKET", "QueueCore"]

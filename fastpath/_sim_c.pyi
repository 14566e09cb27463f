from array import array
from collections.abc import Sequence
from typing import Any

from fastpath._sim_py import ReplayColumns, Shifts, Streams, WaitingColumns

class Xoshiro256:
    def __init__(self, seed: int) -> None: ...
    def next_u64(self) -> int: ...
    def uniform(self) -> float: ...
    def exponential(self) -> float: ...
    def normal(self) -> float: ...

class SplitMix64:
    def __init__(self, state: int) -> None: ...
    def next_u64(self) -> int: ...
    def uniform(self) -> float: ...
    def exponential(self) -> float: ...
    def normal(self) -> float: ...

class Engine:
    n_services: int
    n_windows: int
    def __init__(
        self,
        sla_ms: Sequence[int],
        class_weight_pct: Sequence[int],
        order_base: Sequence[int],
        windows: Sequence[tuple[Sequence[tuple[int, int]], bool, int]],
        dists: Sequence[tuple[int, float, float, Sequence[int]]],
        no_show_p: Sequence[float],
        no_show_timeout_ms: int,
        requeue_once: bool,
        appointment_grace_ms: int,
        appointment_early_ms: int = ...,
        appointment_late_ms: int = ...,
        core_class: None = ...,
    ) -> None: ...
    def run(
        self,
        seed: int,
        start_ms: int,
        shifts: Shifts,
        streams: Streams,
        arrivals_until_ms: int = ...,
        max_arrivals: int = ...,
        replay: ReplayColumns | None = ...,
        record: bool = ...,
        warmup: int = ...,
    ) -> dict[str, Any]: ...
    def predict(
        self,
        seed: int,
        replications: int,
        now_ms: int,
        horizon_ms: int,
        shifts: Shifts,
        busy_service: Sequence[int],
        busy_since: Sequence[int],
        streaks: Sequence[int],
        waiting: WaitingColumns,
        counters: Sequence[int],
        streams: Streams,
        tagged: tuple[int, int, int, int],
        lazy_arrivals: bool = True,
    ) -> list[int]: ...
    def forecast(
        self,
        seed: int,
        replications: int,
        now_ms: int,
        until_ms: int,
        count_until_ms: int,
        shifts: Shifts,
        busy_service: Sequence[int],
        busy_since: Sequence[int],
        streaks: Sequence[int],
        waiting: WaitingColumns,
        counters: Sequence[int],
        streams: Streams,
    ) -> dict[str, array[int]]: ...

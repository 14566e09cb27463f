"""Token buckets by key: the rate limits of ingest (per site) and of logins (per address).

::

    buckets = Buckets(rate_per_s=1.0, burst=30)
    wait = buckets.take("zs-city", at=received_s)   # 0.0: allowed; else seconds to wait

A pure function of its inputs (the times are passed in), so tests need no clock.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final

MAX_TRACKED_KEYS: Final = 100_000
"""Buckets kept at most (sites, client addresses): a flood of new keys cannot grow memory."""


class Buckets:
    """Token buckets by key on the caller's clock: ``rate_per_s`` refill, ``burst`` deep.

    A pure function of its inputs (the times are passed in), so tests need no clock.
    At most :data:`MAX_TRACKED_KEYS` keys are kept: full buckets are forgotten
    first (they hold nothing), then the oldest.
    """

    def __init__(self, rate_per_s: float, burst: float, *, max_keys: int = MAX_TRACKED_KEYS):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a bucket needs a positive rate and a burst of at least 1")
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._max_keys = max_keys
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at)

    def _level(self, key: Hashable, at: float) -> float:
        tokens, last = self._buckets.get(key, (self.burst, at))
        return min(self.burst, tokens + max(0.0, at - last) * self.rate_per_s)

    def take(self, key: Hashable, at: float) -> float:
        """Take one token: 0.0 if there was one, else the seconds until there will be."""
        tokens = self._level(key, at)
        if tokens < 1.0:
            self._buckets[key] = (tokens, at)
            return (1.0 - tokens) / self.rate_per_s
        self._buckets[key] = (tokens - 1.0, at)
        if len(self._buckets) > self._max_keys:
            self._forget(at)
        return 0.0

    def _forget(self, at: float) -> None:
        for key in [k for k in self._buckets if self._level(k, at) >= self.burst]:
            del self._buckets[key]
        while len(self._buckets) > self._max_keys:
            del self._buckets[next(iter(self._buckets))]


__all__ = ["MAX_TRACKED_KEYS", "Buckets"]

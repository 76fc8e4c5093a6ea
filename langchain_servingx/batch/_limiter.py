"""Adaptive concurrency: drive a rate-limited endpoint near its limit without failing rows.

Additive increase, multiplicative decrease (TCP's congestion control, applied to requests
in flight). The limit starts small and doubles every round trip ("slow start") until the
first 429; each 429 then cuts it to 90 % of what was in flight, once per round of requests
(429s from requests launched before the last cut say nothing new), and every answered
request grows it by 1/limit, i.e. by one per round trip. A `Retry-After` pauses new
requests until it has passed.
"""

from __future__ import annotations

import time

__all__ = ["AdaptiveLimiter"]

_INITIAL = 8
_DECREASE = 0.9


class AdaptiveLimiter:
    """How many requests may be in flight now, learned from answers and 429s."""

    __slots__ = ("_limit", "generation", "maximum", "paused_until", "slow_start")

    def __init__(self, maximum: int, *, initial: int = _INITIAL) -> None:
        if maximum < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {maximum}")
        self.maximum = maximum
        self._limit = float(min(maximum, max(1, initial)))
        self.slow_start = True
        self.generation = 0
        self.paused_until = 0.0

    @property
    def limit(self) -> int:
        """Requests allowed in flight at once."""
        return max(1, int(self._limit))

    def paused_for(self) -> float:
        """Seconds until new requests may start (0 when they may now)."""
        return max(0.0, self.paused_until - time.monotonic())

    def on_success(self) -> None:
        """An answer came back: grow (fast before the first 429, slowly after)."""
        step = 1.0 if self.slow_start else 1.0 / self._limit
        self._limit = min(float(self.maximum), self._limit + step)

    def on_rate_limited(
        self, generation: int, in_flight: int, retry_after: float | None = None
    ) -> None:
        """A request launched in `generation` got a 429 while `in_flight` others ran."""
        if retry_after:
            self.paused_until = max(self.paused_until, time.monotonic() + retry_after)
        if generation < self.generation:
            return  # launched before the last cut: that cut already answered this congestion
        self.slow_start = False
        self._limit = max(1.0, min(self._limit, in_flight + 1) * _DECREASE)
        self.generation += 1

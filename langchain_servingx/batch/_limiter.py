"""Adaptive concurrency: drive a rate-limited endpoint near its limit without failing rows.

Additive increase, multiplicative decrease (TCP's congestion control, applied to requests
in flight). The limit starts small and grows by half of every answered request until the
first 429 ("slow start": x1.5 per round trip, so it overshoots the endpoint's limit by at
most half, and opens at most that many connections); each 429 then cuts it to 95 % of what
was in flight, once per round of requests (429s from requests launched before the last cut
say nothing new), and every answered request grows it by 1/limit, i.e. by one per round
trip, and by a quarter of that within one of the level the last 429 came at (TCP CUBIC's
plateau: the limit dwells just below the endpoint's, probing past it every few round
trips rather than every one). A `Retry-After` pauses new requests until it has passed.

What a run learned is kept per endpoint for the process (`LEARNED`): the next run over the
same endpoint (a notebook's next `ai_query`, an executor's next query) starts where the
last one ended instead of ramping up from 8 again.
"""

from __future__ import annotations

import threading
import time

__all__ = ["LEARNED", "AdaptiveLimiter", "LearnedLimits"]

_INITIAL = 8
_SLOW_START_STEP = 0.5
_DECREASE = 0.95
_PLATEAU = 0.25


class AdaptiveLimiter:
    """How many requests may be in flight now, learned from answers and 429s."""

    __slots__ = ("_limit", "ceiling", "generation", "maximum", "paused_until", "slow_start")

    def __init__(self, maximum: int, *, initial: int = _INITIAL) -> None:
        if maximum < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {maximum}")
        self.maximum = maximum
        self._limit = float(min(maximum, max(1, initial)))
        self.slow_start = True
        self.ceiling = 0.0
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
        """An answer came back: grow (fast before the first 429, slowly after).

        Slower still within one of the level the last 429 came at.
        """
        if self.slow_start:
            step = _SLOW_START_STEP
        elif self.ceiling - 1 <= self._limit < self.ceiling + 1:
            step = _PLATEAU / self._limit
        else:
            step = 1.0 / self._limit  # below it after a cut, or past it: the limit moved
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
        self.ceiling = min(self._limit, in_flight + 1)
        self._limit = max(1.0, self.ceiling * _DECREASE)
        self.generation += 1

    def state(self) -> tuple[float, bool]:
        """The limit and whether slow start is still on: what a next run resumes from."""
        return self._limit, self.slow_start

    def resume(self, state: tuple[float, bool]) -> None:
        """Start from another run's `state()` (kept below this limiter's maximum).

        A limit learned below the initial one (say, cut to 1 by a burst of 429s at the end
        of the last run) resumes in slow start, so a next run is never stuck growing one
        per round trip from there.
        """
        limit, slow_start = state
        self._limit = min(float(self.maximum), max(1.0, limit))
        self.slow_start = slow_start or limit < _INITIAL


class LearnedLimits:
    """The concurrency each endpoint's last run ended at, per process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._learned: dict[str, tuple[float, bool]] = {}

    def limiter(self, key: str | None, maximum: int) -> AdaptiveLimiter:
        """A limiter for a run over `key`'s endpoint (None: nothing shared, start fresh)."""
        limiter = AdaptiveLimiter(maximum)
        if key is not None:
            with self._lock:
                state = self._learned.get(key)
            if state is not None:
                limiter.resume(state)
        return limiter

    def remember(self, key: str | None, limiter: AdaptiveLimiter) -> None:
        """Keep where `limiter` ended, for the next run over `key`'s endpoint."""
        if key is not None:
            with self._lock:
                self._learned[key] = limiter.state()

    def clear(self) -> None:
        """Forget every endpoint."""
        with self._lock:
            self._learned.clear()


LEARNED = LearnedLimits()

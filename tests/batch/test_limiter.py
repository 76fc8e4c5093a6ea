"""The adaptive limiter: slow start, one cut per round of requests, growth, Retry-After."""

from __future__ import annotations

import pytest

from langchain_servingx.batch._limiter import AdaptiveLimiter


def test_slow_start_doubles_until_the_first_429() -> None:
    limiter = AdaptiveLimiter(64)
    assert limiter.limit == 8
    for _ in range(8):
        limiter.on_success()
    assert limiter.limit == 16
    for _ in range(100):
        limiter.on_success()
    assert limiter.limit == 64  # never above the maximum


def test_one_cut_per_round_then_slow_growth() -> None:
    limiter = AdaptiveLimiter(64, initial=40)
    generation = limiter.generation
    limiter.on_rate_limited(generation, in_flight=32)
    assert limiter.limit == 29  # 90 % of the 33 that were in flight
    for _ in range(10):  # the rest of that round's 429s say nothing new
        limiter.on_rate_limited(generation, in_flight=30)
    assert limiter.limit == 29
    for _ in range(29):
        limiter.on_success()
    assert limiter.limit == 30  # one more per round trip once limited
    limiter.on_rate_limited(limiter.generation, in_flight=30)
    assert limiter.limit == 27


def test_retry_after_pauses() -> None:
    limiter = AdaptiveLimiter(4)
    assert limiter.paused_for() == 0
    limiter.on_rate_limited(0, in_flight=0, retry_after=5)
    assert 4 < limiter.paused_for() <= 5
    assert limiter.limit == 1


def test_maximum_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_concurrency must be at least 1"):
        AdaptiveLimiter(0)

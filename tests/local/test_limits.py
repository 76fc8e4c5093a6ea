"""Rate limits over a sliding minute, with a clock the test moves."""

from __future__ import annotations

import pytest

from langchain_servingx.local.config import RateLimits
from langchain_servingx.local.errors import EndpointError
from langchain_servingx.local.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refused(limiter: RateLimiter) -> EndpointError:
    with pytest.raises(EndpointError) as caught:
        limiter.admit()
    return caught.value


def test_queries_per_minute_with_a_truthful_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter("chat", RateLimits(queries_per_minute=3), clock)
    for step in (0.0, 10.0, 20.0):
        clock.now += step
        limiter.admit()
    clock.now += 5.0  # t = 35 s after the first query
    error = refused(limiter)
    assert error.status == 429
    assert error.error_code == "REQUEST_LIMIT_EXCEEDED"
    assert "3 queries per minute" in error.message
    assert "'chat'" in error.message
    # The first query (t=0) leaves the window at t=60: 25 s from now.
    assert error.headers == {"Retry-After": "25"}
    clock.now += 24.0
    assert refused(limiter).headers == {"Retry-After": "1"}
    clock.now += 1.0
    limiter.admit()  # exactly when Retry-After said
    assert refused(limiter).headers == {"Retry-After": "10"}  # next: the t=10 query
    report = limiter.report()
    assert report["queries_in_window"] == 3
    assert report["refused"] == 3


def test_tokens_per_minute_count_finished_answers() -> None:
    clock = Clock()
    limiter = RateLimiter("chat", RateLimits(tokens_per_minute=100), clock)
    limiter.admit()
    limiter.used(60)
    clock.now += 10
    limiter.admit()  # 60 < 100: still admitted
    limiter.used(50)  # an admitted request is never cut short: 110 in the window now
    clock.now += 10
    error = refused(limiter)
    assert "100 tokens per minute" in error.message
    # Below 100 once the 60 tokens of t=0 leave the window, at t=60: 40 s from now.
    assert error.headers == {"Retry-After": "40"}
    clock.now += 40
    limiter.admit()
    assert limiter.report()["tokens_in_window"] == 50


def test_both_limits_wait_for_the_later_one() -> None:
    clock = Clock()
    limiter = RateLimiter("e", RateLimits(queries_per_minute=1, tokens_per_minute=10), clock)
    limiter.admit()
    clock.now += 30
    limiter.used(10)  # tokens at t=30, query at t=0
    error = refused(limiter)
    assert error.headers == {"Retry-After": "60"}  # the tokens leave at t=90
    assert "tokens per minute" in error.message

"""The adaptive limiter: slow start, one cut per round of requests, growth, Retry-After,
and what a run leaves for the next run over the same endpoint."""

from __future__ import annotations

import pytest

from langchain_servingx.batch._limiter import AdaptiveLimiter, LearnedLimits


def test_slow_start_grows_by_half_until_the_first_429() -> None:
    limiter = AdaptiveLimiter(64)
    assert limiter.limit == 8
    for _ in range(8):  # one round trip: x1.5, so the overshoot is at most half the limit
        limiter.on_success()
    assert limiter.limit == 12
    for _ in range(12):
        limiter.on_success()
    assert limiter.limit == 18
    for _ in range(100):
        limiter.on_success()
    assert limiter.limit == 64  # never above the maximum


def test_one_cut_per_round_then_slow_growth() -> None:
    limiter = AdaptiveLimiter(64, initial=40)
    generation = limiter.generation
    limiter.on_rate_limited(generation, in_flight=32)
    assert limiter.limit == 31  # 95 % of the 33 that were in flight
    for _ in range(10):  # the rest of that round's 429s say nothing new
        limiter.on_rate_limited(generation, in_flight=30)
    assert limiter.limit == 31
    for _ in range(31):
        limiter.on_success()
    assert limiter.limit == 32  # one more per round trip once limited
    limiter.on_rate_limited(limiter.generation, in_flight=30)
    assert limiter.limit == 29  # 95 % of 31


def test_growth_dwells_just_below_the_last_429() -> None:
    limiter = AdaptiveLimiter(64, initial=40)
    limiter.on_rate_limited(limiter.generation, in_flight=32)  # refused at 33
    assert limiter.limit == 31
    for _ in range(21):  # back to 32, the level below the 429, at one per round trip
        limiter.on_success()
    assert limiter.limit == 32
    for _ in range(3 * 32):  # three round trips at 32: a quarter step each
        limiter.on_success()
    assert limiter.limit == 32  # not yet probing 33 again
    for _ in range(2 * 32):
        limiter.on_success()
    assert limiter.limit == 33  # the probe, after about four round trips


def test_retry_after_pauses() -> None:
    limiter = AdaptiveLimiter(4)
    assert limiter.paused_for() == 0
    limiter.on_rate_limited(0, in_flight=0, retry_after=5)
    assert 4 < limiter.paused_for() <= 5
    assert limiter.limit == 1


def test_maximum_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_concurrency must be at least 1"):
        AdaptiveLimiter(0)


def test_a_next_run_resumes_where_the_last_one_ended() -> None:
    learned = LearnedLimits()
    first = learned.limiter("http://h/serving-endpoints chat", 64)
    assert (first.limit, first.slow_start) == (8, True)
    for _ in range(200):
        first.on_success()
    first.on_rate_limited(first.generation, in_flight=20)  # learned: about 20
    learned.remember("http://h/serving-endpoints chat", first)
    again = learned.limiter("http://h/serving-endpoints chat", 64)
    assert (again.limit, again.slow_start) == (first.limit, False) == (19, False)
    assert learned.limiter("http://h/serving-endpoints chat", 4).limit == 4  # its own maximum
    assert learned.limiter("http://h/serving-endpoints other", 64).limit == 8  # per endpoint
    assert learned.limiter(None, 64).limit == 8  # a Runnable: nothing shared
    learned.clear()
    assert learned.limiter("http://h/serving-endpoints chat", 64).slow_start


def test_a_small_learned_limit_resumes_in_slow_start() -> None:
    learned = LearnedLimits()
    limiter = learned.limiter("k", 64)
    limiter.on_rate_limited(limiter.generation, in_flight=0)  # one 429, nothing else in flight
    assert (limiter.limit, limiter.slow_start) == (1, False)
    learned.remember("k", limiter)
    again = learned.limiter("k", 64)
    assert (again.limit, again.slow_start) == (1, True)
    for _ in range(6):
        again.on_success()
    assert again.limit == 4  # half a slot per answer (x1.5 per round trip), not 1 per round trip

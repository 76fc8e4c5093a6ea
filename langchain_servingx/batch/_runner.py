"""The runner of one partition: dedup, packing, adaptive concurrency, per-row outcomes.

Requests that are equal are sent once and their answer is given to every row that asked.
Calls run concurrently up to the limiter's current limit; a 429 releases its slot, cuts the
limit and puts the call back after a backoff (`Retry-After` honoured), so a rate-limited
endpoint costs time, not rows. A packed call (embeddings) that fails on its input is split
and retried one request at a time, so one bad text fails only its own row. The calls are
made by worker threads that each take their next call as they finish one; the event loop
only waits for the whole run.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from langchain_servingx._transport import RetryPolicy
from langchain_servingx.batch._calls import Answer, Caller, Usage, is_per_item, is_rate_limited
from langchain_servingx.batch._limiter import AdaptiveLimiter

__all__ = ["Outcome", "RunStats", "run_requests"]

RATE_LIMIT_RETRY = RetryPolicy(max_retries=12, initial_delay=0.05, max_delay=8.0, budget=120.0)
"""Backoff between tries of a call that got 429s: about one round trip of a fast endpoint at
first (the limiter has already cut the concurrency that caused it), doubling to 8 s; the
call's rows fail once its 429s have lasted the budget (two minutes, `Retry-After` included)."""


@dataclass
class Outcome:
    """One row's result, or its error, and the usage of its own call.

    `usage` is None when unknown (a packed embeddings call's rows: the wire counts the
    call, not each text) and zeros for a row answered by an equal row's call.
    """

    value: Any = None
    error: BaseException | None = None
    usage: Usage | None = None


@dataclass
class RunStats:
    """Totals of one run: rows, requests sent, 429s, errors and tokens."""

    rows: int = 0
    requests: int = 0
    calls: int = 0
    rate_limited: int = 0
    errors: int = 0
    usage: dict[str, int] = field(
        default_factory=lambda: {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    )

    def add(self, other: RunStats) -> None:
        """Add another run's totals to these."""
        for name in ("rows", "requests", "calls", "rate_limited", "errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for key, value in other.usage.items():
            self.usage[key] = self.usage.get(key, 0) + value

    def as_dict(self) -> dict[str, Any]:
        """The totals as a plain dict (e.g. for `DataFrame.attrs`)."""
        return {
            "rows": self.rows,
            "requests": self.requests,
            "calls": self.calls,
            "rate_limited": self.rate_limited,
            "errors": self.errors,
            **self.usage,
        }


@dataclass
class RunResult:
    """Per-row outcomes (None: not run, after a fail-fast stop) and the run's totals."""

    outcomes: list[Outcome | None]
    stats: RunStats
    first_error_row: int | None = None

    def failure(self) -> tuple[int, BaseException] | None:
        """The row that stopped a fail-fast run, and its error."""
        row = self.first_error_row
        outcome = None if row is None else self.outcomes[row]
        if row is None or outcome is None or outcome.error is None:
            return None
        return row, outcome.error


@dataclass(eq=False)
class _Work:
    keys: list[int]
    attempts: int = 0
    generation: int = 0
    started: float = 0.0
    """When the call was first sent (the 429 budget counts from there)."""


async def run_requests(
    requests: Sequence[Any],
    caller: Caller,
    limiter: AdaptiveLimiter,
    executor: Executor,
    *,
    fail_fast: bool,
    cache: dict[Any, Outcome] | None = None,
    on_rows_done: Callable[[int], None] | None = None,
) -> RunResult:
    """Run every non-null request of a partition and place each outcome in its rows.

    `cache` (request key -> outcome) carries answers across the batches of one partition.
    With `fail_fast` the run stops at the first row error and names that row.
    """
    stats = RunStats(rows=len(requests))
    outcomes: list[Outcome | None] = [None] * len(requests)
    unique: list[Any] = []
    rows_of: list[list[int]] = []
    index_of: dict[Any, int] = {}
    keys: list[Any] = []
    cached_rows = 0
    for row, request in enumerate(requests):
        if request is None:
            outcomes[row] = Outcome()
            cached_rows += 1
            continue
        key = _key(request)
        if cache is not None and key in cache:
            outcomes[row] = cache[key]
            cached_rows += 1
            continue
        slot = index_of.get(key)
        if slot is None:
            slot = index_of[key] = len(unique)
            unique.append(request)
            rows_of.append([])
            keys.append(key)
        rows_of[slot].append(row)
    if on_rows_done is not None and cached_rows:
        on_rows_done(cached_rows)
    stats.requests = len(unique)
    for row, outcome in enumerate(outcomes):
        if outcome is not None and outcome.error is not None:
            stats.errors += 1
            if fail_fast:
                return RunResult(outcomes, stats, row)

    first_error: list[int] = []

    def settle(slot: int, outcome: Outcome) -> None:
        # The call's usage belongs to the first row that asked; equal rows (and later
        # batches' cache hits) sent nothing, so per-row usage adds up to the totals.
        again = _answered_elsewhere(outcome)
        if cache is not None:
            cache[keys[slot]] = again
        first, *others = rows_of[slot]
        outcomes[first] = outcome
        for row in others:
            outcomes[row] = again
        if outcome.error is not None:
            stats.errors += len(rows_of[slot])
            if not first_error:
                first_error.append(min(rows_of[slot]))
        if on_rows_done is not None:
            on_rows_done(len(rows_of[slot]))

    pack = max(1, caller.pack)
    ready: deque[_Work] = deque(
        _Work(list(range(start, min(start + pack, len(unique)))))
        for start in range(0, len(unique), pack)
    )
    schedule = _Schedule(ready, limiter, stats, settle, lambda: fail_fast and bool(first_error))

    def worker() -> None:
        try:
            work = schedule.next(None, None)
            while work is not None:
                try:
                    outcome: Answer | Exception = caller.call([unique[k] for k in work.keys])
                except Exception as error:
                    outcome = error
                work = schedule.next(work, outcome)
        except BaseException:
            schedule.stop()  # a fault of ours (say, in a progress callback): everyone stops
            raise

    # Each worker takes its next call itself as it finishes one (under the schedule's lock),
    # so no thread hands work to another per row: on a small machine those hand-offs cost
    # more CPU than the request itself.
    workers = [executor.submit(worker) for _ in range(max(1, min(limiter.maximum, len(ready))))]
    everyone = asyncio.gather(*(asyncio.wrap_future(w) for w in workers), return_exceptions=True)
    try:
        ended = await asyncio.shield(everyone)
    except asyncio.CancelledError:
        # Cancelled: start nothing more, and return only once no request is on the wire.
        schedule.stop()
        await everyone
        raise
    for end in ended:
        if isinstance(end, BaseException):
            raise end
    return RunResult(outcomes, stats, first_error[0] if first_error and fail_fast else None)


class _Schedule:
    """The calls of one run: what may start now, and what each answer or failure does.

    Shared by the worker threads; every method runs under one lock. Idle workers wait on
    `cond` until there is work they may start; at most one of them (the timekeeper) waits
    on `timer` for the next delayed retry or the end of a `Retry-After` pause, so a retry
    coming due wakes one thread, not every idle one.
    """

    def __init__(
        self,
        ready: deque[_Work],
        limiter: AdaptiveLimiter,
        stats: RunStats,
        settle: Callable[[int, Outcome], None],
        stopping: Callable[[], bool],
    ) -> None:
        self.ready = ready
        self.delayed: list[tuple[float, int, _Work]] = []
        self.order = itertools.count()
        self.running = 0
        self.limiter = limiter
        self.stats = stats
        self.settle = settle
        self.stopping = stopping
        self.stopped = False
        lock = threading.Lock()
        self.cond = threading.Condition(lock)
        self.timer = threading.Condition(lock)
        self.timekeeping = False

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self._wake_all()

    def _wake_all(self) -> None:
        self.cond.notify_all()
        self.timer.notify_all()

    def next(self, done: _Work | None, outcome: Answer | Exception | None) -> _Work | None:
        """Take `done`'s outcome (if any), then the next call to make (None: no more)."""
        with self.cond:
            if done is not None:
                self.running -= 1
                self._take(done, outcome)
                if self.stopping():
                    self.stopped = True
                if self.stopped or self._finished():
                    self._wake_all()  # every waiting worker has to go home
                else:
                    self._wake_others()
            while True:
                if self.stopped or self._finished():
                    return None
                now = time.monotonic()
                while self.delayed and self.delayed[0][0] <= now:
                    self.ready.appendleft(heapq.heappop(self.delayed)[2])
                paused = self.limiter.paused_for()
                if self.ready and self.running < self.limiter.limit and not paused:
                    work = self.ready.popleft()
                    work.generation = self.limiter.generation
                    if not work.attempts:
                        work.started = now
                    self.running += 1
                    self.stats.calls += 1
                    if (self.delayed or paused) and not self.timekeeping:
                        self.cond.notify()  # someone idle keeps time in this one's place
                    return work
                waits = [self.delayed[0][0] - now] if self.delayed else []
                if self.ready and paused:
                    waits.append(paused)
                if waits and not self.timekeeping:
                    self.timekeeping = True
                    try:
                        self.timer.wait(max(0.001, min(waits)))
                    finally:
                        self.timekeeping = False
                else:
                    self.cond.wait()

    def _finished(self) -> bool:
        return not (self.ready or self.delayed or self.running)

    def _wake_others(self) -> None:
        """Wake as many waiting workers as there are calls that may start now."""
        startable = min(len(self.ready), self.limiter.limit - self.running) - 1  # this one
        if startable > 0:
            self.cond.notify(startable)
            self.timer.notify()

    def _take(self, work: _Work, outcome: Answer | Exception | None) -> None:
        if isinstance(outcome, Answer):
            self.limiter.on_success()
            # A packed call's usage covers all its texts and the wire gives no per-text
            # counts: its rows get none, the totals get it once.
            usage = outcome.usage if len(work.keys) == 1 else None
            for key, value in zip(work.keys, outcome.values, strict=True):
                self.settle(key, Outcome(value, None, usage))
            _add_usage(self.stats, outcome.usage)
        elif outcome is not None and is_rate_limited(outcome):
            self.stats.rate_limited += 1
            retry_after = getattr(outcome, "retry_after", None)
            self.limiter.on_rate_limited(work.generation, self.running, retry_after)
            now = time.monotonic()
            delay = RATE_LIMIT_RETRY.delay(work.attempts, outcome, elapsed=now - work.started)
            if delay is None:
                for key in work.keys:
                    self.settle(key, Outcome(None, outcome))
                return
            work.attempts += 1
            heapq.heappush(self.delayed, (now + delay, next(self.order), work))
            if self.delayed[0][2] is work:
                self.timer.notify()  # due before what the timekeeper waits for
        elif len(work.keys) > 1 and outcome is not None and is_per_item(outcome):
            self.ready.extendleft(_Work([k]) for k in reversed(work.keys))
        else:
            for key in work.keys:
                self.settle(key, Outcome(None, outcome))


def _answered_elsewhere(outcome: Outcome) -> Outcome:
    """`outcome` for a row whose answer came from another row's call: zero tokens of its own."""
    if outcome.usage is None:
        return outcome
    return Outcome(outcome.value, outcome.error, dict.fromkeys(outcome.usage, 0))


def _key(request: Any) -> Any:
    """Equal requests get equal keys (text as itself, anything else as canonical JSON)."""
    if isinstance(request, str):
        return request
    return ("json", json.dumps(request, sort_keys=True, default=repr, ensure_ascii=False))


def _add_usage(stats: RunStats, usage: Usage | None) -> None:
    if usage:
        for key, value in usage.items():
            stats.usage[key] = stats.usage.get(key, 0) + value

"""The async runner of one partition: dedup, packing, adaptive concurrency, per-row outcomes.

Requests that are equal are sent once and their answer is given to every row that asked.
Calls run concurrently up to the limiter's current limit; a 429 releases its slot, cuts the
limit and puts the call back after a backoff (`Retry-After` honoured), so a rate-limited
endpoint costs time, not rows. A packed call (embeddings) that fails on its input is split
and retried one request at a time, so one bad text fails only its own row.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, field
from typing import Any

from langchain_servingx._transport import RetryPolicy
from langchain_servingx.batch._calls import Answer, Caller, Usage, is_per_item, is_rate_limited
from langchain_servingx.batch._limiter import AdaptiveLimiter

__all__ = ["Outcome", "RunStats", "run_requests"]

RATE_LIMIT_RETRY = RetryPolicy(max_retries=12, initial_delay=0.25, max_delay=8.0)
"""Backoff between tries of a call that got 429s; the 13th 429 fails its rows."""


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
    delayed: list[tuple[float, int, _Work]] = []
    order = itertools.count()
    running: dict[asyncio.Future[Answer], _Work] = {}
    threads: list[Future[Answer]] = []
    try:
        while ready or delayed or running:
            if fail_fast and first_error:
                break
            now = time.monotonic()
            while delayed and delayed[0][0] <= now:
                ready.appendleft(heapq.heappop(delayed)[2])
            while ready and len(running) < limiter.limit and not limiter.paused_for():
                work = ready.popleft()
                work.generation = limiter.generation
                call = executor.submit(caller.call, [unique[k] for k in work.keys])
                threads.append(call)
                task = asyncio.wrap_future(call)
                running[task] = work
                stats.calls += 1
            waits = [delayed[0][0] - now] if delayed else []
            if ready and limiter.paused_for():
                waits.append(limiter.paused_for())
            if not running:
                await asyncio.sleep(max(0.0, min(waits, default=0.0)))
                continue
            done, _ = await asyncio.wait(
                running,
                timeout=max(0.001, min(waits)) if waits else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                work = running.pop(task)
                error = task.exception()
                if error is None:
                    limiter.on_success()
                    answer = task.result()
                    # A packed call's usage covers all its texts and the wire gives no
                    # per-text counts: its rows get none, the totals get it once.
                    usage = answer.usage if len(work.keys) == 1 else None
                    for key, value in zip(work.keys, answer.values, strict=True):
                        settle(key, Outcome(value, None, usage))
                    _add_usage(stats, answer.usage)
                elif is_rate_limited(error):
                    stats.rate_limited += 1
                    retry_after = getattr(error, "retry_after", None)
                    limiter.on_rate_limited(work.generation, len(running), retry_after)
                    delay = RATE_LIMIT_RETRY.delay(work.attempts, error)  # type: ignore[arg-type]
                    if delay is None:
                        for key in work.keys:
                            settle(key, Outcome(None, error))
                        continue
                    work.attempts += 1
                    heapq.heappush(delayed, (time.monotonic() + delay, next(order), work))
                elif len(work.keys) > 1 and is_per_item(error):
                    ready.extendleft(_Work([k]) for k in reversed(work.keys))
                else:
                    for key in work.keys:
                        settle(key, Outcome(None, error))
    finally:
        # After a fail-fast stop (or a cancel): drop the calls not started, and wait for those
        # in flight, so that no request of this run is still on the wire when it returns.
        in_flight = [call for call in threads if not call.cancel() and not call.done()]
        if in_flight:
            await asyncio.get_running_loop().run_in_executor(None, wait, in_flight)
    return RunResult(outcomes, stats, first_error[0] if first_error and fail_fast else None)


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

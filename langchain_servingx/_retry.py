"""When to retry: exponential backoff with jitter, `Retry-After`, a count and a time budget.

I/O-free: the transport's send loops ask `RetryPolicy.delay` after each failure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from langchain_servingx._errors import (
    ServingBrokenConnectionError,
    ServingConnectionError,
    ServingError,
    ServingReadTimeoutError,
    ServingTimeoutError,
)

__all__ = ["RetryPolicy"]

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_OVERLOAD_STATUSES = frozenset({429, 503})
"""The server asks to come back later: retried past `max_retries`, within the budget."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, honouring the server's `Retry-After`.

    What is retried: 429, 500, 502, 503, 504, and failures that cannot have reached the model
    (no connection, a request not completely sent, or a kept-alive connection the server had
    already closed). A read timeout or a connection broken after the request went out is
    retried only with `retry_read_timeouts` (or for idempotent requests), because the server
    may still be running (and billing) the first generation. Up to `max_retries` retries;
    429 and 503, where the server asks to come back later, are retried past that count while
    the request stays within `budget` seconds. No retry starts whose wait would end past the
    budget, and a `Retry-After` longer than `max_retry_after` is not slept through: the error
    is raised with its `retry_after` so the caller can decide.
    """

    max_retries: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    retry_read_timeouts: bool = False
    budget: float | None = 120.0
    retry_rate_limits: bool = True
    """Off: a 429 is raised at once, for callers that pace themselves (`batch`)."""

    def delay(
        self, attempt: int, error: ServingError, *, idempotent: bool = False, elapsed: float = 0.0
    ) -> float | None:
        """Seconds to wait before retry number `attempt + 1`, or None to give up.

        `idempotent` requests (GET) are retried after a read timeout too: nothing re-runs.
        `elapsed` is the time since the first attempt started.
        """
        if self.max_retries <= 0 or not self._retryable(error, idempotent):
            return None
        past_count = attempt >= self.max_retries
        if past_count and (error.status_code not in _OVERLOAD_STATUSES or self.budget is None):
            return None
        ceiling = min(self.max_delay, self.initial_delay * 2 ** min(attempt, 32))
        wait = random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography
        retry_after: float | None = getattr(error, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            wait = max(retry_after, wait)
        if self.budget is not None and elapsed + wait > self.budget:
            return None
        return wait

    def _retryable(self, error: ServingError, idempotent: bool) -> bool:
        if isinstance(error, (ServingReadTimeoutError, ServingBrokenConnectionError)):
            return idempotent or self.retry_read_timeouts
        if isinstance(error, ServingConnectionError):
            return True
        if isinstance(error, ServingTimeoutError) and error.status_code is None:
            return True  # connect, write or pool timeout: no complete request reached the server
        if error.status_code == 429:
            return self.retry_rate_limits
        return error.status_code in _RETRY_STATUSES

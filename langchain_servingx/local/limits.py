"""Rate limits per endpoint: queries and tokens per minute, over a sliding minute.

Pay-per-token endpoints and AI Gateway limit an endpoint's queries per minute and tokens
per minute and answer ``429 REQUEST_LIMIT_EXCEEDED`` past them. Here a request is admitted
when fewer than ``queries_per_minute`` requests were admitted in the last 60 s and fewer
than ``tokens_per_minute`` tokens (prompt plus completion, counted when each answer is
done) were used in that window. A refusal carries a truthful ``Retry-After``: the whole
seconds until the window will admit a request, assuming nothing else arrives meanwhile.
A request already admitted is never cut short by the token limit; its tokens count
against the requests that follow, as the gateways do.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from langchain_servingx.local.config import RateLimits
from langchain_servingx.local.errors import EndpointError

__all__ = ["WINDOW_SECONDS", "RateLimiter"]

WINDOW_SECONDS = 60.0


class RateLimiter:
    """The sliding-minute windows of one endpoint; ``clock`` is injectable for tests."""

    def __init__(
        self,
        endpoint: str,
        limits: RateLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.limits = limits
        self._clock = clock
        self._queries: deque[float] = deque()
        self._tokens: deque[tuple[float, int]] = deque()
        self._token_total = 0
        self._lock = threading.Lock()
        self.refused = 0

    def _expire(self, now: float) -> None:
        horizon = now - WINDOW_SECONDS
        while self._queries and self._queries[0] <= horizon:
            self._queries.popleft()
        while self._tokens and self._tokens[0][0] <= horizon:
            self._token_total -= self._tokens.popleft()[1]

    def admit(self) -> None:
        """Count a request in, or raise the 429 saying when to come back."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            qpm, tpm = self.limits.queries_per_minute, self.limits.tokens_per_minute
            waits: list[tuple[float, str]] = []
            if qpm is not None and len(self._queries) >= qpm:
                # The oldest admitted query in the window leaves it first.
                oldest = self._queries[len(self._queries) - qpm]
                waits.append((oldest + WINDOW_SECONDS - now, f"{qpm} queries per minute"))
            if tpm is not None and self._token_total >= tpm:
                # Wait until enough of the oldest usage leaves the window to go below tpm.
                remaining = self._token_total
                for stamp, tokens in self._tokens:
                    remaining -= tokens
                    if remaining < tpm:
                        waits.append((stamp + WINDOW_SECONDS - now, f"{tpm} tokens per minute"))
                        break
            if waits:
                self.refused += 1
                wait, limit = max(waits)
                retry_after = max(1, math.ceil(wait))
                raise EndpointError(
                    429,
                    "REQUEST_LIMIT_EXCEEDED",
                    f"REQUEST_LIMIT_EXCEEDED: Exceeded the rate limit of endpoint "
                    f"{self.endpoint!r} ({limit}); retry after {retry_after}s.",
                    headers={"Retry-After": str(retry_after)},
                )
            self._queries.append(now)

    def used(self, tokens: int) -> None:
        """Count the tokens of a finished answer into the window."""
        if tokens <= 0 or self.limits.tokens_per_minute is None:
            return
        with self._lock:
            self._tokens.append((self._clock(), tokens))
            self._token_total += tokens

    def report(self) -> dict[str, Any]:
        """What ``/health`` shows: the limits and the current minute's use."""
        with self._lock:
            self._expire(self._clock())
            return {
                "queries_per_minute": self.limits.queries_per_minute,
                "tokens_per_minute": self.limits.tokens_per_minute,
                "queries_in_window": len(self._queries),
                "tokens_in_window": self._token_total,
                "refused": self.refused,
            }

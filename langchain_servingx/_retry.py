"""When to retry, and what a failed exchange means: the one retry rule of the package.

Retry what cannot have reached the model, never re-run what may have. A failed exchange is
classified by what it did on the wire (httpcore's trace events: was a new connection
opened, did the whole request go out, did response headers arrive); the errors raised
carry no request, header or traceback of the `httpx` exception that caused them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from langchain_servingx._errors import (
    ServingBrokenConnectionError,
    ServingConnectionError,
    ServingError,
    ServingReadTimeoutError,
    ServingTimeoutError,
)

__all__ = ["RetryPolicy", "Trace", "body_error", "redacted", "transport_error"]

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
        return error.status_code in _RETRY_STATUSES


class Trace:
    """What one attempt did on the wire, from httpcore's trace events.

    `fresh`: a new connection was opened for it (else a kept-alive one was reused);
    `sent`: the whole request went out; `answered`: response headers arrived.
    """

    __slots__ = ("answered", "fresh", "sent")

    def __init__(self) -> None:
        self.fresh = self.sent = self.answered = False

    def sync(self, name: str, info: Mapping[str, Any]) -> None:
        if name.endswith(".complete"):
            if name.endswith("send_request_body.complete"):
                self.sent = True
            elif name.endswith("receive_response_headers.complete"):
                self.answered = True
        elif name == "connection.connect_tcp.started":
            self.fresh = True

    async def asynchronous(self, name: str, info: Mapping[str, Any]) -> None:
        self.sync(name, info)


def transport_error(exc: Exception, endpoint: str | None, trace: Trace) -> ServingError:
    """Classify a failed exchange by whether the request can have reached the model."""
    if isinstance(exc, ServingError):
        return exc
    name = type(exc).__name__
    error: ServingError
    if isinstance(exc, httpx.ReadTimeout):
        error = ServingReadTimeoutError(
            f"no response within the read timeout ({name}); not retried by default because "
            "the generation may still be running: raise timeout= or set retry_read_timeouts=True",
            endpoint=endpoint,
        )
    elif isinstance(exc, httpx.ConnectTimeout):
        error = ServingConnectionError(f"timed out connecting ({name})", endpoint=endpoint)
    elif isinstance(exc, httpx.WriteTimeout):
        error = ServingTimeoutError(f"timed out sending the request ({name})", endpoint=endpoint)
    elif isinstance(exc, httpx.PoolTimeout):
        error = ServingTimeoutError(
            f"no free connection in the pool in time ({name}): too many requests in flight",
            endpoint=endpoint,
        )
    elif isinstance(exc, httpx.ConnectError):
        error = ServingConnectionError(
            f"cannot reach the endpoint ({name}: {exc})", endpoint=endpoint
        )
    elif isinstance(exc, httpx.TransportError) and not trace.sent:
        error = ServingConnectionError(
            f"the connection failed before the request was sent ({name}: {exc})",
            endpoint=endpoint,
        )
    elif isinstance(exc, httpx.TransportError) and not trace.fresh and not trace.answered:
        # The server had closed this idle kept-alive connection: it never read the request.
        error = ServingConnectionError(
            f"a kept-alive connection was closed before any answer ({name}: {exc})",
            endpoint=endpoint,
        )
    elif isinstance(exc, httpx.TransportError):
        error = ServingBrokenConnectionError(
            f"the connection broke after the request was sent ({name}: {exc}); not retried by "
            "default because the model may have run it: set retry_read_timeouts=True to retry",
            endpoint=endpoint,
        )
    else:
        error = ServingError(f"HTTP failure ({name}: {exc})", endpoint=endpoint)
    error.__cause__ = exc
    return error


def body_error(exc: httpx.HTTPError, endpoint: str | None) -> ServingError:
    """A failure while reading an answer's body: the model has run, nothing is retried."""
    cls = ServingTimeoutError if isinstance(exc, httpx.TimeoutException) else ServingConnectionError
    return redacted(
        cls(
            f"the answer broke off while being read ({type(exc).__name__}: {exc})",
            endpoint=endpoint,
        )
    )


def redacted(error: ServingError) -> ServingError:
    """`error` with its chain of causes stripped of requests, headers and tracebacks.

    An `httpx` exception keeps the request it failed on, `Authorization` header included,
    and error reporters serialize causes: the chain is replaced by plain copies.
    """
    cause = error.__cause__
    if isinstance(cause, httpx.HTTPError):
        copy = type(cause).__new__(type(cause))
        Exception.__init__(copy, str(cause))
        copy.__dict__["_request"] = None  # `.request` then says it is unset
        error.__cause__ = copy
    error.__suppress_context__ = True
    error.__context__ = None
    return error

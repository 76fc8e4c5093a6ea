"""A sync connection pool whose cost per request does not grow with its size.

httpcore's `ConnectionPool` re-examines every connection it holds on each request and each
response close (and polls each idle socket), under one lock: with 32+ requests in flight
from threads, that scan is a fifth of the client's CPU per request, and a batch on two
cores is bound by the client's CPU, not by the endpoint. This pool keeps, per origin, a
stack of idle connections: a request takes the most recently used one (O(1); only that
one's socket is checked), a closed response puts it back. It keeps httpcore's semantics:
`max_connections` (waiting up to the pool timeout, then `PoolTimeout`), the keep-alive
expiry, the idle limit, TLS from the same SSL context, and `close()` closes every
connection, busy ones included. The async client keeps httpcore's pool: one event loop
has no threads to contend.

`PooledTransport` is `httpx.HTTPTransport` with this pool in place of httpcore's, so
httpx still converts requests and maps httpcore's exceptions to its own.
"""

from __future__ import annotations

import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, cast

import httpcore
import httpx

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["PooledTransport", "StackPool"]

_Idle = deque[tuple[httpcore.HTTPConnection, float]]  # (connection, when it became idle)
_Key = tuple[bytes, bytes, int]  # an origin's scheme, host and port (`Origin` is unhashable)


def _key(origin: httpcore.Origin) -> _Key:
    return (origin.scheme, origin.host, origin.port)


class StackPool:
    """HTTP/1.1 connections per origin, reused most recent first (see the module)."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None,
        *,
        max_connections: int | None,
        max_keepalive_connections: int | None,
        keepalive_expiry: float | None,
    ) -> None:
        self._ssl_context = ssl_context
        self._max = sys.maxsize if max_connections is None else max_connections
        keep = sys.maxsize if max_keepalive_connections is None else max_keepalive_connections
        self._max_idle = min(self._max, keep)
        self._expiry = keepalive_expiry
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)  # a connection closed or went idle
        self._idle: dict[_Key, _Idle] = {}
        self._idle_count = 0
        self._open: set[httpcore.HTTPConnection] = set()
        self._busy = 0  # connections serving a request (or connecting for one)

    # -- taking and giving back connections ------------------------------------------------

    def _take(self, origin: httpcore.Origin, timeout: float | None) -> httpcore.HTTPConnection:
        """An idle connection to `origin`, else a new one; waits while the pool is full."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            stale: list[httpcore.HTTPConnection] = []
            try:
                with self._lock:
                    connection, reused = self._reuse_or_open(origin, deadline, stale)
            finally:
                for old in stale:
                    old.close()
            # Only the connection taken is checked (outside the lock): did the server close it?
            if not (reused and connection.has_expired()):
                return connection
            self._discard(connection)

    def _reuse_or_open(
        self, origin: httpcore.Origin, deadline: float | None, stale: list[httpcore.HTTPConnection]
    ) -> tuple[httpcore.HTTPConnection, bool]:
        """Under the lock: a connection for `origin`, waiting for room up to `deadline`."""
        while True:
            self._prune(stale)
            idle = self._idle.get(_key(origin))
            if idle:
                connection, _ = idle.pop()
                self._idle_count -= 1
                self._busy += 1
                return connection, True
            if len(self._open) < self._max or self._drop_other_idle(stale):
                connection = httpcore.HTTPConnection(
                    origin, ssl_context=self._ssl_context, keepalive_expiry=self._expiry
                )
                self._open.add(connection)
                self._busy += 1
                return connection, False
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise httpcore.PoolTimeout("no connection was free within the pool timeout")
            self._freed.wait(left)

    def _prune(self, stale: list[httpcore.HTTPConnection]) -> None:
        """Move connections idle past the keep-alive expiry to `stale` (oldest first)."""
        if self._expiry is None or not self._idle_count:
            return
        limit = time.monotonic() - self._expiry
        for origin, idle in list(self._idle.items()):
            while idle and idle[0][1] < limit:
                stale.append(self._forget(idle.popleft()[0]))
            if not idle:
                del self._idle[origin]

    def _drop_other_idle(self, stale: list[httpcore.HTTPConnection]) -> bool:
        """Make room for a new connection by closing the oldest idle one elsewhere."""
        for origin, idle in self._idle.items():
            if idle:
                stale.append(self._forget(idle.popleft()[0]))
                if not idle:
                    del self._idle[origin]
                return True
        return False

    def _forget(self, connection: httpcore.HTTPConnection) -> httpcore.HTTPConnection:
        self._idle_count -= 1
        self._open.discard(connection)
        return connection

    def _discard(self, connection: httpcore.HTTPConnection) -> None:
        """Close a busy connection that will not come back (broken, expired, half-read)."""
        with self._lock:
            self._busy -= 1
            self._open.discard(connection)
            self._freed.notify()
        connection.close()

    def _give_back(self, connection: httpcore.HTTPConnection, origin: httpcore.Origin) -> None:
        """A response was closed: keep its connection if it can serve another request."""
        if not connection.is_idle():
            self._discard(connection)
            return
        with self._lock:
            self._busy -= 1
            if connection not in self._open:  # the pool was closed meanwhile
                surplus = True
            else:
                surplus = self._idle_count >= self._max_idle
                if surplus:
                    self._open.discard(connection)
                else:
                    stack = self._idle.setdefault(_key(origin), deque())
                    stack.append((connection, time.monotonic()))
                    self._idle_count += 1
            self._freed.notify()
        if surplus:
            connection.close()

    # -- httpcore's interface --------------------------------------------------------------

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        """Send `request` on a pooled connection; the connection returns when it is read."""
        scheme = request.url.scheme
        if scheme not in (b"http", b"https"):
            raise httpcore.UnsupportedProtocol(
                f"unsupported URL scheme {scheme.decode(errors='replace')!r}: use http or https"
            )
        timeout = request.extensions.get("timeout", {}).get("pool")
        while True:
            connection = self._take(request.url.origin, timeout)
            try:
                response = connection.handle_request(request)
            except httpcore.ConnectionNotAvailable:
                self._discard(connection)
                continue  # closed under us: take another
            except BaseException:
                self._discard(connection)
                raise
            stream = cast("Iterable[bytes]", response.stream)  # a sync connection's
            return httpcore.Response(
                status=response.status,
                headers=response.headers,
                content=_Body(stream, connection, request.url.origin, self),
                extensions=response.extensions,
            )

    def close(self) -> None:
        """Close every connection, idle or busy; the pool can be used again afterwards."""
        with self._lock:
            connections = list(self._open)
            self._open.clear()
            self._idle.clear()
            self._idle_count = 0
        for connection in connections:
            connection.close()

    def info(self) -> str:
        return f"{len(self._open)} connections, {self._busy} busy, {self._idle_count} idle"

    def __repr__(self) -> str:
        return f"<StackPool [{self.info()}]>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()


class _Body:
    """A response body that hands its connection back to the pool once closed."""

    def __init__(
        self,
        stream: Iterable[bytes],
        connection: httpcore.HTTPConnection,
        origin: httpcore.Origin,
        pool: StackPool,
    ) -> None:
        self._stream = stream
        self._connection = connection
        self._origin = origin
        self._pool = pool
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
        finally:
            self._pool._give_back(self._connection, self._origin)


class PooledTransport(httpx.HTTPTransport):
    """`httpx.HTTPTransport` on a `StackPool` (TLS verified as httpx's own transport does)."""

    def __init__(self, *, limits: httpx.Limits, trust_env: bool = True) -> None:
        ssl_context = httpx.create_ssl_context(trust_env=trust_env)
        super().__init__(verify=ssl_context, limits=limits, trust_env=trust_env)
        # The one private name this module relies on: the pool `handle_request` sends on.
        self._pool = StackPool(  # type: ignore[assignment]
            ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
        )

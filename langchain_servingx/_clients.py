"""Pooled httpx clients: one sync client, one async client per event loop, all closed.

The sync client sends on a `PooledTransport` (`_pool`), shared by every thread.

An `httpx.AsyncClient` belongs to the loop it first ran on and must be closed on it. Each
one is paired with a small *keeper* async generator started on that loop: `asyncio.run`,
`asyncio.Runner` and pytest-asyncio close every live async generator before they close the
loop, and the keeper's `finally` closes the client then. So many sequential
`asyncio.run(...)` calls leave no socket open, and `close()` / `aclose()` close every client
still open, whichever loop or thread it lives on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from langchain_servingx._pool import PooledTransport

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ClientPool", "Closing"]

logger = logging.getLogger("langchain_servingx")

_CLOSE_WAIT_SECONDS = 10.0


@dataclass
class _AsyncEntry:
    client: httpx.AsyncClient
    keeper: AsyncGenerator[None, None]


class ClientPool:
    """The clients of one connection, created on first use (and again after `close()`)."""

    def __init__(self, client_kwargs: Callable[[], dict[str, Any]]) -> None:
        self._client_kwargs = client_kwargs
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclients: dict[asyncio.AbstractEventLoop, _AsyncEntry] = {}
        self._closing: set[asyncio.Future[Any]] = set()

    @property
    def client(self) -> httpx.Client:
        """The sync client."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    kwargs = self._client_kwargs()
                    # Threads share the sync client: its pool's cost must not grow with
                    # its size (`_pool`). The async clients keep httpcore's pool.
                    transport = PooledTransport(limits=kwargs.get("limits", httpx.Limits()))
                    self._client = httpx.Client(transport=transport, **kwargs)
                client = self._client
        return client

    async def aclient(self) -> httpx.AsyncClient:
        """The async client of the running loop, closed when that loop shuts down."""
        loop = asyncio.get_running_loop()
        entry = self._aclients.get(loop)
        if entry is not None:
            return entry.client
        with self._lock:
            for old in [lp for lp in self._aclients if lp.is_closed()]:
                # Closed without shutting down its async generators: nothing can close
                # this client any more; at least stop holding the loop.
                logger.debug("event loop closed without shutdown_asyncgens(); client dropped")
                del self._aclients[old]
            entry = self._aclients.get(loop)
            started = entry is None
            if entry is None:
                client = httpx.AsyncClient(**self._client_kwargs())
                entry = _AsyncEntry(client, self._keeper(loop, client))
                self._aclients[loop] = entry
        if started:
            await anext(entry.keeper)  # registers it with the loop; returns at once
        return entry.client

    async def _keeper(
        self, loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                entry = self._aclients.get(loop)
                if entry is not None and entry.client is client:
                    del self._aclients[loop]
            await client.aclose()

    def _take(
        self,
    ) -> tuple[httpx.Client | None, list[tuple[asyncio.AbstractEventLoop, _AsyncEntry]]]:
        with self._lock:
            client, self._client = self._client, None
            entries = list(self._aclients.items())
            self._aclients.clear()
        return client, entries

    def close(self) -> None:
        """Close every client: the sync one here, each async one on its own loop."""
        client, entries = self._take()
        if client is not None:
            client.close()
        for loop, entry in entries:
            self._close_elsewhere(loop, entry)

    async def aclose(self) -> None:
        """`close()`, awaiting the running loop's client."""
        client, entries = self._take()
        if client is not None:
            client.close()
        current = asyncio.get_running_loop()
        for loop, entry in entries:
            if loop is current:
                await entry.keeper.aclose()
            else:
                self._close_elsewhere(loop, entry)

    def _close_elsewhere(self, loop: asyncio.AbstractEventLoop, entry: _AsyncEntry) -> None:
        """Close an async client from outside its loop (or from sync code on it)."""
        if loop.is_closed():
            return  # its keeper already closed it, or nothing can
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is running:
            task = loop.create_task(entry.keeper.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        elif loop.is_running():
            future = asyncio.run_coroutine_threadsafe(entry.keeper.aclose(), loop)
            try:
                future.result(_CLOSE_WAIT_SECONDS)
            except concurrent.futures.TimeoutError:
                logger.warning("an async client did not close within %ss", _CLOSE_WAIT_SECONDS)
        elif running is None:
            loop.run_until_complete(entry.keeper.aclose())
        # else: another loop runs in this thread; the keeper closes the client when its
        # own loop shuts down.


class _Closable(Protocol):
    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class Closing:
    """`close()`, `aclose()`, `with` and `async with` for what `_held()` returns."""

    def _held(self) -> _Closable | None:
        """What closing this object closes (None: nothing opened yet)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close every client this object opened; a later call opens new ones."""
        held = self._held()
        if held is not None:
            held.close()

    async def aclose(self) -> None:
        """Async `close`."""
        held = self._held()
        if held is not None:
            await held.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

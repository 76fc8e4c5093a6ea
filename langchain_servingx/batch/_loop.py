"""One event loop per process, on a daemon thread, for the synchronous entry points.

`ai_query` on pandas and every Spark task run their partition's coroutine here, so the
pooled async clients, which belong to the loop they were created on, live as long as the
process and are reused by every call and task (a loop per call would reopen them each
time). It also works where the caller's thread already runs a loop (Jupyter). A forked
child gets a loop of its own.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")

_LOCK = threading.Lock()
_LOOP: asyncio.AbstractEventLoop | None = None
_PID: int | None = None


def _loop() -> asyncio.AbstractEventLoop:
    global _LOOP, _PID
    with _LOCK:
        if _LOOP is None or os.getpid() != _PID or _LOOP.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="servingx-batch-loop", daemon=True
            )
            thread.start()
            _LOOP, _PID = loop, os.getpid()
        return _LOOP


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the process's batch loop and wait for its result.

    An interrupt (Ctrl-C, a cancelled Spark task) cancels the coroutine, which cancels its
    requests, before it propagates.
    """
    future = asyncio.run_coroutine_threadsafe(coroutine, _loop())
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise

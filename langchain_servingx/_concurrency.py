"""Run one call's requests concurrently, results in input order.

Shared by `ServingEmbeddings` (batches of texts) and `ServingLLM.batch` (groups of prompts).
Sync calls run on a bounded thread pool over the shared client, each in a copy of the
caller's context (tracing and callbacks live in context variables); async calls run as tasks
under a semaphore. Unless exceptions are returned in place, the first failure cancels the
calls not yet started and is raised; calls already in flight finish first.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["arun_all", "run_all"]

T = TypeVar("T")


def run_all(
    calls: Sequence[Callable[[], T]], limit: int, *, return_exceptions: bool = False
) -> list[T | Exception]:
    """Run `calls` with at most `limit` at once; with `return_exceptions`, failures in place."""
    if len(calls) <= 1 or limit <= 1:
        return [_inline(call, return_exceptions) for call in calls]
    with ThreadPoolExecutor(min(limit, len(calls)), thread_name_prefix="servingx") as pool:
        futures: list[Future[T]] = [pool.submit(contextvars.copy_context().run, c) for c in calls]
        results: list[T | Exception] = []
        try:
            for future in futures:
                try:
                    results.append(future.result())
                except Exception as exc:
                    if not return_exceptions:
                        raise
                    results.append(exc)
        except BaseException:
            for future in futures:
                future.cancel()  # not started yet: its result would be thrown away
            raise
        return results


async def arun_all(
    calls: Sequence[Callable[[], Awaitable[T]]], limit: int, *, return_exceptions: bool = False
) -> list[T | Exception]:
    """Async `run_all`: tasks under a semaphore of `limit`."""
    semaphore = asyncio.Semaphore(max(limit, 1))

    async def one(call: Callable[[], Awaitable[T]]) -> T | Exception:
        async with semaphore:
            try:
                return await call()
            except Exception as exc:
                if return_exceptions:
                    return exc
                raise

    tasks = [asyncio.ensure_future(one(call)) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _inline(call: Callable[[], T], return_exceptions: bool) -> T | Exception:
    try:
        return call()
    except Exception as exc:
        if return_exceptions:
            return exc
        raise

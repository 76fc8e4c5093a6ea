"""`batch()` for packed completion requests: groups sent concurrently, failures kept apart.

LangChain's `BaseLLM.batch` hands every prompt to one `generate()` call, whose requests go
out one at a time and whose single failure fails every prompt. Here each request-sized group
of prompts is its own `generate()` (so callbacks and tracing see it as usual), the groups run
`max_concurrency` at a time, and with `return_exceptions=True` a failed group costs only its
own prompts: every other result is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

from langchain_core.language_models import LanguageModelInput
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list

from langchain_servingx._concurrency import arun_all, run_all

__all__ = ["GroupedBatchMixin"]

T = TypeVar("T")


PROMPT_OFFSET: ContextVar[int] = ContextVar("servingx_prompt_offset", default=0)
"""Where the prompts of the running `generate()` start in the whole `batch()`, for messages."""


class GroupedBatchMixin:
    """Mixed into a `BaseLLM` whose requests carry `_group_size()` prompts each.

    `max_concurrency` in the run config, when given, is the number of requests in flight;
    otherwise the model's `max_concurrency` applies.
    """

    if TYPE_CHECKING:
        max_concurrency: int

    def _group_size(self, kwargs: Mapping[str, Any]) -> int:
        raise NotImplementedError

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[str]:
        """Complete `inputs`: one request per group of prompts, groups concurrently."""
        if not inputs:
            return []
        calls, limit = self._group_calls(self._run_group, inputs, config, return_exceptions, kwargs)
        parts = run_all(calls, limit)  # with return_exceptions, a group never raises
        return [text for part in cast("list[list[str]]", parts) for text in part]

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[str]:
        """Async `batch`."""
        if not inputs:
            return []
        calls, limit = self._group_calls(
            self._arun_group, inputs, config, return_exceptions, kwargs
        )
        parts = await arun_all(calls, limit)
        return [text for part in cast("list[list[str]]", parts) for text in part]

    # -- one group -----------------------------------------------------------------------

    def _run_group(self, offset: int, *args: Any, **kwargs: Any) -> list[str]:
        token = PROMPT_OFFSET.set(offset)
        try:
            return cast("list[str]", super().batch(*args, **kwargs))  # type: ignore[misc]
        finally:
            PROMPT_OFFSET.reset(token)

    async def _arun_group(self, offset: int, *args: Any, **kwargs: Any) -> list[str]:
        token = PROMPT_OFFSET.set(offset)  # inside the group's own task
        try:
            return cast("list[str]", await super().abatch(*args, **kwargs))  # type: ignore[misc]
        finally:
            PROMPT_OFFSET.reset(token)

    def _group_calls(
        self,
        run: Callable[..., T],
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None,
        return_exceptions: bool,
        kwargs: dict[str, Any],
    ) -> tuple[list[Callable[[], T]], int]:
        """One `run(offset, prompts, configs, ...)` per group, and how many run at once."""
        configs = get_config_list(config, len(inputs))
        limit = configs[0].get("max_concurrency") or self.max_concurrency
        configs = [{**c, "max_concurrency": None} for c in configs]
        size = max(self._group_size(kwargs), 1)
        calls = [
            partial(
                run,
                start,
                inputs[start : start + size],
                configs[start : start + size],
                return_exceptions=return_exceptions,
                **kwargs,
            )
            for start in range(0, len(inputs), size)
        ]
        return cast("list[Callable[[], T]]", calls), limit

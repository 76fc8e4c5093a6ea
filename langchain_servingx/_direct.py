"""`ChatServing.batch` without langchain-core's per-call run machinery, when nothing listens.

LangChain's `batch()` runs `invoke()` once per input, and each `invoke()` configures a
callback manager, starts and ends a run, merges configs and wraps its answer twice, even
when no handler, tracer, cache or rate limiter is there to see any of it. Against a fast
endpoint that costs about as much CPU as the HTTP request itself and caps throughput
(`benchmarks/bench_throughput.py`). When nothing in a batch could observe the difference,
its calls go straight to `_generate`, concurrently, and each answer is finished exactly as
`invoke()` finishes it (response metadata merged, a run id as the message id). Anything
that could tell, a callback handler or tracer (passed, on the model, or from the
environment), a cache, a rate limiter, streaming, `output_version="v1"`, a `run_id`, or list
content (which langchain-core normalizes first), takes langchain-core's own path.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import CallbackManager
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import RunnableConfig

from langchain_servingx._concurrency import arun_all, run_all

if TYPE_CHECKING:
    from langchain_core.language_models.chat_models import BaseChatModel

__all__ = ["DirectBatch"]

_TRACE_ONLY_KWARGS = ("ls_structured_output_format", "structured_output_format")
"""Call arguments langchain-core takes for tracing only; never sent to the model."""

_GATEWAY_KEY = "lc_gateway_metadata"
"""Generation info langchain-core keeps out of `response_metadata`."""

_RUN_ID_PREFIX = "lc_run-"
"""langchain-core's prefix for message ids made from run ids (`LC_ID_PREFIX`)."""


class DirectBatch:
    """Decides whether a batch may skip the run machinery, and runs it if so."""

    def __init__(self, model: BaseChatModel, kwargs: dict[str, Any]) -> None:
        self.model = model
        self.kwargs = {k: v for k, v in kwargs.items() if k not in _TRACE_ONLY_KWARGS}
        self.stop: list[str] | None = self.kwargs.pop("stop", None)

    def applies(self, inputs: Sequence[LanguageModelInput], configs: list[RunnableConfig]) -> bool:
        """True when no callback, tracer, cache or option could see the difference."""
        model = self.model
        if (
            model.rate_limiter is not None
            or getattr(model, "streaming", False)
            or model.output_version not in (None, "v0")
            or "stream" in self.kwargs
            or not _no_cache(model)
            or any(c.get("callbacks") is not None or c.get("run_id") for c in configs)
        ):
            return False
        manager = CallbackManager.configure(None, model.callbacks, model.verbose)
        if manager.handlers or manager.inheritable_handlers or _context_hook_set():
            return False  # a tracer from the environment, a global handler, model callbacks
        return all(_plain(i) for i in inputs)

    def run(
        self, inputs: Sequence[LanguageModelInput], limit: int | None, return_exceptions: bool
    ) -> list[AIMessage | Exception]:
        calls = [partial(self._one, i) for i in inputs]
        return run_all(calls, limit or _default_workers(), return_exceptions=return_exceptions)

    async def arun(
        self, inputs: Sequence[LanguageModelInput], limit: int | None, return_exceptions: bool
    ) -> list[AIMessage | Exception]:
        calls: list[Callable[[], Awaitable[AIMessage]]] = [partial(self._aone, i) for i in inputs]
        return await arun_all(calls, limit or len(calls), return_exceptions=return_exceptions)

    def _one(self, model_input: LanguageModelInput) -> AIMessage:
        messages = _messages(self.model, model_input)
        return _finish(self.model._generate(messages, stop=self.stop, **self.kwargs))

    async def _aone(self, model_input: LanguageModelInput) -> AIMessage:
        messages = _messages(self.model, model_input)
        return _finish(await self.model._agenerate(messages, stop=self.stop, **self.kwargs))


def _context_hook_set() -> bool:
    """A handler registered in a context variable (`collect_runs()`, tracing contexts).

    Read directly: some langchain-core versions add these only to managers that already
    have callbacks, so `configure(None, ...)` alone would miss them.
    """
    try:
        from langchain_core.tracers.context import _configure_hooks
    except ImportError:  # pragma: no cover - a core without hooks: nothing to find
        return False
    return any(hook[0].get() is not None for hook in _configure_hooks)


def _no_cache(model: BaseChatModel) -> bool:
    return model.cache is False or (model.cache is None and get_llm_cache() is None)


def _plain(model_input: LanguageModelInput) -> bool:
    """A string, or messages whose content is text only (nothing for core to normalize)."""
    if isinstance(model_input, str):
        return True
    if isinstance(model_input, Sequence):
        return all(isinstance(m, BaseMessage) and isinstance(m.content, str) for m in model_input)
    return False  # a PromptValue or anything else: the usual path converts it


def _messages(model: BaseChatModel, model_input: LanguageModelInput) -> list[BaseMessage]:
    if isinstance(model_input, str):  # what core's StringPromptValue would give, made directly
        return [HumanMessage(content=model_input)]
    return model._convert_input(model_input).to_messages()


def _finish(result: ChatResult) -> AIMessage:
    """The message `invoke()` would return for `result` (see `_generate_with_cache`)."""
    generation = result.generations[0]
    message = generation.message
    if message.id is None:
        message.id = f"{_RUN_ID_PREFIX}-{uuid.uuid4()}-0"
    info = {k: v for k, v in (generation.generation_info or {}).items() if k != _GATEWAY_KEY}
    message.response_metadata = {**info, **message.response_metadata}
    if len(result.generations) == 1 and result.llm_output is not None:
        message.response_metadata = {**result.llm_output, **message.response_metadata}
    if not isinstance(message, AIMessage):  # pragma: no cover - _generate makes AIMessages
        raise TypeError(f"expected an AIMessage, got {type(message).__name__}")
    return message


def _default_workers() -> int:
    """The thread pool langchain-core's `batch()` would use without `max_concurrency`."""
    return min(32, (os.cpu_count() or 1) + 4)

"""`ServingLLM`: a LangChain text-completion model on an `llm/v1/completions` endpoint."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from functools import partial
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LangSmithParams
from langchain_core.language_models.llms import BaseLLM
from langchain_core.outputs import Generation, GenerationChunk, LLMResult
from pydantic import Field, PrivateAttr

from langchain_servingx import contract
from langchain_servingx._base import (
    GenerationFields,
    ServingClientBase,
    check_n,
    check_single_choice,
)
from langchain_servingx._batching import PROMPT_OFFSET, GroupedBatchMixin
from langchain_servingx._concurrency import arun_all, run_all
from langchain_servingx._errors import (
    ServingContextOverflowError,
    ServingError,
    ServingResponseError,
    ServingStreamError,
)
from langchain_servingx._replies import order_by_index

__all__ = ["ServingLLM"]

_NOT_ABOUT_THE_BODY = frozenset({401, 403, 404, 408, 429})
"""Failures that say nothing about the prompt list (credentials, name, rate): never probed."""


class ServingLLM(GroupedBatchMixin, ServingClientBase, GenerationFields, BaseLLM):
    """Text completions from a model serving endpoint (`llm/v1/completions`).

    `generate()` and `batch()` pack up to `prompts_per_request` prompts into one request
    (`"prompt": [...]`). With `n` candidates per prompt, choice `index` i belongs to prompt
    `i // n` (OpenAI's convention). When a list request fails in a way that could be about
    the list (any 4xx or 5xx but 401, 403, 404, 408, 429 and a context overflow: servers
    answer lists with 400, 422, or, like llama.cpp's, a 500 with an empty message), the
    list's prompts are sent one at a time; if every one of them goes through, the list itself
    was the cause, and this instance sends that endpoint single prompts from then on (until
    its connection settings change). A prompt that fails alone too raises. Results always come
    back in prompt order, and `llm_output["token_usage"]` sums the usage of all requests.

    Per-call keyword arguments override the constructor's parameters and go into the body;
    a per-call `model=` queries that endpoint instead.

    Example:
        ```python
        from langchain_servingx import ServingLLM

        llm = ServingLLM(endpoint="my-completions-endpoint", max_tokens=64)
        llm.invoke("The capital of France is")
        llm.batch(["1 + 1 =", "2 + 2 ="], temperature=0.0)
        ```

    """

    prompts_per_request: int = Field(default=16, ge=1)
    """Prompts packed into one request by `generate()` / `batch()`."""

    max_concurrency: int = Field(default=4, ge=1)
    """Requests in flight at once for one `batch()` (a run config's `max_concurrency` wins)."""

    _lists_refused: set[str] = PrivateAttr(default_factory=set)
    """Endpoints found to refuse prompt lists (forgotten when the connection changes)."""

    _lists_accepted: set[str] = PrivateAttr(default_factory=set)
    """Endpoints that answered a prompt list (their lists go out concurrently)."""

    # -- Serializable class method overrides ---------------------------------------------

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """Configuration serializes; secrets become references to their env variables."""
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """`["langchain_servingx", "llms"]`."""
        return ["langchain_servingx", "llms"]

    # -- BaseLLM method overrides ------------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return "servingx-completions"

    def _forget(self) -> None:
        self._lists_refused = set()
        self._lists_accepted = set()

    def _group_size(self, kwargs: Mapping[str, Any]) -> int:
        """Prompts per request for `batch()`: one each once the endpoint refused lists."""
        endpoint = self._endpoint_for(kwargs.get("model"))
        return 1 if endpoint in self._lists_refused else self.prompts_per_request

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "served_model": self.served_model,
            **self._default_params,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "servingx"
        params["ls_model_name"] = str(kwargs.get("model") or self.endpoint)
        return params

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        if self.streaming and len(prompts) == 1:
            chunks = list(self._stream(prompts[0], stop, run_manager, **kwargs))
            return _streamed_result(chunks, self._endpoint_for(kwargs.get("model")))
        call = self._completion_call(prompts, stop, kwargs)
        while wave := call.next_wave():
            sends = [partial(self._send, call, group) for group in wave]
            call.settle(wave, run_all(sends, self.max_concurrency, return_exceptions=True))
        return call.result()

    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        if self.streaming and len(prompts) == 1:
            chunks = [c async for c in self._astream(prompts[0], stop, run_manager, **kwargs)]
            return _streamed_result(chunks, self._endpoint_for(kwargs.get("model")))
        call = self._completion_call(prompts, stop, kwargs)
        while wave := call.next_wave():
            sends = [partial(self._asend, call, group) for group in wave]
            call.settle(wave, await arun_all(sends, self.max_concurrency, return_exceptions=True))
        return call.result()

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        endpoint, body = self._stream_request(prompt, stop, kwargs)
        state = _StreamState(endpoint)
        for event in self.transport.stream(
            contract.COMPLETIONS, endpoint, body, served_model=self.served_model
        ):
            piece = state.feed(event)
            if piece is not None:
                if run_manager:
                    run_manager.on_llm_new_token(piece.text, chunk=piece)
                yield piece
        last = state.final()
        if last is not None:
            if run_manager:
                run_manager.on_llm_new_token(last.text, chunk=last)
            yield last

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        endpoint, body = self._stream_request(prompt, stop, kwargs)
        state = _StreamState(endpoint)
        async for event in self.transport.astream(
            contract.COMPLETIONS, endpoint, body, served_model=self.served_model
        ):
            piece = state.feed(event)
            if piece is not None:
                if run_manager:
                    await run_manager.on_llm_new_token(piece.text, chunk=piece)
                yield piece
        last = state.final()
        if last is not None:
            if run_manager:
                await run_manager.on_llm_new_token(last.text, chunk=last)
            yield last

    # -- request building --------------------------------------------------------------

    def _params(
        self, stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """The endpoint and body parameters of one call: per-call values win."""
        overrides = dict(kwargs)
        endpoint = self._endpoint_for(overrides.pop("model", None))
        params = {**self._default_params, **overrides}
        if stop is not None:
            params["stop"] = stop
        params = {k: v for k, v in params.items() if v is not None}  # None: not sent
        check_n(params.get("n"), endpoint)
        return endpoint, params

    def _send(self, call: _CompletionCall, group: _Group) -> dict[str, Any]:
        return self.transport.invoke(
            contract.COMPLETIONS, call.endpoint, call.body(group), served_model=self.served_model
        )

    async def _asend(self, call: _CompletionCall, group: _Group) -> dict[str, Any]:
        return await self.transport.ainvoke(
            contract.COMPLETIONS, call.endpoint, call.body(group), served_model=self.served_model
        )

    def _completion_call(
        self, prompts: list[str], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> _CompletionCall:
        endpoint, params = self._params(stop, kwargs)
        per_request = 1 if endpoint in self._lists_refused else self.prompts_per_request
        return _CompletionCall(self, endpoint, params, prompts, per_request)

    def _stream_request(
        self, prompt: str, stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        endpoint, params = self._params(stop, kwargs)
        check_single_choice(params, endpoint)
        return endpoint, {**params, "prompt": prompt}


# --------------------------------------------------------------------------------------
# One generate() call: prompt groups, fallback to single prompts, result assembly
# --------------------------------------------------------------------------------------


class _Group:
    """Consecutive prompts sent in one request."""

    __slots__ = ("probe", "prompts", "start")

    def __init__(self, start: int, prompts: list[str], *, probe: bool = False) -> None:
        self.start = start
        self.prompts = prompts
        self.probe = probe  # a single sent to learn whether its refused list was the cause

    @property
    def label(self) -> str:
        """E.g. `request for prompts 16-31`, counted in the whole `batch()`."""
        first = self.start + PROMPT_OFFSET.get()
        end = first + len(self.prompts) - 1
        span = f"prompt {end}" if end == first else f"prompts {first}-{end}"
        return f"request for {span}"

    def singles(self, *, probe: bool = False) -> list[_Group]:
        return [_Group(self.start + i, [p], probe=probe) for i, p in enumerate(self.prompts)]


class _CompletionCall:
    """The I/O-free part of `_generate`/`_agenerate`, shared by both.

    Hands out prompt groups, turns replies into generations in prompt order, sums usage,
    and handles an endpoint that refuses list prompts: the group is retried one prompt at
    a time, and once all of them succeed the refusal is recorded for the endpoint.
    """

    def __init__(
        self,
        llm: ServingLLM,
        endpoint: str,
        params: dict[str, Any],
        prompts: list[str],
        per_request: int,
    ) -> None:
        self.llm = llm
        self.endpoint = endpoint
        self.params = params
        self.n: int = params.get("n", 1)
        self.pending = deque(
            _Group(start, prompts[start : start + per_request])
            for start in range(0, len(prompts), per_request)
        )
        self.generations: list[list[Generation]] = [[] for _ in prompts]
        self.usage: dict[str, int] = {}
        self.probing = 0  # singles of a refused list still to go through

    def next_wave(self) -> list[_Group]:
        """The groups to send together next (none: done).

        Singles of a refused list go first, on their own: if they all pass, the list was
        the cause and the lists still pending become singles. While an endpoint has not yet
        taken a list, the first list goes alone, so a refusing endpoint costs one request,
        not a wave of them. Otherwise everything pending goes at once.
        """
        if not self.pending:
            return []
        if self.probing:
            count = self.probing
        elif self.endpoint not in self.llm._lists_accepted and len(self.pending[0].prompts) > 1:
            count = 1
        else:
            count = len(self.pending)
        return [self.pending.popleft() for _ in range(count)]

    def settle(self, wave: list[_Group], outcomes: list[dict[str, Any] | Exception]) -> None:
        """Take a wave's replies; the first failure that no fallback covers is raised."""
        for group, outcome in zip(wave, outcomes, strict=True):
            if not isinstance(outcome, Exception):
                self.add(group, outcome)
            elif not (isinstance(outcome, ServingError) and self.fall_back(group, outcome)):
                raise outcome

    def body(self, group: _Group) -> dict[str, Any]:
        prompt: str | list[str] = group.prompts[0] if len(group.prompts) == 1 else group.prompts
        return {**self.params, "prompt": prompt}

    def fall_back(self, group: _Group, error: ServingError) -> bool:
        """After `error`, whether to retry `group` one prompt at a time (queued first)."""
        if (
            len(group.prompts) == 1
            or error.status_code is None
            or error.status_code < 400
            or error.status_code in _NOT_ABOUT_THE_BODY
            or isinstance(error, ServingContextOverflowError)
        ):
            return False
        self.pending.extendleft(reversed(group.singles(probe=True)))
        self.probing += len(group.prompts)
        return True

    def add(self, group: _Group, reply: Mapping[str, Any]) -> None:
        """Place the reply's choices with their prompts."""

        def invalid(problem: str) -> ServingResponseError:
            return ServingResponseError(f"{group.label}: {problem}", endpoint=self.endpoint)

        choices = reply.get("choices")
        if not isinstance(choices, list):
            raise invalid(f"expected a 'choices' list, got {type(choices).__name__}")
        expected = len(group.prompts) * self.n
        for position, choice in enumerate(order_by_index(choices, expected, "choices", invalid)):
            text = choice.get("text")
            if not isinstance(text, str):
                raise invalid(f"choice {position} has no 'text' string")
            info = {
                "finish_reason": choice.get("finish_reason"),
                "logprobs": choice.get("logprobs"),
            }
            self.generations[group.start + position // self.n].append(
                Generation(text=text, generation_info=info)
            )
        _add_usage(self.usage, reply.get("usage"))
        if len(group.prompts) > 1:
            self.llm._lists_accepted.add(self.endpoint)
        if group.probe:
            self.probing -= 1
            if not self.probing:
                # Every prompt of the refused list went through alone: lists are refused.
                self.llm._lists_refused.add(self.endpoint)
                self.pending = deque(single for g in self.pending for single in g.singles())

    def result(self) -> LLMResult:
        return LLMResult(
            generations=self.generations,
            llm_output={"token_usage": self.usage, "model_name": self.endpoint},
        )


def _add_usage(total: dict[str, int], usage: Any) -> None:
    if isinstance(usage, Mapping):
        for key, value in usage.items():
            if isinstance(value, int) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value


# --------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------


class _StreamState:
    """Turns `text_completion` chunks into `GenerationChunk`s.

    The piece carrying `finish_reason` is held back to the end of the stream so that it
    can also carry `usage`, which may come on every chunk as a running total or only on a
    final chunk with no choices: the last value seen is the total, never a sum.
    """

    __slots__ = ("endpoint", "held", "usage")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.held: GenerationChunk | None = None
        self.usage: Mapping[str, Any] | None = None

    def feed(self, chunk: Mapping[str, Any]) -> GenerationChunk | None:
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self.usage = usage
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise ServingStreamError("stream chunk 'choices' is not a list", endpoint=self.endpoint)
        out: GenerationChunk | None = None
        for choice in choices:
            if not isinstance(choice, Mapping) or not isinstance(choice.get("text") or "", str):
                raise ServingStreamError(
                    f"stream chunk choice has no 'text' string: {choice!r}", endpoint=self.endpoint
                )
            text: str = choice.get("text") or ""
            info = {
                key: choice[key]
                for key in ("finish_reason", "logprobs")
                if choice.get(key) is not None
            }
            piece = GenerationChunk(text=text, generation_info=info or None)
            if self.held is not None or "finish_reason" in info:
                self.held = piece if self.held is None else self.held + piece
            elif piece.text or info:
                out = piece if out is None else out + piece
        return out

    def final(self) -> GenerationChunk | None:
        """The held-back last piece, with the stream's usage."""
        last = self.held
        if self.usage is not None:
            last = last or GenerationChunk(text="")
            last.generation_info = {**(last.generation_info or {}), "usage": dict(self.usage)}
        return last


def _streamed_result(chunks: list[GenerationChunk], endpoint: str) -> LLMResult:
    """The `LLMResult` of a streamed `generate()`: one generation, usage in `llm_output`."""
    if not chunks:
        raise ServingStreamError("the stream returned no text", endpoint=endpoint)
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    info = dict(whole.generation_info or {})
    usage: dict[str, int] = {}
    _add_usage(usage, info.pop("usage", None))
    generation = Generation(
        text=whole.text,
        generation_info={
            "finish_reason": info.get("finish_reason"),
            "logprobs": info.get("logprobs"),
        },
    )
    return LLMResult(
        generations=[[generation]], llm_output={"token_usage": usage, "model_name": endpoint}
    )

"""ServingLLM against a real completions endpoint: LangChain has no standard LLM suite, so
this one covers what the chat suite covers for chat: invoke, batch, stream (sync and
async), stop sequences and usage."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from langchain_servingx import ServingLLM
from tests.integration_tests.settings import ENDPOINTS

ENDPOINT_KINDS = ("completions",)

PROMPT = "The capital of France is"
LIST_PROMPT = "Three colours, one per line:\n1."
MAX_TOKENS = 24


def _llm(**kwargs: Any) -> ServingLLM:
    params: dict[str, Any] = {
        "endpoint": ENDPOINTS["completions"],
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
        "timeout": 120,
    }
    return ServingLLM(**{**params, **kwargs})


@pytest.fixture
def llm() -> ServingLLM:
    return _llm()


def _check_usage(usage: dict[str, int], prompts: int = 1) -> None:
    assert usage["prompt_tokens"] >= prompts
    assert 1 <= usage["completion_tokens"] <= MAX_TOKENS * prompts
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


class _Tokens(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


def test_invoke(llm: ServingLLM) -> None:
    text = llm.invoke(PROMPT)
    assert isinstance(text, str)
    assert text.strip()


async def test_ainvoke(llm: ServingLLM) -> None:
    text = await llm.ainvoke(PROMPT)
    assert isinstance(text, str)
    assert text.strip()


def test_invoke_is_deterministic_at_temperature_zero(llm: ServingLLM) -> None:
    assert llm.invoke(PROMPT) == llm.invoke(PROMPT)


def test_batch_packs_prompts_into_one_request_and_keeps_order(llm: ServingLLM) -> None:
    prompts = [PROMPT, "The capital of Italy is"]
    batched = llm.batch(prompts)
    assert batched == [llm.invoke(p) for p in prompts]
    assert all(isinstance(t, str) and t.strip() for t in batched)


async def test_abatch(llm: ServingLLM) -> None:
    prompts = [PROMPT, "The capital of Italy is"]
    batched = await llm.abatch(prompts)
    assert batched == [await llm.ainvoke(p) for p in prompts]


def test_generate_reports_summed_usage(llm: ServingLLM) -> None:
    result = llm.generate([PROMPT, "The capital of Italy is"])
    assert isinstance(result, LLMResult)
    assert len(result.generations) == 2
    assert result.llm_output is not None
    assert result.llm_output["model_name"] == ENDPOINTS["completions"]
    _check_usage(result.llm_output["token_usage"], prompts=2)
    for generations in result.generations:
        assert generations[0].text.strip()
        assert generations[0].generation_info is not None
        assert generations[0].generation_info["finish_reason"] in ("stop", "length")


async def test_agenerate_reports_usage(llm: ServingLLM) -> None:
    result = await llm.agenerate([PROMPT])
    assert result.llm_output is not None
    _check_usage(result.llm_output["token_usage"])


def test_stream_matches_invoke(llm: ServingLLM) -> None:
    chunks = list(llm.stream(PROMPT))
    assert len(chunks) > 1, "a streamed answer comes in several pieces"
    assert all(isinstance(c, str) for c in chunks)
    assert "".join(chunks) == llm.invoke(PROMPT)


async def test_astream_matches_ainvoke(llm: ServingLLM) -> None:
    chunks = [c async for c in llm.astream(PROMPT)]
    assert len(chunks) > 1
    assert "".join(chunks) == await llm.ainvoke(PROMPT)


def test_streaming_generate_reports_usage_and_tokens() -> None:
    llm = _llm(streaming=True)
    handler = _Tokens()
    result = llm.generate([PROMPT], callbacks=[handler])
    assert len(handler.tokens) > 1
    assert "".join(handler.tokens) == result.generations[0][0].text
    assert result.llm_output is not None
    _check_usage(result.llm_output["token_usage"])
    assert result.generations[0][0].generation_info is not None
    assert result.generations[0][0].generation_info["finish_reason"] in ("stop", "length")


async def test_astreaming_agenerate_reports_usage() -> None:
    llm = _llm(streaming=True)
    result = await llm.agenerate([PROMPT])
    assert result.llm_output is not None
    _check_usage(result.llm_output["token_usage"])


def test_stop_sequence(llm: ServingLLM) -> None:
    free = llm.invoke(LIST_PROMPT)
    assert "\n" in free, "without a stop sequence the list goes on past the first line"
    stopped = llm.invoke(LIST_PROMPT, stop=["\n"])
    assert stopped.strip()
    assert "\n" not in stopped
    assert free.startswith(stopped)
    assert _llm(stop=["\n"]).invoke(LIST_PROMPT) == stopped


def test_stop_sequence_when_streaming(llm: ServingLLM) -> None:
    chunks = list(llm.stream(LIST_PROMPT, stop=["\n"]))
    assert "".join(chunks) == llm.invoke(LIST_PROMPT, stop=["\n"])
    assert "\n" not in "".join(chunks)


def test_max_tokens_limits_the_answer(llm: ServingLLM) -> None:
    result = llm.generate(["Once upon a time"], max_tokens=4)
    assert result.llm_output is not None
    assert result.llm_output["token_usage"]["completion_tokens"] <= 4
    assert result.generations[0][0].generation_info is not None
    assert result.generations[0][0].generation_info["finish_reason"] == "length"

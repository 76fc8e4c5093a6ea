"""The package's own classes driving the real local endpoint end to end."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from langchain_servingx import (
    ChatServing,
    ServingAuthenticationError,
    ServingContextOverflowError,
    ServingEmbeddings,
    ServingInvalidRequestError,
    ServingLLM,
    ServingNotFoundError,
)
from tests.local.conftest import LOCAL_TOKEN

pytestmark = pytest.mark.local


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"18C and sunny in {city}"


@tool
def get_time(zone: str) -> str:
    """Get the current time in a time zone."""
    return f"12:00 in {zone}"


class Person(BaseModel):
    """A person."""

    name: str = Field(description="first name")
    age: int = Field(description="age in years")


@pytest.fixture
def chat(local_env: str) -> ChatServing:
    return ChatServing(endpoint="local-chat", temperature=0, max_tokens=32)


def test_invoke_with_usage(chat: ChatServing) -> None:
    reply = chat.invoke("What is the capital of France?")
    assert isinstance(reply, AIMessage)
    assert isinstance(reply.content, str)
    assert reply.content
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] > 0
    assert 0 < reply.usage_metadata["output_tokens"] <= 32


def test_explicit_host_and_token_without_environment(local_endpoint: Any) -> None:
    chat = ChatServing(
        endpoint="local-chat", host=local_endpoint.host, token=LOCAL_TOKEN, max_tokens=4
    )
    assert chat.invoke("Hi").content


def test_stream_matches_invoke_and_reports_usage(chat: ChatServing) -> None:
    prompt = "Write one sentence about the sea."
    chunks = list(chat.stream(prompt))
    assert len(chunks) > 2
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content == chat.invoke(prompt).content
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] > 0
    assert merged.usage_metadata["total_tokens"] == (
        merged.usage_metadata["input_tokens"] + merged.usage_metadata["output_tokens"]
    )


async def test_async_invoke_and_stream(chat: ChatServing) -> None:
    reply = await chat.ainvoke("Say hello.")
    assert reply.content
    pieces = [chunk.content async for chunk in chat.astream("Say hello.")]
    assert "".join(str(p) for p in pieces) == reply.content


def test_batch(chat: ChatServing) -> None:
    replies = chat.batch(["Say one.", "Say two.", "Say three."])
    assert len(replies) == 3
    assert all(r.content for r in replies)


@pytest.mark.parametrize("choice", ["auto", "required", "any", "get_weather"])
def test_tool_choices_that_call(chat: ChatServing, choice: str) -> None:
    bound = chat.bind_tools([get_weather, get_time], tool_choice=choice)
    reply = bound.invoke("What is the weather in Paris?")
    assert len(reply.tool_calls) == 1
    call = reply.tool_calls[0]
    assert call["name"] in {"get_weather", "get_time"}
    if choice in {"auto", "get_weather"}:
        assert call["name"] == "get_weather"
        assert call["args"] == {"city": "Paris"}
    assert call["id"]


def test_tool_choice_none_answers_in_text(chat: ChatServing) -> None:
    reply = chat.bind_tools([get_weather], tool_choice="none").invoke(
        "What is the weather in Paris?"
    )
    assert not reply.tool_calls
    assert reply.content


def test_streamed_tool_call(chat: ChatServing) -> None:
    bound = chat.bind_tools([get_weather], tool_choice="get_weather")
    merged: Any = None
    for chunk in bound.stream("Weather in Oslo?"):
        merged = chunk if merged is None else merged + chunk
    assert [c["name"] for c in merged.tool_calls] == ["get_weather"]
    assert "city" in merged.tool_calls[0]["args"]


def test_tool_round_trip(chat: ChatServing) -> None:
    question = HumanMessage("What is the weather in Paris?")
    call_message = chat.bind_tools([get_weather], tool_choice="get_weather").invoke([question])
    call = call_message.tool_calls[0]
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    answer = chat.bind_tools([get_weather]).invoke([question, call_message, result])
    assert answer.content or answer.tool_calls


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_structured_output_with_a_schema(chat: ChatServing, method: str) -> None:
    extract = chat.with_structured_output(Person, method=method)  # type: ignore[arg-type]
    person = extract.invoke("Ann is 31 years old. Extract the person.")
    assert isinstance(person, Person)
    assert person.name


def test_structured_output_json_mode(local_env: str) -> None:
    chat = ChatServing(endpoint="local-chat", temperature=0, max_tokens=60)
    extract = chat.with_structured_output(method="json_mode", include_raw=True)
    result = extract.invoke("Return a JSON object with keys name and age for Ann, 31.")
    raw = result["raw"]
    assert isinstance(raw, AIMessage)
    if raw.response_metadata.get("finish_reason") == "stop":
        assert isinstance(result["parsed"], dict)
    else:  # the tiny model may ramble inside the object until max_tokens
        assert str(raw.content).lstrip().startswith("{")


def test_embeddings(local_env: str) -> None:
    embeddings = ServingEmbeddings(endpoint="local-embeddings")
    cat, kitten, market = embeddings.embed_documents(["cat", "kitten", "stock market"])

    def cos(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    assert len(cat) == 384
    assert cos(cat, kitten) > cos(cat, market)
    assert embeddings.embed_query("cat") == pytest.approx(cat, abs=1e-5)


async def test_async_embeddings_many_inputs(local_env: str) -> None:
    embeddings = ServingEmbeddings(endpoint="local-embeddings", batch_size=16)
    texts = [f"sentence number {i}" for i in range(50)]
    vectors = await embeddings.aembed_documents(texts)
    assert len(vectors) == 50
    assert vectors[7] == pytest.approx(embeddings.embed_query(texts[7]), abs=1e-5)


def test_completions(local_env: str) -> None:
    llm = ServingLLM(endpoint="local-completions", temperature=0, max_tokens=8)
    text = llm.invoke("1, 2, 3, 4,")
    assert "5" in text
    streamed = "".join(llm.stream("1, 2, 3, 4,"))
    assert streamed == text
    assert len(llm.batch(["a, b, c,", "x, y,"])) == 2


def test_client_errors(local_env: str, host: str) -> None:
    with pytest.raises(ServingNotFoundError):
        ChatServing(endpoint="no-such-endpoint", max_retries=0).invoke("hi")
    with pytest.raises(ServingAuthenticationError):
        ChatServing(endpoint="local-chat", host=host, token="wrong", max_retries=0).invoke("hi")
    with pytest.raises(ServingInvalidRequestError):
        ChatServing(endpoint="local-embeddings", max_retries=0).invoke("hi")
    with pytest.raises(ServingInvalidRequestError):
        ChatServing(endpoint="local-chat", temperature=5, max_retries=0).invoke("hi")
    with pytest.raises(ServingContextOverflowError):
        ChatServing(endpoint="local-chat", max_retries=0).invoke("word " * 3000)


async def test_sixteen_concurrent_clients(local_env: str) -> None:
    chats = [ChatServing(endpoint="local-chat", temperature=0, max_tokens=12) for _ in range(8)]
    embeddings = ServingEmbeddings(endpoint="local-embeddings")
    llm = ServingLLM(endpoint="local-completions", temperature=0, max_tokens=12)

    async def streamed(chat: ChatServing, i: int) -> str:
        return "".join([str(c.content) async for c in chat.astream(f"Say {i}.")])

    jobs: list[Any] = [c.ainvoke(f"Count to {i}.") for i, c in enumerate(chats[:4])]
    jobs += [streamed(c, i) for i, c in enumerate(chats[4:])]
    jobs += [embeddings.aembed_documents([f"text {i}"] * 4) for i in range(4)]
    jobs += [llm.ainvoke(f"{i}, {i + 1},") for i in range(4)]
    results = await asyncio.gather(*jobs)
    assert len(results) == 16
    assert all(results)


def test_listing_through_http(local_env: str, host: str) -> None:
    import httpx

    listing = httpx.get(
        f"{host}/api/2.0/serving-endpoints", headers={"Authorization": f"Bearer {LOCAL_TOKEN}"}
    ).json()
    names = {e["name"]: e["task"] for e in listing["endpoints"]}
    assert names["local-chat"] == "llm/v1/chat"
    assert json.dumps(listing)

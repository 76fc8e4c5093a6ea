"""Token accounting, log probabilities, parallel tool calls and served entities, live."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import httpx
import pytest

from langchain_servingx import ChatServing
from tests.local.conftest import LOCAL_TOKEN
from tests.local.test_http_contract import invoke as post

pytestmark = pytest.mark.local

AUTH = {"Authorization": f"Bearer {LOCAL_TOKEN}"}
HELLO = [{"role": "user", "content": "Say hello to Ada."}]


def tool(name: str, description: str, argument: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {argument: {"type": "string"}},
                "required": [argument],
            },
        },
    }


WEATHER = tool("get_weather", "Get the current weather in a city.", "city")
TIME = tool("get_time", "Get the current time in a city.", "city")


@pytest.fixture
def client(host: str) -> httpx.Client:
    with httpx.Client(base_url=host, headers=AUTH, timeout=120) as http:
        yield http


def test_completion_tokens_count_the_answer_only(client: httpx.Client) -> None:
    body = {"messages": HELLO, "temperature": 0, "max_tokens": 64, "logprobs": True}
    answer = post(client, "local-chat", body)
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "stop"
    # One log-probability entry per generated token of the text: the end-of-turn token
    # that stopped generation is not part of the answer, so it is not counted.
    tokens = choice["logprobs"]["content"]
    assert answer["usage"]["completion_tokens"] == len(tokens)
    assert "".join(t["token"] for t in tokens) == choice["message"]["content"]
    capped = post(client, "local-chat", {**body, "max_tokens": 3})
    assert capped["choices"][0]["finish_reason"] == "length"
    assert capped["usage"]["completion_tokens"] == 3


def test_chat_logprobs_streamed_and_not(client: httpx.Client) -> None:
    body = {
        "messages": HELLO,
        "temperature": 0,
        "max_tokens": 8,
        "logprobs": True,
        "top_logprobs": 2,
    }
    whole = post(client, "local-chat", body)["choices"][0]["logprobs"]["content"]
    assert all(len(t["top_logprobs"]) == 2 for t in whole)
    assert all(t["token"] == t["top_logprobs"][0]["token"] for t in whole)  # greedy
    assert all(t["logprob"] <= 0 and t["bytes"] == list(t["token"].encode()) for t in whole)
    first = whole[0]["top_logprobs"]
    assert math.exp(first[0]["logprob"]) + math.exp(first[1]["logprob"]) <= 1.0 + 1e-6
    streamed: list[dict[str, Any]] = []
    with client.stream(
        "POST", "/serving-endpoints/local-chat/invocations", json={**body, "stream": True}
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line.removeprefix("data: "))
                for choice in chunk["choices"]:
                    streamed += (choice.get("logprobs") or {}).get("content") or []
    assert [t["token"] for t in streamed] == [t["token"] for t in whole]
    assert [t["logprob"] for t in streamed] == pytest.approx([t["logprob"] for t in whole])
    plain = post(client, "local-chat", {"messages": HELLO, "max_tokens": 4})
    assert plain["choices"][0]["logprobs"] is None


def test_completions_logprobs(client: httpx.Client) -> None:
    answer = post(
        client,
        "local-completions",
        {"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0, "logprobs": 3},
    )
    choice = answer["choices"][0]
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == choice["text"]
    assert len(logprobs["token_logprobs"]) == answer["usage"]["completion_tokens"]
    assert all(len(top) <= 3 for top in logprobs["top_logprobs"])
    offsets = [0]
    for token in logprobs["tokens"][:-1]:
        offsets.append(offsets[-1] + len(token))
    assert logprobs["text_offset"] == offsets


def test_bad_logprob_requests_are_400s(client: httpx.Client) -> None:
    response = client.post(
        "/serving-endpoints/local-chat/invocations",
        json={"messages": HELLO, "top_logprobs": 2},
    )
    assert response.status_code == 400
    assert "top_logprobs needs logprobs: true" in response.json()["message"]
    response = client.post(
        "/serving-endpoints/local-completions/invocations",
        json={"prompt": "x", "logprobs": 9},
    )
    assert response.status_code == 400
    assert "logprobs" in response.json()["message"]


def test_parallel_tool_calls(client: httpx.Client) -> None:
    question = "What is the weather in Paris? And what is the time in Tokyo?"
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": question}],
        "tools": [WEATHER, TIME],
        "tool_choice": "required",
        "temperature": 0,
        "max_tokens": 48,
    }
    single = post(client, "local-chat", body)["choices"][0]
    assert len(single["message"]["tool_calls"]) == 1  # unset: one call, as before
    parallel = post(client, "local-chat", {**body, "parallel_tool_calls": True})["choices"][0]
    calls = parallel["message"]["tool_calls"]
    assert parallel["finish_reason"] == "tool_calls"
    assert len(calls) >= 2
    named = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]
    assert len({json.dumps(n, sort_keys=True) for n in named}) == len(named)  # no repeats
    assert {name for name, _ in named} == {"get_weather", "get_time"}
    assert len({c["id"] for c in calls}) == len(calls)


def test_parallel_tool_calls_through_chat_serving(local_env: str) -> None:
    llm = ChatServing(endpoint="local-chat", temperature=0, max_tokens=48)
    bound = llm.bind_tools([WEATHER, TIME], tool_choice="any", parallel_tool_calls=True)
    reply = bound.invoke("What is the weather in Paris? And what is the time in Tokyo?")
    assert {c["name"] for c in reply.tool_calls} == {"get_weather", "get_time"}
    streamed = None
    for chunk in bound.stream("What is the weather in Paris? And what is the time in Tokyo?"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None
    assert [c["name"] for c in streamed.tool_calls] == [c["name"] for c in reply.tool_calls]


def test_traffic_split_over_real_models(client: httpx.Client, local_env: str) -> None:
    served = [
        client.post(
            "/serving-endpoints/split-chat/invocations",
            json={"messages": HELLO, "max_tokens": 2},
        ).headers["served-model-name"]
        for _ in range(4)
    ]
    assert Counter(served) == {"smollm-a": 2, "smollm-b": 2}
    llm = ChatServing(endpoint="split-chat", max_tokens=2)
    names = {llm.invoke("Hi").response_metadata["served_model_name"] for _ in range(2)}
    assert names == {"smollm-a", "smollm-b"}
    one = client.post(
        "/serving-endpoints/split-chat/served-models/smollm-b/invocations",
        json={"messages": HELLO, "max_tokens": 2},
    )
    assert one.headers["served-model-name"] == "smollm-b"
    usage = client.get("/health").json()["usage"]["split-chat"]["entities"]
    assert usage["smollm-b"]["requests"] >= 4
    assert usage["smollm-b"]["completion_tokens"] > 0

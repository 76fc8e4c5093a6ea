"""External-model endpoints: the local endpoint in front of a fake OpenAI-compatible server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from langchain_servingx import ChatServing, ServingEmbeddings, ServingLLM, ServingRateLimitError
from tests.local.conftest import LOCAL_TOKEN, UPSTREAM_KEY
from tests.local.fake_openai import FakeOpenAI

pytestmark = pytest.mark.local

AUTH = {"Authorization": f"Bearer {LOCAL_TOKEN}"}


@pytest.fixture
def client(host: str) -> httpx.Client:
    with httpx.Client(base_url=host, headers=AUTH, timeout=60) as http:
        yield http


@pytest.fixture
def fake(upstream: FakeOpenAI) -> FakeOpenAI:
    upstream.requests.clear()
    return upstream


def sse_events(response: httpx.Response) -> list[Any]:
    events = [
        line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")
    ]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_chat_is_forwarded_with_the_upstream_model_and_key(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "reasoning_effort": "low",  # provider extras pass through
        "extra_params": {"top_p": 0.5},
    }
    response = client.post("/serving-endpoints/proxy-chat/invocations", json=body)
    assert response.status_code == 200
    assert response.headers["served-model-name"] == "gpt-fake"
    assert response.json()["choices"][0]["message"]["content"] == "Hello from upstream"
    (sent,) = fake.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["auth"] == f"Bearer {UPSTREAM_KEY}"
    assert sent["body"]["model"] == "gpt-fake"
    assert sent["body"]["reasoning_effort"] == "low"
    assert sent["body"]["top_p"] == 0.5
    assert "extra_params" not in sent["body"]


def test_streams_are_relayed_with_usage(client: httpx.Client, fake: FakeOpenAI) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    with client.stream("POST", "/serving-endpoints/proxy-chat/invocations", json=body) as response:
        events = sse_events(response)
    text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    assert text == "Hello from upstream"
    assert events[-1]["choices"] == []
    assert events[-1]["usage"]["total_tokens"] == 11
    assert fake.requests[0]["body"]["stream_options"] == {"include_usage": True}


def test_openai_route_completions_and_embeddings(client: httpx.Client, fake: FakeOpenAI) -> None:
    completion = client.post(
        "/serving-endpoints/completions", json={"model": "proxy-completions", "prompt": "x"}
    ).json()
    assert completion["choices"][0]["text"] == " upstream text"
    embedded = client.post(
        "/serving-endpoints/proxy-embeddings/invocations", json={"input": ["a", "b"]}
    ).json()
    assert [d["embedding"][0] for d in embedded["data"]] == pytest.approx([0.1, 0.2])
    assert [r["body"]["model"] for r in fake.requests] == ["gpt-fake-instruct", "embed-fake"]


def test_upstream_errors_come_back_wrapped(client: httpx.Client, fake: FakeOpenAI) -> None:
    body = {"messages": [{"role": "user", "content": "FAIL429"}]}
    response = client.post("/serving-endpoints/proxy-chat/invocations", json=body)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    error = response.json()
    assert error["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert "Rate limit reached" in error["message"]
    assert error["external_model_provider"] == "openai"
    assert error["external_model_error"]["error"]["code"] == "rate_limit"
    body = {"messages": [{"role": "user", "content": "FAIL500"}]}
    response = client.post("/serving-endpoints/proxy-chat/invocations", json=body)
    assert response.status_code == 500
    assert response.json()["error_code"] == "INTERNAL_ERROR"


def test_requests_are_validated_before_forwarding(client: httpx.Client, fake: FakeOpenAI) -> None:
    response = client.post(
        "/serving-endpoints/proxy-chat/invocations",
        json={"messages": [{"role": "user", "content": "hi"}], "temperature": 9},
    )
    assert response.status_code == 400
    assert "temperature" in response.json()["message"]
    assert fake.requests == []


def test_package_clients_through_the_proxy(local_env: str, fake: FakeOpenAI) -> None:
    chat = ChatServing(endpoint="proxy-chat")
    assert chat.invoke("hi").content == "Hello from upstream"
    assert "".join(str(c.content) for c in chat.stream("hi")) == "Hello from upstream"
    assert ServingLLM(endpoint="proxy-completions").invoke("x") == " upstream text"
    assert len(ServingEmbeddings(endpoint="proxy-embeddings").embed_query("a")) == 3
    with pytest.raises(ServingRateLimitError):
        ChatServing(endpoint="proxy-chat", max_retries=0).invoke("FAIL429")

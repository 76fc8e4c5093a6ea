"""`api="auto"`: the endpoint's task picks the protocol, read once per workspace."""

from __future__ import annotations

from typing import Any

import pytest

from langchain_servingx import ChatServing, ServingWorkspace
from tests.conftest import TEST_TOKEN
from tests.serving_server import Reply, ServingTestServer, chat_response

LISTING = "/api/2.0/serving-endpoints"
RESPONSES_ANSWER = {
    "output": [
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "from the agent"}],
        }
    ]
}
CHAT_AGENT_ANSWER = {"messages": [{"role": "assistant", "id": "m1", "content": "from ChatAgent"}]}


def endpoint(name: str, task: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {"name": name, "state": {"ready": "READY"}}
    if task is not None:
        info["task"] = task
    return info


@pytest.fixture
def scripted(server: ServingTestServer) -> ServingTestServer:
    listing = [
        endpoint("agent", "agent/v1/responses"),
        endpoint("chat-agent", "agent/v2/chat"),
        endpoint("agent-chat", "agent/v1/chat"),
        endpoint("chat", "llm/v1/chat"),
        endpoint("custom", None),
    ]
    server.reply(LISTING, Reply.json({"endpoints": listing}))
    server.reply("/serving-endpoints/agent/invocations", Reply.json(RESPONSES_ANSWER))
    server.reply("/serving-endpoints/chat-agent/invocations", Reply.json(CHAT_AGENT_ANSWER))
    for name in ("agent-chat", "chat", "custom"):
        server.reply(f"/serving-endpoints/{name}/invocations", Reply.json(chat_response()))
    return server


def body_kind(server: ServingTestServer, name: str) -> str:
    body = server.requests_to(f"/serving-endpoints/{name}/invocations")[-1].json
    return "input" if "input" in body else "messages"


def test_one_listing_read_picks_every_protocol(scripted: ServingTestServer) -> None:
    with ServingWorkspace(host=scripted.url, token=TEST_TOKEN, max_retries=0) as ws:
        assert ChatServing(endpoint="agent", workspace=ws).invoke("hi").text == "from the agent"
        assert ChatServing(endpoint="chat-agent", workspace=ws).invoke("hi").text == (
            "from ChatAgent"
        )
        for name in ("agent-chat", "chat", "custom"):
            assert ChatServing(endpoint=name, workspace=ws).invoke("hi").text == "Hello!"
    assert len(scripted.requests_to(LISTING)) == 1  # cached per workspace
    assert body_kind(scripted, "agent") == "input"
    chat_agent = scripted.requests_to("/serving-endpoints/chat-agent/invocations")[-1].json
    assert chat_agent == {"messages": [{"role": "user", "content": "hi"}]}
    assert body_kind(scripted, "chat") == "messages"


async def test_async_reads_the_listing_too(scripted: ServingTestServer) -> None:
    async with ServingWorkspace(host=scripted.url, token=TEST_TOKEN, max_retries=0) as ws:
        llm = ChatServing(endpoint="chat", workspace=ws)
        assert (await llm.ainvoke("hi", model="agent")).text == "from the agent"
        assert (await llm.ainvoke("hi")).text == "Hello!"
    assert len(scripted.requests_to(LISTING)) == 1


def test_explicit_api_skips_the_listing(
    scripted: ServingTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", scripted.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", TEST_TOKEN)
    ChatServing(endpoint="chat", api="chat").invoke("hi")
    ChatServing(endpoint="agent", api="responses").invoke("hi")
    assert scripted.requests_to(LISTING) == []


def test_no_listing_means_chat_asked_once(serving_env: ServingTestServer) -> None:
    server = serving_env
    server.reply(LISTING, Reply.json({"error_code": "PERMISSION_DENIED", "message": "no"}, 403))
    server.reply("/serving-endpoints/chat/invocations", Reply.json(chat_response()))
    llm = ChatServing(endpoint="chat", max_retries=0)
    assert llm.invoke("hi").text == "Hello!"
    assert llm.invoke("again").text == "Hello!"
    assert len(server.requests_to(LISTING)) == 1


def test_base_url_servers_have_no_listing(server: ServingTestServer) -> None:
    server.reply("/v1/chat/completions", Reply.json(chat_response()))
    ChatServing(endpoint="m", base_url=f"{server.url}/v1").invoke("hi")
    assert [r.path for r in server.requests] == ["/v1/chat/completions"]

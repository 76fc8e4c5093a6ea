"""The local agents' tools, and their wire formats checked with MLflow's types on the raw
server. ChatServing driving them is in tests/integration_tests/test_agents.py (replayed in
`make test`, live in `make test-local`)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from mlflow.types.agent import ChatAgentChunk, ChatAgentResponse
from mlflow.types.responses import ResponsesAgentResponse, ResponsesAgentStreamEvent

from langchain_servingx.local.agents import calculate, clock
from tests.local.conftest import LOCAL_TOKEN

pytestmark = pytest.mark.local

QUESTION = "What is 17 * 23?"

# ------------------------------------------------------------------------------------------
# the tools
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("17 * 23", "391"),
        ("(1 + 2) * -3", "-9"),
        ("7 / 2", "3.5"),
        ("2 ^ 10", "1024"),
        ("10 / 4 * 2", "5"),
    ],
)
def test_calculator(expression: str, expected: str) -> None:
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("__import__('os').system('true')", "unsupported element Call"),
        ("1 / 0", "division by zero"),
        ("9 ** 9999", "exponent too large"),
        ("17 *", "invalid syntax"),
    ],
)
def test_calculator_refuses_what_is_not_arithmetic(expression: str, problem: str) -> None:
    result = calculate(expression)
    assert result.startswith("error: ")
    assert problem in result


def test_clock() -> None:
    assert clock("UTC").endswith("+00:00")
    assert clock("Nowhere/Atlantis") == "error: unknown timezone 'Nowhere/Atlantis'"


# ------------------------------------------------------------------------------------------
# the wire, checked with MLflow's types
# ------------------------------------------------------------------------------------------


def post(host: str, name: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{host}/serving-endpoints/{name}/invocations",
        json=body,
        headers={"Authorization": f"Bearer {LOCAL_TOKEN}"},
        timeout=300,
    )


def sse(response: httpx.Response) -> list[dict[str, Any]]:
    lines = [line.removeprefix("data: ") for line in response.text.splitlines() if line]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1] if not line.startswith(":")]


def test_responses_answer_validates(host: str) -> None:
    response = post(host, "local-agent", {"input": [{"role": "user", "content": QUESTION}]})
    assert response.status_code == 200, response.text
    answer = ResponsesAgentResponse.model_validate(response.json())
    kinds = [item.type for item in answer.output]
    assert kinds[:2] == ["function_call", "function_call_output"], kinds
    assert answer.output[1].model_dump()["output"] == "391"
    assert kinds[-1] == "message"
    assert answer.usage is not None
    assert answer.usage.total_tokens > 0
    assert answer.custom_outputs == {"tools_used": ["calculator"]}


def test_responses_stream_validates(host: str) -> None:
    response = post(
        host,
        "local-agent",
        {"input": [{"role": "user", "content": QUESTION}], "stream": True},
    )
    assert response.status_code == 200, response.text
    events = sse(response)
    for event in events:
        ResponsesAgentStreamEvent.model_validate(event)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    done = [e["item"]["type"] for e in events if e["type"] == "response.output_item.done"]
    assert done[:2] == ["function_call", "function_call_output"]
    completed = events[-1]["response"]
    assert [i["type"] for i in completed["output"]] == done


def test_chat_agent_answer_and_stream_validate(host: str) -> None:
    body = {"messages": [{"role": "user", "content": QUESTION}]}
    answer = ChatAgentResponse.model_validate(post(host, "local-chat-agent", body).json())
    roles = [m.role for m in answer.messages]
    assert roles[:2] == ["assistant", "tool"]
    assert answer.messages[1].content == "391"
    assert answer.messages[1].name == "calculator"
    chunks = sse(post(host, "local-chat-agent", {**body, "stream": True}))
    for chunk in chunks:
        ChatAgentChunk.model_validate(chunk)
    assert chunks[-1]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] > 0


def test_wrong_shape_is_a_clear_error(host: str) -> None:
    response = post(host, "local-agent", {"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400
    assert "agent/v1/responses" in response.json()["message"]
    assert "'input'" in response.json()["message"]


def test_listing_names_the_agent_tasks(host: str) -> None:
    listing = httpx.get(
        f"{host}/api/2.0/serving-endpoints", headers={"Authorization": f"Bearer {LOCAL_TOKEN}"}
    ).json()
    tasks = {e["name"]: e["task"] for e in listing["endpoints"]}
    assert tasks["local-agent"] == "agent/v1/responses"
    assert tasks["local-chat-agent"] == "agent/v2/chat"

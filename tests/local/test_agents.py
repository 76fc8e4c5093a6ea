"""The local agents: their tools, their wire formats (checked with MLflow's types) and
ChatServing driving them live, alone and as the model of a LangChain agent."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.tools import tool
from mlflow.types.agent import ChatAgentChunk, ChatAgentResponse
from mlflow.types.responses import ResponsesAgentResponse, ResponsesAgentStreamEvent

from langchain_servingx import ChatServing
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


# ------------------------------------------------------------------------------------------
# ChatServing on the agents
# ------------------------------------------------------------------------------------------


@pytest.fixture
def agent(local_env: str) -> ChatServing:
    return ChatServing(endpoint="local-agent", api="responses")


def assert_calculated(message: AIMessage) -> None:
    kinds = [b["type"] for b in message.content_blocks]
    assert kinds[:2] == ["server_tool_call", "server_tool_result"], kinds
    call, result = message.content_blocks[0], message.content_blocks[1]
    assert call["name"] == "calculator"
    assert "17" in call["args"]["expression"]
    assert result["output"] == "391"
    assert kinds[-1] == "text"
    assert message.text
    assert message.tool_calls == []
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] > 0


def test_done_when(agent: ChatServing) -> None:
    """`ChatServing(endpoint="local-agent").invoke(...)`: the answer, its tool steps visible."""
    message = agent.invoke(QUESTION)
    assert_calculated(message)
    assert "391" in message.text
    assert message.response_metadata["custom_outputs"] == {"tools_used": ["calculator"]}


def test_stream_shows_each_step(agent: ChatServing) -> None:
    chunks = list(agent.stream(QUESTION))
    firsts = [c.content_blocks[0]["type"] for c in chunks if c.content_blocks]
    assert firsts[0] == "server_tool_call"  # the step shows before the answer streams
    assert firsts.count("text") > 1  # the answer streams token by token
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert isinstance(total, AIMessageChunk)
    assert_calculated(total)


async def test_async(agent: ChatServing) -> None:
    assert_calculated(await agent.ainvoke(QUESTION))
    total = None
    async for chunk in agent.astream(QUESTION):
        total = chunk if total is None else total + chunk
    assert isinstance(total, AIMessageChunk)
    assert_calculated(total)


def test_multi_turn(agent: ChatServing) -> None:
    first = agent.invoke(QUESTION)
    second = agent.invoke([HumanMessage(QUESTION), first, HumanMessage("What is 391 + 9?")])
    calls = [b for b in second.content_blocks if b["type"] == "server_tool_call"]
    results = [b for b in second.content_blocks if b["type"] == "server_tool_result"]
    assert calls
    assert calls[0]["name"] == "calculator"
    assert results[0]["output"] == "400"


def test_custom_inputs_come_back(agent: ChatServing) -> None:
    message = agent.invoke(QUESTION, custom_inputs={"tier": "gold"}, context={"user_id": "u1"})
    assert message.response_metadata["custom_outputs"] == {
        "tools_used": ["calculator"],
        "custom_inputs": {"tier": "gold"},
        "context": {"user_id": "u1"},
    }


def test_chat_agent_endpoint(local_env: str) -> None:
    message = ChatServing(endpoint="local-chat-agent", api="chat_agent").invoke(QUESTION)
    assert_calculated(message)


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"18C and sunny in {city}"


def test_agent_endpoint_as_the_model_of_create_agent(agent: ChatServing) -> None:
    from langchain.agents import create_agent

    graph = create_agent(agent, [get_weather])
    state = graph.invoke(
        {"messages": [HumanMessage("Use get_weather: what is the weather in Paris?")]}
    )
    messages = state["messages"]
    tool_results = [m for m in messages if m.type == "tool"]
    assert tool_results, [m.type for m in messages]
    assert "18C and sunny" in str(tool_results[0].content)
    assert isinstance(messages[-1], AIMessage)
    assert messages[-1].text

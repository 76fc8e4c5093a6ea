"""ChatServing on agent endpoints: the agent's tool steps in invoke and streams, async, a
multi-turn conversation, an agent endpoint as the model of a LangChain agent, the ChatAgent
variant, `custom_inputs`; and when the endpoint listing is (and is not) asked.

Every model here keeps the default `api="auto"`, so its first call reads the endpoint's task
from the listing (`GET /api/2.0/serving-endpoints`), which is recorded with the rest.
Locally the agents are `local-agent` (`agent/v1/responses`) and `local-chat-agent`
(`agent/v2/chat`): a tool-calling loop over SmolLM2-135M with a calculator and a clock.
"""

from __future__ import annotations

import datetime as dt

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.tools import tool
from vcr.cassette import Cassette

from langchain_servingx import ChatServing, ServingWorkspace
from tests.integration_tests.settings import AGENT_PARAMS, CHAT_PARAMS, ENDPOINTS, LIVE, MODE

ENDPOINT_KINDS = ("agent",)

QUESTION = "What is 17 * 23?"
LISTING = "GET /api/2.0/serving-endpoints"
LOCAL_AGENTS = MODE != "workspace"
"""The local agents' own behaviour (their tools' names, their `custom_outputs`) is checked
only on them; a workspace's agents have tools and outputs of their own."""


@pytest.fixture
def agent() -> ChatServing:
    return ChatServing(**AGENT_PARAMS)


def requests_made(cassette: Cassette | None) -> list[str] | None:
    """`METHOD path` of every request this test made, in order; None when live (no cassette).

    In record mode that is what was recorded; in replay, what was played (a request the
    cassette does not hold fails the test, and one it holds but was not made fails it too).
    """
    if cassette is None:
        return None
    if MODE == "record":
        return [f"{request.method} {request.path}" for request, _ in cassette.data]
    return [
        f"{request.method} {request.path}"
        for index, (request, _) in enumerate(cassette.data)
        if cassette.play_counts[index]
    ]


def invocation(endpoint: str) -> str:
    return f"POST /serving-endpoints/{endpoint}/invocations"


def assert_calculated(message: BaseMessage) -> None:
    """The calculator's call and result come first, as standard blocks, then the answer."""
    assert isinstance(message, AIMessage)
    kinds = [b["type"] for b in message.content_blocks]
    assert kinds[:2] == ["server_tool_call", "server_tool_result"], kinds
    call, result = message.content_blocks[0], message.content_blocks[1]
    assert call["type"] == "server_tool_call"
    assert result["type"] == "server_tool_result"
    assert result["tool_call_id"] == call["id"]
    assert "391" in str(result.get("output"))
    if LOCAL_AGENTS:
        assert call["name"] == "calculator"
        assert "17" in call["args"]["expression"]
        assert "23" in call["args"]["expression"]
        assert result.get("output") == "391"
    assert kinds[-1] == "text"
    assert message.text
    assert message.tool_calls == []  # the agent ran its own tool: nothing for the caller
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] > 0
    assert message.usage_metadata["output_tokens"] > 0


def added_up(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert isinstance(total, AIMessageChunk)
    return total


# ------------------------------------------------------------------------------------------
# invoke, stream, async
# ------------------------------------------------------------------------------------------


def test_invoke_shows_the_tool_steps(agent: ChatServing) -> None:
    """`ChatServing(endpoint=...).invoke("What is 17 * 23?")`: the answer, its steps visible."""
    message = agent.invoke(QUESTION)
    assert_calculated(message)
    assert "391" in message.text
    assert message.response_metadata["finish_reason"] == "stop"
    if LOCAL_AGENTS:
        assert message.response_metadata["custom_outputs"] == {"tools_used": ["calculator"]}


def test_stream_shows_each_step(agent: ChatServing) -> None:
    chunks = list(agent.stream(QUESTION))
    kinds = [[b["type"] for b in c.content_blocks] for c in chunks if c.content_blocks]
    # The step (the call with its result) shows whole before the answer streams...
    assert kinds[0] == ["server_tool_call", "server_tool_result"], kinds[:3]
    # ...and the answer streams token by token.
    assert [k for k in kinds[1:] if k != ["text"]] == [], kinds
    assert len(kinds) > 2
    total = added_up(chunks)
    assert_calculated(total)
    assert sum(1 for c in chunks if c.usage_metadata) == 1  # usage once, at the end


async def test_async_invoke_and_stream(agent: ChatServing) -> None:
    message = await agent.ainvoke(QUESTION)
    assert_calculated(message)
    chunks = [chunk async for chunk in agent.astream(QUESTION)]
    assert len(chunks) > 2
    total = added_up(chunks)
    assert_calculated(total)
    assert total.text == message.text  # greedy decoding: the same answer either way


def test_clock_step(agent: ChatServing) -> None:
    """The agent's other tool; its answer is the time it was asked, so only its form is
    checked (a replay answers with the recorded time)."""
    message = agent.invoke("What time is it now in UTC?")
    calls = [b for b in message.content_blocks if b["type"] == "server_tool_call"]
    results = [b for b in message.content_blocks if b["type"] == "server_tool_result"]
    assert len(calls) == 1, message.content_blocks
    assert len(results) == 1, message.content_blocks
    if LOCAL_AGENTS:
        assert calls[0]["name"] == "clock"
        stamp = dt.datetime.fromisoformat(str(results[0].get("output")))
        assert stamp.utcoffset() == dt.timedelta(0)
    assert message.text


# ------------------------------------------------------------------------------------------
# conversations
# ------------------------------------------------------------------------------------------


def test_multi_turn_sends_earlier_output_back(agent: ChatServing) -> None:
    first = agent.invoke(QUESTION)
    assert_calculated(first)
    second = agent.invoke([HumanMessage(QUESTION), first, HumanMessage("What is 391 + 9?")])
    calls = [b for b in second.content_blocks if b["type"] == "server_tool_call"]
    results = [b for b in second.content_blocks if b["type"] == "server_tool_result"]
    assert calls, second.content_blocks
    assert len(results) == len(calls), second.content_blocks
    assert "400" in str(results[0].get("output"))
    assert calls[0]["id"] != first.content_blocks[0]["id"]  # a new step, not the old one
    if LOCAL_AGENTS:
        assert calls[0]["name"] == "calculator"
        assert results[0].get("output") == "400"


def test_custom_inputs_and_context(agent: ChatServing) -> None:
    message = agent.invoke(QUESTION, custom_inputs={"tier": "gold"}, context={"user_id": "u1"})
    assert_calculated(message)
    if not LOCAL_AGENTS:
        pytest.skip("what a deployed agent returns as custom_outputs is its own")
    # The local agent echoes what it was given, so this shows both arrived.
    assert message.response_metadata["custom_outputs"] == {
        "tools_used": ["calculator"],
        "custom_inputs": {"tier": "gold"},
        "context": {"user_id": "u1"},
    }


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"18C and sunny in {city}"


def test_agent_endpoint_as_the_model_of_create_agent(agent: ChatServing) -> None:
    """LangChain's agent loop on top of the served agent: the caller's tool comes back as a
    `tool_calls` entry, LangChain runs it, and the result goes back to the endpoint."""
    graph = create_agent(agent, [get_weather])
    state = graph.invoke(
        {"messages": [HumanMessage("Use get_weather: what is the weather in Paris?")]},
        {"recursion_limit": 10},
    )
    messages = state["messages"]
    calls = [c for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
    tool_results = [m for m in messages if m.type == "tool"]
    assert tool_results, [m.type for m in messages]
    assert calls[0]["name"] == "get_weather"
    assert "paris" in str(calls[0]["args"].get("city", "")).lower()
    assert tool_results[0].tool_call_id == calls[0]["id"]
    assert "18C and sunny" in str(tool_results[0].content)
    final = messages[-1]
    assert isinstance(final, AIMessage)
    assert not final.tool_calls
    assert final.text


# ------------------------------------------------------------------------------------------
# the agent/v2/chat variant
# ------------------------------------------------------------------------------------------


@pytest.mark.endpoints("chat_agent")
def test_chat_agent_endpoint() -> None:
    """`agent/v2/chat` read off the listing: the same steps, from ChatAgent messages."""
    model = ChatServing(**{**AGENT_PARAMS, "endpoint": ENDPOINTS["chat_agent"]})
    message = model.invoke(QUESTION)
    assert_calculated(message)
    assert "391" in message.text
    chunks = list(model.stream(QUESTION))
    assert len(chunks) > 2
    total = added_up(chunks)
    assert_calculated(total)
    assert total.text == message.text


# ------------------------------------------------------------------------------------------
# the listing: once per workspace with api="auto", never with api="chat"
# ------------------------------------------------------------------------------------------


@pytest.mark.endpoints("chat_agent")
def test_auto_reads_the_listing_once_per_workspace(vcr: Cassette | None) -> None:
    params = {k: v for k, v in AGENT_PARAMS.items() if k != "timeout"}
    with ServingWorkspace(timeout=AGENT_PARAMS["timeout"]) as workspace:
        responses = ChatServing(**params, workspace=workspace)
        chat_agent = ChatServing(
            **{**params, "endpoint": ENDPOINTS["chat_agent"]}, workspace=workspace
        )
        assert responses.invoke("Hello!").text
        assert chat_agent.invoke("Hello!").text
        assert responses.invoke("Hello again!").text
    made = requests_made(vcr)
    if made is not None:
        assert made == [
            LISTING,
            invocation(ENDPOINTS["agent"]),
            invocation(ENDPOINTS["chat_agent"]),
            invocation(ENDPOINTS["agent"]),
        ]


@pytest.mark.endpoints("chat")
def test_api_chat_makes_no_listing_call(vcr: Cassette | None) -> None:
    """`api="chat"` (what the chat suites use) only invokes; `"auto"` on the same endpoint
    asks the listing first."""
    if LIVE:
        pytest.skip("counts the requests a cassette recorded or replayed")
    chat = ChatServing(**CHAT_PARAMS)
    assert CHAT_PARAMS["api"] == "chat"
    assert chat.invoke("Hello!").text
    assert "".join(c.text for c in chat.stream("Hello!"))
    assert requests_made(vcr) == [invocation(ENDPOINTS["chat"])] * 2
    auto = ChatServing(**{**CHAT_PARAMS, "api": "auto"})
    assert auto.invoke("Hello!").text
    assert requests_made(vcr) == [invocation(ENDPOINTS["chat"])] * 2 + [
        LISTING,
        invocation(ENDPOINTS["chat"]),
    ]

"""ChatServing on `agent/v2/chat` (ChatAgent) endpoints, against the scripted server.

Bodies sent are validated with MLflow's `ChatAgentRequest`; scripted answers and chunks
with `ChatAgentResponse` / `ChatAgentChunk`.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage
from mlflow.types.agent import ChatAgentChunk, ChatAgentRequest, ChatAgentResponse

from langchain_servingx import ChatServing, ServingStreamError
from tests.serving_server import Reply, ServingTestServer

PATH = "/serving-endpoints/chat-agent-ep/invocations"
CALL_MESSAGE = {
    "role": "assistant",
    "id": "m1",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "calculator", "arguments": '{"expression": "17 * 23"}'},
        }
    ],
}
TOOL_MESSAGE = {
    "role": "tool",
    "id": "m2",
    "content": "391",
    "name": "calculator",
    "tool_call_id": "call_1",
}
ANSWER = {"role": "assistant", "id": "m3", "content": "17 * 23 = 391."}
USAGE = {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}


def answer(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {"messages": list(messages), "usage": USAGE, **extra}
    ChatAgentResponse.model_validate(body)
    return body


def chunks(*deltas: dict[str, Any], final: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"delta": delta} for delta in deltas]
    if final:
        out.append(
            {
                "delta": {"role": "assistant", "content": "", "id": "m3"},
                "finish_reason": "stop",
                "usage": USAGE,
                "custom_outputs": {"steps": 2},
            }
        )
    for chunk in out:
        ChatAgentChunk.model_validate(chunk)
    return out


@pytest.fixture
def agent(serving_env: ServingTestServer) -> ChatServing:
    return ChatServing(endpoint="chat-agent-ep", api="chat_agent", max_retries=0)


def sent(server: ServingTestServer) -> dict[str, Any]:
    body: dict[str, Any] = server.requests[-1].json
    ChatAgentRequest.model_validate(body)
    return body


STEPS = [
    ("server_tool_call", "calculator"),
    ("server_tool_result", "391"),
    ("text", "17 * 23 = 391."),
]


def steps(message: Any) -> list[tuple[str, Any]]:
    return [
        (b["type"], b.get("name") or b.get("output") or b.get("text"))
        for b in message.content_blocks
    ]


def test_invoke_maps_every_message(agent: ChatServing, server: ServingTestServer) -> None:
    server.reply(
        PATH, Reply.json(answer(CALL_MESSAGE, TOOL_MESSAGE, ANSWER, custom_outputs={"steps": 2}))
    )
    message = agent.invoke(
        [SystemMessage("Be brief."), HumanMessage("What is 17 * 23?")],
        custom_inputs={"tier": "gold"},
        context={"conversation_id": "c1"},
    )
    assert sent(server) == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 17 * 23?"},
        ],
        "custom_inputs": {"tier": "gold"},
        "context": {"conversation_id": "c1"},
    }
    assert message.text == "17 * 23 = 391."
    assert steps(message) == STEPS
    assert message.tool_calls == []
    assert message.response_metadata["custom_outputs"] == {"steps": 2}
    assert message.usage_metadata == {"input_tokens": 30, "output_tokens": 9, "total_tokens": 39}


def test_multi_turn_sends_the_steps_back(agent: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json(answer(CALL_MESSAGE, TOOL_MESSAGE, ANSWER)))
    first = agent.invoke("What is 17 * 23?")
    agent.invoke([HumanMessage("What is 17 * 23?"), first, HumanMessage("Doubled?")])
    messages = sent(server)["messages"]
    assert messages[1] == CALL_MESSAGE
    assert messages[2] == {k: v for k, v in TOOL_MESSAGE.items() if k != "id"}
    assert messages[3] == ANSWER
    assert messages[4] == {"role": "user", "content": "Doubled?"}


def test_tools_are_refused_with_a_reason(agent: ChatServing) -> None:
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    with pytest.raises(ValueError, match=r"ChatAgent.*takes no tools"):
        agent.bind_tools([add]).invoke("hi")


def test_stream_aggregates_deltas_by_message_id(
    agent: ChatServing, server: ServingTestServer
) -> None:
    server.reply(
        PATH,
        Reply.sse(
            chunks(
                CALL_MESSAGE,
                TOOL_MESSAGE,
                {"role": "assistant", "id": "m3", "content": "17 * 23 "},
                {"role": "assistant", "id": "m3", "content": "= 391."},
            )
        ),
    )
    parts = list(agent.stream("What is 17 * 23?"))
    assert sent(server)["stream"] is True
    assert [[b["type"] for b in p.content_blocks] for p in parts] == [
        ["server_tool_call", "server_tool_result"],
        ["text"],
        ["text"],
        [],
    ]
    total: AIMessageChunk = parts[0]
    for part in parts[1:]:
        total += part
    assert total.text == "17 * 23 = 391."
    assert steps(total) == STEPS
    assert total.usage_metadata is not None
    assert total.usage_metadata["total_tokens"] == 39
    assert total.response_metadata["custom_outputs"] == {"steps": 2}
    assert total.response_metadata["finish_reason"] == "stop"


async def test_astream_and_ainvoke(agent: ChatServing, server: ServingTestServer) -> None:
    server.reply(
        PATH, Reply.sse(chunks(CALL_MESSAGE, TOOL_MESSAGE, ANSWER)), Reply.json(answer(ANSWER))
    )
    total = None
    async for part in agent.astream("What is 17 * 23?"):
        total = part if total is None else total + part
    assert steps(total) == STEPS
    assert (await agent.ainvoke("hi")).text == "17 * 23 = 391."


def test_stream_cut_short_raises(agent: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.sse(chunks(CALL_MESSAGE, final=False), done=False))
    with pytest.raises(ServingStreamError, match="ChatAgent stream ended without"):
        list(agent.stream("What is 17 * 23?"))


def test_error_mid_stream_raises(agent: ChatServing, server: ServingTestServer) -> None:
    error = {"error_code": "INTERNAL_ERROR", "message": "agent crashed"}
    server.reply(PATH, Reply.sse([*chunks(CALL_MESSAGE, final=False), error], done=False))
    with pytest.raises(ServingStreamError, match="agent crashed"):
        list(agent.stream("What is 17 * 23?"))


def test_unanswered_tool_call_is_for_the_caller(
    agent: ChatServing, server: ServingTestServer
) -> None:
    server.reply(PATH, Reply.json(answer(CALL_MESSAGE)))
    message = agent.invoke("What is 17 * 23?")
    assert message.tool_calls[0]["id"] == "call_1"
    assert message.response_metadata["finish_reason"] == "tool_calls"

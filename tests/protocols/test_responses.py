"""ChatServing on `agent/v1/responses` endpoints, against the scripted server.

Every body we send is validated with MLflow's own `ResponsesAgentRequest`, and every body
and event the script answers with is validated with MLflow's response types first, so
the shapes on both sides are the ones real ResponsesAgent endpoints use.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
)
from pydantic import BaseModel

from langchain_servingx import ChatServing, ServingResponseError, ServingStreamError
from tests.serving_server import Reply, ServingTestServer

PATH = "/serving-endpoints/agent-ep/invocations"
USAGE = {
    "input_tokens": 40,
    "input_tokens_details": {"cached_tokens": 8},
    "output_tokens": 12,
    "output_tokens_details": {"reasoning_tokens": 5},
    "total_tokens": 52,
}
REASONING = {
    "type": "reasoning",
    "id": "rs_1",
    "summary": [{"type": "summary_text", "text": "Needs the calculator."}],
    "encrypted_content": "gAAAA-opaque",
}
CALL = {
    "type": "function_call",
    "id": "fc_1",
    "call_id": "call_1",
    "name": "calculator",
    "arguments": '{"expression": "17 * 23"}',
}
CALL_OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "391"}
ANSWER = {
    "type": "message",
    "id": "msg_1",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "17 * 23 = 391.", "annotations": []}],
}
AGENT_OUTPUT = [REASONING, CALL, CALL_OUTPUT, ANSWER]


def response_body(output: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body = {"id": "resp_1", "object": "response", "output": output, "usage": USAGE, **extra}
    ResponsesAgentResponse.model_validate(body)
    return body


def events(*items: dict[str, Any], completed: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"type": "response.output_item.done", "output_index": i, "item": item}
        for i, item in enumerate(items)
    ]
    if completed:
        out.append({"type": "response.completed", "response": response_body(list(items))})
    for event in out:
        ResponsesAgentStreamEvent.model_validate(event)
    return out


@pytest.fixture
def agent(serving_env: ServingTestServer) -> ChatServing:
    return ChatServing(endpoint="agent-ep", api="responses", max_retries=0)


def sent(server: ServingTestServer) -> dict[str, Any]:
    body: dict[str, Any] = server.requests[-1].json
    ResponsesAgentRequest.model_validate(body)  # what MLflow's ResponsesAgent accepts
    return body


def blocks_of(message: AIMessage) -> list[tuple[str, Any]]:
    summary = []
    for block in message.content_blocks:
        key = (
            block.get("text") or block.get("reasoning") or block.get("name") or block.get("output")
        )
        summary.append((block["type"], key))
    return summary


AGENT_BLOCKS = [
    ("reasoning", "Needs the calculator."),
    ("server_tool_call", "calculator"),
    ("server_tool_result", "391"),
    ("text", "17 * 23 = 391."),
]

# ------------------------------------------------------------------------------------------
# invoke
# ------------------------------------------------------------------------------------------


def test_invoke_keeps_every_output_item(agent: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json(response_body(AGENT_OUTPUT, custom_outputs={"trace": "t1"})))
    message = agent.invoke("What is 17 * 23?")
    assert sent(server) == {"input": [{"role": "user", "content": "What is 17 * 23?"}]}
    assert message.text == "17 * 23 = 391."
    assert blocks_of(message) == AGENT_BLOCKS
    call = next(b for b in message.content_blocks if b["type"] == "server_tool_call")
    assert call["args"] == {"expression": "17 * 23"}
    assert call["id"] == "call_1"
    assert message.tool_calls == []  # the agent ran its tool itself
    assert message.response_metadata["custom_outputs"] == {"trace": "t1"}
    assert message.response_metadata["finish_reason"] == "stop"
    assert message.id == "resp_1"
    assert message.usage_metadata == {
        "input_tokens": 40,
        "output_tokens": 12,
        "total_tokens": 52,
        "input_token_details": {"cache_read": 8},
        "output_token_details": {"reasoning": 5},
    }


def test_unanswered_function_call_is_a_tool_call(
    agent: ChatServing, server: ServingTestServer
) -> None:
    server.reply(PATH, Reply.json(response_body([CALL])))
    message = agent.invoke("What is 17 * 23?")
    assert message.tool_calls == [
        {
            "name": "calculator",
            "args": {"expression": "17 * 23"},
            "id": "call_1",
            "type": "tool_call",
        }
    ]
    assert message.response_metadata["finish_reason"] == "tool_calls"


def test_invalid_arguments_are_kept_not_raised(
    agent: ChatServing, server: ServingTestServer
) -> None:
    broken = {**CALL, "arguments": '{"expression": '}
    server.reply(PATH, Reply.json(response_body([broken])))
    message = agent.invoke("hi")
    assert message.tool_calls == []
    assert message.invalid_tool_calls[0]["args"] == '{"expression": '


def test_unknown_items_and_refusals_are_kept(agent: ChatServing, server: ServingTestServer) -> None:
    approval = {
        "type": "mcp_approval_request",
        "id": "mcp_1",
        "arguments": "{}",
        "name": "delete_db",
        "server_label": "ops",
    }
    refusal = {
        "type": "message",
        "id": "msg_2",
        "role": "assistant",
        "content": [{"type": "refusal", "refusal": "I will not."}],
    }
    server.reply(
        PATH,
        Reply.json(response_body([approval, refusal])),
        Reply.json(response_body([ANSWER])),
    )
    message = agent.invoke("drop it")
    kinds = [b["type"] for b in message.content_blocks]
    assert kinds == ["non_standard", "non_standard"]
    assert message.content_blocks[0]["value"] == approval
    # The approval request goes back whole in the next turn; the refusal part stays here.
    agent.invoke([HumanMessage("drop it"), message, HumanMessage("ok?")])
    assert sent(server)["input"][1] == approval


async def test_ainvoke(agent: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json(response_body(AGENT_OUTPUT)))
    message = await agent.ainvoke("What is 17 * 23?")
    assert blocks_of(message) == AGENT_BLOCKS


def test_custom_inputs_and_context_are_call_parameters(
    agent: ChatServing, server: ServingTestServer
) -> None:
    server.reply(PATH, Reply.json(response_body([ANSWER])))
    agent.invoke(
        "hi",
        custom_inputs={"user_tier": "gold"},
        context={"conversation_id": "c1", "user_id": "u1"},
        max_tokens=50,
        temperature=0.1,
    )
    body = sent(server)
    assert body["custom_inputs"] == {"user_tier": "gold"}
    assert body["context"] == {"conversation_id": "c1", "user_id": "u1"}
    assert body["max_output_tokens"] == 50
    assert body["temperature"] == 0.1
    assert "max_tokens" not in body


def test_bad_call_parameters_name_the_problem(agent: ChatServing) -> None:
    with pytest.raises(ValueError, match="custom_inputs must be a dict"):
        agent.invoke("hi", custom_inputs="gold")
    with pytest.raises(ValueError, match="n=2 is not possible"):
        ChatServing(endpoint="agent-ep", api="responses", n=2).invoke("hi")


def test_a_chat_answer_to_a_responses_call_is_a_clear_error(
    agent: ChatServing, server: ServingTestServer
) -> None:
    server.reply(PATH, Reply.json({"choices": []}))
    with pytest.raises(ServingResponseError, match=r"no output list.*api="):
        agent.invoke("hi")


# ------------------------------------------------------------------------------------------
# multi-turn, tools, structured output, the OpenAI-compatible route
# ------------------------------------------------------------------------------------------


def test_multi_turn_sends_earlier_output_back_whole(
    agent: ChatServing, server: ServingTestServer
) -> None:
    server.reply(PATH, Reply.json(response_body(AGENT_OUTPUT)), Reply.json(response_body([ANSWER])))
    first = agent.invoke("What is 17 * 23?")
    agent.invoke([HumanMessage("What is 17 * 23?"), first, HumanMessage("And doubled?")])
    items = sent(server)["input"]
    assert items[0] == {"role": "user", "content": "What is 17 * 23?"}
    assert items[1] == REASONING  # id and encrypted content intact
    assert items[2] == CALL
    assert items[3] == CALL_OUTPUT
    assert items[4] == ANSWER
    assert items[5] == {"role": "user", "content": "And doubled?"}


def test_streamed_answer_goes_back_like_an_invoked_one(
    agent: ChatServing, server: ServingTestServer
) -> None:
    server.reply(PATH, Reply.sse(events(*AGENT_OUTPUT)), Reply.json(response_body([ANSWER])))
    streamed = None
    for chunk in agent.stream("What is 17 * 23?"):
        streamed = chunk if streamed is None else streamed + chunk
    assert isinstance(streamed, AIMessageChunk)
    agent.invoke([HumanMessage("q"), streamed, HumanMessage("again")])
    assert sent(server)["input"][1:5] == AGENT_OUTPUT


def test_tool_results_from_the_caller_go_back_as_outputs(
    agent: ChatServing, server: ServingTestServer
) -> None:
    server.reply(PATH, Reply.json(response_body([CALL])), Reply.json(response_body([ANSWER])))
    first = agent.invoke("What is 17 * 23?")
    agent.invoke([HumanMessage("q"), first, ToolMessage("391", tool_call_id="call_1")])
    items = sent(server)["input"]
    assert items[1] == {k: v for k, v in CALL.items() if k != "id"}
    assert items[2] == CALL_OUTPUT


class Weather(BaseModel):
    """Weather in a city."""

    city: str


def test_bind_tools_sends_responses_tools(agent: ChatServing, server: ServingTestServer) -> None:
    server.reply(
        PATH,
        Reply.json(response_body([{**CALL, "name": "Weather", "arguments": '{"city": "Paris"}'}])),
    )
    message = agent.bind_tools([Weather], tool_choice="Weather").invoke("Weather in Paris?")
    body = sent(server)
    assert body["tools"] == [
        {
            "type": "function",
            "name": "Weather",
            "description": "Weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "name": "Weather"}
    assert message.tool_calls[0]["args"] == {"city": "Paris"}


def test_structured_output_uses_text_format(agent: ChatServing, server: ServingTestServer) -> None:
    answer = {**ANSWER, "content": [{"type": "output_text", "text": '{"city": "Paris"}'}]}
    server.reply(PATH, Reply.json(response_body([answer])))
    result = agent.with_structured_output(Weather, method="json_schema").invoke("Paris?")
    assert result == Weather(city="Paris")
    fmt = sent(server)["text"]["format"]
    assert fmt["type"] == "json_schema"
    assert fmt["name"] == "Weather"
    assert fmt["schema"]["properties"] == {"city": {"type": "string"}}


def test_openai_compatible_route_has_responses(serving_env: ServingTestServer) -> None:
    server = serving_env
    server.reply("/serving-endpoints/responses", Reply.json(response_body([ANSWER])))
    llm = ChatServing(endpoint="agent-ep", api="responses", openai_compatible=True)
    assert llm.invoke("hi").text == "17 * 23 = 391."
    assert server.requests[-1].path == "/serving-endpoints/responses"
    assert sent(server)["model"] == "agent-ep"


# ------------------------------------------------------------------------------------------
# streaming
# ------------------------------------------------------------------------------------------


def full_stream() -> list[dict[str, Any]]:
    """Deltas for reasoning and text, each finished item, then the completed response."""
    stream = [
        {"type": "response.created", "response": {"id": "resp_1", "output": []}},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**REASONING, "summary": []},
        },
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs_1",
            "summary_index": 0,
            "delta": "Needs the ",
        },
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs_1",
            "summary_index": 0,
            "delta": "calculator.",
        },
        {"type": "response.output_item.done", "output_index": 0, "item": REASONING},
        {"type": "response.output_item.done", "output_index": 1, "item": CALL},
        {"type": "response.output_item.done", "output_index": 2, "item": CALL_OUTPUT},
        {
            "type": "response.output_text.delta",
            "item_id": "msg_1",
            "output_index": 3,
            "delta": "17 * 23 ",
        },
        {
            "type": "response.output_text.delta",
            "item_id": "msg_1",
            "output_index": 3,
            "delta": "= 391.",
        },
        {"type": "response.output_item.done", "output_index": 3, "item": ANSWER},
        {
            "type": "response.completed",
            "response": response_body(AGENT_OUTPUT),
            "custom_outputs": {"trace": "t1"},
        },
    ]
    for event in stream:
        ResponsesAgentStreamEvent.model_validate(event)
    return stream


def collect(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    return total


def test_stream_shows_each_step_and_adds_up(agent: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.sse(full_stream()))
    chunks = list(agent.stream("What is 17 * 23?"))
    assert sent(server)["stream"] is True
    steps = [[b["type"] for b in c.content_blocks] for c in chunks]
    assert steps == [
        ["reasoning"],
        ["reasoning"],
        ["reasoning"],  # encrypted content, once the item is done
        ["server_tool_call", "server_tool_result"],
        ["text"],
        ["text"],
        [],
    ]
    assert [c.text for c in chunks] == ["", "", "", "", "17 * 23 ", "= 391.", ""]
    message = collect(chunks)
    assert message.text == "17 * 23 = 391."
    assert blocks_of(message) == AGENT_BLOCKS
    reasoning = message.content_blocks[0]
    assert reasoning.get("extras") == {"encrypted_content": "gAAAA-opaque"}
    assert message.usage_metadata is not None
    assert message.usage_metadata["total_tokens"] == 52  # reported once
    assert message.response_metadata["custom_outputs"] == {"trace": "t1"}
    assert message.id == "resp_1"


def test_stream_of_finished_items_only(agent: ChatServing, server: ServingTestServer) -> None:
    """MLflow agents often send only `response.output_item.done` events, then [DONE]."""
    server.reply(PATH, Reply.sse(events(*AGENT_OUTPUT, completed=False)))
    message = collect(list(agent.stream("What is 17 * 23?")))
    assert blocks_of(message) == AGENT_BLOCKS
    assert message.usage_metadata is None  # none was sent


def test_stream_of_a_completed_response_only(agent: ChatServing, server: ServingTestServer) -> None:
    completed = {"type": "response.completed", "response": response_body(AGENT_OUTPUT)}
    server.reply(PATH, Reply.sse([completed], done=False))
    message = collect(list(agent.stream("What is 17 * 23?")))
    assert blocks_of(message) == AGENT_BLOCKS


def test_streamed_unanswered_call_becomes_a_tool_call(
    agent: ChatServing, server: ServingTestServer
) -> None:
    server.reply(PATH, Reply.sse(events(CALL)))
    message = collect(list(agent.stream("What is 17 * 23?")))
    assert message.tool_calls == [
        {
            "name": "calculator",
            "args": {"expression": "17 * 23"},
            "id": "call_1",
            "type": "tool_call",
        }
    ]
    assert message.response_metadata["finish_reason"] == "tool_calls"


async def test_astream(agent: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.sse(full_stream()))
    chunks = [chunk async for chunk in agent.astream("What is 17 * 23?")]
    assert blocks_of(collect(chunks)) == AGENT_BLOCKS


def test_stream_cut_short_raises(agent: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.sse(full_stream()[:8], done=False))
    with pytest.raises(ServingStreamError, match=r"Responses stream ended without \[DONE\]"):
        list(agent.stream("What is 17 * 23?"))


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"type": "error", "code": "rate_limit", "message": "slow down"}, "slow down"),
        (
            {
                "type": "response.failed",
                "response": {
                    "id": "r",
                    "output": [],
                    "error": {"code": "boom", "message": "tool crashed"},
                },
            },
            "tool crashed",
        ),
        ({"error_code": "INTERNAL_ERROR", "message": "worker died"}, "worker died"),
    ],
)
def test_error_mid_stream_raises(
    agent: ChatServing, server: ServingTestServer, event: dict[str, Any], expected: str
) -> None:
    server.reply(PATH, Reply.sse([*full_stream()[:4], event], done=False))
    seen: list[AIMessageChunk] = []

    def consume() -> None:
        seen.extend(agent.stream("What is 17 * 23?"))

    with pytest.raises(ServingStreamError, match=expected) as info:
        consume()
    assert len(seen) == 2  # what came before the error was delivered
    assert info.value.error_code in ("rate_limit", "boom", "INTERNAL_ERROR")


def test_streaming_under_invoke(serving_env: ServingTestServer) -> None:
    server = serving_env
    server.reply(PATH, Reply.sse(full_stream()))
    llm = ChatServing(endpoint="agent-ep", api="responses", streaming=True)
    message = llm.invoke("What is 17 * 23?")
    assert blocks_of(message) == AGENT_BLOCKS
    assert json.loads(server.requests[-1].raw)["stream"] is True

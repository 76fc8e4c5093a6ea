"""ChatServing against the scripted endpoint: what goes on the wire and what comes back."""

from __future__ import annotations

import json
import logging
import pickle
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.exceptions import ModelRateLimitError
from langchain_core.load import dumpd, dumps, load
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from pydantic import BaseModel, Field, ValidationError

from langchain_servingx import (
    ChatServing,
    ServingAuthenticationError,
    ServingConfigurationError,
    ServingRateLimitError,
    ServingStreamError,
)
from tests.conftest import TEST_TOKEN
from tests.serving_server import Reply, ServingTestServer, chat_chunk, chat_response

PATH = "/serving-endpoints/chat-ep/invocations"
REASONING = [
    {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "Rayleigh.", "signature": "sig-1"}],
    },
    {"type": "text", "text": "Scattering."},
]


@pytest.fixture
def llm(serving_env: ServingTestServer) -> ChatServing:
    return ChatServing(endpoint="chat-ep", max_retries=0)


def last_body(server: ServingTestServer) -> dict[str, Any]:
    body: dict[str, Any] = server.requests[-1].json
    return body


class Weather(BaseModel):
    """Weather in a city."""

    city: str = Field(description="the city")


# ------------------------------------------------------------------------------------------
# invoke: request body and response mapping
# ------------------------------------------------------------------------------------------


def test_invoke_sends_only_set_parameters(llm: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json(chat_response("Hi there")))
    result = llm.invoke("Hello")
    assert result.content == "Hi there"
    assert last_body(server) == {"messages": [{"role": "user", "content": "Hello"}]}
    request = server.requests[-1]
    assert request.headers["authorization"] == f"Bearer {TEST_TOKEN}"
    assert request.headers["user-agent"].startswith("langchain-servingx/")


def test_constructor_parameters_and_per_call_overrides(serving_env: ServingTestServer) -> None:
    llm = ChatServing(
        model="chat-ep",
        temperature=0.2,
        max_tokens=50,
        stop=["\n\n"],
        n=1,
        top_p=0.9,
        extra_params={"top_k": 40, "thinking": {"type": "enabled", "budget_tokens": 1024}},
    )
    serving_env.reply(PATH, Reply.json(chat_response()))
    llm.invoke("x", temperature=0.7, stop=["END"])
    body = last_body(serving_env)
    assert body["temperature"] == 0.7
    assert body["stop"] == ["END"]
    assert body["max_tokens"] == 50
    assert body["top_p"] == 0.9
    assert body["n"] == 1
    assert body["top_k"] == 40
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_per_call_model_queries_that_endpoint(llm: ChatServing, server: ServingTestServer) -> None:
    server.reply("/serving-endpoints/other-ep/invocations", Reply.json(chat_response()))
    llm.invoke("x", model="other-ep")
    assert server.requests[-1].path == "/serving-endpoints/other-ep/invocations"
    assert "model" not in last_body(server)
    assert llm._get_ls_params(model="other-ep")["ls_model_name"] == "other-ep"
    assert llm._get_ls_params()["ls_model_name"] == "chat-ep"


def test_per_call_model_cannot_inject_a_path(llm: ChatServing, server: ServingTestServer) -> None:
    with pytest.raises(ServingConfigurationError, match="not a valid path segment"):
        llm.invoke("x", model="../../api/2.0/secrets")
    assert server.requests == []


def test_openai_compatible_route_names_the_model_in_the_body(
    serving_env: ServingTestServer,
) -> None:
    llm = ChatServing(endpoint="chat-ep", openai_compatible=True)
    serving_env.reply("/serving-endpoints/chat/completions", Reply.json(chat_response()))
    llm.invoke("x")
    assert last_body(serving_env)["model"] == "chat-ep"


def test_response_metadata_and_usage(llm: ChatServing, server: ServingTestServer) -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "cache_read_input_tokens": 60,
        "cache_creation_input_tokens": 30,
        "completion_tokens_details": {"reasoning_tokens": 12},
    }
    server.reply(PATH, Reply.json(chat_response("ok", usage=usage, model="claude-x", id="r-9")))
    result = llm.invoke("x")
    assert result.response_metadata["model_name"] == "claude-x"
    assert result.response_metadata["finish_reason"] == "stop"
    assert result.response_metadata["id"] == "r-9"
    assert result.response_metadata["model_provider"] == "servingx"
    assert result.usage_metadata == {
        "input_tokens": 100,  # cache figures are details of the prompt, never added to it
        "output_tokens": 20,
        "total_tokens": 120,
        "input_token_details": {"cache_read": 60, "cache_creation": 30},
        "output_token_details": {"reasoning": 12},
    }


def test_openai_style_cached_tokens(llm: ChatServing, server: ServingTestServer) -> None:
    usage = {
        "prompt_tokens": 50,
        "completion_tokens": 5,
        "total_tokens": 55,
        "prompt_tokens_details": {"cached_tokens": 40},
    }
    server.reply(PATH, Reply.json(chat_response("ok", usage=usage)))
    result = llm.invoke("x")
    assert result.usage_metadata is not None
    assert result.usage_metadata["input_tokens"] == 50
    assert result.usage_metadata.get("input_token_details") == {"cache_read": 40}


def test_n_choices_become_generations(llm: ChatServing, server: ServingTestServer) -> None:
    response = chat_response("a")
    response["choices"].append(
        {"index": 1, "message": {"role": "assistant", "content": "b"}, "finish_reason": "length"}
    )
    server.reply(PATH, Reply.json(response))
    result = llm.generate([[HumanMessage("x")]], n=2)
    texts = [g.text for g in result.generations[0]]
    assert texts == ["a", "b"]
    assert result.generations[0][1].generation_info == {"finish_reason": "length"}


def test_response_without_choices_is_a_clear_error(
    llm: ChatServing, server: ServingTestServer
) -> None:
    server.reply(PATH, Reply.json({"predictions": ["x"]}))
    with pytest.raises(Exception, match=r"chat-ep.*no choices"):
        llm.invoke("x")


def test_rate_limit_maps_to_langchain_error(llm: ChatServing, server: ServingTestServer) -> None:
    body = {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Exceeded workspace rate limit"}
    server.reply(PATH, Reply.json(body, 429))
    with pytest.raises(ServingRateLimitError) as info:
        llm.invoke("x")
    assert isinstance(info.value, ModelRateLimitError)
    assert info.value.endpoint == "chat-ep"
    assert info.value.error_code == "REQUEST_LIMIT_EXCEEDED"


# ------------------------------------------------------------------------------------------
# Messages on the wire
# ------------------------------------------------------------------------------------------


def test_every_message_kind_on_the_wire(llm: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json(chat_response()))
    call = {"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}}
    llm.invoke(
        [
            SystemMessage("be brief", name="sys"),
            HumanMessage("weather?", name="alice"),
            AIMessage("", tool_calls=[call], name="bot"),
            ToolMessage("18C", tool_call_id="call_1", name="get_weather"),
            AIMessage("It is 18C."),
            ChatMessage(role="user", content="thanks"),
        ]
    )
    assert last_body(server)["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "assistant", "content": "It is 18C."},
        {"role": "user", "content": "thanks"},
    ]
    assert all("name" not in m for m in last_body(server)["messages"])


def test_content_blocks_and_images(llm: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json(chat_response()))
    llm.invoke(
        [
            HumanMessage(
                content=[
                    {"type": "text", "text": "describe", "id": "blk-1"},
                    {"type": "image", "base64": "iVBORw0KGgo=", "mime_type": "image/png"},
                    {"type": "image", "url": "https://example.invalid/cat.png"},
                    {"type": "image_url", "image_url": {"url": "https://example.invalid/d.png"}},
                ]
            )
        ]
    )
    assert last_body(server)["messages"][0]["content"] == [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}},
        {"type": "image_url", "image_url": {"url": "https://example.invalid/d.png"}},
    ]


def test_text_only_blocks_travel_as_a_string(llm: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json(chat_response()))
    llm.invoke([HumanMessage(content=[{"type": "text", "text": "a"}, "b"])])
    assert last_body(server)["messages"][0]["content"] == "ab"


def test_unsupported_message_kind_names_the_problem(llm: ChatServing) -> None:
    with pytest.raises(ValueError, match="message 1 is a FunctionMessage"):
        llm.invoke([HumanMessage("x"), FunctionMessage(content="1", name="f")])


def test_unknown_block_type_names_the_message(llm: ChatServing) -> None:
    with pytest.raises(ValueError, match="message 0: content block of type 'hologram'"):
        llm.invoke([HumanMessage(content=[{"type": "hologram", "data": "x"}])])


# ------------------------------------------------------------------------------------------
# Reasoning
# ------------------------------------------------------------------------------------------


def test_reasoning_list_becomes_blocks_on_invoke(
    llm: ChatServing, server: ServingTestServer
) -> None:
    server.reply(PATH, Reply.json(chat_response(REASONING)))
    result = llm.invoke("why blue?")
    assert result.content == [
        {"type": "reasoning", "reasoning": "Rayleigh.", "extras": {"signature": "sig-1"}},
        {"type": "text", "text": "Scattering."},
    ]
    assert result.text == "Scattering."
    assert [b["type"] for b in result.content_blocks] == ["reasoning", "text"]


def test_signed_reasoning_is_sent_back_whole(llm: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json(chat_response(REASONING)))
    first = llm.invoke("why blue?")
    llm.invoke([HumanMessage("why blue?"), first, HumanMessage("and red sunsets?")])
    assistant = last_body(server)["messages"][1]
    assert assistant == {
        "role": "assistant",
        "content": [
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "Rayleigh.", "signature": "sig-1"}],
            },
            {"type": "text", "text": "Scattering."},
        ],
    }


def test_unsigned_reasoning_is_omitted_on_replay(
    llm: ChatServing, server: ServingTestServer
) -> None:
    server.reply(PATH, Reply.json(chat_response()))
    history = AIMessage(
        content=[{"type": "reasoning", "reasoning": "hmm"}, {"type": "text", "text": "A."}]
    )
    llm.invoke([HumanMessage("q"), history, HumanMessage("q2")])
    assert last_body(server)["messages"][1] == {"role": "assistant", "content": "A."}


def test_reasoning_stream_keeps_reasoning_and_answer_apart(
    llm: ChatServing, server: ServingTestServer
) -> None:
    def reasoning_delta(text: str, signature: str | None = None) -> dict[str, Any]:
        part: dict[str, Any] = {"type": "summary_text", "text": text}
        if signature:
            part["signature"] = signature
        return {"content": [{"type": "reasoning", "summary": [part]}]}

    server.reply(
        PATH,
        Reply.sse(
            [
                chat_chunk({"role": "assistant", **reasoning_delta("Ray")}),
                chat_chunk(reasoning_delta("leigh.", "sig-2")),
                chat_chunk({"content": [{"type": "text", "text": "Scat"}]}),
                chat_chunk({"content": "tering."}, finish_reason="stop"),
            ]
        ),
    )
    chunks = list(llm.stream("why?"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.text == "Scattering."
    assert merged.content == [
        {
            "type": "reasoning",
            "reasoning": "Rayleigh.",
            "index": 0,
            "extras": {"signature": "sig-2"},
        },
        {"type": "text", "text": "Scattering.", "index": 1},
    ]


def test_v1_output_gives_standard_blocks(serving_env: ServingTestServer) -> None:
    llm = ChatServing(endpoint="chat-ep", output_version="v1")
    serving_env.reply(
        PATH,
        Reply.json(
            chat_response(
                REASONING,
                tool_calls=[
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            )
        ),
    )
    result = llm.invoke("x")
    assert result.content == [
        {"type": "reasoning", "reasoning": "Rayleigh.", "extras": {"signature": "sig-1"}},
        {"type": "text", "text": "Scattering."},
        {"type": "tool_call", "id": "c1", "name": "get_weather", "args": {"city": "Oslo"}},
    ]


# ------------------------------------------------------------------------------------------
# Streaming
# ------------------------------------------------------------------------------------------

RUNNING_TOTALS = [
    chat_chunk(
        {"role": "assistant", "content": "Hel"},
        usage={"prompt_tokens": 30, "completion_tokens": 1, "total_tokens": 31},
    ),
    chat_chunk(
        {"content": "lo"}, usage={"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32}
    ),
    chat_chunk(
        {"content": "!"},
        finish_reason="stop",
        usage={"prompt_tokens": 30, "completion_tokens": 3, "total_tokens": 33},
    ),
]
FINAL_USAGE_ONLY = [
    chat_chunk({"role": "assistant", "content": "Hel"}),
    chat_chunk({"content": "lo"}),
    chat_chunk({"content": "!"}, finish_reason="stop"),
    chat_chunk(
        choices=False, usage={"prompt_tokens": 30, "completion_tokens": 3, "total_tokens": 33}
    ),
]


@pytest.mark.parametrize("events", [RUNNING_TOTALS, FINAL_USAGE_ONLY], ids=["running", "final"])
def test_stream_reports_usage_once_and_right(
    llm: ChatServing, server: ServingTestServer, events: list[dict[str, Any]]
) -> None:
    server.reply(PATH, Reply.sse(events))
    chunks = list(llm.stream("hi"))
    with_usage = [c for c in chunks if c.usage_metadata]
    assert len(with_usage) == 1
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content == "Hello!"
    assert merged.usage_metadata == {"input_tokens": 30, "output_tokens": 3, "total_tokens": 33}
    assert merged.response_metadata["finish_reason"] == "stop"
    assert merged.response_metadata["model_provider"] == "servingx"
    body = last_body(server)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_stream_usage_can_be_turned_off(serving_env: ServingTestServer) -> None:
    llm = ChatServing(endpoint="chat-ep", stream_usage=False)
    serving_env.reply(PATH, Reply.sse(FINAL_USAGE_ONLY))
    list(llm.stream("hi"))
    assert "stream_options" not in last_body(serving_env)


@pytest.mark.parametrize("stream_usage", [True, False])
def test_invoke_never_sends_stream_usage(
    serving_env: ServingTestServer, stream_usage: bool
) -> None:
    """`stream_usage` is a client-side switch: no body field, on invoke or in streams."""
    llm = ChatServing(endpoint="chat-ep")
    serving_env.reply(PATH, Reply.json(chat_response()), Reply.sse(FINAL_USAGE_ONLY))
    llm.invoke("hi", stream_usage=stream_usage)
    assert last_body(serving_env) == {"messages": [{"role": "user", "content": "hi"}]}
    list(llm.stream("hi", stream_usage=stream_usage))
    assert "stream_usage" not in last_body(serving_env)
    assert ("stream_options" in last_body(serving_env)) is stream_usage


@pytest.mark.parametrize("n", [0, -1, 1.5, "2", True])
def test_n_must_be_a_positive_integer(serving_env: ServingTestServer, n: Any) -> None:
    with pytest.raises(ValidationError, match="n"):
        ChatServing(endpoint="chat-ep", n=n)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        ChatServing(endpoint="chat-ep").invoke("x", n=n)
    assert serving_env.requests == []


@pytest.mark.parametrize("where", ["constructor", "call"])
def test_streaming_with_several_choices_is_refused_not_truncated(
    serving_env: ServingTestServer, where: str
) -> None:
    llm = ChatServing(endpoint="chat-ep", **({"n": 3} if where == "constructor" else {}))
    kwargs = {"n": 3} if where == "call" else {}
    with pytest.raises(ValueError, match="a stream carries one choice; n=3"):
        list(llm.stream("x", **kwargs))
    with pytest.raises(ValueError, match="n=3"):
        ChatServing(endpoint="chat-ep", streaming=True, n=3).invoke("x")
    assert serving_env.requests == []


def test_stream_tool_call_deltas(llm: ChatServing, server: ServingTestServer) -> None:
    def tc(index: int, **function: str) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, "function": function}]}

    first = {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ]
    }
    second = {
        "tool_calls": [
            {
                "index": 1,
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_time", "arguments": ""},
            }
        ]
    }
    server.reply(
        PATH,
        Reply.sse(
            [
                chat_chunk({"role": "assistant", **first}),
                chat_chunk(tc(0, arguments='{"city": ')),
                # some servers repeat the name in every delta: it must not be concatenated
                chat_chunk(tc(0, name="get_weather", arguments='"Paris"}')),
                chat_chunk(second),
                chat_chunk(tc(1, arguments="{}"), finish_reason="tool_calls"),
            ]
        ),
    )
    chunks = list(llm.bind_tools([Weather]).stream("x"))
    assert any(c.tool_call_chunks for c in chunks)
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"},
        {"name": "get_time", "args": {}, "id": "call_2", "type": "tool_call"},
    ]


def test_cut_stream_raises(llm: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.sse([chat_chunk({"content": "Hel"})], done=False))
    with pytest.raises(ServingStreamError, match="without \\[DONE\\]"):
        list(llm.stream("hi"))


def test_streaming_flag_streams_under_invoke(serving_env: ServingTestServer) -> None:
    tokens: list[str] = []

    class Collect(BaseCallbackHandler):
        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            tokens.append(token)

    llm = ChatServing(endpoint="chat-ep", streaming=True)
    serving_env.reply(PATH, Reply.sse(RUNNING_TOTALS))
    result = llm.invoke("hi", config={"callbacks": [Collect()]})
    assert result.content == "Hello!"
    assert tokens[:3] == ["Hel", "lo", "!"]
    assert last_body(serving_env)["stream"] is True
    assert result.usage_metadata is not None
    assert result.usage_metadata["total_tokens"] == 33


async def test_async_invoke_and_stream(llm: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json(chat_response("async hi")))
    result = await llm.ainvoke("hi")
    assert result.content == "async hi"
    server.reset()
    server.reply(PATH, Reply.sse(FINAL_USAGE_ONLY))
    chunks = [c async for c in llm.astream("hi")]
    assert "".join(c.text for c in chunks) == "Hello!"
    assert sum(1 for c in chunks if c.usage_metadata) == 1


async def test_async_batch_keeps_order(llm: ChatServing, server: ServingTestServer) -> None:
    def echo(request: Any) -> Reply:
        text = request.json["messages"][0]["content"]
        return Reply.json(chat_response(text.upper()), delay=0.05 if text == "a" else 0)

    server.handle(PATH, echo)
    results = await llm.abatch(["a", "b", "c"])
    assert [r.content for r in results] == ["A", "B", "C"]


# ------------------------------------------------------------------------------------------
# Tools
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ("any", "required"),
        (True, "required"),
        ("Weather", {"type": "function", "function": {"name": "Weather"}}),
        (
            {"type": "function", "function": {"name": "Weather"}},
            {"type": "function", "function": {"name": "Weather"}},
        ),
    ],
)
def test_tool_choice_on_the_wire(
    llm: ChatServing, server: ServingTestServer, choice: Any, wire: Any
) -> None:
    server.reply(PATH, Reply.json(chat_response()))
    llm.bind_tools([Weather], tool_choice=choice).invoke("x")
    body = last_body(server)
    assert body["tool_choice"] == wire
    assert body["tools"][0]["function"]["name"] == "Weather"
    assert "strict" not in body["tools"][0]["function"]
    assert "parallel_tool_calls" not in body


def test_strict_and_parallel_only_when_asked(llm: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json(chat_response()))
    llm.bind_tools([Weather], strict=True, parallel_tool_calls=False).invoke("x")
    body = last_body(server)
    assert body["tools"][0]["function"]["strict"] is True
    assert body["parallel_tool_calls"] is False


def test_unknown_tool_choice_is_refused(llm: ChatServing) -> None:
    with pytest.raises(ValueError, match="names no bound tool"):
        llm.bind_tools([Weather], tool_choice="Nope")


def test_tool_calls_parsed_and_bad_arguments_kept_as_invalid(
    llm: ChatServing, server: ServingTestServer
) -> None:
    calls = [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "Weather", "arguments": '{"city": "Oslo"}'},
        },
        {"id": "c2", "type": "function", "function": {"name": "Weather", "arguments": '{"city": '}},
    ]
    server.reply(
        PATH, Reply.json(chat_response(None, tool_calls=calls, finish_reason="tool_calls"))
    )
    result = llm.bind_tools([Weather]).invoke("x")
    assert result.tool_calls == [
        {"name": "Weather", "args": {"city": "Oslo"}, "id": "c1", "type": "tool_call"}
    ]
    assert len(result.invalid_tool_calls) == 1
    assert result.invalid_tool_calls[0]["id"] == "c2"
    assert result.invalid_tool_calls[0]["args"] == '{"city": '
    assert result.content == ""


# ------------------------------------------------------------------------------------------
# Structured output
# ------------------------------------------------------------------------------------------


def test_structured_output_function_calling(llm: ChatServing, server: ServingTestServer) -> None:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "Weather", "arguments": '{"city": "Rome"}'},
    }
    server.reply(PATH, Reply.json(chat_response(None, tool_calls=[call])))
    result = llm.with_structured_output(Weather).invoke("x")
    assert result == Weather(city="Rome")
    assert last_body(server)["tool_choice"] == {"type": "function", "function": {"name": "Weather"}}


def test_structured_output_json_mode(llm: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json(chat_response('{"city": "Lima"}')))
    result = llm.with_structured_output(Weather, method="json_mode").invoke("x")
    assert result == Weather(city="Lima")
    assert last_body(server)["response_format"] == {"type": "json_object"}


def test_structured_output_json_schema_always_has_a_name(
    llm: ChatServing, server: ServingTestServer
) -> None:
    server.reply(PATH, Reply.json(chat_response('{"city": "Kyiv"}')))
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    result = llm.with_structured_output(schema, method="json_schema").invoke("x")
    assert result == {"city": "Kyiv"}
    response_format = last_body(server)["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"]
    assert response_format["json_schema"]["schema"]["properties"] == schema["properties"]
    assert "strict" not in response_format["json_schema"]
    llm.with_structured_output(Weather, method="json_schema", strict=True).invoke("x")
    spec = last_body(server)["response_format"]["json_schema"]
    assert spec["name"] == "Weather"
    assert spec["strict"] is True


def test_structured_output_include_raw_keeps_parsing_errors(
    llm: ChatServing, server: ServingTestServer
) -> None:
    server.reply(PATH, Reply.json(chat_response("not json")))
    result = llm.with_structured_output(Weather, method="json_mode", include_raw=True).invoke("x")
    assert isinstance(result["raw"], AIMessage)
    assert result["parsed"] is None
    assert result["parsing_error"] is not None


# ------------------------------------------------------------------------------------------
# Secrets, serialization, pickling
# ------------------------------------------------------------------------------------------

SECRET = "dapi-super-secret-value"


def test_secrets_never_leak(server: ServingTestServer, caplog: pytest.LogCaptureFixture) -> None:
    llm = ChatServing(endpoint="chat-ep", host=server.url, token=SECRET, max_retries=0)
    server.reply(PATH, Reply.json({"error_code": "UNAUTHENTICATED", "message": "bad token"}, 401))
    with caplog.at_level(logging.DEBUG), pytest.raises(ServingAuthenticationError) as info:
        llm.invoke("x")
    texts = [
        repr(llm),
        str(llm),
        dumps(llm),
        json.dumps(dumpd(llm)),
        str(info.value),
        repr(info.value),
    ]
    texts += [r.getMessage() for r in caplog.records]
    assert all(SECRET not in text for text in texts)
    assert server.requests[-1].headers["authorization"] == f"Bearer {SECRET}"  # it was sent


def test_oauth_secret_never_serialized() -> None:
    llm = ChatServing(
        endpoint="e", host="https://example.invalid", client_id="sp", client_secret=SECRET
    )
    serialized = dumps(llm)
    assert SECRET not in serialized
    assert "DATABRICKS_CLIENT_SECRET" in serialized
    assert SECRET not in repr(llm)


def test_serialization_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRICKS_TOKEN", SECRET)
    llm = ChatServing(endpoint="e", host="https://example.invalid", token=SECRET, temperature=0.3)
    loaded = load(
        dumpd(llm),
        valid_namespaces=["langchain_servingx"],
        allowed_objects=[ChatServing],
        secrets_from_env=True,
    )
    assert isinstance(loaded, ChatServing)
    assert loaded.temperature == 0.3
    assert loaded.token is not None
    assert loaded.token.get_secret_value() == SECRET


async def test_pickled_model_works_after_use(llm: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json(chat_response("one")))
    llm.invoke("x")
    await llm.ainvoke("x")
    clone = pickle.loads(pickle.dumps(llm))
    assert clone.invoke("x").content == "one"
    assert (await clone.ainvoke("x")).content == "one"


def test_missing_credentials_error_names_variables(server: ServingTestServer) -> None:
    llm = ChatServing(endpoint="chat-ep", host=server.url)  # constructing needs no credentials
    with pytest.raises(ServingConfigurationError, match="DATABRICKS_TOKEN"):
        llm.invoke("x")
    assert server.requests == []


def test_changing_host_after_use_takes_effect(llm: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json(chat_response()))
    llm.invoke("x")
    llm.host = "http://127.0.0.1:9"  # nothing listens there
    llm.max_retries = 0
    with pytest.raises(Exception, match="cannot reach"):
        llm.invoke("x")


def test_stream_chunks_are_ai_message_chunks(llm: ChatServing, server: ServingTestServer) -> None:
    server.reply(PATH, Reply.sse(RUNNING_TOTALS))
    assert all(isinstance(c, AIMessageChunk) for c in llm.stream("x"))


def test_v1_stream_gives_standard_blocks(serving_env: ServingTestServer) -> None:
    reasoning = [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "Hmm."}]}]
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "Weather"}}
    serving_env.reply(
        PATH,
        Reply.sse(
            [
                chat_chunk({"role": "assistant", "content": reasoning}),
                chat_chunk({"content": "Checking."}),
                chat_chunk(
                    {"tool_calls": [{**call, "function": {"name": "Weather", "arguments": '{"ci'}}]}
                ),
                chat_chunk(
                    {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]}
                ),
                chat_chunk({}, finish_reason="tool_calls"),
            ]
        ),
    )
    llm = ChatServing(endpoint="chat-ep", output_version="v1")
    chunks = list(llm.bind_tools([Weather]).stream("x"))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert [(b["type"], b.get("index")) for b in merged.content] == [
        ("reasoning", 0),
        ("text", 1),
        ("tool_call", None),
    ]
    assert merged.content[2] == {
        "type": "tool_call",
        "name": "Weather",
        "args": {"city": "Oslo"},
        "id": "c1",
    }
    assert merged.text == "Checking."

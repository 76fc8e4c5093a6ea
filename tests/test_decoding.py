"""Malformed answers through the public classes: each is a typed error naming the field,
or the correct result; never a raw Python error, never a silently empty answer."""

from __future__ import annotations

import asyncio
import json
import warnings

import pytest
from langchain_core.messages import HumanMessage

from langchain_servingx import (
    ChatServing,
    ServingEmbeddings,
    ServingInputError,
    ServingResponseError,
    ServingStreamError,
    ServingUsageWarning,
)
from langchain_servingx._decoding import MalformedAnswer, token_count, vector
from tests.serving_server import Reply, ServingTestServer, chat_chunk, chat_response

PATH = "/serving-endpoints/chat-ep/invocations"
EMBED_PATH = "/serving-endpoints/embedder/invocations"


@pytest.fixture
def llm(serving_env: ServingTestServer) -> ChatServing:
    return ChatServing(endpoint="chat-ep", max_retries=0, api="chat")


def body_with(**fields: object) -> dict:
    body = chat_response()
    body.update(fields)
    return body


def with_message(message: object) -> dict:
    body = chat_response()
    body["choices"][0]["message"] = message
    return body


# -- invoke ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (body_with(choices=["hello"]), r"choices\[0\] is the string 'hello', expected an object"),
        (with_message("hi there"), r"choices\[0\]\.message is the string 'hi there'"),
        (with_message(None), r"choices\[0\] has no 'message'"),
        (
            body_with(choices=[{"index": 0, "finish_reason": "stop"}]),
            r"choices\[0\] has no 'message'",
        ),
        (
            with_message({"role": "assistant", "content": [1, 2]}),
            r"choices\[0\]\.message\.content\[0\] is the number 1, expected an object",
        ),
        (
            with_message({"role": "assistant", "content": {"text": "x"}}),
            r"content is an object, expected a string or an array of parts",
        ),
        (
            with_message({"role": "assistant", "content": [{"type": "text", "text": 5}]}),
            r"content\[0\]\.text is the number 5, expected a string",
        ),
        (
            with_message({"role": "assistant", "content": None, "tool_calls": {"id": "c"}}),
            r"tool_calls is an object, expected an array",
        ),
        (
            with_message({"role": "assistant", "content": None, "tool_calls": ["call"]}),
            r"tool_calls\[0\] is the string 'call', expected an object",
        ),
        (body_with(usage="abc"), r"usage is the string 'abc', expected an object"),
        (
            body_with(usage={"prompt_tokens": "lots", "completion_tokens": 1}),
            r"usage\.prompt_tokens is the string 'lots', expected a non-negative integer",
        ),
        (
            body_with(usage={"prompt_tokens": 3, "completion_tokens": -2}),
            r"usage\.completion_tokens is the number -2",
        ),
        (
            body_with(usage={"prompt_tokens": 3, "prompt_tokens_details": [1]}),
            r"usage\.prompt_tokens_details is an array, expected an object",
        ),
    ],
)
def test_malformed_answer_is_a_response_error_naming_the_field(llm, server, answer, problem):
    server.reply(PATH, Reply.json(answer))
    with pytest.raises(ServingResponseError, match=problem) as info:
        llm.invoke("hi")
    assert info.value.endpoint == "chat-ep"


def test_usage_overflowing_to_infinity_is_a_response_error(llm, server) -> None:
    raw = chat_response()
    text = json.dumps(raw).replace('"prompt_tokens": 10', '"prompt_tokens": 1e999').encode()
    server.reply(PATH, Reply(200, text, {"Content-Type": "application/json"}))
    with pytest.raises(ServingResponseError, match=r"usage\.prompt_tokens is the number inf"):
        llm.invoke("hi")


async def test_malformed_answer_async(llm, server) -> None:
    server.reply(PATH, Reply.json(body_with(choices=[7])))
    with pytest.raises(ServingResponseError, match=r"choices\[0\] is the number 7"):
        await llm.ainvoke("hi")


def test_integral_float_counts_are_accepted(llm, server) -> None:
    server.reply(PATH, Reply.json(body_with(usage={"prompt_tokens": 4.0, "completion_tokens": 2})))
    assert llm.invoke("hi").usage_metadata["input_tokens"] == 4


def test_tool_call_without_function_is_kept_as_an_invalid_call(llm, server) -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function"},
            {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        ],
    }
    server.reply(PATH, Reply.json(with_message(message)))
    reply = llm.invoke("hi")
    assert [c["name"] for c in reply.tool_calls] == ["f"]
    [bad] = reply.invalid_tool_calls
    assert bad["id"] == "call_1"
    assert "tool_calls[0] has no 'function' object" in bad["error"]


def test_error_body_with_200_keeps_the_servers_message(llm, server) -> None:
    server.reply(PATH, Reply.json({"error_code": "QUOTA", "message": "Token budget exhausted"}))
    with pytest.raises(ServingResponseError, match="Token budget exhausted") as info:
        llm.invoke("hi")
    assert info.value.error_code == "QUOTA"


# -- streams ---------------------------------------------------------------------------


def run_stream(llm: ChatServing, mode: str) -> list:
    if mode == "sync":
        return list(llm.stream("hi"))

    async def collect() -> list:
        return [c async for c in llm.astream("hi")]

    return asyncio.run(collect())


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("chunk", "problem"),
    [
        ({"choices": "abc"}, r"choices is the string 'abc', expected an array"),
        ({"choices": [7]}, r"choices\[0\] is the number 7, expected an object"),
        ({"choices": [{"index": 0, "delta": "x"}]}, r"choices\[0\]\.delta is the string 'x'"),
        (
            {"choices": [{"index": 0, "delta": {"content": [3]}}]},
            r"choices\[0\]\.delta\.content\[0\] is the number 3",
        ),
        (
            {"choices": [{"index": 0, "delta": {"tool_calls": {"a": 1}}}]},
            r"delta\.tool_calls is an object, expected an array",
        ),
        (
            {"choices": [], "usage": {"prompt_tokens": "many"}},
            r"usage\.prompt_tokens is the string",
        ),
    ],
)
def test_malformed_stream_chunk_is_a_stream_error(llm, server, mode, chunk, problem) -> None:
    server.reply(PATH, Reply.sse([chat_chunk({"content": "a"}), chunk]))
    with pytest.raises(ServingStreamError, match=problem) as info:
        run_stream(llm, mode)
    assert info.value.endpoint == "chat-ep"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stream_of_only_done_is_an_error_not_an_empty_answer(llm, server, mode) -> None:
    server.reply(PATH, Reply.sse([]))
    with pytest.raises(ServingStreamError, match=r"\[DONE\] before any choice"):
        run_stream(llm, mode)


USAGE = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


def test_stream_with_usage_reports_it_and_no_flag(llm, server) -> None:
    server.reply(
        PATH,
        Reply.sse(
            [
                chat_chunk({"content": "Hi"}),
                chat_chunk(finish_reason="stop"),
                chat_chunk(choices=False, usage=USAGE),
            ]
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ServingUsageWarning)
        message = _whole(llm.stream("hi"))
    assert message.usage_metadata["total_tokens"] == 6
    assert "usage_missing" not in message.response_metadata


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stream_cut_after_finish_before_usage_keeps_the_answer_flagged_and_warns(
    llm, server, mode
) -> None:
    frames = [chat_chunk({"content": "Hi"}), chat_chunk(finish_reason="stop")]
    server.reply(PATH, Reply.sse(frames, done=False))
    with pytest.warns(ServingUsageWarning, match="before its usage chunk and \\[DONE\\]"):
        chunks = run_stream(llm, mode)
    message = _whole(chunks)
    assert message.text == "Hi"
    assert message.usage_metadata is None
    assert "before its usage chunk" in message.response_metadata["usage_missing"]


def test_stream_without_usage_but_with_done_is_flagged_without_warning(llm, server) -> None:
    server.reply(PATH, Reply.sse([chat_chunk({"content": "Hi"}), chat_chunk(finish_reason="stop")]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ServingUsageWarning)
        message = _whole(llm.stream("hi"))
    assert message.response_metadata["usage_missing"] == "the server sent no usage in this stream"


def test_stream_without_usage_requested_has_no_flag(llm, server) -> None:
    server.reply(
        PATH,
        Reply.sse([chat_chunk({"content": "Hi"}), chat_chunk(finish_reason="stop")], done=False),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ServingUsageWarning)
        message = _whole(llm.stream("hi", stream_usage=False))
    assert "usage_missing" not in message.response_metadata


def _whole(chunks):
    chunks = list(chunks)
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    return whole


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            [{"type": "image_url"}],
            r"message 0: an image_url block needs an 'image_url' with a 'url'",
        ),
        ([{"type": "image_url", "image_url": {}}], r"image_url block needs"),
        (
            [{"type": "text", "text": 5}],
            r"message 0: a text block's 'text' is int, expected a string",
        ),
        ([{"type": "input_audio"}], r"input_audio block needs an 'input_audio' object"),
    ],
)
def test_bad_content_blocks_are_input_errors(llm, server, content, problem) -> None:
    with pytest.raises(ServingInputError, match=problem):
        llm.invoke([HumanMessage(content=content)])
    assert server.requests == []


def test_image_url_as_a_plain_string_is_sent_as_an_object(llm, server) -> None:
    server.reply(PATH, Reply.json(chat_response()))
    llm.invoke([HumanMessage(content=[{"type": "image_url", "image_url": "https://x/y.png"}])])
    [part] = server.requests[0].json["messages"][0]["content"]
    assert part == {"type": "image_url", "image_url": {"url": "https://x/y.png"}}


def test_tool_without_a_name_is_an_input_error_with_or_without_tool_choice(llm) -> None:
    nameless = {"type": "function", "function": {"parameters": {"type": "object"}}}
    with pytest.raises(ServingInputError, match="tool 0 has no function name"):
        llm.bind_tools([nameless], tool_choice="get_weather")
    with pytest.raises(ServingInputError, match="tool 0 has no function name"):
        llm.bind_tools([nameless])


@pytest.mark.parametrize(
    ("texts", "problem"),
    [(None, "got NoneType"), ("one text", "got str"), (["a", 3], "text 1 is int")],
)
def test_embed_documents_bad_input_is_an_input_error(serving_env, texts, problem) -> None:
    embeddings = ServingEmbeddings(endpoint="embedder")
    with pytest.raises(ServingInputError, match=problem):
        embeddings.embed_documents(texts)
    with pytest.raises(TypeError):  # still a TypeError for code that catches one
        embeddings.embed_documents(texts)


# -- vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_vectors_are_refused(serving_env, literal) -> None:
    raw = f'{{"data": [{{"index": 0, "embedding": [0.5, {literal}]}}]}}'.encode()
    serving_env.reply(EMBED_PATH, Reply(200, raw, {"Content-Type": "application/json"}))
    embeddings = ServingEmbeddings(endpoint="embedder", max_retries=0)
    with pytest.raises(ServingResponseError, match=r"NaN or infinite"):
        embeddings.embed_query("x")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([1, "2"], "holds the string '2', expected numbers"),
        ([True, 0.5], "holds a boolean"),
        ([], "is empty"),
        ("not base64!", "not base64"),
        ("AAAAAAA=", "not a whole number of float32"),
        ({"x": 1}, "is an object, expected an array of numbers"),
    ],
)
def test_vector_decoding_names_the_problem(value, problem) -> None:
    with pytest.raises(MalformedAnswer, match=problem):
        vector(value, "data[0].embedding")


def test_base64_vectors_decode_to_float32_values() -> None:
    import base64
    import struct

    packed = base64.b64encode(struct.pack("<3f", 0.5, -1.25, 3.0)).decode()
    assert vector(packed, "v") == [0.5, -1.25, 3.0]


@pytest.mark.parametrize("value", [True, "3", 1.5, -1, float("inf")])
def test_token_counts_must_be_non_negative_integers(value) -> None:
    with pytest.raises(MalformedAnswer, match="expected a non-negative integer"):
        token_count(value, "usage.total_tokens")

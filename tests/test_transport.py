"""The invocation transport over real sockets: addresses, headers, retries, SSE, pickling."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import socket
from typing import Any

import httpx
import pytest
from langchain_core.exceptions import ModelConnectionError, ModelTimeoutError
from pydantic import SecretStr, ValidationError

from langchain_servingx import __version__
from langchain_servingx import _transport as transport_module
from langchain_servingx._base import ServingClientBase
from langchain_servingx._errors import (
    ServingAuthenticationError,
    ServingConfigurationError,
    ServingConnectionError,
    ServingError,
    ServingInvalidRequestError,
    ServingNotFoundError,
    ServingPermissionDeniedError,
    ServingRateLimitError,
    ServingReadTimeoutError,
    ServingServerError,
    ServingStreamError,
    ServingTimeoutError,
)
from langchain_servingx._transport import EndpointAddress, check_endpoint_name
from tests.conftest import TEST_TOKEN
from tests.serving_server import (
    Reply,
    ServingTestServer,
    chat_chunk,
    chat_response,
    make_transport,
)

PATH = "/serving-endpoints/ep/invocations"


class Client(ServingClientBase):
    """A public-class stand-in: the shared fields, and the transport behind them."""


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the backoff sleeps (sync and async) instead of sleeping."""
    recorded: list[float] = []
    real_async_sleep = asyncio.sleep

    async def fake_async_sleep(delay: float, *args: Any) -> None:
        recorded.append(delay)
        await real_async_sleep(0)

    monkeypatch.setattr(transport_module.time, "sleep", recorded.append)
    monkeypatch.setattr(transport_module.asyncio, "sleep", fake_async_sleep)
    return recorded


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def collect(
    transport, mode: str, task="llm/v1/chat", endpoint="ep", body=None, into=None
) -> list[dict]:
    """Run one stream to the end, sync or async, and return its chunks (also put in `into`)."""
    body = {"messages": []} if body is None else body
    chunks: list[dict] = [] if into is None else into
    if mode == "sync":
        chunks.extend(transport.stream(task, endpoint, body))
        return chunks

    async def run() -> None:
        async for chunk in transport.astream(task, endpoint, body):
            chunks.append(chunk)

    asyncio.run(run())
    return chunks


def call(transport, mode: str, task="llm/v1/chat", endpoint="ep", body=None, **kw) -> dict:
    body = {"messages": []} if body is None else body
    if mode == "sync":
        return transport.invoke(task, endpoint, body, **kw)
    return asyncio.run(transport.ainvoke(task, endpoint, body, **kw))


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


# -- addresses and headers -------------------------------------------------------------


@MODES
def test_native_route_headers_and_body(server: ServingTestServer, mode: str) -> None:
    server.reply(PATH, Reply.json(chat_response()))
    body = {"messages": [{"role": "user", "content": "Hï"}], "max_tokens": 5}
    assert call(make_transport(server.url), mode, body=body) == chat_response()
    (request,) = server.requests
    assert request.method == "POST"
    assert request.path == PATH
    assert request.headers["authorization"] == f"Bearer {TEST_TOKEN}"
    assert request.headers["user-agent"] == f"langchain-servingx/{__version__}"
    assert request.headers["content-type"] == "application/json"
    assert request.json == body  # no "model" on the native route
    assert "Hï" in request.raw.decode("utf-8")


@MODES
def test_served_model_route(server: ServingTestServer, mode: str) -> None:
    path = "/serving-endpoints/ep/served-models/llama-v2/invocations"
    server.reply(path, Reply.json({"ok": 1}))
    assert call(make_transport(server.url), mode, served_model="llama-v2") == {"ok": 1}
    assert server.requests[0].path == path
    assert "model" not in server.requests[0].json


@pytest.mark.parametrize(
    ("task", "path"),
    [
        ("llm/v1/chat", "/serving-endpoints/chat/completions"),
        ("llm/v1/completions", "/serving-endpoints/completions"),
        ("llm/v1/embeddings", "/serving-endpoints/embeddings"),
    ],
)
@MODES
def test_openai_compatible_route(server: ServingTestServer, mode, task, path) -> None:
    server.reply(path, Reply.json({"ok": 1}))
    transport = make_transport(server.url, openai_compatible=True)
    assert call(transport, mode, task=task, endpoint="my-ep", body={"input": "x"}) == {"ok": 1}
    (request,) = server.requests
    assert request.path == path
    assert request.json == {"input": "x", "model": "my-ep"}
    assert request.headers["authorization"] == f"Bearer {TEST_TOKEN}"


@MODES
def test_base_url_needs_no_credentials(server: ServingTestServer, mode: str) -> None:
    server.reply("/v1/chat/completions", Reply.json({"ok": 1}))
    transport = make_transport(None, token=None, base_url=server.url + "/v1/")
    assert call(transport, mode, endpoint="llama-3") == {"ok": 1}
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.json["model"] == "llama-3"
    assert "authorization" not in request.headers


def test_base_url_through_a_client_without_any_configuration(server: ServingTestServer) -> None:
    server.reply("/v1/embeddings", Reply.json({"ok": 1}))
    client = Client(model="emb", base_url=server.url + "/v1")
    assert client.transport.invoke("llm/v1/embeddings", "emb", {"input": ["a"]}) == {"ok": 1}
    assert server.requests[0].json == {"input": ["a"], "model": "emb"}


@pytest.mark.parametrize("openai_compatible", [False, True])
def test_model_names_with_a_slash_allowed_where_they_go_in_the_body(
    server: ServingTestServer, openai_compatible: bool
) -> None:
    # vLLM and Hugging Face model ids: the name is in the body, never in the path.
    name = "meta-llama/Llama-3.1-8B-Instruct"
    if openai_compatible:
        path = "/serving-endpoints/chat/completions"
        client = Client(model=name, host=server.url, token=SecretStr("t"), openai_compatible=True)
    else:
        path = "/v1/chat/completions"
        client = Client(model=name, base_url=server.url + "/v1")
    server.reply(path, Reply.json({"ok": 1}))
    assert client._endpoint_for("org/other-model") == "org/other-model"
    assert client.transport.invoke("llm/v1/chat", client.endpoint, {}) == {"ok": 1}
    assert server.requests[0].path == path
    assert server.requests[0].json == {"model": name}
    with pytest.raises(ServingConfigurationError):
        client._endpoint_for(" ")
    with pytest.raises(ValidationError):
        Client(model="", base_url=server.url)


def test_base_url_and_served_model_conflict() -> None:
    with pytest.raises(ServingConfigurationError, match="served_model"):
        EndpointAddress.build(
            host=None, base_url="http://127.0.0.1:1", openai_compatible=False
        ).check_served_model("x")
    with pytest.raises(ServingConfigurationError, match="openai_compatible"):
        EndpointAddress.build(
            host="https://h.example.com", base_url=None, openai_compatible=True
        ).check_served_model("x")


BAD_NAMES = [
    "../other",
    "..",
    ".",
    "a/b",
    "a?b=1",
    "a#frag",
    "a%2Fb",
    "a b",
    " ep",
    "ep\n",
    "ep\t",
    "a\\b",
    "..%2F..%2Fapi",
    "",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_path_injection_refused_everywhere(server: ServingTestServer, name: str) -> None:
    with pytest.raises(ServingConfigurationError):
        check_endpoint_name(name)
    with pytest.raises(ValidationError):
        Client(model=name, host=server.url, token=SecretStr("t"))
    with pytest.raises(ValidationError):
        Client(model="ep", served_model=name, host=server.url, token=SecretStr("t"))
    with pytest.raises(ServingConfigurationError):
        EndpointAddress.build(
            host=server.url, base_url=None, openai_compatible=False
        ).check_served_model(name)
    client = Client(model="ep", host=server.url, token=SecretStr("t"))
    with pytest.raises(ServingConfigurationError):
        client._endpoint_for(name)
    # The transport itself refuses to paste such a name into a path.
    with pytest.raises(ServingConfigurationError):
        make_transport(server.url).invoke("llm/v1/chat", name, {})
    assert server.requests == []


@pytest.mark.parametrize("name", ["databricks-claude-sonnet-4", "my_endpoint.v2", "ep-1"])
def test_ordinary_names_accepted(server: ServingTestServer, name: str) -> None:
    server.reply(f"/serving-endpoints/{name}/invocations", Reply.json({"ok": 1}))
    assert make_transport(server.url).invoke("llm/v1/chat", name, {}) == {"ok": 1}


# -- no tokens in cleartext ------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["http://example.invalid", "HTTP://example.invalid", "Http://10.1.2.3:8080"]
)
def test_token_over_plain_http_refused_before_connecting(host: str) -> None:
    client = Client(model="ep", host=host, token=SecretStr("dapi-secret"), max_retries=0)
    # A connection attempt would end in ServingConnectionError; refusal comes first.
    with pytest.raises(ServingConfigurationError, match="plain http") as info:
        client.transport.invoke("llm/v1/chat", "ep", {})
    assert "dapi-secret" not in str(info.value)
    with pytest.raises(ServingConfigurationError, match="allow_insecure_http"):
        make_transport(host)


def test_oauth_over_plain_http_refused() -> None:
    client = Client(
        model="ep",
        host="http://example.invalid",
        client_id="cid",
        client_secret=SecretStr("csecret"),
    )
    with pytest.raises(ServingConfigurationError, match="plain http"):
        client.transport.invoke("llm/v1/chat", "ep", {})


def test_oauth_token_url_checked_even_when_base_url_is_https() -> None:
    # The client secret goes to {host}/oidc/v1/token, not to base_url.
    client = Client(
        model="ep",
        base_url="https://models.example.com/v1",
        host="http://example.invalid",
        client_id="cid",
        client_secret="csecret",
    )
    with pytest.raises(ServingConfigurationError, match="plain http"):
        _ = client.transport


def test_custom_auth_over_plain_http_refused() -> None:
    with pytest.raises(ServingConfigurationError):
        make_transport("http://example.invalid", token=None, auth=httpx.BasicAuth("u", "p"))


def test_insecure_http_allowed_when_asked() -> None:
    transport = make_transport("http://example.invalid", allow_insecure_http=True)
    assert transport.address.root == "http://example.invalid/serving-endpoints"


@pytest.mark.parametrize(
    "host", ["http://127.0.0.1:1", "http://127.9.9.9", "http://[::1]:8080", "http://localhost:80"]
)
def test_plain_http_to_loopback_allowed(host: str) -> None:
    make_transport(host)


def test_plain_http_without_credentials_allowed() -> None:
    make_transport(None, token=None, base_url="http://models.example.invalid/v1")


# -- decoding --------------------------------------------------------------------------


@MODES
def test_non_json_success_is_a_response_error(server: ServingTestServer, mode: str) -> None:
    server.reply(PATH, Reply.text("<html>login</html>", 200, content_type="text/html"))
    with pytest.raises(ServingError, match="expected a JSON object") as info:
        call(make_transport(server.url), mode)
    assert info.value.status_code == 200


def test_json_array_success_is_a_response_error(server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json([1, 2]))
    with pytest.raises(ServingError, match="JSON object"):
        make_transport(server.url).invoke("llm/v1/chat", "ep", {})


def test_redirects_are_not_followed(server: ServingTestServer) -> None:
    server.reply(PATH, Reply(302, b"", {"Location": "http://127.0.0.1:1/steal"}))
    with pytest.raises(ServingError) as info:
        make_transport(server.url).invoke("llm/v1/chat", "ep", {})
    assert info.value.status_code == 302
    assert len(server.requests) == 1


# -- retries ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
@MODES
def test_retryable_statuses_retried_up_to_max(server, sleeps, mode, status) -> None:
    server.reply(PATH, Reply.json({"error_code": "E", "message": "busy"}, status))
    transport = make_transport(server.url, max_retries=3)
    with pytest.raises(ServingError) as info:
        call(transport, mode)
    assert info.value.status_code == status
    assert len(server.requests) == 4
    assert len(sleeps) == 3


@MODES
def test_retry_then_success(server, sleeps, mode) -> None:
    server.reply(
        PATH,
        Reply.json({"message": "scaling from zero"}, 503),
        Reply.text("bad gateway", 502),
        Reply.json({"ok": True}),
    )
    assert call(make_transport(server.url, max_retries=5), mode) == {"ok": True}
    assert len(server.requests) == 3
    assert len(sleeps) == 2
    # The body is sent again, whole, on every attempt.
    assert all(r.raw == server.requests[0].raw for r in server.requests)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ServingInvalidRequestError),
        (401, ServingAuthenticationError),
        (403, ServingPermissionDeniedError),
        (404, ServingNotFoundError),
    ],
)
@MODES
def test_client_errors_not_retried(server, sleeps, mode, status, cls) -> None:
    server.reply(PATH, Reply.json({"message": "no"}, status))
    with pytest.raises(cls):
        call(make_transport(server.url, max_retries=3), mode)
    assert len(server.requests) == 1
    assert sleeps == []


def test_zero_retries_means_one_request(server, sleeps) -> None:
    server.reply(PATH, Reply.json({"message": "busy"}, 503))
    with pytest.raises(ServingServerError):
        make_transport(server.url, max_retries=0).invoke("llm/v1/chat", "ep", {})
    assert len(server.requests) == 1
    assert sleeps == []


@pytest.mark.parametrize("status", [429, 503])
@MODES
def test_retry_after_honoured(server, sleeps, mode, status) -> None:
    server.reply(
        PATH,
        Reply.json({"message": "later"}, status, headers={"Retry-After": "7"}),
        Reply.json({"message": "later"}, status, headers={"Retry-After": "2.5"}),
        Reply.json({"ok": True}),
    )
    transport = make_transport(server.url, max_retries=3, initial_delay=0.5, max_delay=1.0)
    assert call(transport, mode) == {"ok": True}
    assert sleeps == [7.0, 2.5]


@MODES
def test_retry_after_above_cap_raises_at_once(server, sleeps, mode) -> None:
    server.reply(PATH, Reply.json({"message": "later"}, 429, headers={"Retry-After": "120"}))
    transport = make_transport(server.url, max_retries=3, max_retry_after=60)
    with pytest.raises(ServingRateLimitError) as info:
        call(transport, mode)
    assert info.value.retry_after == 120.0
    assert len(server.requests) == 1
    assert sleeps == []


def test_backoff_is_exponential_jittered_and_capped(server, sleeps) -> None:
    server.reply(PATH, Reply.json({"message": "busy"}, 500))
    transport = make_transport(server.url, max_retries=6, initial_delay=0.5, max_delay=4.0)
    with pytest.raises(ServingServerError):
        transport.invoke("llm/v1/chat", "ep", {})
    assert len(sleeps) == 6
    for attempt, delay in enumerate(sleeps):
        assert 0 <= delay <= min(4.0, 0.5 * 2**attempt)


@MODES
def test_connection_errors_retried(sleeps, mode) -> None:
    transport = make_transport(closed_port_url(), max_retries=2)
    with pytest.raises(ServingConnectionError) as info:
        call(transport, mode)
    assert isinstance(info.value, ModelConnectionError)
    assert info.value.endpoint == "ep"
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(sleeps) == 2


@MODES
def test_read_timeout_not_retried_by_default(server, mode) -> None:
    server.reply(PATH, Reply.json({"ok": True}, delay=0.4))
    transport = make_transport(server.url, max_retries=3, timeout=0.1, initial_delay=0)
    with pytest.raises(ServingTimeoutError, match="retry_read_timeouts") as info:
        call(transport, mode)
    assert isinstance(info.value, ModelTimeoutError)
    # The public class, and LangChain is told not to re-run (and re-bill) it either.
    assert type(info.value) is ServingReadTimeoutError
    assert info.value.is_retryable is False
    assert len(server.requests) == 1


@MODES
def test_write_timeout_is_not_called_a_connect_timeout(mode) -> None:
    """A server that accepts but never reads: the body cannot be sent in time."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel completes the connection; nobody ever reads
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        transport = make_transport(url, timeout=0.3)
        body = {"input": "x" * (32 * 1024 * 1024)}  # far more than the socket buffers hold
        with pytest.raises(ServingTimeoutError) as info:
            call(transport, mode, body=body)
        transport.close()
    assert "timed out sending the request (WriteTimeout)" in str(info.value)
    assert "connecting" not in str(info.value)


@pytest.mark.parametrize(
    ("exc", "cls", "text"),
    [
        (httpx.ConnectTimeout("x"), ServingConnectionError, "timed out connecting"),
        (httpx.WriteTimeout("x"), ServingTimeoutError, "timed out sending the request"),
        (httpx.PoolTimeout("x"), ServingTimeoutError, "no free connection in the pool"),
        (httpx.ReadTimeout("x"), ServingReadTimeoutError, "read timeout"),
    ],
)
def test_each_timeout_is_named_for_what_timed_out(exc, cls, text) -> None:
    error = transport_module._transport_error(exc, "ep")
    assert type(error) is cls
    assert text in error.message
    assert error.__cause__ is exc
    # Only the read timeout is withheld from retries: the others never reached a model.
    policy = transport_module.RetryPolicy(max_retries=1)
    assert (policy.delay(0, error) is None) is (cls is ServingReadTimeoutError)
    assert policy.delay(0, error, idempotent=True) is not None  # a GET is always safe


@MODES
def test_read_timeout_retried_when_asked(server, mode) -> None:
    server.reply(PATH, Reply.json({"slow": True}, delay=0.4), Reply.json({"ok": True}))
    transport = make_transport(
        server.url, max_retries=2, timeout=0.1, initial_delay=0, retry_read_timeouts=True
    )
    assert call(transport, mode) == {"ok": True}
    assert len(server.requests) == 2


def test_read_timeout_retry_flag_reaches_the_transport_from_a_client(server) -> None:
    client = Client(model="ep", host=server.url, token=SecretStr("t"), retry_read_timeouts=True)
    assert client.transport.retry.retry_read_timeouts is True
    assert Client(model="ep", host=server.url, token=SecretStr("t")).transport.retry == (
        transport_module.RetryPolicy(max_retries=3)
    )


@MODES
def test_stream_request_retried_before_it_starts(server, sleeps, mode) -> None:
    server.reply(
        PATH,
        Reply.json({"message": "busy"}, 503),
        Reply.sse([chat_chunk({"content": "hi"}, finish_reason="stop")]),
    )
    chunks = collect(make_transport(server.url, max_retries=2), mode)
    assert [c["choices"][0]["delta"] for c in chunks] == [{"content": "hi"}]
    assert len(server.requests) == 2


@MODES
def test_stream_cut_after_yielding_is_not_retried(server, sleeps, mode) -> None:
    server.reply(PATH, Reply.sse([chat_chunk({"content": "Hel"})], done=False))
    transport = make_transport(server.url, max_retries=3, retry_read_timeouts=True)
    seen: list[dict] = []
    with pytest.raises(ServingStreamError, match="without \\[DONE\\]"):
        collect(transport, mode, into=seen)
    assert len(seen) == 1
    assert len(server.requests) == 1
    assert sleeps == []


@MODES
def test_stream_stalling_mid_way_times_out_without_retry(server, mode) -> None:
    # No `sleeps` fixture here: the server's own delays must be real.
    frames = [f"data: {json.dumps(chat_chunk({'content': str(i)}))}\n\n" for i in range(3)]
    server.reply(PATH, Reply.sse(frames, raw=True, event_delay=0.4))
    transport = make_transport(
        server.url, max_retries=3, timeout=0.1, retry_read_timeouts=True, initial_delay=0
    )
    with pytest.raises(ServingTimeoutError, match="stalled"):
        collect(transport, mode)
    assert len(server.requests) == 1


# -- streaming -------------------------------------------------------------------------


@MODES
def test_stream_basic(server: ServingTestServer, mode: str) -> None:
    chunks = [
        chat_chunk({"role": "assistant", "content": "Hel"}),
        chat_chunk({"content": "lo"}),
        chat_chunk({}, finish_reason="stop"),
        chat_chunk(choices=False, usage={"prompt_tokens": 3, "total_tokens": 5}),
    ]
    server.reply(PATH, Reply.sse(chunks))
    assert collect(make_transport(server.url), mode, body={"messages": [], "n": 1}) == chunks
    (request,) = server.requests
    assert request.json == {"messages": [], "n": 1, "stream": True}
    assert request.headers["authorization"] == f"Bearer {TEST_TOKEN}"


CRLF_FRAME = (
    b"event: message\r\nid: 7\r\ndata: "
    + json.dumps({"choices": [{"delta": {"content": "b"}}]}).encode()
    + b"\r\n\r\n"
)


@MODES
def test_stream_keepalives_comments_multiline_and_crlf(server, mode) -> None:
    frames = [
        b": ping\n\n",
        b"\n",
        b"\n\n",
        b'data: {"choices": [{"index": 0,\ndata: "delta": {"content": "a"}}]}\n\n',
        CRLF_FRAME,
        b": another comment\n",
        b'data:{"choices": [{"delta": {}, "finish_reason": "stop"}]}\n\n',
        b"data: [DONE]\n\n",
        b'data: {"after": "done is ignored"}\n\n',
    ]
    server.reply(PATH, Reply.sse(frames, raw=True, done=False))
    chunks = collect(make_transport(server.url), mode)
    assert [c["choices"][0]["delta"] for c in chunks] == [{"content": "a"}, {"content": "b"}, {}]


@MODES
def test_stream_without_done_but_with_finish_reason_is_fine(server, mode) -> None:
    chunks = [chat_chunk({"content": "x"}), chat_chunk({}, finish_reason="length")]
    server.reply(PATH, Reply.sse(chunks, done=False))
    assert collect(make_transport(server.url), mode) == chunks


@MODES
def test_stream_without_done_or_finish_reason_raises(server, mode) -> None:
    server.reply(PATH, Reply.sse([chat_chunk({"content": "x"})] * 2, done=False))
    with pytest.raises(ServingStreamError, match="cut short") as info:
        collect(make_transport(server.url), mode)
    assert info.value.endpoint == "ep"


@MODES
def test_empty_stream_raises(server, mode) -> None:
    server.reply(PATH, Reply.sse([], done=False))
    with pytest.raises(ServingStreamError):
        collect(make_transport(server.url), mode)


@pytest.mark.parametrize(
    "frame",
    [
        'data: {"error_code": "INTERNAL_ERROR", "message": "model crashed"}\n\n',
        'data: {"error": {"message": "model crashed", "code": "INTERNAL_ERROR"}}\n\n',
        'event: error\ndata: {"error_code": "INTERNAL_ERROR", "message": "model crashed"}\n\n',
    ],
)
@MODES
def test_error_sent_mid_stream_raises(server, mode, frame) -> None:
    first = f"data: {json.dumps(chat_chunk({'content': 'x'}))}\n\n"
    server.reply(PATH, Reply.sse([first, frame], raw=True))
    with pytest.raises(ServingStreamError, match="model crashed") as info:
        collect(make_transport(server.url), mode)
    assert info.value.error_code == "INTERNAL_ERROR"
    assert info.value.endpoint == "ep"


@MODES
def test_non_json_event_raises(server, mode) -> None:
    server.reply(PATH, Reply.sse(["data: not json\n\n"], raw=True))
    with pytest.raises(ServingStreamError, match="not JSON"):
        collect(make_transport(server.url), mode)


@MODES
def test_non_sse_success_to_stream_request_raises(server, mode) -> None:
    server.reply(PATH, Reply.json(chat_response()))
    with pytest.raises(ServingStreamError, match="text/event-stream") as info:
        collect(make_transport(server.url), mode)
    assert "application/json" in str(info.value)
    assert info.value.status_code == 200


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, ServingInvalidRequestError), (429, ServingRateLimitError), (404, ServingNotFoundError)],
)
@MODES
def test_non_2xx_to_stream_request_is_typed(server, mode, status, cls) -> None:
    server.reply(
        PATH,
        Reply.json({"error_code": "E", "message": "no stream"}, status, {"x-request-id": "r1"}),
    )
    with pytest.raises(cls) as info:
        collect(make_transport(server.url), mode)
    assert info.value.message == "no stream"
    assert info.value.request_id == "r1"


@MODES
def test_openai_compatible_stream(server, mode) -> None:
    server.reply(
        "/serving-endpoints/chat/completions",
        Reply.sse([chat_chunk({"content": "x"}, finish_reason="stop")]),
    )
    collect(make_transport(server.url, openai_compatible=True), mode, endpoint="my-ep")
    assert server.requests[0].json == {"messages": [], "stream": True, "model": "my-ep"}


def test_stream_closed_early_by_the_consumer(server) -> None:
    chunks = [chat_chunk({"content": str(i)}) for i in range(5)]
    server.reply(PATH, Reply.sse(chunks), Reply.json({"ok": True}))
    transport = make_transport(server.url)
    stream = transport.stream("llm/v1/chat", "ep", {})
    assert next(stream) == chunks[0]
    stream.close()
    # The pool is still usable afterwards.
    assert transport.invoke("llm/v1/chat", "ep", {}) == {"ok": True}


# -- event loops, pickling -------------------------------------------------------------


def test_async_transport_across_event_loops(server) -> None:
    server.reply(PATH, Reply.json({"ok": True}))
    server.reply("/serving-endpoints/s/invocations", Reply.sse([chat_chunk(finish_reason="stop")]))
    transport = make_transport(server.url)

    async def once() -> None:
        assert await transport.ainvoke("llm/v1/chat", "ep", {}) == {"ok": True}
        assert [c async for c in transport.astream("llm/v1/chat", "s", {})]

    asyncio.run(once())
    asyncio.run(once())
    asyncio.run(once())
    assert len(server.requests) == 6
    assert transport._pool._aclients == {}  # each loop's client closed as its loop shut down


def test_concurrent_async_requests_share_one_client(server) -> None:
    server.reply(PATH, Reply.json({"ok": True}, delay=0.05))
    transport = make_transport(server.url)

    async def many() -> list[dict]:
        return await asyncio.gather(
            *(transport.ainvoke("llm/v1/chat", "ep", {}) for _ in range(10))
        )

    assert asyncio.run(many()) == [{"ok": True}] * 10
    assert server.max_in_flight > 1


def test_pickled_client_works_after_sync_and_async_use(server) -> None:
    server.reply(PATH, Reply.json({"ok": True}))
    client = Client(model="ep", host=server.url, token=SecretStr("dapi-pickled"))
    client.transport.invoke("llm/v1/chat", "ep", {})
    asyncio.run(client.transport.ainvoke("llm/v1/chat", "ep", {}))
    assert client.transport._pool._client is not None

    clone = pickle.loads(pickle.dumps(client))
    assert clone.transport is not client.transport
    assert clone.transport._pool._client is None
    assert clone.transport._pool._aclients == {}
    assert clone.transport.invoke("llm/v1/chat", "ep", {}) == {"ok": True}
    assert asyncio.run(clone.transport.ainvoke("llm/v1/chat", "ep", {})) == {"ok": True}
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer dapi-pickled"] * 4


def test_close_then_reuse(server) -> None:
    server.reply(PATH, Reply.json({"ok": True}))
    transport = make_transport(server.url)
    transport.invoke("llm/v1/chat", "ep", {})
    transport.close()
    transport.close()
    assert transport.invoke("llm/v1/chat", "ep", {}) == {"ok": True}


# -- secrets stay secret ---------------------------------------------------------------


def test_token_absent_from_reprs_errors_and_debug_logs(server, sleeps, caplog) -> None:
    secret = "dapi-very-secret-value"
    server.reply(
        PATH,
        Reply.json({"message": "busy"}, 503),
        Reply.json({"message": "denied"}, 403, {"x-request-id": "r"}),
    )
    for name in ("langchain_servingx", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    client = Client(model="ep", host=server.url, token=SecretStr(secret), max_retries=2)
    with pytest.raises(ServingPermissionDeniedError) as info:
        client.transport.invoke("llm/v1/chat", "ep", {})
    assert server.requests[0].headers["authorization"] == f"Bearer {secret}"  # it was sent
    texts = [
        repr(client),
        str(client),
        repr(client.transport),
        repr(client.transport._auth),
        str(client.transport._auth),
        repr(vars(client.transport)),
        str(info.value),
        repr(info.value),
        caplog.text,
    ]
    assert caplog.records  # the loggers did log
    for text in texts:
        assert secret not in text

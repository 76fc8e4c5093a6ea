"""The transport under faults: which failures are retried, the retry budget, body caps,
deep JSON, error bodies sent with 200, secrets on raised errors, and connection reuse."""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from langchain_servingx._errors import (
    ServingConnectionError,
    ServingRateLimitError,
    ServingResponseError,
    ServingServerError,
    ServingStreamError,
)
from tests.conftest import TEST_TOKEN
from tests.serving_server import Reply, chat_chunk, make_transport

PATH = "/serving-endpoints/ep/invocations"
MODES = pytest.mark.parametrize("mode", ["sync", "async"])


def call(transport, mode: str, body: dict | None = None) -> dict:
    body = {"messages": []} if body is None else body
    if mode == "sync":
        return transport.invoke("llm/v1/chat", "ep", body)
    return asyncio.run(transport.ainvoke("llm/v1/chat", "ep", body))


def stream(transport, mode: str) -> list[dict]:
    if mode == "sync":
        return list(transport.stream("llm/v1/chat", "ep", {"messages": []}))

    async def run() -> list[dict]:
        return [c async for c in transport.astream("llm/v1/chat", "ep", {"messages": []})]

    return asyncio.run(run())


# -- what is retried -------------------------------------------------------------------


@MODES
def test_reset_after_the_request_was_sent_is_not_retried(server, sleeps, mode) -> None:
    """A fresh connection closed after the server read the request: the model may have run."""
    server.reply(PATH, Reply.dropped(), Reply.json({"ok": True}))
    transport = make_transport(server.url, max_retries=3)
    with pytest.raises(ServingConnectionError, match="after the request was sent") as info:
        call(transport, mode)
    assert "retry_read_timeouts" in str(info.value)
    assert info.value.is_retryable is False
    assert len(server.requests) == 1
    assert sleeps == []


@MODES
def test_reset_after_send_retried_when_asked(server, sleeps, mode) -> None:
    server.reply(PATH, Reply.dropped(), Reply.json({"ok": True}))
    transport = make_transport(server.url, max_retries=3, retry_read_timeouts=True)
    assert call(transport, mode) == {"ok": True}
    assert len(server.requests) == 2


def test_kept_alive_connection_closed_before_any_answer_is_retried(server, sleeps) -> None:
    """The reused connection fails with no response byte: the stale keep-alive race."""
    server.reply(PATH, Reply.json({"first": True}), Reply.dropped(), Reply.json({"ok": True}))
    transport = make_transport(server.url, max_retries=3)
    assert transport.invoke("llm/v1/chat", "ep", {}) == {"first": True}
    assert transport.invoke("llm/v1/chat", "ep", {}) == {"ok": True}
    assert len(server.requests) == 3
    assert len(sleeps) == 1
    assert server.connections == 2  # the dropped connection was replaced once


async def test_kept_alive_connection_closed_is_retried_async(server, sleeps) -> None:
    server.reply(PATH, Reply.json({"first": True}), Reply.dropped(), Reply.json({"ok": True}))
    transport = make_transport(server.url, max_retries=3)
    assert await transport.ainvoke("llm/v1/chat", "ep", {}) == {"first": True}
    assert await transport.ainvoke("llm/v1/chat", "ep", {}) == {"ok": True}
    assert len(server.requests) == 3


@MODES
def test_connect_errors_retried_then_typed(sleeps, mode) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(ServingConnectionError, match="cannot reach the endpoint"):
        call(make_transport(url, max_retries=2), mode)
    assert len(sleeps) == 2


@pytest.mark.parametrize("status", [429, 503])
@MODES
def test_overload_retried_past_the_count_within_the_budget(server, sleeps, mode, status) -> None:
    server.reply(
        PATH, Reply.json({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow"}, status)
    )
    transport = make_transport(server.url, max_retries=2, budget=30.0)
    with pytest.raises(ServingError_for(status)) as info:
        call(transport, mode)
    assert info.value.status_code == status
    assert len(sleeps) > 2  # past max_retries
    assert sum(sleeps) <= 30.0
    assert len(server.requests) == len(sleeps) + 1


def ServingError_for(status: int) -> type:
    return ServingRateLimitError if status == 429 else ServingServerError


@MODES
def test_overload_with_retry_after_keeps_going_until_success(server, sleeps, mode) -> None:
    busy = Reply.json({"message": "later"}, 429, headers={"Retry-After": "5"})
    server.reply(PATH, *([busy] * 6), Reply.json({"ok": True}))
    transport = make_transport(server.url, max_retries=2, budget=60.0)
    assert call(transport, mode) == {"ok": True}
    assert len(sleeps) == 6
    assert all(5.0 <= s <= 8.0 for s in sleeps)  # the hint, or a longer backoff


def test_no_retry_starts_past_the_budget(server, sleeps) -> None:
    busy = Reply.json({"message": "later"}, 503, headers={"Retry-After": "20"})
    server.reply(PATH, busy)
    transport = make_transport(server.url, max_retries=10, budget=50.0)
    with pytest.raises(ServingServerError) as info:
        transport.invoke("llm/v1/chat", "ep", {})
    assert sleeps == [20.0, 20.0]  # a third wait would end at 60 s (backoff stays under 20 s)
    assert info.value.retry_after == 20.0


def test_other_errors_keep_the_count(server, sleeps) -> None:
    server.reply(PATH, Reply.json({"message": "broken"}, 500))
    with pytest.raises(ServingServerError):
        make_transport(server.url, max_retries=2, budget=300.0).invoke("llm/v1/chat", "ep", {})
    assert len(server.requests) == 3


def test_zero_retries_is_one_request_even_on_429(server, sleeps) -> None:
    server.reply(PATH, Reply.json({"message": "later"}, 429))
    with pytest.raises(ServingRateLimitError):
        make_transport(server.url, max_retries=0).invoke("llm/v1/chat", "ep", {})
    assert len(server.requests) == 1


# -- body size and depth ---------------------------------------------------------------


@MODES
def test_answer_larger_than_the_cap_is_refused(server, mode) -> None:
    server.reply(PATH, Reply.json({"text": "x" * 5000}))
    transport = make_transport(server.url, max_response_bytes=1000)
    with pytest.raises(ServingResponseError, match="max_response_bytes=1000") as info:
        call(transport, mode)
    assert "5012 bytes" in str(info.value)  # the declared Content-Length


@MODES
def test_chunked_answer_larger_than_the_cap_is_refused(server, mode) -> None:
    """No Content-Length: the cap is enforced while reading."""

    def chunked(request):
        return Reply(
            200,
            b"",
            {"Content-Type": "application/json"},
            events=[b'{"t": "'] + [b"y" * 1000] * 5 + [b'"}'],
        )

    server.handle(PATH, chunked)
    transport = make_transport(server.url, max_response_bytes=2000)
    with pytest.raises(ServingResponseError, match="runs past 2000 bytes"):
        call(transport, mode)


def test_answer_within_the_cap_is_read(server) -> None:
    server.reply(PATH, Reply.json({"text": "x" * 900}))
    assert make_transport(server.url, max_response_bytes=1000).invoke("llm/v1/chat", "ep", {})


@MODES
def test_deeply_nested_answer_is_a_typed_error(server, mode) -> None:
    server.reply(
        PATH, Reply(200, b"[" * 100_000 + b"]" * 100_000, {"Content-Type": "application/json"})
    )
    with pytest.raises(ServingResponseError, match="nested too deeply"):
        call(make_transport(server.url), mode)


@MODES
def test_deeply_nested_5xx_body_is_still_retried_and_typed(server, sleeps, mode) -> None:
    deep = b'{"error": ' * 50_000 + b"1" + b"}" * 50_000
    server.reply(
        PATH, Reply(500, deep, {"Content-Type": "application/json"}), Reply.json({"ok": 1})
    )
    assert call(make_transport(server.url, max_retries=1), mode) == {"ok": 1}
    server.reset()
    server.reply(PATH, Reply(502, deep, {"Content-Type": "application/json"}))
    with pytest.raises(ServingServerError) as info:
        call(make_transport(server.url), mode)
    assert info.value.status_code == 502


@MODES
def test_deeply_nested_stream_event_is_a_stream_error(server, mode) -> None:
    frame = b"data: " + b"[" * 100_000 + b"]" * 100_000 + b"\n\n"
    server.reply(PATH, Reply.sse([frame], raw=True))
    with pytest.raises(ServingStreamError, match="nested too deeply"):
        stream(make_transport(server.url), mode)


# -- error bodies with a success status, empty streams ---------------------------------


@MODES
def test_error_body_with_status_200_keeps_the_servers_message(server, mode) -> None:
    server.reply(
        PATH,
        Reply.json(
            {"error_code": "BAD_REQUEST", "message": "Input is too long for the model"},
            headers={"x-request-id": "req-7"},
        ),
    )
    with pytest.raises(ServingResponseError, match="Input is too long for the model") as info:
        call(make_transport(server.url), mode)
    assert info.value.error_code == "BAD_REQUEST"
    assert info.value.status_code == 200
    assert info.value.request_id == "req-7"


@MODES
def test_stream_of_only_done_is_an_error(server, mode) -> None:
    server.reply(PATH, Reply.sse([]))
    with pytest.raises(ServingStreamError, match=r"\[DONE\] before any choice"):
        stream(make_transport(server.url), mode)


def test_stream_with_choices_then_done_is_fine(server) -> None:
    server.reply(PATH, Reply.sse([chat_chunk({"content": "a"})]))
    assert len(stream(make_transport(server.url), "sync")) == 1


# -- secrets on what is raised ---------------------------------------------------------


def _chain(error: BaseException) -> list[BaseException]:
    chain, seen = [], error
    while seen is not None:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


@MODES
def test_connection_error_chain_holds_no_token(mode) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(ServingConnectionError) as info:
        call(make_transport(url), mode)
    chain = _chain(info.value)
    assert isinstance(chain[1], httpx.ConnectError)  # the kind of failure is kept
    for exc in chain:
        assert exc.__traceback__ is None or exc is info.value
        request = exc.__dict__.get("_request") or exc.__dict__.get("request")
        assert request is None
        assert TEST_TOKEN not in repr(exc.__dict__)
    assert TEST_TOKEN not in repr(pickle.loads(pickle.dumps(info.value)).__dict__)


@MODES
def test_reset_error_chain_holds_no_token(server, mode) -> None:
    server.reply(PATH, Reply.dropped())
    with pytest.raises(ServingConnectionError) as info:
        call(make_transport(server.url), mode)
    for exc in _chain(info.value):
        if isinstance(exc, httpx.RequestError):
            with pytest.raises(RuntimeError):
                _ = exc.request  # stripped: no headers, no token


# -- connections -----------------------------------------------------------------------


def test_concurrent_requests_open_no_more_connections_than_the_concurrency(server) -> None:
    server.reply(PATH, Reply.json({"ok": True}, delay=0.05))
    transport = make_transport(server.url)
    barrier = threading.Barrier(32)

    def one(_: int) -> dict:
        barrier.wait()
        return transport.invoke("llm/v1/chat", "ep", {})

    with ThreadPoolExecutor(32) as pool:
        for _ in range(3):  # three bursts of 32
            list(pool.map(one, range(32)))
    assert len(server.requests) == 96
    assert server.connections <= 32


async def test_concurrent_async_requests_reuse_their_connections(server) -> None:
    server.reply(PATH, Reply.json({"ok": True}, delay=0.05))
    transport = make_transport(server.url)
    for _ in range(3):
        await asyncio.gather(*(transport.ainvoke("llm/v1/chat", "ep", {}) for _ in range(32)))
    assert server.connections <= 32


def test_error_body_is_read_only_up_to_a_limit(server) -> None:
    huge = json.dumps({"message": "m" * (3 * 1024 * 1024)}).encode()
    server.reply(PATH, Reply(500, huge, {"Content-Type": "application/json"}))
    with pytest.raises(ServingServerError) as info:
        make_transport(server.url).invoke("llm/v1/chat", "ep", {})
    assert len(info.value.message) <= 600  # truncated, not the 3 MB body

"""The sync connection pool (`_pool.StackPool`) against a real server on 127.0.0.1.

The server counts the connections it accepted and the ones still open, so each test sees
reuse, expiry and closing from the other side of the wire.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpcore
import httpx
import pytest

from langchain_servingx import ChatServing, ServingConnectionError, ServingTimeoutError
from langchain_servingx._pool import PooledTransport, StackPool
from tests.conftest import EP_PATH, TEST_TOKEN
from tests.serving_server import Reply, ServingTestServer, chat_response

PATH = EP_PATH


@pytest.fixture
def make_client() -> Iterator[type[httpx.Client]]:
    """`httpx.Client`s on a `PooledTransport`, all closed after the test."""
    opened: list[httpx.Client] = []

    def factory(**limits: float | int | None) -> httpx.Client:
        client = httpx.Client(transport=PooledTransport(limits=httpx.Limits(**limits)))  # type: ignore[arg-type]
        opened.append(client)
        return client

    yield factory  # type: ignore[misc]
    for client in opened:
        client.close()


def script(ep: ServingTestServer, *replies: Reply) -> None:
    """Replace the fixture's default answer by `replies` (before any request is made)."""
    ep.reset()
    ep.reply(PATH, *replies)


def pool_of(client: httpx.Client) -> StackPool:
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, StackPool)
    return pool


def test_the_package_sync_client_sends_on_the_stack_pool(ep) -> None:
    """Guards the one private httpx name `PooledTransport` relies on (`_pool`)."""
    llm = ChatServing(endpoint="ep", host=ep.url, token=TEST_TOKEN, api="chat")
    try:
        assert llm.invoke("x").content == "Hello!"
        pool = pool_of(llm.transport.client)
        assert "1 connections, 0 busy, 1 idle" in repr(pool)
    finally:
        llm.close()
    assert ep.wait_for_connections(0) == 0


def test_sequential_requests_reuse_one_connection(ep, make_client) -> None:
    client = make_client()
    for _ in range(20):
        assert client.post(ep.url + PATH, json={}).status_code == 200
    assert ep.connections == 1
    assert len({r.peer for r in ep.requests}) == 1


def test_concurrent_requests_open_at_most_max_connections_and_then_reuse_them(
    ep, make_client
) -> None:
    script(ep, Reply.json(chat_response(), delay=0.05))
    client = make_client(max_connections=4, max_keepalive_connections=4)
    with ThreadPoolExecutor(16) as threads:
        codes = list(
            threads.map(lambda _: client.post(ep.url + PATH, json={}).status_code, range(48))
        )
    assert codes == [200] * 48
    assert ep.max_in_flight <= 4
    assert ep.connections <= 4
    accepted = ep.connections
    with ThreadPoolExecutor(4) as threads:  # a warm pool opens nothing new
        list(threads.map(lambda _: client.post(ep.url + PATH, json={}), range(16)))
    assert ep.connections == accepted
    assert "0 busy" in pool_of(client).info()


def test_the_most_recently_used_connection_is_taken_first(ep, make_client) -> None:
    client = make_client()
    with client.stream("POST", ep.url + PATH, json={}) as first:
        with client.stream("POST", ep.url + PATH, json={}) as second:
            second.read()
        first.read()  # `first` goes back last: it is the top of the stack
    client.post(ep.url + PATH, json={})
    peers = [r.peer for r in ep.requests]
    assert peers[0] != peers[1]
    assert peers[2] == peers[0]


def test_a_connection_the_server_closed_while_idle_is_replaced(ep, make_client) -> None:
    client = make_client()
    script(
        ep,
        Reply.json(chat_response(), headers={"Connection": "close"}),
        Reply.json(chat_response()),
    )
    assert client.post(ep.url + PATH, json={}).status_code == 200
    assert ep.wait_for_connections(0) == 0  # the server closed it after answering
    assert client.post(ep.url + PATH, json={}).status_code == 200
    assert ep.connections == 2
    assert len(ep.requests) == 2  # nothing was sent on the dead socket


def test_a_kept_alive_connection_dropped_before_any_answer_is_a_connection_error(ep) -> None:
    """The retry rule's classification still sees a reused connection (not a fresh one)."""
    llm = ChatServing(endpoint="ep", host=ep.url, token=TEST_TOKEN, api="chat", max_retries=0)
    try:
        assert llm.invoke("x").content == "Hello!"
        script(ep, Reply.dropped(), Reply.json(chat_response()))
        with pytest.raises(ServingConnectionError, match="kept-alive connection was closed"):
            llm.invoke("x")
        assert llm.invoke("x").content == "Hello!"  # the broken connection was not kept
    finally:
        llm.close()


def test_idle_connections_past_the_keepalive_expiry_are_closed(ep, make_client) -> None:
    client = make_client(keepalive_expiry=0.05)
    client.post(ep.url + PATH, json={})
    assert ep.wait_for_connections(1) == 1
    time.sleep(0.1)
    client.post(ep.url + PATH, json={})  # prunes the expired one, opens a new one
    assert ep.connections == 2
    assert ep.wait_for_connections(1) == 1
    assert "1 connections" in pool_of(client).info()


def test_connections_beyond_the_idle_limit_are_closed_when_given_back(ep, make_client) -> None:
    script(ep, Reply.json(chat_response(), delay=0.1))
    client = make_client(max_connections=4, max_keepalive_connections=1)
    barrier = threading.Barrier(4)

    def post(_: int) -> int:
        barrier.wait()
        return client.post(ep.url + PATH, json={}).status_code

    with ThreadPoolExecutor(4) as threads:
        assert list(threads.map(post, range(4))) == [200] * 4
    assert ep.connections == 4
    assert ep.wait_for_connections(1) == 1
    assert "1 connections, 0 busy, 1 idle" in pool_of(client).info()


def test_a_full_pool_waits_for_a_connection_then_times_out(ep, make_client) -> None:
    client = make_client(max_connections=1)
    with client.stream("POST", ep.url + PATH, json={}) as first:
        started = time.monotonic()
        with pytest.raises(httpx.PoolTimeout):
            client.post(ep.url + PATH, json={}, timeout=httpx.Timeout(5.0, pool=0.1))
        assert time.monotonic() - started >= 0.1
        first.read()  # read to the end: the connection goes back to the pool
    # Once the holder gives its connection back, a waiting request gets it.
    with client.stream("POST", ep.url + PATH, json={}) as held:
        waiter: list[int] = []
        thread = threading.Thread(
            target=lambda: waiter.append(client.post(ep.url + PATH, json={}).status_code)
        )
        thread.start()
        time.sleep(0.1)
        assert waiter == []
        held.read()
    thread.join(5)
    assert waiter == [200]
    assert ep.connections == 1


def test_a_full_pool_is_a_serving_timeout_error_in_the_package(ep) -> None:
    llm = ChatServing(
        endpoint="ep", host=ep.url, token=TEST_TOKEN, api="chat", max_retries=0, timeout=0.2
    )
    try:
        client = llm.transport.client
        pool_of(client)._max = 1  # one connection (the package's pool is larger), held below
        with (
            client.stream("POST", ep.url + PATH, json={}),
            pytest.raises(ServingTimeoutError, match="no free connection in the pool"),
        ):
            llm.invoke("x")
        assert llm.invoke("x").content == "Hello!"
    finally:
        llm.close()


def test_a_full_pool_closes_an_idle_connection_to_another_origin(make_client) -> None:
    a, b = ServingTestServer().start(), ServingTestServer().start()
    try:
        for s in (a, b):
            s.reply(PATH, Reply.json(chat_response()))
        client = make_client(max_connections=1)
        client.post(a.url + PATH, json={})
        assert a.wait_for_connections(1) == 1
        client.post(b.url + PATH, json={})  # no room: a's idle connection makes way
        assert a.wait_for_connections(0) == 0
        assert b.wait_for_connections(1) == 1
        client.post(b.url + PATH, json={})
        assert b.connections == 1
    finally:
        a.stop()
        b.stop()


def test_close_closes_idle_and_busy_connections_and_the_pool_works_again(ep, make_client) -> None:
    client = make_client()
    pool = pool_of(client)
    with client.stream("POST", ep.url + PATH, json={}):  # one busy
        client.post(ep.url + PATH, json={})  # one idle
        assert ep.wait_for_connections(2) == 2
        assert "2 connections, 1 busy, 1 idle" in pool.info()
        pool.close()
        assert ep.wait_for_connections(0) == 0
    # The busy response closed after its pool: it gave nothing back.
    assert "0 connections, 0 busy, 0 idle" in pool.info()
    assert client.post(ep.url + PATH, json={}).status_code == 200
    assert "1 connections" in pool.info()


def test_a_response_closed_before_its_body_was_read_does_not_return_its_connection(
    ep, make_client
) -> None:
    script(ep, Reply.json({"text": "x" * 200_000}))
    client = make_client()
    with client.stream("POST", ep.url + PATH, json={}) as response:
        next(response.iter_raw(1024))
    assert ep.wait_for_connections(0) == 0  # half-read: not reusable, so closed
    assert "0 connections, 0 busy" in pool_of(client).info()


def test_a_refused_connection_frees_its_slot(make_client) -> None:
    with socket.socket() as probe:  # a free port; nothing listens there once closed
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    client = make_client(max_connections=1)
    for _ in range(3):
        with pytest.raises(httpx.ConnectError):
            client.post(url + PATH, json={}, timeout=httpx.Timeout(2.0, pool=0.1))
    assert "0 connections, 0 busy" in pool_of(client).info()


def test_an_unsupported_scheme_is_named() -> None:
    with (
        StackPool(None, max_connections=1, max_keepalive_connections=1, keepalive_expiry=5) as pool,
        pytest.raises(httpcore.UnsupportedProtocol, match=r"'ftp'.*use http or https"),
    ):
        pool.handle_request(httpcore.Request("GET", "ftp://127.0.0.1/x"))

"""Credentials as httpx.Auth flows: bearer token, and OAuth M2M cached and shared."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx
import pytest
from langchain_core.exceptions import ModelAuthenticationError, ModelTimeoutError
from pydantic import SecretStr

from langchain_servingx import _auth as auth_module
from langchain_servingx._auth import BearerTokenAuth, ClientCredentialsAuth
from langchain_servingx._base import ServingClientBase
from langchain_servingx._config import ConnectionSettings
from langchain_servingx._errors import (
    ServingAuthenticationError,
    ServingConnectionError,
    ServingError,
    ServingTimeoutError,
)
from langchain_servingx._transport import EndpointAddress, InvocationTransport, RetryPolicy
from tests.serving_server import RecordedRequest, Reply, ServingTestServer, chat_chunk

PATH = "/serving-endpoints/ep/invocations"
TOKEN_PATH = "/oidc/v1/token"
CLIENT_ID = "sp-client-id"
CLIENT_SECRET = "sp-very-secret-value"


class Client(ServingClientBase):
    """A public-class stand-in."""


def oauth_transport(url: str, *, max_retries: int = 0, timeout: float = 5.0, **kw):
    return InvocationTransport(
        ConnectionSettings(host=url, credential=None),
        EndpointAddress.build(host=url, base_url=None, openai_compatible=False),
        timeout=timeout,
        retry=RetryPolicy(max_retries=max_retries, initial_delay=0),
        auth=ClientCredentialsAuth(url, CLIENT_ID, SecretStr(CLIENT_SECRET), **kw),
    )


class TokenServer:
    """Hands out access-token-1, access-token-2, ... and counts the token requests."""

    def __init__(self, server: ServingTestServer, *, expires_in: float = 3600, delay=0.0):
        self.server = server
        self.expires_in = expires_in
        self.delay = delay
        self.issued = 0
        self.lock = threading.Lock()
        server.handle(TOKEN_PATH, self)

    def __call__(self, request: RecordedRequest) -> Reply:
        with self.lock:
            self.issued += 1
            value = f"access-token-{self.issued}"
        body = {"access_token": value, "token_type": "Bearer", "expires_in": self.expires_in}
        return Reply.json(body, delay=self.delay)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.server.requests_to(TOKEN_PATH)


def call(transport: InvocationTransport, mode: str, body: dict | None = None) -> dict:
    body = {} if body is None else body
    if mode == "sync":
        return transport.invoke("llm/v1/chat", "ep", body)
    return asyncio.run(transport.ainvoke("llm/v1/chat", "ep", body))


def bearers(server: ServingTestServer, path: str = PATH) -> list[str]:
    return [r.headers.get("authorization", "") for r in server.requests_to(path)]


# -- bearer token ----------------------------------------------------------------------


def test_bearer_token_header_and_repr(server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json({"ok": 1}))
    auth = BearerTokenAuth(SecretStr("dapi-secret-1"))
    with httpx.Client(auth=auth) as client:
        client.post(server.url + PATH, json={})
    assert bearers(server) == ["Bearer dapi-secret-1"]
    assert "dapi-secret-1" not in repr(auth)
    assert "dapi-secret-1" not in str(auth)


def test_bearer_token_401_is_not_retried(server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json({"error_code": "UNAUTHENTICATED", "message": "bad"}, 401))
    client = Client(model="ep", host=server.url, token=SecretStr("dapi-x"), max_retries=3)
    with pytest.raises(ServingAuthenticationError):
        client.transport.invoke("llm/v1/chat", "ep", {})
    assert len(server.requests) == 1


def test_custom_httpx_auth_is_used(server: ServingTestServer) -> None:
    server.reply(PATH, Reply.json({"ok": 1}))
    client = Client(model="ep", host=server.url, auth=httpx.BasicAuth("token", "dapi-basic"))
    client.transport.invoke("llm/v1/chat", "ep", {})
    expected = "Basic " + base64.b64encode(b"token:dapi-basic").decode()
    assert bearers(server) == [expected]


# -- OAuth M2M: the token request ------------------------------------------------------


def test_token_request_shape(server: ServingTestServer) -> None:
    tokens = TokenServer(server)
    server.reply(PATH, Reply.json({"ok": 1}))
    client = Client(
        model="ep", host=server.url, client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET)
    )
    assert client.transport.invoke("llm/v1/chat", "ep", {}) == {"ok": 1}
    (token_request,) = tokens.requests
    assert token_request.method == "POST"
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert token_request.form == {"grant_type": "client_credentials", "scope": "all-apis"}
    scheme, _, encoded = token_request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == f"{CLIENT_ID}:{CLIENT_SECRET}"
    assert bearers(server) == ["Bearer access-token-1"]
    # The token request comes first, then the call it authorises.
    assert [r.path for r in server.requests] == [TOKEN_PATH, PATH]


def test_oauth_from_environment(server: ServingTestServer, monkeypatch) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", server.url)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", CLIENT_SECRET)
    TokenServer(server)
    server.reply(PATH, Reply.json({"ok": 1}))
    assert Client(model="ep").transport.invoke("llm/v1/chat", "ep", {}) == {"ok": 1}
    assert bearers(server) == ["Bearer access-token-1"]


def test_token_cached_across_calls(server: ServingTestServer) -> None:
    tokens = TokenServer(server)
    server.reply(PATH, Reply.json({"ok": 1}))
    transport = oauth_transport(server.url)
    transport.invoke("llm/v1/chat", "ep", {})
    transport.invoke("llm/v1/chat", "ep", {})
    asyncio.run(transport.ainvoke("llm/v1/chat", "ep", {}))
    assert len(tokens.requests) == 1
    assert bearers(server) == ["Bearer access-token-1"] * 3


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(auth_module, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_token_refreshed_40_seconds_before_expiry(server, clock) -> None:
    tokens = TokenServer(server, expires_in=100)
    server.reply(PATH, Reply.json({"ok": 1}))
    transport = oauth_transport(server.url)
    transport.invoke("llm/v1/chat", "ep", {})
    clock.now += 59.9  # 100 s lifetime - 40 s leeway: still fresh
    transport.invoke("llm/v1/chat", "ep", {})
    assert len(tokens.requests) == 1
    clock.now += 0.2  # past expires_in - 40 s: refreshed before use
    transport.invoke("llm/v1/chat", "ep", {})
    asyncio.run(transport.ainvoke("llm/v1/chat", "ep", {}))
    assert len(tokens.requests) == 2
    assert bearers(server) == ["Bearer access-token-1"] * 2 + ["Bearer access-token-2"] * 2


def test_short_lived_token_cached_for_half_its_life(server, clock) -> None:
    # expires_in within the 40 s leeway: still cached (for half its life), never used stale.
    tokens = TokenServer(server, expires_in=30)
    server.reply(PATH, Reply.json({"ok": 1}))
    transport = oauth_transport(server.url)
    transport.invoke("llm/v1/chat", "ep", {})
    clock.now += 14.9
    transport.invoke("llm/v1/chat", "ep", {})
    assert len(tokens.requests) == 1
    clock.now += 0.2
    transport.invoke("llm/v1/chat", "ep", {})
    assert len(tokens.requests) == 2
    assert bearers(server) == ["Bearer access-token-1"] * 2 + ["Bearer access-token-2"]


def test_missing_expires_in_defaults_to_an_hour(server, clock) -> None:
    server.handle(TOKEN_PATH, lambda r: Reply.json({"access_token": "t-1"}))
    server.reply(PATH, Reply.json({"ok": 1}))
    transport = oauth_transport(server.url)
    transport.invoke("llm/v1/chat", "ep", {})
    clock.now += 3000
    transport.invoke("llm/v1/chat", "ep", {})
    assert len(server.requests_to(TOKEN_PATH)) == 1


# -- OAuth M2M: exactly one refresh in flight ------------------------------------------

N = 20


def run_threads(transport: InvocationTransport, n: int) -> list[dict]:
    barrier = threading.Barrier(n)

    def one(_: int) -> dict:
        barrier.wait()
        return transport.invoke("llm/v1/chat", "ep", {})

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


async def run_tasks(transport: InvocationTransport, n: int) -> list[dict]:
    return await asyncio.gather(*(transport.ainvoke("llm/v1/chat", "ep", {}) for _ in range(n)))


def test_concurrent_threads_share_one_token_request(server) -> None:
    tokens = TokenServer(server, delay=0.3)
    server.reply(PATH, Reply.json({"ok": 1}))
    transport = oauth_transport(server.url)
    assert run_threads(transport, N) == [{"ok": 1}] * N
    assert len(tokens.requests) == 1
    assert bearers(server) == ["Bearer access-token-1"] * N


def test_concurrent_tasks_share_one_token_request(server) -> None:
    tokens = TokenServer(server, delay=0.3)
    server.reply(PATH, Reply.json({"ok": 1}))
    transport = oauth_transport(server.url)
    assert asyncio.run(run_tasks(transport, N)) == [{"ok": 1}] * N
    assert len(tokens.requests) == 1
    assert bearers(server) == ["Bearer access-token-1"] * N


def test_threads_and_tasks_together_share_one_token_request(server) -> None:
    tokens = TokenServer(server, delay=0.3)
    server.reply(PATH, Reply.json({"ok": 1}))
    transport = oauth_transport(server.url)
    start = threading.Barrier(3)

    def threads() -> list[dict]:
        start.wait()
        return run_threads(transport, N // 2)

    def tasks_in_loop(loop_count: int) -> list[dict]:
        start.wait()
        return asyncio.run(run_tasks(transport, loop_count))

    with ThreadPoolExecutor(3) as pool:
        futures = [
            pool.submit(threads),
            pool.submit(tasks_in_loop, N // 4),
            pool.submit(tasks_in_loop, N // 4),
        ]
        results = [r for f in futures for r in f.result()]
    assert results == [{"ok": 1}] * N
    assert len(tokens.requests) == 1
    assert bearers(server) == ["Bearer access-token-1"] * N


def test_expired_token_refreshed_once_under_concurrency(server, clock) -> None:
    tokens = TokenServer(server, expires_in=100, delay=0.2)
    server.reply(PATH, Reply.json({"ok": 1}))
    transport = oauth_transport(server.url)
    transport.invoke("llm/v1/chat", "ep", {})
    clock.now += 61
    run_threads(transport, N)
    assert len(tokens.requests) == 2
    assert bearers(server) == ["Bearer access-token-1"] + ["Bearer access-token-2"] * N


# -- OAuth M2M: 401 and failures -------------------------------------------------------


def unauthenticated() -> Reply:
    return Reply.json({"error_code": "UNAUTHENTICATED", "message": "token revoked"}, 401)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_401_triggers_one_refresh_and_one_resend(server, mode) -> None:
    tokens = TokenServer(server)
    server.reply(PATH, unauthenticated(), Reply.json({"ok": 1}))
    transport = oauth_transport(server.url, max_retries=3)
    assert call(transport, mode, {"x": 1}) == {"ok": 1}
    assert len(tokens.requests) == 2
    assert bearers(server) == ["Bearer access-token-1", "Bearer access-token-2"]
    assert [r.json for r in server.requests_to(PATH)] == [{"x": 1}, {"x": 1}]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_persistent_401_gives_up_after_one_resend(server, mode) -> None:
    tokens = TokenServer(server)
    server.reply(PATH, unauthenticated())
    transport = oauth_transport(server.url, max_retries=3)
    with pytest.raises(ServingAuthenticationError, match="token revoked"):
        call(transport, mode)
    assert len(tokens.requests) == 2
    assert len(server.requests_to(PATH)) == 2


def test_401_on_a_stream_request_refreshes_and_resends(server) -> None:
    tokens = TokenServer(server)
    server.reply(PATH, unauthenticated(), Reply.sse([chat_chunk(finish_reason="stop")]))
    chunks = list(oauth_transport(server.url).stream("llm/v1/chat", "ep", {}))
    assert len(chunks) == 1
    assert len(tokens.requests) == 2
    assert bearers(server) == ["Bearer access-token-1", "Bearer access-token-2"]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "invalid_client", "error_description": "Client authentication failed"}),
        (400, {"error_code": "INVALID_REQUEST", "message": "bad client"}),
        (500, {"message": "oops"}),
    ],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_failing_token_endpoint(server, caplog, mode, status, body) -> None:
    caplog.set_level(logging.DEBUG)
    server.reply(TOKEN_PATH, Reply.json(body, status))
    server.reply(PATH, Reply.json({"ok": 1}))
    transport = oauth_transport(server.url)
    with pytest.raises(ServingAuthenticationError) as info:
        call(transport, mode)
    error = info.value
    assert isinstance(error, ModelAuthenticationError)
    assert error.status_code == status
    message = str(error)
    assert f"{server.url}{TOKEN_PATH}" in message
    assert CLIENT_ID in message
    for text in (message, repr(error), caplog.text):
        assert CLIENT_SECRET not in text
        assert base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode() not in text
    assert server.requests_to(PATH) == []


def test_token_endpoint_failure_is_not_cached(server) -> None:
    server.reply(
        TOKEN_PATH,
        Reply.json({"message": "try again"}, 401),
        Reply.json({"access_token": "second-try", "expires_in": 3600}),
    )
    server.reply(PATH, Reply.json({"ok": 1}))
    transport = oauth_transport(server.url)
    with pytest.raises(ServingAuthenticationError):
        transport.invoke("llm/v1/chat", "ep", {})
    assert transport.invoke("llm/v1/chat", "ep", {}) == {"ok": 1}
    assert bearers(server) == ["Bearer second-try"]


def test_waiters_share_the_failure_and_the_next_call_refetches(server) -> None:
    failures = Reply.json({"message": "down"}, 401, delay=0.3)
    server.reply(TOKEN_PATH, failures, Reply.json({"access_token": "t-ok", "expires_in": 3600}))
    server.reply(PATH, Reply.json({"ok": 1}))
    transport = oauth_transport(server.url)
    barrier = threading.Barrier(8)

    def one(_: int) -> BaseException | dict:
        barrier.wait()
        try:
            return transport.invoke("llm/v1/chat", "ep", {})
        except ServingError as exc:
            return exc

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, range(8)))
    assert all(isinstance(o, ServingAuthenticationError) for o in outcomes), outcomes
    assert len(server.requests_to(TOKEN_PATH)) == 1
    assert transport.invoke("llm/v1/chat", "ep", {}) == {"ok": 1}
    assert len(server.requests_to(TOKEN_PATH)) == 2


@pytest.mark.parametrize(
    "reply",
    [
        Reply.json({"token_type": "Bearer", "expires_in": 3600}),
        Reply.json({"access_token": "x", "expires_in": "soon"}),
        Reply.text("<html>sign in</html>", 200, content_type="text/html"),
    ],
)
def test_token_answer_without_access_token(server, reply) -> None:
    server.reply(TOKEN_PATH, reply)
    with pytest.raises(ServingAuthenticationError, match="access_token") as info:
        oauth_transport(server.url).invoke("llm/v1/chat", "ep", {})
    assert CLIENT_SECRET not in str(info.value)


def test_unreachable_token_endpoint_is_a_connection_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    transport = oauth_transport(url)
    with pytest.raises(ServingConnectionError):
        transport.invoke("llm/v1/chat", "ep", {})
    # The failed fetch is not left pending: the next call tries again rather than hanging.
    with pytest.raises(ServingConnectionError):
        transport.invoke("llm/v1/chat", "ep", {})
    assert transport._auth._pending is None


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_token_request_has_the_transport_timeout(server, mode) -> None:
    # A hanging token endpoint must not hold every caller forever.
    server.reply(TOKEN_PATH, Reply.json({"access_token": "late", "expires_in": 3600}, delay=0.5))
    server.reply(PATH, Reply.json({"ok": 1}))
    transport = oauth_transport(server.url, timeout=0.1)
    with pytest.raises(ModelTimeoutError):
        call(transport, mode)
    assert server.requests_to(PATH) == []
    assert transport._auth._pending is None


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_waiter_gives_up_when_the_fetch_in_flight_stalls(server, mode) -> None:
    """The fetching task's loop is blocked: waiters raise after the fetch's own time bound."""
    TokenServer(server, delay=0.2)
    server.reply(PATH, Reply.json({"ok": 1}))
    transport = oauth_transport(server.url, timeout=0.1)  # bound: 0.1 * 4 = 0.4 s
    started = threading.Event()
    release = threading.Event()

    async def fetch_then_block() -> None:
        task = asyncio.ensure_future(transport.ainvoke("llm/v1/chat", "ep", {}))
        while transport._auth._pending is None:
            await asyncio.sleep(0.005)
        started.set()
        release.wait(10)  # blocks this loop: its token fetch cannot complete meanwhile
        with contextlib.suppress(Exception):
            await task

    stalled = threading.Thread(target=asyncio.run, args=(fetch_then_block(),))
    stalled.start()
    try:
        assert started.wait(5)
        before = time.monotonic()
        with pytest.raises(ServingTimeoutError, match="another thread or task has in flight"):
            call(transport, mode)
        assert time.monotonic() - before < 5  # bounded, not held until the loop unblocks
    finally:
        release.set()
        stalled.join()


# -- pickling and secrets --------------------------------------------------------------


def test_oauth_auth_pickles_without_lock_or_token(server) -> None:
    tokens = TokenServer(server)
    server.reply(PATH, Reply.json({"ok": 1}))
    transport = oauth_transport(server.url)
    transport.invoke("llm/v1/chat", "ep", {})
    auth = transport._auth
    assert auth._token is not None

    data = pickle.dumps(auth)
    assert b"access-token-1" not in data
    clone = pickle.loads(data)
    assert clone._token is None
    assert clone._pending is None
    assert clone._lock is not auth._lock
    assert clone._lock.acquire(blocking=False)
    clone._lock.release()
    assert clone.token_url == auth.token_url
    assert clone.client_id == CLIENT_ID

    with httpx.Client(auth=clone) as client:
        client.post(server.url + PATH, json={})
    assert len(tokens.requests) == 2
    assert bearers(server)[-1] == "Bearer access-token-2"


def test_pickled_oauth_client_works_after_sync_and_async_use(server) -> None:
    tokens = TokenServer(server)
    server.reply(PATH, Reply.json({"ok": 1}))
    client = Client(
        model="ep", host=server.url, client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET)
    )
    client.transport.invoke("llm/v1/chat", "ep", {})
    asyncio.run(client.transport.ainvoke("llm/v1/chat", "ep", {}))
    data = pickle.dumps(client)
    assert b"access-token-1" not in data
    clone = pickle.loads(data)
    assert clone.transport.invoke("llm/v1/chat", "ep", {}) == {"ok": 1}
    assert asyncio.run(clone.transport.ainvoke("llm/v1/chat", "ep", {})) == {"ok": 1}
    assert len(tokens.requests) == 2


def test_secrets_absent_from_reprs_and_debug_logs(server, caplog) -> None:
    for name in ("langchain_servingx", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    TokenServer(server)
    server.reply(PATH, unauthenticated(), Reply.json({"ok": 1}))
    client = Client(
        model="ep",
        host=server.url,
        client_id=CLIENT_ID,
        client_secret=SecretStr(CLIENT_SECRET),
    )
    client.transport.invoke("llm/v1/chat", "ep", {})
    auth = client.transport._auth
    assert isinstance(auth, ClientCredentialsAuth)
    assert caplog.records
    for text in (
        repr(auth),
        str(auth),
        repr(client),
        str(client),
        repr(client.transport),
        repr(vars(client.transport)),
        caplog.text,
    ):
        assert CLIENT_SECRET not in text
        assert "access-token-1" not in text
        assert "access-token-2" not in text

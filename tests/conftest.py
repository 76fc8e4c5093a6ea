"""Shared fixtures: one scripted serving endpoint on 127.0.0.1 for the whole run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langchain_servingx import _transport as transport_module
from langchain_servingx._clients import ClientPool
from tests.serving_server import Reply, ServingTestServer, chat_response

TEST_TOKEN = "dapi-test-token-0123456789"
EP_PATH = "/serving-endpoints/ep/invocations"  # the `ep` fixture's endpoint

_ENV_VARS = (
    "DATABRICKS_HOST",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_ID",
    "DATABRICKS_CLIENT_SECRET",
    "DATABRICKS_CONFIG_PROFILE",
    "DATABRICKS_CONFIG_FILE",
)


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's own DATABRICKS_* variables or ~/.databrickscfg."""
    for name in _ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-such-databrickscfg"))


@pytest.fixture(autouse=True)
def _close_what_the_test_opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every client pool a test opened, as an application closes its models.

    The suite runs with `-W error::ResourceWarning`: a socket left to the garbage collector
    fails it. The lifecycle itself (close, aclose, context managers, event loops shutting
    down) is asserted explicitly in tests/test_lifecycle.py, not left to this fixture.
    """
    opened: list[ClientPool] = []
    original = ClientPool.__init__

    def recording_init(self: ClientPool, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(self)

    monkeypatch.setattr(ClientPool, "__init__", recording_init)
    yield
    for pool in opened:
        pool.close()


@pytest.fixture(scope="session")
def _server_instance() -> Iterator[ServingTestServer]:
    server = ServingTestServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(_server_instance: ServingTestServer) -> Iterator[ServingTestServer]:
    """The shared test endpoint, emptied before each test."""
    _server_instance.reset()
    yield _server_instance
    _server_instance.reset()


@pytest.fixture
def ep(server: ServingTestServer) -> ServingTestServer:
    """The test endpoint, `ep` answering a chat reply, once earlier tests' sockets closed."""
    server.wait_for_connections(0)  # earlier tests' clients are closed by now
    server.reply(EP_PATH, Reply.json(chat_response()))
    return server


@pytest.fixture
def serving_env(server: ServingTestServer, monkeypatch: pytest.MonkeyPatch) -> ServingTestServer:
    """DATABRICKS_HOST / DATABRICKS_TOKEN pointing at the test endpoint."""
    monkeypatch.setenv("DATABRICKS_HOST", server.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", TEST_TOKEN)
    return server


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
    # The retry budget is measured on a clock that only the recorded sleeps advance.
    monkeypatch.setattr(transport_module, "_clock", lambda: sum(recorded))
    return recorded

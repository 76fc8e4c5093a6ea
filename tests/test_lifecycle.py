"""Every client the package opens is closed: by close/aclose, context managers, loop shutdown.

The server counts the connections its clients still hold open, so these tests see sockets
close (or not) from the other side of the wire.
"""

from __future__ import annotations

import asyncio
import gc
import pickle
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from langchain_servingx import ChatServing, ServingEmbeddings, ServingLLM, ServingWorkspace
from tests.conftest import EP_PATH, TEST_TOKEN
from tests.serving_server import (
    Reply,
    ServingTestServer,
    chat_response,
    completion_response,
    embedding_response,
)

PATH = EP_PATH


@contextmanager
def no_resource_warnings() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


def chat(server: ServingTestServer, **kwargs) -> ChatServing:
    # api="chat": these tests count connections and requests, not the protocol lookup.
    kwargs.setdefault("api", "chat")
    return ChatServing(endpoint="ep", host=server.url, token=TEST_TOKEN, **kwargs)


def test_sequential_asyncio_runs_leave_no_socket_open(ep) -> None:
    """Each loop's client closes as its loop shuts down (was: 11 unclosed sockets)."""
    with no_resource_warnings():
        llm = chat(ep)
        for _ in range(5):
            assert asyncio.run(llm.ainvoke("x")).content == "Hello!"
            assert ep.wait_for_connections(0) == 0
        assert llm.transport._pool._aclients == {}
        del llm


def test_close_closes_the_sync_client_and_a_parked_loops_client(ep) -> None:
    llm = chat(ep)
    llm.invoke("x")
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(llm.ainvoke("x"))
        assert ep.wait_for_connections(2) == 2
        with no_resource_warnings():
            llm.close()
            assert ep.wait_for_connections(0) == 0
    finally:
        loop.close()
    assert llm.invoke("x").content == "Hello!"  # a closed model opens new connections
    llm.close()
    assert ep.wait_for_connections(0) == 0


def test_close_reaches_a_loop_running_in_another_thread(ep) -> None:
    llm = chat(ep)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(llm.ainvoke("x"), loop).result(5)
        assert ep.wait_for_connections(1) == 1
        llm.close()
        assert ep.wait_for_connections(0) == 0
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_aclose_inside_the_loop(ep) -> None:
    async def main() -> int:
        llm = chat(ep)
        await llm.ainvoke("x")
        llm.invoke("x")
        await llm.aclose()
        return await asyncio.to_thread(ep.wait_for_connections, 0)

    with no_resource_warnings():
        assert asyncio.run(main()) == 0


def test_sync_close_called_inside_a_running_loop(ep) -> None:
    async def main() -> None:
        llm = chat(ep)
        await llm.ainvoke("x")
        llm.close()  # schedules the close on this loop
        await asyncio.sleep(0.05)

    with no_resource_warnings():
        asyncio.run(main())
    assert ep.wait_for_connections(0) == 0


@pytest.mark.parametrize("cls", [ChatServing, ServingEmbeddings, ServingLLM])
def test_context_managers_on_the_three_classes(ep, cls) -> None:
    kwargs = {"endpoint": "ep", "host": ep.url, "token": TEST_TOKEN}
    with cls(**kwargs) as model:
        assert model.transport.client is not None  # opened
        assert ep.wait_for_connections(0) == 0  # (no request yet)

    async def main() -> None:
        async with cls(**kwargs) as model:
            await model.transport.aclient()

    asyncio.run(main())
    assert ep.wait_for_connections(0) == 0


def test_every_class_closes_after_real_calls(ep) -> None:
    ep.reply("/serving-endpoints/emb/invocations", Reply.json(embedding_response([[1.0]])))
    ep.reply("/serving-endpoints/cmp/invocations", Reply.json(completion_response(["y"])))
    common = {"host": ep.url, "token": TEST_TOKEN}
    with no_resource_warnings():
        with (
            ServingEmbeddings(endpoint="emb", **common) as emb,
            ServingLLM(endpoint="cmp", **common) as llm,
        ):
            emb.embed_query("x")
            llm.invoke("x")
            asyncio.run(emb.aembed_query("x"))
            asyncio.run(llm.ainvoke("x"))
            assert ep.wait_for_connections(2) == 2
        assert ep.wait_for_connections(0) == 0


def test_workspace_context_managers_and_sharing(ep) -> None:
    with ServingWorkspace(host=ep.url, token=TEST_TOKEN) as ws:
        with ChatServing(endpoint="ep", workspace=ws) as llm:
            llm.invoke("x")
        # Closing a model leaves the workspace it shares alone.
        assert ep.wait_for_connections(1) == 1
        ChatServing(endpoint="ep", workspace=ws).invoke("x")
    assert ep.wait_for_connections(0) == 0

    async def main() -> None:
        async with ServingWorkspace(host=ep.url, token=TEST_TOKEN) as ws:
            await ChatServing(endpoint="ep", workspace=ws).ainvoke("x")

    with no_resource_warnings():
        asyncio.run(main())
    assert ep.wait_for_connections(0) == 0


def test_model_copy_gets_its_own_connection_and_both_close(ep) -> None:
    with no_resource_warnings():
        llm = chat(ep)
        llm.invoke("x")
        copy = llm.model_copy(update={"temperature": 0.5})
        assert copy._own is None  # not the original's clients
        copy.invoke("x")
        assert copy.transport is not llm.transport
        llm.close()
        copy.close()
        assert ep.wait_for_connections(0) == 0


def test_unpickled_model_closes(ep) -> None:
    llm = chat(ep)
    llm.invoke("x")
    clone = pickle.loads(pickle.dumps(llm))
    clone.invoke("x")
    asyncio.run(clone.ainvoke("x"))
    llm.close()
    clone.close()
    assert ep.wait_for_connections(0) == 0


# -- configuration changes and copies (defect 2) ---------------------------------------


@pytest.fixture
def other_server() -> Iterator[ServingTestServer]:
    other = ServingTestServer().start()
    other.reply(PATH, Reply.json(chat_response("from the other host")))
    yield other
    other.stop()


def test_model_copy_with_a_new_host_goes_there(ep, other_server) -> None:
    llm = chat(ep)
    llm.invoke("x")
    moved = llm.model_copy(update={"host": other_server.url, "token": "dapi-other"})
    assert moved.invoke("x").content == "from the other host"
    assert asyncio.run(moved.ainvoke("x")).content == "from the other host"
    assert [r.headers["authorization"] for r in other_server.requests] == ["Bearer dapi-other"] * 2
    assert len(ep.requests) == 1  # the original's host saw nothing more
    assert llm.invoke("x").content == "Hello!"  # and the original still goes to its own
    for model in (llm, moved):
        model.close()


def test_copy_and_deepcopy_reset_the_connection(ep) -> None:
    import copy

    llm = chat(ep)
    llm.invoke("x")
    for clone in (copy.copy(llm), copy.deepcopy(llm)):
        assert clone._own is None
        clone.invoke("x")
        assert clone.transport is not llm.transport
        clone.close()
    llm.close()


def test_setting_a_field_closes_the_old_connection(ep, other_server) -> None:
    llm = chat(ep)
    llm.invoke("x")
    old = llm.transport
    assert ep.wait_for_connections(1) == 1
    llm.host = other_server.url
    assert ep.wait_for_connections(0) == 0  # the old transport's clients were closed
    assert llm.invoke("x").content == "from the other host"
    assert llm.transport is not old
    llm.close()


def test_setting_a_field_while_another_thread_first_uses_the_model(ep, other_server) -> None:
    """No interleaving of a first use and a field change leaves the old settings installed."""
    for _ in range(50):
        llm = chat(ep)
        barrier = threading.Barrier(2)

        def first_use(model: ChatServing = llm, start: threading.Barrier = barrier) -> None:
            start.wait()
            _ = model.transport

        thread = threading.Thread(target=first_use)
        thread.start()
        barrier.wait()
        llm.host = other_server.url
        thread.join()
        assert llm.transport.address.host == other_server.url
        llm.close()

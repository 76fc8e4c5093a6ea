"""ServingWorkspace over real sockets: listing, sharing, pickling, the task check."""

from __future__ import annotations

import asyncio
import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import SecretStr, ValidationError

from langchain_servingx import (
    ChatServing,
    EndpointInfo,
    ServedEntity,
    ServingConfigurationError,
    ServingEmbeddings,
    ServingInvalidRequestError,
    ServingLLM,
    ServingNotFoundError,
    ServingPermissionDeniedError,
    ServingReadTimeoutError,
    ServingWorkspace,
)
from tests.conftest import TEST_TOKEN
from tests.serving_server import (
    LISTING_PATH,
    Reply,
    ServingTestServer,
    chat_response,
    embedding_response,
    endpoint_object,
    listing,
)

MODES = pytest.mark.parametrize("mode", ["sync", "async"])


@pytest.fixture
def ws(server: ServingTestServer):
    with ServingWorkspace(host=server.url, token=TEST_TOKEN, max_retries=0) as workspace:
        yield workspace


def run(mode: str, sync, coro_fn, *args):
    return sync(*args) if mode == "sync" else asyncio.run(coro_fn(*args))


FULL = {
    "name": "split",
    "id": "abc",
    "creator": "someone@example.com",
    "task": "llm/v1/chat",
    "endpoint_type": "EXTERNAL_MODEL",
    "state": {"ready": "READY", "config_update": "IN_PROGRESS"},
    "capabilities": {"function_calling": True, "image_input": True},
    "future_field": {"kept": True},
    "config": {
        "served_entities": [
            {
                "name": "gpt-a",
                "external_model": {"provider": "openai", "name": "gpt-4o", "task": "llm/v1/chat"},
            },
            {"name": "llama-b", "foundation_model": {"name": "meta-llama-3"}},
        ],
        "traffic_config": {
            "routes": [
                {"served_model_name": "gpt-a", "traffic_percentage": 80},
                {"served_model_name": "llama-b", "traffic_percentage": 20},
            ]
        },
    },
}
OLD_CUSTOM = {
    "name": "my-model",
    "state": {"ready": "NOT_READY"},
    "config": {
        "served_models": [{"name": "m-3", "model_name": "cat.schema.m", "model_version": 3}]
    },
}


# -- listing ---------------------------------------------------------------------------


@MODES
def test_list_endpoints_parses_every_shape(server, ws, mode) -> None:
    server.reply(LISTING_PATH, listing(FULL, OLD_CUSTOM, {"name": "bare"}))
    infos = run(mode, ws.list_endpoints, ws.alist_endpoints)
    split, custom, bare = infos
    assert split == EndpointInfo(
        name="split",
        task="llm/v1/chat",
        ready=True,
        config_update="IN_PROGRESS",
        endpoint_type="EXTERNAL_MODEL",
        served_entities=[
            ServedEntity(
                name="gpt-a",
                traffic_percentage=80,
                kind="external_model",
                provider="openai",
                model="gpt-4o",
                task="llm/v1/chat",
            ),
            ServedEntity(
                name="llama-b",
                traffic_percentage=20,
                kind="foundation_model",
                model="meta-llama-3",
            ),
        ],
        capabilities={"function_calling": True, "image_input": True},
    )
    assert split.raw["future_field"] == {"kept": True}  # unknown fields kept
    assert split.raw["creator"] == "someone@example.com"
    assert custom.task is None
    assert custom.ready is False
    assert custom.config_update is None
    (entity,) = custom.served_entities
    assert (entity.kind, entity.entity_name, entity.entity_version) == (
        "custom_model",
        "cat.schema.m",
        "3",
    )
    assert entity.traffic_percentage is None
    assert bare == EndpointInfo(name="bare")
    (request,) = server.requests
    assert (request.method, request.path) == ("GET", LISTING_PATH)
    assert request.headers["authorization"] == f"Bearer {TEST_TOKEN}"
    assert request.raw == b""


@MODES
def test_empty_workspace_lists_nothing(server, ws, mode) -> None:
    server.reply(LISTING_PATH, Reply.json({}))
    assert run(mode, ws.list_endpoints, ws.alist_endpoints) == []


@MODES
def test_get_endpoint_and_its_404(server, ws, mode) -> None:
    server.reply(f"{LISTING_PATH}/split", Reply.json(FULL))
    info = run(mode, ws.get_endpoint, ws.aget_endpoint, "split")
    assert info.name == "split"
    assert info.served_entities[0].traffic_percentage == 80
    with pytest.raises(ServingNotFoundError) as caught:
        run(mode, ws.get_endpoint, ws.aget_endpoint, "nope")
    assert caught.value.endpoint == "nope"


def test_get_endpoint_refuses_a_path_changing_name(server, ws) -> None:
    with pytest.raises(ServingConfigurationError):
        ws.get_endpoint("../secrets")
    assert server.requests == []


def test_a_malformed_listing_is_a_clear_error(server, ws) -> None:
    server.reply(LISTING_PATH, Reply.json({"endpoints": [{"task": "llm/v1/chat"}]}))
    with pytest.raises(Exception, match="needs a 'name'"):
        ws.list_endpoints()


def test_base_url_server_has_no_listing(server) -> None:
    with (
        ServingWorkspace(base_url=server.url + "/v1") as ws,
        pytest.raises(ServingConfigurationError, match="listing"),
    ):
        ws.list_endpoints()


@MODES
def test_endpoint_task_is_cached_per_workspace(server, ws, mode) -> None:
    server.reply(LISTING_PATH, listing(endpoint_object("emb", "llm/v1/embeddings"), OLD_CUSTOM))
    assert run(mode, ws.endpoint_task, ws.aendpoint_task, "emb") == "llm/v1/embeddings"
    assert run(mode, ws.endpoint_task, ws.aendpoint_task, "my-model") is None
    assert len(server.requests) == 1
    with pytest.raises(ServingNotFoundError, match="closest names: emb"):
        run(mode, ws.endpoint_task, ws.aendpoint_task, "embb")
    assert len(server.requests) == 2  # a missing name refetches once


@MODES
def test_concurrent_first_calls_share_one_listing_fetch(server, ws, mode) -> None:
    # A batch's first calls on a cold workspace all need the task: one fetch serves them.
    endpoints = {"endpoints": [endpoint_object("emb", "llm/v1/embeddings")]}
    server.reply(LISTING_PATH, Reply.json(endpoints, delay=0.2))
    if mode == "sync":
        with ThreadPoolExecutor(8) as pool:
            tasks = list(pool.map(lambda _: ws.endpoint_task("emb"), range(8)))
    else:

        async def many() -> list[str | None]:
            return await asyncio.gather(*(ws.aendpoint_task("emb") for _ in range(8)))

        tasks = asyncio.run(many())
    assert tasks == ["llm/v1/embeddings"] * 8
    assert len(server.requests_to(LISTING_PATH)) == 1


@MODES
def test_get_is_retried_after_a_read_timeout(server, mode) -> None:
    server.reply(LISTING_PATH, Reply.json({}, delay=0.5), listing(FULL))
    with ServingWorkspace(host=server.url, token=TEST_TOKEN, timeout=0.2) as ws:
        infos = run(mode, ws.list_endpoints, ws.alist_endpoints)
    assert [i.name for i in infos] == ["split"]
    assert len(server.requests) == 2


def test_post_is_not_retried_after_a_read_timeout(server) -> None:
    server.reply("/serving-endpoints/ep/invocations", Reply.json({}, delay=0.5))
    with ServingWorkspace(host=server.url, token=TEST_TOKEN, timeout=0.2) as ws:
        llm = ChatServing(endpoint="ep", workspace=ws)
        with pytest.raises(ServingReadTimeoutError) as caught:
            llm.invoke("x")
    assert caught.value.is_retryable is False
    assert len(server.requests_to("/serving-endpoints/ep/invocations")) == 1


# -- sharing ---------------------------------------------------------------------------


def test_models_share_one_workspace_and_one_oauth_token(server) -> None:
    server.handle(
        "/oidc/v1/token",
        lambda _r: Reply.json({"access_token": "shared-token", "expires_in": 3600}),
    )
    server.reply("/serving-endpoints/chat/invocations", Reply.json(chat_response()))
    server.reply("/serving-endpoints/emb/invocations", Reply.json(embedding_response([[1.0]])))
    with ServingWorkspace(host=server.url, client_id="sp", client_secret="s3cret") as ws:
        chat = ChatServing(endpoint="chat", workspace=ws, api="chat")
        emb = ServingEmbeddings(endpoint="emb", workspace=ws)
        assert chat.transport is emb.transport is ws.transport
        chat.invoke("hi")
        emb.embed_query("hi")
        asyncio.run(chat.ainvoke("hi"))
    assert len(server.requests_to("/oidc/v1/token")) == 1
    calls = [r for r in server.requests if r.path != "/oidc/v1/token"]
    assert [r.headers["authorization"] for r in calls] == ["Bearer shared-token"] * 3


def test_connection_fields_and_workspace_are_exclusive(server) -> None:
    ws = ServingWorkspace(host=server.url, token=TEST_TOKEN)
    with pytest.raises(ValidationError, match="host cannot be set together with workspace"):
        ChatServing(endpoint="ep", workspace=ws, host="https://other.example.com")
    llm = ChatServing(endpoint="ep", workspace=ws)
    with pytest.raises(ServingConfigurationError, match="timeout"):
        llm.timeout = 3
    with pytest.raises(ServingConfigurationError, match="host"):
        llm.model_copy(update={"host": "https://other.example.com"})
    standalone = ChatServing(endpoint="ep", host=server.url)
    with pytest.raises(ServingConfigurationError, match="host"):
        standalone.workspace = ws


def test_a_workspace_is_immutable(server) -> None:
    ws = ServingWorkspace(host=server.url, token=TEST_TOKEN)
    with pytest.raises(ValidationError):
        ws.host = "https://other.example.com"  # type: ignore[misc]


def test_workspace_and_model_with_workspace_pickle(server) -> None:
    server.reply("/serving-endpoints/ep/invocations", Reply.json(chat_response()))
    ws = ServingWorkspace(host=server.url, token=SecretStr("dapi-pickled"))
    llm = ChatServing(endpoint="ep", workspace=ws, api="chat")
    llm.invoke("x")
    clone = pickle.loads(pickle.dumps(llm))
    assert clone.workspace is not None
    assert clone.workspace.host == server.url
    assert clone.workspace.transport is not ws.transport
    assert clone.invoke("x").content == "Hello!"
    assert asyncio.run(clone.ainvoke("x")).content == "Hello!"
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer dapi-pickled"] * 3
    clone.workspace.close()
    ws.close()


def test_three_classes_take_a_workspace(server) -> None:
    with ServingWorkspace(host=server.url, token=TEST_TOKEN) as ws:
        for cls in (ChatServing, ServingEmbeddings, ServingLLM):
            model = cls(endpoint="ep", workspace=ws)
            assert model.connection is ws
            assert model.host is None  # the connection is the workspace's


# -- the task check --------------------------------------------------------------------

CHAT_PATH = "/serving-endpoints/emb/invocations"


@MODES
def test_chat_on_an_embeddings_endpoint_says_so(server, ws, mode) -> None:
    server.reply(CHAT_PATH, Reply.json({"error_code": "BAD_REQUEST", "message": "bad input"}, 400))
    server.reply(LISTING_PATH, listing(endpoint_object("emb", "llm/v1/embeddings")))
    llm = ChatServing(endpoint="emb", workspace=ws, api="chat")
    for _ in range(2):
        with pytest.raises(ServingInvalidRequestError) as caught:
            run(mode, llm.invoke, llm.ainvoke, "x")
        error = caught.value
        assert error.message == (
            "Endpoint 'emb' serves llm/v1/embeddings, not llm/v1/chat; use ServingEmbeddings "
            "for it. The server said: bad input"
        )
        assert (error.status_code, error.error_code, error.endpoint) == (400, "BAD_REQUEST", "emb")
    # The listing was fetched on the first error only, then answered from the cache.
    assert [r.method for r in server.requests] == ["POST", "GET", "POST"]


@MODES
def test_a_missing_endpoint_names_the_closest(server, ws, mode) -> None:
    server.reply(
        LISTING_PATH,
        listing(endpoint_object("databricks-claude-sonnet-4"), endpoint_object("other")),
    )
    llm = ChatServing(endpoint="databricks-claude-sonet-4", workspace=ws)
    with pytest.raises(ServingNotFoundError) as caught:
        run(mode, llm.invoke, llm.ainvoke, "x")
    assert caught.value.message.startswith(
        "Endpoint 'databricks-claude-sonet-4' does not exist in this workspace; "
        "closest names: databricks-claude-sonnet-4."
    )


def test_stream_errors_are_checked_too(server, ws) -> None:
    server.reply(CHAT_PATH, Reply.json({"message": "bad input"}, 400))
    server.reply(LISTING_PATH, listing(endpoint_object("emb", "llm/v1/embeddings")))
    with pytest.raises(ServingInvalidRequestError, match="serves llm/v1/embeddings"):
        list(ChatServing(endpoint="emb", workspace=ws).stream("x"))


def test_a_matching_task_leaves_the_error_alone(server, ws) -> None:
    server.reply(CHAT_PATH, Reply.json({"message": "bad temperature"}, 400))
    server.reply(LISTING_PATH, listing(endpoint_object("emb", "llm/v1/embeddings")))
    with pytest.raises(ServingInvalidRequestError) as caught:
        ServingEmbeddings(endpoint="emb", workspace=ws).embed_query("x")
    assert caught.value.message == "bad temperature"


def test_no_listing_means_the_original_error(server, ws) -> None:
    server.reply(CHAT_PATH, Reply.json({"message": "bad input"}, 400))
    server.reply(LISTING_PATH, Reply.json({"message": "no"}, 403))
    with pytest.raises(ServingInvalidRequestError) as caught:
        ChatServing(endpoint="emb", workspace=ws).invoke("x")
    assert caught.value.message == "bad input"
    assert not isinstance(caught.value, ServingPermissionDeniedError)


@MODES
def test_a_malformed_listing_leaves_the_error_alone(server, ws, mode) -> None:
    server.reply(CHAT_PATH, Reply.json({"message": "bad input"}, 400))
    server.reply(LISTING_PATH, Reply.json({"endpoints": [{"nameless": True}]}))
    llm = ChatServing(endpoint="emb", workspace=ws)
    with pytest.raises(ServingInvalidRequestError) as caught:
        run(mode, llm.invoke, llm.ainvoke, "x")
    assert caught.value.message == "bad input"


def test_successful_calls_never_fetch_the_listing(server, ws) -> None:
    server.reply("/serving-endpoints/ep/invocations", Reply.json(chat_response()))
    llm = ChatServing(endpoint="ep", workspace=ws, api="chat")
    llm.invoke("x")
    asyncio.run(llm.ainvoke("x"))
    assert [r.method for r in server.requests] == ["POST", "POST"]

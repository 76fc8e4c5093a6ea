"""ServingEmbeddings against the local scripted endpoint: batching, order, errors."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.load import dumps

from langchain_servingx import (
    ServingAuthenticationError,
    ServingEmbeddings,
    ServingInvalidRequestError,
    ServingRateLimitError,
    ServingResponseError,
)
from tests.conftest import TEST_TOKEN
from tests.serving_server import RecordedRequest, Reply, ServingTestServer, embedding_response

PATH = "/serving-endpoints/embedder/invocations"


def _vector(text: str) -> list[float]:
    number = int(text.removeprefix("t"))
    return [float(number), number + 0.5]


def _echo(delay: float = 0.0, *, reverse: bool = False) -> Any:
    """Embed `t{i}` as `[i, i + 0.5]`; optionally list the items in reverse index order."""

    def handler(request: RecordedRequest) -> Reply:
        texts = request.json["input"]
        texts = [texts] if isinstance(texts, str) else texts
        indexes = list(range(len(texts)))
        if reverse:
            indexes.reverse()
        vectors = [_vector(texts[i]) for i in indexes]
        return Reply.json(embedding_response(vectors, indexes=indexes), delay=delay)

    return handler


def _texts(count: int) -> list[str]:
    return [f"t{i}" for i in range(count)]


def _model(**kwargs: Any) -> ServingEmbeddings:
    return ServingEmbeddings(endpoint="embedder", max_retries=0, **kwargs)


# -- batching, concurrency and order ---------------------------------------------------


def test_empty_list_sends_nothing(serving_env: ServingTestServer) -> None:
    assert _model().embed_documents([]) == []
    assert serving_env.requests == []


async def test_async_empty_list_sends_nothing(serving_env: ServingTestServer) -> None:
    assert await _model().aembed_documents([]) == []
    assert serving_env.requests == []


def test_default_batch_size_is_16(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo())
    vectors = _model().embed_documents(_texts(40))
    assert vectors == [_vector(t) for t in _texts(40)]
    assert sorted(len(r.json["input"]) for r in serving_env.requests) == [8, 16, 16]


def test_batches_run_concurrently_up_to_max_concurrency(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo(delay=0.1))
    model = _model(batch_size=4, max_concurrency=3)
    vectors = model.embed_documents(_texts(30))
    assert vectors == [_vector(t) for t in _texts(30)]
    assert len(serving_env.requests) == 8
    sent = sorted(t for r in serving_env.requests for t in r.json["input"])
    assert sent == sorted(_texts(30))
    assert 1 < serving_env.max_in_flight <= 3


async def test_async_batches_run_concurrently_up_to_max_concurrency(
    serving_env: ServingTestServer,
) -> None:
    serving_env.handle(PATH, _echo(delay=0.1))
    model = _model(batch_size=4, max_concurrency=2)
    vectors = await model.aembed_documents(_texts(30))
    assert vectors == [_vector(t) for t in _texts(30)]
    assert len(serving_env.requests) == 8
    assert serving_env.max_in_flight == 2


def _slow_first(request: RecordedRequest) -> Reply:
    """Earlier batches answer later, and every batch lists its items in reverse."""
    first = int(request.json["input"][0].removeprefix("t"))
    return _echo(delay=0.25 / (1 + first), reverse=True)(request)


def test_order_follows_input_not_arrival_or_item_order(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _slow_first)
    vectors = _model(batch_size=3, max_concurrency=4).embed_documents(_texts(12))
    assert vectors == [_vector(t) for t in _texts(12)]


async def test_async_order_follows_input(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _slow_first)
    vectors = await _model(batch_size=3, max_concurrency=4).aembed_documents(_texts(12))
    assert vectors == [_vector(t) for t in _texts(12)]


def test_items_without_index_keep_their_order(serving_env: ServingTestServer) -> None:
    serving_env.reply(PATH, Reply.json({"data": [{"embedding": [1, 2]}, {"embedding": [3, 4]}]}))
    assert _model().embed_documents(["a", "b"]) == [[1.0, 2.0], [3.0, 4.0]]


# -- request bodies --------------------------------------------------------------------


def test_query_and_documents_params_on_the_wire(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo())
    model = _model(
        query_params={"instruction": "Represent the question:"},
        documents_params={"instruction": "Represent the passage:"},
    )
    assert model.embed_query("t7") == [7.0, 7.5]
    assert model.embed_documents(["t1", "t2"]) == [[1.0, 1.5], [2.0, 2.5]]
    query, documents = (r.json for r in serving_env.requests)
    assert query == {
        "input": ["t7"],
        "instruction": "Represent the question:",
        "encoding_format": "base64",
    }
    assert documents == {
        "input": ["t1", "t2"],
        "instruction": "Represent the passage:",
        "encoding_format": "base64",
    }
    assert serving_env.requests[0].headers["authorization"] == f"Bearer {TEST_TOKEN}"


async def test_aembed_query(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo())
    model = _model(query_params={"instruction": "q"})
    assert await model.aembed_query("t3") == [3.0, 3.5]
    assert serving_env.requests[0].json == {
        "input": ["t3"],
        "instruction": "q",
        "encoding_format": "base64",
    }


def test_openai_compatible_route_names_the_model(serving_env: ServingTestServer) -> None:
    serving_env.handle("/serving-endpoints/embeddings", _echo())
    model = _model(openai_compatible=True)
    assert model.embed_documents(["t1"]) == [[1.0, 1.5]]
    assert serving_env.requests[0].json == {
        "input": ["t1"],
        "model": "embedder",
        "encoding_format": "base64",
    }


def test_served_model_route(serving_env: ServingTestServer) -> None:
    serving_env.handle("/serving-endpoints/embedder/served-models/v2/invocations", _echo())
    assert _model(served_model="v2").embed_query("t1") == [1.0, 1.5]


def test_rejects_a_string_instead_of_a_list(serving_env: ServingTestServer) -> None:
    with pytest.raises(TypeError, match="list of strings"):
        _model().embed_documents("t1")  # type: ignore[arg-type]


# -- malformed responses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (embedding_response([[1.0], [2.0], [3.0]]), "expected 4 embeddings, got 3"),
        (embedding_response([[1.0], [2.0], [3.0], [4.0]], indexes=[0, 1, 2, 2]), "appears twice"),
        (embedding_response([[1.0], [2.0], [3.0], [4.0]], indexes=[0, 1, 2, 4]), "out of range"),
        (embedding_response([[1.0], [2.0], [3.0, 3.0], [4.0]]), "differ in dimension"),
        (
            embedding_response([[1.0], [2.0], ["x"], [4.0]]),
            "item 2's embedding holds the string 'x', expected numbers",
        ),
        (embedding_response([[], [], [], []]), "item 0's embedding is empty"),
        ({"data": {"0": [1.0]}}, "expected a 'data' list"),
        (
            {"data": [{"index": 0, "embedding": [1.0]}, {"embedding": [2.0]}, 3, 4]},
            "must be a JSON object",
        ),
        (
            {"data": [{"index": i, "embedding": [1.0]} for i in range(3)] + [{"embedding": [1]}]},
            "index None is missing",
        ),
    ],
)
def test_malformed_batch_names_endpoint_and_batch(
    serving_env: ServingTestServer, body: dict[str, Any], problem: str
) -> None:
    good = Reply.json(embedding_response([[0.0], [0.0], [0.0], [0.0]]))
    # batch 2 of 3 is broken; the others answer well.
    serving_env.handle(PATH, lambda r: Reply.json(body) if r.json["input"][0] == "t4" else good)
    with pytest.raises(ServingResponseError) as info:
        _model(batch_size=4, max_concurrency=1).embed_documents(_texts(12))
    message = str(info.value)
    assert "endpoint 'embedder'" in message
    assert "batch 2 of 3 (texts 4-7)" in message
    assert problem in message


async def test_async_malformed_batch(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, lambda r: Reply.json(embedding_response([[1.0]])))
    with pytest.raises(ServingResponseError, match=r"batch 1 of 2 \(texts 0-1\)"):
        await _model(batch_size=2, max_concurrency=1).aembed_documents(_texts(4))


def test_dimension_must_agree_across_batches(serving_env: ServingTestServer) -> None:
    def handler(request: RecordedRequest) -> Reply:
        width = 2 if request.json["input"][0] == "t0" else 3
        return Reply.json(embedding_response([[1.0] * width] * len(request.json["input"])))

    serving_env.handle(PATH, handler)
    with pytest.raises(ServingResponseError) as info:
        _model(batch_size=2).embed_documents(_texts(4))
    assert "batch 2 of 2 (texts 2-3): vectors have 3 dimensions" in str(info.value)
    assert "batch 1 of 2 (texts 0-1) returned 2" in str(info.value)


# -- errors ----------------------------------------------------------------------------


def test_http_errors_map_to_typed_classes(serving_env: ServingTestServer) -> None:
    serving_env.reply(
        PATH,
        Reply.json({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}, 429),
        Reply.json({"error_code": "UNAUTHENTICATED", "message": "bad token"}, 401),
    )
    model = _model()
    with pytest.raises(ServingRateLimitError, match="slow down"):
        model.embed_query("t1")
    with pytest.raises(ServingAuthenticationError, match="bad token"):
        model.embed_documents(["t1"])


def test_a_failed_batch_fails_the_call(serving_env: ServingTestServer) -> None:
    def handler(request: RecordedRequest) -> Reply:
        if request.json["input"][0] == "t2":
            return Reply.json({"error_code": "BAD_REQUEST", "message": "too long"}, 400)
        return _echo()(request)

    serving_env.handle(PATH, handler)
    with pytest.raises(ServingInvalidRequestError, match="too long"):
        _model(batch_size=2, max_concurrency=2).embed_documents(_texts(8))


async def test_async_errors(serving_env: ServingTestServer) -> None:
    serving_env.reply(PATH, Reply.json({"message": "busy"}, 429))
    with pytest.raises(ServingRateLimitError):
        await _model(batch_size=1).aembed_documents(_texts(3))


def test_retries_use_the_shared_policy(serving_env: ServingTestServer) -> None:
    serving_env.reply(
        PATH,
        Reply.json({"message": "busy"}, 503, headers={"Retry-After": "0"}),
        Reply.json(embedding_response([[1.0, 2.0]])),
    )
    model = ServingEmbeddings(endpoint="embedder", max_retries=1)
    assert model.embed_query("t1") == [1.0, 2.0]
    assert len(serving_env.requests) == 2


# -- configuration ---------------------------------------------------------------------


def test_secrets_absent_from_repr(server: ServingTestServer) -> None:
    model = ServingEmbeddings(model="embedder", host=server.url, token=TEST_TOKEN)
    assert model.endpoint == "embedder"
    assert TEST_TOKEN not in repr(model)
    assert TEST_TOKEN not in str(model)
    assert TEST_TOKEN not in dumps(model)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        ServingEmbeddings(endpoint="e", batch_size=0)
    with pytest.raises(ValueError, match="max_concurrency"):
        ServingEmbeddings(endpoint="e", max_concurrency=0)
    with pytest.raises(ValueError, match="not a valid path segment"):
        ServingEmbeddings(endpoint="../admin")


# -- base64 vectors ---------------------------------------------------------------------


def _packed(values: list[float]) -> str:
    import base64
    import struct

    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def _base64_echo(*, refuse: bool = False) -> Any:
    """Answer base64 when asked (or refuse the field with a 400), floats otherwise."""
    floats = _echo()

    def handler(request: RecordedRequest) -> Reply:
        if request.json.get("encoding_format") != "base64":
            return floats(request)
        if refuse:
            return Reply.json(
                {"error_code": "BAD_REQUEST", "message": "unknown field encoding_format"}, 400
            )
        vectors = [_packed(_vector(t)) for t in request.json["input"]]
        return Reply.json(embedding_response(vectors))  # type: ignore[arg-type]

    return handler


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vectors_are_asked_for_as_base64_and_decoded(serving_env, mode) -> None:
    import asyncio

    serving_env.handle(PATH, _base64_echo())
    model = _model(batch_size=2)
    texts = _texts(5)
    if mode == "sync":
        vectors = model.embed_documents(texts)
    else:
        vectors = asyncio.run(model.aembed_documents(texts))
    assert vectors == [_vector(t) for t in texts]
    assert all(r.json["encoding_format"] == "base64" for r in serving_env.requests)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_endpoint_refusing_base64_is_asked_for_floats_and_remembered(serving_env, mode) -> None:
    import asyncio

    serving_env.handle(PATH, _base64_echo(refuse=True))
    model = _model()

    def run(call: Any) -> Any:
        return call() if mode == "sync" else asyncio.run(call())

    embed = model.embed_query if mode == "sync" else model.aembed_query
    assert run(lambda: embed("t3")) == [3.0, 3.5]
    assert run(lambda: embed("t4")) == [4.0, 4.5]
    formats = [r.json.get("encoding_format") for r in serving_env.requests_to(PATH)]
    assert formats == ["base64", None, None]  # refused once, then floats only


def test_an_explicit_encoding_format_is_left_alone(serving_env) -> None:
    serving_env.handle(PATH, _base64_echo())
    model = _model(documents_params={"encoding_format": "float"})
    assert model.embed_documents(["t1"]) == [[1.0, 1.5]]
    assert serving_env.requests[0].json["encoding_format"] == "float"


def test_a_400_not_about_base64_is_raised_after_one_float_retry(serving_env) -> None:
    serving_env.reply(PATH, Reply.json({"message": "input too weird"}, 400))
    model = _model()
    with pytest.raises(ServingInvalidRequestError, match="input too weird"):
        model.embed_query("t1")
    assert not model._base64_refused  # nothing learnt from an unrelated refusal


# -- nothing lost under rate limits ------------------------------------------------------


def test_a_batch_rate_limited_past_max_retries_still_completes(serving_env, sleeps) -> None:
    """One of many batches meets 429 more often than max_retries: the budget carries it."""
    echo = _echo()
    refusals = {"t40": 6}

    def handler(request: RecordedRequest) -> Reply:
        first = request.json["input"][0]
        if refusals.get(first, 0) > 0:
            refusals[first] -= 1
            return Reply.json({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow"}, 429)
        return echo(request)

    serving_env.handle(PATH, handler)
    model = ServingEmbeddings(endpoint="embedder", max_retries=2, batch_size=8)
    texts = _texts(200)
    assert model.embed_documents(texts) == [_vector(t) for t in texts]
    assert len(serving_env.requests) == 25 + 6

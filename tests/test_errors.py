"""Error bodies and statuses onto typed errors that are also langchain-core's errors."""

from __future__ import annotations

import json
import pickle

import pytest
from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelTimeoutError,
)

from langchain_servingx._errors import (
    ServingAuthenticationError,
    ServingConnectionError,
    ServingContextOverflowError,
    ServingDeadlineExceededError,
    ServingError,
    ServingInvalidRequestError,
    ServingNotFoundError,
    ServingPermissionDeniedError,
    ServingRateLimitError,
    ServingServerError,
    ServingTimeoutError,
    error_from_response,
    parse_error_body,
    parse_retry_after,
    request_id_from,
)
from tests.serving_server import Reply, ServingTestServer, make_transport

PATH = "/serving-endpoints/ep/invocations"

# -- body shapes -----------------------------------------------------------------------

EXTERNAL = {
    "external_model_provider": "openai",
    "external_model_error": {
        "error": {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    },
}


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        pytest.param(
            json.dumps({"error_code": "BAD_REQUEST", "message": "max_tokens must be > 0"}),
            "BAD_REQUEST",
            "max_tokens must be > 0",
            id="error_code+message",
        ),
        pytest.param(
            json.dumps({"error_code": "X", "message": "m", "details": [{"a": 1}]}),
            "X",
            "m",
            id="with-details",
        ),
        pytest.param(json.dumps({"message": "only a message"}), None, "only a message", id="msg"),
        pytest.param(
            json.dumps(EXTERNAL), "invalid_api_key", "openai: Incorrect API key provided", id="ext"
        ),
        pytest.param(
            json.dumps(
                {
                    "external_model_provider": "anthropic",
                    "external_model_error": {"error": {"message": "overloaded", "type": "ovl"}},
                }
            ),
            "ovl",
            "anthropic: overloaded",
            id="ext-type-only",
        ),
        pytest.param(
            json.dumps({"error": {"message": "no such model", "type": "invalid_request_error"}}),
            "invalid_request_error",
            "no such model",
            id="openai-shape",
        ),
        pytest.param(
            json.dumps(
                {
                    "error_code": "BAD_REQUEST",
                    "message": json.dumps({"error_code": "INNER", "message": "inner text"}),
                }
            ),
            "BAD_REQUEST",
            "inner text",
            id="json-in-message",
        ),
        pytest.param(
            json.dumps({"message": json.dumps({"error": {"message": "deep", "code": "c1"}})}),
            "c1",
            "deep",
            id="openai-json-in-message",
        ),
        pytest.param(
            json.dumps({"message": "{not json at all"}), None, "{not json at all", id="brace-text"
        ),
        pytest.param(json.dumps({"error": "flat string"}), None, "flat string", id="error-str"),
        pytest.param(json.dumps({"detail": "Not Found"}), None, "Not Found", id="detail"),
        pytest.param(json.dumps("just a string"), None, "just a string", id="json-string"),
        pytest.param("upstream connect error", None, "upstream connect error", id="plain"),
        pytest.param(
            "<html><head><title>502 Bad Gateway</title></head><body><h1>502</h1></body></html>",
            None,
            "502 Bad Gateway",
            id="html-title",
        ),
        pytest.param(
            "<html><body><h1>Service\n Unavailable</h1><p>try later</p></body></html>",
            None,
            "Service Unavailable try later",
            id="html-no-title",
        ),
        pytest.param("", None, "(empty response body)", id="empty"),
        pytest.param("  \n ", None, "(empty response body)", id="blank"),
    ],
)
def test_parse_error_body(body: str, code: str | None, message: str) -> None:
    assert parse_error_body(body) == (code, message)


def test_parse_error_body_truncates_long_text() -> None:
    code, message = parse_error_body("x" * 5000)
    assert code is None
    assert len(message) < 600
    assert message.endswith("...")


def test_parse_error_body_other_json() -> None:
    assert parse_error_body("[1, 2]") == (None, "[1, 2]")
    code, message = parse_error_body(json.dumps({"error_code": "E", "message": {"k": "v"}}))
    assert code == "E"
    assert json.loads(message) == {"k": "v"}
    code, message = parse_error_body(json.dumps({"unexpected": True}))
    assert code is None
    assert "unexpected" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("1.5", 1.5), ("0", 0.0), ("-1", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None)],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after({"retry-after": value}) == expected


def test_no_retry_after_and_no_request_id() -> None:
    assert parse_retry_after({}) is None
    assert request_id_from({}) is None
    assert request_id_from({"x-databricks-request-id": "r2"}) == "r2"


# -- statuses --------------------------------------------------------------------------

STATUS_CASES = [
    (400, "BAD_REQUEST", ServingInvalidRequestError, ModelInvalidRequestError),
    (401, "UNAUTHENTICATED", ServingAuthenticationError, ModelAuthenticationError),
    (403, "PERMISSION_DENIED", ServingPermissionDeniedError, ModelPermissionDeniedError),
    (404, "RESOURCE_DOES_NOT_EXIST", ServingNotFoundError, ModelNotFoundError),
    (408, "REQUEST_TIMEOUT", ServingTimeoutError, ModelTimeoutError),
    (413, "REQUEST_TOO_LARGE", ServingInvalidRequestError, ModelInvalidRequestError),
    (422, "INVALID_PARAMETER_VALUE", ServingInvalidRequestError, ModelInvalidRequestError),
    (429, "REQUEST_LIMIT_EXCEEDED", ServingRateLimitError, ModelRateLimitError),
    (500, "INTERNAL_ERROR", ServingServerError, ModelAPIError),
    (502, "INTERNAL_ERROR", ServingServerError, ModelAPIError),
    (503, "TEMPORARILY_UNAVAILABLE", ServingServerError, ModelAPIError),
    (504, "DEADLINE_EXCEEDED", ServingDeadlineExceededError, ModelTimeoutError),
]


@pytest.mark.parametrize(("status", "code", "cls", "core_cls"), STATUS_CASES)
def test_status_maps_to_class_over_the_wire(
    server: ServingTestServer, status, code, cls, core_cls
) -> None:
    server.reply(
        PATH,
        Reply.json(
            {"error_code": code, "message": f"it failed with {status}"},
            status,
            headers={"x-request-id": f"req-{status}"},
        ),
    )
    transport = make_transport(server.url)
    with pytest.raises(ServingError) as info:
        transport.invoke("llm/v1/chat", "ep", {"messages": []})
    error = info.value
    assert type(error) is cls or isinstance(error, cls)
    assert isinstance(error, core_cls)
    assert isinstance(error, ModelError)
    assert error.status_code == status
    assert error.error_code == code
    assert error.message == f"it failed with {status}"
    assert error.endpoint == "ep"
    assert error.request_id == f"req-{status}"
    text = str(error)
    assert "'ep'" in text
    assert str(status) in text
    assert code in text
    assert f"req-{status}" in text
    assert len(server.requests) == 1


def test_every_5xx_is_a_model_api_error() -> None:
    for status in (500, 501, 502, 503, 504, 599):
        error = error_from_response(status, "", {}, endpoint="ep")
        assert isinstance(error, ModelAPIError), status
    assert isinstance(error_from_response(504, "", {}, endpoint=None), ModelTimeoutError)


def test_unlisted_4xx_is_a_plain_serving_error() -> None:
    error = error_from_response(409, '{"message": "conflict"}', {}, endpoint="ep")
    assert type(error) is ServingError
    assert error.message == "conflict"


@pytest.mark.parametrize("status", [400, 413, 422])
@pytest.mark.parametrize(
    "body",
    [
        {"error_code": "BAD_REQUEST", "message": "This model's maximum context length is 8192"},
        {"message": "prompt is too long: 210000 tokens > 200000 maximum"},
        {"message": "Input is too long for requested model."},
        EXTERNAL
        | {
            "external_model_error": {
                "error": {"message": "too big", "code": "context_length_exceeded"}
            }
        },
    ],
)
def test_context_overflow(status: int, body) -> None:
    error = error_from_response(status, json.dumps(body), {}, endpoint="ep")
    assert isinstance(error, ServingContextOverflowError)
    assert isinstance(error, ContextOverflowError)
    assert isinstance(error, ModelInvalidRequestError)
    assert error.status_code == status


def test_ordinary_bad_request_is_not_context_overflow() -> None:
    error = error_from_response(400, '{"message": "temperature must be <= 2"}', {}, endpoint="e")
    assert type(error) is ServingInvalidRequestError
    assert not isinstance(error, ContextOverflowError)


def test_rate_limit_carries_retry_after() -> None:
    body = '{"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Exceeded workspace rate limit"}'
    error = error_from_response(429, body, {"retry-after": "7"}, endpoint="ep")
    assert isinstance(error, ServingRateLimitError)
    assert error.retry_after == 7.0
    assert error_from_response(429, body, {}, endpoint="ep").retry_after is None


def test_unavailable_carries_retry_after() -> None:
    # The contract: Retry-After may accompany 429 *and* 503.
    error = error_from_response(503, "", {"retry-after": "2"}, endpoint="ep")
    assert error.retry_after == 2.0


@pytest.mark.parametrize(
    "body",
    [
        "",
        "upstream request timeout",
        "<html><head><title>504 Gateway Time-out</title></head></html>",
        json.dumps(EXTERNAL),
    ],
)
def test_body_shapes_over_the_wire(server: ServingTestServer, body: str) -> None:
    server.reply(PATH, Reply.text(body, 502, content_type="text/html"))
    with pytest.raises(ServingServerError) as info:
        make_transport(server.url).invoke("llm/v1/chat", "ep", {})
    assert info.value.message == parse_error_body(body)[1]
    assert "<" not in info.value.message


# -- pickling --------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "code", "cls", "core_cls"), STATUS_CASES)
def test_errors_pickle_with_their_attributes(status, code, cls, core_cls) -> None:
    error = error_from_response(
        status,
        json.dumps({"error_code": code, "message": "m"}),
        {"x-request-id": "rid", "retry-after": "3"},
        endpoint="ep",
    )
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error)
    assert isinstance(clone, core_cls)
    for attribute in ("message", "status_code", "error_code", "endpoint", "request_id"):
        assert getattr(clone, attribute) == getattr(error, attribute)
    assert str(clone) == str(error)
    if status == 429:
        assert clone.retry_after == 3.0


def test_context_overflow_and_connection_errors_pickle() -> None:
    for error in (
        ServingContextOverflowError("too long", status_code=400, endpoint="ep"),
        ServingConnectionError("refused", endpoint="ep"),
        ServingRateLimitError("slow down", retry_after=1.5, status_code=429),
    ):
        clone = pickle.loads(pickle.dumps(error))
        assert type(clone) is type(error)
        assert clone.message == error.message
        assert clone.endpoint == error.endpoint
        assert getattr(clone, "retry_after", None) == getattr(error, "retry_after", None)
    assert isinstance(ServingConnectionError("x"), ModelConnectionError)


def test_str_without_status_or_endpoint() -> None:
    assert str(ServingError("boom")) == "serving endpoint: boom"
    assert str(ServingError("boom", endpoint="ep", error_code="E")) == "endpoint 'ep' (E): boom"

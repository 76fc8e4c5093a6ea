"""No cassette may hold a credential or a real host; and the scrubbers make sure of it."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
import yaml
from vcr import VCR
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.request import Request as VcrRequest

from langchain_servingx import ChatServing
from tests.integration_tests.recording import (
    CASSETTES,
    PLACEHOLDER_HOST,
    VCR_OPTIONS,
    GzipYamlSerializer,
    cassette_text,
    match_json_body,
    placeholder_uri,
    register,
    scrub_request,
    scrub_response,
)
from tests.integration_tests.settings import CHAT_PARAMS

SUSPECTS = {
    "personal access token": re.compile(r"dapi[-_0-9a-z]{8,}", re.IGNORECASE),
    "bearer credential": re.compile(
        r"bearer\s+(?!placeholder)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE
    ),
    "basic credential": re.compile(r"basic\s+[A-Za-z0-9+/]{8,}=*", re.IGNORECASE),
    "JWT": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "client secret": re.compile(r"client_secret", re.IGNORECASE),
    "OAuth access token": re.compile(
        r'"access_token"\s*:\s*"(?!placeholder)[^"]+"|access_token=(?!placeholder)[^&\s]+'
    ),
    "authorization header": re.compile(r"^\s*-?\s*authorization:", re.IGNORECASE | re.MULTILINE),
    "databricks host": re.compile(r"[a-z0-9-]+\.(?:cloud\.databricks\.com|azuredatabricks\.net)"),
    "loopback address": re.compile(r"\b127\.\d+\.\d+\.\d+\b|\blocalhost:\d+", re.IGNORECASE),
    "unreadable body": re.compile(r"!!binary"),
}
_URL = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(?::\d+)?")
_ALLOWED_HOSTS = {"placeholder.servingx.invalid"}


def findings(text: str) -> list[str]:
    """What in `text` looks like a secret or a host other than the placeholder."""
    found = [
        f"{name}: {m.group(0)[:24]}..." for name, rx in SUSPECTS.items() for m in rx.finditer(text)
    ]
    found += [
        f"host: {m.group(1)}" for m in _URL.finditer(text) if m.group(1) not in _ALLOWED_HOSTS
    ]
    return found


CASSETTE_FILES = sorted(p for p in CASSETTES.rglob("*") if p.is_file())
_IDS = [str(p.relative_to(CASSETTES)) for p in CASSETTE_FILES]


@pytest.mark.parametrize("path", CASSETTE_FILES, ids=_IDS)
def test_cassette_holds_no_secret_and_no_real_host(path: Path) -> None:
    assert findings(cassette_text(path)) == []


@pytest.mark.parametrize("path", CASSETTE_FILES, ids=_IDS)
def test_cassette_was_scrubbed(path: Path) -> None:
    """Every request went to the placeholder host; no header but Content-Type was kept."""
    cassette = yaml.safe_load(cassette_text(path))
    assert cassette["interactions"], "an empty cassette: the test made no request"
    for interaction in cassette["interactions"]:
        request, response = interaction["request"], interaction["response"]
        assert request["uri"].startswith(PLACEHOLDER_HOST + "/")
        assert {k.lower() for k in request["headers"]} <= {"content-type"}
        assert {k.lower() for k in response["headers"]} <= {"content-type"}


def test_there_are_cassettes_to_check() -> None:
    assert CASSETTE_FILES, "cassettes/ is empty: run `make record`"
    assert all(p.name.endswith(".yaml.gz") for p in CASSETTE_FILES)


@pytest.mark.parametrize(
    "dirty",
    [
        "authorization: Bearer dapi0123456789abcdef",
        "token: dapi-local-0123456789abcdef",
        "  Authorization:\n  - Basic c3A6czNjcjN0Zm9vYmFy",
        "uri: https://dbc-a1b2c3d4-e5f6.cloud.databricks.com/serving-endpoints/x/invocations",
        'body: {"access_token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4eXoifQ.sig", "expires_in": 3600}',
        "body: access_token=abc.def.ghi&token_type=bearer",
        "body: grant_type=client_credentials&client_secret=s3cr3t",
        "uri: http://127.0.0.1:8123/serving-endpoints/local-chat/invocations",
        "Host: 127.0.0.1:8123",
        "string: !!binary |\n  H4sIAAAAAAAA",
    ],
)
def test_scanner_catches_what_it_must(dirty: str) -> None:
    assert findings(dirty)


def test_scanner_lets_placeholders_through() -> None:
    clean = (
        f"uri: {PLACEHOLDER_HOST}/serving-endpoints/local-chat/invocations\n"
        'body: {"access_token": "placeholder-access-token"}\n'
        "body: grant_type=client_credentials&scope=all-apis\n"
    )
    assert findings(clean) == []


def test_scrubbers_remove_credentials_and_host() -> None:
    request = VcrRequest(
        "POST",
        "http://127.0.0.1:8123/oidc/v1/token",
        b"grant_type=client_credentials&scope=all-apis&client_secret=s3cr3t",
        {
            "Authorization": "Basic c3A6czNjcjN0",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    scrubbed = scrub_request(request)
    assert scrubbed.uri == f"{PLACEHOLDER_HOST}/oidc/v1/token"
    assert dict(scrubbed.headers) == {"Content-Type": "application/x-www-form-urlencoded"}
    assert b"s3cr3t" not in scrubbed.body
    response = scrub_response(
        {
            "status": {"code": 200, "message": "OK"},
            "headers": {"Content-Type": ["application/json"], "Set-Cookie": ["session=abc"]},
            "body": {
                "string": b'{"access_token": "eyJraWQiOiJ4In0.eyJzdWIiOiJ5In0.sg", "expires_in": 1}'
            },
        }
    )
    assert response["headers"] == {"Content-Type": ["application/json"]}
    assert findings(response["body"]["string"].decode()) == []
    assert (
        placeholder_uri("https://dbc-1.cloud.databricks.com/a/b?x=1")
        == f"{PLACEHOLDER_HOST}/a/b?x=1"
    )


def test_serializer_keeps_bodies_readable_and_output_stable() -> None:
    request = VcrRequest(
        "POST",
        f"{PLACEHOLDER_HOST}/serving-endpoints/local-chat/invocations",
        '{"messages":[{"role":"user","content":"你好"}]}'.encode(),
        {"Content-Type": "application/json"},
    )
    response = {
        "status": {"code": 200, "message": "OK"},
        "headers": {"Content-Type": ["text/event-stream"]},
        "body": {"string": b'data: {"choices":[]}\n\ndata: [DONE]\n\n'},
    }
    cassette = {"requests": [request], "responses": [response]}
    data = GzipYamlSerializer.serialize(cassette)
    assert data == GzipYamlSerializer.serialize(cassette), "no timestamp in the gzip header"
    text = gzip.decompress(data).decode("utf-8")
    assert "!!binary" not in text
    assert "你好" in text
    loaded = GzipYamlSerializer.deserialize(data)
    assert loaded["requests"][0].body == request.body
    assert loaded["responses"][0]["body"]["string"] == response["body"]["string"]


def _chat_request(body: dict[str, object]) -> VcrRequest:
    uri = f"{PLACEHOLDER_HOST}/serving-endpoints/local-chat/invocations"
    return VcrRequest("POST", uri, json.dumps(body).encode(), {})


def _history(call_id: str, answered_id: str) -> dict[str, object]:
    return {
        "messages": [
            {"role": "user", "content": "What is 1 + 2"},
            {
                "role": "assistant",
                "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "add"}}],
            },
            {"role": "tool", "tool_call_id": answered_id, "content": "3"},
        ],
        "temperature": 0,
    }


def test_matcher_compares_tool_call_ids_by_position_only() -> None:
    recorded = _chat_request(_history("call_1f0e", "call_1f0e"))
    match_json_body(_chat_request(_history("3b9c-uuid", "3b9c-uuid")), recorded)
    with pytest.raises(AssertionError):  # the tool result answers another call
        match_json_body(_chat_request(_history("3b9c-uuid", "other")), recorded)
    changed = _history("call_1f0e", "call_1f0e")
    changed["temperature"] = 0.5
    with pytest.raises(AssertionError):
        match_json_body(_chat_request(changed), recorded)
    reordered = VcrRequest("POST", recorded.uri, b'{"temperature": 0, "messages": []}', {})
    with pytest.raises(AssertionError):
        match_json_body(reordered, recorded)
    match_json_body(
        VcrRequest("POST", recorded.uri, b'{"b": 1, "a": [1, 2]}', {}),
        VcrRequest("POST", recorded.uri, b'{"a":[1,2],"b":1}', {}),
    )


def _responses_history(call_id: str, answered_id: str) -> dict[str, object]:
    return {
        "input": [
            {"role": "user", "content": "What is 1 + 2"},
            {"type": "function_call", "id": "fc_1", "call_id": call_id, "name": "add"},
            {"type": "function_call_output", "call_id": answered_id, "output": "3"},
        ],
    }


def test_matcher_compares_responses_call_ids_by_position_only() -> None:
    recorded = _chat_request(_responses_history("call_1f0e", "call_1f0e"))
    match_json_body(_chat_request(_responses_history("3b9c-uuid", "3b9c-uuid")), recorded)
    with pytest.raises(AssertionError):  # the output answers another call
        match_json_body(_chat_request(_responses_history("3b9c-uuid", "other")), recorded)
    changed = _responses_history("call_1f0e", "call_1f0e")
    changed["input"][1]["id"] = "fc_2"  # type: ignore[index]  # item ids still count
    with pytest.raises(AssertionError):
        match_json_body(_chat_request(changed), recorded)


def test_replay_fails_loudly_on_a_request_the_cassette_does_not_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cassette = CASSETTES / "test_chat_models" / "TestChatServingStandard.test_invoke.yaml.gz"
    assert cassette.is_file(), "run `make record`"
    monkeypatch.setenv("DATABRICKS_HOST", PLACEHOLDER_HOST)
    monkeypatch.setenv("DATABRICKS_TOKEN", "placeholder-token")
    vcr = register(VCR())
    model = ChatServing(**{**CHAT_PARAMS, "endpoint": "local-chat", "max_retries": 0})
    with vcr.use_cassette(str(cassette), record_mode="none", **VCR_OPTIONS):
        assert model.invoke("Hello").content  # what was recorded replays
    with (
        vcr.use_cassette(str(cassette), record_mode="none", **VCR_OPTIONS),
        pytest.raises(CannotOverwriteExistingCassetteException),
    ):
        model.invoke("Hello, is this recorded?")

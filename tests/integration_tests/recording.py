"""Recording rules shared by the integration conftest and the cassette checks.

Cassettes are gzip-compressed YAML. Bodies are stored as text (not YAML `!!binary`), so
`tests/test_cassettes.py` can read what was really recorded, and the gzip header carries
no timestamp, so re-recording identical traffic rewrites identical files.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from langchain_tests.conftest import CustomPersister
from vcr import VCR
from vcr.request import Request as VcrRequest
from vcr.serialize import deserialize as vcr_deserialize
from vcr.serialize import serialize as vcr_serialize

ROOT = Path(__file__).resolve().parents[2]
CASSETTES = ROOT / "cassettes"
PLACEHOLDER_HOST = "https://placeholder.servingx.invalid"
PLACEHOLDER_TOKEN = "placeholder-token"
PLACEHOLDER_ACCESS_TOKEN = "placeholder-access-token"
_KEPT_HEADERS = frozenset({"content-type"})
_TOKEN_PATH = "/oidc/v1/token"
_TOKEN_FORM = b"grant_type=client_credentials&scope=all-apis"
_ACCESS_TOKEN = re.compile(rb'("access_token"\s*:\s*")[^"]*(")')


def placeholder_uri(uri: str) -> str:
    """The same URI on the placeholder host."""
    parts = urlsplit(uri)
    placeholder = urlsplit(PLACEHOLDER_HOST)
    return urlunsplit((placeholder.scheme, placeholder.netloc, parts.path, parts.query, ""))


def scrub_request(request: VcrRequest) -> VcrRequest:
    """Placeholder host, no header but `Content-Type`, no OAuth form values.

    vcrpy hands this a copy, and applies it both before recording and before matching,
    so a live request and its recorded form compare alike.
    """
    request.uri = placeholder_uri(request.uri)
    for name in list(request.headers):
        if name.lower() not in _KEPT_HEADERS:
            del request.headers[name]
    if urlsplit(request.uri).path.endswith(_TOKEN_PATH):
        request.body = _TOKEN_FORM
    return request


def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    """Only `Content-Type` survives; access tokens in bodies become placeholders."""
    response["headers"] = {
        k: v for k, v in response["headers"].items() if k.lower() in _KEPT_HEADERS
    }
    body = response.get("body", {}).get("string")
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, bytes) and b"access_token" in body:
        response["body"]["string"] = _ACCESS_TOKEN.sub(
            rb"\g<1>" + PLACEHOLDER_ACCESS_TOKEN.encode() + rb"\g<2>", body
        )
    return response


def _json_body(request: VcrRequest) -> Any:
    body = request.body
    if body is None:
        return None
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    return _with_positional_tool_call_ids(parsed)


def _with_positional_tool_call_ids(body: Any) -> Any:
    """The body with each tool-call id replaced by its order of first appearance.

    Tool-call ids are opaque correlation keys, and LangChain makes some of them up with
    `uuid4()` on every run (`tool_example_to_messages`, for one). What must match is which
    tool result answers which call, not the random value: `call-0` stays `call-0` in both
    the assistant's `tool_calls` and the tool message's `tool_call_id` (chat and ChatAgent
    `messages`), or in a `function_call` item's and its `function_call_output`'s `call_id`
    (Responses `input`).
    """
    if not isinstance(body, dict):
        return body
    ids: dict[str, str] = {}

    def positional(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return ids.setdefault(value, f"call-{len(ids)}")

    if isinstance(body.get("messages"), list):
        messages = []
        for message in body["messages"]:
            if isinstance(message, dict):
                message = dict(message)
                if isinstance(message.get("tool_calls"), list):
                    message["tool_calls"] = [
                        {**call, "id": positional(call.get("id"))}
                        if isinstance(call, dict)
                        else call
                        for call in message["tool_calls"]
                    ]
                if "tool_call_id" in message:
                    message["tool_call_id"] = positional(message["tool_call_id"])
            messages.append(message)
        body = {**body, "messages": messages}
    if isinstance(body.get("input"), list):
        body = {
            **body,
            "input": [
                {**item, "call_id": positional(item["call_id"])}
                if isinstance(item, dict) and "call_id" in item
                else item
                for item in body["input"]
            ],
        }
    return body


def match_json_body(r1: VcrRequest, r2: VcrRequest) -> None:
    """vcrpy matcher: bodies equal as parsed JSON (key order and spacing do not count),
    tool-call ids compared by position (see `_with_positional_tool_call_ids`)."""
    if _json_body(r1) != _json_body(r2):
        raise AssertionError("request bodies differ")


class _SafeYaml:
    """vcrpy's serializer interface over PyYAML's safe dumper and loader."""

    @staticmethod
    def serialize(data: dict[str, Any]) -> str:
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=True, width=100)

    @staticmethod
    def deserialize(text: str) -> Any:
        return yaml.safe_load(text)


class GzipYamlSerializer:
    """vcrpy serializer for `CustomPersister`: bytes in, bytes out (gzip of safe YAML)."""

    @staticmethod
    def serialize(cassette: dict[str, Any]) -> bytes:
        # vcrpy's conversion of bodies to text works in place: convert a copy.
        responses = copy.deepcopy(cassette["responses"])
        text = vcr_serialize({"requests": cassette["requests"], "responses": responses}, _SafeYaml)
        return gzip.compress(text.encode("utf-8"), mtime=0)

    @staticmethod
    def deserialize(data: bytes) -> dict[str, Any]:
        requests, responses = vcr_deserialize(gzip.decompress(data).decode("utf-8"), _SafeYaml)
        return {"requests": requests, "responses": responses}


def register(vcr: VCR) -> VCR:
    """Teach `vcr` the names `VCR_OPTIONS` uses: the serializer, persister and matcher."""
    vcr.register_persister(CustomPersister())
    vcr.register_serializer("yaml.gz", GzipYamlSerializer())
    vcr.register_matcher("json_body", match_json_body)
    return vcr


VCR_OPTIONS: dict[str, Any] = {
    "serializer": "yaml.gz",
    "path_transformer": VCR.ensure_suffix(".yaml.gz"),
    "match_on": ["method", "path", "json_body"],
    "before_record_request": scrub_request,
    "before_record_response": scrub_response,
    "decode_compressed_response": True,
    "allow_playback_repeats": False,
}
"""How every cassette is written and matched (the record mode is set per run)."""


def cassette_text(path: Path) -> str:
    """A cassette file as text, decompressed if it is gzipped."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8", "replace")

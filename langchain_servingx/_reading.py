"""Reading answers: bodies under a size cap, JSON objects, and server-sent event streams.

The transport's I/O-free half: it decides what a 2xx body or an SSE event means (a result,
an error sent with a 2xx status, a stream cut short) and raises typed errors; the transport
feeds it bytes and events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent

from langchain_servingx._decoding import MalformedAnswer, loads
from langchain_servingx._errors import (
    ServingError,
    ServingResponseError,
    ServingStreamError,
    ServingTimeoutError,
    error_from_response,
    request_id_from,
)
from langchain_servingx.protocols.streams import CHAT, StreamRule

__all__ = ["SERVED_MODEL_KEY", "StreamReader"]


class _BodyLimit:
    """Collect a body's chunks, refusing (or with `truncate`, cutting) past `limit` bytes."""

    __slots__ = ("chunks", "endpoint", "limit", "response", "size", "truncate")

    def __init__(
        self, response: httpx.Response, endpoint: str | None, limit: int, *, truncate: bool = False
    ) -> None:
        self.response = response
        self.endpoint = endpoint
        self.limit = limit
        self.truncate = truncate
        self.chunks: list[bytes] = []
        self.size = 0
        declared = response.headers.get("content-length", "")
        if not truncate and declared.isdigit() and int(declared) > limit:
            raise self._too_large(f"declares {int(declared)} bytes")

    def add(self, chunk: bytes) -> None:
        room = self.limit - self.size
        if len(chunk) > room:
            if not self.truncate:
                raise self._too_large(f"runs past {self.limit} bytes")
            chunk = chunk[: max(room, 0)]
        self.size += len(chunk)
        self.chunks.append(chunk)

    def body(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)

    def _too_large(self, what: str) -> ServingResponseError:
        return ServingResponseError(
            f"the answer body {what}, more than max_response_bytes={self.limit}: "
            "raise max_response_bytes, or ask for less (e.g. a smaller batch_size)",
            status_code=self.response.status_code,
            endpoint=self.endpoint,
        )


def _decode(body: bytes, response: httpx.Response, endpoint: str | None) -> dict[str, Any]:
    """The JSON object of a 2xx answer; an error body sent with a 2xx status is raised."""
    try:
        data = loads(body)
    except MalformedAnswer as exc:
        text = body[:200].decode(errors="replace")
        raise ServingResponseError(
            f"expected a JSON object, got {response.headers.get('content-type', 'no type')}: "
            f"{exc}: {text!r}",
            status_code=response.status_code,
            endpoint=endpoint,
        ) from None
    if not isinstance(data, dict):
        raise ServingResponseError(
            f"expected a JSON object, got {type(data).__name__}",
            status_code=response.status_code,
            endpoint=endpoint,
        )
    if _is_error(data) and "choices" not in data and "data" not in data:
        error = error_from_response(500, body.decode(errors="replace"), {}, endpoint=endpoint)
        raise ServingResponseError(
            f"the endpoint answered {response.status_code} with an error instead of a result: "
            f"{error.message}",
            status_code=response.status_code,
            error_code=error.error_code,
            endpoint=endpoint,
            request_id=request_id_from(response.headers),
        )
    return data


SERVED_MODEL_KEY = "served_model_name"
"""Where the `served-model-name` response header lands in the decoded body (or first chunk)."""


def _served(response: httpx.Response, data: dict[str, Any]) -> dict[str, Any]:
    served = response.headers.get("served-model-name")
    if served:
        data.setdefault(SERVED_MODEL_KEY, served)
    return data


def _event_source(response: httpx.Response, endpoint: str) -> EventSource:
    content_type = response.headers.get("content-type", "")
    if "text/event-stream" not in content_type:
        # The caller closes the response (a sync close would fail on an async one).
        raise ServingStreamError(
            f"asked for a stream but got {content_type or 'no content type'} "
            "(expected text/event-stream); does this endpoint support streaming?",
            status_code=response.status_code,
            endpoint=endpoint,
        )
    return EventSource(response)


_DONE: dict[str, Any] = {}


class StreamReader:
    """Turn SSE events into JSON chunks, and notice a stream that was cut short.

    Afterwards `done` says whether `[DONE]` arrived, `finished` whether a choice carried a
    `finish_reason`, and `usage` whether any chunk carried usage.
    """

    __slots__ = ("answered", "done", "endpoint", "finished", "rule", "served", "usage")

    def __init__(self, endpoint: str, rule: StreamRule = CHAT) -> None:
        self.endpoint = endpoint
        self.rule = rule
        self.finished = self.done = self.answered = self.usage = False
        self.served: str | None = None  # the served-model-name header, set on the response

    def feed(self, event: ServerSentEvent) -> dict[str, Any] | None:
        data = event.data
        if not data:
            return None
        if data.strip() == "[DONE]":
            if not self.answered:
                raise ServingStreamError(
                    f"the stream ended with [DONE] before any {self.rule.answer} arrived: "
                    "no answer",
                    endpoint=self.endpoint,
                )
            self.done = True
            return _DONE
        try:
            chunk = loads(data)
        except MalformedAnswer as exc:
            raise ServingStreamError(
                f"stream event is not JSON ({exc}): {data[:200]!r}", endpoint=self.endpoint
            ) from None
        if not isinstance(chunk, dict):
            raise ServingStreamError(
                f"stream event is not a JSON object: {data[:200]!r}", endpoint=self.endpoint
            )
        failure = chunk if event.event == "error" else self.rule.error(chunk)
        if failure is not None:
            error = error_from_response(500, json.dumps(failure), {}, endpoint=self.endpoint)
            raise ServingStreamError(
                f"the server reported an error mid-stream: {error.message}",
                error_code=error.error_code,
                endpoint=self.endpoint,
            )
        if self.rule.answers(chunk):
            self.answered = True
        if self.rule.completes(chunk):
            self.finished = True
        if chunk.get("usage"):
            self.usage = True
        if self.served:  # the first chunk carries the served-model-name header
            chunk.setdefault(SERVED_MODEL_KEY, self.served)
            self.served = None
        return chunk

    def finish(self) -> None:
        if not self.finished:
            raise ServingStreamError(
                f"{self.rule.name} stream ended without {self.rule.missing_end}: "
                "the answer may be cut short",
                endpoint=self.endpoint,
            )

    def broken(self, exc: Exception) -> ServingError:
        if isinstance(exc, httpx.TimeoutException):
            return ServingTimeoutError(
                f"stream stalled past the read timeout ({type(exc).__name__})",
                endpoint=self.endpoint,
            )
        return ServingStreamError(
            f"stream broke off ({type(exc).__name__}: {exc})", endpoint=self.endpoint
        )


def _is_error(chunk: Mapping[str, Any]) -> bool:
    return bool(chunk.get("error") or chunk.get("error_code") or chunk.get("external_model_error"))

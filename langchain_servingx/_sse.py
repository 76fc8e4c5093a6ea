"""Server-sent events: JSON chunks out of a stream, and the stream rules of the contract.

A stream must carry `text/event-stream`, deliver at least one choice, and end with `[DONE]`
or after a `finish_reason`; an error event (or an error object instead of a chunk) raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent

from langchain_servingx._decoding import MalformedAnswer, loads
from langchain_servingx._errors import (
    ServingError,
    ServingStreamError,
    ServingTimeoutError,
    error_from_response,
)

__all__ = ["DONE", "StreamReader", "event_source", "is_error"]


def event_source(response: httpx.Response, endpoint: str) -> EventSource:
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


DONE: dict[str, Any] = {}


class StreamReader:
    """Turn SSE events into JSON chunks, and notice a stream that was cut short.

    Afterwards `done` says whether `[DONE]` arrived, `finished` whether a choice carried a
    `finish_reason`, and `usage` whether any chunk carried usage.
    """

    __slots__ = ("answered", "done", "endpoint", "finished", "usage")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.finished = self.done = self.answered = self.usage = False

    def feed(self, event: ServerSentEvent) -> dict[str, Any] | None:
        data = event.data
        if not data:
            return None
        if data.strip() == "[DONE]":
            if not self.answered:
                raise ServingStreamError(
                    "the stream ended with [DONE] before any choice arrived: no answer",
                    endpoint=self.endpoint,
                )
            self.done = True
            return DONE
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
        if event.event == "error" or ("choices" not in chunk and is_error(chunk)):
            error = error_from_response(500, data, {}, endpoint=self.endpoint)
            raise ServingStreamError(
                f"the server reported an error mid-stream: {error.message}",
                error_code=error.error_code,
                endpoint=self.endpoint,
            )
        choices = chunk.get("choices")
        if choices and isinstance(choices, list):
            self.answered = True
            if any(isinstance(c, Mapping) and c.get("finish_reason") for c in choices):
                self.finished = True
        if chunk.get("usage"):
            self.usage = True
        return chunk

    def finish(self) -> None:
        if not self.finished:
            raise ServingStreamError(
                "stream ended without [DONE] or a finish_reason: the answer may be cut short",
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


def is_error(chunk: Mapping[str, Any]) -> bool:
    return bool(chunk.get("error") or chunk.get("error_code") or chunk.get("external_model_error"))

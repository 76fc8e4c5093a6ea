"""When a stream is complete, and when an event is an error: one rule per wire protocol.

LangChain-free, shared by the transport's stream reader (which raises on a stream cut
short or an error mid-stream) and the local endpoint (which emits the same events).

Every serving endpoint ends a stream with ``data: [DONE]``; the rules below say what
else marks a complete answer, because a stream can also end without it:

- chat completions (``llm/v1/chat``, ``agent/v1/chat``): a choice with a ``finish_reason``;
- Responses (``agent/v1/responses``): ``response.completed`` or ``response.incomplete``
  (there is no ``finish_reason``); ``error`` and ``response.failed`` events are errors;
- ChatAgent (``agent/v2/chat``): a chunk with a ``finish_reason`` (chunks carry a
  top-level ``delta`` and no ``choices``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "CHAT",
    "CHAT_AGENT",
    "RESPONSES",
    "RESPONSES_TERMINAL_EVENTS",
    "StreamRule",
]

RESPONSES_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete"})
_ERROR_KEYS = ("error", "error_code", "external_model_error")


class StreamRule:
    """The end-of-stream and error rule of one protocol (chat completions by default)."""

    name = "chat completions"
    missing_end = "[DONE] or a finish_reason"
    answer = "choice"

    def error(self, chunk: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The error body carried by `chunk`, if it reports one."""
        if "choices" not in chunk and _carries_error(chunk):
            return chunk
        return None

    def answers(self, chunk: Mapping[str, Any]) -> bool:
        """Whether `chunk` carries part of an answer (a `[DONE]` before any is no answer)."""
        choices = chunk.get("choices")
        return isinstance(choices, list) and bool(choices)

    def completes(self, chunk: Mapping[str, Any]) -> bool:
        """Whether `chunk` marks the answer as complete."""
        choices = chunk.get("choices")
        return isinstance(choices, list) and any(
            isinstance(c, Mapping) and c.get("finish_reason") for c in choices
        )


class _ResponsesRule(StreamRule):
    name = "Responses"
    missing_end = "[DONE] or a response.completed event"
    answer = "event"

    def error(self, chunk: Mapping[str, Any]) -> Mapping[str, Any] | None:
        kind = chunk.get("type")
        if kind in ("error", "response.error"):
            inner = chunk.get("error")
            return inner if isinstance(inner, Mapping) else chunk
        if kind == "response.failed":
            response = chunk.get("response")
            failure = response.get("error") if isinstance(response, Mapping) else None
            return failure if isinstance(failure, Mapping) else {"message": "response.failed"}
        if kind is None and _carries_error(chunk):
            return chunk  # the serving error format, written mid-stream
        return None

    def answers(self, chunk: Mapping[str, Any]) -> bool:
        return isinstance(chunk.get("type"), str)

    def completes(self, chunk: Mapping[str, Any]) -> bool:
        return chunk.get("type") in RESPONSES_TERMINAL_EVENTS


class _ChatAgentRule(StreamRule):
    name = "ChatAgent"
    answer = "delta"

    def error(self, chunk: Mapping[str, Any]) -> Mapping[str, Any] | None:
        if "delta" not in chunk and _carries_error(chunk):
            return chunk
        return None

    def answers(self, chunk: Mapping[str, Any]) -> bool:
        return isinstance(chunk.get("delta"), Mapping)

    def completes(self, chunk: Mapping[str, Any]) -> bool:
        return bool(chunk.get("finish_reason"))


def _carries_error(chunk: Mapping[str, Any]) -> bool:
    return any(chunk.get(key) for key in _ERROR_KEYS)


CHAT = StreamRule()
RESPONSES: StreamRule = _ResponsesRule()
CHAT_AGENT: StreamRule = _ChatAgentRule()

"""What every wire protocol provides, and which protocol an endpoint's task needs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult

from langchain_servingx.contract import Task
from langchain_servingx.protocols.streams import StreamRule

__all__ = ["API_OF_TASK", "Api", "ApiName", "StreamAssembly", "WireProtocol", "protocol_for"]

Api = Literal["auto", "chat", "responses", "chat_agent"]
"""`ChatServing(api=...)`: `"auto"` reads the endpoint's task; the others force a protocol."""
ApiName = Literal["chat", "responses", "chat_agent"]

API_OF_TASK: dict[str, ApiName] = {
    "llm/v1/chat": "chat",
    "agent/v1/chat": "chat",
    "agent/v2/chat": "chat_agent",
    "agent/v1/responses": "responses",
}
"""The protocol each serving task speaks; any other task (or none, on custom models) is chat."""


class StreamAssembly(ABC):
    """Turns one stream's wire chunks into LangChain chunks (state lives for one stream)."""

    @abstractmethod
    def feed(self, chunk: Mapping[str, Any]) -> list[ChatGenerationChunk]:
        """The LangChain chunks one wire chunk yields (often none)."""

    @abstractmethod
    def final(self) -> ChatGenerationChunk:
        """The closing chunk: usage (once), metadata, anything held back until the end."""


class WireProtocol(ABC):
    """One request/response format of serving endpoints."""

    api: ApiName
    route: Task
    """The task the transport is told: it picks the OpenAI-compatible path, and explains a
    failed call when the endpoint serves another task."""
    rule: StreamRule

    @abstractmethod
    def body(
        self,
        messages: Sequence[BaseMessage],
        params: dict[str, Any],
        *,
        endpoint: str,
        stream: bool,
        stream_usage: bool,
    ) -> dict[str, Any]:
        """The request body for `messages` with call parameters in chat-completions names."""

    @abstractmethod
    def result(self, response: Mapping[str, Any], endpoint: str) -> ChatResult:
        """LangChain's result for one response body."""

    @abstractmethod
    def assembly(self, endpoint: str) -> StreamAssembly:
        """A fresh assembler for one stream."""


def protocol_for(api: ApiName) -> WireProtocol:
    """The protocol object for `api` (stateless, shared; looked up on every call)."""
    if not _PROTOCOLS:  # filled on first use: the protocol modules import this one
        from langchain_servingx.protocols.chat import CHAT_PROTOCOL
        from langchain_servingx.protocols.chat_agent import CHAT_AGENT_PROTOCOL
        from langchain_servingx.protocols.responses import RESPONSES_PROTOCOL

        _PROTOCOLS.update(
            chat=CHAT_PROTOCOL, responses=RESPONSES_PROTOCOL, chat_agent=CHAT_AGENT_PROTOCOL
        )
    return _PROTOCOLS[api]


_PROTOCOLS: dict[str, WireProtocol] = {}

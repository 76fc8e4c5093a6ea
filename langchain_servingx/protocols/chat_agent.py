"""The ChatAgent protocol: `agent/v2/chat` (MLflow `ChatAgent`).

Request: `{"messages": [...], "custom_inputs", "context"}`; answer: `{"messages": [assistant
and tool messages, each with an id], "custom_outputs", "usage"}`; stream chunks carry a
top-level `delta` message (deltas of one message share its id). The answer's messages are
read as Responses items (`agent_wire.messages_to_items`), so both agent protocols map onto LangChain
the same way (see `_items`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from langchain_servingx import contract
from langchain_servingx._errors import ServingResponseError
from langchain_servingx._messages import MODEL_PROVIDER, usage_from_wire
from langchain_servingx.protocols._items import (
    ItemMapper,
    closing_chunk,
    items_from_messages,
    message_from_items,
)
from langchain_servingx.protocols.agent_wire import items_to_messages, messages_to_items
from langchain_servingx.protocols.base import StreamAssembly, WireProtocol
from langchain_servingx.protocols.responses import agent_params
from langchain_servingx.protocols.streams import CHAT_AGENT

__all__ = ["CHAT_AGENT_PROTOCOL", "ChatAgentProtocol"]


# --------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------


class ChatAgentProtocol(WireProtocol):
    """ChatAgent requests and answers; no tools (a ChatAgent brings its own)."""

    api = "chat_agent"
    route = contract.AGENT_CHAT_V2
    rule = CHAT_AGENT

    def body(
        self,
        messages: Sequence[BaseMessage],
        params: dict[str, Any],
        *,
        endpoint: str,
        stream: bool,
        stream_usage: bool,
    ) -> dict[str, Any]:
        """`messages` in ChatAgent form, with `custom_inputs` / `context` as given."""
        body = agent_params(params, endpoint, "ChatAgent (agent/v2/chat)")
        if body.get("tools"):
            raise ValueError(
                f"endpoint {endpoint!r} is a ChatAgent (agent/v2/chat), which takes no tools "
                "from the caller; bind tools on a chat or Responses endpoint instead"
            )
        body.pop("tools", None)
        body.pop("tool_choice", None)
        body.pop("stream_options", None)
        body["messages"] = items_to_messages(items_from_messages(messages))
        return body

    def result(self, response: Mapping[str, Any], endpoint: str) -> ChatResult:
        """One generation holding every message of the answer."""
        messages = response.get("messages")
        if not isinstance(messages, list):
            raise ServingResponseError(
                f"ChatAgent answer has no messages list (keys: {sorted(response)}); "
                "is this an agent/v2/chat endpoint? (see ChatServing's api=)",
                endpoint=endpoint,
            )
        metadata: dict[str, Any] = {
            "model_name": endpoint,
            "model_provider": MODEL_PROVIDER,
            "id": response.get("id") or (messages[-1].get("id") if messages else None),
        }
        if response.get("finish_reason"):
            metadata["finish_reason"] = response["finish_reason"]
        if response.get("custom_outputs") is not None:
            metadata["custom_outputs"] = response["custom_outputs"]
        usage = usage_from_wire(response.get("usage"))
        message = message_from_items(messages_to_items(messages), metadata, usage)
        llm_output: dict[str, Any] = {"model_name": endpoint}
        if response.get("usage"):
            llm_output["token_usage"] = response["usage"]
        return ChatResult(
            generations=[
                ChatGeneration(
                    message=message, generation_info={"finish_reason": metadata["finish_reason"]}
                )
            ],
            llm_output=llm_output,
        )

    def assembly(self, endpoint: str) -> StreamAssembly:
        """An assembler of ChatAgent chunks."""
        return _ChatAgentAssembly(endpoint)


class _ChatAgentAssembly(StreamAssembly):
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.mapper = ItemMapper()
        self.indexes: dict[str, int] = {}
        self.next_index = 0
        self.usage: Mapping[str, Any] | None = None
        self.metadata: dict[str, Any] = {}

    def feed(self, chunk: Mapping[str, Any]) -> list[ChatGenerationChunk]:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if chunk.get("custom_outputs") is not None:
            self.metadata["custom_outputs"] = chunk["custom_outputs"]
        if chunk.get("finish_reason"):
            self.metadata["finish_reason"] = chunk["finish_reason"]
        delta = chunk.get("delta")
        if not isinstance(delta, Mapping):
            return []
        blocks: list[dict[str, Any]] = []
        message_id = str(delta.get("id") or "")
        if delta.get("role", "assistant") == "assistant" and isinstance(delta.get("content"), str):
            if delta["content"]:
                if message_id not in self.indexes:
                    self.indexes[message_id] = self._index()
                block = {
                    "type": "text",
                    "text": delta["content"],
                    "index": self.indexes[message_id],
                }
                if message_id:
                    block["id"] = message_id
                blocks.append(block)
            delta = {**delta, "content": None}
        for item in messages_to_items([delta]):
            for block in self.mapper.blocks(item):
                block["index"] = self._index()
                blocks.append(block)
        if not blocks:
            return []
        message = AIMessageChunk(
            content=blocks,
            response_metadata={"model_provider": MODEL_PROVIDER},
        )
        return [ChatGenerationChunk(message=message)]

    def _index(self) -> int:
        self.next_index += 1
        return self.next_index - 1

    def final(self) -> ChatGenerationChunk:
        usage = usage_from_wire(self.usage)
        return closing_chunk(self.endpoint, self.metadata, self.mapper.unanswered(), usage)


CHAT_AGENT_PROTOCOL = ChatAgentProtocol()

"""The Responses protocol: `agent/v1/responses` (MLflow `ResponsesAgent`, OpenAI Responses).

Request: `{"input": [items], "custom_inputs", "context", "tools", ...}`; answer:
`{"output": [items], "custom_outputs", "usage"}`; streams of typed events
(`response.output_text.delta`, `response.output_item.done`, `response.completed`, ...).
How items become content blocks is in `_items`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from langchain_servingx import contract
from langchain_servingx._errors import ServingResponseError
from langchain_servingx._messages import MODEL_PROVIDER
from langchain_servingx.protocols._items import (
    ItemMapper,
    closing_chunk,
    items_from_messages,
    message_from_items,
    usage_from_responses,
)
from langchain_servingx.protocols.base import StreamAssembly, WireProtocol
from langchain_servingx.protocols.streams import RESPONSES

__all__ = ["RESPONSES_PROTOCOL", "ResponsesProtocol", "agent_params"]

# Chat-completions parameter names that the Responses API spells differently.
_RENAMED = {"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens"}


def agent_params(params: dict[str, Any], endpoint: str, protocol: str) -> dict[str, Any]:
    """Check what every agent protocol shares: one answer, dict `custom_inputs`/`context`."""
    body = dict(params)
    if body.get("n") not in (None, 1):
        raise ValueError(
            f"endpoint {endpoint!r} speaks {protocol}, which returns one answer per request; "
            f"n={body['n']} is not possible"
        )
    body.pop("n", None)
    for key in ("custom_inputs", "context"):
        if key in body and body[key] is not None and not isinstance(body[key], Mapping):
            raise ValueError(
                f"{key} must be a dict (JSON object) for endpoint {endpoint!r}, "
                f"got {type(body[key]).__name__}"
            )
    return body


class ResponsesProtocol(WireProtocol):
    """Responses-shaped requests and answers; tools in the Responses format."""

    api = "responses"
    route = contract.AGENT_RESPONSES
    rule = RESPONSES

    def body(
        self,
        messages: Sequence[BaseMessage],
        params: dict[str, Any],
        *,
        endpoint: str,
        stream: bool,
        stream_usage: bool,
    ) -> dict[str, Any]:
        """`input` items; chat-style tools, tool choice and response format translated."""
        body = {
            _RENAMED.get(k, k): v for k, v in agent_params(params, endpoint, "Responses").items()
        }
        body.pop("stream_options", None)
        if "tools" in body:
            body["tools"] = [_tool(tool) for tool in body["tools"]]
        if isinstance(body.get("tool_choice"), Mapping):
            choice = body["tool_choice"]
            if "function" in choice:
                body["tool_choice"] = {"type": "function", "name": choice["function"]["name"]}
        if "response_format" in body:
            body["text"] = {"format": _text_format(body.pop("response_format"))}
        body["input"] = items_from_messages(messages)
        return body

    def result(self, response: Mapping[str, Any], endpoint: str) -> ChatResult:
        """One generation: the whole output as one `AIMessage`."""
        output = response.get("output")
        if not isinstance(output, list):
            raise ServingResponseError(
                f"Responses answer has no output list (keys: {sorted(response)}); "
                "is this an agent/v1/responses endpoint? (see ChatServing's api=)",
                endpoint=endpoint,
            )
        metadata = _metadata(response, endpoint)
        usage = usage_from_responses(response.get("usage"))
        message = message_from_items(output, metadata, usage)
        info = {"finish_reason": metadata["finish_reason"]}
        llm_output = {"model_name": metadata["model_name"], "id": response.get("id")}
        if response.get("usage"):
            llm_output["token_usage"] = response["usage"]
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info=info)],
            llm_output=llm_output,
        )

    def assembly(self, endpoint: str) -> StreamAssembly:
        """An assembler of Responses stream events."""
        return ResponsesAssembly(endpoint)


def _tool(tool: Any) -> Any:
    """A chat-completions function tool in the Responses shape (others unchanged)."""
    if not isinstance(tool, Mapping) or tool.get("type") != "function" or "function" not in tool:
        return tool
    function = tool["function"]
    out = {"type": "function", "name": function["name"]}
    for key in ("description", "parameters", "strict"):
        if key in function:
            out[key] = function[key]
    out.setdefault("parameters", {"type": "object", "properties": {}})
    return out


def _text_format(response_format: Any) -> Any:
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        return {"type": "json_schema", **spec}
    return response_format


def _metadata(response: Mapping[str, Any], endpoint: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "model_name": response.get("model") or endpoint,
        "model_provider": MODEL_PROVIDER,
        "id": response.get("id"),
    }
    if response.get("status"):
        metadata["status"] = response["status"]
    if response.get("custom_outputs") is not None:
        metadata["custom_outputs"] = response["custom_outputs"]
    details = response.get("incomplete_details")
    if isinstance(details, Mapping) and details.get("reason") == "max_output_tokens":
        metadata["finish_reason"] = "length"
    return metadata


class ResponsesAssembly(StreamAssembly):
    """Responses events -> LangChain chunks, each step as it completes.

    Text and reasoning deltas stream as they come; a finished item that streamed no deltas
    (agents often send only `response.output_item.done`) arrives whole; a tool step shows
    once its output arrives; calls left unanswered become tool calls in the last chunk.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.mapper = ItemMapper()
        self.indexes: dict[tuple[str, str, int], int] = {}
        self.next_index = 0
        self.streamed: set[str] = set()  # item ids whose deltas were streamed
        self.items_done = 0
        self.usage: Mapping[str, Any] | None = None
        self.metadata: dict[str, Any] = {}

    def _index(self, key: tuple[str, str, int] | None = None) -> int:
        if key is not None and key in self.indexes:
            return self.indexes[key]
        index = self.next_index
        self.next_index += 1
        if key is not None:
            self.indexes[key] = index
        return index

    def _chunk(self, blocks: list[dict[str, Any]]) -> list[ChatGenerationChunk]:
        if not blocks:
            return []
        message = AIMessageChunk(
            content=blocks,
            response_metadata={"model_provider": MODEL_PROVIDER},
            id=self.metadata.get("id"),
        )
        return [ChatGenerationChunk(message=message)]

    def feed(self, chunk: Mapping[str, Any]) -> list[ChatGenerationChunk]:
        """Blocks for one event; unknown events are ignored (they carry nothing new)."""
        kind = chunk.get("type")
        if chunk.get("custom_outputs") is not None:
            self.metadata["custom_outputs"] = chunk["custom_outputs"]
        response = chunk.get("response")
        if isinstance(response, Mapping):
            self._response_metadata(response)
        if kind in (
            "response.output_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_text.delta",
        ):
            return self._delta(
                chunk, "text" if kind == "response.output_text.delta" else "reasoning"
            )
        if kind == "response.output_item.done" and isinstance(chunk.get("item"), Mapping):
            self.items_done += 1
            return self._chunk(self._item_done(chunk["item"]))
        if kind in ("response.completed", "response.incomplete") and isinstance(response, Mapping):
            if response.get("usage"):
                self.usage = response["usage"]
            if not self.items_done:  # a server that sends only the completed response
                blocks = []
                for item in response.get("output") or ():
                    if isinstance(item, Mapping):
                        blocks += self._item_done(item)
                return self._chunk(blocks)
        return []

    def _response_metadata(self, response: Mapping[str, Any]) -> None:
        if response.get("id") and "id" not in self.metadata:
            self.metadata["id"] = response["id"]
        if response.get("model"):
            self.metadata["model_name"] = response["model"]
        if response.get("status"):
            self.metadata["status"] = response["status"]
        if response.get("custom_outputs") is not None:
            self.metadata["custom_outputs"] = response["custom_outputs"]
        details = response.get("incomplete_details")
        if isinstance(details, Mapping) and details.get("reason") == "max_output_tokens":
            self.metadata["finish_reason"] = "length"

    def _delta(self, event: Mapping[str, Any], kind: str) -> list[ChatGenerationChunk]:
        delta = event.get("delta")
        if not isinstance(delta, str) or not delta:
            return []
        item_id = str(event.get("item_id") or "")
        part = event.get("summary_index", event.get("content_index")) or 0
        self.streamed.add(item_id)
        index = self._index((item_id, kind, int(part)))
        field = "text" if kind == "text" else "reasoning"
        block: dict[str, Any] = {"type": kind, field: delta, "index": index}
        if item_id:
            block["id"] = item_id
        return self._chunk([block])

    def _item_done(self, item: Mapping[str, Any]) -> list[dict[str, Any]]:
        item_id = str(item.get("id") or "")
        blocks = self.mapper.blocks(item)
        if item_id and item_id in self.streamed:
            # Its text already streamed: only what deltas do not carry is added.
            extra = []
            for part, block in enumerate(blocks):
                kind = str(block["type"])
                key = (item_id, kind, part if kind == "text" else 0)
                if block.get("extras") and key in self.indexes:
                    extra.append(
                        {"type": kind, "index": self.indexes[key], "extras": block["extras"]}
                    )
            return extra
        for block in blocks:
            block["index"] = self._index()
        return blocks

    def final(self) -> ChatGenerationChunk:
        """Unanswered calls as tool calls, usage once, the response's metadata."""
        usage = usage_from_responses(self.usage)
        return closing_chunk(self.endpoint, self.metadata, self.mapper.unanswered(), usage)


RESPONSES_PROTOCOL = ResponsesProtocol()

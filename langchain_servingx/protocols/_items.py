"""Agent output items <-> LangChain content blocks, shared by the agent protocols.

An agent's answer is a list of Responses-shaped items (ChatAgent messages are turned into
the same items first). They map onto one `AIMessage`, in order and without loss:

- `message` items: `text` blocks (`id` = the item's id), so `.text` is the answer;
- `reasoning` items: `reasoning` blocks with the item's `id` and `encrypted_content`;
- a `function_call` whose `function_call_output` is in the same answer is a step the agent
  already ran: a standard `server_tool_call` block and a `server_tool_result` block, so
  the steps show in `content_blocks` and go back whole in the next turn;
- a `function_call` left unanswered is for the caller to run: a `tool_calls` entry (this is
  what lets an agent endpoint be the model of a LangChain agent);
- any other item (MCP approvals, web search calls, ...): a `non_standard` block holding it.

Going back, the same blocks become input items again (ids and encrypted content intact).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers.openai_tools import make_invalid_tool_call, parse_tool_call
from langchain_core.outputs import ChatGenerationChunk

from langchain_servingx._messages import MODEL_PROVIDER, usage_from_wire

__all__ = [
    "ItemMapper",
    "caller_tool_call",
    "closing_chunk",
    "items_from_messages",
    "text_of",
    "usage_from_responses",
]

Block = dict[str, Any]


# --------------------------------------------------------------------------------------
# Incoming: items -> blocks
# --------------------------------------------------------------------------------------


class ItemMapper:
    """Maps items to blocks one at a time (streams see them one by one).

    Function calls are held back until their output arrives: only then is it known
    whether the agent ran the call itself (a server tool step) or hands it to the caller.
    """

    def __init__(self) -> None:
        self.pending: dict[str, Mapping[str, Any]] = {}

    def blocks(self, item: Mapping[str, Any]) -> list[Block]:
        """The blocks `item` contributes now (a function call contributes none yet)."""
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            return _message_blocks(item)
        if kind == "reasoning":
            return reasoning_blocks(item)
        if kind == "function_call":
            self.pending[str(item.get("call_id") or item.get("id") or "")] = item
            return []
        if kind == "function_call_output":
            call_id = str(item.get("call_id") or "")
            blocks = []
            if (call := self.pending.pop(call_id, None)) is not None:
                blocks.append(_server_call_block(call))
            blocks.append(_server_result_block(item))
            return blocks
        return [{"type": "non_standard", "value": dict(item)}]

    def unanswered(self) -> list[Mapping[str, Any]]:
        """Function calls with no output: the caller's to run."""
        calls = list(self.pending.values())
        self.pending.clear()
        return calls


def _message_blocks(item: Mapping[str, Any]) -> list[Block]:
    content = item.get("content")
    if isinstance(content, str):
        content = [{"type": "output_text", "text": content}]
    blocks: list[Block] = []
    for part in content or ():
        if not isinstance(part, Mapping):
            continue
        if part.get("type") in ("output_text", "text", "input_text"):
            block: Block = {"type": "text", "text": part.get("text") or ""}
            if item.get("id"):
                block["id"] = item["id"]
            if part.get("annotations"):
                block["extras"] = {"annotations": part["annotations"]}
            blocks.append(block)
        else:  # a refusal, or a part type we do not know: kept whole
            blocks.append({"type": "non_standard", "value": {"item_id": item.get("id"), **part}})
    return blocks


def reasoning_blocks(item: Mapping[str, Any]) -> list[Block]:
    """One `reasoning` block per summary part (one, empty, when there is no summary)."""
    extras = (
        {"encrypted_content": item["encrypted_content"]} if item.get("encrypted_content") else {}
    )
    parts = [p for p in item.get("summary") or () if isinstance(p, Mapping)]
    texts = [str(p.get("text") or "") for p in parts] or [""]
    blocks: list[Block] = []
    for i, text in enumerate(texts):
        block: Block = {"type": "reasoning", "reasoning": text}
        if item.get("id"):
            block["id"] = item["id"]
        if i == 0 and extras:
            block["extras"] = dict(extras)
        blocks.append(block)
    return blocks


def _arguments(raw: Any) -> tuple[dict[str, Any], str | None]:
    """Parsed arguments, and the raw string when it is not a JSON object."""
    if isinstance(raw, Mapping):
        return dict(raw), None
    try:
        parsed = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return {}, str(raw)
    return (parsed, None) if isinstance(parsed, dict) else ({}, str(raw))


def _server_call_block(item: Mapping[str, Any]) -> Block:
    args, raw = _arguments(item.get("arguments"))
    block: Block = {
        "type": "server_tool_call",
        "id": str(item.get("call_id") or ""),
        "name": str(item.get("name") or ""),
        "args": args,
    }
    extras = {"item_id": item["id"]} if item.get("id") else {}
    if raw is not None:
        extras["arguments"] = raw
    if extras:
        block["extras"] = extras
    return block


def _server_result_block(item: Mapping[str, Any]) -> Block:
    block: Block = {
        "type": "server_tool_result",
        "tool_call_id": str(item.get("call_id") or ""),
        "status": "error" if item.get("status") == "error" else "success",
        "output": item.get("output"),
    }
    extras = {k: item[k] for k in ("id", "name") if item.get(k)}
    if extras:
        block["extras"] = {("item_id" if k == "id" else k): v for k, v in extras.items()}
    return block


def caller_tool_call(item: Mapping[str, Any]) -> ToolCall | InvalidToolCall:
    """A function call for the caller, as LangChain's tool call (invalid ones kept)."""
    arguments = item.get("arguments") or "{}"
    if isinstance(arguments, Mapping):
        arguments = json.dumps(arguments)
    raw = {
        "id": item.get("call_id") or item.get("id"),
        "function": {"name": item.get("name"), "arguments": arguments},
    }
    try:
        parsed = parse_tool_call(raw, return_id=True)
    except Exception as exc:
        return make_invalid_tool_call(raw, str(exc))
    return cast("ToolCall", parsed)


def closing_chunk(
    endpoint: str,
    metadata: dict[str, Any],
    calls: list[Mapping[str, Any]],
    usage: UsageMetadata | None,
) -> ChatGenerationChunk:
    """A stream's last chunk: calls left for the caller, usage once, the answer's metadata."""
    chunks = [
        tool_call_chunk(
            name=str(call.get("name") or ""),
            args=call["arguments"] if isinstance(call.get("arguments"), str) else "{}",
            id=str(call.get("call_id") or call.get("id") or ""),
            index=i,
        )
        for i, call in enumerate(calls)
    ]
    metadata = {"model_name": endpoint, **metadata, "model_provider": MODEL_PROVIDER}
    metadata.setdefault("finish_reason", "tool_calls" if calls else "stop")
    message = AIMessageChunk(
        content="",
        tool_call_chunks=chunks,
        usage_metadata=usage,
        response_metadata=metadata,
        chunk_position="last",
        id=metadata.get("id"),
    )
    return ChatGenerationChunk(
        message=message, generation_info={"finish_reason": metadata["finish_reason"]}
    )


def usage_from_responses(usage: Mapping[str, Any] | None) -> UsageMetadata | None:
    """Responses usage (`input_tokens`, ...) mapped like chat usage (cache as a detail)."""
    if not usage:
        return None
    if "prompt_tokens" in usage:  # ChatAgent and some servers report chat-style usage
        return usage_from_wire(usage)
    input_details = usage.get("input_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or {}
    return usage_from_wire(
        {
            "prompt_tokens": usage.get("input_tokens"),
            "completion_tokens": usage.get("output_tokens"),
            "total_tokens": usage.get("total_tokens"),
            "prompt_tokens_details": input_details,
            "completion_tokens_details": output_details,
        }
    )


def message_from_items(
    items: Iterable[Mapping[str, Any]],
    metadata: dict[str, Any],
    usage: UsageMetadata | None,
) -> AIMessage:
    """The `AIMessage` of a whole answer."""
    mapper = ItemMapper()
    content: list[str | Block] = []
    for item in items:
        if isinstance(item, Mapping):
            content.extend(mapper.blocks(item))
    tool_calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for call in mapper.unanswered():
        parsed = caller_tool_call(call)
        if parsed.get("type") == "invalid_tool_call":
            invalid.append(cast("InvalidToolCall", parsed))
        else:
            tool_calls.append(cast("ToolCall", parsed))
    metadata.setdefault("finish_reason", "tool_calls" if tool_calls or invalid else "stop")
    return AIMessage(
        content=content,
        tool_calls=tool_calls,
        invalid_tool_calls=invalid,
        usage_metadata=usage,
        response_metadata=metadata,
        id=metadata.get("id"),
    )


# --------------------------------------------------------------------------------------
# Outgoing: messages -> items
# --------------------------------------------------------------------------------------


def text_of(content: str | list[str | dict[Any, Any]]) -> str:
    """The text of message content (text parts joined)."""
    if isinstance(content, str):
        return content
    return "".join(
        part if isinstance(part, str) else str(part.get("text") or "")
        for part in content
        if isinstance(part, str) or part.get("type") in ("text", "input_text", "output_text")
    )


def _user_content(content: str | list[str | dict[Any, Any]], position: int) -> Any:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, str):
            parts.append({"type": "input_text", "text": part})
            continue
        kind = part.get("type")
        if kind in ("text", "input_text"):
            parts.append({"type": "input_text", "text": part.get("text") or ""})
        elif kind in ("input_image", "input_file"):
            parts.append(dict(part))
        elif kind == "image_url":
            url = part["image_url"]
            parts.append({"type": "input_image", "image_url": url.get("url", url)})
        elif kind == "image" and part.get("url"):
            parts.append({"type": "input_image", "image_url": part["url"]})
        else:
            raise ValueError(
                f"message {position}: content block of type {kind!r} cannot be sent to an "
                "agent endpoint (expected text, input_image, input_file or image_url)"
            )
    if all(p["type"] == "input_text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def items_from_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """A conversation as Responses input items; earlier agent output goes back whole."""
    items: list[dict[str, Any]] = []
    for position, message in enumerate(messages):
        if isinstance(message, HumanMessage):
            items.append({"role": "user", "content": _user_content(message.content, position)})
        elif isinstance(message, SystemMessage):
            items.append({"role": "system", "content": text_of(message.content)})
        elif isinstance(message, AIMessage):
            items.extend(_assistant_items(message))
        elif isinstance(message, ToolMessage):
            output = message.content
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.tool_call_id,
                    "output": output if isinstance(output, str) else text_of(output),
                }
            )
        elif isinstance(message, ChatMessage):
            items.append({"role": message.role, "content": text_of(message.content)})
        else:
            raise ValueError(
                f"message {position} is a {type(message).__name__}, which agent endpoints "
                "cannot take; use SystemMessage, HumanMessage, AIMessage or ToolMessage"
            )
    return items


def _assistant_items(message: AIMessage) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    content = message.content
    blocks: list[str | dict[Any, Any]] = (
        [{"type": "text", "text": content}] if isinstance(content, str) else content
    )
    for raw in blocks:
        block: dict[str, Any] = {"type": "text", "text": raw} if isinstance(raw, str) else raw
        kind = block.get("type")
        last = items[-1] if items else None
        if kind == "text":
            text = block.get("text") or ""
            if not block.get("id"):
                if text:
                    items.append({"role": "assistant", "content": text})
                continue
            part = {"type": "output_text", "text": text, "annotations": _annotations(block)}
            if last is not None and last.get("type") == "message" and last["id"] == block["id"]:
                last["content"].append(part)
            else:
                items.append(
                    {"type": "message", "id": block["id"], "role": "assistant", "content": [part]}
                )
        elif kind == "reasoning" and block.get("id"):
            summary = (
                [{"type": "summary_text", "text": block["reasoning"]}]
                if block.get("reasoning")
                else []
            )
            extras = block.get("extras") or {}
            if last is not None and last.get("type") == "reasoning" and last["id"] == block["id"]:
                last["summary"].extend(summary)
            else:
                last = {"type": "reasoning", "id": block["id"], "summary": summary}
                items.append(last)
            if extras.get("encrypted_content"):
                last["encrypted_content"] = extras["encrypted_content"]
        elif kind == "server_tool_call":
            extras = block.get("extras") or {}
            item = {
                "type": "function_call",
                "call_id": block["id"],
                "name": block["name"],
                "arguments": extras.get("arguments") or json.dumps(block.get("args") or {}),
            }
            if extras.get("item_id"):
                item["id"] = extras["item_id"]
            items.append(item)
        elif kind == "server_tool_result":
            output = block.get("output")
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": block["tool_call_id"],
                    "output": output if isinstance(output, str) else json.dumps(output),
                }
            )
        elif kind == "non_standard" and isinstance(block.get("value"), Mapping):
            value = block["value"]
            if "item_id" not in value:  # a whole item we could not map: back as it came
                items.append(dict(value))
        # unsigned or id-less reasoning, tool-call blocks (sent below): nothing to replay
    for call in message.tool_calls:
        items.append(
            {
                "type": "function_call",
                "call_id": call["id"],
                "name": call["name"],
                "arguments": json.dumps(call["args"]),
            }
        )
    for bad in message.invalid_tool_calls:
        items.append(
            {
                "type": "function_call",
                "call_id": bad.get("id"),
                "name": bad.get("name"),
                "arguments": bad.get("args") or "",
            }
        )
    return items


def _annotations(block: Mapping[str, Any]) -> list[Any]:
    extras = block.get("extras") or {}
    return list(extras.get("annotations") or ())

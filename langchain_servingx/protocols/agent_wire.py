"""ChatAgent messages <-> Responses items: LangChain-free, shared with the local endpoint.

A ChatAgent's messages are chat-completions shaped (`role`, `content`, `tool_calls`,
`tool_call_id`, `name`), so `items_to_messages` also turns Responses input into the
messages a chat model takes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["items_to_messages", "messages_to_items"]


def messages_to_items(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """An answer's ChatAgent messages as Responses output items (ids kept)."""
    items: list[dict[str, Any]] = []
    for message in messages:
        role, message_id = message.get("role"), message.get("id")
        if role == "tool":
            item = {
                "type": "function_call_output",
                "call_id": message.get("tool_call_id"),
                "output": message.get("content") or "",
            }
            items.append({**item, "id": message_id, "name": message.get("name")})
            continue
        if message.get("content"):
            items.append(
                {
                    "type": "message",
                    "id": message_id,
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": message["content"]}],
                }
            )
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            items.append(
                {
                    "type": "function_call",
                    "id": message_id,
                    "call_id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments") or "{}",
                }
            )
    return items


def items_to_messages(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Responses input items as ChatAgent messages (tool messages carry their tool's name)."""
    messages: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for item in items:
        kind = item.get("type", "message")
        if kind == "message" and "role" in item:
            content = item.get("content")
            if isinstance(content, list):
                content = "".join(str(p.get("text") or "") for p in content)
            out = {"role": item["role"], "content": content}
            _merge_or_append(messages, out, item.get("id"))
        elif kind == "function_call":
            call_id = str(item.get("call_id") or "")
            names[call_id] = str(item.get("name") or "")
            call = {
                "id": call_id,
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"},
            }
            last = messages[-1] if messages else {}
            same = last.get("role") == "assistant" and "tool_calls" in last
            if same and item.get("id") and last.get("id") == item.get("id"):
                last["tool_calls"].append(call)
            else:
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
                if item.get("id"):
                    message["id"] = item["id"]
                messages.append(message)
        elif kind == "function_call_output":
            call_id = str(item.get("call_id") or "")
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "content": output if isinstance(output, str) else json.dumps(output),
                    "tool_call_id": call_id,
                    "name": str(item.get("name") or names.get(call_id) or "tool"),
                }
            )
        # reasoning and other items have no ChatAgent form: a ChatAgent never made them
    return messages


def _merge_or_append(messages: list[dict[str, Any]], message: dict[str, Any], mid: Any) -> None:
    last = messages[-1] if messages else None
    if mid and last is not None and last.get("id") == mid and isinstance(last.get("content"), str):
        last["content"] += message["content"] or ""
        return
    if mid:
        message["id"] = mid
    messages.append(message)

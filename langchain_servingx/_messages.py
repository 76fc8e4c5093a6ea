"""LangChain messages <-> the wire's chat dicts, content blocks and usage.

Outgoing: every LangChain message kind and content form (strings, OpenAI parts, v0 and v1
LangChain blocks, images, reasoning with signatures) becomes the contract's chat dicts.
Incoming: answers and stream deltas become `AIMessage`s whose reasoning and text are
separate standard blocks, tool calls are parsed without raising, and usage is mapped
without inflating `input_tokens`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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
    convert_to_openai_data_block,
    is_data_content_block,
)
from langchain_core.messages import content as types
from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata
from langchain_core.messages.block_translators import register_translator
from langchain_core.messages.tool import invalid_tool_call, tool_call_chunk
from langchain_core.output_parsers.openai_tools import make_invalid_tool_call, parse_tool_call

from langchain_servingx._decoding import (
    MalformedAnswer,
    expect_list,
    expect_object,
    json_type,
    token_count,
)
from langchain_servingx._errors import ServingInputError

__all__ = [
    "MODEL_PROVIDER",
    "StreamAssembler",
    "message_from_wire",
    "messages_to_wire",
    "usage_from_wire",
]

MODEL_PROVIDER = "servingx"

# --------------------------------------------------------------------------------------
# Outgoing: LangChain -> wire
# --------------------------------------------------------------------------------------


def messages_to_wire(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """Convert a conversation to the contract's `messages` list."""
    return [_message_to_wire(m, i) for i, m in enumerate(messages)]


def _message_to_wire(message: BaseMessage, position: int) -> dict[str, Any]:
    # `name` is never sent: some foundation-model endpoints reject it.
    if isinstance(message, HumanMessage):
        return {"role": "user", "content": _content_to_wire(message.content, position)}
    if isinstance(message, AIMessage):
        return _assistant_to_wire(message, position)
    if isinstance(message, SystemMessage):
        return {"role": "system", "content": _content_to_wire(message.content, position)}
    if isinstance(message, ToolMessage):
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "content": _tool_content_to_wire(message.content, position),
        }
    if isinstance(message, ChatMessage):
        return {"role": message.role, "content": _content_to_wire(message.content, position)}
    raise ServingInputError(
        f"message {position} is a {type(message).__name__}, which serving endpoints cannot "
        "take; use SystemMessage, HumanMessage, AIMessage, ToolMessage or ChatMessage"
    )


def _content_to_wire(content: str | list[str | dict[Any, Any]], position: int) -> Any:
    if isinstance(content, str):
        return content
    parts = [p for p in (_part_to_wire(b, position) for b in content) if p is not None]
    if all(p.get("type") == "text" for p in parts):
        # Plain text travels as a string: every endpoint takes that.
        return "".join(p["text"] for p in parts)
    return parts


def _part_to_wire(block: str | dict[str, Any], position: int) -> dict[str, Any] | None:
    if isinstance(block, str):
        return {"type": "text", "text": block}
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": _text_of(block, position)}
    if kind == "image_url":
        image = block.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        if not isinstance(url, str) or not url:
            raise ServingInputError(
                f"message {position}: an image_url block needs an 'image_url' with a 'url' "
                f"string, got {image!r}"
            )
        return {
            "type": "image_url",
            "image_url": image if isinstance(image, Mapping) else {"url": url},
        }
    if kind == "input_audio":
        audio = block.get("input_audio")
        if not isinstance(audio, Mapping) or not audio.get("data"):
            raise ServingInputError(
                f"message {position}: an input_audio block needs an 'input_audio' object "
                "with 'data' and 'format'"
            )
        return {"type": "input_audio", "input_audio": audio}
    if is_data_content_block(block):
        try:
            return convert_to_openai_data_block(block)
        except (ValueError, KeyError) as exc:
            raise ServingInputError(
                f"message {position}: unsupported {kind} block: {exc!s}"
            ) from None
    if kind in ("reasoning", "thinking", "tool_call", "tool_use", "tool_call_chunk"):
        return None  # only meaningful in assistant turns; handled there
    raise ServingInputError(
        f"message {position}: content block of type {kind!r} cannot be sent to a serving "
        "endpoint (expected text, image_url, image, file or input_audio)"
    )


def _assistant_to_wire(message: AIMessage, position: int) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": "assistant"}
    content = _assistant_content(message.content, position)
    if content:
        wire["content"] = content
    tool_calls = [_tool_call_to_wire(tc) for tc in message.tool_calls]
    tool_calls += [_invalid_tool_call_to_wire(tc) for tc in message.invalid_tool_calls]
    if tool_calls:
        wire["tool_calls"] = tool_calls
    elif "content" not in wire:
        wire["content"] = ""  # an empty answer without tool calls is still a turn
    return wire


def _assistant_content(content: str | list[str | dict[Any, Any]], position: int) -> Any:
    """Text as a string; reasoning kept (with its signature) only when it can be replayed."""
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, str):
            parts.append({"type": "text", "text": block})
        elif block.get("type") == "text":
            parts.append({"type": "text", "text": _text_of(block, position)})
        elif block.get("type") == "reasoning":
            replay = _reasoning_to_wire(block)
            if replay is not None:
                parts.append(replay)
        elif block.get("type") in ("tool_call", "tool_use", "tool_call_chunk"):
            continue  # carried by `tool_calls`
        elif block.get("type") in _AGENT_STEPS:
            continue  # an agent endpoint's own tool steps: nothing a chat model can take
        else:
            part = _part_to_wire(block, position)
            if part is not None:
                parts.append(part)
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _text_of(block: Mapping[str, Any], position: int) -> str:
    text = block.get("text", "")
    if not isinstance(text, str):
        raise ServingInputError(
            f"message {position}: a text block's 'text' is {type(text).__name__}, expected a string"
        )
    return text


_AGENT_STEPS = frozenset({"server_tool_call", "server_tool_call_chunk", "server_tool_result"})


def _reasoning_to_wire(block: dict[str, Any]) -> dict[str, Any] | None:
    extras = block.get("extras") or {}
    if "summary" in extras:  # a wire item we could not map: send it back untouched
        return {"type": "reasoning", "summary": [extras["summary"]]}
    signature = extras.get("signature")
    if not signature:
        return None  # unsigned reasoning may be omitted; signed must go back whole
    item = {"type": "summary_text", "text": block.get("reasoning", ""), "signature": signature}
    return {"type": "reasoning", "summary": [item]}


def _tool_call_to_wire(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call["id"],
        "type": "function",
        "function": {"name": call["name"], "arguments": json.dumps(call["args"])},
    }


def _invalid_tool_call_to_wire(call: InvalidToolCall) -> dict[str, Any]:
    return {
        "id": call.get("id"),
        "type": "function",
        "function": {"name": call.get("name"), "arguments": call.get("args") or ""},
    }


def _tool_content_to_wire(content: str | list[str | dict[Any, Any]], position: int) -> Any:
    if isinstance(content, str):
        return content
    wire = _content_to_wire(content, position)
    return wire if wire or not content else json.dumps(content)


# --------------------------------------------------------------------------------------
# Incoming: wire -> LangChain
# --------------------------------------------------------------------------------------


def message_from_wire(
    message: Any,
    response_metadata: dict[str, Any],
    usage: UsageMetadata | None,
    path: str = "message",
) -> AIMessage:
    """Build the `AIMessage` of one `choices[i].message`; `path` names it in errors.

    A malformed message raises `MalformedAnswer`; a tool call that cannot be parsed (no
    `function`, arguments that are not JSON) is kept as an invalid tool call.
    """
    message = expect_object(message, path)
    content = _content_from_wire(message.get("content"), streaming=False, path=f"{path}.content")
    tool_calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    raw_calls = expect_list(message.get("tool_calls"), f"{path}.tool_calls", optional=True)
    for i, raw in enumerate(raw_calls):
        where = f"{path}.tool_calls[{i}]"
        raw = expect_object(raw, where)
        if not isinstance(raw.get("function"), Mapping):
            call_id = raw.get("id")
            invalid.append(
                invalid_tool_call(
                    name=None,
                    args=None,
                    id=call_id if isinstance(call_id, str) else None,
                    error=f"{where} has no 'function' object "
                    f"(got {json_type(raw.get('function'))})",
                )
            )
            continue
        try:
            parsed = parse_tool_call(dict(raw), return_id=True)
        except Exception as exc:
            invalid.append(make_invalid_tool_call(dict(raw), str(exc)))
        else:
            if parsed is not None:
                tool_calls.append(cast("ToolCall", parsed))
    return AIMessage(
        content=content,
        tool_calls=tool_calls,
        invalid_tool_calls=invalid,
        usage_metadata=usage,
        response_metadata=response_metadata,
        id=response_metadata.get("id"),
    )


def _content_from_wire(
    content: Any, *, streaming: bool, path: str = "content"
) -> str | list[str | dict[str, Any]]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise MalformedAnswer(
            f"{path} is {json_type(content)}, expected a string or an array of parts"
        )
    blocks: list[str | dict[str, Any]] = []
    for j, item in enumerate(content):
        if isinstance(item, str):
            blocks.append({"type": "text", "text": item})
            continue
        item = expect_object(item, f"{path}[{j}]")
        if item.get("type") == "text":
            text = item.get("text")
            if text is not None and not isinstance(text, str):
                raise MalformedAnswer(f"{path}[{j}].text is {json_type(text)}, expected a string")
            blocks.append({"type": "text", "text": text or ""})
        elif item.get("type") == "reasoning":
            blocks.extend(_reasoning_from_wire(item))
        else:
            blocks.append({"type": "non_standard", "value": item})
    if not streaming and all(
        isinstance(b, dict) and b["type"] == "text" for b in blocks
    ):  # list of plain text parts: keep content a string
        return "".join(cast("dict[str, str]", b)["text"] for b in blocks)
    return blocks


def _reasoning_from_wire(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    summary = item.get("summary")
    if not isinstance(summary, list):  # some servers put the text at top level
        text = item.get("text") or item.get("reasoning") or ""
        return [{"type": "reasoning", "reasoning": text}]
    blocks: list[dict[str, Any]] = []
    for part in summary:
        if not isinstance(part, Mapping):
            continue
        if part.get("type", "summary_text") != "summary_text":
            blocks.append({"type": "reasoning", "reasoning": "", "extras": {"summary": part}})
            continue
        block: dict[str, Any] = {"type": "reasoning", "reasoning": part.get("text") or ""}
        if part.get("signature"):
            block["extras"] = {"signature": part["signature"]}
        blocks.append(block)
    return blocks


def usage_from_wire(usage: Any, path: str = "usage") -> UsageMetadata | None:
    """Map the contract's usage onto LangChain's, details as subsets of the totals.

    `prompt_tokens` already counts cached input, so cache figures are reported as details
    of `input_tokens` and never added to it. A count that is not a non-negative integer
    raises `MalformedAnswer`.
    """
    if usage is None:
        return None
    usage = expect_object(usage, path)
    if not usage:
        return None

    def count(key: str, source: Mapping[str, Any] = usage, where: str = path) -> int | None:
        value = source.get(key)
        if value is None or (type(value) is int and value >= 0):
            return value  # the usual case, checked without building the path
        return token_count(value, f"{where}.{key}")

    prompt = count("prompt_tokens") or 0
    completion = count("completion_tokens") or 0
    total = count("total_tokens") or prompt + completion
    details_path = f"{path}.prompt_tokens_details"
    prompt_details = expect_object(usage.get("prompt_tokens_details"), details_path, optional=True)
    completion_path = f"{path}.completion_tokens_details"
    completion_details = expect_object(
        usage.get("completion_tokens_details"), completion_path, optional=True
    )
    input_details: InputTokenDetails = {}
    cache_read = count("cache_read_input_tokens")
    if cache_read is None:
        cache_read = count("cached_tokens", prompt_details, details_path)
    if cache_read is not None:
        input_details["cache_read"] = cache_read
    cache_creation = count("cache_creation_input_tokens")
    if cache_creation is not None:
        input_details["cache_creation"] = cache_creation
    output_details: OutputTokenDetails = {}
    reasoning = count("reasoning_tokens")
    if reasoning is None:
        reasoning = count("reasoning_tokens", completion_details, completion_path)
    if reasoning is not None:
        output_details["reasoning"] = reasoning
    result = UsageMetadata(input_tokens=prompt, output_tokens=completion, total_tokens=total)
    if input_details:
        result["input_token_details"] = input_details
    if output_details:
        result["output_token_details"] = output_details
    return result


class StreamAssembler:
    """Turn one stream's chunks into `AIMessageChunk`s.

    Keeps what a single chunk cannot know: the block index (reasoning then text), tool names
    already seen (some servers repeat them in every delta), and the latest usage, which is
    emitted once at the end because servers either repeat a running total on every chunk or
    send one usage-only chunk.
    """

    __slots__ = ("_block", "_kind", "_list_mode", "_tool_names", "metadata", "usage")

    def __init__(self) -> None:
        self._block = -1
        self._kind: str | None = None
        self._list_mode = False
        self._tool_names: dict[int, str] = {}
        self.usage: Mapping[str, Any] | None = None
        self.metadata: dict[str, Any] = {}

    def feed(self, chunk: Mapping[str, Any]) -> list[tuple[int, AIMessageChunk]]:
        """Return `(choice index, message chunk)` pairs for one wire chunk.

        A chunk that does not fit the contract raises `MalformedAnswer`.
        """
        if chunk.get("usage"):
            self.usage = expect_object(chunk["usage"], "usage")
            usage_from_wire(self.usage)  # checked now, reported at the end
        if "id" in chunk and "id" not in self.metadata:
            self.metadata["id"] = chunk["id"]
        if chunk.get("model"):
            self.metadata["model_name"] = chunk["model"]
        if chunk.get("served_model_name"):  # the served-model-name header, from the transport
            self.metadata["served_model_name"] = chunk["served_model_name"]
        out: list[tuple[int, AIMessageChunk]] = []
        for c, choice in enumerate(expect_list(chunk.get("choices"), "choices", optional=True)):
            where = f"choices[{c}]"
            choice = expect_object(choice, where)
            delta = expect_object(choice.get("delta"), f"{where}.delta", optional=True)
            content = self._content(delta.get("content"), f"{where}.delta.content")
            calls = expect_list(delta.get("tool_calls"), f"{where}.delta.tool_calls", optional=True)
            tool_chunks = []
            for i, tc in enumerate(calls):
                tc_path = f"{where}.delta.tool_calls[{i}]"
                tc = expect_object(tc, tc_path)
                function = expect_object(tc.get("function"), f"{tc_path}.function", optional=True)
                tool_chunks.append(
                    tool_call_chunk(
                        name=self._tool_name(tc, function),
                        args=function.get("arguments"),
                        id=tc.get("id"),
                        index=tc.get("index", i),
                    )
                )
            metadata: dict[str, Any] = {"model_provider": MODEL_PROVIDER}
            if choice.get("finish_reason"):
                metadata["finish_reason"] = choice["finish_reason"]
            if choice.get("logprobs"):
                metadata["logprobs"] = choice["logprobs"]
            if not content and not tool_chunks and len(metadata) == 1:
                continue
            out.append(
                (
                    choice.get("index", 0),
                    AIMessageChunk(
                        content=content,
                        tool_call_chunks=tool_chunks,
                        response_metadata=metadata,
                        id=self.metadata.get("id"),
                    ),
                )
            )
        return out

    def final(self) -> AIMessageChunk:
        """The closing chunk: usage (once), model name, provider."""
        return AIMessageChunk(
            content="",
            usage_metadata=usage_from_wire(self.usage),
            response_metadata={**self.metadata, "model_provider": MODEL_PROVIDER},
            chunk_position="last",
            id=self.metadata.get("id"),
        )

    def _tool_name(self, delta: Mapping[str, Any], function: Mapping[str, Any]) -> str | None:
        name = function.get("name")
        index = delta.get("index", 0)
        if not name or self._tool_names.get(index) == name:
            return None  # a repeated name would be concatenated when chunks merge
        self._tool_names[index] = name
        return cast("str", name)

    def _content(self, content: Any, path: str) -> str | list[str | dict[str, Any]]:
        if content is None or content == "":
            return ""
        if isinstance(content, str) and not self._list_mode:
            return content
        blocks = (
            [{"type": "text", "text": content}]
            if isinstance(content, str)
            else _content_from_wire(content, streaming=True, path=path)
        )
        self._list_mode = True
        indexed: list[str | dict[str, Any]] = []
        for block in blocks:
            if not isinstance(block, dict):
                continue
            if block["type"] != self._kind or block["type"] == "non_standard":
                self._block += 1
                self._kind = block["type"]
            indexed.append({**block, "index": self._block})
        return indexed


# --------------------------------------------------------------------------------------
# Standard (v1) content blocks for our messages
# --------------------------------------------------------------------------------------


def _standard_blocks(message: AIMessage) -> list[types.ContentBlock]:
    """v1 blocks of a whole message: content, then tool calls (valid and invalid)."""
    blocks = _content_blocks(message)
    blocks += [
        types.ToolCall(type="tool_call", id=call["id"], name=call["name"], args=call["args"])
        for call in message.tool_calls
    ]
    blocks += [
        types.InvalidToolCall(
            type="invalid_tool_call",
            id=bad.get("id"),
            name=bad.get("name"),
            args=bad.get("args"),
            error=bad.get("error"),
        )
        for bad in message.invalid_tool_calls
    ]
    return blocks


def _standard_blocks_chunk(message: AIMessageChunk) -> list[types.ContentBlock]:
    """v1 blocks of a stream chunk: tool calls stay chunks until the last one."""
    if message.chunk_position == "last":
        return _standard_blocks(message)
    blocks = _content_blocks(message)
    for part in message.tool_call_chunks:
        block = types.ToolCallChunk(
            type="tool_call_chunk", id=part.get("id"), name=part.get("name"), args=part.get("args")
        )
        if part.get("index") is not None:
            # A namespace of their own: integers already number the text and reasoning
            # blocks, and blocks with equal indexes are merged when chunks are added
            # (core leaves "lc_"-prefixed string indexes unconcatenated).
            block["index"] = f"lc_tool_call_{part['index']}"
        blocks.append(block)
    return blocks


def _content_blocks(message: AIMessage) -> list[types.ContentBlock]:
    content = message.content
    if isinstance(content, str):
        return [types.TextContentBlock(type="text", text=content)] if content else []
    blocks: list[types.ContentBlock] = []
    for block in content:
        if isinstance(block, str):
            blocks.append(types.TextContentBlock(type="text", text=block))
        elif block.get("type") in ("text", "reasoning", "non_standard", *_AGENT_STEPS):
            blocks.append(cast("types.ContentBlock", block))
        else:
            blocks.append(types.NonStandardContentBlock(type="non_standard", value=block))
    return blocks


register_translator(MODEL_PROVIDER, _standard_blocks, _standard_blocks_chunk)

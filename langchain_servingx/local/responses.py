"""OpenAI-shaped response bodies and stream chunks, built from generated pieces.

A local engine produces :class:`Piece` objects (text, the opening of a tool call, a
finish reason) for each choice; the same pieces become either one response body or a
sequence of stream chunks, so streamed and non-streamed answers cannot drift apart.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from langchain_servingx.local.logprobs import TokenRecord, chat_logprobs, completion_logprobs

__all__ = [
    "Piece",
    "Usage",
    "chat_chunks",
    "chat_response",
    "completion_chunks",
    "completion_response",
    "new_id",
]


def new_id(prefix: str) -> str:
    """A fresh response or tool-call id."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


@dataclass
class Piece:
    """One step of a generated choice.

    ``call_name`` set means a tool call opens here (its arguments follow as ``text``);
    ``finish`` set means the choice is complete; ``logprobs`` (when the request asked for
    them) are the tokens sampled since the previous piece.
    """

    index: int
    text: str = ""
    call_name: str | None = None
    finish: str | None = None
    logprobs: list[TokenRecord] | None = None


@dataclass
class Usage:
    """Token counts, filled in by the engine while it generates."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def body(self) -> dict[str, int]:
        """The ``usage`` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


@dataclass
class _ChatChoice:
    content: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    finish: str | None = None
    logprobs: list[TokenRecord] | None = None

    def add_logprobs(self, piece: Piece) -> None:
        if piece.logprobs is not None:
            self.logprobs = (self.logprobs or []) + piece.logprobs


async def chat_response(
    pieces: AsyncGenerator[Piece, None], model: str, usage: Usage
) -> dict[str, Any]:
    """Collect every piece into one ``chat.completion`` body."""
    choices: dict[int, _ChatChoice] = {}
    async with aclosing(pieces):
        async for piece in pieces:
            choice = choices.setdefault(piece.index, _ChatChoice())
            choice.add_logprobs(piece)
            if piece.call_name is not None:
                choice.calls.append(
                    {
                        "id": new_id("call_"),
                        "type": "function",
                        "function": {"name": piece.call_name, "arguments": ""},
                    }
                )
            if piece.text:
                if choice.calls:
                    choice.calls[-1]["function"]["arguments"] += piece.text
                else:
                    choice.content.append(piece.text)
            if piece.finish:
                choice.finish = piece.finish
    body_choices = []
    for index in sorted(choices):
        choice = choices[index]
        message: dict[str, Any] = {"role": "assistant", "content": "".join(choice.content)}
        if choice.calls:
            message = {"role": "assistant", "content": None, "tool_calls": choice.calls}
        body_choices.append(
            {
                "index": index,
                "message": message,
                "finish_reason": choice.finish or "stop",
                "logprobs": None if choice.logprobs is None else chat_logprobs(choice.logprobs),
            }
        )
    return {
        "id": new_id("chatcmpl_"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": body_choices,
        "usage": usage.body(),
    }


async def chat_chunks(
    pieces: AsyncGenerator[Piece, None], model: str, usage: Usage, include_usage: bool
) -> AsyncGenerator[dict[str, Any], None]:
    """Stream ``chat.completion.chunk`` objects, OpenAI-shaped.

    The first delta of a choice carries the role; a tool call opens with index, id, type,
    name and empty arguments, then only argument fragments follow (the name is not
    repeated). Usage comes last, on a chunk with ``choices: []``.
    """
    chunk_id, created = new_id("chatcmpl_"), int(time.time())
    started: set[int] = set()
    calls: dict[int, int] = {}  # choice index -> number of tool calls opened

    def chunk(
        index: int,
        delta: dict[str, Any],
        finish: str | None = None,
        logprobs: list[TokenRecord] | None = None,
    ) -> dict[str, Any]:
        if index not in started:
            started.add(index)
            delta = {"role": "assistant", **delta}
        choice = {
            "index": index,
            "delta": delta,
            "finish_reason": finish,
            "logprobs": None if logprobs is None else chat_logprobs(logprobs),
        }
        return {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }

    async with aclosing(pieces):
        async for piece in pieces:
            if piece.call_name is not None:
                call_index = calls.get(piece.index, 0)
                calls[piece.index] = call_index + 1
                opening = {
                    "index": call_index,
                    "id": new_id("call_"),
                    "type": "function",
                    "function": {"name": piece.call_name, "arguments": ""},
                }
                yield chunk(piece.index, {"content": None, "tool_calls": [opening]})
            if piece.text:
                if piece.index in calls:
                    fragment = {
                        "index": calls[piece.index] - 1,
                        "function": {"arguments": piece.text},
                    }
                    yield chunk(piece.index, {"tool_calls": [fragment]}, None, piece.logprobs)
                else:
                    yield chunk(piece.index, {"content": piece.text}, None, piece.logprobs)
            if piece.finish:
                yield chunk(piece.index, {}, piece.finish)
    if include_usage:
        yield {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage.body(),
        }


async def completion_response(
    pieces: AsyncGenerator[Piece, None], model: str, usage: Usage
) -> dict[str, Any]:
    """Collect every piece into one ``text_completion`` body."""
    texts: dict[int, list[str]] = {}
    finishes: dict[int, str] = {}
    logprobs: dict[int, list[TokenRecord]] = {}
    async with aclosing(pieces):
        async for piece in pieces:
            texts.setdefault(piece.index, []).append(piece.text)
            if piece.logprobs is not None:
                logprobs.setdefault(piece.index, []).extend(piece.logprobs)
            if piece.finish:
                finishes[piece.index] = piece.finish
    return {
        "id": new_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "text": "".join(texts[i]),
                "index": i,
                "logprobs": completion_logprobs(logprobs[i]) if i in logprobs else None,
                "finish_reason": finishes.get(i, "stop"),
            }
            for i in sorted(texts)
        ],
        "usage": usage.body(),
    }


async def completion_chunks(
    pieces: AsyncGenerator[Piece, None], model: str, usage: Usage, include_usage: bool
) -> AsyncGenerator[dict[str, Any], None]:
    """Stream ``text_completion`` chunks (``choices[].text``), usage last."""
    chunk_id, created = new_id("cmpl-"), int(time.time())

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": chunk_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": choices,
        }

    offsets: dict[int, int] = {}  # text offset of each choice so far
    async with aclosing(pieces):
        async for piece in pieces:
            if piece.text or piece.finish:
                offset = offsets.get(piece.index, 0)
                offsets[piece.index] = offset + len(piece.text)
                logprobs = (
                    None if piece.logprobs is None else completion_logprobs(piece.logprobs, offset)
                )
                yield chunk(
                    [
                        {
                            "text": piece.text,
                            "index": piece.index,
                            "logprobs": logprobs,
                            "finish_reason": piece.finish,
                        }
                    ]
                )
    if include_usage:
        yield {**chunk([]), "usage": usage.body()}

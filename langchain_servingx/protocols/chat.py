"""Chat completions: `llm/v1/chat`, `agent/v1/chat` and OpenAI-compatible servers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from langchain_servingx import contract
from langchain_servingx._decoding import MalformedAnswer, answer_errors, expect_object
from langchain_servingx._errors import ServingResponseError
from langchain_servingx._messages import (
    MODEL_PROVIDER,
    StreamAssembler,
    message_from_wire,
    messages_to_wire,
    usage_from_wire,
)
from langchain_servingx._reading import SERVED_MODEL_KEY
from langchain_servingx.protocols.base import StreamAssembly, WireProtocol
from langchain_servingx.protocols.streams import CHAT

__all__ = ["CHAT_PROTOCOL", "ChatProtocol"]


class ChatProtocol(WireProtocol):
    """`{"messages": [...]}` in, `choices` out; streams of `chat.completion.chunk`."""

    api = "chat"
    route = contract.CHAT
    rule = CHAT

    def body(
        self,
        messages: Sequence[BaseMessage],
        params: dict[str, Any],
        *,
        endpoint: str,
        stream: bool,
        stream_usage: bool,
    ) -> dict[str, Any]:
        """Parameters as given, `messages` in the contract's chat dicts."""
        body = dict(params)
        body["messages"] = messages_to_wire(messages)
        if stream and stream_usage and "stream_options" not in body:
            body["stream_options"] = {"include_usage": True}
        return body

    def result(self, response: Mapping[str, Any], endpoint: str) -> ChatResult:
        """One generation per choice; an agent's `custom_outputs` in the metadata.

        Malformed answers raise `ServingResponseError` naming the part that is wrong.
        """
        with answer_errors(endpoint):
            choices = response.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ServingResponseError(
                    f"chat response has no choices (keys: {sorted(response)})", endpoint=endpoint
                )
            usage = usage_from_wire(response.get("usage"))
            model_name = response.get("model") or endpoint
            generations = []
            for i, choice in enumerate(choices):
                choice = expect_object(choice, f"choices[{i}]")
                if choice.get("message") is None:
                    raise MalformedAnswer(f"choices[{i}] has no 'message' (keys: {sorted(choice)})")
                metadata = {
                    "model_name": model_name,
                    "model_provider": MODEL_PROVIDER,
                    "finish_reason": choice.get("finish_reason"),
                    "id": response.get("id"),
                }
                if choice.get("logprobs"):
                    metadata["logprobs"] = choice["logprobs"]
                if response.get("custom_outputs") is not None:
                    metadata["custom_outputs"] = response["custom_outputs"]
                if response.get(SERVED_MODEL_KEY):
                    metadata[SERVED_MODEL_KEY] = response[SERVED_MODEL_KEY]
                message = message_from_wire(
                    choice["message"], metadata, usage, f"choices[{i}].message"
                )
                generations.append(
                    ChatGeneration(
                        message=message,
                        generation_info={"finish_reason": choice.get("finish_reason")},
                    )
                )
        llm_output = {"model_name": model_name, "id": response.get("id")}
        if response.get("usage"):
            llm_output["token_usage"] = response["usage"]
        return ChatResult(generations=generations, llm_output=llm_output)

    def assembly(self, endpoint: str) -> StreamAssembly:
        """An assembler of `chat.completion.chunk`s."""
        return _ChatAssembly(endpoint)


class _ChatAssembly(StreamAssembly):
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.assembler = StreamAssembler()
        self.custom_outputs: Any = None

    def feed(self, chunk: Mapping[str, Any]) -> list[ChatGenerationChunk]:
        if chunk.get("custom_outputs") is not None:
            self.custom_outputs = chunk["custom_outputs"]
        chunks = []
        with answer_errors(self.endpoint, stream=True):
            messages = self.assembler.feed(chunk)
        for index, message in messages:
            if index:  # LangChain streams one choice; n > 1 is for invoke
                continue
            info = (
                {"finish_reason": message.response_metadata["finish_reason"]}
                if ("finish_reason" in message.response_metadata)
                else None
            )
            chunks.append(ChatGenerationChunk(message=message, generation_info=info))
        return chunks

    def final(self) -> ChatGenerationChunk:
        self.assembler.metadata.setdefault("model_name", self.endpoint)
        if self.custom_outputs is not None:
            self.assembler.metadata["custom_outputs"] = self.custom_outputs
        return ChatGenerationChunk(message=self.assembler.final())


CHAT_PROTOCOL = ChatProtocol()

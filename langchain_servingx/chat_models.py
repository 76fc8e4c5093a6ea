"""`ChatServing`: LangChain's chat model interface on a serving endpoint's chat task."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.chat_models import (
    BaseChatModel,
    agenerate_from_stream,
    generate_from_stream,
)
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.base import OutputParserLike
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

from langchain_servingx import contract
from langchain_servingx._base import (
    GenerationFields,
    ServingClientBase,
    check_n,
    check_single_choice,
)
from langchain_servingx._errors import ServingResponseError
from langchain_servingx._messages import (
    MODEL_PROVIDER,
    StreamAssembler,
    message_from_wire,
    messages_to_wire,
    usage_from_wire,
)

__all__ = ["ChatServing"]

_ToolLike = dict[str, Any] | type | Callable[..., Any] | BaseTool
_SIMPLE_TOOL_CHOICES = {"auto": "auto", "none": "none", "required": "required", "any": "required"}


class ChatServing(ServingClientBase, GenerationFields, BaseChatModel):
    """Chat model on a serving endpoint (`llm/v1/chat`), e.g. a foundation or external model.

    Setup: set `DATABRICKS_HOST` and `DATABRICKS_TOKEN` (or OAuth client credentials, or a
    `~/.databrickscfg` profile), then:

    ```python
    from langchain_servingx import ChatServing

    llm = ChatServing(endpoint="databricks-claude-sonnet-4", max_tokens=512)
    llm.invoke("Why is the sky blue?")
    ```

    Invoke, stream, batch and their async forms are native; `bind_tools` and
    `with_structured_output` work in chains and agents. Parameters left unset are not sent,
    so the endpoint's own defaults apply (some models reject e.g. `temperature`).
    """

    stream_usage: bool = True
    """Ask for usage in streams (`stream_options.include_usage`) and report it once."""

    # ----------------------------------------------------------------------------------
    # Serializable and LangSmith hooks
    # ----------------------------------------------------------------------------------

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """Return True: `dumps` writes the configuration with secrets as references."""
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """Return the import path used by `langchain_core.load`."""
        return ["langchain_servingx", "chat_models"]

    @property
    def _llm_type(self) -> str:
        return "servingx-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, **self._default_params}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=MODEL_PROVIDER,
            ls_model_name=str(kwargs.get("model") or self.endpoint),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
        )
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        if stop := stop or kwargs.get("stop") or self.stop:
            params["ls_stop"] = stop
        return params

    # ----------------------------------------------------------------------------------
    # Request building
    # ----------------------------------------------------------------------------------

    def _request(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """Return the endpoint and body of one call; per-call kwargs win."""
        endpoint = self._endpoint_for(kwargs.pop("model", None))
        kwargs.pop("stream_usage", None)  # a client-side switch, never a body field
        body = self._default_params
        body.update(kwargs)
        if stop is not None:
            body["stop"] = stop
        check_n(body.get("n"), endpoint)
        body["messages"] = messages_to_wire(messages)
        return endpoint, body

    def _stream_request(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        stream_usage = kwargs.pop("stream_usage", self.stream_usage)
        endpoint, body = self._request(messages, stop, kwargs)
        check_single_choice(body, endpoint)
        if stream_usage and "stream_options" not in body:
            body["stream_options"] = {"include_usage": True}
        return endpoint, body

    # ----------------------------------------------------------------------------------
    # Answers
    # ----------------------------------------------------------------------------------

    def _result(self, response: Mapping[str, Any], endpoint: str) -> ChatResult:
        """Turn a `chat.completion` body into LangChain's result."""
        choices = response.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ServingResponseError(
                f"chat response has no choices (keys: {sorted(response)})", endpoint=endpoint
            )
        usage = usage_from_wire(response.get("usage"))
        model_name = response.get("model") or endpoint
        generations = []
        for choice in choices:
            metadata = {
                "model_name": model_name,
                "model_provider": MODEL_PROVIDER,
                "finish_reason": choice.get("finish_reason"),
                "id": response.get("id"),
            }
            if choice.get("logprobs"):
                metadata["logprobs"] = choice["logprobs"]
            message = message_from_wire(choice.get("message") or {}, metadata, usage)
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

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        endpoint, body = self._request(messages, stop, kwargs)
        return self._result(
            self.transport.invoke(contract.CHAT, endpoint, body, served_model=self.served_model),
            endpoint,
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))
        endpoint, body = self._request(messages, stop, kwargs)
        return self._result(
            await self.transport.ainvoke(
                contract.CHAT, endpoint, body, served_model=self.served_model
            ),
            endpoint,
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        endpoint, body = self._stream_request(messages, stop, kwargs)
        assembler = StreamAssembler()
        for wire_chunk in self.transport.stream(
            contract.CHAT, endpoint, body, served_model=self.served_model
        ):
            for chunk in _generation_chunks(assembler, wire_chunk):
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        yield _final_chunk(assembler, endpoint)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        endpoint, body = self._stream_request(messages, stop, kwargs)
        assembler = StreamAssembler()
        async for wire_chunk in self.transport.astream(
            contract.CHAT, endpoint, body, served_model=self.served_model
        ):
            for chunk in _generation_chunks(assembler, wire_chunk):
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        yield _final_chunk(assembler, endpoint)

    # ----------------------------------------------------------------------------------
    # Tools and structured output
    # ----------------------------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[_ToolLike],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools in the OpenAI function format.

        Args:
            tools: Pydantic models, TypedDicts, functions, LangChain tools or tool dicts.
            tool_choice: A tool name, `"auto"`, `"none"`, `"required"`, `"any"` or `True`
                (both mean `"required"`), or a wire dict.
            strict: Send `strict` in each definition (only GPT-backed endpoints accept it;
                left out unless set).
            parallel_tool_calls: Allow several calls in one turn; left out unless set.
            **kwargs: Further request parameters.

        """
        kwargs["tools"] = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        if tool_choice is not None and tool_choice is not False:
            kwargs["tool_choice"] = _tool_choice_to_wire(tool_choice, kwargs["tools"])
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(**kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["function_calling", "json_mode", "json_schema"] = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Return a runnable whose output follows `schema`.

        Args:
            schema: A Pydantic class, TypedDict, JSON schema or OpenAI tool dict (optional
                for `json_mode`).
            method: `"function_calling"` (a forced tool call), `"json_mode"`
                (`response_format: json_object`; describe the format in the prompt) or
                `"json_schema"` (`response_format: json_schema`, always with a `name`).
            include_raw: Also return the raw message and any parsing error.
            strict: Ask the endpoint to enforce the schema exactly (sent only when set).
            **kwargs: Not accepted; present for signature compatibility.

        """
        if kwargs:
            raise ValueError(f"with_structured_output got unsupported arguments {kwargs}")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        trace: dict[str, Any] = {
            "ls_structured_output_format": {"kwargs": {"method": method}, "schema": schema}
        }
        llm: Runnable[LanguageModelInput, BaseMessage]
        parser: OutputParserLike[Any]
        if method == "function_calling":
            if schema is None:
                raise ValueError("method='function_calling' needs a schema")
            tool = convert_to_openai_tool(schema)
            name = tool["function"]["name"]
            trace["ls_structured_output_format"]["schema"] = tool
            llm = self.bind_tools([schema], tool_choice=name, strict=strict, **trace)
            parser = (
                PydanticToolsParser(tools=[schema], first_tool_only=True)
                if is_pydantic
                else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
            )
        elif method == "json_mode":
            llm = self.bind(response_format={"type": "json_object"}, **trace)
            parser = (
                PydanticOutputParser(pydantic_object=schema)
                if is_pydantic
                else (JsonOutputParser())
            )
        elif method == "json_schema":
            if schema is None:
                raise ValueError("method='json_schema' needs a schema")
            llm = self.bind(response_format=_json_schema_format(schema, strict), **trace)
            parser = (
                PydanticOutputParser(pydantic_object=schema)
                if is_pydantic
                else (JsonOutputParser())
            )
        else:
            raise ValueError(
                f"method must be 'function_calling', 'json_mode' or 'json_schema', got {method!r}"
            )
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        ).with_fallbacks(
            [RunnablePassthrough.assign(parsed=lambda _: None)], exception_key="parsing_error"
        )
        return RunnableMap(raw=llm) | parsed


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _generation_chunks(
    assembler: StreamAssembler, wire_chunk: Mapping[str, Any]
) -> list[ChatGenerationChunk]:
    chunks = []
    for index, message in assembler.feed(wire_chunk):
        if index:  # LangChain streams one choice; n > 1 is for invoke
            continue
        info = (
            {"finish_reason": message.response_metadata["finish_reason"]}
            if ("finish_reason" in message.response_metadata)
            else None
        )
        chunks.append(ChatGenerationChunk(message=message, generation_info=info))
    return chunks


def _final_chunk(assembler: StreamAssembler, endpoint: str) -> ChatGenerationChunk:
    assembler.metadata.setdefault("model_name", endpoint)
    return ChatGenerationChunk(message=assembler.final())


def _tool_choice_to_wire(
    choice: dict[str, Any] | str | bool, tools: list[dict[str, Any]]
) -> dict[str, Any] | str:
    if isinstance(choice, dict):
        return choice
    if choice is True:
        return "required"
    if choice in _SIMPLE_TOOL_CHOICES:
        return _SIMPLE_TOOL_CHOICES[choice]
    names = [t["function"]["name"] for t in tools if "function" in t]
    if choice not in names:
        raise ValueError(f"tool_choice {choice!r} names no bound tool (bound: {names})")
    return {"type": "function", "function": {"name": choice}}


def _json_schema_format(schema: dict[str, Any] | type, strict: bool | None) -> dict[str, Any]:
    if isinstance(schema, dict) and "properties" in schema and "function" not in schema:
        json_schema = schema  # already a JSON schema: an untitled one is fine here
    else:
        json_schema = convert_to_json_schema(schema)
    # OpenAI-backed endpoints require a name matching ^[a-zA-Z0-9_-]{1,64}$.
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(json_schema.get("title") or "response"))[:64]
    spec: dict[str, Any] = {"name": name, "schema": json_schema}
    if description := json_schema.get("description"):
        spec["description"] = description
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}

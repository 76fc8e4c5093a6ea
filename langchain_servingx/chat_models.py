"""`ChatServing`: LangChain's chat model interface on a serving endpoint's chat task."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal, cast

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
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableMap, RunnablePassthrough
from langchain_core.runnables.config import get_config_list
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import PrivateAttr

from langchain_servingx._base import (
    GenerationFields,
    ServingClientBase,
    check_n,
    check_single_choice,
)
from langchain_servingx._direct import DirectBatch
from langchain_servingx._errors import ServingError, ServingInputError, ServingUsageWarning
from langchain_servingx._messages import MODEL_PROVIDER
from langchain_servingx._transport import StreamReader
from langchain_servingx.protocols.base import (
    API_OF_TASK,
    Api,
    ApiName,
    StreamAssembly,
    WireProtocol,
    protocol_for,
)

__all__ = ["ChatServing"]

logger = logging.getLogger("langchain_servingx")

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

    api: Api = "auto"
    """The wire protocol: `"auto"` reads the endpoint's task once (from the workspace's
    cached listing) and picks `"chat"` (`llm/v1/chat`, `agent/v1/chat`, and endpoints with
    no task), `"responses"` (`agent/v1/responses`) or `"chat_agent"` (`agent/v2/chat`);
    set it to skip the lookup."""

    _apis: dict[str, ApiName] = PrivateAttr(default_factory=dict)

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

    def _protocol(self, endpoint: str) -> WireProtocol:
        """The protocol `endpoint` speaks: `api`, or its task when `api="auto"`."""
        if self.api != "auto":
            return protocol_for(self.api)
        return protocol_for(self._apis.get(endpoint) or self._api_of(self._endpoint_task(endpoint)))

    async def _aprotocol(self, endpoint: str) -> WireProtocol:
        """Async `_protocol` (the listing is read without blocking the event loop)."""
        if self.api != "auto":
            return protocol_for(self.api)
        api = self._apis.get(endpoint) or self._api_of(await self._aendpoint_task(endpoint))
        return protocol_for(api)

    @staticmethod
    def _api_of(task: str | None) -> ApiName:
        return API_OF_TASK.get(task or "", "chat")

    def _endpoint_task(self, endpoint: str) -> str | None:
        """The endpoint's task from the workspace's cached listing; None when it cannot say."""
        if self.connection.transport.address.host is None:
            return None  # a base_url server: chat completions, and no listing to ask
        try:
            return self.connection.endpoint_task(endpoint)
        except ServingError as error:
            self._no_task(endpoint, error)
            return None

    async def _aendpoint_task(self, endpoint: str) -> str | None:
        if self.connection.transport.address.host is None:
            return None
        try:
            return await self.connection.aendpoint_task(endpoint)
        except ServingError as error:
            self._no_task(endpoint, error)
            return None

    def _no_task(self, endpoint: str, error: ServingError) -> None:
        """No task from the listing (no permission to list, an older server): speak chat.

        Remembered, so the listing is not asked again for this endpoint (the workspace
        caches only what it found).
        """
        logger.debug("no task for %s from the listing (%s): chat completions", endpoint, error)
        self._apis[endpoint] = "chat"

    def _params(
        self, stop: list[str] | None, kwargs: dict[str, Any], *, stream: bool = False
    ) -> tuple[str, dict[str, Any], bool]:
        """The endpoint, checked parameters and `stream_usage` of one call (kwargs win).

        Checked before the protocol is chosen: a bad call sends nothing, not even a listing.
        """
        endpoint = self._endpoint_for(kwargs.pop("model", None))
        stream_usage = bool(kwargs.pop("stream_usage", self.stream_usage))  # never a body field
        params = self._default_params
        params.update(kwargs)
        if stop is not None:
            params["stop"] = stop
        check_n(params.get("n"), endpoint)
        if stream:
            check_single_choice(params, endpoint)
        return endpoint, params, stream_usage

    def _request(
        self,
        messages: Sequence[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        *,
        stream: bool = False,
    ) -> tuple[str, WireProtocol, dict[str, Any]]:
        """The endpoint, protocol and body of one call."""
        endpoint, params, stream_usage = self._params(stop, kwargs, stream=stream)
        protocol = self._protocol(endpoint)
        body = protocol.body(
            messages, params, endpoint=endpoint, stream=stream, stream_usage=stream_usage
        )
        return endpoint, protocol, body

    async def _arequest(
        self,
        messages: Sequence[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        *,
        stream: bool = False,
    ) -> tuple[str, WireProtocol, dict[str, Any]]:
        """Async `_request` (the listing is read without blocking the event loop)."""
        endpoint, params, stream_usage = self._params(stop, kwargs, stream=stream)
        protocol = await self._aprotocol(endpoint)
        body = protocol.body(
            messages, params, endpoint=endpoint, stream=stream, stream_usage=stream_usage
        )
        return endpoint, protocol, body

    # ----------------------------------------------------------------------------------
    # Answers
    # ----------------------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        endpoint, protocol, body = self._request(messages, stop, kwargs)
        response = self.transport.invoke(
            protocol.route, endpoint, body, served_model=self.served_model
        )
        return protocol.result(response, endpoint)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))
        endpoint, protocol, body = await self._arequest(messages, stop, kwargs)
        response = await self.transport.ainvoke(
            protocol.route, endpoint, body, served_model=self.served_model
        )
        return protocol.result(response, endpoint)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        endpoint, protocol, body = self._request(messages, stop, kwargs, stream=True)
        assembly, reader = protocol.assembly(endpoint), StreamReader(endpoint, protocol.rule)
        for wire_chunk in self.transport.stream(
            protocol.route, endpoint, body, served_model=self.served_model, reader=reader
        ):
            for chunk in assembly.feed(wire_chunk):
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        yield _final_chunk(assembly, reader, body)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        endpoint, protocol, body = await self._arequest(messages, stop, kwargs, stream=True)
        assembly, reader = protocol.assembly(endpoint), StreamReader(endpoint, protocol.rule)
        async for wire_chunk in self.transport.astream(
            protocol.route, endpoint, body, served_model=self.served_model, reader=reader
        ):
            for chunk in assembly.feed(wire_chunk):
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        yield _final_chunk(assembly, reader, body)

    # ----------------------------------------------------------------------------------
    # Batches
    # ----------------------------------------------------------------------------------

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """`invoke` every input concurrently (up to the config's `max_concurrency`).

        When nothing listens (no callbacks or tracer, no cache, no rate limiter; see
        `_direct.py`) the calls skip langchain-core's per-call run machinery, with the
        same answers; otherwise this is langchain-core's own `batch`.
        """
        configs = get_config_list(config, len(inputs))
        direct = DirectBatch(self, kwargs)
        if not inputs or not direct.applies(inputs, configs):
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        limit = configs[0].get("max_concurrency")
        return cast("list[AIMessage]", direct.run(inputs, limit, return_exceptions))

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Async `batch`: tasks on the running loop, `max_concurrency` at a time."""
        configs = get_config_list(config, len(inputs))
        direct = DirectBatch(self, kwargs)
        if not inputs or not direct.applies(inputs, configs):
            return await super().abatch(
                inputs, config, return_exceptions=return_exceptions, **kwargs
            )
        limit = configs[0].get("max_concurrency")
        return cast("list[AIMessage]", await direct.arun(inputs, limit, return_exceptions))

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
        for position, tool in enumerate(kwargs["tools"]):
            if tool.get("type", "function") != "function":
                continue  # a provider's built-in tool has no function to name
            function = tool.get("function")
            if not isinstance(function, dict) or not function.get("name"):
                raise ServingInputError(
                    f"tool {position} has no function name (expected "
                    "{'type': 'function', 'function': {'name': ..., 'parameters': ...}})"
                )
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


def _final_chunk(
    assembly: StreamAssembly, reader: StreamReader, body: Mapping[str, Any]
) -> ChatGenerationChunk:
    """The closing chunk; a stream that asked for usage and got none says so (see README)."""
    final = assembly.final()
    message = final.message
    asked = bool((body.get("stream_options") or {}).get("include_usage"))
    if asked and getattr(message, "usage_metadata", None) is None:
        if reader.done:
            reason = "the server sent no usage in this stream"
        else:
            reason = "the stream ended after the finish chunk, before its usage chunk and [DONE]"
            warnings.warn(
                f"endpoint {reader.endpoint!r}: {reason}; the answer is kept, its usage is "
                "unknown (response_metadata['usage_missing'])",
                ServingUsageWarning,
                stacklevel=3,
            )
        message.response_metadata["usage_missing"] = reason
    return final


def _tool_choice_to_wire(
    choice: dict[str, Any] | str | bool, tools: list[dict[str, Any]]
) -> dict[str, Any] | str:
    if isinstance(choice, dict):
        return choice
    if choice is True:
        return "required"
    if choice in _SIMPLE_TOOL_CHOICES:
        return _SIMPLE_TOOL_CHOICES[choice]
    names = [t["function"].get("name") for t in tools if isinstance(t.get("function"), dict)]
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

"""Request bodies of the serving contract, validated with pydantic.

The models accept what LangChain and OpenAI-style clients send (list content, a message
``name``, ``null`` assistant content, ``extra_params``) and reject what no endpoint could
answer, so that a bad body becomes one clear 400 naming the field instead of a 500 later.
Unknown fields are ignored, as external-model endpoints do with provider extras.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from langchain_servingx.local.errors import EndpointError

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "FunctionDefinition",
    "JsonSchemaFormat",
    "NamedToolChoice",
    "ResponseFormat",
    "StreamOptions",
    "Tool",
    "ToolCall",
    "parse_request",
    "validation_message",
]


class _Lenient(BaseModel):
    """Base for wire objects: unknown fields are dropped, not rejected."""

    model_config = ConfigDict(extra="ignore")


class FunctionCall(_Lenient):
    """The ``function`` part of a tool call in a conversation history."""

    name: str
    arguments: str = ""


class ToolCall(_Lenient):
    """A tool call the assistant made earlier in the conversation."""

    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class ContentPart(_Lenient):
    """One part of list-form content; only text parts can reach these models."""

    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_only(self) -> ContentPart:
        if self.type != "text" or self.text is None:
            raise ValueError(
                f"content part of type {self.type!r} is not supported: "
                "this endpoint accepts text parts only"
            )
        return self


class ChatMessage(_Lenient):
    """One chat message; ``name`` is tolerated and ignored."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_present(self) -> ChatMessage:
        # Assistant turns may carry null content (tool calls, or an empty reply).
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        return self

    @property
    def text(self) -> str:
        """The content as one string (text parts joined, ``null`` as empty)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content)


class FunctionDefinition(_Lenient):
    """A tool's name, description and JSON-schema parameters."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class Tool(_Lenient):
    """An OpenAI-style function tool."""

    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(_Lenient):
    """The function named by a forced tool choice."""

    name: str


class NamedToolChoice(_Lenient):
    """``{"type": "function", "function": {"name": ...}}``: force that tool."""

    type: Literal["function"] = "function"
    function: NamedFunction


class JsonSchemaFormat(_Lenient):
    """The ``json_schema`` member of an OpenAI-style ``response_format``."""

    name: str = Field(min_length=1)
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(_Lenient):
    """``text``, ``json_object`` (optionally with llama.cpp's ``schema``) or ``json_schema``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError('type "json_schema" needs a "json_schema" object')
        return self

    @property
    def schema_for_grammar(self) -> dict[str, Any] | None:
        """The JSON schema to constrain output with, if any."""
        if self.type == "json_schema" and self.json_schema is not None:
            return self.json_schema.schema_ or None
        return self.schema_


class StreamOptions(_Lenient):
    """``stream_options``: only ``include_usage`` means something here."""

    include_usage: bool | None = None


class _Sampling(_Lenient):
    """Sampling parameters shared by chat and completions."""

    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    stop: list[str] | None = None
    n: int = Field(default=1, ge=1, le=5)
    seed: int | None = None
    repeat_penalty: float | None = Field(default=None, gt=0.0)  # llama.cpp's, as an extra
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    model: str | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @property
    def include_usage(self) -> bool:
        """Streams carry a final usage chunk unless the client turned it off."""
        if self.stream_options is None or self.stream_options.include_usage is None:
            return True
        return self.stream_options.include_usage


class ChatRequest(_Sampling):
    """A ``llm/v1/chat`` request."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _tools_consistent(self) -> ChatRequest:
        names = [tool.function.name for tool in self.tools or []]
        if isinstance(self.tool_choice, NamedToolChoice):
            if self.tool_choice.function.name not in names:
                raise ValueError(
                    f"tool_choice names {self.tool_choice.function.name!r}, "
                    f"which is not among the tools {names}"
                )
        elif self.tool_choice == "required" and not names:
            raise ValueError('tool_choice "required" needs at least one tool')
        return self

    @property
    def token_limit(self) -> int | None:
        """``max_completion_tokens`` (the newer name) wins over ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    """A ``llm/v1/completions`` request; a list prompt yields one choice per prompt."""

    prompt: str | list[str]

    @property
    def prompts(self) -> list[str]:
        """The prompts as a list."""
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("prompt list is empty")
        return value


class EmbeddingRequest(_Lenient):
    """A ``llm/v1/embeddings`` request."""

    input: str | list[str]
    instruction: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    model: str | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("input list is empty")
        return value

    @property
    def inputs(self) -> list[str]:
        """The inputs as a list."""
        return [self.input] if isinstance(self.input, str) else self.input


def validation_message(error: ValidationError) -> str:
    """Render pydantic's errors as one sentence naming each offending field."""
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-after"))
        msg = item["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    # Unions report one error per branch; keep each distinct message once.
    return "Invalid request: " + "; ".join(dict.fromkeys(parts))


def parse_request(
    model: type[ChatRequest] | type[CompletionRequest] | type[EmbeddingRequest],
    body: dict[str, Any],
) -> Any:
    """Validate ``body`` (``extra_params`` merged in) or raise a 400 ``EndpointError``."""
    extra = body.get("extra_params")
    if isinstance(extra, dict):
        body = {**{k: v for k, v in body.items() if k != "extra_params"}, **extra}
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise EndpointError(400, "BAD_REQUEST", validation_message(error)) from None

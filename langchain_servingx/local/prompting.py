"""Chat requests turned into prompts and grammars for a llama.cpp model.

llama-cpp-python's own chat handlers fail on several things LangChain clients send
(``tool_choice="required"``, ``null`` assistant content, tool results, OpenAI's
``json_schema`` form) and cannot stream an automatic tool choice. So the server renders
the prompt itself, with the model's own chat template, and steers tool calls with
grammars, in the two steps the ``chatml-function-calling`` format made known:

1. a short, grammar-bound *decision*: ``message:`` or ``functions.<name>:``;
2. the answer: free text after ``message:``, or JSON arguments bound by a grammar
   derived from the tool's parameter schema after ``functions.<name>:``.

A forced tool (named, or ``required`` with one tool) skips step 1. Nothing here imports
llama.cpp but its JSON-schema converter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from langchain_servingx.local.errors import EndpointError
from langchain_servingx.local.schemas import ChatMessage, ChatRequest, NamedToolChoice, Tool

__all__ = [
    "CHATML_TEMPLATE",
    "MESSAGE_PREFIX",
    "ChatTemplate",
    "ToolPlan",
    "call_prefix",
    "conversation",
    "decision_grammar",
    "schema_grammar",
    "tool_plan",
]

# Used when a GGUF file carries no chat template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

MESSAGE_PREFIX = "message:\n"


def call_prefix(name: str) -> str:
    """The text that opens a call of tool ``name``, as the model is told to write it."""
    return f"functions.{name}:\n"


class ChatTemplate:
    """A model's Jinja chat template, rendered in a sandbox like Transformers does."""

    def __init__(self, template: str | None, bos_token: str = "", eos_token: str = "") -> None:
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.filters["tojson"] = lambda value, indent=None: json.dumps(
            value, ensure_ascii=False, indent=indent
        )
        self._template = env.from_string(template or CHATML_TEMPLATE)
        self._bos = bos_token
        self._eos = eos_token

    def render(self, messages: Sequence[dict[str, str]]) -> str:
        """The prompt for ``messages``, ending where the assistant's reply begins."""

        def raise_exception(message: str) -> None:
            raise EndpointError(400, "BAD_REQUEST", f"The model's chat template: {message}")

        try:
            return self._template.render(
                messages=list(messages),
                add_generation_prompt=True,
                bos_token=self._bos,
                eos_token=self._eos,
                raise_exception=raise_exception,
            )
        except jinja2.TemplateError as error:
            raise EndpointError(
                400, "BAD_REQUEST", f"The model's chat template rejected the messages: {error}"
            ) from None


class ToolPlan:
    """How the tools of one request are used.

    ``offered`` are described to the model; ``choices`` are those it may call (all of them
    for ``auto``/``required``, one for a named tool); ``may_answer`` says whether a plain
    message is allowed instead of a call.
    """

    def __init__(self, offered: list[Tool], choices: list[Tool], may_answer: bool) -> None:
        self.offered = offered
        self.choices = choices
        self.may_answer = may_answer

    @property
    def active(self) -> bool:
        """Whether the model is told about tools at all."""
        return bool(self.choices)

    @property
    def forced(self) -> Tool | None:
        """The one tool that must be called, when no decision step is needed."""
        if not self.may_answer and len(self.choices) == 1:
            return self.choices[0]
        return None


def tool_plan(request: ChatRequest) -> ToolPlan:
    """Read ``tools`` and ``tool_choice`` (OpenAI's default: ``auto`` when tools are given)."""
    tools = request.tools or []
    choice = request.tool_choice or ("auto" if tools else "none")
    if not tools or choice == "none":
        return ToolPlan([], [], may_answer=True)
    if isinstance(choice, NamedToolChoice):
        named = [t for t in tools if t.function.name == choice.function.name]
        return ToolPlan(tools, named, may_answer=False)
    return ToolPlan(tools, tools, may_answer=choice == "auto")


def _tool_instructions(plan: ToolPlan) -> str:
    lines = ["You can call functions. The available functions are:", ""]
    for tool in plan.offered:
        fn = tool.function
        lines.append(f"functions.{fn.name}: {fn.description or ''}".rstrip())
        lines.append(f"parameters (JSON schema): {json.dumps(fn.parameters)}")
        lines.append("")
    lines += [
        "To call a function, write its name and then its arguments as JSON:",
        "functions.<name>:",
        '{"argument": "value"}',
    ]
    if plan.may_answer:
        lines += ["To answer the user directly instead, begin your reply with:", "message:"]
    return "\n".join(lines)


def _format_instructions(request: ChatRequest) -> str | None:
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    schema = fmt.schema_for_grammar
    if schema is None:
        return "Reply with a single JSON object only."
    return "Reply with a single JSON object that follows this JSON schema: " + json.dumps(schema)


def _assistant_text(message: ChatMessage, tools_active: bool) -> str:
    parts = []
    if message.text:
        parts.append((MESSAGE_PREFIX if tools_active else "") + message.text)
    for call in message.tool_calls or []:
        parts.append(call_prefix(call.function.name) + (call.function.arguments or "{}"))
    return "\n".join(parts)


def conversation(request: ChatRequest, plan: ToolPlan) -> list[dict[str, str]]:
    """The request's messages as plain ``{"role", "content"}`` pairs for a chat template.

    Tool and format instructions go into the system message (one is added when the
    conversation has none); earlier tool calls are written as the model would write them.
    """
    extra = [
        text
        for text in (
            _tool_instructions(plan) if plan.active else None,
            _format_instructions(request),
        )
        if text
    ]
    rendered: list[dict[str, str]] = []
    for message in request.messages:
        role = "system" if message.role == "developer" else message.role
        content = _assistant_text(message, plan.active) if role == "assistant" else message.text
        rendered.append({"role": role, "content": content})
    if extra:
        addition = "\n\n".join(extra)
        if rendered and rendered[0]["role"] == "system":
            first = rendered[0]["content"]
            rendered[0] = {"role": "system", "content": f"{first}\n\n{addition}".strip()}
        else:
            rendered.insert(0, {"role": "system", "content": addition})
    return rendered


def _literal(text: str) -> str:
    return json.dumps(text)  # GBNF string literals use JSON's escapes


def decision_grammar(plan: ToolPlan) -> str:
    """GBNF for step 1: the opening of a message (if allowed) or of one of the calls."""
    options = [_literal(call_prefix(t.function.name).rstrip("\n")) for t in plan.choices]
    if plan.may_answer:
        options.append(_literal(MESSAGE_PREFIX.rstrip("\n")))
    return "root ::= " + " | ".join(options) + "\n"


def schema_grammar(schema: dict[str, Any] | None, field: str) -> str:
    """GBNF for a JSON value matching ``schema`` (any JSON object when ``None``).

    Raises a 400 naming ``field`` when the schema cannot be turned into a grammar, so a
    bad schema is the client's error rather than a failure inside the model.
    """
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if not schema:
        return str(JSON_GBNF)
    try:
        return str(json_schema_to_gbnf(json.dumps(schema)))
    except Exception as error:  # the converter raises many kinds on bad schemas
        raise EndpointError(
            400, "INVALID_PARAMETER_VALUE", f"{field}: unsupported JSON schema: {error}"
        ) from None

"""Agents on the local endpoint: a real tool-calling loop over a local chat model.

``local-agent`` (task ``agent/v1/responses``, MLflow's ``ResponsesAgent`` shape) and
``local-chat-agent`` (``agent/v2/chat``, ``ChatAgent``) run the same loop:

1. the conversation goes to the chat model (``local-chat``) with those of the agent's own
   tools (a calculator and a clock) that the question is about, plus any tools the caller
   sent (only those, when the caller's ``tool_choice`` forces a call); the model decides
   whether to call one and with what arguments (a 135M-parameter model decides that well,
   but not which of several tools fits, so the agent preselects them by topic);
2. a call of the agent's own tool is run here; a call of a caller's tool ends the turn,
   unanswered, for the caller to run (so the agent can itself be the model of a LangChain
   agent);
3. once its tools have answered, the model is asked again, without tools, with the results
   stated in its system message, and writes the answer (one round of tools per turn: a
   135M-parameter model asked again with tools calls every tool it sees).

Every step is streamed as Responses events (text deltas, then each finished item); the
non-streamed answer and the ChatAgent forms are built from the same events, so the forms
cannot drift apart.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import operator
import re
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langchain_servingx.local.config import EndpointConfig
from langchain_servingx.local.engines import Engine
from langchain_servingx.local.errors import EndpointError
from langchain_servingx.local.responses import new_id
from langchain_servingx.local.schemas import ChatRequest, parse_request, validation_message
from langchain_servingx.protocols.agent_wire import items_to_messages

__all__ = [
    "AGENT_TOOLS",
    "SYSTEM_PROMPT",
    "AgentEngine",
    "AgentLoop",
    "ChatAgentRequest",
    "ResponsesRequest",
    "calculate",
    "clock",
]

Body = dict[str, Any]
Event = dict[str, Any]

SYSTEM_PROMPT = (
    "You are a helpful assistant with tools. Use the calculator for any arithmetic and the "
    "clock for the current date or time. After a tool answers, reply in one short sentence "
    "that states the tool's result."
)


# --------------------------------------------------------------------------- the tools

_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def calculate(expression: str) -> str:
    """Evaluate arithmetic (numbers, + - * / // % ** and parentheses), never arbitrary code."""

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 100:
                raise ValueError("exponent too large")
            return _OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.operand))
        raise ValueError(f"unsupported element {type(node).__name__}")

    text = expression.replace("×", "*").replace("^", "**").strip()  # noqa: RUF001
    try:
        result = value(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError) as error:
        return f"error: cannot evaluate {expression!r}: {error}"
    if isinstance(result, float) and result.is_integer():
        result = int(result)
    return str(result)


def clock(timezone: str = "UTC") -> str:
    """The current date and time in ``timezone`` (an IANA name), ISO 8601."""
    try:
        zone = dt.timezone.utc if timezone.upper() == "UTC" else ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"error: unknown timezone {timezone!r}"
    return dt.datetime.now(zone).isoformat(timespec="seconds")


def _call_tool(name: str, arguments: str) -> str:
    try:
        args = json.loads(arguments or "{}")
    except ValueError:
        return f"error: arguments are not JSON: {arguments!r}"
    if not isinstance(args, dict):
        return "error: arguments must be a JSON object"
    if name == "calculator":
        return calculate(str(args.get("expression", "")))
    return clock(str(args.get("timezone") or "UTC"))


# Which of its tools the agent offers for a question: a 135M-parameter model reliably
# decides *whether* to call an offered tool and with what arguments, but not *which* of
# several to pick, so the agent preselects by what the question is about.
_TOPICS = {
    "calculator": re.compile(r"\d\s*(?:[-+*/^%x×]|\*\*)\s*[\d(]"),  # noqa: RUF001
    "clock": re.compile(r"\b(?:time|date|day|today|now|clock|hour)\b", re.IGNORECASE),
}


def relevant_tools(question: str) -> list[Body]:
    """The agent's own tools that `question` is about (often none)."""
    return [t for t in AGENT_TOOLS if _TOPICS[t["function"]["name"]].search(question)]


def _brief(name: str, arguments: str) -> str:
    """What a call asked, for the model to read: the expression, or the tool's subject."""
    try:
        args = json.loads(arguments or "{}")
    except ValueError:
        args = {}
    if name == "calculator" and isinstance(args, dict) and args.get("expression"):
        return str(args["expression"])
    return "the current date and time (UTC)" if name == "clock" else name


AGENT_TOOLS: list[Body] = [
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate an arithmetic expression such as 17 * 23.",
            "parameters": {
                "type": "object",
                "properties": {
                    "expression": {
                        "type": "string",
                        "description": "e.g. 17 * 23",
                        # Arithmetic only: the grammar keeps a small model from rambling here.
                        "pattern": "^[0-9(][0-9+*/(). -]{0,39}$",
                    }
                },
                "required": ["expression"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "clock",
            "description": "The current date and time (UTC).",
            "parameters": {"type": "object", "properties": {}},
        },
    },
]
_OWN = {tool["function"]["name"] for tool in AGENT_TOOLS}


# --------------------------------------------------------------------------- requests


class _AgentRequest(BaseModel):
    """What both agent tasks share; unknown fields are ignored like MLflow's types do."""

    model_config = ConfigDict(extra="ignore")

    custom_inputs: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_output_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: list[str] | None = None


class ResponsesRequest(_AgentRequest):
    """An ``agent/v1/responses`` request: ``input`` items, caller tools in Responses form."""

    input: list[dict[str, Any]] | str = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: dict[str, Any] | None = None


class ChatAgentRequest(_AgentRequest):
    """An ``agent/v2/chat`` request: chat-shaped ``messages``."""

    messages: list[dict[str, Any]] = Field(min_length=1)


def _parse(model: type[_AgentRequest], body: Body) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise EndpointError(400, "BAD_REQUEST", validation_message(error)) from None


def _caller_tools(request: ResponsesRequest) -> list[Body]:
    """The caller's Responses-format function tools, in the chat format the model takes."""
    tools = []
    for i, tool in enumerate(request.tools or []):
        if tool.get("type") != "function" or not tool.get("name"):
            raise EndpointError(
                400, "BAD_REQUEST", f"tools[{i}]: only named function tools are supported"
            )
        if tool["name"] in _OWN:
            raise EndpointError(
                400, "BAD_REQUEST", f"tools[{i}]: {tool['name']!r} is one of the agent's own tools"
            )
        function = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
        tools.append({"type": "function", "function": function})
    return tools


def _first_choice(choice: str | dict[str, Any] | None) -> Any:
    if isinstance(choice, dict) and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice or "auto"


def _response_format(text: dict[str, Any] | None) -> Body | None:
    fmt = (text or {}).get("format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_schema":
        spec = {k: v for k, v in fmt.items() if k != "type"}
        return {"type": "json_schema", "json_schema": spec}
    return {"type": fmt["type"]}


# --------------------------------------------------------------------------- the loop


class AgentLoop:
    """One turn of the agent: model calls and tool runs, as Responses events."""

    def __init__(
        self,
        model: Any,
        messages: list[Body],
        request: _AgentRequest,
        *,
        caller_tools: list[Body],
        tool_choice: Any,
        response_format: Body | None,
        max_steps: int,
        served_name: str,
    ) -> None:
        self.model = model
        if messages and messages[0].get("role") == "system":  # the caller's own instructions
            first = {**messages[0], "content": f"{SYSTEM_PROMPT}\n\n{messages[0]['content']}"}
            messages = [first, *messages[1:]]
        else:
            messages = [{"role": "system", "content": SYSTEM_PROMPT}, *messages]
        self.messages = messages
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        self.question = str(messages[users[-1]].get("content") or "") if users else ""
        self.request = request
        self.caller_tools = caller_tools
        self.tool_choice = tool_choice
        self.response_format = response_format
        self.max_steps = max_steps
        self.served_name = served_name
        self.response_id = new_id("resp_")
        self.output: list[Body] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.used: list[str] = []
        self.results: list[str] = []  # this turn's tool results, as told to the model
        # Results of the caller's tools since the question: this turn's tools have answered.
        for message in messages[users[-1] + 1 :] if users else ():
            if message.get("role") == "tool":
                self.results.append(f"{message.get('name') or 'tool'} = {message.get('content')}")

    def _sampling(self) -> Body:
        request = self.request
        params: Body = {
            "max_tokens": request.max_output_tokens or request.max_tokens,
            "temperature": 0.0 if request.temperature is None else request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
            "stop": request.stop,
        }
        return {k: v for k, v in params.items() if v is not None}

    def _step_body(self, step: int) -> Body:
        offered = [
            t for t in relevant_tools(self.question) if t["function"]["name"] not in self.used
        ]
        tools = offered + self.caller_tools
        choice = self.tool_choice if step == 0 else "auto"
        if choice == "required" or isinstance(choice, dict):
            tools = self.caller_tools  # the caller asked for a call of one of its tools
        if not tools or self.results or step == self.max_steps - 1 or choice == "none":
            tools, choice = [], "none"
        body: Body = {
            "messages": self._with_results(),
            "stream": True,
            "stream_options": {"include_usage": True},
            **self._sampling(),
        }
        if tools:
            body.update(tools=tools, tool_choice=choice)
        if self.response_format is not None:
            body["response_format"] = self.response_format
        return body

    def _with_results(self) -> list[Body]:
        """The conversation, with this turn's tool results told after the question.

        A small model answers from a plain statement of the results far better than from
        tool-call transcripts, which it tends to imitate instead of answering.
        """
        if not self.results:
            return self.messages
        last = max(i for i, m in enumerate(self.messages) if m.get("role") == "user")
        told = "; ".join(self.results)
        question = self.messages[last]
        content = f"{question['content']}\n\n(Tool result: {told}. Answer using it.)"
        return [*self.messages[:last], {**question, "content": content}, *self.messages[last + 1 :]]

    def _done(self, item: Body) -> Event:
        self.output.append(item)
        return {
            "type": "response.output_item.done",
            "output_index": len(self.output) - 1,
            "item": item,
        }

    async def events(self) -> AsyncGenerator[Event, None]:
        """Run the loop, yielding each step as it happens; ``response.completed`` last."""
        yield {"type": "response.created", "response": self._response("in_progress")}
        for step in range(self.max_steps):
            body = self._step_body(step)
            chunks = await self.model.chat(parse_request(ChatRequest, body), body)
            text_id, text = new_id("msg_"), []
            calls: dict[int, Body] = {}
            async with aclosing(chunks):
                async for chunk in chunks:
                    if chunk.get("usage"):
                        self.prompt_tokens += chunk["usage"]["prompt_tokens"]
                        self.completion_tokens += chunk["usage"]["completion_tokens"]
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            text.append(delta["content"])
                            yield {
                                "type": "response.output_text.delta",
                                "item_id": text_id,
                                "output_index": len(self.output),
                                "content_index": 0,
                                "delta": delta["content"],
                            }
                        for part in delta.get("tool_calls") or ():
                            call = calls.setdefault(part["index"], {"arguments": ""})
                            call.update({k: part[k] for k in ("id",) if part.get(k)})
                            function = part.get("function") or {}
                            if function.get("name"):
                                call["name"] = function["name"]
                            call["arguments"] += function.get("arguments") or ""
            if text:
                yield self._done(
                    {
                        "type": "message",
                        "id": text_id,
                        "role": "assistant",
                        "status": "completed",
                        "content": [
                            {"type": "output_text", "text": "".join(text), "annotations": []}
                        ],
                    }
                )
            if not calls:
                break
            handed_over = False
            for call in calls.values():
                item = {
                    "type": "function_call",
                    "id": new_id("fc_"),
                    "call_id": call.get("id") or new_id("call_"),
                    "name": call["name"],
                    "arguments": call["arguments"],
                    "status": "completed",
                }
                yield self._done(item)
                if item["name"] not in _OWN:
                    handed_over = True  # the caller's tool: the caller runs it
                    continue
                self.used.append(item["name"])
                output = _call_tool(item["name"], item["arguments"])
                yield self._done(
                    {"type": "function_call_output", "call_id": item["call_id"], "output": output}
                )
                self.results.append(f"{_brief(item['name'], item['arguments'])} = {output}")
            if handed_over:
                break
        yield {
            "type": "response.completed",
            "response": self._response("completed"),
            "custom_outputs": self.custom_outputs(),
        }

    def custom_outputs(self) -> Body:
        """What the agent tells besides its answer: the tools it ran, and the caller's inputs."""
        outputs: Body = {"tools_used": list(self.used)}
        if self.request.custom_inputs:
            outputs["custom_inputs"] = self.request.custom_inputs
        if self.request.context:
            outputs["context"] = self.request.context
        return outputs

    def usage(self) -> Body:
        """Responses usage (details included: MLflow's type requires them)."""
        return {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def _response(self, status: str) -> Body:
        response: Body = {
            "id": self.response_id,
            "object": "response",
            "created_at": time.time(),
            "model": self.served_name,
            "status": status,
            "output": list(self.output),
        }
        if status == "completed":
            response["usage"] = self.usage()
            response["custom_outputs"] = self.custom_outputs()
        return response


# --------------------------------------------------------------------------- the engine


class AgentEngine(Engine):
    """The two agent tasks over one loop; ``model`` is the chat engine it drives."""

    def __init__(self, config: EndpointConfig, model: Engine | None) -> None:
        super().__init__(config)
        self.model = model

    def _loop(self, messages: list[Body], request: _AgentRequest, **options: Any) -> AgentLoop:
        if self.model is None:
            raise EndpointError(
                503, "TEMPORARILY_UNAVAILABLE", f"Endpoint {self.config.name!r} has no model."
            )
        agent = self.config.agent
        assert agent is not None  # noqa: S101 - an agent endpoint's config has one
        return AgentLoop(
            self.model,
            messages,
            request,
            max_steps=agent.max_steps,
            served_name=self.config.served_model_name,
            **options,
        )

    async def responses(self, body: Body) -> Body | AsyncGenerator[Body, None]:
        """Answer ``agent/v1/responses``: a response body, or its events when streaming."""
        request = _parse(ResponsesRequest, body)
        items = (
            request.input
            if isinstance(request.input, list)
            else [{"role": "user", "content": request.input}]
        )
        loop = self._loop(
            items_to_messages(items),
            request,
            caller_tools=_caller_tools(request),
            tool_choice=_first_choice(request.tool_choice),
            response_format=_response_format(request.text),
        )
        if request.stream:
            return loop.events()
        completed: Body = {}
        async with aclosing(loop.events()) as events:
            async for event in events:
                completed = event
        return {**completed["response"], "custom_outputs": completed["custom_outputs"]}

    async def chat_agent(self, body: Body) -> Body | AsyncGenerator[Body, None]:
        """Answer ``agent/v2/chat``: ChatAgent messages, or ChatAgent chunks when streaming."""
        request = _parse(ChatAgentRequest, body)
        loop = self._loop(
            [_chat_message(m, i) for i, m in enumerate(request.messages)],
            request,
            caller_tools=[],
            tool_choice="auto",
            response_format=None,
        )
        if request.stream:
            return _chat_agent_chunks(loop)
        async with aclosing(loop.events()) as events:
            async for _event in events:
                pass
        return {
            "messages": _with_ids(loop.output),
            "finish_reason": "stop",
            "usage": _chat_usage(loop),
            "custom_outputs": loop.custom_outputs(),
        }


def _chat_message(message: Mapping[str, Any], position: int) -> Body:
    role = message.get("role")
    if role not in ("system", "user", "assistant", "tool"):
        raise EndpointError(400, "BAD_REQUEST", f"messages[{position}].role: {role!r} is not valid")
    out: Body = {"role": role, "content": message.get("content")}
    for key in ("tool_calls", "tool_call_id"):
        if message.get(key):
            out[key] = message[key]
    return out


def _chat_usage(loop: AgentLoop) -> Body:
    return {
        "prompt_tokens": loop.prompt_tokens,
        "completion_tokens": loop.completion_tokens,
        "total_tokens": loop.prompt_tokens + loop.completion_tokens,
    }


def _with_ids(items: list[Body]) -> list[Body]:
    """ChatAgent messages of the items; every message gets an id (MLflow requires them)."""
    messages = items_to_messages(items)
    for message in messages:
        message.setdefault("id", new_id("tool_" if message["role"] == "tool" else "msg_"))
    return messages


def _item_messages(item: Body) -> list[Body]:
    return _with_ids([item])


async def _chat_agent_chunks(loop: AgentLoop) -> AsyncGenerator[Body, None]:
    """The loop's events as ChatAgent chunks: text deltas, then each tool step whole."""
    names: dict[str, str] = {}
    last_id = new_id("msg_")
    async with aclosing(loop.events()) as events:
        async for event in events:
            kind = event["type"]
            if kind == "response.output_text.delta":
                last_id = event["item_id"]
                delta = {"role": "assistant", "content": event["delta"], "id": last_id}
                yield {"delta": delta}
            elif kind == "response.output_item.done" and event["item"]["type"] != "message":
                item = event["item"]
                if item["type"] == "function_call":
                    names[item["call_id"]] = item["name"]
                    message = _item_messages(item)[0]
                else:
                    message = {
                        **_item_messages(item)[0],
                        "name": names.get(item["call_id"], "tool"),
                    }
                yield {"delta": message}
    yield {
        "delta": {"role": "assistant", "content": "", "id": last_id},
        "finish_reason": "stop",
        "usage": _chat_usage(loop),
        "custom_outputs": loop.custom_outputs(),
    }

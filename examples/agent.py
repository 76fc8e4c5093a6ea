"""A tool-calling agent (LangChain's create_agent) on a serving endpoint.

The agent has a calculator and a unit converter and must use both. Self-checking: exits
non-zero unless both tools ran with the right arguments (their results say so) and the
final answer is text.

    make examples
    python examples/agent.py          # with DATABRICKS_HOST / DATABRICKS_TOKEN set
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool

from langchain_servingx import ChatServing

CHAT = os.environ.get("SERVINGX_CHAT_ENDPOINT", "local-chat")


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two whole numbers."""
    return a * b


@tool
def celsius_to_fahrenheit(celsius: float) -> float:
    """Convert a temperature from degrees Celsius to degrees Fahrenheit."""
    return celsius * 9 / 5 + 32


class EachToolOnce(AgentMiddleware):  # type: ignore[type-arg]
    """Offer the model only the tools it has not used yet in this run.

    Large models know when they are done; a 135M model repeats its last call until the
    recursion limit. Narrowing the tools as they are used is ordinary middleware.
    """

    def _narrowed(self, request: ModelRequest) -> ModelRequest:
        used = {m.name for m in request.messages if isinstance(m, ToolMessage)}
        return request.override(tools=[t for t in request.tools if t.name not in used])

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse:
        return handler(self._narrowed(request))

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        return await handler(self._narrowed(request))


def main() -> int:
    agent = create_agent(
        ChatServing(endpoint=CHAT, temperature=0, max_tokens=64),
        [multiply, celsius_to_fahrenheit],
        system_prompt="You are a helpful assistant. Use multiply to multiply numbers and "
        "celsius_to_fahrenheit to convert temperatures.",
        middleware=[EachToolOnce()],
    )
    question = "What is 17 times 23? And what is 20 degrees Celsius in Fahrenheit?"
    result = agent.invoke({"messages": [("user", question)]}, {"recursion_limit": 10})
    messages = result["messages"]
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            for call in message.tool_calls:
                print(f"tool call: {call['name']}({call['args']})")
        elif isinstance(message, ToolMessage):
            print(f"tool result: {message.name} -> {message.content}")
    final = messages[-1]
    print(f"answer: {final.text.strip()}")
    results = {m.name: m.content for m in messages if isinstance(m, ToolMessage)}
    ok = (
        results == {"multiply": "391", "celsius_to_fahrenheit": "68.0"}
        and isinstance(final, AIMessage)
        and not final.tool_calls
        and bool(final.text.strip())
    )
    print("agent: ok" if ok else f"agent: FAILED (tool results: {results})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

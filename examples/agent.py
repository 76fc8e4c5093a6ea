"""A tool-calling agent (LangChain's create_agent) on a serving endpoint.

The agent has a calculator and a weather tool and must use both. Self-checking: exits
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
def get_weather(city: str) -> str:
    """Return the current weather in a city."""
    return f"Sunny, 21 degrees Celsius in {city}."


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
        [multiply, get_weather],
        system_prompt="You are a helpful assistant. Use multiply to multiply numbers and "
        "get_weather for the weather. Once you have both results, answer in one sentence.",
        middleware=[EachToolOnce()],
    )
    question = "What is 17 times 23? And what is the weather in Paris?"
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
        results == {"multiply": "391", "get_weather": "Sunny, 21 degrees Celsius in Paris."}
        and isinstance(final, AIMessage)
        and not final.tool_calls
        and bool(final.text.strip())
    )
    print("agent: ok" if ok else f"agent: FAILED (tool results: {results})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""A tool-calling agent (LangChain's create_agent) on a serving endpoint.

The agent has a calculator and a unit converter and must use both. Self-checking: exits
non-zero unless both tools ran with the right arguments and the final answer is text.

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
def get_weather(city: str) -> str:
    """Return the current weather in a city."""
    return f"It is sunny and 21 degrees Celsius in {city}."


@tool
def get_local_time(city: str) -> str:
    """Return the current local time in a city."""
    return f"The local time in {city} is 14:30."


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
        [get_weather, get_local_time],
        system_prompt="You are a helpful assistant. Call get_weather for the weather and "
        "get_local_time for the time.",
        middleware=[EachToolOnce()],
    )
    question = "What is the weather in Paris, and what is the local time in Paris?"
    result = agent.invoke({"messages": [("user", question)]}, {"recursion_limit": 10})
    messages = result["messages"]
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            for call in message.tool_calls:
                print(f"tool call: {call['name']}({call['args']})")
        elif isinstance(message, ToolMessage):
            print(f"tool result: {message.content}")
    final = messages[-1]
    print(f"answer: {final.text.strip()}")
    ran = sorted(m.name for m in messages if isinstance(m, ToolMessage))
    calls = [c for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
    ok = (
        ran == ["get_local_time", "get_weather"]
        and all(c["args"] == {"city": "Paris"} for c in calls)
        and isinstance(final, AIMessage)
        and not final.tool_calls
        and bool(final.text.strip())
    )
    print("agent: ok" if ok else f"agent: FAILED (tools run: {ran})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

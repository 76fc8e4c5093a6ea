"""A tour of langchain-servingx: chat, streaming, tools, structured output, embeddings, completions.

Run it against the embedded local endpoint with ``make demo``, or against a workspace:

    export DATABRICKS_HOST=https://<workspace>  DATABRICKS_TOKEN=<token>
    export SERVINGX_CHAT_ENDPOINT=<chat endpoint>            # default: local-chat
    export SERVINGX_EMBEDDINGS_ENDPOINT=<embeddings endpoint>  # default: local-embeddings
    export SERVINGX_COMPLETIONS_ENDPOINT=<completions endpoint>  # default: local-completions
    python examples/quickstart.py

The local models are tiny (SmolLM2 with 135M parameters): expect grammatical nonsense
now and then. The plumbing is what is on show.
"""

from __future__ import annotations

import math
import os

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from langchain_servingx import ChatServing, ServingEmbeddings, ServingLLM

CHAT = os.environ.get("SERVINGX_CHAT_ENDPOINT", "local-chat")
EMBEDDINGS = os.environ.get("SERVINGX_EMBEDDINGS_ENDPOINT", "local-embeddings")
COMPLETIONS = os.environ.get("SERVINGX_COMPLETIONS_ENDPOINT", "local-completions")


def section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 60 - len(title)))


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"It is 18 degrees and sunny in {city}."


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str = Field(description="the person's first name")
    age: int = Field(description="the person's age in years")


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def main() -> None:
    print(f"host: {os.environ.get('DATABRICKS_HOST', '(from your Databricks config)')}")
    chat = ChatServing(endpoint=CHAT, temperature=0, max_tokens=64)

    section(f"chat ({CHAT})")
    reply = chat.invoke("What is the capital of France? Answer in one sentence.")
    print(reply.content)
    print(f"usage: {reply.usage_metadata}")

    section("streaming")
    for chunk in chat.stream("Write one short sentence about the sea."):
        print(chunk.content, end="", flush=True)
    print()

    section("tool call")
    with_tools = chat.bind_tools([get_weather], tool_choice="get_weather")
    question = HumanMessage("What is the weather in Paris?")
    call_message = with_tools.invoke([question])
    for call in call_message.tool_calls:
        print(f"model called {call['name']}({call['args']})")
    results = [
        ToolMessage(get_weather.invoke(c["args"]), tool_call_id=c["id"])
        for c in call_message.tool_calls
    ]
    answer = chat.invoke([question, call_message, *results])
    print(f"final answer: {answer.content}")

    section("structured output (json_schema)")
    extract = chat.with_structured_output(Person, method="json_schema")
    person = extract.invoke("Ann is 31 years old and lives in Oslo. Extract the person.")
    print(repr(person))

    section(f"embeddings ({EMBEDDINGS})")
    embeddings = ServingEmbeddings(endpoint=EMBEDDINGS)
    cat, kitten, market = embeddings.embed_documents(["cat", "kitten", "stock market"])
    near, far = cosine(cat, kitten), cosine(cat, market)
    print(
        f"{len(cat)} dimensions; cos(cat, kitten) = {near:.3f}; cos(cat, stock market) = {far:.3f}"
    )
    print("similarity check:", "ok" if near > far else "UNEXPECTED")

    section(f"completion ({COMPLETIONS})")
    llm = ServingLLM(endpoint=COMPLETIONS, temperature=0, max_tokens=24)
    prompt = "The three primary colours are"
    print(prompt + llm.invoke(prompt))


if __name__ == "__main__":
    main()

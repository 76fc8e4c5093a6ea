"""The three classes inside LangChain constructs: LCEL chains, an agent, a retrieval chain.

These check what the standard suites cannot: that the classes compose with prompts,
parsers, retrievers and LangChain's agent loop, which re-sends whole tool-call histories
on every turn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.runnables import Runnable, RunnablePassthrough
from langchain_core.tools import tool
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_servingx import ChatServing, ServingEmbeddings, ServingLLM
from tests.integration_tests.settings import CHAT_PARAMS, ENDPOINTS

ENDPOINT_KINDS = ("chat", "embeddings", "completions")


@pytest.fixture
def chat() -> ChatServing:
    return ChatServing(**CHAT_PARAMS)


@pytest.fixture
def llm() -> ServingLLM:
    return ServingLLM(endpoint=ENDPOINTS["completions"], temperature=0, max_tokens=32, timeout=120)


@pytest.fixture
def embeddings() -> ServingEmbeddings:
    return ServingEmbeddings(endpoint=ENDPOINTS["embeddings"], timeout=120)


# ------------------------------------------------------------------------------------------
# LCEL: prompt | model | parser
# ------------------------------------------------------------------------------------------

CAPITAL_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "You are a geography assistant. Answer in one short sentence."),
        ("human", "What is the capital of {country}?"),
    ]
)


def test_chat_chain_invoke_batch_stream(chat: ChatServing) -> None:
    chain = CAPITAL_PROMPT | chat | StrOutputParser()
    answer = chain.invoke({"country": "France"})
    assert isinstance(answer, str)
    assert "Paris" in answer
    answers = chain.batch([{"country": "France"}, {"country": "Japan"}])
    assert answers[0] == answer
    assert "Tokyo" in answers[1]
    pieces = list(chain.stream({"country": "France"}))
    assert len(pieces) > 1
    assert all(isinstance(p, str) for p in pieces)
    assert "".join(pieces) == answer


async def test_chat_chain_async(chat: ChatServing) -> None:
    chain = CAPITAL_PROMPT | chat | StrOutputParser()
    answer = await chain.ainvoke({"country": "France"})
    assert "Paris" in answer
    pieces = [p async for p in chain.astream({"country": "France"})]
    assert "".join(pieces) == answer


def test_completions_chain(llm: ServingLLM) -> None:
    prompt = PromptTemplate.from_template("Q: What is the capital of {country}?\nA:")
    chain = prompt | llm.bind(stop=["\n"]) | StrOutputParser()
    answer = chain.invoke({"country": "France"})
    assert "Paris" in answer
    assert "\n" not in answer
    assert chain.batch([{"country": "France"}, {"country": "Italy"}])[0] == answer


# ------------------------------------------------------------------------------------------
# An agent that needs two tools
# ------------------------------------------------------------------------------------------


@tool
def get_weather(city: str) -> str:
    """Return the current weather in a city."""
    return f"It is sunny and 21 degrees Celsius in {city}."


@tool
def get_local_time(city: str) -> str:
    """Return the current local time in a city."""
    return f"The local time in {city} is 14:30."


class EachToolOnce(AgentMiddleware):
    """Offer the model only the tools it has not used yet in this run.

    A 135M model calls tools well but does not know when to stop: left alone it repeats
    its last call until the recursion limit. Narrowing the tool list as tools are used
    is ordinary LangChain middleware (it rewrites `ModelRequest.tools`), and once every
    tool has run the model can only answer.
    """

    def _narrowed(self, request: ModelRequest) -> ModelRequest:
        used = {m.name for m in request.messages if isinstance(m, ToolMessage)}
        tools = [t for t in request.tools if getattr(t, "name", None) not in used]
        return request.override(tools=tools)

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse:
        return handler(self._narrowed(request))

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse:
        return await handler(self._narrowed(request))


AGENT_SYSTEM = (
    "You are a helpful assistant. Use the tools to answer. Call get_weather for the "
    "weather and get_local_time for the time."
)
AGENT_QUESTION = "What is the weather in Paris, and what is the local time in Paris?"


def _check_agent_run(messages: list[Any]) -> None:
    tool_messages = [m for m in messages if isinstance(m, ToolMessage)]
    assert sorted(m.name for m in tool_messages) == ["get_local_time", "get_weather"]
    calls = [c for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
    assert [c["id"] for c in calls] == [m.tool_call_id for m in tool_messages]
    assert all(c["args"] == {"city": "Paris"} for c in calls)
    final = messages[-1]
    assert isinstance(final, AIMessage)
    assert not final.tool_calls
    assert final.text.strip()


def test_agent_completes_a_two_tool_task(chat: ChatServing) -> None:
    agent = create_agent(
        chat, [get_weather, get_local_time], system_prompt=AGENT_SYSTEM, middleware=[EachToolOnce()]
    )
    result = agent.invoke({"messages": [("user", AGENT_QUESTION)]}, {"recursion_limit": 10})
    _check_agent_run(result["messages"])


async def test_agent_async(chat: ChatServing) -> None:
    agent = create_agent(
        chat, [get_weather, get_local_time], system_prompt=AGENT_SYSTEM, middleware=[EachToolOnce()]
    )
    result = await agent.ainvoke({"messages": [("user", AGENT_QUESTION)]}, {"recursion_limit": 10})
    _check_agent_run(result["messages"])


# ------------------------------------------------------------------------------------------
# Retrieval over an in-memory vector store
# ------------------------------------------------------------------------------------------

FACTS = [
    "The Zephyr-9 drone has a flight time of 47 minutes on one battery.",
    "Our office cafeteria serves vegetarian lasagna every Thursday.",
    "The Andromeda galaxy is about 2.5 million light-years from Earth.",
    "Invoices are paid within 30 days of receipt by the finance team.",
]
RAG_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer the question using only this context:\n{context}"),
        ("human", "{question}"),
    ]
)
QUESTION = "How long can the Zephyr-9 drone fly on one battery?"


def _rag_chain(store: InMemoryVectorStore, chat: ChatServing) -> Runnable[str, str]:
    def join(docs: list[Document]) -> str:
        return "\n".join(d.page_content for d in docs)

    retriever = store.as_retriever(search_kwargs={"k": 1})
    return (
        {"context": retriever | join, "question": RunnablePassthrough()}
        | RAG_PROMPT
        | chat
        | StrOutputParser()
    )


def test_retrieval_chain(chat: ChatServing, embeddings: ServingEmbeddings) -> None:
    store = InMemoryVectorStore.from_texts(FACTS, embeddings)
    found = store.similarity_search("drone battery life", k=1)
    assert found[0].page_content == FACTS[0]
    answer = _rag_chain(store, chat).invoke(QUESTION)
    assert "47" in answer


async def test_retrieval_chain_async(chat: ChatServing, embeddings: ServingEmbeddings) -> None:
    store = await InMemoryVectorStore.afrom_texts(FACTS, embeddings)
    found = await store.asimilarity_search("When are invoices paid?", k=1)
    assert found[0].page_content == FACTS[3]
    answer = await _rag_chain(store, chat).ainvoke(QUESTION)
    assert "47" in answer

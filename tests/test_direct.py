"""`ChatServing.batch` skips langchain-core's run machinery only when nothing could tell.

Each test compares the direct path with langchain-core's own `batch` (called on the same
model) against the scripted endpoint, or shows that whatever listens still sees every call.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any
from uuid import UUID

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.globals import set_llm_cache
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.rate_limiters import InMemoryRateLimiter
from langchain_core.tracers.context import register_configure_hook
from pydantic import BaseModel

from langchain_servingx import ChatServing, ServingInvalidRequestError
from langchain_servingx._direct import DirectBatch
from tests.serving_server import RecordedRequest, Reply, ServingTestServer, chat_response

PATH = "/serving-endpoints/chat-ep/invocations"


def _echo(request: RecordedRequest) -> Reply:
    """Answer with the last message upper-cased; a prompt holding "bad" is refused."""
    text = str(request.json["messages"][-1]["content"])
    if "bad" in text:
        return Reply.json({"error_code": "BAD_REQUEST", "message": f"{text!r} refused"}, 400)
    usage = {"prompt_tokens": len(text), "completion_tokens": 2, "total_tokens": len(text) + 2}
    return Reply.json(chat_response(text.upper(), usage=usage), delay=0.02)


@pytest.fixture
def llm(serving_env: ServingTestServer) -> ChatServing:
    serving_env.handle(PATH, _echo)
    return ChatServing(endpoint="chat-ep", api="chat", max_retries=0)


def _comparable(message: AIMessage) -> dict[str, Any]:
    """The whole message (its id is the answer's own, on both paths)."""
    assert message.id == "chatcmpl-1"
    return message.model_dump()


INPUTS: list[Any] = [
    "hello",
    [SystemMessage("Be brief."), HumanMessage("what is up")],
    [("human", "a tuple message")],  # converted by langchain-core: the usual path
]


def test_direct_and_core_batches_answer_and_send_the_same(
    llm: ChatServing, serving_env: ServingTestServer
) -> None:
    ours = llm.batch(INPUTS[:2], stop=["\n"], temperature=0.5)
    ours_bodies = sorted(str(r.json) for r in serving_env.requests_to(PATH))
    serving_env.requests.clear()
    theirs = BaseChatModel.batch(llm, INPUTS[:2], stop=["\n"], temperature=0.5)
    their_bodies = sorted(str(r.json) for r in serving_env.requests_to(PATH))
    assert ours_bodies == their_bodies
    assert [_comparable(m) for m in ours] == [_comparable(m) for m in theirs]
    assert ours[0].content == "HELLO"
    assert ours[1].usage_metadata == {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}


def test_an_answer_without_an_id_gets_a_run_id_as_invoke_gives_it(
    llm: ChatServing, serving_env: ServingTestServer
) -> None:
    answer = chat_response("no id")
    del answer["id"]
    serving_env.handle(PATH, lambda _: Reply.json(answer))
    ours, theirs = llm.batch(["a"])[0], BaseChatModel.batch(llm, ["a"])[0]
    for message in (ours, theirs):
        assert message.id is not None
        assert message.id.startswith("lc_run--")
    assert ours.id != theirs.id
    assert ours.model_dump(exclude={"id"}) == theirs.model_dump(exclude={"id"})


async def test_async_direct_and_core_batches_answer_the_same(llm: ChatServing) -> None:
    ours = await llm.abatch(INPUTS)
    theirs = await BaseChatModel.abatch(llm, INPUTS)
    assert [_comparable(m) for m in ours] == [_comparable(m) for m in theirs]
    assert [m.content for m in ours] == ["HELLO", "WHAT IS UP", "A TUPLE MESSAGE"]


def test_bound_and_structured_batches_go_direct_without_trace_only_arguments(
    llm: ChatServing, serving_env: ServingTestServer
) -> None:
    class Shout(BaseModel):
        text: str

    serving_env.handle(
        PATH, lambda _: Reply.json(chat_response('{"text": "HI"}', usage={"prompt_tokens": 1}))
    )
    results = llm.with_structured_output(Shout, method="json_mode").batch(["hi", "ho"])
    assert results == [Shout(text="HI"), Shout(text="HI")]
    for request in serving_env.requests_to(PATH):
        assert request.json["response_format"] == {"type": "json_object"}
        assert "ls_structured_output_format" not in request.json


def test_a_failed_call_costs_only_itself_with_return_exceptions(llm: ChatServing) -> None:
    results = llm.batch(["one", "bad two", "three"], return_exceptions=True)
    assert isinstance(results[1], ServingInvalidRequestError)
    assert "'bad two' refused" in str(results[1])
    assert [r.content for r in (results[0], results[2]) if isinstance(r, AIMessage)] == [
        "ONE",
        "THREE",
    ]
    with pytest.raises(ServingInvalidRequestError, match="'bad two' refused"):
        llm.batch(["one", "bad two", "three"])


async def test_async_failure_is_kept_in_place(llm: ChatServing) -> None:
    results = await llm.abatch(["bad", "fine"], return_exceptions=True)
    assert isinstance(results[0], ServingInvalidRequestError)
    assert isinstance(results[1], AIMessage)
    assert results[1].content == "FINE"


def test_max_concurrency_bounds_the_requests_in_flight(
    llm: ChatServing, serving_env: ServingTestServer
) -> None:
    prompts = [f"p{i}" for i in range(12)]
    assert [m.content for m in llm.batch(prompts, {"max_concurrency": 3})] == [
        p.upper() for p in prompts
    ]
    assert serving_env.max_in_flight == 3


async def test_async_max_concurrency(llm: ChatServing, serving_env: ServingTestServer) -> None:
    await llm.abatch([f"p{i}" for i in range(10)], {"max_concurrency": 2})
    assert serving_env.max_in_flight == 2


# -- whatever listens still sees every call --------------------------------------------


class _Starts(BaseCallbackHandler):
    def __init__(self) -> None:
        self.runs: list[UUID] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.runs.append(kwargs["run_id"])


def test_callbacks_in_the_config_or_on_the_model_see_every_call(llm: ChatServing) -> None:
    passed, on_model = _Starts(), _Starts()
    llm.batch(["a", "b"], {"callbacks": [passed]})
    assert len(passed.runs) == 2
    listened = llm.model_copy(update={"callbacks": [on_model]})
    assert not DirectBatch(listened, {}).applies(["a"], [{}])
    assert [m.content for m in listened.batch(["a", "b", "c"])] == ["A", "B", "C"]
    assert len(set(on_model.runs)) == 3


_CONTEXT_HANDLER: ContextVar[_Starts | None] = ContextVar("servingx_test_handler", default=None)
register_configure_hook(_CONTEXT_HANDLER, inheritable=True)


def test_a_handler_from_the_context_sees_every_call(llm: ChatServing) -> None:
    """A handler set in a context variable (as `collect_runs()` and tracers are)."""
    handler = _Starts()
    token = _CONTEXT_HANDLER.set(handler)
    try:
        assert not DirectBatch(llm, {}).applies(["a"], [{}])
        assert [m.content for m in llm.batch(["a", "b"])] == ["A", "B"]
    finally:
        _CONTEXT_HANDLER.reset(token)
    assert len(set(handler.runs)) == 2
    assert DirectBatch(llm, {}).applies(["a"], [{}])


def test_a_cache_is_used(llm: ChatServing, serving_env: ServingTestServer) -> None:
    set_llm_cache(InMemoryCache())
    try:
        first = llm.batch(["x", "y"])
        serving_env.requests.clear()
        again = llm.batch(["x", "y"])
    finally:
        set_llm_cache(None)
    assert [m.content for m in again] == [m.content for m in first] == ["X", "Y"]
    assert serving_env.requests_to(PATH) == []


def test_a_rate_limiter_or_streaming_takes_the_usual_path(llm: ChatServing) -> None:
    limiter = InMemoryRateLimiter(requests_per_second=1000, max_bucket_size=10)
    limited = llm.model_copy(update={"rate_limiter": limiter})
    assert not DirectBatch(limited, {}).applies(["a"], [{}])
    assert [m.content for m in limited.batch(["a", "b"])] == ["A", "B"]
    assert not DirectBatch(llm.model_copy(update={"streaming": True}), {}).applies(["a"], [{}])
    assert not DirectBatch(llm, {}).applies(["a"], [{"run_id": UUID(int=1)}])
    assert not DirectBatch(llm, {}).applies([[HumanMessage(content=[{"type": "text"}])]], [{}])
    assert DirectBatch(llm, {}).applies(["a", [HumanMessage("b")]], [{}, {}])

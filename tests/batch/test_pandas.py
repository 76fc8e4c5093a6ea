"""`ai_query` on pandas against the scripted endpoint: results, per-row errors, faults, pacing."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

import pandas as pd
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from pydantic import BaseModel

from langchain_servingx import (
    AIQueryError,
    ChatServing,
    ServingEmbeddings,
    ServingLLM,
    ServingNotFoundError,
    aai_query,
    ai_query,
)
from langchain_servingx.batch import _runner
from langchain_servingx.batch._limiter import LEARNED
from tests.batch.endpoints import (
    CHAT,
    EMBEDDINGS,
    ScriptedChat,
    bodies,
    capped,
    embed,
    install,
    user_text,
)
from tests.serving_server import Reply, ServingTestServer


class Person(BaseModel):
    name: str
    age: int


def _frame(texts: list[str], index: list[Any] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, "n": range(len(texts))}, index=index)


def test_template_results_in_their_rows_same_index(serving_env: ServingTestServer) -> None:
    install(serving_env)
    df = _frame([f"item {i}" for i in range(30)], index=[f"r{i}" for i in range(30)])
    out = ai_query(
        df,
        "test-chat",
        "Summarize {text} (#{n})",
        model_parameters={"max_tokens": 64, "temperature": 0},
        progress=False,
    )
    assert list(out.index) == list(df.index)
    assert list(out.columns) == ["text", "n", "result"]
    assert list(out["result"]) == [f"echo: Summarize item {i} (#{i})" for i in range(30)]
    assert "result" not in df.columns  # the input is left alone
    sent = bodies(serving_env)
    assert len(sent) == 30
    assert all(b["max_tokens"] == 64 and b["temperature"] == 0 for b in sent)
    assert all(b["messages"][0]["role"] == "user" for b in sent)


def test_equal_requests_are_sent_once(serving_env: ServingTestServer) -> None:
    install(serving_env)
    df = _frame(["a", "b", "a", "a", "b", "c"])
    out = ai_query(df, "test-chat", "text", progress=False)
    assert list(out["result"]) == ["echo: a", "echo: b", "echo: a", "echo: a", "echo: b", "echo: c"]
    assert sorted(user_text(r) for r in serving_env.requests_to(CHAT)) == ["a", "b", "c"]
    assert out.attrs["ai_query"]["requests"] == 3
    assert out.attrs["ai_query"]["rows"] == 6


def test_faults_become_row_errors_or_recover(serving_env: ServingTestServer, closing: Any) -> None:
    install(serving_env)
    texts = ["ok", "429:2", "503:1", "drop:1", "malformed", "bad", "also ok"]
    model = closing(ChatServing(endpoint="test-chat", max_retries=2))
    out = ai_query(_frame(texts), model, "text", fail_on_error=False, progress=False)
    result, error = list(out["result"]), list(out["error"])
    assert result[:3] == ["echo: ok", "echo: 429:2", "echo: 503:1"]
    assert error[:3] == [None] * 3
    # A connection dropped after the request was read is retried only when it was a reused
    # keep-alive connection (it cannot have reached the model); otherwise the row says so.
    assert (result[3], error[3]) == ("echo: drop:1", None) or (
        result[3] is None and "connection" in error[3].lower()
    )
    assert result[4] is None
    assert error[4].startswith("ServingResponseError: expected a JSON object")
    assert result[5] is None
    assert error[5] == "BAD_REQUEST: the input is not allowed"
    assert (result[6], error[6]) == ("echo: also ok", None)
    assert out.attrs["ai_query"]["errors"] == 2 + (error[3] is not None)
    assert out.attrs["ai_query"]["rate_limited"] == 2


def test_fail_on_error_raises_naming_the_row(serving_env: ServingTestServer) -> None:
    install(serving_env)
    df = _frame(["fine", "bad", "fine too"], index=[10, 20, 30])
    with pytest.raises(AIQueryError) as caught:
        ai_query(df, "test-chat", "text", progress=False)
    error = caught.value
    assert error.row == "row 20"
    assert error.status_code == 400
    assert error.error_code == "BAD_REQUEST"
    assert "row 20 failed on endpoint 'test-chat'" in str(error)
    assert "fail_on_error=False" in str(error)


def test_rate_limited_endpoint_loses_no_row(serving_env: ServingTestServer, closing: Any) -> None:
    handler = capped(limit=4, delay=0.02)
    serving_env.handle(CHAT, handler)
    df = _frame([f"row {i}" for i in range(150)])
    out = ai_query(df, "test-chat", "text", max_concurrency=32, fail_on_error=False, progress=False)
    assert list(out["error"]) == [None] * 150
    assert list(out["result"]) == [f"echo: row {i}" for i in range(150)]
    refused = handler.state["refused"]
    assert refused > 0
    assert out.attrs["ai_query"]["rate_limited"] == refused
    # Pacing, not hammering: far fewer refusals than rows once the limit is learned.
    assert refused < 75
    # The next run over this endpoint starts at what this one learned (about 4), not at 8.
    root = closing(ChatServing(endpoint="test-chat")).transport.address.root
    resumed = LEARNED.limiter(f"{root} test-chat", 32)
    assert 2 <= resumed.limit <= 6
    assert resumed.slow_start  # below the initial 8, it ramps up quickly from there


def test_a_row_429d_past_the_budget_fails_alone(
    serving_env: ServingTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runner retries a 429'd call for up to its budget (two minutes by default), then
    # gives its rows the 429; the other rows are answered.
    policy = dataclasses.replace(_runner.RATE_LIMIT_RETRY, budget=0.4, max_delay=0.05)
    monkeypatch.setattr(_runner, "RATE_LIMIT_RETRY", policy)
    install(serving_env)
    df = _frame(["fine", "429:1000", "fine too"])
    out = ai_query(df, "test-chat", "text", fail_on_error=False, progress=False)
    assert list(out["result"]) == ["echo: fine", None, "echo: fine too"]
    assert out["error"][0] is None
    assert out["error"][2] is None
    assert out["error"][1].startswith("REQUEST_LIMIT_EXCEEDED: ")
    tries = [r for r in serving_env.requests_to(CHAT) if user_text(r) == "429:1000"]
    assert len(tries) > 3  # retried while within the budget, then given up
    assert out.attrs["ai_query"]["rate_limited"] == len(tries)


def test_retry_after_pauses_the_partition(serving_env: ServingTestServer) -> None:
    install(serving_env, ScriptedChat(retry_after="1"))
    out = ai_query(
        _frame(["429:1", "x", "y"]), "test-chat", "text", progress=False, max_concurrency=1
    )
    assert list(out["result"]) == ["echo: 429:1", "echo: x", "echo: y"]
    times = [r.at for r in serving_env.requests_to(CHAT)]
    assert len(times) == 4
    # Nothing was sent during the second the endpoint asked for.
    assert times[1] - times[0] >= 0.95


def test_structured_output_parsed_and_checked(serving_env: ServingTestServer) -> None:
    install(serving_env)
    texts = [
        'json {"name": "Ada", "age": 36}',
        'json {"name": "Bob"}',
        "json not json",
        'json {"name": "Cy", "age": 7, "extra": true}',
    ]
    out = ai_query(
        _frame(texts),
        "test-chat",
        "text",
        response_format=Person,
        fail_on_error=False,
        progress=False,
    )
    assert out["result"][0] == {"name": "Ada", "age": 36}
    assert out["result"][3] == {"name": "Cy", "age": 7}
    assert out["result"][1] is None
    assert out["result"][2] is None
    assert out["error"][1].startswith("RESPONSE_FORMAT_MISMATCH: the answer does not follow")
    assert "age: Field required" in out["error"][1]
    assert "response format: the answer: Invalid JSON: expected ident" in out["error"][2]
    format_sent = bodies(serving_env)[0]["response_format"]
    assert format_sent["type"] == "json_schema"
    assert format_sent["json_schema"]["name"] == "Person"


def test_json_schema_dict_and_json_object(serving_env: ServingTestServer) -> None:
    install(serving_env)
    schema = {
        "type": "object",
        "properties": {
            "score": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["score"],
    }
    texts = ['json {"score": 3, "tags": ["a"]}', 'json {"score": "high"}']
    out = ai_query(
        _frame(texts),
        "test-chat",
        "text",
        response_format=schema,
        fail_on_error=False,
        progress=False,
    )
    assert out["result"][0] == {"score": 3.0, "tags": ["a"]}
    assert out["error"][1] == (
        "RESPONSE_FORMAT_MISMATCH: the answer does not follow the response format: "
        "score: expected a number, got the string 'high'; answer: '{\"score\": \"high\"}'"
    )
    out = ai_query(
        _frame(['json {"a": 1}', "json [1]"]),
        "test-chat",
        "text",
        response_format="json_object",
        fail_on_error=False,
        progress=False,
    )
    assert out["result"][0] == {"a": 1}
    assert "expected a JSON object, got list" in out["error"][1]


def test_embeddings_packed_and_one_bad_text_fails_alone(
    serving_env: ServingTestServer, closing: Any
) -> None:
    install(serving_env)
    texts = [f"text number {i}" for i in range(40)]
    texts[17] = "bad"
    model = closing(ServingEmbeddings(endpoint="test-embeddings", batch_size=16))
    out = ai_query(_frame(texts), model, "text", fail_on_error=False, progress=False)
    assert [r for i, r in enumerate(out["result"]) if i != 17] == [
        embed(t) for i, t in enumerate(texts) if i != 17
    ]
    assert out["result"][17] is None
    assert out["error"][17] == "BAD_REQUEST: input 'bad' is not allowed"
    sizes = [len(b["input"]) for b in bodies(serving_env, EMBEDDINGS)]
    # Three packed requests; the failing one is split and resent one text at a time.
    assert sorted(size for size in sizes if size > 1) == [8, 16, 16]  # in any order
    assert sizes.count(1) == 16


def test_usage_of_packed_embeddings_is_in_the_totals_only(
    serving_env: ServingTestServer, closing: Any
) -> None:
    install(serving_env)
    texts = [f"text {i}" for i in range(9)]
    model = closing(ServingEmbeddings(endpoint="test-embeddings", batch_size=4))
    out = ai_query(_frame(texts), model, "text", usage_column="usage", progress=False)
    sizes = [len(b["input"]) for b in bodies(serving_env, EMBEDDINGS)]
    assert sorted(sizes) == [1, 4, 4]
    # The wire gives one count per request: a packed request's rows get none (no made-up
    # split), the request that held one text gives its row the exact count.
    usage = list(out["usage"])
    assert sum(u is None for u in usage) == 8
    (single,) = [u for u in usage if u is not None]
    assert single == {"input_tokens": 2, "output_tokens": 0, "total_tokens": 2}
    # The scripted endpoint counts 2 tokens per text: the totals have every request once.
    assert out.attrs["ai_query"]["input_tokens"] == 2 * len(texts)
    assert out.attrs["ai_query"]["calls"] == 3


def test_usage_of_equal_rows_is_counted_once(serving_env: ServingTestServer) -> None:
    install(serving_env)
    out = ai_query(
        _frame(["aa", "b", "aa"]), "test-chat", "text", usage_column="usage", progress=False
    )
    assert list(out["usage"]) == [
        {"input_tokens": 2, "output_tokens": 2, "total_tokens": 4},
        {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3},
        {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},  # answered by row 0's request
    ]
    totals = out.attrs["ai_query"]
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        assert totals[key] == sum(u[key] for u in out["usage"])


def test_embeddings_task_by_name(serving_env: ServingTestServer) -> None:
    install(serving_env)
    out = ai_query(
        _frame(["ab", "abc"]), "test-embeddings", "text", task="embeddings", progress=False
    )
    assert list(out["result"]) == [embed("ab"), embed("abc")]


def test_completions_with_usage_column(serving_env: ServingTestServer, closing: Any) -> None:
    install(serving_env)
    model = closing(ServingLLM(endpoint="test-completions", max_tokens=5))
    out = ai_query(
        _frame(["1 + 1 =", "2 + 2 ="]), model, "text", usage_column="usage", progress=False
    )
    assert list(out["result"]) == ["1 + 1 = done", "2 + 2 = done"]
    assert list(out["usage"]) == [{"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}] * 2
    assert out.attrs["ai_query"]["input_tokens"] == 10
    assert all(
        b["max_tokens"] == 5
        for b in bodies(serving_env, "/serving-endpoints/test-completions/invocations")
    )


def test_runnable_chain_over_rows(serving_env: ServingTestServer, closing: Any) -> None:
    install(serving_env)
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{topic}")])
    chain = prompt | closing(ChatServing(endpoint="test-chat")) | StrOutputParser()
    df = pd.DataFrame({"topic": ["cats", "dogs", "bad"]})
    out = ai_query(df, chain, fail_on_error=False, progress=False)  # request=None: the whole row
    assert list(out["result"]) == ["echo: cats", "echo: dogs", None]
    assert out["error"][2].startswith("BAD_REQUEST")


def test_null_requests_give_null_results_unsent(serving_env: ServingTestServer) -> None:
    install(serving_env)
    df = pd.DataFrame({"text": ["a", None, float("nan"), "b"]})
    out = ai_query(df, "test-chat", "Say {text}", fail_on_error=False, progress=False)
    assert list(out["result"]) == ["echo: Say a", None, None, "echo: Say b"]
    assert list(out["error"]) == [None] * 4
    assert len(serving_env.requests_to(CHAT)) == 2


def test_request_function_errors_are_row_errors(serving_env: ServingTestServer) -> None:
    install(serving_env)

    def request(row: dict[str, Any]) -> str:
        if row["n"] == 1:
            raise ValueError("no request for row 1")
        return str(row["text"])

    out = ai_query(_frame(["a", "b"]), "test-chat", request, fail_on_error=False, progress=False)
    assert list(out["result"]) == ["echo: a", None]
    assert out["error"][1] == "ValueError: no request for row 1"


def test_connections_are_pooled_across_calls(serving_env: ServingTestServer, closing: Any) -> None:
    install(serving_env, ScriptedChat(delay=0.01))
    model = closing(ChatServing(endpoint="test-chat"))
    for round_ in range(3):
        df = _frame([f"{round_}-{i}" for i in range(40)])
        ai_query(df, model, "text", max_concurrency=8, progress=False)
    peers = {r.peer for r in serving_env.requests_to(CHAT)}
    assert len(serving_env.requests_to(CHAT)) == 120
    assert len(peers) <= 8  # the same pooled connections, call after call


async def test_aai_query_on_the_running_loop(serving_env: ServingTestServer) -> None:
    install(serving_env)
    out = await aai_query(_frame(["x", "y"]), "test-chat", "text", progress=False)
    assert list(out["result"]) == ["echo: x", "echo: y"]


def test_progress_bar(serving_env: ServingTestServer, capsys: pytest.CaptureFixture[str]) -> None:
    install(serving_env)
    ai_query(_frame(["a", "b", "a"]), "test-chat", "text", progress=True)
    assert "3/3" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"request": "missing"}, "request column 'missing', which the data does not have"),
        ({"request": "{text} {nope}"}, "request template names column 'nope'"),
        ({"request": "text", "result_column": "n"}, "the data already has column(s) 'n'"),
        (
            {"request": "text", "task": "vision"},
            "task must be 'chat', 'completions' or 'embeddings'",
        ),
        ({"request": "text", "response_format": 42}, "response_format must be None"),
        ({"request": "text", "max_concurrency": 0}, "max_concurrency must be a positive integer"),
        ({"request": "{}"}, "every {field} must name a column"),
    ],
)
def test_bad_arguments_are_named(
    serving_env: ServingTestServer, kwargs: dict[str, Any], problem: str
) -> None:
    with pytest.raises((ValueError, KeyError, TypeError), match=None) as caught:
        ai_query(_frame(["a"]), "test-chat", progress=False, **kwargs)
    assert problem in str(caught.value)
    assert serving_env.requests == []


def test_structured_output_refused_for_embeddings(serving_env: ServingTestServer) -> None:
    with pytest.raises(ValueError, match="response_format applies to chat endpoints"):
        ai_query(_frame(["a"]), "x", "text", task="embeddings", response_format=Person)


def test_not_a_dataframe() -> None:
    with pytest.raises(TypeError, match=r"takes a pandas or Spark DataFrame, got builtins\.list"):
        ai_query([1, 2], ChatServing(endpoint="x", host="http://127.0.0.1:9", token="t"), "text")


def test_core_package_imports_neither_pandas_nor_pyspark() -> None:
    code = (
        "import sys, langchain_servingx; langchain_servingx.ai_query; "
        "assert 'pandas' not in sys.modules and 'pyspark' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603


def test_task_comes_from_the_listing(serving_env: ServingTestServer) -> None:
    install(serving_env)
    listing = {
        "endpoints": [
            {"name": "test-embeddings", "task": "llm/v1/embeddings", "state": {"ready": "READY"}},
            {"name": "test-chat", "task": "llm/v1/chat", "state": {"ready": "READY"}},
        ]
    }
    serving_env.reply("/api/2.0/serving-endpoints", Reply.json(listing))
    out = ai_query(_frame(["ab"]), "test-embeddings", "text", progress=False)
    assert list(out["result"]) == [embed("ab")]
    with pytest.raises(ServingNotFoundError, match=r"no endpoint named 'test-embedings'.*closest"):
        ai_query(_frame(["ab"]), "test-embedings", "text", progress=False)
    assert serving_env.requests_to(CHAT) == []

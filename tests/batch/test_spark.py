"""`ai_query` on real Spark (`local[2]`, a real JVM) against the scripted endpoint.

Marked `spark`: run by `make test-spark`, never by `make test`. One session for the run.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Any

import pytest

pytest.importorskip("pyspark", reason="pyspark is not installed: run `make test-spark`")

import pandas as pd
from pydantic import BaseModel
from pyspark.sql import types as T  # noqa: N812

from langchain_servingx import ChatServing, ServingEmbeddings, ai_query, register_ai_query
from langchain_servingx.batch._plan import build_plan
from tests.batch.endpoints import CHAT, EMBEDDINGS, bodies, embed, install, user_text
from tests.serving_server import (
    LISTING_PATH,
    ServingTestServer,
    endpoint_object,
    listing,
)

pytestmark = pytest.mark.spark


class Person(BaseModel):
    name: str
    age: int


def _frame(spark: Any, texts: list[str], partitions: int = 2) -> Any:
    rows = [(i, t) for i, t in enumerate(texts)]
    return spark.createDataFrame(rows, "id long, text string").repartition(partitions, "id")


def test_lazy_typed_rows_errors_and_usage(spark: Any, serving_env: ServingTestServer) -> None:
    install(serving_env)
    texts = ["ok", "429:1", "503:1", "drop:1", "malformed", "bad", *[f"row {i}" for i in range(30)]]
    model = ChatServing(endpoint="test-chat", max_retries=2)
    out = ai_query(
        _frame(spark, texts, 3), model, "text", fail_on_error=False, usage_column="usage"
    )
    assert serving_env.requests == []  # nothing runs before an action
    assert out.schema["result"].dataType == T.StringType()
    assert out.schema["error"].dataType == T.StringType()
    assert out.schema["usage"].dataType.fieldNames() == [
        "input_tokens",
        "output_tokens",
        "total_tokens",
    ]
    rows = {r.id: r for r in out.collect()}
    assert len(rows) == len(texts)
    for i, text in enumerate(texts):
        row = rows[i]
        assert row.text == text
        if text in ("malformed", "bad"):
            assert row.result is None
            assert row.usage is None
        elif text == "drop:1" and row.error is not None:
            # Retried only on a reused keep-alive connection (the transport's documented
            # rule): otherwise the request may have reached the model, and the row says so.
            assert row.result is None
            assert "ServingBrokenConnectionError" in row.error
        else:
            assert (row.result, row.error) == (f"echo: {text}", None)
            assert row.usage.input_tokens == len(text)
    assert rows[4].error.startswith("ServingResponseError: expected a JSON object")
    assert rows[5].error == "BAD_REQUEST: the input is not allowed"


def test_equal_requests_in_a_partition_are_sent_once(
    spark: Any, serving_env: ServingTestServer
) -> None:
    install(serving_env)
    df = _frame(spark, ["a", "b", "a", "b", "a"], 1)
    out = ai_query(df, "test-chat", "text").orderBy("id").collect()
    assert [r.result for r in out] == ["echo: a", "echo: b", "echo: a", "echo: b", "echo: a"]
    assert sorted(user_text(r) for r in serving_env.requests_to(CHAT)) == ["a", "b"]


def test_structured_output_is_a_struct(spark: Any, serving_env: ServingTestServer) -> None:
    install(serving_env)
    texts = ['json {"name": "Ada", "age": 36}', 'json {"name": "Bob"}']
    out = ai_query(
        _frame(spark, texts), "test-chat", "text", response_format=Person, fail_on_error=False
    )
    assert out.schema["result"].dataType == T.StructType(
        [T.StructField("name", T.StringType()), T.StructField("age", T.LongType())]
    )
    rows = {r.id: r for r in out.collect()}
    assert rows[0].result.asDict() == {"name": "Ada", "age": 36}
    assert rows[1].result is None
    assert rows[1].error.startswith("RESPONSE_FORMAT_MISMATCH")


def test_embeddings_are_float_arrays(spark: Any, serving_env: ServingTestServer) -> None:
    install(serving_env)
    texts = [f"text {'x' * i}" for i in range(10)]
    model = ServingEmbeddings(endpoint="test-embeddings", batch_size=4)
    out = ai_query(_frame(spark, texts, 1), model, "text")
    assert out.schema["result"].dataType == T.ArrayType(T.FloatType(), containsNull=False)
    rows = {r.id: r for r in out.collect()}
    assert [rows[i].result for i in range(10)] == [embed(t) for t in texts]
    assert sorted(len(b["input"]) for b in bodies(serving_env, EMBEDDINGS)) == [2, 4, 4]


def test_fail_on_error_fails_the_job_naming_the_row(
    spark: Any, serving_env: ServingTestServer
) -> None:
    install(serving_env)
    out = ai_query(_frame(spark, ["fine", "bad"], 1), "test-chat", "text")
    with pytest.raises(
        Exception, match=r"row \d of partition 0 failed on endpoint 'test-chat': BAD_REQUEST"
    ):
        out.collect()


def test_one_model_per_executor_process(spark: Any, serving_env: ServingTestServer) -> None:
    install(serving_env)
    plan = build_plan(
        ChatServing(endpoint="test-chat"),
        "text",
        task=None,
        model_parameters=None,
        response_format=None,
        fail_on_error=True,
        result_column="result",
        error_column="error",
        usage_column=None,
        max_concurrency=4,
        workspace=None,
    )

    def probe(frames: Any) -> Any:
        for _ in frames:
            pass
        shared = plan.shared()
        yield pd.DataFrame({"pid": [os.getpid()], "model": [id(shared.caller.model)]})

    seen = spark.range(0, 8, numPartitions=8).mapInPandas(probe, "pid long, model long").collect()
    models: dict[int, set[int]] = defaultdict(set)
    for row in seen:
        models[row.pid].add(row.model)
    assert len(seen) == 8
    assert all(len(ids) == 1 for ids in models.values()), models


def test_connections_are_reused_across_tasks(spark: Any, serving_env: ServingTestServer) -> None:
    install(serving_env)
    model = ChatServing(endpoint="test-chat")
    df = _frame(spark, [f"row {i}" for i in range(64)], 8)
    assert ai_query(df, model, "text", max_concurrency=4).count() == 64
    peers = {r.peer for r in serving_env.requests_to(CHAT)}
    assert len(serving_env.requests_to(CHAT)) == 64
    # Two worker processes, at most 4 connections each, shared by all 8 tasks.
    assert len(peers) <= 8


def test_sql_function(spark: Any, serving_env: ServingTestServer) -> None:
    install(serving_env)
    register_ai_query(spark)
    answer = spark.sql("SELECT ai_query('test-chat', 'Can you explain AI in ten words?') AS a")
    assert answer.collect()[0].a == "echo: Can you explain AI in ten words?"
    _frame(spark, ["x", "y", "x"]).createOrReplaceTempView("texts")
    rows = spark.sql("SELECT id, ai_query('test-chat', text) AS answer FROM texts").collect()
    assert {r.id: r.answer for r in rows} == {0: "echo: x", 1: "echo: y", 2: "echo: x"}


def test_sql_function_without_failing(spark: Any, serving_env: ServingTestServer) -> None:
    install(serving_env)
    register_ai_query(spark, "ai_query_lenient", fail_on_error=False)
    _frame(spark, ["fine", "bad"], 1).createOrReplaceTempView("lenient")
    rows = spark.sql("SELECT id, ai_query_lenient('test-chat', text) AS a FROM lenient").collect()
    answers = {r.id: (r.a.result, r.a.errorMessage) for r in rows}
    assert answers == {0: ("echo: fine", None), 1: (None, "BAD_REQUEST: the input is not allowed")}


def _listing(serving_env: ServingTestServer) -> None:
    serving_env.reply(
        LISTING_PATH,
        listing(
            endpoint_object("test-chat"),
            endpoint_object("test-embeddings", "llm/v1/embeddings"),
        ),
    )


def test_totals_after_an_action(
    spark: Any, serving_env: ServingTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    install(serving_env)
    texts = ["429:1", "429:1 again", "bad", *[f"row {i}" for i in range(20)]]
    out = ai_query(
        _frame(spark, texts, 3), "test-chat", "text", fail_on_error=False, usage_column="usage"
    )
    assert out.ai_query_totals.value == {  # nothing ran yet
        "rows": 0,
        "requests": 0,
        "calls": 0,
        "rate_limited": 0,
        "errors": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
    }
    rows = out.collect()
    with caplog.at_level(logging.INFO, logger="langchain_servingx.batch"):
        totals = out.ai_query_totals.value
    assert "ai_query on 'test-chat': {'rows': 23" in caplog.text
    # Every HTTP request the endpoint saw, the two 429s and their retries included.
    assert totals["calls"] == len(serving_env.requests_to(CHAT)) == len(texts) + 2
    assert (totals["rows"], totals["requests"]) == (len(texts), len(texts))
    assert (totals["rate_limited"], totals["errors"]) == (2, 1)
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        assert totals[key] == sum(r.usage[key] for r in rows if r.usage is not None) > 0
    # Each action runs the rows again, and the totals count what was sent.
    assert out.count() == len(texts)
    assert out.ai_query_totals.value["rows"] == 2 * len(texts)


def test_totals_of_packed_embeddings(spark: Any, serving_env: ServingTestServer) -> None:
    install(serving_env)
    texts = [f"text {i}" for i in range(9)]
    model = ServingEmbeddings(endpoint="test-embeddings", batch_size=4)
    out = ai_query(_frame(spark, texts, 1), model, "text", usage_column="usage")
    usage = [r.usage for r in out.collect()]
    assert sum(u is None for u in usage) == 8  # packed four to a request: no per-row count
    assert [u.asDict() for u in usage if u is not None] == [
        {"input_tokens": 2, "output_tokens": 0, "total_tokens": 2}
    ]
    totals = out.ai_query_totals.value
    assert (totals["calls"], totals["input_tokens"]) == (3, 2 * len(texts))


def test_sql_embeddings_are_float_arrays(spark: Any, serving_env: ServingTestServer) -> None:
    install(serving_env)
    _listing(serving_env)
    totals = register_ai_query(spark, task="embeddings")
    texts = [f"text {'x' * i}" for i in range(6)]
    _frame(spark, texts).createOrReplaceTempView("docs")
    vectors = spark.sql("SELECT id, ai_query('test-embeddings', text) AS v FROM docs")
    assert vectors.schema["v"].dataType == T.ArrayType(T.FloatType(), containsNull=False)
    assert {r.id: r.v for r in vectors.collect()} == {i: embed(t) for i, t in enumerate(texts)}
    assert all(len(b["input"]) > 1 for b in bodies(serving_env, EMBEDDINGS))  # packed
    assert totals is not None
    assert totals.value["rows"] == len(texts)
    assert totals.value["input_tokens"] == 2 * len(texts)
    with pytest.raises(Exception, match="ENDPOINT_TASK_MISMATCH: endpoint 'test-chat' serves chat"):
        spark.sql("SELECT ai_query('test-chat', 'hi') AS v").collect()


def test_sql_text_function_refuses_an_embeddings_endpoint(
    spark: Any, serving_env: ServingTestServer
) -> None:
    install(serving_env)
    _listing(serving_env)
    register_ai_query(spark, "ai_text", fail_on_error=False)
    _frame(spark, ["a", "b"], 1).createOrReplaceTempView("two")
    query = "SELECT id, ai_text('test-embeddings', text) AS e, ai_text('test-chat', text) AS c"
    rows = spark.sql(f"{query} FROM two").collect()
    for row in rows:
        assert row.e.result is None
        assert row.e.errorMessage.startswith(
            "ENDPOINT_TASK_MISMATCH: endpoint 'test-embeddings' serves embeddings"
        )
        assert (row.c.result, row.c.errorMessage) == (f"echo: {'ab'[row.id]}", None)
    assert serving_env.requests_to(EMBEDDINGS) == []


def test_sql_structured_output(spark: Any, serving_env: ServingTestServer) -> None:
    install(serving_env)
    totals = register_ai_query(spark, "ai_person", response_format=Person, fail_on_error=False)
    people = ['json {"name": "Ada", "age": 36}', 'json {"name": "Bob"}']
    _frame(spark, people, 1).createOrReplaceTempView("people")
    answer = spark.sql("SELECT id, ai_person('test-chat', text) AS p FROM people")
    person = T.StructType(
        [T.StructField("name", T.StringType()), T.StructField("age", T.LongType())]
    )
    assert answer.schema["p"].dataType == T.StructType(
        [T.StructField("result", person), T.StructField("errorMessage", T.StringType())]
    )
    rows = {r.id: r.p for r in answer.collect()}
    assert rows[0].result.asDict() == {"name": "Ada", "age": 36}
    assert rows[0].errorMessage is None
    assert rows[1].result is None
    assert rows[1].errorMessage.startswith("RESPONSE_FORMAT_MISMATCH")
    assert all("response_format" in b for b in bodies(serving_env))
    assert totals is not None
    assert (totals.value["rows"], totals.value["errors"]) == (2, 1)


def test_sql_registration_refuses_bad_arguments(spark: Any) -> None:
    with pytest.raises(ValueError, match="task must be 'chat', 'completions' or 'embeddings'"):
        register_ai_query(spark, task="embedding")
    with pytest.raises(ValueError, match="response_format applies to chat endpoints"):
        register_ai_query(spark, task="embeddings", response_format=Person)

"""ai_query on real Spark (`local[2]`), live against the embedded local endpoint's models.

Marked `spark` (and `local` by this directory): run by `make test-spark`, which starts the
endpoint and one Spark session for the run.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("pyspark", reason="pyspark is not installed: run `make test-spark`")

from pyspark.sql import types as T  # noqa: N812

from langchain_servingx import ServingWorkspace, ai_query, register_ai_query
from tests.local.batch_data import CITY_PROMPT, SUMMARY_PROMPT, TEXTS, City
from tests.spark_session import spark

__all__ = ["spark"]

pytestmark = pytest.mark.spark


@pytest.fixture
def texts(spark: Any) -> Any:
    rows = [(i, t) for i, t in enumerate(TEXTS)]
    return spark.createDataFrame(rows, "id long, text string").repartition(2, "id")


def test_chat_on_spark(local_env: str, texts: Any) -> None:
    out = ai_query(
        texts,
        "local-chat",
        SUMMARY_PROMPT,
        model_parameters={"max_tokens": 24, "temperature": 0},
        fail_on_error=False,
    )
    rows = {r.id: r for r in out.collect()}
    assert all(rows[i].error is None for i in range(4))
    assert all(isinstance(rows[i].result, str) and rows[i].result.strip() for i in range(4))


def test_embeddings_on_spark(local_env: str, texts: Any) -> None:
    out = ai_query(texts, "local-embeddings", "text")  # the task comes from the listing
    assert out.schema["result"].dataType == T.ArrayType(T.FloatType(), containsNull=False)
    rows = {r.id: r.result for r in out.collect()}
    assert all(len(rows[i]) == 384 for i in range(4))
    # Equal texts; they may sit in different partitions and batches (padding moves the
    # last digits of a float32).
    assert rows[0] == pytest.approx(rows[2], rel=1e-4, abs=1e-5)


def test_completions_on_spark(local_env: str, texts: Any) -> None:
    out = ai_query(
        texts, "local-completions", "{text} In other words,", model_parameters={"max_tokens": 8}
    )
    assert all(isinstance(r.result, str) for r in out.collect())


def test_structured_output_on_spark(local_env: str, spark: Any) -> None:
    places = spark.createDataFrame([("Paris",), ("Tokyo",)], "place string")
    out = ai_query(
        places,
        "local-chat",
        CITY_PROMPT,
        response_format=City,
        model_parameters={"max_tokens": 48, "temperature": 0},
    )
    assert out.schema["result"].dataType == T.StructType(
        [T.StructField("city", T.StringType()), T.StructField("country", T.StringType())]
    )
    for row in out.collect():
        assert isinstance(row.result.city, str)
        assert isinstance(row.result.country, str)


def test_sql_on_spark(local_env: str, spark: Any) -> None:
    register_ai_query(spark, workspace=ServingWorkspace())
    answer = spark.sql("SELECT ai_query('local-chat', 'Can you explain AI in ten words?') AS a")
    assert answer.schema["a"].dataType == T.StringType()
    assert isinstance(answer.collect()[0].a, str)
    # The seed's embeddings query, typed like SQL's ai_query: array<float>.
    totals = register_ai_query(spark, task="embeddings")
    spark.createDataFrame([(t,) for t in TEXTS[:2]], "text string").createOrReplaceTempView("t")
    vectors = spark.sql("SELECT ai_query('local-embeddings', text) AS v FROM t")
    assert vectors.schema["v"].dataType == T.ArrayType(T.FloatType(), containsNull=False)
    assert all(len(r.v) == 384 for r in vectors.collect())
    assert totals is not None
    assert totals.value["rows"] == 2
    assert totals.value["input_tokens"] > 0


def test_sql_structured_output_on_spark(local_env: str, spark: Any) -> None:
    register_ai_query(
        spark,
        "ai_city",
        response_format=City,
        model_parameters={"max_tokens": 48, "temperature": 0},
    )
    spark.createDataFrame([("Paris",)], "place string").createOrReplaceTempView("places")
    assert CITY_PROMPT.endswith(": {place}")  # the same prompt, written in SQL
    answer = spark.sql(
        "SELECT ai_city('local-chat', "
        "concat('Give the city and its country as JSON for: ', place)) AS c FROM places"
    )
    assert answer.schema["c"].dataType == T.StructType(
        [T.StructField("city", T.StringType()), T.StructField("country", T.StringType())]
    )
    (row,) = answer.collect()
    assert isinstance(row.c.city, str)
    assert isinstance(row.c.country, str)


def test_totals_on_spark(local_env: str, texts: Any) -> None:
    out = ai_query(
        texts,
        "local-chat",
        SUMMARY_PROMPT,
        model_parameters={"max_tokens": 16, "temperature": 0},
        usage_column="usage",
    )
    rows = out.collect()
    totals = out.ai_query_totals.value
    assert totals["rows"] == len(TEXTS)
    assert totals["requests"] in (3, 4)  # equal rows in one partition are sent once
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        assert totals[key] == sum(r.usage[key] for r in rows) > 0

"""ai_query on real Spark (`local[2]`), live against the embedded local endpoint's models.

Marked `spark` (and `local` by this directory): run by `make test-spark`, which starts the
endpoint and one Spark session for the run.
"""

from __future__ import annotations

import json
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
    assert isinstance(answer.collect()[0].a, str)
    spark.createDataFrame([(t,) for t in TEXTS[:2]], "text string").createOrReplaceTempView("t")
    vectors = spark.sql("SELECT ai_query('local-embeddings', text) AS v FROM t").collect()
    assert all(len(json.loads(r.v)) == 384 for r in vectors)

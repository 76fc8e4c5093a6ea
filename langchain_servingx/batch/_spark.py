"""`ai_query` on Spark DataFrames (`mapInArrow`) and in Spark SQL (`register_ai_query`).

Each partition streams Arrow record batches through one executor Python process; its rows
run concurrently on that process's batch loop, over the model object and pooled clients the
process keeps for every task of the same configuration. Input columns pass through as
Arrow, untouched; the result columns are typed from the task and the response format.

A task that Spark retries (an executor lost, a speculative copy) sends its partition's rows
again: serving calls are not idempotent, so those rows are paid for twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from langchain_servingx.batch._calls import format_error
from langchain_servingx.batch._loop import run_sync
from langchain_servingx.batch._plan import QueryPlan, build_plan, pinned_workspace
from langchain_servingx.batch._runner import Outcome
from langchain_servingx.workspace import ServingWorkspace

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

__all__ = ["query_spark", "register_ai_query", "result_type"]


def result_type(plan: QueryPlan) -> DataType:
    """The Spark type of the result column: text, a vector, or the schema's struct."""
    from pyspark.sql import types as T  # noqa: N812

    if plan.task == "embeddings":
        return T.ArrayType(T.FloatType(), containsNull=False)
    if plan.fmt.structured:
        return cast("DataType", plan.fmt.shape.spark_type())
    return T.StringType()


def added_schema(plan: QueryPlan) -> StructType:
    """The columns `ai_query` adds, in order."""
    from pyspark.sql import types as T  # noqa: N812

    fields = [T.StructField(plan.columns.result, result_type(plan), nullable=True)]
    if plan.columns.error is not None:
        fields.append(T.StructField(plan.columns.error, T.StringType(), nullable=True))
    if plan.columns.usage is not None:
        usage = T.StructType(
            [
                T.StructField(k, T.LongType())
                for k in ("input_tokens", "output_tokens", "total_tokens")
            ]
        )
        fields.append(T.StructField(plan.columns.usage, usage, nullable=True))
    return T.StructType(fields)


def query_spark(df: DataFrame, plan: QueryPlan) -> DataFrame:
    """A lazy DataFrame: `df`'s columns plus the result columns."""
    from pyspark.sql import types as T  # noqa: N812

    plan.request.check_columns(df.columns)
    plan.columns.check_free(df.columns)
    plan = plan.pinned()
    added = added_schema(plan)
    schema = T.StructType([*df.schema.fields, *added.fields])
    needed = list(plan.request.columns) if plan.request.columns is not None else None

    def run_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return _run_partition(plan, added, needed, batches)

    return df.mapInArrow(run_partition, schema)


def _run_partition(
    plan: QueryPlan,
    added: StructType,
    needed: list[str] | None,
    batches: Iterator[pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa
    from pyspark import TaskContext
    from pyspark.sql.pandas.types import to_arrow_schema

    local = plan.shared()
    added_arrow = to_arrow_schema(added)
    context = TaskContext.get()
    partition = context.partitionId() if context is not None else 0
    cache: dict[Any, Outcome] = {}  # equal requests across this partition's batches: sent once
    offset = 0
    for batch in batches:
        rows = (batch.select(needed) if needed is not None else batch).to_pylist()
        requests, result = run_sync(local.run_rows(rows, cache=cache))
        failure = result.failure()
        if failure is not None:
            row, error = failure
            where = f"row {offset + row} of partition {partition}"
            raise local.row_error(error, where, requests[row])
        outcomes = [o or Outcome() for o in result.outcomes]
        arrays = [
            pa.array(_column(local, name, outcomes), type=added_arrow.field(name).type)
            for name in added_arrow.names
        ]
        yield pa.RecordBatch.from_arrays(
            [*batch.columns, *arrays],
            schema=pa.schema([*batch.schema, *added_arrow]),
        )
        offset += batch.num_rows


def _column(plan: QueryPlan, name: str, outcomes: list[Outcome]) -> list[Any]:
    if name == plan.columns.result:
        if plan.task == "embeddings":
            return [o.value for o in outcomes]
        return [None if o.value is None else plan.fmt.for_spark(o.value) for o in outcomes]
    if name == plan.columns.error:
        return [None if o.error is None else format_error(o.error) for o in outcomes]
    return [o.usage for o in outcomes]


def register_ai_query(
    spark: SparkSession,
    name: str = "ai_query",
    *,
    workspace: ServingWorkspace | None = None,
    fail_on_error: bool = True,
    max_concurrency: int = 64,
) -> None:
    """Register `ai_query(endpoint, request)` as a Spark SQL function.

    `SELECT ai_query('local-chat', 'Can you explain AI in ten words?')` answers text, the
    endpoint's task coming from the workspace's listing; an embeddings endpoint answers its
    vector as JSON text (`from_json(..., 'array<float>')` types it). With
    `fail_on_error=False` the function returns `struct<result, errorMessage>` instead, as
    SQL's `ai_query(..., failOnError => false)` does. Rows of one Arrow batch that name
    the same endpoint run concurrently, equal requests once.
    """
    import pandas as pd
    from pyspark.sql.pandas.functions import pandas_udf
    from pyspark.sql.types import StringType, StructField, StructType

    pinned = pinned_workspace(workspace if workspace is not None else ServingWorkspace())
    _ = pinned.transport  # a configuration problem shows here, not on an executor
    plans: dict[str, QueryPlan] = {}

    def plan_for(endpoint: str) -> QueryPlan:
        plan = plans.get(endpoint)
        if plan is None:
            plan = build_plan(
                endpoint,
                "request",
                task=None,
                model_parameters=None,
                response_format=None,
                fail_on_error=fail_on_error,
                result_column="result",
                error_column="error",
                usage_column=None,
                max_concurrency=max_concurrency,
                workspace=pinned,
            ).shared()
            plans[endpoint] = plan
        return plan

    def answer(endpoints: pd.Series, requests: pd.Series) -> tuple[list[Any], list[str | None]]:
        results: list[Any] = [None] * len(requests)
        errors: list[str | None] = [None] * len(requests)
        for endpoint in dict.fromkeys(endpoints.dropna()):
            positions = [i for i, e in enumerate(endpoints) if e == endpoint]
            plan = plan_for(str(endpoint))
            sent, result = run_sync(
                plan.run_rows([{"request": requests.iloc[i]} for i in positions])
            )
            failure = result.failure()
            if failure is not None:
                row, error = failure
                raise plan.row_error(error, f"{name}() row", sent[row])
            for i, outcome in zip(positions, result.outcomes, strict=True):
                if outcome is None:
                    continue
                if outcome.value is not None:
                    results[i] = plan.fmt.for_spark(outcome.value)
                if outcome.error is not None:
                    errors[i] = format_error(outcome.error)
        return results, errors

    # pandas_udf reads the kind of function from its annotations: one per return type.
    def strict_udf(endpoints: pd.Series, requests: pd.Series) -> pd.Series:
        return pd.Series(answer(endpoints, requests)[0], dtype=object)

    def lenient_udf(endpoints: pd.Series, requests: pd.Series) -> pd.DataFrame:
        results, errors = answer(endpoints, requests)
        return pd.DataFrame({"result": results, "errorMessage": errors})

    # The annotations above are strings (postponed evaluation); pandas_udf needs the types.
    strict_udf.__annotations__ = {
        "endpoints": pd.Series,
        "requests": pd.Series,
        "return": pd.Series,
    }
    lenient_udf.__annotations__ = {**strict_udf.__annotations__, "return": pd.DataFrame}
    if fail_on_error:
        udf = pandas_udf(strict_udf, StringType())  # type: ignore[call-overload,unused-ignore]
    else:
        fields = [StructField("result", StringType()), StructField("errorMessage", StringType())]
        udf = pandas_udf(lenient_udf, StructType(fields))  # type: ignore[call-overload,unused-ignore]
    spark.udf.register(name, udf)

"""`ai_query` on Spark DataFrames (`mapInArrow`), with job-level totals.

Each partition streams Arrow record batches through one executor Python process; its rows
run concurrently on that process's batch loop, over the model object and pooled clients the
process keeps for every task of the same configuration. Input columns pass through as
Arrow, untouched; the result columns are typed from the task and the response format.

Every batch adds its totals to the DataFrame's `SparkTotals` (an accumulator), read on the
driver after an action as `out.ai_query_totals.value`.

A task that Spark retries (an executor lost, a speculative copy) sends its partition's rows
again: serving calls are not idempotent, so those rows are paid for twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from langchain_servingx.batch._calls import format_error
from langchain_servingx.batch._formats import ResponseFormat
from langchain_servingx.batch._loop import run_sync
from langchain_servingx.batch._plan import QueryPlan
from langchain_servingx.batch._runner import Outcome
from langchain_servingx.batch._totals import SparkTotals

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType, StructType

__all__ = ["query_spark", "result_type", "spark_value", "value_type"]


def value_type(task: str, fmt: ResponseFormat) -> DataType:
    """The Spark type of a result: a vector (embeddings), the schema's struct, or text."""
    from pyspark.sql import types as T  # noqa: N812

    if task == "embeddings":
        return T.ArrayType(T.FloatType(), containsNull=False)
    if fmt.structured:
        return cast("DataType", fmt.shape.spark_type())
    return T.StringType()


def result_type(plan: QueryPlan) -> DataType:
    """The Spark type of the plan's result column."""
    return value_type(plan.task, plan.fmt)


def spark_value(plan: QueryPlan, value: Any) -> Any:
    """A row's result in the form of its Spark column."""
    if value is None or plan.task == "embeddings":
        return value
    return plan.fmt.for_spark(value)


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

    label = repr(plan.caller.endpoint) if plan.caller.endpoint else "a Runnable"
    totals = SparkTotals.of(df.sparkSession, label)

    def run_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return _run_partition(plan, added, needed, totals, batches)

    out = df.mapInArrow(run_partition, schema)
    out.ai_query_totals = totals  # type: ignore[attr-defined,unused-ignore]
    return out


def _run_partition(
    plan: QueryPlan,
    added: StructType,
    needed: list[str] | None,
    totals: SparkTotals | None,
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
        if totals is not None:
            totals.add(result.stats)
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
        return [spark_value(plan, o.value) for o in outcomes]
    if name == plan.columns.error:
        return [None if o.error is None else format_error(o.error) for o in outcomes]
    return [o.usage for o in outcomes]

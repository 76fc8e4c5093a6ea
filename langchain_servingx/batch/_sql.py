"""`ai_query` in Spark SQL: `register_ai_query(spark)`, typed by the task it is registered for.

A Python function registered in Spark SQL has one return type, fixed when it is registered
(Spark's own `ai_query` is a built-in that the analyzer types per call). So the type comes
from the registration: text for chat and completions endpoints, `array<float>` for
`task="embeddings"`, the struct of `response_format`. Each Arrow batch's rows run
concurrently per endpoint, over the executor process's shared models (`QueryPlan.shared`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_servingx._errors import ServingInvalidRequestError
from langchain_servingx.batch._calls import format_error
from langchain_servingx.batch._formats import ResponseFormat
from langchain_servingx.batch._loop import run_sync
from langchain_servingx.batch._plan import (
    AIQueryError,
    QueryPlan,
    build_plan,
    check_arguments,
    listed_task,
    pinned_workspace,
)
from langchain_servingx.batch._runner import RunStats
from langchain_servingx.batch._spark import spark_value, value_type
from langchain_servingx.batch._totals import SparkTotals
from langchain_servingx.workspace import ServingWorkspace

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

__all__ = ["TASK_MISMATCH", "register_ai_query"]

TASK_MISMATCH = "ENDPOINT_TASK_MISMATCH"
"""The error code of a row whose endpoint serves another task than the function answers."""


def register_ai_query(
    spark: SparkSession,
    name: str = "ai_query",
    *,
    task: str | None = None,
    response_format: Any = None,
    model_parameters: Mapping[str, Any] | None = None,
    workspace: ServingWorkspace | None = None,
    fail_on_error: bool = True,
    max_concurrency: int = 64,
) -> SparkTotals | None:
    """Register `name(endpoint, request)` as a Spark SQL function; returns its totals.

    The function's type is fixed here: text by default (chat and completions endpoints, the
    task from the workspace's listing), `array<float>` with `task="embeddings"`, the
    struct derived from `response_format` (chat). An endpoint listed with another task is
    that row's error (`ENDPOINT_TASK_MISMATCH`), never a value of the wrong type. With
    `fail_on_error=False` the function returns `struct<result, errorMessage>`, as SQL's
    `failOnError => false` does. The returned `SparkTotals` (None on Spark Connect) sums
    every call of the function: read `.value` after an action.
    """
    try:
        from pyspark.sql.pandas.functions import arrow_udf
    except ImportError:
        raise ImportError(
            "register_ai_query needs pyspark>=4.1 (Arrow UDFs); ai_query on DataFrames "
            "works from 3.5"
        ) from None
    import pyarrow as pa
    from pyspark.sql import types as T  # noqa: N812
    from pyspark.sql.pandas.types import to_arrow_schema

    check_arguments(task, model_parameters, max_concurrency)
    fmt = ResponseFormat.of(response_format)
    if fmt.structured and task not in (None, "chat"):
        raise ValueError(f"response_format applies to chat endpoints, not task={task!r}")
    pinned = pinned_workspace(workspace if workspace is not None else ServingWorkspace())
    _ = pinned.transport  # a configuration problem shows here, not on an executor
    result = value_type(task or "chat", fmt)
    fields = [T.StructField("result", result), T.StructField("errorMessage", T.StringType())]
    returned = result if fail_on_error else T.StructType(fields)
    arrow_type = to_arrow_schema(T.StructType([T.StructField("v", returned)])).field("v").type
    result_arrow = arrow_type if fail_on_error else arrow_type.field("result").type
    totals = SparkTotals.of(spark, f"SQL function {name}()")
    plans: dict[str, QueryPlan | Exception] = {}
    options: dict[str, Any] = {
        "response_format": response_format,
        "model_parameters": model_parameters,
        "workspace": pinned,
        "fail_on_error": fail_on_error,
        "max_concurrency": max_concurrency,
    }

    def plan_for(endpoint: str) -> QueryPlan | Exception:
        if endpoint not in plans:
            try:
                plans[endpoint] = _plan_for(endpoint, name, task, options).shared()
            except Exception as error:  # that endpoint's rows get it
                plans[endpoint] = error
        return plans[endpoint]

    def answer(endpoints: pa.Array, requests: pa.Array) -> pa.Array:
        names, texts = endpoints.to_pylist(), requests.to_pylist()
        results: list[Any] = [None] * len(texts)
        errors: list[str | None] = [None] * len(texts)
        stats = RunStats(rows=sum(e is None for e in names))
        try:
            for endpoint in dict.fromkeys(e for e in names if e is not None):
                positions = [i for i, e in enumerate(names) if e == endpoint]
                plan = plan_for(str(endpoint))
                if isinstance(plan, Exception):
                    if fail_on_error:
                        raise _failure(name, str(endpoint), plan)
                    for i in positions:
                        errors[i] = format_error(plan)
                    stats.add(RunStats(rows=len(positions), errors=len(positions)))
                    continue
                sent, run = run_sync(plan.run_rows([{"request": texts[i]} for i in positions]))
                stats.add(run.stats)
                failure = run.failure()
                if failure is not None:
                    row, error = failure
                    raise plan.row_error(error, f"{name}() row", sent[row])
                for i, outcome in zip(positions, run.outcomes, strict=True):
                    if outcome is None:
                        continue
                    results[i] = spark_value(plan, outcome.value)
                    if outcome.error is not None:
                        errors[i] = format_error(outcome.error)
        finally:
            if totals is not None:
                totals.add(stats)
        values = pa.array(results, type=result_arrow)
        if fail_on_error:
            return values
        return pa.StructArray.from_arrays(
            [values, pa.array(errors, type=pa.string())], fields=list(arrow_type)
        )

    # arrow_udf reads the kind of function from real annotations (these are strings).
    answer.__annotations__ = {"endpoints": pa.Array, "requests": pa.Array, "return": pa.Array}
    spark.udf.register(name, arrow_udf(answer, returned))  # type: ignore[call-overload,unused-ignore]
    return totals


def _plan_for(endpoint: str, name: str, task: str | None, options: dict[str, Any]) -> QueryPlan:
    """The plan for one endpoint named in a row; its task checked against the listing."""
    listed = listed_task(endpoint, options["workspace"])
    if task is None and listed == "embeddings":
        raise ServingInvalidRequestError(
            f"endpoint {endpoint!r} serves embeddings and {name}() answers text; register "
            "a function for vectors (array<float>), e.g. "
            "register_ai_query(spark, 'ai_embed', task='embeddings')",
            error_code=TASK_MISMATCH,
            endpoint=endpoint,
        )
    if task is not None and listed is not None and listed != task:
        raise ServingInvalidRequestError(
            f"endpoint {endpoint!r} serves {listed} and {name}() was registered for {task}",
            error_code=TASK_MISMATCH,
            endpoint=endpoint,
        )
    return build_plan(
        endpoint,
        "request",
        task=task or listed or "chat",
        result_column="result",
        error_column="error",
        usage_column=None,
        **options,
    )


def _failure(name: str, endpoint: str, error: Exception) -> AIQueryError:
    exc = AIQueryError(
        f"{name}() failed on endpoint {endpoint!r}: {format_error(error)}; register it with "
        "fail_on_error=False to get per-row errors instead",
        endpoint=endpoint,
    )
    exc.__cause__ = error
    return exc

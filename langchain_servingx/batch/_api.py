"""`ai_query` / `aai_query`: one function for pandas and Spark DataFrames."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from langchain_servingx.batch._loop import run_sync
from langchain_servingx.batch._plan import QueryPlan, build_plan

__all__ = ["aai_query", "ai_query"]

DEFAULT_MAX_CONCURRENCY = 64


def ai_query(
    data: Any,
    endpoint: Any,
    request: Any = None,
    *,
    task: str | None = None,
    model_parameters: Mapping[str, Any] | None = None,
    response_format: Any = None,
    fail_on_error: bool = True,
    result_column: str = "result",
    error_column: str = "error",
    usage_column: str | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    workspace: Any = None,
    progress: bool | None = None,
) -> Any:
    """Run a model over every row of a pandas or Spark DataFrame, like SQL's `ai_query`.

    Totals (rows, requests, calls, 429s, errors, tokens) are logged and left in
    `out.attrs["ai_query"]` on pandas, and in `out.ai_query_totals.value` on Spark after an
    action (an accumulator over every execution).

    Args:
        data: A `pandas.DataFrame` (a new frame with the same index is returned) or a
            `pyspark.sql.DataFrame` (a lazy DataFrame is returned; nothing runs until an
            action).
        endpoint: An endpoint name, a `ChatServing` / `ServingLLM` / `ServingEmbeddings`,
            or any picklable LangChain `Runnable` (run once per row).
        request: A column name, a template over columns (`"{title}: {body}"`), a callable
            from the row (a dict) to the request, or None for the whole row (Runnables).
            A row whose request needs a null value gets a null result.
        task: `"chat"`, `"completions"` or `"embeddings"` for an endpoint name; by default
            the endpoint's listed task (with `workspace=`), else chat.
        model_parameters: Sent with every request, e.g. `{"max_tokens": 64}`.
        response_format: None (text), `"json_object"`, a pydantic class or a JSON schema;
            results are then parsed and typed (a dict in pandas, a struct in Spark), and
            an answer that does not fit is that row's error.
        fail_on_error: True: the first row error raises `AIQueryError` naming the row.
            False: an `error_column` beside the result, null on success and
            `"<error_code or status>: <message>"` otherwise; the job never fails on a row.
        result_column: Name of the result column.
        error_column: Name of the error column (with `fail_on_error=False`).
        usage_column: Also add per-row token usage (`input_tokens`, `output_tokens`,
            `total_tokens`) under this name: the row's own request's (zeros for a row
            answered by an equal row's request, null for texts packed into one
            embeddings request, whose usage only the totals have).
        max_concurrency: Most requests in flight per partition; the actual number adapts
            to 429s below it.
        workspace: The `ServingWorkspace` that endpoint names are queried through.
        progress: pandas: a tqdm progress bar (None: when tqdm is installed and there is
            a terminal or notebook to show it).

    """
    kind = _engine(data)
    plan = _plan(data, endpoint, request, locals())
    if kind == "spark":
        from langchain_servingx.batch._spark import query_spark

        return query_spark(data, plan)
    from langchain_servingx.batch._pandas import aquery_pandas

    return run_sync(aquery_pandas(data, plan, progress=progress))


async def aai_query(
    data: Any,
    endpoint: Any,
    request: Any = None,
    *,
    task: str | None = None,
    model_parameters: Mapping[str, Any] | None = None,
    response_format: Any = None,
    fail_on_error: bool = True,
    result_column: str = "result",
    error_column: str = "error",
    usage_column: str | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    workspace: Any = None,
    progress: bool | None = None,
) -> Any:
    """Async `ai_query` for pandas DataFrames, on the running event loop.

    Spark DataFrames are lazy and run on executors: use `ai_query` for them.
    """
    if _engine(data) == "spark":
        raise TypeError("aai_query runs pandas DataFrames; use ai_query for Spark (it is lazy)")
    plan = _plan(data, endpoint, request, locals())
    from langchain_servingx.batch._pandas import aquery_pandas

    return await aquery_pandas(data, plan, progress=progress)


def _plan(data: Any, endpoint: Any, request: Any, arguments: dict[str, Any]) -> QueryPlan:
    return build_plan(
        endpoint,
        request,
        task=arguments["task"],
        model_parameters=arguments["model_parameters"],
        response_format=arguments["response_format"],
        fail_on_error=arguments["fail_on_error"],
        result_column=arguments["result_column"],
        error_column=arguments["error_column"],
        usage_column=arguments["usage_column"],
        max_concurrency=arguments["max_concurrency"],
        workspace=arguments["workspace"],
        data_columns=[str(c) for c in data.columns],
    )


def _engine(data: Any) -> str:
    """Which engine `data` belongs to, without importing either.

    A DataFrame's library is imported by whoever made it, so `sys.modules` has it; the
    class's module is no guide (pandas 3 says `pandas`, pandas 2 `pandas.core.frame`).
    """
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.DataFrame):
        return "pandas"
    module = type(data).__module__
    if module.startswith("pyspark.") and type(data).__name__ == "DataFrame":
        return "spark"
    raise TypeError(
        f"ai_query takes a pandas or Spark DataFrame, got {type(data).__module__}."
        f"{type(data).__name__}"
    )

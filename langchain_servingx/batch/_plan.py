"""What one `ai_query` call does, fixed on the driver and shipped (pickled) to executors.

`QueryPlan` holds the caller (the model object, its configuration already resolved on the
driver so executors need no credentials of their own), the request spec, the response
format and the output columns. On an executor, `shared()` swaps the model for the one this
process already holds for the same configuration, so its pooled connections and learned
concurrency are reused by every task instead of rebuilt per task.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from langchain_core.runnables import Runnable

from langchain_servingx._base import ServingClientBase
from langchain_servingx._errors import ServingError
from langchain_servingx.batch._calls import Caller, caller_for, format_error
from langchain_servingx.batch._formats import ResponseFormat
from langchain_servingx.batch._limiter import AdaptiveLimiter
from langchain_servingx.batch._requests import RequestSpec
from langchain_servingx.batch._runner import Outcome, RunResult, RunStats, run_requests
from langchain_servingx.chat_models import ChatServing
from langchain_servingx.embeddings import ServingEmbeddings
from langchain_servingx.llms import ServingLLM

__all__ = ["AIQueryError", "Columns", "QueryPlan", "build_plan"]

_TASK_CLASSES: dict[str, type[ServingClientBase]] = {
    "chat": ChatServing,
    "completions": ServingLLM,
    "embeddings": ServingEmbeddings,
}
_TASK_OF_LISTING = {
    "llm/v1/chat": "chat",
    "llm/v1/completions": "completions",
    "llm/v1/embeddings": "embeddings",
}


class AIQueryError(ServingError):
    """A row failed under `fail_on_error=True`; `row` names it, the cause is chained."""

    def __init__(self, message: str, *, row: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.row = row

    def _attributes(self) -> dict[str, Any]:
        return {**super()._attributes(), "row": self.row}


@dataclass(frozen=True)
class Columns:
    """Names of the columns `ai_query` adds."""

    result: str = "result"
    error: str | None = None  # set when fail_on_error=False
    usage: str | None = None

    def added(self) -> list[str]:
        """The added column names, in order."""
        return [c for c in (self.result, self.error, self.usage) if c is not None]

    def check_free(self, existing: Sequence[str]) -> None:
        """Refuse to overwrite a column the data already has."""
        taken = [c for c in self.added() if c in existing]
        if taken:
            raise ValueError(
                f"the data already has column(s) {', '.join(map(repr, taken))}; choose other "
                "names with result_column= / error_column= / usage_column="
            )
        if len(set(self.added())) != len(self.added()):
            raise ValueError(f"result, error and usage columns must differ: {self.added()}")


@dataclass
class QueryPlan:
    """Everything a partition needs to run; picklable."""

    caller: Caller
    task: str
    request: RequestSpec
    fmt: ResponseFormat
    columns: Columns
    fail_on_error: bool
    max_concurrency: int
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    limiter: AdaptiveLimiter | None = field(default=None, compare=False)

    async def run_rows(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        cache: dict[Any, Outcome] | None = None,
        on_rows_done: Callable[[int], None] | None = None,
    ) -> tuple[list[Any], RunResult]:
        """Render and run one batch of rows; returns their requests and outcomes.

        A request function that raises on a row makes that row's error.
        """
        requests: list[Any] = []
        failed: dict[int, Outcome] = {}
        for position, row in enumerate(rows):
            try:
                requests.append(self.request.render(row))
            except Exception as exc:
                requests.append(None)
                failed[position] = Outcome(None, exc)
        if failed and self.fail_on_error:
            first = min(failed)
            outcomes: list[Outcome | None] = [None] * len(rows)
            outcomes[first] = failed[first]
            return requests, RunResult(outcomes, RunStats(rows=len(rows)), first)
        if self.limiter is None:
            self.limiter = AdaptiveLimiter(self.max_concurrency)
        result = await run_requests(
            requests,
            self.caller,
            self.limiter,
            fail_fast=self.fail_on_error,
            cache=cache,
            on_rows_done=on_rows_done,
        )
        for position, outcome in failed.items():
            result.outcomes[position] = outcome
        result.stats.errors += len(failed)
        return requests, result

    def row_error(self, error: BaseException, row: str, request: Any) -> AIQueryError:
        """The exception that fails the run on a row's error, naming the row."""
        where = f"endpoint {self.caller.endpoint!r}" if self.caller.endpoint else "the Runnable"
        preview = repr(request)
        preview = preview if len(preview) <= 80 else preview[:77] + "..."
        attrs: dict[str, Any] = {"endpoint": self.caller.endpoint}
        if isinstance(error, ServingError):
            attrs.update(status_code=error.status_code, error_code=error.error_code)
        exc = AIQueryError(
            f"{row} failed on {where}: {format_error(error)} (request {preview}); pass "
            "fail_on_error=False to get per-row errors in a column instead",
            row=row,
            **attrs,
        )
        exc.__cause__ = error
        return exc

    def shared(self) -> QueryPlan:
        """The plan over the process's shared model and limiter (executors reuse both)."""
        model = _shared_model(self.caller.model)
        caller = self.caller if model is self.caller.model else self.caller.with_model(model)
        with _SHARED_LOCK:
            limiter = _LIMITERS.setdefault(self.key, AdaptiveLimiter(self.max_concurrency))
        return replace(self, caller=caller, limiter=limiter)


def build_plan(
    endpoint: Any,
    request: Any,
    *,
    task: str | None,
    model_parameters: Mapping[str, Any] | None,
    response_format: Any,
    fail_on_error: bool,
    result_column: str,
    error_column: str,
    usage_column: str | None,
    max_concurrency: int,
    workspace: Any,
) -> QueryPlan:
    """Check every argument and fix the plan (nothing is sent)."""
    if not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ValueError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
    if task is not None and task not in _TASK_CLASSES:
        raise ValueError(f"task must be 'chat', 'completions' or 'embeddings', got {task!r}")
    if model_parameters is not None and not isinstance(model_parameters, Mapping):
        raise TypeError(f"model_parameters must be a dict, got {type(model_parameters).__name__}")
    fmt = ResponseFormat.of(response_format)
    model, resolved = _model_for(endpoint, task, workspace)
    if isinstance(model, ServingClientBase):
        _ = model.transport  # resolve host and credentials here, on the driver
    caller = caller_for(model, resolved, model_parameters or {}, fmt)
    columns = Columns(result_column, None if fail_on_error else error_column, usage_column)
    return QueryPlan(
        caller, resolved, RequestSpec.of(request), fmt, columns, fail_on_error, max_concurrency
    )


def _model_for(endpoint: Any, task: str | None, workspace: Any) -> tuple[Any, str]:
    for name, cls in _TASK_CLASSES.items():
        if isinstance(endpoint, cls):
            if task is not None and task != name:
                raise ValueError(f"task={task!r} does not match a {cls.__name__} ({name})")
            return endpoint, name
    if isinstance(endpoint, str):
        resolved = task or _listed_task(endpoint, workspace) or "chat"
        kwargs: dict[str, Any] = {"endpoint": endpoint}
        if workspace is not None:
            kwargs["workspace"] = workspace
        return _TASK_CLASSES[resolved](**kwargs), resolved
    if isinstance(endpoint, Runnable):
        if task is not None:
            raise ValueError("task= applies to endpoints; a Runnable is run as it is")
        return endpoint, "runnable"
    raise TypeError(
        "endpoint must be an endpoint name, a ChatServing / ServingLLM / ServingEmbeddings, "
        f"or a LangChain Runnable; got {type(endpoint).__name__}"
    )


def _listed_task(endpoint: str, workspace: Any) -> str | None:
    """The endpoint's task from the workspace listing, when there is one to ask."""
    lookup = getattr(workspace, "endpoint_task", None)
    if lookup is None:
        return None
    return _TASK_OF_LISTING.get(str(lookup(endpoint)))


# -- per-process sharing (executors) ------------------------------------------------------

_SHARED_LOCK = threading.Lock()
_SHARED_MODELS: dict[str, Any] = {}
_LIMITERS: dict[str, AdaptiveLimiter] = {}


def _shared_model(model: Any) -> Any:
    try:
        digest = hashlib.sha256(pickle.dumps(model)).hexdigest()
    except Exception:  # a Runnable that plain pickle cannot take: keep the task's copy
        return model
    with _SHARED_LOCK:
        return _SHARED_MODELS.setdefault(digest, model)

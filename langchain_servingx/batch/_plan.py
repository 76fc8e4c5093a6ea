"""What one `ai_query` call does, fixed on the driver and shipped (pickled) to executors.

`QueryPlan` holds the caller (the model object, its configuration already resolved on the
driver so executors need no credentials of their own), the request spec, the response
format and the output columns. On an executor, `shared()` swaps the model for the one this
process already holds for the same configuration, so its pooled connections and learned
concurrency are reused by every task instead of rebuilt per task.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from langchain_core.runnables import Runnable

from langchain_servingx._base import ServingClientBase
from langchain_servingx._config import ClientCredentials
from langchain_servingx._errors import ServingError
from langchain_servingx.batch._calls import Caller, caller_for, format_error
from langchain_servingx.batch._formats import ResponseFormat
from langchain_servingx.batch._limiter import LEARNED, AdaptiveLimiter
from langchain_servingx.batch._requests import RequestSpec
from langchain_servingx.batch._runner import Outcome, RunResult, RunStats, run_requests
from langchain_servingx.chat_models import ChatServing
from langchain_servingx.embeddings import ServingEmbeddings
from langchain_servingx.llms import ServingLLM
from langchain_servingx.workspace import CONNECTION_FIELDS, ServingWorkspace

__all__ = ["AIQueryError", "Columns", "QueryPlan", "build_plan", "check_arguments", "listed_task"]

logger = logging.getLogger("langchain_servingx.batch")

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
    executor: ThreadPoolExecutor | None = field(default=None, compare=False)
    owns_connection: bool = False

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
            self.limiter = LEARNED.limiter(self.caller.limit_key, self.max_concurrency)
        if self.executor is None:
            self.executor = _pool(self.max_concurrency)
        result = await run_requests(
            requests,
            self.caller,
            self.limiter,
            self.executor,
            fail_fast=self.fail_on_error,
            cache=cache,
            on_rows_done=on_rows_done,
        )
        LEARNED.remember(self.caller.limit_key, self.limiter)
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

    def pinned(self) -> QueryPlan:
        """The plan with its model's configuration resolved here, for other machines."""
        model = pinned(self.caller.model)
        if model is self.caller.model:
            return self
        self._close_owned()  # on the driver only the listing went through it
        return replace(self, caller=self.caller.with_model(model), owns_connection=False)

    def shared(self) -> QueryPlan:
        """The plan over the process's shared model and limiter (executors reuse both)."""
        model = _shared_model(self.caller.model)
        caller = self.caller if model is self.caller.model else self.caller.with_model(model)
        with _SHARED_LOCK:
            limiter = _LIMITERS.get(self.key)
            if limiter is None:
                limiter = LEARNED.limiter(caller.limit_key, self.max_concurrency)
                _LIMITERS[self.key] = limiter
            executor = _EXECUTORS.get(self.max_concurrency)
            if executor is None:
                executor = _EXECUTORS[self.max_concurrency] = _pool(self.max_concurrency)
        return replace(
            self, caller=caller, limiter=limiter, executor=executor, owns_connection=False
        )

    def close(self) -> None:
        """Stop the plan's own threads and close the workspace it opened for a name.

        A shared plan's threads and connections belong to the process; a model or
        workspace the caller passed is the caller's to close.
        """
        executor, self.executor = self.executor, None
        if executor is not None and executor not in _EXECUTORS.values():
            executor.shutdown(wait=False)
        self._close_owned()

    def _close_owned(self) -> None:
        if self.owns_connection:
            self.caller.model.workspace.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "limiter": None, "executor": None}


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
    data_columns: Sequence[str] | None = None,
) -> QueryPlan:
    """Check every argument and fix the plan.

    The only request sent is the endpoint listing, for the task of an endpoint name given
    without `task=`, after everything else was checked (against `data_columns` too).
    """
    check_arguments(task, model_parameters, max_concurrency)
    fmt = ResponseFormat.of(response_format)
    spec = RequestSpec.of(request)
    columns = Columns(result_column, None if fail_on_error else error_column, usage_column)
    if data_columns is not None:
        spec.check_columns(data_columns)
        columns.check_free(data_columns)
    model, resolved = _model_for(endpoint, task, workspace)
    if isinstance(model, ServingClientBase):
        _ = model.transport  # resolve host and credentials here, on the driver
    caller = caller_for(model, resolved, model_parameters or {}, fmt)
    owns = isinstance(endpoint, str) and workspace is None
    return QueryPlan(
        caller, resolved, spec, fmt, columns, fail_on_error, max_concurrency, owns_connection=owns
    )


def check_arguments(task: Any, model_parameters: Any, max_concurrency: Any) -> None:
    """Refuse a bad `task=`, `model_parameters=` or `max_concurrency=`, naming it."""
    if not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ValueError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
    if task is not None and task not in _TASK_CLASSES:
        raise ValueError(f"task must be 'chat', 'completions' or 'embeddings', got {task!r}")
    if model_parameters is not None and not isinstance(model_parameters, Mapping):
        raise TypeError(f"model_parameters must be a dict, got {type(model_parameters).__name__}")


def _model_for(
    endpoint: Any, task: str | None, workspace: ServingWorkspace | None
) -> tuple[Any, str]:
    if workspace is not None and not isinstance(workspace, ServingWorkspace):
        raise TypeError(f"workspace must be a ServingWorkspace, got {type(workspace).__name__}")
    for name, cls in _TASK_CLASSES.items():
        if isinstance(endpoint, cls):
            if task is not None and task != name:
                raise ValueError(f"task={task!r} does not match a {cls.__name__} ({name})")
            if workspace is not None:
                raise ValueError("workspace= applies to endpoint names; this model has its own")
            return endpoint, name
    if isinstance(endpoint, str):
        ws = workspace if workspace is not None else ServingWorkspace()
        resolved = task or listed_task(endpoint, ws) or "chat"
        return _TASK_CLASSES[resolved](endpoint=endpoint, workspace=ws), resolved
    if isinstance(endpoint, Runnable):
        if task is not None or workspace is not None:
            raise ValueError("task= and workspace= apply to endpoint names, not to a Runnable")
        return endpoint, "runnable"
    raise TypeError(
        "endpoint must be an endpoint name, a ChatServing / ServingLLM / ServingEmbeddings, "
        f"or a LangChain Runnable; got {type(endpoint).__name__}"
    )


def listed_task(endpoint: str, workspace: ServingWorkspace) -> str | None:
    """The endpoint's task from the workspace's listing; None when there is no listing.

    A listing without the endpoint raises `ServingNotFoundError` naming the closest names,
    before any row is sent.
    """
    try:
        workspace.list_endpoints()
    except ServingError as error:
        logger.debug("no endpoint listing (%s); %r is queried as a chat endpoint", error, endpoint)
        return None
    return _TASK_OF_LISTING.get(str(workspace.endpoint_task(endpoint)))


def pinned(model: Any) -> Any:
    """`model` over a workspace whose host and credentials are fixed (`pinned_workspace`)."""
    if not isinstance(model, ServingClientBase):
        return model
    own = {
        name: getattr(model, name)
        for name in model.model_fields_set
        if name not in CONNECTION_FIELDS and name != "workspace"
    }
    return type(model)(**own, workspace=pinned_workspace(model.connection))


def pinned_workspace(ws: ServingWorkspace) -> ServingWorkspace:
    """A workspace with `ws`'s configuration resolved here, on the driver.

    A pickled workspace resolves its configuration again where it is unpickled, and
    executors may have no `DATABRICKS_*` variables or profile: they get the values.
    """
    fields: dict[str, Any] = {name: getattr(ws, name) for name in CONNECTION_FIELDS}
    if ws.auth is None:
        settings = ws.resolved_settings()
        fields.update(host=settings.host, profile=None, token=None)
        fields.update(client_id=None, client_secret=None)
        credential = settings.credential
        if isinstance(credential, ClientCredentials):
            fields.update(client_id=credential.client_id, client_secret=credential.client_secret)
        elif credential is not None:
            fields["token"] = credential
    return ServingWorkspace(**fields)


# -- per-process sharing (executors) ------------------------------------------------------

_SHARED_LOCK = threading.Lock()
_SHARED_MODELS: dict[str, Any] = {}
_LIMITERS: dict[str, AdaptiveLimiter] = {}
_EXECUTORS: dict[int, ThreadPoolExecutor] = {}


def _pool(size: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(size, thread_name_prefix="servingx-batch")


def _shared_model(model: Any) -> Any:
    try:
        digest = hashlib.sha256(pickle.dumps(model)).hexdigest()
    except Exception:  # a Runnable that plain pickle cannot take: keep the task's copy
        return model
    with _SHARED_LOCK:
        return _SHARED_MODELS.setdefault(digest, model)

"""`ai_query` on a pandas DataFrame: a new frame, same index, the result columns added.

The rows run as one partition on the process's batch loop (or the caller's loop for
`aai_query`). A progress bar (tqdm, optional) shows rows done in a terminal or notebook;
the run's totals are logged and left in `DataFrame.attrs["ai_query"]`.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from langchain_servingx.batch._calls import format_error
from langchain_servingx.batch._plan import QueryPlan
from langchain_servingx.batch._runner import Outcome

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["aquery_pandas"]

logger = logging.getLogger("langchain_servingx.batch")


async def aquery_pandas(
    df: pd.DataFrame, plan: QueryPlan, *, progress: bool | None
) -> pd.DataFrame:
    """Run `plan` over every row of `df`."""
    import pandas as pd

    names = [str(c) for c in df.columns]
    plan.request.check_columns(names)
    plan.columns.check_free(names)
    needed = list(plan.request.columns) if plan.request.columns is not None else list(df.columns)
    rows = df[needed].to_dict("records") if len(df) else []
    bar = _progress_bar(len(rows), plan, progress)
    try:
        requests, result = await plan.run_rows(
            rows, on_rows_done=None if bar is None else bar.update
        )
    finally:
        plan.close()
        if bar is not None:
            bar.close()
    failure = result.failure()
    if failure is not None:
        row, error = failure
        label = df.index[row]
        label = label.item() if hasattr(label, "item") else label  # numpy scalars
        raise plan.row_error(error, f"row {label!r}", requests[row])
    outcomes = [o or Outcome() for o in result.outcomes]
    out = df.copy()
    columns = plan.columns
    out[columns.result] = pd.Series([o.value for o in outcomes], index=df.index, dtype=object)
    if columns.error is not None:
        out[columns.error] = pd.Series(
            [None if o.error is None else format_error(o.error) for o in outcomes],
            index=df.index,
            dtype=object,
        )
    if columns.usage is not None:
        out[columns.usage] = pd.Series([o.usage for o in outcomes], index=df.index, dtype=object)
    stats = result.stats.as_dict()
    out.attrs["ai_query"] = stats
    logger.info("ai_query on %r: %s", plan.caller.endpoint or "a Runnable", stats)
    return out


def _progress_bar(total: int, plan: QueryPlan, progress: bool | None) -> Any:
    """A tqdm bar, or None: off, not installed (auto), or nowhere to show it (auto)."""
    if progress is False or total == 0:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if progress:
            raise ImportError(
                "progress=True needs tqdm: pip install 'langchain-servingx[batch]'"
            ) from None
        return None
    if progress is None and not (_in_notebook() or sys.stderr.isatty()):
        return None
    label = f"ai_query {plan.caller.endpoint}" if plan.caller.endpoint else "ai_query"
    return tqdm(total=total, desc=label, unit="row")


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    return get is not None and type(get()).__name__ == "ZMQInteractiveShell"

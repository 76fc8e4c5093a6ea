"""Batch inference over tables: `ai_query` on pandas and Spark DataFrames, and in Spark SQL.

Needs the `batch` extra for pandas (`pip install "langchain-servingx[batch]"`) and the
`spark` extra for Spark; the core package never imports either.
"""

from typing import TYPE_CHECKING

from langchain_servingx.batch._api import aai_query, ai_query
from langchain_servingx.batch._plan import AIQueryError

if TYPE_CHECKING:  # typed for checkers, imported at run time on first use (it imports pyspark)
    from langchain_servingx.batch._sql import register_ai_query

__all__ = ["AIQueryError", "aai_query", "ai_query", "register_ai_query"]


def __getattr__(name: str) -> object:
    if name == "register_ai_query":  # imports pyspark
        from langchain_servingx.batch._sql import register_ai_query

        return register_ai_query
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

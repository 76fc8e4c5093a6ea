"""Job-level totals on Spark: one accumulator that every partition's run adds its totals to.

Executors add each batch's `RunStats` (rows, requests, calls, 429s, errors, tokens) to a
Spark accumulator; the driver reads the sum after an action. Accumulators updated inside a
transformation count every execution: a DataFrame computed by two actions, or a task Spark
retried, adds its rows again, which is what the endpoint was sent and billed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pyspark.accumulators import AccumulatorParam

from langchain_servingx.batch._runner import RunStats

if TYPE_CHECKING:
    from pyspark import Accumulator
    from pyspark.sql import SparkSession

__all__ = ["SparkTotals"]

logger = logging.getLogger("langchain_servingx.batch")

Counts = dict[str, int]


class _CountsParam(AccumulatorParam[Counts]):  # type: ignore[misc,unused-ignore]
    """Adds dicts of counts key by key."""

    def zero(self, value: Counts) -> Counts:
        return dict.fromkeys(value, 0)

    def addInPlace(self, value1: Counts, value2: Counts) -> Counts:  # noqa: N802 (Spark's name)
        for key, count in value2.items():
            value1[key] = value1.get(key, 0) + count
        return value1


class SparkTotals:
    """Totals of every row `ai_query` ran on Spark for one DataFrame or SQL function.

    Read `value` on the driver after an action: the same keys as pandas'
    `out.attrs["ai_query"]`, summed over all partitions and all executions so far.
    """

    def __init__(self, spark: SparkSession, label: str) -> None:
        self.label = label
        self._counts: Accumulator[Counts] = spark.sparkContext.accumulator(
            RunStats().as_dict(), _CountsParam()
        )

    @classmethod
    def of(cls, spark: SparkSession, label: str) -> SparkTotals | None:
        """Totals for `spark`, or None where accumulators do not exist (Spark Connect)."""
        try:
            return cls(spark, label)
        except Exception as error:  # Spark Connect has no SparkContext
            logger.debug("no ai_query totals on this session: %s", error)
            return None

    def add(self, stats: RunStats) -> None:
        """Add one run's totals (on an executor)."""
        self._counts.add(stats.as_dict())

    @property
    def value(self) -> dict[str, int]:
        """The totals so far (on the driver); logged at INFO."""
        totals = dict(self._counts.value)
        logger.info("ai_query on %s: %s", self.label, totals)
        return totals

    def __repr__(self) -> str:
        return f"SparkTotals({self.label})"

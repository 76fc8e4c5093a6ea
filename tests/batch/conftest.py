from collections.abc import Callable, Iterator
from typing import Any

import pytest

from langchain_servingx.batch._limiter import LEARNED
from tests.spark_session import spark

__all__ = ["closing", "spark"]


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """Register a model to be closed after the test (its pooled connections with it)."""
    opened: list[Any] = []

    def keep(model: Any) -> Any:
        opened.append(model)
        return model

    yield keep
    for model in opened:
        model.close()


@pytest.fixture(autouse=True)
def _fresh_limits() -> Iterator[None]:
    """Every test starts from slow start: no concurrency learned by an earlier test."""
    LEARNED.clear()
    yield
    LEARNED.clear()

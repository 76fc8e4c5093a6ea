from collections.abc import Callable, Iterator
from typing import Any

import pytest

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

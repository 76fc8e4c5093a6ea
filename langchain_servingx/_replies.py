"""Checks shared by the reply parsers: items placed by their `index` field."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["order_by_index"]


def order_by_index(
    items: list[Any],
    expected: int,
    what: str,
    invalid: Callable[[str], Exception],
) -> list[Mapping[str, Any]]:
    """Return `items` placed by their `index` field: exactly indexes `0..expected-1`.

    Items without any `index` keep their order (some servers omit it); a partial, out of
    range or duplicated set of indexes is an error, as is the wrong number of items.
    `invalid(problem)` builds the exception to raise.
    """
    if len(items) != expected:
        raise invalid(f"expected {expected} {what}, got {len(items)}")
    if not all(isinstance(item, Mapping) for item in items):
        raise invalid(f"every item of {what} must be a JSON object")
    if all("index" not in item for item in items):
        return items
    placed: list[Mapping[str, Any] | None] = [None] * expected
    for item in items:
        index = item.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < expected:
            raise invalid(f"{what} index {index!r} is missing or out of range 0-{expected - 1}")
        if placed[index] is not None:
            raise invalid(f"{what} index {index} appears twice")
        placed[index] = item
    return [item for item in placed if item is not None]

"""Rows -> requests: a column, a template over columns, a callable, or the whole row.

A row whose request needs a null value gets no request: its result is null, as SQL
functions answer null to null (and nothing is sent or billed for it).
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["RequestSpec"]

_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class RequestSpec:
    """How one row becomes one request."""

    kind: str  # "column", "template", "callable" or "row"
    source: Any
    columns: tuple[str, ...] | None  # the columns read; None: every column

    @classmethod
    def of(cls, request: Any) -> RequestSpec:
        """Parse `request=`: a column name, a `{column}` template, a callable or None."""
        if request is None:
            return cls("row", None, None)
        if callable(request):
            return cls("callable", request, None)
        if not isinstance(request, str):
            raise TypeError(
                "request must be a column name, a template such as '{title}: {body}', a "
                f"callable from a row (dict) to the request, or None; got {request!r}"
            )
        fields = _template_fields(request)
        if not fields:
            return cls("column", request, (request,))
        return cls("template", request, tuple(dict.fromkeys(fields)))

    def check_columns(self, available: Sequence[str]) -> None:
        """Refuse a request that names columns the data does not have, before any call."""
        missing = [c for c in self.columns or () if c not in available]
        if missing:
            what = "request column" if self.kind == "column" else "request template names column"
            raise KeyError(
                f"{what} {', '.join(map(repr, missing))}, which the data does not have "
                f"(columns: {', '.join(map(str, available))})"
            )

    def render(self, row: Mapping[str, Any]) -> Any:
        """The request of `row`, or None when a value it needs is null."""
        if self.kind == "column":
            value = row[self.source]
            return None if _is_null(value) else value
        if self.kind == "template":
            if any(_is_null(row[c]) for c in self.columns or ()):
                return None
            return self.source.format_map(row)
        if self.kind == "callable":
            return self.source(dict(row))
        return dict(row)

    def describe(self) -> str:
        """For messages: what the request is made from."""
        if self.kind == "callable":
            return f"request function {getattr(self.source, '__name__', self.source)!r}"
        if self.kind == "row":
            return "the whole row"
        return f"request {self.kind} {self.source!r}"


def _template_fields(template: str) -> list[str]:
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ValueError(f"request template {template!r} is not valid: {exc}") from None
    fields = []
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if not name or name.isdigit():
            raise ValueError(f"request template {template!r}: every {{field}} must name a column")
        fields.append(name)
    return fields


def _is_null(value: Any) -> bool:
    if value is None or type(value).__name__ in ("NAType", "NaTType"):  # pandas' nulls
        return True
    return isinstance(value, float) and math.isnan(value)

"""Response formats: what a chat request asks for, and how each row's answer is parsed.

`None` keeps the answer as text; `"json_object"` parses any JSON object; a pydantic class
or a JSON schema asks the endpoint for `json_schema` output, validates each answer and
types the column. An answer that does not parse or fit is that row's error, never a crash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ValidationError

from langchain_servingx._errors import ServingResponseError
from langchain_servingx.batch._schema import SchemaMismatchError, Shape, shape_of
from langchain_servingx.chat_models import _json_schema_format

__all__ = ["RESPONSE_FORMAT_ERROR", "ResponseFormat"]

RESPONSE_FORMAT_ERROR = "RESPONSE_FORMAT_MISMATCH"
"""The error code of a row whose answer does not follow the response format."""

_TEXT = Shape("string", nullable=True)


@dataclass(frozen=True)
class ResponseFormat:
    """How answers are requested (`wire`), checked and typed (`shape`)."""

    wire: dict[str, Any] | None
    shape: Shape
    model: type[BaseModel] | None = None
    structured: bool = False

    @classmethod
    def of(cls, spec: Any) -> ResponseFormat:
        """Normalise `response_format=`: None, "text", "json_object", a class or a schema."""
        if spec is None or spec == "text":
            return cls(None, _TEXT)
        if spec == "json_object":
            return cls({"type": "json_object"}, Shape("json", nullable=True), structured=True)
        if isinstance(spec, type) and issubclass(spec, BaseModel):
            return cls(
                _json_schema_format(spec, None),
                _nullable(shape_of(spec.model_json_schema())),
                spec,
                structured=True,
            )
        if isinstance(spec, Mapping):
            wire = _wire_from_mapping(spec)
            schema = wire["json_schema"]["schema"]
            return cls(wire, _nullable(shape_of(schema)), structured=True)
        raise TypeError(
            "response_format must be None, 'json_object', a pydantic class or a JSON schema "
            f"dict, got {spec!r}"
        )

    def parse(self, answer: Any, endpoint: str | None) -> Any:
        """The row's result from an answer (text, a message, a dict or a model)."""
        if isinstance(answer, BaseMessage):
            answer = answer.text
        if not self.structured:
            if isinstance(answer, BaseModel):
                return answer.model_dump(mode="json")
            return answer
        try:
            return self._parse(answer)
        except (ValueError, ValidationError) as exc:
            raise ServingResponseError(
                f"the answer does not follow the response format: {_brief(exc)}; "
                f"answer: {str(answer)[:200]!r}",
                error_code=RESPONSE_FORMAT_ERROR,
                endpoint=endpoint,
            ) from None

    def _parse(self, answer: Any) -> Any:
        if self.model is not None:
            if isinstance(answer, str):
                return self.model.model_validate_json(answer).model_dump(mode="json")
            if isinstance(answer, BaseModel):
                answer = answer.model_dump(mode="json")
            return self.model.model_validate(answer).model_dump(mode="json")
        if isinstance(answer, str):
            answer = json.loads(answer)
        elif isinstance(answer, BaseModel):
            answer = answer.model_dump(mode="json")
        if self.wire == {"type": "json_object"} and not isinstance(answer, dict):
            raise ValueError(f"expected a JSON object, got {type(answer).__name__}")
        return self.shape.check(answer)

    def for_spark(self, value: Any) -> Any:
        """A parsed result in the form of its Spark column."""
        if not self.structured and value is not None and not isinstance(value, str):
            return json.dumps(value, ensure_ascii=False, default=str)
        return self.shape.check(value, spark=True)


def _wire_from_mapping(spec: Mapping[str, Any]) -> dict[str, Any]:
    if spec.get("type") == "json_schema" and isinstance(spec.get("json_schema"), Mapping):
        inner = spec["json_schema"]
        if not isinstance(inner.get("schema"), Mapping):
            raise ValueError("response_format['json_schema'] needs a 'schema' dict")
        return {"type": "json_schema", "json_schema": {"name": "response", **inner}}
    if spec.get("type") == "json_object":
        raise ValueError("pass response_format='json_object' for JSON without a schema")
    return _json_schema_format(dict(spec), None)


def _nullable(shape: Shape) -> Shape:
    return Shape(shape.kind, shape.items, shape.fields, shape.enum, nullable=True)


def _brief(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the answer"
        return f"{where}: {first['msg']} ({exc.error_count()} error(s))"
    if isinstance(exc, SchemaMismatchError):
        return str(exc)
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON ({exc.msg} at character {exc.pos})"
    return str(exc)

"""JSON schema -> a typed shape: checks a model's answer and gives its Spark type.

One tree (`Shape`) built from the schema drives both things a structured result needs:
checking an answer against the schema (a mismatch is a row error, naming the field) and the
column type (`StructType`, `ArrayType`, ...). pyspark is imported only by `spark_type()`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_servingx._decoding import json_type

__all__ = ["SchemaMismatchError", "Shape", "shape_of"]

_MAX_DEPTH = 32


class SchemaMismatchError(ValueError):
    """An answer does not fit the schema; `path` names the field (`items[2].name`)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path or 'the answer'}: {problem}")


@dataclass(frozen=True)
class Shape:
    """One node of a schema: a scalar, an array, an object with fields, or any JSON.

    `kind` is one of `string`, `integer`, `number`, `boolean`, `array`, `object`, `json`
    (anything, kept as JSON text in Spark). `enum` restricts values when set.
    """

    kind: str
    items: Shape | None = None
    fields: tuple[tuple[str, Shape, bool], ...] = ()  # (name, shape, required)
    enum: tuple[Any, ...] | None = None
    nullable: bool = False

    def check(self, value: Any, path: str = "", *, spark: bool = False) -> Any:
        """Return `value` checked against the shape; with `spark`, in the column's form.

        For Spark an object becomes a dict of exactly its fields (missing optional fields
        null, unknown keys dropped) and `json` values become JSON text.
        """
        if value is None:
            if self.nullable or self.kind == "json":
                return None
            raise SchemaMismatchError(path, f"expected {self.kind}, got null")
        checked = _CHECKS[self.kind](self, value, path, spark)
        if self.enum is not None and checked not in self.enum:
            raise SchemaMismatchError(path, f"{checked!r} is not one of {list(self.enum)}")
        return checked

    def spark_type(self) -> Any:
        """The Spark SQL type of a column holding values of this shape."""
        from pyspark.sql import types as T  # noqa: N812 - Spark's own idiom

        scalars = {
            "string": T.StringType(),
            "integer": T.LongType(),
            "number": T.DoubleType(),
            "boolean": T.BooleanType(),
            "json": T.StringType(),
        }
        if self.kind == "array":
            return T.ArrayType((self.items or Shape("json")).spark_type(), containsNull=True)
        if self.kind == "object":
            return T.StructType(
                [
                    T.StructField(name, shape.spark_type(), nullable=True)
                    for name, shape, _ in self.fields
                ]
            )
        return scalars[self.kind]


def _check_string(shape: Shape, value: Any, path: str, spark: bool) -> Any:
    if not isinstance(value, str):
        raise SchemaMismatchError(path, f"expected a string, got {json_type(value)}")
    return value


def _check_integer(shape: Shape, value: Any, path: str, spark: bool) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise SchemaMismatchError(path, f"expected an integer, got {json_type(value)}")
    return value


def _check_number(shape: Shape, value: Any, path: str, spark: bool) -> Any:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise SchemaMismatchError(path, f"expected a number, got {json_type(value)}")
    return float(value)


def _check_boolean(shape: Shape, value: Any, path: str, spark: bool) -> Any:
    if not isinstance(value, bool):
        raise SchemaMismatchError(path, f"expected a boolean, got {json_type(value)}")
    return value


def _check_array(shape: Shape, value: Any, path: str, spark: bool) -> Any:
    if not isinstance(value, list):
        raise SchemaMismatchError(path, f"expected an array, got {json_type(value)}")
    items = shape.items or Shape("json")
    return [items.check(v, f"{path}[{i}]", spark=spark) for i, v in enumerate(value)]


def _check_object(shape: Shape, value: Any, path: str, spark: bool) -> Any:
    if not isinstance(value, Mapping):
        raise SchemaMismatchError(path, f"expected an object, got {json_type(value)}")
    checked = {} if spark else dict(value)
    for name, field_shape, required in shape.fields:
        where = f"{path}.{name}" if path else name
        if name not in value:
            if required:
                raise SchemaMismatchError(where, "required field is missing")
            if spark:
                checked[name] = None
            continue
        checked[name] = field_shape.check(value[name], where, spark=spark)
    return checked


def _check_json(shape: Shape, value: Any, path: str, spark: bool) -> Any:
    if spark and not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return value


_CHECKS = {
    "string": _check_string,
    "integer": _check_integer,
    "number": _check_number,
    "boolean": _check_boolean,
    "array": _check_array,
    "object": _check_object,
    "json": _check_json,
}


def shape_of(schema: Mapping[str, Any]) -> Shape:
    """Build the shape of a JSON schema (`$ref`s to `$defs`/`definitions` resolved).

    Unions other than "X or null", and objects without `properties`, become `json`.
    """
    if not isinstance(schema, Mapping):
        raise TypeError(f"a JSON schema must be a dict, got {type(schema).__name__}")
    return _Builder(schema).build(schema, 0)


class _Builder:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def build(self, node: Mapping[str, Any], depth: int) -> Shape:
        if depth > _MAX_DEPTH or not isinstance(node, Mapping):
            return Shape("json")
        if "$ref" in node:
            return self.build(self._resolve(node["$ref"]), depth + 1)
        for union in ("anyOf", "oneOf"):
            if union in node:
                return self._union(node[union], depth)
        if isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
            return self.build(node["allOf"][0], depth + 1)
        kind = node.get("type")
        nullable = False
        if isinstance(kind, list):
            nullable = "null" in kind
            kinds = [k for k in kind if k != "null"]
            kind = kinds[0] if len(kinds) == 1 else None
        enum = node.get("enum")
        if "const" in node:
            enum = [node["const"]]
        if kind is None and enum:
            kind = _kind_of_values(enum)
        values = tuple(enum) if isinstance(enum, list) and kind != "json" else None
        if kind == "array":
            items = node.get("items")
            item = self.build(items, depth + 1) if isinstance(items, Mapping) else Shape("json")
            return Shape("array", items=item, nullable=nullable)
        if kind == "object" or (kind is None and "properties" in node):
            properties = node.get("properties")
            if not isinstance(properties, Mapping) or not properties:
                return Shape("json", nullable=nullable)
            required = set(node.get("required") or ())
            fields = tuple(
                (str(name), self.build(sub, depth + 1), name in required)
                for name, sub in properties.items()
            )
            return Shape("object", fields=fields, nullable=nullable)
        if kind in ("string", "integer", "number", "boolean"):
            return Shape(kind, enum=values, nullable=nullable)
        return Shape("json", nullable=nullable)

    def _union(self, options: Any, depth: int) -> Shape:
        if not isinstance(options, list):
            return Shape("json")
        real = [o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")]
        if len(real) == 1:
            inner = self.build(real[0], depth + 1)
            return Shape(
                inner.kind, inner.items, inner.fields, inner.enum, len(real) < len(options)
            )
        return Shape("json", nullable=True)

    def _resolve(self, ref: Any) -> Mapping[str, Any]:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise ValueError(f"only local $refs ('#/$defs/...') are supported, got {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            if not isinstance(node, Mapping) or part not in node:
                raise ValueError(f"$ref {ref!r} points at nothing in the schema")
            node = node[part]
        if not isinstance(node, Mapping):
            raise ValueError(f"$ref {ref!r} does not point at a schema")
        return node


def _kind_of_values(values: Any) -> str:
    if not isinstance(values, list) or not values:
        return "json"
    for kind, types in (("boolean", bool), ("string", str)):
        if all(isinstance(v, types) for v in values):
            return kind
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    return "json"

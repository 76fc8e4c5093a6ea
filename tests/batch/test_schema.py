"""JSON schema -> shape: answers checked field by field, Spark forms of the values."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel

from langchain_servingx.batch._schema import SchemaMismatchError, shape_of


class Address(BaseModel):
    city: str
    zip: str | None = None


class Person(BaseModel):
    name: str
    age: int
    score: float
    tags: list[str]
    home: Address
    mood: Literal["happy", "sad"] = "happy"


def test_pydantic_schema_with_refs_and_nullables() -> None:
    shape = shape_of(Person.model_json_schema())
    assert shape.kind == "object"
    fields = {name: (s.kind, required) for name, s, required in shape.fields}
    assert fields == {
        "name": ("string", True),
        "age": ("integer", True),
        "score": ("number", True),
        "tags": ("array", True),
        "home": ("object", True),
        "mood": ("string", False),
    }
    home = dict((n, s) for n, s, _ in shape.fields)["home"]
    zip_shape = dict((n, s) for n, s, _ in home.fields)["zip"]
    assert zip_shape.kind == "string"
    assert zip_shape.nullable


def test_check_names_the_field() -> None:
    shape = shape_of(Person.model_json_schema())
    good = {"name": "a", "age": 3.0, "score": 1, "tags": ["x"], "home": {"city": "P"}}
    assert shape.check(good) == {**good, "age": 3, "score": 1.0}
    with pytest.raises(SchemaMismatchError, match=r"home\.city: required field is missing"):
        shape.check({**good, "home": {}})
    with pytest.raises(
        SchemaMismatchError, match=r"tags\[1\]: expected a string, got the number 2"
    ):
        shape.check({**good, "tags": ["x", 2]})
    with pytest.raises(SchemaMismatchError, match=r"mood: 'meh' is not one of \['happy', 'sad'\]"):
        shape.check({**good, "mood": "meh"})
    with pytest.raises(SchemaMismatchError, match="age: expected an integer, got a boolean"):
        shape.check({**good, "age": True})


def test_spark_form_has_exactly_the_fields() -> None:
    shape = shape_of(Person.model_json_schema())
    value = {"name": "a", "age": 1, "score": 2, "tags": [], "home": {"city": "P"}, "extra": 1}
    assert shape.check(value, spark=True) == {
        "name": "a",
        "age": 1,
        "score": 2.0,
        "tags": [],
        "home": {"city": "P", "zip": None},
        "mood": None,
    }


def test_untyped_parts_are_json() -> None:
    shape = shape_of(
        {
            "type": "object",
            "properties": {
                "meta": {"type": "object"},
                "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "maybe": {"type": ["integer", "null"]},
            },
        }
    )
    kinds = {n: (s.kind, s.nullable) for n, s, _ in shape.fields}
    assert kinds == {"meta": ("json", False), "either": ("json", True), "maybe": ("integer", True)}
    checked = shape.check({"meta": {"a": [1]}, "either": 3, "maybe": None}, spark=True)
    assert checked == {"meta": '{"a": [1]}', "either": "3", "maybe": None}


def test_bad_refs_are_named() -> None:
    with pytest.raises(ValueError, match="only local"):
        shape_of({"$ref": "http://example.invalid/schema"})
    with pytest.raises(ValueError, match="points at nothing"):
        shape_of({"$ref": "#/$defs/Missing"})

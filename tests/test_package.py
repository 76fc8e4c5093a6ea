"""The package's surface: exports, and fields declared once and shared."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import SecretStr

import langchain_servingx
from langchain_servingx import ChatServing, ServingEmbeddings, ServingLLM, _errors
from langchain_servingx._base import GenerationFields
from langchain_servingx.workspace import CONNECTION_FIELDS, ConnectionFields, ServingWorkspace
from tests.conftest import TEST_TOKEN

PACKAGE = Path(langchain_servingx.__file__).parent


def test_every_error_class_is_exported() -> None:
    assert set(_errors.__all__) <= set(langchain_servingx.__all__)
    assert langchain_servingx.ServingDeadlineExceededError is _errors.ServingDeadlineExceededError


def test_generation_fields_are_declared_once_with_one_type() -> None:
    for name, field in GenerationFields.model_fields.items():
        for cls in (ChatServing, ServingLLM):
            assert cls.model_fields[name].annotation == field.annotation, (cls, name)
            assert cls.model_fields[name].metadata == field.metadata, (cls, name)


def test_connection_fields_are_declared_once() -> None:
    assert frozenset(ConnectionFields.model_fields) == CONNECTION_FIELDS
    for cls in (ServingWorkspace, ChatServing, ServingEmbeddings, ServingLLM):
        assert set(cls.model_fields) >= CONNECTION_FIELDS, cls


VALUES = {
    "host": "https://other.example.com",
    "token": SecretStr("dapi-other"),
    "client_id": None,
    "client_secret": None,
    "profile": None,
    "auth": None,
    "openai_compatible": True,
    "base_url": None,
    "timeout": 12.0,
    "max_retries": 1,
    "retry_read_timeouts": True,
    "allow_insecure_http": True,
}


@pytest.mark.parametrize("name", sorted(CONNECTION_FIELDS))
def test_changing_any_connection_field_rebuilds_the_connection(server, name: str) -> None:
    llm = ChatServing(endpoint="ep", host=server.url, token=TEST_TOKEN)
    built = llm.connection
    setattr(llm, name, VALUES[name])
    assert llm._own is None
    assert llm.connection is not built
    assert getattr(llm.connection, name) == VALUES[name]
    llm.close()


def test_llms_does_not_import_from_embeddings() -> None:
    tree = ast.parse((PACKAGE / "llms.py").read_text(encoding="utf-8"))
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "langchain_servingx.embeddings" not in modules


def test_extra_params_none_means_none() -> None:
    assert ChatServing(endpoint="ep", extra_params=None).extra_params == {}
    assert ServingLLM(endpoint="ep", extra_params=None).extra_params == {}

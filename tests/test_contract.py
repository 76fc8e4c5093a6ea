"""The shared contract: client and local endpoint give the same verdicts, by construction."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from langchain_servingx import ServingConfigurationError, contract
from langchain_servingx._errors import error_from_response
from langchain_servingx._transport import check_endpoint_name
from langchain_servingx.local.config import EndpointConfig
from langchain_servingx.local.errors import EndpointError

REFUSED = ["a\\b", "v1..2", "..", ".", "a/b", "a?b", "a#b", "a%2F", "a b", "a\tb", "a\x7fb", ""]
ACCEPTED = ["local-chat", "my_endpoint.v2", "ep-1", "Ünïcode"]


def local_config(name: str) -> EndpointConfig:
    return EndpointConfig(name=name, task="llm/v1/chat", gguf="pkg:x/y.gguf")


@pytest.mark.parametrize("name", REFUSED)
def test_client_and_local_endpoint_refuse_the_same_names(name: str) -> None:
    assert contract.name_problem(name) is not None
    with pytest.raises(ServingConfigurationError):
        check_endpoint_name(name)
    with pytest.raises(ValidationError):
        local_config(name)


@pytest.mark.parametrize("name", ACCEPTED)
def test_client_and_local_endpoint_accept_the_same_names(name: str) -> None:
    assert contract.name_problem(name) is None
    assert check_endpoint_name(name) == name
    assert local_config(name).name == name


def test_one_task_vocabulary() -> None:
    assert " ".join(contract.TASKS) == (
        "llm/v1/chat llm/v1/completions llm/v1/embeddings agent/v1/chat agent/v2/chat "
        "agent/v1/responses"
    )
    with pytest.raises(ValidationError, match="an agent endpoint serves"):
        EndpointConfig(name="a", task="agent/v2/chat", gguf="pkg:x/y.gguf")
    with pytest.raises(ValidationError):
        EndpointConfig(name="a", task="llm/v2/chat", gguf="pkg:x/y.gguf")  # type: ignore[arg-type]


@pytest.mark.parametrize("status", sorted(contract.ERROR_CODES))
def test_local_error_bodies_read_back_by_the_client(status: int) -> None:
    error = EndpointError(status, None, "went wrong", extra={"details": [1]})
    body = error.body()
    assert body == {
        "error_code": contract.error_code_for(status),
        "message": "went wrong",
        "details": [1],
    }
    parsed = error_from_response(status, json.dumps(body), {}, endpoint="ep")
    assert (parsed.status_code, parsed.error_code, parsed.message) == (
        status,
        contract.ERROR_CODES[status],
        "went wrong",
    )


def test_status_code_table_both_ways() -> None:
    assert contract.error_code_for(429) == "REQUEST_LIMIT_EXCEEDED"
    assert contract.error_code_for(418) == "BAD_REQUEST"
    assert contract.error_code_for(599) == "INTERNAL_ERROR"
    for status, code in contract.ERROR_CODES.items():
        assert contract.error_code_for(contract.status_for(code) or 0) == code, status
    assert contract.status_for(None) is None
    assert contract.status_for("NOT_A_CODE") is None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


PACKAGE = Path(contract.__file__).parent
# The wire rules the local endpoint shares with the client live in LangChain-free modules.
SHARED = (
    "langchain_servingx.contract",
    "langchain_servingx.protocols.streams",
    "langchain_servingx.protocols.agent_wire",
    "langchain_servingx.local",
)
LANGCHAIN_FREE = [
    PACKAGE / "contract.py",
    PACKAGE / "protocols" / "streams.py",
    PACKAGE / "protocols" / "agent_wire.py",
    *sorted((PACKAGE / "local").glob("*.py")),
]


@pytest.mark.parametrize("path", LANGCHAIN_FREE, ids=lambda p: p.name)
def test_contract_and_local_endpoint_import_no_langchain(path: Path) -> None:
    """They import no LangChain, and of this package only the contract and the endpoint."""
    for name in _imports(path):
        assert not name.startswith(("langchain_core", "langchain.", "langchain_tests")), name
        if name.startswith("langchain_servingx"):
            assert name.startswith(SHARED), name

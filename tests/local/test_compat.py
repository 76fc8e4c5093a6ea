"""The documented clients against the real local endpoint: openai, MLflow, Databricks SDK.

Each test is a call as the client's own documentation writes it, pointed at the local
endpoint instead of a workspace; none may log a warning (the Databricks SDK and MLflow
warn when the host metadata route is missing). The ``compat`` group needs the ``compat``
extra (``make test-local`` installs it).
"""

from __future__ import annotations

import base64
import logging

import httpx
import pytest

from tests.local.conftest import LOCAL_TOKEN

pytestmark = [pytest.mark.local, pytest.mark.compat]

openai = pytest.importorskip("openai", reason="the compat extra: pip install -e '.[compat]'")
pytest.importorskip("mlflow.deployments", reason="the compat extra (mlflow-skinny)")
pytest.importorskip("databricks.sdk", reason="the compat extra (databricks-sdk)")


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder) -> None:
    """Fail the test on any warning logged or raised by the clients."""
    caplog.set_level(logging.WARNING)
    yield
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not logged, [f"{r.name}: {r.getMessage()}" for r in logged]
    raised = [str(w.message) for w in recwarn if "servingx" not in str(w.filename)]
    assert not [w for w in raised if "databricks" in w.lower() or "mlflow" in w.lower()], raised


# ------------------------------------------------------------------------------ openai


@pytest.fixture
def client(local_env: str) -> openai.OpenAI:
    # As the serving docs write it: the workspace's serving-endpoints URL as base_url.
    return openai.OpenAI(api_key=LOCAL_TOKEN, base_url=f"{local_env}/serving-endpoints")


@pytest.mark.usefixtures("quiet")
def test_openai_chat_embeddings_completions_and_models(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(
        model="local-chat",
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is a mixture of experts model?"},
        ],
        max_tokens=16,
    )
    assert chat.choices[0].message.content
    assert chat.usage is not None
    assert 0 < chat.usage.completion_tokens <= 16
    embeddings = client.embeddings.create(
        model="local-embeddings", input=["Embed this sentence.", "And this one."]
    )
    assert [len(e.embedding) for e in embeddings.data] == [384, 384]
    completion = client.completions.create(
        model="local-completions", prompt="The capital of France is", max_tokens=8
    )
    assert completion.choices[0].text
    names = {model.id for model in client.models.list()}
    assert {"local-chat", "local-completions", "local-embeddings"} <= names
    assert client.models.retrieve("local-chat").id == "local-chat"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-endpoint")


@pytest.mark.usefixtures("quiet")
def test_openai_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="local-chat",
        messages=[{"role": "user", "content": "Count to three."}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text
    assert usage is not None
    assert usage.completion_tokens > 0


@pytest.mark.usefixtures("quiet")
def test_openai_logprobs(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(
        model="local-chat",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    content = chat.choices[0].logprobs.content
    assert content
    assert len(content) == chat.usage.completion_tokens
    assert all(item.logprob <= 0 and len(item.top_logprobs) == 3 for item in content)
    # Greedy decoding picks the most likely token every time.
    assert all(item.token == item.top_logprobs[0].token for item in content)
    assert "".join(item.token for item in content) == chat.choices[0].message.content


# ---------------------------------------------------------------------- MLflow deployments


@pytest.mark.usefixtures("quiet")
def test_mlflow_deployments_client(local_env: str) -> None:
    from mlflow.deployments import get_deploy_client

    client = get_deploy_client("databricks")
    chat = client.predict(
        endpoint="local-chat",
        inputs={"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16},
    )
    assert chat["choices"][0]["message"]["content"]
    embeddings = client.predict(endpoint="local-embeddings", inputs={"input": ["Hello"]})
    assert len(embeddings["data"][0]["embedding"]) == 384
    completion = client.predict(
        endpoint="local-completions", inputs={"prompt": "Hello, my name is", "max_tokens": 8}
    )
    assert completion["choices"][0]["text"]
    chunks = list(
        client.predict_stream(
            endpoint="local-chat",
            inputs={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
        )
    )
    assert chunks
    assert any(c["choices"] and c["choices"][0]["delta"].get("content") for c in chunks)
    names = {e["name"] for e in client.list_endpoints()}
    assert "local-chat" in names
    assert client.get_endpoint("local-chat")["task"] == "llm/v1/chat"


# ------------------------------------------------------------------------ Databricks SDK


@pytest.mark.usefixtures("quiet")
def test_databricks_sdk_serving_endpoints(local_env: str) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import ChatMessage, ChatMessageRole

    w = WorkspaceClient(host=local_env, token=LOCAL_TOKEN)
    chat = w.serving_endpoints.query(
        name="local-chat",
        messages=[ChatMessage(role=ChatMessageRole.USER, content="What is MLflow?")],
        max_tokens=16,
    )
    assert chat.choices[0].message.content
    assert chat.usage.completion_tokens > 0
    embeddings = w.serving_endpoints.query(name="local-embeddings", input=["Hello"])
    assert len(embeddings.data[0].embedding) == 384
    completion = w.serving_endpoints.query(
        name="local-completions", prompt="The sky is", max_tokens=8
    )
    assert completion.choices[0].text
    endpoints = {e.name: e for e in w.serving_endpoints.list()}
    assert endpoints["local-chat"].task == "llm/v1/chat"
    assert w.serving_endpoints.get("local-embeddings").state.ready.value == "READY"


# --------------------------------------------------------------------------------- curl


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_curl_equivalents(host: str, scheme: str) -> None:
    # curl -u token:$DATABRICKS_TOKEN ... and curl -H "Authorization: Bearer $DATABRICKS_TOKEN"
    if scheme == "basic":
        credential = base64.b64encode(f"token:{LOCAL_TOKEN}".encode()).decode()
        headers = {"Authorization": f"Basic {credential}"}
    else:
        headers = {"Authorization": f"Bearer {LOCAL_TOKEN}"}
    headers["Content-Type"] = "application/json"
    body = b'{"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 8}'
    response = httpx.post(
        f"{host}/serving-endpoints/local-chat/invocations", content=body, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
    embed = httpx.post(
        f"{host}/serving-endpoints/local-embeddings/invocations",
        content=b'{"input": "Hello"}',
        headers=headers,
    )
    assert len(embed.json()["data"][0]["embedding"]) == 384
    listing = httpx.get(f"{host}/api/2.0/serving-endpoints", headers=headers)
    assert listing.status_code == 200
    wrong = httpx.post(
        f"{host}/serving-endpoints/local-chat/invocations",
        content=body,
        headers={**headers, "Authorization": "Bearer wrong"},
    )
    assert wrong.status_code == 401

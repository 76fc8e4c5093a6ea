"""The wire contract of the local endpoint, spoken with plain httpx against the real models."""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
from typing import Any

import httpx
import pytest

from tests.local.conftest import LOCAL_TOKEN

pytestmark = pytest.mark.local

AUTH = {"Authorization": f"Bearer {LOCAL_TOKEN}"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}, "hour24": {"type": "boolean"}},
            "required": ["zone", "hour24"],
        },
    },
}
PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture
def client(host: str) -> httpx.Client:
    with httpx.Client(base_url=host, headers=AUTH, timeout=120) as http:
        yield http


def invoke(client: httpx.Client, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/serving-endpoints/{endpoint}/invocations", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def stream(client: httpx.Client, endpoint: str, body: dict[str, Any]) -> list[Any]:
    """The decoded ``data:`` payloads of a stream, checking the SSE framing on the way."""
    events: list[Any] = []
    with client.stream(
        "POST", f"/serving-endpoints/{endpoint}/invocations", json={**body, "stream": True}
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else json.loads(data))
            else:
                assert line == "" or line.startswith(":"), line
    assert events[-1] == "[DONE]"
    return events[:-1]


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], "temperature": 0, **extra}


# ---------------------------------------------------------------- health and listing


def test_health_answers_without_a_token(host: str) -> None:
    health = httpx.get(f"{host}/health").json()
    assert health["status"] == "ok"
    assert health["ready"] is True
    assert set(health["endpoints"]) >= {"local-chat", "local-completions", "local-embeddings"}
    assert httpx.get(f"{host}/ready").status_code == 200


def test_listing(client: httpx.Client) -> None:
    endpoints = {e["name"]: e for e in client.get("/api/2.0/serving-endpoints").json()["endpoints"]}
    assert endpoints["local-chat"]["task"] == "llm/v1/chat"
    assert endpoints["local-completions"]["task"] == "llm/v1/completions"
    assert endpoints["local-embeddings"]["task"] == "llm/v1/embeddings"
    for name in ("local-chat", "local-completions", "local-embeddings"):
        assert endpoints[name]["state"]["ready"] == "READY"
        assert endpoints[name]["endpoint_type"] == "FOUNDATION_MODEL_API"
    assert endpoints["local-chat"]["capabilities"]["function_calling"] is True
    assert endpoints["proxy-chat"]["endpoint_type"] == "EXTERNAL_MODEL"
    one = client.get("/api/2.0/serving-endpoints/local-embeddings").json()
    assert one["name"] == "local-embeddings"
    assert one["config"]["served_entities"][0]["name"] == "all-minilm-l6-v2"


# ---------------------------------------------------------------------------- errors


def test_unknown_endpoint_is_404(client: httpx.Client) -> None:
    for response in (
        client.post("/serving-endpoints/no-such/invocations", json=chat("hi")),
        client.get("/api/2.0/serving-endpoints/no-such"),
        client.post("/serving-endpoints/chat/completions", json={**chat("hi"), "model": "no-such"}),
        client.post("/serving-endpoints/local-chat/served-models/other/invocations", json={}),
    ):
        assert response.status_code == 404
        assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/serving-endpoints/local-embeddings/invocations", chat("hi")),
        ("/serving-endpoints/local-chat/invocations", {"input": "hi"}),
        ("/serving-endpoints/local-chat/invocations", {"prompt": "hi"}),
        ("/serving-endpoints/chat/completions", {**chat("hi"), "model": "local-completions"}),
        ("/serving-endpoints/embeddings", {"input": "hi", "model": "local-chat"}),
    ],
)
def test_wrong_task_is_400(client: httpx.Client, path: str, body: dict[str, Any]) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["error_code"] == "BAD_REQUEST"
    assert "task" in error["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": "hello"}, "messages"),
        ({"messages": []}, "messages"),
        (chat("hi", temperature=3), "temperature"),
        (chat("hi", n=9), "n"),
        (chat("hi", max_tokens=0), "max_tokens"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0"),
        (
            chat(
                "hi", tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "x"}}
            ),
            "tool_choice",
        ),
        (chat("hi", tool_choice="required"), "tool_choice"),
        (chat("hi", response_format={"type": "json_schema"}), "response_format"),
        (
            chat("hi", response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
            "response_format.json_schema.name",
        ),
        (chat("hi", response_format={"type": "yaml"}), "response_format.type"),
    ],
)
def test_malformed_body_is_400_naming_the_field(
    client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    response = client.post("/serving-endpoints/local-chat/invocations", json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["error_code"] in {"BAD_REQUEST", "INVALID_PARAMETER_VALUE"}
    assert field in error["message"]


def test_not_json_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/serving-endpoints/local-chat/invocations",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["message"]
    response = client.post("/serving-endpoints/local-chat/invocations", json=[1, 2])
    assert response.status_code == 400


def test_image_parts_are_refused_clearly(client: httpx.Client) -> None:
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    response = client.post(
        "/serving-endpoints/local-chat/invocations",
        json={"messages": [{"role": "user", "content": content}]},
    )
    assert response.status_code == 400
    assert "text parts only" in response.json()["message"]


def test_unsupported_schema_is_400(client: httpx.Client) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no-such-type"}}}
    response = client.post(
        "/serving-endpoints/local-chat/invocations", json=chat("hi", response_format=fmt)
    )
    assert response.status_code == 400
    assert "response_format.json_schema.schema" in response.json()["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Token " + LOCAL_TOKEN}],
)
def test_bad_or_missing_token_is_401(host: str, headers: dict[str, str]) -> None:
    for response in (
        httpx.post(
            f"{host}/serving-endpoints/local-chat/invocations", json=chat("hi"), headers=headers
        ),
        httpx.get(f"{host}/api/2.0/serving-endpoints", headers=headers),
        httpx.post(f"{host}/serving-endpoints/no-such/invocations", json={}, headers=headers),
    ):
        assert response.status_code == 401
        assert response.json()["error_code"] == "UNAUTHENTICATED"


def test_basic_auth_with_user_token_is_accepted(host: str) -> None:
    response = httpx.get(f"{host}/api/2.0/serving-endpoints", auth=("token", LOCAL_TOKEN))
    assert response.status_code == 200


def test_unknown_route_is_404_in_the_serving_format(client: httpx.Client) -> None:
    response = client.get("/api/2.0/no-such-api")
    assert response.status_code == 404
    assert response.json()["error_code"] == "ENDPOINT_NOT_FOUND"


# ------------------------------------------------------------------------------ chat


def test_chat_invoke_has_usage_and_served_model(client: httpx.Client) -> None:
    response = client.post(
        "/serving-endpoints/local-chat/invocations",
        json=chat("What is the capital of France?", max_tokens=24),
    )
    assert response.headers["served-model-name"] == "smollm2-135m-instruct"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "smollm2-135m-instruct"
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert message["content"]
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= 24
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_list_content_name_and_developer_role_are_accepted(client: httpx.Client) -> None:
    body = {
        "messages": [
            {"role": "developer", "content": "You answer briefly."},
            {
                "role": "user",
                "name": "ann",
                "content": [{"type": "text", "text": "Say hello"}, {"type": "text", "text": "!"}],
            },
        ],
        "max_tokens": 8,
    }
    assert invoke(client, "local-chat", body)["choices"][0]["message"]["content"]


def test_max_tokens_and_max_completion_tokens(client: httpx.Client) -> None:
    long = "Write a long story about a dragon."
    for field in ("max_tokens", "max_completion_tokens"):
        body = invoke(client, "local-chat", chat(long, **{field: 5}))
        assert body["usage"]["completion_tokens"] == 5
        assert body["choices"][0]["finish_reason"] == "length"


def test_stop_sequences(client: httpx.Client) -> None:
    body = invoke(
        client,
        "local-completions",
        {"prompt": "1, 2, 3, 4,", "max_tokens": 30, "temperature": 0, "stop": ["7"]},
    )
    text = body["choices"][0]["text"]
    assert "5" in text
    assert "7" not in text
    assert body["choices"][0]["finish_reason"] == "stop"


def test_temperature_zero_is_deterministic_and_seed_reproduces(client: httpx.Client) -> None:
    greedy = chat("Name a colour.", max_tokens=12)
    assert (
        invoke(client, "local-chat", greedy)["choices"]
        == invoke(client, "local-chat", greedy)["choices"]
    )
    seeded = chat("Tell me a word.", max_tokens=12, temperature=1.2, seed=42)
    first = invoke(client, "local-chat", seeded)["choices"][0]["message"]["content"]
    assert invoke(client, "local-chat", seeded)["choices"][0]["message"]["content"] == first


def test_n_choices(client: httpx.Client) -> None:
    body = invoke(client, "local-chat", chat("Say a number.", n=3, max_tokens=6, temperature=1.0))
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    events = stream(client, "local-chat", chat("Say a number.", n=2, max_tokens=4))
    finished = {c["index"] for e in events for c in e["choices"] if c["finish_reason"]}
    assert finished == {0, 1}


def test_chat_stream_shape_and_usage(client: httpx.Client) -> None:
    events = stream(client, "local-chat", chat("Count to five.", max_tokens=12))
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert len({e["id"] for e in events}) == 1
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    assert text
    assert events[-2]["choices"][0]["finish_reason"] in {"stop", "length"}
    last = events[-1]
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] == 12 or last["usage"]["completion_tokens"] > 0
    assert "usage" not in events[0]


def test_stream_usage_can_be_turned_off_and_on(client: httpx.Client) -> None:
    off = stream(
        client, "local-chat", chat("Hi", max_tokens=4, stream_options={"include_usage": False})
    )
    assert all("usage" not in e for e in off)
    on = stream(
        client, "local-chat", chat("Hi", max_tokens=4, stream_options={"include_usage": True})
    )
    assert on[-1]["choices"] == []
    assert on[-1]["usage"]["total_tokens"] > 0


# ----------------------------------------------------------------------------- tools


def call_of(body: dict[str, Any]) -> dict[str, Any]:
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"]
    return call["function"]  # type: ignore[no-any-return]


def test_tool_choice_auto_calls_the_tool(client: httpx.Client) -> None:
    body = invoke(
        client,
        "local-chat",
        chat("What is the weather in Paris?", tools=[WEATHER], tool_choice="auto"),
    )
    function = call_of(body)
    assert function["name"] == "get_weather"
    assert json.loads(function["arguments"])["city"] == "Paris"
    assert body["usage"]["completion_tokens"] > 0


def test_tool_choice_none_answers_in_text(client: httpx.Client) -> None:
    body = invoke(
        client,
        "local-chat",
        chat("What is the weather in Paris?", tools=[WEATHER], tool_choice="none", max_tokens=20),
    )
    message = body["choices"][0]["message"]
    assert message["content"]
    assert "tool_calls" not in message


def test_tool_choice_required_with_several_tools(client: httpx.Client) -> None:
    body = invoke(
        client, "local-chat", chat("Hello there!", tools=[WEATHER, TIME], tool_choice="required")
    )
    function = call_of(body)
    assert function["name"] in {"get_weather", "get_time"}
    json.loads(function["arguments"])


def test_named_tool_choice_gives_schema_valid_arguments(client: httpx.Client) -> None:
    forced = {"type": "function", "function": {"name": "get_time"}}
    body = invoke(
        client,
        "local-chat",
        chat("What time is it in Tokyo?", tools=[WEATHER, TIME], tool_choice=forced),
    )
    function = call_of(body)
    assert function["name"] == "get_time"
    arguments = json.loads(function["arguments"])
    assert isinstance(arguments["zone"], str)
    assert isinstance(arguments["hour24"], bool)


def test_tool_results_and_null_content_in_history(client: httpx.Client) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    body = {
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
        ],
        "tools": [WEATHER],
        "tool_choice": "none",
        "temperature": 0,
        "max_tokens": 30,
    }
    message = invoke(client, "local-chat", body)["choices"][0]["message"]
    assert message["content"]


def test_streamed_tool_call_deltas_are_openai_shaped(client: httpx.Client) -> None:
    forced = {"type": "function", "function": {"name": "get_weather"}}
    events = stream(
        client, "local-chat", chat("Weather in Oslo?", tools=[WEATHER], tool_choice=forced)
    )
    deltas = [c["delta"] for e in events for c in e["choices"] if c["delta"].get("tool_calls")]
    first, rest = deltas[0]["tool_calls"][0], [d["tool_calls"][0] for d in deltas[1:]]
    assert deltas[0]["role"] == "assistant"
    assert first["index"] == 0
    assert first["id"]
    assert first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    assert rest
    for fragment in rest:
        assert set(fragment) == {"index", "function"}
        assert set(fragment["function"]) == {"arguments"}
    arguments = json.loads("".join(f["function"]["arguments"] for f in rest))
    assert "city" in arguments
    finishes = [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]]
    assert finishes == ["tool_calls"]
    assert events[-1]["usage"]["completion_tokens"] > 0


def test_streamed_auto_tool_choice(client: httpx.Client) -> None:
    events = stream(
        client,
        "local-chat",
        chat("What is the weather in Rome?", tools=[WEATHER], tool_choice="auto"),
    )
    names = [
        tc["function"]["name"]
        for e in events
        for c in e["choices"]
        for tc in c["delta"].get("tool_calls") or []
        if "name" in tc.get("function", {})
    ]
    assert names == ["get_weather"]


# ----------------------------------------------------------------- structured output


def test_response_format_json_object(client: httpx.Client) -> None:
    body = invoke(
        client,
        "local-chat",
        chat("Describe a cat as JSON.", response_format={"type": "json_object"}, max_tokens=80),
    )
    content = body["choices"][0]["message"]["content"]
    if body["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(content), dict)
    else:
        assert content.lstrip().startswith("{")


def test_response_format_json_schema(client: httpx.Client) -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True},
    }
    body = invoke(client, "local-chat", chat("Ann is 31 years old.", response_format=fmt))
    person = json.loads(body["choices"][0]["message"]["content"])
    assert set(person) == {"name", "age"}
    assert isinstance(person["age"], int)


def test_response_format_llama_cpp_style_schema(client: httpx.Client) -> None:
    fmt = {"type": "json_object", "schema": PERSON_SCHEMA}
    body = invoke(client, "local-chat", chat("Bob is 40.", response_format=fmt))
    assert set(json.loads(body["choices"][0]["message"]["content"])) == {"name", "age"}


# ---------------------------------------------------------------------- completions


def test_completions_invoke_stream_and_prompt_list(client: httpx.Client) -> None:
    body = invoke(
        client,
        "local-completions",
        {"prompt": ["1, 2, 3,", "a, b, c,"], "max_tokens": 6, "temperature": 0},
    )
    assert body["object"] == "text_completion"
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["completion_tokens"] == 12
    events = stream(
        client, "local-completions", {"prompt": "1, 2, 3,", "max_tokens": 6, "temperature": 0}
    )
    assert all(e["object"] == "text_completion" for e in events)
    text = "".join(c["text"] for e in events for c in e["choices"])
    assert text == body["choices"][0]["text"]
    assert events[-1]["choices"] == []
    assert events[-1]["usage"]["completion_tokens"] == 6


# ----------------------------------------------------------------------- embeddings


def test_embeddings(client: httpx.Client) -> None:
    body = invoke(client, "local-embeddings", {"input": ["cat", "kitten", "stock market"]})
    assert body["object"] == "list"
    assert "completion_tokens" not in body["usage"]
    vectors = [d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])]
    assert len(vectors[0]) == 384

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))  # normalized vectors

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]) + 0.3
    single = invoke(client, "local-embeddings", {"input": "cat"})
    assert single["data"][0]["embedding"] == pytest.approx(vectors[0], abs=1e-5)


def test_embeddings_openai_route_with_base64(client: httpx.Client) -> None:
    response = client.post(
        "/serving-endpoints/embeddings",
        json={"model": "local-embeddings", "input": ["cat"], "encoding_format": "base64"},
    )
    packed = base64.b64decode(response.json()["data"][0]["embedding"])
    assert len(struct.unpack(f"<{len(packed) // 4}f", packed)) == 384


# ------------------------------------------------------------- OpenAI-compatible base


def test_openai_compatible_routes(client: httpx.Client) -> None:
    body = client.post(
        "/serving-endpoints/chat/completions",
        json={**chat("Hi", max_tokens=4), "model": "local-chat"},
    ).json()
    assert body["object"] == "chat.completion"
    body = client.post(
        "/serving-endpoints/completions",
        json={"model": "local-completions", "prompt": "Hi", "max_tokens": 3},
    ).json()
    assert body["object"] == "text_completion"
    response = client.post("/serving-endpoints/chat/completions", json=chat("Hi"))
    assert response.status_code == 400
    assert "model" in response.json()["message"]


def test_served_model_route(client: httpx.Client) -> None:
    response = client.post(
        "/serving-endpoints/local-chat/served-models/smollm2-135m-instruct/invocations",
        json=chat("Hi", max_tokens=4),
    )
    assert response.status_code == 200
    assert response.json()["choices"]


# ------------------------------------------------------------------------ concurrency


def test_sixteen_concurrent_clients_and_a_responsive_server(host: str) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with httpx.Client(base_url=host, headers=AUTH, timeout=120) as http:
                endpoint = ("local-chat", "local-completions", "local-embeddings")[i % 3]
                body: dict[str, Any]
                if endpoint == "local-chat":
                    body = chat(f"Say the number {i}.", max_tokens=16)
                elif endpoint == "local-completions":
                    body = {"prompt": f"{i}, {i + 1},", "max_tokens": 16}
                else:
                    body = {"input": [f"sentence {i}"] * 8}
                if i % 4 == 0 and endpoint != "local-embeddings":
                    events = stream(http, endpoint, body)
                    assert events[-1]["usage"]["total_tokens"] > 0
                else:
                    invoke(http, endpoint, body)
                results.append(i)
        except BaseException as error:  # collected and re-raised below
            errors.append(error)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    answered_while_busy = 0  # /health answers that came back while clients still ran
    while any(t.is_alive() for t in threads):
        assert httpx.get(f"{host}/health", timeout=30).status_code == 200
        answered_while_busy += any(t.is_alive() for t in threads)
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(results) == list(range(16))
    assert answered_while_busy > 0


def test_health_answers_in_the_middle_of_a_generation(host: str) -> None:
    """Generation runs off the event loop: /health answers between two tokens of a stream."""
    body = {**chat("Count from one to one hundred.", max_tokens=200), "stream": True}
    with (
        httpx.Client(base_url=host, headers=AUTH, timeout=120) as http,
        http.stream("POST", "/serving-endpoints/local-chat/invocations", json=body) as response,
    ):
        lines = response.iter_lines()
        assert any(line.startswith("data: ") for line in lines)  # generating
        assert httpx.get(f"{host}/health", timeout=30).status_code == 200
        rest = [line for line in lines if line.startswith("data: ")]
    assert len(rest) > 1  # the generation went on after /health answered
    assert rest[-1] == "data: [DONE]"


def test_abandoned_stream_frees_the_model(client: httpx.Client) -> None:
    body = {"prompt": "1, 2, 3, 4,", "max_tokens": 1500, "temperature": 0, "stream": True}
    with client.stream(
        "POST", "/serving-endpoints/local-completions/invocations", json=body
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                break  # one chunk, then hang up
    started = time.monotonic()
    invoke(client, "local-chat", chat("Hi", max_tokens=4))
    # 1500 tokens would take over 10 s; the abandoned generation must have stopped.
    assert time.monotonic() - started < 5

"""Every view of the playground, driven in Chromium against the real local endpoint."""

from __future__ import annotations

import ast
import http.server
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langchain_servingx.local.auth import cookie_name
from langchain_servingx.local.launch import LocalEndpoint
from tests.local.conftest import LOCAL_TOKEN
from tests.local.playground.conftest import ALT_CHAT

pytestmark = [pytest.mark.local, pytest.mark.ui]

TIMEOUT_MS = 180_000  # a reply on a busy 2-core machine
STATS = re.compile(r"TTFT [\d.]+ s · total [\d.]+ s · (\d+) in / (\d+) out · [\d.]+ tok/s")


def select_endpoint(page: Any, name: str) -> None:
    page.get_by_test_id("endpoint-select").select_option(name)


def chat_params(page: Any, **values: str) -> None:
    for name, value in values.items():
        page.locator(f"#chat-params [name={name}]").fill(value)


def last_reply(page: Any, scope: str = "#chat-messages") -> Any:
    return page.locator(f"{scope} [data-testid=assistant-message]").last


def wait_state(reply: Any, *states: str) -> str:
    selector = ", ".join(f'[data-state="{s}"]' for s in states)
    reply.page.wait_for_function(
        "([node, selector]) => node.matches(selector)",
        arg=[reply.element_handle(), selector],
        timeout=TIMEOUT_MS,
    )
    return str(reply.get_attribute("data-state"))


def send(page: Any, text: str) -> Any:
    page.get_by_test_id("prompt-input").fill(text)
    page.get_by_test_id("send-button").click()
    return last_reply(page)


def watch_text(reply: Any) -> list[str]:
    """The reply's text each time it changed, until the stream ended."""
    seen: list[str] = []
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        state = reply.get_attribute("data-state")
        text = reply.get_by_test_id("assistant-content").text_content() or ""
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        if state not in ("waiting", "streaming"):
            return seen
        time.sleep(0.01)
    raise AssertionError("the reply did not finish")


def test_the_banner_address_signs_in_and_leaves_the_address_bar(
    page: Any, context: Any, local_endpoint: LocalEndpoint
) -> None:
    banner = f"servingx-local: playground {local_endpoint.host}/?token={LOCAL_TOKEN}"
    assert banner in local_endpoint.log()
    assert page.url == f"{local_endpoint.host}/"
    port = int(local_endpoint.host.rsplit(":", 1)[1])
    (cookie,) = [c for c in context.cookies() if c["name"] == cookie_name(port)]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert LOCAL_TOKEN not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # out of the page's scripts' reach
    assert LOCAL_TOKEN not in page.content()


def test_the_listing_shows_every_endpoint_with_task_state_and_served_models(page: Any) -> None:
    listing = page.locator("#endpoint-list")
    for name, task in [
        ("local-chat", "llm/v1/chat"),
        ("local-completions", "llm/v1/completions"),
        ("local-embeddings", "llm/v1/embeddings"),
        (ALT_CHAT, "llm/v1/chat"),
        ("proxy-chat", "llm/v1/chat"),
    ]:
        item = listing.locator(f'li[data-endpoint="{name}"]')
        assert task in item.text_content()
        assert "ready" in item.locator(".pill").text_content()
    assert "gpt-fake (openai)" in listing.locator('li[data-endpoint="proxy-chat"]').text_content()
    split = listing.locator('li[data-endpoint="split-chat"] .served').text_content()
    assert split == "smollm-a 50%, smollm-b 50%"
    options = page.get_by_test_id("endpoint-select").locator("option").all_text_contents()
    assert {"local-chat", "local-embeddings", "proxy-embeddings"} <= set(options)


def test_chat_streams_token_by_token_with_figures_and_keeps_the_turns(
    page: Any, screenshots: Path
) -> None:
    bodies: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: bodies.append(json.loads(r.post_data)) if "/invocations" in r.url else None,
    )
    select_endpoint(page, "local-chat")
    chat_params(page, system="You are a friendly assistant. Answer briefly.", max_tokens="48")
    reply = send(page, "Name three colours of the rainbow.")
    seen = watch_text(reply)
    assert reply.get_attribute("data-state") == "done"
    # Token by token: the text grew through many intermediate states.
    assert len(seen) >= 5, seen
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(seen))
    stats = reply.get_by_test_id("reply-stats").text_content()
    match = STATS.search(stats)
    assert match, stats
    assert int(match[1]) > 0
    assert 0 < int(match[2]) <= 48

    second = send(page, "And one more?")
    assert wait_state(second, "done") == "done"
    assert page.locator("#chat-messages [data-testid=assistant-message]").count() == 2
    roles = [m["role"] for m in bodies[-1]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert bodies[-1]["messages"][2]["content"] == seen[-1]
    assert bodies[-1]["stream"] is True
    assert bodies[-1]["max_tokens"] == 48
    page.screenshot(path=str(screenshots / "chat.png"))


def test_stop_cancels_the_stream_and_regenerate_and_clear_work(page: Any) -> None:
    select_endpoint(page, "local-chat")
    chat_params(page, max_tokens="400", temperature="0.8")
    reply = send(page, "Write a long story about a lighthouse keeper and the sea.")
    page.wait_for_function(
        "node => Number(node.dataset.chunks) >= 3", arg=reply.element_handle(), timeout=TIMEOUT_MS
    )
    page.get_by_test_id("stop-button").click()
    assert wait_state(reply, "stopped", "done") == "stopped"
    text = reply.get_by_test_id("assistant-content").text_content()
    time.sleep(1.0)
    assert reply.get_by_test_id("assistant-content").text_content() == text  # nothing more came
    assert "stopped" in reply.get_by_test_id("reply-stats").text_content()
    assert page.get_by_test_id("send-button").is_enabled()

    chat_params(page, max_tokens="24")
    page.get_by_test_id("regenerate-button").click()
    regenerated = last_reply(page)
    assert wait_state(regenerated, "done") == "done"
    assert page.locator("#chat-messages [data-testid=assistant-message]").count() == 1

    page.get_by_test_id("clear-button").click()
    assert page.locator("#chat-messages > *").count() == 0


def test_tool_calls_are_shown_as_calls(page: Any) -> None:
    select_endpoint(page, "local-chat")
    page.locator("#example-tool").click()
    page.locator("#chat-params [name=tool_choice]").select_option("required")
    chat_params(page, max_tokens="64")
    reply = send(page, "What is the weather in Paris?")
    assert wait_state(reply, "done") == "done"
    call = reply.get_by_test_id("tool-call")
    assert "call get_weather" in call.text_content()
    json.loads(call.locator("code").text_content())  # complete JSON arguments


def test_a_json_schema_response_format_gives_json_of_that_schema(page: Any) -> None:
    select_endpoint(page, "local-chat")
    page.locator("#chat-params [name=response_format]").select_option("json_schema")
    editor = page.locator("#chat-params [name=json_schema]")
    assert editor.is_visible()  # the schema editor opens with the format
    chat_params(page, max_tokens="64")
    reply = send(page, "What is the capital of France?")
    assert wait_state(reply, "done") == "done"
    answer = json.loads(reply.get_by_test_id("assistant-content").text_content())
    assert isinstance(answer["answer"], str)
    editor.fill('{"schema": {}}')
    send(page, "Again?")
    assert 'json_schema needs a "name"' in page.get_by_test_id("error-banner").text_content()


def test_reasoning_is_shown_apart_from_the_answer(page: Any) -> None:
    select_endpoint(page, "proxy-chat")
    reply = send(page, "REASON about a greeting.")
    assert wait_state(reply, "done") == "done"
    reasoning = reply.locator("details.reasoning")
    assert reasoning.is_visible()
    assert reasoning.locator(".reasoning-text").text_content() == "Weighing the greeting."
    assert reasoning.get_attribute("open") is None  # collapsed once the answer started
    assert reply.get_by_test_id("assistant-content").text_content() == "Hello from upstream"


def test_errors_show_the_serving_error_code_and_message(page: Any) -> None:
    select_endpoint(page, "proxy-chat")
    reply = send(page, "FAIL429 please")
    assert wait_state(reply, "error") == "error"
    banner = page.get_by_test_id("error-banner")
    assert banner.is_visible()
    assert "HTTP 429 REQUEST_LIMIT_EXCEEDED" in banner.text_content()

    select_endpoint(page, "local-chat")
    chat_params(page, temperature="5")
    reply = send(page, "Hello")
    assert wait_state(reply, "error") == "error"
    assert re.search(r"HTTP 400 BAD_REQUEST: .*temperature", banner.text_content())


def test_compare_streams_two_panels_in_parallel(page: Any, screenshots: Path) -> None:
    page.get_by_test_id("compare-tab").click()
    panels = page.get_by_test_id("compare-panel")
    assert panels.count() == 2
    panels.nth(0).locator("[name=endpoint]").select_option("local-chat")
    panels.nth(1).locator("[name=endpoint]").select_option(ALT_CHAT)
    for i in range(2):
        panels.nth(i).locator("[name=max_tokens]").fill("64")
    panels.nth(1).locator("[name=temperature]").fill("0.9")  # its own parameters
    page.get_by_test_id("compare-prompt").fill("Describe the sea in two sentences.")
    page.get_by_test_id("compare-send").click()
    replies = [panels.nth(i).get_by_test_id("assistant-message") for i in range(2)]
    both_streaming = page.wait_for_function(
        """nodes => nodes.every(
            n => n.dataset.state === "streaming" && Number(n.dataset.chunks) > 0)""",
        arg=[r.element_handle() for r in replies],
        timeout=TIMEOUT_MS,
    )
    assert both_streaming
    for reply in replies:
        assert wait_state(reply, "done") == "done"
        assert STATS.search(reply.get_by_test_id("reply-stats").text_content())
    page.screenshot(path=str(screenshots / "compare.png"))


@pytest.mark.parametrize(
    ("endpoint", "key"),
    [
        ("local-chat", "choices"),
        ("local-completions", "choices"),
        ("local-embeddings", "data"),
        ("proxy-chat", "choices"),
    ],
)
def test_query_show_example_and_send_return_200_json(
    page: Any, screenshots: Path, endpoint: str, key: str
) -> None:
    select_endpoint(page, endpoint)
    page.get_by_test_id("query-tab").click()
    page.get_by_test_id("show-example").click()
    json.loads(page.get_by_test_id("query-json").input_value())
    page.get_by_test_id("query-send").click()
    answer = page.get_by_test_id("query-response")
    answer.locator(".meta[data-status]").wait_for(timeout=TIMEOUT_MS)
    meta = answer.locator(".meta")
    assert meta.get_attribute("data-status") == "200"
    assert re.search(r"HTTP 200 · \d+ ms · served-model-name: \S+", meta.text_content())
    body = json.loads(answer.locator("pre").text_content())
    assert body[key]
    if endpoint == "local-chat":
        page.screenshot(path=str(screenshots / "query.png"))


def test_a_malformed_body_is_reported_before_anything_is_sent(page: Any) -> None:
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
    select_endpoint(page, "local-chat")
    page.get_by_test_id("query-tab").click()
    page.get_by_test_id("query-json").fill('{"messages": [')
    page.get_by_test_id("query-send").click()
    banner = page.get_by_test_id("error-banner")
    assert banner.is_visible()
    assert "Request body is not valid JSON" in banner.text_content()
    assert "Not sent" in page.locator("#query-meta").text_content()
    time.sleep(0.3)
    assert sent == []


def test_the_embeddings_heat_map(page: Any, screenshots: Path) -> None:
    page.get_by_test_id("embeddings-tab").click()
    assert page.get_by_test_id("endpoint-select").input_value().endswith("embeddings")
    select_endpoint(page, "local-embeddings")
    page.get_by_test_id("embeddings-run").click()
    cells = page.get_by_test_id("heatmap-cell")
    cells.first.wait_for(timeout=TIMEOUT_MS)
    values = [float(v) for v in cells.evaluate_all("cells => cells.map(c => c.dataset.value)")]
    assert len(values) == 16
    matrix = [values[i * 4 : i * 4 + 4] for i in range(4)]
    assert all(abs(matrix[i][i] - 1) < 1e-3 for i in range(4))
    assert all(abs(matrix[i][j] - matrix[j][i]) < 1e-3 for i in range(4) for j in range(4))
    # Cats resemble cats and markets resemble markets more than each other.
    assert matrix[0][1] > matrix[0][2]
    assert matrix[2][3] > matrix[1][3]
    page.screenshot(path=str(screenshots / "embeddings.png"))


def test_export_gives_runnable_code_with_the_token_in_the_environment(
    page: Any, local_endpoint: LocalEndpoint
) -> None:
    select_endpoint(page, "local-chat")
    chat_params(page, system="Answer in one word.", max_tokens="8", temperature="0", stop="END")
    reply = send(page, "What colour is the sky?")
    assert wait_state(reply, "done") == "done"
    page.get_by_test_id("prompt-input").fill("And grass?")
    page.get_by_test_id("export-button").click()
    code: dict[str, str] = {}
    for fmt in ("python", "curl", "openai"):
        page.get_by_test_id("export-format").select_option(fmt)
        code[fmt] = page.get_by_test_id("export-code").text_content()
        assert LOCAL_TOKEN not in code[fmt]
        assert "DATABRICKS_TOKEN" in code[fmt]
    ast.parse(code["python"])
    ast.parse(code["openai"])
    assert "ChatServing(" in code["python"]
    assert "And grass?" in code["python"]
    assert '"max_tokens": 8' in code["curl"]
    assert "$DATABRICKS_TOKEN" in code["curl"]

    env = {**os.environ, **local_endpoint.env()}
    for fmt in ("python", "openai"):  # the compat extra (make install-local) has openai
        ran = subprocess.run(  # noqa: S603 - our interpreter, the exported code
            [sys.executable, "-c", code[fmt]], env=env, capture_output=True, text=True, timeout=120
        )
        assert ran.returncode == 0, f"{fmt}: {ran.stderr}"
        assert ran.stdout.strip()
    bash, curl = shutil.which("bash"), shutil.which("curl")
    if bash and curl:
        ran = subprocess.run(  # noqa: S603 - bash running the exported curl command
            [bash, "-c", code["curl"]], env=env, capture_output=True, text=True, timeout=120
        )
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["choices"][0]["message"]["role"] == "assistant"


def test_a_wrong_token_is_refused_and_the_token_form_signs_in(
    context: Any, local_endpoint: LocalEndpoint
) -> None:
    page = context.new_page()
    response = page.goto(f"{local_endpoint.host}/?token=dapi-wrong")
    assert response.status == 401
    banner = page.get_by_test_id("error-banner")
    banner.wait_for()
    assert "HTTP 401 UNAUTHENTICATED" in banner.text_content()
    assert "token" not in page.url  # dropped from the address bar all the same
    assert context.cookies() == []
    form = page.locator("#login-form")
    form.locator("input[name=token]").fill(LOCAL_TOKEN)
    form.locator("button[type=submit]").click()
    page.wait_for_selector("body[data-loaded=true]")
    assert page.url == f"{local_endpoint.host}/"
    assert page.locator('#endpoint-list li[data-endpoint="local-chat"]').count() == 1


@pytest.fixture
def other_site() -> Iterator[str]:
    """Another web page on 127.0.0.1 (another port): the same site to the browser."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<h1>another page</h1>")

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_cross_origin_post_with_the_cookie_is_refused(
    page: Any, context: Any, local_endpoint: LocalEndpoint, other_site: str
) -> None:
    # Ports do not separate sites, so the browser sends the SameSite=Strict cookie along
    # with the other page's POST; only the Origin check stops it. (Without the cookie the
    # answer would be 401, not 403.)
    target = f"{local_endpoint.host}/serving-endpoints/local-chat/invocations"
    other = context.new_page()
    other.goto(other_site)
    with other.expect_response(target) as answer:
        other.evaluate(
            """target => fetch(target, {
                 method: "POST", credentials: "include", mode: "no-cors",
                 headers: {"Content-Type": "text/plain"},
                 body: JSON.stringify({messages: [{role: "user", content: "hi"}]}),
               }).catch(() => {})""",
            target,
        )
    assert answer.value.status == 403
    # A plain form post, the oldest trick, is refused the same way (and its answer readable).
    with other.expect_navigation():
        other.evaluate(
            """target => {
                 const form = document.createElement("form");
                 form.method = "post";
                 form.action = target;
                 form.enctype = "text/plain";
                 const field = document.createElement("input");
                 field.name = '{"messages": [{"role": "user", "content": "hi"}], "x": "';
                 field.value = '"}';
                 form.append(field);
                 document.body.append(form);
                 form.submit();
               }""",
            target,
        )
    body = json.loads(other.locator("body").inner_text())
    assert body["error_code"] == "PERMISSION_DENIED"
    assert f"must come from {local_endpoint.host}" in body["message"]

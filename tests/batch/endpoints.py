"""Scripted batch endpoints on the shared test server: answers and faults chosen per row.

A chat request's text picks its fate: `429:<n>` is refused with 429 (and `Retry-After`)
on its first n tries, `503:<n>` likewise with 503, `drop:<n>` has its connection closed
without an answer, `malformed` gets a body that is not JSON, `bad` a 400; anything else
is answered `echo: <text>`. `capped(...)` answers 429 beyond a number of requests in flight.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

from tests.serving_server import (
    RecordedRequest,
    Reply,
    ServingTestServer,
    chat_response,
    completion_response,
    embedding_response,
)

CHAT = "/serving-endpoints/test-chat/invocations"
COMPLETIONS = "/serving-endpoints/test-completions/invocations"
EMBEDDINGS = "/serving-endpoints/test-embeddings/invocations"


def user_text(request: RecordedRequest) -> str:
    return str(request.json["messages"][-1]["content"])


class ScriptedChat:
    """A chat handler that answers or fails each request by its text."""

    def __init__(self, retry_after: str = "0", delay: float = 0.0) -> None:
        self.retry_after = retry_after
        self.delay = delay
        self.tries: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        text = user_text(request)
        with self._lock:
            self.tries[text] += 1
            tries = self.tries[text]
        kind, _, count = text.partition(":")
        failing = count.split(" ")[0].isdigit() and tries <= int(count.split(" ")[0])
        if kind == "429" and failing:
            body = {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Exceeded workspace QPS"}
            return Reply.json(body, 429, {"Retry-After": self.retry_after})
        if kind == "503" and failing:
            return Reply.json({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}, 503)
        if kind == "drop" and failing:
            return Reply.dropped()
        if text == "malformed":
            return Reply.text("<html>gateway</html>", 200, "application/json")
        if text == "bad":
            body = {"error_code": "BAD_REQUEST", "message": "the input is not allowed"}
            return Reply.json(body, 400)
        if "response_format" in request.json:
            return Reply.json(chat_response(text.removeprefix("json ")), delay=self.delay)
        usage = {"prompt_tokens": len(text), "completion_tokens": 2, "total_tokens": len(text) + 2}
        return Reply.json(chat_response(f"echo: {text}", usage=usage), delay=self.delay)


def capped(limit: int, delay: float) -> Any:
    """A chat handler that answers 429 to any request beyond `limit` in flight."""
    lock = threading.Lock()
    state = {"in_flight": 0, "refused": 0}

    def handler(request: RecordedRequest) -> Reply:
        with lock:
            if state["in_flight"] >= limit:
                state["refused"] += 1
                body = {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "too many requests"}
                return Reply.json(body, 429)
            state["in_flight"] += 1
        try:
            time.sleep(delay)  # the "work", inside the in-flight count
            return Reply.json(chat_response(f"echo: {user_text(request)}"))
        finally:
            with lock:
                state["in_flight"] -= 1

    handler.state = state  # type: ignore[attr-defined]
    return handler


def embed(text: str) -> list[float]:
    return [float(len(text)), 0.5]


def embeddings_handler(request: RecordedRequest) -> Reply:
    texts = request.json["input"]
    if "bad" in texts:
        body = {"error_code": "BAD_REQUEST", "message": "input 'bad' is not allowed"}
        return Reply.json(body, 400)
    return Reply.json(embedding_response([embed(t) for t in texts]))


def completions_handler(request: RecordedRequest) -> Reply:
    prompt = request.json["prompt"]
    return Reply.json(completion_response([f"{prompt} done"]))


def install(server: ServingTestServer, chat: Any = None) -> ScriptedChat | Any:
    chat = chat or ScriptedChat()
    server.handle(CHAT, chat)
    server.handle(EMBEDDINGS, embeddings_handler)
    server.handle(COMPLETIONS, completions_handler)
    return chat


def bodies(server: ServingTestServer, path: str = CHAT) -> list[dict[str, Any]]:
    return [json.loads(r.raw) for r in server.requests_to(path)]

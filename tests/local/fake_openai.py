"""A fake OpenAI-compatible server on 127.0.0.1: the upstream of the proxy tests.

It answers ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings`` with
canned bodies (or SSE streams), records what it received, and fails on request: a
message or prompt containing ``FAIL429`` gets a 429 with ``Retry-After``, ``FAIL500`` a 500,
every request for a model in ``down`` gets a 503, and a streamed chat whose messages contain
``REASON`` starts with a reasoning block.
"""

# No `from __future__ import annotations`: FastAPI must see the route annotations, and
# fastapi is imported inside `_app` so that collecting the tests needs no local extra.
import asyncio
import json
import socket
import threading
import time
from typing import Any

BodyList = list[dict[str, Any]]
REASONING = {
    "type": "reasoning",
    "summary": [{"type": "summary_text", "text": "Weighing the greeting.", "signature": "sig-1"}],
}
"""What a streamed chat answer starts with when a message contains ``REASON``."""


class FakeOpenAI:
    """The fake server, run by uvicorn in a thread; ``requests`` lists what came in."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.requests: BodyList = []
        self.down: set[str] = set()
        self.url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _app(self) -> Any:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, Response, StreamingResponse

        app = FastAPI()

        def failure(text: str, model: str = "") -> Response | None:
            if model in self.down:
                error = {"message": f"{model} is down", "type": "server_error"}
                return JSONResponse({"error": error}, status_code=503)
            if "FAIL429" in text:
                error = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit"}
                return JSONResponse({"error": error}, status_code=429, headers={"Retry-After": "7"})
            if "FAIL500" in text:
                error = {"message": "The server had an error", "type": "server_error"}
                return JSONResponse({"error": error}, status_code=500)
            return None

        async def record(request: Request) -> dict[str, Any]:
            body: dict[str, Any] = await request.json()
            self.requests.append(
                {
                    "path": request.url.path,
                    "body": body,
                    "auth": request.headers.get("authorization"),
                }
            )
            return body

        def unauthorized(request: Request) -> Response | None:
            if request.headers.get("authorization") != f"Bearer {self.api_key}":
                error = {"message": "Incorrect API key provided", "type": "invalid_request_error"}
                return JSONResponse({"error": error}, status_code=401)
            return None

        def sse(chunks: BodyList) -> StreamingResponse:
            async def events() -> Any:
                for chunk in chunks:
                    yield f"data: {json.dumps(chunk)}\n\n"
                    await asyncio.sleep(0)
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await record(request)
            refused = unauthorized(request) or failure(json.dumps(body["messages"]), body["model"])
            if refused:
                return refused
            base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": body["model"]}
            if body.get("stream"):
                contents: list[Any] = ["Hello", " from upstream"]
                if "REASON" in json.dumps(body["messages"]):
                    contents.insert(0, [REASONING])  # a reasoning model's list form
                chunks: BodyList = [
                    {
                        **base,
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": c}}],
                    }
                    for c in contents
                ]
                chunks.append(
                    {
                        **base,
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    }
                )
                if (body.get("stream_options") or {}).get("include_usage"):
                    chunks.append(
                        {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                    )
                return sse(chunks)
            message = {"role": "assistant", "content": "Hello from upstream"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return JSONResponse(
                {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )

        @app.post("/v1/completions")
        async def completions(request: Request) -> Response:
            body = await record(request)
            refused = unauthorized(request) or failure(json.dumps(body["prompt"]))
            if refused:
                return refused
            base = {"id": "cmpl-fake", "created": int(time.time()), "model": body["model"]}
            choice = {"index": 0, "text": " upstream text", "finish_reason": "stop"}
            if body.get("stream"):
                return sse([{**base, "object": "text_completion", "choices": [choice]}])
            return JSONResponse(
                {**base, "object": "text_completion", "choices": [choice], "usage": usage}
            )

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> Response:
            body = await record(request)
            refused = unauthorized(request)
            if refused:
                return refused
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [
                {"object": "embedding", "index": i, "embedding": [0.1 * (i + 1), 0.2, 0.3]}
                for i in range(len(inputs))
            ]
            return JSONResponse(
                {
                    "object": "list",
                    "model": body["model"],
                    "data": data,
                    "usage": {"prompt_tokens": 3, "total_tokens": 3},
                }
            )

        return app

    def start(self) -> "FakeOpenAI":
        """Serve on a free port of 127.0.0.1 until ``stop``."""
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self._app(), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[sock])), daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake upstream did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut the server down."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

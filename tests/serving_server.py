"""A scriptable serving endpoint on 127.0.0.1 for the tests: real sockets, real HTTP.

Tests queue replies per path (`server.reply(path, Reply.json(...))`) or install a handler
(`server.handle(path, fn)`), then drive the package's public classes at `server.url` and
assert on `server.requests`. No httpx internals are mocked: everything crosses a socket.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    peer: tuple[str, int] | None = None  # the client's address: one per connection
    at: float = 0.0  # time.monotonic() on arrival

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.raw.decode()).items()}


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    events: list[bytes] | None = None  # SSE frames, written one by one
    event_delay: float = 0.0
    drop: bool = False  # read the request, then close the connection without answering

    @classmethod
    def dropped(cls, delay: float = 0.0) -> Reply:
        """Close the connection after reading the request (a reset, a crashed server)."""
        return cls(drop=True, delay=delay)

    @classmethod
    def json(
        cls, obj: Any, status: int = 200, headers: dict[str, str] | None = None, delay: float = 0
    ) -> Reply:
        return cls(
            status,
            json.dumps(obj).encode(),
            {"Content-Type": "application/json", **(headers or {})},
            delay,
        )

    @classmethod
    def text(
        cls,
        text: str,
        status: int,
        content_type: str = "text/plain",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        return cls(status, text.encode(), {"Content-Type": content_type, **(headers or {})})

    @classmethod
    def sse(
        cls,
        chunks: Iterable[Any],
        *,
        done: bool = True,
        raw: bool = False,
        event_delay: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Chunks are dicts (sent as `data: {json}`), or with raw=True ready-made frames."""
        frames = [
            (c if isinstance(c, bytes) else c.encode())
            if raw
            else f"data: {json.dumps(c)}\n\n".encode()
            for c in chunks
        ]
        if done:
            frames.append(b"data: [DONE]\n\n")
        return cls(
            200,
            b"",
            {"Content-Type": "text/event-stream", **(headers or {})},
            events=frames,
            event_delay=event_delay,
        )


Handler = Callable[[RecordedRequest], Reply]


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connections when tests fire 10-20 requests at once,
    # and a dropped SYN costs a one-second retransmit.
    request_queue_size = 128


class ServingTestServer:
    """A threaded HTTP/1.1 server; routes are exact paths, replies are scripted."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Reply]] = defaultdict(deque)
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0  # connections accepted
        self.open_connections = 0  # connections the clients have not closed yet
        self._httpd = _Server(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> ServingTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        with self._lock:
            self._queues.clear()
            self._handlers.clear()
            self.requests.clear()
            self.in_flight = 0
            self.max_in_flight = 0
            self.connections = 0

    def reply(self, path: str, *replies: Reply) -> None:
        """Queue replies for `path`; each request takes the next one (the last one repeats)."""
        with self._lock:
            self._queues[path].extend(replies)

    def handle(self, path: str, handler: Handler) -> None:
        """Answer every request to `path` with `handler(request)`."""
        with self._lock:
            self._handlers[path] = handler

    def wait_for_connections(self, count: int, timeout: float = 5.0) -> int:
        """Wait until `count` client connections are open (closed ones are seen at once)."""
        deadline = time.monotonic() + timeout
        while self.open_connections != count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.open_connections

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            handler = self._handlers.get(request.path)
            queue = self._queues.get(request.path)
            if handler is None and queue:
                return queue.popleft() if len(queue) > 1 else queue[0]
        if handler is not None:
            return handler(request)
        return Reply.json(
            {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"no route {request.path}"},
            404,
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server.connections += 1
                    server.open_connections += 1

            def finish(self) -> None:
                with server._lock:
                    server.open_connections -= 1
                super().finish()

            def handle(self) -> None:
                # A client closing a kept-alive connection while we wait for more is normal.
                with contextlib.suppress(ConnectionResetError):
                    super().handle()

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = RecordedRequest(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    raw,
                    self.client_address[:2],
                    time.monotonic(),
                )
                with server._lock:
                    server.requests.append(request)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server._next_reply(request)
                    if reply.delay:
                        time.sleep(reply.delay)
                    if reply.drop:
                        self.close_connection = True
                        return
                    self._write(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _write(self, reply: Reply) -> None:
                if reply.drop:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if reply.events is None:
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    return
                # A stream: no length, so the connection closes when it ends.
                self.send_header("Connection", "close")
                self.end_headers()
                for frame in reply.events:
                    if reply.event_delay:
                        time.sleep(reply.event_delay)
                    self.wfile.write(frame)
                    self.wfile.flush()
                self.close_connection = True

        return _Handler


def chat_response(
    content: Any = "Hello!",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    usage: dict[str, Any] | None = None,
    model: str = "test-model",
    id: str = "chatcmpl-1",
) -> dict[str, Any]:
    """A `chat.completion` body in the contract's shape."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": id,
        "object": "chat.completion",
        "created": 1721875529,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": usage
        if usage is not None
        else {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }


def chat_chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    choices: bool = True,
    model: str = "test-model",
) -> dict[str, Any]:
    """A `chat.completion.chunk`; `choices=False` gives the final usage-only chunk."""
    chunk: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1721877054,
        "model": model,
        "choices": [
            {"index": 0, "delta": delta or {}, "finish_reason": finish_reason, "logprobs": None}
        ]
        if choices
        else [],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def make_transport(
    url: str,
    *,
    token: str | None = "dapi-test-token-0123456789",  # noqa: S107 - a test token
    max_retries: int = 0,
    timeout: float | None = 5.0,
    openai_compatible: bool = False,
    base_url: str | None = None,
    **kwargs: Any,
) -> Any:
    """An `InvocationTransport` at `url` (the host) with a token; no retries unless asked.

    Extra keyword arguments go to `RetryPolicy` when they are its fields (`initial_delay`,
    `retry_read_timeouts`, ...) and to the transport otherwise (`auth`, `allow_insecure_http`).
    """
    from dataclasses import fields

    from pydantic import SecretStr

    from langchain_servingx._config import ConnectionSettings
    from langchain_servingx._transport import EndpointAddress, InvocationTransport, RetryPolicy

    policy_fields = {f.name for f in fields(RetryPolicy)}
    policy = {k: kwargs.pop(k) for k in list(kwargs) if k in policy_fields}
    settings = ConnectionSettings(host=url, credential=SecretStr(token) if token else None)
    address = EndpointAddress.build(
        host=url, base_url=base_url, openai_compatible=openai_compatible
    )
    return InvocationTransport(
        settings,
        address,
        timeout=timeout,
        retry=RetryPolicy(max_retries=max_retries, **policy),
        require_credentials=base_url is None,
        **kwargs,
    )


def embedding_response(
    vectors: list[list[float]],
    *,
    indexes: list[int] | None = None,
    model: str = "test-embedder",
) -> dict[str, Any]:
    """An embeddings body; `indexes` overrides each item's `index` (default: positions)."""
    return {
        "object": "list",
        "model": model,
        "data": [
            {"object": "embedding", "index": i, "embedding": v}
            for i, v in zip(indexes or range(len(vectors)), vectors, strict=True)
        ],
        "usage": {"prompt_tokens": 2 * len(vectors), "total_tokens": 2 * len(vectors)},
    }


def completion_response(
    texts: list[str],
    *,
    indexes: list[int] | None = None,
    finish_reason: str = "stop",
    usage: dict[str, Any] | None = None,
    model: str = "test-model",
) -> dict[str, Any]:
    """A `text_completion` body with one choice per text (`indexes` default: positions)."""
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1698809382,
        "model": model,
        "choices": [
            {"text": t, "index": i, "logprobs": None, "finish_reason": finish_reason}
            for i, t in zip(indexes or range(len(texts)), texts, strict=True)
        ],
        "usage": usage
        if usage is not None
        else {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def completion_chunk(
    text: str | None = "",
    *,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    choices: bool = True,
) -> dict[str, Any]:
    """A streamed `text_completion` chunk; `choices=False` gives a usage-only chunk."""
    chunk: dict[str, Any] = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1698809382,
        "model": "test-model",
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}]
        if choices
        else [],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


LISTING_PATH = "/api/2.0/serving-endpoints"


def endpoint_object(
    name: str,
    task: str | None = "llm/v1/chat",
    *,
    ready: bool = True,
    endpoint_type: str = "FOUNDATION_MODEL_API",
    **extra: Any,
) -> dict[str, Any]:
    """An endpoint object as the listing API returns it (`task=None`: a custom model)."""
    obj: dict[str, Any] = {
        "name": name,
        "id": f"id-{name}",
        "state": {
            "ready": "READY" if ready else "NOT_READY",
            "config_update": "NOT_UPDATING" if ready else "IN_PROGRESS",
        },
        "endpoint_type": endpoint_type,
        "capabilities": {"function_calling": True} if task == "llm/v1/chat" else {},
        "config": {"served_entities": [{"name": f"{name}-1", "foundation_model": {"name": name}}]},
        **extra,
    }
    if task is not None:
        obj["task"] = task
    return obj


def listing(*objects: dict[str, Any]) -> Reply:
    """The reply of `GET /api/2.0/serving-endpoints`."""
    return Reply.json({"endpoints": list(objects)})

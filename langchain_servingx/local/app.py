"""The ASGI application: serving-endpoint routes over the engines.

Routes (all but ``/health`` and ``/ready`` need the bearer token when one is set):

- ``POST /serving-endpoints/{name}/invocations`` and
  ``POST /serving-endpoints/{name}/served-models/{served}/invocations``: native calls;
- ``POST /serving-endpoints/chat/completions``, ``/completions``, ``/embeddings``,
  ``/responses``: the OpenAI-compatible base, endpoint name in the body's ``model``;
- ``GET /api/2.0/serving-endpoints[/{name}]``: the listing API;
- ``GET /health`` (alive, with per-endpoint readiness) and ``GET /ready`` (503 until every
  endpoint has finished loading).

Models load in the background once the server listens, small ones first, so the server
answers at once and reports readiness truthfully; a request for an endpoint still
loading waits for it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from langchain_servingx import contract
from langchain_servingx.contract import Task
from langchain_servingx.local.agents import AgentEngine
from langchain_servingx.local.config import EndpointConfig
from langchain_servingx.local.engines import Answer, Engine, build_engines
from langchain_servingx.local.errors import EndpointError
from langchain_servingx.local.schemas import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse_request,
)

__all__ = ["Registry", "create_app"]

log = logging.getLogger("langchain_servingx.local")

# Seconds between SSE comment lines while a stream waits for its model.
KEEPALIVE_SECONDS = 10.0
# How long a request waits for its endpoint to finish loading.
LOAD_WAIT_SECONDS = 300.0

_TASK_OF_KEY: dict[str, Task] = {
    "messages": contract.CHAT,
    "prompt": contract.COMPLETIONS,
    "input": contract.EMBEDDINGS,
}


class Registry:
    """The endpoints, their engines and their loading state."""

    def __init__(self, configs: list[EndpointConfig]) -> None:
        self.engines: dict[str, Engine] = build_engines(configs)
        self._settled = {name: asyncio.Event() for name in self.engines}
        self._loader: asyncio.Task[None] | None = None
        self.created_ms = int(time.time() * 1000)

    def start_loading(self) -> None:
        """Load every model in the background; llama.cpp first (fast), torch last (slow)."""

        async def load_all() -> None:
            order = sorted(
                self.engines.values(), key=lambda e: e.config.task == contract.EMBEDDINGS
            )
            for engine in order:
                if engine.error is None:
                    started = time.monotonic()
                    try:
                        await asyncio.to_thread(engine.load)
                        log.info(
                            "%s ready in %.1fs", engine.config.name, time.monotonic() - started
                        )
                    except Exception as error:
                        engine.error = f"{type(error).__name__}: {error}"
                        log.error("%s failed to load: %s", engine.config.name, engine.error)
                self._settled[engine.config.name].set()

        self._loader = asyncio.create_task(load_all())

    @property
    def loaded(self) -> bool:
        """Whether every endpoint has finished loading (successfully or not)."""
        return all(event.is_set() for event in self._settled.values())

    def state(self, name: str) -> str:
        """``READY`` or ``NOT_READY``."""
        engine = self.engines[name]
        ok = self._settled[name].is_set() and engine.error is None
        if ok and isinstance(engine, AgentEngine) and engine.config.agent is not None:
            return self.state(engine.config.agent.model)  # ready when its model is
        return "READY" if ok else "NOT_READY"

    def engine(self, name: str) -> Engine:
        """The engine of ``name`` or a 404."""
        try:
            return self.engines[name]
        except KeyError:
            raise EndpointError(
                404, "RESOURCE_DOES_NOT_EXIST", f"Endpoint {name!r} does not exist."
            ) from None

    async def ready_engine(self, name: str) -> Engine:
        """The engine of ``name`` once loaded; 503 if it could not be loaded."""
        engine = self.engine(name)
        try:
            await asyncio.wait_for(self._settled[name].wait(), LOAD_WAIT_SECONDS)
        except asyncio.TimeoutError:  # not yet the builtin on Python 3.10
            raise EndpointError(
                503, "TEMPORARILY_UNAVAILABLE", f"Endpoint {name!r} is still loading."
            ) from None
        if engine.error is not None:
            raise EndpointError(
                503, "TEMPORARILY_UNAVAILABLE", f"Endpoint {name!r} is not ready: {engine.error}"
            )
        if isinstance(engine, AgentEngine) and engine.config.agent is not None:
            await self.ready_engine(engine.config.agent.model)  # the model it drives
        return engine

    def describe(self, name: str) -> dict[str, Any]:
        """The endpoint object of the listing API."""
        engine = self.engine(name)
        config = engine.config
        state = self.state(name)
        if state == "READY":
            update = "NOT_UPDATING"
        else:
            update = "UPDATE_FAILED" if engine.error else "IN_PROGRESS"
        served: dict[str, Any] = {"name": config.served_model_name}
        if config.agent is not None:
            served["entity_name"] = "servingx.local.agents"
            served["agent_model"] = config.agent.model
        elif config.external is not None:
            served["external_model"] = {
                "provider": config.external.provider,
                "name": config.external.model,
                "task": config.task,
            }
        else:
            served["foundation_model"] = {"name": config.served_model_name}
        capabilities = {"function_calling": True} if config.task == contract.CHAT else {}
        return {
            "name": name,
            "id": name,
            "creator": "servingx-local",
            "creation_timestamp": self.created_ms,
            "last_updated_timestamp": self.created_ms,
            "state": {"ready": state, "config_update": update},
            "task": config.task,
            "endpoint_type": config.endpoint_type,
            "capabilities": capabilities,
            "config": {"served_entities": [served]},
        }

    async def aclose(self) -> None:
        """Stop loading and release every engine."""
        if self._loader is not None:
            self._loader.cancel()
        for engine in self.engines.values():
            await engine.aclose()


def _authorizer(token: str | None) -> Callable[[Request], Awaitable[None]]:
    """A dependency checking ``Authorization: Bearer <token>`` (or Basic ``token:<token>``)."""

    async def authorize(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                credential = base64.b64decode(credential).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                credential = ""
        elif scheme.lower() != "bearer":
            credential = ""
        if not credential:
            raise EndpointError(401, "UNAUTHENTICATED", "Missing credentials: send a bearer token.")
        if not secrets.compare_digest(credential.strip().encode(), token.encode()):
            raise EndpointError(401, "UNAUTHENTICATED", "Invalid access token.")

    return authorize


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EndpointError(
            400, "BAD_REQUEST", f"Request body is not valid JSON: {error}"
        ) from None
    if not isinstance(body, dict):
        raise EndpointError(400, "BAD_REQUEST", "Request body must be a JSON object.")
    return body


# The field an agent request cannot do without.
_AGENT_KEY: dict[str, str] = {contract.AGENT_RESPONSES: "input", contract.AGENT_CHAT_V2: "messages"}


def _check_task(config: EndpointConfig, body: dict[str, Any], route_task: Task | None) -> None:
    """400 when the request is for another task than the endpoint's."""
    if config.task in _AGENT_KEY:
        key = _AGENT_KEY[config.task]
        if (route_task or config.task) != config.task or key not in body:
            raise EndpointError(
                400,
                "BAD_REQUEST",
                f"Endpoint {config.name!r} has task {config.task}; its requests carry {key!r}.",
            )
        return
    asked = route_task or next((t for k, t in _TASK_OF_KEY.items() if k in body), None)
    if asked is not None and asked != config.task:
        raise EndpointError(
            400,
            "BAD_REQUEST",
            f"Endpoint {config.name!r} has task {config.task}; this is a {asked} request.",
        )


async def _sse(chunks: AsyncGenerator[dict[str, Any], None]) -> AsyncIterator[bytes]:
    """Chunks as ``data: {json}`` events ending with ``data: [DONE]``.

    While the model is busy with earlier requests, a comment line goes out every few
    seconds so proxies and clients keep the connection. An error after the headers are
    sent can only be told in the stream: it comes as a ``data:`` event in the serving
    error format, and no ``[DONE]`` follows.
    """
    step: asyncio.Future[dict[str, Any]] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(chunks))
            while not (await asyncio.wait({step}, timeout=KEEPALIVE_SECONDS))[0]:
                yield b": keep-alive\n\n"
            try:
                chunk = step.result()
            except StopAsyncIteration:
                break
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
    except EndpointError as error:
        yield b"data: " + json.dumps(error.body()).encode() + b"\n\n"
        return
    except Exception as error:
        log.exception("stream failed")
        failure = {"error_code": "INTERNAL_ERROR", "message": f"{type(error).__name__}: {error}"}
        yield b"data: " + json.dumps(failure).encode() + b"\n\n"
        return
    finally:
        # The client left (or the stream ended): stop the generation behind it, which
        # frees the model for the next request.
        if step is not None and not step.done():
            step.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await step
        await chunks.aclose()
    yield b"data: [DONE]\n\n"


async def _answer(engine: Engine, body: dict[str, Any]) -> Response:
    """Validate the body for the endpoint's task, run it, and shape the HTTP response."""
    task = engine.config.task
    headers = {"served-model-name": engine.config.served_model_name}
    answer: Answer
    if isinstance(engine, AgentEngine):
        answer = await (
            engine.responses(body) if task == contract.AGENT_RESPONSES else engine.chat_agent(body)
        )
    elif task == contract.CHAT:
        answer = await engine.chat(parse_request(ChatRequest, body), body)
    elif task == contract.COMPLETIONS:
        answer = await engine.completions(parse_request(CompletionRequest, body), body)
    else:
        answer = await engine.embeddings(parse_request(EmbeddingRequest, body), body)
    if isinstance(answer, dict):
        return JSONResponse(answer, headers=headers)
    headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return StreamingResponse(_sse(answer), media_type="text/event-stream", headers=headers)


def _error_response(error: EndpointError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def create_app(configs: list[EndpointConfig], token: str | None) -> FastAPI:
    """The FastAPI app serving ``configs``; ``token=None`` turns authentication off."""
    registry = Registry(configs)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        registry.start_loading()
        try:
            yield
        finally:
            await registry.aclose()

    app = FastAPI(
        title="servingx-local",
        summary="Model serving endpoints on this machine, for LangChain clients.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.registry = registry
    auth = [Depends(_authorizer(token))]

    @app.exception_handler(EndpointError)
    async def serving_error(_request: Request, error: EndpointError) -> JSONResponse:
        return _error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            message = f"No API found for '{request.method} {request.url.path}'."
            return _error_response(EndpointError(404, "ENDPOINT_NOT_FOUND", message))
        return _error_response(EndpointError(error.status_code, None, str(error.detail)))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        return _error_response(EndpointError(400, "BAD_REQUEST", "; ".join(parts)))

    @app.exception_handler(Exception)
    async def crashed(_request: Request, error: Exception) -> JSONResponse:
        log.exception("request failed")
        message = f"{type(error).__name__}: {error}"
        return _error_response(EndpointError(500, "INTERNAL_ERROR", message))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, with each endpoint's readiness; cheap and unauthenticated."""
        states = {name: registry.state(name) for name in registry.engines}
        return {"status": "ok", "ready": registry.loaded, "endpoints": states}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """200 once every endpoint has finished loading, 503 before."""
        body = {"ready": registry.loaded}
        return JSONResponse(body, status_code=200 if registry.loaded else 503)

    @app.get("/api/2.0/serving-endpoints", dependencies=auth)
    async def list_endpoints() -> dict[str, Any]:
        """Every endpoint, as the listing API describes them."""
        return {"endpoints": [registry.describe(name) for name in registry.engines]}

    @app.get("/api/2.0/serving-endpoints/{name}", dependencies=auth)
    async def get_endpoint(name: str) -> dict[str, Any]:
        """One endpoint."""
        return registry.describe(name)

    async def openai_route(request: Request, task: Task) -> Response:
        body = await _json_body(request)
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise EndpointError(400, "BAD_REQUEST", "model: the endpoint name is required.")
        _check_task(registry.engine(name).config, body, task)
        return await _answer(await registry.ready_engine(name), body)

    @app.post("/serving-endpoints/chat/completions", dependencies=auth)
    async def chat_completions(request: Request) -> Response:
        """OpenAI-compatible chat; ``model`` names the endpoint."""
        return await openai_route(request, contract.CHAT)

    @app.post("/serving-endpoints/completions", dependencies=auth)
    async def completions(request: Request) -> Response:
        """OpenAI-compatible completions; ``model`` names the endpoint."""
        return await openai_route(request, contract.COMPLETIONS)

    @app.post("/serving-endpoints/embeddings", dependencies=auth)
    async def embeddings(request: Request) -> Response:
        """OpenAI-compatible embeddings; ``model`` names the endpoint."""
        return await openai_route(request, contract.EMBEDDINGS)

    @app.post("/serving-endpoints/responses", dependencies=auth)
    async def responses(request: Request) -> Response:
        """OpenAI-compatible Responses (agent endpoints); ``model`` names the endpoint."""
        return await openai_route(request, contract.AGENT_RESPONSES)

    @app.post("/serving-endpoints/{name}/invocations", dependencies=auth)
    async def invocations(name: str, request: Request) -> Response:
        """The native call: the endpoint's task decides how the body is read."""
        engine = registry.engine(name)
        body = await _json_body(request)
        _check_task(engine.config, body, None)
        return await _answer(await registry.ready_engine(name), body)

    @app.post("/serving-endpoints/{name}/served-models/{served}/invocations", dependencies=auth)
    async def served_model_invocations(name: str, served: str, request: Request) -> Response:
        """A call to one served model behind the endpoint (each endpoint has one)."""
        engine = registry.engine(name)
        if served != engine.config.served_model_name:
            raise EndpointError(
                404,
                "RESOURCE_DOES_NOT_EXIST",
                f"Endpoint {name!r} has no served model {served!r}; it serves "
                f"{engine.config.served_model_name!r}.",
            )
        body = await _json_body(request)
        _check_task(engine.config, body, None)
        return await _answer(await registry.ready_engine(name), body)

    return app

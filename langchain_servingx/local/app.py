"""The ASGI application: serving-endpoint routes over the engines.

Routes (all but ``/health``, ``/ready`` and the playground page need the token when one is
set: the bearer header, or the playground's session cookie, see ``auth``):

- ``POST /serving-endpoints/{name}/invocations`` and
  ``POST /serving-endpoints/{name}/served-models/{served}/invocations``: native calls;
- ``POST /serving-endpoints/chat/completions``, ``/completions``, ``/embeddings``: the
  OpenAI-compatible base, endpoint name in the body's ``model``;
- ``GET /api/2.0/serving-endpoints[/{name}]``: the listing API, served entities and
  traffic split included; ``GET /serving-endpoints/models[/{name}]``: the same endpoints
  as OpenAI model objects;
- ``GET /``: the playground page (``playground``);
- ``GET /.well-known/databricks-config``: host metadata for the Databricks SDK;
- ``GET /health`` (alive, with per-endpoint readiness, usage per served entity, rate
  limits and injected faults) and ``GET /ready`` (503 until every endpoint has finished
  loading).

Requests go through the endpoint's :class:`~langchain_servingx.local.routing.Route`
(limits, faults, traffic split, fallbacks); the answer's ``served-model-name`` header
names the served entity that answered.

Models load in the background once the server listens, small ones first, so the server
answers at once and reports readiness truthfully; a request for an endpoint still
loading waits for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from langchain_servingx import contract
from langchain_servingx.contract import Task
from langchain_servingx.local.auth import Authorizer
from langchain_servingx.local.config import EndpointConfig
from langchain_servingx.local.engines import Engine
from langchain_servingx.local.errors import EndpointError
from langchain_servingx.local.playground import install_playground
from langchain_servingx.local.routing import Entity, Route, StreamCut, build_routes

__all__ = ["Registry", "create_app"]

log = logging.getLogger("langchain_servingx.local")

# Seconds between SSE comment lines while a stream waits for its model.
KEEPALIVE_SECONDS = 10.0
# How long a request waits for its endpoint to finish loading.
LOAD_WAIT_SECONDS = 300.0
# The workspace id the host metadata reports (one local workspace).
WORKSPACE_ID = "1"

_TASK_OF_KEY: dict[str, Task] = {
    "messages": contract.CHAT,
    "prompt": contract.COMPLETIONS,
    "input": contract.EMBEDDINGS,
}


class Registry:
    """The endpoints (routes over their served entities) and their loading state."""

    def __init__(
        self,
        configs: list[EndpointConfig],
        faults: str | None = None,
        fault_seed: int | None = None,
    ) -> None:
        self.routes: dict[str, Route] = build_routes(configs, faults, fault_seed)
        self._loader: asyncio.Task[None] | None = None
        self.created_ms = int(time.time() * 1000)

    @property
    def engines(self) -> dict[str, Engine]:
        """Every engine, as ``endpoint`` (one entity) or ``endpoint/entity`` (several)."""
        out: dict[str, Engine] = {}
        for name, route in self.routes.items():
            for entity in route.entities.values():
                key = name if len(route.entities) == 1 else f"{name}/{entity.name}"
                out[key] = entity.engine
        return out

    def start_loading(self) -> None:
        """Load every model in the background; llama.cpp first (fast), torch last (slow)."""

        async def load_all() -> None:
            entities = [
                (route.config, entity)
                for route in self.routes.values()
                for entity in route.entities.values()
            ]
            entities.sort(key=lambda item: item[0].task == contract.EMBEDDINGS)
            for config, entity in entities:
                engine = entity.engine
                if engine.error is None:
                    started = time.monotonic()
                    try:
                        await asyncio.to_thread(engine.load)
                        log.info(
                            "%s (%s) ready in %.1fs",
                            config.name,
                            entity.name,
                            time.monotonic() - started,
                        )
                    except Exception as error:
                        engine.error = f"{type(error).__name__}: {error}"
                        log.error(
                            "%s (%s) failed to load: %s", config.name, entity.name, engine.error
                        )
                entity.settled.set()

        self._loader = asyncio.create_task(load_all())

    @property
    def loaded(self) -> bool:
        """Whether every endpoint has finished loading (successfully or not)."""
        return all(route.settled for route in self.routes.values())

    def state(self, name: str) -> str:
        """``READY`` or ``NOT_READY``; an agent is ready when the model it drives is."""
        route = self.route(name)
        if route.ready and (model := _agent_model(route)) is not None:
            return self.state(model)
        return "READY" if route.ready else "NOT_READY"

    def route(self, name: str) -> Route:
        """The endpoint ``name`` or a 404."""
        try:
            return self.routes[name]
        except KeyError:
            raise EndpointError(
                404, "RESOURCE_DOES_NOT_EXIST", f"Endpoint {name!r} does not exist."
            ) from None

    async def wait_ready(self, route: Route, entity: Entity) -> None:
        """Wait until ``entity`` (and any model an agent drives) is loaded; 503 if it fails."""
        try:
            await asyncio.wait_for(entity.settled.wait(), LOAD_WAIT_SECONDS)
        except asyncio.TimeoutError:  # not yet the builtin on Python 3.10
            raise EndpointError(
                503, "TEMPORARILY_UNAVAILABLE", f"Endpoint {route.config.name!r} is still loading."
            ) from None
        if entity.engine.error is not None:
            raise EndpointError(
                503,
                "TEMPORARILY_UNAVAILABLE",
                f"Endpoint {route.config.name!r} is not ready: {entity.engine.error}",
            )
        if (model := _agent_model(route)) is not None:
            target = self.route(model)
            for driven in target.entities.values():
                await self.wait_ready(target, driven)

    def describe(self, name: str) -> dict[str, Any]:
        """The endpoint object of the listing API."""
        route = self.route(name)
        config = route.config
        if route.ready:
            update = "NOT_UPDATING"
        else:
            update = "UPDATE_FAILED" if route.error else "IN_PROGRESS"
        served: list[dict[str, Any]] = []
        for entity in route.entities.values():
            backend = entity.spec.external
            entity_name = backend.model if backend is not None else entity.name
            item: dict[str, Any] = {"name": entity.name, "entity_name": entity_name}
            if entity.spec.agent is not None:
                item["entity_name"] = "servingx.local.agents"
                item["agent_model"] = entity.spec.agent.model
            elif backend is not None:
                item["external_model"] = {
                    "provider": backend.provider,
                    "name": backend.model,
                    "task": config.task,
                }
            else:
                item["foundation_model"] = {"name": entity.name}
            if entity.fallback is not None:
                item["fallback"] = entity.fallback
            served.append(item)
        routes = [
            {"served_model_name": e.name, "traffic_percentage": e.percentage}
            for e in route.entities.values()
        ]
        capabilities = {"function_calling": True} if config.task == contract.CHAT else {}
        described: dict[str, Any] = {
            "name": name,
            "id": name,
            "creator": "servingx-local",
            "creation_timestamp": self.created_ms,
            "last_updated_timestamp": self.created_ms,
            "state": {"ready": self.state(name), "config_update": update},
            "task": config.task,
            "endpoint_type": config.endpoint_type,
            "capabilities": capabilities,
            "config": {"served_entities": served, "traffic_config": {"routes": routes}},
        }
        if config.rate_limits is not None:
            described["rate_limits"] = config.rate_limits.model_dump(exclude_none=True)
        return described

    async def aclose(self) -> None:
        """Stop loading and release every engine."""
        if self._loader is not None:
            self._loader.cancel()
        for engine in self.engines.values():
            await engine.aclose()


def _agent_model(route: Route) -> str | None:
    """The endpoint whose chat model ``route``'s agent drives, if it is an agent."""
    agent = route.config.agent
    return agent.model if agent is not None else None


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
    except StreamCut:  # the cut-stream fault: the connection is gone, no [DONE]
        return
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


def _dropper(request: Request) -> Callable[[], bool]:
    """A function closing the client's connection at once (``reset``, ``cut-stream``).

    Under uvicorn, the ASGI ``receive`` is a method of the request cycle, which holds the
    connection's transport; the socket is set to linger 0 so the client sees a reset,
    not an orderly close. Elsewhere nothing can be dropped and the function says so.
    """

    def drop() -> bool:
        transport = getattr(getattr(request.receive, "__self__", None), "transport", None)
        if transport is None or not hasattr(transport, "abort"):
            return False
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        return True

    return drop


async def _answer(
    registry: Registry, route: Route, request: Request, served: str | None
) -> Response:
    """Validate the body for the endpoint's task, route it, and shape the HTTP response."""
    body = await _json_body(request)
    _check_task(route.config, body, None)

    async def ready(entity: Entity) -> None:
        await registry.wait_ready(route, entity)

    try:
        name, answer = await route.answer(body, served, ready, _dropper(request))
    except StreamCut:  # the reset fault dropped the connection: nothing can be sent
        return Response(status_code=204)
    headers = {"served-model-name": name}
    if isinstance(answer, dict):
        return JSONResponse(answer, headers=headers)
    headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return StreamingResponse(_sse(answer), media_type="text/event-stream", headers=headers)


def _error_response(error: EndpointError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def create_app(
    configs: list[EndpointConfig],
    token: str | None,
    *,
    faults: str | None = None,
    fault_seed: int | None = None,
) -> FastAPI:
    """The FastAPI app serving ``configs``; ``token=None`` turns authentication off.

    ``faults`` and ``fault_seed`` (the command line's ``--faults`` and ``--fault-seed``)
    inject faults into every endpoint without faults of its own.
    """
    registry = Registry(configs, faults, fault_seed)

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
    authorizer = Authorizer(token)
    auth = [Depends(authorizer.dependency())]
    install_playground(app, authorizer)

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
        """Liveness and readiness; per endpoint: entity usage, rate limits, faults.

        Cheap and unauthenticated.
        """
        states = {name: registry.state(name) for name in registry.routes}
        reports = {name: route.report() for name, route in registry.routes.items()}
        return {"status": "ok", "ready": registry.loaded, "endpoints": states, "usage": reports}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """200 once every endpoint has finished loading, 503 before."""
        body = {"ready": registry.loaded}
        return JSONResponse(body, status_code=200 if registry.loaded else 503)

    @app.get("/.well-known/databricks-config")
    async def databricks_config(request: Request) -> dict[str, Any]:
        """Host metadata, which the Databricks SDK (and so MLflow) asks for on start."""
        base = str(request.base_url).rstrip("/")
        return {"oidc_endpoint": f"{base}/oidc", "workspace_id": WORKSPACE_ID}

    @app.get("/api/2.0/serving-endpoints", dependencies=auth)
    async def list_endpoints() -> dict[str, Any]:
        """Every endpoint, as the listing API describes them."""
        return {"endpoints": [registry.describe(name) for name in registry.routes]}

    @app.get("/api/2.0/serving-endpoints/{name}", dependencies=auth)
    async def get_endpoint(name: str) -> dict[str, Any]:
        """One endpoint."""
        return registry.describe(name)

    def model_object(name: str) -> dict[str, Any]:
        registry.route(name)  # 404 for an unknown name
        created = registry.created_ms // 1000
        return {"id": name, "object": "model", "created": created, "owned_by": "servingx-local"}

    @app.get("/serving-endpoints/models", dependencies=auth)
    async def list_models() -> dict[str, Any]:
        """The endpoints as OpenAI model objects (the OpenAI SDK's ``models.list()``)."""
        return {"object": "list", "data": [model_object(name) for name in registry.routes]}

    @app.get("/serving-endpoints/models/{name}", dependencies=auth)
    async def get_model(name: str) -> dict[str, Any]:
        """One endpoint as an OpenAI model object (``models.retrieve(name)``)."""
        return model_object(name)

    async def openai_route(request: Request, task: Task) -> Response:
        body = await _json_body(request)
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise EndpointError(400, "BAD_REQUEST", "model: the endpoint name is required.")
        route = registry.route(name)
        _check_task(route.config, body, task)
        return await _answer(registry, route, request, None)

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
        """The native call: split by traffic over the endpoint's served entities."""
        return await _answer(registry, registry.route(name), request, None)

    @app.post("/serving-endpoints/{name}/served-models/{served}/invocations", dependencies=auth)
    async def served_model_invocations(name: str, served: str, request: Request) -> Response:
        """A call to one served entity behind the endpoint (no split, no fallback)."""
        route = registry.route(name)
        route.entity(served)  # 404 before the body is read
        return await _answer(registry, route, request, served)

    return app

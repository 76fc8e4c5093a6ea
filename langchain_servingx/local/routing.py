"""An endpoint as a gateway: served entities, traffic split, fallbacks, limits and faults.

Each endpoint is a :class:`Route` over one or more served entities (an engine each).
A request to the endpoint goes, in order, through

1. the endpoint's rate limits (:mod:`~langchain_servingx.local.limits`): 429 past them;
2. its fault injector (:mod:`~langchain_servingx.local.faults`), when faults are on;
3. the traffic split: a smooth weighted round robin over the entities' percentages, so
   any 100 consecutive requests meet each entity exactly as often as its percentage
   says (a workspace splits at random; exact shares make a split testable);
4. the entity, and on a 429 or 5xx from it, its ``fallback`` entity (and that one's),
   as a gateway's fallback order does.

A request to ``/served-models/{name}/invocations`` skips the split and the fallbacks: it
asked for that entity. The entity that answered is returned with the answer (the routes
put it in the ``served-model-name`` header), and every entity's requests, errors,
fallbacks and tokens are counted for ``/health``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import asdict, dataclass
from typing import Any

from langchain_servingx import contract
from langchain_servingx.local.config import EndpointConfig, ServedEntity
from langchain_servingx.local.engines import Answer, Body, Engine, LlamaModel, build_engine
from langchain_servingx.local.errors import EndpointError
from langchain_servingx.local.faults import FaultInjector
from langchain_servingx.local.limits import RateLimiter
from langchain_servingx.local.schemas import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse_request,
)

__all__ = [
    "CUT_AFTER_CHUNKS",
    "Entity",
    "EntityStats",
    "Route",
    "StreamCut",
    "build_routes",
]

log = logging.getLogger("langchain_servingx.local")

# A cut stream delivers this many chunks (fewer if the answer is shorter), then breaks.
CUT_AFTER_CHUNKS = 2


class StreamCut(Exception):  # noqa: N818 - an event, not an error of the server's
    """Raised inside a stream by the ``cut-stream`` fault: end it with no ``[DONE]``."""


@dataclass
class EntityStats:
    """What one served entity did since the server started."""

    requests: int = 0
    errors: int = 0
    fallbacks: int = 0  # requests answered in place of a failed entity
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Entity:
    """A served entity: its engine, its traffic share and its fallback."""

    def __init__(self, spec: ServedEntity, engine: Engine) -> None:
        self.spec = spec
        self.name = spec.name
        self.engine = engine
        self.percentage = spec.traffic_percentage
        self.fallback = spec.fallback
        self.stats = EntityStats()
        self.settled = asyncio.Event()
        self._current = 0  # smooth weighted round robin state

    @property
    def ready(self) -> bool:
        """Loaded without error."""
        return self.settled.is_set() and self.engine.error is None


def _usage_of(body: Body) -> tuple[int, int]:
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return 0, 0
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else 0,
    )


class Route:
    """One endpoint: its entities and the gateway rules in front of them."""

    def __init__(
        self,
        config: EndpointConfig,
        entities: list[Entity],
        limiter: RateLimiter | None = None,
        faults: FaultInjector | None = None,
    ) -> None:
        self.config = config
        self.entities = {entity.name: entity for entity in entities}
        self.limiter = limiter
        self.faults = faults

    # -- state -------------------------------------------------------------------------

    @property
    def settled(self) -> bool:
        """Whether every entity has finished loading (successfully or not)."""
        return all(e.settled.is_set() for e in self.entities.values())

    @property
    def ready(self) -> bool:
        """Whether every entity loaded without error."""
        return all(e.ready for e in self.entities.values())

    @property
    def error(self) -> str | None:
        """The load errors, entity by entity, if any."""
        failed = [f"{e.name}: {e.engine.error}" for e in self.entities.values() if e.engine.error]
        return "; ".join(failed) or None

    def report(self) -> dict[str, Any]:
        """Usage per entity, limits and faults, for ``/health``."""
        out: dict[str, Any] = {
            "entities": {name: asdict(e.stats) for name, e in self.entities.items()}
        }
        if self.limiter is not None:
            out["rate_limits"] = self.limiter.report()
        if self.faults is not None:
            out["faults"] = self.faults.report()
        return out

    # -- choosing an entity ------------------------------------------------------------

    def pick(self) -> Entity:
        """The next entity by traffic share (smooth weighted round robin)."""
        live = [e for e in self.entities.values() if e.percentage > 0]
        total = sum(e.percentage for e in live)
        for entity in live:
            entity._current += entity.percentage
        chosen = max(live, key=lambda e: e._current)
        chosen._current -= total
        return chosen

    def entity(self, name: str) -> Entity:
        """The entity ``name``, or the 404 naming those that exist."""
        try:
            return self.entities[name]
        except KeyError:
            raise EndpointError(
                404,
                "RESOURCE_DOES_NOT_EXIST",
                f"Endpoint {self.config.name!r} has no served model {name!r}; it serves "
                f"{', '.join(repr(n) for n in self.entities)}.",
            ) from None

    # -- answering ---------------------------------------------------------------------

    async def answer(
        self,
        body: Body,
        served: str | None,
        ready: Callable[[Entity], Any],
        drop: Callable[[], bool],
    ) -> tuple[str, Answer]:
        """Run ``body`` through limits, faults, the split and fallbacks.

        ``ready(entity)`` waits until the entity is loaded (503 when it cannot be);
        ``drop()`` closes the client's connection at once (for the ``reset`` and
        ``cut-stream`` faults) and says whether it could. Returns the name of the entity
        that answered and its answer.
        """
        streaming = bool(body.get("stream"))
        chosen = self.entity(served) if served is not None else None
        if self.limiter is not None:
            self.limiter.admit()
        cut = False
        if self.faults is not None:
            fault = self.faults.draw(streaming)
            if fault is not None:
                kind = fault.rule.kind
                if kind == "status":
                    raise fault.error(self.config.name)
                if kind == "slow":
                    await asyncio.sleep(fault.rule.delay)
                elif kind == "reset":
                    if drop():
                        raise StreamCut
                    raise EndpointError(
                        502, "INTERNAL_ERROR", "injected reset: this server cannot drop connections"
                    )
                else:
                    cut = True
        entity = chosen or self.pick()
        wants_usage = True
        if streaming:
            # Streams always carry usage internally, to count tokens; the client's choice
            # decides whether the usage chunk reaches it.
            options = body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage") is False:
                wants_usage = False
            body = {**body, "stream_options": {"include_usage": True}}
        while True:
            entity.stats.requests += 1
            try:
                await ready(entity)
                answer = await self._call(entity.engine, body)
            except EndpointError as error:
                entity.stats.errors += 1
                fallback = entity.fallback if chosen is None else None
                if fallback is None or not (error.status == 429 or error.status >= 500):
                    raise
                log.warning(
                    "%s: %s failed (%s), falling back to %s",
                    self.config.name,
                    entity.name,
                    error.status,
                    fallback,
                )
                entity = self.entities[fallback]
                entity.stats.fallbacks += 1
                continue
            break
        if isinstance(answer, dict):
            self._count(entity, answer)
            return entity.name, answer
        return entity.name, self._watch(entity, answer, wants_usage, cut, drop)

    async def _call(self, engine: Engine, body: Body) -> Answer:
        task = self.config.task
        if task == contract.CHAT:
            return await engine.chat(parse_request(ChatRequest, body), body)
        if task == contract.COMPLETIONS:
            return await engine.completions(parse_request(CompletionRequest, body), body)
        return await engine.embeddings(parse_request(EmbeddingRequest, body), body)

    def _count(self, entity: Entity, body: Body) -> None:
        prompt, completion = _usage_of(body)
        entity.stats.prompt_tokens += prompt
        entity.stats.completion_tokens += completion
        if self.limiter is not None:
            self.limiter.used(prompt + completion)

    async def _watch(
        self,
        entity: Entity,
        chunks: AsyncGenerator[Body, None],
        wants_usage: bool,
        cut: bool,
        drop: Callable[[], bool],
    ) -> AsyncGenerator[Body, None]:
        """Relay a stream, counting its usage; cut it short for the ``cut-stream`` fault.

        Usage is counted once, from the last chunk that carried it (some servers repeat a
        running total on every chunk).
        """
        sent = 0
        usage: Body | None = None
        try:
            async for chunk in chunks:
                if cut and (
                    sent >= CUT_AFTER_CHUNKS
                    or any(c.get("finish_reason") for c in chunk.get("choices") or ())
                ):
                    drop()
                    raise StreamCut
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk
                    if not wants_usage:
                        if not chunk.get("choices"):
                            continue
                        chunk = {k: v for k, v in chunk.items() if k != "usage"}
                sent += 1
                yield chunk
        finally:
            if usage is not None:
                self._count(entity, usage)
            await chunks.aclose()


def build_routes(
    configs: list[EndpointConfig], faults: str | None = None, fault_seed: int | None = None
) -> dict[str, Route]:
    """One route per endpoint, an engine per served entity (same GGUF file: one model).

    ``faults`` (the command line's ``--faults``) applies to every endpoint that has no
    ``faults`` of its own; each endpoint draws from its own generator, seeded with its
    ``fault_seed`` or else ``fault_seed``, so one endpoint's faults do not depend on the
    traffic of the others.
    """
    models: dict[tuple[str, int], LlamaModel] = {}
    routes: dict[str, Route] = {}
    for config in configs:
        entities = [
            Entity(spec, build_engine(config.for_entity(spec), models)) for spec in config.entities
        ]
        limiter = RateLimiter(config.name, config.rate_limits) if config.rate_limits else None
        spec = config.faults if config.faults is not None else faults
        seed = config.fault_seed if config.fault_seed is not None else fault_seed
        injector = FaultInjector(config.name, spec, seed) if spec else None
        routes[config.name] = Route(config, entities, limiter, injector)
    return routes

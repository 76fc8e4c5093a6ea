"""What the listing API says about an endpoint: `EndpointInfo` and its `ServedEntity`s.

`GET {host}/api/2.0/serving-endpoints[/{name}]` answers with endpoint objects whose shape
varies by endpoint type and age (`served_entities` or the older `served_models`, no `task`
on custom models). Parsing keeps every field it does not know in `raw` and tolerates every
field it expects but does not find.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_servingx import contract

__all__ = ["EndpointInfo", "ServedEntity", "closest_names", "describe_mismatch"]

_ENTITY_KINDS = ("external_model", "foundation_model")
# Tasks whose wire format a client of the key task also speaks.
_COMPATIBLE = {contract.CHAT: {contract.CHAT, contract.AGENT_CHAT}}
_CLASS_OF_TASK = {
    contract.CHAT: "ChatServing",
    contract.COMPLETIONS: "ServingLLM",
    contract.EMBEDDINGS: "ServingEmbeddings",
}


@dataclass(frozen=True)
class ServedEntity:
    """One model behind an endpoint and its share of the traffic.

    `kind` is `"external_model"`, `"foundation_model"` or `"custom_model"` (a registered
    model: `entity_name` and `entity_version`); `provider` and `model` name an external or
    foundation model; `traffic_percentage` is None when the endpoint has no traffic config.
    """

    name: str | None
    entity_name: str | None = None
    entity_version: str | None = None
    traffic_percentage: int | None = None
    kind: str | None = None
    provider: str | None = None
    model: str | None = None
    task: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any], traffic: Mapping[str, int]) -> ServedEntity:
        """Parse one `served_entities` (or `served_models`) item."""
        name = _str(data.get("name"))
        kind: str | None = None
        details: Mapping[str, Any] = {}
        for candidate in _ENTITY_KINDS:
            if isinstance(data.get(candidate), Mapping):
                kind, details = candidate, data[candidate]
                break
        entity_name = _str(data.get("entity_name")) or _str(data.get("model_name"))
        if kind is None and entity_name is not None:
            kind = "custom_model"
        version = data.get("entity_version", data.get("model_version"))
        return cls(
            name=name,
            entity_name=entity_name,
            entity_version=None if version is None else str(version),
            traffic_percentage=traffic.get(name) if name is not None else None,
            kind=kind,
            provider=_str(details.get("provider")),
            model=_str(details.get("name")),
            task=_str(details.get("task")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class EndpointInfo:
    """One serving endpoint as the listing API describes it.

    `task` is None for custom models; `ready` is True when `state.ready` is `READY`;
    `config_update` is e.g. `NOT_UPDATING`, `IN_PROGRESS` or `UPDATE_FAILED`;
    `endpoint_type` e.g. `FOUNDATION_MODEL_API`, `EXTERNAL_MODEL`, `CUSTOM_MODEL`. `raw`
    keeps the whole object, fields unknown here included.
    """

    name: str
    task: str | None = None
    ready: bool = False
    config_update: str | None = None
    endpoint_type: str | None = None
    served_entities: list[ServedEntity] = field(default_factory=list)
    capabilities: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Any) -> EndpointInfo:
        """Parse one endpoint object; ValueError when it is not one (no `name`)."""
        if not isinstance(data, Mapping) or not _str(data.get("name")):
            shown = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"an endpoint object needs a 'name' string, got {shown}")
        state = _mapping(data.get("state"))
        config = _mapping(data.get("config"))
        routes = _mapping(config.get("traffic_config")).get("routes")
        traffic = {
            str(r.get("served_model_name") or r.get("served_entity_name")): r["traffic_percentage"]
            for r in (routes if isinstance(routes, list) else [])
            if isinstance(r, Mapping) and isinstance(r.get("traffic_percentage"), int)
        }
        entities = config.get("served_entities", config.get("served_models", []))
        capabilities = data.get("capabilities")
        return cls(
            name=data["name"],
            task=_str(data.get("task")),
            ready=state.get("ready") == "READY",
            config_update=_str(state.get("config_update")),
            endpoint_type=_str(data.get("endpoint_type")),
            served_entities=[
                ServedEntity.from_api(e, traffic)
                for e in (entities if isinstance(entities, list) else [])
                if isinstance(e, Mapping)
            ],
            capabilities=dict(capabilities) if isinstance(capabilities, Mapping) else {},
            raw=dict(data),
        )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def closest_names(name: str, names: Iterable[str], count: int = 3) -> list[str]:
    """The existing names most like `name` (a typo's likely targets), best first."""
    return difflib.get_close_matches(name, list(names), n=count, cutoff=0.5)


def describe_mismatch(asked: str, endpoint: str, listing: Mapping[str, EndpointInfo]) -> str | None:
    """Why a request for task `asked` failed on `endpoint`, in one sentence, or None.

    The listing explains it when the endpoint does not exist, or serves another task.
    """
    info = listing.get(endpoint)
    if info is None:
        close = closest_names(endpoint, listing)
        hint = f"; closest names: {', '.join(close)}" if close else ""
        return f"Endpoint {endpoint!r} does not exist in this workspace{hint}."
    if info.task is None or info.task in _COMPATIBLE.get(asked, {asked}):
        return None
    use = _CLASS_OF_TASK.get(info.task)
    advice = f"; use {use} for it" if use else ""
    return f"Endpoint {endpoint!r} serves {info.task}, not {asked}{advice}."

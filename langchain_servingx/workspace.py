"""`ServingWorkspace`: one connection to a workspace, shared by any number of models.

It holds the host, credentials, timeouts and retry policy, and owns the one transport and
its pooled sync and async clients (one OAuth token for all its models). It lists and
describes endpoints, and explains a 400/404 that comes from asking an endpoint for a task
it does not serve, or from an endpoint that does not exist.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from langchain_servingx._clients import Closing
from langchain_servingx._config import ConnectionSettings, normalize_url, resolve_settings
from langchain_servingx._decoding import DEFAULT_MAX_RESPONSE_BYTES
from langchain_servingx._errors import ServingError, ServingNotFoundError, ServingResponseError
from langchain_servingx._transport import (
    ApiCall,
    EndpointAddress,
    InvocationTransport,
    RetryPolicy,
    Task,
    check_endpoint_name,
)
from langchain_servingx.endpoint_info import (
    EndpointInfo,
    ServedEntity,
    closest_names,
    describe_mismatch,
)

__all__ = [
    "CONNECTION_FIELDS",
    "ConnectionFields",
    "EndpointInfo",
    "ServedEntity",
    "ServingWorkspace",
]

logger = logging.getLogger("langchain_servingx")
_LOCK = threading.Lock()
_LISTING = ApiCall("GET", "serving-endpoints")
_LISTING_ONCE = ApiCall("GET", "serving-endpoints", max_retries=0)  # for a task check
_LISTING_TTL_SECONDS = 300.0
"""How long a fetched listing answers task checks and `endpoint_task` before a refetch."""


class ConnectionFields(BaseModel):
    """Where requests go, who they are sent as, and how hard to try."""

    # Inputs stay out of validation errors: a refused host may hold a password.
    model_config = ConfigDict(
        populate_by_name=True, arbitrary_types_allowed=True, hide_input_in_errors=True
    )

    host: str | None = None
    """Workspace URL; default `DATABRICKS_HOST`, then the config profile."""

    token: SecretStr | None = Field(default=None, alias="api_key")
    """Personal access token (alias `api_key`); default `DATABRICKS_TOKEN`, then the profile."""

    client_id: str | None = None
    """OAuth machine-to-machine client id; default `DATABRICKS_CLIENT_ID`."""

    client_secret: SecretStr | None = None
    """OAuth machine-to-machine client secret; default `DATABRICKS_CLIENT_SECRET`."""

    profile: str | None = None
    """`~/.databrickscfg` profile; default `DATABRICKS_CONFIG_PROFILE`, then `[DEFAULT]`."""

    auth: httpx.Auth | None = Field(default=None, exclude=True, repr=False)
    """Any other auth scheme as an `httpx.Auth`; replaces token and OAuth resolution."""

    openai_compatible: bool = False
    """Use the host's OpenAI-compatible routes (`/serving-endpoints/chat/completions`)."""

    base_url: str | None = None
    """Any other OpenAI-compatible server (vLLM, llama.cpp): `{base_url}/chat/completions`."""

    timeout: float | None = Field(default=300.0, gt=0, allow_inf_nan=False)
    """Seconds to wait for an answer (connecting waits at most 10 s); None waits forever."""

    max_retries: int = Field(default=3, ge=0)
    """Retries on 429, 500, 502, 503, 504 and connection errors, with backoff and jitter."""

    retry_budget: float | None = Field(default=120.0, gt=0, allow_inf_nan=False)
    """Seconds one request may spend retrying; 429 and 503 retry past `max_retries` within it."""

    retry_read_timeouts: bool = False
    """Also retry read timeouts and connections broken after sending (the model may have run)."""

    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, gt=0)
    """Largest answer body accepted; a larger one is refused with a `ServingResponseError`."""

    allow_insecure_http: bool = False
    """Allow sending credentials over plain http to a non-loopback host."""

    @field_validator("host", "base_url")
    @classmethod
    def _valid_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            normalize_url(
                value, what=info.field_name or "host", allow_path=info.field_name == "base_url"
            )
        return value


CONNECTION_FIELDS = frozenset(ConnectionFields.model_fields)


class ServingWorkspace(ConnectionFields, Closing):
    """A connection to a workspace (or an OpenAI-compatible server) that models share.

    ```python
    from langchain_servingx import ChatServing, ServingEmbeddings, ServingWorkspace

    with ServingWorkspace(host="https://my-workspace.example.com") as ws:
        chat = ChatServing(endpoint="databricks-claude-sonnet-4", workspace=ws)
        embed = ServingEmbeddings(endpoint="databricks-gte-large-en", workspace=ws)
        [e.name for e in ws.list_endpoints()]
    ```

    Immutable; configuration is resolved on first use. Safe to share across threads and
    event loops; picklable (the clients are not part of its state and are rebuilt on first
    use). `close()` / `aclose()` or `with` / `async with` close every client it opened; a
    later call opens new ones.
    """

    model_config = ConfigDict(frozen=True)

    _transport: InvocationTransport | None = PrivateAttr(default=None)
    _listing: tuple[float, dict[str, EndpointInfo]] | None = PrivateAttr(default=None)
    _fetching: _SingleFlight | None = PrivateAttr(default=None)

    # -- state -------------------------------------------------------------------------

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state["__pydantic_private__"] = {"_transport": None, "_listing": None, "_fetching": None}
        return state

    def __copy__(self) -> ServingWorkspace:
        return self  # a connection is shared, never duplicated

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> ServingWorkspace:
        return self

    @property
    def transport(self) -> InvocationTransport:
        """The workspace's transport, built (and configuration resolved) on first use."""
        transport = self._transport
        if transport is None:
            with _LOCK:
                if self._transport is None:
                    self._transport = self._build_transport()
                transport = self._transport
        return transport

    def resolved_settings(self) -> ConnectionSettings:
        """Host and credential from the fields, then the environment, then the profile."""
        return resolve_settings(
            host=self.host,
            token=self.token,
            client_id=self.client_id,
            client_secret=self.client_secret,
            profile=self.profile,
            # DATABRICKS_* credentials belong to the workspace, never to another server.
            workspace=self.base_url is None,
        )

    def _build_transport(self) -> InvocationTransport:
        settings = self.resolved_settings()
        address = EndpointAddress.build(
            host=settings.host, base_url=self.base_url, openai_compatible=self.openai_compatible
        )
        return InvocationTransport(
            settings,
            address,
            timeout=self.timeout,
            retry=RetryPolicy(
                max_retries=self.max_retries,
                retry_read_timeouts=self.retry_read_timeouts,
                budget=self.retry_budget,
            ),
            max_response_bytes=self.max_response_bytes,
            auth=self.auth,
            allow_insecure_http=self.allow_insecure_http,
            # A generic OpenAI-compatible server may need no credentials at all.
            require_credentials=self.base_url is None,
            explainer=_TaskCheck(self),
        )

    def _held(self) -> InvocationTransport | None:
        return self._transport

    # -- the listing API ---------------------------------------------------------------

    def list_endpoints(self) -> list[EndpointInfo]:
        """Every serving endpoint of the workspace (`GET /api/2.0/serving-endpoints`)."""
        return self._store(self.transport.api(_LISTING))

    async def alist_endpoints(self) -> list[EndpointInfo]:
        """Async `list_endpoints`."""
        return self._store(await self.transport.aapi(_LISTING))

    def get_endpoint(self, name: str) -> EndpointInfo:
        """One endpoint (`GET /api/2.0/serving-endpoints/{name}`); 404: `ServingNotFoundError`."""
        return _parse(self.transport.api(_endpoint_call(name)), name)

    async def aget_endpoint(self, name: str) -> EndpointInfo:
        """Async `get_endpoint`."""
        return _parse(await self.transport.aapi(_endpoint_call(name)), name)

    def endpoint_task(self, name: str) -> str | None:
        """The task `name` serves (None: a custom model without one), from a cached listing.

        The listing is fetched on first need and again after five minutes, or when `name`
        is not in it; a name still missing raises `ServingNotFoundError` with the closest
        existing names.
        """
        listing = self._cached()
        if listing is None or name not in listing:
            seen = self._listing
            with self._single_flight().lock:
                if self._listing is seen:  # nobody fetched it while this call waited
                    self.list_endpoints()
            listing = self._cached() or {}
        return _task_in(listing, name)

    async def aendpoint_task(self, name: str) -> str | None:
        """Async `endpoint_task`."""
        listing = self._cached()
        if listing is None or name not in listing:
            seen = self._listing
            async with self._single_flight().alock():
                if self._listing is seen:
                    await self.alist_endpoints()
            listing = self._cached() or {}
        return _task_in(listing, name)

    def _single_flight(self) -> _SingleFlight:
        """The locks that let concurrent first calls share one listing fetch."""
        flight = self._fetching
        if flight is None:
            with _LOCK:
                if self._fetching is None:
                    self._fetching = _SingleFlight()
                flight = self._fetching
        return flight

    def _cached(self) -> dict[str, EndpointInfo] | None:
        cached = self._listing
        if cached is None or time.monotonic() - cached[0] > _LISTING_TTL_SECONDS:
            return None
        return cached[1]

    def _store(self, reply: dict[str, Any]) -> list[EndpointInfo]:
        items = reply.get("endpoints", [])
        if not isinstance(items, list):
            raise ServingResponseError(
                f"the endpoint listing's 'endpoints' is not a list: {type(items).__name__}"
            )
        infos = [_parse(item, None) for item in items]
        self._listing = (time.monotonic(), {info.name: info for info in infos})
        return infos


class _SingleFlight:
    """One listing fetch at a time per workspace: a lock per thread and per event loop.

    Without it, the concurrent first calls of a batch on a cold workspace would each fetch
    the listing.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._guard = threading.Lock()  # never held across I/O, so a loop never waits on it
        self._alocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def alock(self) -> asyncio.Lock:
        """The running loop's lock."""
        loop = asyncio.get_running_loop()
        with self._guard:
            return self._alocks.setdefault(loop, asyncio.Lock())


class _TaskCheck:
    """Explains a 400/404 from the listing: fetched on such an error only, then cached."""

    def __init__(self, workspace: ServingWorkspace) -> None:
        self.workspace = workspace

    def explain(self, task: Task, endpoint: str, error: ServingError) -> ServingError:
        ws = self.workspace
        if ws.transport.address.host is None:
            return error  # a base_url server has no listing
        listing = ws._cached()
        if listing is None:
            try:
                ws._store(ws.transport.api(_LISTING_ONCE))
            except Exception:  # a best-effort hint never replaces the error
                logger.debug("no listing to explain %s with", error, exc_info=True)
                return error  # no listing (permissions, an older server): say what we know
            listing = ws._cached() or {}
        return _explained(error, describe_mismatch(task, endpoint, listing))

    async def aexplain(self, task: Task, endpoint: str, error: ServingError) -> ServingError:
        ws = self.workspace
        if ws.transport.address.host is None:
            return error
        listing = ws._cached()
        if listing is None:
            try:
                ws._store(await ws.transport.aapi(_LISTING_ONCE))
            except Exception:  # a best-effort hint never replaces the error
                logger.debug("no listing to explain %s with", error, exc_info=True)
                return error
            listing = ws._cached() or {}
        return _explained(error, describe_mismatch(task, endpoint, listing))


def _explained(error: ServingError, sentence: str | None) -> ServingError:
    if sentence is None:
        return error
    explained = type(error)(f"{sentence} The server said: {error.message}", **error._attributes())
    explained.__cause__ = error
    return explained


def _endpoint_call(name: str) -> ApiCall:
    path = "serving-endpoints/" + quote(check_endpoint_name(name), safe="")
    return ApiCall("GET", path, name=name)


def _parse(data: Any, name: str | None) -> EndpointInfo:
    try:
        return EndpointInfo.from_api(data)
    except ValueError as error:
        raise ServingResponseError(
            f"the listing API answered oddly: {error}", endpoint=name
        ) from None


def _task_in(listing: dict[str, EndpointInfo], name: str) -> str | None:
    info = listing.get(name)
    if info is None:
        close = closest_names(name, listing)
        hint = f" (closest names: {', '.join(close)})" if close else ""
        raise ServingNotFoundError(
            f"no endpoint named {name!r} in this workspace{hint}", status_code=404, endpoint=name
        )
    return info.task

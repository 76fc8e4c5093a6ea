"""The transport: the one place that speaks HTTP for every public class and the workspace.

It knows addresses (`EndpointAddress`), uses one pool of `httpx` clients per workspace
(`ClientPool`: created on first use, left out of pickles, closed with `close()`), retries
what is safe to retry, parses server-sent events and turns every failure into a typed
`ServingError`. It knows nothing of LangChain: callers hand it a JSON body and get JSON
objects back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

from langchain_servingx import contract
from langchain_servingx._auth import BearerTokenAuth, ClientCredentialsAuth
from langchain_servingx._clients import ClientPool
from langchain_servingx._config import (
    MISSING_CREDENTIALS_HINT,
    ClientCredentials,
    ConnectionSettings,
    is_loopback,
    normalize_url,
)
from langchain_servingx._decoding import DEFAULT_MAX_RESPONSE_BYTES, MalformedAnswer, loads
from langchain_servingx._errors import (
    ServingConfigurationError,
    ServingContextOverflowError,
    ServingError,
    ServingInvalidRequestError,
    ServingNotFoundError,
    ServingResponseError,
    error_from_response,
    request_id_from,
)
from langchain_servingx._retry import RetryPolicy, Trace, body_error, redacted, transport_error
from langchain_servingx._sse import DONE, StreamReader, event_source, is_error
from langchain_servingx._version import __version__

__all__ = [
    "ApiCall",
    "EndpointAddress",
    "ErrorExplainer",
    "InvocationTransport",
    "RetryPolicy",
    "StreamReader",
    "check_endpoint_name",
]

logger = logging.getLogger("langchain_servingx")

Task = contract.Task
_USER_AGENT = f"langchain-servingx/{__version__}"
_URL_CACHE_SIZE = 256
_POOL_SIZE = 256
_MAX_ERROR_BYTES = 1024 * 1024  # an error body is read this far, the rest dropped
_clock = time.monotonic  # the tests replace it with a clock that their fake sleeps advance


# --------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------


def check_endpoint_name(name: str, what: str = "endpoint") -> str:
    """Refuse names that could change the URL path instead of naming one endpoint."""
    problem = contract.name_problem(name)
    if problem is not None:
        raise ServingConfigurationError(f"{what} name {name!r} {problem}")
    return name


@dataclass(frozen=True)
class EndpointAddress:
    """How endpoints are addressed: the route root and whether the body names the model.

    - native: `{host}/serving-endpoints/{endpoint}/invocations`
    - a served model: `{host}/serving-endpoints/{endpoint}/served-models/{served}/invocations`
    - `openai_compatible`: `{host}/serving-endpoints/chat/completions` with `"model"` in the body
    - `base_url`: any OpenAI-compatible server, `{base_url}/chat/completions`, `"model"` in body

    `host` is the workspace (None for a `base_url` server): the listing API lives there.
    """

    root: str
    openai_compatible: bool = False
    host: str | None = None

    @classmethod
    def build(
        cls, *, host: str | None, base_url: str | None, openai_compatible: bool
    ) -> EndpointAddress:
        """Validate one addressing choice and return the address."""
        if base_url is not None:
            return cls(
                normalize_url(base_url, what="base_url", allow_path=True), openai_compatible=True
            )
        if host is None:
            raise ServingConfigurationError(
                "no host configured: set DATABRICKS_HOST, pass host=, name a ~/.databrickscfg "
                "profile, or pass base_url= for another OpenAI-compatible server"
            )
        return cls(host + "/serving-endpoints", openai_compatible, host)

    def check_served_model(self, served_model: str | None) -> None:
        """Refuse a served model this address cannot reach."""
        if served_model is None:
            return
        if self.host is None:
            raise ServingConfigurationError("served_model cannot be combined with base_url")
        if self.openai_compatible:
            raise ServingConfigurationError(
                "served_model addresses the native invocations route; "
                "it cannot be combined with openai_compatible=True"
            )
        check_endpoint_name(served_model, "served model")

    def url(self, task: Task, endpoint: str, served_model: str | None = None) -> str:
        """The URL to POST to for `task` on `endpoint` (or one of its served models)."""
        if self.openai_compatible:
            path = contract.OPENAI_PATHS.get(task)
            if path is None:
                raise ServingConfigurationError(
                    f"task {task} has no OpenAI-compatible route; use the native route"
                )
            return self.root + path
        self.check_served_model(served_model)
        # Checked here too, not only by the callers: this is the one place a name becomes
        # a path segment, and httpx resolves a bare ".." segment instead of sending it.
        url = f"{self.root}/{quote(check_endpoint_name(endpoint), safe='')}"
        if served_model is not None:
            url += f"/served-models/{quote(served_model, safe='')}"
        return url + "/invocations"

    def api_url(self, path: str) -> str:
        """`{host}/api/2.0/{path}`: the workspace REST API (the listing)."""
        if self.host is None:
            raise ServingConfigurationError(
                "a base_url server has no workspace API (listing endpoints needs host=)"
            )
        return f"{self.host}/api/2.0/{path}"


# --------------------------------------------------------------------------------------
# The transport
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiCall:
    """One call to `{host}/api/2.0/{path}`, with any method.

    A GET is retried even after a read timeout (it re-runs nothing). `name` is the endpoint
    it concerns, for errors; `max_retries` overrides the policy's (0: a best-effort lookup).
    """

    method: str
    path: str
    body: dict[str, Any] | None = None
    name: str | None = None
    max_retries: int | None = None

    def how(self) -> _How:
        """How the send loops treat it."""
        return _How(idempotent=self.method == "GET", max_retries=self.max_retries)


@dataclass(frozen=True)
class _How:
    """How one request is retried and explained.

    `task` (an invocation's) lets a 400/404 be explained; `idempotent` allows retrying read
    timeouts; `max_retries` caps the policy's.
    """

    task: Task | None = None
    idempotent: bool = False
    max_retries: int | None = None


class ErrorExplainer(Protocol):
    """Adds what the workspace knows to a 400/404 (another task, no such endpoint)."""

    def explain(self, task: Task, endpoint: str, error: ServingError) -> ServingError:
        """The error to raise instead of `error`."""
        ...

    async def aexplain(self, task: Task, endpoint: str, error: ServingError) -> ServingError:
        """Async `explain`."""
        ...


class InvocationTransport:
    """Send JSON to a workspace's endpoints and API, plain or streamed, with typed errors.

    One instance per `ServingWorkspace`, shared by every model on it. Clients live in a
    `ClientPool` (the sync one once, an async one per event loop); pickling keeps the
    configuration and drops the clients.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        address: EndpointAddress,
        *,
        timeout: float | None,
        retry: RetryPolicy,
        auth: httpx.Auth | None = None,
        allow_insecure_http: bool = False,
        require_credentials: bool = True,
        explainer: ErrorExplainer | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.address = address
        self.max_response_bytes = max_response_bytes
        self.retry = retry
        self.timeout = httpx.Timeout(timeout, connect=min(timeout or 10.0, 10.0))
        self.explainer = explainer
        self._auth = auth if auth is not None else _auth_from(settings, require_credentials)
        if self._auth is not None and not allow_insecure_http:
            _refuse_cleartext(address.root)
            if isinstance(self._auth, ClientCredentialsAuth):
                # The client secret goes to the host, which base_url may not be.
                _refuse_cleartext(self._auth.token_url)
        self._pool = ClientPool(self._client_kwargs)
        self._urls: dict[tuple[str, str, str | None], httpx.URL] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_pool=None, _urls={})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pool = ClientPool(self._client_kwargs)

    # -- clients -----------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "auth": self._auth,
            "timeout": self.timeout,
            "headers": {"User-Agent": _USER_AGENT, "Accept": "application/json"},
            "follow_redirects": False,  # never hand a token to another host
            # As many kept-alive connections as requests in flight: a smaller keep-alive pool
            # closes connections after each burst and opens new ones for the next.
            "limits": httpx.Limits(
                max_connections=_POOL_SIZE, max_keepalive_connections=_POOL_SIZE
            ),
        }

    @property
    def client(self) -> httpx.Client:
        """The pooled sync client, created on first use."""
        return self._pool.client

    async def aclient(self) -> httpx.AsyncClient:
        """The pooled async client of the running event loop."""
        return await self._pool.aclient()

    def close(self) -> None:
        """Close every client this transport opened (async ones on their own loops)."""
        self._pool.close()

    async def aclose(self) -> None:
        """Async `close`."""
        await self._pool.aclose()

    # -- invocations -------------------------------------------------------------------

    def _url(self, task: Task, endpoint: str, served_model: str | None) -> httpx.URL:
        """The parsed URL for `task` on `endpoint`, cached: most calls repeat one endpoint."""
        key = (task, endpoint, served_model)
        url = self._urls.get(key)
        if url is None:
            url = httpx.URL(self.address.url(task, endpoint, served_model))
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[key] = url
        return url

    def _build(
        self,
        client: httpx.Client | httpx.AsyncClient,
        task: Task,
        endpoint: str,
        body: dict[str, Any],
        served_model: str | None,
    ) -> httpx.Request:
        if self.address.openai_compatible:
            body["model"] = endpoint
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return client.build_request(
            "POST",
            self._url(task, endpoint, served_model),
            content=content,
            headers={"Content-Type": "application/json"},
        )

    def invoke(
        self, task: Task, endpoint: str, body: dict[str, Any], *, served_model: str | None = None
    ) -> dict[str, Any]:
        """POST `body` and return the decoded JSON answer."""
        request = self._build(self.client, task, endpoint, body, served_model)
        response = self._send(request, endpoint, how=_How(task))
        return _decode(self._read(response, endpoint), response, endpoint)

    async def ainvoke(
        self, task: Task, endpoint: str, body: dict[str, Any], *, served_model: str | None = None
    ) -> dict[str, Any]:
        """Async `invoke`."""
        client = await self.aclient()
        request = self._build(client, task, endpoint, body, served_model)
        response = await self._asend(client, request, endpoint, how=_How(task))
        return _decode(await self._aread(response, endpoint), response, endpoint)

    def stream(
        self,
        task: Task,
        endpoint: str,
        body: dict[str, Any],
        *,
        served_model: str | None = None,
        reader: StreamReader | None = None,
    ) -> Iterator[dict[str, Any]]:
        """POST `body` with `"stream": true` and yield each event's JSON object.

        Pass a `reader` to learn afterwards how the stream ended (`done`, `finished`).
        """
        body["stream"] = True
        request = self._build(self.client, task, endpoint, body, served_model)
        response = self._send(request, endpoint, how=_How(task))
        reader = reader or StreamReader(endpoint)
        try:
            try:
                for event in event_source(response, endpoint).iter_sse():
                    chunk = reader.feed(event)
                    if chunk is DONE:
                        return
                    if chunk is not None:
                        yield chunk
            except httpx.HTTPError as exc:
                raise reader.broken(exc) from None
            reader.finish()
        finally:
            response.close()

    async def astream(
        self,
        task: Task,
        endpoint: str,
        body: dict[str, Any],
        *,
        served_model: str | None = None,
        reader: StreamReader | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Async `stream`."""
        body["stream"] = True
        client = await self.aclient()
        request = self._build(client, task, endpoint, body, served_model)
        response = await self._asend(client, request, endpoint, how=_How(task))
        reader = reader or StreamReader(endpoint)
        try:
            try:
                async for event in event_source(response, endpoint).aiter_sse():
                    chunk = reader.feed(event)
                    if chunk is DONE:
                        return
                    if chunk is not None:
                        yield chunk
            except httpx.HTTPError as exc:
                raise reader.broken(exc) from None
            reader.finish()
        finally:
            await response.aclose()

    def _explained(
        self, task: Task | None, endpoint: str | None, error: ServingError
    ) -> ServingError:
        if task is None or endpoint is None or self.explainer is None or not _explainable(error):
            return error
        return self.explainer.explain(task, endpoint, error)

    async def _aexplained(
        self, task: Task | None, endpoint: str | None, error: ServingError
    ) -> ServingError:
        if task is None or endpoint is None or self.explainer is None or not _explainable(error):
            return error
        return await self.explainer.aexplain(task, endpoint, error)

    # -- the workspace API: method-generic, GET is idempotent ----------------------------

    def _api_request(
        self, client: httpx.Client | httpx.AsyncClient, call: ApiCall
    ) -> httpx.Request:
        body = call.body
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        return client.build_request(
            call.method, self.address.api_url(call.path), content=content, headers=headers
        )

    def api(self, call: ApiCall) -> dict[str, Any]:
        """Make one call to the workspace API and return its JSON object."""
        request = self._api_request(self.client, call)
        response = self._send(request, call.name, how=call.how())
        return _decode(self._read(response, call.name), response, call.name)

    async def aapi(self, call: ApiCall) -> dict[str, Any]:
        """Async `api`."""
        client = await self.aclient()
        request = self._api_request(client, call)
        response = await self._asend(client, request, call.name, how=call.how())
        return _decode(await self._aread(response, call.name), response, call.name)

    # -- the retry loops: identical but for `await`; the decisions live in `_retry_delay` ----
    # Both return a 2xx response whose body is still unread (`_read` reads it, capped).

    def _send(self, request: httpx.Request, endpoint: str | None, *, how: _How) -> httpx.Response:
        attempt, started = 0, _clock()
        while True:
            trace = Trace()
            request.extensions["trace"] = trace.sync
            try:
                response = self.client.send(request, stream=True)
            except (httpx.HTTPError, ServingError) as exc:
                error = transport_error(exc, endpoint, trace)
            else:
                if response.is_success:
                    _log(request, response, attempt)
                    return response
                limit = _BodyLimit(response, endpoint, _MAX_ERROR_BYTES, truncate=True)
                try:
                    for chunk in response.iter_bytes():
                        limit.add(chunk)
                except httpx.HTTPError:
                    pass  # the part read is enough to say what went wrong
                finally:
                    response.close()
                error = _response_error(response, limit.body(), endpoint)
            delay = self._retry_delay(attempt, error, how, started)
            if delay is None:
                raise self._explained(how.task, endpoint, redacted(error))
            time.sleep(delay)
            attempt += 1

    async def _asend(
        self, client: httpx.AsyncClient, request: httpx.Request, endpoint: str | None, *, how: _How
    ) -> httpx.Response:
        attempt, started = 0, _clock()
        while True:
            trace = Trace()
            request.extensions["trace"] = trace.asynchronous
            try:
                response = await client.send(request, stream=True)
            except (httpx.HTTPError, ServingError) as exc:
                error = transport_error(exc, endpoint, trace)
            else:
                if response.is_success:
                    _log(request, response, attempt)
                    return response
                limit = _BodyLimit(response, endpoint, _MAX_ERROR_BYTES, truncate=True)
                try:
                    async for chunk in response.aiter_bytes():
                        limit.add(chunk)
                except httpx.HTTPError:
                    pass  # the part read is enough to say what went wrong
                finally:
                    await response.aclose()
                error = _response_error(response, limit.body(), endpoint)
            delay = self._retry_delay(attempt, error, how, started)
            if delay is None:
                raise await self._aexplained(how.task, endpoint, redacted(error))
            await asyncio.sleep(delay)
            attempt += 1

    def _retry_delay(
        self, attempt: int, error: ServingError, how: _How, started: float
    ) -> float | None:
        """Seconds to wait before retrying after `error`, or None to raise it."""
        delay = (
            None
            if how.max_retries is not None and attempt >= how.max_retries
            else self.retry.delay(
                attempt, error, idempotent=how.idempotent, elapsed=_clock() - started
            )
        )
        if delay is None:
            return None
        logger.info("retrying %s in %.2fs after %s", error.endpoint, delay, _brief(error))
        return delay

    def _read(self, response: httpx.Response, endpoint: str | None) -> bytes:
        """A 2xx answer's body, refused past `max_response_bytes`.

        The model has run by now, so a failure while reading is raised, never retried.
        """
        try:
            limit = _BodyLimit(response, endpoint, self.max_response_bytes)
            for chunk in response.iter_bytes():
                limit.add(chunk)
        except httpx.HTTPError as exc:
            raise body_error(exc, endpoint) from None
        finally:
            response.close()
        return limit.body()

    async def _aread(self, response: httpx.Response, endpoint: str | None) -> bytes:
        """Async `_read`."""
        try:
            limit = _BodyLimit(response, endpoint, self.max_response_bytes)
            async for chunk in response.aiter_bytes():
                limit.add(chunk)
        except httpx.HTTPError as exc:
            raise body_error(exc, endpoint) from None
        finally:
            await response.aclose()
        return limit.body()


def _explainable(error: ServingError) -> bool:
    """A 400 or 404 that could come from the wrong task or a missing endpoint."""
    return isinstance(error, (ServingInvalidRequestError, ServingNotFoundError)) and not (
        isinstance(error, ServingContextOverflowError) or error.status_code not in (400, 404)
    )


# --------------------------------------------------------------------------------------
# Helpers: auth choice, errors, decoding, SSE
# --------------------------------------------------------------------------------------


def _auth_from(settings: ConnectionSettings, required: bool) -> httpx.Auth | None:
    credential = settings.credential
    if isinstance(credential, ClientCredentials):
        if settings.host is None:
            raise ServingConfigurationError("OAuth client credentials need a host to get a token")
        return ClientCredentialsAuth(settings.host, credential.client_id, credential.client_secret)
    if credential is not None:
        return BearerTokenAuth(credential)
    if required:
        raise ServingConfigurationError(f"no credentials found: {MISSING_CREDENTIALS_HINT}")
    return None


def _refuse_cleartext(root: str) -> None:
    # urlsplit lowercases the scheme: "HTTP://host" is cleartext too.
    parts = urlsplit(root)
    if parts.scheme != "https" and not is_loopback(root):
        raise ServingConfigurationError(
            f"refusing to send credentials over plain http to {parts.netloc!r}: use https, "
            "or pass allow_insecure_http=True if this network is trusted"
        )


def _response_error(response: httpx.Response, body: bytes, endpoint: str | None) -> ServingError:
    text = body.decode(response.encoding or "utf-8", errors="replace")
    return error_from_response(response.status_code, text, response.headers, endpoint=endpoint)


def _brief(error: ServingError) -> str:
    return f"{error.status_code or type(error).__name__} {error.error_code or ''}".strip()


def _log(request: httpx.Request, response: httpx.Response, attempt: int) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("POST %s -> %s (attempt %d)", request.url, response.status_code, attempt + 1)


class _BodyLimit:
    """Collect a body's chunks, refusing (or with `truncate`, cutting) past `limit` bytes."""

    __slots__ = ("chunks", "endpoint", "limit", "response", "size", "truncate")

    def __init__(
        self, response: httpx.Response, endpoint: str | None, limit: int, *, truncate: bool = False
    ) -> None:
        self.response = response
        self.endpoint = endpoint
        self.limit = limit
        self.truncate = truncate
        self.chunks: list[bytes] = []
        self.size = 0
        declared = response.headers.get("content-length", "")
        if not truncate and declared.isdigit() and int(declared) > limit:
            raise self._too_large(f"declares {int(declared)} bytes")

    def add(self, chunk: bytes) -> None:
        room = self.limit - self.size
        if len(chunk) > room:
            if not self.truncate:
                raise self._too_large(f"runs past {self.limit} bytes")
            chunk = chunk[: max(room, 0)]
        self.size += len(chunk)
        self.chunks.append(chunk)

    def body(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)

    def _too_large(self, what: str) -> ServingResponseError:
        return ServingResponseError(
            f"the answer body {what}, more than max_response_bytes={self.limit}: "
            "raise max_response_bytes, or ask for less (e.g. a smaller batch_size)",
            status_code=self.response.status_code,
            endpoint=self.endpoint,
        )


def _decode(body: bytes, response: httpx.Response, endpoint: str | None) -> dict[str, Any]:
    """The JSON object of a 2xx answer; an error body sent with a 2xx status is raised."""
    try:
        data = loads(body)
    except MalformedAnswer as exc:
        text = body[:200].decode(errors="replace")
        raise ServingResponseError(
            f"expected a JSON object, got {response.headers.get('content-type', 'no type')}: "
            f"{exc}: {text!r}",
            status_code=response.status_code,
            endpoint=endpoint,
        ) from None
    if not isinstance(data, dict):
        raise ServingResponseError(
            f"expected a JSON object, got {type(data).__name__}",
            status_code=response.status_code,
            endpoint=endpoint,
        )
    if is_error(data) and "choices" not in data and "data" not in data:
        error = error_from_response(500, body.decode(errors="replace"), {}, endpoint=endpoint)
        raise ServingResponseError(
            f"the endpoint answered {response.status_code} with an error instead of a result: "
            f"{error.message}",
            status_code=response.status_code,
            error_code=error.error_code,
            endpoint=endpoint,
            request_id=request_id_from(response.headers),
        )
    return data

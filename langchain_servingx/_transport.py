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
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx
from httpx_sse import EventSource, ServerSentEvent

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
from langchain_servingx._errors import (
    ServingConfigurationError,
    ServingConnectionError,
    ServingContextOverflowError,
    ServingError,
    ServingInvalidRequestError,
    ServingNotFoundError,
    ServingReadTimeoutError,
    ServingResponseError,
    ServingStreamError,
    ServingTimeoutError,
    error_from_response,
)
from langchain_servingx._version import __version__
from langchain_servingx.protocols.streams import CHAT, StreamRule

__all__ = [
    "ApiCall",
    "EndpointAddress",
    "ErrorExplainer",
    "InvocationTransport",
    "RetryPolicy",
    "check_endpoint_name",
]

logger = logging.getLogger("langchain_servingx")

Task = contract.Task
_USER_AGENT = f"langchain-servingx/{__version__}"
_URL_CACHE_SIZE = 256


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
    - `openai_compatible`: `{host}/serving-endpoints/chat/completions` (`/responses`, ...) with
      `"model"` in the body
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
            return cls(normalize_url(base_url), openai_compatible=True)
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
# Retries
# --------------------------------------------------------------------------------------

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, honouring the server's `Retry-After`.

    A read timeout after the request went out is retried only with `retry_read_timeouts`,
    because the server may still be running (and billing) the first generation. A
    `Retry-After` longer than `max_retry_after` is not slept through: the error is raised
    with its `retry_after` so the caller can decide.
    """

    max_retries: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    retry_read_timeouts: bool = False

    def delay(self, attempt: int, error: ServingError, *, idempotent: bool = False) -> float | None:
        """Seconds to wait before retry number `attempt + 1`, or None to give up.

        `idempotent` requests (GET) are retried after a read timeout too: nothing re-runs.
        """
        if attempt >= self.max_retries or not self._retryable(error, idempotent):
            return None
        backoff = random.uniform(0, min(self.max_delay, self.initial_delay * 2**attempt))  # noqa: S311
        retry_after: float | None = getattr(error, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            return max(retry_after, backoff)
        return backoff

    def _retryable(self, error: ServingError, idempotent: bool) -> bool:
        if isinstance(error, ServingReadTimeoutError):
            return idempotent or self.retry_read_timeouts
        if isinstance(error, ServingConnectionError):
            return True
        if isinstance(error, ServingTimeoutError) and error.status_code is None:
            return True  # connect, write or pool timeout: no complete request reached the server
        return error.status_code in _RETRY_STATUSES


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
    ) -> None:
        self.address = address
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
        response = self._send(request, endpoint, stream=False, how=_How(task))
        return _decode(response, endpoint)

    async def ainvoke(
        self, task: Task, endpoint: str, body: dict[str, Any], *, served_model: str | None = None
    ) -> dict[str, Any]:
        """Async `invoke`."""
        client = await self.aclient()
        request = self._build(client, task, endpoint, body, served_model)
        response = await self._asend(client, request, endpoint, stream=False, how=_How(task))
        return _decode(response, endpoint)

    def stream(
        self,
        task: Task,
        endpoint: str,
        body: dict[str, Any],
        *,
        served_model: str | None = None,
        rule: StreamRule = CHAT,
    ) -> Iterator[dict[str, Any]]:
        """POST `body` with `"stream": true` and yield each event's JSON object.

        `rule` is the protocol's: which events are errors and what marks a complete answer.
        """
        body["stream"] = True
        request = self._build(self.client, task, endpoint, body, served_model)
        response = self._send(request, endpoint, stream=True, how=_How(task))
        try:
            reader = _StreamReader(endpoint, rule)
            try:
                for event in _event_source(response, endpoint).iter_sse():
                    chunk = reader.feed(event)
                    if chunk is _DONE:
                        return
                    if chunk is not None:
                        yield chunk
            except httpx.HTTPError as exc:
                raise reader.broken(exc) from exc
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
        rule: StreamRule = CHAT,
    ) -> AsyncIterator[dict[str, Any]]:
        """Async `stream`."""
        body["stream"] = True
        client = await self.aclient()
        request = self._build(client, task, endpoint, body, served_model)
        response = await self._asend(client, request, endpoint, stream=True, how=_How(task))
        try:
            reader = _StreamReader(endpoint, rule)
            try:
                async for event in _event_source(response, endpoint).aiter_sse():
                    chunk = reader.feed(event)
                    if chunk is _DONE:
                        return
                    if chunk is not None:
                        yield chunk
            except httpx.HTTPError as exc:
                raise reader.broken(exc) from exc
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
        return _decode(self._send(request, call.name, stream=False, how=call.how()), call.name)

    async def aapi(self, call: ApiCall) -> dict[str, Any]:
        """Async `api`."""
        client = await self.aclient()
        request = self._api_request(client, call)
        response = await self._asend(client, request, call.name, stream=False, how=call.how())
        return _decode(response, call.name)

    # -- the retry loops: identical but for `await`; the decisions live in `_retry_delay` ----

    def _send(
        self, request: httpx.Request, endpoint: str | None, *, stream: bool, how: _How
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self.client.send(request, stream=stream)
            except (httpx.HTTPError, ServingError) as exc:
                error = _transport_error(exc, endpoint)
            else:
                if response.is_success:
                    _log(request, response, attempt)
                    return response
                response.read()
                response.close()
                error = _response_error(response, endpoint)
            delay = self._retry_delay(attempt, error, how)
            if delay is None:
                raise self._explained(how.task, endpoint, error)
            time.sleep(delay)
            attempt += 1

    async def _asend(
        self,
        client: httpx.AsyncClient,
        request: httpx.Request,
        endpoint: str | None,
        *,
        stream: bool,
        how: _How,
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await client.send(request, stream=stream)
            except (httpx.HTTPError, ServingError) as exc:
                error = _transport_error(exc, endpoint)
            else:
                if response.is_success:
                    _log(request, response, attempt)
                    return response
                await response.aread()
                await response.aclose()
                error = _response_error(response, endpoint)
            delay = self._retry_delay(attempt, error, how)
            if delay is None:
                raise await self._aexplained(how.task, endpoint, error)
            await asyncio.sleep(delay)
            attempt += 1

    def _retry_delay(self, attempt: int, error: ServingError, how: _How) -> float | None:
        """Seconds to wait before retrying after `error`, or None to raise it."""
        delay = (
            None
            if how.max_retries is not None and attempt >= how.max_retries
            else self.retry.delay(attempt, error, idempotent=how.idempotent)
        )
        if delay is None:
            return None
        logger.info("retrying %s in %.2fs after %s", error.endpoint, delay, _brief(error))
        return delay


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


def _transport_error(exc: Exception, endpoint: str | None) -> ServingError:
    if isinstance(exc, ServingError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, httpx.ReadTimeout):
        error: ServingError = ServingReadTimeoutError(
            f"no response within the read timeout ({name}); not retried by default because "
            "the generation may still be running: raise timeout= or set retry_read_timeouts=True",
            endpoint=endpoint,
        )
    elif isinstance(exc, httpx.ConnectTimeout):
        error = ServingConnectionError(f"timed out connecting ({name})", endpoint=endpoint)
    elif isinstance(exc, httpx.WriteTimeout):
        error = ServingTimeoutError(f"timed out sending the request ({name})", endpoint=endpoint)
    elif isinstance(exc, httpx.PoolTimeout):
        error = ServingTimeoutError(
            f"no free connection in the pool in time ({name}): too many requests in flight",
            endpoint=endpoint,
        )
    elif isinstance(exc, httpx.TransportError):
        error = ServingConnectionError(
            f"cannot reach the endpoint ({name}: {exc})", endpoint=endpoint
        )
    else:
        error = ServingError(f"HTTP failure ({name}: {exc})", endpoint=endpoint)
    error.__cause__ = exc
    return error


def _response_error(response: httpx.Response, endpoint: str | None) -> ServingError:
    return error_from_response(
        response.status_code, response.text, response.headers, endpoint=endpoint
    )


def _brief(error: ServingError) -> str:
    return f"{error.status_code or type(error).__name__} {error.error_code or ''}".strip()


def _log(request: httpx.Request, response: httpx.Response, attempt: int) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("POST %s -> %s (attempt %d)", request.url, response.status_code, attempt + 1)


def _decode(response: httpx.Response, endpoint: str | None) -> dict[str, Any]:
    try:
        data = json.loads(response.content)
    except ValueError:
        raise ServingResponseError(
            f"expected a JSON object, got {response.headers.get('content-type', 'no type')}: "
            f"{response.text[:200]!r}",
            status_code=response.status_code,
            endpoint=endpoint,
        ) from None
    if not isinstance(data, dict):
        raise ServingResponseError(
            f"expected a JSON object, got {type(data).__name__}",
            status_code=response.status_code,
            endpoint=endpoint,
        )
    return data


def _event_source(response: httpx.Response, endpoint: str) -> EventSource:
    content_type = response.headers.get("content-type", "")
    if "text/event-stream" not in content_type:
        # The caller closes the response (a sync close would fail on an async one).
        raise ServingStreamError(
            f"asked for a stream but got {content_type or 'no content type'} "
            "(expected text/event-stream); does this endpoint support streaming?",
            status_code=response.status_code,
            endpoint=endpoint,
        )
    return EventSource(response)


_DONE: dict[str, Any] = {}


class _StreamReader:
    """Turn SSE events into JSON chunks, and notice a stream that was cut short."""

    __slots__ = ("endpoint", "finished", "rule")

    def __init__(self, endpoint: str, rule: StreamRule) -> None:
        self.endpoint = endpoint
        self.rule = rule
        self.finished = False

    def feed(self, event: ServerSentEvent) -> dict[str, Any] | None:
        data = event.data
        if not data:
            return None
        if data.strip() == "[DONE]":
            return _DONE
        try:
            chunk = json.loads(data)
        except ValueError:
            raise ServingStreamError(
                f"stream event is not JSON: {data[:200]!r}", endpoint=self.endpoint
            ) from None
        if not isinstance(chunk, dict):
            raise ServingStreamError(
                f"stream event is not a JSON object: {data[:200]!r}", endpoint=self.endpoint
            )
        failure = chunk if event.event == "error" else self.rule.error(chunk)
        if failure is not None:
            error = error_from_response(500, json.dumps(failure), {}, endpoint=self.endpoint)
            raise ServingStreamError(
                f"the server reported an error mid-stream: {error.message}",
                error_code=error.error_code,
                endpoint=self.endpoint,
            )
        if self.rule.completes(chunk):
            self.finished = True
        return chunk

    def finish(self) -> None:
        if not self.finished:
            raise ServingStreamError(
                f"{self.rule.name} stream ended without {self.rule.missing_end}: "
                "the answer may be cut short",
                endpoint=self.endpoint,
            )

    def broken(self, exc: Exception) -> ServingError:
        if isinstance(exc, httpx.TimeoutException):
            return ServingTimeoutError(
                f"stream stalled past the read timeout ({type(exc).__name__})",
                endpoint=self.endpoint,
            )
        return ServingStreamError(
            f"stream broke off ({type(exc).__name__}: {exc})", endpoint=self.endpoint
        )

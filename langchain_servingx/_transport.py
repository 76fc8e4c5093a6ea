"""The invocation transport: the one place that speaks HTTP for every public class.

It knows addresses (`EndpointAddress`), owns one pooled sync and one async `httpx` client
per model instance (created on first use, left out of pickles), retries what is safe to
retry, parses server-sent events and turns every failure into a typed `ServingError`.
It knows nothing of LangChain: callers hand it a JSON body and get JSON objects back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx
from httpx_sse import EventSource, ServerSentEvent

from langchain_servingx._auth import BearerTokenAuth, ClientCredentialsAuth
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
    ServingError,
    ServingResponseError,
    ServingStreamError,
    ServingTimeoutError,
    error_from_response,
)
from langchain_servingx._version import __version__

__all__ = ["EndpointAddress", "InvocationTransport", "RetryPolicy", "Task", "check_endpoint_name"]

logger = logging.getLogger("langchain_servingx")

Task = Literal["chat", "completions", "embeddings"]
_OPENAI_PATHS: dict[str, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}
_USER_AGENT = f"langchain-servingx/{__version__}"
_URL_CACHE_SIZE = 256
_FORBIDDEN_IN_NAMES = ("/", "\\", "?", "#", "%")


# --------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------


def check_endpoint_name(name: str, what: str = "endpoint") -> str:
    """Refuse names that could change the URL path instead of naming one endpoint."""
    if not isinstance(name, str) or not name:
        raise ServingConfigurationError(f"{what} name must be a non-empty string, got {name!r}")
    bad = [c for c in _FORBIDDEN_IN_NAMES if c in name]
    if bad or name in (".", "..") or any(c.isspace() or ord(c) < 32 for c in name):
        raise ServingConfigurationError(
            f"{what} name {name!r} is not a valid path segment "
            "(no '/', '\\', '?', '#', '%', whitespace, '.' or '..')"
        )
    return name


@dataclass(frozen=True)
class EndpointAddress:
    """How one endpoint is addressed: the route and whether the body names the model.

    - native: `{host}/serving-endpoints/{endpoint}/invocations`
    - `served_model`: `{host}/serving-endpoints/{endpoint}/served-models/{served}/invocations`
    - `openai_compatible`: `{host}/serving-endpoints/chat/completions` with `"model"` in the body
    - `base_url`: any OpenAI-compatible server, `{base_url}/chat/completions`, `"model"` in body
    """

    root: str
    served_model: str | None = None
    openai_compatible: bool = False

    @classmethod
    def build(
        cls,
        *,
        host: str | None,
        base_url: str | None,
        served_model: str | None,
        openai_compatible: bool,
    ) -> EndpointAddress:
        """Validate one addressing choice and return the address."""
        if base_url is not None:
            if served_model is not None:
                raise ServingConfigurationError("served_model cannot be combined with base_url")
            return cls(normalize_url(base_url), openai_compatible=True)
        if host is None:
            raise ServingConfigurationError(
                "no host configured: set DATABRICKS_HOST, pass host=, name a ~/.databrickscfg "
                "profile, or pass base_url= for another OpenAI-compatible server"
            )
        if served_model is not None:
            if openai_compatible:
                raise ServingConfigurationError(
                    "served_model addresses the native invocations route; "
                    "it cannot be combined with openai_compatible=True"
                )
            check_endpoint_name(served_model, "served model")
        return cls(host + "/serving-endpoints", served_model, openai_compatible)

    def url(self, task: Task, endpoint: str) -> str:
        """The URL to POST to for `task` on `endpoint`."""
        if self.openai_compatible:
            return self.root + _OPENAI_PATHS[task]
        # Checked here too, not only by the callers: this is the one place a name becomes
        # a path segment, and httpx resolves a bare ".." segment instead of sending it.
        url = f"{self.root}/{quote(check_endpoint_name(endpoint), safe='')}"
        if self.served_model is not None:
            url += f"/served-models/{quote(self.served_model, safe='')}"
        return url + "/invocations"


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
    retry_rate_limits: bool = True
    """Off: a 429 is raised at once, for callers that pace themselves (`batch`)."""

    def delay(self, attempt: int, error: ServingError) -> float | None:
        """Seconds to wait before retry number `attempt + 1`, or None to give up."""
        if attempt >= self.max_retries or not self._retryable(error):
            return None
        backoff = random.uniform(0, min(self.max_delay, self.initial_delay * 2**attempt))  # noqa: S311
        retry_after: float | None = getattr(error, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            return max(retry_after, backoff)
        return backoff

    def _retryable(self, error: ServingError) -> bool:
        if isinstance(error, _ReadTimeoutError):
            return self.retry_read_timeouts
        if isinstance(error, ServingConnectionError):
            return True
        if error.status_code == 429:
            return self.retry_rate_limits
        return error.status_code in _RETRY_STATUSES


class _ReadTimeoutError(ServingTimeoutError):
    """Internal marker: the request was sent and no answer came in time."""


# --------------------------------------------------------------------------------------
# The transport
# --------------------------------------------------------------------------------------


class InvocationTransport:
    """POST JSON to serving endpoints, plain or streamed, with retries and typed errors.

    One instance per model object. Clients are created lazily: the sync one once, the async
    one once per event loop (an `httpx.AsyncClient` must not outlive the loop it ran on).
    Pickling keeps the configuration and drops the clients.
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
    ) -> None:
        self.address = address
        self.retry = retry
        self.timeout = httpx.Timeout(timeout, connect=min(timeout or 10.0, 10.0))
        self._auth = auth if auth is not None else _auth_from(settings, require_credentials)
        if self._auth is not None and not allow_insecure_http:
            _refuse_cleartext(address.root)
            if isinstance(self._auth, ClientCredentialsAuth):
                # The client secret goes to the host, which base_url may not be.
                _refuse_cleartext(self._auth.token_url)
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self._urls: dict[tuple[str, str], httpx.URL] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_lock=None, _client=None, _aclients={}, _urls={})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

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
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(**self._client_kwargs())
                client = self._client
        return client

    @property
    def aclient(self) -> httpx.AsyncClient:
        """The pooled async client of the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            with self._lock:
                for old in [lp for lp in self._aclients if lp.is_closed()]:
                    del self._aclients[old]
                client = self._aclients.setdefault(loop, httpx.AsyncClient(**self._client_kwargs()))
        return client

    def close(self) -> None:
        """Close the sync client (async clients close with their loops)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- requests ----------------------------------------------------------------------

    def _url(self, task: Task, endpoint: str) -> httpx.URL:
        """The parsed URL for `task` on `endpoint`, cached: most calls repeat one endpoint."""
        key = (task, endpoint)
        url = self._urls.get(key)
        if url is None:
            url = httpx.URL(self.address.url(task, endpoint))
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[key] = url
        return url

    def _build(
        self,
        client: httpx.Client | httpx.AsyncClient,
        task: Task,
        endpoint: str,
        body: dict[str, Any],
    ) -> httpx.Request:
        if self.address.openai_compatible:
            body["model"] = endpoint
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return client.build_request(
            "POST",
            self._url(task, endpoint),
            content=content,
            headers={"Content-Type": "application/json"},
        )

    def invoke(self, task: Task, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` and return the decoded JSON answer."""
        request = self._build(self.client, task, endpoint, body)
        response = self._send(request, endpoint, stream=False)
        return _decode(response, endpoint)

    async def ainvoke(
        self,
        task: Task,
        endpoint: str,
        body: dict[str, Any],
        *,
        retry: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        """Async `invoke`; `retry` replaces the transport's policy for this call."""
        client = self.aclient
        request = self._build(client, task, endpoint, body)
        response = await self._asend(client, request, endpoint, stream=False, retry=retry)
        return _decode(response, endpoint)

    def stream(self, task: Task, endpoint: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST `body` with `"stream": true` and yield each event's JSON object."""
        body["stream"] = True
        request = self._build(self.client, task, endpoint, body)
        response = self._send(request, endpoint, stream=True)
        try:
            reader = _StreamReader(endpoint)
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
        self, task: Task, endpoint: str, body: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """Async `stream`."""
        body["stream"] = True
        client = self.aclient
        request = self._build(client, task, endpoint, body)
        response = await self._asend(client, request, endpoint, stream=True)
        try:
            reader = _StreamReader(endpoint)
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

    # -- the retry loops: identical but for `await`; the decisions live in `_retry_delay` ----

    def _send(self, request: httpx.Request, endpoint: str, *, stream: bool) -> httpx.Response:
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
            time.sleep(self._retry_delay(attempt, error))
            attempt += 1

    async def _asend(
        self,
        client: httpx.AsyncClient,
        request: httpx.Request,
        endpoint: str,
        *,
        stream: bool,
        retry: RetryPolicy | None = None,
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
            await asyncio.sleep(self._retry_delay(attempt, error, retry))
            attempt += 1

    def _retry_delay(
        self, attempt: int, error: ServingError, retry: RetryPolicy | None = None
    ) -> float:
        """Seconds to wait before retrying after `error`; raises it when not retrying."""
        delay = (retry or self.retry).delay(attempt, error)
        if delay is None:
            raise error
        logger.info("retrying %s in %.2fs after %s", error.endpoint, delay, _brief(error))
        return delay


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


def _transport_error(exc: Exception, endpoint: str) -> ServingError:
    if isinstance(exc, ServingError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, httpx.ReadTimeout):
        error: ServingError = _ReadTimeoutError(
            f"no response within the read timeout ({name}); not retried by default because "
            "the generation may still be running: raise timeout= or set retry_read_timeouts=True",
            endpoint=endpoint,
        )
    elif isinstance(exc, httpx.TimeoutException):
        error = ServingConnectionError(f"timed out connecting ({name})", endpoint=endpoint)
    elif isinstance(exc, httpx.TransportError):
        error = ServingConnectionError(
            f"cannot reach the endpoint ({name}: {exc})", endpoint=endpoint
        )
    else:
        error = ServingError(f"HTTP failure ({name}: {exc})", endpoint=endpoint)
    error.__cause__ = exc
    return error


def _response_error(response: httpx.Response, endpoint: str) -> ServingError:
    return error_from_response(
        response.status_code, response.text, response.headers, endpoint=endpoint
    )


def _brief(error: ServingError) -> str:
    return f"{error.status_code or type(error).__name__} {error.error_code or ''}".strip()


def _log(request: httpx.Request, response: httpx.Response, attempt: int) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("POST %s -> %s (attempt %d)", request.url, response.status_code, attempt + 1)


def _decode(response: httpx.Response, endpoint: str) -> dict[str, Any]:
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

    __slots__ = ("endpoint", "finished")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
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
        if event.event == "error" or ("choices" not in chunk and _is_error(chunk)):
            error = error_from_response(500, data, {}, endpoint=self.endpoint)
            raise ServingStreamError(
                f"the server reported an error mid-stream: {error.message}",
                error_code=error.error_code,
                endpoint=self.endpoint,
            )
        choices = chunk.get("choices")
        if choices and any(isinstance(c, Mapping) and c.get("finish_reason") for c in choices):
            self.finished = True
        return chunk

    def finish(self) -> None:
        if not self.finished:
            raise ServingStreamError(
                "stream ended without [DONE] or a finish_reason: the answer may be cut short",
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


def _is_error(chunk: Mapping[str, Any]) -> bool:
    return "error" in chunk or "error_code" in chunk or "external_model_error" in chunk

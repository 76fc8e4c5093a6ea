"""Credentials as `httpx.Auth` flows.

A personal access token is a fixed `Authorization: Bearer` header. OAuth machine-to-machine
fetches a token with the client-credentials grant, caches it, and refreshes it shortly before
it expires; however many sync threads and async tasks need a token at once, exactly one
token request is in flight and the others wait for its answer. Any other scheme can be
passed to the models as an `httpx.Auth` of the user's own.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import threading
import time
from collections.abc import AsyncGenerator, Generator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from langchain_servingx._errors import (
    ServingAuthenticationError,
    ServingConnectionError,
    ServingTimeoutError,
    error_from_response,
)

__all__ = ["BearerTokenAuth", "ClientCredentialsAuth"]

TOKEN_PATH = "/oidc/v1/token"  # noqa: S105 - a URL path, not a secret
DEFAULT_SCOPE = "all-apis"
EXPIRY_LEEWAY_SECONDS = 40.0


class BearerTokenAuth(httpx.Auth):
    """Send a fixed token as `Authorization: Bearer`."""

    def __init__(self, token: SecretStr) -> None:
        self._header = f"Bearer {token.get_secret_value()}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "BearerTokenAuth(token=SecretStr('**********'))"


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float  # time.monotonic() deadline, leeway already taken off

    def fresh(self) -> bool:
        return time.monotonic() < self.expires_at


class ClientCredentialsAuth(httpx.Auth):
    """OAuth client-credentials grant against `{host}/oidc/v1/token`, cached and shared.

    The token request is yielded from the flow itself, so it travels through the same client
    (pool, timeouts, transport) as the request it authorises. A 401 on a cached token
    triggers one refresh and one resend: tokens can be revoked before they expire.
    """

    def __init__(
        self,
        host: str,
        client_id: str,
        client_secret: SecretStr,
        *,
        scope: str = DEFAULT_SCOPE,
        leeway: float = EXPIRY_LEEWAY_SECONDS,
    ) -> None:
        self.token_url = host.rstrip("/") + TOKEN_PATH
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self.leeway = leeway
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self._pending: Future[_Token] | None = None

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(token_url={self.token_url!r}, client_id={self.client_id!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_lock=None, _token=None, _pending=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- the flows ---------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        stale: _Token | None = None
        for _ in range(2):
            token, fetch, wait = self._claim(stale)
            if fetch is not None:
                try:
                    response = yield self._token_request(request)
                    response.read()
                    token = self._settle(fetch, response)
                except BaseException as exc:
                    self._fail(fetch, exc)
                    raise
            elif wait is not None:
                try:
                    token = wait.result(_wait_bound(request))
                except concurrent.futures.TimeoutError:
                    raise self._waited_too_long(request) from None
            assert token is not None  # noqa: S101 - _claim returns exactly one of the three
            request.headers["Authorization"] = f"Bearer {token.value}"
            response = yield request
            if response.status_code != 401 or stale is not None:
                return
            stale = token

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        stale: _Token | None = None
        for _ in range(2):
            token, fetch, wait = self._claim(stale)
            if fetch is not None:
                try:
                    response = yield self._token_request(request)
                    await response.aread()
                    token = self._settle(fetch, response)
                except BaseException as exc:
                    self._fail(fetch, exc)
                    raise
            elif wait is not None:
                try:
                    # shield: a waiter giving up must not cancel the fetch others wait for
                    token = await asyncio.wait_for(
                        asyncio.shield(asyncio.wrap_future(wait)), _wait_bound(request)
                    )
                except asyncio.TimeoutError:
                    raise self._waited_too_long(request) from None
            assert token is not None  # noqa: S101 - _claim returns exactly one of the three
            request.headers["Authorization"] = f"Bearer {token.value}"
            response = yield request
            if response.status_code != 401 or stale is not None:
                return
            stale = token

    # -- the shared token cache --------------------------------------------------------

    def _claim(
        self, stale: _Token | None
    ) -> tuple[_Token | None, Future[_Token] | None, Future[_Token] | None]:
        """Return exactly one of: a fresh token, a fetch to perform, a fetch to wait for.

        `stale` is a token the server just refused; it is dropped unless someone already
        replaced it.
        """
        with self._lock:
            if stale is not None and self._token is stale:
                self._token = None
            if self._token is not None and self._token.fresh():
                return self._token, None, None
            if self._pending is not None:
                return None, None, self._pending
            self._pending = Future()
            return None, self._pending, None

    def _token_request(self, request: httpx.Request) -> httpx.Request:
        # A request built outside the client carries no timeout (httpx would wait forever,
        # and every caller with it): borrow the one of the request being authorised.
        timeout = request.extensions.get("timeout")
        return httpx.Request(
            "POST",
            self.token_url,
            data={"grant_type": "client_credentials", "scope": self.scope},
            headers={
                "Authorization": self._basic_header(),
                "Accept": "application/json",
            },
            extensions={"timeout": timeout} if timeout is not None else None,
        )

    def _basic_header(self) -> str:
        pair = f"{self.client_id}:{self._client_secret.get_secret_value()}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def _settle(self, fetch: Future[_Token], response: httpx.Response) -> _Token:
        if not response.is_success:
            error = error_from_response(
                response.status_code, response.text, response.headers, endpoint=None
            )
            raise ServingAuthenticationError(
                f"OAuth token request to {self.token_url} for client {self.client_id!r} "
                f"failed with {response.status_code}: {error.message}",
                status_code=response.status_code,
                error_code=error.error_code,
                request_id=error.request_id,
            )
        try:
            payload = response.json()
            value = payload["access_token"]
            lifetime = float(payload.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise ServingAuthenticationError(
                f"OAuth token response from {self.token_url} has no access_token "
                "(expected JSON with access_token and expires_in)"
            ) from None
        # A token living no longer than the leeway is still cached, for half its life.
        leeway = min(self.leeway, lifetime / 2)
        token = _Token(value, time.monotonic() + max(lifetime - leeway, 0.0))
        with self._lock:
            self._token = token
            self._pending = None
        fetch.set_result(token)
        return token

    def _waited_too_long(self, request: httpx.Request) -> ServingTimeoutError:
        return ServingTimeoutError(
            f"waited {_wait_bound(request)}s for the OAuth token request to {self.token_url} "
            "that another thread or task has in flight"
        )

    def _fail(self, fetch: Future[_Token], exc: BaseException) -> None:
        with self._lock:
            if self._pending is fetch:
                self._pending = None
        if not fetch.done():
            fetch.set_exception(
                exc
                if isinstance(exc, Exception)
                else ServingConnectionError(
                    f"OAuth token request to {self.token_url} did not complete"
                )
            )


def _wait_bound(request: httpx.Request) -> float | None:
    """How long a waiter waits for another's token request: as long as that one may take.

    The sum of the request's connect, write, read and pool timeouts; None (no bound) only
    when the client itself waits forever.
    """
    timeout = request.extensions.get("timeout")
    if not isinstance(timeout, dict):
        return None
    total = 0.0
    for key in ("connect", "write", "read", "pool"):
        part = timeout.get(key)
        if part is None:
            return None
        total += float(part)
    return total

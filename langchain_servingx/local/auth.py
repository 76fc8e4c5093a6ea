"""Who may call the local endpoint: the bearer token, or the playground's cookie.

API clients send ``Authorization: Bearer <token>`` (or Basic ``token:<token>``). The
browser page follows Jupyter's convention instead: the startup banner prints
``http://127.0.0.1:PORT/?token=...``; visiting it sets an HttpOnly, SameSite=Strict cookie
(see :func:`session_cookie`) and redirects to ``/``, which drops the token from the
address bar. The cookie holds a keyed hash of the token, never the token itself, so it
cannot be replayed as a bearer token, and it is named after the port because browsers
share cookies between ports of one host.

A browser attaches cookies to requests that other pages make too, so a request
authenticated by the cookie that can change anything (any method but GET, HEAD and
OPTIONS) must carry an ``Origin`` equal to the page's own; otherwise another web page
open in the same browser could drive the endpoint. Bearer requests need no such check:
a browser never adds that header on another site's behalf.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection

from langchain_servingx.local.errors import EndpointError

__all__ = ["Authorizer", "cookie_name", "cookie_value", "session_cookie"]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cookie_name(port: int | None) -> str:
    """The cookie's name for a server on ``port`` (browsers share cookies across ports)."""
    return f"servingx-session-{port or 0}"


def cookie_value(token: str) -> str:
    """What the cookie holds: a keyed hash of the token, useless as a bearer token."""
    return hmac.new(token.encode(), b"servingx-playground-session", hashlib.sha256).hexdigest()


def session_cookie(port: int | None, token: str) -> str:
    """A ``Set-Cookie`` value for the playground session (HttpOnly, SameSite=Strict)."""
    return f"{cookie_name(port)}={cookie_value(token)}; Path=/; HttpOnly; SameSite=Strict"


def _bearer(header: str) -> str:
    """The credential of an ``Authorization`` header ("" when it has none we accept)."""
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(credential).decode().partition(":")[2].strip()
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return credential.strip() if scheme.lower() == "bearer" else ""


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


def _own_origin(connection: HTTPConnection) -> str:
    """The origin the page was served from: this server as the browser addressed it."""
    return f"{connection.url.scheme}://{connection.headers.get('host', '')}"


class Authorizer:
    """Checks a request against ``token`` (``None``: authentication is off)."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is the server's token."""
        return self.token is not None and _same(given, self.token)

    def check(self, connection: HTTPConnection, method: str) -> None:
        """Raise a 401 (or a 403 for a cross-origin cookie request) unless allowed."""
        if self.token is None:
            return
        header = connection.headers.get("authorization")
        if header is not None:
            credential = _bearer(header)
            if not credential:
                raise EndpointError(
                    401, "UNAUTHENTICATED", "Missing credentials: send a bearer token."
                )
            if not _same(credential, self.token):
                raise EndpointError(401, "UNAUTHENTICATED", "Invalid access token.")
            return
        cookie = connection.cookies.get(cookie_name(connection.url.port))
        if cookie is None:
            raise EndpointError(401, "UNAUTHENTICATED", "Missing credentials: send a bearer token.")
        if not _same(cookie, cookie_value(self.token)):
            raise EndpointError(
                401, "UNAUTHENTICATED", "Invalid session cookie: open the address with ?token=."
            )
        if method.upper() not in _SAFE_METHODS:
            origin = connection.headers.get("origin")
            if origin is None or origin != _own_origin(connection):
                raise EndpointError(
                    403,
                    "PERMISSION_DENIED",
                    f"Cross-origin request refused: a {method.upper()} authenticated by the "
                    f"session cookie must come from {_own_origin(connection)} (Origin: "
                    f"{origin or 'missing'}); send a bearer token instead.",
                )

    def dependency(self) -> Callable[[HTTPConnection], Awaitable[None]]:
        """The check as a FastAPI dependency."""

        async def authorize(connection: HTTPConnection) -> None:
            self.check(connection, connection.scope.get("method", "GET"))

        return authorize

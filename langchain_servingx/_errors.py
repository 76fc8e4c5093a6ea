"""Typed errors, and the one place that turns a failed HTTP exchange into one.

Every error is a `ServingError`; most also inherit the matching `langchain_core.exceptions`
class, so code written against LangChain's provider-neutral errors (fallbacks, retries,
agents) handles ours without knowing this package.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelTimeoutError,
)

__all__ = [
    "ServingAuthenticationError",
    "ServingConfigurationError",
    "ServingConnectionError",
    "ServingContextOverflowError",
    "ServingDeadlineExceededError",
    "ServingError",
    "ServingInvalidRequestError",
    "ServingNotFoundError",
    "ServingPermissionDeniedError",
    "ServingRateLimitError",
    "ServingReadTimeoutError",
    "ServingResponseError",
    "ServingServerError",
    "ServingStreamError",
    "ServingTimeoutError",
]

_REQUEST_ID_HEADERS = ("x-request-id", "x-databricks-request-id", "request-id")


class ServingError(Exception):
    """An endpoint call failed; says which endpoint, how, and with which request id.

    `retry_after` is the server's `Retry-After` hint in seconds (429 and 503 carry one).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
        endpoint: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.error_code = error_code
        self.endpoint = endpoint
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(message)

    def __str__(self) -> str:
        where = f"endpoint {self.endpoint!r}" if self.endpoint else "serving endpoint"
        parts = [str(self.status_code)] if self.status_code is not None else []
        if self.error_code:
            parts.append(self.error_code)
        head = f"{where} ({' '.join(parts)})" if parts else where
        tail = f" [request id {self.request_id}]" if self.request_id else ""
        return f"{head}: {self.message}{tail}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes survive pickling (multiprocessing, Ray, Spark workers).
        return (_rebuild_error, (type(self), self.message, self._attributes()))

    def _attributes(self) -> dict[str, Any]:
        return {
            "status_code": self.status_code,
            "error_code": self.error_code,
            "endpoint": self.endpoint,
            "request_id": self.request_id,
            "retry_after": self.retry_after,
        }


def _rebuild_error(cls: type[ServingError], message: str, attrs: dict[str, Any]) -> ServingError:
    return cls(message, **attrs)


class ServingConfigurationError(ServingError, ValueError):
    """Host or credentials are missing, conflicting or unsafe."""


class ServingAuthenticationError(ServingError, ModelAuthenticationError):
    """401: the credentials were refused (or a token could not be obtained)."""


class ServingPermissionDeniedError(ServingError, ModelPermissionDeniedError):
    """403: the identity may not query this endpoint."""


class ServingNotFoundError(ServingError, ModelNotFoundError):
    """404: no such endpoint (or served model)."""


class ServingInvalidRequestError(ServingError, ModelInvalidRequestError):
    """400/422: the endpoint refused the request body."""


class ServingContextOverflowError(ServingInvalidRequestError, ContextOverflowError):
    """The prompt does not fit the model's context window."""


class ServingRateLimitError(ServingError, ModelRateLimitError):
    """429: rate or token limit exceeded; `retry_after` holds the server's hint in seconds."""


class ServingServerError(ServingError, ModelAPIError):
    """5xx: the endpoint or a gateway in front of it failed."""


class ServingTimeoutError(ServingError, ModelTimeoutError):
    """The request ran past a time limit: 408 or 504 from the server, or `timeout` here."""


class ServingReadTimeoutError(ServingTimeoutError):
    """The request went out and no answer came within `timeout`.

    Not retryable (`is_retryable` is False): the server may still be running, and billing,
    the generation; the transport retries it only with `retry_read_timeouts=True`.
    """

    is_retryable = False


class ServingDeadlineExceededError(ServingTimeoutError, ServingServerError):
    """504: the model or a gateway ran past its time limit (a timeout and a 5xx)."""


class ServingConnectionError(ServingError, ModelConnectionError):
    """The endpoint could not be reached."""


class ServingResponseError(ServingError):
    """The endpoint answered 2xx with a body that does not fit the contract."""


class ServingStreamError(ServingError):
    """A stream broke off, or the server reported an error inside it."""


# --------------------------------------------------------------------------------------
# Mapping a failed response onto the classes above
# --------------------------------------------------------------------------------------

_STATUS_CLASSES: dict[int, type[ServingError]] = {
    400: ServingInvalidRequestError,
    401: ServingAuthenticationError,
    403: ServingPermissionDeniedError,
    404: ServingNotFoundError,
    408: ServingTimeoutError,
    413: ServingInvalidRequestError,
    422: ServingInvalidRequestError,
    429: ServingRateLimitError,
    504: ServingDeadlineExceededError,
}

_CONTEXT_OVERFLOW = re.compile(
    r"context[_ ]length|context window|maximum context|too many tokens|prompt is too long"
    r"|exceeds? the (?:model'?s? )?(?:maximum|max)|input is too long",
    re.IGNORECASE,
)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")
_MAX_TEXT = 500


def parse_error_body(text: str) -> tuple[str | None, str]:
    """Return `(error_code, message)` from any error body shape the contract allows.

    Shapes: `{"error_code", "message"}`, `{"message"}`, OpenAI's `{"error": {...}}`,
    external-model wrappers, a JSON document inside `message`, plain text, an HTML page.
    """
    stripped = text.strip()
    if not stripped:
        return None, "(empty response body)"
    try:
        data = json.loads(stripped)
    except ValueError:
        return None, _plain_text(stripped)
    return _from_json(data, depth=0)


def _from_json(data: Any, depth: int) -> tuple[str | None, str]:
    if isinstance(data, str):
        return None, data
    if not isinstance(data, Mapping):
        return None, _truncate(json.dumps(data))
    code = _as_str(data.get("error_code")) or _as_str(data.get("code"))
    if isinstance(data.get("external_model_error"), Mapping):
        provider = _as_str(data.get("external_model_provider"))
        inner_code, inner_msg = _from_json(data["external_model_error"], depth + 1)
        prefix = f"{provider}: " if provider else ""
        return code or inner_code, prefix + inner_msg
    if isinstance(data.get("error"), Mapping):
        inner_code, inner_msg = _from_json(data["error"], depth + 1)
        return code or inner_code or _as_str(data["error"].get("type")), inner_msg
    message = data.get("message", data.get("error", data.get("detail")))
    if isinstance(message, str) and depth < 3:
        inner = message.strip()
        if inner.startswith("{"):
            try:
                nested = json.loads(inner)
            except ValueError:
                pass
            else:
                inner_code, inner_msg = _from_json(nested, depth + 1)
                return code or inner_code, inner_msg
        return code, message
    if message is None:
        return code, _truncate(json.dumps(data))
    return code, _truncate(json.dumps(message))


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _plain_text(text: str) -> str:
    if "<" in text and ">" in text:
        title = _HTML_TITLE.search(text)
        body = title.group(1) if title else _TAGS.sub(" ", text)
        return _truncate(" ".join(body.split()))
    return _truncate(text)


def _truncate(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


def request_id_from(headers: Mapping[str, str]) -> str | None:
    """The server's request id, if it sent one (quote it to support)."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` in seconds (integer or decimal form); HTTP dates are ignored."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_response(
    status_code: int, text: str, headers: Mapping[str, str], *, endpoint: str | None
) -> ServingError:
    """Build the typed error for a non-2xx response."""
    error_code, message = parse_error_body(text)
    cls = _STATUS_CLASSES.get(status_code)
    if cls is None:
        cls = ServingServerError if status_code >= 500 else ServingError
    if cls is ServingInvalidRequestError and (
        _CONTEXT_OVERFLOW.search(message) or error_code == "context_length_exceeded"
    ):
        cls = ServingContextOverflowError
    common: dict[str, Any] = {
        "status_code": status_code,
        "error_code": error_code,
        "endpoint": endpoint,
        "request_id": request_id_from(headers),
        "retry_after": parse_retry_after(headers),
    }
    return cls(message, **common)

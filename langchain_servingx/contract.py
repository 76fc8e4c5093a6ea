"""The serving-endpoint contract's rules, shared by the client and the local endpoint.

LangChain-free and dependency-free on purpose: the embedded local endpoint imports this
module, so both sides refuse the same names, speak the same task vocabulary, and write and
read the same error bodies with the same status codes.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

__all__ = [
    "AGENT_CHAT",
    "AGENT_CHAT_V2",
    "AGENT_RESPONSES",
    "CHAT",
    "COMPLETIONS",
    "EMBEDDINGS",
    "ERROR_CODES",
    "FORBIDDEN_IN_NAMES",
    "OPENAI_PATHS",
    "TASKS",
    "Task",
    "error_body",
    "error_code_for",
    "name_problem",
    "status_for",
]

# --------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------

Task = Literal[
    "llm/v1/chat",
    "llm/v1/completions",
    "llm/v1/embeddings",
    "agent/v1/chat",
    "agent/v2/chat",
    "agent/v1/responses",
]
"""What an endpoint serves, as the listing API's `task` field names it."""

TASKS: Final[tuple[Task, ...]] = get_args(Task)

CHAT: Final = "llm/v1/chat"
COMPLETIONS: Final = "llm/v1/completions"
EMBEDDINGS: Final = "llm/v1/embeddings"
AGENT_CHAT: Final = "agent/v1/chat"
AGENT_CHAT_V2: Final = "agent/v2/chat"
AGENT_RESPONSES: Final = "agent/v1/responses"

OPENAI_PATHS: Final[dict[str, str]] = {
    CHAT: "/chat/completions",
    COMPLETIONS: "/completions",
    EMBEDDINGS: "/embeddings",
    AGENT_CHAT: "/chat/completions",
    AGENT_RESPONSES: "/responses",
}
"""The OpenAI-compatible route of each task that has one (the model goes in the body)."""

# --------------------------------------------------------------------------------------
# Endpoint names
# --------------------------------------------------------------------------------------

FORBIDDEN_IN_NAMES: Final = ("/", "\\", "?", "#", "%", "..")
"""Substrings a name may not hold: it is one URL path segment and must stay one."""


def name_problem(name: object) -> str | None:
    """Why `name` cannot name an endpoint (or served model), or None when it can.

    A name is a non-empty string without `/`, backslash, `?`, `#`, `%`, `..`, whitespace or
    control characters, and is not `.`: pasted into a path it can never change the path.
    """
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    bad = [s for s in FORBIDDEN_IN_NAMES if s in name]
    if bad or name == "." or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in name):
        return (
            "is not a valid path segment "
            "(no '/', '\\', '?', '#', '%', '..', whitespace or control characters, not '.')"
        )
    return None


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------

ERROR_CODES: Final[dict[int, str]] = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    408: "DEADLINE_EXCEEDED",
    413: "BAD_REQUEST",
    422: "BAD_REQUEST",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    502: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
"""The error code an endpoint sends with each status (the contract's table)."""

_STATUS_OF_CODE: Final[dict[str, int]] = {
    "BAD_REQUEST": 400,
    "INVALID_PARAMETER_VALUE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "INTERNAL_ERROR": 500,
    "TEMPORARILY_UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def error_code_for(status: int) -> str:
    """The contract's error code for an HTTP status (unlisted 4xx: `BAD_REQUEST`)."""
    return ERROR_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")


def status_for(error_code: str | None) -> int | None:
    """The HTTP status an error code stands for (a stream error carries only the code)."""
    return _STATUS_OF_CODE.get(error_code) if error_code else None


def error_body(error_code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of an error answer: `{"error_code", "message", ...extra}`."""
    return {"error_code": error_code, "message": message, **extra}

"""Decoding and checking what endpoints answer: JSON bodies, fields, token counts, vectors.

An answer that does not fit the contract must become a typed error naming the field and
what was expected, never a raw `TypeError` from deep inside the parsing, nor a silently
empty result. The checks here raise `MalformedAnswer` with a field path
(`choices[0].message.content[1]`); `answer_errors` turns it, and any stray Python error of
the parsing it wraps, into a `ServingResponseError` (or `ServingStreamError`) for the
endpoint. It knows nothing of LangChain.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sys
from array import array
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from langchain_servingx._errors import ServingError, ServingResponseError, ServingStreamError

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "MalformedAnswer",
    "answer_errors",
    "expect_list",
    "expect_object",
    "json_type",
    "loads",
    "token_count",
    "vector",
]

DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
"""Largest answer body read (decoded bytes): ample for 256 vectors of 3,072 floats."""

_NATIVE_FLOAT32 = sys.byteorder == "little"


class MalformedAnswer(Exception):  # noqa: N818 - internal, always converted before it escapes
    """An answer field does not fit the contract; the message names the field."""


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {_short(value)!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def loads(data: bytes | str) -> Any:
    """Decode JSON; too deep a document or invalid JSON raises `MalformedAnswer`."""
    try:
        return json.loads(data)
    except RecursionError:
        raise MalformedAnswer(
            "the JSON document is nested too deeply to decode "
            f"(more than about {sys.getrecursionlimit()} levels)"
        ) from None
    except ValueError as exc:
        raise MalformedAnswer(f"the body is not valid JSON ({exc})") from None


def expect_object(value: Any, path: str, *, optional: bool = False) -> Mapping[str, Any]:
    """`value` as a JSON object; `None` gives `{}` when `optional`."""
    if isinstance(value, Mapping):
        return value
    if value is None and optional:
        return {}
    raise MalformedAnswer(f"{path} is {json_type(value)}, expected an object")


def expect_list(value: Any, path: str, *, optional: bool = False) -> list[Any]:
    """`value` as a JSON array; `None` gives `[]` when `optional`."""
    if isinstance(value, list):
        return value
    if value is None and optional:
        return []
    raise MalformedAnswer(f"{path} is {json_type(value)}, expected an array")


def token_count(value: Any, path: str) -> int | None:
    """A token count: a non-negative integer (`12.0` is accepted), or `None` when absent."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value)
    raise MalformedAnswer(f"{path} is {json_type(value)}, expected a non-negative integer")


def vector(value: Any, path: str) -> list[float]:
    """An embedding: an array of finite numbers, or base64 of little-endian float32s."""
    if isinstance(value, str):
        floats = _from_base64(value, path)
    elif isinstance(value, list):
        if any(isinstance(v, bool) for v in value):
            raise MalformedAnswer(f"{path} holds a boolean, expected numbers")
        try:
            floats = array("d", value)
        except (TypeError, OverflowError):
            bad = next(v for v in value if not isinstance(v, (int, float)) or _huge(v))
            raise MalformedAnswer(f"{path} holds {json_type(bad)}, expected numbers") from None
    else:
        raise MalformedAnswer(f"{path} is {json_type(value)}, expected an array of numbers")
    if not floats:
        raise MalformedAnswer(f"{path} is empty")
    # One C-speed pass: a NaN or an infinity anywhere makes the sum non-finite.
    if not math.isfinite(sum(floats)):
        raise MalformedAnswer(f"{path} holds NaN or infinite values")
    return floats.tolist()


def _huge(value: Any) -> bool:
    try:
        float(value)
    except OverflowError:
        return True
    return False


def _from_base64(text: str, path: str) -> array[float]:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedAnswer(f"{path} is a string but not base64") from None
    if len(raw) % 4:
        raise MalformedAnswer(
            f"{path} decodes to {len(raw)} bytes, not a whole number of float32 values"
        )
    floats = array("f", raw)
    if not _NATIVE_FLOAT32:
        floats.byteswap()
    return floats


@contextmanager
def answer_errors(
    endpoint: str, *, stream: bool = False, status_code: int | None = None
) -> Iterator[None]:
    """Turn a malformed answer met inside the block into a typed error for `endpoint`.

    Besides `MalformedAnswer`, the Python errors that parsing an unexpected shape raises
    (`TypeError`, `AttributeError`, `KeyError`, ...) are caught too, so none escapes raw.
    """
    cls = ServingStreamError if stream else ServingResponseError
    what = "stream chunk" if stream else "answer"
    try:
        yield
    except ServingError:
        raise
    except MalformedAnswer as exc:
        raise cls(f"malformed {what}: {exc}", endpoint=endpoint, status_code=status_code) from None
    except (
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
        ValueError,
        OverflowError,
        RecursionError,
    ) as exc:
        raise cls(
            f"malformed {what} ({type(exc).__name__}: {_short(str(exc), 200)})",
            endpoint=endpoint,
            status_code=status_code,
        ) from None

"""The serving error format: ``{"error_code": ..., "message": ...}`` with an HTTP status."""

from __future__ import annotations

from typing import Any

__all__ = ["ServingError"]


class ServingError(Exception):
    """An error answered to the client in the serving format.

    Raised anywhere below the routes; one exception handler renders it, so every
    failure a client sees has the same shape as a real serving endpoint's.
    """

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body to send."""
        return {"error_code": self.error_code, "message": self.message, **self.extra}

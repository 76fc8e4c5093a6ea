"""Errors answered to the client in the contract's format, with an HTTP status."""

from __future__ import annotations

from typing import Any

from langchain_servingx import contract

__all__ = ["EndpointError"]


class EndpointError(Exception):
    """An error the local endpoint answers: `{"error_code": ..., "message": ...}`.

    Raised anywhere below the routes; one exception handler renders it, so every failure a
    client sees has the shape (`contract.error_body`) and the status-to-code pairing
    (`contract.ERROR_CODES`) of a real serving endpoint's. `error_code=None` takes the
    contract's code for `status`.
    """

    def __init__(
        self,
        status: int,
        error_code: str | None,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code or contract.error_code_for(status)
        self.message = message
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body to send."""
        return contract.error_body(self.error_code, self.message, **self.extra)

"""The fields every public class shares, and the lazy link from them to one transport.

`ChatServing`, `ServingEmbeddings` and `ServingLLM` inherit these fields so that addressing,
credentials, timeouts and retries are declared, documented and validated exactly once.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from langchain_servingx._config import (
    ENV_CLIENT_SECRET,
    ENV_TOKEN,
    normalize_url,
    resolve_settings,
)
from langchain_servingx._decoding import DEFAULT_MAX_RESPONSE_BYTES
from langchain_servingx._errors import ServingConfigurationError
from langchain_servingx._transport import (
    EndpointAddress,
    InvocationTransport,
    RetryPolicy,
    check_endpoint_name,
)

__all__ = ["ServingClientBase"]

_TRANSPORT_LOCK = threading.Lock()


class ServingClientBase(BaseModel):
    """Endpoint, addressing, credentials and network behaviour of a serving client."""

    # Inputs stay out of validation errors: a refused host may hold a password.
    model_config = ConfigDict(
        populate_by_name=True, arbitrary_types_allowed=True, hide_input_in_errors=True
    )

    endpoint: str = Field(alias="model")
    """Serving endpoint name (alias `model`), e.g. `"databricks-claude-sonnet-4"`."""

    host: str | None = None
    """Workspace URL; default `DATABRICKS_HOST`, then the config profile."""

    token: SecretStr | None = Field(default=None, alias="api_key")
    """Personal access token (alias `api_key`); default `DATABRICKS_TOKEN`, then the profile."""

    client_id: str | None = None
    """OAuth machine-to-machine client id; default `DATABRICKS_CLIENT_ID`."""

    client_secret: SecretStr | None = None
    """OAuth machine-to-machine client secret; default `DATABRICKS_CLIENT_SECRET`."""

    profile: str | None = None
    """`~/.databrickscfg` profile; default `DATABRICKS_CONFIG_PROFILE`, then `[DEFAULT]`."""

    auth: httpx.Auth | None = Field(default=None, exclude=True, repr=False)
    """Any other auth scheme as an `httpx.Auth`; replaces token and OAuth resolution."""

    served_model: str | None = None
    """Query one served model behind the endpoint (`/served-models/{name}/invocations`)."""

    openai_compatible: bool = False
    """Use the host's OpenAI-compatible routes (`/serving-endpoints/chat/completions`)."""

    base_url: str | None = None
    """Any other OpenAI-compatible server (vLLM, llama.cpp): `{base_url}/chat/completions`."""

    timeout: float | None = Field(default=300.0, gt=0, allow_inf_nan=False)
    """Seconds to wait for an answer (connecting waits at most 10 s); None waits forever."""

    max_retries: int = Field(default=3, ge=0)
    """Retries on 429, 500, 502, 503, 504 and connection errors, with backoff and jitter."""

    retry_budget: float | None = Field(default=120.0, gt=0, allow_inf_nan=False)
    """Seconds one request may spend retrying; 429 and 503 retry past `max_retries` within it."""

    retry_read_timeouts: bool = False
    """Also retry read timeouts and connections broken after sending (the model may have run)."""

    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, gt=0)
    """Largest answer body accepted; a larger one is refused with a `ServingResponseError`."""

    allow_insecure_http: bool = False
    """Allow sending credentials over plain http to a non-loopback host."""

    _transport: InvocationTransport | None = PrivateAttr(default=None)

    @field_validator("served_model")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        return None if value is None else check_endpoint_name(value)

    @field_validator("host", "base_url")
    @classmethod
    def _valid_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            normalize_url(
                value, what=info.field_name or "host", allow_path=info.field_name == "base_url"
            )
        return value

    @model_validator(mode="after")
    def _valid_endpoint(self) -> ServingClientBase:
        self._check_endpoint(self.endpoint)
        return self

    def _check_endpoint(self, name: str) -> str:
        # On the OpenAI-compatible routes the name travels in the body, and model names
        # there often hold a "/" ("meta-llama/Llama-3.1-8B-Instruct"); elsewhere it is a
        # path segment and must be one.
        if self.base_url is None and not self.openai_compatible:
            return check_endpoint_name(name)
        if not isinstance(name, str) or not name.strip():
            raise ServingConfigurationError(f"model name must be a non-empty string, got {name!r}")
        return name

    @property
    def lc_secrets(self) -> dict[str, str]:
        """Secret fields and the environment variables that provide them."""
        return {"token": ENV_TOKEN, "client_secret": ENV_CLIENT_SECRET}

    @property
    def transport(self) -> InvocationTransport:
        """The instance's transport, built (and configuration resolved) on first use."""
        transport = self._transport
        if transport is None:
            with _TRANSPORT_LOCK:
                if self._transport is None:
                    self._transport = self._build_transport()
                transport = self._transport
        return transport

    def _build_transport(self) -> InvocationTransport:
        settings = resolve_settings(
            host=self.host,
            token=self.token,
            client_id=self.client_id,
            client_secret=self.client_secret,
            profile=self.profile,
            # DATABRICKS_* credentials belong to the workspace, never to another server.
            workspace=self.base_url is None,
        )
        address = EndpointAddress.build(
            host=settings.host,
            base_url=self.base_url,
            served_model=self.served_model,
            openai_compatible=self.openai_compatible,
        )
        return InvocationTransport(
            settings,
            address,
            timeout=self.timeout,
            retry=RetryPolicy(
                max_retries=self.max_retries,
                retry_read_timeouts=self.retry_read_timeouts,
                budget=self.retry_budget,
            ),
            max_response_bytes=self.max_response_bytes,
            auth=self.auth,
            allow_insecure_http=self.allow_insecure_http,
            # A generic OpenAI-compatible server may need no credentials at all.
            require_credentials=self.base_url is None,
        )

    def _endpoint_for(self, override: Any) -> str:
        """The endpoint a call goes to: a per-call `model=` wins over the instance's."""
        if override is None or override == self.endpoint:
            return self.endpoint
        return self._check_endpoint(str(override))

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in _TRANSPORT_FIELDS and self._transport is not None:
            self._transport = None  # rebuilt with the new settings on next use


_TRANSPORT_FIELDS = frozenset(
    {
        "host",
        "token",
        "client_id",
        "client_secret",
        "profile",
        "auth",
        "served_model",
        "openai_compatible",
        "base_url",
        "timeout",
        "max_retries",
        "retry_read_timeouts",
        "retry_budget",
        "max_response_bytes",
        "allow_insecure_http",
    }
)

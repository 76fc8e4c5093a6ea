"""The fields every public class shares, and the lazy link from them to a workspace.

`ChatServing`, `ServingEmbeddings` and `ServingLLM` inherit these fields so that addressing,
credentials, timeouts and retries are declared, documented and validated exactly once (in
`ConnectionFields`). A model either shares a `ServingWorkspace` (`workspace=`) or builds
its own from its fields on first use, and closes only the one it built.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator

from langchain_servingx._clients import Closing
from langchain_servingx._config import ENV_CLIENT_SECRET, ENV_TOKEN
from langchain_servingx._errors import ServingConfigurationError
from langchain_servingx._transport import InvocationTransport, check_endpoint_name
from langchain_servingx.workspace import CONNECTION_FIELDS, ConnectionFields, ServingWorkspace

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["GenerationFields", "ServingClientBase", "check_n", "check_single_choice"]

_LOCK = threading.Lock()


class ServingClientBase(ConnectionFields, Closing):
    """Endpoint, addressing, credentials and network behaviour of a serving client."""

    endpoint: str = Field(alias="model")
    """Serving endpoint name (alias `model`), e.g. `"databricks-claude-sonnet-4"`."""

    served_model: str | None = None
    """Query one served model behind the endpoint (`/served-models/{name}/invocations`)."""

    workspace: ServingWorkspace | None = Field(default=None, exclude=True)
    """A connection shared with other models; without it, the connection fields build
    this model's own (set one or the other, not both)."""

    _own: ServingWorkspace | None = PrivateAttr(default=None)

    @field_validator("served_model")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        return None if value is None else check_endpoint_name(value)

    @model_validator(mode="after")
    def _valid_endpoint(self) -> ServingClientBase:
        if self.workspace is not None:
            _refuse_both(self.model_fields_set)
        self._check_endpoint(self.endpoint)
        return self

    def _check_endpoint(self, name: str) -> str:
        # On the OpenAI-compatible routes the name travels in the body, and model names
        # there often hold a "/" ("meta-llama/Llama-3.1-8B-Instruct"); elsewhere it is a
        # path segment and must be one.
        connection = self.workspace or self
        if connection.base_url is None and not connection.openai_compatible:
            return check_endpoint_name(name)
        if not isinstance(name, str) or not name.strip():
            raise ServingConfigurationError(f"model name must be a non-empty string, got {name!r}")
        return name

    @property
    def lc_secrets(self) -> dict[str, str]:
        """Secret fields and the environment variables that provide them."""
        return {"token": ENV_TOKEN, "client_secret": ENV_CLIENT_SECRET}

    # -- the connection ----------------------------------------------------------------

    @property
    def connection(self) -> ServingWorkspace:
        """The workspace requests go through: `workspace`, or this model's own."""
        if self.workspace is not None:
            return self.workspace
        own = self._own
        if own is None:
            with _LOCK:
                if self._own is None:
                    fields = {name: getattr(self, name) for name in CONNECTION_FIELDS}
                    self._own = ServingWorkspace(**fields)
                own = self._own
        return own

    @property
    def transport(self) -> InvocationTransport:
        """The transport, built (and configuration resolved) on first use."""
        return self.connection.transport

    def _reset_connection(self) -> None:
        """Forget the own workspace and what was learnt through it (a copy, new settings).

        Done under the lock, so a concurrent first use cannot install a workspace built
        from the old settings after this.
        """
        with _LOCK:
            old, self._own = self._own, None
        self._forget()
        if old is not None:
            old.close()

    def _endpoint_for(self, override: Any) -> str:
        """The endpoint a call goes to: a per-call `model=` wins over the instance's."""
        if override is None or override == self.endpoint:
            return self.endpoint
        return self._check_endpoint(str(override))

    def __setattr__(self, name: str, value: Any) -> None:
        if name in CONNECTION_FIELDS and self.workspace is not None:
            _refuse_both({name})
        if name == "workspace" and value is not None:
            _refuse_both(self.model_fields_set)
        super().__setattr__(name, value)
        if name in CONNECTION_FIELDS or name in ("workspace", "served_model"):
            self._reset_connection()  # rebuilt with the new settings on next use

    def __copy__(self) -> Self:
        copied = super().__copy__()
        copied.__pydantic_private__ = {**(copied.__pydantic_private__ or {}), "_own": None}
        copied._forget()
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        copied = super().__deepcopy__(memo)
        copied.__pydantic_private__ = {**(copied.__pydantic_private__ or {}), "_own": None}
        copied._forget()
        return copied

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with its own connection (and `update` applied, checked like `__init__`)."""
        # pydantic < 2.10 types `update` as a dict (a Mapping since): give it one.
        copied = super().model_copy(update=None if update is None else dict(update), deep=deep)
        if update and copied.workspace is not None:
            _refuse_both(set(update) | copied.model_fields_set)
        return copied

    def _forget(self) -> None:
        """Hook: drop what was learnt about endpoints (a subclass's caches)."""

    def _held(self) -> ServingWorkspace | None:
        return self._own  # a shared `workspace` is closed by its owner, not by its models


class GenerationFields(BaseModel):
    """Sampling parameters shared by `ChatServing` and `ServingLLM`.

    Unset ones are not sent, so the endpoint's own defaults apply (some reject `temperature`).
    """

    temperature: float | None = None
    """Sampling temperature (0-2)."""

    max_tokens: int | None = None
    """Most tokens to generate."""

    stop: list[str] | None = None
    """Stop sequences; a per-call `stop` replaces them."""

    n: int | None = Field(default=None, ge=1, strict=True)
    """Completions per prompt; each becomes one generation (`invoke` only, not streams)."""

    top_p: float | None = None
    """Nucleus sampling."""

    extra_params: dict[str, Any] = Field(default_factory=dict)
    """Merged into the request body, e.g. `{"thinking": {...}}` or `{"top_k": 40}`."""

    streaming: bool = False
    """Stream under `invoke` too (callbacks see tokens as they arrive)."""

    @field_validator("extra_params", mode="before")
    @classmethod
    def _no_extra_params(cls, value: Any) -> Any:
        return {} if value is None else value  # `extra_params=None` meant "none" before

    @property
    def _default_params(self) -> dict[str, Any]:
        """The parameters that are set, in wire names, `extra_params` merged in last."""
        params = {
            key: value
            for key in ("temperature", "max_tokens", "n", "top_p", "stop")
            if (value := getattr(self, key)) is not None and value != []
        }
        params.update(self.extra_params)
        return params


def check_n(n: Any, endpoint: str) -> None:
    """Refuse an `n` (choices per prompt) that is not a positive integer."""
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"endpoint {endpoint!r}: n must be a positive integer, got {n!r}")


def check_single_choice(body: dict[str, Any], endpoint: str) -> None:
    """Refuse to stream with `n > 1`: a LangChain stream carries one choice."""
    if body.get("n", 1) != 1:
        raise ValueError(
            f"endpoint {endpoint!r}: a stream carries one choice; n={body['n']} "
            "needs invoke (or generate) without streaming"
        )


def _refuse_both(fields_set: set[str]) -> None:
    both = sorted(fields_set & CONNECTION_FIELDS)
    if both:
        raise ServingConfigurationError(
            f"{', '.join(both)} cannot be set together with workspace=: "
            "configure the connection on the ServingWorkspace"
        )

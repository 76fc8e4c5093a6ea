"""LangChain chat models, embeddings and LLMs on model serving endpoints."""

from typing import TYPE_CHECKING

from langchain_servingx._errors import (
    ServingAuthenticationError,
    ServingBrokenConnectionError,
    ServingConfigurationError,
    ServingConnectionError,
    ServingContextOverflowError,
    ServingDeadlineExceededError,
    ServingError,
    ServingInputError,
    ServingInvalidRequestError,
    ServingNotFoundError,
    ServingPermissionDeniedError,
    ServingRateLimitError,
    ServingReadTimeoutError,
    ServingResponseError,
    ServingServerError,
    ServingStreamError,
    ServingTimeoutError,
    ServingUsageWarning,
)
from langchain_servingx._version import __version__
from langchain_servingx.chat_models import ChatServing
from langchain_servingx.embeddings import ServingEmbeddings
from langchain_servingx.llms import ServingLLM
from langchain_servingx.workspace import EndpointInfo, ServedEntity, ServingWorkspace

__all__ = [
    "AIQueryError",
    "ChatServing",
    "EndpointInfo",
    "ServedEntity",
    "ServingAuthenticationError",
    "ServingBrokenConnectionError",
    "ServingConfigurationError",
    "ServingConnectionError",
    "ServingContextOverflowError",
    "ServingDeadlineExceededError",
    "ServingEmbeddings",
    "ServingError",
    "ServingInputError",
    "ServingInvalidRequestError",
    "ServingLLM",
    "ServingNotFoundError",
    "ServingPermissionDeniedError",
    "ServingRateLimitError",
    "ServingReadTimeoutError",
    "ServingResponseError",
    "ServingServerError",
    "ServingStreamError",
    "ServingTimeoutError",
    "ServingUsageWarning",
    "ServingWorkspace",
    "__version__",
    "aai_query",
    "ai_query",
    "register_ai_query",
]

if TYPE_CHECKING:  # typed for checkers, imported at run time on first use (`__getattr__`)
    from langchain_servingx.batch import AIQueryError, aai_query, ai_query
    from langchain_servingx.batch._sql import register_ai_query

_BATCH = frozenset({"AIQueryError", "aai_query", "ai_query", "register_ai_query"})


def __getattr__(name: str) -> object:
    # Batch inference lives in its own subpackage, imported on first use only.
    if name in _BATCH:
        from langchain_servingx import batch

        return getattr(batch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

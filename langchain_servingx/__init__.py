"""LangChain chat models, embeddings and LLMs on model serving endpoints."""

from langchain_servingx._errors import (
    ServingAuthenticationError,
    ServingConfigurationError,
    ServingConnectionError,
    ServingContextOverflowError,
    ServingError,
    ServingInputError,
    ServingInvalidRequestError,
    ServingNotFoundError,
    ServingPermissionDeniedError,
    ServingRateLimitError,
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

__all__ = [
    "ChatServing",
    "ServingAuthenticationError",
    "ServingConfigurationError",
    "ServingConnectionError",
    "ServingContextOverflowError",
    "ServingEmbeddings",
    "ServingError",
    "ServingInputError",
    "ServingInvalidRequestError",
    "ServingLLM",
    "ServingNotFoundError",
    "ServingPermissionDeniedError",
    "ServingRateLimitError",
    "ServingResponseError",
    "ServingServerError",
    "ServingStreamError",
    "ServingTimeoutError",
    "ServingUsageWarning",
    "__version__",
]

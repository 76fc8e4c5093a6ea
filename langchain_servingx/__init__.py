"""LangChain chat models, embeddings and LLMs on model serving endpoints."""

from langchain_servingx._errors import (
    ServingAuthenticationError,
    ServingConfigurationError,
    ServingConnectionError,
    ServingContextOverflowError,
    ServingDeadlineExceededError,
    ServingError,
    ServingInvalidRequestError,
    ServingNotFoundError,
    ServingPermissionDeniedError,
    ServingRateLimitError,
    ServingReadTimeoutError,
    ServingResponseError,
    ServingServerError,
    ServingStreamError,
    ServingTimeoutError,
)
from langchain_servingx._version import __version__
from langchain_servingx.chat_models import ChatServing
from langchain_servingx.embeddings import ServingEmbeddings
from langchain_servingx.llms import ServingLLM
from langchain_servingx.workspace import EndpointInfo, ServedEntity, ServingWorkspace

__all__ = [
    "ChatServing",
    "EndpointInfo",
    "ServedEntity",
    "ServingAuthenticationError",
    "ServingConfigurationError",
    "ServingConnectionError",
    "ServingContextOverflowError",
    "ServingDeadlineExceededError",
    "ServingEmbeddings",
    "ServingError",
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
    "ServingWorkspace",
    "__version__",
]

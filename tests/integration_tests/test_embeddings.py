"""LangChain's standard integration suite for ServingEmbeddings: none removed or overridden."""

from __future__ import annotations

from typing import Any

from langchain_tests.integration_tests import EmbeddingsIntegrationTests

from langchain_servingx import ServingEmbeddings
from tests.integration_tests.settings import ENDPOINTS

ENDPOINT_KINDS = ("embeddings",)


class TestServingEmbeddingsStandard(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[ServingEmbeddings]:
        return ServingEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"endpoint": ENDPOINTS["embeddings"], "timeout": 120}

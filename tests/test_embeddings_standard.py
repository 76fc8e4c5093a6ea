"""LangChain's standard unit suite for ServingEmbeddings: no test removed, none overridden."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_servingx import ServingEmbeddings


class TestServingEmbeddingsStandard(EmbeddingsUnitTests):
    # init_from_env_params stays unset: host and token are resolved from the environment
    # on the first request, not at construction, so there is no attribute to compare.

    @property
    def embeddings_class(self) -> type[ServingEmbeddings]:
        return ServingEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "databricks-gte-large-en", "host": "https://example.invalid"}

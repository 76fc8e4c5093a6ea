"""`ServingEmbeddings`: LangChain embeddings on an `llm/v1/embeddings` serving endpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, cast

from langchain_core.embeddings import Embeddings
from pydantic import Field, PrivateAttr

from langchain_servingx import contract
from langchain_servingx._base import ServingClientBase
from langchain_servingx._concurrency import arun_all, run_all
from langchain_servingx._decoding import MalformedAnswer, vector
from langchain_servingx._errors import (
    ServingContextOverflowError,
    ServingInputError,
    ServingInvalidRequestError,
    ServingResponseError,
)
from langchain_servingx._replies import order_by_index

__all__ = ["ServingEmbeddings"]


class ServingEmbeddings(ServingClientBase, Embeddings):
    """Embeddings from a model serving endpoint (`llm/v1/embeddings`).

    `embed_documents` sends the texts in batches of `batch_size`, at most
    `max_concurrency` requests at a time (a thread pool over the shared sync client, or a
    semaphore on the async client), and returns the vectors in input order whatever order
    the batches and their items arrive in.

    Example:
        ```python
        from langchain_servingx import ServingEmbeddings

        embeddings = ServingEmbeddings(
            endpoint="databricks-gte-large-en",
            query_params={"instruction": "Represent this question for retrieval:"},
        )
        vectors = embeddings.embed_documents(["first text", "second text"])
        ```

    """

    batch_size: int = Field(default=16, ge=1)
    """Texts per request. 16 by default: pay-per-token endpoints have answered 429 to 32."""

    max_concurrency: int = Field(default=4, ge=1)
    """Requests in flight at once for one `embed_documents` call."""

    query_params: dict[str, Any] = Field(default_factory=dict)
    """Extra body fields for `embed_query`, e.g. `{"instruction": "..."}`."""

    documents_params: dict[str, Any] = Field(default_factory=dict)
    """Extra body fields for `embed_documents`."""

    _base64_refused: set[str] = PrivateAttr(default_factory=set)
    """Endpoints that refused `encoding_format: base64` and got floats instead."""

    # -- Embeddings interface ----------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed `texts`, one vector per text, in input order."""
        batches = self._batches(texts)
        calls = [partial(self._embed_batch, b, self.documents_params) for b in batches]
        vectors = run_all(calls, self.max_concurrency)
        return self._joined(cast("list[list[list[float]]]", vectors), batches)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async `embed_documents`: a semaphore bounds the requests in flight."""
        batches = self._batches(texts)
        calls = [partial(self._aembed_batch, b, self.documents_params) for b in batches]
        vectors = await arun_all(calls, self.max_concurrency)
        return self._joined(cast("list[list[list[float]]]", vectors), batches)

    def embed_query(self, text: str) -> list[float]:
        """Embed one query text, with `query_params` in the body."""
        return self._embed_batch(_Batch.single(text), self.query_params)[0]

    async def aembed_query(self, text: str) -> list[float]:
        """Async `embed_query`."""
        return (await self._aembed_batch(_Batch.single(text), self.query_params))[0]

    # -- one request -------------------------------------------------------------------

    # Vectors are asked for as base64 (float32), which is smaller on the wire and decodes
    # several times faster than JSON floats; an endpoint that refuses the field (400/422) is
    # asked again without it, and remembered once that works. Floats are accepted anyway.

    def _embed_batch(self, batch: _Batch, params: Mapping[str, Any]) -> list[list[float]]:
        packed = self._asks_base64(params)
        try:
            reply = self._invoke(batch.body(params, packed))
        except ServingInvalidRequestError as error:
            if not _base64_refusal(packed, error):
                raise
            reply = self._invoke(batch.body(params, False))
            self._base64_refused.add(self.endpoint)
        return batch.vectors(reply, self.endpoint)

    async def _aembed_batch(self, batch: _Batch, params: Mapping[str, Any]) -> list[list[float]]:
        packed = self._asks_base64(params)
        try:
            reply = await self._ainvoke(batch.body(params, packed))
        except ServingInvalidRequestError as error:
            if not _base64_refusal(packed, error):
                raise
            reply = await self._ainvoke(batch.body(params, False))
            self._base64_refused.add(self.endpoint)
        return batch.vectors(reply, self.endpoint)

    def _invoke(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.transport.invoke(
            contract.EMBEDDINGS, self.endpoint, body, served_model=self.served_model
        )

    async def _ainvoke(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.transport.ainvoke(
            contract.EMBEDDINGS, self.endpoint, body, served_model=self.served_model
        )

    def _asks_base64(self, params: Mapping[str, Any]) -> bool:
        return "encoding_format" not in params and self.endpoint not in self._base64_refused

    def _forget(self) -> None:
        self._base64_refused = set()  # another connection may reach another server

    # -- splitting and joining ---------------------------------------------------------

    def _batches(self, texts: list[str]) -> list[_Batch]:
        if not isinstance(texts, (list, tuple)):
            raise ServingInputError(
                f"embed_documents expects a list of strings, got {type(texts).__name__}",
                endpoint=self.endpoint,
            )
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise ServingInputError(
                    f"embed_documents expects a list of strings: text {position} is "
                    f"{type(text).__name__}",
                    endpoint=self.endpoint,
                )
        texts = list(texts)
        size = self.batch_size
        count = -(-len(texts) // size)
        return [
            _Batch(texts[start : start + size], start, number + 1, count)
            for number, start in enumerate(range(0, len(texts), size))
        ]

    def _joined(
        self, vectors: Sequence[list[list[float]]], batches: Sequence[_Batch]
    ) -> list[list[float]]:
        """Concatenate per-batch vectors, checking that every batch has one dimension."""
        joined: list[list[float]] = []
        for batch, batch_vectors in zip(batches, vectors, strict=True):
            if joined and len(batch_vectors[0]) != len(joined[0]):
                raise ServingResponseError(
                    f"{batch.label}: vectors have {len(batch_vectors[0])} dimensions, "
                    f"but {batches[0].label} returned {len(joined[0])}",
                    endpoint=self.endpoint,
                )
            joined.extend(batch_vectors)
        return joined


class _Batch:
    """Some consecutive texts of one call, and where they sit in it (for error messages)."""

    __slots__ = ("count", "number", "start", "texts")

    def __init__(self, texts: list[str], start: int, number: int, count: int) -> None:
        self.texts = texts
        self.start = start
        self.number = number
        self.count = count

    @classmethod
    def single(cls, text: str) -> _Batch:
        if not isinstance(text, str):
            raise ServingInputError(f"embed_query expects a string, got {type(text).__name__}")
        return cls([text], 0, 1, 1)

    @property
    def label(self) -> str:
        """E.g. `batch 3 of 4 (texts 64-95)`."""
        end = self.start + len(self.texts) - 1
        return f"batch {self.number} of {self.count} (texts {self.start}-{end})"

    def body(self, params: Mapping[str, Any], packed: bool) -> dict[str, Any]:
        body = {**params, "input": self.texts}
        if packed:
            body["encoding_format"] = "base64"
        return body

    def vectors(self, reply: Mapping[str, Any], endpoint: str) -> list[list[float]]:
        """The reply's vectors in text order, after checking count, indexes and dimension."""

        def invalid(problem: str) -> ServingResponseError:
            return ServingResponseError(f"{self.label}: {problem}", endpoint=endpoint)

        data = reply.get("data")
        if not isinstance(data, list):
            raise invalid(f"expected a 'data' list of embeddings, got {type(data).__name__}")
        items = order_by_index(data, len(self.texts), "embeddings", invalid)
        vectors: list[list[float]] = []
        for position, item in enumerate(items):
            try:
                values = vector(item.get("embedding"), f"item {position}'s embedding")
            except MalformedAnswer as exc:
                raise invalid(str(exc)) from None
            if vectors and len(values) != len(vectors[0]):
                raise invalid(f"vectors differ in dimension ({len(vectors[0])} and {len(values)})")
            vectors.append(values)
        return vectors


def _base64_refusal(packed: bool, error: ServingInvalidRequestError) -> bool:
    """Whether a refused request may have been refused for its `encoding_format` alone."""
    return packed and not isinstance(error, ServingContextOverflowError)

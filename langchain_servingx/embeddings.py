"""`ServingEmbeddings`: LangChain embeddings on an `llm/v1/embeddings` serving endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import Field

from langchain_servingx import contract
from langchain_servingx._base import ServingClientBase
from langchain_servingx._errors import ServingResponseError
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

    # -- Embeddings interface ----------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed `texts`, one vector per text, in input order."""
        batches = self._batches(texts)
        if len(batches) <= 1:
            vectors = [self._embed_batch(b, self.documents_params) for b in batches]
        else:
            workers = min(self.max_concurrency, len(batches))
            with ThreadPoolExecutor(workers, thread_name_prefix="servingx-embed") as pool:
                futures = [
                    pool.submit(self._embed_batch, b, self.documents_params) for b in batches
                ]
                try:
                    vectors = [f.result() for f in futures]
                except BaseException:
                    for future in futures:
                        future.cancel()  # do not start batches whose result is lost
                    raise
        return self._joined(vectors, batches)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async `embed_documents`: a semaphore bounds the requests in flight."""
        batches = self._batches(texts)
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def embed(batch: _Batch) -> list[list[float]]:
            async with semaphore:
                return await self._aembed_batch(batch, self.documents_params)

        tasks = [asyncio.ensure_future(embed(b)) for b in batches]
        try:
            vectors = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return self._joined(vectors, batches)

    def embed_query(self, text: str) -> list[float]:
        """Embed one query text, with `query_params` in the body."""
        return self._embed_batch(_Batch.single(text), self.query_params)[0]

    async def aembed_query(self, text: str) -> list[float]:
        """Async `embed_query`."""
        return (await self._aembed_batch(_Batch.single(text), self.query_params))[0]

    # -- one request -------------------------------------------------------------------

    def _embed_batch(self, batch: _Batch, params: Mapping[str, Any]) -> list[list[float]]:
        reply = self.transport.invoke(
            contract.EMBEDDINGS, self.endpoint, batch.body(params), served_model=self.served_model
        )
        return batch.vectors(reply, self.endpoint)

    async def _aembed_batch(self, batch: _Batch, params: Mapping[str, Any]) -> list[list[float]]:
        reply = await self.transport.ainvoke(
            contract.EMBEDDINGS, self.endpoint, batch.body(params), served_model=self.served_model
        )
        return batch.vectors(reply, self.endpoint)

    # -- splitting and joining ---------------------------------------------------------

    def _batches(self, texts: list[str]) -> list[_Batch]:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"{self.endpoint!r}: embed_documents expects a list of strings")
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
            raise TypeError(f"embed_query expects a string, got {type(text).__name__}")
        return cls([text], 0, 1, 1)

    @property
    def label(self) -> str:
        """E.g. `batch 3 of 4 (texts 64-95)`."""
        end = self.start + len(self.texts) - 1
        return f"batch {self.number} of {self.count} (texts {self.start}-{end})"

    def body(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {**params, "input": self.texts}

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
            vector = item.get("embedding")
            if not isinstance(vector, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in vector
            ):
                raise invalid(f"item {position} has no numeric 'embedding' list")
            if vectors and len(vector) != len(vectors[0]):
                raise invalid(f"vectors differ in dimension ({len(vectors[0])} and {len(vector)})")
            vectors.append([float(v) for v in vector])
        if vectors and not vectors[0]:
            raise invalid("the vectors are empty")
        return vectors

"""What answers an endpoint: llama.cpp, sentence-transformers, or an external server.

Every engine has the same small interface (:class:`Engine`): ``load`` once, then
``chat`` / ``completions`` / ``embeddings``, each returning a response body or, for
streams, an async iterator of chunks. The routes never know which kind they talk to.

A model instance is not safe for concurrent use, so each local model owns one worker
thread (:class:`ModelWorker`): that thread is the model's lock. Requests queue for it
in order, the blocking generation runs there, and the event loop stays free to answer
health checks, listings and other models meanwhile. Endpoints backed by the same file
(``local-chat`` and ``local-completions``) share one model and therefore one worker.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import logging
import os
import struct
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from langchain_servingx import contract
from langchain_servingx.local.config import EndpointConfig, ExternalModel, resolve_location
from langchain_servingx.local.errors import EndpointError
from langchain_servingx.local.prompting import (
    MESSAGE_PREFIX,
    ChatTemplate,
    ToolPlan,
    call_prefix,
    conversation,
    decision_grammar,
    schema_grammar,
    tool_plan,
)
from langchain_servingx.local.responses import (
    Piece,
    Usage,
    chat_chunks,
    chat_response,
    completion_chunks,
    completion_response,
)
from langchain_servingx.local.schemas import ChatRequest, CompletionRequest, EmbeddingRequest

__all__ = [
    "EmbeddingEngine",
    "Engine",
    "LlamaEngine",
    "ModelWorker",
    "ProxyEngine",
    "build_engines",
]

log = logging.getLogger("langchain_servingx.local")

T = TypeVar("T")
Body = dict[str, Any]
Answer = Body | AsyncGenerator[Body, None]


class ModelWorker:
    """One thread that runs every job of one model, in arrival order (the model's lock)."""

    def __init__(self, name: str) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._active: set[threading.Event] = set()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the model's thread and wait for its result."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def iterate(
        self, produce: Callable[[threading.Event], Iterator[T]]
    ) -> AsyncGenerator[T, None]:
        """Run the generator ``produce(cancel)`` on the model's thread, yielding its items.

        If the consumer goes away (client disconnect, shutdown), ``cancel`` is set: the
        generator checks it between tokens, so the model is free again at once.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancel = threading.Event()
        self._active.add(cancel)

        def put(kind: str, value: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: shutting down
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def work() -> None:
            if cancel.is_set():  # abandoned while waiting for its turn
                return
            try:
                for item in produce(cancel):
                    if cancel.is_set():
                        break
                    put("item", item)
            except BaseException as error:  # handed to the consumer, re-raised there
                put("error", error)
            else:
                put("done", None)

        future = loop.run_in_executor(self._pool, work)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "done":
                    break
                if kind == "error":
                    raise value
                yield value
        finally:
            cancel.set()
            self._active.discard(cancel)
            # Keep the thread's result from being reported as never retrieved.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def close(self) -> None:
        """Stop accepting jobs: queued ones are dropped, running ones told to stop."""
        for cancel in list(self._active):
            cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


class Engine:
    """Answers the requests of one endpoint; subclasses implement their task(s)."""

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self.error: str | None = None

    def load(self) -> None:
        """Load the model (blocking; called once, off the event loop)."""

    async def aclose(self) -> None:
        """Release what the engine holds."""

    async def chat(self, request: ChatRequest, body: Body) -> Answer:
        """Answer a chat request: a body, or an iterator of chunks when streaming."""
        raise EndpointError(400, "BAD_REQUEST", f"{self.config.name} does not serve chat")

    async def completions(self, request: CompletionRequest, body: Body) -> Answer:
        """Answer a completions request: a body, or an iterator of chunks when streaming."""
        raise EndpointError(400, "BAD_REQUEST", f"{self.config.name} does not serve completions")

    async def embeddings(self, request: EmbeddingRequest, body: Body) -> Body:
        """Answer an embeddings request."""
        raise EndpointError(400, "BAD_REQUEST", f"{self.config.name} does not serve embeddings")


# --------------------------------------------------------------------------- llama.cpp


class LlamaModel:
    """A GGUF model in llama.cpp, its chat template and its worker thread."""

    def __init__(self, path: Path, n_ctx: int, threads: int) -> None:
        self.path = path
        self.n_ctx = n_ctx
        self.threads = threads
        self.worker = ModelWorker(path.stem[:12])
        self._llama: Any = None
        self.template = ChatTemplate(None)
        self._loaded = threading.Lock()

    def load(self) -> None:
        """Load the weights once, whichever endpoint asks first."""
        with self._loaded:
            if self._llama is not None:
                return
            from llama_cpp import Llama

            llama = Llama(
                model_path=str(self.path),
                n_ctx=self.n_ctx,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                verbose=False,
            )
            model = llama._model  # the only way to the special tokens' text
            eos, bos = llama.token_eos(), llama.token_bos()
            self.template = ChatTemplate(
                llama.metadata.get("tokenizer.chat_template"),
                bos_token=model.token_get_text(bos) if bos != -1 else "",
                eos_token=model.token_get_text(eos) if eos != -1 else "",
            )
            self._llama = llama

    def count_tokens(self, prompt: str) -> int:
        """Prompt length in tokens, as generation will see it (tokenizing is thread-safe)."""
        return len(self._llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))

    def check_fits(self, prompt_tokens: int) -> None:
        """Refuse a prompt that leaves no room to answer in the context window."""
        if prompt_tokens >= self.n_ctx:
            raise EndpointError(
                400,
                "BAD_REQUEST",
                f"The prompt is {prompt_tokens} tokens; this model's context window is "
                f"{self.n_ctx} tokens.",
            )

    def complete(
        self,
        prompt: str,
        params: dict[str, Any],
        usage: Usage,
        cancel: threading.Event,
        grammar: str | None = None,
        fresh: bool = True,
    ) -> Iterator[tuple[str, str | None]]:
        """Stream ``(text, finish_reason)`` from llama.cpp; call on the worker thread only.

        A stopping criterion, called once per sampled token, counts completion tokens
        (streams carry no usage from llama.cpp) and ends generation when cancelled.
        ``fresh`` re-reads the whole prompt instead of reusing the prefix cached from the
        previous request: the logits differ slightly between the two, enough to change
        even a greedy answer, and an answer must not depend on who asked before. Only
        the second step of a tool decision continues (from its own first step).
        """
        from llama_cpp.llama import StoppingCriteriaList
        from llama_cpp.llama_grammar import LlamaGrammar

        calls = 0

        def each_token(_ids: Any, _logits: Any) -> bool:
            nonlocal calls
            calls += 1
            return cancel.is_set()

        if fresh:
            self._llama.reset()
        room = self.n_ctx - self.count_tokens(prompt)
        max_tokens = min(int(params.get("max_tokens") or room), room)
        stream = self._llama.create_completion(
            prompt=prompt,
            stream=True,
            grammar=LlamaGrammar.from_string(grammar, verbose=False) if grammar else None,
            stopping_criteria=StoppingCriteriaList([each_token]),
            **{**params, "max_tokens": max_tokens},
        )
        try:
            for chunk in stream:
                choice = chunk["choices"][0]
                yield choice["text"], choice["finish_reason"]
        finally:
            # llama-cpp-python asks the criterion once more after the last token.
            usage.completion_tokens += max(0, calls - 1)


def _sampling(
    request: ChatRequest | CompletionRequest, config: EndpointConfig, limit: int | None
) -> dict[str, Any]:
    """llama.cpp sampling arguments from a request, with the endpoint's defaults."""
    params: dict[str, Any] = {
        "max_tokens": limit or config.default_max_tokens,
        "temperature": (
            config.default_temperature if request.temperature is None else request.temperature
        ),
        "stop": request.stop or [],
        "seed": request.seed,
    }
    # The endpoint's default repeat penalty stands in only when the client chose no
    # penalty of its own: penalties stacked on top of each other garble the answer.
    own = (request.repeat_penalty, request.frequency_penalty, request.presence_penalty)
    if all(value is None for value in own):
        params["repeat_penalty"] = config.default_repeat_penalty
    elif request.repeat_penalty is not None:
        params["repeat_penalty"] = request.repeat_penalty
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.top_k is not None:
        params["top_k"] = request.top_k
    if request.presence_penalty is not None:
        params["presence_penalty"] = request.presence_penalty
    if request.frequency_penalty is not None:
        params["frequency_penalty"] = request.frequency_penalty
    return params


def _for_choice(params: dict[str, Any], index: int) -> dict[str, Any]:
    """Choice ``index`` of ``n`` gets its own seed, so seeded choices still differ."""
    if params.get("seed") is None or index == 0:
        return params
    return {**params, "seed": params["seed"] + index}


class _ChatJob:
    """A chat request made ready for the worker: prompt, grammars and parameters.

    Built on the event loop before anything is queued, so every error a client can
    cause (bad schema, prompt too long) is a proper HTTP error, even for streams.
    """

    def __init__(self, model: LlamaModel, config: EndpointConfig, request: ChatRequest) -> None:
        self.request = request
        self.plan: ToolPlan = tool_plan(request)
        self.prompt = model.template.render(conversation(request, self.plan))
        self.usage = Usage(prompt_tokens=model.count_tokens(self.prompt))
        model.check_fits(self.usage.prompt_tokens)
        self.params = _sampling(request, config, request.token_limit)
        self.call_grammars = {
            tool.function.name: schema_grammar(
                tool.function.parameters, f"tools[{i}].function.parameters"
            )
            for i, tool in enumerate(self.plan.choices)
        }
        self.decision = None if self.plan.forced else decision_grammar(self.plan)
        fmt = request.response_format
        self.format_grammar = (
            schema_grammar(fmt.schema_for_grammar, "response_format.json_schema.schema")
            if fmt is not None and fmt.type != "text"
            else None
        )

    def run(self, model: LlamaModel, cancel: threading.Event) -> Iterator[Piece]:
        """Generate every choice, one after the other (runs on the worker thread)."""
        for index in range(self.request.n):
            yield from self._choice(model, index, cancel)

    def _choice(self, model: LlamaModel, index: int, cancel: threading.Event) -> Iterator[Piece]:
        prompt, name, fresh = self.prompt, None, True
        params = _for_choice(self.params, index)
        if self.plan.active:
            forced = self.plan.forced
            if forced is not None:
                name = forced.function.name
            else:
                # Step 1: a grammar-bound, greedy choice between answering and each tool.
                decided = "".join(
                    text
                    for text, _ in model.complete(
                        prompt,
                        {"max_tokens": 32, "temperature": 0.0},
                        self.usage,
                        cancel,
                        self.decision,
                    )
                )
                fresh = False
                if decided.startswith("functions."):
                    name = decided.removeprefix("functions.").removesuffix(":")
                if name not in self.call_grammars:
                    name = None
                    if not self.plan.may_answer:  # cancelled mid-decision
                        return
        if name is not None:
            yield Piece(index, call_name=name)
            prompt += call_prefix(name)
            finish = "tool_calls"
            for text, reason in model.complete(
                prompt, params, self.usage, cancel, self.call_grammars[name], fresh
            ):
                if reason == "length":
                    finish = "length"
                yield Piece(index, text=text)
            yield Piece(index, finish=finish)
            return
        if self.plan.active:
            prompt += MESSAGE_PREFIX
        finish = "stop"
        grammar = self.format_grammar
        for text, reason in model.complete(prompt, params, self.usage, cancel, grammar, fresh):
            finish = reason or finish
            if text:
                yield Piece(index, text=text)
        yield Piece(index, finish=finish)


class LlamaEngine(Engine):
    """Chat or completions from a GGUF model, in process with llama-cpp-python."""

    def __init__(self, config: EndpointConfig, model: LlamaModel) -> None:
        super().__init__(config)
        self.model = model

    def load(self) -> None:
        """Load (or reuse) the shared model."""
        self.model.load()

    async def chat(self, request: ChatRequest, body: Body) -> Answer:
        """Chat with tools, structured output, ``n`` choices; streamed or not."""
        job = _ChatJob(self.model, self.config, request)
        pieces = self.model.worker.iterate(lambda cancel: job.run(self.model, cancel))
        name = self.config.served_model_name
        if request.stream:
            return chat_chunks(pieces, name, job.usage, request.include_usage)
        return await chat_response(pieces, name, job.usage)

    async def completions(self, request: CompletionRequest, body: Body) -> Answer:
        """Plain text completion of each prompt, ``n`` times."""
        model, prompts = self.model, request.prompts
        usage = Usage()
        for prompt in prompts:
            tokens = model.count_tokens(prompt)
            model.check_fits(tokens)
            usage.prompt_tokens += tokens
        params = _sampling(request, self.config, request.max_tokens)

        def run(cancel: threading.Event) -> Iterator[Piece]:
            for p, prompt in enumerate(prompts):
                for j in range(request.n):
                    index = p * request.n + j
                    finish = "stop"
                    choice_params = _for_choice(params, j)
                    for text, reason in model.complete(prompt, choice_params, usage, cancel):
                        finish = reason or finish
                        if text:
                            yield Piece(index, text=text)
                    yield Piece(index, finish=finish)

        pieces = model.worker.iterate(run)
        name = self.config.served_model_name
        if request.stream:
            return completion_chunks(pieces, name, usage, request.include_usage)
        return await completion_response(pieces, name, usage)

    async def aclose(self) -> None:
        """Stop the shared worker (idempotent)."""
        self.model.worker.close()


# --------------------------------------------------------------- sentence-transformers


class EmbeddingEngine(Engine):
    """Embeddings from a sentence-transformers model, on the CPU."""

    def __init__(self, config: EndpointConfig, path: Path) -> None:
        super().__init__(config)
        self.path = path
        self.worker = ModelWorker("embed")
        self._model: Any = None

    def load(self) -> None:
        """Import torch and load the model from disk (no hub: offline by design)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in the server log
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self.config.threads)  # see EndpointConfig.threads
        self._model = SentenceTransformer(str(self.path), device="cpu")

    def _embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        vectors = self._model.encode(texts, batch_size=32, convert_to_numpy=True)
        tokens = self._model.tokenizer(texts, truncation=True)["input_ids"]
        return [v.tolist() for v in vectors], sum(len(t) for t in tokens)

    async def embeddings(self, request: EmbeddingRequest, body: Body) -> Body:
        """Embed every input; ``encoding_format="base64"`` packs float32 like OpenAI."""
        vectors, tokens = await self.worker.call(lambda: self._embed(request.inputs))
        data = []
        for index, vector in enumerate(vectors):
            embedding: list[float] | str = vector
            if request.encoding_format == "base64":
                packed = struct.pack(f"<{len(vector)}f", *vector)
                embedding = base64.b64encode(packed).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        return {
            "object": "list",
            "model": self.config.served_model_name,
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def aclose(self) -> None:
        """Stop the worker."""
        self.worker.close()


# ----------------------------------------------------------------------- external model


class ProxyEngine(Engine):
    """Forwards to an OpenAI-compatible server, translating into the serving contract.

    The client's body is forwarded as sent (provider extras included) with ``model``
    set to the upstream name; streams get usage on their last chunk unless the client
    turned it off; upstream errors come back in the serving error format, wrapped as
    external-model errors.
    """

    def __init__(self, config: EndpointConfig, external: ExternalModel) -> None:
        super().__init__(config)
        self.external = external
        self._client: httpx.AsyncClient | None = None
        self._headers: dict[str, str] = {}

    def load(self) -> None:
        """Read the API key from its environment variable (no request is sent)."""
        env = self.external.api_key_env
        if env:
            key = os.environ.get(env)
            if not key:
                raise RuntimeError(f"environment variable {env} (the API key) is not set")
            self._headers["Authorization"] = f"Bearer {key}"

    def _http(self) -> httpx.AsyncClient:
        # Created lazily: it must belong to the event loop that serves requests.
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.external.base_url.rstrip("/") + "/",
                headers=self._headers,
                timeout=httpx.Timeout(self.external.timeout, connect=10.0),
            )
        return self._client

    def _body(self, body: Body, stream: bool) -> Body:
        out = {**body, "model": self.external.model}
        extra = out.pop("extra_params", None)
        if isinstance(extra, dict):
            out.update(extra)
        if stream and "stream_options" not in out:
            out["stream_options"] = {"include_usage": True}
        return out

    def _error(self, response: httpx.Response, content: bytes) -> EndpointError:
        try:
            detail: Any = httpx.Response(200, content=content).json()
        except ValueError:
            detail = content.decode("utf-8", "replace")[:2000]
        message = detail
        if isinstance(detail, dict):
            inner = detail.get("error", detail)
            message = inner.get("message", detail) if isinstance(inner, dict) else inner
        status = response.status_code
        if status in (401, 403):  # our key was refused: a server-side problem, not the client's
            status, code = 502, "INTERNAL_ERROR"
        else:
            code = contract.error_code_for(status)
        headers = {}
        if "retry-after" in response.headers:
            headers["Retry-After"] = response.headers["retry-after"]
        return EndpointError(
            status,
            code,
            f"External model error ({response.status_code}): {message}",
            extra={
                "external_model_provider": self.external.provider,
                "external_model_error": detail,
            },
            headers=headers,
        )

    async def _send(self, path: str, body: Body, stream: bool) -> Answer:
        client = self._http()
        request = client.build_request("POST", path, json=self._body(body, stream))
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException as error:
            message = f"External model timed out: {error}"
            raise EndpointError(504, "DEADLINE_EXCEEDED", message) from None
        except httpx.HTTPError as error:
            raise EndpointError(
                503, "TEMPORARILY_UNAVAILABLE", f"External model unreachable: {error}"
            ) from None
        if response.status_code >= 400:
            content = await response.aread()
            await response.aclose()
            raise self._error(response, content)
        if not stream:
            try:
                content = await response.aread()
            finally:
                await response.aclose()
            answer: Body = httpx.Response(200, content=content).json()
            return answer
        return self._relay(response)

    async def _relay(self, response: httpx.Response) -> AsyncGenerator[Body, None]:
        """Re-emit the upstream SSE ``data:`` payloads as chunks."""
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line.removeprefix("data:").strip()
                if data == "[DONE]":
                    break
                if data:
                    yield httpx.Response(200, content=data.encode()).json()
        finally:
            await response.aclose()

    async def chat(self, request: ChatRequest, body: Body) -> Answer:
        """Forward to ``/chat/completions``."""
        return await self._send("chat/completions", body, request.stream)

    async def completions(self, request: CompletionRequest, body: Body) -> Answer:
        """Forward to ``/completions``."""
        return await self._send("completions", body, request.stream)

    async def embeddings(self, request: EmbeddingRequest, body: Body) -> Body:
        """Forward to ``/embeddings``."""
        answer = await self._send("embeddings", body, stream=False)
        assert isinstance(answer, dict)  # noqa: S101 - non-streamed answers are bodies
        return answer

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()


def build_engines(configs: list[EndpointConfig]) -> dict[str, Engine]:
    """One engine per endpoint; endpoints on the same GGUF file share one model."""
    models: dict[tuple[str, int], LlamaModel] = {}
    engines: dict[str, Engine] = {}
    for config in configs:
        engine: Engine
        try:
            if config.external is not None:
                engine = ProxyEngine(config, config.external)
            elif config.sentence_transformer is not None:
                engine = EmbeddingEngine(config, resolve_location(config.sentence_transformer))
            else:
                assert config.gguf is not None  # noqa: S101 - the config guarantees one backend
                path = resolve_location(config.gguf)
                key = (str(path.resolve()), config.n_ctx)
                if key not in models:
                    models[key] = LlamaModel(path, config.n_ctx, config.threads)
                model = models[key]
                engine = LlamaEngine(config, model)
        except Exception as error:  # a missing model file: served as NOT_READY, not fatal
            engine = Engine(config)
            engine.error = str(error)
        engines[config.name] = engine
    return engines

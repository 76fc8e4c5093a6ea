"""One request per task: bodies built and answers parsed by the model classes themselves.

Each caller turns requests into one HTTP call (embeddings pack several texts into one)
through the model's own request building and answer parsing, so a row sent by `ai_query`
is exactly what `ChatServing`, `ServingLLM` or `ServingEmbeddings` would send. 429s are not
retried by the transport here: the batch runner paces them (`_limiter`).

Calls are synchronous and run on the runner's thread pool: over the pooled sync client
they cost far less CPU than httpx's async pool at batch concurrency (measured: about a
third), and CPU is what bounds a batch on a small executor.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.runnables import Runnable

from langchain_servingx import contract
from langchain_servingx._base import ServingClientBase
from langchain_servingx._errors import ServingError, ServingInvalidRequestError
from langchain_servingx._messages import usage_from_wire
from langchain_servingx.batch._formats import ResponseFormat
from langchain_servingx.chat_models import ChatServing
from langchain_servingx.embeddings import ServingEmbeddings, _Batch
from langchain_servingx.llms import ServingLLM
from langchain_servingx.protocols.base import WireProtocol

__all__ = ["Answer", "Caller", "Usage", "caller_for", "format_error"]

Usage = dict[str, int]


@dataclass
class Answer:
    """The results of one call, one per request, and the call's token usage."""

    values: list[Any]
    usage: Usage | None = None


class Caller(ABC):
    """Sends requests of one task to one endpoint (or runs one Runnable)."""

    pack: int = 1
    """Requests that may share one call (embeddings: the model's `batch_size`)."""

    endpoint: str | None = None
    """The endpoint, for error messages (None for a Runnable)."""

    model: Any = None
    """The object holding the connection (shared per executor process on Spark)."""

    @property
    def limit_key(self) -> str | None:
        """What shares a learned concurrency: one endpoint at one address (None: nothing)."""
        return None

    @abstractmethod
    def call(self, requests: Sequence[Any]) -> Answer:
        """Send `requests` in one call; raise if the call as a whole fails."""

    @abstractmethod
    def with_model(self, model: Any) -> Caller:
        """The same caller over another (equal) model object: the process's shared one."""


class _ServingCaller(Caller):
    def __init__(
        self, model: ServingClientBase, params: Mapping[str, Any], fmt: ResponseFormat
    ) -> None:
        self.model = model
        self.endpoint = model.endpoint
        self.params = dict(params)
        self.fmt = fmt

    def with_model(self, model: Any) -> Caller:
        return type(self)(model, self.params, self.fmt)

    @property
    def limit_key(self) -> str | None:
        try:
            root = self.model.transport.address.root
        except ServingError:
            return None  # not configured: every row will say so; nothing to learn
        return f"{root} {self.model.endpoint}"

    def _send(self, task: contract.Task, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        transport = self.model.transport
        # 429s come back at once, so that the runner paces the whole partition.
        retry = dataclasses.replace(transport.retry, retry_rate_limits=False)
        reply: dict[str, Any] = transport.invoke(
            task, endpoint, body, served_model=self.model.served_model, retry=retry
        )
        return reply


class ChatCaller(_ServingCaller):
    """`llm/v1/chat`: a request is a user message (text) or a list of messages."""

    model: ChatServing

    def __init__(self, model: ChatServing, params: Mapping[str, Any], fmt: ResponseFormat) -> None:
        super().__init__(model, params, fmt)
        if fmt.wire is not None:
            self.params.setdefault("response_format", fmt.wire)
        self._resolved: tuple[str, dict[str, Any], bool, WireProtocol] | None = None

    def _resolve(self) -> tuple[str, dict[str, Any], bool, WireProtocol]:
        """The endpoint, parameters and protocol of every row: the same for the whole run."""
        resolved = self._resolved
        if resolved is None:
            endpoint, params, usage = self.model._params(None, dict(self.params))
            resolved = self._resolved = (endpoint, params, usage, self.model._protocol(endpoint))
        return resolved

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_resolved": None}  # resolved again where it runs

    def call(self, requests: Sequence[Any]) -> Answer:
        (request,) = requests
        messages = _messages(request)
        endpoint, params, usage, protocol = self._resolve()
        body = protocol.body(messages, params, endpoint=endpoint, stream=False, stream_usage=usage)
        reply = self._send(protocol.route, endpoint, body)
        message = protocol.result(reply, endpoint).generations[0].message
        return Answer([self.fmt.parse(message.text, endpoint)], _usage(message))


class CompletionsCaller(_ServingCaller):
    """`llm/v1/completions`: a request is a prompt."""

    model: ServingLLM

    def call(self, requests: Sequence[Any]) -> Answer:
        (prompt,) = requests
        if not isinstance(prompt, str):
            raise TypeError(f"a completions request must be text, got {type(prompt).__name__}")
        call = self.model._completion_call([prompt], None, self.params)
        (group,) = call.pending
        reply = self._send(contract.COMPLETIONS, call.endpoint, call.body(group))
        call.add(group, reply)
        return Answer([call.generations[0][0].text], _wire_usage(reply))


class EmbeddingsCaller(_ServingCaller):
    """`llm/v1/embeddings`: texts packed `batch_size` to a request, vectors in order."""

    model: ServingEmbeddings

    def __init__(
        self, model: ServingEmbeddings, params: Mapping[str, Any], fmt: ResponseFormat
    ) -> None:
        super().__init__(model, params, fmt)
        self.pack = model.batch_size

    def call(self, requests: Sequence[Any]) -> Answer:
        for text in requests:
            if not isinstance(text, str):
                raise TypeError(f"an embeddings request must be text, got {type(text).__name__}")
        batch = _Batch(list(requests), 0, 1, 1)
        body = batch.body({**self.model.documents_params, **self.params}, packed=False)
        reply = self._send(contract.EMBEDDINGS, self.model.endpoint, body)
        vectors = batch.vectors(reply, self.model.endpoint)
        return Answer(list(vectors), _wire_usage(reply))


class RunnableCaller(Caller):
    """Any LangChain Runnable, invoked once per request."""

    def __init__(self, runnable: Runnable[Any, Any], fmt: ResponseFormat) -> None:
        self.model = runnable
        self.fmt = fmt

    def with_model(self, model: Any) -> Caller:
        return RunnableCaller(model, self.fmt)

    def call(self, requests: Sequence[Any]) -> Answer:
        (request,) = requests
        output = self.model.invoke(request)
        usage = _usage(output) if isinstance(output, AIMessage) else None
        return Answer([self.fmt.parse(output, None)], usage)


def caller_for(model: Any, task: str, params: Mapping[str, Any], fmt: ResponseFormat) -> Caller:
    """The caller for `model` (a serving class or any Runnable) on `task`."""
    if isinstance(model, ChatServing):
        return ChatCaller(model, params, fmt)
    if fmt.structured and task != "chat":
        raise ValueError(f"response_format applies to chat endpoints and Runnables, not {task}")
    if isinstance(model, ServingLLM):
        return CompletionsCaller(model, params, fmt)
    if isinstance(model, ServingEmbeddings):
        return EmbeddingsCaller(model, params, fmt)
    if params:
        raise ValueError("model_parameters are sent to endpoints; bind them into a Runnable")
    return RunnableCaller(model, fmt)


def format_error(error: BaseException) -> str:
    """A row's error text: `"<error_code or status>: <message>"`."""
    if isinstance(error, ServingError):
        status = error.status_code
        code = error.error_code or (
            str(status) if status is not None and status >= 400 else type(error).__name__
        )
        return f"{code}: {error.message}"
    return f"{type(error).__name__}: {error}"


def is_rate_limited(error: BaseException) -> TypeGuard[ServingError]:
    """Whether `error` is a 429 (the runner backs off and retries the row)."""
    return isinstance(error, ServingError) and error.status_code == 429


def is_per_item(error: BaseException) -> bool:
    """Whether a packed call's failure may come from one item (then retried one by one)."""
    return isinstance(error, (ServingInvalidRequestError, TypeError, ValueError))


def _messages(request: Any) -> list[BaseMessage]:
    if isinstance(request, str):
        return [HumanMessage(content=request)]
    if isinstance(request, (list, tuple)):
        return convert_to_messages(request)
    raise TypeError(
        f"a chat request must be text or a list of messages, got {type(request).__name__}"
    )


def _usage(message: Any) -> Usage | None:
    return _counts(getattr(message, "usage_metadata", None))


def _wire_usage(reply: Mapping[str, Any]) -> Usage | None:
    return _counts(usage_from_wire(reply.get("usage")))


def _counts(usage: Mapping[str, Any] | None) -> Usage | None:
    if not usage:
        return None
    return {k: int(usage.get(k) or 0) for k in ("input_tokens", "output_tokens", "total_tokens")}

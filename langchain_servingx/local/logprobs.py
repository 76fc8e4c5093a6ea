"""Log probabilities of generated tokens, read from llama.cpp as each token is sampled.

llama-cpp-python computes ``logprobs`` only for models loaded with ``logits_all=True``,
which keeps a ``n_ctx x n_vocab`` float array (400 MB for SmolLM2 at 2048 tokens) for
every request. The logits of the position just sampled are in the context anyway, so
:class:`TokenLog` reads them right after each sample instead: the log-softmax of the
model's own distribution (before temperature, penalties and grammar, as OpenAI reports
them), the sampled token's log probability and the ``top`` most likely alternatives.

The same records make the two wire shapes: chat's ``{"content": [{"token", "logprob",
"bytes", "top_logprobs"}]}`` and the completions API's ``{"tokens", "token_logprobs",
"top_logprobs", "text_offset"}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TokenLog", "TokenRecord", "chat_logprobs", "completion_logprobs"]


@dataclass
class TokenRecord:
    """One sampled token: its text, log probability and the top alternatives."""

    piece: bytes  # a token may hold part of a UTF-8 character: its text is then lossy
    logprob: float
    top: list[tuple[bytes, float]]

    @property
    def text(self) -> str:
        """The token's text."""
        return _text(self.piece)

    def chat_entry(self) -> dict[str, Any]:
        """The chat ``logprobs.content`` item."""

        def item(piece: bytes, logprob: float) -> dict[str, Any]:
            return {"token": _text(piece), "logprob": logprob, "bytes": list(piece)}

        return {**item(self.piece, self.logprob), "top_logprobs": [item(*t) for t in self.top]}


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")


class TokenLog:
    """Collects :class:`TokenRecord` objects while a model generates (worker thread only)."""

    def __init__(self, top: int) -> None:
        self.top = top
        self._pending: list[TokenRecord] = []

    def record(self, llama: Any, token: int) -> None:
        """Record ``token``, just sampled by ``llama`` from its last position's logits."""
        import numpy as np

        n_vocab = llama.n_vocab()
        logits = np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(n_vocab,))
        logits = logits.astype(np.float64)
        peak = float(logits.max())
        normalizer = peak + float(np.log(np.exp(logits - peak).sum()))
        top: list[tuple[bytes, float]] = []
        if self.top:
            best = np.argpartition(-logits, self.top)[: self.top]
            best = best[np.argsort(-logits[best])]
            top = [(self._piece(llama, int(i)), float(logits[i]) - normalizer) for i in best]
        record = TokenRecord(self._piece(llama, token), float(logits[token]) - normalizer, top)
        self._pending.append(record)

    @staticmethod
    def _piece(llama: Any, token: int) -> bytes:
        piece: bytes = llama._model.detokenize([token])
        return piece

    def take(self) -> list[TokenRecord]:
        """The records since the last call (those of the text yielded meanwhile)."""
        taken, self._pending = self._pending, []
        return taken


def chat_logprobs(records: list[TokenRecord]) -> dict[str, Any]:
    """Chat-completions ``logprobs`` for one choice (or one chunk)."""
    return {"content": [record.chat_entry() for record in records]}


def completion_logprobs(records: list[TokenRecord], offset: int = 0) -> dict[str, Any]:
    """Completions-API ``logprobs``; ``offset`` is where the first token's text starts."""
    offsets = []
    for record in records:
        offsets.append(offset)
        offset += len(record.text)
    return {
        "tokens": [r.text for r in records],
        "token_logprobs": [r.logprob for r in records],
        "top_logprobs": [{_text(piece): lp for piece, lp in r.top} for r in records],
        "text_offset": offsets,
    }

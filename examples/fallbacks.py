"""Fallbacks between endpoints when one is rate limited, with the local fault injection.

``make examples`` serves ``flaky-chat`` with ``faults = "429=0.5"`` (see
``examples/gateway.toml``): half its requests answer 429 REQUEST_LIMIT_EXCEEDED. The
chain asks ``flaky-chat`` first, with no retries, and falls back to ``local-chat``
(``with_fallbacks`` catches the ``ServingRateLimitError``). Self-checking: exits non-zero
unless every question is answered, some by each endpoint (the fault is seeded, so the
run is reproducible).

    make examples
"""

from __future__ import annotations

import sys

from langchain_core.messages import AIMessage

from langchain_servingx import ChatServing, ServingRateLimitError

QUESTIONS = [f"Name a colour of the rainbow, number {i}." for i in range(1, 7)]


def main() -> int:
    primary = ChatServing(endpoint="flaky-chat", max_retries=0, temperature=0, max_tokens=16)
    backup = ChatServing(endpoint="local-chat", temperature=0, max_tokens=16)
    chain = primary.with_fallbacks([backup], exceptions_to_handle=(ServingRateLimitError,))
    answered_by: list[str] = []
    for question in QUESTIONS:
        reply: AIMessage = chain.invoke(question)
        # The served-model-name header says which endpoint's model answered.
        by = str(reply.response_metadata.get("served_model_name"))
        answered_by.append(by)
        print(f"{by:>12}: {reply.text.strip()!r}")
    counts = {name: answered_by.count(name) for name in sorted(set(answered_by))}
    print(f"answers by served model: {counts}")
    ok = set(counts) == {"flaky-smollm2", "smollm2-135m-instruct"}
    print("fallbacks: ok" if ok else "fallbacks: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

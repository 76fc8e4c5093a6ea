"""Parallel tool calls: after one call, a grammar-bound choice of another call or the end.

With ``parallel_tool_calls: true`` a chat answer may hold several calls, as the OpenAI
API's may. After the arguments of a call the prompt continues on a new line, as a
conversation history writes several calls, and a greedy step bound by
:func:`more_calls_grammar` picks either the opening of another call
(``functions.<name>:``) or the end of the turn (the grammar accepts the empty string,
so the model's end-of-turn token is allowed). The arguments of each further call are
generated under that tool's schema grammar; a call identical to an earlier one (same
name, same arguments) ends the answer instead of repeating it, and at most
``MAX_CALLS`` calls are made. Small models rarely stop on their own otherwise.

Without ``parallel_tool_calls: true`` an answer holds at most one call, as before: an
unset value keeps the single-call behaviour the recorded suites rely on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from langchain_servingx.local.prompting import ToolPlan, call_prefix

__all__ = ["MAX_CALLS", "ExtraCall", "canonical_arguments", "further_calls", "more_calls_grammar"]

MAX_CALLS = 8

# generate(prompt, grammar, greedy) -> (text, finish_reason) pieces
Generate = Callable[[str, str, bool], Iterator[tuple[str, str | None]]]


def more_calls_grammar(plan: ToolPlan) -> str:
    """GBNF: the opening of one more call, or nothing (the end of the turn)."""
    options = [json.dumps(call_prefix(t.function.name).rstrip("\n")) for t in plan.choices]
    return "root ::= (" + " | ".join(options) + ")?\n"


def canonical_arguments(arguments: str) -> str:
    """Arguments in one spelling (sorted keys), to recognise a repeated call."""
    try:
        return json.dumps(json.loads(arguments), sort_keys=True)
    except ValueError:
        return arguments.strip()


class ExtraCall:
    """A further call: the tool's name, its arguments and its finish reason."""

    def __init__(self, name: str, arguments: str, finish: str) -> None:
        self.name = name
        self.arguments = arguments
        self.finish = finish


def further_calls(
    plan: ToolPlan,
    prompt: str,
    first: tuple[str, str],
    grammars: dict[str, str],
    generate: Generate,
) -> Iterator[ExtraCall]:
    """The calls after ``first`` (``(name, arguments)``), whose call ends ``prompt``.

    ``prompt`` ends with the first call's opening; its arguments follow it. Each further
    call is generated whole before it is yielded, so a repeated call is never sent.
    """
    seen = {(first[0], canonical_arguments(first[1]))}
    prompt += first[1] + "\n"
    decision = more_calls_grammar(plan)
    while len(seen) < MAX_CALLS:
        decided = "".join(text for text, _ in generate(prompt, decision, True))
        name = decided.removeprefix("functions.").removesuffix(":")
        if not decided.startswith("functions.") or name not in grammars:
            return
        opened = prompt + call_prefix(name)
        finish, parts = "tool_calls", []
        for text, reason in generate(opened, grammars[name], False):
            parts.append(text)
            if reason == "length":
                finish = "length"
        arguments = "".join(parts)
        key = (name, canonical_arguments(arguments))
        if key in seen:
            return
        seen.add(key)
        yield ExtraCall(name, arguments, finish)
        if finish == "length":
            return
        prompt = opened + arguments + "\n"

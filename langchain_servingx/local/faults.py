"""Seeded fault injection: what production endpoints do to a chain, on demand.

A fault specification lists faults with the probability of each, drawn once per request::

    429=0.2,503=0.05,reset=0.02,cut-stream=0.02,slow=0.1:2s

- ``429``, ``500``, ``502``, ``503``, ``504``: answer that status in the serving error
  format (``REQUEST_LIMIT_EXCEEDED`` with ``Retry-After: 1`` for 429, ``Retry-After: 1``
  for 503 too) instead of running the model;
- ``reset``: drop the connection without an answer;
- ``cut-stream``: a streamed answer stops half way, the connection closed with no
  ``[DONE]`` (a request that does not stream is unaffected);
- ``slow=P:D``: wait ``D`` (``2s``, ``500ms``) before answering normally.

The probabilities add up to at most 1; one uniform draw per request picks at most one
fault. The generator is seeded (``--fault-seed``, or ``fault_seed`` per endpoint), so a
run of requests in the same order meets the same faults, which makes a resilience test
reproducible. Every injection is logged and counted; ``/health`` shows the counts.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_servingx.local.errors import EndpointError

__all__ = ["Fault", "FaultInjector", "FaultRule", "parse_faults"]

log = logging.getLogger("langchain_servingx.local")

FaultKind = Literal["status", "reset", "cut-stream", "slow"]

_STATUS_CODES = {
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    502: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)$")


@dataclass(frozen=True)
class FaultRule:
    """One entry of a specification: a fault and its probability."""

    label: str
    kind: FaultKind
    probability: float
    status: int = 0
    delay: float = 0.0


@dataclass(frozen=True)
class Fault:
    """A fault drawn for one request."""

    rule: FaultRule

    @property
    def label(self) -> str:
        """The fault's name in the specification (``429``, ``reset``, ``slow``, ...)."""
        return self.rule.label

    def error(self, endpoint: str) -> EndpointError:
        """The error answered for a status fault."""
        status = self.rule.status
        headers = {"Retry-After": "1"} if status in (429, 503) else {}
        return EndpointError(
            status,
            _STATUS_CODES[status],
            f"{_STATUS_CODES[status]}: injected fault on endpoint {endpoint!r} "
            f"(servingx-local --faults)",
            headers=headers,
        )


def _probability(text: str, part: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"fault {part!r}: {text!r} is not a probability") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"fault {part!r}: probability {value} is not between 0 and 1")
    return value


def parse_faults(spec: str) -> list[FaultRule]:
    """Parse ``"429=0.2,reset=0.02,slow=0.1:2s"``; a ``ValueError`` names the bad part."""
    rules: list[FaultRule] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        label, sep, value = part.partition("=")
        label = label.strip()
        if not sep:
            raise ValueError(f"fault {part!r}: expected NAME=PROBABILITY")
        if label == "slow":
            chance, colon, duration = value.partition(":")
            match = _DURATION.match(duration.strip())
            if not colon or match is None:
                raise ValueError(f"fault {part!r}: expected slow=PROBABILITY:DURATION (2s, 500ms)")
            seconds = float(match[1]) / (1000.0 if match[2] == "ms" else 1.0)
            rules.append(FaultRule(label, "slow", _probability(chance, part), delay=seconds))
        elif label in ("reset", "cut-stream"):
            kind: FaultKind = "reset" if label == "reset" else "cut-stream"
            rules.append(FaultRule(label, kind, _probability(value, part)))
        elif label.isdigit() and int(label) in _STATUS_CODES:
            status = int(label)
            rules.append(FaultRule(label, "status", _probability(value, part), status=status))
        else:
            known = ", ".join([*map(str, _STATUS_CODES), "reset", "cut-stream", "slow"])
            raise ValueError(f"fault {part!r}: unknown fault {label!r} (known: {known})")
    labels = [rule.label for rule in rules]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise ValueError(f"faults listed twice: {', '.join(twice)}")
    total = sum(rule.probability for rule in rules)
    if total > 1.0 + 1e-9:
        raise ValueError(f"fault probabilities add up to {total:g}, more than 1")
    return rules


@dataclass
class FaultInjector:
    """Draws at most one fault per request, reproducibly, and counts what it injected."""

    endpoint: str
    spec: str
    seed: int | None = None
    rules: list[FaultRule] = field(init=False)
    injected: Counter[str] = field(init=False, default_factory=Counter)
    requests: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.rules = parse_faults(self.spec)
        self._random = random.Random(self.seed)  # noqa: S311 - reproducible, not secret
        self._lock = threading.Lock()

    def draw(self, streaming: bool) -> Fault | None:
        """The fault for the next request, or ``None``.

        Exactly one draw per request, whatever the request, so the sequence of faults
        depends only on the seed and the order of requests. A ``cut-stream`` drawn for a
        request that does not stream is skipped (and not counted).
        """
        with self._lock:
            self.requests += 1
            point = self._random.random()
        for rule in self.rules:
            if point < rule.probability:
                if rule.kind == "cut-stream" and not streaming:
                    return None
                self.injected[rule.label] += 1
                log.warning("%s: injecting fault %s", self.endpoint, rule.label)
                return Fault(rule)
            point -= rule.probability
        return None

    def report(self) -> dict[str, Any]:
        """What ``/health`` shows: the specification, the seed and the counts."""
        return {
            "spec": self.spec,
            "seed": self.seed,
            "requests": self.requests,
            "injected": dict(self.injected),
        }

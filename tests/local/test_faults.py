"""Fault specifications and the seeded draw (no server needed)."""

from __future__ import annotations

from collections import Counter

import pytest

from langchain_servingx.local.faults import FaultInjector, parse_faults


def test_the_documented_specification() -> None:
    rules = parse_faults("429=0.2,503=0.05,reset=0.02,cut-stream=0.02,slow=0.1:2s")
    assert [(r.label, r.kind, r.probability) for r in rules] == [
        ("429", "status", 0.2),
        ("503", "status", 0.05),
        ("reset", "reset", 0.02),
        ("cut-stream", "cut-stream", 0.02),
        ("slow", "slow", 0.1),
    ]
    assert rules[-1].delay == 2.0
    assert parse_faults("slow=1:250ms")[0].delay == 0.25


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("418=0.1", "unknown fault '418'"),
        ("429", "expected NAME=PROBABILITY"),
        ("429=x", "'x' is not a probability"),
        ("429=1.5", "not between 0 and 1"),
        ("429=0.6,503=0.6", "add up to 1.2, more than 1"),
        ("slow=0.1", "expected slow=PROBABILITY:DURATION"),
        ("slow=0.1:2h", "expected slow=PROBABILITY:DURATION"),
        ("reset=0.1,reset=0.2", "faults listed twice: reset"),
    ],
)
def test_bad_specifications_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_faults(spec)


def draws(seed: int, n: int = 2000, streaming: bool = True) -> list[str | None]:
    injector = FaultInjector("e", "429=0.2,503=0.05,reset=0.05,cut-stream=0.1,slow=0.1:1s", seed)
    return [fault.label if (fault := injector.draw(streaming)) else None for _ in range(n)]


def test_seeded_draws_repeat_and_follow_the_probabilities() -> None:
    first = draws(seed=7)
    assert first == draws(seed=7)
    assert first != draws(seed=8)
    counts = Counter(first)
    # 2000 draws: each share within a few points of its probability.
    assert abs(counts["429"] / 2000 - 0.2) < 0.03
    assert abs(counts["cut-stream"] / 2000 - 0.1) < 0.03
    assert abs(counts[None] / 2000 - 0.5) < 0.04


def test_cut_stream_spares_requests_that_do_not_stream() -> None:
    injector = FaultInjector("e", "cut-stream=1", seed=0)
    assert injector.draw(streaming=False) is None
    fault = injector.draw(streaming=True)
    assert fault is not None
    assert fault.label == "cut-stream"
    assert injector.report() == {
        "spec": "cut-stream=1",
        "seed": 0,
        "requests": 2,
        "injected": {"cut-stream": 1},
    }


def test_status_faults_answer_in_the_serving_format() -> None:
    fault = FaultInjector("my-endpoint", "429=1", seed=0).draw(streaming=False)
    assert fault is not None
    error = fault.error("my-endpoint")
    assert error.status == 429
    assert error.body()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert "injected fault on endpoint 'my-endpoint'" in error.message
    assert error.headers == {"Retry-After": "1"}

"""ai_query on pandas, live against the embedded local endpoint's real models."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from langchain_servingx import ServingEmbeddings, ServingNotFoundError, ai_query
from tests.local.batch_data import CITY_PROMPT, SUMMARY_PROMPT, TEXTS, City


@pytest.fixture
def df() -> pd.DataFrame:
    return pd.DataFrame({"text": TEXTS}, index=[101, 102, 103, 104])


def test_chat_summaries(local_env: str, df: pd.DataFrame) -> None:
    out = ai_query(
        df,
        "local-chat",
        SUMMARY_PROMPT,
        model_parameters={"max_tokens": 24, "temperature": 0},
        fail_on_error=False,
        usage_column="usage",
        progress=False,
    )
    assert list(out.index) == [101, 102, 103, 104]
    assert list(out["error"]) == [None] * 4
    assert all(isinstance(r, str) and r.strip() for r in out["result"])
    assert out["result"][101] == out["result"][103]  # one request for equal rows
    usage = out["usage"]
    assert all(
        usage[i]["output_tokens"] > 0 and usage[i]["input_tokens"] > 0 for i in (101, 102, 104)
    )
    # Row 103 was answered by row 101's request: it cost nothing, and the rows add up.
    assert usage[103] == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    assert out.attrs["ai_query"]["requests"] == 3
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        assert out.attrs["ai_query"][key] == sum(u[key] for u in usage)


def test_completions(local_env: str, df: pd.DataFrame) -> None:
    out = ai_query(
        df,
        "local-completions",
        "{text} In other words,",
        task="completions",
        model_parameters={"max_tokens": 12, "temperature": 0},
        progress=False,
    )
    assert all(isinstance(r, str) for r in out["result"])
    assert out["result"][101] == out["result"][103]


def test_usage_of_packed_embeddings(local_env: str, df: pd.DataFrame) -> None:
    with ServingEmbeddings(endpoint="local-embeddings", batch_size=1) as model:
        one_each = ai_query(df, model, "text", usage_column="usage", progress=False)
    packed = ai_query(
        df, "local-embeddings", "text", task="embeddings", usage_column="usage", progress=False
    )
    # One text per request: each row's count is the tokenizer's, exact.
    single = list(one_each["usage"])
    assert all(u["input_tokens"] > 0 for u in single[:2])
    # Packed (three unique texts in one request): the endpoint counts the request only, so
    # no row gets a number, and the totals hold the same tokens as the rows sent one by one.
    assert list(packed["usage"]) == [None] * 4
    assert packed.attrs["ai_query"]["calls"] == 1
    assert packed.attrs["ai_query"]["input_tokens"] == sum(u["input_tokens"] for u in single)


def test_embeddings_match_serving_embeddings(local_env: str, df: pd.DataFrame) -> None:
    out = ai_query(df, "local-embeddings", "text", task="embeddings", progress=False)
    vectors = list(out["result"])
    assert all(len(v) == 384 for v in vectors)
    expected = ServingEmbeddings(endpoint="local-embeddings").embed_documents(TEXTS)
    for got, want in zip(vectors, expected, strict=True):
        assert all(
            math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) for a, b in zip(got, want, strict=True)
        )


def test_structured_output(local_env: str) -> None:
    df = pd.DataFrame({"place": ["Paris", "Tokyo", "Cairo"]})
    out = ai_query(
        df,
        "local-chat",
        CITY_PROMPT,
        response_format=City,
        model_parameters={"max_tokens": 48, "temperature": 0},
        fail_on_error=False,
        progress=False,
    )
    for result, error in zip(out["result"], out["error"], strict=True):
        # The endpoint constrains its output to the schema: every answer parses.
        assert error is None
        assert set(result) == {"city", "country"}
        assert all(isinstance(v, str) for v in result.values())


def test_unknown_endpoint(local_env: str, df: pd.DataFrame) -> None:
    # By name alone the listing is asked for the task, and the name is refused at once.
    with pytest.raises(ServingNotFoundError, match="no endpoint named 'local-chatt'"):
        ai_query(df, "local-chatt", "text", progress=False)
    # With the task given, every row is sent and fails in its own row.
    out = ai_query(
        df.head(2), "local-chatt", "text", task="chat", fail_on_error=False, progress=False
    )
    assert list(out["result"]) == [None, None]
    assert all(
        e.startswith("ENDPOINT_NOT_FOUND") or e.startswith("RESOURCE_DOES_NOT_EXIST")
        for e in out["error"]
    ), list(out["error"])

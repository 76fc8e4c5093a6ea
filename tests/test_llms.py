"""ServingLLM against the local scripted endpoint: packing, fallback, streaming, errors."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.load import dumps, loads
from langchain_core.outputs import LLMResult

from langchain_servingx import (
    ServingAuthenticationError,
    ServingInvalidRequestError,
    ServingLLM,
    ServingNotFoundError,
    ServingRateLimitError,
    ServingResponseError,
    ServingServerError,
    ServingStreamError,
)
from tests.conftest import TEST_TOKEN
from tests.serving_server import (
    RecordedRequest,
    Reply,
    ServingTestServer,
    completion_chunk,
    completion_response,
)

PATH = "/serving-endpoints/completer/invocations"
USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def _llm(**kwargs: Any) -> ServingLLM:
    return ServingLLM(endpoint="completer", max_retries=0, **kwargs)


def _prompts(request: RecordedRequest) -> list[str]:
    prompt = request.json["prompt"]
    return [prompt] if isinstance(prompt, str) else prompt


def _echo(*, n: int = 1, refuse_lists: bool = False, delay: float = 0.0) -> Any:
    """Answer `p` with `re:p` (candidate k of n: `re:p#k`), choices in reverse index order."""

    def handler(request: RecordedRequest) -> Reply:
        if refuse_lists and isinstance(request.json["prompt"], list):
            return Reply.json({"error_code": "BAD_REQUEST", "message": "prompt must be a str"}, 400)
        texts = [
            f"re:{p}" if n == 1 else f"re:{p}#{k}" for p in _prompts(request) for k in range(n)
        ]
        indexes = list(range(len(texts)))[::-1]
        return Reply.json(
            completion_response([texts[i] for i in indexes], indexes=indexes), delay=delay
        )

    return handler


class _Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.ends: list[LLMResult] = []
        self.starts = 0

    def on_llm_start(self, serialized: Any, prompts: list[str], **kwargs: Any) -> None:
        self.starts += 1

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        self.ends.append(response)


# -- invoke and parameters -------------------------------------------------------------


def test_invoke_sends_a_string_prompt_and_only_set_params(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo())
    assert _llm().invoke("Hi") == "re:Hi"
    (request,) = serving_env.requests
    assert request.json == {"prompt": "Hi"}
    assert request.headers["authorization"] == f"Bearer {TEST_TOKEN}"


def test_constructor_params_and_per_call_overrides(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo())
    serving_env.handle("/serving-endpoints/other/invocations", _echo())
    llm = _llm(
        max_tokens=32,
        temperature=0.2,
        top_p=0.9,
        stop=["\n"],
        extra_params={"top_k": 40},
    )
    llm.invoke("a")
    llm.invoke("b", stop=["END"], temperature=0.7, top_k=5, model="other")
    first, second = serving_env.requests
    assert first.json == {
        "prompt": "a",
        "max_tokens": 32,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n"],
        "top_k": 40,
    }
    assert second.path == "/serving-endpoints/other/invocations"
    assert second.json == {
        "prompt": "b",
        "max_tokens": 32,
        "temperature": 0.7,
        "top_p": 0.9,
        "stop": ["END"],
        "top_k": 5,
    }


def test_openai_compatible_route(serving_env: ServingTestServer) -> None:
    serving_env.handle("/serving-endpoints/completions", _echo())
    assert _llm(openai_compatible=True).invoke("x") == "re:x"
    assert serving_env.requests[0].json == {"prompt": "x", "model": "completer"}


def test_generate_reports_usage_finish_reason_and_logprobs(
    serving_env: ServingTestServer,
) -> None:
    serving_env.reply(
        PATH,
        Reply.json(completion_response(["one", "two"], finish_reason="length")),
        Reply.json(completion_response(["three"])),
    )
    result = _llm(prompts_per_request=2).generate(["a", "b", "c"])
    assert [[g.text for g in gens] for gens in result.generations] == [["one"], ["two"], ["three"]]
    first = result.generations[0][0]
    assert first.generation_info == {"finish_reason": "length", "logprobs": None}
    assert result.llm_output == {
        "token_usage": {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16},
        "model_name": "completer",
    }


# -- packing prompts into list requests ------------------------------------------------


def test_batch_packs_prompts_and_keeps_prompt_order(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo())
    prompts = [f"p{i}" for i in range(5)]
    assert _llm(prompts_per_request=2).batch(prompts) == [f"re:{p}" for p in prompts]
    sent = sorted((r.json["prompt"] for r in serving_env.requests), key=str)
    assert sent == [["p0", "p1"], ["p2", "p3"], "p4"]


def test_batch_default_packs_16(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo())
    prompts = [f"p{i}" for i in range(20)]
    assert _llm().batch(prompts) == [f"re:{p}" for p in prompts]
    assert sorted(len(_prompts(r)) for r in serving_env.requests) == [4, 16]


def test_batch_max_concurrency_counts_requests_and_still_packs(
    serving_env: ServingTestServer,
) -> None:
    serving_env.handle(PATH, _echo(delay=0.1))
    prompts = [f"p{i}" for i in range(12)]
    result = _llm(prompts_per_request=2).batch(prompts, config={"max_concurrency": 3})
    assert result == [f"re:{p}" for p in prompts]
    assert sorted(len(_prompts(r)) for r in serving_env.requests) == [2] * 6
    assert serving_env.max_in_flight == 3


def test_n_candidates_map_index_i_to_prompt_i_div_n(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo(n=2))
    result = _llm(n=2).generate(["a", "b", "c"])
    assert [[g.text for g in gens] for gens in result.generations] == [
        ["re:a#0", "re:a#1"],
        ["re:b#0", "re:b#1"],
        ["re:c#0", "re:c#1"],
    ]
    assert serving_env.requests[0].json == {"prompt": ["a", "b", "c"], "n": 2}


def test_batch_callbacks_see_one_run_per_prompt(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo())
    recorder = _Recorder()
    _llm(prompts_per_request=4).batch(["a", "b", "c"], config={"callbacks": [recorder]})
    assert recorder.starts == 3
    assert sorted(end.generations[0][0].text for end in recorder.ends) == ["re:a", "re:b", "re:c"]
    assert len(serving_env.requests) == 1


async def test_abatch_packs_and_orders(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo())
    prompts = [f"p{i}" for i in range(5)]
    assert await _llm(prompts_per_request=3).abatch(prompts) == [f"re:{p}" for p in prompts]
    assert sorted(len(_prompts(r)) for r in serving_env.requests) == [2, 3]  # sent concurrently


async def test_ainvoke(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo())
    assert await _llm(temperature=0.0).ainvoke("Hi", stop=["\n"]) == "re:Hi"
    assert serving_env.requests[0].json == {"prompt": "Hi", "temperature": 0.0, "stop": ["\n"]}


# -- endpoints that refuse list prompts ------------------------------------------------


def test_list_refusal_falls_back_and_is_remembered(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo(refuse_lists=True))
    llm = _llm(prompts_per_request=2)
    prompts = ["a", "b", "c", "d", "e"]
    assert llm.batch(prompts) == [f"re:{p}" for p in prompts]
    sent = [r.json["prompt"] for r in serving_env.requests_to(PATH)]
    # The lists sent at once are refused, then every prompt goes alone.
    lists = [p for p in sent if isinstance(p, list)]
    assert ["a", "b"] in lists
    assert sorted(p for p in sent if isinstance(p, str)) == ["a", "b", "c", "d", "e"]
    serving_env.requests.clear()
    assert llm.batch(["x", "y"]) == ["re:x", "re:y"]
    assert sorted(r.json["prompt"] for r in serving_env.requests_to(PATH)) == ["x", "y"]


def test_a_500_with_an_empty_message_teaches_the_fallback_too(
    serving_env: ServingTestServer,
) -> None:
    # llama.cpp's own server asserts on a list prompt and answers 500 with no message.
    def handler(request: RecordedRequest) -> Reply:
        if isinstance(request.json["prompt"], list):
            return Reply.json({"error_code": "INTERNAL_ERROR", "message": ""}, 500)
        return _echo()(request)

    serving_env.handle(PATH, handler)
    llm = _llm()
    assert llm.batch(["a", "b"]) == ["re:a", "re:b"]
    assert llm.batch(["c", "d"]) == ["re:c", "re:d"]
    first, *singles = [r.json["prompt"] for r in serving_env.requests_to(PATH)]
    assert first == ["a", "b"]
    assert sorted(singles[:2]) == ["a", "b"]  # single prompts run concurrently
    assert sorted(singles[2:]) == ["c", "d"]


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, ServingAuthenticationError), (404, ServingNotFoundError), (429, ServingRateLimitError)],
)
def test_failures_that_are_not_about_the_body_are_not_probed(
    serving_env: ServingTestServer, status: int, error: type[Exception]
) -> None:
    serving_env.reply(PATH, Reply.json({"error_code": "X", "message": "no"}, status))
    with pytest.raises(error):
        _llm().batch(["a", "b"])
    assert len(serving_env.requests_to(PATH)) == 1


def _fail_first_list_and(single: str, reply: Reply) -> Any:
    """Answer the first list and the single prompt `single` with `reply`; echo the rest."""
    lists = 0
    echo = _echo()

    def handler(request: RecordedRequest) -> Reply:
        nonlocal lists
        prompt = request.json["prompt"]
        if isinstance(prompt, list):
            lists += 1
            if lists == 1:
                return reply
        elif prompt == single:
            return reply
        return echo(request)

    return handler


def test_a_500_on_the_single_prompt_too_is_raised_and_not_remembered(
    serving_env: ServingTestServer,
) -> None:
    failure = Reply.json({"error_code": "INTERNAL_ERROR", "message": "model crashed"}, 500)
    serving_env.handle(PATH, _fail_first_list_and("a", failure))
    llm = _llm()
    with pytest.raises(ServingServerError, match="model crashed"):
        llm.batch(["a", "b"])
    first, *singles = [r.json["prompt"] for r in serving_env.requests_to(PATH)]
    assert first == ["a", "b"]
    assert sorted(singles) == ["a", "b"]  # the list's prompts alone, concurrently
    serving_env.requests.clear()
    assert llm.batch(["a", "b"]) == ["re:a", "re:b"]  # nothing learnt: a list again
    assert [r.json["prompt"] for r in serving_env.requests_to(PATH)] == [["a", "b"]]


async def test_async_list_refusal_falls_back(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo(refuse_lists=True))
    llm = _llm()
    assert await llm.abatch(["a", "b"]) == ["re:a", "re:b"]
    first, *singles = [r.json["prompt"] for r in serving_env.requests_to(PATH)]
    assert first == ["a", "b"]
    assert sorted(singles) == ["a", "b"]  # the single prompts run concurrently
    serving_env.requests.clear()
    await llm.abatch(["c", "d"])
    assert sorted(r.json["prompt"] for r in serving_env.requests_to(PATH)) == ["c", "d"]


def test_a_400_that_is_not_about_lists_is_raised_and_not_remembered(
    serving_env: ServingTestServer,
) -> None:
    refusal = Reply.json(
        {"error_code": "INVALID_PARAMETER_VALUE", "message": "bad temperature"}, 400
    )
    serving_env.handle(PATH, _fail_first_list_and("a", refusal))
    llm = _llm()
    with pytest.raises(ServingInvalidRequestError, match="bad temperature"):
        llm.batch(["a", "b"])
    first, *singles = [r.json["prompt"] for r in serving_env.requests_to(PATH)]
    assert (first, sorted(singles)) == (["a", "b"], ["a", "b"])
    serving_env.requests.clear()
    assert llm.batch(["a", "b"]) == ["re:a", "re:b"]
    assert [r.json["prompt"] for r in serving_env.requests_to(PATH)] == [["a", "b"]]


OTHER = "/serving-endpoints/strict/invocations"


def test_list_refusal_is_per_endpoint(serving_env: ServingTestServer) -> None:
    """A per-call model= that refuses lists leaves the default endpoint on lists."""
    serving_env.handle(OTHER, _echo(refuse_lists=True))
    serving_env.handle(PATH, _echo())
    llm = _llm()
    assert llm.batch(["a", "b"], model="strict") == ["re:a", "re:b"]
    assert llm.batch(["c", "d"]) == ["re:c", "re:d"]
    assert [r.json["prompt"] for r in serving_env.requests_to(PATH)] == [["c", "d"]]
    assert llm.batch(["e", "f"], model="strict") == ["re:e", "re:f"]  # remembered there
    first, *singles = [r.json["prompt"] for r in serving_env.requests_to(OTHER)]
    assert first == ["a", "b"]
    assert sorted(singles[:2]) == ["a", "b"]  # single prompts run concurrently
    assert sorted(singles[2:]) == ["e", "f"]


def test_one_bad_prompt_is_not_a_list_refusal(serving_env: ServingTestServer) -> None:
    """The list failed because of one prompt (it fails alone too): raised, nothing learnt."""

    def handler(request: RecordedRequest) -> Reply:
        if "bad" in _prompts(request):
            return Reply.json({"error_code": "BAD_REQUEST", "message": "prompt 'bad'"}, 400)
        return _echo()(request)

    serving_env.handle(PATH, handler)
    llm = _llm()
    with pytest.raises(ServingInvalidRequestError, match="prompt 'bad'"):
        llm.batch(["a", "bad", "c"])
    first, *singles = [r.json["prompt"] for r in serving_env.requests_to(PATH)]
    assert first == ["a", "bad", "c"]
    assert sorted(singles) == ["a", "bad", "c"]  # the list's prompts alone, concurrently
    serving_env.requests.clear()
    assert llm.batch(["x", "y"]) == ["re:x", "re:y"]
    assert [r.json["prompt"] for r in serving_env.requests_to(PATH)] == [["x", "y"]]


def test_list_refusal_is_forgotten_with_the_configuration(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo(refuse_lists=True))
    llm = _llm()
    llm.batch(["a", "b"])
    assert llm._lists_refused == {"completer"}
    assert llm.model_copy()._lists_refused == set()  # a copy starts afresh
    assert llm._lists_refused == {"completer"}  # (and does not empty the original's)
    llm.timeout = 30.0
    assert llm._lists_refused == set()
    serving_env.requests.clear()
    llm.batch(["c", "d"])
    assert [r.json["prompt"] for r in serving_env.requests_to(PATH)] == [["c", "d"], "c", "d"]


def test_context_overflow_is_not_a_list_refusal(serving_env: ServingTestServer) -> None:
    serving_env.reply(
        PATH, Reply.json({"message": "This model's maximum context length is 4096 tokens"}, 400)
    )
    with pytest.raises(ServingInvalidRequestError, match="maximum context length"):
        _llm().batch(["a", "b"])
    assert len(serving_env.requests) == 1


# -- malformed responses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (completion_response(["x"]), "expected 2 choices, got 1"),
        (completion_response(["x", "y"], indexes=[1, 1]), "appears twice"),
        (completion_response(["x", "y"], indexes=[0, 2]), "out of range"),
        ({"choices": None}, "expected a 'choices' list"),
        ({"choices": [{"index": 0, "text": 1}, {"index": 1, "text": "y"}]}, "no 'text' string"),
    ],
)
def test_malformed_reply_names_endpoint_and_prompts(
    serving_env: ServingTestServer, body: dict[str, Any], problem: str
) -> None:
    serving_env.handle(
        PATH,
        lambda r: Reply.json(
            body if r.json["prompt"][0] == "c" else completion_response(["o", "k"])
        ),
    )
    with pytest.raises(ServingResponseError) as info:
        _llm(prompts_per_request=2).batch(["a", "b", "c", "d"])
    message = str(info.value)
    assert "endpoint 'completer'" in message
    assert "request for prompts 2-3" in message
    assert problem in message


# -- streaming -------------------------------------------------------------------------

_STREAM = [
    completion_chunk("Hel"),
    completion_chunk("lo"),
    completion_chunk("!", finish_reason="stop"),
    completion_chunk(None, choices=False, usage=USAGE),
]


def test_stream_yields_text_chunks(serving_env: ServingTestServer) -> None:
    serving_env.reply(PATH, Reply.sse(_STREAM))
    recorder = _Recorder()
    parts = list(_llm().stream("Hi", config={"callbacks": [recorder]}, max_tokens=8))
    assert parts == ["Hel", "lo", "!"]
    assert recorder.tokens == parts
    assert serving_env.requests[0].json == {"prompt": "Hi", "max_tokens": 8, "stream": True}
    (end,) = recorder.ends
    info = end.generations[0][0].generation_info
    assert info == {"finish_reason": "stop", "usage": USAGE}


async def test_astream_yields_text_chunks(serving_env: ServingTestServer) -> None:
    serving_env.reply(PATH, Reply.sse(_STREAM))
    assert [part async for part in _llm().astream("Hi")] == ["Hel", "lo", "!"]


def test_stream_with_running_usage_takes_the_last_total(serving_env: ServingTestServer) -> None:
    running = [
        completion_chunk("a", usage={"prompt_tokens": 5, "completion_tokens": 1}),
        completion_chunk("b", usage={"prompt_tokens": 5, "completion_tokens": 2}),
        completion_chunk(
            "", finish_reason="length", usage={"prompt_tokens": 5, "completion_tokens": 2}
        ),
    ]
    serving_env.reply(PATH, Reply.sse(running))
    result = _llm(streaming=True).generate(["Hi"])
    assert result.generations[0][0].text == "ab"
    assert result.generations[0][0].generation_info == {"finish_reason": "length", "logprobs": None}
    assert result.llm_output == {
        "token_usage": {"prompt_tokens": 5, "completion_tokens": 2},
        "model_name": "completer",
    }


def test_streaming_invoke_reports_tokens_to_callbacks(serving_env: ServingTestServer) -> None:
    serving_env.reply(PATH, Reply.sse(_STREAM))
    recorder = _Recorder()
    assert _llm(streaming=True).invoke("Hi", config={"callbacks": [recorder]}) == "Hello!"
    assert recorder.tokens == ["Hel", "lo", "!"]
    assert serving_env.requests[0].json["stream"] is True


async def test_async_streaming_invoke(serving_env: ServingTestServer) -> None:
    serving_env.reply(PATH, Reply.sse(_STREAM))
    result = await _llm(streaming=True).agenerate(["Hi"])
    assert result.generations[0][0].text == "Hello!"
    assert result.llm_output is not None
    assert result.llm_output["token_usage"] == USAGE


def test_streaming_model_still_packs_batches(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo())
    assert _llm(streaming=True).batch(["a", "b"]) == ["re:a", "re:b"]
    assert serving_env.requests[0].json == {"prompt": ["a", "b"]}


def test_stream_refuses_several_candidates(serving_env: ServingTestServer) -> None:
    with pytest.raises(ValueError, match="n=2 needs invoke"):
        list(_llm(n=2).stream("Hi"))
    assert serving_env.requests == []


def test_stream_cut_short_is_an_error(serving_env: ServingTestServer) -> None:
    serving_env.reply(PATH, Reply.sse([completion_chunk("Hel")], done=False))
    with pytest.raises(ServingStreamError, match="cut short"):
        list(_llm().stream("Hi"))


@pytest.mark.parametrize("choices", [["text"], [{"index": 0, "text": 3}], {"text": "a"}])
def test_malformed_stream_chunk_is_an_error(serving_env: ServingTestServer, choices: Any) -> None:
    chunk = {**completion_chunk("a", finish_reason="stop"), "choices": choices}
    serving_env.reply(PATH, Reply.sse([chunk]))
    with pytest.raises(ServingStreamError, match=r"endpoint 'completer'.*choice"):
        list(_llm().stream("Hi"))


# -- errors ----------------------------------------------------------------------------


def test_http_errors_map_to_typed_classes(serving_env: ServingTestServer) -> None:
    serving_env.reply(
        PATH,
        Reply.json({"error_code": "UNAUTHENTICATED", "message": "expired"}, 401),
        Reply.json({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow"}, 429),
    )
    llm = _llm()
    with pytest.raises(ServingAuthenticationError, match="expired"):
        llm.invoke("a")
    with pytest.raises(ServingRateLimitError, match="slow"):
        llm.batch(["a", "b"])


async def test_async_errors(serving_env: ServingTestServer) -> None:
    llm = ServingLLM(endpoint="missing", max_retries=0)
    with pytest.raises(ServingNotFoundError, match="no route"):
        await llm.ainvoke("a")
    with pytest.raises(ServingNotFoundError):
        await llm.abatch(["a", "b"])


def test_bad_n_is_refused(serving_env: ServingTestServer) -> None:
    with pytest.raises(ValueError, match="n must be a positive integer"):
        _llm().invoke("a", n=0)


# -- serialization and tracing ---------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The function `loads` is in beta")
def test_secrets_absent_from_repr_and_dumps(server: ServingTestServer) -> None:
    llm = ServingLLM(
        model="completer", host=server.url, token=TEST_TOKEN, client_id=None, temperature=0.1
    )
    assert TEST_TOKEN not in repr(llm)
    dumped = dumps(llm)
    assert TEST_TOKEN not in dumped
    assert "DATABRICKS_TOKEN" in dumped
    restored = loads(
        dumped,
        secrets_map={"DATABRICKS_TOKEN": TEST_TOKEN},
        valid_namespaces=["langchain_servingx"],
        allowed_objects=[ServingLLM],
    )
    assert isinstance(restored, ServingLLM)
    assert restored.endpoint == "completer"
    assert restored.temperature == 0.1
    assert restored.token is not None
    assert restored.token.get_secret_value() == TEST_TOKEN


def test_ls_params() -> None:
    llm = ServingLLM(endpoint="completer", temperature=0.3, max_tokens=10)
    params = llm._get_ls_params(stop=["x"])
    assert params == {
        "ls_provider": "servingx",
        "ls_model_type": "llm",
        "ls_model_name": "completer",
        "ls_temperature": 0.3,
        "ls_max_tokens": 10,
        "ls_stop": ["x"],
    }
    assert llm._get_ls_params(model="other")["ls_model_name"] == "other"
    assert llm._llm_type == "servingx-completions"


# -- batches: concurrent groups, failures kept apart -----------------------------------


def _fail_group_of(prompt: str, status: int = 400) -> Any:
    """Echo every request, but fail the one whose prompts include `prompt`."""
    echo = _echo()

    def handler(request: RecordedRequest) -> Reply:
        if prompt in _prompts(request):
            return Reply.json({"error_code": "BAD_REQUEST", "message": f"{prompt} is bad"}, status)
        return echo(request)

    return handler


def test_batch_groups_go_out_concurrently(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo(delay=0.1))
    prompts = [f"p{i}" for i in range(64)]
    assert _llm().batch(prompts) == [f"re:{p}" for p in prompts]
    assert len(serving_env.requests) == 4
    assert serving_env.max_in_flight == 4  # the default max_concurrency


def test_batch_return_exceptions_costs_a_failed_group_only_its_prompts(
    serving_env: ServingTestServer,
) -> None:
    serving_env.handle(PATH, _fail_group_of("p20", status=500))
    prompts = [f"p{i}" for i in range(50)]
    results = _llm().batch(prompts, return_exceptions=True)
    failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
    assert failed == list(range(16, 32))  # the one 16-prompt group that holds p20
    assert all(isinstance(results[i], ServingServerError) for i in failed)
    assert "p20 is bad" in str(results[16])
    assert [results[i] for i in range(50) if i not in failed] == [
        f"re:p{i}" for i in range(50) if i not in failed
    ]


async def test_abatch_return_exceptions_keeps_every_other_result(
    serving_env: ServingTestServer,
) -> None:
    serving_env.handle(PATH, _fail_group_of("p3", status=503))
    results = await _llm(prompts_per_request=2).abatch(
        [f"p{i}" for i in range(8)], return_exceptions=True
    )
    assert [isinstance(r, ServingServerError) for r in results] == [
        False,
        False,
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    assert results[7] == "re:p7"


def test_batch_failure_raises_the_groups_error_naming_its_prompts(
    serving_env: ServingTestServer,
) -> None:
    serving_env.handle(PATH, _fail_group_of("p5"))
    with pytest.raises(ServingInvalidRequestError, match="p5 is bad"):
        _llm(prompts_per_request=2).batch([f"p{i}" for i in range(8)])


def test_batch_failure_does_not_start_the_remaining_groups(
    serving_env: ServingTestServer,
) -> None:
    serving_env.handle(PATH, _fail_group_of("p0"))
    with pytest.raises(ServingInvalidRequestError):
        _llm(prompts_per_request=1).batch(
            [f"p{i}" for i in range(40)], config={"max_concurrency": 2}
        )
    assert len(serving_env.requests) < 40


# -- generate(): one call's groups concurrently ----------------------------------------


def test_generate_sends_its_groups_concurrently_once_lists_are_known(
    serving_env: ServingTestServer,
) -> None:
    serving_env.handle(PATH, _echo(delay=0.1))
    llm = _llm(prompts_per_request=4, max_concurrency=3)
    prompts = [f"p{i}" for i in range(20)]
    result = llm.generate(prompts)
    assert [g[0].text for g in result.generations] == [f"re:{p}" for p in prompts]
    # The first list goes alone (the endpoint might refuse lists), then the other four
    # groups go out three at a time.
    sent = [r.json["prompt"] for r in serving_env.requests_to(PATH)]
    assert sent[0] == ["p0", "p1", "p2", "p3"]
    assert len(sent) == 5
    assert serving_env.max_in_flight == 3
    serving_env.requests.clear()
    llm.generate(prompts)  # known to take lists: every group at once, up to the limit
    assert len(serving_env.requests_to(PATH)) == 5


async def test_agenerate_sends_its_groups_concurrently(serving_env: ServingTestServer) -> None:
    serving_env.handle(PATH, _echo(delay=0.1))
    llm = _llm(prompts_per_request=2, max_concurrency=4)
    prompts = [f"p{i}" for i in range(18)]
    result = await llm.agenerate(prompts)
    assert [g[0].text for g in result.generations] == [f"re:{p}" for p in prompts]
    assert serving_env.max_in_flight == 4
    assert result.llm_output is not None
    assert len(serving_env.requests_to(PATH)) == 9


def test_generate_with_a_refusing_endpoint_probes_once_then_sends_singles(
    serving_env: ServingTestServer,
) -> None:
    serving_env.handle(PATH, _echo(refuse_lists=True, delay=0.05))
    llm = _llm(prompts_per_request=3, max_concurrency=4)
    prompts = [f"p{i}" for i in range(9)]
    result = llm.generate(prompts)
    assert [g[0].text for g in result.generations] == [f"re:{p}" for p in prompts]
    sent = [r.json["prompt"] for r in serving_env.requests_to(PATH)]
    assert [p for p in sent if isinstance(p, list)] == [["p0", "p1", "p2"]]  # one list only
    assert sorted(p for p in sent if isinstance(p, str)) == sorted(prompts)
    assert serving_env.max_in_flight > 1  # the singles went out concurrently


def test_generate_failure_in_a_concurrent_group_raises_that_groups_error(
    serving_env: ServingTestServer,
) -> None:
    serving_env.handle(PATH, _fail_group_of("p9", status=401))
    llm = _llm(prompts_per_request=2, max_concurrency=4)
    llm.generate(["a", "b"])  # lists are known to be taken
    with pytest.raises(ServingAuthenticationError, match="p9 is bad"):
        llm.generate([f"p{i}" for i in range(12)])

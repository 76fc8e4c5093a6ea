"""Throughput of `embed_documents` and `ChatServing.batch`, side by side in one run.

Against one canned endpoint on 127.0.0.1 (its own process, so its work does not hold the
clients' GIL), with rounds interleaved so that machine noise hits every contender alike:

- embeddings: 1,000 texts of 384-dim vectors in requests of 16 texts, by
  `ServingEmbeddings.embed_documents`, by `OpenAIEmbeddings` (same batch size, pointed at the
  OpenAI-compatible route), and by a floor: a raw `httpx` thread pool posting the same
  requests and decoding base64 with `array`;
- batch: 200 chat calls at concurrency 32 against a 50 ms server, by `ChatServing.batch`,
  by `ChatOpenAI.batch`, by the thinnest possible chat model's `batch` (a `BaseChatModel`
  whose `_generate` is one raw round trip: langchain-core's own batch cost), and by a floor:
  a raw `httpx` thread pool of 32 posting the calls.

Every contender is built once and warmed up, as an application would hold it; the server
counts the connections each run opens (a pool smaller than the concurrency reopens some on
every run), and the first run of a fresh `ChatServing` is counted apart. Targets: embeddings
<= 0.9 x OpenAIEmbeddings, batch throughput >= 0.95 x the floor, new connections <= the
concurrency. The heap left by warm-up is frozen first (`settle_heap`). Writes
`benchmarks/throughput.png`.

Run: `.venv/bin/python benchmarks/bench_throughput.py [--rounds 15]` (or `make bench`).
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import multiprocessing
import random
import statistics
import struct
import sys
import time
from array import array
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx
from langchain_core.language_models import LanguageModelInput
from langchain_core.runnables import RunnableConfig
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_invoke import ThinnestChatModel, start_canned

from langchain_servingx import ChatServing, ServingEmbeddings
from tests.serving_server import RecordedRequest, Reply, ServingTestServer, chat_response

DIM = 384
TEXTS = 1000
BATCH = 16
CALLS = 200
CONCURRENCY = 32
CHAT_DELAY = 0.05
TOKEN = "bench-token"
PLOT = Path(__file__).with_name("throughput.png")


# -- the canned endpoint (child process) -----------------------------------------------


def serve(urls: multiprocessing.Queue[str], stop: Event) -> None:
    server = ServingTestServer().start()
    rng = random.Random(7)  # noqa: S311 - canned data, not secrets
    vectors = [[round(rng.uniform(-1, 1), 8) for _ in range(DIM)] for _ in range(TEXTS)]
    packed = [base64.b64encode(struct.pack(f"<{DIM}f", *v)).decode() for v in vectors]

    def embeddings(request: RecordedRequest) -> Reply:
        body = request.json
        texts = body["input"]
        rows = [int(t.removeprefix("text ")) for t in texts]
        as_base64 = body.get("encoding_format") == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": packed[r] if as_base64 else vectors[r]}
            for i, r in enumerate(rows)
        ]
        answer = {"object": "list", "model": "bench-embed", "data": data, "usage": {}}
        return Reply(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})

    chat = Reply.json(chat_response("Hello from the benchmark."), delay=CHAT_DELAY)

    def stats(request: RecordedRequest) -> Reply:
        with server._lock:
            count = server.connections - 1  # not this request's own connection
            if request.path.endswith("reset"):
                server.connections = 0
        return Reply.json({"connections": count})

    server.handle("/serving-endpoints/bench-embed/invocations", embeddings)
    server.handle("/serving-endpoints/embeddings", embeddings)
    server.reply("/serving-endpoints/bench-chat/invocations", chat)
    server.reply("/serving-endpoints/chat/completions", chat)
    server.handle("/_stats", stats)
    server.handle("/_stats/reset", stats)
    urls.put(server.url)
    stop.wait()
    server.stop()


# -- contenders ------------------------------------------------------------------------


def embeddings_floor(base: str) -> Callable[[list[str]], object]:
    """Raw httpx, 4 threads, base64 decoded with `array`: what any client must cost."""
    client = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"})
    url = f"{base}/serving-endpoints/bench-embed/invocations"

    def one(texts: list[str]) -> list[list[float]]:
        body = {"input": texts, "encoding_format": "base64"}
        data = client.post(url, json=body).json()["data"]
        return [array("f", base64.b64decode(d["embedding"])).tolist() for d in data]

    def run(texts: list[str]) -> list[list[float]]:
        with ThreadPoolExecutor(4) as pool:
            parts = pool.map(one, [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)])
            return [v for part in parts for v in part]

    return run


def batch_floor(base: str) -> Callable[[list[str]], object]:
    """Raw httpx on a pool of 32 threads, JSON decoded: the floor for 200 concurrent calls.

    The client (and its connections) lives on; the thread pool is made per run, as any
    `batch()` call must make one.
    """
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    client = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, limits=limits)
    url = f"{base}/serving-endpoints/bench-chat/invocations"

    def one(prompt: str) -> str:
        body = {"messages": [{"role": "user", "content": prompt}]}
        reply = client.post(url, json=body).json()
        return str(reply["choices"][0]["message"]["content"])

    def run(prompts: list[str]) -> list[str]:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            return list(pool.map(one, prompts))

    return run


def contenders(base: str) -> tuple[dict[str, Callable[[], Any]], dict[str, Callable[[], Any]]]:
    texts = [f"text {i}" for i in range(TEXTS)]
    questions = [f"Question {i}?" for i in range(CALLS)]
    prompts: list[LanguageModelInput] = list(questions)
    config: RunnableConfig = {"max_concurrency": CONCURRENCY}
    embed_floor, chat_floor = embeddings_floor(base), batch_floor(base)
    embeddings = ServingEmbeddings(endpoint="bench-embed", batch_size=BATCH)
    chat = ChatServing(endpoint="bench-chat")
    embed: dict[str, Callable[[], Any]] = {
        "raw floor": lambda: embed_floor(texts),
        "ServingEmbeddings": lambda: embeddings.embed_documents(texts),
    }
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    thinnest = ThinnestChatModel(
        url=f"{base}/serving-endpoints/bench-chat/invocations",
        client=httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, limits=limits),
    )
    batch: dict[str, Callable[[], Any]] = {
        "raw floor": lambda: chat_floor(questions),
        "thinnest model.batch": lambda: thinnest.batch(prompts, config),
        "ChatServing.batch": lambda: chat.batch(prompts, config),
    }
    try:
        from langchain_openai import ChatOpenAI, OpenAIEmbeddings
    except ImportError:
        print("langchain-openai not installed: the OpenAI contenders are left out")
        return embed, batch
    route = f"{base}/serving-endpoints"
    their_embeddings = OpenAIEmbeddings(
        model="bench-embed",
        openai_api_base=route,
        openai_api_key=SecretStr(TOKEN),
        chunk_size=BATCH,
        check_embedding_ctx_length=False,  # raw strings, as the others send (no tokenizer)
    )
    their_chat = ChatOpenAI(model="bench-chat", base_url=route, api_key=TOKEN)
    embed["OpenAIEmbeddings"] = lambda: their_embeddings.embed_documents(texts)
    batch["ChatOpenAI.batch"] = lambda: their_chat.batch(prompts, config)
    return embed, batch


def cold_batch(base: str) -> tuple[float, int]:
    """The first batch of a fresh `ChatServing`: seconds and connections opened."""
    prompts: list[LanguageModelInput] = [f"Question {i}?" for i in range(CALLS)]
    fresh = ChatServing(endpoint="bench-chat")
    return measure(base, lambda: fresh.batch(prompts, {"max_concurrency": CONCURRENCY}))


# -- measuring -------------------------------------------------------------------------


def measure(base: str, fn: Callable[[], Any]) -> tuple[float, int]:
    """Seconds for one run, and the connections the server accepted during it."""
    httpx.get(f"{base}/_stats/reset")
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    connections = int(httpx.get(f"{base}/_stats").json()["connections"])
    return elapsed, connections


def settle_heap() -> None:
    """Move everything alive after warm-up out of the collector's way (`gc.freeze`).

    Long-running services do this after start-up. Here it keeps the measurement about the
    contenders: unfrozen, a full collection walks the ~160,000 objects that importing
    LangChain leaves (about 0.14 s on this machine) and lands in whichever run happens to
    trigger it, which swamps a 0.4 s run. Every contender runs under the same rule.
    """
    gc.collect()
    gc.freeze()


def run_suite(
    base: str, suite: dict[str, Callable[[], Any]], rounds: int
) -> tuple[dict[str, tuple[float, int]], dict[str, list[float]]]:
    """Medians and connections per contender, and every round's time (for paired ratios)."""
    for fn in suite.values():  # warm up imports and caches
        fn()
    settle_heap()
    times: dict[str, list[float]] = {name: [] for name in suite}
    conns: dict[str, int] = dict.fromkeys(suite, 0)
    for _ in range(rounds):
        for name, fn in suite.items():
            elapsed, connections = measure(base, fn)
            times[name].append(elapsed)
            conns[name] = max(conns[name], connections)
    medians = {name: (statistics.median(times[name]), conns[name]) for name in suite}
    return medians, times


def paired(times: dict[str, list[float]], name: str, other: str) -> float:
    """The median over rounds of `name`'s time over `other`'s in the same round.

    Noise on a shared machine comes in bursts of a second or more, longer than one run:
    a ratio taken within a round cancels most of it, a ratio of two medians does not.
    """
    pairs = zip(times[name], times[other], strict=True)
    return statistics.median(a / b for a, b in pairs)


def plot(embed: dict[str, tuple[float, int]], batch: dict[str, tuple[float, int]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = [
        (axes[0], embed, f"embed_documents, {TEXTS} texts x {DIM} dims, {BATCH} per request"),
        (axes[1], batch, f"batch, {CALLS} calls, concurrency {CONCURRENCY}, 50 ms server"),
    ]
    for axis, results, title in panels:
        names = list(results)
        seconds = [results[n][0] for n in names]
        colors = ["#1f77b4" if "Serving" in n else "#999999" for n in names]
        bars = axis.barh(names, seconds, color=colors)
        for bar, name in zip(bars, names, strict=True):
            axis.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f" {results[name][0]:.2f} s, {results[name][1]} new conn./run",
                va="center",
            )
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("seconds (median, lower is better)")
        axis.set_xlim(0, max(seconds) * 1.6)
        axis.invert_yaxis()
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)
    print(f"plot written to {PLOT}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    base, stop, child = start_canned(serve, TOKEN)
    try:
        embed_suite, batch_suite = contenders(base)
        embed, embed_times = run_suite(base, embed_suite, args.rounds)
        batch, batch_times = run_suite(base, batch_suite, args.rounds)
        cold_seconds, cold_connections = cold_batch(base)
    finally:
        stop.set()
        child.join(timeout=10)

    for title, results in (("embed_documents", embed), ("batch", batch)):
        print(f"\n{title}")
        for name, (seconds, connections) in results.items():
            print(f"  {name:20s} {seconds:7.3f} s   {connections:3d} connections opened")
    print("\nratios of times (throughput: the inverse), medians of each round's ratio:")
    ours = "ServingEmbeddings"
    print(f"ServingEmbeddings / raw floor        = {paired(embed_times, ours, 'raw floor'):.2f}")
    if "OpenAIEmbeddings" in embed:
        ratio = paired(embed_times, ours, "OpenAIEmbeddings")
        print(f"ServingEmbeddings / OpenAIEmbeddings = {ratio:.2f}  (target <= 0.9)")
    ours = "ChatServing.batch"
    ratio = paired(batch_times, "raw floor", ours)
    print(f"ChatServing.batch throughput / floor = {ratio:.2f}  (target >= 0.95)")
    ratio = paired(batch_times, ours, "thinnest model.batch")
    print(f"ChatServing.batch / thinnest model   = {ratio:.2f}  (langchain-core's share)")
    if "ChatOpenAI.batch" in batch:
        ratio = paired(batch_times, ours, "ChatOpenAI.batch")
        print(f"ChatServing.batch / ChatOpenAI.batch = {ratio:.2f}")
    print(
        f"ChatServing.batch connections        = {batch['ChatServing.batch'][1]} per warm run, "
        f"{cold_connections} in a fresh instance's first run ({cold_seconds:.2f} s; "
        f"target <= {CONCURRENCY})"
    )
    plot(embed, batch)


if __name__ == "__main__":
    main()

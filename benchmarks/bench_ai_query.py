"""Batch inference throughput: `ai_query` against what users write today, side by side.

A canned chat endpoint in its own process answers after 50 ms and refuses (429) any
request beyond 32 in flight, so no client can beat 32 / 50 ms = 640 rows/s (the bound).
Over the same rows, in one run:
- raw floor: a thread pool of 32 plain httpx posts (the machine's own limit here);
- the same posts on the package's sync connection pool (`_pool`), which the next three use;
- naive UDF: `df["text"].apply(lambda t: ChatOpenAI(...).invoke(t).content)`, row by row;
- `ChatServing.batch(texts, config={"max_concurrency": 32})`;
- `ai_query` on pandas (default `max_concurrency=64`: it must find the limit itself);
- `ai_query` on Spark `local[2]` (two partitions; the session is started before timing).

Every contender runs once on a few rows first (imports, Python workers, connection pools),
then the heap that warm-up leaves is frozen (`gc.freeze`, as long-running services do after
start-up) so that full collections of the import-time objects do not land in whichever run
happens to trigger them; every contender runs under the same rule.

Reports rows/s (medians over rounds), efficiency against the bound and, paired round by
round, against the raw floor and the naive UDF (medians of the same round's ratios), the
requests the server saw (429s included) and rows lost, writes
`benchmarks/results/ai_query.json` and a plot, `benchmarks/ai_query.png`.

Run: `.venv/bin/python benchmarks/bench_ai_query.py [--rows 2000] [--rounds 7]`
(needs the `batch`, `spark` and `bench` extras: `make bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx
from langchain_core.language_models import LanguageModelInput

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LATENCY = 0.050
CAPACITY = 32
BOUND = CAPACITY / LATENCY
TOKEN = "dapi-bench-token"

# --------------------------------------------------------------------------------------
# The canned endpoint: asyncio, HTTP/1.1 keep-alive, in its own process
# --------------------------------------------------------------------------------------


LISTING = json.dumps(
    {"endpoints": [{"name": "bench", "task": "llm/v1/chat", "state": {"ready": "READY"}}]}
).encode()


def _serve(port_holder: Any, ready: Event) -> None:
    state = {"in_flight": 0, "ok": 0, "refused": 0}

    def answer(text: str) -> bytes:
        return json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "model": "bench",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"echo: {text}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12},
            }
        ).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                status, payload = 200, b"{}"
                if path == "/stats":
                    payload = json.dumps(state).encode()
                elif path == "/reset":
                    state.update(ok=0, refused=0)
                elif method == "GET" and path.startswith("/api/2.0/serving-endpoints"):
                    payload = LISTING  # the task lookup of ChatServing(api="auto") and ai_query
                elif state["in_flight"] >= CAPACITY:
                    state["refused"] += 1
                    status = 429
                    payload = b'{"error_code":"REQUEST_LIMIT_EXCEEDED","message":"too many"}'
                else:
                    state["in_flight"] += 1
                    try:
                        await asyncio.sleep(LATENCY)
                    finally:
                        state["in_flight"] -= 1
                    state["ok"] += 1
                    messages = json.loads(body).get("messages") or [{"content": ""}]
                    payload = answer(str(messages[-1]["content"]))
                reason = "OK" if status == 200 else "Too Many Requests"
                writer.write(
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port_holder.value = server.sockets[0].getsockname()[1]
        ready.set()
        await server.serve_forever()

    asyncio.run(main())


def settle_heap() -> None:
    """Freeze what warm-up left alive, so no run pays for collecting the import-time heap."""
    gc.collect()
    gc.freeze()


def _stats(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/stats").json()  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------
# Contenders: each takes the texts and returns one answer per row (None: lost)
# --------------------------------------------------------------------------------------


def raw_floor(url: str, texts: list[str], client: httpx.Client | None = None) -> list[Any]:
    client = client or httpx.Client(limits=httpx.Limits(max_connections=CAPACITY))
    endpoint = f"{url}/serving-endpoints/bench/invocations"

    def post(text: str) -> Any:
        while True:
            reply = client.post(endpoint, json={"messages": [{"role": "user", "content": text}]})
            if reply.status_code != 429:
                return reply.json()["choices"][0]["message"]["content"]

    with ThreadPoolExecutor(CAPACITY) as pool:
        answers = list(pool.map(post, texts))
    client.close()
    return answers


def raw_on_our_pool(url: str, texts: list[str]) -> list[Any]:
    """The raw floor on the package's sync pool (`_pool.StackPool`): the pool's own share."""
    from langchain_servingx._pool import PooledTransport

    limits = httpx.Limits(max_connections=CAPACITY)
    return raw_floor(url, texts, httpx.Client(transport=PooledTransport(limits=limits)))


def naive_udf(url: str, texts: list[str]) -> list[Any]:
    import pandas as pd
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="bench", base_url=f"{url}/serving-endpoints", api_key=TOKEN)
    df = pd.DataFrame({"text": texts})
    return list(df["text"].apply(lambda t: llm.invoke(t).content))


def chat_serving_batch(url: str, texts: list[str]) -> list[Any]:
    from langchain_servingx import ChatServing

    llm = ChatServing(endpoint="bench", host=url, token=TOKEN)
    prompts: list[LanguageModelInput] = list(texts)
    return [m.text for m in llm.batch(prompts, config={"max_concurrency": CAPACITY})]


def ai_query_pandas(url: str, texts: list[str]) -> list[Any]:
    import pandas as pd

    from langchain_servingx import ChatServing, ai_query

    llm = ChatServing(endpoint="bench", host=url, token=TOKEN)
    out = ai_query(pd.DataFrame({"text": texts}), llm, "text", fail_on_error=False, progress=False)
    return [r if e is None else None for r, e in zip(out["result"], out["error"], strict=True)]


def ai_query_spark(spark: Any) -> Callable[[str, list[str]], list[Any]]:
    def run(url: str, texts: list[str]) -> list[Any]:
        from langchain_servingx import ChatServing, ai_query

        df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "id long, text string")
        df = df.repartition(2).cache()
        df.count()  # the input is materialised before the clock starts
        llm = ChatServing(endpoint="bench", host=url, token=TOKEN)
        start = time.perf_counter()
        rows = ai_query(df, llm, "text", fail_on_error=False).select("id", "result").collect()
        run.seconds = time.perf_counter() - start  # type: ignore[attr-defined]
        df.unpersist()
        by_id = {r.id: r.result for r in rows}
        return [by_id.get(i) for i in range(len(texts))]

    return run


def _start_spark() -> Any:
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--naive-rows", type=int, default=200, help="the naive UDF is ~30x slower")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--warmup-rows", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    args = parser.parse_args()

    port = multiprocessing.Value("i", 0)
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(port, ready), daemon=True)
    server.start()
    ready.wait(10)
    url = f"http://127.0.0.1:{port.value}"
    spark = None if args.no_spark else _start_spark()
    contenders: dict[str, Callable[[str, list[str]], list[Any]]] = {
        "raw httpx floor (32 threads)": raw_floor,
        "raw posts on our pool (32 threads)": raw_on_our_pool,
        "naive pandas UDF (ChatOpenAI.invoke per row)": naive_udf,
        "ChatServing.batch (max_concurrency=32)": chat_serving_batch,
        "ai_query, pandas": ai_query_pandas,
    }
    if spark is not None:
        contenders["ai_query, Spark local[2]"] = ai_query_spark(spark)
    texts = [f"row {i}: summarize this" for i in range(args.rows)]
    results: dict[str, dict[str, list[float]]] = {name: {} for name in contenders}
    try:
        for name, run in contenders.items():  # imports, workers and pools, untimed
            size = max(1, args.warmup_rows // 8) if name.startswith("naive") else args.warmup_rows
            run(url, [f"warm-up {i}" for i in range(size)])
        settle_heap()
        for round_ in range(args.rounds):
            for name, run in contenders.items():
                rows = texts[: args.naive_rows] if name.startswith("naive") else texts
                rows = [f"{round_}-{t}" for t in rows]  # no cache can help between rounds
                httpx.post(f"{url}/reset")
                start = time.perf_counter()
                answers = run(url, rows)
                seconds = getattr(run, "seconds", None) or time.perf_counter() - start
                seen = _stats(url)
                lost = sum(1 for a, t in zip(answers, rows, strict=True) if a != f"echo: {t}")
                record = results[name]
                record.setdefault("rows_per_s", []).append(len(rows) / seconds)
                record.setdefault("requests", []).append(seen["ok"] + seen["refused"])
                record.setdefault("refused", []).append(seen["refused"])
                record.setdefault("lost", []).append(lost)
                record.setdefault("rows", []).append(len(rows))
                print(
                    f"round {round_ + 1} {name:48s} {len(rows) / seconds:7.1f} rows/s", flush=True
                )
    finally:
        if spark is not None:
            spark.stop()
        server.terminate()
    _report(results, args.out)


FLOOR = "raw httpx floor (32 threads)"
NAIVE = "naive pandas UDF (ChatOpenAI.invoke per row)"
PANDAS = "ai_query, pandas"
SPARK = "ai_query, Spark local[2]"


def _paired(results: dict[str, dict[str, list[float]]], name: str, other: str) -> float:
    """The median over rounds of `name`'s rate over `other`'s in the same round."""
    pairs = zip(results[name]["rows_per_s"], results[other]["rows_per_s"], strict=True)
    return statistics.median(a / b for a, b in pairs)


def _report(results: dict[str, dict[str, list[float]]], out: Path) -> None:
    """Rates are medians over rounds; ratios are medians of the same round's ratios."""
    rate = {name: statistics.median(r["rows_per_s"]) for name, r in results.items()}
    summary: dict[str, Any] = {"bound_rows_per_s": BOUND, "contenders": {}}
    print(f"\nbound: {CAPACITY} in flight / {LATENCY * 1000:.0f} ms = {BOUND:.0f} rows/s")
    print(
        f"{'contender (median of rounds)':48s} {'rows/s':>8s} {'/bound':>7s} {'/floor':>7s} "
        f"{'x naive':>8s} {'requests/row':>12s} {'lost':>5s}"
    )
    for name, record in results.items():
        per_row = sum(record["requests"]) / sum(record["rows"])
        entry = {
            "rows_per_s": round(rate[name], 1),
            "of_bound": round(rate[name] / BOUND, 3),
            "of_floor": round(_paired(results, name, FLOOR), 3),
            "x_naive": round(_paired(results, name, NAIVE), 1),
            "requests_per_row": round(per_row, 3),
            "requests": int(statistics.median(record["requests"])),
            "refused": int(statistics.median(record["refused"])),
            "rows": int(record["rows"][0]),
            "lost": int(max(record["lost"])),
            "all_rounds_rows_per_s": [round(v, 1) for v in record["rows_per_s"]],
        }
        summary["contenders"][name] = entry
        print(
            f"{name:48s} {rate[name]:8.1f} {entry['of_bound']:7.3f} {entry['of_floor']:7.3f} "
            f"{entry['x_naive']:8.1f} {per_row:12.3f} {entry['lost']:5d}"
        )
    if SPARK in results:
        summary["spark_over_pandas"] = round(_paired(results, SPARK, PANDAS), 3)
        print(f"Spark / pandas: {summary['spark_over_pandas']:.3f}")
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "results" / "ai_query.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot(summary, out / "ai_query.png")


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["contenders"])
    rates = [summary["contenders"][n]["rows_per_s"] for n in names]
    fig, ax = plt.subplots(figsize=(10, 3.8), dpi=110)
    bars = ax.barh(names[::-1], rates[::-1], color="#4C72B0")
    ax.axvline(summary["bound_rows_per_s"], color="#C44E52", linestyle="--", linewidth=1)
    ax.text(
        summary["bound_rows_per_s"] + 6,
        (len(names) - 1) / 2,
        "bound: 640 rows/s",
        color="#C44E52",
        fontsize=8,
        rotation=90,
        va="center",
    )
    for bar, name in zip(bars, names[::-1], strict=True):
        entry = summary["contenders"][name]
        label = (
            f" {entry['rows_per_s']:.0f} rows/s ({entry['of_floor']:.2f} of the floor), "
            f"{entry['requests']} requests"
        )
        inside = bar.get_width() > summary["bound_rows_per_s"] / 2  # long bars hold their label
        ax.text(
            bar.get_width() - 8 if inside else bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            label.strip() if inside else label,
            va="center",
            ha="right" if inside else "left",
            color="white" if inside else "black",
            fontsize=8,
        )
    ax.set_xlabel("rows per second (higher is better)")
    ax.set_xlim(0, summary["bound_rows_per_s"] * 1.15)
    ax.set_title(
        "2,000 chat rows: 50 ms endpoint, 429 beyond 32 in flight (medians of rounds)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()

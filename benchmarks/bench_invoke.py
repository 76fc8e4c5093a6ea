"""Per-call overhead of `ChatServing.invoke`, measured side by side in one run.

Compares, against the same 127.0.0.1 server and the same canned answer:
- a raw `httpx.Client` round trip (POST + JSON decode): the floor for any client;
- langchain-core's own per-call cost (a fake chat model's `invoke`, no I/O);
- the thinnest possible chat model: a `BaseChatModel` whose `_generate` is that raw round
  trip plus an `AIMessage` (raw + core measured together, so CPU work right after waiting on a
  socket, which runs on colder caches than a tight loop, is charged to the floor too);
- `ChatServing.invoke`;
- `ChatOpenAI.invoke` pointed at the same server's OpenAI-compatible route (if installed).

Target: ChatServing <= 1.10 x the floor (raw round trip + core), and below ChatOpenAI.
Rounds are interleaved so that machine noise hits every contender alike, and the server
runs in its own process so that its work does not compete with the clients for the GIL.

Run: `.venv/bin/python benchmarks/bench_invoke.py [--calls 300] [--rounds 7]`
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_servingx import ChatServing
from tests.serving_server import Reply, ServingTestServer, chat_response


class ThinnestChatModel(BaseChatModel):
    """Raw httpx round trip + langchain-core: what any chat model on this server must cost."""

    url: str
    client: httpx.Client

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def _llm_type(self) -> str:
        return "thinnest"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        body = {"messages": [{"role": "user", "content": m.content} for m in messages]}
        reply = self.client.post(self.url, json=body).json()
        message = AIMessage(content=reply["choices"][0]["message"]["content"])
        return ChatResult(generations=[ChatGeneration(message=message)])


def per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def serve(urls: multiprocessing.Queue[str], stop: Event) -> None:
    """Run the canned endpoint in a child process until `stop` is set."""
    server = ServingTestServer().start()
    answer = Reply.json(chat_response("Hello from the benchmark."))
    server.reply("/serving-endpoints/bench/invocations", answer)
    server.reply("/serving-endpoints/chat/completions", answer)
    urls.put(server.url)
    stop.wait()
    server.stop()


def start_canned(
    target: Callable[[multiprocessing.Queue[str], Event], None], token: str
) -> tuple[str, Event, multiprocessing.Process]:
    """Start a canned endpoint in a child process; point DATABRICKS_* at it."""
    urls: multiprocessing.Queue[str] = multiprocessing.Queue()
    stop = multiprocessing.Event()
    child = multiprocessing.Process(target=target, args=(urls, stop), daemon=True)
    child.start()
    base = urls.get(timeout=30)
    os.environ["DATABRICKS_HOST"] = base
    os.environ["DATABRICKS_TOKEN"] = token
    return base, stop, child


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    base, stop, child = start_canned(serve, "bench-token")
    url = f"{base}/serving-endpoints/bench/invocations"
    body = {"messages": [{"role": "user", "content": "Hi"}]}

    raw_client = httpx.Client(headers={"Authorization": "Bearer bench-token"})
    fake = FakeListChatModel(responses=["Hello from the benchmark."])
    thinnest = ThinnestChatModel(url=url, client=raw_client)
    ours = ChatServing(endpoint="bench")

    contenders: dict[str, Callable[[], object]] = {
        "raw httpx round trip": lambda: raw_client.post(url, json=body).json(),
        "fake chat model invoke": lambda: fake.invoke("Hi"),
        "thinnest chat model": lambda: thinnest.invoke("Hi"),
        "ChatServing.invoke": lambda: ours.invoke("Hi"),
    }
    try:
        from langchain_openai import ChatOpenAI

        theirs = ChatOpenAI(
            model="bench", base_url=f"{base}/serving-endpoints", api_key="bench-token"
        )
        contenders["ChatOpenAI.invoke"] = lambda: theirs.invoke("Hi")
    except ImportError:
        print("langchain-openai not installed: ChatOpenAI is left out")

    for fn in contenders.values():  # warm up pools, imports and caches
        per_call(fn, 20)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            samples[name].append(per_call(fn, args.calls))
    stop.set()
    child.join(timeout=10)

    median = {name: statistics.median(values) for name, values in samples.items()}
    for name, value in median.items():
        print(f"{name:26s} {value * 1e6:9.1f} us/call")
    ours_median = median["ChatServing.invoke"]
    summed = median["raw httpx round trip"] + median["fake chat model invoke"]
    print(f"\nChatServing / thinnest model = {ours_median / median['thinnest chat model']:.3f}")
    print(f"ChatServing / (raw + fake)   = {ours_median / summed:.3f}  (parts timed apart)")
    if "ChatOpenAI.invoke" in median:
        print(
            f"ChatServing / ChatOpenAI     = "
            f"{median['ChatServing.invoke'] / median['ChatOpenAI.invoke']:.3f}  (target < 1)"
        )


if __name__ == "__main__":
    main()

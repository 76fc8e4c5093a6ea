"""The embedded local serving endpoint (the ``local`` extra).

Serves real small models on the CPU behind the serving-endpoint contract, so the
package's clients can be run, tested and demonstrated with no workspace and no network:
``local-chat`` and ``local-completions`` (SmolLM2-135M-Instruct in llama.cpp),
``local-embeddings`` (all-MiniLM-L6-v2 in sentence-transformers), plus endpoints from a
TOML file, including proxies to any OpenAI-compatible server.

Start it with ``python -m langchain_servingx.local`` or ``servingx-local``. Importing this
package is cheap; the web stack and the model runtimes load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from langchain_servingx.local.config import EndpointConfig

__all__ = ["create_app"]


def create_app(configs: list[EndpointConfig] | None = None, token: str | None = None) -> FastAPI:
    """The ASGI app for ``configs`` (default: the built-in endpoints); ``token=None``: no auth."""
    from langchain_servingx.local.app import create_app as _create_app
    from langchain_servingx.local.config import DEFAULT_ENDPOINTS

    return _create_app(list(DEFAULT_ENDPOINTS) if configs is None else configs, token)

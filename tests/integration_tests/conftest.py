"""Where the integration suites send their requests, and how they are recorded.

One environment variable, `SERVINGX_IT_MODE`, picks the target:

- `replay` (default, `make test`): every request is answered from `cassettes/`; the record
  mode is always `none`, so a missing or stale cassette fails the test and nothing is
  ever recorded. No endpoint, no model runtime, no network.
- `record` (`make record`): the embedded local endpoint is started and every cassette is
  re-recorded (`--record-mode=rewrite` unless another mode is given), scrubbed before it
  is written.
- `local` (`make test-local`): the same suites live against the local endpoint; VCR is
  off (as with `--disable-recording`).
- `workspace`: live against a real workspace: needs `DATABRICKS_HOST`, a credential
  (`DATABRICKS_TOKEN`, or `DATABRICKS_CLIENT_ID` and `DATABRICKS_CLIENT_SECRET`), and the
  endpoint names in `SERVINGX_IT_CHAT_ENDPOINT` / `SERVINGX_IT_EMBEDDINGS_ENDPOINT` /
  `SERVINGX_IT_COMPLETIONS_ENDPOINT` / `SERVINGX_IT_AGENT_ENDPOINT` /
  `SERVINGX_IT_CHAT_AGENT_ENDPOINT`; tests whose setting is missing are skipped with the
  reason. A module names the kinds it needs in `ENDPOINT_KINDS`, a test those it needs
  besides with `@pytest.mark.endpoints(...)`.

Cassettes are matched on method, path and parsed JSON body, never on host or headers, so
they replay whatever host and token the environment has. Before anything is written, the
host becomes a placeholder, every header but `Content-Type` is dropped, and OAuth token
exchanges are blanked. A replayed test that passes must also have used every recorded
answer: a cassette with answers the client no longer asks for is stale.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vcr import VCR
from vcr.cassette import Cassette

from tests.integration_tests.recording import (
    CASSETTES,
    PLACEHOLDER_HOST,
    PLACEHOLDER_TOKEN,
    VCR_OPTIONS,
    register,
)
from tests.integration_tests.settings import (
    ENDPOINT_VARS,
    ENDPOINTS,
    LIVE,
    LOCAL_ENDPOINTS_TOML,
    MODE,
    WORKSPACE_ENV,
    workspace_problem,
)

# ------------------------------------------------------------------------------------------
# VCR
# ------------------------------------------------------------------------------------------


def pytest_recording_configure(config: pytest.Config, vcr: VCR) -> None:
    register(vcr)


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    # No record_mode here: the `record_mode` fixture below decides it.
    return dict(VCR_OPTIONS)


@pytest.fixture(scope="module")
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    module = Path(str(request.node.path)).stem
    return str(CASSETTES / module)


@pytest.fixture(scope="session")
def record_mode(request: pytest.FixtureRequest) -> str:
    """`none` whenever cassettes are replayed, whatever the command line says."""
    given = request.config.getoption("--record-mode")
    if MODE == "record":
        return str(given or "rewrite")
    if given not in (None, "none"):
        raise pytest.UsageError(
            f"--record-mode={given} records only with SERVINGX_IT_MODE=record (`make record`)"
        )
    return "none"


@pytest.fixture(scope="session")
def disable_recording(request: pytest.FixtureRequest) -> bool:
    """Live modes never touch cassettes, with or without `--disable-recording`."""
    return LIVE or bool(request.config.getoption("--disable-recording"))


_CALL_PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_PASSED] = report.passed
    return report


@pytest.fixture(autouse=True)
def _cassette_fully_played(request: pytest.FixtureRequest, vcr: Cassette | None) -> Iterator[None]:
    """In replay, a passing test must have used every answer its cassette holds."""
    yield
    if MODE != "replay" or vcr is None or not request.node.stash.get(_CALL_PASSED, False):
        return
    played = {
        (req.method, req.path) for index, (req, _) in enumerate(vcr.data) if vcr.play_counts[index]
    }
    unplayed = [
        f"{req.method} {req.path}"
        for index, (req, _) in enumerate(vcr.data)
        if not vcr.play_counts[index] and not _repeated_read(req.method, req.path, played)
    ]
    if unplayed:
        pytest.fail(
            f"stale cassette {vcr._path}: {len(unplayed)} recorded request(s) were not made: "
            f"{unplayed}; re-record with `make record`"
        )


LISTING_PATH = "/api/2.0/serving-endpoints"


def _repeated_read(method: str, path: str, played: set[tuple[str, str]]) -> bool:
    """An unplayed copy of the endpoint listing whose answer was played: not stale.

    With `api="auto"`, concurrent first calls on a workspace (`abatch`, a thread pool) each
    read the listing until one of them has cached it, so how many GETs a recording holds
    depends on scheduling; a replay, answered without waiting, reads it once. The listing
    is a read that re-runs nothing, and every copy of it was recorded from the same
    endpoint. Any other unplayed request is still stale.
    """
    return method == "GET" and path == LISTING_PATH and (method, path) in played


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    problem = workspace_problem() if MODE == "workspace" else None
    for item in items:
        if here not in Path(str(item.path)).parents:
            continue
        if item.get_closest_marker("vcr") is None:
            item.add_marker(pytest.mark.vcr)
        if MODE != "workspace":
            continue
        kinds = list(getattr(getattr(item, "module", None), "ENDPOINT_KINDS", ()))
        kinds += [kind for mark in item.iter_markers("endpoints") for kind in mark.args]
        missing = [ENDPOINT_VARS[kind] for kind in kinds if not ENDPOINTS[kind]]
        if problem or missing:
            reason = problem or f"workspace mode needs {', '.join(missing)}"
            item.add_marker(pytest.mark.skip(reason=reason))


# ------------------------------------------------------------------------------------------
# The target endpoint
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def serving_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment variables that point the package's classes at this run's target."""
    if MODE == "replay":
        yield {"DATABRICKS_HOST": PLACEHOLDER_HOST, "DATABRICKS_TOKEN": PLACEHOLDER_TOKEN}
        return
    if MODE == "workspace":
        yield dict(WORKSPACE_ENV)
        return
    # record / local: a failure to start is an error, never a skip (CI must not go green
    # on a run that tested nothing).
    from langchain_servingx.local.launch import LocalEndpoint

    config = tmp_path_factory.mktemp("servingx-it") / "endpoints.toml"
    config.write_text(LOCAL_ENDPOINTS_TOML, encoding="utf-8")
    with LocalEndpoint(config=config) as endpoint:
        yield endpoint.env()


@pytest.fixture(autouse=True)
def _point_at_target(serving_target: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in serving_target.items():
        monkeypatch.setenv(name, value)

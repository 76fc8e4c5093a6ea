"""Start the local endpoint in a child process, for tests and scripts.

``LocalEndpoint`` is a context manager: it starts ``python -m langchain_servingx.local``
on a free port, waits for its ready file, exposes ``host``/``token``/``env()``, and stops
it (SIGTERM, then SIGKILL if it hangs) however the block ends. As a command::

    python -m langchain_servingx.local.launch [--config F] -- python examples/quickstart.py

runs the command with ``DATABRICKS_HOST``/``DATABRICKS_TOKEN`` set, then stops the
endpoint, and exits with the command's status (``make demo`` uses this).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from langchain_servingx.local.__main__ import NO_AUTH_TOKEN, playground_url

__all__ = ["EndpointStartError", "LocalEndpoint", "main"]


class EndpointStartError(RuntimeError):
    """The endpoint exited or did not become ready in time; the message has its log."""


class LocalEndpoint:
    """A running local endpoint in a child process."""

    def __init__(
        self,
        *,
        config: Path | None = None,
        token: str | None = None,
        timeout: float = 600.0,
        extra_args: list[str] | None = None,
    ) -> None:
        self._config = config
        self._token = token
        self._timeout = timeout
        self._extra = extra_args or []
        self._dir = tempfile.TemporaryDirectory(prefix="servingx-local-")
        self._process: subprocess.Popen[bytes] | None = None
        self.host = ""
        self.token = ""
        self.log_path = Path(self._dir.name) / "endpoint.log"

    def start(self) -> LocalEndpoint:
        """Start the server and wait until every endpoint is ready."""
        ready = Path(self._dir.name) / "ready"
        command = [sys.executable, "-m", "langchain_servingx.local", "--port", "0"]
        command += ["--ready-file", str(ready)]
        if self._config is not None:
            command += ["--config", str(self._config)]
        if self._token is not None:
            command += ["--token", self._token]
        command += self._extra
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + self._timeout
        while not ready.exists():
            if self._process.poll() is not None:
                raise EndpointStartError(f"the endpoint exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise EndpointStartError(f"not ready after {self._timeout:.0f}s:\n{self.log()}")
            time.sleep(0.1)
        values = dict(
            line.split("=", 1) for line in ready.read_text(encoding="utf-8").splitlines() if line
        )
        self.host, self.token = values["DATABRICKS_HOST"], values["DATABRICKS_TOKEN"]
        return self

    @property
    def playground_url(self) -> str:
        """The playground page's address, with ``?token=`` when authentication is on."""
        return playground_url(self.host, None if self.token == NO_AUTH_TOKEN else self.token)

    def env(self) -> dict[str, str]:
        """The variables a client needs to reach this endpoint."""
        return {"DATABRICKS_HOST": self.host, "DATABRICKS_TOKEN": self.token}

    def log(self) -> str:
        """What the server printed so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after 20 s); its exit status."""
        process, self._process = self._process, None
        status = None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            status = process.returncode
        self._dir.cleanup()
        return status

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run a command against a freshly started endpoint; the command's exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m langchain_servingx.local.launch",
        description="Start the local endpoint, run a command against it, stop it.",
    )
    parser.add_argument("--config", type=Path, help="endpoint configuration (TOML)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    sys.stderr.write("servingx-local: starting the local endpoint (models load first) ...\n")
    endpoint = LocalEndpoint(config=args.config)
    try:
        endpoint.start()
    except EndpointStartError as error:
        sys.stderr.write(f"servingx-local: {error}\n")
        return 1
    try:
        sys.stderr.write(f"servingx-local: ready on {endpoint.host}\n")
        sys.stderr.write(f"servingx-local: playground {endpoint.playground_url}\n")
        return subprocess.call(command, env={**os.environ, **endpoint.env()})  # noqa: S603
    except KeyboardInterrupt:
        return 130
    finally:
        endpoint.stop()
        sys.stderr.write("servingx-local: stopped\n")


if __name__ == "__main__":
    sys.exit(main())

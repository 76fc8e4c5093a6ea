"""Command line: ``python -m langchain_servingx.local`` (or ``servingx-local``).

Binds 127.0.0.1 (``--port 0`` picks a free port), prints the ``DATABRICKS_HOST`` and
``DATABRICKS_TOKEN`` a client needs and the playground's address (``/?token=...``), loads
the models, and with ``--ready-file`` writes
those variables to a file once every endpoint is ready, so scripts and tests can start
the server, wait for the file, and ``source`` it. Ctrl-C and SIGTERM stop it cleanly
(exit status 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
from pathlib import Path

__all__ = ["NO_AUTH_TOKEN", "main", "playground_url"]

NO_AUTH_TOKEN = "no-auth"  # noqa: S105 - what the ready file says when authentication is off


def playground_url(host: str, token: str | None) -> str:
    """The playground's address: ``host/?token=...`` (just ``host/`` without authentication)."""
    return f"{host}/?token={token}" if token else f"{host}/"


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servingx-local",
        description="Serve local models (and proxies to OpenAI-compatible servers) as "
        "model serving endpoints on 127.0.0.1.",
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="port to listen on; 0 picks a free one"
    )
    parser.add_argument("--config", type=Path, help="TOML file adding or replacing endpoints")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--token", help="the bearer token clients must send (default: generated)")
    auth.add_argument("--no-auth", action="store_true", help="accept requests without a token")
    parser.add_argument(
        "--ready-file",
        type=Path,
        help="write DATABRICKS_HOST/DATABRICKS_TOKEN (shell syntax) here once ready; "
        "removed on exit",
    )
    parser.add_argument(
        "--faults",
        help="inject faults into every endpoint without faults of its own, e.g. "
        '"429=0.2,503=0.05,reset=0.02,cut-stream=0.02,slow=0.1:2s"',
    )
    parser.add_argument(
        "--fault-seed", type=int, default=0, help="seed of the fault generator (default 0)"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (debug also logs every request)",
    )
    return parser


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.set_inheritable(True)
    return sock


async def _serve(args: argparse.Namespace, sock: socket.socket, token: str | None) -> None:
    import uvicorn

    from langchain_servingx.local.app import Registry, create_app
    from langchain_servingx.local.config import load_config

    configs = load_config(args.config).resolved()
    app = create_app(configs, token, faults=args.faults, fault_seed=args.fault_seed)
    registry: Registry = app.state.registry
    host = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="debug" if args.log_level == "debug" else "warning",
            access_log=args.log_level == "debug",
            timeout_graceful_shutdown=5,
            # Keep-alive connections may idle between a client's calls.
            timeout_keep_alive=30,
        )
    )
    _say("servingx-local: serving " + ", ".join(f"{c.name} ({c.task})" for c in configs))
    for name, route in registry.routes.items():
        if route.faults is not None:
            _say(
                f"servingx-local: {name}: injecting faults {route.faults.spec!r} "
                f"(seed {route.faults.seed})"
            )
    _say(f"export DATABRICKS_HOST={host}")
    _say(f"export DATABRICKS_TOKEN={token or NO_AUTH_TOKEN}")
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not serving.done() and not (server.started and registry.loaded):
        await asyncio.sleep(0.05)
    if not serving.done():
        for name, engine in registry.engines.items():
            if engine.error:
                _say(f"servingx-local: {name} is NOT READY: {engine.error}")
        if args.ready_file:
            text = f"DATABRICKS_HOST={host}\nDATABRICKS_TOKEN={token or NO_AUTH_TOKEN}\n"
            text += f"SERVINGX_LOCAL_PID={os.getpid()}\n"
            partial = args.ready_file.with_name(args.ready_file.name + ".partial")
            partial.write_text(text, encoding="utf-8")
            partial.replace(args.ready_file)  # atomic: readers never see half a file
        _say(f"servingx-local: ready on {host} (Ctrl-C to stop)")
        _say(f"servingx-local: playground {playground_url(host, token)}")
    await serving


def main(argv: list[str] | None = None) -> int:
    """Run the server until Ctrl-C or SIGTERM; the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="servingx-local: %(message)s")
    logging.getLogger("langchain_servingx.local").setLevel(args.log_level.upper())
    from langchain_servingx.local.config import ConfigError, load_config
    from langchain_servingx.local.faults import parse_faults

    try:
        load_config(args.config)  # fail fast, before binding, on a bad file
        if args.faults:
            parse_faults(args.faults)
    except (ConfigError, ValueError) as error:
        where = "--faults: " if isinstance(error, ValueError) else ""
        sys.stderr.write(f"servingx-local: {where}{error}\n")
        return 2
    token = None if args.no_auth else (args.token or "dapi-local-" + secrets.token_hex(16))
    try:
        sock = _bind(args.port)
    except OSError as error:
        sys.stderr.write(f"servingx-local: cannot listen on 127.0.0.1:{args.port}: {error}\n")
        return 2
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully;
    # with both signals mapped to KeyboardInterrupt, that ends here with status 0.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(_serve(args, sock, token))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        if args.ready_file:
            with contextlib.suppress(FileNotFoundError):
                args.ready_file.unlink()
    _say("servingx-local: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

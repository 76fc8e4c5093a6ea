"""The playground: a browser page at ``/`` to chat with, compare and query the endpoints.

Plain ES modules and CSS under ``static/`` (no build step, nothing fetched from another
host: the page's Content-Security-Policy allows only this server). The page talks to the
same routes as every client, authenticated by the session cookie that ``/?token=...``
sets (see ``langchain_servingx.local.auth``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from langchain_servingx.local.auth import Authorizer, session_cookie

__all__ = ["STATIC", "RedactToken", "install_playground"]

STATIC = Path(__file__).parent / "static"

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


class RedactToken(logging.Filter):
    """Hide ``?token=...`` in uvicorn's access log (``--log-level debug`` turns it on)."""

    _TOKEN = re.compile(r"([?&]token=)[^&\s]*")

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the logged path; never drops a record."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._TOKEN.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def install_playground(app: FastAPI, authorizer: Authorizer) -> None:
    """Serve the page at ``/`` and its assets under ``/playground/``."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactToken) for f in access.filters):
        access.addFilter(RedactToken())

    @app.get("/", include_in_schema=False)
    async def page(request: Request) -> Response:
        """The page; ``?token=`` trades the token for the session cookie."""
        token = request.query_params.get("token")
        if token is None or authorizer.token is None:
            html = (STATIC / "index.html").read_text(encoding="utf-8")
            return HTMLResponse(html, headers=_HEADERS)
        if not authorizer.token_matches(token):
            html = (STATIC / "index.html").read_text(encoding="utf-8")
            return HTMLResponse(html, status_code=401, headers=_HEADERS)
        # 303 to the bare page: the token leaves the address bar (and the history).
        redirect = RedirectResponse("/", status_code=303, headers=_HEADERS)
        redirect.headers["Set-Cookie"] = session_cookie(request.url.port, authorizer.token)
        return redirect

    app.mount("/playground", StaticFiles(directory=STATIC), name="playground")

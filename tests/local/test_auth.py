"""The local endpoint's authentication, over real HTTP: bearer tokens, the playground's
session cookie and its Origin check. Needs only the web stack (no model), so it runs in
``make test``: the app is served with no endpoints by uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi", reason="the local endpoint's web stack is not installed")

from langchain_servingx.local.app import create_app
from langchain_servingx.local.auth import cookie_name
from langchain_servingx.local.playground import STATIC, RedactToken

TOKEN = "dapi-local-auth-test-token"
INVOKE = "/serving-endpoints/nowhere/invocations"


def serve(token: str | None) -> Iterator[str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app([], token), log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    yield from serve(TOKEN)


@pytest.fixture(scope="module")
def open_url() -> Iterator[str]:
    yield from serve(None)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A client with an empty cookie jar."""
    with httpx.Client() as client:
        yield client


@pytest.fixture
def browser(url: str) -> Iterator[httpx.Client]:
    """A client that visited the banner's address, so it holds the session cookie."""
    with httpx.Client(base_url=url) as client:
        client.get(f"/?token={TOKEN}", follow_redirects=True).raise_for_status()
        yield client


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def error_code(response: httpx.Response) -> Any:
    return response.json()["error_code"]


def test_token_in_the_address_sets_a_strict_httponly_cookie_and_leaves_the_address(
    http: httpx.Client,
    url: str,
) -> None:
    response = http.get(f"{url}/?token={TOKEN}")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    name, _, value = cookie.split(";")[0].partition("=")
    assert name == cookie_name(port_of(url))
    assert value
    assert TOKEN not in cookie
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes


def test_the_cookie_authenticates_reads(browser: httpx.Client) -> None:
    assert browser.get("/api/2.0/serving-endpoints").json() == {"endpoints": []}


def test_the_cookie_is_no_bearer_token(http: httpx.Client, browser: httpx.Client, url: str) -> None:
    value = browser.cookies[cookie_name(port_of(url))]
    response = http.get(
        f"{url}/api/2.0/serving-endpoints", headers={"Authorization": f"Bearer {value}"}
    )
    assert response.status_code == 401


def test_a_cookie_post_from_the_page_itself_passes(browser: httpx.Client, url: str) -> None:
    response = browser.post(INVOKE, json={"messages": []}, headers={"Origin": url})
    # Past authentication: the endpoint does not exist.
    assert response.status_code == 404
    assert error_code(response) == "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.parametrize("origin", [None, "http://evil.example", "http://127.0.0.1:1", "null"])
def test_a_cross_origin_cookie_post_is_refused(browser: httpx.Client, origin: str | None) -> None:
    headers = {"Origin": origin} if origin else {}
    response = browser.post(INVOKE, json={"messages": []}, headers=headers)
    assert response.status_code == 403
    assert error_code(response) == "PERMISSION_DENIED"
    assert "Cross-origin request refused" in response.json()["message"]


def test_bearer_requests_need_no_origin(http: httpx.Client, url: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"}
    response = http.post(f"{url}{INVOKE}", json={"messages": []}, headers=headers)
    assert response.status_code == 404


def test_basic_auth_still_works(http: httpx.Client, url: str) -> None:
    response = http.get(f"{url}/api/2.0/serving-endpoints", auth=("token", TOKEN))
    assert response.status_code == 200


def test_a_wrong_token_is_refused_and_sets_no_cookie(http: httpx.Client, url: str) -> None:
    response = http.get(f"{url}/?token=dapi-wrong")
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert "<title>servingx playground</title>" in response.text  # the page says why


@pytest.mark.parametrize(
    ("cookies", "headers"),
    [
        ({}, {}),
        ({"servingx-session-0": "forged"}, {}),
        ({}, {"Authorization": "Bearer dapi-wrong"}),
        ({}, {"Authorization": "Token abc"}),
    ],
)
def test_missing_or_wrong_credentials_are_refused(
    url: str, cookies: dict[str, str], headers: dict[str, str]
) -> None:
    if cookies:  # the cookie this server would read, with a forged value
        cookies = {cookie_name(port_of(url)): cookies["servingx-session-0"]}
    with httpx.Client(base_url=url, cookies=cookies) as client:
        response = client.get("/api/2.0/serving-endpoints", headers=headers)
    assert response.status_code == 401
    assert error_code(response) == "UNAUTHENTICATED"


def test_a_wrong_bearer_beats_a_good_cookie(browser: httpx.Client) -> None:
    response = browser.get(
        "/api/2.0/serving-endpoints", headers={"Authorization": "Bearer dapi-wrong"}
    )
    assert response.status_code == 401


def test_the_page_carries_no_secret_and_allows_only_its_own_origin(
    http: httpx.Client, url: str
) -> None:
    response = http.get(f"{url}/")
    assert response.status_code == 200
    assert TOKEN not in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert response.headers["cache-control"] == "no-store"


def test_every_asset_the_page_loads_is_served_and_local(http: httpx.Client, url: str) -> None:
    page = http.get(f"{url}/").text
    wanted = set(re.findall(r'(?:src|href)="(/playground/[^"]+)"', page))
    for module in STATIC.glob("*.js"):
        text = module.read_text(encoding="utf-8")
        wanted |= {f"/playground/{m}" for m in re.findall(r'from "\./([^"]+)"', text)}
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text
    assert {"/playground/main.js", "/playground/style.css", "/playground/reply.js"} <= wanted
    for path in sorted(wanted):
        response = http.get(f"{url}{path}")
        assert response.status_code == 200, path
        kind = "css" if path.endswith(".css") else "javascript"
        assert kind in response.headers["content-type"], path
    assert "@import" not in (STATIC / "style.css").read_text(encoding="utf-8")
    assert "url(" not in (STATIC / "style.css").read_text(encoding="utf-8")


def test_without_auth_the_page_and_the_api_are_open(http: httpx.Client, open_url: str) -> None:
    response = http.get(f"{open_url}/?token=anything")
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    listing = http.get(f"{open_url}/api/2.0/serving-endpoints")
    assert listing.json() == {"endpoints": []}
    posted = http.post(f"{open_url}{INVOKE}", json={}, headers={"Origin": "http://x.example"})
    assert posted.status_code == 404


def test_the_access_log_never_shows_the_token(url: str) -> None:  # the app is installed
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', None, None
    )
    record.args = ("127.0.0.1:5", "GET", f"/?token={TOKEN}&x=1", "1.1", 303)
    assert RedactToken().filter(record)
    assert TOKEN not in record.getMessage()
    assert "/?token=[redacted]&x=1" in record.getMessage()
    assert any(isinstance(f, RedactToken) for f in logging.getLogger("uvicorn.access").filters)

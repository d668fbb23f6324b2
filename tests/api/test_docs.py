"""The interactive API docs (Swagger UI at /docs, ReDoc at /redoc) load every asset from the API itself, with no
API key: they render on a host without internet, as a browser that may reach only the server shows."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

#: The URLs a docs page makes the browser load: its assets and the OpenAPI document.
_REFERENCED = re.compile(r"""(?:src|href|spec-url)="([^"]*)"|url: '([^']*)'""")
#: The asset files each page loads, all under /docs-assets.
_ASSETS = {"/docs": {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"},
           "/redoc": {"redoc.standalone.js", "favicon.png"}}
_TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",), ".png": ("image/png",)}


@pytest.fixture(scope="module")
def client(settings):
    from fastapi.testclient import TestClient

    from api.app import create_app

    return TestClient(create_app(settings))  # sends no Authorization header


@pytest.mark.parametrize("page", sorted(_ASSETS))
def test_a_docs_page_references_only_assets_the_api_serves_without_a_key(client, page):
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.findall(r"(?:https?:)?//[\w.-]+", html), "a URL to another host (a CDN, Google Fonts...)"
    referenced = {src or url for src, url in _REFERENCED.findall(html)}
    assert referenced == {"/openapi.json"} | {f"/docs-assets/{name}" for name in _ASSETS[page]}
    if page == "/redoc":  # its logo from cdn.redoc.ly is not to be fetched
        assert response.headers["content-security-policy"] == "img-src 'self' data:"
    for url in sorted(referenced):
        asset = client.get(url)
        assert asset.status_code == 200, (url, asset.status_code, asset.text[:200])
        if url == "/openapi.json":
            assert asset.json()["info"]["title"] == "pageqa"
            continue
        suffix = url[url.rindex("."):]
        assert asset.headers["content-type"].split(";")[0] in _TYPES[suffix], (url, asset.headers["content-type"])
        assert len(asset.content) > 4000, (url, len(asset.content))
    assert client.get("/v1/jobs").status_code == 401, "the same client, with no key, is refused under /v1"


def test_the_oauth2_redirect_page_is_served_and_the_docs_routes_are_not_operations(client):
    response = client.get("/docs/oauth2-redirect")
    assert response.status_code == 200 and "opener.swaggerUIRedirectOauth2" in response.text
    assert not re.findall(r"(?:https?:)?//[\w.-]+", response.text)
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]
    assert client.get("/docs-assets/no-such-file.js").status_code == 404


@pytest.fixture(scope="module")
def live_url(settings) -> Iterator[str]:
    """A real HTTP server (uvicorn, in a daemon thread) on a free port of 127.0.0.1 serving ``create_app``."""
    import uvicorn

    from api.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the port is held from here on: no other process can take it meanwhile
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def _render(browser, url: str, ready: str):
    """Open ``url`` in a fresh page that may reach only 127.0.0.1 and wait for ``ready``; returns the page, the
    foreign URLs it tried (aborted), and its console errors and page errors."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = browser.new_page()
    foreign, problems = [], []

    def only_local(route):
        parts = urlsplit(route.request.url)
        if parts.scheme in ("data", "blob") or parts.hostname == "127.0.0.1":
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(url, wait_until="load")
    try:
        page.wait_for_selector(ready, timeout=20000)
    except PlaywrightTimeout:
        pytest.fail(f"{url} did not render {ready!r}; foreign requests: {foreign}; errors: {problems}")
    return page, foreign, problems


@pytest.mark.browser
def test_swagger_ui_renders_every_operation_offline(chromium, live_url, settings):
    from api.app import create_app

    operations = sum(len(item) for item in create_app(settings).openapi()["paths"].values())
    page, foreign, problems = _render(chromium, f"{live_url}/docs", ".opblock")
    try:
        title = page.locator(".information-container .title").first.inner_text()
        paths = [p.replace("\u200b", "") for p in page.locator(".opblock-summary-path").all_inner_texts()]
        assert title.startswith("pageqa"), title
        assert "/v1/jobs" in paths and "/v1/jobs/{job_id}" in paths, paths
        assert len(paths) == operations, paths
        assert not foreign, f"fetched from outside the server: {foreign}"
        assert not problems, problems
    finally:
        page.close()


#: The one console error /redoc may log: its Content-Security-Policy refusing ReDoc's logo from cdn.redoc.ly (the
#: side menu always shows it; without the policy the browser would try the internet for it).
_LOGO_REFUSED = re.compile(r"^console error: Loading the image 'https://cdn\.redoc\.ly/[^']*' violates the "
                           r"following Content Security Policy directive")


@pytest.mark.browser
def test_redoc_renders_the_operations_offline(chromium, live_url):
    page, foreign, problems = _render(chromium, f"{live_url}/redoc", "[role=menuitem]")
    try:
        heading = page.locator(".api-content h1").first.inner_text()
        text = page.inner_text("body")
        assert heading.startswith("pageqa"), heading
        assert "Submit a job" in text and "Download the error file" in text, text[:2000]
        assert not foreign, f"fetched from outside the server: {foreign}"
        assert [p for p in problems if not _LOGO_REFUSED.match(p)] == [], problems
    finally:
        page.close()

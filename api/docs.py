"""The interactive API docs (Swagger UI at ``/docs``, ReDoc at ``/redoc``) served with their JavaScript, CSS and
favicon from the installed ``fastapi-offline`` package instead of FastAPI's default CDN links, so that they work on a
host without internet (FastAPI's "Self-hosting JavaScript and CSS for docs")."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the asset files are served (outside ``/v1``: no API key is asked for them, as for the docs pages).
ASSETS_URL = "/docs-assets"
DOCS_URL, REDOC_URL, OAUTH2_REDIRECT_URL = "/docs", "/redoc", "/docs/oauth2-redirect"
#: The images /redoc may load: its own host's and inline ones only.
REDOC_IMAGES = "img-src 'self' data:"


def mount_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` (with its OAuth2 redirect page at ``/docs/oauth2-redirect``) and ReDoc at
    ``/redoc``, both reading ``app.openapi_url``, with every asset they load (Swagger UI 5 bundle and CSS, the ReDoc
    standalone bundle, the favicon) served from ``fastapi_offline/static`` under ``/docs-assets``: nothing is fetched
    from a CDN or Google Fonts, so the docs render offline. ``app`` must be created with ``docs_url=None,
    redoc_url=None`` (FastAPI's own routes would link the CDN)."""
    static = files("fastapi_offline") / "static"
    app.mount(ASSETS_URL, StaticFiles(directory=str(static)), name="docs-assets")
    favicon = f"{ASSETS_URL}/favicon.png"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{app.title} - Swagger UI", oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=favicon,
            # Swagger UI's StandaloneLayout shows a badge from validator.swagger.io; FastAPI's BaseLayout has none,
            # and a null validatorUrl keeps it so should the layout change.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=app.openapi_url, title=f"{app.title} - ReDoc", redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=favicon, with_google_fonts=False,
        )
        # ReDoc's side menu always shows a logo from cdn.redoc.ly (its text stays when the image fails): the browser
        # is told not to try to fetch it.
        page.headers["Content-Security-Policy"] = REDOC_IMAGES
        return page

"""The FastAPI application: routes under ``/v1``, OpenAPI docs at ``/docs``, domain errors as 4xx JSON."""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api import corpora, health, jobs, reports
from api.deps import error_body
from api.limits import LimitBodySize
from pageqa.errors import (
    ConfigError,
    InputError,
    NotFoundError,
    PageQAError,
    ServiceError,
    printable,
)
from pageqa.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: HTTP status and error code of each domain exception (the most specific class first).
STATUS = [(NotFoundError, 404, "not_found"), (InputError, 400, "invalid_input"), (ConfigError, 400, "invalid_option"),
          (ServiceError, 503, "service_unavailable"), (PageQAError, 400, "error")]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The HTTP API for ``settings`` (default: the process settings); ``pageqa api`` serves it with uvicorn."""
    app = FastAPI(
        title="pageqa", version="1",
        description="Batch question answering over visual documents: submit a question file as a job, poll its "
                    "status, download its output and error files (joined by custom_id). Every route but "
                    "/v1/health needs `Authorization: Bearer <API key>`.",
    )
    app.state.settings = settings or get_settings()
    app.add_middleware(LimitBodySize, max_bytes=app.state.settings.max_upload_bytes)
    for module in (jobs, corpora, reports, health):
        app.include_router(module.router, prefix="/v1")

    @app.exception_handler(PageQAError)
    async def domain_error(_request: Request, exc: PageQAError) -> JSONResponse:
        status, code = next((s, c) for cls, s, c in STATUS if isinstance(exc, cls))
        code = exc.code if isinstance(exc, InputError) else code
        return JSONResponse(error_body(code, str(exc)), status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
                413: "payload_too_large"}.get(exc.status_code, "error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse(error_body("invalid_request", printable(f"{where}: {first.get('msg')}")), status_code=422)

    return app

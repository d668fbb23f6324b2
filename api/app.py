"""The FastAPI application: routes under ``/v1``, OpenAPI docs at ``/docs`` and ``/redoc`` (served offline,
:mod:`api.docs`), domain errors as 4xx JSON."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.deps import uploads_dir
from api.docs import mount_docs
from api.limits import LimitBodySize
from api.routes import batches, corpora, files, health, jobs, reports
from api.schemas import ErrorBody, error_body
from db.engine import TRANSIENT
from pageqa.errors import (
    ConfigError,
    ConflictError,
    InputError,
    NotFoundError,
    PageQAError,
    ServiceError,
    printable,
)
from pageqa.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: HTTP status and error code of each domain exception (the most specific class first).
STATUS = [(NotFoundError, 404, "not_found"), (ConflictError, 409, "conflict"), (InputError, 400, "invalid_input"),
          (ConfigError, 400, "invalid_option"), (ServiceError, 503, "service_unavailable"), (PageQAError, 400, "error")]
#: The error responses of every route but /v1/health, in the OpenAPI document (the body: :class:`ErrorBody`).
ERRORS = {status: {"model": ErrorBody, "description": text} for status, text in (
    (400, "Invalid input or option."), (401, "No API key, or an unknown or revoked one."), (404, "Not found."),
    (413, "Request body too large."), (422, "Invalid request parameters."), (503, "A service pageqa needs is down."))}


#: Uploads older than this at start-up belong to no running request: a file is read within the hour or its job is
#: failed by the reconciler (``db.lifecycle.expire_jobs``), so what is left is what a stopped API process left.
STALE_UPLOAD_S = 2 * 3600


def sweep_uploads(settings: Settings, *, older_than_s: float = STALE_UPLOAD_S) -> int:
    """Remove what a stopped API process left in ``PAGEQA_HOME/uploads`` (files and document batches older than
    ``older_than_s`` seconds); returns how many entries went."""
    cutoff = time.time() - older_than_s
    gone = 0
    for entry in uploads_dir(settings).iterdir():
        if entry.lstat().st_mtime < cutoff:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            gone += 1
    if gone:
        log.warning("removed %d uploads left by a stopped API process", gone)
    return gone


def create_app(settings: Settings | None = None) -> FastAPI:
    """The HTTP API for ``settings`` (default: the process settings); ``pageqa api`` serves it with uvicorn. At
    start-up it removes stale uploads (:func:`sweep_uploads`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        sweep_uploads(app.state.settings)
        yield

    app = FastAPI(
        lifespan=lifespan,
        # Response models are rendered as before them, by json.dumps (FastAPI's default would have pydantic write
        # the bytes, and it writes some floats otherwise: 1e-05 as 0.00001).
        default_response_class=JSONResponse,
        title="pageqa", version="1",
        docs_url=None, redoc_url=None,  # the docs pages are mount_docs' own, with their assets served locally
        description="Batch question answering over visual documents: submit a question file as a job, poll its "
                    "status, download its output and error files (joined by custom_id). Every route but "
                    "/v1/health needs `Authorization: Bearer <API key>`.",
    )
    app.state.settings = settings or get_settings()
    app.add_middleware(LimitBodySize, max_bytes=app.state.settings.max_upload_bytes)
    for module in (jobs, corpora, reports, files, batches):
        app.include_router(module.router, prefix="/v1", responses=ERRORS)
    app.include_router(health.router, prefix="/v1")
    mount_docs(app)

    @app.exception_handler(PageQAError)
    async def domain_error(_request: Request, exc: PageQAError) -> JSONResponse:
        status, code = next((s, c) for cls, s, c in STATUS if isinstance(exc, cls))
        code = exc.code if isinstance(exc, InputError) else code
        return JSONResponse(error_body(code, str(exc)), status_code=status)

    async def database_unreachable(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unreachable: %s", " ".join(str(exc).split())[:300])
        return JSONResponse(error_body("service_unavailable", "the database does not answer; try again later"),
                            status_code=503)

    for transient in TRANSIENT:  # a lost or restarting PostgreSQL: 503, as the error table says, not a bare 500
        app.add_exception_handler(transient, database_unreachable)

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

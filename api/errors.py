"""The API's one error contract: every error answers ``{"error": {"code", "message"}}`` (:class:`api.schemas.
ErrorBody`) whoever raised it: pageqa's domain exceptions, the routes' and Starlette's own ``HTTPException`` (an
unknown route, a wrong method, a multipart body without a boundary or with too many files), request validation, and
a bug (500, whose traceback is still logged). A client that disconnects before its request body is complete is
logged as one line, not as an ``Exception in ASGI application`` traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from api.schemas import error_body
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

log = logging.getLogger(__name__)

#: HTTP status and error code of each domain exception (the most specific class first).
STATUS = [(NotFoundError, 404, "not_found"), (ConflictError, 409, "conflict"), (InputError, 400, "invalid_input"),
          (ConfigError, 400, "invalid_option"), (ServiceError, 503, "service_unavailable"), (PageQAError, 400, "error")]
#: The error code of each status an ``HTTPException`` carries (the routes', the auth dependency's, Starlette's).
HTTP_CODES = {400: "invalid_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
              409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type"}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, printable(" ".join(message.split()))), status_code=status, headers=headers)


async def domain_error(_request: Request, exc: PageQAError) -> JSONResponse:
    """A domain exception as 4xx/503 (:data:`STATUS`); an ``InputError`` keeps its own code."""
    status, code = next((s, c) for cls, s, c in STATUS if isinstance(exc, cls))
    return _error(status, exc.code if isinstance(exc, InputError) else code, str(exc))


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's ``HTTPException`` and FastAPI's subclass of it. Starlette's bare reason phrases ("Not Found",
    "Method Not Allowed") are replaced by a sentence naming the method and path. FastAPI turns a body it could
    not read into 400 "There was an error parsing the body": when the cause was a disconnect, it is logged as one."""
    if isinstance(exc.__cause__, ClientDisconnect):
        return await client_disconnected(request, exc.__cause__)
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path} (the API is under /v1; see /docs)"
    elif exc.status_code == 405 and message == "Method Not Allowed":
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}" + (f" (allowed: {allowed})" if allowed else "")
    return _error(exc.status_code, HTTP_CODES.get(exc.status_code, "error"), message, exc.headers)


async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request FastAPI could not validate: 422 naming the first bad field, or 400 for a body that is not JSON."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        at = first.get("loc", ())[-1]
        return _error(400, "invalid_input", f"invalid JSON body ({first.get('ctx', {}).get('error')} at character {at})")
    where = ".".join(str(x) for x in first.get("loc", ()))
    return _error(422, "invalid_request", f"{where}: {first.get('msg')}")


async def client_disconnected(request: Request, _exc: ClientDisconnect) -> JSONResponse:
    """One warning line for a request whose client left before its body was complete; the answer (400) goes to
    a closed connection, where the server drops it."""
    client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
    length = request.headers.get("content-length")
    log.warning("client %s disconnected before its request body was complete: %s %s (Content-Length %s)", client,
                request.method, printable(request.url.path), printable(length) if length else "none: chunked")
    return _error(400, "incomplete_body", "the client disconnected before the request body was complete")


async def database_unreachable(_request: Request, exc: Exception) -> JSONResponse:
    """A lost or restarting PostgreSQL (:data:`db.engine.TRANSIENT`): 503, as the error table says, not a 500."""
    log.warning("database unreachable: %s", " ".join(str(exc).split())[:300])
    return _error(503, "service_unavailable", "the database does not answer; try again later")


async def server_error(_request: Request, _exc: Exception) -> JSONResponse:
    """A bug: 500 in the contract's shape. Starlette then raises the exception again, so uvicorn logs its
    traceback."""
    return _error(500, "internal_error", "internal server error (the API log has the details)")


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one body."""
    app.add_exception_handler(PageQAError, domain_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(ClientDisconnect, client_disconnected)
    for transient in TRANSIENT:
        app.add_exception_handler(transient, database_unreachable)
    app.add_exception_handler(Exception, server_error)

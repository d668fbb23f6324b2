"""Request body size limit, enforced while the body streams in (before any multipart parsing or spooling), and the
refusal of a body framed twice."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.schemas import error_body
from pageqa.limits import over_limit


class BodyTooLarge(Exception):
    """The request body passed the limit."""


class LimitBodySize:
    """ASGI middleware: a request whose ``Content-Length`` or streamed body exceeds ``max_bytes`` gets 413 with a
    JSON error, without its body being read further (chunked uploads without a length are counted as they come);
    one with both ``Content-Length`` and ``Transfer-Encoding`` gets 400 before any of its body is read."""

    def __init__(self, app: ASGIApp, *, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and b"transfer-encoding" in headers:
            # RFC 9112 §6.1: a sender must not send both, and a server may refuse it; two servers reading the body
            # by different headers is how requests are smuggled past a proxy.
            await _answer(send, 400, "invalid_request", "Content-Length and Transfer-Encoding together: send one")
            return
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        message = over_limit("the request body", self.max_bytes, "max_upload_bytes")
        await _answer(send, 413, "payload_too_large", message)


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    """An error response in the API's one shape, closing the connection (the rest of the body is not read)."""
    body = json.dumps(error_body(code, message))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body.encode()})

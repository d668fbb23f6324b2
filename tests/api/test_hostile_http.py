"""Hostile HTTP against a real ``pageqa api`` process: every error, whoever raises it (Starlette's router and
multipart parser, FastAPI's validation, pageqa), answers the one ``{"error": {"code", "message"}}`` body, and a
client that leaves mid-body is one log line, not a traceback. Cut bodies are sent over raw sockets: no HTTP client
sends them on purpose."""

from __future__ import annotations

import json
import re
import socket
import time

import httpx
import pytest
from conftest import api_process, wait_for

from db import keys
from db.engine import session_scope

LOG_NAME = "test-hostile-http"
BOUNDARY = "pageqa-cut"


@pytest.fixture(scope="module")
def server(settings, services):
    """(base URL, API key, log path) of a ``pageqa api`` process; no worker is needed to refuse requests."""
    with session_scope(settings) as session:
        key = keys.create_key(session, tenant="hostile-http").key
    with api_process(settings, LOG_NAME) as url:
        yield url, key, settings.home_dir / "logs" / f"{LOG_NAME}.log"


def _multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body of (field, file name or None, content) parts, closed."""
    out = b""
    for field, filename, content in parts:
        name = f'; filename="{filename}"' if filename else ""
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"{name}\r\n\r\n'.encode() + content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def _raw(url: str, head: list[str], body: bytes, *, answer: bool = False) -> bytes:
    """Send a request line and headers, then ``body``, and close; with ``answer``, all the server sent."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        if not answer:
            return b""
        conn.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: conn.recv(65536), b""))  # the server closes after its answer


def _error(response: httpx.Response) -> dict:
    """The error of a response, checked to be the contract's body and nothing else."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"] and "\n" not in body["error"]["message"]
    return body["error"]


def test_framework_errors_answer_the_one_error_body(server):
    url, key, _ = server
    auth = {"Authorization": f"Bearer {key}"}
    multipart = {**auth, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    two_files = _multipart(("corpus", None, b"c"), ("file", "a.jsonl", b"{}"), ("file", "b.jsonl", b"{}"))
    cases = [  # (method, path, headers, body, status, code, a piece of the message)
        ("GET", "/nope", {}, b"", 404, "not_found", "no route GET /nope"),
        ("GET", "/v1/nope", auth, b"", 404, "not_found", "no route GET /v1/nope"),
        ("PUT", "/v1/jobs", auth, b"", 405, "method_not_allowed", "PUT is not allowed on /v1/jobs"),
        ("DELETE", "/v1/corpora", auth, b"", 405, "method_not_allowed", "allowed: GET"),
        ("POST", "/v1/jobs", {**auth, "Content-Type": "multipart/form-data"}, b"x", 400, "invalid_request",
         "Missing boundary in multipart"),
        ("POST", "/v1/corpora/c/documents", {**auth, "Content-Type": "multipart/form-data"}, b"x", 400,
         "invalid_request", "Missing boundary in multipart"),
        ("POST", "/v1/files", {**auth, "Content-Type": "multipart/form-data"}, b"x", 400, "invalid_request", ""),
        ("POST", "/v1/jobs", multipart, two_files, 400, "invalid_request", "Too many files"),
        ("POST", "/v1/jobs", {**auth, "Content-Type": "application/json"}, b"{not json", 400, "invalid_input",
         "invalid JSON body"),
        ("POST", "/v1/batches", {**auth, "Content-Type": "application/json"}, b"{not json", 400, "invalid_input",
         "invalid JSON body"),
        ("POST", "/v1/batches", {**auth, "Content-Type": "application/json"}, b"{}", 422, "invalid_request",
         "body.input_file_id"),
        ("GET", "/v1/jobs?limit=abc", auth, b"", 422, "invalid_request", "query.limit"),
        ("GET", "/v1/jobs", {}, b"", 401, "unauthorized", "API key is required"),
        # names are refused before the body is read (tests/scripts/cli/test_names.py has the rule)
        ("POST", "/v1/corpora/%E2%80%AEfdp.exe/documents", multipart, two_files, 400, "invalid_name",
         "corpus name '\\u202efdp.exe' contains U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("POST", "/v1/corpora/%20/documents", multipart, two_files, 400, "invalid_name",
         "corpus name ' ' starts or ends with whitespace"),
    ]
    for method, path, headers, body, status, code, piece in cases:
        response = httpx.request(method, url + path, headers=headers, content=body)
        assert response.status_code == status, (method, path, response.text)
        error = _error(response)
        assert error["code"] == code and piece in error["message"], (method, path, error)
    # a body framed twice (the request-smuggling shape) is refused before any of it is read
    answer = _raw(url, ["POST /v1/jobs HTTP/1.1", "Host: x", f"Authorization: Bearer {key}",
                        "Content-Type: application/json", "Content-Length: 5", "Transfer-Encoding: chunked"],
                  b"5\r\n{}{}{\r\n0\r\n\r\n", answer=True)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 400 Bad Request"
    assert b'"code": "invalid_request"' in rest and b"Content-Length and Transfer-Encoding together" in rest


def test_a_client_that_leaves_mid_body_is_one_log_line(server):
    url, key, log = server
    head = ["Host: x", f"Authorization: Bearer {key}"]
    upload = _multipart(("corpus", None, b"c"))[:-len(f"--{BOUNDARY}--\r\n")] + (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="q.jsonl"\r\n\r\n'.encode()
        + json.dumps({"custom_id": "a", "question": "cut?"}).encode() * 20)
    cuts = [  # (route, headers, the part of the body sent before the client leaves)
        ("/v1/jobs", [f"Content-Type: multipart/form-data; boundary={BOUNDARY}", "Content-Length: 100000"], upload),
        ("/v1/corpora/c/documents", [f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
                                     "Content-Length: 100000"], upload.replace(b'name="file"', b'name="files"')),
        ("/v1/files", [f"Content-Type: multipart/form-data; boundary={BOUNDARY}", "Content-Length: 100000"], upload),
        ("/v1/jobs", ["Content-Type: application/json", "Content-Length: 1000"], b'{"corpus": "c", "quest'),
        ("/v1/batches", ["Content-Type: application/json", "Content-Length: 1000"], b'{"input_file_id": '),
        ("/v1/jobs", ["Content-Type: application/json", "Transfer-Encoding: chunked"], b'40\r\n{"corpus": '),
    ]
    for route, headers, body in cuts:
        _raw(url, [f"POST {route} HTTP/1.1", *head, *headers], body)
    line = re.compile(r"^\S+ \S+ WARNING api\.errors: client 127\.0\.0\.1:\d+ disconnected before its request body "
                      r"was complete: POST (\S+) \(Content-Length (\d+|none: chunked)\)$", re.MULTILINE)
    found = wait_for(lambda: len(m := line.findall(log.read_text())) >= len(cuts) and m, timeout_s=30,
                     what="a log line per cut request")
    assert sorted(found) == sorted((route, "none: chunked" if "chunked" in " ".join(h) else h[-1].split(": ")[1])
                                   for route, h, _ in cuts)
    text = log.read_text()
    assert "Traceback" not in text and "Exception in ASGI application" not in text, text[-3000:]
    time.sleep(0.2)
    assert httpx.get(f"{url}/v1/health", timeout=10).json()["status"] == "ok", "the server still answers"


def test_an_uploaded_file_name_is_stored_inert(server):
    url, key, _ = server
    response = httpx.post(f"{url}/v1/files", headers={"Authorization": f"Bearer {key}"}, data={"purpose": "batch"},
                          files={"file": ("\u202elnosj.exe", b'{"custom_id": "a"}\n', "application/x-ndjson")})
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == "\ufffdlnosj.exe"  # as a document's name is stored: one printable part

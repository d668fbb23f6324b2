"""A small typed client of pageqa's HTTP API (httpx), one method per route, for ``pageqa … --api URL``.

Files go up and come down streamed: an upload is read from disk 64 KiB at a time as the request is sent (httpx
renders multipart files by ``read``), a download is handed on chunk by chunk. Every HTTP error becomes one of
pageqa's domain exceptions carrying the server's one-line message, so the CLI reports it as it reports the same
error from the database.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO, Literal
from urllib.parse import quote

import httpx

from pageqa.errors import (
    ConfigError,
    InputError,
    NotFoundError,
    PageQAError,
    ServiceError,
    printable,
)

#: Files per document upload request (the server's ``api.routes.corpora.MAX_FILES``).
MAX_FILES_PER_UPLOAD = 100

OnBytes = Callable[[int], None]
FileKind = Literal["results", "errors"]
FileFormat = Literal["jsonl", "csv"]


class _Counted:
    """A binary file whose reads report how many bytes they returned (to drive a progress bar). ``fileno`` is kept so
    httpx sizes the upload from the file system (a ``Content-Length``) instead of reading it into memory."""

    def __init__(self, file: BinaryIO, on_bytes: OnBytes | None):
        self._file, self._on_bytes = file, on_bytes

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        if data and self._on_bytes is not None:
            self._on_bytes(len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()


def _message(response: httpx.Response) -> tuple[str, str]:
    """The error ``code`` and one-line ``message`` of an error response (pageqa's ``{"error": {...}}`` body, or
    whatever else a proxy in front of it answered)."""
    code, message = "error", ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code, message = str(body["error"].get("code", code)), str(body["error"].get("message", ""))
    elif isinstance(body, dict) and "detail" in body:
        message = str(body["detail"])
    else:
        message = response.text[:300]
    message = printable(" ".join(message.split()))[:1000]
    return code, message or f"HTTP {response.status_code} {response.reason_phrase}"


class ApiClient:
    """The routes of a pageqa HTTP API at ``base_url`` (e.g. ``http://host:8000``), called with ``api_key`` as a
    Bearer token. ``timeout`` (seconds) bounds connecting and each read; a document upload waits up to
    ``upload_timeout`` for its answer, since the server renders the pages before it answers.

    Every method raises:
        NotFoundError: 404 (no such job or corpus, or another tenant's).
        InputError: 400 or 422 (the server refused the request or a file in it).
        ConfigError: 401 (the API key is missing, unknown or revoked); an invalid ``base_url``.
        ServiceError: the server cannot be reached, does not answer in time, or answers 5xx.
        PageQAError: any other 4xx (409: the job has already ended; 413: the upload is too large).
    """

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 30.0, upload_timeout: float = 1800.0):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"the API URL must start with http:// or https://, not {printable(base_url)!r}")
        self.base_url = base_url.rstrip("/")
        self.upload_timeout = httpx.Timeout(timeout, read=upload_timeout)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        weakref.finalize(self, self._http.close)  # the connection pool closes with the client, even unclosed

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # -- transport ----------------------------------------------------------------------------------------------

    def _raise_for(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        code, message = _message(response)
        status = response.status_code
        if status == 401:
            raise ConfigError(f"{message} (the key comes from --api-key or PAGEQA_API_KEY; pageqa keys create)")
        if status == 404:
            raise NotFoundError(message)
        if status in (400, 422):
            raise InputError(message, code=code)
        if status >= 500:
            raise ServiceError(f"the pageqa API at {self.base_url} answered {status}: {message}")
        raise PageQAError(message)

    def _unreachable(self, exc: httpx.HTTPError) -> ServiceError:
        if isinstance(exc, httpx.TimeoutException):
            return ServiceError(f"the pageqa API at {self.base_url} did not answer in time ({type(exc).__name__})")
        return ServiceError(f"cannot reach the pageqa API at {self.base_url} "
                            f"({printable(' '.join(str(exc).split())) or type(exc).__name__})")

    def _call(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        self._raise_for(response)
        return response.json()

    @contextmanager
    def _stream(self, method: str, path: str, **kwargs) -> Iterator[httpx.Response]:
        """A response whose status is checked and whose body is still to read."""
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if not response.is_success:
                    response.read()
                    self._raise_for(response)
                yield response
        except httpx.TransportError as exc:  # also one raised while the body streams
            raise self._unreachable(exc) from None

    # -- jobs ---------------------------------------------------------------------------------------------------

    def submit_job(self, path: Path, *, corpus: str, fields: Mapping[str, str] | None = None, strict: bool = False,
                   on_bytes: OnBytes | None = None) -> dict:
        """``POST /v1/jobs``: upload the question file ``path`` (streamed) with the job's option ``fields`` (form
        values: ``priority``, ``completion_window``, ``lanes`` as ``visual,lexical`` …); the job, ``validating``.
        ``on_bytes(n)`` is called as the file is sent."""
        data = {"corpus": corpus, "strict": "true" if strict else "false", **(fields or {})}
        with path.open("rb") as fh:
            files = {"file": (path.name, _Counted(fh, on_bytes), "application/octet-stream")}
            return self._call("POST", "/v1/jobs", data=data, files=files)

    def list_jobs(self, *, limit: int = 20, after: str | None = None, status: str | None = None) -> dict:
        """``GET /v1/jobs``: one page of the tenant's jobs, newest first (``data``, ``has_more``, ``last_id``)."""
        params = {"limit": limit, **({"after": after} if after else {}), **({"status": status} if status else {})}
        return self._call("GET", "/v1/jobs", params=params)

    def iter_jobs(self, *, status: str | None = None, page_size: int = 100) -> Iterator[dict]:
        """Every job of the tenant, newest first, fetched ``page_size`` at a time (at most 100)."""
        after = None
        while True:
            page = self.list_jobs(limit=page_size, after=after, status=status)
            yield from page["data"]
            if not page["has_more"]:
                return
            after = page["last_id"]

    def get_job(self, job_id: str) -> dict:
        """``GET /v1/jobs/{id}``: status, ``request_counts``, validation ``errors``, a timestamp per state."""
        return self._call("GET", f"/v1/jobs/{quote(job_id, safe='')}")

    def cancel_job(self, job_id: str) -> dict:
        """``POST /v1/jobs/{id}/cancel``: the job, ``cancelling`` or ``cancelled`` (409: it has already ended)."""
        return self._call("POST", f"/v1/jobs/{quote(job_id, safe='')}/cancel")

    @contextmanager
    def download(self, job_id: str, kind: FileKind, *, format: FileFormat = "jsonl") -> Iterator[Iterator[bytes]]:
        """``GET /v1/jobs/{id}/results`` or ``/errors``: the file's bytes as they arrive. The status is checked on
        entering, before any byte is handed on, so a 404 leaves no half-made file behind."""
        with self._stream("GET", f"/v1/jobs/{quote(job_id, safe='')}/{kind}", params={"format": format}) as response:
            yield response.iter_bytes()

    # -- corpora ------------------------------------------------------------------------------------------------

    def upload_documents(self, corpus: str, files: Sequence[Path], *, on_bytes: OnBytes | None = None) -> dict:
        """``POST /v1/corpora/{name}/documents``: ``files`` (at most :data:`MAX_FILES_PER_UPLOAD`, streamed) into
        the corpus; the server's report (``added``, ``duplicates``, ``errors``, ``pages``, ``pages_queued``)."""
        with ExitStack() as stack:
            parts = [("files", (path.name, _Counted(stack.enter_context(path.open("rb")), on_bytes)))
                     for path in files]
            return self._call("POST", f"/v1/corpora/{quote(corpus, safe='')}/documents", files=parts,
                              timeout=self.upload_timeout)

    def list_corpora(self) -> list[dict]:
        """``GET /v1/corpora``: the tenant's corpora with documents, pages, pages_indexed, pages_failed."""
        return self._call("GET", "/v1/corpora")["data"]

    def get_corpus(self, name: str) -> dict:
        """``GET /v1/corpora/{name}``: the corpus's counts and its ``document_list``."""
        return self._call("GET", f"/v1/corpora/{quote(name, safe='')}")

    def health(self) -> dict:
        """``GET /v1/health`` (no key needed): database, broker and workers; ``status`` ``ok`` or
        ``unavailable`` (a 503 is a report here, not an error)."""
        try:
            response = self._http.get("/v1/health")
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code != 503:
            self._raise_for(response)
        return response.json()

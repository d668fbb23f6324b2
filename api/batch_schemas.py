"""The HTTP shapes of the OpenAI-compatible routes (``/v1/files``, ``/v1/batches``): the File and Batch objects with
OpenAI's field names, types and status names (timestamps in Unix seconds), as the official SDK's ``FileObject`` and
``Batch`` models validate them, and the functions that build them from what :mod:`services` returns."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import Sent
from pageqa.domain import JobStatus
from services.batch_format import request_counts
from services.batches import BatchView
from services.files import FileInfo


class FilePublic(Sent):
    """A stored file: ``purpose`` ``batch`` (an uploaded input file) or ``batch_output`` (a batch's output or error
    file); ``bytes`` its size; ``status`` always ``processed`` (a file is stored whole or not at all); files do not
    expire (``expires_at`` null)."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: Literal["batch", "batch_output"]
    status: Literal["processed"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


def file_record(info: FileInfo) -> FilePublic:
    """The :class:`FilePublic` of a file."""
    return FilePublic(id=info.id, bytes=info.bytes, created_at=info.created_at, filename=info.filename,
                      purpose=info.purpose)


class FileList(Sent):
    """A page of files; ``after=last_id`` asks for the next page while ``has_more``."""

    object: Literal["list"] = "list"
    data: list[FilePublic]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(Sent):
    """The answer to a deletion."""

    id: str
    object: Literal["file"] = "file"
    deleted: bool


Metadata = Annotated[dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
                     Field(max_length=16)]


class BatchCreate(BaseModel):
    """``POST /v1/batches``: the input file (uploaded with purpose ``batch``), ``endpoint`` ``/v1/chat/completions``,
    the completion window (``24h``; pageqa also takes ``90m``, ``7d`` …) and ``metadata``: ``corpus`` (required) names
    the corpus to answer from; ``priority``, ``retrieve_top_k``, ``rerank_top_k``, ``max_new_tokens``, ``chunk_size``,
    ``lanes`` and ``strict`` set job options; other keys are kept and shown back."""

    model_config = ConfigDict(extra="ignore")
    input_file_id: str = Field(max_length=40)
    endpoint: str = Field(max_length=200)
    completion_window: str = Field("24h", max_length=20)
    metadata: Metadata | None = None
    output_expires_after: dict[str, Any] | None = Field(None, description="Accepted; output files do not expire.")


class BatchRequestCounts(Sent):
    """``completed``: answered; ``failed``: ended without an answer (failed, expired or cancelled)."""

    total: int
    completed: int
    failed: int


class BatchError(Sent):
    """A refused input line: ``line`` 1-based (null for the whole file), ``code``, ``message``."""

    code: str
    line: int | None
    message: str
    param: str | None = None


class BatchErrors(Sent):
    """The first refused lines of the input file (the job's ``errors``)."""

    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchPublic(Sent):
    """A batch: the pageqa job it is (same id, same status), with OpenAI's fields. ``output_file_id`` and
    ``error_file_id`` are set once the batch has ended (null when that file would be empty); ``model`` and
    ``usage`` are null (see the README)."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None
    input_file_id: str
    completion_window: str
    status: JobStatus
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: BatchRequestCounts
    metadata: dict[str, str] | None
    model: str | None = None
    usage: None = None


_STAMPS = ("created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
           "cancelling_at", "cancelled_at")


def _unix(value: dt.datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def batch_record(view: BatchView) -> BatchPublic:
    """The :class:`BatchPublic` of a batch read by :func:`services.batches.view`."""
    batch, job = view.batch, view.detail.job
    errors = None
    if job.n_errors:
        errors = BatchErrors(data=[BatchError(**{k: e.get(k) for k in ("code", "line", "message")})
                                   for e in job.errors])
    return BatchPublic(
        id=job.id, endpoint=batch.endpoint, errors=errors, input_file_id=batch.input_file_id,
        completion_window=batch.completion_window, status=job.status, output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id, **{name: _unix(getattr(job, name)) for name in _STAMPS},
        request_counts=BatchRequestCounts(**request_counts(view.detail.request_counts)), metadata=batch.metadata_,
    )


class BatchList(Sent):
    """A page of batches, newest first; ``after=last_id`` asks for the next page while ``has_more``."""

    object: Literal["list"] = "list"
    data: list[BatchPublic]
    first_id: str | None
    last_id: str | None
    has_more: bool

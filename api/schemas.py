"""The HTTP shapes of pageqa: the response models each JSON route declares (so ``/openapi.json`` describes what it
answers) and the functions that turn what :mod:`services` returns into them. Field order is the order of the keys
on the wire; every field is always present (a state not reached is ``null``), except in :class:`Check`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pageqa.domain import JobStatus, rfc3339
from services.job_views import JobDetail

#: An instant as the API writes it: RFC 3339 in UTC with a ``Z`` (``2024-03-01T12:00:00.123456Z``).
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class Sent(BaseModel):
    """Base of the response models whose every field is always sent: one with a default (``object``) is still
    marked required in the OpenAPI document."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class ErrorDetail(Sent):
    """What went wrong: a stable ``code`` (e.g. ``not_found``, ``conflict``, ``invalid_input``) and a one-line
    ``message`` for people."""

    code: str
    message: str


class ErrorBody(Sent):
    """The body of every error response of the API's own (4xx and 503)."""

    error: ErrorDetail


def cursor_page(data: list, more: bool) -> dict:
    """The fields of a cursor page of ``data`` (items with an ``id``): ``data``, ``first_id``, ``last_id`` (None on
    an empty page) and ``has_more``; ``after=last_id`` asks for the next page."""
    return {"data": data, "first_id": data[0].id if data else None, "last_id": data[-1].id if data else None,
            "has_more": more}


def error_body(code: str, message: str) -> dict:
    """The JSON body of every error response: ``{"error": {"code", "message"}}`` (:class:`ErrorBody`)."""
    return ErrorBody(error=ErrorDetail(code=code, message=message)).model_dump()


class RequestCounts(Sent):
    """A job's questions by state; they sum to ``total``. Frozen once the job ended, else counted at the request."""

    total: int
    completed: int
    failed: int
    expired: int
    cancelled: int
    queued: int
    running: int


class JobError(Sent):
    """One validation error of a question file: 1-based ``line`` (null for the whole file), ``code``, ``message``."""

    line: int | None
    code: str
    message: str


class JobErrors(Sent):
    """The first validation errors of a job's file (``data``) and how many there were in all (``total``)."""

    object: Literal["list"] = "list"
    data: list[JobError]
    total: int


class JobPublic(Sent):
    """A job as the API shows it (OpenAI Batch style): the file name given (``input_file``), its ``options``,
    ``request_counts``, validation ``errors`` (null when none), a timestamp per state reached (null until then),
    ``expires_at`` (end of its completion window) and where its output and error files are."""

    id: str
    object: Literal["job"] = "job"
    status: JobStatus
    corpus: str
    input_file: str
    options: dict[str, Any]
    request_counts: RequestCounts
    errors: JobErrors | None
    created_at: Timestamp
    in_progress_at: Timestamp | None
    finalizing_at: Timestamp | None
    completed_at: Timestamp | None
    failed_at: Timestamp | None
    cancelling_at: Timestamp | None
    cancelled_at: Timestamp | None
    expired_at: Timestamp | None
    expires_at: Timestamp
    output_url: str
    error_url: str


#: The timestamp columns a job record shows: its creation, one per state it can reach after ``validating`` (in
#: the order of :class:`~pageqa.domain.JobStatus`), and the end of its completion window.
_STAMPS = ("created_at", *(f"{s.value}_at" for s in JobStatus if s is not JobStatus.validating), "expires_at")


def job_record(detail: JobDetail) -> JobPublic:
    """The :class:`JobPublic` of a job read by :func:`services.job_views.job_detail` (timestamps RFC 3339 in UTC)."""
    job = detail.job
    errors = None
    if job.n_errors:
        data = [JobError(**{k: e.get(k) for k in ("line", "code", "message")}) for e in job.errors]
        errors = JobErrors(data=data, total=job.n_errors)
    return JobPublic(
        id=job.id, status=job.status, corpus=detail.corpus, input_file=job.source, options=job.options,
        request_counts=RequestCounts(**detail.request_counts), errors=errors,  # keys in field order, not JSONB's
        **{name: rfc3339(getattr(job, name)) for name in _STAMPS},
        output_url=f"/v1/jobs/{job.id}/results", error_url=f"/v1/jobs/{job.id}/errors",
    )


class JobList(Sent):
    """A page of jobs, newest first; ``after=last_id`` asks for the next page while ``has_more``."""

    object: Literal["list"] = "list"
    data: list[JobPublic]
    first_id: str | None
    last_id: str | None
    has_more: bool


class Upload(Sent):
    """What an upload did: file names ``added`` and ``duplicates`` (already in the corpus), one-line ``errors``
    naming the refused files, pages added and pages queued for indexing."""

    corpus: str
    added: list[str]
    duplicates: list[str]
    errors: list[str]
    pages: int
    pages_queued: int


class CorpusPublic(Sent):
    """A corpus of the caller's tenant (the tenant is not shown: the API key names it) with its document count
    and its pages: in all, indexed (searchable with the configured models) and failed to index."""

    object: Literal["corpus"] = "corpus"
    name: str
    documents: int
    pages: int
    pages_indexed: int
    pages_failed: int
    created_at: Timestamp


class DocumentPublic(Sent):
    """A document of a corpus: its file name as uploaded, title, ``kind`` (``pdf`` or ``image``), pages, size in
    bytes."""

    id: int
    name: str
    title: str
    kind: str
    pages: int
    size_bytes: int
    created_at: Timestamp


class CorpusDetail(CorpusPublic):
    """A corpus with its documents, oldest first."""

    document_list: list[DocumentPublic]


class CorpusList(Sent):
    """The caller's corpora, by name."""

    object: Literal["list"] = "list"
    data: list[CorpusPublic]


class ReportPublic(Sent):
    """A stored nightly report: its day (``YYYY-MM-DD``), when it was built and where to read it."""

    object: Literal["report"] = "report"
    date: Annotated[str, Field(json_schema_extra={"format": "date"})]
    generated_at: Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    url: str


class ReportList(Sent):
    """The days with a report for the caller's tenant, newest first."""

    object: Literal["list"] = "list"
    data: list[ReportPublic]


class Check(BaseModel):
    """One dependency's answer: ``ok`` with the milliseconds it took (and for the workers their ``count`` and
    ``names``), or not ``ok`` with an ``error``. Only the keys that apply are sent."""

    ok: bool
    ms: float | None = None
    count: int | None = None
    names: list[str] | None = None
    error: str | None = None


class Health(Sent):
    """``ok`` when the database and the broker answer, else ``unavailable``; each dependency's :class:`Check`."""

    status: Literal["ok", "unavailable"]
    database: Check
    broker: Check
    workers: Check

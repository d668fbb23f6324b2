"""Job operations behind the CLI and the HTTP API: open a job, validate and store its question file, cancel it.
Reading jobs is :mod:`services.job_views`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy.orm import Session

from db import corpus as corpus_db
from db import jobs as jobs_db
from db import lifecycle
from db.engine import session_scope
from pageqa.domain import JobStatus
from pageqa.errors import InputError, ServiceError
from pageqa.options import MAX_NEW_TOKENS, JobOptions, job_options
from pageqa.settings import Settings
from services.job_views import JobStatusView
from services.question_file import (
    MAX_KEPT_ERRORS,
    ErrorLog,
    QuestionFile,
    check_question_path,
    open_question_file,
)
from worker.queue import enqueue_questions


@dataclass(frozen=True)
class Submitted:
    """A submitted job: its id, questions stored, in-job duplicates among them (answered by copy, not enqueued),
    the one-line errors of the rows left out (the first ``MAX_KEPT_ERRORS``, in line order) and how many rows were
    left out in all, and notes on how the file was read."""

    job_id: str
    total: int
    duplicates: int
    errors: list[str]
    notes: list[str] = field(default_factory=list)
    n_errors: int = 0
    tasks: int = 0  # answering tasks sent
    store_s: float = 0.0  # seconds reading, checking and storing the rows, up to the commit
    enqueue_s: float = 0.0  # seconds streaming the ids back and sending the tasks

    @property
    def errors_omitted(self) -> int:
        """Rows left out whose error is not in ``errors`` (only the first ones are kept)."""
        return self.n_errors - len(self.errors)


def open_job(settings: Settings, *, corpus: str, source: str, options: JobOptions, tenant: str = "default") -> str:
    """Create and commit a job in ``validating`` for the tenant's ``corpus``; returns its id. ``source`` is the
    question file's name as the user gave it (kept cleaned, for display only).

    Raises:
        NotFoundError: the tenant has no such corpus.
    """
    with session_scope(settings) as session:
        return open_job_in(session, corpus=corpus, source=source, options=options, tenant=tenant)


def open_job_in(session: Session, *, corpus: str, source: str, options: JobOptions, tenant: str) -> str:
    """:func:`open_job` in the caller's transaction (a batch creates its job and its own row in one); returns the
    job id.

    Raises:
        NotFoundError: the tenant has no such corpus.
    """
    corpus_row = corpus_db.get_corpus(session, name=corpus, tenant=tenant)
    job = jobs_db.open_job(session, corpus_id=corpus_row.id, source=corpus_db.clean_name(source) or "questions",
                           options=options.stored(), tenant=tenant, completion_window_s=options.completion_window_s)
    return job.id


def validate_job(
    settings: Settings, *, job_id: str, path: Path, strict: bool = False, max_errors: int = MAX_KEPT_ERRORS,
    kind: str | None = None,
) -> Submitted:
    """Read, check and store the question file of a ``validating`` job in one transaction (the job is then
    ``in_progress``), then enqueue its questions in chunks at the job's priority.

    The file is streamed: rows are read, checked and copied to PostgreSQL one at a time, and the ids are streamed
    back into tasks after the commit, so memory does not grow with the number of rows. Rows with errors (including
    an unknown ``document`` and a ``custom_id`` already used on an earlier line) are left out and reported, unless
    ``strict``; only the first ``max_errors`` messages are kept. Repeated questions (same normalised text and
    document) are stored but not enqueued: they get the first one's answer. When the file is refused, the job
    ends ``failed`` with its errors (``{"line", "code", "message"}``) and no question. ``kind`` ``"openai"``
    reads an OpenAI batch input file (:func:`~services.question_file.open_question_file`); the largest
    ``max_tokens`` of its lines becomes the job's ``max_new_tokens`` unless the job sets one.

    Raises:
        InputError: the file is unreadable or empty, has no valid row, or (``strict``) has any invalid row; or the
            job is not ``validating`` (cancelled meanwhile).
        ServiceError: the job is stored but the broker cannot be reached (the message names the job).
    """
    start = time.perf_counter()
    errors = ErrorLog(keep=max_errors)
    notes: list[str] = []
    try:
        with session_scope(settings) as session:
            job = jobs_db.lock_job(session, job_id=job_id)  # a cancel waits for us
            if job is None or job.status is not JobStatus.validating:
                raise InputError(f"job {job_id} is {job.status.value if job else 'gone'}, not validating")
            questions = open_question_file(path, document_field=job.options.get("document_field", "document"),
                                           errors=errors, kind=kind)
            notes = questions.notes
            corpus_name = corpus_db.corpus_name(session, corpus_id=job.corpus_id)
            docs = {name: doc.id for name, doc in corpus_db.documents_by_name(session, corpus_id=job.corpus_id).items()}
            stored = jobs_db.store_questions(session, job_id=job_id, keep_repeats=max_errors,
                                             questions=_with_documents(questions, docs, corpus_name))
            errors.merge((InputError(f"custom_id {r.custom_id!r} repeats line {r.first_line}", source=str(path),
                                     line=r.line_number, code="duplicate_custom_id") for r in stored.repeated),
                         count=stored.n_repeated)
            if strict and errors.count:
                raise InputError(f"{errors.count} invalid rows (--strict); first: {errors.kept[0]}")
            if not stored.total:
                first = f"; first error: {errors.kept[0]}" if errors.kept else ""
                raise InputError(f"no valid question{first}", source=str(path))
            job.errors, job.n_errors = _error_records(errors.kept), errors.count
            if questions.max_tokens and "max_new_tokens" not in job.options:
                job.options = {**job.options, "max_new_tokens": min(questions.max_tokens, MAX_NEW_TOKENS)}
            options = dict(job.options)
    except InputError as exc:
        _refuse(settings, job_id=job_id, error=exc, errors=errors)
        raise
    stored_at = time.perf_counter()
    tasks = _enqueue(settings, job_id=job_id, options=options, total=stored.total)
    return Submitted(job_id, stored.total, stored.duplicates, [str(e) for e in errors.kept], notes,
                     errors.count, tasks, stored_at - start, time.perf_counter() - stored_at)


def _enqueue(settings: Settings, *, job_id: str, options: dict, total: int) -> int:
    """Send the stored job's questions in chunks at its priority, after the commit (a worker finds every row it
    is sent); returns the tasks sent.

    Raises:
        ServiceError: the broker cannot be reached (the message names the job and its ``total`` questions).
    """
    chunk = int(options.get("chunk_size") or settings.chunk_size)
    try:
        with session_scope(settings) as session:
            ids = jobs_db.iter_question_ids(session, job_id=job_id, to_enqueue=True)
            return enqueue_questions(settings, question_ids=ids, chunk_size=chunk, priority=options.get("priority"))
    except KombuOperationalError as exc:  # the job is stored: PostgreSQL, not the broker, is the source of truth
        raise ServiceError(
            f"job {job_id} is stored ({total} questions) but the broker cannot be reached "
            f"({' '.join(str(exc).split())}); the reconciler sends its questions once the broker and a worker are "
            f"back (within PAGEQA_REQUEUE_AFTER_SECONDS, {settings.requeue_after_seconds} s)"
        ) from None


def refuse_job(settings: Settings, *, job_id: str, error: InputError) -> None:
    """End a ``validating`` job ``failed`` with ``error`` (its file could not be read at all)."""
    _refuse(settings, job_id=job_id, error=error, errors=ErrorLog())


def _refuse(settings: Settings, *, job_id: str, error: InputError, errors: ErrorLog) -> None:
    """End a ``validating`` job as ``failed``: the rows' errors when there are, else the file's own error."""
    with session_scope(settings) as session:
        lifecycle.fail_job(session, job_id=job_id, n_errors=max(errors.count, 1),
                           errors=_error_records(errors.kept or [error]))


def _error_records(errors: list[InputError]) -> list[dict]:
    """Validation errors as stored with the job: 1-based ``line`` (None for the whole file), ``code``,
    ``message`` (without the file name: the server's copy of an upload has a name of its own)."""
    return [{"line": e.line, "code": e.code, "message": e.reason} for e in errors]


def submit_file(
    settings: Settings, *, path: Path, corpus: str, options: JobOptions | dict | None = None, strict: bool = False,
    tenant: str = "default", max_errors: int = MAX_KEPT_ERRORS,
) -> Submitted:
    """Submit a question file: :func:`open_job`, then :func:`validate_job` in this process. ``options`` may be a
    dict of :class:`~pageqa.options.JobOptions` fields.

    Raises:
        ConfigError: an option is out of range.
        NotFoundError: the tenant has no such corpus (no job is created).
        InputError: the file is not a regular question file or is over PAGEQA_MAX_UPLOAD_BYTES
            (:func:`~services.question_file.check_question_path`: no job is created); or its content is refused
            (the job is stored as ``failed`` with its errors).
        ServiceError: the job is stored but the broker cannot be reached (the message names the job).
    """
    if not isinstance(options, JobOptions):
        options = job_options(**(options or {}))
    check_question_path(path, max_bytes=settings.max_upload_bytes)  # before the job exists: a pipe never ends
    job_id = open_job(settings, corpus=corpus, source=path.name, options=options, tenant=tenant)
    return validate_job(settings, job_id=job_id, path=path, strict=strict, max_errors=max_errors)


def _with_documents(questions: QuestionFile, docs: dict[str, int], corpus: str) -> Iterator[jobs_db.NewQuestion]:
    """The file's rows with their document filter resolved to an id; a row naming no document of the corpus is
    reported to the file's errors and left out."""
    for row in questions:
        doc_id = docs.get(row.document) if row.document else None
        if row.document and doc_id is None:
            questions.errors.add(InputError(f"document {row.document!r} is not in corpus {corpus!r}",
                                            source=str(questions.path), line=row.line, code="unknown_document"))
            continue
        yield jobs_db.NewQuestion(row.custom_id, row.question, doc_id, row.line)


def cancel_job(settings: Settings, *, job_id: str, tenant: str | None = None) -> JobStatusView:
    """Cancel a job (:func:`db.lifecycle.cancel_job`): queued questions will not run, answered ones keep their
    answers, running ones finish; returns its status after.

    Raises:
        NotFoundError: no such job (of ``tenant``, when given).
        ConflictError: the job has already ended.
    """
    with session_scope(settings) as session:
        counts = lifecycle.cancel_job(session, job_id=job_id, tenant=tenant)
        job = jobs_db.get_job(session, job_id=job_id)
        return JobStatusView(job.id, job.status.value, job.total, counts, jobs_db.elapsed_s(job))

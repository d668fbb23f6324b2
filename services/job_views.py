"""Reading jobs, behind the CLI and the HTTP API: a job's status and counts, its detail as ``/v1/jobs`` shows it,
a page of a tenant's jobs. What changes a job (open, validate, cancel) is :mod:`services.jobs`."""

from __future__ import annotations

from dataclasses import dataclass

from db import corpus as corpus_db
from db import jobs as jobs_db
from db.engine import session_scope
from db.schema import Job
from pageqa.domain import JobStatus, is_final
from pageqa.settings import Settings


@dataclass(frozen=True)
class JobStatusView:
    """A job's status and per-status question counts."""

    job_id: str
    status: str
    total: int
    counts: dict[str, int]
    elapsed_s: float

    @property
    def done(self) -> int:
        """Questions that have ended: answered, failed, cancelled or expired."""
        return self.total - self.counts["queued"] - self.counts["running"]

    @property
    def finished(self) -> bool:
        """Whether the job has reached a final status."""
        return is_final(self.status)


def job_status(settings: Settings, *, job_id: str, tenant: str | None = None) -> JobStatusView:
    """The job's current status.

    Raises:
        NotFoundError: no such job (of ``tenant``, when given).
    """
    with session_scope(settings) as session:
        job = jobs_db.get_job(session, job_id=job_id, tenant=tenant)
        counts = jobs_db.status_counts(session, job_id=job_id)
        return JobStatusView(job.id, job.status.value, job.total, counts, jobs_db.elapsed_s(job))


def list_jobs(
    settings: Settings, *, tenant: str | None, status: JobStatus | None = None, limit: int = 20,
    after: str | None = None,
) -> tuple[list[Job], bool]:
    """The jobs of ``tenant`` (None: every tenant's), newest first, at most ``limit`` after the job ``after`` (the
    last id of the previous page); and whether more follow."""
    with session_scope(settings) as session:
        return jobs_db.list_jobs(session, tenant=tenant, status=status, limit=limit, after=after)


def require_job(settings: Settings, *, job_id: str, tenant: str | None = None) -> None:
    """Check that the job exists, e.g. to answer 404 before a download starts streaming.

    Raises:
        NotFoundError: no such job (of ``tenant``, when given).
    """
    with session_scope(settings) as session:
        jobs_db.get_job(session, job_id=job_id, tenant=tenant)


@dataclass(frozen=True)
class JobDetail:
    """A job row, read whole and detached from its session, with what its public record shows beside it: its
    corpus's name and its ``request_counts`` (:func:`db.jobs.request_counts`: frozen once the job ended, else
    counted at the read)."""

    job: Job
    corpus: str
    request_counts: dict[str, int]


def _detail(session, job: Job) -> JobDetail:
    corpus = corpus_db.corpus_name(session, corpus_id=job.corpus_id)
    counts = job.request_counts or jobs_db.request_counts(jobs_db.status_counts(session, job_id=job.id))
    return JobDetail(job, corpus, counts)


def job_detail(settings: Settings, *, job_id: str, tenant: str | None = None) -> JobDetail:
    """The job with its corpus name and question counts, as ``GET /v1/jobs/{id}`` shows it.

    Raises:
        NotFoundError: no such job (of ``tenant``, when given).
    """
    with session_scope(settings) as session:
        return _detail(session, jobs_db.get_job(session, job_id=job_id, tenant=tenant))


def list_job_details(
    settings: Settings, *, tenant: str | None, status: JobStatus | None = None, limit: int = 20,
    after: str | None = None,
) -> tuple[list[JobDetail], bool]:
    """:func:`list_jobs` with each job's corpus name and question counts, as ``GET /v1/jobs`` shows them.

    Raises:
        NotFoundError: ``after`` is not a job of the tenant.
    """
    with session_scope(settings) as session:
        rows, more = jobs_db.list_jobs(session, tenant=tenant, status=status, limit=limit, after=after)
        return [_detail(session, job) for job in rows], more

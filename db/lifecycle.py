"""A question's life after submit: claims under a lease, failures, the reconciler, cancellation and the end of a
job. Postgres holds every state; these functions run in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, aliased

from db.jobs import JOB_ID, held_by, request_counts, status_counts
from db.schema import Job, Question
from pageqa.domain import ENDED_JOB_STATES, JobStatus, QuestionStatus
from pageqa.errors import ConflictError, NotFoundError


def claim_questions(
    session: Session, *, ids: Sequence[int], worker: str | None = None, lease_s: float = 1800.0,
    max_attempts: int | None = None, take_over: Sequence[str] = (),
) -> list[Question]:
    """Lock the due ``queued`` questions among ``ids``, mark them ``running`` under a lease of ``lease_s`` seconds
    held by ``worker``, and count an attempt.

    Questions already answered, failed, cancelled or running elsewhere are skipped, so a task delivered twice does
    no work twice; so are questions that used up ``max_attempts`` (the reconciler fails them) and questions whose
    retry is not due yet (``enqueued_at`` in the future: :func:`release` set a backoff). Questions ``running``
    under this same ``worker`` are taken back without counting an attempt: a worker runs one task at a time, so
    they belong to an earlier task of its own that a transient error (a database restart) interrupted. So are
    questions held by the workers in ``take_over``: a task retried after such an error names the workers whose
    attempt it continues, and another worker may run it.
    """
    mine = held_by([worker, *take_over])
    due = (Question.status == QuestionStatus.queued) & (Question.enqueued_at <= func.now())
    stmt = select(Question).where(Question.id.in_(ids), due | mine if worker is not None else due)
    if max_attempts is not None:
        stmt = stmt.where(Question.attempts < max_attempts)
    rows = session.scalars(stmt.order_by(Question.id).with_for_update(skip_locked=True)).all()
    expires = func.now() + dt.timedelta(seconds=lease_s)
    for q in rows:
        if q.status is QuestionStatus.queued:
            q.attempts += 1
        q.status = QuestionStatus.running
        q.worker, q.lease_expires_at = worker, expires
    session.flush()
    return list(rows)


@dataclass(frozen=True)
class Released:
    """What :func:`release` did: questions back in ``queued`` (to be sent again), questions failed for good, and
    questions of a job cancelled meanwhile (now ``cancelled``)."""

    requeued: list[int]
    failed: list[int]
    cancelled: list[int]


def _in_cancelled_jobs(session: Session, *, ids: Sequence[int]) -> list[int]:
    """Those of ``ids`` whose job is ``cancelling`` or ``cancelled``."""
    return list(session.scalars(select(Question.id).join(Job, Job.id == Question.job_id).where(
        Question.id.in_(ids), Job.status.in_([JobStatus.cancelling, JobStatus.cancelled]))))


def _cancel(session: Session, *, ids: Sequence[int]) -> None:
    session.execute(update(Question).where(Question.id.in_(ids)).values(
        status=QuestionStatus.cancelled, last_error="cancelled", worker=None, lease_expires_at=None))


def release(
    session: Session, *, ids: Sequence[int], error: str, max_attempts: int, delay_s: float = 0.0,
    refund: bool = False, worker: str | None = None,
) -> Released:
    """Hand ``running`` questions back after an attempt that did not answer them.

    Each goes back to ``queued`` with ``error`` as its last error, due again in ``delay_s`` seconds (the caller
    sends its task with that countdown); one that used ``max_attempts`` claims is ``failed`` for good instead
    ("gave up after N attempts; last: ERROR"), with its waiting in-job duplicates. ``refund`` (the worker is
    shutting down: not the question's fault) gives the attempt back and never fails a question. A question whose
    job was cancelled while it ran is ``cancelled``, never queued again. With ``worker``, only the questions whose
    lease it still holds (:func:`db.jobs.held_by`) are handed back, never those given to another worker meanwhile.
    """
    holder = held_by([worker]) if worker is not None else Question.status == QuestionStatus.running
    rows = session.scalars(
        select(Question).where(Question.id.in_(ids), holder).order_by(Question.id).with_for_update()
    ).all()
    cancelled = _in_cancelled_jobs(session, ids=[q.id for q in rows])
    spent = [q.id for q in rows if not refund and q.attempts >= max_attempts and q.id not in cancelled]
    due = func.now() + dt.timedelta(seconds=delay_s)
    requeued = []
    for q in rows:
        if q.id in spent or q.id in cancelled:
            continue
        q.status, q.last_error, q.worker, q.lease_expires_at, q.enqueued_at = (
            QuestionStatus.queued, error[:2000], None, None, due)
        q.attempts -= 1 if refund else 0
        requeued.append(q.id)
    if spent:
        record_failure(session, ids=spent, error=f"gave up after {max_attempts} attempts; last: {error}")
    if cancelled:
        _cancel(session, ids=cancelled)
    session.flush()
    return Released(requeued, spent, cancelled)


def record_failure(session: Session, *, ids: Sequence[int], error: str) -> None:
    """Mark the still-``running`` questions among ``ids`` as ``failed`` with ``error`` (one line), and their
    waiting in-job duplicates with the same error."""
    session.execute(
        update(Question)
        .where(Question.id.in_(ids), Question.status == QuestionStatus.running)
        .values(status=QuestionStatus.failed, last_error=error[:2000])
    )
    session.execute(
        update(Question)
        .where(Question.duplicate_of.in_(ids), Question.status == QuestionStatus.queued)
        .values(status=QuestionStatus.failed, last_error=error[:2000])
    )


def finish_jobs(session: Session, *, job_ids: Sequence[str]) -> list[str]:
    """Move each ``in_progress`` job whose questions have all ended to ``finalizing``, and a ``cancelling`` job with
    nothing left running to ``cancelled`` (its counts frozen). Returns the jobs now ``finalizing``: the caller
    commits, then calls :func:`finalize_jobs` (the reconciler finishes any it leaves behind).

    The job row is locked first, so two workers finishing the last chunks at once cannot both miss the end.
    """
    finalizing = []
    for job_id in job_ids:
        status = session.scalar(select(Job.status).where(Job.id == job_id).with_for_update())
        if status not in (JobStatus.in_progress, JobStatus.cancelling):
            continue
        counts = status_counts(session, job_id=job_id)
        if counts["running"] or (counts["queued"] and status is JobStatus.in_progress):
            continue
        if status is JobStatus.cancelling:
            _end(session, job_id=job_id, status=JobStatus.cancelled, counts=counts)
        else:
            session.execute(update(Job).where(Job.id == job_id).values(
                status=JobStatus.finalizing, finalizing_at=func.now()))
            finalizing.append(job_id)
    return finalizing


def _end(session: Session, *, job_id: str, status: JobStatus, counts: dict[str, int] | None = None) -> None:
    """Put the job in the final ``status`` with its timestamp and its request counts frozen."""
    counts = counts if counts is not None else status_counts(session, job_id=job_id)
    session.execute(update(Job).where(Job.id == job_id).values(
        {"status": status, f"{status.value}_at": func.now(), "request_counts": request_counts(counts)}))


def finalize_jobs(session: Session, *, job_ids: Sequence[str] | None = None) -> list[str]:
    """End ``finalizing`` jobs (those among ``job_ids``; every one when None): ``completed``, or ``failed`` when
    no question was answered and some failed, with their request counts frozen. Returns the jobs ended."""
    stmt = select(Job.id).where(Job.status == JobStatus.finalizing)
    if job_ids is not None:
        stmt = stmt.where(Job.id.in_(job_ids))
    ended = list(session.scalars(stmt.order_by(Job.id).with_for_update(skip_locked=True)))
    for job_id in ended:
        counts = status_counts(session, job_id=job_id)
        failed = counts["answered"] == 0 and counts["failed"] > 0
        _end(session, job_id=job_id, status=JobStatus.failed if failed else JobStatus.completed, counts=counts)
    return ended


def fail_job(session: Session, *, job_id: str, errors: Sequence[dict], n_errors: int) -> None:
    """End a ``validating`` job as ``failed`` because its file had no valid row (or any invalid one under
    ``strict``): ``errors`` are the first ``{"line", "code", "message"}`` records, ``n_errors`` how many there
    were. Questions stored for it, if any, go too."""
    session.execute(delete(Question).where(Question.job_id == job_id))
    session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.validating).values(
        status=JobStatus.failed, failed_at=func.now(), errors=list(errors), n_errors=n_errors, total=0,
        request_counts=request_counts(status_counts(session, job_id=job_id))))


def expire_jobs(session: Session, *, stuck_validating_s: float = 3600.0) -> list[str]:
    """End the jobs whose completion window has passed (``expires_at``) while ``validating`` or ``in_progress``:
    their questions not yet ended (queued or running) become ``expired``, answered and failed ones are kept, and
    the job is ``expired``. A job ``validating`` for over ``stuck_validating_s`` seconds (the process reading its
    file stopped) fails instead. Returns the jobs ended."""
    due = list(session.scalars(
        select(Job.id).where(Job.status.in_([JobStatus.validating, JobStatus.in_progress]), Job.expires_at <= func.now())
        .order_by(Job.id).with_for_update(skip_locked=True)))
    for job_id in due:
        session.execute(update(Question).where(
            Question.job_id == job_id, Question.status.in_([QuestionStatus.queued, QuestionStatus.running])).values(
            status=QuestionStatus.expired, last_error="the job's completion window ended first",
            worker=None, lease_expires_at=None))
        _end(session, job_id=job_id, status=JobStatus.expired)
    stuck = list(session.scalars(
        select(Job.id).where(Job.status == JobStatus.validating,
                             Job.created_at <= func.now() - dt.timedelta(seconds=stuck_validating_s))
        .with_for_update(skip_locked=True)))
    for job_id in stuck:
        fail_job(session, job_id=job_id, n_errors=1, errors=[{
            "line": None, "code": "validation_stopped",
            "message": f"validation did not finish within {stuck_validating_s:.0f} s (the process reading the file "
                       "stopped); submit the file again"}])
    return due + stuck


def cancel_job(session: Session, *, job_id: str, tenant: str | None = None) -> dict[str, int]:
    """Cancel a job: it goes ``cancelling``; its queued questions go ``cancelled`` and will not run; answered ones
    keep their answers; running ones finish, then the job is ``cancelled``. Returns the question counts after.
    A job still ``validating`` is locked by its validation, so the cancel waits for it and then applies. With
    ``tenant``, only that tenant's job is found.

    Raises:
        NotFoundError: no such job.
        ConflictError: the job has already ended (or is being finalized); checked under the job's row lock.
    """
    job = session.scalar(select(Job).where(Job.id == job_id).with_for_update()) if JOB_ID.fullmatch(job_id) else None
    if job is None or (tenant is not None and job.tenant != tenant):
        raise NotFoundError(f"no job {job_id!r}")
    if job.status in ENDED_JOB_STATES:
        raise ConflictError(f"job {job_id} has already ended ({job.status.value})")
    if job.status is not JobStatus.cancelling:
        job.status, job.cancelling_at = JobStatus.cancelling, func.now()
    session.execute(
        update(Question).where(Question.job_id == job_id, Question.status == QuestionStatus.queued)
        .values(status=QuestionStatus.cancelled, last_error="cancelled")
    )
    session.flush()
    finish_jobs(session, job_ids=[job_id])
    return status_counts(session, job_id=job_id)


@dataclass(frozen=True)
class Reconciled:
    """What a reconciler pass did: questions to send again (expired leases and tasks presumed lost), questions
    failed for good after their last attempt, and the jobs those belong to or that ended (expired, finalized)."""

    requeue: list[int]
    failed: list[int]
    job_ids: list[str]


def reconcile(
    session: Session, *, max_attempts: int, requeue_after_s: float, resend_stale: bool = True, limit: int = 50_000,
) -> Reconciled:
    """One reconciler pass, in the caller's transaction (the caller sends the tasks after it commits):

    * ``running`` questions whose lease expired (their worker died or stalled) go back to ``queued``, or to
      ``failed`` when they used their ``max_attempts`` claims, keeping the last error, or to ``cancelled`` when
      their job was cancelled meanwhile;
    * with ``resend_stale`` (the caller found no message waiting in the broker's queue, so none can still carry
      them), ``queued`` questions (not in-job duplicates) whose task was sent ``requeue_after_s`` seconds ago or
      more are sent again: a broker that lost its messages, or a send that failed, leaves them there. Without
      that check, every question of a long backlog still waiting in line would be sent again each pass.

    At most ``limit`` questions of each kind per pass (a broker loss under a million-question backlog is worked
    off over several passes, in id order). Jobs past their completion window expire (:func:`expire_jobs`) and jobs
    left ``finalizing`` (their worker stopped between the two steps) end (:func:`finalize_jobs`).
    """
    expired = (Question.status == QuestionStatus.running) & (Question.lease_expires_at < func.now())
    spent = Question.attempts >= max_attempts

    def first(where) -> list[int]:
        return list(session.scalars(select(Question.id).where(where).order_by(Question.id).limit(limit)
                                    .with_for_update(skip_locked=True)))

    failed = first((expired | (Question.status == QuestionStatus.queued)) & spent)
    if failed:
        session.execute(update(Question).where(Question.id.in_(failed)).values(
            status=QuestionStatus.failed, last_error=func.concat(
                f"gave up after {max_attempts} attempts; last: ",
                func.coalesce(Question.last_error, "the worker holding it stopped answering (lease expired)"))))
        leader = aliased(Question)  # their waiting in-job duplicates end with the same error, as record_failure does
        session.execute(update(Question).where(
            Question.duplicate_of.in_(failed), Question.status == QuestionStatus.queued).values(
            status=QuestionStatus.failed,
            last_error=select(leader.last_error).where(leader.id == Question.duplicate_of).scalar_subquery()))
    revived = first(expired & ~spent)
    cancelled = _in_cancelled_jobs(session, ids=revived)  # a job cancelled while its worker died: nothing to retry
    if cancelled:
        _cancel(session, ids=cancelled)
        revived = [q for q in revived if q not in set(cancelled)]
    stale = []
    if resend_stale:
        stale = first((Question.status == QuestionStatus.queued) & Question.duplicate_of.is_(None) & ~spent
                      & (Question.enqueued_at <= func.now() - dt.timedelta(seconds=requeue_after_s)))
    requeue = sorted(set(revived) | set(stale))
    if requeue:
        session.execute(update(Question).where(Question.id.in_(requeue)).values(
            status=QuestionStatus.queued, lease_expires_at=None, enqueued_at=func.now()))
    job_ids = job_ids_of(session, question_ids=requeue + failed + cancelled)
    if failed or cancelled:
        finish_jobs(session, job_ids=job_ids)
    ended = expire_jobs(session) + finalize_jobs(session)
    return Reconciled(requeue, failed, sorted(set(job_ids) | set(ended)))


def job_ids_of(session: Session, *, question_ids: Sequence[int]) -> list[str]:
    """The distinct jobs of these questions, sorted."""
    return sorted(set(session.scalars(select(Question.job_id).where(Question.id.in_(question_ids)))))

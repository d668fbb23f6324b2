"""A question's life after submit: claims under a lease, failures, the reconciler, cancellation and the end of a
job. Postgres holds every state; these functions run in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from db.jobs import status_counts
from db.schema import Job, JobStatus, Question, QuestionStatus
from pageqa.errors import InputError, NotFoundError


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
    attempt it continues, and another worker may run it. The job moves to ``in_progress`` on its first claim.
    """
    mine = (Question.status == QuestionStatus.running) & Question.worker.in_([worker, *take_over])
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
    job_ids = {q.job_id for q in rows}
    if job_ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == JobStatus.queued)
            .values(status=JobStatus.in_progress, started_at=func.now())
        )
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
    refund: bool = False,
) -> Released:
    """Hand ``running`` questions back after an attempt that did not answer them.

    Each goes back to ``queued`` with ``error`` as its last error, due again in ``delay_s`` seconds (the caller
    sends its task with that countdown); one that used ``max_attempts`` claims is ``failed`` for good instead
    ("gave up after N attempts; last: ERROR"), with its waiting in-job duplicates. ``refund`` (the worker is
    shutting down: not the question's fault) gives the attempt back and never fails a question. A question whose
    job was cancelled while it ran is ``cancelled``, never queued again.
    """
    rows = session.scalars(
        select(Question).where(Question.id.in_(ids), Question.status == QuestionStatus.running)
        .order_by(Question.id).with_for_update()
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


def finish_jobs(session: Session, *, job_ids: Sequence[str]) -> None:
    """Move each job whose questions have all ended to ``completed`` (or ``failed`` when none was answered), and a
    ``cancelling`` job with nothing left running to ``cancelled``.

    The job row is locked first, so two workers finishing the last chunks at once cannot both miss the end.
    """
    for job_id in job_ids:
        status = session.scalar(select(Job.status).where(Job.id == job_id).with_for_update())
        counts = status_counts(session, job_id=job_id)
        if counts["running"] or (counts["queued"] and status is not JobStatus.cancelling):
            continue
        if status is JobStatus.cancelling:
            final = JobStatus.cancelled
        else:
            final = JobStatus.failed if counts["answered"] == 0 and counts["failed"] else JobStatus.completed
        session.execute(
            update(Job)
            .where(Job.id == job_id,
                   Job.status.in_([JobStatus.queued, JobStatus.in_progress, JobStatus.cancelling]))
            .values(status=final, completed_at=func.now())
        )


def cancel_job(session: Session, *, job_id: str) -> dict[str, int]:
    """Cancel a job: it goes ``cancelling``; its queued questions go ``cancelled`` and will not run; answered ones
    keep their answers; running ones finish, then the job is ``cancelled``. Returns the question counts after.

    Raises:
        NotFoundError: no such job.
        InputError: the job has already ended.
    """
    job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
    if job is None:
        raise NotFoundError(f"no job {job_id!r}")
    if job.status in (JobStatus.completed, JobStatus.failed, JobStatus.cancelled):
        raise InputError(f"job {job_id} has already ended ({job.status.value})")
    job.status = JobStatus.cancelling
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
    failed for good after their last attempt, and the jobs those belong to."""

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
    off over several passes, in id order).
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
    return Reconciled(requeue, failed, job_ids)


def job_ids_of(session: Session, *, question_ids: Sequence[int]) -> list[str]:
    """The distinct jobs of these questions, sorted."""
    return sorted(set(session.scalars(select(Question.job_id).where(Question.id.in_(question_ids)))))

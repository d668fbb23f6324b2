"""Job states the reconciler ends without a worker: a job left ``finalizing``, one stuck ``validating``, one past
its completion window; and a cancel that arrives while a job is being validated waits for it."""

from __future__ import annotations

import datetime as dt
import threading
import time

from sqlalchemy import update

from db import corpus as corpus_db
from db import jobs as jobs_db
from db import lifecycle
from db.engine import session_scope
from db.schema import Job, Question
from pageqa.domain import JobStatus, QuestionStatus


def _job(settings, *, questions: int, window_s: float = 3600.0, validated: bool = True) -> str:
    with session_scope(settings) as session:
        corpus = corpus_db.get_or_create_corpus(session, name="job-states")
        rows = [jobs_db.NewQuestion(f"c{i}", f"question {i}?", None, i + 1) for i in range(questions)]
        job = jobs_db.open_job(session, corpus_id=corpus.id, source="s.jsonl", options={},
                               completion_window_s=window_s)
        if validated:
            jobs_db.store_questions(session, job_id=job.id, questions=rows)
        return job.id


def test_the_reconciler_ends_a_job_left_finalizing(settings, services):
    job_id = _job(settings, questions=2)
    with session_scope(settings) as session:
        session.execute(update(Question).where(Question.job_id == job_id).values(status=QuestionStatus.failed))
        assert lifecycle.finish_jobs(session, job_ids=[job_id]) == [job_id]  # the worker died after this commit
    with session_scope(settings) as session:
        assert session.get(Job, job_id).status is JobStatus.finalizing
        done = lifecycle.reconcile(session, max_attempts=3, requeue_after_s=900)
        job = session.get(Job, job_id)
        assert job_id in done.job_ids and job.status is JobStatus.failed, "no answer and failures: failed"
        assert job.request_counts == {"total": 2, "completed": 0, "failed": 2, "expired": 0, "cancelled": 0,
                                      "queued": 0, "running": 0}
        assert job.failed_at >= job.finalizing_at


def test_a_job_past_its_window_expires_and_keeps_its_answers(settings, services):
    job_id = _job(settings, questions=3, window_s=2)
    with session_scope(settings) as session:
        first = min(jobs_db.iter_question_ids(session, job_id=job_id))
        session.execute(update(Question).where(Question.id == first).values(status=QuestionStatus.answered))
        assert job_id not in lifecycle.expire_jobs(session), "not due yet"
    time.sleep(2.2)
    with session_scope(settings) as session:
        assert job_id in lifecycle.expire_jobs(session)
        job = session.get(Job, job_id)
        assert job.status is JobStatus.expired and job.expired_at is not None
        assert job.request_counts["expired"] == 2 and job.request_counts["completed"] == 1
        assert lifecycle.expire_jobs(session) == [], "an ended job is not expired twice"


def test_a_job_stuck_validating_fails_with_a_reason(settings, services):
    job_id = _job(settings, questions=0, validated=False)
    with session_scope(settings) as session:
        assert job_id not in lifecycle.expire_jobs(session, stuck_validating_s=3600)
        session.execute(update(Job).where(Job.id == job_id).values(
            created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)))
        assert job_id in lifecycle.expire_jobs(session, stuck_validating_s=3600)
        job = session.get(Job, job_id)
        assert job.status is JobStatus.failed and job.errors[0]["code"] == "validation_stopped"


def test_a_cancel_during_validation_waits_and_then_applies(settings, services):
    job_id = _job(settings, questions=0, validated=False)
    result: dict = {}
    with session_scope(settings) as session:  # what validate_job does: lock the row, store, move on
        session.get(Job, job_id, with_for_update=True)

        def cancel():
            with session_scope(settings) as other:
                result["counts"] = lifecycle.cancel_job(other, job_id=job_id)

        thread = threading.Thread(target=cancel)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive(), "the cancel waits for the validation's lock"
        jobs_db.store_questions(session, job_id=job_id, questions=[
            jobs_db.NewQuestion("a", "question a?", None, 1), jobs_db.NewQuestion("b", "question b?", None, 2)])
    thread.join(10)
    assert result["counts"]["cancelled"] == 2
    with session_scope(settings) as session:
        job = session.get(Job, job_id)
        assert job.status is JobStatus.cancelled and job.in_progress_at and job.cancelling_at and job.cancelled_at

"""Leases, the attempt cap and the reconciler, through the real worker, Redis and PostgreSQL."""

from __future__ import annotations

import pytest
from conftest import run_cli as cli
from conftest import wait_for
from sqlalchemy import func, select, update

from db import corpus as corpus_db
from db import jobs as jobs_db
from db import lifecycle
from db.engine import session_scope
from db.schema import Answer, Job, Question
from pageqa.domain import JobStatus, QuestionStatus
from services.reconcile import run_reconciler

pytestmark = pytest.mark.models

CORPUS = "reliability"


@pytest.fixture(scope="module")
def corpus_id(worker, sample_docs, settings) -> int:
    cli("ingest", str(sample_docs["root"]), "--corpus", CORPUS)
    with session_scope(settings) as session:
        return corpus_db.get_corpus(session, name=CORPUS).id


def _job_without_tasks(settings, corpus_id: int, texts: list[str]) -> tuple[str, list[int]]:
    """A job stored as submit stores it, but whose tasks were never sent (as if the broker lost them)."""
    with session_scope(settings) as session:
        job = jobs_db.open_job(session, corpus_id=corpus_id, source="lost.jsonl", options={})
        jobs_db.store_questions(session, job_id=job.id, questions=[
            jobs_db.NewQuestion(f"q{i}", t, None, i + 1) for i, t in enumerate(texts)])
        return job.id, list(jobs_db.iter_question_ids(session, job_id=job.id))


def _rows(settings, job_id: str) -> list[Question]:
    with session_scope(settings) as session:
        return list(session.scalars(select(Question).where(Question.job_id == job_id).order_by(Question.id)))


def _status(settings, job_id: str) -> JobStatus:
    with session_scope(settings) as session:
        return session.get(Job, job_id).status


def test_expired_leases_and_lost_tasks_are_sent_again_and_answered_once(settings, corpus_id):
    job_id, ids = _job_without_tasks(settings, corpus_id, ["lost in the broker?", "held by a dead worker?",
                                                            "dead worker, last attempt?"])
    with session_scope(settings) as session:
        session.execute(update(Question).where(Question.id == ids[0])
                        .values(enqueued_at=func.now() - func.make_interval(0, 0, 0, 0, 1)))  # sent an hour ago
        session.execute(update(Question).where(Question.id.in_(ids[1:])).values(
            status=QuestionStatus.running, worker="gone:1", lease_expires_at=func.now() - func.make_interval(
                0, 0, 0, 0, 0, 1)))
        session.execute(update(Question).where(Question.id == ids[1]).values(attempts=1))
        session.execute(update(Question).where(Question.id == ids[2])
                        .values(attempts=settings.max_attempts, last_error="RuntimeError: boom"))
    assert run_reconciler(settings) == 2, "the lost task and the expired lease are sent again"
    wait_for(lambda: _status(settings, job_id) is JobStatus.completed, timeout_s=120, what="the job to complete")
    rows = _rows(settings, job_id)
    assert [q.status for q in rows] == [QuestionStatus.answered, QuestionStatus.answered, QuestionStatus.failed]
    assert [q.attempts for q in rows[:2]] == [1, 2]
    assert rows[2].last_error == f"gave up after {settings.max_attempts} attempts; last: RuntimeError: boom"
    with session_scope(settings) as session:
        answers = session.scalar(select(func.count(Answer.id)).where(Answer.question_id.in_(ids)))
    assert answers == 2
    assert run_reconciler(settings) == 0, "nothing left to do: a second pass sends nothing"


def test_a_recent_task_is_not_sent_again(settings, corpus_id):
    job_id, _ids = _job_without_tasks(settings, corpus_id, ["just submitted?"])
    assert run_reconciler(settings) == 0
    assert [q.status for q in _rows(settings, job_id)] == [QuestionStatus.queued]
    with session_scope(settings) as session:  # tidy: the test's job must not be picked up by later passes
        lifecycle.cancel_job(session, job_id=job_id)


def test_stale_questions_are_not_sent_again_while_tasks_wait_in_the_queue(settings, corpus_id):
    """A long backlog is not a lost one: while messages wait in the worker queue, the reconciler cannot tell a
    lost task from one waiting in line, so it sends nothing; once the queue is empty, it sends the stale ones."""
    from worker.queue import ANSWER_CHUNK, waiting_tasks
    from worker.app import get_app

    idle = settings.model_copy(update={"worker_queue": "reliability-unconsumed"})  # a queue no worker reads
    job_id, ids = _job_without_tasks(settings, corpus_id, ["waiting behind a backlog?"])
    with session_scope(settings) as session:
        session.execute(update(Question).where(Question.id == ids[0])
                        .values(enqueued_at=func.now() - func.make_interval(0, 0, 0, 0, 1)))
    app = get_app(settings)
    app.send_task(ANSWER_CHUNK, args=[[]], queue=idle.worker_queue)  # a backlog of one task (claims nothing)
    assert waiting_tasks(idle) == 1
    assert run_reconciler(idle) == 0
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(idle.worker_queue)
    assert waiting_tasks(idle) == 0
    assert run_reconciler(idle) == 1, "with nothing in line, the stale question is sent again"
    assert waiting_tasks(idle) == 1
    with session_scope(settings) as session:
        lifecycle.cancel_job(session, job_id=job_id)
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(idle.worker_queue)


def test_a_submit_whose_broker_is_down_keeps_the_job_and_the_reconciler_sends_it(settings, corpus_id, tmp_path):
    import os
    import subprocess
    import sys

    path = tmp_path / "offline-broker.jsonl"
    path.write_text('{"custom_id": "a", "question": "How many cracks were found?"}\n'
                    '{"custom_id": "b", "question": "How many tonnes of apples?"}\n')
    env = {**os.environ, "PAGEQA_BROKER_URL": "redis://127.0.0.1:1/0"}  # nothing listens on port 1
    run = subprocess.run([sys.executable, "-m", "scripts.cli", "submit", str(path), "--corpus", CORPUS], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    message = run.stderr.strip()
    assert message.startswith("error: job job_") and "is stored (2 questions) but the broker cannot be reached" in message
    job_id = message.split()[2]
    assert [q.status for q in _rows(settings, job_id)] == [QuestionStatus.queued] * 2
    with session_scope(settings) as session:  # as if PAGEQA_REQUEUE_AFTER_SECONDS had passed
        session.execute(update(Question).where(Question.job_id == job_id)
                        .values(enqueued_at=func.now() - func.make_interval(0, 0, 0, 0, 1)))
    assert run_reconciler(settings) == 2
    wait_for(lambda: _status(settings, job_id) is JobStatus.completed, timeout_s=120, what="the job to complete")
    assert [q.status for q in _rows(settings, job_id)] == [QuestionStatus.answered] * 2


def test_questions_of_a_job_cancelled_while_they_ran_are_cancelled_not_queued_again(settings, corpus_id):
    """A worker that dies, or hands a question back, after its job was cancelled must not put it back in line."""
    job_id, ids = _job_without_tasks(settings, corpus_id, ["held by a dead worker?", "handed back?", "queued?"])
    with session_scope(settings) as session:
        session.execute(update(Question).where(Question.id.in_(ids[:2])).values(
            status=QuestionStatus.running, worker="gone:1", attempts=1,
            lease_expires_at=func.now() + func.make_interval(0, 0, 0, 0, 1)))
        session.execute(update(Question).where(Question.id == ids[0]).values(
            lease_expires_at=func.now() - func.make_interval(0, 0, 0, 0, 0, 1)))
        counts = lifecycle.cancel_job(session, job_id=job_id)
    assert counts["running"] == 2 and counts["cancelled"] == 1 and _status(settings, job_id) is JobStatus.cancelling
    assert run_reconciler(settings) == 0, "the expired lease of a cancelled job is not sent again"
    with session_scope(settings) as session:
        back = lifecycle.release(session, ids=[ids[1]], error="RuntimeError: boom", max_attempts=3)
    assert (back.requeued, back.failed, back.cancelled) == ([], [], [ids[1]])
    with session_scope(settings) as session:
        lifecycle.finish_jobs(session, job_ids=[job_id])
    assert [q.status for q in _rows(settings, job_id)] == [QuestionStatus.cancelled] * 3
    assert _status(settings, job_id) is JobStatus.cancelled


def test_the_duplicates_of_a_question_failed_by_the_reconciler_fail_with_it(settings, corpus_id):
    job_id, ids = _job_without_tasks(settings, corpus_id, ["held by a dead worker, last attempt?",
                                                            "Held by a dead worker, last attempt"])
    with session_scope(settings) as session:
        session.execute(update(Question).where(Question.id == ids[0]).values(
            status=QuestionStatus.running, worker="gone:1", attempts=settings.max_attempts,
            last_error="RuntimeError: boom", lease_expires_at=func.now() - func.make_interval(0, 0, 0, 0, 0, 1)))
    run_reconciler(settings)
    rows = _rows(settings, job_id)
    assert rows[1].duplicate_of == rows[0].id
    assert [q.status for q in rows] == [QuestionStatus.failed] * 2
    assert rows[1].last_error == rows[0].last_error == f"gave up after {settings.max_attempts} attempts; last: " \
                                                       "RuntimeError: boom"
    assert _status(settings, job_id) is JobStatus.failed

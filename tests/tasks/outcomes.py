"""What the fault and multi-host tests share: the short worker limits, a stored job of distinct questions, sending
its tasks as ``pageqa submit`` does, waiting for its end, and the end check (:func:`exactly_once`). Every function
takes the settings whose database holds the job."""

from __future__ import annotations

import time

from celery import Celery
from conftest import wait_for
from sqlalchemy import func, select

from db import jobs as jobs_db
from db.engine import session_scope
from db.schema import Answer, Citation, Job, Question
from pageqa.domain import JobStatus, QuestionStatus
from worker.queue import ANSWER_CHUNK

#: Worker settings short enough that a fault recovers in seconds (docs/reliability.md, "Fault tests").
LIMITS = {
    "PAGEQA_LEASE_SECONDS": "8",
    "PAGEQA_CHUNK_TIME_BUDGET_SECONDS": "7",
    "PAGEQA_REQUEUE_AFTER_SECONDS": "3",
    "PAGEQA_RECONCILE_EVERY_SECONDS": "1",
    "PAGEQA_RETRY_BACKOFF_SECONDS": "0.5",
    "PAGEQA_DEDUP_WINDOW_HOURS": "0",
    "PAGEQA_MAX_ATTEMPTS": "3",
}


def new_job(settings, corpus: dict, n: int, *, tag: str, document_id: int | None = None) -> tuple[str, list[int]]:
    """A stored job of ``n`` distinct questions restricted to ``document_id`` (default: the sample report)."""
    doc = document_id or corpus["report"]
    with session_scope(settings) as session:
        job = jobs_db.open_job(session, corpus_id=corpus["corpus_id"], source=f"{tag}.jsonl", options={})
        jobs_db.store_questions(session, job_id=job.id, questions=[
            jobs_db.NewQuestion(f"{tag}-{i}", f"How many cracks, {tag} case {i}?", doc, i + 1) for i in range(n)])
        return job.id, list(jobs_db.iter_question_ids(session, job_id=job.id, to_enqueue=True))


def job_status(settings, job_id: str) -> JobStatus:
    with session_scope(settings) as session:
        return session.get(Job, job_id).status


def questions(settings, job_id: str) -> list[Question]:
    with session_scope(settings) as session:
        return list(session.scalars(select(Question).where(Question.job_id == job_id).order_by(Question.id)))


def wait_until_ended(settings, job_id: str, timeout_s: float) -> float:
    """Seconds until the job reached an end state."""
    t0 = time.monotonic()
    wait_for(lambda: job_status(settings, job_id) in (JobStatus.completed, JobStatus.failed, JobStatus.cancelled),
             timeout_s=timeout_s, what=f"job {job_id} to end")
    return time.monotonic() - t0


def exactly_once(settings, job_id: str) -> dict[str, int]:
    """Check the guarantee and return the figures: every question has exactly one answer (and is ``answered``)
    or is ``failed``/``cancelled`` with a reason and no answer; no question has two answers and no answer two
    citations of one rank."""
    with session_scope(settings) as session:
        rows = session.scalars(select(Question).where(Question.job_id == job_id)).all()
        ids = [q.id for q in rows]
        per_question = {qid: n for qid, n in session.execute(
            select(Answer.question_id, func.count()).where(Answer.question_id.in_(ids)).group_by(Answer.question_id))}
        doubled_citations = session.scalar(select(func.count()).select_from(
            select(Citation.answer_id, Citation.rank).join(Answer, Answer.id == Citation.answer_id)
            .where(Answer.question_id.in_(ids)).group_by(Citation.answer_id, Citation.rank)
            .having(func.count() > 1).subquery()))
        cited = session.scalar(select(func.count()).select_from(Citation).join(Answer, Answer.id == Citation.answer_id)
                               .where(Answer.question_id.in_(ids)))
    for q in rows:
        if q.status is QuestionStatus.answered:
            assert per_question.get(q.id) == 1, f"question {q.id} has {per_question.get(q.id)} answers"
        else:
            assert q.status in (QuestionStatus.failed, QuestionStatus.cancelled), f"question {q.id} is {q.status}"
            assert q.last_error, f"question {q.id} ended {q.status.value} without a reason"
            assert q.id not in per_question, f"{q.status.value} question {q.id} has an answer"
    assert doubled_citations == 0
    answered = sum(q.status is QuestionStatus.answered for q in rows)
    assert cited >= answered, "every answer cites at least one page"
    return {"submitted": len(rows), "answered": answered,
            "failed": sum(q.status is QuestionStatus.failed for q in rows),
            "cancelled": sum(q.status is QuestionStatus.cancelled for q in rows),
            "duplicated": sum(n - 1 for n in per_question.values())}


def report(name: str, figures: dict[str, int], *, tag: str = "FAULT", **more: float) -> None:
    """Print the test's figures on one ``TAG name: k=v …`` line (read with ``pytest -s | grep TAG``)."""
    extra = " ".join(f"{k}={v:.1f}" for k, v in more.items())
    print(f"\n{tag} {name}: " + " ".join(f"{k}={v}" for k, v in figures.items()) + (f" {extra}" if extra else ""))


def running(settings, job_id: str) -> list[Question]:
    return [q for q in questions(settings, job_id) if q.status is QuestionStatus.running]


def task_client(broker_url: str, name: str) -> Celery:
    """A Celery client that sends answering tasks to ``broker_url`` (JSON, the workers' visibility timeout)."""
    client = Celery(name, broker=broker_url, set_as_current=False)
    client.conf.update(task_serializer="json", accept_content=["json"],
                       broker_transport_options={"visibility_timeout": 6 * 3600})
    return client


def send_chunks(client: Celery, question_ids: list[int], *, queue: str, chunk_size: int = 4, times: int = 1) -> None:
    """Send the job's answering tasks as ``pageqa submit`` does (after its rows committed), ``times`` each."""
    for i in range(0, len(question_ids), chunk_size):
        for _ in range(times):
            client.send_task(ANSWER_CHUNK, args=[question_ids[i : i + chunk_size]],
                             kwargs={"enqueued_at": time.time()}, queue=queue)

"""Data access for jobs, questions, answers and citations. Postgres is the source of truth for every state."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.schema import (
    Answer,
    ChunkRun,
    Citation,
    Job,
    JobStatus,
    LaneHit,
    Question,
    QuestionStatus,
)
from pageqa.errors import NotFoundError


@dataclass(frozen=True)
class NewQuestion:
    """A parsed question-file row: ``custom_id``, text, optional document id filter, 1-based file line."""

    custom_id: str
    question: str
    document_id: int | None
    line_number: int


def create_job(
    session: Session, *, corpus_id: int, source: str, options: dict, questions: Sequence[NewQuestion]
) -> Job:
    """Store a job and its questions (status ``queued``); the caller enqueues only after this commits."""
    job = Job(
        id=f"job_{uuid.uuid4().hex[:24]}", corpus_id=corpus_id, source=source, options=options,
        total=len(questions), status=JobStatus.queued,
    )
    session.add(job)
    session.flush()
    session.execute(
        insert(Question),
        [
            {"job_id": job.id, "custom_id": q.custom_id, "question": q.question, "document_id": q.document_id,
             "line_number": q.line_number, "status": QuestionStatus.queued, "attempts": 0}
            for q in questions
        ],
    )
    return job


def get_job(session: Session, *, job_id: str) -> Job:
    """The job with this id.

    Raises:
        NotFoundError: no such job.
    """
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id!r}")
    return job


def question_ids(session: Session, *, job_id: str, status: QuestionStatus | None = None) -> list[int]:
    """Ids of the job's questions (optionally of one status) in file order."""
    stmt = select(Question.id).where(Question.job_id == job_id).order_by(Question.line_number, Question.id)
    if status is not None:
        stmt = stmt.where(Question.status == status)
    return list(session.scalars(stmt))


def claim_questions(session: Session, *, ids: Sequence[int]) -> list[Question]:
    """Lock the still-``queued`` questions among ``ids``, mark them ``running`` and count an attempt.

    Questions already answered, failed or running elsewhere are skipped, so a task delivered twice does no work
    twice. The job moves to ``in_progress`` on its first claim.
    """
    rows = session.scalars(
        select(Question)
        .where(Question.id.in_(ids), Question.status == QuestionStatus.queued)
        .order_by(Question.id)
        .with_for_update(skip_locked=True)
    ).all()
    for q in rows:
        q.status = QuestionStatus.running
        q.attempts += 1
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
class NewCitation:
    """A cited page: id, 1-based rank after rerank, MaxSim retrieval score, P(True) rerank score."""

    page_id: int
    rank: int
    retrieval_score: float
    rerank_score: float
    lanes: Sequence[str] = ()


@dataclass(frozen=True)
class NewAnswer:
    """What the pipeline produced for one question; timings in milliseconds; ``lane_hits`` maps each lane to its
    ranked (page id, lane score) list."""

    question_id: int
    answer: str
    citations: Sequence[NewCitation]
    retriever_model: str
    reranker_model: str
    generator_model: str
    retrieve_ms: float
    rerank_ms: float
    generate_ms: float
    kind: str = "generated"
    evidence_page_id: int | None = None
    lane_hits: dict[str, Sequence[tuple[int, float]]] = field(default_factory=dict)


def record_answer(session: Session, *, new: NewAnswer) -> bool:
    """Write an answer, its citations and the ``answered`` state in the caller's transaction.

    Idempotent: a question that already has an answer keeps it (unique ``question_id``); returns False then.
    """
    values = {k: getattr(new, k) for k in (
        "question_id", "answer", "retriever_model", "reranker_model", "generator_model",
        "retrieve_ms", "rerank_ms", "generate_ms", "kind", "evidence_page_id",
    )}
    answer_id = session.scalar(
        insert(Answer).values(**values).on_conflict_do_nothing(index_elements=["question_id"]).returning(Answer.id)
    )
    if answer_id is None:
        return False
    if new.citations:
        session.execute(
            insert(Citation),
            [{"answer_id": answer_id, "page_id": c.page_id, "rank": c.rank, "lanes": list(c.lanes),
              "retrieval_score": c.retrieval_score, "rerank_score": c.rerank_score} for c in new.citations],
        )
    hits = [{"question_id": new.question_id, "lane": lane, "rank": rank, "page_id": pid, "score": score}
            for lane, ranked in new.lane_hits.items() for rank, (pid, score) in enumerate(ranked, 1)]
    if hits:
        session.execute(insert(LaneHit), hits)
    session.execute(
        update(Question).where(Question.id == new.question_id)
        .values(status=QuestionStatus.answered, last_error=None)
    )
    return True


def record_chunk_run(session: Session, **values) -> None:
    """Store one answering task's instrumentation (see :class:`db.schema.ChunkRun` for the fields and units)."""
    session.execute(insert(ChunkRun).values(**values))


def record_failure(session: Session, *, ids: Sequence[int], error: str) -> None:
    """Mark the still-``running`` questions among ``ids`` as ``failed`` with ``error`` (one line)."""
    session.execute(
        update(Question)
        .where(Question.id.in_(ids), Question.status == QuestionStatus.running)
        .values(status=QuestionStatus.failed, last_error=error[:2000])
    )


def finish_jobs(session: Session, *, job_ids: Sequence[str]) -> None:
    """Move each job whose questions have all ended to ``completed`` (or ``failed`` when none was answered).

    The job row is locked first, so two workers finishing the last chunks at once cannot both miss the end.
    """
    for job_id in job_ids:
        session.execute(select(Job.id).where(Job.id == job_id).with_for_update())
        counts = status_counts(session, job_id=job_id)
        if counts["queued"] or counts["running"]:
            continue
        final = JobStatus.failed if counts["answered"] == 0 and counts["failed"] else JobStatus.completed
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_([JobStatus.queued, JobStatus.in_progress]))
            .values(status=final, completed_at=func.now())
        )


def status_counts(session: Session, *, job_id: str) -> dict[str, int]:
    """Questions of the job per status, every status present (zeros included)."""
    counts = {s.value: 0 for s in QuestionStatus}
    stmt = select(Question.status, func.count()).where(Question.job_id == job_id).group_by(Question.status)
    for status, n in session.execute(stmt):
        counts[status.value] = n
    return counts


def latest_jobs(session: Session, *, limit: int = 20) -> list[Job]:
    """The most recently created jobs, newest first."""
    return list(session.scalars(select(Job).order_by(Job.created_at.desc()).limit(limit)))


def answered_questions(session: Session, *, job_id: str) -> list[tuple[Question, Answer | None]]:
    """Every question of the job in file order with its answer (None when not answered)."""
    stmt = (
        select(Question, Answer)
        .outerjoin(Answer, Answer.question_id == Question.id)
        .where(Question.job_id == job_id)
        .order_by(Question.line_number, Question.id)
    )
    return [(q, a) for q, a in session.execute(stmt)]


def elapsed_s(job: Job, *, now: dt.datetime | None = None) -> float:
    """Seconds from the job's creation to its completion (or to ``now`` while it runs)."""
    end = job.completed_at or now or dt.datetime.now(dt.timezone.utc)
    return (end - job.created_at).total_seconds()




def lane_rankings(session: Session, *, job_id: str) -> dict[str, dict[str, list[int]]]:
    """Per ``custom_id``, each lane's ranked list of 1-based page numbers (``fused`` included)."""
    from db.schema import Page

    stmt = (
        select(Question.custom_id, LaneHit.lane, Page.page_number)
        .join(LaneHit, LaneHit.question_id == Question.id)
        .join(Page, Page.id == LaneHit.page_id)
        .where(Question.job_id == job_id)
        .order_by(Question.id, LaneHit.lane, LaneHit.rank)
    )
    out: dict[str, dict[str, list[int]]] = {}
    for custom_id, lane, page in session.execute(stmt):
        out.setdefault(custom_id, {}).setdefault(lane, []).append(page)
    return out

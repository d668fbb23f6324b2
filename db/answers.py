"""Data access for answers: writing a question's answer with its citations and lane rankings, copying it to the
questions that repeat it, finding answers to reuse across jobs, and what the answering tasks record about their
runs. The job and question rows these hang on are :mod:`db.jobs`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Row, select, text, update
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.orm import Session, lazyload

from db.jobs import held_by
from db.schema import Answer, ChunkRun, Citation, Document, LaneHit, Page, Question
from pageqa.domain import QuestionStatus


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
    confidence: float | None = None
    lane_hits: dict[str, Sequence[tuple[int, float]]] = field(default_factory=dict)
    dedup_key: str | None = None


def record_answer(session: Session, *, new: NewAnswer, worker: str) -> bool:
    """Write an answer, its citations and the ``answered`` state in the caller's transaction, with copies for the
    question's in-job duplicates (``reused_from`` this question), if ``worker`` (``hostname:pid``) still holds the
    question's lease (:func:`db.jobs.held_by`); returns whether it wrote.

    Nothing is written, and False returned, for a question that already has an answer (unique ``question_id``),
    that ended meanwhile (its job expired while the models ran), or whose lease ``worker`` lost: a late write from
    a worker the network cut off while its questions went to another worker is refused, whichever of the two
    would have written first.
    """
    held = session.scalar(select(Question.id).where(Question.id == new.question_id, held_by([worker]))
                          .with_for_update())
    if held is None:
        return False
    values = {k: getattr(new, k) for k in (
        "question_id", "answer", "retriever_model", "reranker_model", "generator_model",
        "retrieve_ms", "rerank_ms", "generate_ms", "kind", "evidence_page_id", "confidence",
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
        .values(status=QuestionStatus.answered, last_error=None, dedup_key=new.dedup_key)
    )
    followers = _duplicates_of(session, ids=[new.question_id])
    if followers:
        copy_answer(session, source_question_id=new.question_id, question_ids=followers)
    return True


def _duplicates_of(session: Session, *, ids: Sequence[int]) -> list[int]:
    """Unanswered in-job duplicates of the questions ``ids``."""
    return list(session.scalars(select(Question.id).where(
        Question.duplicate_of.in_(ids), Question.status.in_([QuestionStatus.queued, QuestionStatus.running])
    )))


_COPY_ANSWER = text("""
WITH src AS (SELECT * FROM answers WHERE question_id = :src),
new AS (
    INSERT INTO answers (question_id, answer, retriever_model, reranker_model, generator_model, kind,
                         evidence_page_id, confidence, retrieve_ms, rerank_ms, generate_ms, reused_from)
    SELECT t.id, src.answer, src.retriever_model, src.reranker_model, src.generator_model, src.kind,
           src.evidence_page_id, src.confidence, 0, 0, 0, COALESCE(src.reused_from, src.question_id)
    FROM src CROSS JOIN unnest(CAST(:targets AS integer[])) AS t(id)
    WHERE t.id IN (SELECT id FROM questions WHERE id = ANY(CAST(:targets AS integer[]))
                   AND status IN ('queued', 'running'))  -- not one that ended meanwhile (its job expired)
    ON CONFLICT (question_id) DO NOTHING
    RETURNING id, question_id
),
cited AS (
    INSERT INTO citations (answer_id, page_id, rank, retrieval_score, rerank_score, lanes)
    SELECT new.id, c.page_id, c.rank, c.retrieval_score, c.rerank_score, c.lanes
    FROM new CROSS JOIN src JOIN citations c ON c.answer_id = src.id
),
hits AS (
    INSERT INTO lane_hits (question_id, lane, rank, page_id, score)
    SELECT new.question_id, h.lane, h.rank, h.page_id, h.score
    FROM new JOIN lane_hits h ON h.question_id = :src
),
done AS (
    UPDATE questions SET status = 'answered', last_error = NULL
    WHERE id IN (SELECT question_id FROM new)
)
SELECT question_id FROM new
""")


def copy_answer(
    session: Session, *, source_question_id: int, question_ids: Sequence[int], worker: str | None = None,
) -> list[int]:
    """Give each of ``question_ids`` a copy of the source question's answer, citations and lane rankings, marked
    ``answered``, with ``reused_from`` naming the question whose answer the models made (stage timings 0 ms: no
    model ran). The in-job duplicates of ``question_ids`` get one too. Questions that already have an answer keep
    it, and questions that ended meanwhile (expired, cancelled) stay as they are; with ``worker``, so do those of
    ``question_ids`` whose lease it no longer holds (:func:`db.jobs.held_by`). Returns the questions that got a
    copy."""
    if worker is not None:
        question_ids = list(session.scalars(select(Question.id).where(Question.id.in_(question_ids), held_by([worker]))
                                            .with_for_update()))
    targets = list(question_ids) + _duplicates_of(session, ids=question_ids)
    return list(session.scalars(_COPY_ANSWER, {"src": source_question_id, "targets": targets}))


def find_reusable(session: Session, *, keys: Sequence[str], since: dt.datetime) -> dict[str, int]:
    """Per dedup key, the question whose model-made answer (not itself a copy) is the newest since ``since``."""
    if not keys:
        return {}
    stmt = (
        select(Question.dedup_key, Question.id)
        .join(Answer, Answer.question_id == Question.id)
        .where(Question.dedup_key.in_(set(keys)), Answer.reused_from.is_(None), Answer.created_at >= since)
        .order_by(Question.dedup_key, Answer.created_at.desc())
        .ext(distinct_on(Question.dedup_key))
    )
    return {key: qid for key, qid in session.execute(stmt)}


def reuse_sources(session: Session, *, question_ids: Sequence[int]) -> dict[int, dict]:
    """Per question id, the ``{"job_id", "custom_id"}`` an answer was reused from (for result files)."""
    if not question_ids:
        return {}
    stmt = select(Question.id, Question.job_id, Question.custom_id).where(Question.id.in_(set(question_ids)))
    return {qid: {"job_id": job_id, "custom_id": custom_id} for qid, job_id, custom_id in session.execute(stmt)}


def record_chunk_run(
    session: Session, *, job_id: str, worker: str, device: str, n_questions: int, n_reused: int,
    queue_wait_ms: float | None, batch_sizes: dict, retrieve_ms: float, rerank_ms: float, generate_ms: float,
    total_ms: float, peak_gpu_bytes: int | None, error: str | None,
) -> None:
    """Store one answering task's instrumentation for one job's share of a chunk: the worker (``hostname:pid``)
    and its device, questions claimed and answered by reuse, milliseconds from enqueue to the task's start
    (None when unknown), micro-batch size per stage, per-stage and total milliseconds, peak GPU memory in bytes
    (None on a CPU) and the chunk's first error (see :class:`db.schema.ChunkRun`)."""
    session.execute(insert(ChunkRun).values(
        job_id=job_id, worker=worker, device=device, n_questions=n_questions, n_reused=n_reused,
        queue_wait_ms=queue_wait_ms, batch_sizes=batch_sizes, retrieve_ms=retrieve_ms, rerank_ms=rerank_ms,
        generate_ms=generate_ms, total_ms=total_ms, peak_gpu_bytes=peak_gpu_bytes, error=error,
    ))


def lane_rankings(session: Session, *, job_id: str) -> dict[str, dict[str, list[int]]]:
    """Per ``custom_id``, each lane's ranked list of 1-based page numbers (``fused`` included)."""
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


def question_answers(
    session: Session, *, job_id: str, statuses: Iterable[QuestionStatus] | None = None, batch: int = 2000,
) -> Iterator[list[tuple[Question, Answer | None]]]:
    """The job's questions (optionally only of ``statuses``) in file order, each with its answer or None, in lists
    of at most ``batch`` rows read ``batch`` at a time (a job of a million questions is never in memory at once).
    The answers' citations are not loaded (:func:`citation_rows` reads them without the page images)."""
    stmt = (select(Question, Answer).outerjoin(Answer, Answer.question_id == Question.id)
            .where(Question.job_id == job_id).order_by(Question.line_number, Question.id)
            .options(lazyload(Answer.citations)))
    if statuses is not None:
        stmt = stmt.where(Question.status.in_(list(statuses)))
    rows: list[tuple[Question, Answer | None]] = []
    for row in session.execute(stmt.execution_options(yield_per=batch)):
        rows.append(tuple(row))
        if len(rows) == batch:
            yield rows
            rows = []
    yield rows


def citation_rows(session: Session, *, answer_ids: Sequence[int]) -> list[Row]:
    """The citations of these answers in (answer id, rank) order, each with ``answer_id``, ``page_id``, ``rank``,
    ``lanes``, ``retrieval_score``, ``rerank_score``, the 1-based ``page_number``, ``document_id`` and the
    document's ``source`` (file name); reads only these columns (a page row also holds its image)."""
    if not answer_ids:
        return []
    stmt = (
        select(Citation.answer_id, Citation.page_id, Citation.rank, Citation.lanes, Citation.retrieval_score,
               Citation.rerank_score, Page.page_number, Document.id.label("document_id"), Document.source)
        .join(Page, Page.id == Citation.page_id).join(Document, Document.id == Page.document_id)
        .where(Citation.answer_id.in_(answer_ids)).order_by(Citation.answer_id, Citation.rank)
    )
    return list(session.execute(stmt))

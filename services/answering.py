"""Answering a chunk of questions: claim them, give reused answers, run the resident pipeline (retrieve → rerank
→ generate) on the rest, write each answer with its citations, and send failures and stopped work back to the queue.

When a batch fails, it is split in halves until the failing questions stand alone (:class:`_Solver`), so one bad
question never costs the others their answer; each failing question goes back to the queue with exponential
backoff, and is ``failed`` with its error after ``max_attempts`` claims. A task that runs past
``chunk_time_budget_seconds``, or whose worker is shutting down, stops at its next micro-batch and hands its
unanswered questions back (:mod:`services.guard`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from PIL import Image
from psycopg.errors import ForeignKeyViolation
from sqlalchemy.exc import IntegrityError

from db import answers as answers_db
from db import jobs as jobs_db
from db import lifecycle
from db import pages as pages_db
from db.engine import TRANSIENT, session_scope
from db.schema import Job
from models.images import decode_image
from models.pipeline import ChunkQuestion, Options
from pageqa.errors import one_line
from pageqa.settings import Settings
from services.chunk_run import ChunkRun, worker_id
from services.guard import ChunkStopped, Guard, ShutdownRequested
from services.retrieval import retrieve
from services.reuse import reuse_answers
from worker import resident
from worker.queue import enqueue_questions

log = logging.getLogger(__name__)


#: Longest delay, in seconds, before a failed question's next attempt.
MAX_BACKOFF_S = 600.0

#: The last error of questions handed back because pages they cited were deleted while the models ran.
CITED_DELETED = "pages it cited were deleted while it was answered; answering it again"


def answer_chunk(
    settings: Settings, question_ids: list[int], *, enqueued_at: float | None = None, held_by: Sequence[str] = (),
) -> int:
    """Answer the due questions among ``question_ids``; returns how many got an answer (by reuse too).

    The questions are claimed (``running``) in one transaction, taking back those that the workers ``held_by``
    held without counting an attempt. Those with a reusable answer (:func:`services.reuse.reuse_answers`) get a
    copy; the rest are answered with one batched call per stage, and each answer is written with its citations,
    its state change and the copies for its in-job duplicates. Each job's share of the chunk is recorded in
    ``chunk_runs`` (queue wait from ``enqueued_at``, Unix seconds).

    Raises:
        sqlalchemy.exc.OperationalError, psycopg.OperationalError: the database is unreachable
            (:data:`db.engine.TRANSIENT`); the caller retries the whole chunk.
    """
    guard = Guard(settings.chunk_time_budget_seconds)
    queue_wait_ms = None if enqueued_at is None else max(0.0, (time.time() - enqueued_at) * 1e3)
    with session_scope(settings) as session:
        claimed = lifecycle.claim_questions(
            session, ids=question_ids, worker=worker_id(), lease_s=settings.lease_seconds,
            max_attempts=settings.max_attempts, take_over=list(held_by),
        )
        by_job: dict[str, list[ChunkQuestion]] = {}
        for q in claimed:
            by_job.setdefault(q.job_id, []).append(ChunkQuestion(q.id, q.question, q.document_id))
        attempts = {q.id: q.attempts for q in claimed}
        jobs = {job_id: jobs_db.get_job(session, job_id=job_id) for job_id in by_job}
    try:
        return sum(_answer(settings, jobs[job_id], questions, guard=guard, attempts=attempts,
                           queue_wait_ms=queue_wait_ms) for job_id, questions in by_job.items())
    except ChunkStopped as stop:
        _hand_back(settings, list(attempts), stop)
        return 0


def _answer(
    settings: Settings, job: Job, questions: list[ChunkQuestion], *, guard: Guard, attempts: dict[int, int],
    queue_wait_ms: float | None,
) -> int:
    options = answer_options(settings, job.options)
    run = ChunkRun(settings, job.id, len(questions), queue_wait_ms)
    run.batches.check = guard.check  # models/ calls it before each micro-batch without importing services/
    pipe = resident.pipeline(settings)
    run.on_device(pipe.device)
    keys, reused = reuse_answers(settings, pipe.model_ids, job, options, questions)
    run.n_reused = len(reused)
    solver = _Solver(settings, pipe, job, options, keys, run)
    try:
        solver.solve([q for q in questions if q.question_id not in reused])
    except ChunkStopped as stop:
        with session_scope(settings) as session:
            run.record(session, error=one_line(stop))
        raise
    retry: dict[float, list[int]] = {}
    with session_scope(settings) as session:
        for qid, error in solver.failures.items():
            delay = backoff_s(settings, attempts[qid])
            back = lifecycle.release(session, ids=[qid], error=error, max_attempts=settings.max_attempts,
                                     delay_s=delay, worker=worker_id())
            retry.setdefault(delay, []).extend(back.requeued)
        if solver.cited_deleted:  # not the question's fault: back at once, the attempt refunded
            back = lifecycle.release(session, ids=solver.cited_deleted, error=CITED_DELETED,
                                     max_attempts=settings.max_attempts, refund=True, worker=worker_id())
            retry.setdefault(0.0, []).extend(back.requeued)
        finalizing = lifecycle.finish_jobs(session, job_ids=[job.id])
        run.record(session, error=next(iter(solver.failures.values()), None))
    _finalize(settings, finalizing)
    for delay, ids in retry.items():
        enqueue_questions(settings, question_ids=ids, chunk_size=1, countdown=delay,
                          priority=job.options.get("priority"))
    return len(reused) + solver.written


def backoff_s(settings: Settings, attempts: int) -> float:
    """Seconds before the next attempt of a question that failed its ``attempts``-th: ``retry_backoff_seconds``
    doubled per attempt made, at most :data:`MAX_BACKOFF_S`."""
    return min(settings.retry_backoff_seconds * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)


def _hand_back(settings: Settings, question_ids: list[int], stop: ChunkStopped) -> None:
    """Give the still-running questions of a stopped task back to the queue and send them again: at once and with
    the attempt refunded on shutdown; one per task after ``retry_backoff_seconds`` when the time budget ran out
    (a smaller task fits the budget; a question over it alone fails after ``max_attempts``)."""
    shutdown = isinstance(stop, ShutdownRequested)
    delay = 0.0 if shutdown else settings.retry_backoff_seconds
    with session_scope(settings) as session:
        back = lifecycle.release(session, ids=question_ids, error=one_line(stop), max_attempts=settings.max_attempts,
                                 delay_s=delay, refund=shutdown, worker=worker_id())
        finalizing = []
        if back.failed or back.cancelled:
            ended = back.failed + back.cancelled
            finalizing = lifecycle.finish_jobs(session, job_ids=lifecycle.job_ids_of(session, question_ids=ended))
    _finalize(settings, finalizing)
    log.warning("%s: %d questions handed back, %d failed after %d attempts", one_line(stop), len(back.requeued),
                len(back.failed), settings.max_attempts)
    enqueue_questions(settings, question_ids=back.requeued, chunk_size=settings.chunk_size if shutdown else 1,
                      countdown=delay)


def _finalize(settings: Settings, job_ids: Sequence[str]) -> None:
    """Second step of a job's end, after ``finish_jobs`` committed ``finalizing``: freeze its counts and end it."""
    if job_ids:
        with session_scope(settings) as session:
            lifecycle.finalize_jobs(session, job_ids=job_ids)


class _Solver:
    """Runs the models on a job's questions and writes each answer; a failing batch is split in halves until its
    failing questions stand alone (a bisection: one bad question among n costs about 2·log2(n) extra batches)."""

    def __init__(self, settings: Settings, pipe, job: Job, options: Options, keys: dict[int, str], run: ChunkRun):
        self.settings, self.pipe, self.job, self.options, self.keys, self.run = settings, pipe, job, options, keys, run
        self.failures: dict[int, str] = {}  # question id -> one-line error of its last attempt
        self.cited_deleted: list[int] = []  # questions whose answer cited pages deleted meanwhile
        self.written = 0

    def solve(self, batch: list[ChunkQuestion]) -> None:
        """Answer ``batch``, splitting it on a model or data error; :data:`~db.engine.TRANSIENT` errors and
        :class:`~services.guard.ChunkStopped` propagate."""
        if not batch:
            return
        try:
            retrieved, answers, retrieve_ms = self._models(batch)
        except (ChunkStopped, *TRANSIENT):
            raise
        except Exception as exc:  # any model or data error fails these questions, never the worker
            if len(batch) == 1:
                log.exception("question %d of %s failed", batch[0].question_id, self.job.id)
                self.failures[batch[0].question_id] = one_line(exc)
                return
            log.warning("%d questions of %s failed together (%s); splitting them", len(batch), self.job.id,
                        one_line(exc))
            half = len(batch) // 2
            self.solve(batch[:half])
            self.solve(batch[half:])
            return
        self._write(answers, retrieved, retrieve_ms)

    def _models(self, batch: list[ChunkQuestion]):
        settings, pipe, run = self.settings, self.pipe, self.run
        run.batches.before_batch()
        t0 = time.perf_counter()
        retrieved = retrieve(settings, pipe, corpus_id=self.job.corpus_id, questions=batch, options=self.options,
                             batch_log=run.batches)
        retrieve_ms = (time.perf_counter() - t0) * 1e3 / len(batch)
        cache = resident.page_images(settings)
        answers = pipe.answer_chunk(
            batch, [r.fused for r in retrieved], options=self.options, batch_log=run.batches,
            # The pipeline (models/) reads pages only through these loaders: it never touches the database.
            load_images=lambda ids: cache.get_many(ids, lambda missing: load_images(settings, missing)),
            load_texts=lambda ids: load_texts(settings, ids),
        )
        return retrieved, answers, retrieve_ms

    def _write(self, answers, retrieved, retrieve_ms: float) -> None:
        """Write the batch's answers in one transaction. When a document is deleted under it, a citation's page
        is gone (a foreign-key violation): nothing of the batch is written and its questions are handed back at
        once (:data:`CITED_DELETED`), rather than left ``running`` until their lease expires."""
        try:
            written = self._write_all(answers, retrieved, retrieve_ms)
        except IntegrityError as exc:
            if not isinstance(exc.orig, ForeignKeyViolation):
                raise
            log.warning("%d answers of %s cited deleted pages; handing them back", len(answers), self.job.id)
            self.cited_deleted.extend(a.question_id for a in answers)
            return
        self.written += written
        self.run.add(retrieve_ms=retrieve_ms * len(answers), rerank_ms=sum(a.timings_ms["rerank"] for a in answers),
                     generate_ms=sum(a.timings_ms["generate"] for a in answers))

    def _write_all(self, answers, retrieved, retrieve_ms: float) -> int:
        written = 0
        with session_scope(self.settings) as session:
            for a, r in zip(answers, retrieved, strict=True):
                written += answers_db.record_answer(session, new=answers_db.NewAnswer(
                    question_id=a.question_id, answer=a.answer, kind=a.kind, evidence_page_id=a.evidence_page_id,
                    confidence=a.confidence, citations=[answers_db.NewCitation(c.page_id, c.rank, c.retrieval_score, c.rerank_score, c.lanes)
                               for c in a.citations],
                    lane_hits={**r.lanes, "fused": [(f.page_id, f.score) for f in r.fused]},
                    **self.pipe.model_ids, dedup_key=self.keys[a.question_id],
                    retrieve_ms=retrieve_ms, rerank_ms=a.timings_ms["rerank"], generate_ms=a.timings_ms["generate"],
                ), worker=worker_id())
        return written


def answer_options(settings: Settings, raw: dict) -> Options:
    """A job's stored options (:meth:`pageqa.options.JobOptions.stored`) over the settings' defaults, as the
    pipeline takes them."""
    return Options(
        lanes=tuple(raw.get("lanes") or settings.lanes),
        retrieve_top_k=int(raw.get("retrieve_top_k") or settings.retrieve_top_k),
        rerank_top_k=int(raw.get("rerank_top_k") or settings.rerank_top_k),
        max_new_tokens=int(raw.get("max_new_tokens") or settings.max_new_tokens),
    )


def load_images(settings: Settings, page_ids: Sequence[int]) -> dict[int, Image.Image]:
    """Decoded RGB images of the pages with these ids, by page id."""
    with session_scope(settings) as session:
        return {p.id: decode_image(p.image) for p in pages_db.load_pages(session, page_ids=page_ids)}


def load_texts(settings: Settings, page_ids: Sequence[int]) -> dict[int, str]:
    """The stored text (PDF text layer or OCR) of the pages with these ids, by page id."""
    with session_scope(settings) as session:
        return pages_db.page_texts(session, page_ids=page_ids)

"""Task: answer a chunk of questions through the resident pipeline and write answers with citations."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Sequence

from PIL import Image

from db import corpus as corpus_db
from db import jobs as jobs_db
from db import lifecycle
from db.engine import session_scope
from db.schema import Job
from models.batching import BatchLog
from models.images import decode_image
from models.pipeline import ChunkQuestion, Options
from pageqa.settings import Settings, get_settings
from tasks.enqueue import ANSWER_CHUNK, broker_priority
from tasks.guard import TRANSIENT, ChunkStopped, Guard, ShutdownRequested, one_line
from tasks.retrieval import retrieve
from tasks.reuse import dedup_key, settings_fingerprint
from worker import resident
from worker.app import app

log = logging.getLogger(__name__)


#: Longest delay, in seconds, before a failed question's next attempt.
MAX_BACKOFF_S = 600.0


def worker_id() -> str:
    """This worker process as it appears in ``questions.worker`` and ``chunk_runs.worker``: ``hostname:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@app.task(name=ANSWER_CHUNK, bind=True, max_retries=30)
def answer_chunk(
    self, question_ids: list[int], enqueued_at: float | None = None, held_by: list[str] | None = None,
) -> int:
    """Answer the due questions among ``question_ids``; returns how many got an answer (by reuse too).

    The questions are claimed (``running``) in one transaction. Those with a reusable answer (same tenant, corpus,
    settings and normalised text within ``dedup_window_hours``; :mod:`tasks.reuse`) get a copy; the rest are
    answered with one batched call per stage, and each answer is written with its citations, its state change
    and the copies for its in-job duplicates. When the batch fails, it is split in halves until the failing
    questions stand alone (:class:`_Solver`), so one bad question never costs the others their answer; each
    failing question goes back to the queue with exponential backoff, and is ``failed`` with its error after
    ``max_attempts`` claims. A task that runs past ``chunk_time_budget_seconds``, or whose worker is shutting
    down, stops at its next micro-batch and hands its unanswered questions back (:mod:`tasks.guard`). Each job's
    share of the chunk is recorded in ``chunk_runs`` (queue wait from ``enqueued_at``, Unix seconds).

    A database error (:data:`tasks.guard.TRANSIENT`) retries the whole task after 2, 4, 8… s (at most 60 s, 30
    times). The retry names the workers that held its questions (``held_by``): whichever worker runs it takes them
    back without counting an attempt, instead of leaving them ``running`` until their lease expires.
    """
    try:
        return _answer_chunk(question_ids, enqueued_at=enqueued_at, held_by=held_by or [])
    except TRANSIENT as exc:
        holders = sorted({*(held_by or []), worker_id()})
        raise self.retry(exc=exc, countdown=min(2.0 * 2 ** self.request.retries, 60.0),
                         kwargs={"enqueued_at": enqueued_at, "held_by": holders}) from None


def _answer_chunk(question_ids: list[int], *, enqueued_at: float | None, held_by: list[str]) -> int:
    settings = get_settings()
    guard = Guard(settings.chunk_time_budget_seconds)
    queue_wait_ms = None if enqueued_at is None else max(0.0, (time.time() - enqueued_at) * 1e3)
    with session_scope(settings) as session:
        claimed = lifecycle.claim_questions(
            session, ids=question_ids, worker=worker_id(), lease_s=settings.lease_seconds,
            max_attempts=settings.max_attempts, take_over=held_by,
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
    options = job_options(settings, job.options)
    run = _ChunkRun(settings, job.id, len(questions), queue_wait_ms)
    run.batches.check = guard.check
    pipe = resident.pipeline(settings)
    run.on_device(pipe.device)
    keys, reused = _reuse(settings, pipe, job, options, questions)
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
                                     delay_s=delay)
            retry.setdefault(delay, []).extend(back.requeued)
        finalizing = lifecycle.finish_jobs(session, job_ids=[job.id])
        run.record(session, error=next(iter(solver.failures.values()), None))
    _finalize(settings, finalizing)
    for delay, ids in retry.items():
        _send(settings, ids, chunk_size=1, countdown=delay, priority=job.options.get("priority"))
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
        back = lifecycle.release(session, ids=question_ids, error=one_line(stop),
                                 max_attempts=settings.max_attempts, delay_s=delay, refund=shutdown)
        finalizing = []
        if back.failed or back.cancelled:
            ended = back.failed + back.cancelled
            finalizing = lifecycle.finish_jobs(session, job_ids=lifecycle.job_ids_of(session, question_ids=ended))
    _finalize(settings, finalizing)
    log.warning("%s: %d questions handed back, %d failed after %d attempts", one_line(stop), len(back.requeued),
                len(back.failed), settings.max_attempts)
    _send(settings, back.requeued, chunk_size=settings.chunk_size if shutdown else 1, countdown=delay)


def _finalize(settings: Settings, job_ids: Sequence[str]) -> None:
    """Second step of a job's end, after ``finish_jobs`` committed ``finalizing``: freeze its counts and end it."""
    if job_ids:
        with session_scope(settings) as session:
            lifecycle.finalize_jobs(session, job_ids=job_ids)


def _send(
    settings: Settings, question_ids: Sequence[int], *, chunk_size: int, countdown: float, priority: int | None = None,
) -> None:
    """Send answering tasks for questions already committed as ``queued``, due in ``countdown`` seconds, at the
    job ``priority`` (:func:`tasks.enqueue.broker_priority`)."""
    for i in range(0, len(question_ids), chunk_size):
        app.send_task(ANSWER_CHUNK, args=[list(question_ids[i : i + chunk_size])],
                      kwargs={"enqueued_at": time.time() + countdown}, countdown=countdown or None,
                      queue=settings.worker_queue, priority=broker_priority(priority))


class _Solver:
    """Runs the models on a job's questions and writes each answer; a failing batch is split in halves until its
    failing questions stand alone (a bisection: one bad question among n costs about 2·log2(n) extra batches)."""

    def __init__(self, settings: Settings, pipe, job: Job, options: Options, keys: dict[int, str], run: _ChunkRun):
        self.settings, self.pipe, self.job, self.options, self.keys, self.run = settings, pipe, job, options, keys, run
        self.failures: dict[int, str] = {}  # question id -> one-line error of its last attempt
        self.written = 0

    def solve(self, batch: list[ChunkQuestion]) -> None:
        """Answer ``batch``, splitting it on a model or data error; :data:`~tasks.guard.TRANSIENT` errors and
        :class:`~tasks.guard.ChunkStopped` propagate."""
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
            load_images=lambda ids: cache.get_many(ids, lambda missing: _images(settings, missing)),
            load_texts=lambda ids: _texts(settings, ids),
        )
        return retrieved, answers, retrieve_ms

    def _write(self, answers, retrieved, retrieve_ms: float) -> None:
        with session_scope(self.settings) as session:
            for a, r in zip(answers, retrieved, strict=True):
                self.written += jobs_db.record_answer(session, new=jobs_db.NewAnswer(
                    question_id=a.question_id, answer=a.answer, kind=a.kind, evidence_page_id=a.evidence_page_id,
                    citations=[jobs_db.NewCitation(c.page_id, c.rank, c.retrieval_score, c.rerank_score, c.lanes)
                               for c in a.citations],
                    lane_hits={**r.lanes, "fused": [(f.page_id, f.score) for f in r.fused]},
                    **self.pipe.model_ids, dedup_key=self.keys[a.question_id],
                    retrieve_ms=retrieve_ms, rerank_ms=a.timings_ms["rerank"], generate_ms=a.timings_ms["generate"],
                ))
        self.run.add(retrieve_ms=retrieve_ms * len(answers), rerank_ms=sum(a.timings_ms["rerank"] for a in answers),
                     generate_ms=sum(a.timings_ms["generate"] for a in answers))


def _reuse(
    settings: Settings, pipe, job: Job, options: Options, questions: list[ChunkQuestion]
) -> tuple[dict[int, str], set[int]]:
    """Each question's dedup key, and the questions that got a copy of an earlier answer with the same key (model
    answers no older than ``dedup_window_hours``; 0 turns reuse across jobs off)."""
    fingerprint = settings_fingerprint(settings, model_ids=pipe.model_ids, options=options)
    with session_scope(settings) as session:
        version = corpus_db.corpus_version(session, corpus_id=job.corpus_id)
        keys = {q.question_id: dedup_key(tenant=job.tenant, corpus_id=job.corpus_id, corpus_version=version,
                                         document_id=q.document_id, question=q.text, fingerprint=fingerprint)
                for q in questions}
        if settings.dedup_window_hours <= 0:
            return keys, set()
        since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=settings.dedup_window_hours)
        sources = jobs_db.find_reusable(session, keys=list(keys.values()), since=since)
        reused: set[int] = set()
        for qid, key in keys.items():
            if key in sources and qid not in reused:
                copied = jobs_db.copy_answer(session, source_question_id=sources[key], question_ids=[qid])
                reused.update(q for q in copied if q in keys)
    if reused:
        log.info("%s: %d of %d questions answered by reuse", job.id, len(reused), len(questions))
    return keys, reused


class _ChunkRun:
    """Instrumentation of one job's share of a chunk: started when created, written by :meth:`record`."""

    def __init__(self, settings: Settings, job_id: str, n_questions: int, queue_wait_ms: float | None):
        self.settings, self.job_id, self.n = settings, job_id, n_questions
        self.queue_wait_ms, self.start = queue_wait_ms, time.perf_counter()
        self.device, self.cuda = settings.device, False
        self.batches, self.n_reused = BatchLog(), 0
        self.stage_ms = {"retrieve": 0.0, "rerank": 0.0, "generate": 0.0}

    def on_device(self, device) -> None:
        """The pipeline's ``torch.device``; on CUDA the peak-memory counter starts here."""
        import torch

        self.device, self.cuda = device, device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)

    def add(self, **stage_ms: float) -> None:
        """Add milliseconds to stages (``retrieve``, ``rerank``, ``generate``) of answered questions."""
        for stage, ms in stage_ms.items():
            self.stage_ms[stage.removesuffix("_ms")] += ms

    def record(self, session, *, error: str | None = None) -> None:
        """Write the ``chunk_runs`` row: micro-batch sizes as run (after any out-of-memory halving), stage
        milliseconds summed over the answered questions, total milliseconds from claim to now, peak GPU bytes on
        CUDA, and the first error of the chunk."""
        import torch

        jobs_db.record_chunk_run(
            session, job_id=self.job_id, worker=worker_id(), device=str(self.device),
            n_questions=self.n, n_reused=self.n_reused, queue_wait_ms=self.queue_wait_ms,
            batch_sizes=self.batches.as_record(),
            retrieve_ms=self.stage_ms["retrieve"], rerank_ms=self.stage_ms["rerank"],
            generate_ms=self.stage_ms["generate"], total_ms=(time.perf_counter() - self.start) * 1e3,
            peak_gpu_bytes=torch.cuda.max_memory_allocated(self.device) if self.cuda else None, error=error,
        )


def job_options(settings: Settings, raw: dict) -> Options:
    """A job's stored options over the settings' defaults."""
    return Options(
        lanes=tuple(raw.get("lanes") or settings.lanes),
        retrieve_top_k=int(raw.get("retrieve_top_k") or settings.retrieve_top_k),
        rerank_top_k=int(raw.get("rerank_top_k") or settings.rerank_top_k),
        max_new_tokens=int(raw.get("max_new_tokens") or settings.max_new_tokens),
    )


def _images(settings: Settings, page_ids: Sequence[int]) -> dict[int, Image.Image]:
    with session_scope(settings) as session:
        return {p.id: decode_image(p.image) for p in corpus_db.load_pages(session, page_ids=page_ids)}


def _texts(settings: Settings, page_ids: Sequence[int]) -> dict[int, str]:
    with session_scope(settings) as session:
        return corpus_db.page_texts(session, page_ids=page_ids)

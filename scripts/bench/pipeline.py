"""``pageqa bench pipeline``: the worker's answering path in-process and through Celery, Redis and PostgreSQL.

For each chunk size the same questions are answered twice on the same corpus:

* **in-process**: the pipeline functions called directly in this process, chunk by chunk: ``services.retrieval.
  retrieve`` (query encoding, the lanes in PostgreSQL, fusion) and ``Pipeline.answer_chunk`` (rerank, generate),
  with the worker's page image cache. Nothing is claimed or written.
* **queued**: a job submitted with that chunk size to a running ``pageqa worker`` child process: the questions are
  stored, enqueued in Redis, claimed, answered, written with their citations, and the job is completed. Its time is
  the job's ``completed_at − created_at`` in PostgreSQL.

The orchestration overhead is 1 − in-process time ÷ queued time. Non-model time per question through the queue is
taken per chunk from ``chunk_runs``: the task's milliseconds outside the three stages plus the gap since the
previous chunk ended (broker hand-off, claim), divided by the chunk's questions. A last job of the same number of
questions, half of them repeats, measures the model calls that de-duplication saves.

On a machine without CUDA the tiny model set is used with small pixel budgets (:data:`CPU_OVERRIDES`; random
weights: the figures time the machinery, not the models). Reuse across jobs is turned off for the timed jobs (each chunk size asks the same questions), so every
question reaches the models.

The figures and their Markdown are in :mod:`scripts.bench.pipeline_report`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import select

from db import corpus as corpus_db
from db import pages as pages_db
from db.engine import session_scope
from db.schema import ChunkRun, Job
from pageqa.domain import JobStatus
from pageqa.errors import ServiceError
from pageqa.settings import Settings
from scripts.bench.markdown import write_section
from scripts.bench.pipeline_report import STAGES, DedupResult, ModeResult, to_markdown

log = logging.getLogger(__name__)

CORPUS = "bench-pipeline"
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


#: On a CPU: the tiny model set with the test suite's pixel budgets and short answers, so a run of a few hundred
#: questions takes minutes; the number of candidates per question (retrieve_top_k) stays at its default.
CPU_OVERRIDES = {
    "models": "tiny", "retriever_max_pixels": 48 * 28 * 28, "reranker_max_pixels": 32 * 28 * 28,
    "generator_min_pixels": 4 * 28 * 28, "generator_max_pixels": 32 * 28 * 28, "max_new_tokens": 16,
}


def bench_settings(settings: Settings) -> tuple[Settings, dict[str, str]]:
    """The settings the benchmark runs with, and the environment overrides that give a worker the same: on a
    machine without CUDA, :data:`CPU_OVERRIDES`."""
    from models.device import resolve_device

    if resolve_device(settings.device).type == "cuda":
        return settings, {}
    env = {f"PAGEQA_{k.upper()}": str(v) for k, v in CPU_OVERRIDES.items()}
    return settings.model_copy(update=CPU_OVERRIDES), env


def questions_for(base: list[str], n: int, *, tag: str, duplicates: float = 0.0) -> list[dict]:
    """``n`` question-file rows from the ``base`` questions, made distinct with a numbered suffix; with
    ``duplicates`` > 0 that share of the rows repeats an earlier row's text (different ``custom_id``)."""
    n_distinct = max(1, round(n * (1 - duplicates)))
    distinct = [f"{base[i % len(base)]} (item {tag}-{i})" for i in range(n_distinct)]
    texts = distinct + [distinct[i % n_distinct] for i in range(n - n_distinct)]
    return [{"custom_id": f"q{i}", "question": t} for i, t in enumerate(texts)]


def run(settings: Settings, *, n_questions: int, chunk_sizes: list[int], command: str) -> str:
    """Run the benchmark; returns the Markdown section (also written into docs/benchmarks.md).

    Raises:
        ServiceError: the worker exited, or a job did not complete within 30 minutes.
    """
    from scripts.cli.progress import embed_and_wait
    from scripts.demo.data import build_demo_corpus
    from services.ingest.pipeline import ingest_files
    from services.runtime import prepare
    from worker.process import spawn_worker, stop_worker

    settings, overrides = bench_settings(settings)
    prepare(settings)
    if settings.models == "tiny":
        from models.tiny import make_tiny

        make_tiny(settings.home_dir / "models" / "tiny")
    data = build_demo_corpus(settings.home_dir / "demo")
    base = [q.question for q in data.questions]
    env = {**os.environ, "PAGEQA_HOME": str(settings.home_dir), "PAGEQA_WORKER_QUEUE": settings.worker_queue,
           "PAGEQA_DEVICE": settings.device, **overrides}
    timed_env = {**env, "PAGEQA_DEDUP_WINDOW_HOURS": "0"}
    log_path = settings.home_dir / "logs" / "bench-pipeline-worker.log"
    proc = spawn_worker(env=timed_env, log_path=log_path, device=settings.device)

    def alive() -> bool:
        return proc.poll() is None

    try:
        t0 = time.perf_counter()
        report = ingest_files(settings, corpus=CORPUS, files=[data.pdf], enqueue=True)
        embed_and_wait(settings, corpus=CORPUS, wait=True, alive=alive, queued=report.queued_page_ids)
        index_s = time.perf_counter() - t0
        with session_scope(settings) as session:
            n_pages = pages_db.count_pages(session, corpus_id=corpus_db.get_corpus(session, name=CORPUS).id)
        index = (n_pages, index_s if report.pages else None)
        pipe = _in_process_pipeline(settings)
        rows = _timed_runs(settings, pipe, questions_for(base, n_questions, tag="t"), chunk_sizes=chunk_sizes,
                           alive=alive)
        dedup = _dedup_run(settings, questions_for(base, n_questions, tag=f"d{uuid.uuid4().hex[:6]}", duplicates=0.5),
                           alive=alive)
    finally:
        stop_worker(proc)
    body = to_markdown(settings, rows, dedup, n_questions=n_questions, command=command, index=index,
                       cpu_overrides=CPU_OVERRIDES)
    write_section(DOC_PATH, f"pipeline {command}", body, tag="bench_pipeline",
                  header="# Benchmarks\n")
    return body


def _in_process_pipeline(settings: Settings):
    from worker import resident

    return resident.pipeline(settings)


def _timed_runs(settings, pipe, questions: list[dict], *, chunk_sizes, alive) -> list[tuple[int, ModeResult, ModeResult]]:
    _queued(settings, questions[:16], chunk_size=16, alive=alive)  # warm the worker: first chunk loads lazily
    _in_process(settings, pipe, questions[:16], chunk_size=16)
    rows = []
    for size in chunk_sizes:
        inproc = _in_process(settings, pipe, questions, chunk_size=size)
        _, queued = _queued(settings, questions, chunk_size=size, alive=alive)
        log.warning("chunk %d: in-process %.1f q/s, queued %.1f q/s", size, inproc.qps, queued.qps)
        rows.append((size, inproc, queued))
    return rows


def _in_process(settings: Settings, pipe, rows: list[dict], *, chunk_size: int) -> ModeResult:
    from models.pipeline import ChunkQuestion
    from services.answering import answer_options, load_images, load_texts
    from services.retrieval import retrieve
    from worker import resident

    with session_scope(settings) as session:
        corpus_id = corpus_db.get_corpus(session, name=CORPUS).id
    options = answer_options(settings, {})
    cache = resident.page_images(settings)
    questions = [ChunkQuestion(i, r["question"]) for i, r in enumerate(rows)]
    result = ModeResult(len(rows), 0.0)
    start = time.perf_counter()
    for lo in range(0, len(questions), chunk_size):
        chunk = questions[lo : lo + chunk_size]
        t0 = time.perf_counter()
        retrieved = retrieve(settings, pipe, corpus_id=corpus_id, questions=chunk, options=options)
        result.stage_ms["retrieve"] += (time.perf_counter() - t0) * 1e3
        answers = pipe.answer_chunk(
            chunk, [r.fused for r in retrieved], options=options,
            load_images=lambda ids: cache.get_many(ids, lambda missing: load_images(settings, missing)),
            load_texts=lambda ids: load_texts(settings, ids),
        )
        for stage in ("rerank", "generate"):
            result.stage_ms[stage] += sum(a.timings_ms[stage] for a in answers)
    result.wall_s = time.perf_counter() - start
    return result


def _queued(settings: Settings, rows: list[dict], *, chunk_size: int, alive) -> tuple[str, ModeResult]:
    from services.jobs import submit_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"bench-{chunk_size}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        job_id = submit_file(settings, path=path, corpus=CORPUS, options={"chunk_size": chunk_size}).job_id
    job = _wait(settings, job_id, alive=alive)
    with session_scope(settings) as session:
        runs = session.scalars(select(ChunkRun).where(ChunkRun.job_id == job_id).order_by(ChunkRun.created_at)).all()
    result = ModeResult(len(rows), (job.completed_at - job.created_at).total_seconds())
    previous_end = job.created_at
    for r in runs:
        for stage in STAGES:
            result.stage_ms[stage] += getattr(r, f"{stage}_ms")
        start = r.created_at - dt.timedelta(milliseconds=r.total_ms)
        gap_ms = max(0.0, (start - previous_end).total_seconds() * 1e3)
        outside_ms = r.total_ms - (r.retrieve_ms + r.rerank_ms + r.generate_ms)
        result.non_model_ms.append((outside_ms + gap_ms) / r.n_questions)
        previous_end = r.created_at
        if r.peak_gpu_bytes is not None:
            result.peak_gpu_bytes = max(result.peak_gpu_bytes or 0, r.peak_gpu_bytes)
    return job_id, result


def _wait(settings: Settings, job_id: str, *, alive, timeout_s: float = 1800.0) -> Job:
    deadline = time.monotonic() + timeout_s
    while True:
        with session_scope(settings) as session:
            job = session.get(Job, job_id)
        if job.status in (JobStatus.completed, JobStatus.failed):
            if job.status is JobStatus.failed:
                raise ServiceError(f"benchmark job {job_id} failed (see the worker log)")
            return job
        if not alive():
            raise ServiceError("the benchmark worker exited (see PAGEQA_HOME/logs/bench-pipeline-worker.log)")
        if time.monotonic() > deadline:
            raise ServiceError(f"benchmark job {job_id} did not complete in {timeout_s:.0f} s")
        # The job's time comes from its PostgreSQL timestamps, so polling only needs to notice the end; polling
        # every 20 ms took enough CPU from the worker, on 2 cores, to slow its models by a tenth.
        time.sleep(0.25)


def _dedup_run(settings: Settings, rows: list[dict], *, alive) -> DedupResult:
    """A job of repeated questions through the queue (fresh texts, so nothing comes from an earlier job)."""
    job_id, result = _queued(settings, rows, chunk_size=settings.chunk_size, alive=alive)
    with session_scope(settings) as session:
        runs = session.scalars(select(ChunkRun).where(ChunkRun.job_id == job_id)).all()
    return DedupResult(len(rows), sum(r.n_questions - r.n_reused for r in runs), result.wall_s)

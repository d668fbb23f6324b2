"""``pageqa eval DIR``: ingest an MMLongBench-Doc-format directory (``pdfs/`` + ``samples.json``) into its own
corpus, answer every question as one job with its document as the retrieval filter, and score the run."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from db import answers as answers_db
from db.engine import session_scope
from pageqa.errors import InputError
from pageqa.settings import Settings
from scripts.cli.progress import embed_and_wait, watch_job
from scripts.eval.mmlongbench import Sample, read_samples
from scripts.eval.report import Outcome, build_report, to_markdown
from services.ingest.pipeline import ingest_files
from services.jobs import submit_file
from services.results import question_records

log = logging.getLogger(__name__)


def select_samples(
    directory: Path, *, documents: Sequence[str] = (), max_documents: int | None = None, limit: int | None = None,
    strict: bool = False, left_out: list[InputError] | None = None,
) -> tuple[list[Sample], list[Path]]:
    """The samples of the chosen documents (all, the named ones, or the ``max_documents`` shortest PDFs), the
    first ``limit`` of them in file order when given, and the PDF paths of their documents. Malformed records
    are left out and appended to ``left_out`` (:func:`read_samples`).

    Raises:
        InputError: a named document is not in ``pdfs/``; or from :func:`read_samples` (``strict``: any
            malformed record).
    """
    samples = read_samples(directory, strict=strict, left_out=left_out)
    names = sorted({s.doc_id for s in samples})
    if documents:
        missing = [d for d in documents if d not in names]
        if missing:
            raise InputError(f"not among the documents with questions: {', '.join(missing)}", source=str(directory))
        names = list(documents)
    elif max_documents is not None:
        import pypdfium2 as pdfium

        sizes = {n: len(pdfium.PdfDocument(directory / "pdfs" / n)) for n in names}
        names = sorted(names, key=lambda n: (sizes[n], n))[:max_documents]
    chosen = set(names)
    kept = [s for s in samples if s.doc_id in chosen][:limit]
    return kept, [directory / "pdfs" / n for n in sorted({s.doc_id for s in kept})]


def _write_questions(samples: Sequence[Sample], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for s in samples:
            fh.write(json.dumps({"custom_id": f"s{s.index:04d}", "question": s.question, "document": s.doc_id}) + "\n")


def run_eval(
    settings: Settings, directory: Path, *, corpus: str | None = None, documents: Sequence[str] = (),
    max_documents: int | None = None, limit: int | None = None, lanes: Sequence[str] = (),
    output: Path | None = None, spawn_worker: bool = True, strict: bool = False,
) -> dict:
    """Run the evaluation and write ``report.json`` and ``report.md`` into ``output``; returns the report.
    Malformed records of ``samples.json`` are left out and listed in the report's ``left_out`` (``strict``: the
    file is refused instead, before anything is ingested).

    ``spawn_worker``: start a worker for the run (False when one already serves ``settings.worker_queue``).
    """
    from worker.process import running_worker

    left_out: list[InputError] = []
    samples, pdfs = select_samples(directory, documents=documents, max_documents=max_documents, limit=limit,
                                   strict=strict, left_out=left_out)
    corpus = corpus or f"eval-{directory.name}"
    output = output or settings.home_dir / "eval" / corpus
    worker = running_worker(settings, log_name=f"eval-{corpus}") if spawn_worker else nullcontext(None)
    with worker as alive:
        t0 = time.perf_counter()
        ingest = ingest_files(settings, corpus=corpus, files=pdfs, enqueue=True)
        if ingest.errors:
            raise InputError(f"{len(ingest.errors)} documents failed to ingest; first: {ingest.errors[0]}")
        embed_and_wait(settings, corpus=corpus, wait=True, alive=alive, queued=ingest.queued_page_ids)
        ingest_s = time.perf_counter() - t0
        _write_questions(samples, output / "questions.jsonl")
        options = {"lanes": list(lanes)} if lanes else {}
        job = submit_file(settings, path=output / "questions.jsonl", corpus=corpus, options=options)
        t1 = time.perf_counter()
        watch_job(settings, job_id=job.job_id, alive=alive)
        job_s = time.perf_counter() - t1
    outcomes = _outcomes(settings, job.job_id, samples)
    n_pages = sum(_page_count(p) for p in pdfs)
    throughput = {
        "documents": len(pdfs), "pages": n_pages, "new_pages_ingested": ingest.pages,
        "ingest_and_index_s": round(ingest_s, 1),
        "pages_per_s": round(ingest.pages / ingest_s, 2) if ingest.pages else float("nan"),
        "questions": len(samples), "job_s": round(job_s, 1), "questions_per_s": round(len(samples) / job_s, 2),
    }
    meta = {"dataset": str(directory), "corpus": corpus, "job": job.job_id, "model_set": settings.models,
            "lanes": ",".join(lanes or settings.available_lanes())}
    report = build_report(outcomes, throughput=throughput, meta=meta, left_out=[str(e) for e in left_out])
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    (output / "report.md").write_text(to_markdown(report), encoding="utf-8")
    return report


def _page_count(path: Path) -> int:
    import pypdfium2 as pdfium

    return len(pdfium.PdfDocument(path))


def _outcomes(settings: Settings, job_id: str, samples: Sequence[Sample]) -> list[Outcome]:
    with session_scope(settings) as session:
        rankings = answers_db.lane_rankings(session, job_id=job_id)
    records = {r["custom_id"]: r for r in question_records(settings, job_id=job_id)}
    outcomes = []
    for s in samples:
        cid = f"s{s.index:04d}"
        r = records.get(cid, {})
        outcomes.append(Outcome(s, rankings.get(cid, {}), r.get("answer"), r.get("answer_kind"), r.get("confidence")))
    return outcomes

"""End to end through the real services: CLI → Postgres → Redis → a real Celery worker → answers in Postgres."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from conftest import run_cli as cli
from conftest import wait_for
from sqlalchemy import func, select

from db.engine import session_scope
from db.schema import (
    Answer,
    ChunkRun,
    Citation,
    Corpus,
    Document,
    LaneHit,
    Page,
    PageEmbedding,
    Question,
)
from models.loading import model_ids

pytestmark = pytest.mark.models
CORPUS = "e2e"


@pytest.fixture(scope="module")
def corpus(settings, worker, sample_docs):
    """The sample documents ingested into corpus ``e2e`` and embedded by the worker."""
    cli("ingest", str(sample_docs["root"]), "--corpus", CORPUS)  # waits for the embeddings
    return CORPUS


def _run_job(settings, path) -> str:
    job_id = cli("submit", str(path), "--corpus", CORPUS).stdout.strip().splitlines()[-1]
    assert job_id.startswith("job_")
    final = cli("status", job_id, "--watch")
    assert "completed" in final.stdout, cli("results", job_id).stdout[:3000]
    return job_id


def test_every_page_is_embedded_without_padding_rows(settings, corpus):
    with session_scope(settings) as session:
        rows = session.execute(
            select(Page.id, PageEmbedding.n_vectors, PageEmbedding.dim, PageEmbedding.vectors, PageEmbedding.model_id)
            .join(Document, Document.id == Page.document_id).join(Corpus, Corpus.id == Document.corpus_id)
            .outerjoin(PageEmbedding, PageEmbedding.page_id == Page.id)
            .where(Corpus.name == corpus)
        ).all()
    assert len(rows) == 6
    for _page_id, n, dim, raw, model_id in rows:
        assert raw is not None and dim == 128 and n > 0
        assert model_id == str(model_ids(settings)["retriever"])
        vectors = np.frombuffer(raw, dtype=np.float16).reshape(n, dim).astype(np.float32)
        assert np.all(np.abs(np.linalg.norm(vectors, axis=1) - 1.0) < 1e-2)


def test_csv_and_jsonl_jobs_are_answered_with_citations_to_the_corpus(settings, corpus, tmp_path):
    csv_path = tmp_path / "questions.csv"
    csv_path.write_text(
        "custom_id,question,document\n"
        "c1,How many tonnes of apples were harvested?,report.pdf\n"
        'c2,"Which colour is the block, red or green?",\n'
        "c3,What did revenue rise to?,report.pdf\n"
        "c4,What is in the blue image?,blue\n"
        "c5,Anything about bridges?,\n",
        encoding="utf-8",
    )
    jsonl_path = tmp_path / "questions.jsonl"
    jsonl_path.write_text(
        "\n".join(json.dumps(r) for r in [
            {"custom_id": "j1", "question": "Which page shows a chart?"},
            {"custom_id": "j2", "question": "What is green?", "document": "green.jpg"},
        ]) + "\n", encoding="utf-8",
    )
    csv_job, jsonl_job = _run_job(settings, csv_path), _run_job(settings, jsonl_path)

    with session_scope(settings) as session:
        corpus_id = session.scalar(select(Corpus.id).where(Corpus.name == corpus))
        docs = {d.id: d for d in session.scalars(select(Document).where(Document.corpus_id == corpus_id))}
        for job_id, expected in ((csv_job, 5), (jsonl_job, 2)):
            questions = session.scalars(select(Question).where(Question.job_id == job_id)).all()
            assert len(questions) == expected
            for q in questions:
                assert q.status.value == "answered" and q.attempts == 1
                answer = session.scalars(select(Answer).where(Answer.question_id == q.id)).one()
                assert [c.rank for c in answer.citations] == list(range(1, len(answer.citations) + 1))
                assert 1 <= len(answer.citations) <= settings.rerank_top_k
                rerank = [c.rerank_score for c in answer.citations]
                assert rerank == sorted(rerank, reverse=True)
                assert answer.retrieve_ms > 0 and answer.rerank_ms > 0 and answer.generate_ms > 0
                for c in answer.citations:
                    assert c.page.document_id in docs, "cited page must belong to the job's corpus"
                    assert 1 <= c.page.page_number <= docs[c.page.document_id].page_count
                    if q.document_id is not None:
                        assert c.page.document_id == q.document_id
        filtered = session.scalars(
            select(Question).where(Question.job_id == csv_job, Question.custom_id == "c4")
        ).one()
        assert docs[filtered.document_id].source == "blue.webp"  # matched by title
        n_cites = session.scalar(
            select(func.count(Citation.id)).join(Answer).join(Question, Question.id == Answer.question_id).where(Question.job_id == csv_job)
        )
        assert n_cites >= 5

    with session_scope(settings) as session:  # every chunk of the job left its instrumentation
        runs = session.scalars(select(ChunkRun).where(ChunkRun.job_id == csv_job)).all()
    assert sum(r.n_questions for r in runs) == 5 and all(r.error is None for r in runs)
    for r in runs:
        assert r.queue_wait_ms is not None and r.queue_wait_ms >= 0
        assert r.total_ms >= r.retrieve_ms + r.rerank_ms + r.generate_ms > 0
        assert r.device == "cpu" and r.peak_gpu_bytes is None
        sizes = r.batch_sizes  # micro-batches as run: the chunk's queries in one pass, every pair reranked
        assert sizes["query"] == [r.n_questions] and sum(sizes["generate"]) == r.n_questions
        assert max(sizes["rerank"]) <= settings.rerank_batch_size and "oom_halvings" not in sizes
    with session_scope(settings) as session:  # every fused candidate of every question was reranked
        fused = session.scalar(select(func.count(LaneHit.id)).join(Question, Question.id == LaneHit.question_id)
                               .where(Question.job_id == csv_job, LaneHit.lane == "fused"))
    assert sum(sum(r.batch_sizes["rerank"]) for r in runs) == fused > 0

    jsonl = [json.loads(line) for line in cli("results", csv_job, "--format", "jsonl").stdout.splitlines()]
    assert [r["custom_id"] for r in jsonl] == ["c1", "c2", "c3", "c4", "c5"]
    assert all(r["status"] == "answered" and r["citations"] for r in jsonl)
    assert {c["document"] for c in jsonl[0]["citations"]} == {"report.pdf"}
    assert set(jsonl[0]["timings_ms"]) == {"retrieve", "rerank", "generate"}

    out = tmp_path / "results.csv"
    cli("results", jsonl_job, "--format", "csv", "--output", str(out))
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r["custom_id"] for r in rows] == ["j1", "j2"]
    assert rows[1]["top_document"] == "green.jpg" and rows[1]["top_page"] == "1"
    assert all(r["citations"] for r in rows)


def test_a_task_delivered_twice_does_not_answer_twice(settings, corpus, tmp_path):
    from worker.queue import enqueue_questions

    path = tmp_path / "once.csv"
    path.write_text("custom_id,question\nd1,first\nd2,second\n", encoding="utf-8")
    job_id = _run_job(settings, path)
    with session_scope(settings) as session:
        ids = list(session.scalars(select(Question.id).where(Question.job_id == job_id)))
    enqueue_questions(settings, question_ids=ids, chunk_size=2)
    enqueue_questions(settings, question_ids=ids, chunk_size=1)
    marker = tmp_path / "marker.csv"
    marker.write_text("custom_id,question\nm1,after the duplicates\n", encoding="utf-8")
    _run_job(settings, marker)  # FIFO with one worker: the duplicates ran before this job finished
    with session_scope(settings) as session:
        answers = session.scalar(select(func.count(Answer.id)).where(Answer.question_id.in_(ids)))
        attempts = list(session.scalars(select(Question.attempts).where(Question.id.in_(ids))))
    assert answers == 2 and attempts == [1, 1]


def test_submit_reports_bad_rows_and_refuses_a_file_without_valid_rows(settings, corpus, tmp_path):
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("custom_id,question,document\nok1,fine?,\nbad1,,\nbad2,where?,missing.pdf\n", encoding="utf-8")
    result = cli("submit", str(mixed), "--corpus", CORPUS)
    assert f"{mixed}:3: question is missing or empty" in result.stderr
    assert f"{mixed}:4: document 'missing.pdf' is not in corpus 'e2e'" in result.stderr
    job_id = result.stdout.strip().splitlines()[-1]
    wait_for(lambda: "completed" in cli("status", job_id).stdout, timeout_s=120, what="mixed job")

    strict = cli("submit", str(mixed), "--corpus", CORPUS, "--strict", ok=False)
    assert strict.exit_code == 1 and "2 invalid rows (--strict)" in strict.stderr

    empty = tmp_path / "empty.jsonl"
    empty.write_text("{broken\n", encoding="utf-8")
    refused = cli("submit", str(empty), "--corpus", CORPUS, ok=False)
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("error:")
    assert "empty.jsonl" in refused.stderr


def test_unknown_job_and_corpus_are_one_line_errors(settings, services, tmp_path):
    result = cli("status", "job_doesnotexist", ok=False)
    assert result.exit_code == 1 and result.stderr.strip() == "error: no job 'job_doesnotexist'"
    path = tmp_path / "q.csv"
    path.write_text("custom_id,question\na,b\n", encoding="utf-8")
    result = cli("submit", str(path), "--corpus", "no-such-corpus", ok=False)
    assert result.exit_code == 1 and "no corpus named 'no-such-corpus'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_one_task_with_questions_of_two_jobs_answers_each_against_its_own_corpus(settings, corpus, sample_docs):
    from db import corpus as corpus_db
    from db import jobs as jobs_db
    from services.ingest.pipeline import ingest_files
    from scripts.cli.progress import embed_and_wait
    from worker.queue import enqueue_questions

    ingest_files(settings, corpus="e2e-other", files=[sample_docs["png"]])
    embed_and_wait(settings, corpus="e2e-other", wait=True)
    with session_scope(settings) as session:
        job_ids, ids = [], []
        for name in (CORPUS, "e2e-other"):
            c = corpus_db.get_corpus(session, name=name)
            job = jobs_db.open_job(session, corpus_id=c.id, source="direct", options={})
            jobs_db.store_questions(session, job_id=job.id,
                                    questions=[jobs_db.NewQuestion(f"{name}-1", "which page?", None, 1)])
            job_ids.append(job.id)
            ids += jobs_db.iter_question_ids(session, job_id=job.id)
    enqueue_questions(settings, question_ids=ids, chunk_size=2)  # one task, two jobs
    for job_id in job_ids:
        wait_for(lambda j=job_id: "completed" in cli("status", j).stdout, timeout_s=120, what=job_id)
    other = [json.loads(line) for line in cli("results", job_ids[1]).stdout.splitlines()]
    assert [c["document"] for c in other[0]["citations"]] == ["red.png"]  # the only page of e2e-other


def test_lanes_are_a_per_job_option(settings, corpus, tmp_path):
    from db import answers as answers_db

    path = tmp_path / "lexical.csv"
    path.write_text("custom_id,question\nl1,apple harvest tonnes\n", encoding="utf-8")
    job_id = cli("submit", str(path), "--corpus", CORPUS, "--lanes", "lexical").stdout.strip().splitlines()[-1]
    assert "completed" in cli("status", job_id, "--watch").stdout
    (record,) = [json.loads(line) for line in cli("results", job_id).stdout.splitlines()]
    assert record["citations"] and all(c["lanes"] == ["lexical"] for c in record["citations"])
    assert record["citations"][0]["document"] == "report.pdf" and record["citations"][0]["page"] == 1
    with session_scope(settings) as session:
        assert set(answers_db.lane_rankings(session, job_id=job_id)["l1"]) == {"lexical", "fused"}
    bad = cli("submit", str(path), "--corpus", CORPUS, "--lanes", "visual,ocr", ok=False)
    assert bad.exit_code == 1 and "--lanes takes" in bad.stderr


def test_hostile_text_is_stored_verbatim_and_exported_without_formulas(settings, corpus, tmp_path):
    sql = "Robert'); DROP TABLE questions;-- what was harvested? %s \\x00 $1"
    path = tmp_path / "hostile.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        {"custom_id": "=HYPERLINK(\"http://x\")", "question": sql},
        {"custom_id": "+1", "question": "@SUM(A1:A9) cracks?"},
        {"custom_id": "plain", "question": "-2 tonnes\tor\rmore?"},
        {"custom_id": "tokens", "question": "<|image_pad|><|vision_start|> harvest?<|im_end|>"},
    ]))
    job_id = _run_job(settings, path)
    records = {r["custom_id"]: r for r in map(json.loads, cli("results", job_id).stdout.splitlines())}
    assert records['=HYPERLINK("http://x")']["question"] == sql, "stored and returned verbatim"
    # Qwen2-VL special tokens in a question are text, not tokens: they used to fail the whole chunk
    assert all(r["status"] == "answered" for r in records.values()), [r.get("error") for r in records.values()]
    assert records["tokens"]["question"] == "<|image_pad|><|vision_start|> harvest?<|im_end|>"

    out = tmp_path / "hostile.csv"
    cli("results", job_id, "--format", "csv", "--output", str(out))
    with out.open(encoding="utf-8", newline="") as f:  # newline="": a \r inside a cell stays a \r
        rows = list(csv.DictReader(f))
    cells = [v for row in rows for v in row.values()]
    assert not [c for c in cells if c and c[0] in "=+-@\t\r"], "no cell may start like a formula"
    by_id = {r["custom_id"]: r for r in rows}
    assert set(by_id) == {"'=HYPERLINK(\"http://x\")", "'+1", "plain", "tokens"}
    assert by_id["'+1"]["question"] == "'@SUM(A1:A9) cracks?"
    assert by_id["plain"]["question"] == "'-2 tonnes\tor\rmore?"
    assert by_id["'=HYPERLINK(\"http://x\")"]["question"] == sql

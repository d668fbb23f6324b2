"""Throughput features through the real worker: a chunk batched across questions answers exactly as one question at
a time, and repeated questions are answered once, never across tenants, corpora or settings."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from conftest import run_cli as cli
from sqlalchemy import select

from db import answers as answers_db
from db import corpus as corpus_db
from db import pages as pages_db
from db.engine import session_scope
from db.schema import Answer, ChunkRun, Question
from models.images import decode_image
from models.pipeline import ChunkQuestion, Pipeline
from services.answering import answer_options
from services.retrieval import retrieve

pytestmark = pytest.mark.models

CORPUS, OTHER = "throughput", "throughput-other"


@pytest.fixture(scope="module")
def corpora(worker, sample_docs):
    """The sample documents in two corpora, embedded by the worker."""
    for name in (CORPUS, OTHER):
        cli("ingest", str(sample_docs["root"]), "--corpus", name)
    return CORPUS, OTHER


def _job(path, corpus: str, *options: str) -> str:
    job_id = cli("submit", str(path), "--corpus", corpus, *options).stdout.strip().splitlines()[-1]
    assert "completed" in cli("status", job_id, "--watch").stdout
    return job_id


def _write(path, rows: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _runs(settings, job_id: str) -> tuple[int, int]:
    """(questions the chunks claimed, questions answered by reuse) over the job's chunk_runs."""
    with session_scope(settings) as session:
        runs = session.scalars(select(ChunkRun).where(ChunkRun.job_id == job_id)).all()
    return sum(r.n_questions for r in runs), sum(r.n_reused for r in runs)


def _answers(settings, job_id: str) -> dict[str, tuple[Question, Answer]]:
    with session_scope(settings) as session:
        rows = session.execute(select(Question, Answer).outerjoin(Answer, Answer.question_id == Question.id)
                               .where(Question.job_id == job_id))
        return {q.custom_id: (q, a) for q, a in rows}


def test_a_chunk_batched_across_questions_ranks_and_answers_as_one_at_a_time(settings, corpora, tiny_models):
    pipe = Pipeline(settings)
    with session_scope(settings) as session:
        corpus = corpus_db.get_corpus(session, name=CORPUS)
        report = corpus_db.documents_by_name(session, corpus_id=corpus.id)["report.pdf"]
    questions = [
        ChunkQuestion(1, "How many tonnes of apples were harvested?"),
        ChunkQuestion(2, "How many cracks did the bridge inspection find?", report.id),
        ChunkQuestion(3, "revenue"),
        ChunkQuestion(4, "Which colour is the block in the picture, and how large is it compared with the page?"),
    ]
    options = answer_options(settings, {})

    def images(ids):
        with session_scope(settings) as session:
            return {p.id: decode_image(p.image) for p in pages_db.load_pages(session, page_ids=ids)}

    def texts(ids):
        with session_scope(settings) as session:
            return pages_db.page_texts(session, page_ids=ids)

    chunk = retrieve(settings, pipe, corpus_id=corpus.id, questions=questions, options=options)
    alone = [retrieve(settings, pipe, corpus_id=corpus.id, questions=[q], options=options)[0] for q in questions]
    for c, a in zip(chunk, alone, strict=True):
        assert [p for p, _ in c.lanes["visual"]] == [p for p, _ in a.lanes["visual"]]
        assert np.allclose([s for _, s in c.lanes["visual"]], [s for _, s in a.lanes["visual"]], atol=1e-4)
        assert [f.page_id for f in c.fused] == [f.page_id for f in a.fused]
    assert len(chunk[1].fused) == report.page_count, "the document filter holds in a batched chunk"

    batched = pipe.answer_chunk(questions, [r.fused for r in chunk], options=options, load_images=images,
                                load_texts=texts)
    single = [pipe.answer_chunk([q], [r.fused], options=options, load_images=images, load_texts=texts)[0]
              for q, r in zip(questions, alone, strict=True)]
    for b, s in zip(batched, single, strict=True):
        assert b.answer == s.answer, "greedy decoding gives the same answer batched or alone"
        assert [c.page_id for c in b.citations] == [c.page_id for c in s.citations]
        assert np.allclose([c.rerank_score for c in b.citations], [c.rerank_score for c in s.citations], atol=1e-4)


def test_repeated_questions_in_a_job_run_once_and_share_the_answer(settings, corpora, tmp_path):
    path = _write(tmp_path / "repeats.jsonl", [
        {"custom_id": "a", "question": "What was the apple harvest in 2023?"},
        {"custom_id": "b", "question": "Where were cracks found?"},
        {"custom_id": "a-again", "question": "  what WAS the apple   harvest in 2023 ?"},
        {"custom_id": "b-doc", "question": "Where were cracks found?", "document": "report.pdf"},
        {"custom_id": "b-again", "question": "Where were cracks found"},
        {"custom_id": "a-3", "question": "What was the apple harvest in 2023?"},
    ])
    job_id = _job(path, CORPUS)
    rows = _answers(settings, job_id)
    assert all(q.status.value == "answered" for q, _ in rows.values())
    leaders = {"a-again": "a", "a-3": "a", "b-again": "b"}
    for follower, leader in leaders.items():
        fq, fa = rows[follower]
        lq, la = rows[leader]
        assert fq.duplicate_of == lq.id and fa.reused_from == lq.id
        assert fa.answer == la.answer and fa.reused_from is not None and la.reused_from is None
        assert [(c.page_id, c.rank) for c in fa.citations] == [(c.page_id, c.rank) for c in la.citations]
        assert fa.generate_ms == 0.0
    assert rows["b-doc"][0].duplicate_of is None, "another document filter is another question"
    assert _runs(settings, job_id) == (3, 0), "only a, b and b-doc reached the models"

    records = {r["custom_id"]: r for r in map(json.loads, cli("results", job_id).stdout.splitlines())}
    assert records["a-3"]["reused_from"] == {"job_id": job_id, "custom_id": "a"}
    assert "reused_from" not in records["a"]


def test_a_later_job_reuses_answers_only_for_the_same_tenant_corpus_and_settings(settings, corpora, tmp_path):
    path = _write(tmp_path / "later.jsonl", [
        {"custom_id": "r1", "question": "Quarterly revenue in euros?"},
        {"custom_id": "r2", "question": "How many tonnes were harvested?"},
        {"custom_id": "r3", "question": "What does the green image show?"},
    ])
    first = _job(path, CORPUS)
    assert _runs(settings, first) == (3, 0)
    again = _job(path, CORPUS)
    assert _runs(settings, again) == (3, 3), "the same questions, tenant, corpus and settings: all reused"
    old, new = _answers(settings, first), _answers(settings, again)
    for cid in ("r1", "r2", "r3"):
        assert new[cid][1].reused_from == old[cid][0].id and new[cid][1].answer == old[cid][1].answer

    refused = cli("submit", str(path), "--corpus", CORPUS, "--tenant", "acme", ok=False)  # corpora are per tenant
    assert "no corpus named 'throughput'" in refused.stderr, "another tenant cannot even reach these answers"
    for label, job in [
        ("another corpus", _job(path, OTHER)),
        ("other job options", _job(path, CORPUS, "--rerank-top-k", "2")),
    ]:
        assert _runs(settings, job) == (3, 0), f"{label}: nothing may be reused"
        assert all(a.reused_from is None for _, a in _answers(settings, job).values()), label

    source = old["r1"][0]
    with session_scope(settings) as session:  # the window bounds the age of a source answer
        now = dt.datetime.now(dt.UTC)
        key = source.dedup_key
        assert answers_db.find_reusable(session, keys=[key], since=now - dt.timedelta(hours=1)) == {key: source.id}
        assert answers_db.find_reusable(session, keys=[key], since=now + dt.timedelta(seconds=1)) == {}

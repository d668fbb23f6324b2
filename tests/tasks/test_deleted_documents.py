"""A document deleted while a job runs, through the session's real worker: a document filter never widens to the
rest of the corpus, and a chunk whose citations point at pages deleted under it hands its questions back at once
instead of leaving them ``running`` until their lease (30 minutes by default) runs out."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli as cli
from conftest import wait_for
from sqlalchemy import select, text

from db import corpus as corpus_db
from db.corpus import DOCUMENT_DELETED
from db.engine import session_scope
from db.schema import Answer, Citation, Job, Page, Question
from pageqa.domain import JobStatus, QuestionStatus

pytestmark = pytest.mark.models


def _corpus(name: str, sample_docs, settings) -> dict[str, int]:
    cli("ingest", str(sample_docs["root"]), "--corpus", name)
    with session_scope(settings) as session:
        corpus_id = corpus_db.get_corpus(session, name=name).id
        return {n: d.id for n, d in corpus_db.documents_by_name(session, corpus_id=corpus_id).items()}


def _submit(tmp_path, corpus: str, rows: list[dict], *options: str) -> str:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return cli("submit", str(path), "--corpus", corpus, *options).stdout.strip().splitlines()[-1]


def _questions(settings, job_id: str) -> list[Question]:
    with session_scope(settings) as session:
        return list(session.scalars(select(Question).where(Question.job_id == job_id)))


def _ended(settings, job_id: str) -> Job | None:
    with session_scope(settings) as session:
        job = session.get(Job, job_id)
        return job if job.ended_at is not None else None


def test_questions_restricted_to_a_deleted_document_fail_and_are_never_answered_from_another(
    settings, worker, sample_docs, tmp_path,
):
    docs = _corpus("deletions", sample_docs, settings)
    rows = [{"custom_id": f"q{i}", "question": f"What does the report say about item {i}?",
             "document": "report.pdf"} for i in range(240)]
    job_id = _submit(tmp_path, "deletions", rows, "--chunk-size", "2")
    wait_for(lambda: any(q.status is QuestionStatus.answered for q in _questions(settings, job_id)),
             timeout_s=120, what="the first answer")
    out = cli("delete", "report.pdf", "--corpus", "deletions").stdout
    job = wait_for(lambda: _ended(settings, job_id), timeout_s=120, what="the job to end")

    questions = _questions(settings, job_id)
    failed = [q for q in questions if q.status is QuestionStatus.failed]
    answered = [q for q in questions if q.status is QuestionStatus.answered]
    assert failed, "the delete came while questions were still waiting"
    assert len(failed) + len(answered) == len(rows)
    assert {q.last_error for q in failed} == {DOCUMENT_DELETED}
    assert f"failed {len(failed)} unanswered questions restricted to it" in out
    assert job.status is JobStatus.completed
    with session_scope(settings) as session:
        cited_docs = set(session.scalars(
            select(Page.document_id).join(Citation, Citation.page_id == Page.id)
            .join(Answer, Answer.id == Citation.answer_id).join(Question, Question.id == Answer.question_id)
            .where(Question.job_id == job_id)))
        no_answer = session.scalars(select(Answer.id).where(Answer.question_id.in_([q.id for q in failed]))).all()
    assert no_answer == []
    assert not cited_docs & (set(docs.values()) - {docs["report.pdf"]}), "an answer cited another document"


def test_a_chunk_whose_cited_pages_are_deleted_under_it_hands_its_questions_back_at_once(
    settings, worker, sample_docs, tmp_path,
):
    _corpus("cited-deleted", sample_docs, settings)
    # The race, made certain: the first citation written deletes its page inside the writing transaction, so the
    # foreign key fails exactly as when `pageqa corpora delete` commits between retrieval and the write. A
    # sequence is not rolled back, so it fires once.
    with session_scope(settings) as session:
        session.execute(text("""
            CREATE SEQUENCE test_cited_deleted_seq;
            CREATE FUNCTION test_cited_deleted() RETURNS trigger AS $$
            BEGIN
                IF nextval('test_cited_deleted_seq') = 1 THEN DELETE FROM pages WHERE id = NEW.page_id; END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER test_cited_deleted BEFORE INSERT ON citations
                FOR EACH ROW EXECUTE FUNCTION test_cited_deleted();
        """))
    try:
        log = settings.home_dir / "logs" / "test-worker.log"
        logged = log.read_text().count("cited deleted pages; handing them back")
        rows = [{"custom_id": f"c{i}", "question": f"Which colour is block {i}?"} for i in range(6)]
        job_id = _submit(tmp_path, "cited-deleted", rows)
        job = wait_for(lambda: _ended(settings, job_id), timeout_s=90, what="the job to end (lease: 30 minutes)")
    finally:
        with session_scope(settings) as session:
            session.execute(text("DROP TRIGGER test_cited_deleted ON citations; DROP FUNCTION test_cited_deleted();"
                                 "DROP SEQUENCE test_cited_deleted_seq;"))
    assert job.status is JobStatus.completed
    assert [q.status for q in _questions(settings, job_id)] == [QuestionStatus.answered] * len(rows)
    assert log.read_text().count("cited deleted pages; handing them back") == logged + 1
    with session_scope(settings) as session:
        counts = session.execute(select(Question.attempts).where(Question.job_id == job_id)).scalars().all()
    assert max(counts) == 1, "the hand-back refunds the attempt: the deleted page was not the question's fault"

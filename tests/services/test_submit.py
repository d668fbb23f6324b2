"""Submitting a question file through the real PostgreSQL and Redis, with no worker: rows are streamed into the
database in one transaction, checks that span rows run there, and every question to answer is sent exactly once.

Each test sends its tasks to a queue of its own that no worker reads, reads them back from Redis, and cancels its
job, so nothing here reaches the session's worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path

import psycopg
import pytest
from conftest import run_cli as cli
from conftest import waiting_task_args
from sqlalchemy import func, select

from db import corpus as corpus_db
from db import jobs as jobs_db
from db import lifecycle
from db.engine import session_scope
from db.schema import Job, Question
from pageqa.errors import InputError
from services.ingest.pipeline import ingest_files
from services.jobs import submit_file
from services.question_file import MAX_QUESTION_CHARS

CORPUS = "submit-stream"
ROWS = 20_000


@pytest.fixture(scope="module")
def corpus(settings, services, sample_docs):
    """A corpus holding red.png, so a row may name a document that exists and one that does not."""
    report = ingest_files(settings, corpus=CORPUS, files=[sample_docs["png"]])
    assert report.errors == []
    return CORPUS


def _queue(settings, name: str):
    return settings.model_copy(update={"worker_queue": name})


def _sent(settings, queue: str) -> list[list[int]]:
    """The question ids of each answering task waiting in ``queue``, oldest first; the queue is emptied."""
    return waiting_task_args(settings, queue, "pageqa.answer_chunk", drain=True)


def _questions(settings, job_id: str) -> list[Question]:
    with session_scope(settings) as session:
        return list(session.scalars(select(Question).where(Question.job_id == job_id).order_by(Question.id)))


def _jobs_from(settings, source: str) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(func.count()).select_from(Job).where(Job.source == source))


def _cancel(settings, job_id: str) -> None:
    """Tidy up: a job sent to the real queue must not keep the session worker busy (it may have ended already)."""
    try:
        with session_scope(settings) as session:
            lifecycle.cancel_job(session, job_id=job_id)
    except InputError:  # already answered by the session worker
        pass


def test_a_large_file_is_stored_checked_and_sent_once(settings, corpus, tmp_path):
    # line n asks "Question n?" as custom_id qn, except at the lines below
    bad = {
        5: ("{not json", "invalid JSON (Expecting property name enclosed in double quotes at column 2)"),
        10: ({"custom_id": "q10"}, "question is missing or empty"),
        15: ({"custom_id": "q15", "question": "a\u0000b"}, "question contains a NUL character (U+0000)"),
        20: ({"custom_id": "q\u000020", "question": "c?"}, "custom_id contains a NUL character (U+0000)"),
        25: ({"custom_id": "q25", "question": "x" * (MAX_QUESTION_CHARS + 1)},
             f"question is longer than {MAX_QUESTION_CHARS} characters"),
        30: ({"custom_id": "q3", "question": "Another?"}, "custom_id 'q3' repeats line 3"),
        12_345: (["a", "list"], "each line must be a JSON object"),
        17_000: ({"custom_id": "q7", "question": "Question 7?"}, "custom_id 'q7' repeats line 7"),
        19_999: ({"custom_id": "q19999", "question": "Where?", "document": "missing.pdf"},
                 f"document 'missing.pdf' is not in corpus '{CORPUS}'"),
    }
    records: dict[int, object] = {n: {"custom_id": f"q{n}", "question": f"Question {n}?"} for n in range(1, ROWS + 1)}
    red, doc = "What is in the red picture?", {"document": "red.png"}
    records[40] = {"custom_id": "q40", "question": red}
    records[41] = {"custom_id": "q41", "question": red, **doc}
    # repeated questions (line: the earlier line it repeats): the same normalised text and document filter
    repeats = {1000: 40, 2000: 40, 3000: 41, 18_000: 17_999}
    records[1000] = {"custom_id": "q1000", "question": "  WHAT is in   the RED picture "}
    records[2000] = {"custom_id": "q2000", "question": "what is in the red picture???"}
    records[3000] = {"custom_id": "q3000", "question": red.upper(), **doc}
    records[18_000] = {"custom_id": "q18000", "question": "question 17999"}
    records.update({line: record for line, (record, _) in bad.items()})
    path = tmp_path / "large.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records.values()))

    queued = _queue(settings, "submit-large-test")
    result = submit_file(queued, path=path, corpus=corpus, options={"chunk_size": 16})
    try:
        assert result.errors == [f"{path}:{line}: {message}" for line, (_, message) in sorted(bad.items())]
        assert result.n_errors == len(bad) and result.errors_omitted == 0
        assert result.total == ROWS - len(bad) and result.duplicates == len(repeats)

        questions = _questions(settings, result.job_id)
        by_line = {q.line_number: q for q in questions}
        assert len(questions) == result.total and sorted(by_line) == sorted(set(records) - set(bad))
        assert [q.line_number for q in questions] == sorted(by_line), "ids increase in file order"
        assert by_line[3].question == "Question 3?" and by_line[7].question == "Question 7?", "the first kept"
        for line, source in repeats.items():
            assert by_line[line].duplicate_of == by_line[source].id, line
        assert by_line[41].duplicate_of is None, "another document filter is another question"
        assert by_line[41].document_id is not None and by_line[40].document_id is None
        assert sum(q.duplicate_of is not None for q in questions) == len(repeats)
        with session_scope(settings) as session:
            assert session.get(Job, result.job_id).total == result.total

        tasks = _sent(settings, "submit-large-test")
        sent = [qid for task in tasks for qid in task]
        assert sent == [q.id for q in questions if q.duplicate_of is None], "each question to answer, once, in order"
        assert all(len(t) == 16 for t in tasks[:-1]) and 1 <= len(tasks[-1]) <= 16
    finally:
        _cancel(settings, result.job_id)


def test_strict_refuses_the_file_after_reading_it_all_and_stores_no_question(settings, corpus, tmp_path):
    path = tmp_path / "strict-repeat.csv"
    rows = [f"s{n},Question {n}?" for n in range(1, 3001)] + ["s2,repeated id"]
    path.write_text("custom_id,question\n" + "\n".join(rows) + "\n", encoding="utf-8")
    queued = _queue(settings, "submit-strict-test")
    with pytest.raises(InputError) as refused:
        submit_file(queued, path=path, corpus=corpus, options={}, strict=True)
    assert str(refused.value) == f"1 invalid rows (--strict); first: {path}:3002: custom_id 's2' repeats line 3"
    assert _sent(settings, "submit-strict-test") == []
    with session_scope(settings) as session:  # the job stays, failed, with the errors a user polls for
        job = session.scalars(select(Job).where(Job.source == path.name)).one()
        assert job.status.value == "failed" and job.failed_at is not None and job.total == 0
        assert job.errors == [{"line": 3002, "code": "duplicate_custom_id", "message": "custom_id 's2' repeats line 3"}]
        assert session.scalar(select(func.count()).select_from(Question).where(Question.job_id == job.id)) == 0


def test_a_load_that_fails_midway_stores_nothing(settings, corpus):
    """The reader refuses NUL, so here it reaches the database directly: PostgreSQL rejects row 15,000 of the COPY,
    and the job row and the 14,999 rows before it are rolled back with it."""
    def rows():
        for n in range(1, 20_001):
            yield jobs_db.NewQuestion(f"m{n}", "nul \u0000 inside" if n == 15_000 else f"Question {n}?", None, n)

    with pytest.raises(psycopg.DataError, match="0x00"), session_scope(settings) as session:
        c = corpus_db.get_corpus(session, name=corpus)
        job = jobs_db.open_job(session, corpus_id=c.id, source="fails-midway", options={})
        jobs_db.store_questions(session, job_id=job.id, questions=rows())
    assert _jobs_from(settings, "fails-midway") == 0
    with session_scope(settings) as session:
        assert session.scalar(select(func.count()).select_from(Question).where(Question.custom_id == "m14999")) == 0


def test_the_cli_lists_the_first_thousand_errors_and_counts_the_rest(settings, corpus, tmp_path):
    path = tmp_path / "many-bad.jsonl"
    lines = [json.dumps({"custom_id": "[/red]", "question": "Anything red?"}), json.dumps({"custom_id": "[/red]", "question": "again?"})]
    path.write_text("\n".join(lines) + "\n" + "{bad\n" * 1200)  # a custom_id that reads as rich markup
    result = cli("submit", str(path), "--corpus", corpus)
    job_id = result.stdout.strip().splitlines()[-1]
    try:
        skipped = [line for line in result.stderr.splitlines() if line.startswith(f"skipped {path}:")]
        assert len(skipped) == 1000
        assert skipped[:2] == [f"skipped {path}:2: custom_id '[/red]' repeats line 1",
                               f"skipped {path}:3: invalid JSON (Expecting property name enclosed in double quotes at column 2)"]
        assert skipped[98] == f"skipped {path}:100: invalid JSON (Expecting property name enclosed in double quotes at column 2)"
        assert skipped[-1].startswith(f"skipped {path}:1001: ")
        assert "skipped 201 more rows were left out (only the first 1000 errors are listed)" in result.stderr
        assert "1 questions queued" in result.stderr
    finally:
        _cancel(settings, job_id)


def test_a_higher_priority_job_is_taken_first(settings, corpus, tmp_path):
    queued = _queue(settings, "submit-priority-test")
    ids = {}
    for name, priority in (("low", 0), ("default", None), ("high", 9)):
        path = tmp_path / f"{name}.csv"
        path.write_text("custom_id,question\n" + "".join(f"{name}{n},{name} question {n}?\n" for n in range(3)))
        options = {"chunk_size": 1} | ({"priority": priority} if priority is not None else {})
        ids[name] = submit_file(queued, path=path, corpus=corpus, options=options).job_id
    sent = [qid for task in _sent(settings, "submit-priority-test") for qid in task]  # in the order a worker takes them
    owners = []
    with session_scope(settings) as session:
        for qid in sent:
            owners.append(session.get(Question, qid).job_id)
    order = [next(name for name, job in ids.items() if job == owner) for owner in owners]
    assert order == ["high"] * 3 + ["default"] * 3 + ["low"] * 3, "submitted low first, taken high first"
    for job_id in ids.values():
        _cancel(settings, job_id)


def _all_jobs(settings) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(func.count()).select_from(Job))


@pytest.mark.timeout(60)  # before the fix the FIFO and /dev/zero hung the submit: fail, do not hang the suite
def test_a_question_file_that_never_ends_is_refused_before_any_job_is_stored(settings, corpus, tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)

    def feed() -> None:  # a writer that never stops, should anything open the FIFO to read it
        with contextlib.suppress(OSError), fifo.open("w") as out:
            while True:
                out.write(json.dumps({"custom_id": "x", "question": "again?"}) + "\n")

    threading.Thread(target=feed, daemon=True).start()
    zero = tmp_path / "zero.jsonl"
    zero.symlink_to("/dev/zero")
    before = _all_jobs(settings)
    for path in (fifo, zero, Path("/dev/zero")):
        refused = cli("submit", str(path), "--corpus", corpus, ok=False)
        assert refused.exit_code == 1
        assert refused.output == (f"error: {path}: not a regular file (a device or a pipe): a question file is read "
                                  "to its end\n")
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"custom_id": "q1", "question": "Big?"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as too_big:  # the cap of an upload, PAGEQA_MAX_UPLOAD_BYTES
        submit_file(settings.model_copy(update={"max_upload_bytes": 10}), path=big, corpus=corpus)
    assert str(too_big.value) == f"{big}: the question file is larger than 10 bytes (9.537e-06 MiB, PAGEQA_MAX_UPLOAD_BYTES)"
    assert _all_jobs(settings) == before, "no job row may be stored for a refused file"
    os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # lets the writer open, and fail on a pipe no one reads

"""Data access for jobs and their questions: opening a job, storing its question file, reading jobs and their
counts. Postgres is the source of truth for every state. The answers written to these questions are
:mod:`db.answers`."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from db.schema import Job, Question
from pageqa.domain import JobStatus, QuestionStatus
from pageqa.errors import NotFoundError


@dataclass(frozen=True)
class NewQuestion:
    """A parsed question-file row: ``custom_id``, text, optional document id filter, 1-based file line."""

    custom_id: str
    question: str
    document_id: int | None
    line_number: int


def normalize_question(question: str) -> str:
    """The form under which two questions count as the same: Unicode NFKC, case-folded, runs of whitespace made
    one space, surrounding whitespace and trailing ``?`` dropped."""
    return " ".join(unicodedata.normalize("NFKC", question).casefold().split()).rstrip("? ")


def question_key(question: str) -> bytes:
    """sha256 (32 bytes) of :func:`normalize_question`: equal keys, the same question. The normal form is
    Python's (NFKC, ``str.casefold``), so it is computed here, not in SQL, and compared in SQL."""
    return hashlib.sha256(normalize_question(question).encode("utf-8")).digest()


@dataclass(frozen=True)
class RepeatedId:
    """A row left out because its ``custom_id`` was on an earlier line (``first_line``) of the same job."""

    line_number: int
    custom_id: str
    first_line: int


@dataclass(frozen=True)
class StoredJob:
    """What :func:`store_questions` stored: the job id, questions stored, in-job duplicates among them (not to be
    enqueued), and the rows left out for a repeated ``custom_id``: the first ``keep_repeats`` of them, in line
    order, and how many there were."""

    id: str
    total: int
    duplicates: int
    repeated: list[RepeatedId]
    n_repeated: int


_STAGE = "pageqa_staged_questions"

# One statement: the first row of each custom_id is kept; ids are drawn in file order (nextval runs after the
# sort), so the first of each (norm_key, document_id) group has the smallest id and the others point at it. The
# self-referencing foreign key is checked at the end of the statement, after every row is in.
_INSERT_STAGED = text(f"""
WITH kept AS (
    SELECT seq, line_number, custom_id, question, document_id, norm_key
    FROM (SELECT s.*, row_number() OVER (PARTITION BY custom_id ORDER BY seq) AS n FROM {_STAGE} s) ranked
    WHERE n = 1
),
numbered AS (
    SELECT kept.*, nextval(CAST(:id_seq AS regclass)) AS id FROM kept ORDER BY seq
)
INSERT INTO questions (id, job_id, custom_id, question, document_id, line_number, status, attempts, duplicate_of)
SELECT id, :job_id, custom_id, question, document_id, line_number, 'queued', 0,
       NULLIF(first_value(id) OVER (PARTITION BY norm_key, document_id ORDER BY seq), id)
FROM numbered
ORDER BY seq
""")

_REPEATED = text(f"""
SELECT line_number, custom_id, first_line, count(*) OVER () AS n_repeated
FROM (SELECT seq, line_number, custom_id, row_number() OVER w AS n, first_value(line_number) OVER w AS first_line
      FROM {_STAGE} WINDOW w AS (PARTITION BY custom_id ORDER BY seq)) ranked
WHERE n > 1
ORDER BY seq
LIMIT :keep
""")


def open_job(
    session: Session, *, corpus_id: int, source: str, options: dict, tenant: str = "default",
    completion_window_s: float = 86_400.0,
) -> Job:
    """Create a job in ``validating`` (no question yet), due to expire ``completion_window_s`` seconds from now;
    the caller commits it so the id can be returned before the file is read (:func:`store_questions`)."""
    job = Job(
        id=f"job_{uuid.uuid4().hex[:24]}", corpus_id=corpus_id, source=source, options=options, total=0,
        status=JobStatus.validating, tenant=tenant,
        expires_at=func.now() + dt.timedelta(seconds=completion_window_s),
    )
    session.add(job)
    session.flush()
    session.refresh(job)
    return job


def store_questions(
    session: Session, *, job_id: str, questions: Iterable[NewQuestion], keep_repeats: int = 1000,
) -> StoredJob:
    """Store the questions of a ``validating`` job (status ``queued``) in the caller's transaction and move the job
    to ``in_progress``; the caller enqueues only after it commits.

    ``questions`` is consumed once, as a stream: rows go to a temporary table by binary ``COPY`` and every check
    that spans rows runs in PostgreSQL afterwards, so this process holds no structure that grows with the file.

    - A ``custom_id`` already used on an earlier row is left out; the first one is kept (see ``StoredJob.repeated``).
    - A question whose normalised text (:func:`question_key`) and document filter repeat an earlier one gets
      ``duplicate_of`` that one: it is not enqueued and receives a copy of its answer.

    Question ids increase in file order. Text with NUL or lone surrogates cannot be stored (PostgreSQL raises);
    the question-file reader refuses such rows first.
    """
    conn = session.connection()
    conn.execute(text(
        f"CREATE TEMPORARY TABLE {_STAGE} (seq integer, line_number integer, custom_id text, question text, "
        "document_id integer, norm_key bytea) ON COMMIT DROP"
    ))
    _copy_staged(conn.connection.driver_connection, questions)
    id_seq = conn.scalar(text("SELECT pg_get_serial_sequence('questions', 'id')"))
    total = conn.execute(_INSERT_STAGED, {"id_seq": id_seq, "job_id": job_id}).rowcount
    rows = conn.execute(_REPEATED, {"keep": keep_repeats}).all()
    repeated = [RepeatedId(line, cid, first) for line, cid, first, _ in rows]
    conn.execute(text(f"DROP TABLE {_STAGE}"))  # a second job in the same transaction stages again
    duplicates = session.scalar(select(func.count()).where(
        Question.job_id == job_id, Question.duplicate_of.is_not(None)))
    session.execute(update(Job).where(Job.id == job_id).values(
        total=total, status=JobStatus.in_progress, in_progress_at=func.now()))
    return StoredJob(job_id, total, duplicates, repeated, rows[0].n_repeated if rows else 0)


def _copy_staged(driver_connection, questions: Iterable[NewQuestion]) -> None:
    """Stream ``questions`` into the staging table with binary COPY, in the session's transaction (psycopg sends
    the rows in buffers of its own size, so memory does not grow with the count)."""
    columns = "seq, line_number, custom_id, question, document_id, norm_key"
    with driver_connection.cursor() as cur, cur.copy(f"COPY {_STAGE} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "int4", "text", "text", "int4", "bytea"])
        for seq, q in enumerate(questions):
            copy.write_row((seq, q.line_number, q.custom_id, q.question, q.document_id, question_key(q.question)))


#: Every job id :func:`open_job` makes; anything else names no job (and never reaches PostgreSQL, which refuses
#: some strings outright: a NUL character).
JOB_ID = re.compile(r"job_[0-9a-f]{24}")


def get_job(session: Session, *, job_id: str, tenant: str | None = None) -> Job:
    """The job with this id; with ``tenant``, only if that tenant submitted it (another tenant's job is not found,
    so ids cannot be probed).

    Raises:
        NotFoundError: no such job.
    """
    job = session.get(Job, job_id) if JOB_ID.fullmatch(job_id) else None
    if job is None or (tenant is not None and job.tenant != tenant):
        raise NotFoundError(f"no job {job_id!r}")
    return job


def lock_job(session: Session, *, job_id: str) -> Job | None:
    """The job with this id, its row locked until the transaction ends (a cancel waits for a validation that
    holds it), or None."""
    return session.scalar(select(Job).where(Job.id == job_id).with_for_update())


def held_by(workers: Iterable[str | None]):
    """The SQL condition "``running`` under the lease of one of ``workers``" (``hostname:pid``). Only the holder of
    a question's lease may write its outcome: a worker cut off from the database long enough for its lease to
    expire finds, when it is back, that the reconciler gave its questions to another worker or queued them again,
    and writes nothing. An expired lease the reconciler has not taken yet is still held (nobody else has it)."""
    return (Question.status == QuestionStatus.running) & Question.worker.in_(list(workers))


def iter_question_ids(
    session: Session, *, job_id: str, status: QuestionStatus | None = None, to_enqueue: bool = False,
    batch: int = 10_000,
) -> Iterator[int]:
    """Ids of the job's questions (optionally of one status) in file order; ``to_enqueue``: only those the
    workers must answer (in-job duplicates receive their copy without a task).

    A stream: a server-side cursor fetches ``batch`` ids at a time, so a job of a million questions is never one
    list. Consume it inside the session's transaction."""
    stmt = select(Question.id).where(Question.job_id == job_id).order_by(Question.line_number, Question.id)
    if status is not None:
        stmt = stmt.where(Question.status == status)
    if to_enqueue:
        stmt = stmt.where(Question.duplicate_of.is_(None))
    yield from session.scalars(stmt.execution_options(yield_per=batch))


def status_counts(session: Session, *, job_id: str) -> dict[str, int]:
    """Questions of the job per status, every status present (zeros included)."""
    counts = {s.value: 0 for s in QuestionStatus}
    stmt = select(Question.status, func.count()).where(Question.job_id == job_id).group_by(Question.status)
    for status, n in session.execute(stmt):
        counts[status.value] = n
    return counts


def request_counts(counts: dict[str, int]) -> dict[str, int]:
    """A job's ``request_counts`` from its per-status question counts (:func:`status_counts`): ``total``, then
    ``completed`` (answered), ``failed``, ``expired``, ``cancelled``, and the questions not ended yet, ``queued``
    and ``running``; every question is in exactly one of these, so they sum to ``total``."""
    out = {"completed": counts["answered"]}
    out.update({k: counts[k] for k in ("failed", "expired", "cancelled", "queued", "running")})
    return {"total": sum(out.values()), **out}


def list_jobs(
    session: Session, *, tenant: str | None, status: JobStatus | None = None, limit: int = 20,
    after: str | None = None,
) -> tuple[list[Job], bool]:
    """A page of jobs, newest first, and whether more follow: the tenant's only (``None``: every tenant's),
    optionally of one ``status``, starting after the job ``after`` (a cursor: the last id of the previous page).

    Raises:
        NotFoundError: ``after`` is not a job of the tenant.
    """
    stmt = select(Job)
    if tenant is not None:
        stmt = stmt.where(Job.tenant == tenant)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if after is not None:
        cursor = None
        if JOB_ID.fullmatch(after):
            cursor = session.scalar(select(Job).where(Job.id == after, *([Job.tenant == tenant] if tenant else [])))
        if cursor is None:
            raise NotFoundError(f"no job {after!r} to list after")
        stmt = stmt.where((Job.created_at < cursor.created_at)
                          | ((Job.created_at == cursor.created_at) & (Job.id < cursor.id)))
    rows = list(session.scalars(stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def elapsed_s(job: Job, *, now: dt.datetime | None = None) -> float:
    """Seconds from the job's creation to its end (or to ``now`` while it runs)."""
    end = job.ended_at or now or dt.datetime.now(dt.UTC)
    return (end - job.created_at).total_seconds()


def recent_question_texts(session: Session, *, corpus_id: int, tenant: str, limit: int) -> list[str]:
    """Up to ``limit`` distinct question texts of the tenant's jobs on the corpus, newest first (by job, then by
    question); read as a stream, so only the texts kept are held."""
    stmt = (
        select(Question.question).join(Job, Job.id == Question.job_id)
        .where(Job.corpus_id == corpus_id, Job.tenant == tenant)
        .order_by(Job.created_at.desc(), Question.id.desc())
    )
    texts: dict[str, None] = {}
    for text_ in session.scalars(stmt.execution_options(yield_per=1000)):
        texts.setdefault(text_)
        if len(texts) >= limit:
            break
    return list(texts)

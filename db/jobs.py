"""Data access for jobs, questions, answers and citations. Postgres is the source of truth for every state."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.orm import Session

from db.schema import (
    Answer,
    ChunkRun,
    Citation,
    Job,
    JobStatus,
    LaneHit,
    Question,
    QuestionStatus,
)
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


def create_job(
    session: Session, *, corpus_id: int, source: str, options: dict, questions: Iterable[NewQuestion],
    tenant: str = "default", keep_repeats: int = 1000, completion_window_s: float = 86_400.0,
) -> StoredJob:
    """:func:`open_job` and :func:`store_questions` in the caller's transaction: the job is ``in_progress`` when
    it commits."""
    job = open_job(session, corpus_id=corpus_id, source=source, options=options, tenant=tenant,
                   completion_window_s=completion_window_s)
    return store_questions(session, job_id=job.id, questions=questions, keep_repeats=keep_repeats)


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


def question_ids(
    session: Session, *, job_id: str, status: QuestionStatus | None = None, to_enqueue: bool = False
) -> list[int]:
    """Ids of the job's questions (optionally of one status) in file order; ``to_enqueue``: only those the
    workers must answer (in-job duplicates receive their copy without a task)."""
    return list(iter_question_ids(session, job_id=job_id, status=status, to_enqueue=to_enqueue))


def iter_question_ids(
    session: Session, *, job_id: str, status: QuestionStatus | None = None, to_enqueue: bool = False,
    batch: int = 10_000,
) -> Iterator[int]:
    """:func:`question_ids` as a stream: a server-side cursor fetches ``batch`` ids at a time, so a job of a
    million questions is never one list. Consume it inside the session's transaction."""
    stmt = select(Question.id).where(Question.job_id == job_id).order_by(Question.line_number, Question.id)
    if status is not None:
        stmt = stmt.where(Question.status == status)
    if to_enqueue:
        stmt = stmt.where(Question.duplicate_of.is_(None))
    yield from session.scalars(stmt.execution_options(yield_per=batch))


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
    lane_hits: dict[str, Sequence[tuple[int, float]]] = field(default_factory=dict)
    dedup_key: str | None = None


def record_answer(session: Session, *, new: NewAnswer) -> bool:
    """Write an answer, its citations and the ``answered`` state in the caller's transaction, with copies for the
    question's in-job duplicates (``reused_from`` this question).

    Idempotent: a question that already has an answer keeps it (unique ``question_id``); returns False then. So
    does a question that ended meanwhile (its job expired while the models ran): its state stays as it is.
    """
    state = session.scalar(select(Question.status).where(Question.id == new.question_id).with_for_update())
    if state not in (QuestionStatus.running, QuestionStatus.queued):
        return False
    values = {k: getattr(new, k) for k in (
        "question_id", "answer", "retriever_model", "reranker_model", "generator_model",
        "retrieve_ms", "rerank_ms", "generate_ms", "kind", "evidence_page_id",
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
                         evidence_page_id, retrieve_ms, rerank_ms, generate_ms, reused_from)
    SELECT t.id, src.answer, src.retriever_model, src.reranker_model, src.generator_model, src.kind,
           src.evidence_page_id, 0, 0, 0, COALESCE(src.reused_from, src.question_id)
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


def copy_answer(session: Session, *, source_question_id: int, question_ids: Sequence[int]) -> list[int]:
    """Give each of ``question_ids`` a copy of the source question's answer, citations and lane rankings, marked
    ``answered``, with ``reused_from`` naming the question whose answer the models made (stage timings 0 ms: no
    model ran). The in-job duplicates of ``question_ids`` get one too. Questions that already have an answer keep
    it, and questions that ended meanwhile (expired, cancelled) stay as they are. Returns the questions that got a
    copy."""
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


def record_chunk_run(session: Session, **values) -> None:
    """Store one answering task's instrumentation (see :class:`db.schema.ChunkRun` for the fields and units)."""
    session.execute(insert(ChunkRun).values(**values))


def reuse_sources(session: Session, *, question_ids: Sequence[int]) -> dict[int, dict]:
    """Per question id, the ``{"job_id", "custom_id"}`` an answer was reused from (for result files)."""
    if not question_ids:
        return {}
    stmt = select(Question.id, Question.job_id, Question.custom_id).where(Question.id.in_(set(question_ids)))
    return {qid: {"job_id": job_id, "custom_id": custom_id} for qid, job_id, custom_id in session.execute(stmt)}


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


def latest_jobs(session: Session, *, limit: int = 20) -> list[Job]:
    """The most recently created jobs, newest first."""
    return list(session.scalars(select(Job).order_by(Job.created_at.desc()).limit(limit)))


def answered_questions(session: Session, *, job_id: str) -> list[tuple[Question, Answer | None]]:
    """Every question of the job in file order with its answer (None when not answered)."""
    stmt = (
        select(Question, Answer)
        .outerjoin(Answer, Answer.question_id == Question.id)
        .where(Question.job_id == job_id)
        .order_by(Question.line_number, Question.id)
    )
    return [(q, a) for q, a in session.execute(stmt)]


def elapsed_s(job: Job, *, now: dt.datetime | None = None) -> float:
    """Seconds from the job's creation to its end (or to ``now`` while it runs)."""
    end = job.ended_at or now or dt.datetime.now(dt.UTC)
    return (end - job.created_at).total_seconds()




def lane_rankings(session: Session, *, job_id: str) -> dict[str, dict[str, list[int]]]:
    """Per ``custom_id``, each lane's ranked list of 1-based page numbers (``fused`` included)."""
    from db.schema import Page

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

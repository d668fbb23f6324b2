"""The figures of one day's nightly report, read from PostgreSQL: one query per figure, every scope at once.

A day is ``[start, end)``: 00:00 to 24:00 local time in the report time zone (``services.report.figures.DayWindow``;
23 or 25 hours on a daylight saving change). Which timestamp puts a row in the day:

- a job is *submitted* on the day of ``jobs.created_at``, *completed*, *failed*, *cancelled* or *expired* on the day
  of that state's stamp (``completed_at`` … ``expired_at``);
- a question is *answered* on the day of its ``answers.created_at`` (reused copies included), *failed* on the day
  of ``questions.updated_at`` for a question whose status is ``failed`` (the last write of a failed question is
  the one that failed it);
- a chunk run (throughput, queue wait, chunk errors) counts on the day of ``chunk_runs.created_at`` (written when
  the chunk ended);
- latency and confidence use the model-made answers of the day (``reused_from IS NULL``: a reused copy ran no
  model and has 0 ms); the most-cited documents and pages count every citation of every answer of the day;
- a document is ingested on the day of ``documents.created_at``; its pages with it (pages have no stamp of their own).

Every figure is given per tenant (``jobs.tenant``, for documents ``corpora.tenant``) and for ``ALL_TENANTS`` tenants;
the overall percentiles are computed over all rows, not from the tenants' (``GROUPING SETS``). ``start`` and ``end``
are aware datetimes; every duration is in milliseconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from sqlalchemy import Row, text
from sqlalchemy.orm import Session

from pageqa.domain import ALL_TENANTS, FINAL_JOB_STATES, NOT_ANSWERABLE_PATTERN


def in_day(column: str) -> str:
    """SQL condition: timestamp ``column`` falls in the day (binds ``:start`` and ``:end``)."""
    return f"({column} >= :start AND {column} < :end)"


def scope_of(grouped: int, tenant: str | None) -> str:
    """The scope of a ``GROUPING SETS`` row: ``ALL_TENANTS`` for the row over every tenant (``grouping(tenant)``
    is 1), else its tenant."""
    return ALL_TENANTS if grouped else tenant


def fetch(session: Session, sql: str, params: dict) -> list[Row]:
    """Every row of the SQL text ``sql`` run with ``params``."""
    return session.execute(text(sql), params).all()


#: The final job states, each counted on the day of its ``<state>_at`` stamp.
STAMPS = tuple(s.value for s in FINAL_JOB_STATES)
_JOBS = f"""
SELECT grouping(tenant) AS g, tenant,
       count(*) FILTER (WHERE {in_day('created_at')}) AS submitted,
       {', '.join(f"count(*) FILTER (WHERE {in_day(s + '_at')}) AS {s}" for s in STAMPS)}
FROM jobs
WHERE {' OR '.join(in_day(c) for c in ('created_at', *(s + '_at' for s in STAMPS)))}
GROUP BY GROUPING SETS ((tenant), ())
"""


def job_counts(session: Session, *, start: dt.datetime, end: dt.datetime) -> dict[str, dict[str, int]]:
    """Per scope: jobs ``submitted`` (``created_at``) and ``completed``, ``failed``, ``cancelled``, ``expired``
    (each by its state's stamp) on the day."""
    return {scope_of(r.g, r.tenant): {k: getattr(r, k) for k in ("submitted", *STAMPS)}
            for r in fetch(session, _JOBS, {"start": start, "end": end})}


#: Joins an answer ``a`` to its question ``q`` and job ``j``.
OF_JOB = "JOIN questions q ON q.id = a.question_id JOIN jobs j ON j.id = q.job_id"
# The one rule of pageqa.domain.is_not_answerable, as PostgreSQL reads it (a POSIX regular expression, ~*).
IS_NOT_ANSWERABLE = f"a.answer ~* '{NOT_ANSWERABLE_PATTERN}'"
_ANSWERED = f"""
SELECT grouping(j.tenant) AS g, j.tenant, count(*) AS answered,
       count(*) FILTER (WHERE a.reused_from IS NULL) AS answered_by_models,
       count(*) FILTER (WHERE a.reused_from IS NOT NULL) AS reused,
       count(*) FILTER (WHERE {IS_NOT_ANSWERABLE}) AS not_answerable
FROM answers a {OF_JOB}
WHERE {in_day('a.created_at')}
GROUP BY GROUPING SETS ((j.tenant), ())
"""
_FAILED = f"""
SELECT grouping(j.tenant) AS g, j.tenant, count(*) AS failed
FROM questions q JOIN jobs j ON j.id = q.job_id
WHERE q.status = 'failed' AND {in_day('q.updated_at')}
GROUP BY GROUPING SETS ((j.tenant), ())
"""


def question_counts(session: Session, *, start: dt.datetime, end: dt.datetime) -> dict[str, dict[str, int]]:
    """Per scope: questions ``answered`` on the day (``answered_by_models`` + ``reused``), ``not_answerable``
    among them, and ``failed``."""
    zero = {"answered": 0, "answered_by_models": 0, "reused": 0, "not_answerable": 0, "failed": 0}
    out: dict[str, dict[str, int]] = {}
    for r in fetch(session, _ANSWERED, {"start": start, "end": end}):
        out.setdefault(scope_of(r.g, r.tenant), dict(zero)).update(
            {k: getattr(r, k) for k in ("answered", "answered_by_models", "reused", "not_answerable")})
    for r in fetch(session, _FAILED, {"start": start, "end": end}):
        out.setdefault(scope_of(r.g, r.tenant), dict(zero))["failed"] = r.failed
    return out


_CHUNKS = f"""
SELECT grouping(j.tenant) AS gt, grouping(c.worker) AS gw, j.tenant, c.worker, min(c.device) AS device,
       count(*) AS chunks, count(*) FILTER (WHERE c.error IS NOT NULL) AS failed_chunks,
       sum(c.n_questions) AS questions, sum(c.n_reused) AS reused, sum(c.total_ms) AS busy_ms,
       count(c.queue_wait_ms) AS n_wait,
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY c.queue_wait_ms) AS wait
FROM chunk_runs c JOIN jobs j ON j.id = c.job_id
WHERE {in_day('c.created_at')}
GROUP BY GROUPING SETS ((j.tenant, c.worker), (c.worker), (j.tenant), ())
ORDER BY c.worker
"""


def workers(session: Session, *, start: dt.datetime, end: dt.datetime) -> dict[str, dict]:
    """Per scope, from the chunk runs of the day: per worker (``hostname:pid``) its device, ``chunks``,
    ``failed_chunks``, ``questions`` carried (``n_questions``), ``reused``, ``busy_ms`` (sum of ``total_ms``),
    ``questions_per_hour`` (questions per busy hour, i.e. per GPU-hour on a GPU worker) and queue wait p50/p95;
    and the scope's ``queue_wait_ms`` (``n``, ``p50``, ``p95``; enqueue to start of the chunk, milliseconds)."""
    out: dict[str, dict] = {}
    for r in fetch(session, _CHUNKS, {"start": start, "end": end}):
        scope = out.setdefault(scope_of(r.gt, r.tenant), {"workers": [], "queue_wait_ms": None})
        wait = {"n": r.n_wait, "p50": r.wait[0] if r.wait else None, "p95": r.wait[1] if r.wait else None}
        if r.gw:
            scope["queue_wait_ms"] = wait
            continue
        hours = r.busy_ms / 3_600_000
        scope["workers"].append({
            "worker": r.worker, "device": r.device, "chunks": r.chunks, "failed_chunks": r.failed_chunks,
            "questions": r.questions, "reused": r.reused, "busy_ms": r.busy_ms,
            "questions_per_hour": r.questions / hours if hours > 0 else None,
            "queue_wait_p50_ms": wait["p50"], "queue_wait_p95_ms": wait["p95"],
        })
    return out


STAGES = ("retrieve", "rerank", "generate")
_MODEL_MADE = f"FROM answers a {OF_JOB} WHERE {in_day('a.created_at')} AND a.reused_from IS NULL"
_LATENCY = f"""
SELECT grouping(j.tenant) AS g, j.tenant, count(*) AS n,
       {', '.join(f'percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY a.{s}_ms) AS {s}' for s in STAGES)}
{_MODEL_MADE}
GROUP BY GROUPING SETS ((j.tenant), ())
"""
_HOURLY = f"""
SELECT grouping(tenant) AS g, tenant, hour, count(*) AS n,
       {', '.join(f'percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY {s}_ms) AS {s}' for s in STAGES)}
FROM (SELECT j.tenant, floor(extract(epoch FROM a.created_at - :start) / 3600)::int AS hour,
             a.retrieve_ms, a.rerank_ms, a.generate_ms {_MODEL_MADE}) s
GROUP BY GROUPING SETS ((tenant, hour), (hour))
ORDER BY hour
"""


def latency(session: Session, *, start: dt.datetime, end: dt.datetime) -> dict[str, dict]:
    """Per scope, over the model-made answers of the day: ``n`` and per stage (retrieve, rerank, generate)
    ``p50``, ``p95``, ``p99`` in milliseconds (``percentile_cont``: linear interpolation between ranks)."""
    return {scope_of(r.g, r.tenant): {"n": r.n, **{s: dict(zip(("p50", "p95", "p99"), getattr(r, s) or (None,) * 3,
                                                             strict=True)) for s in STAGES}}
            for r in fetch(session, _LATENCY, {"start": start, "end": end})}


def latency_hourly(session: Session, *, start: dt.datetime, end: dt.datetime) -> dict[str, list[dict]]:
    """Per scope, per hour of the day that has answers (``hour``: whole hours since local midnight, so a daylight
    saving day has 23 or 25), ``n`` and ``<stage>_p50`` / ``<stage>_p95`` in milliseconds."""
    out: dict[str, list[dict]] = {}
    for r in fetch(session, _HOURLY, {"start": start, "end": end}):
        row = {"hour": r.hour, "n": r.n}
        for s in STAGES:
            row[f"{s}_p50"], row[f"{s}_p95"] = getattr(r, s)
        out.setdefault(scope_of(r.g, r.tenant), []).append(row)
    return out



_ERRORS = f"""
SELECT j.tenant, 'question' AS source, q.last_error AS message, q.job_id, q.custom_id, q.updated_at AS at, q.id
FROM questions q JOIN jobs j ON j.id = q.job_id
WHERE q.status = 'failed' AND {in_day('q.updated_at')}
UNION ALL
SELECT j.tenant, 'chunk', c.error, c.job_id, NULL, c.created_at, c.id
FROM chunk_runs c JOIN jobs j ON j.id = c.job_id
WHERE c.error IS NOT NULL AND {in_day('c.created_at')}
ORDER BY at, id
"""


def failures(session: Session, *, start: dt.datetime, end: dt.datetime) -> Iterator[Row]:
    """The errors of the day, oldest first, read in batches of 2,000 rows: questions failed on the day
    (``source`` ``question``, their ``last_error`` as ``message``, ``custom_id``) and chunk runs of the day that
    recorded an error (``source`` ``chunk``, ``custom_id`` None); each with its ``tenant`` and ``job_id``. Iterate
    while the session is open."""
    stmt = text(_ERRORS).execution_options(yield_per=2000)
    yield from session.execute(stmt, {"start": start, "end": end})

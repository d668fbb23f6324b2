"""The figures of one day's nightly report, read from PostgreSQL, and the reports stored in the ``reports`` table.

A day is ``[00:00, 24:00)`` local time in the report time zone (:class:`DayWindow`; 23 or 25 hours on a daylight
saving change). Which timestamp puts a row in the day:

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
the overall percentiles are computed over all rows, not from the tenants' (``GROUPING SETS``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.schema import Page, Report
from pageqa.domain import ALL_TENANTS, FINAL_JOB_STATES, NOT_ANSWERABLE_PATTERN
from pageqa.errors import NotFoundError

#: Bins of the top-rerank-score histogram.
BINS = 10


@dataclass(frozen=True)
class DayWindow:
    """One calendar ``day`` of the IANA zone ``timezone``: ``[start, end)`` as aware datetimes."""

    day: dt.date
    timezone: str
    start: dt.datetime
    end: dt.datetime

    @classmethod
    def of(cls, day: dt.date, timezone: str) -> DayWindow:
        zone = ZoneInfo(timezone)
        start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
        return cls(day, timezone, start, end)

    @property
    def hours(self) -> int:
        """Hours in the day: 24, or 23 / 25 on a daylight saving change (aware datetimes of one zone subtract as
        wall times in Python, so through UTC)."""
        return round((self.end.astimezone(dt.UTC) - self.start.astimezone(dt.UTC)).total_seconds() / 3600)

    def hour_start(self, hour: int) -> dt.datetime:
        """Local time ``hour`` whole hours after the day's start (``hour`` as in :func:`latency_hourly`)."""
        return (self.start.astimezone(dt.UTC) + dt.timedelta(hours=hour)).astimezone(self.start.tzinfo)

    @property
    def params(self) -> dict:
        return {"start": self.start, "end": self.end, "tz": self.timezone}


def _in_day(column: str) -> str:
    return f"({column} >= :start AND {column} < :end)"


def _scope(grouped: int, tenant: str | None) -> str:
    return ALL_TENANTS if grouped else tenant


def _rows(session: Session, sql: str, params: dict) -> list:
    return session.execute(text(sql), params).all()


_STAMPS = tuple(s.value for s in FINAL_JOB_STATES)
_JOBS = f"""
SELECT grouping(tenant) AS g, tenant,
       count(*) FILTER (WHERE {_in_day('created_at')}) AS submitted,
       {', '.join(f"count(*) FILTER (WHERE {_in_day(s + '_at')}) AS {s}" for s in _STAMPS)}
FROM jobs
WHERE {' OR '.join(_in_day(c) for c in ('created_at', *(s + '_at' for s in _STAMPS)))}
GROUP BY GROUPING SETS ((tenant), ())
"""


def job_counts(session: Session, *, window: DayWindow) -> dict[str, dict[str, int]]:
    """Per scope: jobs ``submitted`` (``created_at``) and ``completed``, ``failed``, ``cancelled``, ``expired``
    (each by its state's stamp) on the day."""
    return {_scope(r.g, r.tenant): {k: getattr(r, k) for k in ("submitted", *_STAMPS)}
            for r in _rows(session, _JOBS, window.params)}


_OF_JOB = "JOIN questions q ON q.id = a.question_id JOIN jobs j ON j.id = q.job_id"
# The one rule of pageqa.domain.is_not_answerable, as PostgreSQL reads it (a POSIX regular expression, ~*).
_IS_NOT_ANSWERABLE = f"a.answer ~* '{NOT_ANSWERABLE_PATTERN}'"
_ANSWERED = f"""
SELECT grouping(j.tenant) AS g, j.tenant, count(*) AS answered,
       count(*) FILTER (WHERE a.reused_from IS NULL) AS answered_by_models,
       count(*) FILTER (WHERE a.reused_from IS NOT NULL) AS reused,
       count(*) FILTER (WHERE {_IS_NOT_ANSWERABLE}) AS not_answerable
FROM answers a {_OF_JOB}
WHERE {_in_day('a.created_at')}
GROUP BY GROUPING SETS ((j.tenant), ())
"""
_FAILED = f"""
SELECT grouping(j.tenant) AS g, j.tenant, count(*) AS failed
FROM questions q JOIN jobs j ON j.id = q.job_id
WHERE q.status = 'failed' AND {_in_day('q.updated_at')}
GROUP BY GROUPING SETS ((j.tenant), ())
"""


def question_counts(session: Session, *, window: DayWindow) -> dict[str, dict[str, int]]:
    """Per scope: questions ``answered`` on the day (``answered_by_models`` + ``reused``), ``not_answerable``
    among them, and ``failed``."""
    zero = {"answered": 0, "answered_by_models": 0, "reused": 0, "not_answerable": 0, "failed": 0}
    out: dict[str, dict[str, int]] = {}
    for r in _rows(session, _ANSWERED, window.params):
        out.setdefault(_scope(r.g, r.tenant), dict(zero)).update(
            {k: getattr(r, k) for k in ("answered", "answered_by_models", "reused", "not_answerable")})
    for r in _rows(session, _FAILED, window.params):
        out.setdefault(_scope(r.g, r.tenant), dict(zero))["failed"] = r.failed
    return out


_CHUNKS = f"""
SELECT grouping(j.tenant) AS gt, grouping(c.worker) AS gw, j.tenant, c.worker, min(c.device) AS device,
       count(*) AS chunks, count(*) FILTER (WHERE c.error IS NOT NULL) AS failed_chunks,
       sum(c.n_questions) AS questions, sum(c.n_reused) AS reused, sum(c.total_ms) AS busy_ms,
       count(c.queue_wait_ms) AS n_wait,
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY c.queue_wait_ms) AS wait
FROM chunk_runs c JOIN jobs j ON j.id = c.job_id
WHERE {_in_day('c.created_at')}
GROUP BY GROUPING SETS ((j.tenant, c.worker), (c.worker), (j.tenant), ())
ORDER BY c.worker
"""


def workers(session: Session, *, window: DayWindow) -> dict[str, dict]:
    """Per scope, from the chunk runs of the day: per worker (``hostname:pid``) its device, ``chunks``,
    ``failed_chunks``, ``questions`` carried (``n_questions``), ``reused``, ``busy_ms`` (sum of ``total_ms``),
    ``questions_per_hour`` (questions per busy hour, i.e. per GPU-hour on a GPU worker) and queue wait p50/p95;
    and the scope's ``queue_wait_ms`` (``n``, ``p50``, ``p95``; enqueue to start of the chunk, milliseconds)."""
    out: dict[str, dict] = {}
    for r in _rows(session, _CHUNKS, window.params):
        scope = out.setdefault(_scope(r.gt, r.tenant), {"workers": [], "queue_wait_ms": None})
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
_MODEL_MADE = f"FROM answers a {_OF_JOB} WHERE {_in_day('a.created_at')} AND a.reused_from IS NULL"
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


def latency(session: Session, *, window: DayWindow) -> dict[str, dict]:
    """Per scope, over the model-made answers of the day: ``n`` and per stage (retrieve, rerank, generate)
    ``p50``, ``p95``, ``p99`` in milliseconds (``percentile_cont``: linear interpolation between ranks)."""
    return {_scope(r.g, r.tenant): {"n": r.n, **{s: dict(zip(("p50", "p95", "p99"), getattr(r, s) or (None,) * 3,
                                                             strict=True)) for s in STAGES}}
            for r in _rows(session, _LATENCY, window.params)}


def latency_hourly(session: Session, *, window: DayWindow) -> dict[str, list[dict]]:
    """Per scope, per hour of the day that has answers (``hour``: whole hours since local midnight, so a daylight
    saving day has 23 or 25), ``n`` and ``<stage>_p50`` / ``<stage>_p95`` in milliseconds."""
    out: dict[str, list[dict]] = {}
    for r in _rows(session, _HOURLY, window.params):
        row = {"hour": r.hour, "n": r.n}
        for s in STAGES:
            row[f"{s}_p50"], row[f"{s}_p95"] = getattr(r, s)
        out.setdefault(_scope(r.g, r.tenant), []).append(row)
    return out


_TOP = f"""
SELECT j.tenant, a.id AS answer_id, c.rerank_score AS score, c.page_id, j.id AS job_id, q.custom_id, q.question,
       a.answer
FROM answers a {_OF_JOB} JOIN citations c ON c.answer_id = a.id AND c.rank = 1
WHERE {_in_day('a.created_at')} AND a.reused_from IS NULL
"""
_SCORE_STATS = f"""
SELECT grouping(tenant) AS g, tenant, count(*) AS n, min(score) AS min, max(score) AS max,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY score) AS p50
FROM ({_TOP}) t GROUP BY GROUPING SETS ((tenant), ())
"""
_HISTOGRAM = f"""
SELECT grouping(tenant) AS g, tenant, bin, count(*) AS n
FROM (SELECT tenant, least(greatest(width_bucket(score, :lo, :hi, :bins), 1), :bins) AS bin FROM ({_TOP}) t) b
GROUP BY GROUPING SETS ((tenant, bin), (bin))
"""
_LOWEST = f"""
SELECT * FROM (
    SELECT t.*, p.page_number, d.title AS document,
           row_number() OVER (PARTITION BY t.tenant ORDER BY t.score, t.answer_id) AS in_tenant,
           row_number() OVER (ORDER BY t.score, t.answer_id) AS overall
    FROM ({_TOP}) t JOIN pages p ON p.id = t.page_id JOIN documents d ON d.id = p.document_id
) ranked
WHERE in_tenant <= :n OR overall <= :n
ORDER BY score, answer_id
"""


def confidence(session: Session, *, window: DayWindow, lowest: int = 10) -> dict[str, dict]:
    """Per scope, the top rerank score (the rank-1 citation's ``rerank_score``) of each model-made answer of the
    day: ``n``, ``min``, ``p50``, ``max``, a histogram of :data:`BINS` equal bins (``edges``: over [0, 1] when every
    score is in it, as MonoQwen2-VL's P(True) is, else over [min, max] of all scopes, so scopes compare; the last
    bin is closed) and the ``lowest`` answers with the lowest top score (job, ``custom_id``, question, answer,
    score, cited document and 1-based page, ``page_id``), lowest first."""
    params = window.params
    stats = {_scope(r.g, r.tenant): r for r in _rows(session, _SCORE_STATS, params)}
    overall = stats.get(ALL_TENANTS)
    if overall is None or not overall.n:
        return {}
    lo, hi = (0.0, 1.0) if overall.min >= 0 and overall.max <= 1 else (overall.min, overall.max)
    hi = hi if hi > lo else lo + 1.0
    edges = [lo + (hi - lo) * i / BINS for i in range(BINS + 1)]
    out = {scope: {"n": r.n, "min": r.min, "p50": r.p50, "max": r.max, "edges": edges, "counts": [0] * BINS,
                   "lowest": []} for scope, r in stats.items()}
    for r in _rows(session, _HISTOGRAM, {**params, "lo": lo, "hi": hi, "bins": BINS}):
        out[_scope(r.g, r.tenant)]["counts"][r.bin - 1] = r.n
    for r in _rows(session, _LOWEST, {**params, "n": lowest}):
        item = {k: getattr(r, k) for k in ("job_id", "custom_id", "question", "answer", "score", "document",
                                            "page_id")}
        item["page"] = r.page_number
        if r.in_tenant <= lowest:
            out[r.tenant]["lowest"].append(item)
        if r.overall <= lowest:
            out[ALL_TENANTS]["lowest"].append(item)
    return out


_CITED = f"""
WITH cited AS (
    SELECT j.tenant, p.document_id, c.page_id
    FROM citations c JOIN answers a ON a.id = c.answer_id {_OF_JOB} JOIN pages p ON p.id = c.page_id
    WHERE {_in_day('a.created_at')}
), counted AS (
    SELECT grouping(tenant) AS g, tenant, {{key}}, count(*) AS citations
    FROM cited GROUP BY GROUPING SETS ((tenant, {{key}}), ({{key}}))
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY g, tenant ORDER BY citations DESC, {{key}}) AS r FROM counted
)
SELECT ranked.g, ranked.tenant, ranked.citations, d.title AS document, co.name AS corpus{{extra}}
FROM ranked {{join}} JOIN documents d ON d.id = {{doc}} JOIN corpora co ON co.id = d.corpus_id
WHERE r <= :top
ORDER BY g, tenant, r
"""


def most_cited(session: Session, *, window: DayWindow, top: int = 10) -> dict[str, dict[str, list[dict]]]:
    """Per scope, the ``top`` most-cited ``documents`` (document title, corpus, citations) and ``pages`` (plus
    1-based page and ``page_id``), counting every citation (all ranks) of every answer of the day."""
    out: dict[str, dict[str, list[dict]]] = {}
    queries = {
        "documents": _CITED.format(key="document_id", extra="", join="", doc="ranked.document_id"),
        "pages": _CITED.format(key="page_id", extra=", p.page_number AS page, p.id AS page_id",
                               join="JOIN pages p ON p.id = ranked.page_id", doc="p.document_id"),
    }
    for kind, sql in queries.items():
        for r in _rows(session, sql, {**window.params, "top": top}):
            item = {k: v for k, v in r._mapping.items() if k not in ("g", "tenant")}
            out.setdefault(_scope(r.g, r.tenant), {"documents": [], "pages": []})[kind].append(item)
    return out


_GROWTH = f"""
SELECT co.tenant, co.name AS corpus,
       count(*) FILTER (WHERE {_in_day('d.created_at')}) AS documents_added,
       coalesce(sum(n.pages) FILTER (WHERE {_in_day('d.created_at')}), 0) AS pages_added,
       count(*) AS documents_total, coalesce(sum(n.pages), 0) AS pages_total
FROM corpora co JOIN documents d ON d.corpus_id = co.id AND d.created_at < :end
LEFT JOIN LATERAL (SELECT count(*) AS pages FROM pages p WHERE p.document_id = d.id) n ON true
WHERE co.id IN (SELECT corpus_id FROM documents WHERE {_in_day('created_at')})
GROUP BY co.id, co.tenant, co.name
ORDER BY co.tenant, co.name
"""


def corpus_growth(session: Session, *, window: DayWindow) -> dict[str, dict]:
    """Per scope, ``documents_added`` and ``pages_added`` on the day and per corpus that grew: those and its
    ``documents_total`` / ``pages_total`` at the end of the day (documents deleted since are not counted)."""
    out: dict[str, dict] = {}
    for r in _rows(session, _GROWTH, window.params):
        item = {k: int(v) if k != "corpus" else v for k, v in r._mapping.items() if k != "tenant"}
        for scope in (r.tenant, ALL_TENANTS):
            entry = out.setdefault(scope, {"documents_added": 0, "pages_added": 0, "corpora": []})
            entry["documents_added"] += item["documents_added"]
            entry["pages_added"] += item["pages_added"]
            entry["corpora"].append({"tenant": r.tenant, **item} if scope == ALL_TENANTS else item)
    return out


_ERRORS = f"""
SELECT j.tenant, 'question' AS source, q.last_error AS message, q.job_id, q.custom_id, q.updated_at AS at, q.id
FROM questions q JOIN jobs j ON j.id = q.job_id
WHERE q.status = 'failed' AND {_in_day('q.updated_at')}
UNION ALL
SELECT j.tenant, 'chunk', c.error, c.job_id, NULL, c.created_at, c.id
FROM chunk_runs c JOIN jobs j ON j.id = c.job_id
WHERE c.error IS NOT NULL AND {_in_day('c.created_at')}
ORDER BY at, id
"""
_GAVE_UP = re.compile(r"^gave up after \d+ attempts; last: ")
_EXCEPTION = re.compile(r"^([A-Z][\w]*|[a-z_][\w]*(?:\.[A-Za-z_]\w*)+)(?::|$)")


def error_kind(message: str | None) -> str:
    """The type of an error message, for grouping: the exception class name of ``"<Type>: <message>"`` (the
    reconciler's ``"gave up after N attempts; last: "`` wrapper removed), else its first six words with numbers
    written ``N``."""
    text_ = _GAVE_UP.sub("", " ".join((message or "").split()))
    match = _EXCEPTION.match(text_)
    if match:
        return match.group(1)
    return " ".join(re.sub(r"\d+(\.\d+)?", "N", text_).split()[:6]) or "(no message)"


def errors(session: Session, *, window: DayWindow) -> dict[str, list[dict]]:
    """Per scope, the errors of the day grouped by ``source`` (``question``: questions failed on the day, their
    ``last_error``; ``chunk``: chunk runs of the day that recorded an error) and :func:`error_kind`: ``count`` and
    the first one of the day as ``example`` (with its ``job_id`` and ``custom_id``), most frequent first."""
    groups: dict[str, dict[tuple[str, str], dict]] = {}
    stmt = text(_ERRORS).execution_options(yield_per=2000)
    for r in session.execute(stmt, window.params):
        key = (r.source, error_kind(r.message))
        for scope in (r.tenant, ALL_TENANTS):
            group = groups.setdefault(scope, {}).setdefault(key, {
                "source": r.source, "kind": key[1], "count": 0, "example": r.message or "",
                "job_id": r.job_id, "custom_id": r.custom_id})
            group["count"] += 1
    return {scope: sorted(g.values(), key=lambda e: (-e["count"], e["source"], e["kind"]))
            for scope, g in groups.items()}


HISTORY_DAYS = 7
_LOCAL_DAY = "(({col}) AT TIME ZONE :tz)::date"
_HISTORY = {
    "jobs": f"""
        SELECT grouping(tenant) AS g, tenant, day, count(*) AS jobs_submitted
        FROM (SELECT tenant, {_LOCAL_DAY.format(col='created_at')} AS day FROM jobs
              WHERE created_at >= :hstart AND created_at < :end) s
        GROUP BY GROUPING SETS ((tenant, day), (day))""",
    "answers": f"""
        SELECT grouping(tenant) AS g, tenant, day, count(*) AS questions_answered,
               count(*) FILTER (WHERE na) AS not_answerable,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY total_ms) FILTER (WHERE made) AS latency_p95_ms,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY top) FILTER (WHERE made) AS top_score_p50
        FROM (SELECT j.tenant, {_LOCAL_DAY.format(col='a.created_at')} AS day, {_IS_NOT_ANSWERABLE} AS na,
                     a.reused_from IS NULL AS made, a.retrieve_ms + a.rerank_ms + a.generate_ms AS total_ms,
                     (SELECT c.rerank_score FROM citations c WHERE c.answer_id = a.id AND c.rank = 1) AS top
              FROM answers a {_OF_JOB} WHERE a.created_at >= :hstart AND a.created_at < :end) s
        GROUP BY GROUPING SETS ((tenant, day), (day))""",
    "failed": f"""
        SELECT grouping(tenant) AS g, tenant, day, count(*) AS questions_failed
        FROM (SELECT j.tenant, {_LOCAL_DAY.format(col='q.updated_at')} AS day
              FROM questions q JOIN jobs j ON j.id = q.job_id
              WHERE q.status = 'failed' AND q.updated_at >= :hstart AND q.updated_at < :end) s
        GROUP BY GROUPING SETS ((tenant, day), (day))""",
}
#: The daily series of the comparison with the previous days; a day without model-made answers has None for the
#: last two.
HISTORY_SERIES = ("jobs_submitted", "questions_answered", "questions_failed", "not_answerable", "latency_p95_ms",
                  "top_score_p50")
_QUIET_DAY = {"jobs_submitted": 0, "questions_answered": 0, "questions_failed": 0, "not_answerable": 0,
              "latency_p95_ms": None, "top_score_p50": None}


def history(session: Session, *, window: DayWindow, days: int = HISTORY_DAYS) -> dict[str, list[dict]]:
    """Per scope that has any of them, :data:`HISTORY_SERIES` for each of the ``days`` days before the report's
    day and the day itself (oldest first; each day in the same zone and by the same stamps as the day's figures;
    ``latency_p95_ms``: p95 of a model-made answer's retrieve + rerank + generate milliseconds)."""
    dates = [window.day - dt.timedelta(days=n) for n in range(days, -1, -1)]
    params = {**window.params, "hstart": DayWindow.of(dates[0], window.timezone).start}
    series: dict[str, dict[dt.date, dict]] = {}
    for sql in _HISTORY.values():
        for r in _rows(session, sql, params):
            values = {k: v for k, v in r._mapping.items() if k in HISTORY_SERIES}
            series.setdefault(_scope(r.g, r.tenant), {}).setdefault(r.day, {}).update(values)
    return {scope: [{"day": d.isoformat(), **_QUIET_DAY, **by_day.get(d, {})} for d in dates]
            for scope, by_day in {ALL_TENANTS: {}, **series}.items()}


_EMPTY = {
    "jobs": {"submitted": 0, **dict.fromkeys(_STAMPS, 0)},
    "questions": {"answered": 0, "answered_by_models": 0, "reused": 0, "not_answerable": 0, "failed": 0},
    "throughput": {"workers": [], "queue_wait_ms": {"n": 0, "p50": None, "p95": None}},
    "latency_ms": {"n": 0, **{s: {"p50": None, "p95": None, "p99": None} for s in STAGES}},
    "latency_hourly": [],
    "confidence": {"n": 0, "min": None, "p50": None, "max": None, "edges": [], "counts": [], "lowest": []},
    "most_cited": {"documents": [], "pages": []},
    "corpus_growth": {"documents_added": 0, "pages_added": 0, "corpora": []},
    "errors": [],
}


def day_figures(session: Session, *, window: DayWindow, lowest: int = 10, top: int = 10) -> dict[str, dict]:
    """Every figure of the day, per scope: ``ALL_TENANTS``, then each tenant active on the day (any figure of the day
    is not empty for it), by name. Each scope's dict has the sections of ``_EMPTY`` (as returned by the functions
    above), ``history`` (:func:`history`), ``empty`` (nothing happened: no job submitted or ended, no question
    answered or failed, no chunk run, no document ingested), and ``day``, ``timezone``, ``start``, ``end``."""
    import copy

    parts = {
        "jobs": job_counts(session, window=window), "questions": question_counts(session, window=window),
        "throughput": workers(session, window=window), "latency_ms": latency(session, window=window),
        "latency_hourly": latency_hourly(session, window=window),
        "confidence": confidence(session, window=window, lowest=lowest),
        "most_cited": most_cited(session, window=window, top=top),
        "corpus_growth": corpus_growth(session, window=window), "errors": errors(session, window=window),
    }
    tenants = sorted({scope for part in parts.values() for scope in part} - {ALL_TENANTS})
    past = history(session, window=window)
    quiet = [{"day": d["day"], **_QUIET_DAY} for d in past[ALL_TENANTS]]
    out = {}
    for scope in (ALL_TENANTS, *tenants):
        figures = {"scope": scope, "day": window.day.isoformat(), "timezone": window.timezone,
                   "start": window.start.isoformat(), "end": window.end.isoformat()}
        figures.update({name: part.get(scope) or copy.deepcopy(_EMPTY[name]) for name, part in parts.items()})
        figures["history"] = past.get(scope) or copy.deepcopy(quiet)
        figures["empty"] = not (any(figures["jobs"].values()) or any(figures["questions"].values())
                                or figures["throughput"]["workers"] or figures["corpus_growth"]["documents_added"])
        out[scope] = figures
    return out


def page_images(session: Session, *, page_ids: Iterable[int]) -> dict[int, tuple[str, bytes]]:
    """Per page id, its stored image format and bytes (WebP, PNG or JPEG as ingested)."""
    ids = sorted(set(page_ids))
    if not ids:
        return {}
    rows = session.execute(select(Page.id, Page.image_format, Page.image).where(Page.id.in_(ids)))
    return {pid: (fmt, bytes(image)) for pid, fmt, image in rows}


@dataclass(frozen=True)
class ReportInfo:
    """A stored report without its contents: its day, scope and when it was built."""

    day: dt.date
    scope: str
    generated_at: dt.datetime


def store_reports(session: Session, *, day: dt.date, pages: dict[str, tuple[str, dict, str]],
                  generated_at: dt.datetime) -> None:
    """Make ``pages`` (scope → html, figures, csv) the reports of ``day``: rows of the same (day, scope) are
    replaced in place, rows of the day for scopes not in ``pages`` deleted. Idempotent; two builds of one day at
    once leave one of them whole (the upsert locks each row)."""
    for scope, (html, figures, csv) in sorted(pages.items()):
        values = {"day": day, "scope": scope, "html": html, "json": figures, "csv": csv, "generated_at": generated_at}
        session.execute(insert(Report).values(**values).on_conflict_do_update(
            constraint="uq_reports_day_scope", set_={k: values[k] for k in ("html", "json", "csv", "generated_at")}))
    session.execute(delete(Report).where(Report.day == day, Report.scope.not_in(list(pages))))


def list_reports(session: Session, *, scope: str, limit: int = 100) -> list[ReportInfo]:
    """The stored reports of ``scope`` (a tenant, or ``ALL_TENANTS``), newest day first, at most ``limit``."""
    stmt = (select(Report.day, Report.scope, Report.generated_at).where(Report.scope == scope)
            .order_by(Report.day.desc()).limit(limit))
    return [ReportInfo(*row) for row in session.execute(stmt)]


def get_report(session: Session, *, day: dt.date, scope: str) -> Report:
    """The report of ``day`` for ``scope`` (a tenant, or ``ALL_TENANTS``): ``html``, ``json`` (figures), ``csv``.

    Raises:
        NotFoundError: no report of that day for that scope (a tenant has a report only for days it was active).
    """
    row = session.scalar(select(Report).where(Report.day == day, Report.scope == scope))
    if row is None:
        raise NotFoundError(f"no report of {day.isoformat()} for {scope!r}")
    return row

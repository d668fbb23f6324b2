"""The figures of the day's answers and corpora (confidence, most-cited documents and pages, corpus growth) and the
daily series of the previous days, read from PostgreSQL; which timestamp puts a row in the day, and the scopes, as in
:mod:`db.report_figures`.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from db.report_figures import IS_NOT_ANSWERABLE, OF_JOB, fetch, in_day, scope_of
from pageqa.domain import ALL_TENANTS

#: Bins of the answer-confidence histogram.
BINS = 10

_TOP = f"""
SELECT j.tenant, a.id AS answer_id, a.confidence AS score, c.page_id, j.id AS job_id, q.custom_id, q.question,
       a.answer
FROM answers a {OF_JOB} JOIN citations c ON c.answer_id = a.id AND c.rank = 1
WHERE {in_day('a.created_at')} AND a.reused_from IS NULL AND a.confidence IS NOT NULL
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


def confidence(session: Session, *, start: dt.datetime, end: dt.datetime, lowest: int = 10) -> dict[str, dict]:
    """Per scope, the confidence (``answers.confidence``: the generator's own probability of its answer, the
    geometric mean of its tokens' probabilities) of each model-made answer of the day that has one and cites a page
    (extractive answers have none): ``n``, ``min``, ``p50``, ``max``, a histogram of :data:`BINS` equal bins (``edges``: over [0, 1] when every
    score is in it, as a probability is, else over [min, max] of all scopes, so scopes compare; the last
    bin is closed) and the ``lowest`` answers with the lowest confidence (job, ``custom_id``, question, answer,
    score, cited document and 1-based page, ``page_id``), lowest first."""
    params = {"start": start, "end": end}
    stats = {scope_of(r.g, r.tenant): r for r in fetch(session, _SCORE_STATS, params)}
    overall = stats.get(ALL_TENANTS)
    if overall is None or not overall.n:
        return {}
    lo, hi = (0.0, 1.0) if overall.min >= 0 and overall.max <= 1 else (overall.min, overall.max)
    hi = hi if hi > lo else lo + 1.0
    edges = [lo + (hi - lo) * i / BINS for i in range(BINS + 1)]
    out = {scope: {"n": r.n, "min": r.min, "p50": r.p50, "max": r.max, "edges": edges, "counts": [0] * BINS,
                   "lowest": []} for scope, r in stats.items()}
    for r in fetch(session, _HISTOGRAM, {**params, "lo": lo, "hi": hi, "bins": BINS}):
        out[scope_of(r.g, r.tenant)]["counts"][r.bin - 1] = r.n
    for r in fetch(session, _LOWEST, {**params, "n": lowest}):
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
    FROM citations c JOIN answers a ON a.id = c.answer_id {OF_JOB} JOIN pages p ON p.id = c.page_id
    WHERE {in_day('a.created_at')}
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


def most_cited(session: Session, *, start: dt.datetime, end: dt.datetime,
               top: int = 10) -> dict[str, dict[str, list[dict]]]:
    """Per scope, the ``top`` most-cited ``documents`` (document title, corpus, citations) and ``pages`` (plus
    1-based page and ``page_id``), counting every citation (all ranks) of every answer of the day."""
    out: dict[str, dict[str, list[dict]]] = {}
    queries = {
        "documents": _CITED.format(key="document_id", extra="", join="", doc="ranked.document_id"),
        "pages": _CITED.format(key="page_id", extra=", p.page_number AS page, p.id AS page_id",
                               join="JOIN pages p ON p.id = ranked.page_id", doc="p.document_id"),
    }
    for kind, sql in queries.items():
        for r in fetch(session, sql, {**{"start": start, "end": end}, "top": top}):
            item = {k: v for k, v in r._mapping.items() if k not in ("g", "tenant")}
            out.setdefault(scope_of(r.g, r.tenant), {"documents": [], "pages": []})[kind].append(item)
    return out


_GROWTH = f"""
SELECT co.tenant, co.name AS corpus,
       count(*) FILTER (WHERE {in_day('d.created_at')}) AS documents_added,
       coalesce(sum(n.pages) FILTER (WHERE {in_day('d.created_at')}), 0) AS pages_added,
       count(*) AS documents_total, coalesce(sum(n.pages), 0) AS pages_total
FROM corpora co JOIN documents d ON d.corpus_id = co.id AND d.created_at < :end
LEFT JOIN LATERAL (SELECT count(*) AS pages FROM pages p WHERE p.document_id = d.id) n ON true
WHERE co.id IN (SELECT corpus_id FROM documents WHERE {in_day('created_at')})
GROUP BY co.id, co.tenant, co.name
ORDER BY co.tenant, co.name
"""


def corpus_growth(session: Session, *, start: dt.datetime, end: dt.datetime) -> dict[str, dict]:
    """Per scope, ``documents_added`` and ``pages_added`` on the day and per corpus that grew: those and its
    ``documents_total`` / ``pages_total`` at the end of the day (documents deleted since are not counted)."""
    out: dict[str, dict] = {}
    for r in fetch(session, _GROWTH, {"start": start, "end": end}):
        item = {k: int(v) if k != "corpus" else v for k, v in r._mapping.items() if k != "tenant"}
        for scope in (r.tenant, ALL_TENANTS):
            entry = out.setdefault(scope, {"documents_added": 0, "pages_added": 0, "corpora": []})
            entry["documents_added"] += item["documents_added"]
            entry["pages_added"] += item["pages_added"]
            entry["corpora"].append({"tenant": r.tenant, **item} if scope == ALL_TENANTS else item)
    return out


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
               percentile_cont(0.5) WITHIN GROUP (ORDER BY confidence) FILTER (WHERE made) AS confidence_p50
        FROM (SELECT j.tenant, {_LOCAL_DAY.format(col='a.created_at')} AS day, {IS_NOT_ANSWERABLE} AS na,
                     a.reused_from IS NULL AS made, a.retrieve_ms + a.rerank_ms + a.generate_ms AS total_ms,
                     a.confidence
              FROM answers a {OF_JOB} WHERE a.created_at >= :hstart AND a.created_at < :end) s
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
                  "confidence_p50")


def history(session: Session, *, since: dt.datetime, end: dt.datetime, tz: str) -> dict[str, dict[dt.date, dict]]:
    """Per scope that has any, per local day of ``tz`` (an IANA zone name) in ``[since, end)`` that has any: the
    :data:`HISTORY_SERIES` values that day has (each day by the same stamps as the day's figures;
    ``latency_p95_ms``: p95 of a model-made answer's retrieve + rerank + generate milliseconds)."""
    params = {"end": end, "tz": tz, "hstart": since}
    series: dict[str, dict[dt.date, dict]] = {}
    for sql in _HISTORY.values():
        for r in fetch(session, sql, params):
            values = {k: v for k, v in r._mapping.items() if k in HISTORY_SERIES}
            series.setdefault(scope_of(r.g, r.tenant), {}).setdefault(r.day, {}).update(values)
    return series

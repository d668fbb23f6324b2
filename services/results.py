"""A job's results as files joined by ``custom_id``: the output file (one record per answered question) and the
error file (one per question that ended without an answer), as JSON lines or CSV, streamed from PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

from db import answers as answers_db
from db import jobs as jobs_db
from db.engine import session_scope
from db.schema import Answer, Question
from pageqa.domain import QuestionStatus, rfc3339
from pageqa.settings import Settings

#: Records read per round trip: the questions of a batch, then their citations in one query.
BATCH = 2000

#: Error codes of the error file, by question status (``batch_expired``/``batch_cancelled`` as in OpenAI's Batch
#: API; ``answer_failed``: the models or the data failed it after its last attempt, see ``message``).
ERROR_CODES = {QuestionStatus.failed: "answer_failed", QuestionStatus.cancelled: "batch_cancelled",
               QuestionStatus.expired: "batch_expired"}
ENDED_WITHOUT_ANSWER = tuple(ERROR_CODES)


def question_records(
    settings: Settings, *, job_id: str, tenant: str | None = None,
    statuses: Iterable[QuestionStatus] | None = None,
) -> Iterator[dict]:
    """One record per question of the job (optionally only of ``statuses``) in file order: ``custom_id``,
    ``question``, ``status``, and for an answered one its ``answer``, ``answer_kind``, ``citations`` (document, its
    id, 1-based page, rank, lanes, retrieval and rerank scores), ``evidence`` (extractive answers), ``timings_ms``
    per stage, ``models``, ``answered_at`` (RFC 3339) and ``reused_from``; for any other its ``error``.

    Streamed: :data:`BATCH` questions per query, so a job of a million questions is never in memory at once.

    Raises:
        NotFoundError: no such job (of ``tenant``, when given).
    """
    with session_scope(settings) as session:
        jobs_db.get_job(session, job_id=job_id, tenant=tenant)
        for rows in answers_db.question_answers(session, job_id=job_id, statuses=statuses, batch=BATCH):
            yield from _records(session, rows)


def _records(session, rows: list[tuple[Question, Answer | None]]) -> Iterator[dict]:
    answers = [a for _, a in rows if a is not None]
    cites = _citations(session, [a.id for a in answers])
    reused = answers_db.reuse_sources(session, question_ids=[a.reused_from for a in answers if a.reused_from])
    for q, a in rows:
        record = {"custom_id": q.custom_id, "question": q.question, "status": q.status.value}
        if a is None:
            record["error"] = q.last_error
            yield record
            continue
        cited = cites.get(a.id, [])
        record.update(answer=a.answer, answer_kind=a.kind, citations=[c for c, _ in cited])
        if a.confidence is not None:
            record["confidence"] = round(a.confidence, 4)
        evidence = next((c for c, page_id in cited if page_id == a.evidence_page_id), None)
        if evidence is not None:
            record["evidence"] = {"document": evidence["document"], "page": evidence["page"]}
        record["timings_ms"] = {"retrieve": round(a.retrieve_ms, 2), "rerank": round(a.rerank_ms, 2),
                                "generate": round(a.generate_ms, 2)}
        record["models"] = {"retriever": a.retriever_model, "reranker": a.reranker_model,
                            "generator": a.generator_model}
        record["answered_at"] = rfc3339(a.created_at)
        if a.reused_from is not None:
            record["reused_from"] = reused.get(a.reused_from)
        yield record


def _citations(session, answer_ids: list[int]) -> dict[int, list[tuple[dict, int]]]:
    """Per answer id, its citations in rank order as (record, page id); reads only the columns it shows (a page
    row also holds its image)."""
    out: dict[int, list[tuple[dict, int]]] = {}
    for c in answers_db.citation_rows(session, answer_ids=answer_ids):
        out.setdefault(c.answer_id, []).append(({
            "document": c.source, "document_id": c.document_id, "page": c.page_number, "rank": c.rank,
            "lanes": list(c.lanes), "retrieval_score": round(c.retrieval_score, 4),
            "rerank_score": round(c.rerank_score, 4)}, c.page_id))
    return out


def result_records(settings: Settings, *, job_id: str, tenant: str | None = None) -> Iterator[dict]:
    """The output file's records: one per answered question, in file order (see :func:`question_records`)."""
    return question_records(settings, job_id=job_id, tenant=tenant, statuses=[QuestionStatus.answered])


def error_records(settings: Settings, *, job_id: str, tenant: str | None = None) -> Iterator[dict]:
    """The error file's records: one per question that ended without an answer (failed, cancelled, expired), in
    file order: ``custom_id``, ``status`` and ``error`` ``{"code", "message"}`` (codes: :data:`ERROR_CODES`)."""
    for r in question_records(settings, job_id=job_id, tenant=tenant, statuses=ENDED_WITHOUT_ANSWER):
        status = QuestionStatus(r["status"])
        yield {"custom_id": r["custom_id"], "status": r["status"],
               "error": {"code": ERROR_CODES[status], "message": r.get("error") or status.value}}


#: First characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    """A CSV cell that a spreadsheet shows as text: strings starting like a formula get a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


CSV_FIELDS = ["custom_id", "question", "status", "answer", "error", "citations",
              "top_document", "top_page", "top_retrieval_score", "top_rerank_score",
              "retrieve_ms", "rerank_ms", "generate_ms", "retriever_model", "reranker_model", "generator_model"]
ERROR_CSV_FIELDS = ["custom_id", "status", "code", "message"]


def to_jsonl(records: Iterable[dict]) -> Iterator[str]:
    """Records as JSON lines."""
    for r in records:
        yield json.dumps(r, ensure_ascii=False) + "\n"


def _csv(records: Iterable[dict], fields: list[str], row: Callable[[dict], dict]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in records:
        writer.writerow({k: _cell(v) for k, v in row(r).items()})
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    if buf.tell():  # the header of an empty file
        yield buf.getvalue()


def _result_row(r: dict) -> dict:
    cites = r.get("citations") or []
    top = cites[0] if cites else {}
    t = r.get("timings_ms") or {}
    m = r.get("models") or {}
    return {
        "custom_id": r["custom_id"], "question": r["question"], "status": r["status"],
        "answer": r.get("answer", ""), "error": r.get("error") or "",
        "citations": ";".join(f"{c['document']}#{c['page']}" for c in cites),
        "top_document": top.get("document", ""), "top_page": top.get("page", ""),
        "top_retrieval_score": top.get("retrieval_score", ""), "top_rerank_score": top.get("rerank_score", ""),
        "retrieve_ms": t.get("retrieve", ""), "rerank_ms": t.get("rerank", ""), "generate_ms": t.get("generate", ""),
        "retriever_model": m.get("retriever", ""), "reranker_model": m.get("reranker", ""),
        "generator_model": m.get("generator", ""),
    }


def to_csv(records: Iterable[dict]) -> Iterator[str]:
    """Result records as CSV rows; ``citations`` is ``document#page`` joined by ``;`` in rank order. Text cells that
    a spreadsheet would run as a formula (starting with ``= + - @``, tab or carriage return) are prefixed with
    ``'``."""
    return _csv(records, CSV_FIELDS, _result_row)


def errors_to_csv(records: Iterable[dict]) -> Iterator[str]:
    """Error records as CSV rows: ``custom_id, status, code, message`` (formula-safe as :func:`to_csv`)."""
    return _csv(records, ERROR_CSV_FIELDS, lambda r: {"custom_id": r["custom_id"], "status": r["status"],
                                                      "code": r["error"]["code"], "message": r["error"]["message"]})


def export(
    settings: Settings, *, job_id: str, kind: Literal["results", "errors"], format: Literal["jsonl", "csv"],
    tenant: str | None = None,
) -> Iterator[str]:
    """The job's output file (``kind`` ``"results"``: :func:`result_records`) or error file (``"errors"``:
    :func:`error_records`) as text chunks of JSON lines or CSV (:func:`to_jsonl`, :func:`to_csv`,
    :func:`errors_to_csv`), read from PostgreSQL as they are consumed.

    Raises:
        NotFoundError: while the first chunk is read, when there is no such job (of ``tenant``, when given).
    """
    if kind == "results":
        records = result_records(settings, job_id=job_id, tenant=tenant)
        return to_jsonl(records) if format == "jsonl" else to_csv(records)
    records = error_records(settings, job_id=job_id, tenant=tenant)
    return to_jsonl(records) if format == "jsonl" else errors_to_csv(records)

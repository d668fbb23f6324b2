"""A realistic day for the nightly report tests, written straight into PostgreSQL with explicit timestamps, and the
figures expected of it, computed here in Python from the same seed (never by running the report's SQL).

The day is 2024-06-12 in America/New_York (UTC-4 that day, so it starts at 04:00 UTC): two tenants, jobs in every
final state, answered, reused, "Not answerable" and failed questions, chunk runs on two workers, errors of three
kinds, documents ingested that day, and rows on the days before (the comparison) and just outside the day's edges
that must not count. Tenants and corpora have names no other test uses; every job has ended or has nothing left to
run, and none expires, so the session's reconciler never touches them.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections import Counter, defaultdict
from zoneinfo import ZoneInfo

import numpy as np

DAY = dt.date(2024, 6, 12)
TZ = "America/New_York"
ZONE = ZoneInfo(TZ)
START = dt.datetime.combine(DAY, dt.time(), tzinfo=ZONE)
END = START + dt.timedelta(days=1)
ACME, GLOBEX = "northwind", "initech"
TENANTS = (ACME, GLOBEX)
ALL = "all"
FAR = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)  # no seeded job ever expires under the session's reconciler


def local(days: int, hour: int, minute: int = 0) -> dt.datetime:
    """A local time ``days`` after the report's day."""
    return dt.datetime.combine(DAY + dt.timedelta(days=days), dt.time(hour, minute), tzinfo=ZONE)


def in_day(at: dt.datetime | None) -> bool:
    return at is not None and START <= at < END


CORPORA = {ACME: "rpt-northwind-manuals", GLOBEX: "rpt-initech-charts"}
# key, tenant, title, created, pages, image format ("none": stored without an image)
DOCUMENTS = [
    ("pump", ACME, "pump-manual.pdf", local(-9, 10), 3, "WEBP"),
    ("valve", ACME, "valve-guide.pdf", local(0, 9, 15), 2, "PNG"),
    ("later", ACME, "later-notes.pdf", local(1, 1), 1, "PNG"),              # the next day
    ("revenue", GLOBEX, "revenue-2023.png", local(0, 23, 30), 1, "WEBP"),
    ("boundary", GLOBEX, "boundary.png", local(-1, 23, 59), 2, "PNG"),     # a minute before the day
    ("blank", GLOBEX, "scan-blank.pdf", local(-5, 8), 1, "none"),
    ("edge", GLOBEX, "edge.png", START, 1, "PNG"),                          # the day's first instant
]
# key, tenant, created, status, when it reached that status
JOBS = [
    ("a1", ACME, local(0, 8), "completed", local(0, 18)),
    ("a2", ACME, local(0, 11), "failed", local(0, 11, 30)),
    ("a3", ACME, local(0, 13), "cancelled", local(0, 13, 20)),
    ("a4", ACME, local(-1, 20), "expired", local(0, 20)),
    ("a5", ACME, local(0, 23, 50), "in_progress", None),
    ("a0", ACME, local(-4, 9), "completed", local(-4, 12)),
    ("g1", GLOBEX, local(0, 6), "completed", local(0, 7)),
    ("g2", GLOBEX, local(-1, 23), "completed", local(0, 0, 30)),
    ("g3", GLOBEX, END, "completed", local(1, 2)),                      # the next day's first instant
    ("g0", GLOBEX, local(-2, 15), "failed", local(-2, 16)),
]
TENANT_OF_JOB = {key: tenant for key, tenant, *_ in JOBS}

OOM = "gave up after 3 attempts; last: OutOfMemoryError: CUDA out of memory. Tried to allocate {} GiB"
LEASE = "gave up after 3 attempts; last: the worker holding it stopped answering (lease expired)"


def _answer(text, at, ms, cites, reused_from=None):
    return {"text": text, "at": at, "ms": ms, "cites": cites, "reused_from": reused_from}


def _questions() -> list[dict]:
    """Each question: job, custom_id, text, status, updated_at, error (the kind a person reads in it), answer."""
    qs = []

    def add(job, cid, text, status, updated, *, answer=None, error=None, kind=None):
        qs.append({"job": job, "custom_id": cid, "question": text, "status": status, "updated_at": updated,
                   "error": error, "kind": kind, "answer": answer})

    scores = [0.93, 0.87, 0.12, 0.55, 0.71, 0.34, 0.08, 0.66, 0.97, 0.45, 0.28, 0.81]
    texts = {2: "Not answerable", 6: "  not ANSWERABLE \n", 10: "Not answerable by the manual alone"}
    for i, score in enumerate(scores):  # a1: twelve model-made answers from 08:05 to 17:50
        at = local(0, 8 + i % 10, (5 + 17 * i) % 60)
        ms = (40.0 + 7 * i, 120.0 + 13 * i, 900.0 + 37 * (i * i % 11))
        page = ("pump", 1 + i % 3) if i % 4 else ("valve", 1 + i % 2)
        cites = [(page, score), (("pump", 1 + (i + 1) % 3), score / 2)] + ([(("valve", 2), 0.01)] if i % 3 == 0 else [])
        add("a1", f"a1-{i}", f"Northwind question {i}: what does the pump manual say about part {i}?", "answered",
            at, answer=_answer(texts.get(i, f"Northwind answer {i}"), at, ms, cites))
    for i, src in ((12, 0), (13, 4)):  # reused copies of earlier answers: 0 ms, same citations
        at = local(0, 17, 55 + i - 12)
        source = qs[src]["answer"]
        add("a1", f"a1-{i}", qs[src]["question"] + " (again)", "answered", at,
            answer=_answer(source["text"], at, (0.0, 0.0, 0.0), source["cites"], reused_from=f"a1-{src}"))
    for i, gib in enumerate(("2.00", "1.50", "3.25")):
        add("a2", f"a2-{i}", f"Northwind failing question {i}", "failed", local(0, 11, 20 + i),
            error=OOM.format(gib), kind="OutOfMemoryError")
    add("a2", "a2-3", "Northwind failing question 3", "failed", local(0, 11, 24),
        error="RuntimeError: page image could not be decoded (page 4)", kind="RuntimeError")
    for i in range(2):
        at = local(0, 13, 5 + 5 * i)
        add("a3", f"a3-{i}", f"Northwind cancelled-job question {i}", "answered", at,
            answer=_answer(f"Northwind partial answer {i}", at, (61.0 + i, 140.0, 1500.0 + 100 * i),
                           [(("valve", 1), 0.61 + 0.1 * i)]))
    for i in range(2, 5):
        add("a3", f"a3-{i}", f"Northwind cancelled question {i}", "cancelled", local(0, 13, 20), error="cancelled")
    for i in range(2):  # a4: answered the evening before, then expired on the day
        at = local(-1, 21, 10 * i)
        add("a4", f"a4-{i}", f"Northwind overnight question {i}", "answered", at,
            answer=_answer("Northwind overnight answer", at, (50.0, 100.0, 700.0), [(("pump", 2), 0.77)]))
    at = local(0, 1, 30)
    add("a4", "a4-2", "Northwind early question", "answered", at,
        answer=_answer("Not answerable", at, (55.0, 111.0, 999.0), [(("pump", 3), 0.2)]))
    for i in range(3, 5):
        add("a4", f"a4-{i}", f"Northwind expired question {i}", "expired", local(0, 20),
            error="the job's completion window ended first")
    at = local(0, 23, 55)
    add("a5", "a5-0", "Northwind late question", "answered", at,
        answer=_answer("Northwind late answer", at, (44.0, 130.0, 1200.0), [(("valve", 2), 0.5)]))
    for i in range(3):  # a0: four days before
        at = local(-4, 10, 10 * i)
        add("a0", f"a0-{i}", f"Northwind old question {i}", "answered", at,
            answer=_answer("Not answerable" if i == 2 else "old answer", at, (30.0 + i, 90.0, 800.0 + 100 * i),
                           [(("pump", 1), 0.4 + 0.1 * i)]))
    add("a0", "a0-3", "Northwind old failing question", "failed", local(-4, 11), error="RuntimeError: old",
        kind="RuntimeError")

    g1 = [(0.42, "revenue"), (0.91, "boundary"), (0.05, "blank"), (0.63, "boundary"), (0.74, "edge")]
    for i, (score, doc) in enumerate(g1):
        at = local(0, 6, 10 + 8 * i)
        add("g1", f"g1-{i}", f"Initech question {i}: what was revenue in quarter {i}?", "answered", at,
            answer=_answer("Not answerable" if i == 2 else f"Initech answer {i}", at,
                           (70.0 + 3 * i, 210.0 + 5 * i, 1800.0 + 60 * i), [((doc, 1), score)]))
    add("g1", "g1-5", "Initech failing question", "failed", local(0, 6, 58), error=LEASE,
        kind="the worker holding it stopped answering")
    for i, at in enumerate((local(-1, 23, 30), local(-1, 23, 59), START)):  # the last one at the day's first instant
        add("g2", f"g2-{i}", f"Initech night question {i}", "answered", at,
            answer=_answer(f"Initech night answer {i}", at, (80.0, 220.0, 2100.0 + i), [(("boundary", 2), 0.52)]))
    for i, at in enumerate((END, local(1, 0, 20))):  # the next day, from its first instant
        add("g3", f"g3-{i}", f"Initech tomorrow question {i}", "answered", at,
            answer=_answer("Not answerable", at, (1.0, 1.0, 1.0), [(("revenue", 1), 0.01)]))
    at = local(-2, 15, 30)
    add("g0", "g0-0", "Initech older failing question", "failed", at, error=OOM.format("9.00"), kind="OutOfMemoryError")
    return qs


QUESTIONS = _questions()
# job, worker, device, ended at, questions, reused, queue wait ms, total ms, error (and its kind)
CHUNKS = [
    ("a1", "gpu0@host-a:101", "cuda:0", local(0, 9, 30), 4, 0, 120.0, 5000.0, None),
    ("a1", "gpu0@host-a:101", "cuda:0", local(0, 12), 4, 0, 340.5, 5200.0, None),
    ("a1", "gpu0@host-a:101", "cuda:0", local(0, 16), 4, 1, None, 4800.0, None),
    ("a1", "gpu0@host-a:101", "cuda:0", local(0, 17, 58), 2, 1, 80.25, 2600.0, None),
    ("a2", "gpu1@host-b:202", "cuda:1", local(0, 11, 25), 4, 0, 900.0, 3000.0,
     ("OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB", "OutOfMemoryError")),
    ("a3", "gpu1@host-b:202", "cuda:1", local(0, 13, 12), 5, 0, 60.0, 2500.0, None),
    ("a4", "gpu1@host-b:202", "cuda:1", local(0, 1, 35), 1, 0, 15.0, 1200.0, None),
    ("a5", "gpu0@host-a:101", "cuda:0", local(0, 23, 56), 1, 0, 5.5, 1400.0, None),
    ("g1", "gpu0@host-a:101", "cuda:0", local(0, 6, 52), 6, 0, 45.0, 7000.0,
     ("RuntimeError: generate failed: shape mismatch (1, 3) vs (1, 4)", "RuntimeError")),
    ("g2", "gpu1@host-b:202", "cuda:1", local(0, 0, 20), 1, 0, 30000.0, 900.0, None),
    ("a4", "gpu1@host-b:202", "cuda:1", local(-1, 21, 30), 2, 0, 10.0, 1500.0, None),   # the day before
    ("g3", "gpu0@host-a:101", "cuda:0", END, 2, 0, 10.0, 800.0, None),                   # the next day
]


# --- writing it ---------------------------------------------------------------------------------------------------

def page_image(fmt: str, label: str) -> bytes:
    from PIL import Image, ImageDraw

    if fmt == "none":
        return b""
    img = Image.new("RGB", (300, 400), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((20, 60, 280, 200), fill=(40, 90, 160))
    draw.text((20, 20), label, fill="black")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def seed(session) -> dict:
    """Write the day; returns the ids given to documents, pages (by (document key, page)) and questions."""
    from db.schema import (
        Answer,
        ChunkRun,
        Citation,
        Corpus,
        Document,
        Job,
        Page,
        Question,
    )

    corpora = {}
    for tenant, name in CORPORA.items():
        corpora[tenant] = Corpus(name=name, tenant=tenant, created_at=local(-11, 9))
        session.add(corpora[tenant])
    session.flush()
    docs, pages = {}, {}
    for key, tenant, title, created, n_pages, fmt in DOCUMENTS:
        doc = Document(corpus_id=corpora[tenant].id, sha256=key.ljust(64, "0"), title=title, source=title,
                       kind="pdf" if title.endswith(".pdf") else "image", page_count=n_pages, size_bytes=1000,
                       created_at=created)
        session.add(doc)
        session.flush()
        docs[key] = doc.id
        for n in range(1, n_pages + 1):
            page = Page(document_id=doc.id, page_number=n, width=300, height=400, image_format=fmt.lower(),
                        image=page_image(fmt, f"{title} p{n}"), text=f"{title} page {n}", text_source="pdf")
            session.add(page)
            session.flush()
            pages[(key, n)] = page.id
    jobs = {}
    for key, tenant, created, status, ended in JOBS:
        stamps = {f"{status}_at": ended} if ended else {}
        job = Job(id=f"job_rpt_{key}", corpus_id=corpora[tenant].id, source=f"{key}.csv", tenant=tenant, options={},
                  total=sum(q["job"] == key for q in QUESTIONS), status=status, created_at=created, expires_at=FAR,
                  in_progress_at=created, **stamps)
        session.add(job)
        jobs[key] = job.id
    session.flush()
    questions = {}
    for line, q in enumerate(QUESTIONS, 1):
        row = Question(job_id=jobs[q["job"]], custom_id=q["custom_id"], question=q["question"], line_number=line,
                       status=q["status"], attempts=1, last_error=q["error"], enqueued_at=q["updated_at"],
                       updated_at=q["updated_at"])
        session.add(row)
        session.flush()
        questions[q["custom_id"]] = row.id
    for q in QUESTIONS:  # in seed order, so answer ids follow it
        a = q["answer"]
        if a is None:
            continue
        answer = Answer(question_id=questions[q["custom_id"]], answer=a["text"], retriever_model="r",
                        reranker_model="k", generator_model="g", retrieve_ms=a["ms"][0], rerank_ms=a["ms"][1],
                        generate_ms=a["ms"][2], created_at=a["at"],
                        confidence=a["cites"][0][1] if a["cites"] else None,  # the seed's confidence: its top score
                        reused_from=questions[a["reused_from"]] if a["reused_from"] else None)
        session.add(answer)
        session.flush()
        for rank, (page, score) in enumerate(a["cites"], 1):
            session.add(Citation(answer_id=answer.id, page_id=pages[page], rank=rank, retrieval_score=0.03,
                                 rerank_score=score, lanes=["lexical"]))
    for job, worker, device, at, n, reused, wait, total, error in CHUNKS:
        session.add(ChunkRun(job_id=jobs[job], worker=worker, device=device, n_questions=n, n_reused=reused,
                             batch_sizes={}, queue_wait_ms=wait, retrieve_ms=total * 0.1, rerank_ms=total * 0.2,
                             generate_ms=total * 0.7, total_ms=total, error=error[0] if error else None,
                             created_at=at))
    session.flush()
    return {"documents": docs, "pages": pages, "questions": questions}


# --- what the report must say, computed from the seed --------------------------------------------------------------

def in_scope(tenant: str, scope: str) -> bool:
    return scope == ALL or tenant == scope


def _answers(scope: str, *, day=in_day):
    return [(q, q["answer"]) for q in QUESTIONS
            if q["answer"] and day(q["answer"]["at"]) and in_scope(TENANT_OF_JOB[q["job"]], scope)]


def jobs(scope: str) -> dict:
    rows = [j for j in JOBS if in_scope(j[1], scope)]
    out = {"submitted": sum(in_day(j[2]) for j in rows)}
    for status in ("completed", "failed", "cancelled", "expired"):
        out[status] = sum(j[3] == status and in_day(j[4]) for j in rows)
    return out


def questions(scope: str) -> dict:
    answers = _answers(scope)
    return {
        "answered": len(answers),
        "answered_by_models": sum(a["reused_from"] is None for _, a in answers),
        "reused": sum(a["reused_from"] is not None for _, a in answers),
        "not_answerable": sum(a["text"].strip().lower() == "not answerable" for _, a in answers),
        "failed": sum(q["status"] == "failed" and in_day(q["updated_at"]) and in_scope(TENANT_OF_JOB[q["job"]], scope)
                      for q in QUESTIONS),
    }


def chunks(scope: str) -> list[tuple]:
    return [c for c in CHUNKS if in_day(c[3]) and in_scope(TENANT_OF_JOB[c[0]], scope)]


def throughput(scope: str) -> dict:
    by_worker = defaultdict(list)
    for c in chunks(scope):
        by_worker[c[1]].append(c)
    workers = {}
    for worker, runs in by_worker.items():
        waits = [c[6] for c in runs if c[6] is not None]
        busy = sum(c[7] for c in runs)
        workers[worker] = {
            "device": runs[0][2], "chunks": len(runs), "failed_chunks": sum(c[8] is not None for c in runs),
            "questions": sum(c[4] for c in runs), "reused": sum(c[5] for c in runs), "busy_ms": busy,
            "questions_per_hour": sum(c[4] for c in runs) / (busy / 3_600_000),
            "queue_wait_p50_ms": float(np.percentile(waits, 50)), "queue_wait_p95_ms": float(np.percentile(waits, 95)),
        }
    waits = [c[6] for c in chunks(scope) if c[6] is not None]
    wait = {"n": len(waits), "p50": float(np.percentile(waits, 50)) if waits else None,
            "p95": float(np.percentile(waits, 95)) if waits else None}
    return {"workers": workers, "queue_wait_ms": wait}


def model_made(scope: str, *, day=in_day) -> list[dict]:
    return [a for _, a in _answers(scope, day=day) if a["reused_from"] is None]


def latency(scope: str) -> dict:
    made = model_made(scope)
    out = {"n": len(made)}
    for i, stage in enumerate(("retrieve", "rerank", "generate")):
        values = [a["ms"][i] for a in made]
        out[stage] = dict(zip(("p50", "p95", "p99"), (float(v) for v in np.percentile(values, [50, 95, 99])),
                              strict=True))
    return out


def latency_hourly(scope: str) -> dict[int, dict]:
    hours = defaultdict(list)
    for a in model_made(scope):
        hours[math.floor((a["at"].astimezone(dt.UTC) - START.astimezone(dt.UTC)).total_seconds() / 3600)].append(a)
    out = {}
    for hour, made in hours.items():
        out[hour] = {"n": len(made)}
        for i, stage in enumerate(("retrieve", "rerank", "generate")):
            p50, p95 = np.percentile([a["ms"][i] for a in made], [50, 95])
            out[hour][f"{stage}_p50"], out[hour][f"{stage}_p95"] = float(p50), float(p95)
    return out


def confidence(scope: str, lowest: int = 10) -> dict:
    made = [(q, a) for q, a in _answers(scope) if a["reused_from"] is None and a["cites"]]
    scores = [a["cites"][0][1] for _, a in made]
    counts, _ = np.histogram(scores, bins=10, range=(0.0, 1.0))
    order = sorted(range(len(made)), key=lambda i: scores[i])  # stable: seed order breaks ties, as answer ids do
    low = [{"custom_id": made[i][0]["custom_id"], "question": made[i][0]["question"], "score": scores[i],
            "page": made[i][1]["cites"][0][0]} for i in order[:lowest]]
    return {"n": len(scores), "min": min(scores), "max": max(scores), "p50": float(np.median(scores)),
            "counts": [int(c) for c in counts], "lowest": low}


def most_cited(scope: str) -> tuple[Counter, Counter]:
    docs, pages = Counter(), Counter()
    for _, a in _answers(scope):
        for page, _score in a["cites"]:
            docs[page[0]] += 1
            pages[page] += 1
    return docs, pages


TITLES = {key: title for key, _, title, *_ in DOCUMENTS}


def corpus_growth(scope: str) -> dict:
    out = {"documents_added": 0, "pages_added": 0, "corpora": {}}
    for tenant, corpus in CORPORA.items():
        if not in_scope(tenant, scope):
            continue
        docs = [d for d in DOCUMENTS if d[1] == tenant and d[3] < END]
        added = [d for d in docs if in_day(d[3])]
        if not added:
            continue
        out["corpora"][corpus] = {"documents_added": len(added), "pages_added": sum(d[4] for d in added),
                                  "documents_total": len(docs), "pages_total": sum(d[4] for d in docs)}
        out["documents_added"] += len(added)
        out["pages_added"] += sum(d[4] for d in added)
    return out


def errors(scope: str) -> dict[tuple[str, str], dict]:
    """(source, kind) → count and the first example of the day."""
    events = [(q["updated_at"], "question", q["kind"], q["error"]) for q in QUESTIONS
              if q["status"] == "failed" and in_day(q["updated_at"]) and in_scope(TENANT_OF_JOB[q["job"]], scope)]
    events += [(c[3], "chunk", c[8][1], c[8][0]) for c in chunks(scope) if c[8]]
    out: dict[tuple[str, str], dict] = {}
    for _at, source, kind, message in sorted(events, key=lambda e: e[0]):
        entry = out.setdefault((source, kind), {"count": 0, "example": message})
        entry["count"] += 1
    return out


def history(scope: str) -> list[dict]:
    days = []
    for back in range(7, -1, -1):
        d = DAY - dt.timedelta(days=back)
        start = dt.datetime.combine(d, dt.time(), tzinfo=ZONE)
        end = dt.datetime.combine(d + dt.timedelta(days=1), dt.time(), tzinfo=ZONE)

        def that_day(at, start=start, end=end):
            return at is not None and start <= at < end
        answers = _answers(scope, day=that_day)
        made = [a for _, a in answers if a["reused_from"] is None]
        days.append({
            "day": d.isoformat(),
            "jobs_submitted": sum(that_day(j[2]) for j in JOBS if in_scope(j[1], scope)),
            "questions_answered": len(answers),
            "questions_failed": sum(q["status"] == "failed" and that_day(q["updated_at"])
                                    and in_scope(TENANT_OF_JOB[q["job"]], scope) for q in QUESTIONS),
            "not_answerable": sum(a["text"].strip().lower() == "not answerable" for _, a in answers),
            "latency_p95_ms": float(np.percentile([sum(a["ms"]) for a in made], 95)) if made else None,
            "confidence_p50": float(np.median([a["cites"][0][1] for a in made])) if made else None,
        })
    return days

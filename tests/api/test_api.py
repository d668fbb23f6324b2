"""The HTTP API through FastAPI's test client, against the real PostgreSQL, Redis and a real Celery worker: a
job's whole lifecycle, cancel, expiry, pagination, the output and error files, tenant isolation, upload limits and
malformed files."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time

import pytest
from conftest import run_cli as cli
from conftest import wait_for
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from db import keys
from db.engine import session_scope
from db.schema import Answer, Question
from pageqa.domain import QuestionStatus

pytestmark = pytest.mark.models
FINAL = ("completed", "failed", "cancelled", "expired")


@pytest.fixture(scope="module")
def client(settings, worker):
    from api.app import create_app

    with TestClient(create_app(settings)) as c:
        yield c


def _key(settings, tenant: str) -> dict[str, str]:
    with session_scope(settings) as session:
        return {"Authorization": f"Bearer {keys.create_key(session, tenant=tenant).key}"}


@pytest.fixture(scope="module")
def alpha(settings, client, sample_docs) -> dict[str, str]:
    """Tenant alpha's key, with corpus ``reports`` (the sample PDF and PNG uploaded) indexed."""
    auth = _key(settings, "alpha")
    files = [("files", ("report.pdf", sample_docs["pdf"].read_bytes(), "application/pdf")),
             ("files", ("red.png", sample_docs["png"].read_bytes(), "image/png"))]
    r = client.post("/v1/corpora/reports/documents", files=files, headers=auth)
    assert r.status_code == 201, r.text
    assert r.json()["added"] == ["report.pdf", "red.png"] and r.json()["pages"] == 4
    wait_for(lambda: client.get("/v1/corpora/reports", headers=auth).json()["pages_indexed"] == 4,
             timeout_s=240, what="the uploaded pages to be indexed")
    return auth


@pytest.fixture(scope="module")
def beta(settings, client) -> dict[str, str]:
    return _key(settings, "beta")


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _submit(client, auth, rows: list[dict] | bytes, *, name="q.jsonl", **fields) -> dict:
    body = rows if isinstance(rows, bytes) else _jsonl(rows)
    r = client.post("/v1/jobs", files={"file": (name, body, "application/x-ndjson")},
                    data={"corpus": "reports", **fields}, headers=auth)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "validating" and r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    return r.json()


def _wait_end(client, auth, job_id: str, timeout_s: float = 240) -> dict:
    return wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}", headers=auth).json())["status"] in FINAL and j,
                    timeout_s=timeout_s, what=f"job {job_id} to end")


def _questions(n: int, prefix: str) -> list[dict]:
    return [{"custom_id": f"{prefix}-{i}", "question": f"{prefix}: what does page {i} of the report say?"}
            for i in range(n)]


def test_a_request_needs_a_valid_key(settings, client, alpha):
    assert client.get("/v1/jobs").status_code == 401
    r = client.get("/v1/jobs", headers={"Authorization": "Bearer pqa_not-a-key"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    with session_scope(settings) as session:
        new = keys.create_key(session, tenant="alpha", name="to revoke")
    headers = {"Authorization": f"Bearer {new.key}"}
    assert client.get("/v1/jobs", headers=headers).status_code == 200
    assert f"key {new.id} " in cli("keys", "revoke", str(new.id)).stdout
    assert client.get("/v1/jobs", headers=headers).status_code == 401
    with session_scope(settings) as session:
        stored = {k.key_hash for k in keys.list_keys(session, tenant="alpha")}
    assert keys.hash_key(new.key) in stored and new.key not in stored, "keys are stored hashed"


def test_health_reports_database_broker_and_workers(client):
    r = client.get("/v1/health")  # no key needed
    body = r.json()
    assert r.status_code == 200 and body["status"] == "ok", body
    assert body["database"]["ok"] and body["broker"]["ok"]
    assert body["workers"]["ok"] and body["workers"]["count"] >= 1, body


def test_a_job_from_upload_to_results(client, alpha):
    rows = [*_questions(3, "life"),
            {"custom_id": "no-question"},
            {"custom_id": "unknown-doc", "question": "x?", "document": "missing.pdf"},
            {"custom_id": "filtered", "question": "Which harvest figure?", "document": "report.pdf"}]
    job = _submit(client, alpha, rows, name="my questions.jsonl", priority="9", max_new_tokens="6")
    assert job["input_file"] == "my questions.jsonl" and job["options"]["priority"] == 9
    assert job["expires_at"] and job["created_at"] and job["completed_at"] is None

    final = _wait_end(client, alpha, job["id"])
    assert final["status"] == "completed", final
    counts = final["request_counts"]
    assert counts == {"total": 4, "completed": 4, "failed": 0, "expired": 0, "cancelled": 0, "queued": 0,
                      "running": 0}
    assert [(e["line"], e["code"]) for e in final["errors"]["data"]] == [(4, "invalid_input"),
                                                                        (5, "unknown_document")]
    assert final["errors"]["total"] == 2
    stamps = [dt.datetime.fromisoformat(final[k]) for k in
              ("created_at", "in_progress_at", "finalizing_at", "completed_at")]
    assert stamps == sorted(stamps) and final["cancelled_at"] is None and final["failed_at"] is None

    r = client.get(f"/v1/jobs/{job['id']}/results", headers=alpha)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert r.headers["content-disposition"] == f'attachment; filename="{job["id"]}-results.jsonl"'
    records = [json.loads(line) for line in r.text.splitlines()]
    assert [x["custom_id"] for x in records] == ["life-0", "life-1", "life-2", "filtered"]
    for x in records:
        assert x["status"] == "answered" and isinstance(x["answer"], str)
        assert x["citations"] and {c["document"] for c in x["citations"]} <= {"report.pdf", "red.png"}
        assert all(1 <= c["page"] <= 3 for c in x["citations"]) and "rerank_score" in x["citations"][0]
        assert set(x["timings_ms"]) == {"retrieve", "rerank", "generate"} and set(x["models"]) == {
            "retriever", "reranker", "generator"}
    assert {c["document"] for c in records[-1]["citations"]} == {"report.pdf"}, "the document filter holds"
    assert client.get(f"/v1/jobs/{job['id']}/errors", headers=alpha).text == "", "every stored question answered"

    as_csv = list(csv.DictReader(io.StringIO(client.get(f"/v1/jobs/{job['id']}/results?format=csv",
                                                        headers=alpha).text)))
    assert [(r["custom_id"], r["answer"], int(r["top_page"]), r["top_document"]) for r in as_csv] == [
        (x["custom_id"], x["answer"], x["citations"][0]["page"], x["citations"][0]["document"]) for x in records]


def test_cancel_keeps_answers_and_lists_the_rest_in_the_error_file(client, alpha):
    job = _submit(client, alpha, _questions(40, "cancel"), priority="0")
    r = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alpha)
    assert r.status_code == 200 and r.json()["status"] in ("cancelling", "cancelled"), r.text
    final = _wait_end(client, alpha, job["id"])
    assert final["status"] == "cancelled" and final["cancelling_at"] and final["cancelled_at"]
    counts = final["request_counts"]
    assert counts["total"] == 40 and counts["cancelled"] > 0
    assert counts["completed"] + counts["failed"] + counts["cancelled"] == 40
    errors = [json.loads(line) for line in client.get(f"/v1/jobs/{job['id']}/errors", headers=alpha).text.splitlines()]
    assert len(errors) == counts["cancelled"] + counts["failed"]
    assert {e["error"]["code"] for e in errors if e["status"] == "cancelled"} == {"batch_cancelled"}
    results = client.get(f"/v1/jobs/{job['id']}/results", headers=alpha).text.splitlines()
    assert len(results) == counts["completed"]
    assert {json.loads(x)["custom_id"] for x in results}.isdisjoint(e["custom_id"] for e in errors)
    again = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alpha)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


def test_an_expired_job_keeps_what_was_answered(settings, client, alpha):
    from services.reconcile import run_reconciler

    job = _submit(client, alpha, _questions(200, "expire"), completion_window="2s")  # the worker needs longer
    assert (dt.datetime.fromisoformat(job["expires_at"]) - dt.datetime.fromisoformat(job["created_at"])).seconds == 2
    wait_for(lambda: client.get(f"/v1/jobs/{job['id']}", headers=alpha).json()["request_counts"]["completed"] > 0,
             timeout_s=120, what="a first answer")
    time.sleep(max(0.0, (dt.datetime.fromisoformat(job["expires_at"]) - dt.datetime.now(dt.UTC)).total_seconds()))
    run_reconciler(settings)  # what beat runs every reconcile_every_seconds
    final = client.get(f"/v1/jobs/{job['id']}", headers=alpha).json()
    assert final["status"] == "expired" and final["expired_at"], final
    counts = final["request_counts"]
    assert counts["expired"] > 0 and counts["completed"] > 0
    assert counts["completed"] + counts["failed"] + counts["expired"] == counts["total"] == 200
    errors = [json.loads(x) for x in client.get(f"/v1/jobs/{job['id']}/errors", headers=alpha).text.splitlines()]
    assert sum(e["error"]["code"] == "batch_expired" for e in errors) == counts["expired"]
    time.sleep(3)  # a chunk the worker was running when the job expired ends without writing answers
    with session_scope(settings) as session:
        late = session.scalar(select(func.count()).select_from(Answer).join(Question, Question.id == Answer.question_id).where(
            Question.job_id == job["id"], Question.status == QuestionStatus.expired))
        answered = session.scalar(select(func.count()).select_from(Answer).join(Question, Question.id == Answer.question_id).where(
            Question.job_id == job["id"]))
    assert late == 0 and answered == counts["completed"]


def test_jobs_are_listed_a_page_at_a_time_and_by_status(client, beta):
    made = []
    for i in range(5):  # no corpus for beta's questions: each job fails validation at once
        r = client.post("/v1/jobs", json={"corpus": "none", "questions": [{"custom_id": "a", "question": "b"}]},
                        headers=beta)
        assert r.status_code == 404, r.text
        r = client.post("/v1/corpora/notes/documents", files=[("files", (f"n{i}.txt", b"text", "text/plain"))],
                        headers=beta)
        assert r.status_code == 400 and f"n{i}.txt" in r.json()["error"]["message"]
    for i in range(5):
        body = {"corpus": "reports", "questions": [{"custom_id": "x", "question": ""}], "options": {"priority": 1}}
        made.append(client.post("/v1/jobs", json=body, headers=beta))
    assert all(r.status_code == 404 for r in made), "beta has no corpus 'reports': alpha's is not visible"

    ids = []
    with session_scope(client.app.state.settings) as session:
        from db import corpus as corpus_db

        corpus_db.get_or_create_corpus(session, name="reports", tenant="beta")  # an empty corpus of beta's own
    for i in range(5):
        body = {"corpus": "reports", "questions": [{"custom_id": "x", "question": ""}]}
        ids.append(client.post("/v1/jobs", json=body, headers=beta).json()["id"])
    seen, after = [], None
    while True:
        page = client.get("/v1/jobs", params={"limit": 2, **({"after": after} if after else {})}, headers=beta).json()
        seen += [j["id"] for j in page["data"]]
        assert len(page["data"]) <= 2
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == ids[::-1], "newest first, each once"
    failed = client.get("/v1/jobs", params={"status": "failed", "limit": 100}, headers=beta).json()["data"]
    assert {j["id"] for j in failed} == set(ids) and all(j["errors"]["data"][0]["line"] == 1 for j in failed)
    assert client.get("/v1/jobs", params={"status": "completed"}, headers=beta).json()["data"] == []
    assert client.get("/v1/jobs", params={"status": "nonsense"}, headers=beta).status_code == 422


def test_a_tenant_cannot_reach_another_tenants_jobs_or_corpora(client, alpha, beta):
    job = _submit(client, alpha, _questions(30, "private"), priority="0")
    for method, path in [("get", ""), ("post", "/cancel"), ("get", "/results"), ("get", "/errors"),
                         ("get", "/results?format=csv")]:
        r = getattr(client, method)(f"/v1/jobs/{job['id']}{path}", headers=beta)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)
    listed = client.get("/v1/jobs", params={"limit": 100}, headers=beta).json()["data"]
    assert job["id"] not in {j["id"] for j in listed}
    assert client.get("/v1/jobs", params={"after": job["id"]}, headers=beta).status_code == 404
    assert client.get("/v1/corpora/reports", headers=beta).json()["documents"] == 0, "beta's own, empty corpus"
    assert "report.pdf" not in client.get("/v1/corpora/reports", headers=beta).text
    assert client.get(f"/v1/jobs/{job['id']}", headers=alpha).json()["status"] not in ("cancelling", "cancelled")
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=alpha)


def test_an_oversized_upload_is_refused_and_nothing_is_stored(settings, client, alpha):
    from api.app import create_app

    small = create_app(settings.model_copy(update={"max_upload_bytes": 2000}))
    def job_ids():  # ids, not live records: an earlier test's job may still be moving on
        return [j["id"] for j in client.get("/v1/jobs", params={"limit": 100}, headers=alpha).json()["data"]]

    before = job_ids()
    uploads = set((settings.home_dir / "uploads").iterdir())
    with TestClient(small) as c:
        r = c.post("/v1/jobs", files={"file": ("big.jsonl", _jsonl(_questions(100, "big")), "application/x-ndjson")},
                   data={"corpus": "reports"}, headers=alpha)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        chunked = c.post("/v1/jobs", content=iter([b"x" * 1500, b"y" * 1500]), headers={
            **alpha, "content-type": "application/json"})
        assert chunked.status_code == 413, "a body without Content-Length is counted as it streams"
    assert job_ids() == before
    assert set((settings.home_dir / "uploads").iterdir()) == uploads


def test_a_malformed_file_is_reported_by_line(client, alpha):
    body = b'{"custom_id": "ok", "question": "What is on page 1?"}\n{"custom_id": "broken", \n[1, 2]\n'
    job = _submit(client, alpha, body)
    final = client.get(f"/v1/jobs/{job['id']}", headers=alpha).json()  # validated before the client returned
    assert final["status"] in ("in_progress", "finalizing", "completed"), final
    assert [e["line"] for e in final["errors"]["data"]] == [2, 3] and final["request_counts"]["total"] == 1
    assert "invalid JSON" in final["errors"]["data"][0]["message"]
    assert "uploads" not in json.dumps(final["errors"]), "messages name no server path"

    bad = _submit(client, alpha, b"custom_id,question\n,no id\n", name="bad.csv")
    refused = client.get(f"/v1/jobs/{bad['id']}", headers=alpha).json()
    assert refused["status"] == "failed" and refused["failed_at"] and refused["request_counts"]["total"] == 0
    assert refused["errors"]["data"] == [{"line": 2, "code": "invalid_input", "message": "custom_id is missing or empty"}]

    strict = _submit(client, alpha, body, strict="true")
    assert client.get(f"/v1/jobs/{strict['id']}", headers=alpha).json()["status"] == "failed"
    r = client.post("/v1/jobs", files={"file": ("q.txt", b"hello", "text/plain")}, data={"corpus": "reports"},
                    headers=alpha)
    assert r.status_code == 400 and r.json()["error"]["message"] == "q.txt: question files are .csv or .jsonl"
    r = client.post("/v1/jobs", files={"file": ("q.jsonl", b"{}", "text/plain")},
                    data={"corpus": "reports", "priority": "12"}, headers=alpha)
    assert r.status_code == 400 and "priority" in r.json()["error"]["message"]


def test_a_corpus_ingested_from_the_cli_for_a_tenant_is_that_tenants(client, alpha, beta, sample_docs, tmp_path):
    cli("ingest", str(sample_docs["png"]), "--corpus", "from-cli", "--tenant", "alpha", "--no-wait")
    assert [c["documents"] for c in client.get("/v1/corpora", headers=alpha).json()["data"]
            if c["name"] == "from-cli"] == [1]
    assert "from-cli" not in {c["name"] for c in client.get("/v1/corpora", headers=beta).json()["data"]}
    questions = tmp_path / "q.jsonl"
    questions.write_bytes(_jsonl([{"custom_id": "a", "question": "What is red?"}]))
    refused = cli("submit", str(questions), "--corpus", "from-cli", ok=False)  # the default tenant's: none
    assert refused.exit_code == 1 and "no corpus named 'from-cli'" in refused.output


def test_text_postgresql_cannot_store_is_refused_before_it_gets_there(client, alpha):
    # found by the fuzz run: a NUL in a job id, cursor or name reached PostgreSQL, which refused it, and gave a 500
    assert client.get("/v1/jobs", params={"after": "\x00"}, headers=alpha).status_code == 404
    assert client.get("/v1/jobs/job_%00", headers=alpha).status_code == 404
    assert client.post("/v1/jobs/%00/cancel", headers=alpha).status_code == 404
    body = {"corpus": "re\x00ports", "questions": [{"custom_id": "a", "question": "b?"}]}
    assert client.post("/v1/jobs", json=body, headers=alpha).status_code == 400
    r = client.post("/v1/jobs", files={"file": ("q.jsonl", b'{"custom_id": "a", "question": "b?"}\n', "text/plain")},
                    data={"corpus": "re\x00ports"}, headers=alpha)
    assert r.status_code == 404 and "no corpus named" in r.json()["error"]["message"]
    r = client.post("/v1/jobs", files={"file": ("q.jsonl", b'{"custom_id": "a", "question": "b?"}\n', "text/plain")},
                    data={"corpus": "reports", "document_field": "doc\x00"}, headers=alpha)
    assert r.status_code == 400 and "document_field" in r.json()["error"]["message"]


def test_uploads_a_stopped_api_left_are_swept_at_start(settings):
    import os

    from api.app import STALE_UPLOAD_S, create_app

    uploads = settings.home_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    old_file, old_dir, fresh = uploads / "stale.jsonl", uploads / "docs-stale", uploads / "fresh.jsonl"
    for path in (old_file, fresh):
        path.write_text("{}\n")
    old_dir.mkdir(exist_ok=True)
    (old_dir / "a.pdf").write_bytes(b"%PDF")
    long_ago = time.time() - STALE_UPLOAD_S - 60
    for path in (old_file, old_dir):
        os.utime(path, (long_ago, long_ago))
    with TestClient(create_app(settings)):
        pass
    assert not old_file.exists() and not old_dir.exists() and fresh.exists()
    fresh.unlink()

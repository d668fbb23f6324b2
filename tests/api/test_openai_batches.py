"""Conformance of the OpenAI-compatible ``/v1/files`` and ``/v1/batches`` with the official ``openai`` SDK,
unmodified, against a real ``pageqa api`` process, the session's real worker, PostgreSQL and Redis.

Every File and Batch response is validated raw with the SDK's own models (``model_validate`` on the JSON as sent,
and no key the model does not declare), every output body with its ``ChatCompletion``. The README's example runs
verbatim."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from conftest import api_process, wait_for
from conftest import run_cli as cli
from openai.types import Batch, FileDeleted, FileObject
from openai.types.chat import ChatCompletion

pytestmark = pytest.mark.models
ROOT = Path(__file__).resolve().parents[2]
TENANT, OTHER, CORPUS = "oai", "oai-other", "acme"  # the README example's corpus
ENDED = ("completed", "failed", "expired", "cancelled")
STATUSES = ("validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled")


def _strict(model, raw: dict):
    """``model.model_validate(raw)``, after checking that ``raw`` has no key the model does not declare."""
    unknown = set(raw) - set(model.model_fields)
    assert not unknown, f"{model.__name__} does not declare {unknown}"
    return model.model_validate(raw)


def _line(custom_id, question, *, document: str | None = None, max_tokens: int | None = None, **overrides) -> dict:
    body = {"model": "pageqa", "messages": [{"role": "user", "content": question}]}
    if document:
        body["metadata"] = {"document": document}
    if max_tokens:
        body["max_tokens"] = max_tokens
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body, **overrides}


def _jsonl(lines: list) -> bytes:
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()


@pytest.fixture(scope="module")
def server(settings, worker, sample_docs):
    """A ``pageqa api`` process; the tenant's corpus ``acme`` holds the sample folder, indexed."""
    cli("ingest", str(sample_docs["root"]), "--corpus", CORPUS, "--tenant", TENANT)
    with api_process(settings, "test-openai") as url:
        yield url


def _client(server: str, tenant: str) -> openai.OpenAI:
    key = cli("keys", "create", "--tenant", tenant).stdout.strip()
    return openai.OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return _client(server, TENANT)


@pytest.fixture(scope="module")
def other(server) -> openai.OpenAI:
    return _client(server, OTHER)


def _upload(client: openai.OpenAI, lines: list, name: str = "questions.jsonl") -> FileObject:
    raw = client.files.with_raw_response.create(file=(name, _jsonl(lines)), purpose="batch").http_response.json()
    uploaded = _strict(FileObject, raw)
    assert (uploaded.purpose, uploaded.status, uploaded.filename) == ("batch", "processed", name)
    assert uploaded.bytes == len(_jsonl(lines)) and abs(uploaded.created_at - time.time()) < 60
    return uploaded


def _create(client: openai.OpenAI, file_id: str, **metadata: str) -> Batch:
    raw = client.batches.with_raw_response.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h",
        metadata={"corpus": CORPUS, **metadata}).http_response.json()
    batch = _strict(Batch, raw)
    assert batch.status == "validating" and batch.input_file_id == file_id and batch.output_file_id is None
    return batch


def _retrieve(client: openai.OpenAI, batch_id: str) -> Batch:
    batch = _strict(Batch, client.batches.with_raw_response.retrieve(batch_id).http_response.json())
    assert batch.status in STATUSES
    counts = batch.request_counts
    assert counts.completed + counts.failed <= counts.total
    return batch


def _until_ended(client: openai.OpenAI, batch_id: str, timeout_s: float = 180) -> Batch:
    return wait_for(lambda: (b := _retrieve(client, batch_id)).status in ENDED and b, timeout_s=timeout_s,
                    what=f"batch {batch_id} to end")


def _content(client: openai.OpenAI, file_id: str) -> list[dict]:
    info = _strict(FileObject, client.files.with_raw_response.retrieve(file_id).http_response.json())
    data = client.files.content(file_id).content
    assert info.purpose == "batch_output" and info.bytes == len(data)
    return [json.loads(line) for line in data.decode().splitlines()]


@pytest.fixture(scope="module")
def completed(client):
    """A batch of three valid lines and four refused ones, run to its end."""
    lines = [
        _line("apples", "How many tonnes of apples were harvested in 2023?", document="report.pdf", max_tokens=12),
        _line("cracks", [{"type": "text", "text": "How many cracks"}, {"type": "text", "text": "were found?"}]),
        "{not json",
        _line("embed", "What is this?", url="/v1/embeddings"),
        _line("revenue", "What did the quarterly revenue rise to?") | {"body": {"model": "x", "messages": [
            {"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Quarterly revenue?"}]}},
        _line("image", [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]),
        _line(7, "A number as custom_id?"),
    ]
    uploaded = _upload(client, lines)
    batch = _create(client, uploaded.id, note="kept as given")
    return {"file": uploaded, "created": batch, "ended": _until_ended(client, batch.id)}


def test_a_batch_runs_to_completed_with_chat_completions_citing_pages(client, completed):
    batch = completed["ended"]
    assert batch.status == "completed" and batch.endpoint == "/v1/chat/completions"
    assert batch.metadata == {"corpus": CORPUS, "note": "kept as given"}
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (3, 3, 0)
    stamps = [batch.created_at, batch.in_progress_at, batch.finalizing_at, batch.completed_at]
    assert all(stamps) and stamps == sorted(stamps) and batch.expires_at == batch.created_at + 86_400
    assert batch.failed_at is None and batch.cancelled_at is None and batch.error_file_id is None
    refused = [(e.line, e.code) for e in batch.errors.data]
    assert refused == [(3, "invalid_input"), (4, "invalid_url"), (6, "invalid_request"), (7, "invalid_custom_id")]
    assert all(e.message for e in batch.errors.data)

    output = _content(client, batch.output_file_id)
    assert [r["custom_id"] for r in output] == ["apples", "cracks", "revenue"]  # input order
    for record in output:
        assert record["error"] is None and record["response"]["status_code"] == 200
        assert record["id"].startswith("batch_req_") and record["response"]["request_id"]
        completion = ChatCompletion.model_validate(record["response"]["body"])
        assert completion.object == "chat.completion" and completion.choices[0].message.role == "assistant"
        assert isinstance(completion.choices[0].message.content, str) and completion.model
        assert abs(completion.created - batch.completed_at) < 120
        cited = completion.citations  # the documented extra key
        assert cited and all(c["page"] >= 1 and 0 <= c["rerank_score"] for c in cited)
        assert [c["rank"] for c in cited] == list(range(1, len(cited) + 1))
        assert 0.0 < completion.confidence <= 1.0  # the generator's probability of its answer
    apples = ChatCompletion.model_validate(output[0]["response"]["body"])
    assert {c["document"] for c in apples.citations} == {"report.pdf"}  # body.metadata.document filters


def test_the_batch_is_the_same_job_for_the_native_api_and_the_cli(client, completed, server):
    batch = completed["ended"]
    native = httpx.get(f"{server}/v1/jobs/{batch.id}", headers={"Authorization": f"Bearer {client.api_key}"}).json()
    assert native["status"] == "completed" and native["input_file"] == "questions.jsonl"
    assert native["request_counts"]["completed"] == 3 and native["errors"]["total"] == 4
    assert native["options"]["max_new_tokens"] == 12  # the lines' largest max_tokens
    status = cli("status", batch.id).stdout
    assert batch.id in status and "completed" in status


def test_batches_and_files_are_listed_a_page_at_a_time(client, completed):
    made = []
    for i in range(3):
        uploaded = _upload(client, [_line(f"p{i}", f"Page {i}?")], name=f"page-{i}.jsonl")
        made.append(_create(client, uploaded.id).id)
    first = client.batches.with_raw_response.list(limit=2).http_response.json()
    assert first["object"] == "list" and first["has_more"] is True and len(first["data"]) == 2
    assert first["first_id"] == first["data"][0]["id"] and first["last_id"] == first["data"][1]["id"]
    for raw in first["data"]:
        _strict(Batch, raw)
    listed = [b.id for b in client.batches.list(limit=2)]  # the SDK follows has_more with after=last id
    assert len(listed) == len(set(listed)) and listed[:3] == made[::-1] and completed["created"].id in listed
    created = [client.batches.retrieve(i).created_at for i in listed]
    assert created == sorted(created, reverse=True)

    page = client.files.with_raw_response.list(limit=2).http_response.json()
    assert page["has_more"] is True and [_strict(FileObject, raw).id for raw in page["data"]] == [
        page["first_id"], page["last_id"]]
    files = [f.id for f in client.files.list(limit=1)]
    assert len(files) == len(set(files)) and completed["file"].id in files
    outputs = [f for f in client.files.list(purpose="batch_output")]
    assert outputs and {f.purpose for f in outputs} == {"batch_output"}
    assert completed["ended"].output_file_id in [f.id for f in outputs]
    oldest_first = [f.id for f in client.files.list(order="asc", limit=2)]
    assert oldest_first == files[::-1]


def test_cancel_mid_batch_keeps_the_answers_and_lists_the_rest_in_the_error_file(client):
    ids = [f"c{i:03d}" for i in range(160)]
    batch = _create(client, _upload(client, [_line(i, f"Question {i} about the harvest?") for i in ids]).id)
    wait_for(lambda: _retrieve(client, batch.id).request_counts.completed >= 1, timeout_s=120, poll_s=0.05,
             what="a first answer")
    cancelled = _strict(Batch, client.batches.with_raw_response.cancel(batch.id).http_response.json())
    assert cancelled.status in ("cancelling", "cancelled") and cancelled.cancelling_at
    ended = _until_ended(client, batch.id)
    counts = ended.request_counts
    assert ended.status == "cancelled" and ended.cancelled_at >= ended.cancelling_at
    assert counts.total == 160 and counts.completed >= 1 and counts.failed >= 1
    assert counts.completed + counts.failed == 160
    answered, errors = _content(client, ended.output_file_id), _content(client, ended.error_file_id)
    assert len(answered) == counts.completed and len(errors) == counts.failed
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert all(e["response"] is None and e["error"]["message"] for e in errors)
    joined = sorted([r["custom_id"] for r in answered] + [e["custom_id"] for e in errors])
    assert joined == ids and [r["custom_id"] for r in answered] == sorted(r["custom_id"] for r in answered)
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)


def test_what_cannot_be_a_batch_is_refused_in_one_line(client):
    with pytest.raises(openai.BadRequestError, match="purpose 'fine-tune'"):
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="fine-tune")
    uploaded = _upload(client, [_line("one", "One?"), "[]", _line("two", "Two?", method="GET")])
    with pytest.raises(openai.BadRequestError, match="/v1/chat/completions"):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h",
                              metadata={"corpus": CORPUS})
    with pytest.raises(openai.BadRequestError, match="metadata.corpus"):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError, match="nowhere"):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
                              metadata={"corpus": "nowhere"})
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("job_" + "0" * 24)

    strict = _until_ended(client, _create(client, uploaded.id, strict="true").id)
    assert strict.status == "failed" and strict.failed_at and strict.request_counts.total == 0
    assert [(e.line, e.code) for e in strict.errors.data] == [(2, "invalid_input"), (3, "invalid_method")]
    assert strict.output_file_id is None and strict.error_file_id is None
    nothing = _until_ended(client, _create(client, _upload(client, ["[1]", _line("x", "")]).id).id)
    assert nothing.status == "failed" and [e.line for e in nothing.errors.data] == [1, 2]


def test_a_tenant_sees_none_of_another_tenants_files_or_batches(client, other, completed):
    batch, file_id = completed["ended"], completed["file"].id
    for call in (lambda: other.files.retrieve(file_id), lambda: other.files.content(file_id),
                 lambda: other.files.delete(file_id), lambda: other.files.content(batch.output_file_id),
                 lambda: other.batches.retrieve(batch.id), lambda: other.batches.cancel(batch.id),
                 lambda: other.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                              completion_window="24h", metadata={"corpus": CORPUS})):
        with pytest.raises(openai.NotFoundError):
            call()
    assert batch.id not in [b.id for b in other.batches.list()]
    assert file_id not in [f.id for f in other.files.list()]
    assert client.files.retrieve(file_id).id == file_id  # still there for its owner


def test_a_deleted_file_is_gone_and_its_batch_keeps_its_id(client, completed):
    uploaded = _upload(client, [_line("gone", "Gone?")])
    raw = client.files.with_raw_response.delete(uploaded.id).http_response.json()
    assert _strict(FileDeleted, raw).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
                              metadata={"corpus": CORPUS})
    assert client.batches.retrieve(completed["ended"].id).input_file_id == completed["file"].id


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use it from the OpenAI SDK", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_verbatim(server, client, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(_readme_example())
    env = {**os.environ, "OPENAI_BASE_URL": f"{server}/v1", "OPENAI_API_KEY": client.api_key}
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    printed = run.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in printed] == ["q1", "q2"]
    assert all(re.search(r"\| report\.pdf p\.[1-3](, report\.pdf p\.[1-3])*$", line) for line in printed), printed

"""The CLI against a real ``pageqa api`` server (a subprocess on a free port) with ``--api URL --api-key KEY``:
ingest uploads and waits for indexing, submit, status --watch, the output and error files downloaded, and the
API's refusals as one-line errors. The real PostgreSQL, Redis and worker of the session do the work."""

from __future__ import annotations

import csv
import io
import json

import pytest
from conftest import api_process
from conftest import run_cli as cli

pytestmark = pytest.mark.models
CORPUS = "cli-remote"
PAGES = {"report.pdf": 3, "red.png": 1, "green.jpg": 1, "blue.webp": 1}  # the sample folder's documents
# "[red]" in the file name: a name from the user or the server is printed as text, never read as rich markup
QUESTIONS = "ask [red].jsonl"


@pytest.fixture(autouse=True)
def wide_tables(monkeypatch):
    """Tables as wide as their rows (rich wraps cells at 80 columns when the output is not a terminal)."""
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture(scope="module")
def server(settings, worker):
    """The base URL of a ``pageqa api`` subprocess over the test services; stopped at the end of the module."""
    with api_process(settings, "test-api-cli") as url:
        yield url


@pytest.fixture(scope="module")
def api(server) -> list[str]:
    """``--api URL --api-key KEY`` of a new tenant, clitest."""
    key = cli("keys", "create", "--tenant", "clitest").stdout.strip()
    assert key.startswith("pqa_") and "\n" not in key, key
    return ["--api", server, "--api-key", key]


@pytest.fixture(scope="module")
def ingested(api, sample_docs):
    """The sample folder ingested through the API (uploaded, then waited for until the workers indexed it)."""
    return cli("ingest", str(sample_docs["root"]), "--corpus", CORPUS, *api)


@pytest.fixture(scope="module")
def job(api, ingested, tmp_path_factory) -> dict:
    """A job submitted through the API, its line 4 invalid, followed to its end with status --watch."""
    path = tmp_path_factory.mktemp("questions") / QUESTIONS
    rows = [{"custom_id": f"q{i}", "question": f"What does page {i} of the report say?"} for i in range(1, 4)]
    rows += [{"custom_id": "empty", "question": ""},
             {"custom_id": "harvest", "question": "How many tonnes of apples?", "document": "report.pdf"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    submitted = cli("submit", str(path), "--corpus", CORPUS, "--max-new-tokens", "6", *api)
    job_id = submitted.stdout.strip().splitlines()[-1]
    watched = cli("status", job_id, "--watch", *api)
    return {"id": job_id, "path": path, "submitted": submitted, "watched": watched}


def _rows(table: str) -> list[list[str]]:
    """The cells of each body row of a rich table."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in table.splitlines() if line.startswith("│")]


def test_ingest_uploads_the_files_and_waits_until_every_page_is_indexed(ingested, api, sample_docs, tmp_path):
    assert ingested.stdout.strip() == "4 documents added (6 pages), 0 skipped as already in the corpus"
    assert "uploading documents" in ingested.stderr and "indexing pages" in ingested.stderr
    direct = _rows(cli("corpora", "--tenant", "clitest").stdout)
    assert [r[:6] for r in direct] == [[CORPUS, "clitest", "4", "6", "6", "0"]], "indexed before ingest returned"

    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"not a PDF at all")
    again = cli("ingest", str(sample_docs["root"]), str(bad), "--corpus", CORPUS, *api, ok=False)
    assert again.exit_code == 1
    assert again.stdout.strip() == "0 documents added (0 pages), 4 skipped as already in the corpus"
    (error,) = [line for line in again.stderr.splitlines() if line.startswith("error")]
    assert error.startswith("error bad.pdf: "), again.stderr


def test_submit_reports_the_invalid_row_by_line_and_watch_follows_the_job(job):
    assert job["id"].startswith("job_")
    assert f"skipped {job['path']}:4: question is missing or empty" in job["submitted"].stderr
    assert "4 questions queued" in job["submitted"].stderr
    assert job["watched"].stdout.startswith(f"{job['id']} completed: 4 answered, 0 failed, 0 running, 0 queued of 4")
    assert job["id"] in job["watched"].stderr, "the progress bar names the job"


def test_a_refused_file_is_one_error_and_leaves_a_failed_job(job, api):
    out = cli("submit", str(job["path"]), "--corpus", CORPUS, "--strict", *api, ok=False)
    assert out.exit_code == 1 and out.stdout == "", "no job id on stdout for a refused file"
    (line,) = out.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"error: 1 invalid rows (--strict); first: {job['path']}:4: question is missing"), line
    refused = line.rsplit("(job ", 1)[1].split()[0]
    assert cli("status", refused, *api).stdout.startswith(f"{refused} failed: 0 answered"), "the job keeps why"


def test_downloads_stream_to_files_and_match_the_database(job, api, tmp_path):
    files = {}
    for kind in ("results", "errors"):
        for fmt in ("jsonl", "csv"):
            files[kind, fmt] = tmp_path / f"{kind}.{fmt}"
            out = cli(kind, job["id"], "--format", fmt, "-o", str(files[kind, fmt]), *api)
            assert f"{kind} written to {files[kind, fmt]}" in out.stderr

    records = [json.loads(line) for line in files["results", "jsonl"].read_text().splitlines()]
    assert [r["custom_id"] for r in records] == ["q1", "q2", "q3", "harvest"], "the invalid row is not a question"
    for r in records:
        assert r["citations"], r
        assert all(c["document"] in PAGES and 1 <= c["page"] <= PAGES[c["document"]] for c in r["citations"]), r
    assert {c["document"] for c in records[-1]["citations"]} == {"report.pdf"}
    assert files["errors", "jsonl"].read_text() == "", "every valid question was answered"
    as_csv = list(csv.DictReader(io.StringIO(files["results", "csv"].read_text())))
    assert [(r["custom_id"], int(r["top_page"])) for r in as_csv] == [
        (r["custom_id"], r["citations"][0]["page"]) for r in records]

    # the database side: pageqa results JOB without --api reads every tenant's jobs
    assert files["results", "jsonl"].read_text() == cli("results", job["id"]).stdout
    assert files["results", "csv"].read_text() == cli("results", job["id"], "--format", "csv").stdout
    assert files["errors", "csv"].read_text() == cli("errors", job["id"], "--format", "csv").stdout
    assert cli("results", job["id"], *api).stdout == cli("results", job["id"]).stdout, "to stdout as well"


def test_a_refused_key_is_one_line_naming_the_setting(server):
    out = cli("jobs", "--api", server, "--api-key", "pqa_not-a-key", ok=False)
    assert out.exit_code == 1
    assert out.stderr.strip().count("\n") == 0 and "PAGEQA_API_KEY" in out.stderr, out.stderr
    assert "unknown or revoked" in out.stderr


def test_unknown_jobs_and_ended_jobs_are_refused(job, api, tmp_path):
    out = cli("status", "job_doesnotexist", *api, ok=False)
    assert out.exit_code == 1 and "no job 'job_doesnotexist'" in out.stderr, out.stderr
    target = tmp_path / "never.jsonl"
    out = cli("results", "job_doesnotexist", "-o", str(target), *api, ok=False)
    assert out.exit_code == 1 and "no job" in out.stderr and not target.exists(), "no file for a 404"
    out = cli("cancel", job["id"], *api, ok=False)
    assert out.exit_code == 1, out.stdout
    assert f"job {job['id']} has already ended (completed)" in out.stderr, out.stderr
    out = cli("jobs", "--tenant", "other", *api, ok=False)
    assert out.exit_code == 1 and "the API key names the tenant" in out.stderr


def test_jobs_and_corpora_list_the_tenants_own(job, api):
    listed = _rows(cli("jobs", *api).stdout)
    assert [job["id"], "completed", "4", QUESTIONS] in [[r[-1], *r[:3]] for r in listed], listed
    assert "tenant" not in cli("jobs", *api).stdout, "the key is the tenant: no tenant column"

    (row,) = _rows(cli("corpora", *api).stdout)
    assert row[:5] == [CORPUS, "4", "6", "6", "0"]
    one = cli("corpora", CORPUS, *api).stdout
    assert f"corpus {CORPUS}: 4 documents, 6 pages (6 indexed, 0 failed)" in one
    assert {r[0]: r[3] for r in _rows(one)} == {name: str(n) for name, n in PAGES.items()}
    assert _rows(cli("corpora", CORPUS, "--tenant", "clitest").stdout) == _rows(one), "the database side alike"

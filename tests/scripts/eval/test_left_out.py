"""``pageqa eval`` on a samples.json with malformed records, as MMLongBench-Doc's own has (two records whose
evidence page is 0): they are left out, named by index and counted in the report, and the rest are evaluated;
``--strict`` refuses the file before anything is ingested."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import PDF_PAGES, make_pdf
from conftest import run_cli as cli
from sqlalchemy import func, select

from db.engine import session_scope
from db.schema import Corpus


def _dataset(root: Path) -> Path:
    """pdfs/report.pdf (3 pages) and 4 records: records 1 and 3 have evidence page 0."""
    (root / "pdfs").mkdir(parents=True)
    make_pdf(root / "pdfs" / "report.pdf", PDF_PAGES)
    base = {"doc_id": "report.pdf", "doc_type": "Research report", "answer_format": "Str",
            "evidence_sources": "['Pure-text (Plain-text)']"}
    records = [
        {**base, "question": "How many tonnes of apples were harvested?", "answer": "41", "evidence_pages": "[1]"},
        {**base, "question": "What page is zero?", "answer": "none", "evidence_pages": "[0]"},
        {**base, "question": "How many cracks were found?", "answer": "3", "evidence_pages": "[2]"},
        {**base, "question": "And this one?", "answer": "x", "evidence_pages": "[0, 2]"},
    ]
    (root / "samples.json").write_text(json.dumps(records), encoding="utf-8")
    return root


def _corpus_exists(settings, name: str) -> bool:
    with session_scope(settings) as session:
        return bool(session.scalar(select(func.count()).select_from(Corpus).where(Corpus.name == name)))


def test_strict_refuses_the_file_before_anything_is_ingested(settings, services, tmp_path):
    data = _dataset(tmp_path / "bad-records")
    refused = cli("eval", str(data), "--corpus", "eval-strict", "--strict", "--no-spawn-worker", ok=False)
    assert refused.exit_code == 1
    assert refused.output == (f"error: 2 invalid records (--strict); first: {data}/samples.json:1: record 1: "
                              "evidence_pages must be 1-based page numbers, got [0]\n")
    assert not _corpus_exists(settings, "eval-strict")


@pytest.mark.models
def test_bad_records_are_left_out_counted_and_the_rest_evaluated(settings, worker, tmp_path):
    data = _dataset(tmp_path / "bad-records")
    ran = cli("eval", str(data), "--corpus", "eval-left-out", "--no-spawn-worker", "--output", str(tmp_path / "out"),
              "--lanes", "lexical,dense")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["left_out"] == {"records": 2, "errors": [
        f"{data}/samples.json:1: record 1: evidence_pages must be 1-based page numbers, got [0]",
        f"{data}/samples.json:3: record 3: evidence_pages must be 1-based page numbers, got [0, 2]",
    ]}
    assert report["throughput"]["questions"] == 2 and report["answers"]["n_answerable"] == 2
    assert {lane: m["n"] for lane, m in report["retrieval"].items()} == {"lexical": 2, "dense": 2, "fused": 2}
    assert "## Records left out: 2 (malformed in samples.json; not evaluated)" in ran.stdout
    assert f"skipped {data}/samples.json:1: record 1: evidence_pages" in ran.stderr

"""MMLongBench-Doc reader: the real dev set read in place, and malformed directories refused with the record named."""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from pageqa.errors import InputError
from scripts.eval.mmlongbench import SOURCE_CATEGORIES, read_samples, source_category

DEV = Path(__file__).parents[3].parent / "shared/data/mmlongbench_dev"
logger = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def dev_samples():
    if not (DEV / "samples.json").is_file():
        pytest.skip(f"the MMLongBench-Doc dev set is not at {DEV}")
    return read_samples(DEV)


def test_dev_set_counts(dev_samples):
    assert len(dev_samples) == 306
    assert [s.index for s in dev_samples] == list(range(306))
    # The README's "237 answerable, 69 not answerable" counts records with / without evidence pages; by the
    # answer label there are 238 and 68: five answerable questions have no evidence page (whole-document
    # counting questions) and four "Not answerable" ones do have one.
    assert Counter(s.answerable for s in dev_samples) == {True: 238, False: 68}
    assert sum(bool(s.evidence_pages) for s in dev_samples) == 237
    assert sum(s.answerable and not s.evidence_pages for s in dev_samples) == 5
    assert sum(not s.answerable and bool(s.evidence_pages) for s in dev_samples) == 4
    assert all(s.answer_format == "None" for s in dev_samples if not s.answerable)


def test_dev_set_evidence_pages_are_within_each_pdf(dev_samples):
    with (DEV / "manifest.tsv").open(encoding="utf-8", newline="") as f:
        page_counts = {row["file"]: int(row["pages"]) for row in csv.DictReader(f, delimiter="\t")}
    assert {s.doc_id for s in dev_samples} <= set(page_counts)
    assert all(page >= 1 for s in dev_samples for page in s.evidence_pages)
    out_of_range = [(s.index, s.doc_id, p) for s in dev_samples for p in s.evidence_pages if p > page_counts[s.doc_id]]
    logger.info("evidence pages beyond the PDF's page count: %d %s", len(out_of_range), out_of_range)
    assert len(out_of_range) <= 3, out_of_range  # a handful of upstream records are doubtful, not more


def test_dev_set_sources_map_to_five_categories(dev_samples):
    categories = Counter(source_category(src) for s in dev_samples for src in s.evidence_sources)
    assert set(categories) == set(SOURCE_CATEGORIES)
    assert source_category("Pure-text (Plain-text)") == "text"
    assert source_category(" Generalized-text (Layout) ") == "layout"
    with pytest.raises(ValueError, match="unknown evidence source"):
        source_category("Video")


def _record(**changes) -> dict:
    record = {
        "doc_id": "a.pdf",
        "doc_type": "Academic paper",
        "question": "Which page?",
        "answer": "2",
        "evidence_pages": "[2]",
        "evidence_sources": "['Table']",
        "answer_format": "Int",
    }
    return record | changes


def _write(tmp_path: Path, records: list) -> Path:
    (tmp_path / "pdfs").mkdir(exist_ok=True)
    (tmp_path / "pdfs" / "a.pdf").write_bytes(b"%PDF-1.4\n")
    (tmp_path / "samples.json").write_text(json.dumps(records), encoding="utf-8")
    return tmp_path / "samples.json"


def test_small_valid_directory(tmp_path):
    _write(tmp_path, [_record(), _record(answer="Not answerable", evidence_pages="[]", answer_format="None")])
    first, second = read_samples(tmp_path)
    assert (first.index, first.evidence_pages, first.evidence_sources, first.answerable) == (0, (2,), ("Table",), True)
    assert (second.index, second.evidence_pages, second.answerable) == (1, (), False)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (_record(evidence_pages="[3,"), "evidence_pages is not a Python-literal list"),
        (_record(evidence_pages="[0, 2]"), "1-based page numbers"),
        (_record(evidence_pages="['3']"), "must be a list of int"),
        (_record(evidence_sources="['Video']"), "unknown evidence source"),
        (_record(doc_id="missing.pdf"), "is not a file in pdfs/"),
        ({k: v for k, v in _record().items() if k != "question"}, "field question is missing"),
        ("not an object", "expected a JSON object"),
    ],
)
def test_malformed_record_is_named_and_left_out(tmp_path, bad, message):
    path = _write(tmp_path, [_record(), bad, _record(question="Third?")])
    left_out: list[InputError] = []
    assert [s.index for s in read_samples(tmp_path, left_out=left_out)] == [0, 2]
    assert len(left_out) == 1 and message in str(left_out[0])
    assert str(left_out[0]).startswith(f"{path}:1: record 1: ") and left_out[0].line == 1
    with pytest.raises(InputError, match=message) as caught:
        read_samples(tmp_path, strict=True)
    assert str(caught.value).startswith(f"1 invalid records (--strict); first: {path}:1: record 1: ")


def test_upstream_records_with_evidence_page_0_are_left_out_and_the_rest_read(tmp_path):
    """MMLongBench-Doc's own samples.json has two records whose evidence page is 0; the reader used to stop at
    the first and evaluate nothing."""
    records = [_record(question=f"Q{i}?") for i in range(6)]
    records[2] = _record(evidence_pages="[0]")
    records[5] = _record(evidence_pages="[0, 3]")
    path = _write(tmp_path, records)
    left_out: list[InputError] = []
    samples = read_samples(tmp_path, left_out=left_out)
    assert [s.index for s in samples] == [0, 1, 3, 4]
    assert [str(e) for e in left_out] == [
        f"{path}:2: record 2: evidence_pages must be 1-based page numbers, got [0]",
        f"{path}:5: record 5: evidence_pages must be 1-based page numbers, got [0, 3]",
    ]
    with pytest.raises(InputError) as refused:
        read_samples(tmp_path, strict=True)
    assert str(refused.value) == f"2 invalid records (--strict); first: {left_out[0]}"
    _write(tmp_path, [records[2]])
    with pytest.raises(InputError, match=r"samples\.json: no valid record; first error: .*record 0: evidence_pages"):
        read_samples(tmp_path)


def test_missing_parts_are_refused(tmp_path):
    with pytest.raises(InputError, match="pdfs/ folder is missing"):
        read_samples(tmp_path)
    (tmp_path / "pdfs").mkdir()
    with pytest.raises(InputError, match="samples.json is missing"):
        read_samples(tmp_path)
    (tmp_path / "samples.json").write_text("[{", encoding="utf-8")
    with pytest.raises(InputError, match=r"samples\.json:1: not valid JSON"):
        read_samples(tmp_path)
    (tmp_path / "samples.json").write_text("{}", encoding="utf-8")
    with pytest.raises(InputError, match="expected a JSON list"):
        read_samples(tmp_path)

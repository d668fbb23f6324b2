"""The evaluation harness on a small subset of the real MMLongBench-Doc dev set, through the real worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.eval.run import run_eval, select_samples

DATA = Path(__file__).parents[3].parent / "shared" / "data" / "mmlongbench_dev"
pytestmark = [
    pytest.mark.models,
    pytest.mark.skipif(not DATA.exists(), reason=f"the dev set is not at {DATA}"),
]


def test_select_samples_picks_the_shortest_documents():
    samples, pdfs = select_samples(DATA, max_documents=2)
    assert [p.name for p in pdfs] == ["2303.05039v2.pdf", "2310.07609v1.pdf"]  # 9 and 10 pages
    assert {s.doc_id for s in samples} == {p.name for p in pdfs} and len(samples) == 16


def test_select_samples_limit_keeps_the_first_questions_and_their_documents():
    samples, pdfs = select_samples(DATA, limit=20)
    assert [s.index for s in samples] == list(range(20))
    assert sorted(p.name for p in pdfs) == sorted({s.doc_id for s in samples}) and len(pdfs) < 32


def test_eval_on_two_documents_scores_every_lane(settings, worker, tmp_path):
    report = run_eval(settings, DATA, corpus="eval-ci", max_documents=2, output=tmp_path, spawn_worker=False)

    retrieval = report["retrieval"]
    assert set(retrieval) == {"visual", "lexical", "dense", "fused"}
    for lane, m in retrieval.items():
        assert m["n"] == 13, lane  # 16 questions, 13 with evidence pages
        assert 0.0 <= m["hit@1"] <= m["hit@5"] <= m["hit@10"] <= 1.0, lane
        assert 0.0 <= m["ndcg@5"] <= 1.0 and 0.0 <= m["mrr"] <= 1.0
    # real text lanes on real papers: far above chance (5 of ~10 pages would give ~0.5)
    assert retrieval["lexical"]["hit@5"] >= 0.75 and retrieval["dense"]["hit@5"] >= 0.75
    assert retrieval["fused"]["hit@5"] >= 0.75

    answers = report["answers"]
    assert answers["n_answerable"] == 13 and answers["n_not_answerable"] == 3
    assert 0.0 <= answers["not_answerable_accuracy"] <= 1.0 and 0.0 <= answers["answerable_accuracy"] <= 1.0
    assert 0.0 <= answers["answer_contains_gold"] <= 1.0  # the old figure, under its own name
    # the tiny Qwen2-VL generator stores a confidence with every answer, so the halves are defined
    assert 0.0 <= answers["confidence_top_half_accuracy"] <= 1.0
    assert report["by_doc_type"]["Academic paper"]["n"] == 16
    assert report["throughput"]["pages"] == 19 and report["throughput"]["questions"] == 16

    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["retrieval"]["fused"]["hit@5"] == retrieval["fused"]["hit@5"]
    markdown = (tmp_path / "report.md").read_text()
    assert "| fused |" in markdown and "## By evidence source" in markdown
    assert '| "Not answerable" accuracy (MMLongBench-Doc rules) |' in markdown

    again = run_eval(settings, DATA, corpus="eval-ci", max_documents=2, output=tmp_path, spawn_worker=False)
    assert again["throughput"]["new_pages_ingested"] == 0, "an unchanged corpus is reused"

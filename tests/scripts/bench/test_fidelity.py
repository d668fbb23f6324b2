"""``pageqa bench fidelity`` on a corpus the session worker embedded with the tiny models: the sample documents and
a real MMLongBench-Doc paper (read in place), 15 pages. Small search settings make the first stage run (15 pages >
10 pooled candidates), so the two-stage path is what gets measured; its figures are checked against the searches
run directly, and against settings under which the agreement is known in advance."""

from __future__ import annotations

import contextlib
import math
import os
import re
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from db import corpus as corpus_db
from db import multivector as mv
from db.engine import search_connections, session_scope
from models.retriever import load_retriever
from pageqa.errors import ConfigError
from pageqa.settings import get_settings
from services.fidelity import figures, measure_fidelity, ndcg_at_k, question_texts, recall_at_k
from services.visual_search import SearchParams, exact_search, first_stage_candidates, two_stage_search

DATA = Path(__file__).parents[3].parent / "shared" / "data" / "mmlongbench_dev"
PAPER = DATA / "pdfs" / "2303.05039v2.pdf"  # 9 pages
pytestmark = [pytest.mark.models, pytest.mark.skipif(not PAPER.exists(), reason=f"{PAPER} is not there")]

CORPUS = "fidelity"
COMMAND = "PAGEQA_MODELS=tiny uv run pageqa bench fidelity --corpus fidelity"  # the start of a section's key
CPU = torch.device("cpu")
#: 15 pages > 10 pooled candidates: the first stage selects; 10 exact candidates can still give the whole top 10.
SMALL = SearchParams(per_token=4, ef_search=40, pooled_candidates=10, exact_candidates=10)
SMALL_ENV = {"PAGEQA_FIRST_STAGE_PER_TOKEN": "4", "PAGEQA_FIRST_STAGE_EF": "40", "PAGEQA_POOLED_CANDIDATES": "10",
             "PAGEQA_EXACT_CANDIDATES": "10"}
QUESTIONS = [
    "How many tonnes of apples were harvested?", "What did revenue rise to?", "Which colour is the block?",
    "What does Figure 1 show?", "Which datasets are used in the experiments?", "What is the main contribution?",
    "How many cracks did the bridge inspection find?", "What is in the blue image?", "Who are the authors?",
    "Which model performs best in the table?", "What is the green chart about?",
]


@contextlib.contextmanager
def env(**values: str):
    """The process's settings read with these ``PAGEQA_*`` variables set, as the CLI reads them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        get_settings.cache_clear()


def cell(output: str, figure: str) -> str:
    """The value of the table row whose figure starts with ``figure``."""
    found = re.search(rf"^\| {re.escape(figure)}[^|]* \| (.+) \|$", output, re.MULTILINE)
    assert found, f"no row {figure!r} in:\n{output}"
    return found.group(1)


@pytest.fixture(scope="module")
def corpus(settings, worker, sample_docs):
    run_cli("ingest", str(sample_docs["root"]), str(PAPER), "--corpus", CORPUS)  # waits for the embeddings
    return CORPUS


@pytest.fixture(scope="module")
def question_file(tmp_path_factory) -> Path:
    """The questions as CSV, with a repeated text, a document column and one invalid row (no question)."""
    path = tmp_path_factory.mktemp("fidelity") / "questions.csv"
    rows = [f'q{i},"{q}",{"report.pdf" if i == 0 else ""}' for i, q in enumerate(QUESTIONS)]
    rows += [f'dup,"{QUESTIONS[3]}",', "bad,,"]
    path.write_text("custom_id,question,document\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_recall_and_ndcg_by_hand():
    exact = list(range(1, 16))
    assert recall_at_k(exact, exact) == 1.0
    assert recall_at_k(exact[::-1], exact) == 0.5, "the worst 10 of 15 hold 5 of the best 10"
    assert recall_at_k([3, 1, 2], [1, 2, 3]) == 1.0, "a corpus under 10 pages: its whole exact top"
    assert ndcg_at_k([3.0, 2.0, 1.0], [3.0, 2.0, 1.0]) == 1.0
    reversed_ = (1 + 2 / math.log2(3) + 3 / 2) / (3 + 2 / math.log2(3) + 1 / 2)
    assert ndcg_at_k([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(reversed_) == pytest.approx(0.78999, abs=1e-5)
    want = [[(p, 20.0 - p) for p in range(1, 11)]]
    assert figures(want, want) == ([1.0], [1.0]), "the exact scan against itself"
    half = [[(p, 20.0 - p) for p in range(6, 16)]]
    recall, ndcg = figures(half, want)
    assert recall == [0.5] and 0.5 < ndcg[0] < 1.0


def test_small_settings_run_the_first_stage_and_the_figures_are_the_searches(settings, corpus, question_file,
                                                                             tmp_path):
    doc = tmp_path / "bench.md"
    with env(**SMALL_ENV) as small:
        out = run_cli("bench", "fidelity", "--corpus", corpus, "--questions", str(question_file), "--doc", str(doc),
                      "--limit", "50").stdout
        fid = measure_fidelity(small, corpus=corpus, questions=question_file, limit=50)
    assert cell(out, "questions") == "11", "11 distinct texts; the repeat and the invalid row are left out"
    assert cell(out, "pages: exact MaxSim scan / first-stage index") == "15 / 15"
    assert cell(out, "first stage ran") == "yes (15 pages > pooled_candidates 10)"
    assert "per_token=4, ef_search=40, pooled_candidates=10, exact_candidates=10" in out
    assert "11 distinct texts of questions.csv; 1 invalid rows skipped" in out

    # The same texts and searches run here directly, with the same settings: the same per-question figures.
    texts = question_texts(settings, corpus_id=_corpus_id(settings), tenant="default", path=question_file, limit=50)[0]
    want_recall, want_ndcg = _direct(settings, texts)
    assert fid.recall == want_recall and fid.ndcg == pytest.approx(want_ndcg, abs=1e-4)
    assert cell(out, "recall@10") == f"{sum(want_recall) / 11:.3f} ({min(want_recall):.3f})"
    assert cell(out, "questions with recall@10 < 1") == str(sum(r < 1 for r in want_recall))
    assert all(0.0 <= r <= 1.0 for r in fid.recall) and all(0.0 < n <= 1.0 + 1e-6 for n in fid.ndcg)
    assert len(fid.search_ms) == len(fid.exact_ms) == 11 and min(fid.search_ms + fid.exact_ms) > 0
    small_command = ("PAGEQA_MODELS=tiny PAGEQA_FIRST_STAGE_PER_TOKEN=4 PAGEQA_FIRST_STAGE_EF=40 "
                     "PAGEQA_POOLED_CANDIDATES=10 PAGEQA_EXACT_CANDIDATES=10 uv run pageqa bench fidelity "
                     f"--corpus fidelity --questions {question_file} --limit 50")
    assert doc.read_text().count(f"<!-- bench_fidelity {small_command} -->") == 1, "the settings are in its key"


def test_too_few_exact_candidates_cannot_find_the_top_10(corpus, question_file, tmp_path):
    # A search that keeps 5 pages finds at most half of each exact top 10: a comparison of the exact scan with
    # itself, or of the wrong lists, would not show it.
    with env(**{**SMALL_ENV, "PAGEQA_EXACT_CANDIDATES": "5"}):
        out = run_cli("bench", "fidelity", "--corpus", corpus, "--questions", str(question_file),
                      "--doc", str(tmp_path / "bench.md")).stdout
    mean, low = (float(x) for x in re.findall(r"[\d.]+", cell(out, "recall@10")))
    assert mean <= 0.5 and low <= 0.5
    assert cell(out, "questions with recall@10 < 1") == "11"
    assert float(cell(out, "nDCG@10").split()[0]) < 1.0


def test_past_questions_newest_first_and_default_settings_agree_by_construction(settings, corpus, tmp_path):
    for n, texts in enumerate((["Old question one?", "Shared question?"], ["New question?", "Shared question?"])):
        path = tmp_path / f"job{n}.csv"
        path.write_text("custom_id,question\n" + "".join(f'c{i},"{t}"\n' for i, t in enumerate(texts)))
        job_id = run_cli("submit", str(path), "--corpus", corpus).stdout.strip().splitlines()[-1]
        assert "completed" in run_cli("status", job_id, "--watch").stdout
    corpus_id = _corpus_id(settings)
    texts, source = question_texts(settings, corpus_id=corpus_id, tenant="default", path=None, limit=2)
    assert texts == ["Shared question?", "New question?"] and "past jobs" in source
    with pytest.raises(ConfigError, match="tenant 'nobody' has asked no question"):
        question_texts(settings, corpus_id=corpus_id, tenant="nobody", path=None, limit=2)

    doc = tmp_path / "bench.md"
    for _ in range(2):  # a rerun replaces its section
        out = run_cli("bench", "fidelity", "--corpus", corpus, "--doc", str(doc)).stdout
    assert cell(out, "questions") == "3"
    assert cell(out, "first stage ran").startswith("no (15 pages ≤ pooled_candidates 600")
    assert cell(out, "recall@10") == "1.000 (1.000)" and cell(out, "nDCG@10") == "1.0000 (1.0000)"
    text = doc.read_text()
    assert text.count(f"<!-- bench_fidelity {COMMAND} --limit 100 -->") == 1, "one section per command"
    assert "Machine: " in text and "pgvector" in text and "| recall@10" in text


def test_offline_set_compares_the_dense_lane_with_an_exact_passage_scan(corpus, question_file, tmp_path):
    with env(PAGEQA_MODELS="offline") as offline:
        out = run_cli("bench", "fidelity", "--corpus", corpus, "--questions", str(question_file),
                      "--doc", str(tmp_path / "bench.md")).stdout
        fid = measure_fidelity(offline, corpus=corpus, questions=question_file)
    assert "dense lane of `sentence-transformers/all-MiniLM-L6-v2`" in out
    exact_pages, indexed = cell(out, "pages: exact passage scan / with passages").split(" / ")
    assert exact_pages == indexed and 9 <= int(exact_pages) <= 15, "the paper's 9 pages have text"
    in_plan = cell(out, "HNSW index in the plan")
    assert in_plan == ("yes" if fid.first_stage else "no: PostgreSQL reads and sorts every passage, so the two agree")
    assert len(fid.recall) == 11 and all(0.0 <= r <= 1.0 for r in fid.recall)
    if not fid.first_stage:
        assert fid.recall == [1.0] * 11


def test_bad_input_is_one_line(settings, corpus, tmp_path):
    with session_scope(settings) as session:
        corpus_db.get_or_create_corpus(session, name="fidelity-empty")
    empty_file = tmp_path / "none.csv"
    empty_file.write_text("custom_id,question\nx,\n")
    cases = [
        (["--corpus", "nope"], "no corpus named 'nope'"),
        (["--corpus", corpus, "--tenant", "someone-else"], "no corpus named 'fidelity'"),
        (["--corpus", "fidelity-empty"], "corpus 'fidelity-empty' has no page embedded by"),
        (["--corpus", corpus, "--questions", str(empty_file)], "none.csv: the question file holds no valid question"),
    ]
    for args, message in cases:
        result = run_cli("bench", "fidelity", *args, "--doc", str(tmp_path / "bench.md"), ok=False)
        assert result.exit_code == 1 and message in result.stderr and len(result.stderr.splitlines()) == 1, args
    with env(PAGEQA_MODELS="offline"):
        result = run_cli("bench", "fidelity", "--corpus", "fidelity-empty", ok=False)
    assert result.exit_code == 1 and "corpus 'fidelity-empty' has no passage embedded by" in result.stderr
    assert not (tmp_path / "bench.md").exists(), "nothing is written for a refused run"


def _corpus_id(settings) -> int:
    with session_scope(settings) as session:
        return corpus_db.get_corpus(session, name=CORPUS).id


def _direct(settings, texts: list[str]) -> tuple[list[float], list[float]]:
    """Per text: recall@10 and nDCG@10 of the two-stage search with :data:`SMALL` against the exact scan, computed
    here with set arithmetic from the search functions themselves."""
    retriever = load_retriever(settings, device=CPU, dtype=torch.float32)
    queries = retriever.embed_queries(texts, batch_size=settings.query_batch_size)
    corpus_id = _corpus_id(settings)
    with session_scope(settings) as session:
        conn = mv.raw_connection(session)
        index = mv.visual_index(conn, corpus_id=corpus_id, model_id=retriever.model_id)
        exact = exact_search(conn, corpus_id=corpus_id, model_id=retriever.model_id, queries=queries,
                             document_ids=[None] * len(queries), k=10, device=CPU)
    conns = search_connections(settings)
    try:
        assert all(len(first_stage_candidates(conns, index, q, SMALL)) <= 10 for q in queries), "of 15 pages"
        two = two_stage_search(conns, index, queries, document_ids=[None] * len(queries), k=10, params=SMALL,
                               device=CPU)
    finally:
        for c in conns:
            c.rollback()
    recall = [len({p for p, _ in g} & {p for p, _ in w}) / 10 for g, w in zip(two, exact, strict=True)]
    ndcg = [sum(s / math.log2(r + 2) for r, (_, s) in enumerate(g)) / sum(s / math.log2(r + 2) for r, (_, s)
            in enumerate(w)) for g, w in zip(two, exact, strict=True)]
    return recall, ndcg

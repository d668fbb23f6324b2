"""Late-interaction search in PostgreSQL on a small synthetic corpus: the two-stage search against the exact scan
(the fidelity guard), corpus and document filters, and the refusal of mixed pooling."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from db import multivector as mv
from db.engine import session_scope
from db.schema import VISUAL_DIM, Corpus, Document, Page
from models.pooling import PoolingSpec, kmeans_pool, pool_pages
from pageqa.errors import ConfigError
from scripts.bench.synthetic import SyntheticCorpus
from scripts.bench.synthetic_mixed import MixedCorpus
from services.visual_search import SearchParams, exact_search, two_stage_search, visual_search

CPU = torch.device("cpu")
SPEC = PoolingSpec()
# Small enough that the first stage and both candidate cuts really select (300 pages > 100 candidates > 40).
PARAMS = SearchParams(per_token=200, ef_search=200, pooled_candidates=100, exact_candidates=40)
MODEL = "synthetic-test"


def _load(settings, name: str, corpus: SyntheticCorpus, docs: int) -> tuple[int, list[int], list[int]]:
    """Store ``corpus`` as corpus ``name`` split into ``docs`` documents; (corpus id, document ids, page ids)."""
    vectors = [v for start in corpus.batches() for v in corpus.batch(start)[0]]
    pooled = pool_pages(vectors, SPEC)
    per_doc = len(vectors) // docs
    with session_scope(settings) as session:
        c = Corpus(name=name)
        session.add(c)
        session.flush()
        documents = [Document(corpus_id=c.id, sha256=f"{name}{i}".ljust(64, "0"), title=f"d{i}", source=f"d{i}.pdf",
                              kind="pdf", page_count=per_doc, size_bytes=0) for i in range(docs)]
        session.add_all(documents)
        session.flush()
        pages = [Page(document_id=documents[i // per_doc].id, page_number=i % per_doc + 1, width=1, height=1,
                      image_format="none", image=b"", text="", text_source="none") for i in range(len(vectors))]
        session.add_all(pages)
        session.flush()
        conn = mv.raw_connection(session)
        index = mv.ensure_visual_index(conn, corpus_id=c.id, model_id=MODEL, pooling=SPEC.name, dim=VISUAL_DIM)
        tiers = [mv.PageTiers(p.id, p.document_id, v, pool.coarse, pool.fine) for p, v, pool in zip(pages, vectors, pooled, strict=True)]
        assert mv.store_tiers(conn, index, tiers, colpali_version="test", max_pixels=0) == len(pages)
        assert mv.store_tiers(conn, index, tiers, colpali_version="test", max_pixels=0) == 0, "idempotent"
        return c.id, [d.id for d in documents], [p.id for p in pages]


@pytest.fixture(scope="module")
def synthetic(settings, services):
    corpus = SyntheticCorpus(300, seed=3, batch_pages=150, n_topics=24)
    corpus_id, doc_ids, page_ids = _load(settings, "li-main", corpus, docs=3)
    other = _load(settings, "li-other", SyntheticCorpus(120, seed=4, batch_pages=120, n_topics=8), docs=1)
    queries, targets = corpus.queries(24, from_batches=2)
    return {"corpus_id": corpus_id, "doc_ids": doc_ids, "page_ids": page_ids, "queries": queries,
            "targets": [page_ids[t] for t in targets], "other_page_ids": set(other[2])}


@pytest.fixture(scope="module")
def adversarial(settings, services):
    """A corpus of 80 base pages, 100 needle pages (4 templates of 25 look-alikes) and 100 near-duplicate pages
    (runs of 8–64), with 6 queries per variant."""
    corpus = MixedCorpus(SyntheticCorpus(80, seed=11, batch_pages=50, n_topics=8), variant_pages=100, lookalikes=25)
    corpus_id, _, page_ids = _load(settings, "li-adversarial", corpus, docs=1)
    out = {"corpus_id": corpus_id, "n_pages": len(page_ids),
           "largest_group": max(corpus.block(v)[1].group_sizes().max() for v in corpus.variants())}
    for variant in ("needle", "near-duplicate"):
        queries, targets = corpus.queries(variant, 6, from_batches=2)
        out[variant] = {"corpus_id": corpus_id, "queries": queries, "targets": [page_ids[t] for t in targets]}
    return out


@pytest.mark.parametrize("variant", ["needle", "near-duplicate"])
def test_two_stage_returns_the_exact_top5_on_adversarial_pages(settings, adversarial, variant):
    # 280 pages > 100 pooled candidates: the HNSW first stage selects. The exact stage takes 70 pages, as many as
    # the largest look-alike group: the ranks after the first are near-ties within a group (a near-duplicate run
    # of 59 pages here), and with 40 exact candidates the pooled rescoring dropped one of the exact top 5.
    params = SearchParams(per_token=200, ef_search=200, pooled_candidates=100, exact_candidates=70)
    assert adversarial["n_pages"] > params.pooled_candidates >= params.exact_candidates >= adversarial["largest_group"]
    case = adversarial[variant]
    two, exact = _search(settings, case, [None] * len(case["queries"]), params=params)
    for got, want, target in zip(two, exact, case["targets"], strict=True):
        assert [p for p, _ in got] == [p for p, _ in want]
        assert got[0][0] == target, "the query's page first"


def _search(settings, synthetic, document_ids, *, params=PARAMS):
    with session_scope(settings) as session:
        conn = mv.raw_connection(session)
        index = mv.visual_index(conn, corpus_id=synthetic["corpus_id"], model_id=MODEL)
        two = two_stage_search(conn, index, synthetic["queries"], document_ids=document_ids, k=5, params=params,
                               device=CPU)
        exact = exact_search(conn, corpus_id=synthetic["corpus_id"], model_id=MODEL, queries=synthetic["queries"],
                             document_ids=document_ids, k=5, device=CPU)
    return two, exact


def test_two_stage_returns_the_exact_top5(settings, synthetic):
    # The first stage is approximate (HNSW with iterative, relaxed-order scans over one index shared by every
    # corpus), so its promise is a recall, not an identity: on this corpus the exact top 5 lie within the first
    # stage's top 15 of 100 and the pooled top 9 of 40, yet one CI run (a different machine, the whole suite's
    # corpora in the index) lost one rank-5 page of 120. At most 2 of the 120 exact top-5 pages may be missed
    # (recall@5 >= 0.98, the base corpus's goal in docs/benchmarks.md is recall@10 >= 0.95), and every page
    # returned carries its exact score.
    two, exact = _search(settings, synthetic, [None] * len(synthetic["queries"]))
    missed = 0
    for got, want, target in zip(two, exact, synthetic["targets"], strict=True):
        assert len(got) == 5 and got[0][0] == target, "a query built from a page finds that page first"
        exact_of = dict(want)
        both = [(s, exact_of[p]) for p, s in got if p in exact_of]
        assert np.allclose(*zip(*both), atol=1e-3), "scores are exact MaxSim"
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True), "best first"
        missed += len(set(exact_of) - {p for p, _ in got})
        assert not {p for p, _ in got} & synthetic["other_page_ids"], "the corpus filter holds"
    assert missed <= 2, f"{missed} of {5 * len(exact)} exact top-5 pages missed"


def test_document_filter_holds_through_the_index(settings, synthetic):
    # Each document has 100 pages, more than pooled_candidates: the filtered HNSW scan (iterative) runs.
    doc_of = dict(zip(synthetic["page_ids"], np.repeat(synthetic["doc_ids"], 100), strict=True))
    filters = [synthetic["doc_ids"][i % 3] for i in range(len(synthetic["queries"]))]
    two, exact = _search(settings, synthetic, filters)
    for got, want, doc in zip(two, exact, filters, strict=True):
        assert len(got) == 5 and all(doc_of[p] == doc for p, _ in got)
        assert [p for p, _ in got] == [p for p, _ in want]


def test_small_filters_skip_the_first_stage(settings, synthetic):
    # With room for a whole document among the candidates, its pages are scored without the index.
    wide = SearchParams(per_token=8, ef_search=8, pooled_candidates=150, exact_candidates=150)
    filters = [synthetic["doc_ids"][0]] * len(synthetic["queries"])
    two, exact = _search(settings, synthetic, filters, params=wide)
    assert two == [[(p, pytest.approx(s, abs=1e-3)) for p, s in e] for e in exact]


def test_mixed_pooling_is_refused(settings, synthetic):
    other = PoolingSpec(coarse=8, fine=32)
    with session_scope(settings) as session:
        conn = mv.raw_connection(session)
        with pytest.raises(ConfigError, match="pooling kmeans-v1:16/64:8"):
            mv.ensure_visual_index(conn, corpus_id=synthetic["corpus_id"], model_id=MODEL, pooling=other.name,
                                   dim=VISUAL_DIM)
    mismatched = settings.model_copy(update={"pool_coarse": 8, "pool_fine": 32})
    with pytest.raises(ConfigError, match="was indexed for synthetic-test with pooling"):
        visual_search(mismatched, synthetic["queries"][:1], corpus_id=synthetic["corpus_id"], document_ids=[None],
                      k=5, model_id=MODEL, device=CPU)
    with session_scope(settings) as session:
        index = mv.visual_index(mv.raw_connection(session), corpus_id=synthetic["corpus_id"], model_id=MODEL)
    assert index.pooling == SPEC.name, "the corpus keeps the pooling it was built with"


def test_fidelity_guard_setting_forces_the_exact_scan(settings, synthetic):
    # With another pooling the two-stage search would refuse (see above); the exact scan never reads the tiers.
    exact_settings = settings.model_copy(update={"exact_search": True, "pool_coarse": 8})
    got = visual_search(exact_settings, synthetic["queries"][:3], corpus_id=synthetic["corpus_id"],
                        document_ids=[None] * 3, k=5, model_id=MODEL, device=CPU)
    _, exact = _search(settings, synthetic, [None] * len(synthetic["queries"]))
    assert got == [[(p, pytest.approx(s, abs=1e-4)) for p, s in e] for e in exact[:3]]


def test_kmeans_pooling_finds_planted_clusters():
    g = torch.Generator().manual_seed(0)
    centers = torch.nn.functional.normalize(torch.randn(4, 128, generator=g), dim=-1)
    members = centers.repeat_interleave(25, dim=0) + 0.02 * torch.randn(100, 128, generator=g)
    page = torch.nn.functional.normalize(members, dim=-1)
    found = kmeans_pool(page[None], torch.ones(1, 100, dtype=torch.bool), 4, iters=8)[0]
    assert (found @ centers.T).max(dim=0).values.min() > 0.99, "every planted centre is recovered"


def test_short_pages_keep_one_pooled_vector_per_patch():
    short = np.eye(128, dtype=np.float16)[:5]
    pooled = pool_pages([short, np.eye(128, dtype=np.float16)[:100]], SPEC)
    assert pooled[0].coarse.shape == (5, 128) and pooled[0].fine.shape == (5, 128)
    assert pooled[1].coarse.shape == (16, 128) and pooled[1].fine.shape == (64, 128)
    assert pooled[0].coarse.dtype == np.float16


def test_worker_search_over_two_connections_equals_one(settings, synthetic):
    worker_settings = settings.model_copy(update={
        "first_stage_per_token": PARAMS.per_token, "first_stage_ef": PARAMS.ef_search,
        "pooled_candidates": PARAMS.pooled_candidates, "exact_candidates": PARAMS.exact_candidates,
        "search_connections": 2,
    })
    n = len(synthetic["queries"])
    got = visual_search(worker_settings, synthetic["queries"], corpus_id=synthetic["corpus_id"],
                        document_ids=[None] * n, k=5, model_id=MODEL, device=CPU)
    one, _ = _search(settings, synthetic, [None] * n)
    assert [[p for p, _ in hits] for hits in got] == [[p for p, _ in hits] for hits in one]


def test_a_new_document_joins_the_index_without_a_rebuild(settings, synthetic):
    extra = SyntheticCorpus(40, seed=9, batch_pages=40, n_topics=4)
    vectors, _ = extra.batch(0)
    with session_scope(settings) as session:
        doc = Document(corpus_id=synthetic["corpus_id"], sha256="added".ljust(64, "0"), title="added",
                       source="added.pdf", kind="pdf", page_count=40, size_bytes=0)
        session.add(doc)
        session.flush()
        pages = [Page(document_id=doc.id, page_number=i + 1, width=1, height=1, image_format="none", image=b"",
                      text="", text_source="none") for i in range(40)]
        session.add_all(pages)
        session.flush()
        conn = mv.raw_connection(session)
        index = mv.ensure_visual_index(conn, corpus_id=synthetic["corpus_id"], model_id=MODEL, pooling=SPEC.name,
                                       dim=VISUAL_DIM)
        tiers = [mv.PageTiers(p.id, doc.id, v, pool.coarse, pool.fine) for p, v, pool in zip(pages, vectors, pool_pages(vectors, SPEC),
                                                                           strict=True)]
        mv.store_tiers(conn, index, tiers, colpali_version="test", max_pixels=0)
        added = [p.id for p in pages]
    queries, targets = extra.queries(4, from_batches=1)
    try:
        got = visual_search(settings.model_copy(update={"pooled_candidates": 100}), queries,
                            corpus_id=synthetic["corpus_id"], document_ids=[None] * 4, k=5, model_id=MODEL,
                            device=CPU)
        assert [hits[0][0] for hits in got] == [added[t] for t in targets]
    finally:
        with session_scope(settings) as session:
            session.delete(session.get(Document, doc.id))


def test_index_rebuild_command(settings, synthetic):
    from typer.testing import CliRunner

    from scripts.cli import app

    runner = CliRunner()
    default = runner.invoke(app, ["index", "rebuild"])  # with the server's sized maintenance_work_mem and workers
    assert default.exit_code == 0 and "HNSW index rebuilt" in default.output, default.output
    result = runner.invoke(app, ["index", "rebuild", "--maintenance-work-mem", "256MB", "--workers", "1"])
    assert result.exit_code == 0, result.output
    rows = int(re.search(r"rebuilt over ([\d,]+) pooled vectors", result.stdout).group(1).replace(",", ""))
    assert rows >= 420 * 16, "at least the two synthetic corpora's coarse vectors"
    two, exact = _search(settings, synthetic, [None] * len(synthetic["queries"]))
    assert [[p for p, _ in h] for h in two] == [[p for p, _ in h] for h in exact], "the rebuilt index serves"
    bad = runner.invoke(app, ["index", "rebuild", "--maintenance-work-mem", "1GB; DROP TABLE pages"])
    assert bad.exit_code == 1 and "is not a size like 512MB" in bad.stderr
    with session_scope(settings) as session:
        exists = mv.raw_connection(session).execute(
            "SELECT count(*) FROM pg_indexes WHERE indexname = %s", (mv.HNSW_INDEX,)
        ).fetchone()[0]
    assert exists == 1, "a refused rebuild leaves the index in place"

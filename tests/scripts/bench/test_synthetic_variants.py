"""The adversarial pages of the retrieval benchmark have the structure they advertise (needle evidence in ≤ 5 % of
a page, the rest its template's; near-duplicate runs sharing most patches), are deterministic from the seed and
batch by batch, and their queries find their target page under exact MaxSim. No database here."""

from __future__ import annotations

import numpy as np
import torch

from models.late_interaction import maxsim
from scripts.bench.retrieval_report import Result, report
from scripts.bench.retrieval_variants import VariantResult
from scripts.bench.synthetic import SyntheticCorpus
from scripts.bench.synthetic_mixed import MixedCorpus
from services.visual_search import SearchParams

CORPUS = MixedCorpus(SyntheticCorpus(100, seed=5, batch_pages=50, n_topics=16), variant_pages=120, lookalikes=30)


def _pages(variant: str):
    first, _ = CORPUS.block(variant)
    batches = [CORPUS.detail(s) for s in CORPUS.batches() if CORPUS.variant_of(s) == variant]
    return first, [(p, o, s, g) for b in batches for p, o, s, g in zip(b.pages, b.own, b.shared, b.group,
                                                                           strict=True)]


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per patch position (of the shorter page): the two pages' patches are near-copies (cosine > 0.95)."""
    n = min(len(a), len(b))
    return (a[:n].astype(np.float32) * b[:n].astype(np.float32)).sum(axis=1) > 0.95


def test_the_corpus_is_base_then_needle_then_near_duplicate_blocks():
    assert CORPUS.n_pages == 340
    assert CORPUS.batches() == [0, 50, 100, 150, 200, 220, 270, 320]
    assert [CORPUS.variant_of(p) for p in (99, 100, 219, 220, 339)] == [
        "base", "needle", "needle", "near-duplicate", "near-duplicate"]
    base_pages, _ = SyntheticCorpus(100, seed=5, batch_pages=50, n_topics=16).batch(50)
    assert all(np.array_equal(a, b) for a, b in zip(CORPUS.batch(50)[0], base_pages, strict=True)), \
        "base pages are the plain synthetic corpus's"


def test_needle_evidence_is_at_most_5_percent_and_the_rest_is_the_template():
    _, pages = _pages("needle")
    assert sorted({g for *_, g in pages}) == [0, 1, 2, 3], "120 pages, 30 per template"
    for page, own, shared, _ in pages:
        assert 0.02 <= own.mean() <= 0.05, own.mean()
        assert not (own & shared).any()
    a, b, other = pages[0], pages[4], pages[1]  # pages 0 and 4 share template 0; page 1 has template 1
    assert a[3] == b[3] != other[3]
    outside = ~a[1] & ~b[1]
    assert _same(a[0], b[0])[outside].all(), "outside the evidence, look-alikes are copies of their template"
    assert not _same(a[0], b[0])[a[1]].any(), "the evidence is the page's own"
    assert _same(a[0], other[0]).mean() < 0.5, "another template is another page"


def test_near_duplicate_runs_share_most_patches_and_differ_in_a_few():
    _, pages = _pages("near-duplicate")
    groups = [g for *_, g in pages]
    assert groups == sorted(groups) and len(set(groups)) >= 2, "runs of consecutive pages"
    sizes = CORPUS.block("near-duplicate")[1].group_sizes()
    assert sizes.sum() == 120 and (sizes[:-1] >= 8).all() and (sizes <= 64).all()
    for (pa, oa, _, ga), (pb, ob, _, gb) in zip(pages, pages[1:], strict=False):
        same = _same(pa, pb)
        if ga == gb:
            assert same.mean() >= 0.7 and not same[oa].any(), "siblings share most patches, not the changed ones"
            assert 0.05 <= oa.mean() <= 0.15
        else:
            assert same.mean() < 0.5, "the next run is another page"


def test_pages_are_deterministic_and_batch_regenerable():
    again = MixedCorpus(SyntheticCorpus(100, seed=5, batch_pages=50, n_topics=16), variant_pages=120, lookalikes=30)
    for start in (150, 270):  # a needle batch and a near-duplicate batch, rebuilt alone by another instance
        assert all(np.array_equal(a, b) for a, b in zip(CORPUS.batch(start)[0], again.batch(start)[0], strict=True))
    other_seed = MixedCorpus(SyntheticCorpus(100, seed=6, batch_pages=50, n_topics=16), variant_pages=120,
                             lookalikes=30)
    assert not np.array_equal(CORPUS.batch(150)[0][0], other_seed.batch(150)[0][0])
    q1, t1 = CORPUS.queries("needle", 4)
    q2, t2 = again.queries("needle", 4)
    assert t1 == t2 and all(torch.equal(a, b) for a, b in zip(q1, q2, strict=True))


def test_exact_maxsim_finds_each_variant_query_s_target():
    pages = [p for s in CORPUS.batches() for p in CORPUS.batch(s)[0]]
    for variant in ("needle", "near-duplicate"):
        qs, targets = CORPUS.queries(variant, 8, from_batches=3)
        assert all(CORPUS.variant_of(t) == variant for t in targets)
        truth = maxsim(qs, pages, device=torch.device("cpu"))
        assert truth.argmax(dim=1).tolist() == targets, variant


def test_the_report_has_a_row_per_variant_and_says_why_one_falls_short():
    res = Result(1000, 2, 1, adversarial_pages=2000, copy_s=1.0, bytes_per_page={
        "page_embeddings": 2e5, "page_pool_vectors": 1.5e4, "visual_indexes": 0.0}, latency_ms=[50.0, 60.0],
        exact_ms=[900.0])
    good = VariantResult("base", "–", recalls=[1.0, 0.9], ndcgs=[1.0, 1.0], target_first=[True, True],
                         target_found=[True, True], first_target=[True, True], first_recalls=[1.0, 1.0], first_rank=[1, 2],
                         exact_target_first=[True, True], tie_spread=[0.1, 0.1], latency_ms=[50.0, 60.0])
    bad = VariantResult("needle", "500", recalls=[0.3, 0.5], ndcgs=[0.9, 0.9], target_first=[False, True],
                        target_found=[False, True], first_target=[True, True], first_recalls=[0.6, 0.6], first_rank=[3, float("inf")],
                        exact_target_first=[True, True], tie_spread=[0.01, 0.02], latency_ms=[70.0, 80.0])
    res.variants = [good, bad]
    body = report([res], params=SearchParams(), spec=__import__("models.pooling").pooling.PoolingSpec(),
                  n_connections=2)
    assert "| recall@10 of needle queries (below) | ≥ 0.90 | 0.400 |" in body
    assert "| needle | 1,000 | 500 | 2 | 0.400 (≥ 0.90) | no | 1.000 | 3 / – | 0.600 |" in body
    assert "| base | 1,000 | – | 2 | 0.950 (≥ 0.95) | yes |" in body
    assert "**needle, N = 1,000**: recall@10 0.400, 0.500 short of 0.90" in body
    assert "lost it for 50 %" in body and "base, N" not in body
    assert "| pages: base + adversarial (needle, near-duplicate) | 1,000 + 2,000 |" in body

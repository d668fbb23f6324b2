"""Reciprocal rank fusion (Cormack et al. 2009) on hand-computed cases."""

from __future__ import annotations

import pytest

from models.fusion import reciprocal_rank_fusion


def test_rrf_scores_and_order_match_the_formula():
    fused = reciprocal_rank_fusion(
        {"lexical": [(1, 9.0), (2, 5.0), (3, 1.0)], "dense": [(2, 0.9), (4, 0.8)]}, k=60
    )
    by_id = {f.page_id: f for f in fused}
    assert by_id[2].score == pytest.approx(1 / 62 + 1 / 61)
    assert by_id[1].score == pytest.approx(1 / 61)
    assert by_id[4].score == pytest.approx(1 / 62)
    assert [f.page_id for f in fused] == [2, 1, 4, 3]  # 1 and 4: 1/61 > 1/62
    assert by_id[2].lane_ranks == {"lexical": 2, "dense": 1} and by_id[2].lanes == ["dense", "lexical"]


def test_weights_top_n_and_ties():
    ranked = {"a": [(10, 1.0)], "b": [(20, 1.0)]}
    assert [f.page_id for f in reciprocal_rank_fusion(ranked)] == [10, 20]  # tie: lower page id first
    weighted = reciprocal_rank_fusion(ranked, weights={"b": 2.0}, top_n=1)
    assert [f.page_id for f in weighted] == [20] and weighted[0].score == pytest.approx(2 / 61)
    assert reciprocal_rank_fusion({}) == []


def test_a_page_listed_twice_in_one_lane_counts_once_at_its_best_rank():
    fused = reciprocal_rank_fusion({"a": [(1, 1.0), (1, 0.5), (2, 0.1)]}, k=1)
    assert {f.page_id: f.score for f in fused} == {1: pytest.approx(1 / 2), 2: pytest.approx(1 / 4)}

"""Evaluation metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from scripts.eval.metrics import (
    contains_answer,
    hit_at_k,
    levenshtein,
    mean_metrics,
    ndcg_at_k,
    normalize_answer,
    recall_at_k,
    reciprocal_rank,
)

# ranked [3, 1, 2], gold {1, 2}: gold pages at ranks 2 and 3.
NDCG_312 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))


def test_retrieval_metrics_for_gold_at_ranks_two_and_three():
    ranked, gold = [3, 1, 2], {1, 2}
    assert hit_at_k(ranked, gold, 1) == 0.0
    assert hit_at_k(ranked, gold, 2) == 1.0
    assert recall_at_k(ranked, gold, 2) == 0.5
    assert recall_at_k(ranked, gold, 5) == 1.0
    assert reciprocal_rank(ranked, gold) == 0.5
    assert ndcg_at_k(ranked, gold, 5) == pytest.approx(NDCG_312)
    assert ndcg_at_k(ranked, gold, 2) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(ranked, gold, 1) == 0.0


def test_gold_not_retrieved_scores_zero():
    ranked, gold = [1, 2, 3], {9}
    assert (hit_at_k(ranked, gold, 10), recall_at_k(ranked, gold, 10)) == (0.0, 0.0)
    assert (reciprocal_rank(ranked, gold), ndcg_at_k(ranked, gold, 10)) == (0.0, 0.0)
    assert reciprocal_rank([], gold) == 0.0


def test_k_larger_than_the_list():
    ranked, gold = [5], {5, 6}
    assert hit_at_k(ranked, gold, 10) == 1.0
    assert recall_at_k(ranked, gold, 10) == 0.5
    assert ndcg_at_k(ranked, gold, 10) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_ideal_dcg_uses_at_most_k_gold_pages_and_duplicates_count_once():
    assert ndcg_at_k([1, 2, 3], {1, 2, 3, 4, 5, 6}, 2) == pytest.approx(1.0)
    assert recall_at_k([1, 2, 3], {1, 2, 3, 4, 5, 6}, 2) == pytest.approx(2 / 6)
    assert ndcg_at_k([2, 2, 1], {2}, 5) == pytest.approx(1.0)
    assert recall_at_k([2, 2, 7], {2, 7}, 2) == 0.5


def test_empty_gold_and_bad_k_are_refused():
    with pytest.raises(ValueError, match="gold page set is empty"):
        hit_at_k([1], set(), 1)
    with pytest.raises(ValueError, match="gold page set is empty"):
        reciprocal_rank([1], set())
    with pytest.raises(ValueError, match="k must be at least 1"):
        ndcg_at_k([1], {1}, 0)


def test_mean_metrics_over_three_questions():
    rows = iter([([1, 2], {1}), ([3, 1, 2], {1, 2}), ([7, 8], {9})])
    means = mean_metrics(rows)
    assert means["n"] == 3
    assert means["hit@1"] == pytest.approx(1 / 3)
    assert means["hit@5"] == pytest.approx(2 / 3)
    assert means["hit@10"] == pytest.approx(2 / 3)
    assert means["recall@5"] == pytest.approx(2 / 3)
    assert means["mrr"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert means["ndcg@5"] == pytest.approx((1 + NDCG_312 + 0) / 3)
    assert set(mean_metrics([([1], {1})], ks=(3,))) == {"hit@3", "recall@3", "ndcg@3", "mrr", "n"}
    with pytest.raises(ValueError, match="no questions"):
        mean_metrics([])


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Cat, sat!", "cat sat"),
        ("An apple a day", "apple day"),
        ("1,000", "1000"),
        ("1,000,000.00", "1000000"),
        ("12.50", "12.5"),
        ("3.0", "3"),
        ("50%", "50"),
        ("5.30%.", "5.3"),
        ("$35,000", "35000"),
        ("2015,2016", "20152016"),  # not a thousands separator; the comma goes as punctuation
        ("version 1.2.30", "version 1.2.30"),  # not a decimal number: left alone
        ("P-15", "p15"),
        ("  “Hello”\n  World ", "hello world"),
    ],
)
def test_normalize_answer(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("flaw", "lawn") == 2
    assert levenshtein("", "abc") == 3
    assert levenshtein("same", "same") == 0


def test_contains_answer():
    passage = "Revenue rose to $1,000 in 2015, about 20% more. Sensors cost 12.50 each."
    assert contains_answer(passage, "1000")
    assert contains_answer(passage, "20%")
    assert contains_answer(passage, "12.5")
    assert contains_answer(passage, "sensor")  # words match as substrings
    assert not contains_answer(passage, "100")  # numbers only as whole tokens
    assert not contains_answer(passage, "15")
    assert not contains_answer(passage, "2.5")
    assert not contains_answer(passage, "Berlin")


def test_contains_answer_lists_need_every_item():
    assert contains_answer("A circle inside a rectangle.", "['Circle', 'Rectangle']")
    assert not contains_answer("A circle inside a square.", "['Circle', 'Rectangle']")
    assert contains_answer("anything", "[]")
    with pytest.raises(ValueError, match="empty after normalisation"):
        contains_answer("the cat", "The")

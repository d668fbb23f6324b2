"""MMLongBench-Doc's rule-based score against hand-worked cases of each answer format."""

from __future__ import annotations

import pytest

from scripts.eval.benchmark_score import anls_score, benchmark_score, clean_string, is_exact_match_string


@pytest.mark.parametrize(
    ("gold", "pred", "score"),
    [
        ("19", "19", 1.0), ("19", "19.0", 1.0), ("19", "19.9", 1.0),  # int(float(pred)) truncates, as upstream
        ("19", "20", 0.0), ("19", "19 people", 0.0), ("19", "", 0.0), ("19", "inf", 0.0), ("19", "Not answerable", 0.0),
        ("21%", "21", 0.0), ("yes", "yes", 0.0),  # a gold answer that is no integer never matches, as upstream
    ],
)
def test_int_is_exact_after_parsing(gold, pred, score):
    assert benchmark_score(gold, pred, "Int") == score


@pytest.mark.parametrize(
    ("gold", "pred", "score"),
    [
        ("21%", "21", 1.0), ("21%", "21%", 1.0), ("21%", "0.21", 1.0),  # percentages either way
        ("7.0", "7", 1.0), ("73.0", "73.5", 1.0),  # within 1% relative
        ("73.0", "75", 0.0), ("21%", "2100", 1.0), ("$12.5", "12.50", 1.0), ("12.5", "twelve", 0.0),
    ],
)
def test_float_within_tolerance(gold, pred, score):
    assert benchmark_score(gold, pred, "Float") == score


def test_str_by_anls_unless_exact_kind():
    assert benchmark_score("Berlin School of Experimental Psychology", "berlin school of experimental psychology",
                           "Str") == 1.0
    assert benchmark_score("Europe", "Europa", "Str") == pytest.approx(1 - 1 / 6)
    assert benchmark_score("Europe", "Asia", "Str") == 0.0
    assert benchmark_score("Eating out", "Eating out (restaurants)", "Str") == 1.0  # parentheses dropped
    assert benchmark_score("2015-2016", "2015-2017", "Str") == 0.0  # number-like: exact only
    assert benchmark_score("https://example.org/a", "https://example.org/b", "Str") == 0.0


def test_not_answerable_gold_is_scored_as_a_string():
    assert benchmark_score("Not answerable", "Not answerable", "None") == 1.0
    assert benchmark_score("Not answerable", "not answerable.", "None") == pytest.approx(1 - 1 / 15)
    assert benchmark_score("Not answerable", "42", "None") == 0.0


def test_lists_as_sorted_sets():
    gold = "['Circle', 'Rectangle']"
    assert benchmark_score(gold, "['rectangle', 'circle']", "List") == 1.0  # order ignored
    assert benchmark_score(gold, "['circle']", "List") == 0.0  # lengths differ
    assert benchmark_score(gold, "Circle, Rectangle", "List") == 0.0  # not a list: one item
    assert benchmark_score(gold, "['Circles', 'Rectangle']", "List") == pytest.approx(1 - 1 / 7)  # least ANLS
    assert benchmark_score("[16, 19, 25]", "[25, 16, 19]", "List") == 1.0  # numbers: joined equality
    assert benchmark_score("[16, 19, 25]", "[25, 16, 18]", "List") == 0.0
    assert benchmark_score("[]", "[]", "List") == 1.0
    assert benchmark_score("[]", "nothing", "List") == 0.0
    assert benchmark_score(gold, "[Circle", "List") == 0.0  # not a literal: one item, never executed


def test_helpers_match_upstream():
    assert clean_string(' "$1,000 (approx.)" ') == "1,000"
    assert clean_string("45%") == "45"
    assert is_exact_match_string("2019-05") and is_exact_match_string("page 4") and not is_exact_match_string("europe")
    assert anls_score("ab", "ax") == 0.0  # 0.5 is not above the threshold
    assert anls_score("", "") == 1.0


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown answer_format 'Bool'"):
        benchmark_score("yes", "yes", "Bool")

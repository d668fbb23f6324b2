"""MMLongBench-Doc's rule-based answer score: a short predicted answer against the gold one, by ``answer_format``.

A re-implementation of ``eval_score`` in ``eval/eval_score.py`` of the benchmark's repository
(``mayubo2333/MMLongBench-Doc``; Ma et al., NeurIPS 2024 Datasets and Benchmarks, arXiv 2407.01523), rule by rule:

* ``Int``: ``int(gold) == int(float(pred))``; a prediction that does not parse as a number scores 0, and so does
  every prediction when the gold answer is no integer (upstream's ``int(gt)`` fails and it compares with "").
* ``Float``: both sides cleaned (:func:`clean_string`) and parsed; equal when within a relative tolerance of 1%
  (``math.isclose``) or equal after rounding to the shorter precision (at least 2 decimals), trying the gold
  value, its hundredth and its hundredfold (percentages written either way).
* ``Str`` and ``None`` (the "Not answerable" gold answers): both sides cleaned; exact equality for strings that
  must match exactly (:func:`is_exact_match_string`: URLs, file names, "page …", phone numbers, times, dates,
  e-mail addresses), otherwise ANLS with threshold 0.5 (a continuous score in [0, 1]).
* ``List``: Python-literal lists on both sides (a non-list is a one-item list); 0 when the lengths differ; both
  sorted after cleaning; joined equality when the first gold item is a number or an exact-match string, else the
  least ANLS of the item pairs.

Upstream first turns a model's free-form response into a short answer with an LLM (GPT-4o) prompt; pageqa's
answers are already short, so they are scored as they are. Deviations, all where upstream would crash or
execute input: list literals are read with :func:`ast.literal_eval` instead of ``eval``, and a prediction that is
not a valid literal is taken as one item. Upstream's ``get_clean_string`` means to strip the units "mile",
"miles" and "million" but discards the result (``s.rstrip(...)`` without assignment); that no-op is kept, so
scores match the published ones.
"""

from __future__ import annotations

import ast
import math
import re

from scripts.eval.metrics import levenshtein

ANLS_THRESHOLD = 0.5
FLOAT_REL_TOL = 0.01
FORMATS = ("Int", "Float", "Str", "List", "None")

_EXACT_PATTERNS = (
    re.compile(r"\b\d+(-\d+|\s\d+)?\b"),  # telephone numbers, plain numbers
    re.compile(r"\b\d{4}[-\s]\d{2}[-\s]\d{2}\b"),  # YYYY-MM-DD
    re.compile(r"\b\d{4}[-\s]\d{2}\b"),  # YYYY-MM
    re.compile(r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}"),  # e-mail address
)


def anls_score(gold: str, pred: str, threshold: float = ANLS_THRESHOLD) -> float:
    """Upstream's ``anls_compute``: 1 - levenshtein / longer length, set to 0 when it is at most ``threshold``;
    case-sensitive (callers pass cleaned, lowercased strings); two empty strings score 1."""
    longest = max(len(gold), len(pred))
    score = 1.0 - (levenshtein(gold, pred) / longest if longest else 0.0)
    return 0.0 if score <= threshold else score


def clean_string(s: object) -> str:
    """Upstream's ``get_clean_string``: lowercased and stripped, parenthesised parts removed, one leading and one
    trailing quote removed, then a leading "$" and a trailing "%"."""
    s = str(s).lower().strip()
    s = re.sub(r"\s*\([^)]*\)", "", s).strip()
    s = re.sub(r"^['\"]|['\"]$", "", s).strip()
    return s.lstrip("$").strip().rstrip("%").strip()


def is_exact_match_string(s: str) -> bool:
    """Upstream's ``is_exact_match``: whether a cleaned gold string must be matched exactly rather than by ANLS."""
    if "https://" in s or s.endswith((".py", "ipynb")) or s.startswith("page") or "a.m." in s or "p.m." in s:
        return True
    return any(p.fullmatch(s) for p in _EXACT_PATTERNS)


def _float(s: object) -> float | None:
    try:
        return float(s)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _precision(x: float) -> int:
    text = str(x)
    return len(text.split(".")[-1]) if "." in text else 3


def is_float_equal(gold: float, pred: float) -> bool:
    """Upstream's ``is_float_equal`` with ``include_percentage=True, is_close=True``: ``pred`` matches ``gold``,
    ``gold / 100`` or ``gold * 100`` within a relative tolerance of 1%, or after rounding both to the shorter of
    their decimal precisions (at least 2)."""
    for item in (gold / 100, gold, gold * 100):
        if math.isclose(item, pred, rel_tol=FLOAT_REL_TOL):
            return True
        digits = max(min(_precision(pred), _precision(item)), 2)
        if round(pred, digits) == round(item, digits):
            return True
    return False


def _as_list(value: str) -> list:
    if value.startswith("["):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return [value]
        return parsed if isinstance(parsed, list) else [parsed]
    return [value]


def _score_list(gold: str, pred: str) -> float:
    gold_items, pred_items = _as_list(gold), _as_list(pred)
    if len(gold_items) != len(pred_items):
        return 0.0
    if not gold_items:
        return 1.0
    gold_clean = sorted(clean_string(a) for a in gold_items)
    pred_clean = sorted(clean_string(a) for a in pred_items)
    if _float(gold_clean[0]) is not None or is_exact_match_string(gold_clean[0]):
        return float("-".join(gold_clean) == "-".join(pred_clean))
    return min(anls_score(g, p) for g, p in zip(gold_clean, pred_clean, strict=True))


def benchmark_score(gold: str, pred: str, answer_format: str) -> float:
    """MMLongBench-Doc's score of ``pred`` against ``gold`` in [0, 1] (1 or 0 except for ANLS-scored strings).

    ``answer_format`` is the sample's: Int, Float, Str, List or None (see the module docstring for each rule).

    Raises:
        ValueError: an unknown ``answer_format``, or a Float gold answer that is not a number.
    """
    pred = pred.strip()
    if answer_format == "Int":  # a gold answer that is no integer ("21%", "yes": 3 dev records) never matches
        p, g = _float(pred), gold.strip()
        return float(p is not None and math.isfinite(p) and g.lstrip("+-").isdigit() and int(g) == int(p))
    if answer_format == "Float":
        g = _float(clean_string(gold))
        if g is None:
            raise ValueError(f"Float gold answer {gold!r} is not a number")
        p = _float(clean_string(pred))
        return float(p is not None and math.isfinite(p) and is_float_equal(g, p))
    if answer_format in ("Str", "None"):
        g, p = clean_string(gold), clean_string(pred)
        return float(g == p) if is_exact_match_string(g) else anls_score(g, p)
    if answer_format == "List":
        return _score_list(gold, pred)
    raise ValueError(f"unknown answer_format {answer_format!r}; expected one of {', '.join(FORMATS)}")

"""Evaluation metrics for page retrieval and document question answering.

Retrieval metrics take, for one question, the ranked list of retrieved page numbers (best first; ranks are
1-based) and the set of gold evidence pages, with binary relevance. A page that appears twice in ``ranked``
counts once, at its first rank. Questions without gold pages have no defined retrieval score: the caller
leaves them out, and every function here raises ``ValueError`` on an empty gold set.

Answer helpers: SQuAD-style normalisation (Rajpurkar et al., EMNLP 2016, "SQuAD: 100,000+ Questions for Machine
Comprehension of Text", official evaluation script) extended with number normalisation, for "the passage contains
the gold answer"; and the edit distance that the benchmark's ANLS (``scripts.eval.benchmark_score``) uses.
"""

from __future__ import annotations

import ast
import math
import re
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

# --- page retrieval -------------------------------------------------------------------------------------------


def _gold_ranks(ranked: Sequence[Hashable], gold: set, k: int | None = None) -> list[int]:
    """1-based ranks, within the top ``k`` (all when None), of the gold pages, each at its first occurrence."""
    if not gold:
        raise ValueError("the gold page set is empty; leave such questions out")
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    seen: set = set()
    ranks = []
    for rank, page in enumerate(ranked[:k] if k is not None else ranked, start=1):
        if page in gold and page not in seen:
            ranks.append(rank)
        seen.add(page)
    return ranks


def hit_at_k(ranked: Sequence[Hashable], gold: set, k: int) -> float:
    """1.0 if any gold page is among the top ``k`` retrieved pages, else 0.0 (a.k.a. success@k)."""
    return 1.0 if _gold_ranks(ranked, gold, k) else 0.0


def recall_at_k(ranked: Sequence[Hashable], gold: set, k: int) -> float:
    """Share of the gold pages found among the top ``k`` retrieved pages, in [0, 1]."""
    return len(_gold_ranks(ranked, gold, k)) / len(gold)


def reciprocal_rank(ranked: Sequence[Hashable], gold: set) -> float:
    """1 / (1-based rank of the first gold page), 0.0 if no gold page was retrieved; its mean is MRR
    (Voorhees, TREC-8 Question Answering Track report, 1999)."""
    ranks = _gold_ranks(ranked, gold)
    return 1.0 / ranks[0] if ranks else 0.0


def ndcg_at_k(ranked: Sequence[Hashable], gold: set, k: int) -> float:
    """Normalised discounted cumulative gain at ``k`` with binary gains, in [0, 1].

    DCG@k = sum over gold pages at rank r <= k of 1 / log2(r + 1); the ideal DCG places min(|gold|, k) gold
    pages at ranks 1, 2, ... (Järvelin & Kekäläinen, ACM TOIS 2002, "Cumulated gain-based evaluation of IR
    techniques").
    """
    dcg = sum(1.0 / math.log2(rank + 1) for rank in _gold_ranks(ranked, gold, k))
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold), k) + 1))
    return dcg / ideal


def mean_metrics(rows: Iterable[tuple[Sequence[Hashable], set]], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Mean retrieval metrics over questions, each row being ``(ranked pages, gold pages)``.

    Returns ``hit@k``, ``recall@k`` and ``ndcg@k`` for every ``k`` in ``ks`` (so hit@1, hit@5, hit@10, recall@5
    and ndcg@5 with the default), ``mrr`` and ``n`` (the number of questions, as a float).

    Raises:
        ValueError: no rows, or a row with an empty gold set.
    """
    sums: Counter[str] = Counter()
    n = 0
    for ranked, gold in rows:
        for k in ks:
            sums[f"hit@{k}"] += hit_at_k(ranked, gold, k)
            sums[f"recall@{k}"] += recall_at_k(ranked, gold, k)
            sums[f"ndcg@{k}"] += ndcg_at_k(ranked, gold, k)
        sums["mrr"] += reciprocal_rank(ranked, gold)
        n += 1
    if n == 0:
        raise ValueError("no questions to average over")
    means = {name: total / n for name, total in sorted(sums.items())}
    means["n"] = float(n)
    return means


# --- answers --------------------------------------------------------------------------------------------------

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMAL = re.compile(r"(?<!\d\.)\b(\d+)\.(\d+)\b(?!\.\d)")
# Any punctuation or symbol (Unicode-aware, unlike SQuAD's ASCII-only set), except a decimal point in a number.
_PUNCTUATION = re.compile(r"(?!(?<=\d)\.(?=\d))(?:[^\w\s]|_)")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def _strip_decimal(match: re.Match) -> str:
    fraction = match.group(2).rstrip("0")
    return f"{match.group(1)}.{fraction}" if fraction else match.group(1)


def normalize_answer(s: str) -> str:
    """Lowercase; normalise numbers ("1,000" -> "1000", "12.50" -> "12.5", "3.0" -> "3"); delete punctuation
    and symbols ("50%" -> "50", "P-15" -> "p15") but keep decimal points; drop the articles a/an/the; collapse
    whitespace. SQuAD's normalisation (Rajpurkar et al. 2016) plus the number rules."""
    s = _THOUSANDS.sub("", s.lower())
    s = _DECIMAL.sub(_strip_decimal, s)
    s = _PUNCTUATION.sub("", s)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def parse_list_answer(s: str) -> list[str] | None:
    """The items of a Python-literal list answer such as ``"['a', 'b']"`` or ``"[16, 19]"`` (MMLongBench-Doc
    ``answer_format == "List"``; JSON lists of strings parse too), as strings; None if ``s`` is not one."""
    text = s.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return [str(item) for item in value] if isinstance(value, list) else None


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, each of cost 1) between two strings;
    Wagner & Fischer (JACM 1974) dynamic programme, O(len(a) * len(b)) time, O(len(b)) memory."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def _contains(passage: str, item: str) -> bool:
    """Whether normalised ``item`` occurs in normalised ``passage``; an edge of ``item`` that is a digit must be
    a token boundary in the passage, so "15" is not found in "150", "2015", "p15" or "1.5"."""
    if not item:
        raise ValueError("the gold answer is empty after normalisation")
    left = r"(?<!\S)" if item[0].isdigit() else ""
    right = r"(?!\S)" if item[-1].isdigit() else ""
    return re.search(left + re.escape(item) + right, passage) is not None


def contains_answer(passage: str, gold: str) -> bool:
    """Whether the normalised passage contains the normalised gold answer (see ``normalize_answer``).

    Words match as substrings ("sensor" is found in "sensors"); numbers only as whole tokens. For a list gold
    answer every item must be found (an empty list is trivially contained).

    Raises:
        ValueError: a gold answer (or list item) that normalises to the empty string.
    """
    text = normalize_answer(passage)
    items = parse_list_answer(gold)
    if items is None:
        items = [gold]
    return all(_contains(text, normalize_answer(item)) for item in items)

"""The offline model set's answer stage: the most relevant sentence window of a question's top pages, or "Not
answerable" when no window scores high enough.

Score of a window: cosine(question, window) of the text encoder (all-MiniLM-L6-v2, see models.text_encoder) plus
``lexical_weight`` x the share of the question's key terms (numbers, and capitalised words after the first) that
occur as words in the window; dense retrievers are known to miss exact numbers and names (Sciavolino et al., EMNLP
2021, "Simple Entity-Centric Questions Challenge Dense Retrievers"). On MMLongBench-Doc gold pages the bonus never
helped (weights 0.05-0.2: the best window contained the gold answer for 0-1 more and 2-6 fewer of 238 answerable
questions), so ``LEXICAL_WEIGHT`` is 0 and the bonus is left to be re-measured on retrieved pages.
Calibration: scripts/eval/calibrate_extractive.py.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.passages import split_sentences
from models.text_encoder import TextEncoder
from pageqa.domain import NOT_ANSWERABLE

log = logging.getLogger(__name__)

LEXICAL_WEIGHT = 0.0  # measured: see the module docstring
NO_TEXT_SCORE = -1.0  # the lowest cosine: the score of a question whose pages hold no text

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CAPITALISED = re.compile(r"[A-Z][\w&-]*")
_WORD = re.compile(r"[\w&-]+")


@dataclass(frozen=True)
class PageText:
    """The text layer (PDF text or OCR) of one page."""

    page_id: int
    text: str


@dataclass(frozen=True)
class Extract:
    """An extractive answer: a window of 1-3 consecutive sentences of one page, or ``NOT_ANSWERABLE``.

    ``score`` is the best window's score (see the module docstring), also when below the threshold;
    ``NO_TEXT_SCORE`` when the pages hold no text. ``page_id`` is None when not answerable.
    """

    answer: str
    page_id: int | None
    score: float
    answerable: bool


def key_terms(question: str) -> frozenset[str]:
    """The question's numbers (thousands separators dropped) and capitalised words other than the first word,
    lowercased: ``"How many staff did Acme have in 2019?"`` -> ``{"acme", "2019"}``."""
    rest = " ".join(question.split()[1:])
    numbers = {n.replace(",", "") for n in _NUMBER.findall(rest)}
    names = {w.lower() for w in _CAPITALISED.findall(rest)}
    return frozenset(numbers | names)


def lexical_overlap(terms: frozenset[str], window: str) -> float:
    """Share of ``terms`` (see ``key_terms``) found as whole words or numbers in ``window``, in [0, 1]; 0 when
    there are no terms."""
    if not terms:
        return 0.0
    found = {w.lower() for w in _WORD.findall(window)} | {n.replace(",", "") for n in _NUMBER.findall(window)}
    return len(terms & found) / len(terms)


def sentence_windows(text: str, size: int) -> list[str]:
    """Every run of ``size`` consecutive sentences of ``text`` (stride 1), or the whole text when it has fewer;
    ``[]`` for a page without text."""
    sentences = split_sentences(text)
    if len(sentences) <= size:
        return [" ".join(sentences)] if sentences else []
    return [" ".join(sentences[i : i + size]) for i in range(len(sentences) - size + 1)]


class ExtractiveAnswerer:
    """Returns the most relevant sentence window of the top pages as the answer, or NOT_ANSWERABLE below a
    threshold.

    Args:
        encoder: the text encoder; its embeddings must be L2-normalised (dot product = cosine).
        threshold: a best window scoring below it gives ``NOT_ANSWERABLE``.
        window: sentences per window, 1-3 (pages with fewer sentences give one window of all of them).
        lexical_weight: weight of the key-term share added to the cosine.

    Raises:
        ValueError: ``window`` is not 1, 2 or 3.
    """

    def __init__(self, encoder: TextEncoder, *, threshold: float, window: int = 2,
                 lexical_weight: float = LEXICAL_WEIGHT):
        if window not in (1, 2, 3):
            raise ValueError(f"window must be 1, 2 or 3 sentences, got {window}")
        self.encoder, self.threshold, self.window, self.lexical_weight = encoder, threshold, window, lexical_weight

    def answer(self, questions: Sequence[str], pages: Sequence[Sequence[PageText]]) -> list[Extract]:
        """One ``Extract`` per question, in order; ``pages[i]`` are the pages to answer ``questions[i]`` from.

        Every question and every distinct window of all questions' pages go through one ``encode()`` call.

        Raises:
            ValueError: ``questions`` and ``pages`` differ in length.
        """
        if len(questions) != len(pages):
            raise ValueError(f"{len(questions)} questions but {len(pages)} page lists")
        windows = [self._windows(page_list) for page_list in pages]  # per question: [(page_id, text)]
        texts = list(dict.fromkeys([*questions, *(text for ws in windows for _, text in ws)]))
        row = {text: i for i, text in enumerate(texts)}
        vectors = self.encoder.encode(texts)  # (n_texts, dim), unit rows
        return [self._best(q, ws, vectors, row) for q, ws in zip(questions, windows, strict=True)]

    def _scores(self, question: str, windows: Sequence[str], vectors: np.ndarray, row: dict[str, int]) -> np.ndarray:
        """``(n_windows,) float32`` window scores: cosine plus the weighted key-term share (module docstring)."""
        if not windows:
            return np.zeros(0, dtype=np.float32)
        cosine = vectors[[row[w] for w in windows]] @ vectors[row[question]]  # (n_windows,)
        if not self.lexical_weight:
            return cosine
        terms = key_terms(question)
        bonus = np.array([lexical_overlap(terms, w) for w in windows], dtype=np.float32)
        return cosine + np.float32(self.lexical_weight) * bonus

    def _windows(self, pages: Sequence[PageText]) -> list[tuple[int, str]]:
        return [(p.page_id, w) for p in pages for w in sentence_windows(p.text, self.window)]

    def _best(self, question: str, windows: list[tuple[int, str]], vectors: np.ndarray,
              row: dict[str, int]) -> Extract:
        scores = self._scores(question, [text for _, text in windows], vectors, row)
        if scores.size == 0:
            return Extract(NOT_ANSWERABLE, None, NO_TEXT_SCORE, False)
        best = int(np.argmax(scores))  # ties: the first window of the first page
        score = float(scores[best])
        if score < self.threshold:
            return Extract(NOT_ANSWERABLE, None, score, False)
        page_id, text = windows[best]
        return Extract(text, page_id, score, True)

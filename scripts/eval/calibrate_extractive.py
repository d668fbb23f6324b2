"""Calibrate the offline extractive answerer (models/extractive.py) on MMLongBench-Doc; print Markdown tables.

    uv run python -m scripts.eval.calibrate_extractive [--data DIR] [--window 2] [--lexical-weight 0.0]

Pages given to the answerer, as text layers read in place with pypdfium2 (no OCR: a page without a text layer is
empty): for an answerable question its gold evidence pages; for a "Not answerable" question the ``NA_PAGES`` pages
of its document most similar to it (max cosine over the page's 100-word passages, all-MiniLM-L6-v2), which is what
the dense lane would retrieve for it.

A window "contains the gold answer" by ``scripts.eval.metrics.contains_answer`` (lowercase, punctuation dropped,
"1,000" -> "1000", "12.50" -> "12.5", numbers only as whole tokens); for a list gold answer any one item is
enough (the "all items" rate is printed too). At a threshold t: "NA acc" is the share of "Not answerable"
questions whose best window scores below t; "answered" the share of answerable questions at or above t;
"answerable acc" the share answered with a window that contains the gold answer. The suggested threshold is the
lowest of the grid with NA acc >= ``TARGET_NA_ACCURACY``.

Limits: answerable questions get their gold pages, not retrieved ones, so answered and accuracy rates are upper
bounds for the pipeline; the threshold (and ``LEXICAL_WEIGHT``, the window size) are chosen on the same 306
questions they are measured on (in-sample); containment is not correctness (yes/no and counting questions, short
numbers found by chance).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pypdfium2 as pdfium
import typer

from models.extractive import (
    LEXICAL_WEIGHT,
    NO_TEXT_SCORE,
    ExtractiveAnswerer,
    PageText,
    sentence_windows,
)
from models.passages import split_passages
from models.text_encoder import DEFAULT_TEXT_MODEL, TextEncoder
from pageqa.errors import InputError, PageQAError
from scripts.eval.metrics import contains_answer, normalize_answer, parse_list_answer
from scripts.eval.mmlongbench import Sample, read_samples

log = logging.getLogger(__name__)

DATA_DIR = Path("/work/shared/data/mmlongbench_dev")
NA_PAGES = 3
TARGET_NA_ACCURACY = 0.60
THRESHOLDS = tuple(round(0.25 + 0.025 * i, 3) for i in range(17))  # 0.25 .. 0.65


def page_texts(pdf: Path) -> list[str]:
    """The pypdfium2 text layer of every page of ``pdf``, in page order (index 0 = page 1).

    Raises:
        InputError: the PDF cannot be opened.
    """
    try:
        doc = pdfium.PdfDocument(pdf)
    except pdfium.PdfiumError as exc:
        raise InputError(str(exc), source=str(pdf)) from exc
    texts = []
    with doc:
        for i in range(len(doc)):
            page = doc[i]
            textpage = page.get_textpage()
            texts.append(textpage.get_text_range())
            textpage.close()
            page.close()
    return texts


def most_similar_pages(encoder: TextEncoder, questions: Sequence[str], texts: Sequence[str], k: int) -> list[list[int]]:
    """Per question, the 0-based indices of the ``k`` pages with the highest max cosine between the question and
    the page's passages (``split_passages``, 100 words), best first; pages without text are never chosen."""
    passages = [(i, p) for i, text in enumerate(texts) for p in split_passages(text)]
    vectors = encoder.encode([*questions, *(p for _, p in passages)])  # (n_questions + n_passages, dim)
    cosine = vectors[len(questions) :] @ vectors[: len(questions)].T  # (n_passages, n_questions)
    owner = np.array([i for i, _ in passages], dtype=np.int64)
    best = np.full((len(texts), len(questions)), -np.inf)  # (n_pages, n_questions)
    np.maximum.at(best, owner, cosine)
    return [[int(i) for i in np.argsort(-best[:, q], kind="stable")[:k] if np.isfinite(best[i, q])]
            for q in range(len(questions))]


def page_sets(samples: Sequence[Sample], pdf_dir: Path, encoder: TextEncoder) -> list[list[PageText]]:
    """The pages given to the answerer for each sample (module docstring); ``page_id`` is the 1-based page."""
    texts = {doc: page_texts(pdf_dir / doc) for doc in sorted({s.doc_id for s in samples})}
    chosen: dict[int, list[int]] = {s.index: [p - 1 for p in s.evidence_pages] for s in samples if s.answerable}
    for doc, doc_texts in texts.items():
        unanswerable = [s for s in samples if s.doc_id == doc and not s.answerable]
        if unanswerable:
            tops = most_similar_pages(encoder, [s.question for s in unanswerable], doc_texts, NA_PAGES)
            chosen.update({s.index: top for s, top in zip(unanswerable, tops, strict=True)})
    return [[PageText(i + 1, texts[s.doc_id][i]) for i in chosen[s.index] if i < len(texts[s.doc_id])]
            for s in samples]


def retrieved_page_sets(job_id: str, samples: Sequence[Sample], top: int) -> list[list[PageText]]:
    """The pages an evaluation job (``pageqa eval``) gave its questions: the top ``top`` fused pages of each
    (custom_id ``s<index>``), with their stored text (PDF text layer or OCR); ``page_id`` is the 1-based page."""
    from sqlalchemy import select

    from db import answers as answers_db
    from db import jobs as jobs_db
    from db.engine import session_scope
    from db.schema import Document, Page
    from pageqa.settings import get_settings

    with session_scope(get_settings()) as session:
        rankings = answers_db.lane_rankings(session, job_id=job_id)
        corpus_id = jobs_db.get_job(session, job_id=job_id).corpus_id
        rows = session.execute(
            select(Document.source, Page.page_number, Page.text).join(Page, Page.document_id == Document.id)
            .where(Document.corpus_id == corpus_id)
        ).all()
    texts = {(doc, n): text for doc, n, text in rows}
    return [[PageText(n, texts[(s.doc_id, n)]) for n in rankings.get(f"s{s.index:04d}", {}).get("fused", [])[:top]]
            for s in samples]


def gold_items(answer: str) -> list[str]:
    """The gold answer's items (one unless it is a list), dropping items empty after normalisation."""
    items = parse_list_answer(answer)
    return [item for item in (items if items is not None else [answer]) if normalize_answer(item)]


def contains_any(window: str, answer: str) -> bool:
    """Whether ``window`` contains at least one item of the gold answer (``contains_answer`` per item)."""
    return any(contains_answer(window, item) for item in gold_items(answer))


@dataclass(frozen=True)
class Outcome:
    """One question's best window (answered or not) and how it compares with the gold answer."""

    answerable: bool
    score: float
    has_text: bool
    hit_any: bool  # the best window contains a gold item
    hit_all: bool  # ... every gold item
    oracle: bool  # some window of the given pages contains a gold item


def evaluate(
    samples: Sequence[Sample], pages: Sequence[Sequence[PageText]], answerer: ExtractiveAnswerer
) -> list[Outcome]:
    """Best window per question with no threshold, compared with the gold answers."""
    extracts = answerer.answer([s.question for s in samples], pages)
    outcomes = []
    for s, page_list, e in zip(samples, pages, extracts, strict=True):
        has_text = e.score > NO_TEXT_SCORE
        windows = [w for p in page_list for w in sentence_windows(p.text, answerer.window)]
        hit_any = s.answerable and has_text and contains_any(e.answer, s.answer)
        hit_all = s.answerable and has_text and bool(gold_items(s.answer)) and contains_answer(e.answer, s.answer)
        oracle = s.answerable and any(contains_any(w, s.answer) for w in windows)
        outcomes.append(Outcome(s.answerable, e.score, has_text, hit_any, hit_all, oracle))
    return outcomes


def sweep(outcomes: Sequence[Outcome], thresholds: Sequence[float]) -> list[tuple[float, float, float, float]]:
    """Per threshold: (threshold, NA accuracy, answered share, answerable accuracy); see the module docstring."""
    na = [o for o in outcomes if not o.answerable]
    ans = [o for o in outcomes if o.answerable]
    rows = []
    for t in thresholds:
        answered = [o.has_text and o.score >= t for o in ans]
        rows.append((t, float(np.mean([not (o.has_text and o.score >= t) for o in na])), float(np.mean(answered)),
                     float(np.mean([a and o.hit_any for a, o in zip(answered, ans, strict=True)]))))
    return rows


def suggest(rows: Sequence[tuple[float, float, float, float]]) -> float | None:
    """The lowest threshold with NA accuracy >= ``TARGET_NA_ACCURACY`` (None if no grid threshold reaches it)."""
    return next((t for t, na_acc, _, _ in rows if na_acc >= TARGET_NA_ACCURACY), None)


def report(outcomes: Sequence[Outcome], rows: Sequence[tuple[float, float, float, float]]) -> str:
    """Markdown: containment rates, score quantiles, and the threshold table."""
    ans = [o for o in outcomes if o.answerable]
    na = [o for o in outcomes if not o.answerable]
    with_text = [o for o in ans if o.has_text]
    rates = {"any list item": "hit_any", "all list items": "hit_all", "some window of the pages (oracle)": "oracle"}
    lines = [
        f"Answerable: {len(ans)} ({len(ans) - len(with_text)} with no text on the gold pages); "
        f"not answerable: {len(na)}.",
        "",
        "| best window (no threshold) contains the gold answer | of answerable | of answerable with text |",
        "|---|---:|---:|",
        *(f"| {name} | {_rate(ans, field):.3f} | {_rate(with_text, field):.3f} |" for name, field in rates.items()),
        "",
        f"Best-window score quartiles: answerable {_quartiles([o.score for o in ans if o.has_text])}, "
        f"not answerable {_quartiles([o.score for o in na if o.has_text])}.",
        "",
        "| threshold | NA acc | answered | answerable acc |",
        "|---:|---:|---:|---:|",
        *(f"| {t:.3f} | {a:.3f} | {b:.3f} | {c:.3f} |" for t, a, b, c in rows),
    ]
    return "\n".join(lines)


def _rate(outcomes: Sequence[Outcome], field: str) -> float:
    return float(np.mean([getattr(o, field) for o in outcomes]))


def _quartiles(xs: Sequence[float]) -> str:
    return " / ".join(f"{q:.3f}" for q in np.quantile(xs, [0.25, 0.5, 0.75]))


def main(
    data: Annotated[Path, typer.Option(help="MMLongBench-Doc-format folder (samples.json, pdfs/), read in place.")]
    = DATA_DIR,
    window: Annotated[int, typer.Option(min=1, max=3, help="Sentences per window.")] = 2,
    lexical_weight: Annotated[float, typer.Option(help="Weight of the key-term bonus.")] = LEXICAL_WEIGHT,
    job: Annotated[str | None, typer.Option(help="Use the pages a `pageqa eval` job retrieved (top 3 fused) "
                                                 "instead of the gold pages; needs the same PAGEQA_HOME.")] = None,
) -> None:
    """Calibrate the extractive answerer's threshold on MMLongBench-Doc; print Markdown tables."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        samples = read_samples(data)
        encoder = TextEncoder(DEFAULT_TEXT_MODEL)
        pages = retrieved_page_sets(job, samples, NA_PAGES) if job else page_sets(samples, data / "pdfs", encoder)
        answerer = ExtractiveAnswerer(encoder, threshold=float("-inf"), window=window, lexical_weight=lexical_weight)
        outcomes = evaluate(samples, pages, answerer)
    except PageQAError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    rows = sweep(outcomes, THRESHOLDS)
    source = f"the top {NA_PAGES} fused pages of job {job}" if job else f"gold pages ({NA_PAGES} pages per NA question)"
    typer.echo(f"window {window} sentences, lexical weight {lexical_weight}, {source}\n")
    typer.echo(report(outcomes, rows))
    best = suggest(rows)
    typer.echo(f"\nsuggested threshold (lowest with NA acc >= {TARGET_NA_ACCURACY}): "
               + (f"{best:.3f}" if best is not None else "none in the grid"))


if __name__ == "__main__":
    typer.run(main)

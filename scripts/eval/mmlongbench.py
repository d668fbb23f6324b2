"""Reader for a directory in MMLongBench-Doc format: ``samples.json`` (question records) and ``pdfs/``.

MMLongBench-Doc: Ma et al., NeurIPS 2024 Datasets and Benchmarks, arXiv 2407.01523, repository
``mayubo2333/MMLongBench-Doc``. The data is read in place and never copied.
"""

from __future__ import annotations

import ast
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pageqa.domain import is_not_answerable
from pageqa.errors import InputError

logger = logging.getLogger(__name__)

_TEXT_FIELDS = ("doc_id", "doc_type", "question", "answer", "answer_format")
_STRING_FIELDS = (*_TEXT_FIELDS, "evidence_pages", "evidence_sources")  # all strings in samples.json

# Upstream evidence-source labels (lowercased) and the bare category names, to one of five categories.
_SOURCE_CATEGORIES = {
    "pure-text (plain-text)": "text",
    "generalized-text (layout)": "layout",
    "table": "table",
    "chart": "chart",
    "figure": "figure",
    "text": "text",
    "layout": "layout",
}
SOURCE_CATEGORIES = ("text", "layout", "table", "chart", "figure")


@dataclass(frozen=True)
class Sample:
    """One question of an MMLongBench-Doc-format set."""

    index: int  # 0-based position in samples.json
    doc_id: str  # PDF file name in pdfs/
    doc_type: str
    question: str
    answer: str  # "Not answerable" when the document does not answer; lists are Python-literal strings
    answer_format: str  # Str, Int, Float, List or None
    evidence_pages: tuple[int, ...]  # 1-based page numbers; empty for most unanswerable questions
    evidence_sources: tuple[str, ...]  # upstream labels; see source_category

    @property
    def answerable(self) -> bool:
        """Whether the gold answer is not the benchmark's "Not answerable" label."""
        return not is_not_answerable(self.answer)


def source_category(source: str) -> str:
    """The category of an upstream evidence-source label: text, layout, table, chart or figure.

    "Pure-text (Plain-text)" -> "text", "Generalized-text (Layout)" -> "layout", "Table" -> "table",
    "Chart" -> "chart", "Figure" -> "figure" (case and surrounding whitespace ignored).

    Raises:
        ValueError: an unknown label.
    """
    try:
        return _SOURCE_CATEGORIES[source.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown evidence source {source!r}") from None


def read_samples(directory: Path, *, strict: bool = False, left_out: list[InputError] | None = None) -> list[Sample]:
    """Read and check every question record of ``directory/samples.json``; the valid ones in file order.

    A malformed record (such as upstream MMLongBench-Doc's two whose evidence page is 0) is left out, as a bad row
    of a question file is: its error, naming the record's 0-based index, is appended to ``left_out`` when a list
    is given and logged as a warning, and the rest are read. With ``strict`` any malformed record refuses the file.

    Raises:
        InputError: ``pdfs/`` or ``samples.json`` is missing or unreadable, or not a JSON list; no record is valid;
            or (``strict``) a record is malformed. For a record the error's ``line`` is its 0-based index
            (``Sample.index``), also named in the message.
    """
    directory = Path(directory)
    path, pdfs = directory / "samples.json", directory / "pdfs"
    if not pdfs.is_dir():
        raise InputError("the pdfs/ folder is missing", source=str(directory))
    if not path.is_file():
        raise InputError("samples.json is missing", source=str(directory))
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the file ({exc})", source=str(path)) from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", source=str(path), line=exc.lineno) from exc
    if not isinstance(records, list):
        raise InputError("expected a JSON list of question records", source=str(path))
    pdf_names = {p.name for p in pdfs.iterdir()}
    samples, refused = [], []
    for index, record in enumerate(records):
        try:
            samples.append(_sample(record, index, path, pdf_names))
        except InputError as exc:
            refused.append(exc)
    if strict and refused:
        raise InputError(f"{len(refused)} invalid records (--strict); first: {refused[0]}")
    if not samples:
        raise InputError(f"no valid record{f'; first error: {refused[0]}' if refused else ''}", source=str(path))
    for error in refused:
        logger.warning("left out: %s", error)
    if left_out is not None:
        left_out.extend(refused)
    logger.info("read %d questions (%d answerable) from %s; %d records left out", len(samples),
                sum(s.answerable for s in samples), path, len(refused))
    return samples


def _sample(record: object, index: int, path: Path, pdf_names: set[str]) -> Sample:
    """One checked ``Sample``; an ``InputError`` naming ``path`` and the record otherwise."""
    try:
        if not isinstance(record, dict):
            raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        for name in _STRING_FIELDS:
            if not isinstance(record.get(name), str):
                raise ValueError(f"field {name} is missing or not a string")
        if record["doc_id"] not in pdf_names:
            raise ValueError(f"doc_id {record['doc_id']!r} is not a file in pdfs/")
        pages = _literal_list(record, "evidence_pages", int)
        if any(isinstance(page, bool) or page < 1 for page in pages):
            raise ValueError(f"evidence_pages must be 1-based page numbers, got {record['evidence_pages']}")
        sources = _literal_list(record, "evidence_sources", str)
        for source in sources:
            source_category(source)
    except ValueError as exc:
        raise InputError(f"record {index}: {exc}", source=str(path), line=index) from exc
    fields = {name: record[name] for name in _TEXT_FIELDS}
    return Sample(index=index, evidence_pages=tuple(pages), evidence_sources=tuple(sources), **fields)


def _literal_list(record: dict, name: str, item_type: type) -> list:
    """The Python-literal list in ``record[name]`` (such as ``"[3, 5]"``), each item of ``item_type``."""
    try:
        value = ast.literal_eval(record[name])
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f"{name} is not a Python-literal list: {record[name]!r}") from None
    if not isinstance(value, list) or not all(isinstance(item, item_type) for item in value):
        raise ValueError(f"{name} must be a list of {item_type.__name__}, got {record[name]!r}")
    return value

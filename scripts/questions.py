"""Question files: CSV with a header (``custom_id,question[,document]``) or JSONL (one object per line with
``custom_id``, ``question`` and optionally ``document``). Errors name the file and 1-based line."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from pageqa.errors import InputError

MAX_QUESTION_CHARS = 4000


@dataclass(frozen=True)
class QuestionRow:
    """One valid question: ``custom_id``, text, optional document name, 1-based line in the file."""

    custom_id: str
    question: str
    document: str | None
    line: int


@dataclass
class ParsedFile:
    """The valid rows of a question file and a one-line error per invalid row."""

    rows: list[QuestionRow] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)


def parse_question_file(path: Path, *, document_field: str = "document") -> ParsedFile:
    """Parse a ``.csv`` or ``.jsonl``/``.json`` question file.

    Invalid rows (missing or empty fields, a repeated ``custom_id``, bad JSON) are reported in ``errors`` and
    left out; valid rows are kept.

    Raises:
        InputError: the file cannot be read, is not UTF-8, has an unknown suffix, or a CSV lacks the header.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the question file ({exc})", source=str(path)) from exc
    suffix = path.suffix.lower()
    if suffix == ".csv":
        records = _csv_records(path, text)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        records = _jsonl_records(path, text)
    else:
        raise InputError("question files are .csv or .jsonl", source=str(path))
    parsed, seen = ParsedFile(), set()
    for line, record in records:
        if isinstance(record, InputError):
            parsed.errors.append(record)
            continue
        try:
            row = _row(path, line, record, document_field)
        except InputError as exc:
            parsed.errors.append(exc)
            continue
        if row.custom_id in seen:
            parsed.errors.append(InputError(f"custom_id {row.custom_id!r} repeats an earlier line", source=str(path), line=line))
            continue
        seen.add(row.custom_id)
        parsed.rows.append(row)
    return parsed


def _csv_records(path: Path, text: str):
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [f for f in ("custom_id", "question") if f not in header]
    if missing:
        raise InputError(f"the CSV header lacks {', '.join(missing)} (header: {','.join(header)})", source=str(path), line=1)
    for record in reader:
        if not any((v or "").strip() for k, v in record.items() if k is not None):
            continue
        yield reader.line_num, record


def _jsonl_records(path: Path, text: str):
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield line, InputError(f"invalid JSON ({exc.msg} at column {exc.colno})", source=str(path), line=line)
            continue
        if not isinstance(record, dict):
            yield line, InputError("each line must be a JSON object", source=str(path), line=line)
            continue
        yield line, record


def _row(path: Path, line: int, record: dict, document_field: str) -> QuestionRow:
    custom_id = record.get("custom_id")
    question = record.get("question")
    if custom_id is None or str(custom_id).strip() == "":
        raise InputError("custom_id is missing or empty", source=str(path), line=line)
    if not isinstance(question, str) or not question.strip():
        raise InputError("question is missing or empty", source=str(path), line=line)
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(f"question is longer than {MAX_QUESTION_CHARS} characters", source=str(path), line=line)
    if None in record:
        raise InputError("the row has more fields than the header", source=str(path), line=line)
    document = record.get(document_field)
    document = str(document).strip() if document not in (None, "") else None
    return QuestionRow(str(custom_id).strip(), question.strip(), document, line)

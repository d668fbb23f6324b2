"""Question files: CSV with a header (``custom_id,question[,document]``) or JSONL (one object per line with
``custom_id``, ``question`` and optionally ``document``). Errors name the file and 1-based line."""

from __future__ import annotations

import codecs
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
    notes: list[str] = field(default_factory=list)  # how the file was read, when not plain UTF-8


def parse_question_file(path: Path, *, document_field: str = "document") -> ParsedFile:
    """Parse a ``.csv`` or ``.jsonl``/``.json`` question file.

    Invalid rows (missing or empty fields, a repeated ``custom_id``, bad JSON) are reported in ``errors`` and
    left out; valid rows are kept. The text is UTF-8 (a BOM is dropped) or UTF-16 with a BOM; a file that is
    neither is read as Windows-1252, the usual spreadsheet export, and a note names its first non-UTF-8 line.

    Raises:
        InputError: the file cannot be read, is empty, has an unknown suffix, or a CSV lacks the header.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the question file ({exc.strerror or exc})", source=str(path)) from exc
    text, notes = _decode(path, data)
    if not text.strip():
        raise InputError("the question file is empty", source=str(path))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        records = _csv_records(path, text)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        records = _jsonl_records(path, text)
    else:
        raise InputError("question files are .csv or .jsonl", source=str(path))
    parsed, seen = ParsedFile(notes=notes), set()
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


def _decode(path: Path, data: bytes) -> tuple[str, list[str]]:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), [f"{path}: read as UTF-16"]
        except UnicodeDecodeError as exc:
            raise InputError(f"not valid UTF-16 ({exc.reason} at byte {exc.start})", source=str(path)) from exc
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return data.decode("cp1252", errors="replace"), [
            f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x}); the file was read as Windows-1252"]


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

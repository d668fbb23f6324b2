"""Question files: CSV with a header (``custom_id,question[,document]``), JSONL (one object per line with
``custom_id``, ``question`` and optionally ``document``), or the input file of an OpenAI batch (one chat completion
request per line, :mod:`services.batch_format`). Errors name the file and 1-based line.

A file is read as a stream, one line at a time, so a file of a million rows takes no more memory than one of ten:
rows come out of an iterator, a line longer than :data:`~services.question_text.MAX_LINE_CHARS` is skipped without
being held, and only the first :data:`MAX_KEPT_ERRORS` error messages are kept (every error is counted). Checks
that span rows (a repeated ``custom_id``, repeated questions) are left to the database, while loading
(:func:`db.jobs.store_questions`).
"""

from __future__ import annotations

import csv
import heapq
import json
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TextIO

from pageqa.errors import InputError
from pageqa.limits import over_limit
from services.batch_format import request_fields
from services.question_text import (
    Lines,
    LineTooLong,
    has_text,
    open_text,
    sniff_encoding,
    too_long,
)

MAX_QUESTION_CHARS = 4000
MAX_CUSTOM_ID_CHARS = 512  # a key to join results by, not a payload
#: Error messages kept in memory for the report; the rest are only counted.
MAX_KEPT_ERRORS = 1000
#: File name endings of question files: CSV, and JSON lines under its usual names.
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
QUESTION_SUFFIXES = (".csv", *JSONL_SUFFIXES)
#: How a question file is laid out: by its suffix (CSV or JSONL), or the lines of an OpenAI batch input file.
KINDS = ("csv", "jsonl", "openai")


@dataclass(frozen=True)
class QuestionRow:
    """One valid question: ``custom_id``, text, optional document name, 1-based line in the file."""

    custom_id: str
    question: str
    document: str | None
    line: int


@dataclass
class ErrorLog:
    """One-line errors of the rows left out, in line order: the first ``keep`` are kept, every one is counted."""

    keep: int = MAX_KEPT_ERRORS
    kept: list[InputError] = field(default_factory=list)
    count: int = 0

    def add(self, error: InputError) -> None:
        """Count ``error``; keep it while fewer than ``keep`` are kept. Errors must arrive in line order."""
        self.count += 1
        if len(self.kept) < self.keep:
            self.kept.append(error)

    def merge(self, errors: Iterable[InputError], *, count: int) -> None:
        """Add ``count`` errors found by another pass, of which ``errors`` are the first, in line order."""
        merged = heapq.merge(self.kept, errors, key=lambda e: e.line or 0)
        self.kept = list(islice(merged, self.keep))
        self.count += count


@dataclass
class QuestionFile:
    """A question file whose encoding, first text and (CSV) header were checked; iterate it for the valid rows.

    Each iteration reads the file again from the start. Invalid rows are left out and reported to ``errors``.
    """

    path: Path
    kind: str  # one of KINDS
    encoding: str
    document_field: str = "document"
    errors: ErrorLog = field(default_factory=ErrorLog)
    notes: list[str] = field(default_factory=list)  # how the file was read, when not plain UTF-8
    max_tokens: int | None = None  # "openai": the largest max_tokens of the valid rows read so far

    def __iter__(self) -> Iterator[QuestionRow]:
        records = _csv_records if self.kind == "csv" else _jsonl_records
        with self._open() as f:
            for line, record in records(self.path, Lines(f)):
                try:
                    if isinstance(record, InputError):
                        raise record
                    if self.kind == "openai":
                        record = self._request(record, line)
                    yield _row(self.path, line, record, self.document_field)
                except InputError as exc:
                    self.errors.add(exc)

    def _request(self, record: dict, line: int) -> dict:
        """The question fields of a batch request line; its ``max_tokens`` raises :attr:`max_tokens`."""
        fields, max_tokens = request_fields(record, source=str(self.path), line=line)
        if max_tokens is not None:
            self.max_tokens = max(self.max_tokens or 0, max_tokens)
        return {**fields, self.document_field: fields.pop("document")}

    def _open(self) -> TextIO:
        # csv wants newline="" (it handles quoted line breaks); JSON lines end at "\n" only, as in the JSON Lines spec
        return open_text(self.path, self.encoding, newline="" if self.kind == "csv" else "\n")


def open_question_file(
    path: Path, *, document_field: str = "document", errors: ErrorLog | None = None, kind: str | None = None,
) -> QuestionFile:
    """Check a ``.csv`` or ``.jsonl``/``.json``/``.ndjson`` question file and return it ready to iterate. ``kind``
    (one of :data:`KINDS`) overrides the suffix: ``"openai"`` reads an OpenAI batch input file (JSON lines).

    The text is UTF-8 (a BOM is dropped) or UTF-16 with a BOM; a file that is neither is read as Windows-1252, the
    usual spreadsheet export, and a note names its first non-UTF-8 line. The whole file is scanned once here, in
    1 MiB reads, to choose the encoding; no row is kept.

    Raises:
        InputError: the file is refused by :func:`check_question_path`, cannot be read, is not valid UTF-16 after a
            UTF-16 BOM, is empty, or a CSV lacks the ``custom_id`` or ``question`` header.
    """
    kind = check_question_path(path, kind=kind)
    try:
        encoding, notes = sniff_encoding(path)
        if not has_text(path, encoding):
            raise InputError("the question file is empty", source=str(path))
    except OSError as exc:
        raise InputError(f"cannot read the question file ({exc.strerror or exc})", source=str(path)) from exc
    qf = QuestionFile(path, kind, encoding, document_field, errors if errors is not None else ErrorLog(), notes)
    if kind == "csv":
        with qf._open() as f:
            _csv_header(path, csv.reader(Lines(f), strict=True))
    return qf


def check_question_path(path: Path, *, kind: str | None = None, max_bytes: int | None = None) -> str:
    """What a question file must be before it is opened, seen with ``stat`` alone (which never blocks, not even on
    a pipe): a regular file (symbolic links followed), with a question file's suffix unless ``kind`` (one of
    :data:`KINDS`) is given, of at most ``max_bytes`` bytes when given (the CLI passes PAGEQA_MAX_UPLOAD_BYTES, the
    cap of an upload). A character device such as ``/dev/zero`` or a FIFO never ends: reading it would hang the
    submit with its job in ``validating``. Returns the file's kind.

    Raises:
        InputError: naming the file: no such file, not a regular file, an unknown suffix, or too large.
    """
    try:
        st = path.stat()
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path, which no file can have
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "the path contains a NUL byte"
        raise InputError(f"cannot read the question file ({why})", source=str(path)) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError("not a regular file (a device or a pipe): a question file is read to its end",
                         source=str(path))
    if kind not in KINDS:
        kind = {".csv": "csv", **dict.fromkeys(JSONL_SUFFIXES, "jsonl")}.get(path.suffix.lower())
        if kind is None:
            raise InputError("question files are .csv or .jsonl", source=str(path))
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputError(over_limit("the question file", max_bytes, "max_upload_bytes"),
                         source=str(path))
    return kind


def _csv_header(path: Path, reader) -> list[str]:
    try:
        header = next(reader, [])
    except LineTooLong:
        raise too_long(path, 1) from None
    except csv.Error as exc:
        raise InputError(f"malformed CSV header ({exc})", source=str(path), line=1) from exc
    missing = [f for f in ("custom_id", "question") if f not in header]
    if missing:
        raise InputError(f"the CSV header lacks {', '.join(missing)} (header: {','.join(header)})", source=str(path), line=1)
    return header


def _csv_records(path: Path, lines: Lines) -> Iterator[tuple[int, dict | InputError]]:
    """(first line of the record, field dict or error) per non-blank CSV record. ``strict``: a quote followed by
    anything but a separator, or a quote never closed, is an error rather than text glued to the next lines."""
    reader = csv.reader(lines, strict=True)
    header = _csv_header(path, reader)
    while True:
        start = lines.number + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except LineTooLong as exc:
            yield exc.args[0], too_long(path, exc.args[0])
            continue
        except csv.Error as exc:
            span = f" (lines {start}-{lines.number})" if lines.number > start else ""
            yield start, InputError(f"malformed CSV ({exc}){span}", source=str(path), line=start)
            continue
        if not any(v.strip() for v in values):
            continue
        record: dict = dict(zip(header, values, strict=False))
        if len(values) > len(header):
            record[None] = values[len(header):]
        yield start, record


def _jsonl_records(path: Path, lines: Lines) -> Iterator[tuple[int, dict | InputError]]:
    """(line, object or error) per non-blank line."""
    while True:
        try:
            raw = next(lines)
        except StopIteration:
            return
        except LineTooLong as exc:
            yield exc.args[0], too_long(path, exc.args[0])
            continue
        line = lines.number
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield line, InputError(f"invalid JSON ({exc.msg} at column {exc.colno})", source=str(path), line=line)
            continue
        except (ValueError, RecursionError) as exc:  # an integer over 4300 digits; arrays nested ~1000 deep
            yield line, InputError(f"invalid JSON ({exc})", source=str(path), line=line)
            continue
        if not isinstance(record, dict):
            yield line, InputError("each line must be a JSON object", source=str(path), line=line)
            continue
        yield line, record


def _row(path: Path, line: int, record: dict, document_field: str) -> QuestionRow:
    custom_id = _custom_id(path, line, record.get("custom_id"))
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError("question is missing or empty", source=str(path), line=line)
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(f"question is longer than {MAX_QUESTION_CHARS} characters", source=str(path), line=line)
    if None in record:
        raise InputError("the row has more fields than the header", source=str(path), line=line)
    if len(custom_id) > MAX_CUSTOM_ID_CHARS:
        raise InputError(f"custom_id is longer than {MAX_CUSTOM_ID_CHARS} characters", source=str(path), line=line)
    document = record.get(document_field)
    document = str(document).strip() if document not in (None, "") else None
    for name, value in (("custom_id", custom_id), ("question", question), (document_field, document)):
        _check_storable(path, line, name, value)
    return QuestionRow(custom_id, question.strip(), document, line)


#: JSON's names of the types a ``custom_id`` must not have, for the message.
_JSON_TYPES = {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "an array"}


def _custom_id(path: Path, line: int, value: object) -> str:
    """The row's ``custom_id`` stripped: a string, as in OpenAI's batch input (a number or an object would be
    stored as its Python repr, ``{'a': 1}``, and results could not be joined back to the input), the one rule for
    every kind of question file."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError("custom_id is missing or empty", source=str(path), line=line)
    if not isinstance(value, str):
        raise InputError(f"custom_id must be a string, not {_JSON_TYPES.get(type(value), type(value).__name__)}",
                         source=str(path), line=line, code="invalid_custom_id")
    return value.strip()


def _check_storable(path: Path, line: int, name: str, value: str | None) -> None:
    """PostgreSQL ``text`` holds neither NUL nor a lone UTF-16 surrogate (JSON can spell both: ``\\u0000``,
    ``\\ud800``); either would fail the whole load, so the row is refused here."""
    if value is None:
        return
    if "\x00" in value:
        raise InputError(f"{name} contains a NUL character (U+0000)", source=str(path), line=line)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{name} contains an unpaired surrogate (U+{ord(value[exc.start]):04X})",
                         source=str(path), line=line) from None

"""Question-file reading: valid rows kept, each bad row reported with its file and 1-based line, the file streamed
(checks that span rows, such as a repeated custom_id, are the database's: tests/services/test_submit.py)."""

from __future__ import annotations

import codecs
import json

import pytest

from pageqa.errors import InputError
from services.question_text import MAX_LINE_CHARS
from services.question_file import (
    MAX_CUSTOM_ID_CHARS,
    MAX_QUESTION_CHARS,
    ErrorLog,
    open_question_file,
)


def read_all(path, **kwargs):
    """The rows as a list, then the file (its errors are complete once the rows are read)."""
    qf = open_question_file(path, **kwargs)
    return list(qf), qf


def test_csv_with_quoted_fields_and_document_column(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('custom_id,question,document\nq1,"Who, exactly?",report.pdf\nq2,What is it?,\n', encoding="utf-8")
    rows, parsed = read_all(path)
    assert parsed.errors.kept == [] and parsed.errors.count == 0
    assert [(r.custom_id, r.question, r.document, r.line) for r in rows] == [
        ("q1", "Who, exactly?", "report.pdf", 2),
        ("q2", "What is it?", None, 3),
    ]


def test_csv_bad_rows_are_reported_by_line_and_left_out(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("custom_id,question\nq1,fine\n,no id\nq3,\nq1,repeated id\nq5,ok\nq6,a,b\n", encoding="utf-8")
    rows, parsed = read_all(path)
    # a repeated custom_id is left to the database (it spans rows); the reader keeps no set of ids
    assert [(r.custom_id, r.line) for r in rows] == [("q1", 2), ("q1", 5), ("q5", 6)]
    assert [str(e) for e in parsed.errors.kept] == [
        f"{path}:3: custom_id is missing or empty",
        f"{path}:4: question is missing or empty",
        f"{path}:7: the row has more fields than the header",
    ]
    assert [e.line for e in parsed.errors.kept] == [3, 4, 7] and parsed.errors.count == 3


def test_csv_without_required_header_is_refused(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("id,text\n1,hello\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"q\.csv:1: the CSV header lacks custom_id, question"):
        open_question_file(path)
    no_question = tmp_path / "no-question.csv"
    no_question.write_text("custom_id,document\nq1,report.pdf\n", encoding="utf-8")
    with pytest.raises(InputError) as refused:
        open_question_file(no_question)
    assert str(refused.value) == f"{no_question}:1: the CSV header lacks question (header: custom_id,document)"


def test_jsonl_bad_json_and_non_objects(tmp_path):
    path = tmp_path / "q.jsonl"
    lines = [
        json.dumps({"custom_id": "a", "question": "first?"}),
        "{not json",
        "",
        json.dumps(["a", "list"]),
        json.dumps({"custom_id": 7, "question": "numeric id?", "document": "x.png"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows, parsed = read_all(path)
    assert [(r.custom_id, r.document, r.line) for r in rows] == [("a", None, 1)]
    assert [str(e) for e in parsed.errors.kept] == [
        f"{path}:2: invalid JSON (Expecting property name enclosed in double quotes at column 2)",
        f"{path}:4: each line must be a JSON object",
        f"{path}:5: custom_id must be a string, not a number",
    ]


@pytest.mark.parametrize("kind", ["jsonl", "openai"])
def test_a_custom_id_that_is_not_a_string_is_refused_by_line(tmp_path, kind):
    """A number or an object as custom_id used to be stored as its Python repr ("{'a': 1}"), so its result could
    not be joined back; every kind of question file refuses it by line, as OpenAI's batch input does."""
    def line(custom_id, question: str) -> dict:
        if kind == "jsonl":
            return {"custom_id": custom_id, "question": question}
        return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "m", "messages": [{"role": "user", "content": question}]}}

    ids = ["ok-1", 7, 2.5, {"a": 1}, ["x"], True, None, "  ", " ok-2 "]
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(line(c, f"question {i}?")) + "\n" for i, c in enumerate(ids)), encoding="utf-8")
    rows, parsed = read_all(path, kind=kind)
    assert [(r.custom_id, r.line) for r in rows] == [("ok-1", 1), ("ok-2", 9)]
    assert [str(e) for e in parsed.errors.kept] == [
        f"{path}:2: custom_id must be a string, not a number",
        f"{path}:3: custom_id must be a string, not a number",
        f"{path}:4: custom_id must be a string, not an object",
        f"{path}:5: custom_id must be a string, not an array",
        f"{path}:6: custom_id must be a string, not a boolean",
        f"{path}:7: custom_id is missing or empty",
        f"{path}:8: custom_id is missing or empty",
    ]
    assert {e.code for e in parsed.errors.kept[:5]} == {"invalid_custom_id"}


def test_unknown_suffix_and_non_utf8(tmp_path):
    txt = tmp_path / "q.txt"
    txt.write_text("hello", encoding="utf-8")
    with pytest.raises(InputError, match="q.txt"):
        open_question_file(txt)
    missing = tmp_path / "missing.csv"
    with pytest.raises(InputError, match=r"missing\.csv: cannot read the question file"):
        open_question_file(missing)


@pytest.mark.parametrize("encoding,note", [
    ("utf-8-sig", None), ("utf-16", "read as UTF-16"), ("utf-16-be", "read as UTF-16"),
    ("cp1252", ":3: not UTF-8 (byte 0xe9); the file was read as Windows-1252"),
])
def test_question_files_in_other_encodings_keep_every_row(tmp_path, encoding, note):
    path = tmp_path / "q.csv"
    text = "custom_id,question\nq1,plain ascii?\nq2,café prices in €?\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    path.write_bytes(data)
    rows, parsed = read_all(path)
    assert parsed.errors.count == 0
    assert [(r.custom_id, r.question) for r in rows] == [("q1", "plain ascii?"), ("q2", "café prices in €?")]
    assert (parsed.notes == []) if note is None else (len(parsed.notes) == 1 and note in parsed.notes[0])


@pytest.mark.parametrize("content", [b"", b"  \n\n", "\ufeff".encode()])
def test_an_empty_question_file_is_one_clear_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"empty\.jsonl: the question file is empty"):
        open_question_file(path)


def test_text_postgresql_cannot_store_is_refused_by_line(tmp_path):
    path = tmp_path / "q.jsonl"
    records = [
        {"custom_id": "ok", "question": "fine?"},
        {"custom_id": "nul-q", "question": "before\u0000after"},
        {"custom_id": "nul\u0000id", "question": "fine too?"},
        {"custom_id": "lone", "question": "half a pair \ud800?"},
        {"custom_id": "nul-doc", "question": "which?", "document": "a\u0000.pdf"},
        {"custom_id": "last", "question": "still read?"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")  # ASCII: \\u escapes
    rows, parsed = read_all(path)
    assert [(r.custom_id, r.line) for r in rows] == [("ok", 1), ("last", 6)]
    assert [str(e) for e in parsed.errors.kept] == [
        f"{path}:2: question contains a NUL character (U+0000)",
        f"{path}:3: custom_id contains a NUL character (U+0000)",
        f"{path}:4: question contains an unpaired surrogate (U+D800)",
        f"{path}:5: document contains a NUL character (U+0000)",
    ]
    csv_path = tmp_path / "q.csv"  # a raw NUL byte in a CSV cell: the csv module passes it through
    csv_path.write_bytes(b"custom_id,question\nc1,fine?\nc2,nul\x00here\n")
    rows, parsed = read_all(csv_path)
    assert [r.custom_id for r in rows] == ["c1"]
    assert [str(e) for e in parsed.errors.kept] == [f"{csv_path}:3: question contains a NUL character (U+0000)"]


def test_length_limit_and_missing_question_name_their_line(tmp_path):
    path = tmp_path / "q.jsonl"
    records = [
        {"custom_id": "at-limit", "question": "x" * MAX_QUESTION_CHARS},
        {"custom_id": "over", "question": "y" * (MAX_QUESTION_CHARS + 1)},
        {"custom_id": "no-question", "text": "wrong key"},
        {"custom_id": "number", "question": 42},
        {"custom_id": "k" * MAX_CUSTOM_ID_CHARS, "question": "a long key?"},
        {"custom_id": "k" * (MAX_CUSTOM_ID_CHARS + 1), "question": "a key too long?"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    rows, parsed = read_all(path)
    assert [(r.custom_id[:8], len(r.question)) for r in rows] == [("at-limit", MAX_QUESTION_CHARS), ("kkkkkkkk", 11)]
    assert [str(e) for e in parsed.errors.kept] == [
        f"{path}:2: question is longer than {MAX_QUESTION_CHARS} characters",
        f"{path}:3: question is missing or empty",
        f"{path}:4: question is missing or empty",
        f"{path}:6: custom_id is longer than {MAX_CUSTOM_ID_CHARS} characters",
    ]


def test_malformed_csv_records_are_reported_at_their_first_line_and_the_rest_is_read(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text(
        'custom_id,question\n'
        'q1,"quoted, fine"\n'            # 2
        'q2,"closed" then text\n'        # 3: a quote closed mid-field
        'q3,"a question\nover two lines"\n'  # 4-5: valid, reported by its first line
        'q4,unquoted 5" screen?\n'       # 6: a quote inside an unquoted field is text
        'q5,"never closed\n'             # 7
        'q6,swallowed\n',                # 8: inside q5's open quote
        encoding="utf-8",
    )
    rows, parsed = read_all(path)
    assert [(r.custom_id, r.question, r.line) for r in rows] == [
        ("q1", "quoted, fine", 2), ("q3", "a question\nover two lines", 4), ("q4", 'unquoted 5" screen?', 6)]
    assert [str(e) for e in parsed.errors.kept] == [
        f"{path}:3: malformed CSV (',' expected after '\"')",
        f"{path}:7: malformed CSV (unexpected end of data) (lines 7-8)",
    ]


def test_hostile_json_lines_are_errors_not_crashes(tmp_path):
    path = tmp_path / "q.jsonl"
    lines = [
        "[" * 50_000,                                   # nested deeper than the recursion limit
        '{"custom_id": ' + "9" * 5000 + ', "question": "big id?"}',  # over Python's 4300-digit int limit
        "z" * (MAX_LINE_CHARS + 10),                    # longer than any line is read
        json.dumps({"custom_id": "after", "question": "read?"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows, parsed = read_all(path)
    assert [(r.custom_id, r.line) for r in rows] == [("after", 4)]
    messages = [str(e) for e in parsed.errors.kept]
    assert [e.line for e in parsed.errors.kept] == [1, 2, 3]
    assert messages[0].startswith(f"{path}:1: invalid JSON (maximum recursion depth exceeded")
    assert messages[1].startswith(f"{path}:2: invalid JSON (Exceeds the limit (4300 digits)")
    assert messages[2] == f"{path}:3: the line is longer than {MAX_LINE_CHARS} characters"
    assert all("\n" not in m for m in messages)


def test_a_long_csv_line_is_skipped_and_the_next_row_read(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text(f"custom_id,question\nlong,{'w' * (2 * MAX_LINE_CHARS)}\nq3,next?\n", encoding="utf-8")
    rows, parsed = read_all(path)
    assert [(r.custom_id, r.line) for r in rows] == [("q3", 3)]
    assert [str(e) for e in parsed.errors.kept] == [f"{path}:2: the line is longer than {MAX_LINE_CHARS} characters"]


def test_rows_stream_and_only_the_first_errors_are_kept(tmp_path):
    path = tmp_path / "q.jsonl"
    lines = [json.dumps({"custom_id": "first", "question": "ok?"})] + ["{bad"] * 9
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    errors = ErrorLog(keep=3)
    qf = open_question_file(path, errors=errors)
    rows = iter(qf)
    assert next(rows).custom_id == "first"
    assert errors.count == 0, "the bad lines after the first row are not read yet"
    assert list(rows) == []
    assert [e.line for e in errors.kept] == [2, 3, 4] and errors.count == 9 and errors.count - len(errors.kept) == 6

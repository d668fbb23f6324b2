"""Question-file parsing: valid rows kept, each bad row reported with its file and 1-based line."""

from __future__ import annotations

import codecs
import json

import pytest

from pageqa.errors import InputError
from scripts.questions import parse_question_file


def test_csv_with_quoted_fields_and_document_column(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('custom_id,question,document\nq1,"Who, exactly?",report.pdf\nq2,What is it?,\n', encoding="utf-8")
    parsed = parse_question_file(path)
    assert parsed.errors == []
    assert [(r.custom_id, r.question, r.document, r.line) for r in parsed.rows] == [
        ("q1", "Who, exactly?", "report.pdf", 2),
        ("q2", "What is it?", None, 3),
    ]


def test_csv_bad_rows_are_reported_by_line_and_left_out(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("custom_id,question\nq1,fine\n,no id\nq3,\nq1,repeated id\nq5,ok\n", encoding="utf-8")
    parsed = parse_question_file(path)
    assert [r.custom_id for r in parsed.rows] == ["q1", "q5"]
    messages = [str(e) for e in parsed.errors]
    assert [e.line for e in parsed.errors] == [3, 4, 5]
    assert messages[0] == f"{path}:3: custom_id is missing or empty"
    assert "repeats" in messages[2]
    assert all("\n" not in m for m in messages)


def test_csv_without_required_header_is_refused(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("id,text\n1,hello\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"q\.csv:1: the CSV header lacks custom_id, question"):
        parse_question_file(path)


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
    parsed = parse_question_file(path)
    assert [(r.custom_id, r.document, r.line) for r in parsed.rows] == [("a", None, 1), ("7", "x.png", 5)]
    assert [e.line for e in parsed.errors] == [2, 4]
    assert "invalid JSON" in str(parsed.errors[0])


def test_unknown_suffix_and_non_utf8(tmp_path):
    txt = tmp_path / "q.txt"
    txt.write_text("hello", encoding="utf-8")
    with pytest.raises(InputError, match="q.txt"):
        parse_question_file(txt)
    missing = tmp_path / "missing.csv"
    with pytest.raises(InputError, match=r"missing\.csv: cannot read the question file"):
        parse_question_file(missing)


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
    parsed = parse_question_file(path)
    assert parsed.errors == []
    assert [(r.custom_id, r.question) for r in parsed.rows] == [("q1", "plain ascii?"), ("q2", "café prices in €?")]
    assert (parsed.notes == []) if note is None else (len(parsed.notes) == 1 and note in parsed.notes[0])


@pytest.mark.parametrize("content", [b"", b"  \n\n", "\ufeff".encode()])
def test_an_empty_question_file_is_one_clear_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"empty\.jsonl: the question file is empty"):
        parse_question_file(path)

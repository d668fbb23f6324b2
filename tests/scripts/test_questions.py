"""Question-file parsing: valid rows kept, each bad row reported with its file and 1-based line."""

from __future__ import annotations

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
    latin = tmp_path / "q.csv"
    latin.write_bytes("custom_id,question\nq1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="cannot read"):
        parse_question_file(latin)

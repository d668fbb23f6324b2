"""Names that attack the operator's terminal: a name a user chooses (corpus, tenant, API key, document column) is
refused at input when it holds an unprintable character (a right-to-left override, a zero-width space, a control
character), has whitespace at an end, is empty, ``.``, ``..`` or too long; a name stored before that rule is
printed inert, each such character as its escape."""

from __future__ import annotations

import pytest
from conftest import run_cli as cli
from sqlalchemy import func, select

from db.engine import session_scope
from db.schema import ApiKey, Corpus
from pageqa.domain import NAME_MAX_CHARS, check_name, check_tenant, name_problem
from pageqa.errors import InputError
from services.report.html import _growth

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "\u202etxt.exe" shows as "exe.txt"
#: (name, the end of its error message): one per kind of name the rule refuses.
REFUSED = [
    (f"{RLO}fdp.exe", r"contains U+202E RIGHT-TO-LEFT OVERRIDE, an unprintable character (category Cf)"),
    ("in\u2066side", "contains U+2066 LEFT-TO-RIGHT ISOLATE, an unprintable character (category Cf)"),
    ("zero\u200bwidth", "contains U+200B ZERO WIDTH SPACE, an unprintable character (category Cf)"),
    ("bell\x07", "contains U+0007, an unprintable character (category Cc)"),
    ("esc\x1b[2J", "contains U+001B, an unprintable character (category Cc)"),
    ("two\nlines", "contains U+000A, an unprintable character (category Cc)"),
    ("no\u00a0break", "contains U+00A0 NO-BREAK SPACE, an unprintable character (category Zs)"),
    ("", "is empty"),
    (" ", "starts or ends with whitespace"),
    (" lead", "starts or ends with whitespace"),
    ("trail\t", "starts or ends with whitespace"),
    (".", "cannot be '.'"),
    ("..", "cannot be '..'"),
    ("x" * (NAME_MAX_CHARS + 1), f"is longer than {NAME_MAX_CHARS} characters"),
]


def test_one_rule_for_names():
    for name in ("reports", "Q3 reports", "café", "文書", "a.b-c_d", "x" * NAME_MAX_CHARS, "...", "😀"):
        assert name_problem(name) is None and check_name(name, what="corpus name") == name
    for name, problem in REFUSED:
        assert name_problem(name) == problem, name
        with pytest.raises(InputError) as refused:
            check_name(name, what="corpus name")
        assert refused.value.code == "invalid_name" and "\n" not in str(refused.value)
        assert all(c.isprintable() for c in str(refused.value)), "the message itself is inert"
    for tenant in ("acme", "team-1.eu"):
        assert check_tenant(tenant) == tenant
    for tenant in (f"{RLO}acme", "..", " acme", "all", "", "a b"):
        with pytest.raises(InputError):
            check_tenant(tenant)


def _corpora(settings) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(func.count()).select_from(Corpus))


def test_a_hostile_name_is_refused_at_input_and_nothing_is_stored(settings, services, sample_docs):
    before = _corpora(settings)
    for name, problem in REFUSED:
        refused = cli("ingest", str(sample_docs["png"]), "--corpus", name, "--no-wait", ok=False)
        assert refused.exit_code == 1
        assert refused.output.endswith(f"error: corpus name {name!r} {problem}\n"), refused.output
        assert RLO not in refused.output and "\x1b" not in refused.output
    assert _corpora(settings) == before
    refused = cli("ingest", str(sample_docs["png"]), "--corpus", "fine", "--tenant", f"{RLO}acme", ok=False)
    assert refused.exit_code == 1 and "error: tenant '\\u202eacme': use 1-100 letters" in refused.output
    assert _corpora(settings) == before
    with session_scope(settings) as session:
        keys_before = session.scalar(select(func.count()).select_from(ApiKey))
    for args, message in (
        (["--tenant", f"{RLO}acme"], "error: tenant '\\u202eacme': use 1-100 letters"),
        (["--tenant", "acme", "--name", f"{RLO}ops key"], "error: key name '\\u202eops key' contains U+202E"),
        (["--tenant", "acme", "--name", ".."], "error: key name '..' cannot be '..'"),
    ):
        refused = cli("keys", "create", *args, ok=False)
        assert refused.exit_code == 1 and refused.output.startswith(message), refused.output
    with session_scope(settings) as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == keys_before
    path = sample_docs["png"].with_name("q.jsonl")
    path.write_text('{"custom_id": "a", "question": "b?"}\n', encoding="utf-8")
    refused = cli("submit", str(path), "--corpus", "fine", "--document-field", f"doc{RLO}", ok=False)
    assert refused.exit_code == 1 and refused.output.startswith(
        "error: job option document_field: Value error, 'doc\\u202e' contains U+202E"), refused.output


def test_a_name_stored_before_the_rule_is_printed_inert(settings, services, tiny_models, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one table row per line
    legacy = f"{RLO}fdp.exe"  # shows as "exe.pdf" when printed raw
    with session_scope(settings) as session:
        session.add(Corpus(name=legacy, tenant="legacy"))
        session.add(ApiKey(tenant="legacy", name=f"ops{RLO}\x1b[31m", prefix="pqa_legacy00", key_hash="0" * 64))
    listed = cli("corpora", "--tenant", "legacy").output
    assert "\\u202efdp.exe" in listed and RLO not in listed
    one = cli("corpora", legacy, "--tenant", "legacy").output
    assert "corpus \\u202efdp.exe: 0 documents" in one and RLO not in one
    keys = cli("keys", "list", "--tenant", "legacy").output
    assert "ops\\u202e\\x1b[31m" in keys and RLO not in keys and "\x1b" not in keys
    growth = _growth({"corpus_growth": {"documents_added": 1, "pages_added": 1, "corpora": [
        {"tenant": "legacy", "corpus": legacy, "documents_added": 1, "pages_added": 1, "documents_total": 1,
         "pages_total": 1}]}})
    assert "legacy / \\u202efdp.exe" in growth and RLO not in growth  # the nightly report's page

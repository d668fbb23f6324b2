"""The rules of pageqa.domain, and that PostgreSQL reads the "Not answerable" rule exactly as Python does (the
nightly report counts in SQL, the evaluation and the pipeline in Python)."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, text

from db.engine import session_scope
from pageqa.domain import (
    END_STAMPS,
    ENDED_JOB_STATES,
    FINAL_JOB_STATES,
    LANES,
    NOT_ANSWERABLE,
    NOT_ANSWERABLE_PATTERN,
    JobStatus,
    is_final,
    is_not_answerable,
    split_lanes,
)
from pageqa.options import job_options

ANSWERS = [
    (NOT_ANSWERABLE, True),
    ("not answerable.", True),
    ("  NOT   ANSWERABLE \n", True),
    ("**Not answerable**", True),
    ("_not answerable_", True),
    ('"Unanswerable"', True),
    ("answerable", False),
    ("It is not answerable from the document", False),
    ("Not answerable by the manual alone", False),
    ("Berlin", False),
    ("", False),
]


@pytest.mark.parametrize(("text", "expected"), ANSWERS)
def test_is_not_answerable(text, expected):
    assert is_not_answerable(text) is expected


def test_postgresql_applies_the_same_not_answerable_rule(settings, services):
    stmt = text("SELECT CAST(:answer AS text) ~* :pattern").bindparams(bindparam("pattern", NOT_ANSWERABLE_PATTERN))
    with session_scope(settings) as session:
        got = [session.scalar(stmt, {"answer": answer}) for answer, _ in ANSWERS]
    assert got == [expected for _, expected in ANSWERS]


def test_final_states_and_their_stamps():
    assert [s.value for s in FINAL_JOB_STATES] == ["completed", "failed", "cancelled", "expired"]
    assert END_STAMPS == ("completed_at", "failed_at", "cancelled_at", "expired_at")
    assert set(ENDED_JOB_STATES) - set(FINAL_JOB_STATES) == {JobStatus.finalizing}
    assert is_final("expired") and is_final(JobStatus.completed) and not is_final("finalizing")


def test_lanes_are_one_list_for_the_options_and_the_parsers():
    assert LANES == ("visual", "lexical", "dense")
    assert split_lanes(" visual, ,dense ") == ["visual", "dense"]
    assert job_options(lanes=split_lanes("lexical,dense")).lanes == ["lexical", "dense"]

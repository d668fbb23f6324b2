"""The rules of pageqa's domain, written once: job and question states, lane names, the reserved tenant name,
what counts as "Not answerable" and how an instant is written. Every layer imports them from here; none redefines
them."""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import Literal, get_args


class JobStatus(str, enum.Enum):
    """Lifecycle of a job, as in OpenAI's Batch API: ``validating`` while its question file is read and stored,
    ``in_progress`` until every question has ended, ``finalizing`` while its final counts are written, then
    ``completed``. ``failed`` when the file has no valid row (or every question failed), ``cancelling →
    cancelled`` on cancel, ``expired`` when its completion window passed first."""

    validating = "validating"
    in_progress = "in_progress"
    finalizing = "finalizing"
    completed = "completed"
    failed = "failed"
    cancelling = "cancelling"
    cancelled = "cancelled"
    expired = "expired"


#: The states a job never leaves.
FINAL_JOB_STATES = (JobStatus.completed, JobStatus.failed, JobStatus.cancelled, JobStatus.expired)
#: The states in which a job can no longer be cancelled: the final ones, and ``finalizing`` (its counts are being
#: frozen).
ENDED_JOB_STATES = (*FINAL_JOB_STATES, JobStatus.finalizing)
#: The timestamp column (and record key) of each final state, in the order of :data:`FINAL_JOB_STATES`.
END_STAMPS = tuple(f"{s.value}_at" for s in FINAL_JOB_STATES)


def is_final(status: str | JobStatus) -> bool:
    """Whether a job in ``status`` (an enum member or its value) has reached a state it never leaves."""
    return JobStatus(status) in FINAL_JOB_STATES


class QuestionStatus(str, enum.Enum):
    """Lifecycle of one question: ``queued → running → answered | failed``; ``cancelled`` or ``expired`` when its
    job was cancelled or ran out of its completion window before the question was answered."""

    queued = "queued"
    running = "running"
    answered = "answered"
    failed = "failed"
    cancelled = "cancelled"
    expired = "expired"


#: The retrieval lanes fused by reciprocal rank fusion, in their canonical order.
Lane = Literal["visual", "lexical", "dense"]
LANES: tuple[str, ...] = get_args(Lane)


def split_lanes(text: str) -> list[str]:
    """``"visual, lexical"`` → ``["visual", "lexical"]``: the comma-separated lane names, blanks dropped (names
    are checked by whoever takes them, e.g. :class:`pageqa.options.JobOptions`)."""
    return [x.strip() for x in text.split(",") if x.strip()]


#: The tenant name no API key may have: the nightly report's page over every tenant is stored under it.
ALL_TENANTS = "all"

#: What every answer stage says when the pages do not hold the answer (MMLongBench-Doc's gold label too).
NOT_ANSWERABLE = "Not answerable"
#: The one rule that recognises it, as a regular expression valid both in Python and in PostgreSQL (``~*``):
#: "not answerable" or "unanswerable", case-insensitive, alone but for surrounding whitespace, punctuation, quotes
#: or markdown emphasis ("Not answerable.", "**not answerable**"); "Not answerable by the manual alone" is an answer.
NOT_ANSWERABLE_PATTERN = r"^(\W|_)*(not(\W|_)+answerable|unanswerable)(\W|_)*$"
_NOT_ANSWERABLE = re.compile(NOT_ANSWERABLE_PATTERN, re.IGNORECASE)


def is_not_answerable(text: str | None) -> bool:
    """Whether an answer (or a gold answer) says the pages do not hold the answer (:data:`NOT_ANSWERABLE_PATTERN`);
    False for None."""
    return text is not None and _NOT_ANSWERABLE.fullmatch(text) is not None


def rfc3339(value: dt.datetime | None) -> str | None:
    """An instant as pageqa's records and the HTTP API write it: RFC 3339 in UTC with a ``Z``
    (``2024-03-01T12:00:00.123456Z``); None for None."""
    return None if value is None else value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")

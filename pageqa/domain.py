"""The rules of pageqa's domain, written once: job and question states, lane names, what a name may be (corpus,
tenant, key), the reserved tenant name, what counts as "Not answerable" and how an instant is written. Every layer
imports them from here; none redefines them."""

from __future__ import annotations

import datetime as dt
import enum
import re
import unicodedata
from typing import Literal, get_args

from pageqa.errors import InputError


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
#: A tenant name: ASCII letters, digits, ``_``, ``.`` and ``-``, starting with a letter or digit (it names report
#: pages and appears in logs).
TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

#: Longest name a user chooses (a corpus's, an API key's): the ``corpora.name`` column's length.
NAME_MAX_CHARS = 200


def name_problem(name: str, *, max_chars: int = NAME_MAX_CHARS) -> str | None:
    """Why ``name`` cannot name a corpus, a key, a tenant or a column; None when it can. The one rule for names a
    user chooses: not empty, no whitespace at either end, not ``.`` or ``..``, at most ``max_chars`` characters,
    and every character printable by :meth:`str.isprintable`: no control character (Unicode category Cc), no
    format character (Cf: the bidi overrides and isolates U+202A-U+202E and U+2066-U+2069, zero-width U+200B-U+200D,
    U+FEFF), no surrogate, private-use or unassigned code point, no separator but the ASCII space. A right-to-left
    override in a name would make ``pageqa corpora`` show an operator another name than the stored one."""
    if not name:
        return "is empty"
    if name != name.strip():
        return "starts or ends with whitespace"
    if name in (".", ".."):
        return f"cannot be {name!r}"
    if len(name) > max_chars:
        return f"is longer than {max_chars} characters"
    bad = next((c for c in name if not c.isprintable()), None)
    if bad is not None:
        named = f" {unicodedata.name(bad)}" if unicodedata.name(bad, "") else ""
        return f"contains U+{ord(bad):04X}{named}, an unprintable character (category {unicodedata.category(bad)})"
    return None


def check_name(name: str, *, what: str, max_chars: int = NAME_MAX_CHARS) -> str:
    """``name`` when :func:`name_problem` finds nothing wrong with it; ``what`` says what it names.

    Raises:
        InputError: e.g. ``corpus name '\\u202eevil' contains U+202E RIGHT-TO-LEFT OVERRIDE, …``.
    """
    problem = name_problem(name, max_chars=max_chars)
    if problem is not None:
        raise InputError(f"{what} {name!r} {problem}", code="invalid_name")
    return name


def check_tenant(tenant: str) -> str:
    """``tenant`` when it may name a tenant (:data:`TENANT_NAME`, and not :data:`ALL_TENANTS`).

    Raises:
        InputError: it may not.
    """
    if not TENANT_NAME.match(tenant):
        raise InputError(f"tenant {tenant!r}: use 1-100 letters, digits, '_', '.' or '-', starting with a letter or "
                         "digit", code="invalid_name")
    if tenant == ALL_TENANTS:
        raise InputError(f"tenant {ALL_TENANTS!r} is reserved: it names the nightly report over every tenant",
                         code="invalid_name")
    return tenant

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

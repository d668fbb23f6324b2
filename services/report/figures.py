"""The figures of one day's nightly report: the day as a window of its time zone, every figure per scope (read by
:mod:`db.report_figures` and :mod:`db.report_answers`), the day's errors grouped by type, and the defaults of a scope
or day that had none.

A day is ``[00:00, 24:00)`` local time in the report time zone (:class:`DayWindow`; 23 or 25 hours on a daylight
saving change); which timestamp puts a row in the day is written in :mod:`db.report_figures`.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from db import report_answers as answers_db
from db import report_figures as figures_db
from pageqa.domain import ALL_TENANTS


@dataclass(frozen=True)
class DayWindow:
    """One calendar ``day`` of the IANA zone ``timezone``: ``[start, end)`` as aware datetimes."""

    day: dt.date
    timezone: str
    start: dt.datetime
    end: dt.datetime

    @classmethod
    def of(cls, day: dt.date, timezone: str) -> DayWindow:
        """The window from local midnight of ``day`` to local midnight of the next day in ``timezone``.

        Raises:
            zoneinfo.ZoneInfoNotFoundError: ``timezone`` is no IANA zone name.
        """
        zone = ZoneInfo(timezone)
        start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
        return cls(day, timezone, start, end)

    @property
    def hours(self) -> int:
        """Hours in the day: 24, or 23 / 25 on a daylight saving change (aware datetimes of one zone subtract as
        wall times in Python, so through UTC)."""
        return round((self.end.astimezone(dt.UTC) - self.start.astimezone(dt.UTC)).total_seconds() / 3600)

    def hour_start(self, hour: int) -> dt.datetime:
        """Local time ``hour`` whole hours after the day's start (``hour`` as in
        :func:`db.report_figures.latency_hourly`)."""
        return (self.start.astimezone(dt.UTC) + dt.timedelta(hours=hour)).astimezone(self.start.tzinfo)


_GAVE_UP = re.compile(r"^gave up after \d+ attempts; last: ")
_EXCEPTION = re.compile(r"^([A-Z][\w]*|[a-z_][\w]*(?:\.[A-Za-z_]\w*)+)(?::|$)")


def error_kind(message: str | None) -> str:
    """The type of an error message, for grouping: the exception class name of ``"<Type>: <message>"`` (the
    reconciler's ``"gave up after N attempts; last: "`` wrapper removed), else its first six words with numbers
    written ``N``."""
    text_ = _GAVE_UP.sub("", " ".join((message or "").split()))
    match = _EXCEPTION.match(text_)
    if match:
        return match.group(1)
    return " ".join(re.sub(r"\d+(\.\d+)?", "N", text_).split()[:6]) or "(no message)"


def errors(session: Session, *, window: DayWindow) -> dict[str, list[dict]]:
    """Per scope, the errors of the day (:func:`db.report_figures.failures`) grouped by ``source`` (``question``:
    questions failed on the day, their ``last_error``; ``chunk``: chunk runs of the day that recorded an error) and
    :func:`error_kind`: ``count`` and the first one of the day as ``example`` (with its ``job_id`` and
    ``custom_id``), most frequent first."""
    groups: dict[str, dict[tuple[str, str], dict]] = {}
    for r in figures_db.failures(session, start=window.start, end=window.end):
        key = (r.source, error_kind(r.message))
        for scope in (r.tenant, ALL_TENANTS):
            group = groups.setdefault(scope, {}).setdefault(key, {
                "source": r.source, "kind": key[1], "count": 0, "example": r.message or "",
                "job_id": r.job_id, "custom_id": r.custom_id})
            group["count"] += 1
    return {scope: sorted(g.values(), key=lambda e: (-e["count"], e["source"], e["kind"]))
            for scope, g in groups.items()}


HISTORY_DAYS = 7
_QUIET_DAY = {"jobs_submitted": 0, "questions_answered": 0, "questions_failed": 0, "not_answerable": 0,
              "latency_p95_ms": None, "confidence_p50": None}


def history(session: Session, *, window: DayWindow, days: int = HISTORY_DAYS) -> dict[str, list[dict]]:
    """Per scope that has any of them (and ``ALL_TENANTS`` always), :data:`db.report_answers.HISTORY_SERIES` for
    each of the ``days`` days before the report's day and the day itself (oldest first, ``day`` as ``YYYY-MM-DD``;
    each day in the same zone and by the same stamps as the day's figures; a day without any: zero counts and None
    for ``latency_p95_ms`` and ``confidence_p50``)."""
    dates = [window.day - dt.timedelta(days=n) for n in range(days, -1, -1)]
    series = answers_db.history(session, since=DayWindow.of(dates[0], window.timezone).start, end=window.end,
                                tz=window.timezone)
    return {scope: [{"day": d.isoformat(), **_QUIET_DAY, **by_day.get(d, {})} for d in dates]
            for scope, by_day in {ALL_TENANTS: {}, **series}.items()}


_EMPTY = {
    "jobs": {"submitted": 0, **dict.fromkeys(figures_db.STAMPS, 0)},
    "questions": {"answered": 0, "answered_by_models": 0, "reused": 0, "not_answerable": 0, "failed": 0},
    "throughput": {"workers": [], "queue_wait_ms": {"n": 0, "p50": None, "p95": None}},
    "latency_ms": {"n": 0, **{s: {"p50": None, "p95": None, "p99": None} for s in figures_db.STAGES}},
    "latency_hourly": [],
    "confidence": {"n": 0, "min": None, "p50": None, "max": None, "edges": [], "counts": [], "lowest": []},
    "most_cited": {"documents": [], "pages": []},
    "corpus_growth": {"documents_added": 0, "pages_added": 0, "corpora": []},
    "errors": [],
}


def day_figures(session: Session, *, window: DayWindow, lowest: int = 10, top: int = 10) -> dict[str, dict]:
    """Every figure of the day, per scope: ``ALL_TENANTS``, then each tenant active on the day (any figure of the day
    is not empty for it), by name. Each scope's dict has the sections of ``_EMPTY`` (as returned by
    :mod:`db.report_figures`, :mod:`db.report_answers` and :func:`errors`), ``history`` (:func:`history`), ``empty``
    (nothing happened: no job submitted or ended, no question answered or failed, no chunk run, no document
    ingested), and ``day``, ``timezone``, ``start``, ``end`` (ISO 8601)."""
    day = {"start": window.start, "end": window.end}
    parts = {
        "jobs": figures_db.job_counts(session, **day), "questions": figures_db.question_counts(session, **day),
        "throughput": figures_db.workers(session, **day), "latency_ms": figures_db.latency(session, **day),
        "latency_hourly": figures_db.latency_hourly(session, **day),
        "confidence": answers_db.confidence(session, **day, lowest=lowest),
        "most_cited": answers_db.most_cited(session, **day, top=top),
        "corpus_growth": answers_db.corpus_growth(session, **day), "errors": errors(session, window=window),
    }
    tenants = sorted({scope for part in parts.values() for scope in part} - {ALL_TENANTS})
    past = history(session, window=window)
    quiet = [{"day": d["day"], **_QUIET_DAY} for d in past[ALL_TENANTS]]
    out = {}
    for scope in (ALL_TENANTS, *tenants):
        figures = {"scope": scope, "day": window.day.isoformat(), "timezone": window.timezone,
                   "start": window.start.isoformat(), "end": window.end.isoformat()}
        figures.update({name: part.get(scope) or copy.deepcopy(_EMPTY[name]) for name, part in parts.items()})
        figures["history"] = past.get(scope) or copy.deepcopy(quiet)
        figures["empty"] = not (any(figures["jobs"].values()) or any(figures["questions"].values())
                                or figures["throughput"]["workers"] or figures["corpus_growth"]["documents_added"])
        out[scope] = figures
    return out

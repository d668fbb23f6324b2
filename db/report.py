"""The nightly reports stored in the ``reports`` table (one row per day and scope), and the page images a report
shows. The figures they hold are read by :mod:`db.report_figures` and :mod:`db.report_answers`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.schema import Page, Report
from pageqa.errors import NotFoundError


def page_images(session: Session, *, page_ids: Iterable[int]) -> dict[int, tuple[str, bytes]]:
    """Per page id, its stored image format and bytes (WebP, PNG or JPEG as ingested)."""
    ids = sorted(set(page_ids))
    if not ids:
        return {}
    rows = session.execute(select(Page.id, Page.image_format, Page.image).where(Page.id.in_(ids)))
    return {pid: (fmt, bytes(image)) for pid, fmt, image in rows}


@dataclass(frozen=True)
class ReportInfo:
    """A stored report without its contents: its day, scope and when it was built."""

    day: dt.date
    scope: str
    generated_at: dt.datetime


def store_reports(session: Session, *, day: dt.date, pages: dict[str, tuple[str, dict, str]],
                  generated_at: dt.datetime) -> None:
    """Make ``pages`` (scope → html, figures, csv) the reports of ``day``: rows of the same (day, scope) are
    replaced in place, rows of the day for scopes not in ``pages`` deleted. Idempotent; two builds of one day at
    once leave one of them whole (the upsert locks each row)."""
    for scope, (html, figures, csv) in sorted(pages.items()):
        values = {"day": day, "scope": scope, "html": html, "json": figures, "csv": csv, "generated_at": generated_at}
        session.execute(insert(Report).values(**values).on_conflict_do_update(
            constraint="uq_reports_day_scope", set_={k: values[k] for k in ("html", "json", "csv", "generated_at")}))
    session.execute(delete(Report).where(Report.day == day, Report.scope.not_in(list(pages))))


def list_reports(session: Session, *, scope: str, limit: int = 100) -> list[ReportInfo]:
    """The stored reports of ``scope`` (a tenant, or ``ALL_TENANTS``), newest day first, at most ``limit``."""
    stmt = (select(Report.day, Report.scope, Report.generated_at).where(Report.scope == scope)
            .order_by(Report.day.desc()).limit(limit))
    return [ReportInfo(*row) for row in session.execute(stmt)]


def get_report(session: Session, *, day: dt.date, scope: str) -> Report:
    """The report of ``day`` for ``scope`` (a tenant, or ``ALL_TENANTS``): ``html``, ``json`` (figures), ``csv``.

    Raises:
        NotFoundError: no report of that day for that scope (a tenant has a report only for days it was active).
    """
    row = session.scalar(select(Report).where(Report.day == day, Report.scope == scope))
    if row is None:
        raise NotFoundError(f"no report of {day.isoformat()} for {scope!r}")
    return row

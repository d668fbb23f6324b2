"""Reading the stored nightly reports (the rows :mod:`services.report.build` writes), each call one unit of work
over :mod:`db.report`."""

from __future__ import annotations

import datetime as dt

from db import report as report_db
from db.engine import session_scope
from db.schema import Report
from pageqa.settings import Settings


def list_reports(settings: Settings, *, scope: str, limit: int = 100) -> list[report_db.ReportInfo]:
    """The stored reports of ``scope`` (a tenant, or ``ALL_TENANTS``) without their contents, newest day first,
    at most ``limit``."""
    with session_scope(settings) as session:
        return report_db.list_reports(session, scope=scope, limit=limit)


def get_report(settings: Settings, *, day: dt.date, scope: str) -> Report:
    """The report of ``day`` for ``scope`` (a tenant, or ``ALL_TENANTS``), detached from its session: ``html``
    (the self-contained page), ``json`` (its figures), ``csv`` (a flat table).

    Raises:
        NotFoundError: no report of that day for that scope (a tenant has a report only for days it was active).
    """
    with session_scope(settings) as session:
        return report_db.get_report(session, day=day, scope=scope)

"""Task: the nightly report. Beat sends it at ``report_time`` in ``report_timezone`` for the previous day of that
zone (worker/app.py); it runs on the control queue, in the control worker that holds no model."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.exc import OperationalError

from pageqa.settings import get_settings
from services.report.build import build_report, previous_day
from worker.app import app
from worker.queue import NIGHTLY_REPORT

log = logging.getLogger(__name__)


# A database outage is the one transient failure: retried with backoff. Building again is harmless (the day's rows
# are replaced), so a task delivered twice under late acknowledgement does no damage either.
@app.task(name=NIGHTLY_REPORT, autoretry_for=(OperationalError,), retry_backoff=30, retry_backoff_max=900,
          max_retries=8)
def nightly_report(day: str | None = None) -> str:
    """Build the report of ``day`` (``YYYY-MM-DD``; default: the previous day in the report time zone); returns
    the day built."""
    settings = get_settings()
    target = dt.date.fromisoformat(day) if day else previous_day(settings)
    result = build_report(settings, day=target)
    log.info("nightly report of %s written to %s", target, result.directory)
    return target.isoformat()

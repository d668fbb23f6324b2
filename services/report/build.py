"""The nightly report: one day's figures (:mod:`services.report.figures`) → matplotlib plots
(:mod:`services.report.plots`) → one self-contained HTML page per scope (:mod:`services.report.html`), plus the
figures as JSON and as a flat CSV; stored in the ``reports`` table and under ``PAGEQA_HOME/reports/YYYY-MM-DD/``
(``index.html`` for every tenant, ``tenant-<name>.html`` per tenant active on the day, ``figures.json``,
``figures.csv``). Building a day again replaces that day's report.

A page embeds its plots and page thumbnails as ``data:`` URIs and its CSS inline: it loads no other file and runs
no JavaScript. A tenant's page is built from that tenant's figures only.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from db import report as report_db
from db.engine import session_scope
from pageqa.domain import ALL_TENANTS
from pageqa.settings import Settings
from services.report.figures import DayWindow, day_figures
from services.report.html import render_html
from services.report.plots import thumbnail

log = logging.getLogger(__name__)

#: Lowest-confidence answers listed, and most-cited documents and pages listed, per scope.
LOWEST = 10
TOP = 10


def previous_day(settings: Settings, *, now: dt.datetime | None = None) -> dt.date:
    """The calendar day before ``now`` (default: the current time) in ``settings.report_timezone``: the day the
    nightly report covers."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(ZoneInfo(settings.report_timezone)).date() - dt.timedelta(days=1)


@dataclass(frozen=True)
class ReportResult:
    """A built report: its day, folder, the HTML file per scope (``"all"`` → ``index.html``), the JSON and CSV
    files (every scope), and the figures per scope (:func:`services.report.figures.day_figures`)."""

    day: dt.date
    directory: Path
    pages: dict[str, Path]
    json_path: Path
    csv_path: Path
    figures: dict[str, dict]


def build_report(settings: Settings, *, day: dt.date) -> ReportResult:
    """Build, store and write the report of ``day`` (a calendar day in ``settings.report_timezone``).

    Raises:
        ServiceError: the database cannot be reached.
    """
    window = DayWindow.of(day, settings.report_timezone)
    generated_at = dt.datetime.now(dt.UTC)
    with session_scope(settings) as session:
        figures = day_figures(session, window=window, lowest=LOWEST, top=TOP)
        images = report_db.page_images(session, page_ids=[item["page_id"] for f in figures.values()
                                                           for item in f["confidence"]["lowest"]])
    thumbnails = {pid: thumbnail(fmt, data) for pid, (fmt, data) in images.items()}
    for f in figures.values():
        f["generated_at"] = generated_at.isoformat()
    pages = {scope: (render_html(f, thumbnails=thumbnails), f, to_csv({scope: f})) for scope, f in figures.items()}
    with session_scope(settings) as session:
        report_db.store_reports(session, day=day, pages=pages, generated_at=generated_at)
    result = _write(settings.home_dir / "reports" / day.isoformat(), day=day, pages=pages, figures=figures)
    log.info("report of %s (%s): %d scopes in %s", day, settings.report_timezone, len(pages), result.directory)
    return result


def page_file_name(scope: str) -> str:
    """``index.html`` for every tenant, ``tenant-<name>.html`` for one (characters other than letters, digits,
    ``.``, ``_`` and ``-`` replaced, with a hash of the name then, so two names never share a file)."""
    if scope == ALL_TENANTS:
        return "index.html"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", scope)
    if safe != scope or safe.startswith("."):
        safe = f"{safe.lstrip('.')}-{hashlib.sha256(scope.encode()).hexdigest()[:8]}"
    return f"tenant-{safe}.html"


def _write(directory: Path, *, day: dt.date, pages: dict[str, tuple[str, dict, str]],
           figures: dict[str, dict]) -> ReportResult:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {scope: directory / page_file_name(scope) for scope in pages}
    for scope, (page, _, _) in pages.items():
        _replace(paths[scope], page)
    for stale in set(directory.glob("*.html")) - set(paths.values()):  # a tenant no longer active that day
        stale.unlink()
    json_path, csv_path = directory / "figures.json", directory / "figures.csv"
    _replace(json_path, json.dumps({"day": day.isoformat(), "scopes": figures}, indent=1, ensure_ascii=False))
    _replace(csv_path, to_csv(figures))
    return ReportResult(day, directory, paths, json_path, csv_path, figures)


def _replace(path: Path, content: str) -> None:
    """Write ``path`` whole or not at all (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(content, encoding="utf-8")
    tmp.replace(path)


# --- CSV ---------------------------------------------------------------------------------------------------------

CSV_HEADER = ("section", "tenant", "metric", "value")
_META = ("day", "timezone", "start", "end", "generated_at", "empty")


def to_csv(figures: dict[str, dict]) -> str:
    """The figures of each scope as one flat table (:data:`CSV_HEADER`): ``section`` is the figure's section
    (``report`` for the day's own fields), ``metric`` its path inside the section (``workers[1].questions``: lists
    are numbered from 1), ``value`` the number or text (empty for none)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for scope, f in figures.items():
        for key in _META:
            writer.writerow(("report", scope, key, _cell(f.get(key))))
        for section, value in f.items():
            if section in (*_META, "scope"):
                continue
            for metric, leaf in _flatten(value, ""):
                writer.writerow((section, scope, metric, _cell(leaf)))
    return out.getvalue()


def _flatten(value, prefix: str):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list):
        for i, item in enumerate(value, 1):
            yield from _flatten(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


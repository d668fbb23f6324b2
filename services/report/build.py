"""The nightly report: one day's figures (:mod:`db.report`) → matplotlib plots → one self-contained HTML page per
scope, plus the figures as JSON and as a flat CSV; stored in the ``reports`` table and under
``PAGEQA_HOME/reports/YYYY-MM-DD/`` (``index.html`` for every tenant, ``tenant-<name>.html`` per tenant active on
the day, ``figures.json``, ``figures.csv``). Building a day again replaces that day's report.

A page embeds its plots and page thumbnails as ``data:`` URIs and its CSS inline: it loads no other file and runs
no JavaScript. A tenant's page is built from that tenant's figures only.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import html
import io
import itertools
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from db import report as report_db
from db.engine import session_scope
from pageqa.settings import Settings
from pageqa.domain import ALL_TENANTS

log = logging.getLogger(__name__)

#: Lowest-confidence answers listed, and most-cited documents and pages listed, per scope.
LOWEST = 10
TOP = 10
#: Bounding box of a page thumbnail, pixels.
THUMBNAIL = (120, 160)


def previous_day(settings: Settings, *, now: dt.datetime | None = None) -> dt.date:
    """The calendar day before ``now`` (default: the current time) in ``settings.report_timezone``: the day the
    nightly report covers."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(ZoneInfo(settings.report_timezone)).date() - dt.timedelta(days=1)


@dataclass(frozen=True)
class ReportResult:
    """A built report: its day, folder, the HTML file per scope (``"all"`` → ``index.html``), the JSON and CSV
    files (every scope), and the figures per scope (:func:`db.report.day_figures`)."""

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
    window = report_db.DayWindow.of(day, settings.report_timezone)
    generated_at = dt.datetime.now(dt.UTC)
    with session_scope(settings) as session:
        figures = report_db.day_figures(session, window=window, lowest=LOWEST, top=TOP)
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


# --- images ------------------------------------------------------------------------------------------------------

def thumbnail(image_format: str, data: bytes) -> str | None:
    """A page image as a JPEG thumbnail within :data:`THUMBNAIL`, as a ``data:`` URI; None when the stored bytes
    are no image Pillow can decode (nothing to show rather than a broken image)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            img.thumbnail(THUMBNAIL)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=80)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        log.warning("page image (%s) not shown in the report: %s", image_format, exc)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_STAGE_COLORS = {"retrieve": "#1f77b4", "rerank": "#ff7f0e", "generate": "#2ca02c"}


def latency_plot(hourly: list[dict], window: report_db.DayWindow) -> str:
    """p50 (solid) and p95 (dashed) milliseconds per stage and hour of the day, log scale, as a PNG data URI."""
    from matplotlib.figure import Figure

    n_hours = window.hours
    by_hour = {row["hour"]: row for row in hourly}
    fig = Figure(figsize=(8, 3.2))
    ax = fig.add_subplot()
    hours = list(range(n_hours))
    for stage, color in _STAGE_COLORS.items():
        for q, style in (("p50", "-"), ("p95", "--")):
            ys = [by_hour[h][f"{stage}_{q}"] if h in by_hour else float("nan") for h in hours]
            ax.plot(hours, ys, style, marker="o", markersize=3, color=color, label=f"{stage} {q}")
    ticks = hours[::3]
    ax.set_xticks(ticks, [window.hour_start(h).strftime("%H:%M") for h in ticks])
    ax.set_xlim(-0.5, n_hours - 0.5)
    ax.set_yscale("log")
    ax.set_ylabel("milliseconds")
    ax.set_xlabel(f"hour of the day ({window.timezone})")
    ax.grid(alpha=0.3)
    ax.legend(ncol=3, fontsize=7)
    return _png(fig)


def confidence_plot(conf: dict) -> str:
    """Histogram of the top rerank scores (answers per bin), as a PNG data URI."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 2.8))
    ax = fig.add_subplot()
    edges = conf["edges"]
    ax.bar(edges[:-1], conf["counts"], width=[b - a for a, b in itertools.pairwise(edges)],
           align="edge", color="#4c72b0", edgecolor="white")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("top rerank score (rank-1 citation)")
    ax.set_ylabel("answers")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


_SERIES_TITLES = {
    "jobs_submitted": "jobs submitted", "questions_answered": "questions answered",
    "questions_failed": "questions failed", "not_answerable": '"Not answerable"',
    "latency_p95_ms": "p95 latency (ms)", "top_score_p50": "median top rerank score",
}


_COUNT_SERIES = ("jobs_submitted", "questions_answered", "questions_failed", "not_answerable")


def history_plot(days: list[dict]) -> str:
    """Small multiples of the daily series over the previous days and the report's day (last point, in red)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 4))
    axes = fig.subplots(2, 3)
    labels = [d["day"][5:] for d in days]
    for ax, (key, title) in zip(axes.flat, _SERIES_TITLES.items(), strict=True):
        ys = [float("nan") if d[key] is None else d[key] for d in days]
        ax.plot(range(len(days)), ys, marker="o", markersize=3, color="#555555")
        ax.plot([len(days) - 1], [ys[-1]], marker="o", color="#d62728")
        if key in _COUNT_SERIES:  # counts start at 0 and step by whole numbers, even on a day of zeros
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(0, max(1, *ys) * 1.1)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([0, len(days) - 1], [labels[0], labels[-1]], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


# --- HTML --------------------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.sub { color: #666; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: .6rem; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .5rem .8rem; min-width: 7rem; }
.card b { display: block; font-size: 1.4rem; }
.card span { color: #666; font-size: .85rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { border-bottom: 1px solid #eee; padding: .3rem .6rem; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
td:first-child { white-space: nowrap; }
.quiet { background: #f6f6f6; border-left: 4px solid #999; padding: .8rem 1rem; font-size: 1.1rem; }
.none { color: #777; font-style: italic; }
img.plot { max-width: 100%; }
img.thumb { border: 1px solid #ccc; }
.ans { max-width: 22rem; }
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _num(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"
    return f"{value:,}"


def _table(headers: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cards(values: dict[str, int], labels: dict[str, str]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{_num(values[k])}</b><span>{_e(label)}</span></div>' for k, label in labels.items()
    ) + "</div>"


def _none(what: str) -> str:
    return f'<p class="none">{_e(what)}</p>'


def render_html(f: dict, *, thumbnails: dict[int, str | None]) -> str:
    """The report page of one scope's figures: a self-contained HTML document (inline CSS, plots and thumbnails
    as ``data:`` URIs, no script)."""
    window = report_db.DayWindow.of(dt.date.fromisoformat(f["day"]), f["timezone"])
    who = "all tenants" if f["scope"] == ALL_TENANTS else f"tenant {f['scope']}"
    title = f"pageqa nightly report, {f['day']} ({who})"
    parts = [f"<h1>{_e(title)}</h1>",
             (f'<p class="sub">The day {_e(f["day"])} from 00:00 to 24:00 {_e(f["timezone"])} '
              f"({_e(f['start'])} to {_e(f['end'])}). Generated {_e(f.get('generated_at', ''))}.</p>")]
    if f["empty"]:
        parts.append(f'<p class="quiet" id="nothing-happened">Nothing happened on {_e(f["day"])}: no job was '
                     "submitted or ended, no question was answered or failed, no chunk ran and no document was "
                     "ingested.</p>")
    else:
        parts += [_activity(f), _throughput(f), _latency(f, window), _confidence(f, thumbnails), _cited(f),
                  _growth(f), _errors(f)]
    parts.append(_history(f))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f"<body>{''.join(parts)}</body></html>\n")


def _activity(f: dict) -> str:
    jobs = _cards(f["jobs"], {"submitted": "jobs submitted", "completed": "completed", "failed": "failed",
                              "cancelled": "cancelled", "expired": "expired"})
    questions = _cards(f["questions"], {"answered": "questions answered", "answered_by_models": "by the models",
                                        "reused": "reused answers", "not_answerable": '"Not answerable"',
                                        "failed": "questions failed"})
    return f"<h2>Jobs</h2>{jobs}<h2>Questions</h2>{questions}"


def _throughput(f: dict) -> str:
    t = f["throughput"]
    if not t["workers"]:
        return "<h2>Throughput</h2>" + _none("No chunk ran on this day.")
    rows = [[_e(w["worker"]), _e(w["device"]), _num(w["chunks"]), _num(w["failed_chunks"]), _num(w["questions"]),
             _num(w["busy_ms"] / 1000), _num(w["questions_per_hour"]), _num(w["queue_wait_p50_ms"]),
             _num(w["queue_wait_p95_ms"])] for w in t["workers"]]
    wait = t["queue_wait_ms"]
    return ("<h2>Throughput</h2>" + _table(
        ["worker", "device", "chunks", "failed", "questions", "busy s", "questions / busy hour",
         "queue wait p50 ms", "p95 ms"], rows, numeric=set(range(2, 9)))
        + f"<p>Queue wait (enqueue to start of a chunk) over {_num(wait['n'])} chunks: p50 {_num(wait['p50'])} ms, "
          f"p95 {_num(wait['p95'])} ms.</p>")


def _latency(f: dict, window: report_db.DayWindow) -> str:
    lat = f["latency_ms"]
    if not lat["n"]:
        return "<h2>Latency</h2>" + _none("No answer was made by the models on this day (reused answers only).")
    rows = [[s, *(_num(lat[s][q]) for q in ("p50", "p95", "p99"))] for s in report_db.STAGES]
    return (f"<h2>Latency per stage</h2><p>Over the {_num(lat['n'])} answers made by the models (reused answers "
            "excluded), milliseconds.</p>" + _table(["stage", "p50", "p95", "p99"], rows, numeric={1, 2, 3})
            + f'<img class="plot" alt="latency per stage and hour" src="{latency_plot(f["latency_hourly"], window)}">')


def _confidence(f: dict, thumbnails: dict[int, str | None]) -> str:
    conf = f["confidence"]
    if not conf["n"]:
        return "<h2>Answer confidence</h2>" + _none("No model-made answer cited a page on this day.")
    rows = []
    for item in conf["lowest"]:
        uri = thumbnails.get(item["page_id"])
        thumb = (f'<img class="thumb" alt="page {item["page"]} of {_e(item["document"])}" src="{uri}">'
                 if uri else _none("no image"))
        text = (f'<div class="ans"><b>{_e(item["question"])}</b><br>{_e(item["answer"])}'
                f'<br><small>{_e(item["job_id"])} / {_e(item["custom_id"])}</small></div>')
        rows.append([_num(item["score"], 3), text, f"{_e(item['document'])}, page {item['page']}", thumb])
    return (f"<h2>Answer confidence</h2><p>Top rerank score (the rank-1 citation) of {_num(conf['n'])} model-made "
            f"answers: min {_num(conf['min'], 3)}, median {_num(conf['p50'], 3)}, max {_num(conf['max'], 3)}.</p>"
            f'<img class="plot" alt="histogram of top rerank scores" src="{confidence_plot(conf)}">'
            f"<h3>The {len(rows)} lowest-confidence answers</h3>"
            + _table(["score", "question and answer", "cited page", "page"], rows, numeric={0}))


def _cited(f: dict) -> str:
    cited = f["most_cited"]
    if not cited["documents"]:
        return "<h2>Most-cited documents and pages</h2>" + _none("No answer cited a page on this day.")
    docs = [[_e(d["document"]), _e(d["corpus"]), _num(d["citations"])] for d in cited["documents"]]
    pages = [[_e(p["document"]), _num(p["page"]), _e(p["corpus"]), _num(p["citations"])] for p in cited["pages"]]
    return ("<h2>Most-cited documents and pages</h2><p>Citations of every rank of the day's answers.</p>"
            + _table(["document", "corpus", "citations"], docs, numeric={2})
            + _table(["document", "page", "corpus", "citations"], pages, numeric={1, 3}))


def _growth(f: dict) -> str:
    g = f["corpus_growth"]
    if not g["corpora"]:
        return "<h2>Corpus growth</h2>" + _none("No document was ingested on this day.")
    rows = [[_e(c["corpus"] if "tenant" not in c else f"{c['tenant']} / {c['corpus']}"), _num(c["documents_added"]),
             _num(c["pages_added"]), _num(c["documents_total"]), _num(c["pages_total"])] for c in g["corpora"]]
    return (f"<h2>Corpus growth</h2><p>{_num(g['documents_added'])} documents and {_num(g['pages_added'])} pages "
            "ingested.</p>" + _table(["corpus", "documents added", "pages added", "documents at end of day",
                                      "pages at end of day"], rows, numeric={1, 2, 3, 4}))


def _errors(f: dict) -> str:
    if not f["errors"]:
        return "<h2>Errors</h2>" + _none("No question failed and no chunk recorded an error on this day.")
    rows = [[_e(e["source"]), _e(e["kind"]), _num(e["count"]),
             f"{_e(e['example'])}<br><small>{_e(e['job_id'])}{' / ' + _e(e['custom_id']) if e['custom_id'] else ''}"
             + "</small>"] for e in f["errors"]]
    return "<h2>Errors</h2>" + _table(["source", "type", "count", "example"], rows, numeric={2})


def _history(f: dict) -> str:
    days = f["history"]
    rows = [[_e(d["day"]), *(_num(d[k], 3 if k == "top_score_p50" else 1) for k in _SERIES_TITLES)] for d in days]
    return (f"<h2>The previous {len(days) - 1} days</h2>"
            f'<img class="plot" alt="daily series of the previous days" src="{history_plot(days)}">'
            + _table(["day", *_SERIES_TITLES.values()], rows, numeric=set(range(1, 7))))

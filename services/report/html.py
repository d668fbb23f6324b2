"""The nightly report's HTML page of one scope: a self-contained document (inline CSS, the plots and thumbnails of
:mod:`services.report.plots` as ``data:`` URIs, no script), one section per figure.
"""

from __future__ import annotations

import datetime as dt
import html

from db.report_figures import STAGES
from pageqa.domain import ALL_TENANTS
from pageqa.errors import printable
from services.report.figures import DayWindow
from services.report.plots import (
    SERIES_TITLES,
    confidence_plot,
    history_plot,
    latency_plot,
)

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


def _name(value) -> str:
    """A stored name (tenant, corpus, document, custom_id) inert, as the CLI prints it: each unprintable character
    (a bidi override, a zero-width space) written as its escape (:func:`pageqa.errors.printable`), then HTML-escaped."""
    return _e(printable("" if value is None else str(value)))


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
    window = DayWindow.of(dt.date.fromisoformat(f["day"]), f["timezone"])
    who = "all tenants" if f["scope"] == ALL_TENANTS else f"tenant {printable(f['scope'])}"
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


def _latency(f: dict, window: DayWindow) -> str:
    lat = f["latency_ms"]
    if not lat["n"]:
        return "<h2>Latency</h2>" + _none("No answer was made by the models on this day (reused answers only).")
    rows = [[s, *(_num(lat[s][q]) for q in ("p50", "p95", "p99"))] for s in STAGES]
    return (f"<h2>Latency per stage</h2><p>Over the {_num(lat['n'])} answers made by the models (reused answers "
            "excluded), milliseconds.</p>" + _table(["stage", "p50", "p95", "p99"], rows, numeric={1, 2, 3})
            + f'<img class="plot" alt="latency per stage and hour" src="{latency_plot(f["latency_hourly"], window)}">')


def _confidence(f: dict, thumbnails: dict[int, str | None]) -> str:
    conf = f["confidence"]
    if not conf["n"]:
        return "<h2>Answer confidence</h2>" + _none("No model-made answer with a confidence cited a page on this day "
                                                    "(extractive answers have none).")
    rows = []
    for item in conf["lowest"]:
        uri = thumbnails.get(item["page_id"])
        thumb = (f'<img class="thumb" alt="page {item["page"]} of {_name(item["document"])}" src="{uri}">'
                 if uri else _none("no image"))
        text = (f'<div class="ans"><b>{_e(item["question"])}</b><br>{_e(item["answer"])}'
                f'<br><small>{_e(item["job_id"])} / {_name(item["custom_id"])}</small></div>')
        rows.append([_num(item["score"], 3), text, f"{_name(item['document'])}, page {item['page']}", thumb])
    return (f"<h2>Answer confidence</h2><p>The generator's own probability of its answer (the geometric mean of its "
            f"tokens' probabilities) for {_num(conf['n'])} model-made answers: min {_num(conf['min'], 3)}, "
            f"median {_num(conf['p50'], 3)}, max {_num(conf['max'], 3)}.</p>"
            f'<img class="plot" alt="histogram of answer confidences" src="{confidence_plot(conf)}">'
            f"<h3>The {len(rows)} lowest-confidence answers</h3>"
            + _table(["score", "question and answer", "cited page", "page"], rows, numeric={0}))


def _cited(f: dict) -> str:
    cited = f["most_cited"]
    if not cited["documents"]:
        return "<h2>Most-cited documents and pages</h2>" + _none("No answer cited a page on this day.")
    docs = [[_name(d["document"]), _name(d["corpus"]), _num(d["citations"])] for d in cited["documents"]]
    pages = [[_name(p["document"]), _num(p["page"]), _name(p["corpus"]), _num(p["citations"])] for p in cited["pages"]]
    return ("<h2>Most-cited documents and pages</h2><p>Citations of every rank of the day's answers.</p>"
            + _table(["document", "corpus", "citations"], docs, numeric={2})
            + _table(["document", "page", "corpus", "citations"], pages, numeric={1, 3}))


def _growth(f: dict) -> str:
    g = f["corpus_growth"]
    if not g["corpora"]:
        return "<h2>Corpus growth</h2>" + _none("No document was ingested on this day.")
    rows = [[_name(c["corpus"] if "tenant" not in c else f"{c['tenant']} / {c['corpus']}"), _num(c["documents_added"]),
             _num(c["pages_added"]), _num(c["documents_total"]), _num(c["pages_total"])] for c in g["corpora"]]
    return (f"<h2>Corpus growth</h2><p>{_num(g['documents_added'])} documents and {_num(g['pages_added'])} pages "
            "ingested.</p>" + _table(["corpus", "documents added", "pages added", "documents at end of day",
                                      "pages at end of day"], rows, numeric={1, 2, 3, 4}))


def _errors(f: dict) -> str:
    if not f["errors"]:
        return "<h2>Errors</h2>" + _none("No question failed and no chunk recorded an error on this day.")
    rows = [[_e(e["source"]), _e(e["kind"]), _num(e["count"]),
             f"{_e(e['example'])}<br><small>{_e(e['job_id'])}{' / ' + _name(e['custom_id']) if e['custom_id'] else ''}"
             + "</small>"] for e in f["errors"]]
    return "<h2>Errors</h2>" + _table(["source", "type", "count", "example"], rows, numeric={2})


def _history(f: dict) -> str:
    days = f["history"]
    rows = [[_e(d["day"]), *(_num(d[k], 3 if k == "confidence_p50" else 1) for k in SERIES_TITLES)] for d in days]
    return (f"<h2>The previous {len(days) - 1} days</h2>"
            f'<img class="plot" alt="daily series of the previous days" src="{history_plot(days)}">'
            + _table(["day", *SERIES_TITLES.values()], rows, numeric=set(range(1, 7))))

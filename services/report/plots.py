"""The plots and page thumbnails of the nightly report, each as a ``data:`` URI to embed in its HTML page: latency per
stage and hour, the top-rerank-score histogram, the daily series of the previous days (matplotlib, PNG) and the
cited pages (Pillow, JPEG).
"""

from __future__ import annotations

import base64
import io
import itertools
import logging

from services.report.figures import DayWindow

log = logging.getLogger(__name__)

#: Bounding box of a page thumbnail, pixels.
THUMBNAIL = (120, 160)


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


def latency_plot(hourly: list[dict], window: DayWindow) -> str:
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
    """Histogram of the answers' confidences (answers per bin), as a PNG data URI."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 2.8))
    ax = fig.add_subplot()
    edges = conf["edges"]
    ax.bar(edges[:-1], conf["counts"], width=[b - a for a, b in itertools.pairwise(edges)],
           align="edge", color="#4c72b0", edgecolor="white")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("answer confidence (generator's geometric-mean token probability)")
    ax.set_ylabel("answers")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


#: The daily series of the previous days (:data:`db.report_answers.HISTORY_SERIES`), by their titles.
SERIES_TITLES = {
    "jobs_submitted": "jobs submitted", "questions_answered": "questions answered",
    "questions_failed": "questions failed", "not_answerable": '"Not answerable"',
    "latency_p95_ms": "p95 latency (ms)", "confidence_p50": "median answer confidence",
}


_COUNT_SERIES = ("jobs_submitted", "questions_answered", "questions_failed", "not_answerable")


def history_plot(days: list[dict]) -> str:
    """Small multiples of the daily series over the previous days and the report's day (last point, in red)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 4))
    axes = fig.subplots(2, 3)
    labels = [d["day"][5:] for d in days]
    for ax, (key, title) in zip(axes.flat, SERIES_TITLES.items(), strict=True):
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

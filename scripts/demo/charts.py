"""The demo's charts: one life-expectancy line chart per PDF page in the style of Our World in Data, drawn with
matplotlib into a vector PDF (embedded TrueType subsets, no creation date, so the same pages give the same bytes).

A :class:`ChartPage` holds a title, a subtitle and its lines (:class:`Series`); :func:`render_pdf` writes the pages.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

FIRST_YEAR, LAST_YEAR = 1952, 2007  # the span of the Gapminder data, and of every chart's x axis
COLORS = {"Africa": "#A2559C", "Americas": "#E56E5A", "Asia": "#00847E", "Europe": "#4C6A9C", "Oceania": "#883039"}
REFERENCE_COLOR = "#A8A8A8"
SUBTITLE = "Period life expectancy at birth, in years"
SOURCE = "Source: Gapminder (via the gapminder Python package)"
PAGE_SIZE_IN = (10.0, 7.5)  # 4:3 slide, inches
# Embedded TrueType subsets (Type 42), not Type 3 glyph procedures; all output is vector, so dpi hardly matters.
RC = {"pdf.fonttype": 42, "font.family": "DejaVu Sans", "figure.dpi": 72, "savefig.dpi": 72}


@dataclass(frozen=True)
class Series:
    """One line of a chart: life expectancy in years by year."""

    label: str
    values: pd.Series  # life expectancy in years, indexed by year
    color: str
    main: bool  # main series: thick and annotated; otherwise a thin grey reference line


@dataclass(frozen=True)
class ChartPage:
    """One PDF page: a chart's title, subtitle and lines."""

    title: str
    subtitle: str
    series: tuple[Series, ...]


def fmt_years(value: float) -> str:
    """Format a number of years as printed on the charts and in gold answers: one decimal, e.g. ``"82.6"``."""
    return f"{value:.1f}"


def _style_axes(ax: Axes, page: ChartPage) -> None:
    low = min(s.values.min() for s in page.series)
    high = max(s.values.max() for s in page.series)
    lo, hi = max(0, 10 * math.floor((low - 5) / 10)), 10 * math.ceil((high + 5) / 10)  # room for annotations
    ax.set_ylim(lo, hi)
    ax.set_yticks(range(lo, hi + 1, 10 if hi - lo > 30 else 5))
    ax.set_xlim(FIRST_YEAR - 2, LAST_YEAR + 2)
    ax.set_xticks([1952, 1967, 1982, 1997, 2007])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.spines["bottom"].set_color("#8C8C8C")
    ax.grid(axis="y", color="#DDDDDD", linestyle=(0, (4, 3)), linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(axis="y", length=0, labelcolor="#6E6E6E", labelsize=11, pad=6)
    ax.tick_params(axis="x", color="#8C8C8C", labelcolor="#6E6E6E", labelsize=11)


def _end_label_positions(series: tuple[Series, ...], min_gap: float) -> list[float]:
    """y positions (data units) of the end-of-line labels, pushed apart by at least ``min_gap``."""
    order = sorted(range(len(series)), key=lambda i: series[i].values[LAST_YEAR])
    ys = [0.0] * len(series)
    previous: tuple[float, int] | None = None  # (y, number of text lines) of the label below
    for i in order:
        y, lines = series[i].values[LAST_YEAR], len(_wrap(series[i].label).splitlines())
        if previous is not None:
            y = max(y, previous[0] + min_gap * (previous[1] + lines) / 2)
        ys[i], previous = y, (y, lines)
    return ys


def _wrap(label: str) -> str:
    return textwrap.fill(label, 16)


def _annotate_ends(ax: Axes, s: Series, others: list[pd.Series]) -> None:
    """Write the first and last value above or below the point: away from the line, unless ``others`` are there."""
    years = list(s.values.index)
    band = 24 / (ax.transData.transform((0, 1))[1] - ax.transData.transform((0, 0))[1])  # 24 pt in years
    for year, neighbour in ((FIRST_YEAR, years[1]), (LAST_YEAR, years[-2])):
        value = s.values[year]
        side = 1 if (s.values[neighbour] < value if year == LAST_YEAR else s.values[neighbour] <= value) else -1
        if any(0 <= side * (o[year] - value) < band for o in others):
            side = -side
        ax.plot([year], [value], "o", color=s.color, markersize=5, zorder=4)
        ax.annotate(fmt_years(value), (year, value), xytext=(0, 8 * side), textcoords="offset points",
                    ha="center", va="bottom" if side > 0 else "top", fontsize=11, color=s.color, fontweight="bold",
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"}, zorder=5)


def _draw_page(fig: Figure, page: ChartPage) -> None:
    fig.text(0.045, 0.925, page.title, fontsize=18, fontweight="bold", color="#3A3A3A", ha="left")
    fig.text(0.045, 0.88, page.subtitle, fontsize=12, color="#6E6E6E", ha="left")
    fig.text(0.045, 0.035, SOURCE, fontsize=9.5, color="#7A7A7A", ha="left")
    ax = fig.add_axes((0.075, 0.12, 0.70, 0.71))
    _style_axes(ax, page)
    for s in page.series:
        ax.plot(s.values.index, s.values.values, color=s.color, linewidth=2.4 if s.main else 1.3,
                zorder=3 if s.main else 2, solid_capstyle="round")
    label_ys = _end_label_positions(page.series, min_gap=0.07 * (ax.get_ylim()[1] - ax.get_ylim()[0]))
    for s, y in zip(page.series, label_ys):
        ax.text(LAST_YEAR + 2.6, y, _wrap(s.label), va="center", ha="left", fontsize=12,
                color=s.color if s.main else "#7A7A7A", fontweight="bold" if s.main else "normal", clip_on=False)
    for s in page.series:
        if s.main:
            _annotate_ends(ax, s, [o.values for o in page.series if o is not s])


def render_pdf(pages: list[ChartPage], path: Path) -> None:
    """Write ``pages`` to the PDF ``path``, one chart per 10 × 7.5 inch page, in order."""
    metadata = {"Title": "Life expectancy 1952 to 2007 (Gapminder)", "Author": "pageqa demo",
                "Subject": "Sample corpus for pageqa demo", "CreationDate": None}
    with rc_context(RC), PdfPages(path, metadata=metadata) as pdf:
        for page in pages:
            fig = Figure(figsize=PAGE_SIZE_IN, facecolor="white")
            _draw_page(fig, page)
            pdf.savefig(fig)

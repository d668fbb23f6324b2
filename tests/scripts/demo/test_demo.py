"""`pageqa demo` end to end with the offline model set: its own worker, the Gapminder charts, the results table."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from scripts.cli import app

pytestmark = pytest.mark.models


def test_demo_answers_from_real_retrieval(services, monkeypatch):
    from pageqa.settings import get_settings

    monkeypatch.setenv("PAGEQA_MODELS", "offline")
    monkeypatch.setenv("PAGEQA_WORKER_QUEUE", "pageqa-demo-test")  # not the session worker's queue
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["demo", "--questions", "8", "--countries", "6"], catch_exceptions=False)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "model set: offline" in result.stdout
    assert "│ q001 │ What was the life expectancy" in result.stdout and "82.6 (p." in result.stdout
    cited = re.search(r"gold page cited for (\d+)/8 questions", result.stdout)
    assert cited and int(cited.group(1)) >= 6, result.stdout[-800:]
    right = re.search(r"answers right by MMLongBench-Doc's rules \(score: numbers within 1%\): ([\d.]+)/8", result.stdout)
    assert right and 0 <= float(right.group(1)) <= 8, result.stdout[-800:]
    assert "extracted from the cited page" in result.stdout  # the test env's offline answerer, said in one line
    assert re.search(r"job job_\w+ completed", result.stdout)

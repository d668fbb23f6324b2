"""Benchmark ``pageqa submit`` on a huge question file: time, rows per second and peak memory of the submitting
process, for a JSONL and a CSV file of ``--rows`` rows.

    uv run python -m scripts.bench.submit --rows 1000000

Each file is written to a temporary folder with rows of known kinds, by line: malformed (every 5000th), a NUL in
the question (lines ≡ 250 mod 1000), a ``custom_id`` repeating line n − 499 (lines ≡ 500 mod 1000, after the
first thousand) and a rephrased repeat of the question of line n − 5 (lines ≡ 7 mod 10); the rest are distinct.
The counts the submit reports are checked against these. Each file is submitted by :func:`services.jobs.submit_file`,
the code path of ``pageqa submit``, in a fresh child process, against a PAGEQA_HOME of the benchmark's own (the
embedded PostgreSQL and Redis start there and are stopped at the end); no worker runs, so the tasks wait in Redis.

Memory is the child's peak resident set size from ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (exact, not
sampled), next to the same figure just before the submit (interpreter, imports, database and broker clients).
PostgreSQL's and Redis's own memory are not counted: they are other processes.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Annotated

import typer

from pageqa.errors import PageQAError, ServiceError
from pageqa.settings import Settings

log = logging.getLogger(__name__)

CORPUS = "bench-submit"
QUEUE = "bench-submit"  # no worker reads it
CHUNK = 16


@dataclass(frozen=True)
class Expected:
    """What a submit of the generated file must report."""

    rows: int
    errors: int
    duplicates: int

    @property
    def stored(self) -> int:
        """Rows stored as questions."""
        return self.rows - self.errors

    @property
    def tasks(self) -> int:
        """Answering tasks of ``CHUNK`` questions for the questions that are not repeats."""
        return math.ceil((self.stored - self.duplicates) / CHUNK)


def _kind(n: int) -> str:
    """The kind of data row ``n`` (1-based): bad, nul, repeated_id, repeated_question or plain."""
    if n % 5000 == 0:
        return "bad"
    if n % 1000 == 250:
        return "nul"
    if n % 1000 == 500 and n > 1000:
        return "repeated_id"  # of row n − 499 (≡ 1 mod 1000: always plain)
    if n % 10 == 7:
        return "repeated_question"  # of row n − 5 (≡ 2 mod 10: always plain)
    return "plain"


def _question(n: int) -> str:
    return f"What does section {n} of the annual report say about revenue in region {n % 97}?"


def _record(n: int) -> tuple[str, str]:
    kind = _kind(n)
    if kind == "nul":
        return f"q{n}", f"What does section {n}\x00 say?"
    if kind == "repeated_id":
        return f"q{n - 499}", _question(n)
    if kind == "repeated_question":
        return f"q{n}", "  " + _question(n - 5).upper().rstrip("?") + " ? "
    return f"q{n}", _question(n)


def write_files(folder: Path, rows: int) -> tuple[list[Path], Expected]:
    """The JSONL and CSV question files of ``rows`` data rows, written line by line, and what a submit reports."""
    jsonl, csv_path = folder / "questions.jsonl", folder / "questions.csv"
    counts = {"bad": 0, "nul": 0, "repeated_id": 0, "repeated_question": 0, "plain": 0}
    with jsonl.open("w", encoding="utf-8") as fj, csv_path.open("w", encoding="utf-8", newline="") as fc:
        writer = csv.writer(fc)
        writer.writerow(["custom_id", "question"])
        for n in range(1, rows + 1):
            kind = _kind(n)
            counts[kind] += 1
            custom_id, question = _record(n)
            if kind == "bad":
                fj.write(f'{{"custom_id": "q{n}", "question": "cut off\n')
                fc.write(f'q{n},"closed" then text\r\n')
            else:
                fj.write(json.dumps({"custom_id": custom_id, "question": question}) + "\n")
                writer.writerow([custom_id, question])
    errors = counts["bad"] + counts["nul"] + counts["repeated_id"]
    return [jsonl, csv_path], Expected(rows, errors, counts["repeated_question"])


def _settings(home: Path) -> Settings:
    # the benchmark's own home and queue, whatever PAGEQA_DATABASE_URL or PAGEQA_BROKER_URL say
    return Settings(home=home, database_url=None, broker_url=None, worker_queue=QUEUE)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def submit_in_child(home: str, path: str) -> dict:
    """Runs in a fresh process: ``submit_file`` on ``path``; its figures and the process's peak RSS (MB)."""
    from services.jobs import submit_file
    from services.runtime import prepare

    settings = _settings(Path(home))
    prepare(settings)
    before = _peak_rss_mb()
    start = time.perf_counter()
    result = submit_file(settings, path=Path(path), corpus=CORPUS, options={"chunk_size": CHUNK})
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "store_s": result.store_s, "enqueue_s": result.enqueue_s, "rss_before_mb": before,
            "peak_rss_mb": _peak_rss_mb(), "stored": result.total, "errors": result.n_errors,
            "listed": len(result.errors), "duplicates": result.duplicates, "tasks": result.tasks}


def run(*, rows: int, home: Path | None) -> str:
    """Write the files, submit each in a child process, check the counts; returns the Markdown table.

    Raises:
        ServiceError: a submit reported other counts than the file holds.
    """
    from db import corpus as corpus_db
    from db import embedded
    from db.engine import session_scope
    from services.runtime import prepare
    from worker import broker

    with tempfile.TemporaryDirectory(prefix="pageqa-bench-submit-") as tmp:
        own_home = home or Path(tmp) / "home"
        settings = _settings(own_home)
        prepare(settings)
        with session_scope(settings) as session:
            corpus_db.get_or_create_corpus(session, name=CORPUS)
        try:
            paths, expected = write_files(Path(tmp), rows)
            lines = []
            for path in paths:
                size_mb = path.stat().st_size / 1e6
                log.warning("submitting %s (%.1f MB)", path.name, size_mb)
                with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                    got = pool.submit(submit_in_child, str(own_home), str(path)).result()
                _check(path, got, expected)
                lines.append(
                    f"| {path.suffix[1:]} | {rows:,} | {size_mb:.1f} | {got['seconds']:.1f} ({got['store_s']:.1f} + "
                    f"{got['enqueue_s']:.1f}) | {rows / got['seconds']:,.0f} | {got['rss_before_mb']:.0f} | "
                    f"{got['peak_rss_mb']:.0f} | {got['stored']:,} | {got['errors']:,} ({got['listed']:,} listed) | "
                    f"{got['duplicates']:,} | {got['tasks']:,} |"
                )
        finally:
            if home is None:
                broker.stop(own_home)
                embedded.stop(own_home)
    head = ("| file | rows | MB | seconds (store + enqueue) | rows/s | RSS before submit, MB | peak RSS, MB "
            "| questions stored | errors reported | in-job duplicates | tasks sent |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    return head + "\n" + "\n".join(lines) + "\n"


def _check(path: Path, got: dict, expected: Expected) -> None:
    want = {"stored": expected.stored, "errors": expected.errors, "duplicates": expected.duplicates,
            "tasks": expected.tasks}
    wrong = {k: (got[k], v) for k, v in want.items() if got[k] != v}
    if wrong:
        raise ServiceError(f"{path.name}: the submit reported (got, expected) {wrong}")


def main(
    rows: Annotated[int, typer.Option(min=1000, help="Data rows in each file.")] = 1_000_000,
    home: Annotated[Path | None, typer.Option(help="PAGEQA_HOME to use and keep; default: a temporary one.")] = None,
) -> None:
    """Submit a JSONL and a CSV question file of ROWS rows; print time, rows/s and peak memory as a Markdown table."""
    command = shlex.join(["uv", "run", "python", "-m", "scripts.bench.submit", *sys.argv[1:]])
    try:
        table = run(rows=rows, home=home)
    except PageQAError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"`{command}` — {time.strftime('%Y-%m-%d')}; {os.cpu_count()} cores, {platform.machine()}; "
               f"chunk size {CHUNK}; peak RSS: getrusage ru_maxrss of the submitting process\n")
    typer.echo(table)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    typer.run(main)

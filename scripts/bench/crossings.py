"""How often one question's path changes folder: ``pageqa submit`` from the command line to the Redis message, and
the answering of that question from its claim to its answer row, traced in this process (docs/architecture.md).

A folder change is one step of the call trace whose code lives in another top-level folder than the step before
it; a return counts when the caller's folder runs again (the rule of the layout review, shared/design). Library
frames (SQLAlchemy, Celery, typer …) are transparent: a callback from a library into our code counts as a change
only when it lands in another folder than the code that called the library. The run uses the offline model set
(text lanes, extractive answers: no GPU) on a real MMLongBench-Doc PDF and a fresh ``PAGEQA_HOME``.

Run: ``uv run python -m scripts.bench.crossings [--pdf PATH]``. The module names the old layout used are tried
too, so the same file measures a checkout from before the layout change.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PDF = ROOT.parent / "shared/data/mmlongbench_dev/pdfs/0e94b4197b10096b1f4c699701570fbf.pdf"


def _folder(filename: str) -> str | None:
    """The top-level folder of ours that a code file lives in; None for libraries and the standard library."""
    path = Path(filename).resolve()
    if path == Path(__file__).resolve():  # the tracer's own frames are not on the path
        return None
    try:
        rel = path.relative_to(ROOT)
    except ValueError:
        return None
    return rel.parts[0] if len(rel.parts) > 1 and rel.parts[0] != ".venv" else None


def trace(run: Callable[[], object]) -> list[str]:
    """The folders our code ran in while ``run()`` ran, with each run of one folder collapsed to one entry (see
    :func:`without_kernel` for the same path with the kernel's steps left out)."""
    steps: list[str] = []

    def active(frame) -> str | None:
        while frame is not None:
            if (folder := _folder(frame.f_code.co_filename)) is not None:
                return folder
            frame = frame.f_back
        return None

    def profile(frame, event, _arg):
        if event == "call":
            folder = _folder(frame.f_code.co_filename)
        elif event == "return":
            folder = active(frame.f_back)
        else:
            return
        if folder is not None and (not steps or steps[-1] != folder):
            steps.append(folder)

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return steps


def without_kernel(steps: list[str]) -> list[str]:
    """``steps`` with the kernel (``pageqa/``: settings, errors, options, domain rules, which every layer reads)
    left out and the runs that join up collapsed again."""
    out: list[str] = []
    for folder in steps:
        if folder != "pageqa" and (not out or out[-1] != folder):
            out.append(folder)
    return out


def pairs(steps: list[str]) -> str:
    """The folder changes of ``steps`` by pair of folders, most first, e.g. ``services↔db 20``."""
    counts: dict[str, int] = {}
    for a, b in zip(steps, steps[1:]):
        key = "↔".join(sorted((a, b), key=lambda f: ORDER.index(f) if f in ORDER else len(ORDER)))
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


#: The layers from the top, for naming a pair of folders in a fixed order.
ORDER = ("scripts", "api", "tasks", "services", "worker", "db", "models", "pageqa")


def _first(*names: str):
    """The first of ``module:attribute`` names that imports (the new layout's, then the old one's)."""
    for name in names:
        module, attr = name.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"none of {names}")


def _setup(pdf: Path, workdir: Path):
    """Settings, an ingested and indexed one-document corpus, and a one-question file."""
    from pageqa.settings import get_settings

    settings = get_settings()
    _first("services.runtime:prepare", "scripts.cli:prepare")(settings)
    ingest = _first("services.ingest.pipeline:ingest_files", "scripts.ingest:ingest_files")
    report = ingest(settings, corpus="trace", files=[pdf], enqueue=True)
    queued = report.queued_page_ids
    try:
        _first("services.indexing:index_pages")(settings, queued)
    except ImportError:
        _first("tasks.embed:index_pages")(queued)
    questions = workdir / "q.csv"
    questions.write_text("custom_id,question\nq1,What is this document about?\n", encoding="utf-8")
    return settings, questions


def _unprepare() -> None:
    """Let the traced command start (reuse) the services as a fresh process would."""
    for module in ("services.runtime", "scripts.cli_base"):
        if module in sys.modules and hasattr(sys.modules[module], "_prepared"):
            sys.modules[module]._prepared = False


def measure(pdf: Path) -> dict[str, list[str]]:
    """The folder sequence of ``pageqa submit`` and of answering its question, by path name."""
    from typer.testing import CliRunner

    from db import jobs as jobs_db
    from db.engine import session_scope
    from scripts.cli import app

    workdir = Path(tempfile.mkdtemp(prefix="pageqa-crossings-"))
    settings, questions = _setup(pdf, workdir)
    _unprepare()
    runner = CliRunner()
    result = {}
    submit_steps = trace(lambda: result.setdefault("out", runner.invoke(app, ["submit", str(questions),
                                                                              "--corpus", "trace"])))
    job_id = result["out"].output.split()[-1]
    with session_scope(settings) as session:
        ids = list(jobs_db.iter_question_ids(session, job_id=job_id))
    try:
        answer = _first("services.answering:answer_chunk")
        answer_steps = trace(lambda: answer(settings, ids))
    except ImportError:
        old = _first("tasks.answer:_answer_chunk")
        answer_steps = trace(lambda: old(ids, enqueued_at=None, held_by=[]))
    return {"pageqa submit → Redis message": submit_steps, "answer_chunk: claim → answer row": answer_steps}


def main() -> None:
    """Print a Markdown table of the folder changes per path (and the path itself, folder by folder)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdf", type=Path, default=DEFAULT_PDF)
    args = parser.parse_args()
    os.environ.setdefault("PAGEQA_HOME", tempfile.mkdtemp(prefix="pageqa-crossings-home-"))
    os.environ.update({"PAGEQA_MODELS": "offline", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    paths = measure(args.pdf)
    print("| path | folder changes | without the kernel | changes without the kernel, by pair of folders |\n"
          "|---|---|---|---|")
    for name, steps in paths.items():
        lean = without_kernel(steps)
        print(f"| {name} | {len(steps) - 1} | {len(lean) - 1} | {pairs(lean)} |")
    for name, steps in paths.items():
        print(f"\n{name}, without the kernel: {' → '.join(without_kernel(steps))}")


if __name__ == "__main__":
    main()

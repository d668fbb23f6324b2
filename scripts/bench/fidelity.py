"""``pageqa bench fidelity``: how closely the production search follows its exact scan on a stored corpus, for real
question texts (:mod:`services.fidelity` measures). Prints a Markdown table and keeps it in ``docs/benchmarks.md``,
in a section per command (a rerun replaces its section) with the command, machine and date.

    uv run pageqa bench fidelity --corpus mmlb --limit 50
"""

from __future__ import annotations

import os
import platform
import shlex
from datetime import UTC, datetime
from pathlib import Path
from statistics import fmean

import torch
from sqlalchemy import text

from db.engine import session_scope
from models.device import resolve_device
from pageqa.settings import Settings
from scripts.bench.markdown import write_section
from scripts.bench.retrieval_report import pct
from services.fidelity import Fidelity, K, measure_fidelity

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
TAG = "bench_fidelity"

#: What each lane's search and exact scan are called in the table.
NAMES = {"visual": ("two-stage search", "exact MaxSim scan"), "dense": ("HNSW passage search", "exact passage scan")}


#: Settings that change what is measured; those not at their default are part of the command line.
SEARCH_SETTINGS = ("first_stage_per_token", "first_stage_ef", "pooled_candidates", "exact_candidates",
                   "pool_coarse", "pool_fine", "pool_iters")


def command_line(settings: Settings, *, corpus: str, tenant: str | None, questions: Path | None, limit: int) -> str:
    """The command line of these options, shell-quoted, after the settings it ran with: the model set (it decides
    the lane) and the search settings not at their default. It is the section's key, so a run with other settings
    keeps its own section."""
    changed = [f"PAGEQA_{name.upper()}={getattr(settings, name)}" for name in SEARCH_SETTINGS
               if getattr(settings, name) != Settings.model_fields[name].default]
    args = [f"PAGEQA_MODELS={settings.models}", *changed, "uv", "run", "pageqa", "bench", "fidelity", "--corpus", corpus]
    args += ["--tenant", tenant] if tenant is not None else []
    args += ["--questions", str(questions)] if questions is not None else []
    return shlex.join(args + ["--limit", str(limit)])


def run(settings: Settings, *, corpus: str, tenant: str | None, questions: Path | None, limit: int,
        doc: Path = DOC_PATH) -> str:
    """Measure the corpus (:func:`services.fidelity.measure_fidelity`); returns the Markdown section, also written
    into ``doc``. Raises as ``measure_fidelity`` does."""
    load = os.getloadavg()[0]  # other work on the machine moves the latencies; said next to them
    fid = measure_fidelity(settings, corpus=corpus, tenant=tenant or "default", questions=questions, limit=limit)
    command = command_line(settings, corpus=corpus, tenant=tenant, questions=questions, limit=limit)
    body = to_markdown(settings, fid, command=command, load=load)
    write_section(doc, command, body, tag=TAG, header="# Benchmarks\n")
    return body


def to_markdown(settings: Settings, fid: Fidelity, *, command: str, load: float) -> str:
    """The section: command and date, machine (with ``load``, the 1-minute load average before the run), settings,
    corpus and questions, then the table of figures."""
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    search = ", ".join(f"{k}={v}" for k, v in fid.search.items())
    return (
        f"`{command}` — {date}\n\n"
        f"Machine: {_machine(settings)}; 1-minute load average {load:.2f} before the run.\n\n"
        f"Settings: model set `{fid.model_set}`, {fid.lane} lane of `{fid.model_id}`; {search}.\n\n"
        f"Corpus `{fid.corpus}` of tenant `{fid.tenant}`; questions: {fid.questions}. Each question searched "
        f"alone, the whole corpus, top {K}; one untimed search first.\n\n"
        + "\n".join(table(fid)) + "\n"
    )


def table(fid: Fidelity) -> list[str]:
    """The Markdown table lines: counts, whether the approximate index was searched, recall@10, nDCG@10 and the
    latencies."""
    search, exact = NAMES[fid.lane]
    n = len(fid.recall)
    rows = [
        ("questions", f"{n}"),
        (f"pages: {exact} / {'first-stage index' if fid.lane == 'visual' else 'with passages'}",
         f"{fid.n_pages} / {fid.n_index_pages}"),
        ("first stage ran" if fid.lane == "visual" else "HNSW index in the plan", _first_stage(fid)),
        (f"recall@{K}, {search} top {K} vs exact top {K}: mean (min)",
         f"{fmean(fid.recall):.3f} ({min(fid.recall):.3f})"),
        (f"questions with recall@{K} < 1", f"{sum(r < 1 for r in fid.recall)}"),
        (f"nDCG@{K} against the exact scores: mean (min)", f"{fmean(fid.ndcg):.4f} ({min(fid.ndcg):.4f})"),
        (f"{search}, ms per question: p50 / p95", f"{pct(fid.search_ms, 50):.1f} / {pct(fid.search_ms, 95):.1f}"),
        (f"{exact}, ms per question: p50 / p95", f"{pct(fid.exact_ms, 50):.1f} / {pct(fid.exact_ms, 95):.1f}"),
        ("speed-up of the search over the exact scan (p50)", f"{pct(fid.exact_ms, 50) / pct(fid.search_ms, 50):.1f}×"),
    ]
    return ["| figure | value |", "|---|---:|"] + [f"| {name} | {value} |" for name, value in rows]


def _first_stage(fid: Fidelity) -> str:
    """Whether the approximate index was searched, and why, in words."""
    if fid.lane == "dense":
        return "yes" if fid.first_stage else "no: PostgreSQL reads and sorts every passage, so the two agree"
    pooled = fid.search["pooled_candidates"]
    if fid.first_stage:
        return f"yes ({fid.n_index_pages} pages > pooled_candidates {pooled})"
    return (f"no ({fid.n_index_pages} pages ≤ pooled_candidates {pooled}: every page is a candidate, so the two "
            "agree by construction)")


def _machine(settings: Settings) -> str:
    """Architecture, CPUs, memory, the device the scores run on, PostgreSQL and pgvector versions, torch."""
    device = resolve_device(settings.device)
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    with session_scope(settings) as session:
        server = session.execute(text("SHOW server_version")).scalar_one()
        vector = session.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar_one()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, {memory:.0f} GiB; device {device}{gpu}; PostgreSQL "
            f"{server.split()[0]}, pgvector {vector}; torch {torch.__version__} ({torch.get_num_threads()} threads)")

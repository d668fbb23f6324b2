"""``pageqa demo``: the main job end to end on real data.

Builds Our-World-in-Data-style life-expectancy charts from the Gapminder data into a PDF, writes questions whose
gold answers and gold pages come from the data, starts the services and a worker, ingests, submits, follows the
job, and prints each answer with its cited pages, whether the gold page was cited, and its score by MMLongBench-Doc's
rules (:mod:`scripts.eval.benchmark_score`; every demo answer is a number of years, scored within 1%).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from models.loading import model_ids
from pageqa.settings import Settings

log = logging.getLogger(__name__)

CORPUS = "gapminder-demo"


def choose_model_set(settings: Settings) -> tuple[Settings, str]:
    """The settings to run the demo with, and one line saying which model set and why: the real set only when
    CUDA is present and every checkpoint is local, cached or reachable on the hub; else the offline set."""
    if settings.models == "tiny":
        return settings, "model set: tiny (PAGEQA_MODELS=tiny); random weights, so answers are meaningless by design"
    if settings.models == "offline":
        return settings, f"model set: offline (PAGEQA_MODELS=offline): text lanes and {_offline_answerer(settings)}"
    import torch

    ids = [v for k, v in model_ids(settings).items() if k != "text" and v]
    missing = next((i for i in ids if not _loadable(i)), None) if torch.cuda.is_available() else None
    if not torch.cuda.is_available():
        why = "no CUDA GPU here, and the Qwen2-VL models need one"
    elif missing:
        why = f"{missing} is neither cached nor reachable on the Hugging Face hub"
    else:
        return settings, f"model set: real ({model_ids(settings)['generator']} and friends, on CUDA)"
    offline = settings.model_copy(update={"models": "offline"})
    return offline, (f"model set: offline, because {why}: full-text and MiniLM passage retrieval fused by RRF, "
                     f"{_offline_answerer(offline)}")


def _offline_answerer(settings: Settings) -> str:
    """What answers in the offline set, in a few words."""
    if settings.offline_generator == "extractive":
        return "answers extracted from the cited page, on the CPU"
    return f"short answers by the small LLM {settings.offline_generator} from the cited pages' passages, on the CPU"


def _loadable(model_id: str) -> bool:
    """Whether ``model_id`` is a local directory, is in the Hugging Face cache, or answers on the hub (5 s)."""
    if Path(model_id).is_dir():
        return True
    from huggingface_hub import HfApi, try_to_load_from_cache

    if any(isinstance(try_to_load_from_cache(model_id, f), str) for f in ("config.json", "adapter_config.json")):
        return True
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        HfApi().model_info(model_id, timeout=5)
    except Exception:  # any network or hub error means: not loadable from here
        return False
    return True


def run_demo(settings: Settings, *, n_questions: int, n_countries: int, console: Console) -> None:
    """Run the whole demo; raises PageQAError subclasses on service or input failures."""
    from scripts.cli.progress import embed_and_wait, watch_job
    from scripts.demo.data import build_demo_corpus
    from services.ingest.pipeline import ingest_files
    from services.jobs import submit_file
    from services.results import question_records
    from services.runtime import prepare
    from worker.process import running_worker

    settings, why = choose_model_set(settings)
    console.print(why)
    home = settings.home_dir
    started = time.monotonic()
    prepare(settings)
    if settings.models == "tiny":
        from models.tiny import make_tiny

        make_tiny(home / "models" / "tiny")
    data = build_demo_corpus(home / "demo", n_countries=n_countries, n_questions=n_questions)
    console.print(f"sample corpus: {data.pdf} ({len(data.pages)} pages), {len(data.questions)} questions")
    with running_worker(settings, log_name="demo-worker") as alive:
        report = ingest_files(settings, corpus=CORPUS, files=[data.pdf], enqueue=True)
        for error in report.errors:
            console.print(f"[red]error[/red] {escape(error)}", highlight=False)
        embed_and_wait(settings, corpus=CORPUS, wait=True, alive=alive, queued=report.queued_page_ids)
        job = submit_file(settings, path=data.questions_file, corpus=CORPUS, options={})
        console.print(f"job {job.job_id}: {job.total} questions queued")
        final = watch_job(settings, job_id=job.job_id, alive=alive)
        records = {r["custom_id"]: r for r in question_records(settings, job_id=job.job_id)}
    _print_results(console, data.questions, records)
    console.print(f"job {final.job_id} {final.status} in {final.elapsed_s:.1f} s; whole demo {time.monotonic() - started:.1f} s")


def _print_results(console: Console, questions, records: dict[str, dict]) -> None:
    from scripts.eval.benchmark_score import benchmark_score

    table = Table(show_lines=False)
    for name, kw in (("id", {"no_wrap": True}), ("question", {"min_width": 30}), ("gold (page)", {"no_wrap": True}),
                     ("answer", {"overflow": "ellipsis", "no_wrap": True, "max_width": 36}),
                     ("cited pages", {"no_wrap": True}), ("gold page cited", {"no_wrap": True}),
                     ("score", {"no_wrap": True, "justify": "right"})):
        table.add_column(name, **kw)
    hits = top1 = 0
    total = 0.0
    for q in questions:
        r = records.get(q.custom_id, {})
        pages = [c["page"] for c in r.get("citations") or []]
        hit, top, score = q.gold_page in pages, bool(pages) and pages[0] == q.gold_page, 0.0
        if r.get("status") == "answered":
            answer = r.get("answer") or ""
            score = benchmark_score(q.gold_answer, answer, q.answer_format)
            answer = escape(_short(answer, 60))  # model output is text, never rich markup
        else:
            answer = f"[red]{escape(_short(r.get('error') or r.get('status') or '', 60))}[/red]"
        hits, top1, total = hits + hit, top1 + top, total + score
        table.add_row(q.custom_id, q.question, f"{q.gold_answer} (p.{q.gold_page})", answer,
                      ", ".join(f"p.{p}" for p in pages) or "-", _yes(hit), f"{score:.2f}")
    # the table needs ~150 columns; piped output would otherwise be squeezed to 80
    Console(width=max(console.width, 150), soft_wrap=False).print(table)
    n = max(len(questions), 1)
    console.print(f"gold page cited for {hits}/{len(questions)} questions ({hits / n:.0%}), ranked first for "
                  f"{top1}/{len(questions)} ({top1 / n:.0%}); answers right by MMLongBench-Doc's rules (score: "
                  f"numbers within 1%): {total:g}/{len(questions)} ({total / n:.0%})")


def _yes(flag: bool) -> str:
    return "[green]yes[/green]" if flag else "no"


def _short(text: str | None, limit: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

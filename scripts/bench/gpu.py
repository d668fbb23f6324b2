"""``pageqa bench gpu``: the three models saved as checkpoints, loaded back through the production code and driven
through the production stages and micro-batching on synthetic pages; load seconds, memory and throughput with all
three resident and with ``low_memory``, then a real out-of-memory run (CUDA only).

    uv run pageqa bench gpu --size tiny --device cpu          # the suite runs this
    pageqa bench gpu --size real --device cuda --memory-gib 22.5  # the device run of docs/gpu.md

No PostgreSQL, Redis or Celery: only ``models/``, ``pageqa.settings`` and the checkpoints on local disk.
``--memory-gib`` caps the process with ``torch.cuda.set_per_process_memory_fraction`` (22.5 GiB is what an L4
leaves usable, 23,034 MiB), so a bigger card behaves as an L4 would, allocator caching included.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

import torch

from models.batching import BatchBudget, BatchLog
from pageqa.settings import Settings
from scripts.bench import gpu_models, gpu_report, gpu_run

log = logging.getLogger(__name__)

GIB = gpu_run.GIB
#: The OOM run's cap: the resident weights plus this share of the default micro-batch's measured activations, so
#: the default micro-batch cannot fit and half of it should.
OOM_SHARE = 0.6
#: bf16 batches of other sizes pad and sum in another order; P(True) moves by a few 1e-3 (an assumption until the
#: device run measures it: the largest difference is reported).
SCORE_TOL = 1e-2


def run(settings: Settings, *, size: str, device: torch.device, memory_gib: float | None, workdir: Path,
        output: Path, n_pages: int, n_questions: int, command: str) -> dict:
    """The whole bench; writes ``gpu.json`` and ``gpu.md`` under ``output`` (after each part, so a killed run
    leaves the parts it finished) and returns the report.

    Raises:
        torch.OutOfMemoryError: a stage does not fit even with micro-batches of one item.
        pageqa.errors.ModelLoadError: a checkpoint cannot be read back.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one "Loading weights" bar per load would bury the table
    cap = _cap(device, memory_gib)
    paths = gpu_models.build(workdir, size=size, device=device)
    work = gpu_run.Work.make(n_pages=n_pages, n_questions=n_questions, settings=settings)
    report: dict = {"command": command, "size": size, "device": str(device), "environment": _environment(device),
                    "memory_cap_gib": cap, "settings": _budgets(settings), "new_tokens": gpu_run.NEW_TOKENS,
                    "modes": {}}
    stages = gpu_run.load(paths, settings, device, low_memory=False)
    resident = gpu_run.measure(stages, work, settings, device)
    report["modes"]["resident"] = {"load": stages.load, "stages": resident, "moves": stages.residency.moves}
    report["oom"] = {"skipped": "a real out-of-memory error needs CUDA"}
    gpu_report.write(report, output)  # a run killed later (the device run's timeouts) keeps what it measured
    if device.type == "cuda":
        report["oom"] = oom_run(stages, work, settings, device, resident, cap=cap)
        gpu_report.write(report, output)
    gpu_run.unload(stages, device)
    stages = gpu_run.load(paths, settings, device, low_memory=True)
    low = gpu_run.measure(stages, work, settings, device)
    report["modes"]["low_memory"] = {"load": stages.load, "stages": low, "moves": stages.residency.moves,
                                     "equal_to_resident": compare(resident, low)}
    gpu_run.unload(stages, device)
    gpu_report.write(report, output)
    return report


def oom_run(stages: gpu_run.Stages, work: gpu_run.Work, settings: Settings, device: torch.device,
            measured: dict, *, cap: float | None) -> dict:
    """Rerank and generate again under a cap of the resident weights plus :data:`OOM_SHARE` of the activations
    measured for the default micro-batch: a real ``torch.OutOfMemoryError`` on the default micro-batch, then
    :func:`models.batching.run_batched` halving it. Results are compared with the uncapped run.

    Returns:
        Per stage: ``cap_gib``, ``halvings``, ``batch_sizes``, ``seconds``, ``error`` (when even one item did not
        fit), and the comparison with the uncapped run.
    """
    s = settings
    pairs, items = gpu_run.prepared(stages, work)
    total = torch.cuda.get_device_properties(device).total_memory
    calls = {
        "rerank": lambda b: stages.reranker.score(
            pairs, budget=BatchBudget(s.rerank_batch_size, s.rerank_batch_pixels), batch_log=b),
        "generate": lambda b: stages.generator.generate(
            items, budget=BatchBudget(s.generate_batch_size, s.generate_batch_pixels),
            max_new_tokens=gpu_run.NEW_TOKENS, batch_log=b),
    }
    out = {}
    for stage, call in calls.items():
        if "peak_gib" not in measured[stage]:
            out[stage] = {"skipped": "the uncapped run did not finish"}
            continue
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        limit = base + OOM_SHARE * (measured[stage]["peak_gib"] * GIB - base)
        torch.cuda.set_per_process_memory_fraction(limit / total, device)
        batch_log = BatchLog()
        entry: dict = {"cap_gib": limit / GIB, "weights_gib": base / GIB}
        try:
            with gpu_run.counting_tokens(stages.generator) as generated:
                result, entry["seconds"], entry["peak_gib"] = gpu_run.timed(device, lambda b=batch_log: call(b))
            output = {"scores": result} if stage == "rerank" else {"answers": generated.rows}
            entry |= compare(measured, {stage: output})
        except torch.OutOfMemoryError as exc:
            entry["error"] = str(exc).splitlines()[0]
        finally:
            torch.cuda.set_per_process_memory_fraction((cap * GIB if cap else total) / total, device)
            torch.cuda.empty_cache()
        entry |= {"halvings": batch_log.halvings.get(stage, 0), "batch_sizes": batch_log.sizes.get(stage, [])}
        out[stage] = entry
    return out


def compare(reference: dict, other: dict, *, group: int = 4) -> dict:
    """``other``'s rerank scores and answers against ``reference``'s: the largest score difference, whether each
    question's ranking of its ``group`` pages is the same, and how many greedy answers (token ids) are identical."""
    out: dict = {}
    if "scores" in other.get("rerank", {}) and "scores" in reference.get("rerank", {}):
        a, b = reference["rerank"]["scores"], other["rerank"]["scores"]
        rank = lambda xs: [sorted(range(group), key=lambda j: -xs[i + j]) for i in range(0, len(xs), group)]  # noqa: E731
        out["max_score_diff"] = max(abs(x - y) for x, y in zip(a, b, strict=True))
        out["scores_within_tol"] = out["max_score_diff"] <= SCORE_TOL
        out["score_tol"] = SCORE_TOL
        out["ranks_equal"] = rank(a) == rank(b)
    if "answers" in other.get("generate", {}) and "answers" in reference.get("generate", {}):
        a, b = reference["generate"]["answers"], other["generate"]["answers"]
        out["answers_equal"] = sum(x == y for x, y in zip(a, b, strict=True))
        out["answers"] = len(a)
    return out


def _cap(device: torch.device, memory_gib: float | None) -> float | None:
    """Apply ``--memory-gib`` on CUDA; the cap in GiB, or None (no cap, or the CPU, where it means nothing)."""
    if device.type != "cuda" or memory_gib is None:
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, memory_gib * GIB / total), device)
    return memory_gib


def _budgets(s: Settings) -> dict:
    keys = ("page_max_pixels", "retriever_max_pixels", "reranker_max_pixels", "generator_min_pixels",
            "generator_max_pixels", "embed_batch_size", "query_batch_size", "rerank_batch_size",
            "rerank_batch_pixels", "generate_batch_size", "generate_batch_pixels", "rerank_top_k")
    return {k: getattr(s, k) for k in keys}


def _environment(device: torch.device) -> dict:
    versions = {}
    for dist in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "colpali-engine"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    total = torch.cuda.get_device_properties(device).total_memory / GIB if device.type == "cuda" else None
    return {"versions": versions, "gpu": gpu, "gpu_total_gib": total, "cuda": torch.version.cuda}


def main() -> None:
    """``python -m scripts.bench.gpu``: the bench without the ``pageqa`` command line, whose imports (typer, the
    database layer) the bare GPU image lacks; same options as ``pageqa bench gpu``."""
    import argparse
    import shlex
    import sys

    from models.device import resolve_device
    from pageqa.settings import get_settings

    p = argparse.ArgumentParser(prog="python -m scripts.bench.gpu", description=main.__doc__)
    p.add_argument("--size", choices=("real", "tiny"), default="real")
    p.add_argument("--device", default="cuda")
    p.add_argument("--memory-gib", type=float, default=22.5)
    p.add_argument("--pages", type=int, default=16)
    p.add_argument("--questions", type=int, default=16)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = run(get_settings(), size=a.size, device=resolve_device(a.device), memory_gib=a.memory_gib,
                 workdir=a.workdir, output=a.output, n_pages=a.pages, n_questions=a.questions,
                 command=shlex.join(["python", "-m", "scripts.bench.gpu", *sys.argv[1:]]))
    print(gpu_report.markdown(report))  # noqa: T201 - the table is this script's output


if __name__ == "__main__":
    main()

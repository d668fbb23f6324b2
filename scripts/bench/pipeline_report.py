"""What ``pageqa bench pipeline`` measures per mode and chunk size, and the Markdown section that reports it."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
from dataclasses import dataclass, field

from pageqa.settings import Settings

STAGES = ("retrieve", "rerank", "generate")


@dataclass
class ModeResult:
    """One mode at one chunk size: wall seconds, stage milliseconds summed over questions, and per-chunk non-model
    milliseconds per question (queued mode)."""

    n: int
    wall_s: float
    stage_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    non_model_ms: list[float] = field(default_factory=list)
    peak_gpu_bytes: int | None = None

    @property
    def qps(self) -> float:
        return self.n / self.wall_s

    def per_question(self, stage: str) -> float:
        return self.stage_ms[stage] / self.n


@dataclass(frozen=True)
class DedupResult:
    """A job with repeated questions: questions submitted, how many reached the models, seconds."""

    n: int
    answered_by_models: int
    wall_s: float

    @property
    def saved(self) -> float:
        return 1 - self.answered_by_models / self.n


def to_markdown(settings: Settings, rows: list[tuple[int, ModeResult, ModeResult]], dedup: DedupResult, *,
                n_questions: int, command: str, index: tuple[int, float | None],
                cpu_overrides: dict[str, object]) -> str:
    """The Markdown section: command, machine, device and model set (with ``cpu_overrides`` when there is no CUDA),
    the corpus (``index``: pages, and seconds to ingest and index them, None when an earlier run did), a table row
    per ``(chunk size, in-process, queued)`` of ``rows``, the speed-up of chunks of 16, de-duplication's savings and
    the peak GPU memory."""
    from models.device import resolve_device

    device = resolve_device(settings.device)
    corpus_note = (f"{index[0]} pages, ingested and indexed in {index[1]:.1f} s" if index[1] is not None
                   else f"{index[0]} pages, indexed by an earlier run")
    overrides_note = "" if device.type == "cuda" else (
        " with " + ", ".join(f"{k}={v}" for k, v in cpu_overrides.items() if k != "models"))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    if device.type == "cuda":
        import torch

        machine += f", {torch.cuda.get_device_name(device)}"
    lines = [
        (f"Command: `{command}` ({dt.date.today().isoformat()}). Machine: {machine}. Device: {device}; model set "
         f"`{settings.models}`{overrides_note}. Corpus: the demo PDF ({corpus_note}). "
         f"{n_questions} distinct questions per run."),
        "",
        *_chunk_table(rows),
    ]
    by_size = {size: inproc for size, inproc, _ in rows}
    lines.append("")
    if 1 in by_size and 16 in by_size:
        lines.append(f"Speed-up of chunk 16 over chunk 1, in-process: {by_size[16].qps / by_size[1].qps:.2f}×.")
    lines.append(
        f"De-duplication: a job of {dedup.n} questions, 50% repeats: {dedup.answered_by_models} reached the models, "
        f"model calls saved {dedup.saved:.1%} ({dedup.wall_s:.1f} s)."
    )
    peaks = [q.peak_gpu_bytes for _, _, q in rows if q.peak_gpu_bytes]
    lines.append(f"Peak GPU memory over the chunks: {max(peaks) / 2**30:.2f} GiB." if peaks
                 else "Peak GPU memory: no CUDA device here.")
    return "\n".join(lines) + "\n"


def _chunk_table(rows: list[tuple[int, ModeResult, ModeResult]]) -> list[str]:
    """Table lines: per chunk size, both modes' questions/s, the overhead, ms per question per stage, and the
    non-model ms per question through the queue."""
    lines = [
        ("| chunk | in-process q/s | queued q/s | queued ÷ in-process | orchestration overhead | "
         "in-process ms/q retrieve / rerank / generate | queued ms/q retrieve / rerank / generate | "
         "non-model ms/q through the queue, p50 (p95) |"),
        "|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for size, inproc, queued in rows:
        ratio = queued.qps / inproc.qps
        lines.append(
            f"| {size} | {inproc.qps:.1f} | {queued.qps:.1f} | {ratio:.3f} | {1 - inproc.wall_s / queued.wall_s:.1%} "
            f"| {' / '.join(f'{inproc.per_question(s):.1f}' for s in STAGES)} "
            f"| {' / '.join(f'{queued.per_question(s):.1f}' for s in STAGES)} "
            f"| {statistics.median(queued.non_model_ms):.1f} ({_p95(queued.non_model_ms):.1f}) |"
        )
    return lines


def _p95(values: list[float]) -> float:
    """The nearest-rank 95th percentile of ``values``."""
    return sorted(values)[min(len(values) - 1, int(0.95 * len(values)))]

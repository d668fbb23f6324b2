"""Benchmark the CPU side of ingest: rasterise (pypdfium2) and compress (Pillow) the pages of a PDF folder, with
no database and no model; print Markdown tables and keep them in docs/benchmarks.md.

    uv run python -m scripts.bench.ingest [--pdf-dir DIR] [--pages N] [--processes 1,2] [--webp-methods 4,2]

The render tasks are ingest's own (``services/ingest/pipeline.py``: ``page_ranges``, ``render_pool``, ``render_pdf_pages``
with the settings' page budget, format and quality): each PDF is split into the same page ranges, rendered by the
same pool of processes, and the compressed pages travel back to this process as they do at ingest. The PDFs are
read in place, never copied. A second table times each encoder on a sample of pages in this one process. The
section in ``docs/benchmarks.md`` is rewritten by each run.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import sys
import textwrap
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import pypdfium2 as pdfium
import typer

from models.images import WEBP_METHOD, decode_image, encode_image
from pageqa.errors import InputError, PageQAError
from pageqa.settings import get_settings
from scripts.bench.markdown import write_section
from services.ingest.render import (
    RenderSpec,
    page_ranges,
    rasterise_page,
    render_pdf_pages,
    render_pool,
)

log = logging.getLogger(__name__)

PDF_DIR = Path("/work/shared/data/mmlongbench_dev/pdfs")
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
GOAL_PAGES_PER_S = 20.0
ENCODINGS = "WEBP:90:4,WEBP:90:2,WEBP:90:0,WEBP:80:2,JPEG:90,PNG"


def timed_range(path: Path, first: int, stop: int, spec: RenderSpec) -> tuple[list, float, float]:
    """Runs in a render process: ingest's ``render_pdf_pages`` on one range; its wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    records = render_pdf_pages(path, first, stop, spec)
    return records, time.perf_counter() - wall, time.process_time() - cpu


def page_plan(pdf_dir: Path, limit: int | None) -> list[tuple[Path, int]]:
    """(PDF, pages to render from its first) for every ``*.pdf`` of ``pdf_dir`` by file name: all pages, or with
    ``limit`` the same number of first pages of each PDF (all of a shorter one), at most ``limit`` in all.

    Raises:
        InputError: no PDF in the folder, or a PDF cannot be opened.
    """
    pdfs = sorted(pdf_dir.glob("*.pdf"))
    if not pdfs:
        raise InputError("no *.pdf files here", source=str(pdf_dir))
    counts = []
    for path in pdfs:
        try:
            with pdfium.PdfDocument(path) as pdf:
                counts.append(len(pdf))
        except pdfium.PdfiumError as exc:
            raise InputError(str(exc), source=str(path)) from exc
    if limit is not None:
        cap = max((c for c in range(1, max(counts) + 1) if sum(min(n, c) for n in counts) <= limit), default=1)
        counts = [min(n, cap) if i < limit else 0 for i, n in enumerate(counts)]  # i ≥ limit: one page is too many
    return [(path, n) for path, n in zip(pdfs, counts, strict=True) if n > 0]


@dataclass(frozen=True)
class PoolSummary:
    """Figures of one pool run: all planned pages through ``processes`` render processes."""

    processes: int
    webp_method: int
    pages: int
    seconds: float
    p50_ms: float  # per page, in the render process: a task's wall time over its pages
    cpu_ms: float  # mean CPU time per page in the render processes; unlike wall time, not slowed by other load
    mean_bytes: float
    mean_pixels: float
    other_cores: float  # CPU the rest of the machine used meanwhile, in cores: shows whether the run was contended

    def row(self) -> str:
        rate = self.pages / self.seconds
        cells = (self.processes, self.webp_method, self.pages, f"{self.seconds:.1f}", f"{rate:.1f}",
                 f"{self.p50_ms:.0f}", f"{self.cpu_ms:.0f}", f"{self.mean_bytes / 1024:.0f}",
                 f"{self.mean_pixels / 1e6:.2f}", f"{self.other_cores:.2f}")
        return "| " + " | ".join(str(c) for c in cells) + " |"


def run_pool(plan: list[tuple[Path, int]], spec: RenderSpec, processes: int) -> PoolSummary:
    """Render every planned page through a pool of ``processes``; the clock starts after the processes started."""
    with render_pool(processes) as pool:
        first = plan[0][0]
        for future in [pool.submit(render_pdf_pages, first, 0, 1, spec) for _ in range(processes)]:
            future.result()  # start each process (and load pdfium) before the clock starts
        start, busy, own = time.perf_counter(), machine_cpu_seconds(), time.process_time()
        ranges = [(path, a, b) for path, n in plan for a, b in page_ranges(n, processes)]
        futures = deque(pool.submit(timed_range, path, a, b, spec) for path, a, b in ranges)
        ms_per_page, sizes, pixels, cpu_s = [], [], [], 0.0
        while futures:  # popped, so the pages are dropped once counted
            records, seconds, cpu = futures.popleft().result()
            ms_per_page += [seconds * 1000 / len(records)] * len(records)
            cpu_s += cpu
            sizes += [len(r.image) for r in records]
            pixels += [r.width * r.height for r in records]
        seconds = time.perf_counter() - start
        other = machine_cpu_seconds() - busy - cpu_s - (time.process_time() - own)
    log.info("%d processes, WEBP method %d: %d pages in %.1f s", processes, spec.webp_method, len(sizes), seconds)
    return PoolSummary(
        processes=processes, webp_method=spec.webp_method, pages=len(sizes), seconds=seconds,
        p50_ms=float(np.median(ms_per_page)), cpu_ms=cpu_s * 1000 / len(sizes), mean_bytes=float(np.mean(sizes)),
        mean_pixels=float(np.mean(pixels)), other_cores=max(other, 0.0) / seconds,
    )


def machine_cpu_seconds() -> float:
    """CPU seconds every process of the machine has used since boot (/proc/stat: user, nice, system, irq, softirq,
    steal); 0 where there is no /proc."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _psnr(a, b) -> float:
    """Peak signal-to-noise ratio of two RGB images of one size, dB (∞ for identical images)."""
    mse = float(np.mean((np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def encoder_table(plan: list[tuple[Path, int]], spec: RenderSpec, encodings: list[str], n_pages: int) -> str:
    """Each FORMAT[:QUALITY[:METHOD]] of ``encodings`` on ``n_pages`` pages spread over the plan, in this process:
    mean encode ms, KB and PSNR per page; the first row is the rasterising they all share."""
    refs = [(path, i) for path, n in plan for i in range(n)]
    refs = [refs[k * len(refs) // n_pages] for k in range(min(n_pages, len(refs)))]
    images, render_ms = [], []
    for path, index in refs:
        with pdfium.PdfDocument(path) as pdf:
            start = time.perf_counter()
            image, _text = rasterise_page(pdf, index, max_pixels=spec.max_pixels)
            render_ms.append((time.perf_counter() - start) * 1000)
        images.append(image)
    lines = ["| step | ms/page | KB/page | PSNR dB |", "|---|---:|---:|---:|",
             f"| rasterise (pdfium, text layer) | {np.mean(render_ms):.0f} | | |"]
    for text in encodings:
        fmt, quality, method = (text.split(":") + ["90", str(WEBP_METHOD)])[:3]
        ms, sizes, psnr = [], [], []
        for image in images:
            start = time.perf_counter()
            data = encode_image(image, fmt=fmt, quality=int(quality), webp_method=int(method))
            ms.append((time.perf_counter() - start) * 1000)
            sizes.append(len(data))
            psnr.append(_psnr(decode_image(data), image))
        name = {"WEBP": f"WEBP q{quality} method {method}", "JPEG": f"JPEG q{quality}"}.get(fmt, f"{fmt} (optimize)")
        lines.append(f"| {name} | {np.mean(ms):.0f} | {np.mean(sizes) / 1024:.0f} "
                     f"| {'lossless' if math.isinf(min(psnr)) else f'{np.mean(psnr):.1f}'} |")
    return "\n".join(lines)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo ("unknown" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def report(runs: list[PoolSummary], encoders: str, *, spec: RenderSpec, pdf_dir: Path, n_pdfs: int,
           n_sample: int, command: str) -> str:
    """The Markdown section of this run: heading, command, machine, both tables and the goal."""
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = ("| processes | WEBP method | pages | s | pages/s | ms/page p50 | CPU ms/page | KB/page | MP/page "
            "| other load, cores |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    goal = f"Goal: ≥ {GOAL_PAGES_PER_S:.0f} pages/s with one process per core and the default settings"
    for run in runs:
        if run.processes == os.cpu_count() and run.webp_method == WEBP_METHOD:
            rate = run.pages / run.seconds
            goal += f": {rate:.1f} pages/s, {'met' if rate >= GOAL_PAGES_PER_S else 'not met'}"
    about = textwrap.fill(
        "`scripts/bench/ingest.py` (`pageqa bench ingest`): ingest's render tasks (`services/ingest/pipeline.py`) through its "
        "pool of render processes, no database, no model. Each PDF is split into ingest's page ranges and the "
        "compressed pages come back to the calling process as at ingest; the clock starts once the processes are up. "
        "ms/page p50 is a render task's wall time in its process over its pages; CPU ms/page is the render "
        "processes' CPU time (other load on the machine does not inflate it); other load is the CPU the rest of the "
        "machine used during the run (from /proc/stat), in cores. The encoder table times each format "
        f"in one process on {n_sample} pages spread over the set; PSNR is against the rasterised page.", width=116)
    return (
        f"## Ingest: rasterise and compress (CPU side)\n\n{about}\n\n"
        f"`{command}` — {date}; {os.cpu_count()} cores ({cpu_model()}); {n_pdfs} PDFs from `{pdf_dir}`; page budget "
        f"{spec.max_pixels:,} pixels, {spec.fmt} q{spec.quality}\n\n"
        f"{head}\n" + "\n".join(r.row() for r in runs) + "\n\n"
        f"{goal}.\n\n{encoders}\n"
    )


def parse_ints(text: str, *, option: str, low: int, high: int) -> list[int]:
    """``1,2`` → [1, 2].

    Raises:
        InputError: not comma-separated whole numbers from ``low`` to ``high``; names ``option``.
    """
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or min(values) < low or max(values) > high:
        raise InputError(f"expected comma-separated whole numbers from {low} to {high}, not {text!r}", source=option)
    return values


def run(*, pdf_dir: Path, pages: int | None, processes: list[int], webp_methods: list[int], encodings: list[str],
        encode_pages: int, command: str) -> str:
    """Run the benchmark with the settings' page budget, format and quality; returns the Markdown section, also
    written to docs/benchmarks.md (key ``ingest-cpu``).

    Raises:
        InputError: no readable PDF in ``pdf_dir``.
    """
    base = RenderSpec.of(get_settings())
    plan = page_plan(pdf_dir, pages)
    runs = [run_pool(plan, RenderSpec(base.max_pixels, base.fmt, base.quality, method), n)
            for method in webp_methods for n in processes]
    encoders = encoder_table(plan, base, encodings, encode_pages)
    body = report(runs, encoders, spec=base, pdf_dir=pdf_dir, n_pdfs=len(plan),
                  n_sample=min(encode_pages, sum(n for _, n in plan)), command=command)
    write_section(DOC_PATH, "ingest-cpu", body, tag="bench_ingest", header="# Benchmarks\n")
    return body


def main(
    pdf_dir: Annotated[Path, typer.Option(help="Folder of PDFs, read in place.")] = PDF_DIR,
    pages: Annotated[int | None, typer.Option(min=1, help="At most N pages: the first pages of every PDF.")] = None,
    processes: Annotated[str, typer.Option(help="Render process counts to try, comma-separated.")] = "1,2",
    webp_methods: Annotated[str, typer.Option(help="WEBP methods (0–6) to try with each process count.")]
    = str(WEBP_METHOD),
    encodings: Annotated[str, typer.Option(help="FORMAT[:QUALITY[:METHOD]] for the encoder table.")] = ENCODINGS,
    encode_pages: Annotated[int, typer.Option(min=1, help="Pages for the encoder table.")] = 24,
) -> None:
    """Benchmark ingest's rasterise + compress on a PDF folder; print the tables, keep them in docs/benchmarks.md."""
    try:
        body = run(
            pdf_dir=pdf_dir, pages=pages, processes=parse_ints(processes, option="--processes", low=1, high=256),
            webp_methods=parse_ints(webp_methods, option="--webp-methods", low=0, high=6),
            encodings=[x.strip() for x in encodings.split(",") if x.strip()], encode_pages=encode_pages,
            command=shlex.join(["uv", "run", "python", "-m", "scripts.bench.ingest", *sys.argv[1:]]),
        )
    except PageQAError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(body)
    typer.echo(f"written to {DOC_PATH}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    typer.run(main)

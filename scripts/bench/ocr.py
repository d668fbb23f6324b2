"""Benchmark PageOCR on the pages of a PDF folder that have no text layer; print a Markdown table, keep it in docs.

    uv run python -m scripts.bench.ocr [--pages N] [--threads T]

Pages without a text layer are those whose pypdfium2 text page is empty after stripping whitespace. Pages are
rendered at about 1.6 megapixels (scale = sqrt(1,605,632 / (width_pt × height_pt)), at most 300 dpi), read in
place from the PDF folder (never copied). The table also goes into ``docs/ocr.md``, in a section per command, so
runs with different options sit side by side and a rerun replaces its own section.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import pypdfium2 as pdfium
import typer
from PIL import Image

from models.ocr import MODEL_FILES, OcrResult, PageOCR
from pageqa.errors import InputError, PageQAError
from scripts.bench.markdown import write_section

log = logging.getLogger(__name__)

PDF_DIR = Path("/work/shared/data/mmlongbench_dev/pdfs")
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "ocr.md"
PIXEL_BUDGET = 1_605_632  # pixels per rendered page, ≈ 1.6 MP
MAX_SCALE = 300 / 72  # pdfium scale for 300 dpi (1 scale unit = 72 dpi)


@dataclass(frozen=True)
class PageRef:
    """One page of a PDF: ``index`` is 0-based."""

    pdf: Path
    index: int


def scanned_pages(pdf_dir: Path) -> tuple[list[PageRef], int]:
    """Pages with no text layer in every ``*.pdf`` of ``pdf_dir`` (sorted by file name), and the total page count.

    Raises:
        InputError: no PDF in ``pdf_dir``, or a PDF cannot be opened.
    """
    pdfs = sorted(pdf_dir.glob("*.pdf"))
    if not pdfs:
        raise InputError("no *.pdf files here", source=str(pdf_dir))
    found: list[PageRef] = []
    total = 0
    for path in pdfs:
        try:
            doc = pdfium.PdfDocument(path)
        except pdfium.PdfiumError as exc:
            raise InputError(str(exc), source=str(path)) from exc
        with doc:
            total += len(doc)
            found += [PageRef(path, i) for i in range(len(doc)) if not _has_text(doc[i])]
    return found, total


def _has_text(page: pdfium.PdfPage) -> bool:
    textpage = page.get_textpage()
    try:
        return textpage.get_text_range().strip() != ""
    finally:
        textpage.close()
        page.close()


def render(ref: PageRef) -> Image.Image:
    """The page as an RGB image of about ``PIXEL_BUDGET`` pixels (capped at 300 dpi)."""
    with pdfium.PdfDocument(ref.pdf) as doc:
        page = doc[ref.index]
        w_pt, h_pt = page.get_size()
        scale = min(math.sqrt(PIXEL_BUDGET / (w_pt * h_pt)), MAX_SCALE)
        image = page.render(scale=scale).to_pil().convert("RGB")
        page.close()
    return image


def spread(items: list[PageRef], n: int) -> list[PageRef]:
    """``n`` items evenly spaced over ``items`` (all of them when there are no more than ``n``)."""
    if len(items) <= n:
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


@dataclass(frozen=True)
class PageRun:
    """One timed read: the OCR result, the image size in pixels and the process CPU milliseconds it took."""

    result: OcrResult
    pixels: int
    cpu_ms: float


@dataclass(frozen=True)
class Summary:
    """Benchmark figures; times exclude rendering and the one warm-up read."""

    pages: int
    seconds: float
    p50_ms: float
    p95_ms: float
    cpu_ms: float  # mean process CPU time per page, all threads; less sensitive than wall time to other load
    mean_lines: float
    mean_chars: float
    mean_pixels: float
    threads: str

    @classmethod
    def of(cls, runs: list[PageRun], threads: int | None) -> Summary:
        ms = np.array([r.result.ms for r in runs])
        return cls(
            pages=len(runs),
            seconds=float(ms.sum()) / 1000.0,
            p50_ms=float(np.percentile(ms, 50)),
            p95_ms=float(np.percentile(ms, 95)),
            cpu_ms=float(np.mean([r.cpu_ms for r in runs])),
            mean_lines=float(np.mean([r.result.n_lines for r in runs])),
            mean_chars=float(np.mean([len(r.result.text) for r in runs])),
            mean_pixels=float(np.mean([r.pixels for r in runs])),
            threads=str(threads) if threads else f"onnxruntime default ({os.cpu_count()} CPUs)",
        )

    def table(self) -> str:
        """A one-row Markdown table."""
        head = (
            "| pages | total s | pages/s | ms/page p50 | ms/page p95 | CPU ms/page | mean lines/page "
            "| mean chars/page | threads |"
        )
        rule = "|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        row = (
            f"| {self.pages} | {self.seconds:.1f} | {self.pages / self.seconds:.2f} | {self.p50_ms:.0f} "
            f"| {self.p95_ms:.0f} | {self.cpu_ms:.0f} | {self.mean_lines:.1f} | {self.mean_chars:.0f} "
            f"| {self.threads} |"
        )
        return "\n".join((head, rule, row))


def run(refs: list[PageRef], ocr: PageOCR) -> list[PageRun]:
    """OCR each page once, after one untimed warm-up read."""
    ocr.read(render(refs[0]))  # onnxruntime's first run allocates and specialises kernels; not a steady-state cost
    runs = []
    for i, ref in enumerate(refs, 1):
        image = render(ref)
        cpu = time.process_time()
        result = ocr.read(image)
        runs.append(PageRun(result, image.width * image.height, (time.process_time() - cpu) * 1000.0))
        log.info("%d/%d %s page %d: %.0f ms", i, len(refs), ref.pdf.name, ref.index + 1, result.ms)
    return runs


def report(summary: Summary, *, pdf_dir: Path, n_scanned: int, n_total: int, load_s: float, load_before: float) -> str:
    """The Markdown section for this run: command, date, table and the set's counts."""
    command = shlex.join(["uv", "run", "python", "-m", "scripts.bench.ocr", *sys.argv[1:]])
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    n_pdfs = len(list(pdf_dir.glob("*.pdf")))
    return (
        f"`{command}` — {date}, {os.cpu_count()} CPUs, 1-min load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (this run adds up to about its thread count)\n\n"
        f"{summary.table()}\n\n"
        f"Pages without a text layer: {n_scanned} of {n_total} ({n_pdfs} PDFs in `{pdf_dir}`); "
        f"{summary.pages} OCRed, evenly spaced over them, mean {summary.mean_pixels / 1e6:.2f} MP per page. "
        f"Engine start-up {load_s:.1f} s; times exclude rendering and one warm-up read.\n"
    )


_DOC_HEADER = f"""# OCR of pages without a text layer

`models/ocr.py` (`PageOCR`): rapidocr on onnxruntime, CPU, with the models bundled in the rapidocr wheel:
{", ".join(f"`{name}`" for name in MODEL_FILES.values())}. Figures below come from `scripts/bench/ocr.py`;
each section is rewritten when the same command runs again.

## Benchmark
"""


def main(
    pages: Annotated[int, typer.Option(min=1, help="Pages to OCR (evenly spaced over the pages without text).")] = 40,
    threads: Annotated[int | None, typer.Option(min=1, help="onnxruntime intra-op threads; default: its own.")] = None,
    pdf_dir: Annotated[Path, typer.Option(help="Folder of PDFs, read in place.")] = PDF_DIR,
) -> None:
    """Benchmark PageOCR on the pages without a text layer; print a Markdown table and keep it in docs/ocr.md."""
    load_before = os.getloadavg()[0]
    try:
        scanned, total = scanned_pages(pdf_dir)
        if not scanned:
            raise InputError("no page without a text layer", source=str(pdf_dir))
        started = time.perf_counter()
        ocr = PageOCR(threads=threads)
        load_s = time.perf_counter() - started
        runs = run(spread(scanned, pages), ocr)
    except PageQAError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    summary = Summary.of(runs, threads)
    body = report(
        summary, pdf_dir=pdf_dir, n_scanned=len(scanned), n_total=total, load_s=load_s, load_before=load_before
    )
    typer.echo(body)
    write_section(DOC_PATH, f"pages={pages} threads={threads or 'default'}", body, tag="bench_ocr", header=_DOC_HEADER)
    typer.echo(f"written to {DOC_PATH}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    typer.run(main)

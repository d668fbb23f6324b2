"""Benchmark the offline LLM's speed per dtype on this CPU; print a Markdown table and keep it in docs/evaluation.md.

    uv run python -m scripts.bench.offline_llm [--generator qwen2.5-coder-0.5b] [--passages 3,6,9]

Prompts are the answer prompt (:func:`models.text_generator.passages_prompt`) over real text: 100-word passages
of a dev paper's text layer, read in place. For each dtype (float32, bfloat16) the bundled checkpoint is loaded as
the worker loads it, then per prompt size: the prefill (one forward pass over the prompt) and the decode time per
token (greedy ``generate`` of exactly ``--new-tokens`` tokens against one token), the median of ``--repeats``.
The dtype the worker picks by default (:func:`models.device.llm_dtype`) is marked.
"""

from __future__ import annotations

import os
import shlex
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import pypdfium2 as pdfium
import torch
import typer

from models.bundled import BUNDLED, locate
from models.device import amx_bf16, llm_dtype
from models.passages import split_passages
from models.text_generator import TextGenerator
from pageqa.settings import get_settings
from scripts.bench.markdown import write_section

PDF = Path("/work/shared/data/mmlongbench_dev/pdfs/2303.05039v2.pdf")  # an arXiv paper: full passages
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "evaluation.md"
QUESTION = "Which datasets does the paper evaluate on?"
CPU = torch.device("cpu")


def real_passages(pdf: Path, n: int) -> list[str]:
    """The first ``n`` 100-word passages of ``pdf``'s text layer (pypdfium2), pages in order."""
    out: list[str] = []
    with pdfium.PdfDocument(pdf) as doc:
        for page in doc:
            out += split_passages(page.get_textpage().get_text_range(), max_words=100)
            if len(out) >= n:
                break
    return out[:n]


def measure(llm: TextGenerator, passages: list[str], *, new_tokens: int, repeats: int) -> tuple[int, float, float]:
    """(prompt tokens, prefill ms, decode ms per token), medians over ``repeats``, after one warm-up run.

    Prefill is a greedy ``generate`` of one token; decode per token is the extra time of generating
    ``new_tokens`` instead of one, divided by ``new_tokens - 1``."""
    ids = torch.tensor([llm.prompt_ids(QUESTION, passages)])
    prefill, decode = [], []

    def timed(n: int) -> float:
        t0 = time.perf_counter()
        llm.model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                           pad_token_id=llm.tokenizer.pad_token_id)
        return (time.perf_counter() - t0) * 1e3

    with torch.inference_mode():
        for i in range(repeats + 1):
            one, many = timed(1), timed(new_tokens)
            if i:  # the first run warms oneDNN's kernels up
                prefill.append(one)
                decode.append((many - one) / (new_tokens - 1))
    return ids.shape[1], statistics.median(prefill), statistics.median(decode)


def main(
    generator: Annotated[str, typer.Option(help="A bundled LLM (models/bundled.py).")] = "qwen2.5-coder-0.5b",
    passages: Annotated[str, typer.Option(help="Comma-separated passage counts (prompt sizes).")] = "3,6,9",
    new_tokens: Annotated[int, typer.Option(min=2, help="Tokens generated per decode measurement.")] = 16,
    repeats: Annotated[int, typer.Option(min=1, help="Runs per cell; the median is shown.")] = 3,
) -> None:
    """Prefill and decode time of the offline LLM in float32 and bfloat16; table into docs/evaluation.md."""
    if generator not in BUNDLED:
        typer.echo(f"error: --generator {generator!r} is not bundled ({', '.join(BUNDLED)})", err=True)
        raise typer.Exit(1)
    counts = [int(c) for c in passages.split(",")]
    text = real_passages(PDF, max(counts))
    path, gguf_file = locate(generator, get_settings().home_dir / "models" / "gguf")
    load_before = os.getloadavg()[0]
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        t0 = time.perf_counter()
        llm = TextGenerator(str(path), gguf_file=gguf_file, model_id=generator, device=CPU, dtype=dtype)
        load_s = time.perf_counter() - t0
        for n in counts:
            tokens, prefill_ms, decode_ms = measure(llm, text[:n], new_tokens=new_tokens, repeats=repeats)
            default = " (default)" if dtype == llm_dtype(CPU) else ""
            rows.append(f"| {str(dtype).removeprefix('torch.')}{default} | {n} | {tokens} | {prefill_ms:,.0f} | "
                        f"{decode_ms:.0f} | {prefill_ms + 10 * decode_ms:,.0f} | {load_s:.0f} |")
        del llm
    body = (
        f"`{shlex.join(['uv', 'run', 'python', '-m', 'scripts.bench.offline_llm', *sys.argv[1:]])}` "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {generator}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, AMX {'yes' if amx_bf16() else 'no'}; load average {load_before:.1f} "
        f"before; median of {repeats} after a warm-up; decode over {new_tokens} tokens)\n\n"
        "| dtype | passages | prompt tokens | prefill ms | decode ms per token | a 10-token answer, ms | load s |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    typer.echo(body)
    write_section(DOC_PATH, f"generator={generator}", body, tag="bench_offline_llm", header="")
    typer.echo(f"written to {DOC_PATH}")


if __name__ == "__main__":
    typer.run(main)

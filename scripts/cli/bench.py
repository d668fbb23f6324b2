"""``pageqa`` commands on real and synthetic data: the demo, evaluation and the benchmarks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pageqa.errors import ConfigError
from pageqa.settings import get_settings
from scripts.cli.base import (
    app,
    bench_app,
    command,
    console,
    err_console,
    parse_lanes,
)
from services.runtime import prepare


@command(app)
def demo(
    questions: Annotated[int, typer.Option(min=1, help="Questions to ask.")] = 24,
    countries: Annotated[int, typer.Option(min=1, help="Country pages in the sample PDF.")] = 24,
) -> None:
    """The main job on real data: Gapminder life-expectancy charts → ingest → submit → worker → results table."""
    from scripts.demo.run import run_demo

    run_demo(get_settings(), n_questions=questions, n_countries=countries, console=console)


@command(app, "eval")
def evaluate(
    directory: Annotated[Path, typer.Argument(help="MMLongBench-Doc format: pdfs/ and samples.json.")],
    corpus: Annotated[str | None, typer.Option(help="Corpus name; default eval-<folder name>.")] = None,
    document: Annotated[list[str] | None, typer.Option(help="Only this document (repeatable).")] = None,
    max_documents: Annotated[int | None, typer.Option(min=1, help="Only the N shortest documents.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions (file order).")] = None,
    lanes: Annotated[str | None, typer.Option(help="Comma-separated lanes: visual,lexical,dense.")] = None,
    output: Annotated[Path | None, typer.Option(help="Report folder; default PAGEQA_HOME/eval/<corpus>.")] = None,
    spawn_worker: Annotated[bool, typer.Option(help="Start a worker for the run.")] = True,
    strict: Annotated[bool, typer.Option(help="Refuse samples.json if any record is malformed (by default such "
                                              "records are left out, listed and counted in the report).")] = False,
) -> None:
    """Evaluate page retrieval (per lane and fused) and answers on a directory of PDFs with gold questions;
    prints the report and writes it as JSON and Markdown. A malformed record is left out with a one-line error
    naming its index; the others are evaluated."""
    from scripts.eval.report import to_markdown
    from scripts.eval.run import run_eval

    settings = get_settings()
    prepare(settings)
    report = run_eval(
        settings, directory, corpus=corpus, documents=document or (), max_documents=max_documents,
        limit=limit, lanes=parse_lanes(lanes) or (), output=output, spawn_worker=spawn_worker, strict=strict,
    )
    for error in report["left_out"]["errors"]:
        err_console.print(f"[yellow]skipped[/yellow] {escape(error)}", highlight=False)
    console.print(to_markdown(report), markup=False, highlight=False)


@command(bench_app, "retrieval")
def bench_retrieval(
    pages: Annotated[list[int], typer.Option(help="Corpus sizes; repeat for several.")] = [10_000],  # noqa: B006
    queries: Annotated[int, typer.Option(help="Benchmark queries per size.")] = 100,
    exact_queries: Annotated[int, typer.Option(help="Queries also run through the exact scan.")] = 5,
    keep: Annotated[bool, typer.Option(help="Keep the benchmark databases.")] = False,
    variant_pages: Annotated[int, typer.Option(
        min=0, help="Pages of each adversarial variant (needle, near-duplicate) added to every corpus; 0: none.")]
    = 1000,
    variant_queries: Annotated[int, typer.Option(min=1, help="Queries per adversarial variant.")] = 30,
    lookalikes: Annotated[int, typer.Option(min=1, help="Needle pages sharing each template.")] = 500,
) -> None:
    """Two-stage late-interaction search vs the exact scan on synthetic ColQwen2-shaped corpora (docs/benchmarks.md)."""
    from models.pooling import PoolingSpec
    from scripts.bench.retrieval import run
    from services.visual_search import SearchParams

    settings = get_settings()
    body = run(settings, pages=pages, queries=queries, exact_queries=exact_queries,
               params=SearchParams.of(settings), spec=PoolingSpec.of(settings), keep=keep,
               variant_pages=variant_pages, variant_queries=variant_queries, lookalikes=lookalikes)
    console.print(body, markup=False, highlight=False)


@command(bench_app, "retrieval-sweep")
def bench_retrieval_sweep(
    settings_list: Annotated[list[str], typer.Argument(
        metavar="PER_TOKEN,EF,POOLED,EXACT", help="Search settings to try, e.g. 100,100,300,40.")],
    pages: Annotated[int, typer.Option(help="Size of a corpus kept by `bench retrieval --keep`.")] = 10_000,
) -> None:
    """Try two-stage search settings on a kept benchmark corpus: first-stage recall, recall@10, latency."""
    from scripts.bench.retrieval import sweep
    from services.visual_search import SearchParams

    combos = []
    for text in settings_list:
        try:
            per_token, ef, pooled, exact = (int(x) for x in text.split(","))
        except ValueError:
            raise ConfigError(f"{text!r}: expected PER_TOKEN,EF,POOLED,EXACT, e.g. 100,100,300,40") from None
        combos.append(SearchParams(per_token=per_token, ef_search=ef, pooled_candidates=pooled,
                                   exact_candidates=exact))
    console.print(sweep(get_settings(), n_pages=pages, combos=combos), markup=False, highlight=False)


@command(bench_app, "fidelity")
def bench_fidelity(
    corpus: Annotated[str, typer.Option(help="The stored corpus to measure.")],
    tenant: Annotated[str | None, typer.Option(help="Whose corpus and past questions (default 'default').")] = None,
    questions: Annotated[Path | None, typer.Option(
        help="A question file as `pageqa submit` reads (CSV/JSONL: custom_id,question[,document]); default: the "
             "tenant's past questions on the corpus, newest first.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most N distinct question texts.")] = 100,
    doc: Annotated[Path | None, typer.Option(help="Markdown file that keeps the table, in a section per command; "
                                                  "default: the repository's docs/benchmarks.md.")] = None,
) -> None:
    """The production search against its exact scan on a stored corpus, for the same question texts: recall@10,
    nDCG@10, latency p50/p95 of each, and whether the first stage ran (docs/benchmarks.md). The offline model set
    has no visual lane: its dense lane's HNSW search is compared with an exact scan of the same passage vectors."""
    from scripts.bench.fidelity import DOC_PATH, run

    settings = get_settings()
    prepare(settings)
    body = run(settings, corpus=corpus, tenant=tenant, questions=questions, limit=limit, doc=doc or DOC_PATH)
    console.print(body, markup=False, highlight=False)


@command(bench_app, "ingest")
def bench_ingest(
    pdf_dir: Annotated[Path, typer.Option(help="Folder of PDFs, read in place.")]
    = Path("/work/shared/data/mmlongbench_dev/pdfs"),
    pages: Annotated[int | None, typer.Option(min=1, help="At most N pages: the first pages of every PDF.")] = None,
    processes: Annotated[str, typer.Option(help="Render process counts to try, comma-separated.")] = "1,2",
    webp_methods: Annotated[str | None, typer.Option(help="WEBP methods (0–6); default: the one ingest uses.")]
    = None,
) -> None:
    """Ingest's CPU side, rasterise + compress in render processes, on a PDF folder: pages/s per process count and
    an encoder table (docs/benchmarks.md)."""
    import shlex

    from models.images import WEBP_METHOD
    from scripts.bench.ingest import ENCODINGS, parse_ints, run

    body = run(
        pdf_dir=pdf_dir, pages=pages, processes=parse_ints(processes, option="--processes", low=1, high=256),
        webp_methods=parse_ints(webp_methods or str(WEBP_METHOD), option="--webp-methods", low=0, high=6),
        encodings=ENCODINGS.split(","), encode_pages=24, command=shlex.join(["uv", "run", "pageqa", *sys.argv[1:]]),
    )
    console.print(body, markup=False, highlight=False)


@command(bench_app, "pipeline")
def bench_pipeline(
    questions: Annotated[int, typer.Option(min=1, help="Distinct questions per run.")] = 500,
    chunk_sizes: Annotated[str, typer.Option(help="Chunk sizes to run, comma-separated.")] = "1,8,16,32",
) -> None:
    """The worker's answering path in-process and through Celery, Redis and PostgreSQL, per chunk size:
    questions/s, per-stage ms, orchestration overhead, and the model calls de-duplication saves (docs/benchmarks.md).
    Without CUDA it runs the tiny model set."""
    import shlex

    from scripts.bench.pipeline import run

    try:
        sizes = sorted({int(x) for x in chunk_sizes.split(",")})
    except ValueError:
        raise ConfigError(f"--chunk-sizes {chunk_sizes!r}: expected whole numbers, e.g. 1,8,16,32") from None
    if not sizes or sizes[0] < 1:
        raise ConfigError(f"--chunk-sizes {chunk_sizes!r}: sizes must be at least 1")
    body = run(get_settings(), n_questions=questions, chunk_sizes=sizes,
               command=shlex.join(["uv", "run", "pageqa", *sys.argv[1:]]))
    console.print(body, markup=False, highlight=False)


@command(bench_app, "gpu")
def bench_gpu(
    size: Annotated[str, typer.Option(help="real: random weights of the published 2B/7B architectures; tiny: the "
                                           "tiny set.")] = "real",
    device: Annotated[str, typer.Option(help="cuda, cuda:N or cpu.")] = "cuda",
    memory_gib: Annotated[float | None, typer.Option(
        min=1.0, help="Cap this process's CUDA memory (an L4 leaves 22.5 GiB usable); ignored on the CPU.")] = 22.5,
    pages: Annotated[int, typer.Option(min=2, help="Synthetic pages, A4 and slide alternately.")] = 16,
    questions: Annotated[int, typer.Option(min=1, help="Questions: 4 rerank pairs and one generation each.")] = 16,
    workdir: Annotated[Path | None, typer.Option(help="Checkpoint folder; default PAGEQA_HOME/bench/gpu-models.")]
    = None,
    output: Annotated[Path | None, typer.Option(help="Report folder (gpu.json, gpu.md); default "
                                                     "PAGEQA_HOME/bench/gpu.")] = None,
) -> None:
    """The three models saved, loaded back through the production code (NF4 generator on CUDA, LoRA reranker) and
    driven through the production stages on synthetic A4 and slide pages: load seconds, memory, throughput, with
    all three resident and with low_memory, then a real out-of-memory run (CUDA only; docs/gpu.md)."""
    import shlex

    from models.device import resolve_device
    from scripts.bench.gpu import run

    if size not in ("real", "tiny"):
        raise ConfigError(f"--size {size!r}: expected real or tiny")
    settings = get_settings()
    home = settings.home_dir / "bench"
    report = run(settings, size=size, device=resolve_device(device), memory_gib=memory_gib,
                 workdir=workdir or home / "gpu-models", output=output or home / "gpu", n_pages=pages,
                 n_questions=questions, command=shlex.join(["pageqa", *sys.argv[1:]]))
    from scripts.bench.gpu_report import markdown

    console.print(markdown(report), markup=False, highlight=False)

"""``pageqa`` commands on jobs: submit a question file, follow it, download its output and error files, list
and cancel jobs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from pageqa.errors import PageQAError
from pageqa.settings import get_settings
from scripts.cli.base import (
    ApiKey,
    ApiUrl,
    api_client,
    app,
    command,
    console,
    err_console,
    parse_lanes,
    shown,
)
from services.runtime import prepare

if TYPE_CHECKING:
    from scripts.cli.client import ApiClient


@command(app)
def submit(
    file: Annotated[Path, typer.Argument(help="CSV (custom_id,question[,document]) or JSONL.")],
    corpus: Annotated[str, typer.Option(help="Corpus to answer from.")],
    retrieve_top_k: Annotated[int | None, typer.Option(min=1)] = None,
    rerank_top_k: Annotated[int | None, typer.Option(min=1, help="Pages passed to the generator.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(min=1)] = None,
    chunk_size: Annotated[int | None, typer.Option(min=1, help="Questions per worker task.")] = None,
    lanes: Annotated[str | None, typer.Option(help="Comma-separated retrieval lanes: visual,lexical,dense.")] = None,
    document_field: Annotated[str, typer.Option(help="Column naming the document to search in.")] = "document",
    priority: Annotated[int, typer.Option(min=0, max=9, help="Queue priority: 0 runs last, 9 first.")] = 5,
    completion_window: Annotated[str, typer.Option(help="Time the job may take, e.g. 24h, 90m, 7d; then the "
                                                   "questions not answered yet expire.")] = "24h",
    strict: Annotated[bool, typer.Option(help="Refuse the whole file if any row is invalid.")] = False,
    tenant: Annotated[str | None, typer.Option(help="Who submits (default 'default'): answers are never reused "
                                                  "across tenants. With --api the API key names the tenant.")] = None,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Submit a question file as a job; prints the job id."""
    from pageqa.options import job_options
    from scripts.cli import remote
    from services.jobs import submit_file
    from services.question_file import check_question_path

    # a pipe or a device never ends: neither upload nor read it (the local path checks again, for its callers)
    check_question_path(file, max_bytes=get_settings().max_upload_bytes)
    options = job_options(retrieve_top_k=retrieve_top_k, rerank_top_k=rerank_top_k, max_new_tokens=max_new_tokens,
                          chunk_size=chunk_size, lanes=parse_lanes(lanes), document_field=document_field,
                          priority=priority, completion_window=completion_window)
    if client := api_client(api, api_key, tenant=tenant):
        result = remote.submit(client, path=file, corpus=corpus, options=options, strict=strict)
    else:
        settings = get_settings()
        prepare(settings)
        result = submit_file(settings, path=file, corpus=corpus, options=options, strict=strict,
                             tenant=tenant or "default")
    for note in result.notes:
        err_console.print(f"[yellow]note[/yellow] {escape(note)}", highlight=False)
    for error in result.errors:  # escaped: a custom_id such as "[/red]" is text, not markup
        err_console.print(f"[yellow]skipped[/yellow] {escape(error)}", highlight=False)
    if result.errors_omitted:
        err_console.print(f"[yellow]skipped[/yellow] {result.errors_omitted} more rows were left out (only the first "
                          f"{len(result.errors)} errors are listed)", highlight=False)
    repeated = f" ({result.duplicates} repeated questions will reuse an earlier answer)" if result.duplicates else ""
    err_console.print(f"{result.total} questions queued{repeated}")
    console.print(result.job_id)


@command(app)
def status(
    job_id: str,
    watch: Annotated[bool, typer.Option(help="Follow the job with a progress bar until it ends.")] = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Show a job's status and question counts."""
    from scripts.cli import progress, remote
    from services.job_views import job_status

    if client := api_client(api, api_key):
        view = remote.job_status(client, job_id=job_id, watch=watch)
    else:
        settings = get_settings()
        prepare(settings)
        view = progress.watch_job(settings, job_id=job_id) if watch else job_status(settings, job_id=job_id)
    c = view.counts
    ended = "".join(f", {c[s]} {s}" for s in ("cancelled", "expired") if c[s])
    console.print(
        f"{view.job_id} {view.status}: {c['answered']} answered, {c['failed']} failed{ended}, {c['running']} "
        f"running, {c['queued']} queued of {view.total} ({view.elapsed_s:.1f} s)"
    )


def _write_file(chunks, output: Path | None) -> None:
    """Stream text ``chunks`` to ``output`` (default stdout)."""
    if output is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
        return
    with output.open("w", encoding="utf-8", newline="") as fh:
        fh.writelines(chunks)


def _job_file(job_id: str, kind: str, format: str, output: Path | None, client: ApiClient | None) -> None:
    """Write the job's output (``results``) or error file, from the API or the database, to ``output`` or stdout."""
    from scripts.cli import remote
    from services.results import export

    _check_format(format)
    if client is not None:
        remote.download(client, job_id=job_id, kind=kind, format=format, output=output)
    else:
        settings = get_settings()
        prepare(settings)
        _write_file(export(settings, job_id=job_id, kind=kind, format=format), output)
    if output is not None:
        err_console.print(f"{kind} written to {escape(str(output))}", highlight=False)


Format = Annotated[str, typer.Option("--format", help="jsonl or csv")]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="File to write; default: stdout.")]


def _check_format(format: str) -> None:
    if format not in ("jsonl", "csv"):
        raise PageQAError(f"--format must be jsonl or csv, not {format!r}")


@command(app)
def results(
    job_id: str,
    format: Format = "jsonl",
    output: Output = None,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Write the output file: one record per answered question (answer, citations with document and 1-based
    page, scores, per-stage ms, model ids), joinable with the error file by custom_id."""
    _job_file(job_id, "results", format, output, api_client(api, api_key))


@command(app)
def errors(
    job_id: str,
    format: Format = "jsonl",
    output: Output = None,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Write the error file: one record per question that ended without an answer (custom_id, status, error code
    and message)."""
    _job_file(job_id, "errors", format, output, api_client(api, api_key))


@command(app)
def jobs(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    status: Annotated[str | None, typer.Option(help="Only jobs in this status, e.g. in_progress.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's jobs; default: every tenant's (with --api: "
                                                   "the API key's).")] = None,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List the most recent jobs."""
    from rich.table import Table

    from pageqa.domain import JobStatus
    from scripts.cli import remote
    from services.job_views import list_jobs

    if status is not None and status not in JobStatus.__members__:
        raise PageQAError(f"--status must be one of {', '.join(JobStatus.__members__)}, not {status!r}")
    if client := api_client(api, api_key, tenant=tenant):
        console.print(remote.jobs_table(client, limit=limit, status=status))
        return
    settings = get_settings()
    prepare(settings)
    table = Table("status", "questions", "tenant", "source", "created")
    table.add_column("job", no_wrap=True)
    rows, _ = list_jobs(settings, tenant=tenant, status=JobStatus(status) if status else None, limit=limit)
    for job in rows:
        table.add_row(job.status.value, str(job.total), shown(job.tenant), shown(job.source),
                      f"{job.created_at:%Y-%m-%d %H:%M:%S}", job.id)
    console.print(table)


@command(app)
def cancel(job_id: str, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Cancel a job: queued questions will not run, answered ones keep their answers, running ones finish."""
    from scripts.cli import remote
    from services.jobs import cancel_job

    if client := api_client(api, api_key):
        view = remote.cancel(client, job_id=job_id)
        counts = ", ".join(f"{n} {s}" for s, n in view.counts.items() if n)
        console.print(f"{escape(view.job_id)} {view.status}: {counts}")
        return
    settings = get_settings()
    prepare(settings)
    view = cancel_job(settings, job_id=job_id)
    console.print(f"{job_id} {view.status}: " + ", ".join(f"{n} {s}" for s, n in view.counts.items() if n))

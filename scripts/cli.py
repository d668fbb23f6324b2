"""The ``pageqa`` command line. Each command's help text is its docstring."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from pageqa.errors import ConfigError, PageQAError
from pageqa.settings import Settings, get_settings

if TYPE_CHECKING:
    from scripts.client import ApiClient

LANES = ("visual", "lexical", "dense")

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False)
services_app = typer.Typer(no_args_is_help=True, help="Manage the embedded PostgreSQL and Redis.")
models_app = typer.Typer(no_args_is_help=True, help="Model checkpoints.")
app.add_typer(services_app, name="services")
app.add_typer(models_app, name="models")
index_app = typer.Typer(no_args_is_help=True, help="The first stage's pgvector HNSW index.")
app.add_typer(index_app, name="index")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print tables into docs/.")
app.add_typer(bench_app, name="bench")
keys_app = typer.Typer(no_args_is_help=True, help="API keys of the HTTP service (pageqa api), one tenant each.")
app.add_typer(keys_app, name="keys")
# emoji=False: "q.jsonl:100: ..." must not print as "q.jsonl💯 ..." (rich reads ":100:" as an emoji code)
console = Console(soft_wrap=True, emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)

_prepared = False


def command(group: typer.Typer, *args, **kwargs):
    """``group.command`` whose PageQAError becomes one line on stderr and exit code 1."""

    def decorate(fn):
        @functools.wraps(fn)
        def run(*a, **k):
            try:
                return fn(*a, **k)
            except PageQAError as exc:
                err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)  # a file name is no markup
                raise typer.Exit(1) from None

        return group.command(*args, **kwargs)(run)

    return decorate


def prepare(settings: Settings) -> None:
    """Start (or reuse) the services and apply migrations; once per process."""
    global _prepared
    if _prepared:
        return
    from db.engine import migrate
    from worker.app import resolve_broker_url

    resolve_broker_url(settings)
    migrate(settings)
    _prepared = True


ApiUrl = Annotated[str | None, typer.Option(
    "--api", metavar="URL", help="Call the pageqa HTTP API at URL instead of the database (default: PAGEQA_API_URL).")]
ApiKey = Annotated[str | None, typer.Option(
    "--api-key", metavar="KEY", help="API key for --api (default: PAGEQA_API_KEY; pageqa keys create).")]


def api_client(api: str | None, api_key: str | None, *, tenant: str | None = None) -> ApiClient | None:
    """The HTTP API client when ``--api`` or PAGEQA_API_URL names a server, else None (the command works on the
    database).

    Raises:
        ConfigError: no API key for the server, or ``--tenant`` given with it.
    """
    settings = get_settings()
    url = api or settings.api_url
    if not url:
        return None
    key = api_key or settings.api_key
    if not key:
        raise ConfigError(f"{url} needs an API key: --api-key KEY or PAGEQA_API_KEY (pageqa keys create)")
    if tenant is not None:
        raise ConfigError("--tenant does not go with --api: the API key names the tenant")
    from scripts.client import ApiClient

    return ApiClient(url, key)


def parse_lanes(text: str | None) -> list[str] | None:
    """``visual,lexical,dense`` → a list of lane names; None for None.

    Raises:
        ConfigError: an unknown lane name.
    """
    if text is None:
        return None
    lanes = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in lanes if x not in LANES]
    if unknown or not lanes:
        raise ConfigError(f"--lanes takes a comma-separated subset of {', '.join(LANES)}, not {text!r}")
    return lanes


@command(services_app, "start")
def services_start() -> None:
    """Start the embedded PostgreSQL (with pgvector) and Redis under PAGEQA_HOME, and apply migrations."""
    settings = get_settings()
    prepare(settings)
    services_status()


@command(services_app, "stop")
def services_stop() -> None:
    """Stop the embedded PostgreSQL and Redis (data is kept under PAGEQA_HOME)."""
    from db import embedded
    from worker import broker

    home = get_settings().home_dir
    console.print(f"redis-server: {'stopped' if broker.stop(home) else 'was not running'}")
    console.print(f"postgres: {'stopped' if embedded.stop(home) else 'was not running'}")


@command(services_app, "status")
def services_status() -> None:
    """Show whether each service is running and where."""
    from db import embedded
    from worker import broker

    settings = get_settings()
    home = settings.home_dir
    if settings.database_url:
        console.print(f"postgres: external ({settings.database_url.split('@')[-1]})")
    else:
        state = "running" if embedded.is_running(home) else "stopped"
        console.print(f"postgres: embedded, {state} ({embedded.pgdata_dir(home)})")
    if settings.broker_url:
        console.print(f"redis: external ({settings.broker_url.split('@')[-1]})")
    else:
        state = "running" if broker.is_running(home) else "stopped"
        console.print(f"redis: embedded, {state} ({broker.socket_path(home)})")


@command(app)
def migrate() -> None:
    """Apply the database migrations (Alembic) to PAGEQA_DATABASE_URL or the embedded PostgreSQL."""
    from db.engine import migrate as upgrade

    upgrade(get_settings())
    console.print("database schema is up to date")


@command(models_app, "make-tiny")
def models_make_tiny(
    directory: Annotated[Path | None, typer.Argument(help="Default: PAGEQA_HOME/models/tiny")] = None,
    overwrite: bool = False,
) -> None:
    """Build tiny, randomly initialised Qwen2-VL, ColQwen2 and MonoQwen2-VL (LoRA) checkpoints for tests and
    CPU demos. They load through the same from_pretrained code as the real ones; their answers are meaningless."""
    from models.tiny import make_tiny

    target = directory or get_settings().home_dir / "models" / "tiny"
    tiny = make_tiny(target, overwrite=overwrite)
    console.print(f"tiny model set in {tiny.root}")


@command(app)
def ingest(
    # str, not Path: click's Path type turns a name it cannot stat (a NUL byte) into a usage error for the whole call
    paths: Annotated[list[str], typer.Argument(help="PDFs, PNG/JPEG/WebP images, or folders of them.")],
    corpus: Annotated[str, typer.Option(help="Corpus name (created when missing).")],
    wait: Annotated[bool, typer.Option(help="Wait until the workers have embedded every page.")] = True,
    retry_failed: Annotated[bool, typer.Option(help="Queue again the corpus's pages whose indexing failed.")] = False,
    tenant: Annotated[str | None, typer.Option(help="Whose corpus (default 'default'); with --api the API key names "
                                                  "the tenant.")] = None,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Ingest documents into a corpus: rasterise (PAGEQA_INGEST_PROCESSES processes), store page images and text,
    queue each document's pages for embedding as soon as it is stored. A bad file or path is one error line; the
    others are ingested, and the exit code is 1. So is a page the workers could not index (its error is listed;
    --retry-failed queues such pages again). With --api the files are uploaded and the server ingests them."""
    from scripts import progress, remote
    from scripts.ingest_inputs import expand_paths

    client = api_client(api, api_key, tenant=tenant)
    if client is not None and retry_failed:
        raise ConfigError("--retry-failed works on the database: run it without --api")
    files, path_errors = expand_paths(paths)
    if client is not None:
        report = remote.upload(client, corpus=corpus, files=files, errors=path_errors)
    else:
        settings = get_settings()
        prepare(settings)
        report = _ingest_files(settings, corpus=corpus, files=files, errors=path_errors, tenant=tenant or "default")
    for error in report.errors:
        err_console.print(f"[red]error[/red] {escape(error)}", highlight=False)
    console.print(f"{len(report.added)} documents added ({report.pages} pages), {len(report.duplicates)} duplicates skipped")
    if client is not None:
        failed = remote.wait_indexed(client, corpus=corpus) if wait and (report.added or report.duplicates) else 0
        hint = "the workers' logs say why; after fixing the cause, run pageqa ingest --retry-failed on the database"
    else:
        unindexed = progress.embed_and_wait(settings, corpus=corpus, wait=wait, queued=report.queued_page_ids,
                                            retry_failed=retry_failed, tenant=tenant or "default")
        for error in unindexed:
            err_console.print(f"[red]error[/red] {escape(error)}", highlight=False)
        failed, hint = len(unindexed), "after fixing the cause, run this ingest again with --retry-failed"
    if failed:
        err_console.print(f"{failed} pages of the corpus are not indexed; {hint}", highlight=False)
    if report.errors or failed:
        raise typer.Exit(1)


def _ingest_files(settings: Settings, *, corpus: str, files: list[Path], errors: list[str], tenant: str):
    """Ingest into the database with a bar over the files; the :class:`~scripts.ingest.IngestReport`."""
    from scripts import progress
    from scripts.ingest import IngestReport, ingest_files

    with progress.bar("reading documents", total=len(files)) as advance:
        return ingest_files(settings, corpus=corpus, files=files, report=IngestReport(errors=errors),
                            on_file=lambda _p: advance(), enqueue=True, tenant=tenant)


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
    from scripts import remote
    from scripts.jobs import submit_file

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
    from scripts import progress, remote
    from scripts.jobs import job_status

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
    from scripts import remote
    from scripts.results import (
        error_records,
        errors_to_csv,
        result_records,
        to_csv,
        to_jsonl,
    )

    _check_format(format)
    if client is not None:
        remote.download(client, job_id=job_id, kind=kind, format=format, output=output)
    else:
        settings = get_settings()
        prepare(settings)
        if kind == "results":
            records = result_records(settings, job_id=job_id)
            _write_file((to_jsonl if format == "jsonl" else to_csv)(records), output)
        else:
            records = error_records(settings, job_id=job_id)
            _write_file((to_jsonl if format == "jsonl" else errors_to_csv)(records), output)
    if output is not None:
        err_console.print(f"{kind} written to {escape(str(output))}", highlight=False)


def _check_format(format: str) -> None:
    if format not in ("jsonl", "csv"):
        raise PageQAError(f"--format must be jsonl or csv, not {format!r}")


@command(app)
def results(
    job_id: str,
    format: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write; default: stdout.")] = None,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Write the output file: one record per answered question (answer, citations with document and 1-based
    page, scores, per-stage ms, model ids), joinable with the error file by custom_id."""
    _job_file(job_id, "results", format, output, api_client(api, api_key))


@command(app)
def errors(
    job_id: str,
    format: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write; default: stdout.")] = None,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Write the error file: one record per question that ended without an answer (custom_id, status, error code
    and message)."""
    _job_file(job_id, "errors", format, output, api_client(api, api_key))


@command(app)
def delete(
    document: Annotated[str | None, typer.Argument(help="Document file name or title; omit to empty the corpus.")]
    = None,
    corpus: Annotated[str, typer.Option(help="Corpus the document belongs to.")] = ...,
    yes: Annotated[bool, typer.Option("--yes", help="Empty the whole corpus without asking.")] = False,
) -> None:
    """Delete a document (or every document of a corpus) with its pages, embeddings and index entries.

    Citations of the deleted pages go with them; the answers themselves stay.
    """
    from db import corpus as corpus_db
    from db.engine import session_scope
    from pageqa.errors import NotFoundError

    settings = get_settings()
    prepare(settings)
    if document is None and not yes:
        typer.confirm(f"Delete every document of corpus {corpus!r}?", abort=True)
    with session_scope(settings) as session:
        corpus_id = corpus_db.get_corpus(session, name=corpus).id
        ids = None
        if document is not None:
            doc = corpus_db.documents_by_name(session, corpus_id=corpus_id).get(document)
            if doc is None:
                raise NotFoundError(f"no document {document!r} in corpus {corpus!r}")
            ids = [doc.id]
        gone = corpus_db.delete_documents(session, corpus_id=corpus_id, document_ids=ids)
    console.print(f"deleted {gone.documents} documents: {gone.pages} pages, {gone.embeddings} multi-vectors, "
                  f"{gone.passages} passages, {gone.citations} citations")


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

    from db import jobs as jobs_db
    from db.engine import session_scope
    from db.schema import JobStatus
    from scripts import remote

    if status is not None and status not in JobStatus.__members__:
        raise PageQAError(f"--status must be one of {', '.join(JobStatus.__members__)}, not {status!r}")
    if client := api_client(api, api_key, tenant=tenant):
        console.print(remote.jobs_table(client, limit=limit, status=status))
        return
    settings = get_settings()
    prepare(settings)
    table = Table("status", "questions", "tenant", "source", "created")
    table.add_column("job", no_wrap=True)
    with session_scope(settings) as session:
        rows, _ = jobs_db.list_jobs(session, tenant=tenant, status=JobStatus(status) if status else None, limit=limit)
        for job in rows:
            table.add_row(job.status.value, str(job.total), job.tenant, escape(job.source),
                          f"{job.created_at:%Y-%m-%d %H:%M:%S}", job.id)
    console.print(table)


@command(app)
def corpora(
    name: Annotated[str | None, typer.Argument(help="Show this corpus and its documents; omit to list corpora.")]
    = None,
    tenant: Annotated[str | None, typer.Option(help="The tenant whose corpora to show; default: every tenant's "
                                                   "(one corpus: 'default'). With --api the API key names it.")]
    = None,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List corpora with their documents, pages, pages indexed and pages that failed; or one corpus's documents."""
    from scripts.corpora import (
        corpora_table,
        corpus_detail,
        corpus_summaries,
        documents_table,
    )

    if client := api_client(api, api_key, tenant=tenant):
        found = client.list_corpora() if name is None else client.get_corpus(name)
    else:
        settings = get_settings()
        prepare(settings)
        found = (corpus_summaries(settings, tenant=tenant) if name is None
                 else corpus_detail(settings, name=name, tenant=tenant or "default"))
    console.print(corpora_table(found) if name is None else documents_table(found))


@command(app)
def report(
    date: Annotated[str | None, typer.Option(help="Day to report, YYYY-MM-DD; default: yesterday in "
                                             "PAGEQA_REPORT_TIMEZONE.")] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open the page in a web browser.")] = False,
) -> None:
    """Build a day's nightly report (what beat runs at PAGEQA_REPORT_TIME): one self-contained HTML page for every
    tenant and one per tenant, the figures as JSON and CSV, stored in the database and under PAGEQA_HOME/reports.
    Building a day again replaces its report."""
    import datetime as dt
    import webbrowser

    from scripts.report import build_report
    from tasks.report import previous_day

    settings = get_settings()
    try:
        day = dt.date.fromisoformat(date) if date is not None else previous_day(settings)
    except ValueError:
        raise PageQAError(f"--date must be YYYY-MM-DD, not {date!r}") from None
    prepare(settings)
    result = build_report(settings, day=day)
    console.print(f"report of {day}: {escape(str(result.pages['all']))} ({len(result.pages) - 1} tenant pages; "
                  f"figures in {escape(str(result.json_path))} and {escape(result.csv_path.name)})", highlight=False)
    if open_:
        webbrowser.open(result.pages["all"].as_uri())


@command(keys_app, "create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key acts for (created with its first key).")],
    name: Annotated[str, typer.Option(help="A note to recognise the key by.")] = "",
) -> None:
    """Create an API key and print it; it is shown only this once (only its sha256 is stored)."""
    from db import keys
    from db.engine import session_scope

    settings = get_settings()
    prepare(settings)
    with session_scope(settings) as session:
        new = keys.create_key(session, tenant=tenant, name=name)
    err_console.print(f"key {new.id} for tenant {escape(new.tenant)} (store it now: it is not shown again)",
                      highlight=False)
    console.print(new.key, markup=False, highlight=False)


@command(keys_app, "revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (pageqa keys list).")]) -> None:
    """Revoke an API key: requests with it are refused from now on."""
    from db import keys
    from db.engine import session_scope

    settings = get_settings()
    prepare(settings)
    with session_scope(settings) as session:
        row = keys.revoke_key(session, key_id=key_id)
        console.print(f"key {row.id} ({row.prefix}…) of tenant {escape(row.tenant)} revoked at "
                      f"{row.revoked_at:%Y-%m-%d %H:%M:%S}", highlight=False)


@command(keys_app, "list")
def keys_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None) -> None:
    """List API keys (id, tenant, prefix, name, created, last used, revoked); never the keys themselves."""
    from rich.table import Table

    from db import keys
    from db.engine import session_scope

    settings = get_settings()
    prepare(settings)
    table = Table("id", "tenant", "prefix", "name", "created", "last used", "revoked")
    with session_scope(settings) as session:
        for k in keys.list_keys(session, tenant=tenant):
            table.add_row(str(k.id), escape(k.tenant), k.prefix + "…", escape(k.name),
                          *(f"{t:%Y-%m-%d %H:%M}" if t else "" for t in (k.created_at, k.last_used_at, k.revoked_at)))
    console.print(table)


@command(app)
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the HTTP API (FastAPI): jobs, results, corpora, health; OpenAPI docs at /docs. Every request but
    /v1/health carries an API key (Authorization: Bearer; pageqa keys create)."""
    import uvicorn

    settings = get_settings()
    prepare(settings)
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers, log_level="info")


@command(app)
def beat(loglevel: str = "INFO") -> None:
    """Run the one scheduler of a deployment: Celery beat with the reconciler (expired leases, lost tasks, job
    expiry), in a worker of the control queue that loads no model. Run exactly one."""
    from worker.start import run_control

    prepare(get_settings())
    run_control(loglevel=loglevel)


@command(app)
def cancel(job_id: str, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Cancel a job: queued questions will not run, answered ones keep their answers, running ones finish."""
    from db import jobs as jobs_db
    from db import lifecycle
    from db.engine import session_scope
    from scripts import remote

    if client := api_client(api, api_key):
        view = remote.cancel(client, job_id=job_id)
        counts = ", ".join(f"{n} {s}" for s, n in view.counts.items() if n)
        console.print(f"{escape(view.job_id)} {view.status}: {counts}")
        return
    settings = get_settings()
    prepare(settings)
    with session_scope(settings) as session:
        counts = lifecycle.cancel_job(session, job_id=job_id)
        status = jobs_db.get_job(session, job_id=job_id).status.value
    console.print(f"{job_id} {status}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))


@command(app)
def worker(
    gpu: Annotated[int | None, typer.Option(help="GPU index to pin (sets CUDA_VISIBLE_DEVICES).")] = None,
    device: Annotated[str | None, typer.Option(help="Run on this device instead, e.g. 'cpu'.")] = None,
    loglevel: str = "INFO",
    beat: Annotated[bool, typer.Option(help="Also run the reconciler's schedule here (one worker per deployment).")]
    = False,
) -> None:
    """Run one Celery worker (solo pool, one task at a time) with the models resident; one per GPU."""
    import os

    from worker.start import pin_gpu, run_worker

    if gpu is not None and device is not None and device != "cuda":
        raise PageQAError("use either --gpu N or --device, not both")
    pin_gpu(gpu)
    if device is not None:
        os.environ["PAGEQA_DEVICE"] = device
    elif gpu is not None:
        os.environ["PAGEQA_DEVICE"] = "cuda"
    get_settings.cache_clear()
    prepare(get_settings())
    run_worker(gpu=gpu, loglevel=loglevel, beat=beat)


@command(app)
def demo(
    questions: Annotated[int, typer.Option(min=1, help="Questions to ask.")] = 24,
    countries: Annotated[int, typer.Option(min=1, help="Country pages in the sample PDF.")] = 24,
) -> None:
    """The main job on real data: Gapminder life-expectancy charts → ingest → submit → worker → results table."""
    from scripts.demo import run_demo

    run_demo(get_settings(), n_questions=questions, n_countries=countries, console=console)


@command(app, "eval")
def evaluate(
    directory: Annotated[Path, typer.Argument(help="MMLongBench-Doc format: pdfs/ and samples.json.")],
    corpus: Annotated[str | None, typer.Option(help="Corpus name; default eval-<folder name>.")] = None,
    document: Annotated[list[str] | None, typer.Option(help="Only this document (repeatable).")] = None,
    max_documents: Annotated[int | None, typer.Option(min=1, help="Only the N shortest documents.")] = None,
    lanes: Annotated[str | None, typer.Option(help="Comma-separated lanes: visual,lexical,dense.")] = None,
    output: Annotated[Path | None, typer.Option(help="Report folder; default PAGEQA_HOME/eval/<corpus>.")] = None,
    spawn_worker: Annotated[bool, typer.Option(help="Start a worker for the run.")] = True,
) -> None:
    """Evaluate page retrieval (per lane and fused) and answers on a directory of PDFs with gold questions;
    prints the report and writes it as JSON and Markdown."""
    from scripts.eval import run_eval
    from scripts.eval_report import to_markdown

    settings = get_settings()
    prepare(settings)
    report = run_eval(
        settings, directory, corpus=corpus, documents=document or (), max_documents=max_documents,
        lanes=parse_lanes(lanes) or (), output=output, spawn_worker=spawn_worker,
    )
    console.print(to_markdown(report), markup=False, highlight=False)


@command(index_app, "rebuild")
def index_rebuild(
    maintenance_work_mem: Annotated[str, typer.Option(help="PostgreSQL memory for the build, e.g. 4GB.")] = "2GB",
    workers: Annotated[int, typer.Option(min=0, help="Parallel maintenance workers.")] = 1,
) -> None:
    """Drop and rebuild the HNSW index of the coarse pooled vectors (after a large bulk load: one build is much
    faster than inserting into the graph page by page). Searches wait for the rebuild."""
    import time

    from db import multivector as mv
    from db.engine import session_scope

    settings = get_settings()
    prepare(settings)
    start = time.perf_counter()
    with session_scope(settings) as session:
        conn = mv.raw_connection(session)
        mv.drop_first_stage_index(conn)
        mv.build_first_stage_index(conn, maintenance_work_mem=maintenance_work_mem, workers=workers)
        rows = mv.count_pool_vectors(conn)
    console.print(f"HNSW index rebuilt over {rows:,} pooled vectors in {time.perf_counter() - start:.1f} s")


@command(bench_app, "retrieval")
def bench_retrieval(
    pages: Annotated[list[int], typer.Option(help="Corpus sizes; repeat for several.")] = [10_000],  # noqa: B006
    queries: Annotated[int, typer.Option(help="Benchmark queries per size.")] = 100,
    exact_queries: Annotated[int, typer.Option(help="Queries also run through the exact scan.")] = 5,
    keep: Annotated[bool, typer.Option(help="Keep the benchmark databases.")] = False,
) -> None:
    """Two-stage late-interaction search vs the exact scan on synthetic ColQwen2-shaped corpora (docs/benchmarks.md)."""
    from scripts.bench_retrieval import run

    settings = get_settings()
    body = run(settings, pages=pages, queries=queries, exact_queries=exact_queries,
               params=settings.search_params(), spec=settings.pooling_spec(), keep=keep)
    console.print(body, markup=False, highlight=False)


@command(bench_app, "retrieval-sweep")
def bench_retrieval_sweep(
    settings_list: Annotated[list[str], typer.Argument(
        metavar="PER_TOKEN,EF,POOLED,EXACT", help="Search settings to try, e.g. 100,100,300,40.")],
    pages: Annotated[int, typer.Option(help="Size of a corpus kept by `bench retrieval --keep`.")] = 10_000,
) -> None:
    """Try two-stage search settings on a kept benchmark corpus: first-stage recall, recall@10, latency."""
    from models.late_interaction import SearchParams
    from scripts.bench_retrieval import sweep

    combos = []
    for text in settings_list:
        try:
            per_token, ef, pooled, exact = (int(x) for x in text.split(","))
        except ValueError:
            raise ConfigError(f"{text!r}: expected PER_TOKEN,EF,POOLED,EXACT, e.g. 100,100,300,40") from None
        combos.append(SearchParams(per_token=per_token, ef_search=ef, pooled_candidates=pooled,
                                   exact_candidates=exact))
    console.print(sweep(get_settings(), n_pages=pages, combos=combos), markup=False, highlight=False)


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
    from scripts.bench_ingest import ENCODINGS, parse_ints, run

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

    from scripts.bench_pipeline import run

    try:
        sizes = sorted({int(x) for x in chunk_sizes.split(",")})
    except ValueError:
        raise ConfigError(f"--chunk-sizes {chunk_sizes!r}: expected whole numbers, e.g. 1,8,16,32") from None
    if not sizes or sizes[0] < 1:
        raise ConfigError(f"--chunk-sizes {chunk_sizes!r}: sizes must be at least 1")
    body = run(get_settings(), n_questions=questions, chunk_sizes=sizes,
               command=shlex.join(["uv", "run", "pageqa", *sys.argv[1:]]))
    console.print(body, markup=False, highlight=False)


def main() -> None:
    """Entry point of the ``pageqa`` command."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()

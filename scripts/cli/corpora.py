"""``pageqa`` commands on corpora: ingest documents, list corpora, delete documents."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pageqa.errors import ConfigError
from pageqa.settings import Settings, get_settings
from scripts.cli.base import (
    ApiKey,
    ApiUrl,
    api_client,
    app,
    command,
    console,
    err_console,
)
from services.runtime import prepare


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
    from scripts.cli import progress, remote
    from services.ingest.inputs import expand_paths

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
    console.print(f"{len(report.added)} documents added ({report.pages} pages), {len(report.duplicates)} skipped as already in the corpus")
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
    """Ingest into the database with a bar over the files; the :class:`~services.ingest.pipeline.IngestReport`."""
    from scripts.cli import progress
    from services.ingest.pipeline import IngestReport, ingest_files

    with progress.bar("reading documents", total=len(files)) as advance:
        return ingest_files(settings, corpus=corpus, files=files, report=IngestReport(errors=errors),
                            on_file=lambda _p: advance(), enqueue=True, tenant=tenant)


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
    from scripts.cli.tables import corpora_table, documents_table
    from services.corpora import corpus_detail, corpus_summaries

    if client := api_client(api, api_key, tenant=tenant):
        found = client.list_corpora() if name is None else client.get_corpus(name)
    else:
        settings = get_settings()
        prepare(settings)
        found = (corpus_summaries(settings, tenant=tenant) if name is None
                 else corpus_detail(settings, name=name, tenant=tenant or "default"))
    console.print(corpora_table(found) if name is None else documents_table(found))


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
    from services.corpora import delete_documents

    settings = get_settings()
    prepare(settings)
    if document is None and not yes:
        typer.confirm(f"Delete every document of corpus {corpus!r}?", abort=True)
    gone = delete_documents(settings, corpus=corpus, document=document)
    console.print(f"deleted {gone.documents} documents: {gone.pages} pages, {gone.embeddings} multi-vectors, "
                  f"{gone.passages} passages, {gone.citations} citations")
    if gone.questions_failed:
        console.print(f"failed {gone.questions_failed} unanswered questions restricted to it, of "
                      f"{len(gone.jobs)} jobs: {', '.join(gone.jobs)}")

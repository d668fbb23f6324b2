"""The CLI's commands against the HTTP API (``--api URL``): the same operations as on the database, through
:class:`~scripts.cli.client.ApiClient`, with progress bars over the bytes sent and received and over the work waited
for. Each function returns what its command prints in the shape the database side gives (a
:class:`~services.job_views.JobStatusView`, a :class:`~services.jobs.Submitted` …), so both sides print alike."""

from __future__ import annotations

import codecs
import datetime as dt
import itertools
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from pageqa.domain import END_STAMPS
from pageqa.errors import (
    ConfigError,
    InputError,
    NotFoundError,
    PageQAError,
    ServiceError,
)
from pageqa.options import JobOptions
from scripts.cli import progress
from scripts.cli.base import shown
from scripts.cli.client import MAX_FILES_PER_UPLOAD, ApiClient, FileFormat, FileKind
from services.job_views import JobStatusView
from services.jobs import Submitted

#: Bytes of documents per upload request; a bigger file goes alone (the server's limit is PAGEQA_MAX_UPLOAD_BYTES).
UPLOAD_BATCH_BYTES = 64 * 1024 * 1024


def _time(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso)


def job_view(record: dict) -> JobStatusView:
    """A job record of the API as the database side's status view (``completed`` is counted as ``answered``)."""
    c = record["request_counts"]
    counts = {"answered": c["completed"], **{k: c.get(k, 0) for k in ("failed", "cancelled", "expired", "running",
                                                                        "queued")}}
    end = next((_time(record[k]) for k in END_STAMPS if record.get(k)), dt.datetime.now(dt.UTC))
    return JobStatusView(record["id"], record["status"], c["total"], counts,
                         (end - _time(record["created_at"])).total_seconds())


def job_status(client: ApiClient, *, job_id: str, watch: bool = False) -> JobStatusView:
    """The job's status; with ``watch``, followed with a progress bar until it ends."""
    if watch:
        return progress.watch(lambda: job_view(client.get_job(job_id)))
    return job_view(client.get_job(job_id))


def submit(client: ApiClient, *, path: Path, corpus: str, options: JobOptions, strict: bool = False) -> Submitted:
    """Upload the question file with a bar over its bytes, wait while the server validates it, and report as
    :func:`services.jobs.submit_file` does: the job id, questions stored, the first rows left out (``file:line:
    message``). The server does not say how many questions repeat others, so ``duplicates`` is 0.

    Raises:
        InputError: the server refused the file (the job is stored ``failed`` with its errors).
    """
    fields = {k: ",".join(v) if isinstance(v, list) else str(v) for k, v in options.stored().items()}
    with progress.transfer_bar(f"uploading {path.name}", total=path.stat().st_size) as advance:
        record = client.submit_job(path, corpus=corpus, fields=fields, strict=strict, on_bytes=advance)
    job_id = record["id"]

    def read() -> progress.Tick:
        nonlocal record
        record = client.get_job(job_id)
        return progress.Tick(0, None, record["status"] != "validating", f"{job_id} validating")

    if not read().done:  # the server checks the file after answering; a large one takes a while
        progress.follow(read)
    errors = record["errors"] or {"data": [], "total": 0}
    lines = [f"{path}:{e['line']}: {e['message']}" if e.get("line") else f"{path}: {e['message']}"
             for e in errors["data"]]
    total = record["request_counts"]["total"]
    if record["status"] == "failed" and not total:
        first = lines[0] if lines else f"{path}: refused"
        why = f"{errors['total']} invalid rows (--strict)" if strict and errors["total"] else "no valid question"
        raise InputError(f"{why}; first: {first} (job {job_id} failed)")
    return Submitted(job_id, total, 0, lines, n_errors=errors["total"])


def cancel(client: ApiClient, *, job_id: str) -> JobStatusView:
    """Cancel the job; its status after (409, the job has already ended: a PageQAError with the server's message)."""
    return job_view(client.cancel_job(job_id))


def download(client: ApiClient, *, job_id: str, kind: FileKind, format: FileFormat, output: Path | None) -> None:
    """Stream the job's output or error file to ``output`` with a bar over the bytes received, or to stdout."""
    with client.download(job_id, kind, format=format) as chunks:
        if output is None:
            decode = codecs.getincrementaldecoder("utf-8")().decode
            for chunk in chunks:
                sys.stdout.write(decode(chunk))
            sys.stdout.write(decode(b"", final=True))
            return
        with output.open("wb") as fh, progress.transfer_bar(f"{kind} of {job_id}", total=None) as advance:
            for chunk in chunks:
                fh.write(chunk)
                advance(len(chunk))


def jobs_table(client: ApiClient, *, limit: int, status: str | None) -> Table:
    """The tenant's most recent ``limit`` jobs (fetched a page of at most 100 at a time) as the jobs table, without
    the tenant column: the API key is the tenant."""
    table = Table("status", "questions", "source", "created")
    table.add_column("job", no_wrap=True)
    for job in itertools.islice(client.iter_jobs(status=status, page_size=min(limit, 100)), limit):
        table.add_row(job["status"], str(job["request_counts"]["total"]), shown(job["input_file"]),
                      f"{_time(job['created_at']):%Y-%m-%d %H:%M:%S}", escape(job["id"]))
    return table


@dataclass
class Uploaded:
    """What an upload did, as :class:`services.ingest.pipeline.IngestReport` counts it: documents added (by name),
    duplicates skipped, pages added, one-line errors."""

    added: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    pages: int = 0
    errors: list[str] = field(default_factory=list)


def _batches(files: Sequence[Path], sizes: dict[Path, int]) -> Iterator[list[Path]]:
    batch: list[Path] = []
    for path in files:
        if batch and (len(batch) == MAX_FILES_PER_UPLOAD
                      or sum(sizes[p] for p in batch) + sizes[path] > UPLOAD_BATCH_BYTES):
            yield batch
            batch = []
        batch.append(path)
    if batch:
        yield batch


def upload(client: ApiClient, *, corpus: str, files: Sequence[Path], errors: Sequence[str] = ()) -> Uploaded:
    """Upload ``files`` into the tenant's ``corpus`` in batches, with a bar over the bytes sent; the server renders
    and stores each batch and queues its pages for indexing. A file the server refuses is one error line naming it;
    the others go on. ``errors`` (paths already left out) start the report's errors.

    Raises:
        ConfigError, ServiceError: the key is refused or the server cannot be reached (nothing more is sent).
    """
    report = Uploaded(errors=list(errors))
    sizes = {path: path.stat().st_size for path in files}
    with progress.transfer_bar("uploading documents (the server renders them)", total=sum(sizes.values())) as advance:
        for batch in _batches(files, sizes):
            _send(client, corpus, batch, report, advance)
    return report


def _send(client: ApiClient, corpus: str, batch: list[Path], report: Uploaded, advance) -> None:
    try:
        answer = client.upload_documents(corpus, batch, on_bytes=advance)
    except (ConfigError, ServiceError, NotFoundError):
        raise
    except InputError as exc:
        if len(batch) == 1:
            report.errors.append(str(exc))
            return
        # no file of the batch could be ingested and the server names only the first: each alone names its own
        for path in batch:
            _send(client, corpus, [path], report, lambda _n: None)
        return
    except PageQAError as exc:  # 413: the batch is over the server's upload limit
        report.errors.append(f"{', '.join(p.name for p in batch)}: {exc}")
        return
    report.added += answer["added"]
    report.duplicates += answer["duplicates"]
    report.pages += answer["pages"]
    report.errors += answer["errors"]


def wait_indexed(client: ApiClient, *, corpus: str) -> int:
    """Wait with a bar until no page of the corpus is left waiting for the workers; returns the pages that could
    not be indexed."""
    state: dict = {}

    def read() -> progress.Tick:
        nonlocal state
        state = client.get_corpus(corpus)
        ended = state["pages_indexed"] + state["pages_failed"]
        return progress.Tick(ended, state["pages"], ended >= state["pages"], progress.INDEXING)

    progress.follow(read)
    return state["pages_failed"]

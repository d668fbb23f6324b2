"""Batches of OpenAI's Batch API (``/v1/batches``) as views of pageqa jobs: creating a batch opens a job (its id is
the batch id) over the questions of an uploaded input file, so ``pageqa status``, ``/v1/jobs`` and the nightly report
see it as any job; the batch adds the protocol's own fields. Once the job has ended, the first read writes its output
and error files (:mod:`services.batch_format` lines, in input order) as stored files; every later read shows them."""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from db import batches as batches_db
from db import files as files_db
from db.engine import session_scope
from db.schema import Batch
from pageqa.domain import is_final, split_lanes
from pageqa.errors import InputError, NotFoundError
from pageqa.options import job_options
from pageqa.settings import Settings
from services import job_views, jobs
from services.batch_format import CHAT_COMPLETIONS, error_line, output_line
from services.files import OUTPUT_PURPOSE, UPLOAD_PURPOSES
from services.results import error_records, result_records

#: Keys of a batch's ``metadata`` that pageqa reads (values are strings, as in OpenAI's metadata): the corpus to
#: answer from, job options, and ``strict`` (``true``: one invalid line refuses the whole file, as OpenAI does).
#: Other keys are kept and shown back untouched.
CORPUS_KEY = "corpus"
OPTION_KEYS = ("priority", "retrieve_top_k", "rerank_top_k", "max_new_tokens", "chunk_size", "lanes")


@dataclass(frozen=True)
class BatchView:
    """A batch: its row (input file, endpoint, metadata, output and error files) and its job's detail."""

    batch: Batch
    detail: job_views.JobDetail


def create(
    settings: Settings, *, tenant: str, input_file_id: str, endpoint: str, completion_window: str,
    metadata: dict[str, str] | None,
) -> str:
    """Open the job of a new batch (``validating``) over the tenant's input file and return its id; then call
    :func:`validate` (the API does so after answering).

    Raises:
        InputError: ``endpoint`` is not ``/v1/chat/completions``, ``metadata.corpus`` is missing, or the file was
            not uploaded for a batch.
        ConfigError: a job option in ``metadata`` or the completion window is out of range.
        NotFoundError: no such file or corpus of the tenant.
    """
    if endpoint != CHAT_COMPLETIONS:
        raise InputError(f"endpoint {endpoint!r} is not answered here: pageqa answers {CHAT_COMPLETIONS}",
                         code="invalid_endpoint")
    metadata = dict(metadata or {})
    if not metadata.get(CORPUS_KEY):
        raise InputError("metadata.corpus must name the corpus to answer from (see GET /v1/corpora)",
                         code="missing_corpus")
    values = {k: metadata[k] for k in OPTION_KEYS if metadata.get(k)}
    if "lanes" in values:
        values["lanes"] = split_lanes(values["lanes"])
    options = job_options(**values, completion_window=completion_window)
    with session_scope(settings) as session:
        source = files_db.get_file(session, file_id=input_file_id, tenant=tenant)
        if source.purpose not in UPLOAD_PURPOSES:
            raise InputError(f"file {input_file_id} has purpose {source.purpose!r}, not 'batch'",
                             code="invalid_input_file")
        job_id = jobs.open_job_in(session, corpus=metadata[CORPUS_KEY], source=source.filename, options=options,
                                  tenant=tenant)
        batches_db.create_batch(session, job_id=job_id, input_file_id=input_file_id, endpoint=endpoint,
                                completion_window=completion_window, metadata=metadata or None)
        return job_id


def validate(settings: Settings, *, batch_id: str) -> jobs.Submitted | None:
    """Read the batch's input file, check and store its questions and queue them (:func:`services.jobs.
    validate_job`); a refused file ends the job ``failed`` with its line-numbered errors (None is returned).
    The file is copied out of PostgreSQL to a temporary file first, as the question reader works on files."""
    with session_scope(settings) as session:
        batch, _ = batches_db.get_batch(session, batch_id=batch_id)
        strict = (batch.metadata_ or {}).get("strict", "").lower() in ("true", "1", "yes")
        file_id = batch.input_file_id
    with tempfile.TemporaryDirectory(prefix="pageqa-batch-") as folder:
        path = Path(folder) / "input.jsonl"
        try:
            with session_scope(settings) as session, path.open("wb") as out:
                files_db.get_file(session, file_id=file_id)
                out.writelines(files_db.iter_content(session, file_id=file_id))
        except NotFoundError:
            jobs.refuse_job(settings, job_id=batch_id, error=InputError(
                f"the input file {file_id} was deleted before the batch read it", code="missing_input_file"))
            return None
        try:
            return jobs.validate_job(settings, job_id=batch_id, path=path, strict=strict, kind="openai")
        except InputError:
            return None  # the job is failed with its errors


def view(settings: Settings, *, batch_id: str, tenant: str) -> BatchView:
    """The tenant's batch; once its job has ended, with its output and error files (written at this read when
    no read wrote them before).

    Raises:
        NotFoundError: no such batch of the tenant.
    """
    batch, _ = _read(settings, batch_id=batch_id, tenant=tenant)
    # The status shown decides: read after the batch row, so an ended status always comes with its files (a job
    # that ended between two reads once showed "completed" with no output file).
    detail = job_views.job_detail(settings, job_id=batch_id)
    if is_final(detail.job.status) and batch.files_written_at is None:
        _write_files(settings, batch_id=batch_id)
        batch, _ = _read(settings, batch_id=batch_id, tenant=tenant)
    return BatchView(batch, detail)


def _read(settings: Settings, *, batch_id: str, tenant: str):
    with session_scope(settings) as session:
        return batches_db.get_batch(session, batch_id=batch_id, tenant=tenant)


def list_batches(
    settings: Settings, *, tenant: str, limit: int = 20, after: str | None = None,
) -> tuple[list[BatchView], bool]:
    """A page of the tenant's batches, newest first (:func:`db.batches.list_batches`), each as :func:`view`
    shows it, and whether more follow.

    Raises:
        NotFoundError: ``after`` is not a batch of the tenant.
    """
    with session_scope(settings) as session:
        rows, more = batches_db.list_batches(session, tenant=tenant, limit=limit, after=after)
        ids = [job.id for _, job in rows]
    return [view(settings, batch_id=batch_id, tenant=tenant) for batch_id in ids], more


def cancel(settings: Settings, *, batch_id: str, tenant: str) -> BatchView:
    """Cancel the batch's job (:func:`services.jobs.cancel_job`): ``cancelling`` while questions run, then
    ``cancelled``; answered questions keep their answers, the rest go to the error file.

    Raises:
        NotFoundError: no such batch of the tenant.
        ConflictError: the batch has already ended.
    """
    _read(settings, batch_id=batch_id, tenant=tenant)  # 404 for a job without a batch view
    jobs.cancel_job(settings, job_id=batch_id, tenant=tenant)
    return view(settings, batch_id=batch_id, tenant=tenant)


def _write_files(settings: Settings, *, batch_id: str) -> None:
    """Write the ended batch's output and error files, once: the batch row is locked, so a concurrent read waits
    and then finds them written."""
    with session_scope(settings) as session:
        batch, job = batches_db.get_batch(session, batch_id=batch_id, lock=True)
        if batch.files_written_at is not None:
            return
        output = (output_line(batch_id, r) for r in result_records(settings, job_id=batch_id))
        errors = (error_line(batch_id, r) for r in error_records(settings, job_id=batch_id))
        batches_db.set_files(
            session, batch=batch,
            output_file_id=_store_lines(session, job.tenant, f"{batch_id}_output.jsonl", output),
            error_file_id=_store_lines(session, job.tenant, f"{batch_id}_error.jsonl", errors))


def _store_lines(session: Session, tenant: str, filename: str, lines: Iterable[dict]) -> str | None:
    """Store ``lines`` as a JSON-lines file of ``tenant``; its id, or None when there is no line."""
    lines = iter(lines)
    first = next(lines, None)
    if first is None:
        return None
    chunks = ((json.dumps(line, ensure_ascii=False) + "\n").encode() for line in itertools.chain([first], lines))
    return files_db.store_file(session, tenant=tenant, filename=filename, purpose=OUTPUT_PURPOSE,
                               chunks=chunks).id


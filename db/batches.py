"""Data access for batches, the job view of ``/v1/batches``: a batch row beside its job, read with its job (one
tenant's only), listed a page at a time, locked while its output and error files are written."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.jobs import JOB_ID
from db.schema import Batch, Job
from pageqa.errors import NotFoundError


def create_batch(
    session: Session, *, job_id: str, input_file_id: str, endpoint: str, completion_window: str,
    metadata: dict[str, str] | None,
) -> Batch:
    """The batch view of the job ``job_id``, in the caller's transaction."""
    row = Batch(job_id=job_id, input_file_id=input_file_id, endpoint=endpoint,
                completion_window=completion_window, metadata_=metadata)
    session.add(row)
    session.flush()
    return row


def get_batch(session: Session, *, batch_id: str, tenant: str | None = None, lock: bool = False) -> tuple[Batch, Job]:
    """The batch and its job; with ``tenant``, only that tenant's. ``lock`` holds the batch row until the
    transaction ends (one request writes a batch's files; the others wait and then read them).

    Raises:
        NotFoundError: no such batch (a job submitted otherwise has no batch view).
    """
    stmt = select(Batch, Job).join(Job, Job.id == Batch.job_id).where(Batch.job_id == batch_id)
    if tenant is not None:
        stmt = stmt.where(Job.tenant == tenant)
    row = session.execute(stmt.with_for_update(of=Batch) if lock else stmt).first() if JOB_ID.fullmatch(
        batch_id) else None
    if row is None:
        raise NotFoundError(f"no batch {batch_id!r}")
    return row[0], row[1]


def list_batches(
    session: Session, *, tenant: str, limit: int = 20, after: str | None = None,
) -> tuple[list[tuple[Batch, Job]], bool]:
    """A page of the tenant's batches, newest first, starting after the batch ``after`` (the last id of the
    previous page); and whether more follow.

    Raises:
        NotFoundError: ``after`` is not a batch of the tenant.
    """
    stmt = select(Batch, Job).join(Job, Job.id == Batch.job_id).where(Job.tenant == tenant)
    if after is not None:
        _, cursor = get_batch(session, batch_id=after, tenant=tenant)
        stmt = stmt.where((Job.created_at < cursor.created_at)
                          | ((Job.created_at == cursor.created_at) & (Job.id < cursor.id)))
    rows = [(b, j) for b, j in session.execute(stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1))]
    return rows[:limit], len(rows) > limit


def set_files(session: Session, *, batch: Batch, output_file_id: str | None, error_file_id: str | None) -> None:
    """Record the batch's written output and error files (None: that file would be empty)."""
    batch.output_file_id, batch.error_file_id = output_file_id, error_file_id
    batch.files_written_at = dt.datetime.now(dt.UTC)
    session.flush()

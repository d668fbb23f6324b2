"""OpenAI-compatible batch routes (``/v1/batches``): create a batch over an uploaded input file, read, list and
cancel it. A batch is a pageqa job (same id), also shown by ``/v1/jobs``; another tenant's batch answers 404."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query
from fastapi.concurrency import run_in_threadpool

from api.batch_schemas import BatchCreate, BatchList, BatchPublic, batch_record
from api.deps import SettingsDep, TenantDep
from api.schemas import ErrorBody, cursor_page
from pageqa.errors import PageQAError
from pageqa.settings import Settings
from services import batches

log = logging.getLogger(__name__)
router = APIRouter(tags=["batches (OpenAI-compatible)"])


@router.post("/batches", summary="Create a batch", response_model=BatchPublic)
async def create_batch(
    body: BatchCreate, settings: SettingsDep, tenant: TenantDep, background: BackgroundTasks,
) -> BatchPublic:
    """Create the batch (a job in ``validating``) and answer at once; its input file is read, checked and queued
    after the response. Refused lines are listed in ``errors`` with their line; a file without a valid line (or with
    an invalid one under ``metadata.strict``) ends the batch ``failed``."""
    batch_id = await run_in_threadpool(
        batches.create, settings, tenant=tenant, input_file_id=body.input_file_id, endpoint=body.endpoint,
        completion_window=body.completion_window, metadata=body.metadata)
    background.add_task(_validate, settings, batch_id)
    return await run_in_threadpool(_record, settings, batch_id, tenant)


def _validate(settings: Settings, batch_id: str) -> None:
    try:
        batches.validate(settings, batch_id=batch_id)
    except PageQAError as exc:  # the job is stored; the reconciler sends its questions once the broker is back
        log.warning("batch %s: %s", batch_id, exc)


def _record(settings: Settings, batch_id: str, tenant: str) -> BatchPublic:
    return batch_record(batches.view(settings, batch_id=batch_id, tenant=tenant))


@router.get("/batches", summary="List batches", response_model=BatchList)
def list_batches(
    settings: SettingsDep, tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=40, description="Last batch id of the previous page.")] = None,
) -> BatchList:
    """The tenant's batches, newest first, a page at a time (``after`` the last id of the previous page)."""
    views, more = batches.list_batches(settings, tenant=tenant, limit=limit, after=after)
    return BatchList(**cursor_page([batch_record(v) for v in views], more))


@router.get("/batches/{batch_id}", summary="Get a batch", response_model=BatchPublic)
def get_batch(batch_id: str, settings: SettingsDep, tenant: TenantDep) -> BatchPublic:
    """The batch: status, ``request_counts``, refused lines in ``errors``, a timestamp per state; once it has
    ended, its ``output_file_id`` and ``error_file_id``."""
    return _record(settings, batch_id, tenant)


@router.post("/batches/{batch_id}/cancel", summary="Cancel a batch", response_model=BatchPublic,
             responses={409: {"model": ErrorBody, "description": "The batch has already ended."}})
def cancel_batch(batch_id: str, settings: SettingsDep, tenant: TenantDep) -> BatchPublic:
    """Queued requests are cancelled (they go to the error file), answered ones kept, running ones finish: the
    batch is ``cancelling`` until then, ``cancelled`` after. 409 when it has already ended."""
    return batch_record(batches.cancel(settings, batch_id=batch_id, tenant=tenant))

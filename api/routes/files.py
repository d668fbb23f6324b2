"""OpenAI-compatible file routes (``/v1/files``): upload a batch input file, list, read, download and delete a
tenant's files, a batch's output and error files among them. Another tenant's file answers 404, as an unknown one
does."""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.batch_schemas import FileDeleted, FileList, FilePublic, file_record
from api.deps import SettingsDep, TenantDep
from api.schemas import cursor_page
from services import files

router = APIRouter(tags=["files (OpenAI-compatible)"])
#: Bytes read from an upload at a time.
READ_BYTES = 1 << 20


@router.post("/files", summary="Upload a file", response_model=FilePublic)
async def upload_file(
    settings: SettingsDep, tenant: TenantDep,
    file: Annotated[UploadFile, File(description="A batch input file: one chat completion request per line.")],
    purpose: Annotated[str, Form(description="Always `batch`.")],
) -> FilePublic:
    """Store a batch input file (``purpose=batch``) for ``POST /v1/batches``; its lines are checked when a batch
    reads it."""
    name = PurePath((file.filename or "").replace("\\", "/")).name
    info = await run_in_threadpool(files.store, settings, tenant=tenant, filename=name, purpose=purpose,
                                   chunks=iter(lambda: file.file.read(READ_BYTES), b""))
    return file_record(info)


@router.get("/files", summary="List files", response_model=FileList)
def list_files(
    settings: SettingsDep, tenant: TenantDep,
    purpose: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    after: Annotated[str | None, Query(max_length=40, description="Last file id of the previous page.")] = None,
    order: Literal["asc", "desc"] = "desc",
) -> FileList:
    """The tenant's files by creation time (newest first unless ``order=asc``), a page at a time."""
    found, more = files.list_files(settings, tenant=tenant, purpose=purpose, limit=limit, after=after, order=order)
    return FileList(**cursor_page([file_record(f) for f in found], more))


@router.get("/files/{file_id}", summary="Get a file", response_model=FilePublic)
def get_file(file_id: str, settings: SettingsDep, tenant: TenantDep) -> FilePublic:
    """The file's name, purpose, size and creation time."""
    return file_record(files.info(settings, file_id=file_id, tenant=tenant))


@router.get("/files/{file_id}/content", summary="Download a file",
            responses={200: {"description": "The file as stored, streamed.",
                             "content": {"application/octet-stream": {}}}})
def file_content(file_id: str, settings: SettingsDep, tenant: TenantDep) -> StreamingResponse:
    """The file's bytes as uploaded or written (a batch's output and error files are JSON lines)."""
    info, parts = files.content(settings, file_id=file_id, tenant=tenant)
    safe = info.filename.replace('"', "'")
    return StreamingResponse(parts, media_type="application/octet-stream", headers={
        "Content-Length": str(info.bytes), "Content-Disposition": f'attachment; filename="{safe}"'})


@router.delete("/files/{file_id}", summary="Delete a file", response_model=FileDeleted)
def delete_file(file_id: str, settings: SettingsDep, tenant: TenantDep) -> FileDeleted:
    """Delete the file. A batch keeps its id; reading it then answers 404."""
    files.delete(settings, file_id=file_id, tenant=tenant)
    return FileDeleted(id=file_id, deleted=True)

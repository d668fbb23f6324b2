"""Corpus routes: upload documents (PDFs and images) into a corpus, list corpora, read one. Corpus names are the
tenant's own: two tenants may each have a corpus "reports", and neither sees the other's."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import SettingsDep, TenantDep, uploads_dir
from api.schemas import CorpusDetail, CorpusList, ErrorBody, Upload
from db import corpus as corpus_db
from pageqa.domain import check_name
from pageqa.errors import InputError
from pageqa.settings import Settings
from services.corpora import corpus_detail, corpus_summaries
from services.ingest.inputs import SUFFIXES
from services.ingest.pipeline import IngestReport, ingest_files

router = APIRouter(tags=["corpora"])
CorpusName = Annotated[str, PathParam(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f/]+$")]
MAX_FILES = 100

_UPLOAD = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"], "properties": {"files": {
        "type": "array", "items": {"type": "string", "format": "binary"},
        "description": f"PDFs or PNG/JPEG/WebP images, at most {MAX_FILES} per request."}}}}}}}


@router.post("/corpora/{name}/documents", status_code=201, openapi_extra=_UPLOAD, summary="Upload documents",
             response_model=Upload, responses={415: {"model": ErrorBody, "description": "Not multipart/form-data."}})
async def upload_documents(name: CorpusName, request: Request, settings: SettingsDep, tenant: TenantDep) -> dict:
    """Store each uploaded file under a server-made name, ingest it into the tenant's corpus ``name`` (created
    when missing) and queue its pages for indexing. Documents keep the uploaded file name, which question files
    use to filter by document. A bad file is one error naming it; the others are ingested. 400 when none is."""
    check_name(name, what="corpus name")  # before the body is read: the corpus would be created with it
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise HTTPException(415, "send the documents as multipart/form-data fields named 'files'")
    form = await request.form(max_files=MAX_FILES, max_fields=10)
    uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    if not uploads:
        raise InputError("no file: send the documents as multipart fields named 'files'")
    workdir = Path(tempfile.mkdtemp(prefix="docs-", dir=uploads_dir(settings)))
    try:
        return await run_in_threadpool(_ingest, settings, tenant, name, uploads, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _ingest(settings: Settings, tenant: str, name: str, uploads: list[UploadFile], workdir: Path) -> dict:
    names: dict[Path, str] = {}
    errors: list[str] = []
    for upload in uploads:
        shown = corpus_db.clean_file_name(upload.filename or "document")
        suffix = Path(shown).suffix.lower()
        if suffix not in SUFFIXES:
            errors.append(str(InputError(f"not a PDF or image ({', '.join(sorted(SUFFIXES))})", source=shown)))
            continue
        path = workdir / f"{uuid.uuid4().hex}{suffix}"
        with path.open("wb") as out:
            shutil.copyfileobj(upload.file, out, 1 << 20)
        names[path] = shown
    report = ingest_files(settings, corpus=name, files=list(names), tenant=tenant, names=names, enqueue=True,
                          report=IngestReport(errors=errors))
    shown = {str(p): n for p, n in names.items()}

    def named(text: str) -> str:  # messages name the user's file, not the server's copy
        for server, user in shown.items():
            text = text.replace(server, user)
        return text

    if not report.added and not report.duplicates:
        raise InputError(named(report.errors[0]) if report.errors else "no document could be ingested")
    return {"corpus": name, "added": [shown[p] for p in report.added], "duplicates": [shown[p] for p in report.duplicates],
            "errors": [named(e) for e in report.errors], "pages": report.pages,
            "pages_queued": len(report.queued_page_ids)}


@router.get("/corpora", summary="List corpora", response_model=CorpusList)
def list_corpora(settings: SettingsDep, tenant: TenantDep) -> dict:
    """The tenant's corpora with their document and page counts: pages, pages indexed (searchable) and pages that
    could not be indexed."""
    return {"object": "list", "data": corpus_summaries(settings, tenant=tenant)}  # the model leaves out "tenant"


@router.get("/corpora/{name}", summary="Get a corpus", response_model=CorpusDetail)
def get_corpus(name: CorpusName, settings: SettingsDep, tenant: TenantDep) -> dict:
    """The tenant's corpus ``name`` with its documents (name, title, kind, pages, bytes)."""
    return corpus_detail(settings, name=name, tenant=tenant)
